// SPDX-License-Identifier: MIT
//
// Record once, replay for new inputs: `tapegrad::record` runs a function on a
// tape of its own and keeps the operations it performed; a Recording then
// gives the value and the gradient at any input without recording again, and
// refuses, with replay_error, an input at which one of the function's
// comparisons comes out differently.

#include <doctest/doctest.h>

#include <cmath>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "tapegrad/scalar.hpp"

using tapegrad::Tape;
using tapegrad::Value;

namespace {

// Every kind of step a replay performs: binary arithmetic (inline), the math
// functions and constant operands (kernel calls), a stop_gradient, a leaf
// made inside the function (a constant), and fused statements on the tape.
// `smooth` leaves out the stop_gradient, whose value moves with `a` while its
// gradient does not, for the comparison with finite differences.
template <bool smooth = false>
Value many_ops(const std::vector<Value>& x) {
  const Value& a = x[0];
  const Value& b = x[1];
  const Value c = 0.5;
  // Short statements: a long expression of Values compiles slowly under the sanitizers.
  Value t = a * b + sin(a) / b;
  t -= exp(-a * 0.3);
  t += pow(b, 1.5) + pow(a, b) * c;
  t += log(b) * tanh(a);
  t -= sqrt(a * a + 1.0);
  t += sigmoid(b - 2.0) + 2.0 / b;
  t -= 3.0 - a;
  t += relu(a - 1.0) + abs(b - 1.7);
  t += max(a, b) + min(a, 1.2);
  t += log1p(b) + expm1(a * 0.1);
  t += erf(a - b) + softplus(b);
  t += cos(b) * tan(a * 0.2);
  if constexpr (!smooth) t += tapegrad::stop_gradient(a) * b;
  return t;
}

}  // namespace

TEST_CASE("recording: the worked example, f(x, y) = x y + sin x") {
  auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] * x[1] + sin(x[0]); }, {1.0, 2.0});
  CHECK(f.inputs() == 2);
  CHECK(f.operations() == 3);  // mul, sin, add
  CHECK(f.comparisons() == 0);
  const auto [y, g] = f.value_and_grad({3.0, 4.0});
  CHECK(y == 12.0 + std::sin(3.0));
  REQUIRE(g.size() == 2);
  CHECK(g[0] == doctest::Approx(4.0 + std::cos(3.0)).epsilon(1e-15));
  CHECK(g[1] == 3.0);
  CHECK(f.value({1.0, 2.0}) == 2.0 + std::sin(1.0));
}

TEST_CASE("recording: a replay matches recording afresh, value bit for bit, at many inputs") {
  auto f = tapegrad::record(many_ops<>, {1.3, 2.1});
  CHECK(f.comparisons() == 0);  // relu, abs, max and min decide inside their kernels
  for (const double a : {0.4, 1.3, 2.5, 3.1}) {
    for (const double b : {0.7, 1.9, 2.1, 4.0}) {
      CAPTURE(a);
      CAPTURE(b);
      const auto fresh = tapegrad::value_and_grad(many_ops<>, std::vector<double>{a, b});
      const auto replayed = f.value_and_grad({a, b});
      CHECK(replayed.value == fresh.value);
      for (std::size_t i = 0; i < 2; ++i) CHECK(replayed.grad[i] == doctest::Approx(fresh.grad[i]).epsilon(1e-13));
      // The tape's statements fuse partials in another order than a replay
      // multiplies them: equal to rounding, not bit for bit.
    }
  }
  // And against central differences, through the library's own check.
  auto smooth = tapegrad::record(many_ops<true>, {1.3, 2.1});
  const auto check = tapegrad::gradcheck(
      [&](const std::vector<Value>& x) {
        // The replay's gradient, wrapped so gradcheck compares it to differences of the replay's value.
        const auto r = smooth.value_and_grad({x[0].data(), x[1].data()});
        return Value(r.value) + (x[0] - x[0].data()) * r.grad[0] + (x[1] - x[1].data()) * r.grad[1];
      },
      std::vector<double>{2.2, 1.4});
  CHECK(check.passed);
}

