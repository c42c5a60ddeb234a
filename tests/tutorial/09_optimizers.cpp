// SPDX-License-Identifier: MIT
//
// Chapter 9: optimizers turn gradients into steps.
//
// Backpropagation tells each parameter which way is uphill; an optimizer
// decides how far to walk the other way. We replay the optimizer exercises of
// the operation transformer's walk-through with tapegrad's SGD, momentum and
// Adam, each time deriving the numbers by hand first (in plain arithmetic, in
// the test) and then asking the optimizer for its trajectory:
//
//   1. one SGD step on W_output[10, 8]: 0.234 -> 0.23407
//   2. five steps of SGD, momentum and Adam on the same five gradients
//   3. the learning-rate experiment on loss = 0.5 (W - 3)^2
//   4. gradient clipping of a norm-2.5 gradient to norm 1.0
//
// The optimizers run in double precision here (`basic_sgd<double>`, ...),
// so the comparison with the hand derivation is tight; `SGD`, `Adam` and
// `AdamW` are the float versions a model trains with.

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"

using tapegrad::Shape;
using DTensor = tapegrad::basic_tensor<double>;

namespace {

// A one-element parameter holding w.
DTensor scalar_parameter(double w) { return DTensor(Shape{1}, std::vector<double>{w}).requires_grad(true); }

// Writes a gradient by hand, as backward() would have left it.
void set_grad(DTensor& p, double g) { p.grad_mut()[0] = g; }

const std::vector<double> five_gradients = {-0.1, -0.08, -0.12, -0.09, -0.11};

// Runs an optimizer over the five gradients from W = 0.5 and returns W after each step.
template <class Optimizer, class Options>
std::vector<double> trajectory(const Options& options) {
  DTensor w = scalar_parameter(0.5);
  Optimizer opt({w}, options);
  std::vector<double> out;
  for (double g : five_gradients) {
    opt.zero_grad();
    set_grad(w, g);
    opt.step();
    out.push_back(w.item());
  }
  return out;
}

}  // namespace

TEST_CASE("one SGD step: W_output[10, 8] moves from 0.234 to 0.23407") {
  // W_new = W_old - lr * dL/dW = 0.234 - 0.001 * (-0.0719) = 0.234 + 0.0000719
  DTensor w = scalar_parameter(0.234);
  tapegrad::optim::basic_sgd<double> opt({w}, {.lr = 0.001});
  set_grad(w, -0.0719);
  opt.step();
  CHECK(w.item() == doctest::Approx(0.2340719).epsilon(1e-12));
  CHECK(w.item() == doctest::Approx(0.23407).epsilon(1e-5));  // 0.2340719 rounded to five places

  SUBCASE("the float optimizer agrees to float precision") {
    tapegrad::Tensor wf = tapegrad::Tensor(Shape{1}, std::vector<float>{0.234f}).requires_grad(true);
    tapegrad::optim::SGD sgd({wf}, {.lr = 0.001});
    wf.grad_mut()[0] = -0.0719f;
    sgd.step();
    CHECK(wf.item() == doctest::Approx(0.2340719).epsilon(1e-6));
  }
}

