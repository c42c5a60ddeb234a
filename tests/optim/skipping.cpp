// SPDX-License-Identifier: MIT
//
// Which parameters an optimizer touches, and how it counts their steps.
//
// PyTorch's rule: a parameter whose gradient is None is skipped by step(),
// and Adam's bias correction uses that parameter's own step count. Here
// "None" is `has_grad() == false`: no gradient reached the tensor since its
// last zero_grad(). Every number below follows from the update formulas in
// the optimizers' documentation, worked by hand in the comments.

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::Shape;
using DTensor = tapegrad::basic_tensor<double>;
namespace optim = tapegrad::optim;

using tapegrad::testing::parameter;

namespace {

void set_first_grad(DTensor& p, double g) { p.grad_mut()[0] = g; }

// loss = sum(c * w): backward leaves dloss/dw = c in w's gradient.
void backward_linear(const DTensor& w, double c) {
  tapegrad::sum(w * c).backward();
  tapegrad::Tape::active().clear();
}

}  // namespace

TEST_CASE("has_grad says whether a gradient reached a tensor since its last zero_grad") {
  DTensor w = parameter({1.0, 2.0});

  SUBCASE("reading grad() leaves it false") {
    CHECK(w.grad()[0] == 0.0);  // reads zeros...
    CHECK(w.grad()[1] == 0.0);
    CHECK_FALSE(w.has_grad());  // ...and is still "no gradient"
  }

  SUBCASE("backward sets it, with the gradient dloss/dw = 3") {
    backward_linear(w, 3.0);
    CHECK(w.has_grad());
    CHECK(w.grad()[0] == 3.0);
  }

  SUBCASE("zero_grad sets the gradient to none and keeps its buffer") {
    backward_linear(w, 3.0);
    const double* before = w.grad().data();
    w.zero_grad();
    CHECK_FALSE(w.has_grad());
    CHECK(w.grad()[0] == 0.0);
    CHECK(w.grad().data() == before);  // no reallocation in a steady loop
    backward_linear(w, 5.0);           // accumulates from zero again: 0 + 5
    CHECK(w.has_grad());
    CHECK(w.grad()[1] == 5.0);
  }
}

TEST_CASE("a parameter without a gradient is skipped by every optimizer") {
  SUBCASE("AdamW: a parameter whose gradient was only read is not decayed") {
    // used: w = 1, g = 2 (from loss = sum(2 w)), lr = 0.1, wd = 0.5:
    //   decay 1 * (1 - 0.1 * 0.5) = 0.95, then Adam's first step lr = 0.1: 0.85.
    DTensor used = parameter({1.0}), read_only = parameter({1.0});
    optim::basic_adamw<double> opt({used, read_only}, {.lr = 0.1, .weight_decay = 0.5});
    REQUIRE(read_only.grad()[0] == 0.0);  // a read, as a logger or a test would do
    backward_linear(used, 2.0);
    opt.step();
    CHECK(used.item() == doctest::Approx(0.85).epsilon(1e-8));
    CHECK(read_only.item() == 1.0);  // 0.95 if it had been decayed
    CHECK(opt.param_step_count(0) == 1);
    CHECK(opt.param_step_count(1) == 0);
  }

  SUBCASE("Adam with L2 weight decay: a zeroed parameter stays put") {
    DTensor w = parameter({1.0});
    optim::basic_adam<double> opt({w}, {.lr = 0.1, .weight_decay = 0.5});
    set_first_grad(w, 0.0);
    opt.step();  // g' = 0 + 0.5 * 1: Adam's first step is lr: w = 0.9
    REQUIRE(w.item() == doctest::Approx(0.9).epsilon(1e-8));
    opt.zero_grad();
    opt.step();
    CHECK(w.item() == doctest::Approx(0.9).epsilon(1e-8));
    CHECK(opt.step_count() == 2);
    CHECK(opt.param_step_count(0) == 1);
  }

  SUBCASE("SGD with momentum: no momentum step without a gradient") {
    // lr = 0.1, mu = 0.9, w from 0, g = 1:
    //   step 1: b = 1, w = -0.1
    //   step 2 (zeroed): skipped, b stays 1, w stays -0.1
    //   step 3 (g = 1): b = 0.9 * 1 + 1 = 1.9, w = -0.1 - 0.19 = -0.29
    DTensor w = parameter({0.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1, .momentum = 0.9});
    set_first_grad(w, 1.0);
    opt.step();
    REQUIRE(w.item() == doctest::Approx(-0.1));
    opt.zero_grad();
    opt.step();
    CHECK(w.item() == doctest::Approx(-0.1));
    CHECK(opt.state()[0].data[0] == doctest::Approx(1.0));
    set_first_grad(w, 1.0);
    opt.step();
    CHECK(w.item() == doctest::Approx(-0.29));
    CHECK(opt.param_step_count(0) == 2);
  }

  SUBCASE("SGD with weight decay: no decay without a gradient") {
    DTensor w = parameter({1.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1, .weight_decay = 0.5});
    opt.step();
    CHECK(w.item() == 1.0);  // 1 - 0.1 * 0.5 * 1 = 0.95 if it had been decayed
  }

  SUBCASE("clip_grad_norm leaves a parameter without a gradient as it is") {
    // norm over a alone: |(3, 4)| = 5; clipped to 1: (0.6, 0.8).
    DTensor a = parameter({0.0, 0.0}), b = parameter({0.0});
    set_first_grad(b, 7.0);
    b.zero_grad();  // b had a gradient once; now it has none
    a.grad_mut()[0] = 3.0;
    a.grad_mut()[1] = 4.0;
    CHECK(optim::clip_grad_norm(std::vector<DTensor>{a, b}, 1.0) == doctest::Approx(5.0));
    CHECK(a.grad()[0] == doctest::Approx(0.6));
    CHECK_FALSE(b.has_grad());
  }
}

