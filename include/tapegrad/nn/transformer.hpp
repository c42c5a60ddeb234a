// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/attention.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/dropout.hpp"
#include "tapegrad/nn/layer_norm.hpp"
#include "tapegrad/nn/linear.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// The nonlinearity of a feed-forward network: the one `Activation` of
/// `bias_act` (tensor/elementwise.hpp), so a layer's choice and the fused op's
/// are the same type.
using ::tapegrad::Activation;

/// Options of `FeedForward`.
struct FeedForwardOptions {
  Activation activation = Activation::relu;  ///< the nonlinearity
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the initial values; unset: one draw from the default generator
  Generator* generator = nullptr;  ///< draw the initial values from this generator instead
};

/// The position-wise feed-forward network of a transformer block:
/// y = act(x W1 + b1) W2 + b2, from d_model to d_ff and back.
///
/// Children: "fc1" (Linear d_model -> d_ff) and "fc2" (Linear d_ff -> d_model).
template <std::floating_point T>
class basic_feed_forward : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_feed_forward(index_t d_model, index_t d_ff, FeedForwardOptions options = {}) : activation_(options.activation) {
    tapegrad::detail::check_positive("FeedForward", "d_model", static_cast<double>(d_model));
    tapegrad::detail::check_positive("FeedForward", "d_ff", static_cast<double>(d_ff));
    Generator local(options.generator ? 0 : tapegrad::detail::layer_seed(options.seed));
    Generator& gen = options.generator ? *options.generator : local;
    fc1_ = this->register_module("fc1", basic_linear<T>(d_model, d_ff, {.generator = &gen}));
    fc2_ = this->register_module("fc2", basic_linear<T>(d_ff, d_model, {.generator = &gen}));
  }

  /// act(x W1 + b1) W2 + b2 for x [..., d_model].
  tensor_type forward(const tensor_type& x) {
    if (x.rank() == 0 || x.size(-1) != fc1_->in_features())
      throw shape_error("FeedForward: input " + x.shape().str() +
                        " does not end in d_model = " + std::to_string(fc1_->in_features()));
    // fc1's bias and the activation in one fused node: one pass over [.., d_ff]
    // instead of two, and no pre-activation tensor kept for the backward.
    const tensor_type z = matmul(x, fc1_->weight());
    const tensor_type h = bias_act(
        z, fc1_->bias(), activation_ == Activation::relu ? tapegrad::Activation::relu : tapegrad::Activation::gelu);
    return fc2_->forward(h);
  }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  basic_linear<T>& fc1() noexcept { return *fc1_; }
  basic_linear<T>& fc2() noexcept { return *fc2_; }

 private:
  Activation activation_;
  std::shared_ptr<basic_linear<T>> fc1_, fc2_;
};

/// The float FeedForward network.
using FeedForward = basic_feed_forward<float>;

/// Options of `TransformerBlock`.
struct TransformerBlockOptions {
  index_t d_ff = 0;                          ///< feed-forward width; 0 means 4 * d_model
  Activation activation = Activation::relu;  ///< the feed-forward nonlinearity
  bool causal = false;                       ///< causal self-attention
  bool pre_ln = false;                       ///< normalize before each sublayer instead of after
  double dropout = 0;                        ///< dropout on each sublayer's output, before the residual add
  double eps = 1e-5;                         ///< the layer norms' epsilon
  bool keep_attention = true;                ///< keep the last attention weights (see MultiHeadAttention)
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the initial values; unset: one draw from the default generator
  Generator* generator = nullptr;  ///< draw the initial values from this generator instead
};

