// SPDX-License-Identifier: MIT
//
// The optimizers, schedules and gradient clipping against numbers derived by
// hand. Gradients are written directly into the parameters' gradient buffers
// (as backward() would leave them), so each update can be followed on paper.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::Shape;
using tapegrad::value_error;
using DTensor = tapegrad::basic_tensor<double>;
namespace optim = tapegrad::optim;

using tapegrad::testing::parameter;

namespace {

void set_grad(DTensor& p, const std::vector<double>& g) {
  for (std::size_t i = 0; i < g.size(); ++i) p.grad_mut()[static_cast<Eigen::Index>(i)] = g[i];
}

}  // namespace

TEST_CASE("SGD") {
  SUBCASE("plain: w = w - lr g") {
    // [1, -2] - 0.1 * [0.5, 0.25] = [0.95, -2.025]
    DTensor w = parameter({1.0, -2.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1});
    set_grad(w, {0.5, 0.25});
    opt.step();
    CHECK(w.at({0}) == doctest::Approx(0.95));
    CHECK(w.at({1}) == doctest::Approx(-2.025));
    CHECK(opt.step_count() == 1);
    CHECK(opt.state().empty());  // plain SGD keeps no state
  }

  SUBCASE("weight decay adds wd * w to the gradient") {
    // g' = 0.5 + 0.1 * 1 = 0.6; w = 1 - 0.1 * 0.6 = 0.94
    DTensor w = parameter({1.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1, .weight_decay = 0.1});
    set_grad(w, {0.5});
    opt.step();
    CHECK(w.item() == doctest::Approx(0.94));
  }

  SUBCASE("Nesterov looks ahead: the step is g + mu b") {
    // constant g = 1, mu = 0.9, lr = 0.1, from 0:
    // t = 1: b = 1,               step = 1 + 0.9 * 1   = 1.9,  w = -0.19
    // t = 2: b = 0.9 * 1 + 1 = 1.9, step = 1 + 0.9 * 1.9 = 2.71, w = -0.19 - 0.271 = -0.461
    DTensor w = parameter({0.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
    set_grad(w, {1.0});
    opt.step();
    CHECK(w.item() == doctest::Approx(-0.19));
    opt.step();  // the gradient is still 1: nothing zeroed it
    CHECK(w.item() == doctest::Approx(-0.461));
    const auto state = opt.state();
    REQUIRE(state.size() == 1);
    CHECK(state[0].name == "momentum_buffer.0");
    CHECK(state[0].data[0] == doctest::Approx(1.9));
  }

  SUBCASE("parameters must be leaves that require grad (options: tests/optim/options.cpp)") {
    DTensor w = parameter({0.0});
    DTensor constant(Shape{1}, 1.0);  // no requires_grad
    CHECK_THROWS_WITH_AS(optim::basic_sgd<double>({constant}), doctest::Contains("does not require grad"), value_error);
    DTensor result = w * 2.0;  // an op result, not a leaf
    CHECK_THROWS_WITH_AS(optim::basic_sgd<double>({result}), doctest::Contains("not a leaf"), value_error);
    tapegrad::Tape::active().clear();
  }
}

TEST_CASE("Adam") {
  SUBCASE("with a constant gradient every step is lr, at any scale") {
    // g constant: m_hat = g and v_hat = g^2 at every t (that is what bias
    // correction is for), so the step is lr * g / (|g| + eps) = lr.
    for (double g : {2.0, 1000.0, 1e-3}) {
      CAPTURE(g);
      DTensor w = parameter({0.0});
      optim::basic_adam<double> opt({w}, {.lr = 0.01});
      set_grad(w, {g});
      for (int t = 0; t < 3; ++t) opt.step();
      CHECK(w.item() == doctest::Approx(-3 * 0.01 * g / (g + 1e-8)).epsilon(1e-10));
    }
  }

  SUBCASE("the moments are stored per parameter, laid out like the parameters") {
    // one step with g = [0.5, -1]: m = 0.1 g = [0.05, -0.1], v = 0.001 g^2 = [0.00025, 0.001]
    DTensor a = parameter({0.0, 0.0}), b = parameter({1.0});
    optim::basic_adam<double> opt({a, b});
    set_grad(a, {0.5, -1.0});
    set_grad(b, {0.0});
    opt.step();
    const auto state = opt.state();
    REQUIRE(state.size() == 4);
    CHECK(state[0].name == "exp_avg.0");
    CHECK(state[1].name == "exp_avg.1");
    CHECK(state[2].name == "exp_avg_sq.0");
    CHECK(state[3].name == "exp_avg_sq.1");
    CHECK(state[0].shape == Shape{2});
    CHECK(state[0].data[0] == doctest::Approx(0.05));
    CHECK(state[0].data[1] == doctest::Approx(-0.1));
    CHECK(state[2].data[0] == doctest::Approx(0.00025));
    CHECK(state[2].data[1] == doctest::Approx(0.001));
    CHECK(b.item() == 1.0);  // g = 0: m = v = 0 and the step is 0 / (0 + eps) = 0
  }

  SUBCASE("L2 weight decay enters the moments") {
    // g = 0, w = 1, wd = 0.1: g' = 0.1, and Adam's first step is lr in g's direction: w = 1 - 0.01
    DTensor w = parameter({1.0});
    optim::basic_adam<double> opt({w}, {.lr = 0.01, .weight_decay = 0.1});
    set_grad(w, {0.0});
    opt.step();
    CHECK(w.item() == doctest::Approx(0.99).epsilon(1e-8));
  }
}

TEST_CASE("AdamW decouples the weight decay from the gradient") {
  SUBCASE("with a zero gradient only the decay acts: w = w (1 - lr wd)") {
    // Compare Adam's L2 above (w = 0.99): here the decay never passes through
    // Adam's normalization, so it is exactly 1 * (1 - 0.01 * 0.1) = 0.999.
    DTensor w = parameter({1.0});
    optim::basic_adamw<double> opt({w}, {.lr = 0.01, .weight_decay = 0.1});
    set_grad(w, {0.0});
    opt.step();
    CHECK(w.item() == doctest::Approx(0.999).epsilon(1e-14));
    CHECK(opt.name() == "AdamW");
  }

  SUBCASE("decay first, then Adam's step") {
    // w = 1, g = 0.5, lr = 0.1, wd = 0.01: shrink to 0.999, then step lr * 0.5 / (0.5 + eps) = 0.1
    DTensor w = parameter({1.0});
    optim::basic_adamw<double> opt({w}, {.lr = 0.1, .weight_decay = 0.01});
    set_grad(w, {0.5});
    opt.step();
    CHECK(w.item() == doctest::Approx(0.899).epsilon(1e-8));
  }

  SUBCASE("the default weight decay is 0.01, as PyTorch's") {
    DTensor w = parameter({1.0});
    optim::basic_adamw<double> opt({w});
    CHECK(opt.options().weight_decay == 0.01);
    CHECK(opt.lr() == 1e-3);
  }
}

TEST_CASE("what every optimizer shares") {
  SUBCASE("a parameter that never received a gradient is skipped") {
    DTensor used = parameter({1.0}), unused = parameter({1.0});
    optim::basic_adamw<double> opt({used, unused}, {.lr = 0.1, .weight_decay = 0.5});
    set_grad(used, {1.0});
    REQUIRE_FALSE(unused.has_grad());
    opt.step();
    CHECK(used.item() != 1.0);
    CHECK(unused.item() == 1.0);  // not even decayed
  }

  SUBCASE("zero_grad() zeroes every parameter's gradient") {
    DTensor a = parameter({1.0, 2.0}), b = parameter({3.0});
    optim::basic_sgd<double> opt({a, b});
    set_grad(a, {1.0, 1.0});
    set_grad(b, {1.0});
    opt.zero_grad();
    CHECK(a.grad().abs().sum() == 0.0);
    CHECK(b.grad()[0] == 0.0);
  }

  SUBCASE("set_lr() changes the next step") {
    DTensor w = parameter({0.0});
    optim::basic_sgd<double> opt({w}, {.lr = 0.1});
    set_grad(w, {1.0});
    opt.step();  // -0.1
    opt.set_lr(0.01);
    CHECK(opt.lr() == 0.01);
    opt.step();  // -0.01
    CHECK(w.item() == doctest::Approx(-0.11));
    CHECK_THROWS_AS(opt.set_lr(std::nan("")), value_error);
  }

  SUBCASE("float optimizers update float parameters of a module") {
    tapegrad::nn::Linear layer(3, 2, {.seed = 5});
    optim::Adam opt(layer.parameters(), {.lr = 1e-2});
    REQUIRE(opt.parameters().size() == 2);
    const float w00 = layer.weight().at({0, 0});
    tapegrad::Tensor x(Shape{4, 3}, 1.0f);
    tapegrad::Tensor loss = tapegrad::sum(layer(x));
    opt.zero_grad();
    loss.backward();
    opt.step();
    tapegrad::Tape::active().clear();
    // d loss / d W[0, 0] = sum over the 4 rows of x[r, 0] = 4 > 0, so W[0, 0] drops by about lr.
    CHECK(layer.weight().at({0, 0}) == doctest::Approx(w00 - 0.01f).epsilon(1e-4));
  }
}

TEST_CASE("learning-rate schedules at chosen steps") {
  SUBCASE("constant") {
    optim::ConstantSchedule s{.lr = 0.1};
    CHECK(s.rate(0) == 0.1);
    CHECK(s(12345) == 0.1);
  }

  SUBCASE("step decay: lr * gamma^floor(t / step_size)") {
    optim::StepDecay s{.lr = 1.0, .step_size = 3, .gamma = 0.5};
    CHECK(s.rate(0) == 1.0);
    CHECK(s.rate(2) == 1.0);
    CHECK(s.rate(3) == 0.5);
    CHECK(s.rate(5) == 0.5);
    CHECK(s.rate(6) == 0.25);
    // the schedule "0.001 x 0.1 every 30 epochs": 1e-5 from epoch 60
    CHECK(optim::StepDecay{.lr = 1e-3, .step_size = 30, .gamma = 0.1}.rate(60) == doctest::Approx(1e-5));
    CHECK_THROWS_AS(optim::StepDecay{.step_size = 0}.rate(1), value_error);
  }

  SUBCASE("exponential decay: lr * gamma^t") {
    optim::ExponentialDecay s{.lr = 1.0, .gamma = 0.9};
    CHECK(s.rate(0) == 1.0);
    CHECK(s.rate(2) == doctest::Approx(0.81));
    // the schedule "0.001 x 0.95^epoch" at epoch 10: 0.001 * 0.5987 = 0.0005987
    CHECK(optim::ExponentialDecay{.lr = 1e-3, .gamma = 0.95}.rate(10) == doctest::Approx(5.9873694e-4));
  }

  SUBCASE("cosine annealing: min + (lr - min) (1 + cos(pi t / T)) / 2") {
    optim::CosineAnnealing s{.lr = 1.0, .total_steps = 8, .min_lr = 0.0};
    CHECK(s.rate(0) == 1.0);
    CHECK(s.rate(2) == doctest::Approx(0.5 * (1 + std::sqrt(0.5))));  // cos(pi/4) = sqrt(1/2): 0.8536
    CHECK(s.rate(4) == doctest::Approx(0.5));                         // half way: half the rate
    CHECK(s.rate(8) == 0.0);
    CHECK(s.rate(100) == 0.0);  // stays at the floor
    optim::CosineAnnealing floor{.lr = 1.0, .total_steps = 8, .min_lr = 0.2};
    CHECK(floor.rate(4) == doctest::Approx(0.6));  // 0.2 + 0.8 * 0.5
  }

  SUBCASE("linear warm-up, then cosine") {
    optim::WarmupCosine s{.lr = 1.0, .warmup_steps = 4, .total_steps = 12, .min_lr = 0.1};
    // warm-up: lr (t + 1) / 4
    CHECK(s.rate(0) == 0.25);
    CHECK(s.rate(1) == 0.5);
    CHECK(s.rate(3) == 1.0);
    // cosine over the remaining 8 steps, s = (t - 4) / 8
    CHECK(s.rate(4) == doctest::Approx(1.0));
    CHECK(s.rate(8) == doctest::Approx(0.55));  // 0.1 + 0.9 * 0.5
    CHECK(s.rate(12) == doctest::Approx(0.1));
    CHECK(s.rate(50) == doctest::Approx(0.1));
    CHECK_THROWS_AS((optim::WarmupCosine{.warmup_steps = 10, .total_steps = 10}.rate(0)), value_error);
  }

  SUBCASE("a Schedule holds any of them, chosen at run time") {
    std::vector<optim::Schedule> schedules = {optim::ConstantSchedule{.lr = 0.5},
                                              optim::ExponentialDecay{.lr = 1.0, .gamma = 0.5}};
    CHECK(schedules[0](3) == 0.5);
    CHECK(schedules[1](3) == 0.125);
  }

  SUBCASE("the loop hands each step's rate to the optimizer") {
    DTensor w = parameter({0.0});
    optim::basic_sgd<double> opt({w}, {.lr = 1.0});
    optim::StepDecay s{.lr = 1.0, .step_size = 1, .gamma = 0.5};
    set_grad(w, {1.0});
    for (std::size_t t = 0; t < 3; ++t) {
      opt.set_lr(s.rate(t));
      opt.step();
    }
    CHECK(w.item() == doctest::Approx(-1.75));  // -(1 + 0.5 + 0.25)
  }
}

TEST_CASE("clip_grad_norm") {
  SUBCASE("the joint norm over all parameters is what is clipped") {
    // grads [3] and [4] (norm 5 together, though each alone is below 5); max 1:
    // scale 1/5 -> [0.6] and [0.8]
    DTensor a = parameter({0.0}), b = parameter({0.0});
    set_grad(a, {3.0});
    set_grad(b, {4.0});
    CHECK(optim::clip_grad_norm(std::vector<DTensor>{a, b}, 1.0) == doctest::Approx(5.0));
    CHECK(a.grad()[0] == doctest::Approx(0.6));
    CHECK(b.grad()[0] == doctest::Approx(0.8));
  }

  SUBCASE("parameters without a gradient count as zero") {
    DTensor a = parameter({0.0, 0.0}), untouched = parameter({0.0});
    set_grad(a, {0.0, 2.0});
    CHECK(optim::clip_grad_norm(std::vector<DTensor>{a, untouched}, 0.5) == doctest::Approx(2.0));
    CHECK(a.grad()[1] == doctest::Approx(0.5));
    CHECK_FALSE(untouched.has_grad());
  }

  SUBCASE("a non-finite norm is returned and the gradients are left for the caller to inspect") {
    DTensor a = parameter({0.0, 0.0});
    set_grad(a, {std::numeric_limits<double>::infinity(), 1.0});
    CHECK(std::isinf(optim::clip_grad_norm(std::vector<DTensor>{a}, 1.0)));
    CHECK(a.grad()[1] == 1.0);
  }
}
