// SPDX-License-Identifier: MIT
// Per-sample gradients: one [batch, ...] gradient per parameter, row b being
// the gradient of sample b's loss alone.

#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "tapegrad/autodiff/per_sample.hpp"
#include "tapegrad/nn/linear.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/shape_ops.hpp"
#include "testing.hpp"

namespace {

using DTensor = tapegrad::basic_tensor<double>;
using tapegrad::index_t;

}  // namespace

TEST_CASE("per_sample_gradients: linear regression matches the closed form") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  tapegrad::nn::basic_linear<double> fc(3, 1, {.seed = 4});
  const DTensor x = tapegrad::testing::random_tensor({5, 3}, 7);
  const DTensor y = tapegrad::testing::random_tensor({5, 1}, 8);
  auto loss = [&](index_t b) {
    return mse_loss(fc(slice(x, 0, b, b + 1)), slice(y, 0, b, b + 1), tapegrad::Reduction::sum);
  };
  const auto g = tapegrad::per_sample_gradients(fc.parameters(), 5, loss);
  REQUIRE(g.size() == 2);
  CHECK(g[0].shape() == tapegrad::Shape{5, 3, 1});
  CHECK(g[1].shape() == tapegrad::Shape{5, 1});

  // loss_b = (x_b W + c - y_b)^2 with residual r_b: dW = 2 r_b x_b^T, dc = 2 r_b.
  const DTensor w = fc.parameters()[0], c = fc.parameters()[1];
  for (index_t b = 0; b < 5; ++b) {
    double r = c.at({0}) - y.at({b, 0});
    for (index_t i = 0; i < 3; ++i) r += x.at({b, i}) * w.at({i, 0});
    for (index_t i = 0; i < 3; ++i) CHECK(g[0].at({b, i, 0}) == doctest::Approx(2 * r * x.at({b, i})).epsilon(1e-14));
    CHECK(g[1].at({b, 0}) == doctest::Approx(2 * r).epsilon(1e-14));
  }
  CHECK(tape.size() == 0);  // every sample's graph was rewound
}

TEST_CASE("per_sample_gradients: an MLP, against a loop over single samples and the batch gradient") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  tapegrad::nn::basic_linear<double> fc1(4, 6, {.seed = 1}), fc2(6, 3, {.seed = 2});
  std::vector<DTensor> params = fc1.parameters();
  for (const auto& p : fc2.parameters()) params.push_back(p);
  const DTensor x = tapegrad::testing::random_tensor({7, 4}, 3);
  const std::vector<index_t> targets{0, 2, 1, 1, 0, 2, 2};
  auto logits = [&](const DTensor& in) { return fc2(tanh(fc1(in))); };
  auto loss = [&](index_t b) {
    const std::vector<index_t> t{targets[static_cast<std::size_t>(b)]};
    return cross_entropy(logits(slice(x, 0, b, b + 1)), t);
  };

  // Gradients accumulated before the call are left alone.
  for (auto& p : params) p.grad_mut().setConstant(0.25);
  const auto g = tapegrad::per_sample_gradients(params, 7, loss);
  for (const auto& p : params) CHECK((p.grad().array() == 0.25).all());

  SUBCASE("row b is sample b's gradient, computed alone") {
    for (index_t b = 0; b < 7; ++b) {
      for (auto& p : params) p.zero_grad();
      loss(b).backward();
      for (std::size_t i = 0; i < params.size(); ++i) {
        const auto expected = params[i].grad();
        const index_t n = params[i].numel();
        for (index_t k = 0; k < n; ++k) CHECK(g[i].data()[b * n + k] == expected[k]);
      }
      tape.clear();
    }
  }

  SUBCASE("the rows add up to the gradient of the summed batch loss") {
    for (auto& p : params) p.zero_grad();
    cross_entropy(logits(x), targets, {.reduction = tapegrad::Reduction::sum}).backward();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const index_t n = params[i].numel();
      for (index_t k = 0; k < n; ++k) {
        double total = 0;
        for (index_t b = 0; b < 7; ++b) total += g[i].data()[b * n + k];
        CHECK(total == doctest::Approx(params[i].grad()[k]).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("per_sample_gradients: a loss with more than one element is refused") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor w = tapegrad::ones<double>({2}, true);
  const std::string msg = tapegrad::testing::message_of<tapegrad::shape_error>(
      [&] { (void)tapegrad::per_sample_gradients<double>({w}, 2, [&](index_t) { return w * 2.0; }); });
  CHECK(msg == "per_sample_gradients: the loss of sample 0 has shape [2], not one element");
}
