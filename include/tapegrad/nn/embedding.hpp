// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// Options of `Embedding`.
struct EmbeddingOptions {
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the initial values; unset: one draw from the default generator
  Generator* generator = nullptr;  ///< draw the initial values from this generator instead
};

/// A table of learned vectors, one row per token id: out[..., :] = weight[id].
///
/// Parameter: "weight" [vocab, d], initially N(0, 1) as PyTorch's. A token that
/// appears several times in a batch receives the sum of its positions'
/// gradients (the comma of `Max(1,6,2)`, at positions 3 and 5).
///
/// Example:
///   tapegrad::nn::Embedding embed(20, 64, {.seed = 1});
///   std::vector<index_t> ids = {15, 17, 3, 19, 8, 19, 4, 18};
///   Tensor x = embed(ids, {1, 8});          // [1, 8, 64]
template <std::floating_point T>
class basic_embedding : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_embedding(index_t vocab, index_t d, EmbeddingOptions options = {}) {
    tapegrad::detail::check_positive("Embedding", "vocab", static_cast<double>(vocab));
    tapegrad::detail::check_positive("Embedding", "d", static_cast<double>(d));
    Generator local(options.generator ? 0 : tapegrad::detail::layer_seed(options.seed));
    Generator& gen = options.generator ? *options.generator : local;
    weight_ = this->register_parameter("weight", normal<T>({vocab, d}, gen));
  }

  /// The rows of the given ids, shaped `ids_shape` followed by d.
  tensor_type forward(std::span<const index_t> ids, const Shape& ids_shape) {
    return embedding(weight_, ids, ids_shape);
  }
  /// The rows of the given ids, [ids.size(), d].
  tensor_type forward(std::span<const index_t> ids) { return embedding(weight_, ids); }
  tensor_type operator()(std::span<const index_t> ids, const Shape& ids_shape) { return forward(ids, ids_shape); }
  tensor_type operator()(std::span<const index_t> ids) { return forward(ids); }

  /// The table, [vocab, d].
  const tensor_type& weight() const noexcept { return weight_; }
  index_t vocab_size() const { return weight_.size(0); }
  index_t dim() const { return weight_.size(1); }

 private:
  tensor_type weight_;
};

/// The float Embedding layer.
using Embedding = basic_embedding<float>;

/// The fixed sinusoidal positional encoding of "Attention Is All You Need",
/// added to its input: y = x + PE[:T], for x [..., T, d] with T <= max_len.
///
///   PE[pos, 2i]     = sin(pos / 10000^(2i / d))
///   PE[pos, 2i + 1] = cos(pos / 10000^(2i / d))
///
/// It has no parameters: the table is a constant, and the gradient passes to
/// x unchanged (dy/dx = 1).
template <std::floating_point T>
class basic_positional_encoding : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_positional_encoding(index_t max_len, index_t d) : max_len_(max_len), d_(d) {
    tapegrad::detail::check_positive("PositionalEncoding", "max_len", static_cast<double>(max_len));
    tapegrad::detail::check_positive("PositionalEncoding", "d", static_cast<double>(d));
    table_.resize(static_cast<std::size_t>(max_len * d));
    for (index_t pos = 0; pos < max_len; ++pos) {
      for (index_t i = 0; i < d; ++i) {
        const double pair = static_cast<double>(i - i % 2);  // 2i for both members of a pair
        const double angle = static_cast<double>(pos) / std::pow(10000.0, pair / static_cast<double>(d));
        table_[static_cast<std::size_t>(pos * d + i)] = static_cast<T>(i % 2 == 0 ? std::sin(angle) : std::cos(angle));
      }
    }
    by_length_.resize(static_cast<std::size_t>(max_len) + 1);
  }

  /// x + PE[:T] for x [..., T, d].
  tensor_type forward(const tensor_type& x) {
    const Shape& s = x.shape();
    if (s.rank() < 2 || s[-1] != d_ || s[-2] > max_len_)
      throw shape_error("PositionalEncoding: input " + s.str() + " must be [..., T, " + std::to_string(d_) +
                        "] with T <= max_len = " + std::to_string(max_len_));
    return x + table(s[-2]);
  }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  /// The first `length` rows of the table, [length, d], as a constant leaf.
  const tensor_type& table(index_t length) {
    if (length < 0 || length > max_len_)
      throw index_error("PositionalEncoding: length " + std::to_string(length) + " outside [0, " +
                        std::to_string(max_len_) + "]");
    tensor_type& t = by_length_[static_cast<std::size_t>(length)];
    if (!t.defined()) t = tensor_type(Shape{length, d_}, std::vector<T>(table_.begin(), table_.begin() + length * d_));
    return t;
  }

 private:
  index_t max_len_, d_;
  std::vector<T> table_;
  std::vector<tensor_type> by_length_;  // leaves made on first use, one per length
};

/// The float PositionalEncoding.
using PositionalEncoding = basic_positional_encoding<float>;

}  // namespace tapegrad::nn
