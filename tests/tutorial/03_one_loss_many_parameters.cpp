// SPDX-License-Identifier: MIT
//
// Chapter 3: one loss is one number, yet each parameter gets its own part.
//
// A total loss like 13.0 looks like a single number, but the tape remembers
// how it was made, and that record decides which parameter receives which
// gradient. stop_gradient cuts the record on purpose: a parameter behind the
// barrier hears from one loss only.

#include <doctest/doctest.h>

#include <string>

#include "tapegrad/scalar.hpp"

using tapegrad::Value;

TEST_CASE("tutorial 3: a^2 + b^2 routes 4 to a and 6 to b") {
  auto total = [](Value a, Value b) {
    Value loss_a = a * a;  // 4
    Value loss_b = b * b;  // 9
    return loss_a + loss_b;
  };

  // The functional form, as JAX writes grad(f, argnums=(0, 1)).
  auto [value, grads] = tapegrad::value_and_grad(total, 2.0, 3.0);
  CHECK(value == 13.0);
  CHECK(grads[0] == 4.0);  // only from loss_a: d(a^2)/da = 2a
  CHECK(grads[1] == 6.0);  // only from loss_b: d(b^2)/db = 2b

  auto [ga, gb] = tapegrad::grad(total, 2.0, 3.0);
  CHECK(ga == 4.0);
  CHECK(gb == 6.0);
}

namespace {

// A two-loss model in miniature. A shared "encoder" parameter v makes a
// feature; the first loss trains v directly; a "head" parameter h reads the
// feature for the second loss. With the barrier, the second loss cannot move v.
struct TwoLossModel {
  Value v = 1.5;  // encoder parameter
  Value h = 0.5;  // head parameter

  Value total(bool barrier) {
    Value feature = v * 2.0;                   // the shared feature: 3
    Value loss_one = pow(feature - 1.0, 2.0);  // (3 - 1)^2 = 4
    Value seen = barrier ? tapegrad::stop_gradient(feature) : feature;
    Value loss_two = pow(seen * h - 2.0, 2.0);  // (1.5 - 2)^2 = 0.25
    return loss_one + loss_two;                 // 4.25
  }
};

}  // namespace

TEST_CASE("tutorial 3: stop_gradient decides who hears which loss") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  TwoLossModel m;

  // Hand derivation. feature f = 2v = 3, seen s = f.
  //   loss_one = (f - 1)^2        d/dv = 2(f - 1) * 2       = 8
  //   loss_two = (s h - 2)^2      d/dh = 2(s h - 2) * s     = 2(-0.5)(3)   = -3
  //                               d/dv = 2(s h - 2) * h * 2 = 2(-0.5)(0.5)(2) = -1 (only without the barrier)

  SUBCASE("with the barrier, v gets gradient from loss_one only") {
    Value loss = m.total(true);
    CHECK(loss.data() == doctest::Approx(4.25));
    loss.backward();
    CHECK(m.v.grad() == doctest::Approx(8.0));
    CHECK(m.h.grad() == doctest::Approx(-3.0));
    // The barrier is a node of its own, drawn as a cut edge.
    CHECK(tapegrad::to_dot(loss).find("stop_gradient") != std::string::npos);
    CHECK(tapegrad::tape_table(loss).find("(cut)") != std::string::npos);
  }

  SUBCASE("without it, v hears both losses: 8 + (-1) = 7") {
    Value loss = m.total(false);
    CHECK(loss.data() == doctest::Approx(4.25));
    loss.backward();
    CHECK(m.v.grad() == doctest::Approx(7.0));
    CHECK(m.h.grad() == doctest::Approx(-3.0));
  }
}
