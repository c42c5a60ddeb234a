// SPDX-License-Identifier: MIT
//
// Chapter 10: gradient accumulation over micro-batches.
//
// The HyperMixer gradient-accumulation check compares two ways to train a
// HyperMixer: `backward()`, which computes the gradients and applies them at
// once, and `compute_gradients()` followed by `apply_gradients()`, which
// collects gradients over several inputs and applies their average in one
// update. It checks that one-shot and accumulated gradients give the same
// result.
//
// With tapegrad there is only one backward, and the split comes for free:
// a leaf's gradient *accumulates* across backward() calls until zero_grad().
//
//   compute_gradients()  ~  loss_i.backward()      (adds into every parameter's .grad)
//   apply_gradients()    ~  opt.step()             (reads .grad, updates)
//   starting afresh      ~  opt.zero_grad()
//
// So splitting a batch of 8 into k = 4 micro-batches of 2, scaling each
// micro-batch's mean loss by 1/k and calling backward() on each, leaves
// exactly the gradient of the whole batch's mean loss, and one step then
// gives the same parameters as one step on the whole batch. That is how a
// batch too large for memory is trained: in pieces, stepping once.

#include <doctest/doctest.h>

#include <vector>

#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "testing.hpp"

using tapegrad::index_t;
using tapegrad::Shape;
using tapegrad::testing::DTensor;
using tapegrad::testing::random_tensor;
namespace nn = tapegrad::nn;
namespace optim = tapegrad::optim;

namespace {

// A two-layer regression network in double precision, so the comparison can be tight.
struct Net : nn::basic_module<double> {
  std::shared_ptr<nn::basic_linear<double>> fc1, fc2;
  Net() {
    fc1 = register_module("fc1", nn::basic_linear<double>(3, 4, {.seed = 1}));
    fc2 = register_module("fc2", nn::basic_linear<double>(4, 2, {.seed = 2}));
  }
  DTensor forward(const DTensor& x) { return fc2->forward(tapegrad::tanh(fc1->forward(x))); }
};

// Rows [first, first + count) of a [8, n] tensor, as a leaf.
DTensor rows(const DTensor& t, index_t first, index_t count) {
  const index_t n = t.size(1);
  auto v = t.to_vector();
  return DTensor(Shape{count, n}, std::vector<double>(v.begin() + first * n, v.begin() + (first + count) * n));
}

std::vector<std::vector<double>> values(const Net& net) {
  std::vector<std::vector<double>> out;
  for (const auto& p : net.parameters()) out.push_back(p.to_vector());
  return out;
}

}  // namespace

TEST_CASE("gradients accumulate across backward() calls until zero_grad()") {
  // loss = sum(w * x) with x = [1, 2]: d loss / d w = x, each time.
  DTensor w = DTensor(Shape{2}, 0.0).requires_grad(true);
  const DTensor x(Shape{2}, std::vector<double>{1, 2});
  tapegrad::sum(w * x).backward();
  CHECK(w.grad_at({1}) == 2.0);
  tapegrad::sum(w * x).backward();  // a second backward adds: 2 + 2
  CHECK(w.grad_at({1}) == 4.0);
  w.zero_grad();  // start afresh
  CHECK(w.grad_at({1}) == 0.0);
  tapegrad::Tape::active().clear();
}

TEST_CASE("k micro-batches with loss / k, then one step == one step on the whole batch") {
  const DTensor x = random_tensor({8, 3}, 10);
  const DTensor y = random_tensor({8, 2}, 11);
  const int k = 4;  // micro-batches of 2 rows

  // The whole batch: one backward of the mean loss over 8 rows, one step.
  Net whole;
  optim::basic_sgd<double> whole_opt(whole.parameters(), {.lr = 0.1, .momentum = 0.9});
  whole_opt.zero_grad();
  tapegrad::mse_loss(whole.forward(x), y).backward();
  std::vector<std::vector<double>> whole_grads;
  for (const auto& p : whole.parameters()) whole_grads.push_back({p.grad().data(), p.grad().data() + p.numel()});
  whole_opt.step();
  tapegrad::Tape::active().clear();

  // Four micro-batches: each mean loss (over its 2 rows) scaled by 1/4,
  // backward each, then a single step.
  Net pieces;
  optim::basic_sgd<double> pieces_opt(pieces.parameters(), {.lr = 0.1, .momentum = 0.9});
  pieces_opt.zero_grad();
  for (int i = 0; i < k; ++i) {
    DTensor loss = tapegrad::mse_loss(pieces.forward(rows(x, 2 * i, 2)), rows(y, 2 * i, 2)) * (1.0 / k);
    loss.backward();  // adds into the same .grad buffers
    tapegrad::Tape::active().clear();
  }

  SUBCASE("the accumulated gradient equals the whole batch's") {
    // mean over 8 rows = (1/4) * sum over 4 micro-batches of the mean over 2 rows
    const auto params = pieces.parameters();
    for (std::size_t i = 0; i < params.size(); ++i)
      for (index_t j = 0; j < params[i].numel(); ++j)
        CHECK(params[i].grad()[j] == doctest::Approx(whole_grads[i][static_cast<std::size_t>(j)]).epsilon(1e-12));
  }

  SUBCASE("and one step gives the same parameters") {
    pieces_opt.step();
    const auto a = values(pieces), b = values(whole);
    for (std::size_t i = 0; i < a.size(); ++i)
      for (std::size_t j = 0; j < a[i].size(); ++j) CHECK(a[i][j] == doctest::Approx(b[i][j]).epsilon(1e-12));
  }

  SUBCASE("forgetting the 1/k scale gives k times the gradient: the step would be k times too long") {
    const auto params = pieces.parameters();
    pieces_opt.zero_grad();
    for (int i = 0; i < k; ++i) {
      tapegrad::mse_loss(pieces.forward(rows(x, 2 * i, 2)), rows(y, 2 * i, 2)).backward();
      tapegrad::Tape::active().clear();
    }
    CHECK(params[0].grad()[0] == doctest::Approx(k * whole_grads[0][0]).epsilon(1e-12));
  }
}

TEST_CASE("the equivalence holds for Adam too, over several steps") {
  // Adam's update depends on the gradient only, so equal gradients give equal
  // steps; three steps of each keep the two models together.
  const DTensor x = random_tensor({8, 3}, 20);
  const DTensor y = random_tensor({8, 2}, 21);
  Net whole, pieces;
  optim::basic_adam<double> whole_opt(whole.parameters(), {.lr = 0.05});
  optim::basic_adam<double> pieces_opt(pieces.parameters(), {.lr = 0.05});
  for (int step = 0; step < 3; ++step) {
    whole_opt.zero_grad();
    tapegrad::mse_loss(whole.forward(x), y).backward();
    whole_opt.step();
    tapegrad::Tape::active().clear();

    pieces_opt.zero_grad();
    for (int i = 0; i < 2; ++i) {  // two micro-batches of 4
      (tapegrad::mse_loss(pieces.forward(rows(x, 4 * i, 4)), rows(y, 4 * i, 4)) * 0.5).backward();
      tapegrad::Tape::active().clear();
    }
    pieces_opt.step();
  }
  const auto a = values(pieces), b = values(whole);
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j) CHECK(a[i][j] == doctest::Approx(b[i][j]).epsilon(1e-10));
  CHECK(a != values(Net()));  // they did move
}