TEST_CASE("Adam counts steps per parameter, as PyTorch does") {
  SUBCASE("a gradient that first arrives at step 4 gets the bias correction of t = 1") {
    // At its first update m = 0.1 g, v = 0.001 g^2, and with t = 1
    //   m_hat = m / (1 - 0.9) = g, v_hat = v / (1 - 0.999) = g^2,
    //   w = 0 - 0.01 * g / (g + 1e-8) = -0.0100 (for g = 1: -0.0099999999).
    // With the optimizer's count t = 4 instead:
    //   m_hat = 0.1 / (1 - 0.9^4) = 0.29078, v_hat = 0.001 / (1 - 0.999^4) = 0.25038,
    //   w = -0.01 * 0.29078 / 0.50038 = -0.00581, the wrong answer.
    DTensor early = parameter({0.0}), late = parameter({0.0});
    optim::basic_adam<double> opt({early, late}, {.lr = 0.01});
    for (int step = 1; step <= 4; ++step) {
      opt.zero_grad();
      set_first_grad(early, 1.0);
      if (step == 4) set_first_grad(late, 1.0);
      opt.step();
    }
    CHECK(late.item() == doctest::Approx(-0.0100).epsilon(1e-9));
    CHECK(early.item() == doctest::Approx(-0.0400).epsilon(1e-9));  // four steps of lr each
    CHECK(opt.step_count() == 4);
    CHECK(opt.param_step_count(0) == 4);
    CHECK(opt.param_step_count(1) == 1);
  }

  SUBCASE("two parameters over five steps, one of them skipping three") {
    // lr = 0.1, betas (0.9, 0.999), eps 1e-8, both from 0.
    // a: g = 1 at every step. A constant gradient makes every step lr, so
    //    a = -0.1, -0.2, ..., -0.5.
    // b: g = 2 at step 2 and g = -1 at step 5, nothing at steps 1, 3, 4.
    //    its t = 1 (step 2): m = 0.2, v = 0.004, m_hat = 2, v_hat = 4
    //          b = -0.1 * 2 / (2 + 1e-8) = -0.0999999995
    //    its t = 2 (step 5): m = 0.9 * 0.2 - 0.1 = 0.08
    //          v = 0.999 * 0.004 + 0.001 * 1 = 0.004996
    //          m_hat = 0.08 / (1 - 0.81) = 0.4210526
    //          v_hat = 0.004996 / (1 - 0.998001) = 2.4992496, sqrt = 1.5809016
    //          b = -0.0999999995 - 0.1 * 0.4210526 / 1.5809016 = -0.1266337
    //    (with the optimizer's count, t = 2 then 5, b would end at -0.0939375)
    DTensor a = parameter({0.0}), b = parameter({0.0});
    optim::basic_adam<double> opt({a, b}, {.lr = 0.1});
    const std::vector<double> a_expected{-0.1, -0.2, -0.3, -0.4, -0.5};
    const std::vector<double> b_expected{0.0, -0.0999999995, -0.0999999995, -0.0999999995, -0.1266337033};
    for (int step = 1; step <= 5; ++step) {
      CAPTURE(step);
      opt.zero_grad();
      set_first_grad(a, 1.0);
      if (step == 2) set_first_grad(b, 2.0);
      if (step == 5) set_first_grad(b, -1.0);
      opt.step();
      CHECK(a.item() == doctest::Approx(a_expected[static_cast<std::size_t>(step - 1)]).epsilon(1e-8));
      CHECK(b.item() == doctest::Approx(b_expected[static_cast<std::size_t>(step - 1)]).epsilon(1e-9));
    }
    CHECK(opt.param_step_counts() == std::vector<std::uint64_t>{5, 2});
    const auto state = opt.state();  // exp_avg.0, exp_avg.1, exp_avg_sq.0, exp_avg_sq.1
    CHECK(state[1].data[0] == doctest::Approx(0.08));
    CHECK(state[3].data[0] == doctest::Approx(0.004996));
  }
}
