// SPDX-License-Identifier: MIT
//
// Chapter 14: dual numbers, derivatives carried forward.
//
// Chapter 1 built x * y + 1 and walked it backward. Here we walk it forward:
// every number carries a second one, its tangent, the derivative of that
// number along a direction we choose by seeding the inputs. Each operation
// computes its value and its tangent together, so the derivative arrives with
// the result, in one pass and with no tape.
//
// The worked table (seed dx = 1, dy = 0, which asks for d/dx):
//
//   node          value   tangent                          rule
//   x             2       1                                 seed
//   y             3       0                                 seed
//   z = x * y     6       dx * y + x * dy = 1*3 + 2*0 = 3   product rule
//   loss = z + 1  7       dz + 0 = 3                        sum rule
//
// So d loss/dx = 3 = y, the number chapter 1's backward() left in x.grad().
// Seeding dy = 1 instead gives d loss/dy = 2 = x: forward mode needs one pass
// per input direction, reverse mode one sweep per output.

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "tapegrad/autodiff/higher_order.hpp"
#include "tapegrad/scalar.hpp"

using tapegrad::Dual;
using tapegrad::Value;

TEST_CASE("tutorial 14: x * y + 1 carried forward, node by node") {
  Dual<double> x(2.0, 1.0);  // value 2, tangent 1: we differentiate along x
  Dual<double> y(3.0, 0.0);  // y is held fixed along this direction

  Dual<double> z = x * y;
  CHECK(z.value == 6.0);
  CHECK(z.tangent == 3.0);  // 1 * 3 + 2 * 0

  Dual<double> loss = z + 1.0;
  CHECK(loss.value == 7.0);
  CHECK(loss.tangent == 3.0);  // the constant 1 has tangent 0

  SUBCASE("seeding y instead gives d loss/dy = x = 2") {
    Dual<double> loss_y = Dual<double>(2.0, 0.0) * Dual<double>(3.0, 1.0) + 1.0;
    CHECK(loss_y.tangent == 2.0);
  }

  SUBCASE("the same numbers as the reverse sweep of chapter 1") {
    tapegrad::Tape tape;
    tapegrad::Tape::Scope use(tape);
    Value xv = 2.0, yv = 3.0;
    Value lv = xv * yv + 1.0;
    lv.backward();
    CHECK(xv.grad() == loss.tangent);
  }
}

TEST_CASE("tutorial 14: a nonlinearity, y = x^2 + 3x then sin") {
  // At x = 2 with tangent 1:
  //   node        value             tangent
  //   x           2                 1
  //   a = x * x   4                 1*2 + 2*1 = 4         (product rule)
  //   b = 3 * x   6                 3 * 1 = 3
  //   c = a + b   10                4 + 3 = 7             (chapter 2's 2x + 3)
  //   s = sin c   sin 10            cos(10) * 7           (chain rule: cos c dc)
  Dual<double> x(2.0, 1.0);
  Dual<double> a = x * x, b = 3.0 * x, c = a + b, s = sin(c);
  CHECK(a.tangent == 4.0);
  CHECK(b.tangent == 3.0);
  CHECK(c.tangent == 7.0);
  CHECK(s.value == std::sin(10.0));
  CHECK(s.tangent == std::cos(10.0) * 7.0);
}

TEST_CASE("tutorial 14: duals of Values give second derivatives") {
  // With Dual<Value>, both columns of the table are recorded on the tape. The
  // tangent of c = x^2 + 3x is the Value 2x + 3 (times the seed 1), and a
  // reverse sweep from it gives d(2x + 3)/dx = 2: the second derivative.
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value xv = 2.0;
  Dual<Value> x(xv, Value(1.0));
  Dual<Value> c = x * x + 3.0 * x;
  CHECK(c.value.data() == 10.0);
  CHECK(c.tangent.data() == 7.0);
  c.tangent.backward();
  CHECK(xv.grad() == 2.0);

  SUBCASE("hvp does this for many inputs: x * y + 1 has H = [[0, 1], [1, 0]]") {
    // Seeding the direction v = (1, 0): H v = (0, 1). The tangent of the
    // table above is the Value y (= 3); sweeping back from it reaches y
    // with 1 and x with 0.
    auto f = [](const auto& in) { return in[0] * in[1] + 1.0; };
    const auto r = tapegrad::hvp(f, std::vector{2.0, 3.0}, {1.0, 0.0});
    CHECK(r.value == 7.0);
    CHECK(r.grad == std::vector{3.0, 2.0});
    CHECK(r.hvp == std::vector{0.0, 1.0});
  }
}
