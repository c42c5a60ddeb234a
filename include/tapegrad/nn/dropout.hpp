// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstdint>
#include <optional>

#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// Options of `Dropout`.
struct DropoutOptions {
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the dropout masks; unset: one draw from the default generator
  Generator* generator = nullptr;  ///< seed the masks' generator with one draw from this generator instead
};

/// Inverted dropout: in training mode each element is zeroed with probability
/// p (in [0, 1)) and the others are scaled by 1 / (1 - p); in evaluation mode (`eval()`)
/// the input passes unchanged. The layer owns the generator of its masks, so
/// a fixed seed gives the same masks on every run.
template <std::floating_point T>
class basic_dropout : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  explicit basic_dropout(double p, DropoutOptions options = {})
      : p_((tapegrad::detail::check_unit_interval("Dropout", "p", p), p)),
        gen_(options.generator ? options.generator->next() : tapegrad::detail::layer_seed(options.seed)) {}

  /// x with dropout applied while training; x itself in evaluation mode.
  tensor_type forward(const tensor_type& x) { return dropout(x, p_, gen_, this->is_training()); }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  /// The drop probability.
  double p() const noexcept { return p_; }

  /// The generator the masks are drawn from (`checkpoint` saves and restores it).
  Generator& generator() noexcept { return gen_; }

 private:
  double p_;
  Generator gen_;
};

/// The float Dropout layer.
using Dropout = basic_dropout<float>;

}  // namespace tapegrad::nn
