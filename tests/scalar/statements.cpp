// SPDX-License-Identifier: MIT
//
// Statement-level recording: an expression whose intermediates are never
// named records one statement, whose children are the values it reads and
// whose local gradients are its partial derivatives; a named intermediate is
// a statement of its own. The rules that keep this safe: copies, labels,
// marks, infinite slopes and stop_gradient all end a statement.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/scalar.hpp"

using tapegrad::Tape;
using tapegrad::Value;

TEST_CASE("statements: an expression records one statement with its partials") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 2.0, y = 3.0;

  SUBCASE("x * y + sin(x): children [x, y, x], partials [y, x, cos x]") {
    Value z = x * y + sin(x);
    CHECK(tape.size() == 1);
    CHECK(z.op() == "add");  // the outermost operation
    CHECK(z.data() == doctest::Approx(6.0 + std::sin(2.0)));
    // C++ leaves the order of the two operands' evaluation open, so compare
    // (child, partial) pairs as a set: d/dx (x*y) = y = 3, d/dy (x*y) = x = 2,
    // d/dx sin x = cos 2.
    const auto kids = z.children();
    const auto local = z.local_grads();
    REQUIRE(kids.size() == 3);
    REQUIRE(local.size() == 3);
    std::vector<std::pair<double, double>> edges;
    for (std::size_t i = 0; i < 3; ++i) edges.emplace_back(kids[i].data(), local[i]);
    std::sort(edges.begin(), edges.end());
    CHECK(edges == std::vector<std::pair<double, double>>{{2.0, std::cos(2.0)}, {2.0, 3.0}, {3.0, 2.0}});
    z.backward();
    CHECK(x.grad() == doctest::Approx(3.0 + std::cos(2.0)));
    CHECK(y.grad() == 2.0);
  }

  SUBCASE("constants fold into the partials: (2x + 1) / y") {
    Value z = (2.0 * x + 1.0) / y;
    CHECK(tape.size() == 1);
    // d/dx = 2 / y = 2/3; d/dy = -(2x + 1) / y^2 = -5/9
    const auto g = z.local_grads();
    REQUIRE(g.size() == 2);
    CHECK(g[0] == doctest::Approx(2.0 / 3.0));
    CHECK(g[1] == doctest::Approx(-5.0 / 9.0));
  }

  SUBCASE("a named intermediate is a statement of its own") {
    Value p = x * y;
    Value z = p + 1.0;
    CHECK(tape.size() == 2);
    REQUIRE(z.children().size() == 1);
    CHECK(z.children()[0].data() == 6.0);
    CHECK(p.data() == 6.0);  // p is untouched by z's recording
  }

  SUBCASE("s += a * b in a loop builds one statement") {
    std::vector<Value> a{1.0, 2.0, 3.0}, b{4.0, 5.0, 6.0};
    Value s = a[0] * b[0];
    for (std::size_t i = 1; i < 3; ++i) s += a[i] * b[i];
    CHECK(tape.size() == 1);
    CHECK(s.data() == 32.0);  // 4 + 10 + 18
    CHECK(s.children().size() == 6);
    s.backward();
    CHECK(a[2].grad() == 6.0);
    CHECK(b[1].grad() == 2.0);
  }
}