// A replay runs sums of products as single instructions (the running total
// in a register); these check that the result is the tape's, bit for bit,
// and that a total or a product read anywhere else is kept as it was.
TEST_CASE("recording: sums of products are one instruction and replay bit for bit") {
  const auto dot = [](const std::vector<Value>& x) {
    const std::size_t n = x.size() / 2;
    Value s = x[0] * x[n];
    for (std::size_t i = 1; i < n; ++i) s += x[i] * x[n + i];
    return s;
  };
  std::vector<double> x(40);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(1.7 * static_cast<double>(i) + 0.3);
  auto f = tapegrad::record(dot, x);
  CHECK(f.operations() == 39);  // 20 products, 19 sums
  CHECK(f.instructions() == 1);
  for (double shift : {0.0, 0.25, -1.5}) {
    std::vector<double> y = x;
    for (double& e : y) e = e * 1.3 + shift;
    const auto fresh = tapegrad::value_and_grad(dot, y);
    const auto replayed = f.value_and_grad(y);
    CHECK(replayed.value == fresh.value);
    for (std::size_t i = 0; i < 20; ++i) {
      CHECK(replayed.grad[i] == y[20 + i]);  // d/da_i = b_i exactly
      CHECK(replayed.grad[20 + i] == y[i]);
    }
  }

  SUBCASE("plain terms and constants: s += exp(x - c), then 2 s + 1") {
    const auto g = [](const std::vector<Value>& v) {
      Value s = exp(v[0] - 0.5);
      for (std::size_t i = 1; i < v.size(); ++i) s += exp(v[i] - 0.5);
      return s * 2.0 + 1.0;
    };
    auto r = tapegrad::record(g, {0.1, 0.2, 0.3});
    CHECK(r.instructions() == 9);  // three subtractions, three exps, one sum, times 2, plus 1
    const std::vector<double> at{0.7, -1.1, 2.3};
    const auto fresh = tapegrad::value_and_grad(g, at);
    const auto replayed = r.value_and_grad(at);
    CHECK(replayed.value == fresh.value);
    for (std::size_t i = 0; i < 3; ++i) CHECK(replayed.grad[i] == 2.0 * std::exp(at[i] - 0.5));
  }
  SUBCASE("two products added, in a chain of 50 steps: x = sin(x) x + 0.5 x") {
    const auto g = [](const std::vector<Value>& v) {
      Value t = v[0];
      for (int k = 0; k < 50; ++k) t = sin(t) * t + 0.5 * t;
      return t;
    };
    auto r = tapegrad::record(g, {0.7});
    CHECK(r.instructions() == 100);  // per step: sin, then both products and their sum as one
    for (const double at : {0.3, 0.7, 1.9}) {
      const auto fresh = tapegrad::value_and_grad(g, std::vector<double>{at});
      const auto replayed = r.value_and_grad({at});
      CHECK(replayed.value == fresh.value);
      CHECK(replayed.grad[0] == doctest::Approx(fresh.grad[0]).epsilon(1e-13));
    }
  }
  SUBCASE("a zero's sign is kept: -0 + -0 is -0") {
    auto r =
        tapegrad::record([](const std::vector<Value>& v) { return v[0] * v[1] + v[2] * v[3]; }, {1.0, 2.0, 3.0, 4.0});
    CHECK(r.instructions() == 1);
    const double y = r.value({-0.0, 1.0, 1.0, -0.0});
    CHECK(y == 0.0);
    CHECK(std::signbit(y));
  }
  SUBCASE("a product or a total read twice stays an instruction of its own") {
    const auto g = [](const std::vector<Value>& v) {
      const Value p = v[0] * v[1];
      Value s = p + v[2] * v[3];
      const Value half = s * 0.5;  // reads the total in the middle of the sum
      s += p * v[2];
      return s + half;
    };
    auto r = tapegrad::record(g, {1.0, 2.0, 3.0, 4.0});
    CHECK(r.instructions() == 3);  // a b alone (read twice), then c d + a b, then the rest as one sum
    const std::vector<double> at{1.5, -2.0, 0.5, 3.0};
    const auto fresh = tapegrad::value_and_grad(g, at);
    const auto replayed = r.value_and_grad(at);
    CHECK(replayed.value == fresh.value);
    // f = 1.5 (a b + c d) + a b c: by hand.
    const double a = at[0], b = at[1], c = at[2], d = at[3];
    CHECK(replayed.grad[0] == doctest::Approx(1.5 * b + b * c).epsilon(1e-15));
    CHECK(replayed.grad[1] == doctest::Approx(1.5 * a + a * c).epsilon(1e-15));
    CHECK(replayed.grad[2] == doctest::Approx(1.5 * d + a * b).epsilon(1e-15));
    CHECK(replayed.grad[3] == doctest::Approx(1.5 * c).epsilon(1e-15));
  }
  SUBCASE("a product made under NoGradGuard passes no gradient through the sum") {
    auto r = tapegrad::record(
        [](const std::vector<Value>& v) {
          Value c;
          {
            tapegrad::NoGradGuard off;
            c = v[0] * v[1];
          }
          return c + v[1] * v[1];
        },
        {1.0, 1.0});
    const auto out = r.value_and_grad({3.0, 4.0});
    CHECK(out.value == 28.0);
    CHECK(out.grad[0] == 0.0);
    CHECK(out.grad[1] == 8.0);
  }
}

