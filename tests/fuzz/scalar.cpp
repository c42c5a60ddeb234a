// SPDX-License-Identifier: MIT
//
// Random scalar expression graphs over every Value op, each checked against
// central differences; and a check that the fuzzer finds a broken op.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "fuzz_config.hpp"
#include "scalar_program.hpp"

using tapegrad::Value;
namespace fz = tapegrad::fuzz;

TEST_CASE("Random scalar graphs match finite differences") {
  const auto ops = fz::scalar_ops();
  const std::uint64_t count = fz::fuzz_cases(fz::sanitized_build() ? 1000 : 5000);
  const std::uint64_t first = fz::fuzz_first_seed(1);
  const fz::FuzzFailure f = fz::fuzz_scalar(first, count, ops);
  INFO("seed " << f.seed << " (replay: TAPEGRAD_FUZZ_SEED=" << f.seed << " TAPEGRAD_FUZZ_CASES=1)\n"
               << f.report << "\nshrunk program:\n"
               << f.program);
  CHECK_FALSE(f.found);
}

TEST_CASE("The scalar generator covers every op, shared subexpressions and barriers") {
  const auto ops = fz::scalar_ops();
  std::vector<int> uses(ops.size(), 0);
  int shared = 0;
  for (std::uint64_t s = 1; s <= 300; ++s) {
    fz::SeededChoices ch(s);
    const auto p = fz::random_scalar_program(ch, ops);
    REQUIRE_FALSE(fz::scalar_values(p, ops).empty());  // every generated program is valid
    std::vector<int> refs(p.inputs.size() + p.nodes.size(), 0);
    for (const auto& n : p.nodes) {
      ++uses[static_cast<std::size_t>(n.op)];
      ++refs[static_cast<std::size_t>(n.a)];
      if (ops[static_cast<std::size_t>(n.op)].arity == 2) ++refs[static_cast<std::size_t>(n.b)];
    }
    for (std::size_t i = p.inputs.size(); i < refs.size(); ++i) shared += refs[i] > 1;
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    CAPTURE(ops[i].name);
    CHECK(uses[i] > 0);
  }
  CHECK(shared > 0);
}

TEST_CASE("A program is the same for the same seed") {
  const auto ops = fz::scalar_ops();
  fz::SeededChoices a(77), b(77);
  CHECK(fz::scalar_program_cpp(fz::random_scalar_program(a, ops), ops) ==
        fz::scalar_program_cpp(fz::random_scalar_program(b, ops), ops));
}

TEST_CASE("Gradient through stop_gradient is exactly zero") {
  const auto ops = fz::scalar_ops();
  int sg = -1, mul = -1, sin = -1;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].name == "stop_gradient") sg = static_cast<int>(i);
    if (ops[i].name == "mul") mul = static_cast<int>(i);
    if (ops[i].name == "sin") sin = static_cast<int>(i);
  }
  REQUIRE(sg >= 0);
  // y = x1 * stop_gradient(sin(x0)): dy/dx0 = 0 exactly, dy/dx1 = sin(x0).
  fz::ScalarProgram p{{0.7, 1.3}, {{sin, 0, 0, 0}, {sg, 2, 2, 0}, {mul, 1, 3, 0}}, 4};
  CHECK(fz::scalar_live_inputs(p, ops) == std::vector<bool>{false, true});
  const auto g =
      tapegrad::value_and_grad([&](const std::vector<Value>& x) { return fz::eval_scalar(p, ops, x); }, p.inputs).grad;
  CHECK(g[0] == 0.0);
  CHECK(g[1] == doctest::Approx(std::sin(0.7)));
  CHECK(fz::check_scalar_program(p, ops).passed);
}

TEST_CASE("The scalar fuzzer catches a broken backward rule and shrinks to it") {
  auto ops = fz::scalar_ops();
  // cube with a wrong slope: d/dx x^3 is 3 x^2, this op claims 2 x^2.
  ops.push_back({"broken_cube", 1,
                 [](const Value& a, const Value&, double) {
                   const double v = a.data();
                   return tapegrad::custom_unary(a, v * v * v, 2 * v * v, "broken_cube");
                 },
                 [](double a, double, double) { return std::abs(a) > 0.3 && std::abs(a) < 5; }, "broken_cube(%0)"});
  const fz::FuzzFailure f = fz::fuzz_scalar(1, 2000, ops);
  REQUIRE(f.found);
  CAPTURE(f.program);
  CHECK(f.report.find("FAILED") != std::string::npos);
  CHECK(f.program.find("broken_cube(") != std::string::npos);
  // Shrunk to a handful of lines: the inputs, the broken op and little else.
  const auto lines = std::count(f.program.begin(), f.program.end(), '\n');
  CHECK(lines <= 5);
}