TEST_CASE("five steps of SGD, momentum and Adam on the same gradients") {
  // Gradients -0.1, -0.08, -0.12, -0.09, -0.11 at lr 0.01, from W = 0.5. All
  // are negative, so every method moves W up; they differ in how far.
  const double lr = 0.01;

  SUBCASE("plain SGD: each step is lr * |g|") {
    // 0.5 + 0.001 = 0.501, + 0.0008 = 0.5018, + 0.0012 = 0.503, + 0.0009 = 0.5039, + 0.0011 = 0.505
    const std::vector<double> by_hand = {0.501, 0.5018, 0.503, 0.5039, 0.505};
    const auto w = trajectory<tapegrad::optim::basic_sgd<double>>(tapegrad::optim::SGDOptions{.lr = lr});
    for (std::size_t t = 0; t < 5; ++t) CHECK(w[t] == doctest::Approx(by_hand[t]).epsilon(1e-12));
  }

  SUBCASE("momentum 0.9: the velocity b = 0.9 b + g remembers earlier steps") {
    // b1 = -0.1                      W = 0.5      + 0.01 * 0.1     = 0.501
    // b2 = 0.9 * -0.1    - 0.08 = -0.17     W = 0.501    + 0.0017  = 0.5027
    // b3 = 0.9 * -0.17   - 0.12 = -0.273    W = 0.5027   + 0.00273 = 0.50543
    // b4 = 0.9 * -0.273  - 0.09 = -0.3357   W = 0.50543  + 0.003357 = 0.508787
    // b5 = 0.9 * -0.3357 - 0.11 = -0.41213  W = 0.508787 + 0.0041213 = 0.5129083
    const std::vector<double> by_hand = {0.501, 0.5027, 0.50543, 0.508787, 0.5129083};
    const auto w =
        trajectory<tapegrad::optim::basic_sgd<double>>(tapegrad::optim::SGDOptions{.lr = lr, .momentum = 0.9});
    for (std::size_t t = 0; t < 5; ++t) CHECK(w[t] == doctest::Approx(by_hand[t]).epsilon(1e-12));
    // Five steps of momentum went 2.6 times as far as plain SGD's 0.005.
    CHECK((w[4] - 0.5) / 0.005 == doctest::Approx(2.58166).epsilon(1e-5));
  }

  SUBCASE("Adam (0.9, 0.999): steps of about lr, whatever the gradient's scale") {
    // Adam's formulas, step by step in plain arithmetic:
    //   m = 0.9 m + 0.1 g,  v = 0.999 v + 0.001 g^2
    //   m_hat = m / (1 - 0.9^t),  v_hat = v / (1 - 0.999^t)
    //   W = W - lr * m_hat / (sqrt(v_hat) + 1e-8)
    // t = 1: m = -0.01, v = 1e-5, m_hat = -0.1, v_hat = 0.01, sqrt = 0.1:
    //        the step is lr * 0.1 / (0.1 + 1e-8) = 0.0099999999, W = 0.5099999999
    // t = 2: m = -0.017, v = 1.639e-5, m_hat = -0.0894737, v_hat = 0.0081991:
    //        the step is 0.01 * 0.0894737 / 0.0905489 = 0.0098813, W = 0.5198813
    // and so on: W = 0.5298227, 0.5397211, 0.5496854.
    std::vector<double> by_hand;
    double m = 0, v = 0, w_hand = 0.5;
    for (std::size_t t = 1; t <= 5; ++t) {
      const double g = five_gradients[t - 1];
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      const double m_hat = m / (1 - std::pow(0.9, static_cast<double>(t)));
      const double v_hat = v / (1 - std::pow(0.999, static_cast<double>(t)));
      w_hand -= lr * m_hat / (std::sqrt(v_hat) + 1e-8);
      by_hand.push_back(w_hand);
    }
    // The rounded values in the comment above, as a check on the loop itself.
    const std::vector<double> rounded = {0.5099999999, 0.5198813, 0.5298227, 0.5397211, 0.5496854};
    for (std::size_t t = 0; t < 5; ++t) REQUIRE(by_hand[t] == doctest::Approx(rounded[t]).epsilon(1e-7));

    const auto w =
        trajectory<tapegrad::optim::basic_adam<double>>(tapegrad::optim::AdamOptions{.lr = lr, .betas = {0.9, 0.999}});
    for (std::size_t t = 0; t < 5; ++t) CHECK(w[t] == doctest::Approx(by_hand[t]).epsilon(1e-12));
    // Every Adam step is close to lr = 0.01, though the gradients vary by 50%.
    for (std::size_t t = 1; t < 5; ++t) CHECK(w[t] - w[t - 1] == doctest::Approx(0.01).epsilon(0.02));
  }
}

