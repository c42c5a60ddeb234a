// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>

#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// Options of `LayerNorm`.
struct LayerNormOptions {
  double eps = 1e-5;  ///< added to the variance before the square root (finite, >= 0)
};

/// Layer normalization over the last dimension:
/// y = gamma * (x - mean) / sqrt(var + eps) + beta, per row of x [..., d].
///
/// Parameters: "gamma" [d] (initially 1) and "beta" [d] (initially 0).
template <std::floating_point T>
class basic_layer_norm : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  explicit basic_layer_norm(index_t d, LayerNormOptions options = {}) : eps_(options.eps) {
    tapegrad::detail::check_positive("LayerNorm", "d", static_cast<double>(d));
    tapegrad::detail::check_non_negative("LayerNorm", "eps", options.eps);
    gamma_ = this->register_parameter("gamma", ones<T>({d}));
    beta_ = this->register_parameter("beta", zeros<T>({d}));
  }

  /// Normalizes each row of x [..., d].
  tensor_type forward(const tensor_type& x) { return layer_norm(x, gamma_, beta_, eps_); }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  const tensor_type& gamma() const noexcept { return gamma_; }
  const tensor_type& beta() const noexcept { return beta_; }

 private:
  double eps_;
  tensor_type gamma_, beta_;
};

/// The float LayerNorm layer.
using LayerNorm = basic_layer_norm<float>;

}  // namespace tapegrad::nn