/// One transformer block: self-attention and a feed-forward network, each
/// with a residual connection and a layer norm.
///
/// Post-LN, as the operation transformer uses it (the default):
///   x = LN1(x + attn(x))
///   x = LN2(x + ffn(x))
/// Pre-LN (`pre_ln = true`), which trains more stably in deep stacks:
///   x = x + attn(LN1(x))
///   x = x + ffn(LN2(x))
///
/// Children, in order: "attn", "ln1", "ffn", "ln2" (and "drop" with dropout > 0).
///
/// Example:
///   tapegrad::Generator gen(42);
///   tapegrad::nn::TransformerBlock block(64, 4, {.d_ff = 256, .generator = &gen});
///   Tensor y = block(x);                          // [32, 8, 64] -> [32, 8, 64]
///   block.attn().last_attention();                // [32, 4, 8, 8]
template <std::floating_point T>
class basic_transformer_block : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_transformer_block(index_t d_model, index_t heads, TransformerBlockOptions options = {})
      : pre_ln_(options.pre_ln) {
    // Every option is checked before the first child is built.
    basic_multi_head_attention<T>::check_options(d_model, heads, "TransformerBlock");
    if (options.d_ff < 0)
      tapegrad::detail::option_error("TransformerBlock", "d_ff", "must be >= 0 (0 means 4 * d_model)",
                                     static_cast<double>(options.d_ff));
    tapegrad::detail::check_unit_interval("TransformerBlock", "dropout", options.dropout);
    tapegrad::detail::check_non_negative("TransformerBlock", "eps", options.eps);
    Generator local(options.generator ? 0 : tapegrad::detail::layer_seed(options.seed));
    Generator& gen = options.generator ? *options.generator : local;
    const index_t d_ff = options.d_ff > 0 ? options.d_ff : 4 * d_model;
    attn_ = this->register_module(
        "attn",
        basic_multi_head_attention<T>(
            d_model, heads, {.causal = options.causal, .keep_attention = options.keep_attention, .generator = &gen}));
    ln1_ = this->register_module("ln1", basic_layer_norm<T>(d_model, {.eps = options.eps}));
    ffn_ = this->register_module(
        "ffn", basic_feed_forward<T>(d_model, d_ff, {.activation = options.activation, .generator = &gen}));
    ln2_ = this->register_module("ln2", basic_layer_norm<T>(d_model, {.eps = options.eps}));
    if (options.dropout > 0)
      drop_ = this->register_module("drop", basic_dropout<T>(options.dropout, {.generator = &gen}));
  }

  /// The block applied to x [B, T, d_model] or [T, d_model]; `mask` is passed
  /// to the attention (see MultiHeadAttention::forward).
  tensor_type forward(const tensor_type& x, const tensor_type& mask = {}) {
    if (pre_ln_) {
      tensor_type h = x + dropped(attn_->forward(ln1_->forward(x), mask));
      return h + dropped(ffn_->forward(ln2_->forward(h)));
    }
    tensor_type h = ln1_->forward(x + dropped(attn_->forward(x, mask)));
    return ln2_->forward(h + dropped(ffn_->forward(h)));
  }
  tensor_type operator()(const tensor_type& x, const tensor_type& mask = {}) { return forward(x, mask); }

  basic_multi_head_attention<T>& attn() noexcept { return *attn_; }
  basic_feed_forward<T>& ffn() noexcept { return *ffn_; }
  basic_layer_norm<T>& ln1() noexcept { return *ln1_; }
  basic_layer_norm<T>& ln2() noexcept { return *ln2_; }
  bool pre_ln() const noexcept { return pre_ln_; }

 private:
  tensor_type dropped(const tensor_type& x) { return drop_ ? drop_->forward(x) : x; }

  bool pre_ln_;
  std::shared_ptr<basic_multi_head_attention<T>> attn_;
  std::shared_ptr<basic_layer_norm<T>> ln1_, ln2_;
  std::shared_ptr<basic_feed_forward<T>> ffn_;
  std::shared_ptr<basic_dropout<T>> drop_;
};

/// The float TransformerBlock.
using TransformerBlock = basic_transformer_block<float>;

}  // namespace tapegrad::nn
