// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

// Every layer that draws random initial values takes them from a Generator:
// `options.generator` when given (so one generator can initialise a whole
// model, layer after layer), else a Generator seeded with `options.seed`.
// The same seed always gives the same model.

/// Options of `Linear`.
struct LinearOptions {
  bool bias = true;                ///< add a learned bias b
  std::uint64_t seed = 0;          ///< seed of the initial values (when no generator is given)
  Generator* generator = nullptr;  ///< draw the initial values from this generator instead
};

/// A fully connected layer y = x W + b, with W stored [in, out] (as in the
/// operation transformer's `final_repr @ W_output + b_output`). x is [..., in]; y is [..., out]. The
/// leading dimensions fold into the rows of one matrix product.
///
/// Parameters: "weight" [in, out] and, unless `bias = false`, "bias" [out].
/// Initial values as PyTorch's: W and b uniform in [-1/sqrt(in), 1/sqrt(in)]
/// (for W this is kaiming_uniform with a = sqrt(5)).
///
/// Example:
///   tapegrad::nn::Linear out(64, 20, {.seed = 7});
///   Tensor logits = out(final_repr);        // [8, 64] -> [8, 20]
template <std::floating_point T>
class basic_linear : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_linear(index_t in_features, index_t out_features, LinearOptions options = {})
      : in_(in_features), out_(out_features) {
    if (in_features <= 0 || out_features <= 0)
      throw value_error("Linear: in_features = " + std::to_string(in_features) +
                        " and out_features = " + std::to_string(out_features) + " must be positive");
    Generator local(options.seed);
    Generator& gen = options.generator ? *options.generator : local;
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    weight_ = this->register_parameter("weight", kaiming_uniform<T>({in_features, out_features}, gen, std::sqrt(5.0)));
    if (options.bias) bias_ = this->register_parameter("bias", uniform<T>({out_features}, gen, -bound, bound));
  }

  /// y = x W + b for x [..., in].
  tensor_type forward(const tensor_type& x) {
    if (x.rank() == 0 || x.size(-1) != in_)
      throw shape_error("Linear: input " + x.shape().str() + " does not end in in_features = " + std::to_string(in_));
    tensor_type y = matmul(x, weight_);
    return bias_.defined() ? y + bias_ : y;
  }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  /// W, [in, out].
  const tensor_type& weight() const noexcept { return weight_; }
  /// b, [out]; undefined when the layer has no bias.
  const tensor_type& bias() const noexcept { return bias_; }
  index_t in_features() const noexcept { return in_; }
  index_t out_features() const noexcept { return out_; }

 private:
  index_t in_, out_;
  tensor_type weight_, bias_;
};

/// The float Linear layer.
using Linear = basic_linear<float>;

/// Options of `LayerNorm`.
struct LayerNormOptions {
  double eps = 1e-5;  ///< added to the variance before the square root
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
    if (d <= 0) throw value_error("LayerNorm: d = " + std::to_string(d) + " must be positive");
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

/// Options of `Dropout`.
struct DropoutOptions {
  std::uint64_t seed = 0;          ///< seed of the dropout masks (when no generator is given)
  Generator* generator = nullptr;  ///< seed the masks' generator with one draw from this generator instead
};

/// Inverted dropout: in training mode each element is zeroed with probability
/// p and the others are scaled by 1 / (1 - p); in evaluation mode (`eval()`)
/// the input passes unchanged. The layer owns the generator of its masks, so
/// a fixed seed gives the same masks on every run.
template <std::floating_point T>
class basic_dropout : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  explicit basic_dropout(double p, DropoutOptions options = {})
      : p_(p), gen_(options.generator ? options.generator->next() : options.seed) {
    if (!(p >= 0.0 && p <= 1.0)) throw value_error("Dropout: p = " + std::to_string(p) + " is outside [0, 1]");
  }

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