TEST_CASE("the learning-rate experiment on loss = 0.5 (W - 3)^2") {
  // dL/dW = W - 3, so one SGD step is W' = W - lr (W - 3), i.e.
  //   W' - 3 = (1 - lr) (W - 3)   and   W_t - 3 = (1 - lr)^t (W_0 - 3) = -3 (1 - lr)^t.
  // lr 0.1: the gap shrinks by 0.9 per step (slow, steady)
  // lr 0.5: by 0.5 per step
  // lr 1.0: closed in one step (the exact Newton step for this parabola)
  // lr 2.1: multiplied by -1.1 per step: W overshoots further every time and diverges.
  auto run = [](double lr, int steps) {
    DTensor w = scalar_parameter(0.0);
    tapegrad::optim::basic_sgd<double> opt({w}, {.lr = lr});
    std::vector<double> out;
    for (int t = 0; t < steps; ++t) {
      DTensor gap = w - 3.0;
      DTensor loss = 0.5 * tapegrad::sum(gap * gap);
      opt.zero_grad();
      loss.backward();
      opt.step();
      tapegrad::Tape::active().clear();
      out.push_back(w.item());
    }
    return out;
  };

  for (double lr : {0.1, 0.5, 1.0, 2.1}) {
    CAPTURE(lr);
    const auto w = run(lr, 10);
    for (int t = 1; t <= 10; ++t) {
      const double closed_form = 3.0 - 3.0 * std::pow(1.0 - lr, t);
      CHECK(w[static_cast<std::size_t>(t - 1)] == doctest::Approx(closed_form).epsilon(1e-12));
    }
  }

  SUBCASE("lr 0.1, 0.5 and 1.0 converge") {
    CHECK(run(0.1, 10).back() == doctest::Approx(3.0 - 3.0 * 0.3486784401));  // 1.9540, still climbing
    CHECK(run(0.5, 10).back() == doctest::Approx(3.0 - 3.0 / 1024));          // 2.9971
    CHECK(run(1.0, 1).back() == 3.0);                                         // exactly there after one step
  }

  SUBCASE("lr 2.1 diverges: |W - 3| grows by 1.1 each step, on alternating sides") {
    const auto w = run(2.1, 10);
    double previous_gap = 3.0;  // |W_0 - 3|
    for (std::size_t t = 0; t < 10; ++t) {
      const double gap = w[t] - 3.0;
      CHECK(std::abs(gap) == doctest::Approx(1.1 * previous_gap).epsilon(1e-12));
      CHECK((gap > 0) == (t % 2 == 0));  // W_1 = 6.3 overshoots above 3, W_2 = -0.63 below, ...
      previous_gap = std::abs(gap);
    }
    CHECK(w[0] == doctest::Approx(6.3));
    CHECK(std::abs(w[9] - 3.0) == doctest::Approx(3.0 * std::pow(1.1, 10)));  // 7.78
  }
}

TEST_CASE("gradient clipping: a gradient of norm 2.5 scaled to norm 1.0") {
  // g = (1.5, 2.0) has norm sqrt(2.25 + 4) = 2.5. Clipping to 1.0 multiplies
  // it by 1.0 / 2.5 = 0.4: (0.6, 0.8), the same direction with norm 1.
  DTensor a = scalar_parameter(0.0), b = scalar_parameter(0.0);
  set_grad(a, 1.5);
  set_grad(b, 2.0);
  const double norm = tapegrad::optim::clip_grad_norm(std::vector<DTensor>{a, b}, 1.0);
  CHECK(norm == doctest::Approx(2.5));  // the norm before clipping
  CHECK(a.grad()[0] == doctest::Approx(0.6));
  CHECK(b.grad()[0] == doctest::Approx(0.8));
  CHECK(tapegrad::optim::grad_norm(std::vector<DTensor>{a, b}) == doctest::Approx(1.0));

  SUBCASE("a gradient already inside the limit is left alone") {
    const double again = tapegrad::optim::clip_grad_norm(std::vector<DTensor>{a, b}, 2.0);
    CHECK(again == doctest::Approx(1.0));
    CHECK(a.grad()[0] == doctest::Approx(0.6));
  }
}
