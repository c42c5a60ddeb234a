// SPDX-License-Identifier: MIT
//
// Random tensor op chains over every op family, reduced to a scalar and
// checked against central differences; and a check that the fuzzer finds an
// op whose backward rule is wrong.

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "fuzz_config.hpp"
#include "tensor_ops.hpp"

namespace fz = tapegrad::fuzz;
using fz::DTensor;

TEST_CASE("Random tensor op chains match finite differences") {
  const auto makers = fz::tensor_op_makers();
  const std::uint64_t count = fz::fuzz_cases(fz::sanitized_build() ? 600 : 3000, 4);
  const std::uint64_t first = fz::fuzz_first_seed(1);
  const fz::FuzzFailure f = fz::fuzz_tensor(first, count, makers);
  INFO("seed " << f.seed << " (replay: TAPEGRAD_FUZZ_SEED=" << f.seed << " TAPEGRAD_FUZZ_CASES=4)\n"
               << f.report << "\nshrunk program:\n"
               << f.program);
  CHECK_FALSE(f.found);
}

TEST_CASE("The tensor generator reaches every op and every family") {
  const auto makers = fz::tensor_op_makers();
  std::set<std::string> families_made, ops_made;
  int broadcasts = 0;
  for (std::uint64_t s = 1; s <= 400; ++s) {
    fz::SeededChoices ch(s);
    const auto p = fz::random_tensor_program(ch, makers);
    const auto vals = fz::tensor_values(p);
    REQUIRE_FALSE(vals.empty());                                   // every generated program is valid
    CHECK(vals[static_cast<std::size_t>(p.output)].numel() == 1);  // reduced to a scalar
    for (std::size_t i = 0; i < p.entries.size(); ++i) {
      const auto& e = p.entries[i];
      if (e.is_input) continue;
      ops_made.insert(e.node.op);
      if (e.node.args.size() == 2 && !(vals[static_cast<std::size_t>(e.node.args[0])].shape() ==
                                       vals[static_cast<std::size_t>(e.node.args[1])].shape()))
        ++broadcasts;
    }
  }
  for (const std::string op :
       {"neg",       "exp",       "log",          "sqrt",    "pow_const",   "abs",        "tanh",
        "sigmoid",   "relu",      "gelu",         "clamp",   "reciprocal",  "add",        "sub",
        "mul",       "div",       "pow",          "where",   "sum",         "mean",       "max",
        "logsumexp", "max_all",   "matmul",       "reshape", "permute",     "transpose",  "narrow",
        "concat",    "split",     "index_select", "softmax", "log_softmax", "layer_norm", "cross_entropy",
        "mse_loss",  "attention", "masked_fill",  "dropout", "embedding",   "bias_act",   "stop_gradient"}) {
    CAPTURE(op);
    CHECK(ops_made.count(op) == 1);
  }
  CHECK(broadcasts > 0);
}

namespace {

// x^2 with a wrong backward rule: d/dx x^2 is 2x, this op sends back x.
template <class T>
tapegrad::basic_tensor<T> broken_square(const tapegrad::basic_tensor<T>& x) {
  using tapegrad::OpContext;
  return tapegrad::make_op<T>(
      "broken_square", x.shape(), {x}, [](OpContext<T>& c) { c.out_vec() = c.in_vec(0).square(); },
      [](OpContext<T>& c) { c.in_grad_vec(0) += c.out_grad_vec() * c.in_vec(0); });
}

}  // namespace

TEST_CASE("The tensor fuzzer catches a broken backward rule and shrinks to it") {
  auto makers = fz::tensor_op_makers();
  // Make the broken op likely so that a short run finds it.
  for (int k = 0; k < 4; ++k)
    makers.push_back({"broken", [](fz::TensorBuilder& b, fz::TensorNode& n) {
                        n = fz::make_node(
                            "broken_square", {b.pick([](const tapegrad::Shape&) { return true; })},
                            [](const std::vector<DTensor>& x) { return broken_square(x[0]); },
                            [](const std::vector<DTensor>& x) { return fz::gap_from(x[0], 0) > 0.1; },
                            "broken_square(%0)");
                        return true;
                      }});
  const fz::FuzzFailure f = fz::fuzz_tensor(1, 500, makers);
  REQUIRE(f.found);
  CAPTURE(f.program);
  CHECK(f.report.find("FAILED") != std::string::npos);
  CHECK(f.program.find("broken_square(") != std::string::npos);
  // Shrunk to the input, the broken op and at most the reduction after it.
  CHECK(std::count(f.program.begin(), f.program.end(), '\n') <= 4);
}
