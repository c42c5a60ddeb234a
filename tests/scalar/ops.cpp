// SPDX-License-Identifier: MIT
//
// Every scalar op: its value, its gradient against central differences, and
// the gradients chosen at kinks and edges.

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tapegrad/scalar.hpp"

using tapegrad::Value;

namespace {

struct UnaryCase {
  std::string name;
  std::function<Value(Value)> f;
  std::function<double(double)> primal;
  std::vector<double> points;
};

struct BinaryCase {
  std::string name;
  std::function<Value(Value, Value)> f;
  std::function<double(double, double)> primal;
  std::vector<std::pair<double, double>> points;
};

}  // namespace

// The sweep: one line per op. A new op adds one line here.
TEST_CASE("scalar ops: values and gradients against finite differences") {
  const std::vector<UnaryCase> unary = {
      {"neg", [](Value x) { return -x; }, [](double x) { return -x; }, {-1.5, 0.3}},
      {"exp", [](Value x) { return exp(x); }, [](double x) { return std::exp(x); }, {-2.0, 0.0, 1.3}},
      {"log", [](Value x) { return log(x); }, [](double x) { return std::log(x); }, {0.2, 1.0, 7.5}},
      {"sqrt", [](Value x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, {0.04, 2.0, 9.0}},
      {"sin", [](Value x) { return sin(x); }, [](double x) { return std::sin(x); }, {-1.0, 0.0, 2.5}},
      {"cos", [](Value x) { return cos(x); }, [](double x) { return std::cos(x); }, {-1.0, 0.0, 2.5}},
      {"tan", [](Value x) { return tan(x); }, [](double x) { return std::tan(x); }, {-1.0, 0.2, 1.2}},
      {"tanh", [](Value x) { return tanh(x); }, [](double x) { return std::tanh(x); }, {-3.0, 0.0, 0.7}},
      {"sigmoid",
       [](Value x) { return sigmoid(x); },
       [](double x) { return 1 / (1 + std::exp(-x)); },
       {-30.0, -1.0, 0.0, 2.0, 30.0}},
      {"relu", [](Value x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, {-2.0, 0.5, 3.0}},
      {"abs", [](Value x) { return abs(x); }, [](double x) { return std::abs(x); }, {-2.0, 0.5}},
      {"log1p", [](Value x) { return log1p(x); }, [](double x) { return std::log1p(x); }, {-0.5, 1e-8, 3.0}},
      {"expm1", [](Value x) { return expm1(x); }, [](double x) { return std::expm1(x); }, {-2.0, 1e-8, 1.5}},
      {"erf", [](Value x) { return erf(x); }, [](double x) { return std::erf(x); }, {-1.0, 0.0, 0.8}},
      {"softplus",
       [](Value x) { return softplus(x); },
       [](double x) { return std::log1p(std::exp(x)); },
       {-20.0, -1.0, 0.0, 2.0, 20.0}},
      {"pow(x, 3)", [](Value x) { return pow(x, 3.0); }, [](double x) { return x * x * x; }, {-1.2, 0.5, 2.0}},
      {"pow(x, 0.5)", [](Value x) { return pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, {0.3, 4.0}},
      {"pow(2, x)", [](Value x) { return pow(2.0, x); }, [](double x) { return std::pow(2.0, x); }, {-1.0, 3.0}},
      {"max(x, 1)", [](Value x) { return max(x, 1.0); }, [](double x) { return std::max(x, 1.0); }, {0.0, 2.0}},
      {"min(x, 1)", [](Value x) { return min(x, 1.0); }, [](double x) { return std::min(x, 1.0); }, {0.0, 2.0}},
      {"x + 2", [](Value x) { return x + 2.0; }, [](double x) { return x + 2; }, {1.0}},
      {"2 - x", [](Value x) { return 2.0 - x; }, [](double x) { return 2 - x; }, {1.0}},
      {"x * 2", [](Value x) { return x * 2.0; }, [](double x) { return x * 2; }, {1.0}},
      {"3 / x", [](Value x) { return 3.0 / x; }, [](double x) { return 3 / x; }, {-2.0, 0.5}},
      {"x / 4", [](Value x) { return x / 4.0; }, [](double x) { return x / 4; }, {3.0}},
  };
  for (const UnaryCase& c : unary) {
    for (double p : c.points) {
      CAPTURE(c.name);
      CAPTURE(p);
      CHECK(tapegrad::value_and_grad(c.f, p).value == doctest::Approx(c.primal(p)).epsilon(1e-12));
      const auto r = tapegrad::gradcheck(c.f, p);
      CHECK_MESSAGE(r.passed, r.report());
    }
  }

  const std::vector<BinaryCase> binary = {
      {"add", [](Value a, Value b) { return a + b; }, [](double a, double b) { return a + b; }, {{1, 2}}},
      {"sub", [](Value a, Value b) { return a - b; }, [](double a, double b) { return a - b; }, {{1, 2}}},
      {"mul", [](Value a, Value b) { return a * b; }, [](double a, double b) { return a * b; }, {{-1.5, 2}}},
      {"div", [](Value a, Value b) { return a / b; }, [](double a, double b) { return a / b; }, {{1, -4}, {3, 0.5}}},
      {"pow",
       [](Value a, Value b) { return pow(a, b); },
       [](double a, double b) { return std::pow(a, b); },
       {{1.5, 2.5}, {0.3, -1.2}}},
      {"max",
       [](Value a, Value b) { return max(a, b); },
       [](double a, double b) { return std::max(a, b); },
       {{1, 2}, {3, -1}}},
      {"min",
       [](Value a, Value b) { return min(a, b); },
       [](double a, double b) { return std::min(a, b); },
       {{1, 2}, {3, -1}}},
      {"a sin(b) + a^2 / b",
       [](Value a, Value b) { return a * sin(b) + a * a / b; },
       [](double a, double b) { return a * std::sin(b) + a * a / b; },
       {{0.7, 1.3}}},
  };
  for (const BinaryCase& c : binary) {
    for (auto [a, b] : c.points) {
      CAPTURE(c.name);
      CAPTURE(a);
      CAPTURE(b);
      CHECK(tapegrad::value_and_grad(c.f, a, b).value == doctest::Approx(c.primal(a, b)).epsilon(1e-12));
      const auto r = tapegrad::gradcheck(c.f, a, b);
      CHECK_MESSAGE(r.passed, r.report());
    }
  }
}

TEST_CASE("scalar ops: gradients at kinks and edges are the documented choices") {
  auto slope = [](auto f, double x) { return tapegrad::grad(f, x); };

  SUBCASE("relu'(0) = 0 and abs'(0) = 0") {
    CHECK(slope([](Value x) { return relu(x); }, 0.0) == 0.0);
    CHECK(slope([](Value x) { return abs(x); }, 0.0) == 0.0);
  }

  SUBCASE("max and min split a tie in halves") {
    auto [ga, gb] = tapegrad::grad([](Value a, Value b) { return max(a, b); }, 2.0, 2.0);
    CHECK(ga == 0.5);
    CHECK(gb == 0.5);
    // so max(x, x) keeps slope 1 in x
    CHECK(slope([](Value x) { return max(x, x); }, 2.0) == 1.0);
    auto [ha, hb] = tapegrad::grad([](Value a, Value b) { return min(a, b); }, -1.0, -1.0);
    CHECK(ha == 0.5);
    CHECK(hb == 0.5);
  }

  SUBCASE("sqrt at 0 has an infinite slope, and 0 * that slope is 0, not NaN") {
    CHECK(std::isinf(slope([](Value x) { return sqrt(x); }, 0.0)));
    // 0 * sqrt(x): the sqrt node receives no gradient, so nothing multiplies inf.
    CHECK(slope([](Value x) { return sqrt(x) * 0.0; }, 0.0) == 0.0);
  }

  SUBCASE("pow with exponent 0 has slope 0 everywhere, even at 0") {
    CHECK(slope([](Value x) { return pow(x, 0.0); }, 0.0) == 0.0);
  }

  SUBCASE("pow(x, y) at x = 0 gives d/dy = 0 instead of 0 * log 0") {
    auto [gx, gy] = tapegrad::grad([](Value x, Value y) { return pow(x, y); }, 0.0, 2.0);
    CHECK(gx == 0.0);
    CHECK(gy == 0.0);
  }

  SUBCASE("log at 0 is -inf with slope +inf") {
    auto r = tapegrad::value_and_grad([](Value x) { return log(x); }, 0.0);
    CHECK(std::isinf(r.value));
    CHECK(r.grad[0] == std::numeric_limits<double>::infinity());
  }

  SUBCASE("sigmoid and softplus stay finite far from 0") {
    CHECK(tapegrad::value_and_grad([](Value x) { return sigmoid(x); }, -800.0).value == 0.0);
    CHECK(tapegrad::value_and_grad([](Value x) { return softplus(x); }, 800.0).value == 800.0);
    CHECK(slope([](Value x) { return softplus(x); }, 800.0) == 1.0);
  }
}

TEST_CASE("scalar ops: comparisons look at the data and record nothing") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value a = 1.0, b = 2.0;
  const auto before = tape.size();
  CHECK(a < b);
  CHECK(b > 1.5);
  CHECK(a == 1.0);
  CHECK(a != b);
  CHECK(tape.size() == before);
}

TEST_CASE("scalar ops: compound assignment") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  SUBCASE("records a node and rebinds the handle, as x = x + y would") {
    Value w = 1.0;
    Value x = w;
    x += 2.0;
    x *= w;  // x = (w + 2) * w: dx/dw = 2w + 2 = 4
    CHECK(x.data() == 3.0);
    x.backward();
    CHECK(w.grad() == 4.0);
  }

  SUBCASE("under NoGradGuard it updates a leaf in place, seen by every handle") {
    Value w = 1.0;
    Value alias = w;
    {
      tapegrad::NoGradGuard no_grad;
      w -= 0.25;
    }
    CHECK(w.is_leaf());
    CHECK(alias.data() == 0.75);
  }
}

TEST_CASE("scalar ops: a custom op is recorded under its own name") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value x = 8.0;
  // cbrt(x) = x^(1/3), slope (1/3) x^(-2/3)
  Value y = tapegrad::custom_unary(x, std::cbrt(x.data()), 1.0 / (3.0 * std::cbrt(64.0)), "cbrt");
  CHECK(y.data() == 2.0);
  CHECK(y.op() == "cbrt");
  y.backward();
  CHECK(x.grad() == doctest::Approx(1.0 / 12.0));

  Value z = tapegrad::custom_binary(x, y, x.data() * y.data(), y.data(), x.data(), "my_mul");
  CHECK(z.op() == "my_mul");
  CHECK(tapegrad::tape_table(z).find("my_mul") != std::string::npos);
}
