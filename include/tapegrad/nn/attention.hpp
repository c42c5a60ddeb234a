// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/shape_ops.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// Options of `MultiHeadAttention`.
struct MultiHeadAttentionOptions {
  bool causal = false;         ///< position i attends only to positions j <= i
  bool bias = false;           ///< biases on the four projections (the operation transformer has none)
  bool keep_attention = true;  ///< keep a copy of the last forward's weights for `last_attention()`
  std::optional<std::uint64_t> seed =
      std::nullopt;                ///< seed of the initial values; unset: one draw from the default generator
  Generator* generator = nullptr;  ///< draw the initial values from this generator instead
};

/// Multi-head self-attention with separate projections, as in the operation
/// transformer:
///
///   Q = x W_q,  K = x W_k,  V = x W_v          (each [.., T, d_model], split into H heads of d_model / H)
///   head_h = softmax(Q_h K_h^T / sqrt(d_head)) V_h
///   out = concat(head_1, ..., head_H) W_o
///
/// x is [B, T, d_model] or [T, d_model]; the result has x's shape.
///
/// Parameters: "w_q", "w_k", "w_v", "w_o", each [d_model, d_model] and used as
/// y = x W; with `bias = true` also "b_q", "b_k", "b_v", "b_o" [d_model].
/// Initial values as PyTorch's nn.MultiheadAttention: W_q, W_k and W_v are the
/// three blocks of one Xavier-uniform [3 d, d] matrix, so U(-b, b) with
/// b = sqrt(6 / (4 d)); W_o is U(-1/sqrt(d), 1/sqrt(d)) like a Linear's
/// weight; the biases start at 0.
///
/// The softmax weights of the last forward, [B, H, T, T] (or [H, T, T]), are
/// kept as a constant tensor for inspection: `last_attention()`.
///
/// Example:
///   tapegrad::nn::MultiHeadAttention attn(64, 4, {.causal = true, .seed = 3});
///   Tensor y = attn(x);                    // x, y: [32, 8, 64]
///   Tensor a = attn.last_attention();      // [32, 4, 8, 8], rows sum to 1
template <std::floating_point T>
class basic_multi_head_attention : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  basic_multi_head_attention(index_t d_model, index_t heads, MultiHeadAttentionOptions options = {})
      : d_(d_model), heads_(heads), causal_(options.causal), keep_(options.keep_attention) {
    check_options(d_model, heads);
    Generator local(options.generator ? 0 : tapegrad::detail::layer_seed(options.seed));
    Generator& gen = options.generator ? *options.generator : local;
    const double in_bound = std::sqrt(6.0 / static_cast<double>(4 * d_model));
    const double out_bound = 1.0 / std::sqrt(static_cast<double>(d_model));
    const Shape w{d_model, d_model};
    w_q_ = this->register_parameter("w_q", uniform<T>(w, gen, -in_bound, in_bound));
    w_k_ = this->register_parameter("w_k", uniform<T>(w, gen, -in_bound, in_bound));
    w_v_ = this->register_parameter("w_v", uniform<T>(w, gen, -in_bound, in_bound));
    w_o_ = this->register_parameter("w_o", uniform<T>(w, gen, -out_bound, out_bound));
    if (options.bias) {
      b_q_ = this->register_parameter("b_q", zeros<T>({d_model}));
      b_k_ = this->register_parameter("b_k", zeros<T>({d_model}));
      b_v_ = this->register_parameter("b_v", zeros<T>({d_model}));
      b_o_ = this->register_parameter("b_o", zeros<T>({d_model}));
    }
  }

  /// Self-attention over x [B, T, d_model] or [T, d_model].
  ///
  /// `mask`, when given, is a 0/1 tensor that broadcasts to the scores
  /// [B, H, T, T] (or [H, T, T]); where it is 1 the key is hidden, e.g. a
  /// key-padding mask [B, 1, 1, T]. It adds to the causal mask. Without a mask
  /// the fused attention core runs; with one, the scores are masked and
  /// softmaxed as separate ops.
  tensor_type forward(const tensor_type& x, const tensor_type& mask = {}) {
    const Shape& s = x.shape();
    if ((s.rank() != 2 && s.rank() != 3) || s[-1] != d_)
      throw shape_error("MultiHeadAttention: input " + s.str() + " must be [B, T, " + std::to_string(d_) + "] or [T, " +
                        std::to_string(d_) + "]");
    const bool batched = s.rank() == 3;
    const index_t b = batched ? s[0] : 1, t = s[-2], dh = d_ / heads_;
    // [.., T, d] -> [.., T, H, dh] -> [.., H, T, dh]
    // Shapes and permutations on the stack: a warm step makes no heap allocation here.
    const Shape split_dims = batched ? Shape{b, t, heads_, dh} : Shape{t, heads_, dh};
    // Swapping T and H is its own inverse, so the same permutation merges the heads back.
    auto swap_heads = [batched](const tensor_type& p) {
      return batched ? permute(p, {0, 2, 1, 3}) : permute(p, {1, 0, 2});
    };
    auto project = [&](const tensor_type& w, const tensor_type& bias) {
      tensor_type p = matmul(x, w);
      if (bias.defined()) p = p + bias;
      return swap_heads(reshape(p, split_dims));
    };
    const tensor_type q = project(w_q_, b_q_), k = project(w_k_, b_k_), v = project(w_v_, b_v_);

    tensor_type heads_out;  // [.., H, T, dh]
    if (!mask.defined()) {
      heads_out = scaled_dot_product_attention(q, k, v, causal_, keep_ ? &last_ : nullptr);
    } else {
      // scores = Q K^T / sqrt(dh), hidden positions set to -inf before the softmax
      tensor_type scores =
          matmul(q, k, {.transpose_b = true}) * static_cast<T>(1.0 / std::sqrt(static_cast<double>(dh)));
      const T inf = std::numeric_limits<T>::infinity();
      if (causal_) scores = masked_fill(scores, causal_mask<T>(t), -inf);
      scores = masked_fill(scores, mask, -inf);
      const tensor_type a = softmax(scores, -1);
      if (keep_) {
        // Written in place once the buffer has the right shape: no allocation per forward.
        if (last_.defined() && last_.shape() == a.shape())
          last_.data() = a.data();
        else
          last_ = tensor_type(a.shape(), a.to_vector());
      }
      heads_out = matmul(a, v);
    }
    // [.., H, T, dh] -> [.., T, H, dh] -> [.., T, d]
    tensor_type merged = reshape(swap_heads(heads_out), s);
    tensor_type out = matmul(merged, w_o_);
    return b_o_.defined() ? out + b_o_ : out;
  }
  tensor_type operator()(const tensor_type& x, const tensor_type& mask = {}) { return forward(x, mask); }

  /// The attention weights of the last forward, [B, H, T, T] ([H, T, T] for an
  /// unbatched input): row i holds how much query position i drew from each key.
  /// Undefined before the first forward or with `keep_attention = false`.
  /// The layer keeps one buffer and overwrites it on every forward of the same
  /// shape (a warm step allocates nothing), so a handle taken earlier shows the
  /// latest weights; copy it (`Tensor(a.shape(), a.to_vector())`) to keep a snapshot.
  const tensor_type& last_attention() const noexcept { return last_; }

  index_t d_model() const noexcept { return d_; }

  /// Raises value_error unless d_model > 0, heads > 0 and heads divides d_model.
  static void check_options(index_t d_model, index_t heads, const char* who = "MultiHeadAttention") {
    tapegrad::detail::check_positive(who, "d_model", static_cast<double>(d_model));
    tapegrad::detail::check_positive(who, "heads", static_cast<double>(heads));
    if (d_model % heads != 0)
      tapegrad::detail::option_error(who, "heads", ("must divide d_model = " + std::to_string(d_model)).c_str(),
                                     static_cast<double>(heads));
  }
  index_t heads() const noexcept { return heads_; }
  bool causal() const noexcept { return causal_; }

 private:
  index_t d_, heads_;
  bool causal_, keep_;
  tensor_type w_q_, w_k_, w_v_, w_o_, b_q_, b_k_, b_v_, b_o_;
  tensor_type last_;
};

/// The float MultiHeadAttention layer.
using MultiHeadAttention = basic_multi_head_attention<float>;

}  // namespace tapegrad::nn
