// SPDX-License-Identifier: MIT
//
// libFuzzer target: the fuzz input's bytes decode into scalar and tensor
// graphs. Graphs kept inside every op's domain must match central finite
// differences; graphs built without regard for domains, shapes, axes or
// indices must either run (NaN and infinity are fine) or raise a
// tapegrad::error. Anything else (a crash, a sanitizer report, another
// exception, a wrong gradient) is a finding: the program is printed and the
// run aborts, and libFuzzer keeps the input that did it.
//
// Build and run for a minute: scripts/run.sh fuzz 60 (see docs/testing.md).

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "scalar_program.hpp"
#include "tensor_ops.hpp"

namespace fz = tapegrad::fuzz;
using fz::DTensor;

namespace {

[[noreturn]] void finding(const std::string& what, const std::string& program) {
  std::fprintf(stderr, "fuzz_graphs finding: %s\n%s\n", what.c_str(), program.c_str());
  std::abort();
}

/// A scalar program with no regard for domains: any op on any earlier value.
void unconstrained_scalar(fz::Choices& ch, const std::vector<fz::ScalarOp>& ops) {
  fz::ScalarProgram p;
  const int n_in = 1 + ch.below(3);
  for (int i = 0; i < n_in; ++i) p.inputs.push_back(ch.uniform(-50, 50));
  const int n = 1 + ch.below(16);
  for (int k = 0; k < n; ++k) {
    const int refs = n_in + k;
    p.nodes.push_back({ch.below(static_cast<int>(ops.size())), ch.below(refs), ch.below(refs), ch.uniform(-4, 4)});
  }
  p.output = n_in + n - 1;
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  std::vector<tapegrad::Value> x(p.inputs.begin(), p.inputs.end());
  tapegrad::Value y = fz::eval_scalar(p, ops, x);
  y.backward();
  for (const auto& v : x) (void)v.grad();
}

/// A tensor op with raw parameters from the bytes: shapes that may not fit,
/// axes and indices that may be out of range.
void unconstrained_tensor(fz::Choices& ch) {
  auto shape = [&] {
    std::vector<tapegrad::index_t> d(static_cast<std::size_t>(ch.below(4)));
    for (auto& v : d) v = ch.below(4);
    return tapegrad::Shape(d);
  };
  auto leaf = [&](const tapegrad::Shape& s) {
    std::vector<double> v(static_cast<std::size_t>(s.numel()));
    for (double& e : v) e = ch.uniform(-3, 3);
    return DTensor(s, std::move(v)).requires_grad(true);
  };
  const int small = 6;
  auto num = [&] { return static_cast<tapegrad::index_t>(ch.below(2 * small + 1) - small); };
  auto axis = [&] { return ch.below(9) - 4; };
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor a = leaf(shape()), b = leaf(shape());
  DTensor y;
  switch (ch.below(16)) {
    case 0:
      y = a + b;
      break;
    case 1:
      y = a / b;
      break;
    case 2:
      y = matmul(a, b, tapegrad::MatmulOptions{.transpose_a = ch.chance(0.5), .transpose_b = ch.chance(0.5)});
      break;
    case 3:
      y = reshape(a, std::vector<tapegrad::index_t>{num(), num()});
      break;
    case 4:
      y = permute(a, std::vector<int>{axis(), axis(), axis()});
      break;
    case 5:
      y = narrow(a, axis(), num(), num());
      break;
    case 6:
      y = concat(std::vector<DTensor>{a, b}, axis());
      break;
    case 7:
      y = index_select(a, axis(), std::vector<tapegrad::index_t>{num(), num()});
      break;
    case 8:
      y = sum(a, axis(), ch.chance(0.5));
      break;
    case 9:
      y = logsumexp(a, axis());
      break;
    case 10:
      y = softmax(a, axis());
      break;
    case 11:
      y = layer_norm(a, b, b);
      break;
    case 12: {
      std::vector<tapegrad::index_t> t{num(), num()};
      y = cross_entropy(a, std::span<const tapegrad::index_t>(t));
      break;
    }
    case 13:
      y = scaled_dot_product_attention(a, b, a, ch.chance(0.5));
      break;
    case 14: {
      std::vector<tapegrad::index_t> ids{num(), num()};
      y = embedding(a, std::span<const tapegrad::index_t>(ids));
      break;
    }
    default:
      y = split(a, num(), axis())[0];
      break;
  }
  sum(y).backward();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::vector<fz::ScalarOp> scalar_ops = fz::scalar_ops();
  static const std::vector<fz::TensorOpMaker> makers = fz::tensor_op_makers();
  const std::size_t half = size / 2;
  std::string stage = "start";
  try {
    {
      stage = "scalar program in domain";
      fz::ByteChoices ch(data, half);
      const fz::ScalarProgram p = fz::random_scalar_program(ch, scalar_ops);
      const fz::CaseResult r = fz::check_scalar_program(p, scalar_ops);
      if (!r.passed) {
        const fz::ScalarProgram q = fz::shrink_scalar_program(p, scalar_ops);
        finding(fz::check_scalar_program(q, scalar_ops).report, fz::scalar_program_cpp(q, scalar_ops));
      }
    }
    {
      stage = "tensor program in domain";
      fz::ByteChoices ch(data + half, size - half);
      const fz::TensorProgram p = fz::random_tensor_program(ch, makers);
      const fz::CaseResult r = fz::check_tensor_program(p);
      if (!r.passed) {
        const fz::TensorProgram q = fz::shrink_tensor_program(p);
        finding(fz::check_tensor_program(q).report, fz::tensor_program_cpp(q));
      }
    }
    try {
      stage = "scalar program out of domain";
      fz::ByteChoices ch(data, size);
      unconstrained_scalar(ch, scalar_ops);
    } catch (const tapegrad::error&) {
    }
    try {
      stage = "tensor op with raw parameters";
      fz::ByteChoices ch(data + half, size - half);
      unconstrained_tensor(ch);
    } catch (const tapegrad::error&) {
    }
  } catch (const std::exception& e) {
    finding(stage + ": an exception that is not a tapegrad::error: " + e.what(), "");
  }
  return 0;
}