TEST_CASE("recording: stop_gradient and NoGradGuard pass no gradient on replay") {
  SUBCASE("stop_gradient") {
    auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] * tapegrad::stop_gradient(x[0]); }, {2.0});
    const auto r = f.value_and_grad({5.0});
    CHECK(r.value == 25.0);
    CHECK(r.grad[0] == 5.0);  // d/dx (x * const x) = x, not 2x
  }
  SUBCASE("NoGradGuard") {
    auto f = tapegrad::record(
        [](const std::vector<Value>& x) {
          Value c;
          {
            tapegrad::NoGradGuard off;
            c = x[0] * 2.0;  // a value, not a path for gradients
          }
          return c * x[1];
        },
        {1.0, 1.0});
    const auto r = f.value_and_grad({3.0, 4.0});
    CHECK(r.value == 24.0);  // recomputed from the new x0: 2 * 3 * 4
    CHECK(r.grad[0] == 0.0);
    CHECK(r.grad[1] == 6.0);
  }
}

TEST_CASE("recording: a leaf made inside the function is a constant of the recording") {
  auto f = tapegrad::record(
      [](const std::vector<Value>& x) {
        Value scale = 2.5;
        return x[0] * scale + 1.0;
      },
      {0.0});
  const auto r = f.value_and_grad({4.0});
  CHECK(r.value == 11.0);
  CHECK(r.grad[0] == 2.5);
}

TEST_CASE("recording: comparisons are checked at every replay") {
  auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] > 0.0 ? x[0] * x[0] : -x[0]; }, {1.0});
  CHECK(f.comparisons() == 1);
  SUBCASE("the same branch replays") {
    const auto r = f.value_and_grad({2.0});
    CHECK(r.value == 4.0);
    CHECK(r.grad[0] == 4.0);
  }
  SUBCASE("the other branch raises replay_error") {
    CHECK_THROWS_WITH_AS(f.value({-1.0}),
                         "Recording::value: comparison 1 of 1 took another branch: recorded as 1 > 0, now -1 and 0; "
                         "record the function again at these inputs",
                         tapegrad::replay_error);
    // The recording is intact: a good input still replays.
    CHECK(f.value({3.0}) == 9.0);
  }
  SUBCASE("equality between Values") {
    auto g = tapegrad::record([](const std::vector<Value>& x) { return x[0] == x[1] ? x[0] * 2.0 : x[0] - x[1]; },
                              {1.0, 2.0});
    CHECK(g.value({5.0, 3.0}) == 2.0);
    CHECK_THROWS_AS(g.value({3.0, 3.0}), tapegrad::replay_error);
  }
  SUBCASE("a NaN makes a comparison unordered") {
    auto g = tapegrad::record([](const std::vector<Value>& x) { return x[0] < x[1] ? x[0] : x[1]; }, {1.0, 2.0});
    CHECK_THROWS_AS(g.value({std::nan(""), 2.0}), tapegrad::replay_error);
  }
}

