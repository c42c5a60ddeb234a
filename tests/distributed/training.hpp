// SPDX-License-Identifier: MIT
#pragma once

// The model, data and training loop the distributed tests share, written so
// that the same loop runs on one process (no MPI at all) and on every rank of
// an MPI job: the only difference is the `reduce` step after backward().

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "tapegrad/distributed/sharding.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"

namespace tapegrad::testing {

/// A two-layer perceptron, 4 -> 16 -> 3 with tanh: 131 parameters in 4 tensors.
template <std::floating_point T>
struct Mlp : nn::basic_module<T> {
  std::shared_ptr<nn::basic_linear<T>> fc1, fc2;
  explicit Mlp(std::uint64_t seed) {
    Generator gen(seed);
    fc1 = this->register_module("fc1", nn::basic_linear<T>(4, 16, {.generator = &gen}));
    fc2 = this->register_module("fc2", nn::basic_linear<T>(16, 3, {.generator = &gen}));
  }
  basic_tensor<T> forward(const basic_tensor<T>& x) { return fc2->forward(tanh(fc1->forward(x))); }
};

/// The dataset: 24 examples, x in [-1, 1]^4 and a smooth target in R^3, a
/// fixed function of the example's position.
inline constexpr std::size_t dataset_size = 24;
/// Examples per optimizer step, over all ranks together.
inline constexpr std::size_t global_batch = 8;

template <std::floating_point T>
std::vector<T> features(std::size_t i) {
  std::vector<T> x(4);
  for (std::size_t k = 0; k < 4; ++k) x[k] = static_cast<T>(std::sin(0.7 * static_cast<double>(i) + 1.3 * k));
  return x;
}

template <std::floating_point T>
std::vector<T> target(std::size_t i) {
  const auto x = features<double>(i);
  return {static_cast<T>(x[0] * x[1]), static_cast<T>(x[2] - x[3]), static_cast<T>(0.5 * x[0] + x[3] * x[3])};
}

/// Trains `steps` optimizer steps, starting at `first_step`. Step s takes the
/// global batch of positions [8 (s mod 3), 8 (s mod 3) + 8) of the order
/// shared by all ranks for epoch s / 3 (seed 7), and this process takes its
/// part `split_range(8, rank, ranks)` of that batch.
///
/// The loss is sum((pred - y)^2) * ranks / (8 * 3): on one process that is
/// the batch's mean squared error; on `ranks` processes the all-reduce's
/// average of the ranks' gradients is again the gradient of the whole batch's
/// mean, whatever the parts' sizes.
template <std::floating_point T>
void train(Mlp<T>& model, optim::basic_optimizer<T>& opt, std::size_t first_step, std::size_t steps, int rank,
           int ranks, const std::function<void()>& reduce = {}, const std::function<void()>& after_step = {}) {
  const std::size_t per_epoch = dataset_size / global_batch;
  for (std::size_t s = first_step; s < first_step + steps; ++s) {
    const auto order = distributed::epoch_order(dataset_size, 7, s / per_epoch);
    const auto part = distributed::split_range(global_batch, rank, ranks);
    std::vector<T> x, y;
    for (std::size_t j = part.begin; j < part.end; ++j) {
      const std::size_t i = order[(s % per_epoch) * global_batch + j];
      for (T v : features<T>(i)) x.push_back(v);
      for (T v : target<T>(i)) y.push_back(v);
    }
    const auto rows = static_cast<index_t>(part.size());
    opt.zero_grad();
    const basic_tensor<T> pred = model.forward(basic_tensor<T>({rows, 4}, x));
    const basic_tensor<T> loss = mse_loss(pred, basic_tensor<T>({rows, 3}, y), Reduction::sum) * static_cast<T>(ranks) /
                                 static_cast<T>(global_batch * 3);
    loss.backward();
    Tape::active().clear();
    if (reduce) reduce();
    opt.step();
    if (after_step) after_step();
  }
}

/// Every parameter value, in order, as one array.
template <std::floating_point T>
std::vector<T> flat_parameters(const nn::basic_module<T>& model) {
  std::vector<T> out;
  for (const auto& p : model.parameters())
    for (T v : p.to_vector()) out.push_back(v);
  return out;
}

}  // namespace tapegrad::testing