TEST_CASE("statements: what ends a statement") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 2.0;

  SUBCASE("a copy: both handles keep the value they were given") {
    Value t = x * x;
    Value keep = t;
    Value u = std::move(t) + 1.0;  // t is shared: a new statement
    CHECK(tape.size() == 2);
    CHECK(keep.data() == 4.0);
    CHECK(u.data() == 5.0);
  }

  SUBCASE("a copy moved on: the original keeps its value") {
    Value t = x * x;
    Value copy = t;
    Value u = std::move(copy) + 1.0;  // the copy names t's statement: a new one
    CHECK(tape.size() == 2);
    CHECK(t.data() == 4.0);
    CHECK(u.data() == 5.0);
    Value assigned;
    assigned = t;
    Value w = std::move(assigned) * 3.0;
    CHECK(t.data() == 4.0);
    CHECK(w.data() == 12.0);
    w.backward();
    CHECK(x.grad() == 12.0);  // d/dx 3x^2
  }

  SUBCASE("a handle from stopped_input() keeps its value") {
    Value t = x * x;
    Value cut = tapegrad::stop_gradient(t);
    Value source = cut.stopped_input();
    Value u = std::move(t) * 5.0;
    CHECK(source.data() == 4.0);
    CHECK(u.data() == 20.0);
  }

  SUBCASE("std::move of the only handle hands the statement over") {
    Value t = x * x;
    Value u = std::move(t) + 1.0;
    CHECK(tape.size() == 1);
    CHECK(u.data() == 5.0);
    CHECK_FALSE(t.defined());  // NOLINT(bugprone-use-after-move): consumed, as a move leaves it
    CHECK_THROWS_AS((void)t.data(), tapegrad::stale_handle_error);
  }

  SUBCASE("a labelled value is never rewritten") {
    Value t = x * x;
    t.label("t");
    Value u = std::move(t) + 1.0;
    CHECK(tape.size() == 2);
    CHECK(u.children()[0].label() == "t");
  }

  SUBCASE("a mark: statements before it stay as they are, so a rewind frees all after it") {
    Value t = x * x;
    const auto m = tape.mark();
    Value u = std::move(t) + 1.0;
    CHECK(tape.size() == 2);
    tape.rewind(m);
    CHECK_FALSE(u.is_alive());
  }

  SUBCASE("an infinite slope stays in the statement of the op that made it") {
    Value z = 0.0;
    Value y = sqrt(z) * 0.0;  // 0 * (slope inf) passes nothing on, as before
    CHECK(tape.size() == 2);
    y.backward();
    CHECK(z.grad() == 0.0);
  }

  SUBCASE("stop_gradient stays a barrier") {
    Value y = tapegrad::stop_gradient(x * x) * 3.0;
    CHECK(tape.size() == 3);
    y.backward();
    CHECK(x.grad() == 0.0);
    CHECK(y.children()[0].op() == "stop_gradient");
  }

  SUBCASE("the same temporary on both sides: x*x + (same) is read twice") {
    Value t = x * x;
    Value u = std::move(t) + t;  // NOLINT(bugprone-use-after-move)
    CHECK(u.data() == 8.0);
    u.backward();
    CHECK(x.grad() == 8.0);  // d/dx 2x^2 = 4x
  }
}

TEST_CASE("statements: fused gradients match per-operation ones") {
  Tape tape;
  Tape::Scope use(tape);
  // f(a, b) = tanh(a*b + 0.5) * exp(-a) / (1 + b*b) - log1p(a*a)
  auto f = [](const auto& a, const auto& b) { return tanh(a * b + 0.5) * exp(-a) / (1.0 + b * b) - log1p(a * a); };
  Value a = 0.7, b = -1.3;
  Value fused = f(a, b);
  fused.backward();
  // The same function with every intermediate named: one statement per op.
  Value a2 = 0.7, b2 = -1.3;
  Value ab = a2 * b2, s = ab + 0.5, th = tanh(s), na = -a2, e = exp(na), bb = b2 * b2, den = 1.0 + bb, num = th * e,
        q = num / den, aa = a2 * a2, l = log1p(aa), named = q - l;
  named.backward();
  CHECK(fused.data() == doctest::Approx(named.data()).epsilon(1e-15));
  CHECK(a.grad() == doctest::Approx(a2.grad()).epsilon(1e-14));
  CHECK(b.grad() == doctest::Approx(b2.grad()).epsilon(1e-14));
  // A function that returns an unnamed expression works with every driver.
  CHECK(tapegrad::gradcheck([&](Value x, Value y) { return f(x, y); }, 0.7, -1.3).passed);
  const auto g = tapegrad::grad([&](Value x, Value y) { return f(x, y); }, 0.7, -1.3);
  CHECK(g[0] == doctest::Approx(a2.grad()).epsilon(1e-14));
}