TEST_CASE("recording: what cannot be recorded is refused, naming why") {
  SUBCASE("a custom op: its value was computed outside the tape") {
    CHECK_THROWS_WITH_AS(tapegrad::record(
                             [](const std::vector<Value>& x) {
                               const double c = std::cbrt(x[0].data());
                               return tapegrad::custom_unary(x[0], c, 1.0 / (3.0 * c * c), "cbrt");
                             },
                             {8.0}),
                         "record: op 'cbrt' is a custom op whose value was computed outside the tape; a recording "
                         "cannot replay it",
                         tapegrad::value_error);
  }
  SUBCASE("a leaf changed in place") {
    CHECK_THROWS_AS(tapegrad::record(
                        [](const std::vector<Value>& x) {
                          Value w = 1.0;
                          Value y = w * x[0];
                          w.set_data(2.0);
                          return y;
                        },
                        {1.0}),
                    tapegrad::value_error);
  }
  SUBCASE("a tape cleared inside the function") {
    CHECK_THROWS_AS(tapegrad::record(
                        [](const std::vector<Value>& x) {
                          Value y = x[0] * 2.0;
                          Tape::active().clear();
                          return x[0] + 1.0;
                        },
                        {1.0}),
                    tapegrad::value_error);
  }
  SUBCASE("a result from another tape") {
    Tape mine;
    Tape::Scope use(mine);
    Value other = 3.0;
    CHECK_THROWS_AS(tapegrad::record([&](const std::vector<Value>&) { return other; }, {1.0}), tapegrad::value_error);
  }
  SUBCASE("the wrong number of inputs, or of gradient entries") {
    auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] * x[1]; }, {1.0, 2.0});
    CHECK_THROWS_WITH_AS(f.value({1.0}), "Recording::value: 1 inputs given; the function was recorded with 2",
                         tapegrad::value_error);
    std::vector<double> g(3);
    const std::vector<double> x{1.0, 2.0};
    CHECK_THROWS_WITH_AS(f.value_and_grad(x, g),
                         "Recording::value_and_grad: a gradient buffer of 3 entries for 2 inputs",
                         tapegrad::value_error);
  }
  SUBCASE("an empty Recording") {
    tapegrad::Recording<double> empty;
    CHECK_THROWS_AS(empty.value(std::vector<double>{}), tapegrad::value_error);
  }
}

// The recording's tape is gone when record() returns, and its state goes back
// to the pool for the next tape; a program pointer left behind would make that
// tape write into freed memory (AddressSanitizer would stop this test).
TEST_CASE("recording: a Recording outlives its tape, and the next tape records as usual") {
  auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] * x[0]; }, {1.0});
  CHECK_THROWS_AS(
      tapegrad::record([](const std::vector<Value>&) -> Value { throw std::runtime_error("inside f"); }, {1.0}),
      std::runtime_error);
  for (int i = 0; i < 3; ++i) {
    Tape t;
    Tape::Scope use(t);
    Value a = 3.0;
    Value b = a * a + 1.0;
    b.backward();
    CHECK(b.data() == 10.0);
    CHECK(a.grad() == 6.0);
  }
  CHECK(f.value({4.0}) == 16.0);
}

TEST_CASE("recording: a replay allocates nothing after its first call") {
  auto f = tapegrad::record(many_ops<>, {1.3, 2.1});
  const std::vector<double> x{1.7, 2.4};
  std::vector<double> g(2);
  (void)f.value_and_grad(x, g);  // sizes the buffers
  Counting c;
  double y = 0;
  for (int i = 0; i < 10; ++i) y += f.value_and_grad(x, g);
  c.stop();
  CHECK(c.news() == 0);
  CHECK(y == doctest::Approx(10 * tapegrad::value_and_grad(many_ops<>, x).value));
}
