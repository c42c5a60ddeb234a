// SPDX-License-Identifier: MIT
//
// Chapter 2: the chain rule, reuse, accumulation and zeroing.
//
// backward() applies the chain rule one node at a time. When a value is used
// twice, its gradient is the sum over both paths. Leaf gradients keep adding
// up across backward() calls until you zero them, which is what makes
// accumulating gradients over several batches natural.

#include <doctest/doctest.h>

#include <cmath>

#include "tapegrad/scalar.hpp"

using tapegrad::Value;

TEST_CASE("tutorial 2: the chain rule, one node at a time") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  Value x = 2.0;
  Value y = x * x + 3.0 * x;  // y = x^2 + 3x
  REQUIRE(y.data() == 10.0);

  SUBCASE("backward() fills dy/dx = 2x + 3") {
    y.backward();
    CHECK(x.grad() == doctest::Approx(7.0));
  }

  SUBCASE("a composition multiplies slopes: d sin(x^2)/dx = cos(x^2) * 2x") {
    Value s = sin(x * x);
    s.backward();
    CHECK(x.grad() == doctest::Approx(std::cos(4.0) * 4.0));
  }
}

TEST_CASE("tutorial 2: a value used twice gets the sum of both paths") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  Value a = 3.0;
  Value b = a * 2.0;  // path 1: db/da = 2
  Value c = a * a;    // path 2: dc/da = 2a = 6
  Value out = b + c;  // d out/da = 2 + 6
  out.backward();
  CHECK(a.grad() == 8.0);

  SUBCASE("a shared subexpression is visited once") {
    // s feeds both terms; the sweep still reaches s exactly once, with the
    // summed gradient 1 + 1 = 2 on it.
    Value s = a + 1.0;
    Value t = s * 1.0 + s * 1.0;
    t.backward();
    CHECK(s.grad() == 2.0);
  }
}

TEST_CASE("tutorial 2: leaf gradients accumulate until zeroed") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  Value w = 0.5;
  Value loss = w * 4.0;  // d loss/dw = 4

  loss.backward();
  CHECK(w.grad() == 4.0);

  // A second backward() adds another 4: gradients add up, as in PyTorch.
  loss.backward();
  CHECK(w.grad() == 8.0);

  // Intermediates hold the gradient of the latest sweep only.
  CHECK(loss.grad() == 1.0);

  w.zero_grad();
  CHECK(w.grad() == 0.0);
  loss.backward();
  CHECK(w.grad() == 4.0);
}

TEST_CASE("tutorial 2: two roots over one recorded graph") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  Value p = 2.0, q = 5.0;
  Value f = p * q;  // df/dp = q = 5
  Value g = p + q;  // dg/dp = 1

  f.backward();
  CHECK(p.grad() == 5.0);
  p.zero_grad();
  q.zero_grad();

  g.backward();  // the same tape, another root: only g's gradients
  CHECK(p.grad() == 1.0);
  CHECK(q.grad() == 1.0);
}
