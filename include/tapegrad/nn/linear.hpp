// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

// Every layer that draws random initial values takes them from a Generator:
// `options.generator` when given (so one generator can initialise a whole
// model, layer after layer), else a Generator seeded with `options.seed`,
// else a Generator seeded with one draw from the process-wide default
// generator (see `tapegrad::manual_seed`). The same seed always gives the
// same layer; two layers built without one differ.

/// Options of `Linear`.
struct LinearOptions {
  bool bias = true;  ///< add a learned bias b
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the initial values; unset: one draw from the default generator
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
    tapegrad::detail::check_positive("Linear", "in_features", static_cast<double>(in_features));
    tapegrad::detail::check_positive("Linear", "out_features", static_cast<double>(out_features));
    Generator local(options.generator ? 0 : tapegrad::detail::layer_seed(options.seed));
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

}  // namespace tapegrad::nn
