// SPDX-License-Identifier: MIT
// Dual numbers: every scalar function's forward rule, checked against
// central differences (Dual<double>), and, on Dual<Value>, its second
// derivative from a reverse sweep through the tangent, against the closed
// form.

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <string>
#include <vector>

#include "tapegrad/autodiff/dual.hpp"

using tapegrad::Dual;
using tapegrad::Value;

namespace {

/// One scalar function three ways: on Dual<double>, on Dual<Value>, and its
/// second derivative in closed form.
struct Case {
  std::string name;
  std::function<Dual<double>(const Dual<double>&)> on_double;
  std::function<Dual<Value>(const Dual<Value>&)> on_value;
  std::function<double(double)> second;  // f''(x), by hand
  std::vector<double> points;
};

#define TG_CASE(NAME, EXPR, SECOND, ...)                                                         \
  Case {                                                                                         \
    NAME, [](const Dual<double>& x) { return EXPR; }, [](const Dual<Value>& x) { return EXPR; }, \
        []([[maybe_unused]] double v) { return SECOND; }, {                                      \
      __VA_ARGS__                                                                                \
    }                                                                                            \
  }

const double k = 2.0 / std::sqrt(std::numbers::pi);
double sig(double v) { return 1.0 / (1.0 + std::exp(-v)); }

std::vector<Case> cases() {
  return {
      TG_CASE("exp", exp(x), std::exp(v), -1.3, 0.4, 2.0),
      TG_CASE("log", log(x), -1.0 / (v * v), 0.3, 1.7),
      TG_CASE("sqrt", sqrt(x), -0.25 / (v * std::sqrt(v)), 0.5, 3.0),
      TG_CASE("sin", sin(x), -std::sin(v), -2.0, 0.7),
      TG_CASE("cos", cos(x), -std::cos(v), -2.0, 0.7),
      TG_CASE("tan", tan(x), 2.0 * std::tan(v) * (1.0 + std::tan(v) * std::tan(v)), -0.9, 0.4),
      TG_CASE("tanh", tanh(x), -2.0 * std::tanh(v) * (1.0 - std::tanh(v) * std::tanh(v)), -1.1, 0.6),
      TG_CASE("sigmoid", sigmoid(x), sig(v) * (1.0 - sig(v)) * (1.0 - 2.0 * sig(v)), -3.0, 0.5, 40.0),
      TG_CASE("relu", relu(x), 0.0, -1.0, 2.0),
      TG_CASE("abs", abs(x), 0.0, -1.5, 2.5),
      TG_CASE("log1p", log1p(x), -1.0 / ((1.0 + v) * (1.0 + v)), -0.5, 1e-3, 4.0),
      TG_CASE("expm1", expm1(x), std::exp(v), -0.7, 1e-4, 1.2),
      TG_CASE("erf", erf(x), -2.0 * v * k * std::exp(-v * v), -0.8, 0.3),
      TG_CASE("softplus", softplus(x), sig(v) * (1.0 - sig(v)), -2.0, 0.0, 3.0),
      TG_CASE("pow(x, 3)", pow(x, 3.0), 6.0 * v, -1.5, 2.0),
      TG_CASE("pow(2, x)", pow(2.0, x), std::pow(2.0, v) * std::log(2.0) * std::log(2.0), -1.0, 1.5),
      TG_CASE("pow(x, x)", pow(x, x), std::pow(v, v) * ((std::log(v) + 1) * (std::log(v) + 1) + 1.0 / v), 0.5, 1.5),
      TG_CASE("x * x / (1 + x)", x * x / (1.0 + x), 2.0 / ((1.0 + v) * (1.0 + v) * (1.0 + v)), 0.5, 2.0),
      TG_CASE("2 / x - x", 2.0 / x - x, 4.0 / (v * v * v), 0.5, -2.0),
      TG_CASE("max(x, x * x)", max(x, x * x), v > 1.0 || v < 0.0 ? 2.0 : 0.0, 0.5, 2.0),
      TG_CASE("min(x, x * x)", min(x, x * x), v > 1.0 || v < 0.0 ? 0.0 : 2.0, 0.5, 2.0),
  };
}

#undef TG_CASE

}  // namespace

TEST_CASE("Dual<double>: each function's tangent matches central differences") {
  for (const Case& c : cases()) {
    for (double x : c.points) {
      CAPTURE(c.name);
      CAPTURE(x);
      const Dual<double> y = c.on_double(Dual<double>(x, 1.0));
      const double h = 1e-6 * std::max(1.0, std::abs(x));
      const double fd = (c.on_double(Dual<double>(x + h)).value - c.on_double(Dual<double>(x - h)).value) / (2 * h);
      CHECK(y.tangent == doctest::Approx(fd).epsilon(1e-6));
    }
  }
}

TEST_CASE("Dual<Value>: a reverse sweep through the tangent gives the second derivative") {
  for (const Case& c : cases()) {
    for (double x : c.points) {
      CAPTURE(c.name);
      CAPTURE(x);
      tapegrad::Tape tape;
      tapegrad::Tape::Scope use(tape);
      Value xv = x;
      const Dual<Value> y = c.on_value(Dual<Value>(xv, Value(1.0)));
      // The values and tangents equal the plain dual's.
      const Dual<double> plain = c.on_double(Dual<double>(x, 1.0));
      CHECK(y.value.data() == doctest::Approx(plain.value).epsilon(1e-15));
      CHECK(y.tangent.data() == doctest::Approx(plain.tangent).epsilon(1e-15));
      y.tangent.backward();  // d(f'(x) * 1)/dx = f''(x)
      CHECK(xv.grad() == doctest::Approx(c.second(x)).epsilon(1e-12));
    }
  }
}

TEST_CASE("Dual: kinks and ties follow the scalar functions") {
  SUBCASE("relu'(0) = 0 and abs'(0) = 0") {
    CHECK(relu(Dual<double>(0.0, 1.0)).tangent == 0.0);
    CHECK(abs(Dual<double>(0.0, 1.0)).tangent == 0.0);
  }
  SUBCASE("a tie of max splits the slope: max(x, x) has slope 1, max(x, 2 - x) at 1 has slope 0") {
    const Dual<double> x(1.0, 1.0);
    CHECK(max(x, x).tangent == 1.0);
    CHECK(max(x, 2.0 - x).tangent == 0.0);  // (1 + (-1)) / 2
    CHECK(min(x, 2.0 - x).tangent == 0.0);
  }
  SUBCASE("a constant has tangent zero") {
    const Dual<double> c = 5.0;
    CHECK(c.tangent == 0.0);
    CHECK((c * Dual<double>(2.0, 1.0)).tangent == 5.0);
  }
}
