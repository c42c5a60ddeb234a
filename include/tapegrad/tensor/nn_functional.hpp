// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/detail/nn_kernels.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/shape.hpp"

// The neural-network functions: softmax, log-softmax, the losses, layer norm,
// embedding lookup and dropout. Each is one recorded node whose
// backward rule is written out in closed form next to its forward pass. They
// work row by row over the last dimension with Eigen maps; whatever the
// backward pass needs besides the inputs and the output (row statistics, class
// targets, token ids, dropout masks) is saved in the tape's arena, so a warm
// training step allocates nothing on the heap.
//
// Masking and the attention core live in tensor/attention.hpp.

namespace tapegrad {

/// How a loss combines its per-element terms.
enum class Reduction {
  none,  ///< no reduction: one loss per element (or per row for cross-entropy)
  mean,  ///< the average over the counted terms (the default)
  sum,   ///< the plain sum
};

/// Options of `cross_entropy`.
struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;  ///< how the rows' losses combine
  index_t ignore_index = -100;            ///< a target equal to this adds nothing and is not counted
};

/// Softmax along `axis`: y_i = exp(x_i - max x) / sum_j exp(x_j - max x).
/// The row maximum is subtracted first, so large logits do not overflow. A
/// vector that is entirely -inf (every position masked) gives zeros and passes
/// no gradient, instead of NaN.
///
/// Backward: dx = y * (dy - sum(dy * y)), softmax's Jacobian diag(y) - y y^T.
///
/// Example:
///   Tensor p = softmax(logits);          // rows of `logits` [N, C] now sum to 1
template <std::floating_point T>
basic_tensor<T> softmax(const basic_tensor<T>& x, int axis = -1) {
  return detail::softmax_family<T, false>(x, axis);
}

/// Log-softmax along `axis`: y_i = x_i - log sum_j exp(x_j), computed from the
/// row maximum so it never overflows. A vector that is entirely -inf gives -inf
/// (the log of probability 0) and passes no gradient.
///
/// Backward: dx = dy - softmax(x) * sum(dy).
template <std::floating_point T>
basic_tensor<T> log_softmax(const basic_tensor<T>& x, int axis = -1) {
  return detail::softmax_family<T, true>(x, axis);
}

/// Cross-entropy between the softmax of `logits` and integer class targets,
/// fused into one node: loss_r = logsumexp(logits_r) - logits_r[target_r].
///
/// `logits` is [N, C] or any shape [..., C]: the leading dimensions are the
/// rows, and `targets` holds one class id in [0, C) per row, in row-major order
/// (a `std::vector<index_t>` converts). A row whose target equals
/// `options.ignore_index` adds nothing and is left out of the mean's count; if
/// every row is ignored, the mean is 0. `Reduction::none` returns one loss per
/// row, shaped like `logits` without its last dimension (ignored rows give 0).
///
/// Backward: d loss_r / d logits_r = softmax(logits_r) - one_hot(target_r),
/// times the upstream gradient, divided by the count for the mean.
///
/// Errors: `shape_error` when the number of targets differs from the number
/// of rows; `index_error` naming the position, the target and C when a
/// target lies outside [0, C).
///
/// Example:
///   Tensor loss = cross_entropy(logits, targets);                        // mean
///   Tensor total = cross_entropy(logits, targets, {.reduction = Reduction::sum});
template <std::floating_point T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, std::span<const index_t> targets,
                              const CrossEntropyOptions& options = {}) {
  const Shape& s = logits.shape();
  if (s.rank() < 1 || s[-1] == 0)
    throw shape_error("cross_entropy: logits " + s.str() + " need a last dimension of at least one class");
  const detail::row_view rv = detail::rows_of(s);
  const index_t rows = rv.rows, classes = rv.cols;
  if (static_cast<index_t>(targets.size()) != rows)
    throw shape_error("cross_entropy: logits " + s.str() + " have " + std::to_string(rows) + " rows but " +
                      std::to_string(targets.size()) + " targets were given");
  const index_t ignore = options.ignore_index;
  index_t count = 0;
  for (index_t r = 0; r < rows; ++r) {
    const index_t t = targets[static_cast<std::size_t>(r)];
    if (t == ignore) continue;
    if (t < 0 || t >= classes)
      throw index_error("cross_entropy: target " + std::to_string(t) + " at position " + std::to_string(r) +
                        " is out of range [0, " + std::to_string(classes) + ") for logits " + s.str());
    ++count;
  }
  const Reduction red = options.reduction;
  const Shape out_shape = red == Reduction::none ? detail::with_last(s, -1) : Shape{};
  const index_t* caller_targets = targets.data();
  auto forward = [=](OpContext<T>& c) {
    // The backward pass needs the targets and each row's log-sum-exp.
    index_t* saved_targets = c.template save<index_t>(rows);
    T* lse = c.save(rows);
    std::copy_n(caller_targets, rows, saved_targets);
    T total = 0;
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = saved_targets[r];
      T loss = 0;
      if (t != ignore) {
        detail::const_array_map<T> x(c.in(0) + r * classes, classes);
        const T m = x.maxCoeff();
        const T l = m + std::log((x - m).exp().sum());
        lse[r] = l;
        loss = l - x[t];
      }
      if (red == Reduction::none)
        c.out()[r] = loss;
      else
        total += loss;
    }
    if (red == Reduction::sum) c.out()[0] = total;
    if (red == Reduction::mean) c.out()[0] = count == 0 ? T(0) : total / static_cast<T>(count);
  };
  auto backward = [=](OpContext<T>& c) {
    if (!c.needs_grad(0)) return;
    T* dx = c.in_grad(0);
    const T* g = c.out_grad();
    const index_t* saved_targets = c.template saved<index_t>(0);
    const T* lse = c.saved(1);
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = saved_targets[r];
      if (t == ignore) continue;
      // d loss_r / d x = softmax(x) - one_hot(t) = exp(x - lse) - one_hot(t)
      const T up = red == Reduction::none ? g[r] : red == Reduction::sum ? g[0] : g[0] / static_cast<T>(count);
      detail::const_array_map<T> x(c.in(0) + r * classes, classes);
      detail::array_map<T> d(dx + r * classes, classes);
      if (detail::has_minus_inf(x))
        d += detail::exp_masked(x - lse[r]) * up;
      else
        d += (x - lse[r]).exp() * up;
      d[t] -= up;
    }
  };
  return make_op<T>("cross_entropy", out_shape, {logits}, forward, backward);
}

/// `cross_entropy` with the targets written in place: `cross_entropy(logits, {3, 4, 5, 2})`.
template <std::floating_point T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, std::initializer_list<index_t> targets,
                              const CrossEntropyOptions& options = {}) {
  return cross_entropy(logits, std::span<const index_t>(targets.begin(), targets.size()), options);
}

/// Mean squared error: mean((pred - target)^2), or its sum, or the squares
/// themselves (`Reduction::none`). Both arguments may carry gradients.
///
/// Backward: d/d pred = 2 (pred - target) / n for the mean (n = numel), and
/// d/d target is its negative.
///
/// Errors: `shape_error` naming both shapes when they differ.
template <std::floating_point T>
basic_tensor<T> mse_loss(const basic_tensor<T>& pred, const basic_tensor<T>& target,
                         Reduction reduction = Reduction::mean) {
  if (!(pred.shape() == target.shape()))
    throw shape_error("mse_loss: pred " + pred.shape().str() + " and target " + target.shape().str() +
                      " differ in shape");
  const index_t n = pred.numel();
  const Shape out_shape = reduction == Reduction::none ? pred.shape() : Shape{};
  auto forward = [n, reduction](OpContext<T>& c) {
    auto diff = c.in_vec(0) - c.in_vec(1);
    if (reduction == Reduction::none) {
      c.out_vec() = diff.square();
    } else {
      const T total = n == 0 ? T(0) : diff.square().sum();
      c.out()[0] = reduction == Reduction::sum || n == 0 ? total : total / static_cast<T>(n);
    }
  };
  auto backward = [n, reduction](OpContext<T>& c) {
    auto diff = c.in_vec(0) - c.in_vec(1);
    // d (p - t)^2 / dp = 2 (p - t);  d/dt = -2 (p - t)
    if (reduction == Reduction::none) {
      if (c.needs_grad(0)) c.in_grad_vec(0) += T(2) * diff * c.out_grad_vec();
      if (c.needs_grad(1)) c.in_grad_vec(1) -= T(2) * diff * c.out_grad_vec();
    } else {
      const T k = T(2) * c.out_grad()[0] / (reduction == Reduction::mean ? static_cast<T>(n) : T(1));
      if (c.needs_grad(0)) c.in_grad_vec(0) += k * diff;
      if (c.needs_grad(1)) c.in_grad_vec(1) -= k * diff;
    }
  };
  return make_op<T>("mse_loss", out_shape, {pred, target}, forward, backward);
}

/// Layer normalization over the last dimension, fused into one node:
/// y = gamma * (x - mean) / sqrt(var + eps) + beta, with the biased variance
/// var = mean((x - mean)^2) of each row. `gamma` and `beta` have shape [D]
/// where D is x's last dimension.
///
/// Backward (per row, xhat = (x - mean) * rstd, g = dy * gamma, rstd = 1/sqrt(var + eps)):
///   dx     = rstd * (g - mean(g) - xhat * mean(g * xhat))
///   dgamma = sum over rows of dy * xhat
///   dbeta  = sum over rows of dy
/// Each row's mean and rstd are saved in the tape's arena during forward.
///
/// Errors: `shape_error` naming both shapes when gamma or beta is not [D].
template <std::floating_point T>
basic_tensor<T> layer_norm(const basic_tensor<T>& x, const basic_tensor<T>& gamma, const basic_tensor<T>& beta,
                           double eps = 1e-5) {
  const Shape& s = x.shape();
  if (s.rank() < 1) throw shape_error("layer_norm: x " + s.str() + " needs at least one dimension");
  const detail::row_view rv = detail::rows_of(s);
  const index_t rows = rv.rows, d = rv.cols;
  const Shape param{d};
  if (!(gamma.shape() == param))
    throw shape_error("layer_norm: gamma " + gamma.shape().str() + " does not match the last dimension of x " +
                      s.str() + " (expected " + param.str() + ")");
  if (!(beta.shape() == param))
    throw shape_error("layer_norm: beta " + beta.shape().str() + " does not match the last dimension of x " + s.str() +
                      " (expected " + param.str() + ")");
  if (!(eps >= 0)) throw value_error("layer_norm: eps = " + std::to_string(eps) + " must be non-negative");
  const T e = static_cast<T>(eps);
  auto forward = [=](OpContext<T>& c) {
    T* stats = c.save(2 * rows);  // [mean, rstd] per row, for the backward pass
    if (d == 0) return;
    detail::const_array_map<T> g(c.in(1), d), b(c.in(2), d);
    for (index_t r = 0; r < rows; ++r) {
      detail::const_array_map<T> xr(c.in(0) + r * d, d);
      detail::array_map<T> yr(c.out() + r * d, d);
      const T mu = xr.mean();
      const T var = (xr - mu).square().mean();
      const T rstd = T(1) / std::sqrt(var + e);
      stats[2 * r] = mu;
      stats[2 * r + 1] = rstd;
      yr = (xr - mu) * rstd * g + b;
    }
  };
  auto backward = [=](OpContext<T>& c) {
    if (d == 0) return;
    const T* stats = c.saved(0);
    detail::const_array_map<T> g(c.in(1), d);
    T* dx = c.needs_grad(0) ? c.in_grad(0) : nullptr;
    T* dg = c.needs_grad(1) ? c.in_grad(1) : nullptr;
    T* db = c.needs_grad(2) ? c.in_grad(2) : nullptr;
    const T inv_d = T(1) / static_cast<T>(d);
    for (index_t r = 0; r < rows; ++r) {
      const T mu = stats[2 * r], rstd = stats[2 * r + 1];
      detail::const_array_map<T> xr(c.in(0) + r * d, d), dy(c.out_grad() + r * d, d);
      auto xhat = (xr - mu) * rstd;
      // d y / d beta = 1;  d y / d gamma = xhat
      if (db) detail::array_map<T>(db, d) += dy;
      if (dg) detail::array_map<T>(dg, d) += dy * xhat;
      if (dx) {
        // The mean and the variance depend on every x of the row, hence the two
        // correction terms: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
        auto dxhat = dy * g;
        const T m1 = dxhat.sum() * inv_d;
        const T m2 = (dxhat * xhat).sum() * inv_d;
        detail::array_map<T>(dx + r * d, d) += rstd * (dxhat - m1 - xhat * m2);
      }
    }
  };
  return make_op<T>("layer_norm", s, {x, gamma, beta}, forward, backward);
}

/// RMS normalization over the last dimension, fused into one node:
/// y = x / sqrt(mean(x^2) + eps) * weight, with `weight` of shape [D] (D is
/// x's last dimension) or, when it is an undefined tensor, no weight at all.
/// Unlike layer_norm, no mean is subtracted and there is no bias.
///
/// Backward (per row, rstd = 1/sqrt(mean(x^2) + eps), xhat = x * rstd, g = dy * weight):
///   dx      = rstd * (g - xhat * mean(g * xhat))
///   dweight = sum over rows of dy * xhat
/// The mean(g * xhat) term is there because rstd depends on every x of the row.
///
/// Errors: `shape_error` naming both shapes when weight is not [D];
/// `value_error` for a negative eps.
///
/// Example:
///   Tensor y = rms_norm(x, gain);        // x [B, T, D], gain [D]
///   Tensor z = rms_norm(x, Tensor{});    // no weight
template <std::floating_point T>
basic_tensor<T> rms_norm(const basic_tensor<T>& x, const basic_tensor<T>& weight, double eps = 1e-6) {
  const Shape& s = x.shape();
  if (s.rank() < 1) throw shape_error("rms_norm: x " + s.str() + " needs at least one dimension");
  const detail::row_view rv = detail::rows_of(s);
  const index_t rows = rv.rows, d = rv.cols;
  const bool has_w = weight.defined();
  if (has_w && !(weight.shape() == Shape{d}))
    throw shape_error("rms_norm: weight " + weight.shape().str() + " does not match the last dimension of x " +
                      s.str() + " (expected [" + std::to_string(d) + "])");
  if (!(eps >= 0)) throw value_error("rms_norm: eps = " + std::to_string(eps) + " must be non-negative");
  const T e = static_cast<T>(eps);
  auto forward = [=](OpContext<T>& c) {
    T* rstds = c.save(rows);  // rstd of each row, for backward
    for (index_t r = 0; r < rows && d > 0; ++r) {
      detail::const_array_map<T> xr(c.in(0) + r * d, d);
      detail::array_map<T> yr(c.out() + r * d, d);
      const T rstd = T(1) / std::sqrt(xr.square().mean() + e);
      rstds[r] = rstd;
      if (has_w)
        yr = xr * rstd * detail::const_array_map<T>(c.in(1), d);
      else
        yr = xr * rstd;
    }
  };
  auto backward = [=](OpContext<T>& c) {
    T* dx = c.needs_grad(0) ? c.in_grad(0) : nullptr;
    T* dw = has_w && c.needs_grad(1) ? c.in_grad(1) : nullptr;
    const T inv_d = d == 0 ? T(0) : T(1) / static_cast<T>(d);
    const T* rstds = c.saved(0);
    for (index_t r = 0; r < rows && d > 0; ++r) {
      const T rstd = rstds[r];
      detail::const_array_map<T> xr(c.in(0) + r * d, d), dy(c.out_grad() + r * d, d);
      auto xhat = xr * rstd;
      // d y / d weight = xhat
      if (dw) detail::array_map<T>(dw, d) += dy * xhat;
      if (!dx) continue;
      detail::array_map<T> dxr(dx + r * d, d);
      if (has_w) {
        auto g = dy * detail::const_array_map<T>(c.in(1), d);
        dxr += rstd * (g - xhat * ((g * xhat).sum() * inv_d));
      } else {
        dxr += rstd * (dy - xhat * ((dy * xhat).sum() * inv_d));
      }
    }
  };
  if (has_w) return make_op<T>("rms_norm", s, {x, weight}, forward, backward);
  return make_op<T>("rms_norm", s, {x}, forward, backward);
}

/// `rms_norm` without a weight: y = x / sqrt(mean(x^2) + eps).
template <std::floating_point T>
basic_tensor<T> rms_norm(const basic_tensor<T>& x, double eps = 1e-6) {
  return rms_norm(x, basic_tensor<T>{}, eps);
}

/// Looks up rows of an embedding table: out[i] = weight[ids[i]]. `weight` is
/// [V, D]; the result is `ids_shape` followed by D (rank of `ids_shape` at most
/// 3). The ids are read in row-major order.
///
/// Backward: each position's gradient is added into its id's row of dweight,
/// so a token that appears twice receives the sum of both positions' gradients.
///
/// Errors: `shape_error` when `weight` is not rank 2 or `ids_shape` does not
/// hold ids.size() elements; `index_error` naming the id, its position and V
/// when an id lies outside [0, V).
///
/// Example:
///   Tensor x = embedding(table, ids, Shape{batch, seq});   // [batch, seq, D]
template <std::floating_point T>
basic_tensor<T> embedding(const basic_tensor<T>& weight, std::span<const index_t> ids, const Shape& ids_shape) {
  const Shape& ws = weight.shape();
  if (ws.rank() != 2) throw shape_error("embedding: weight " + ws.str() + " must be [vocabulary, dim]");
  if (ids_shape.numel() != static_cast<index_t>(ids.size()))
    throw shape_error("embedding: ids shape " + ids_shape.str() + " holds " + std::to_string(ids_shape.numel()) +
                      " ids but " + std::to_string(ids.size()) + " were given");
  if (ids_shape.rank() >= max_rank)
    throw shape_error("embedding: ids shape " + ids_shape.str() + " leaves no room for the embedding dimension");
  const index_t vocab = ws[0], d = ws[1];
  const index_t n = static_cast<index_t>(ids.size());
  for (index_t i = 0; i < n; ++i) {
    const index_t id = ids[static_cast<std::size_t>(i)];
    if (id < 0 || id >= vocab)
      throw index_error("embedding: id " + std::to_string(id) + " at position " + std::to_string(i) +
                        " is out of range [0, " + std::to_string(vocab) + ") for weight " + ws.str());
  }
  const index_t* caller_ids = ids.data();
  auto forward = [=](OpContext<T>& c) {
    // The backward pass adds each position's gradient into its id's row.
    index_t* saved = c.template save<index_t>(n);
    std::copy_n(caller_ids, n, saved);
    for (index_t i = 0; i < n; ++i)
      detail::array_map<T>(c.out() + i * d, d) = detail::const_array_map<T>(c.in(0) + saved[i] * d, d);
  };
  auto backward = [=](OpContext<T>& c) {
    if (!c.needs_grad(0)) return;
    T* dw = c.in_grad(0);
    const index_t* saved = c.template saved<index_t>(0);
    // d out[i] / d weight[ids[i]] = I: gradients of repeated ids add up
    for (index_t i = 0; i < n; ++i)
      detail::array_map<T>(dw + saved[i] * d, d) += detail::const_array_map<T>(c.out_grad() + i * d, d);
  };
  return make_op<T>("embedding", detail::with_last(ids_shape, d, true), {weight}, forward, backward);
}

/// `embedding` of a flat list of ids: the result is [ids.size(), D].
template <std::floating_point T>
basic_tensor<T> embedding(const basic_tensor<T>& weight, std::span<const index_t> ids) {
  return embedding(weight, ids, Shape{static_cast<index_t>(ids.size())});
}

/// `embedding` with the ids written in place: `embedding(table, {15, 17, 3})`.
template <std::floating_point T>
basic_tensor<T> embedding(const basic_tensor<T>& weight, std::initializer_list<index_t> ids) {
  return embedding(weight, std::span<const index_t>(ids.begin(), ids.size()));
}

/// Inverted dropout: while `training`, each element is kept with probability
/// 1 - p and scaled by 1 / (1 - p), or set to 0; the expected value is
/// unchanged. When `!training` or `p == 0` it returns `x` itself (no node).
/// p = 1 drops everything.
///
/// The mask comes from `gen` (one `gen.uniform()` per element, in row-major
/// order; an element is dropped when its draw is below p), so the same seed
/// gives the same mask on every machine.
///
/// Backward: dx = dy * mask, with the mask (0 or 1 / (1 - p)) kept in the arena.
///
/// Errors: `value_error` when p lies outside [0, 1].
template <std::floating_point T>
basic_tensor<T> dropout(const basic_tensor<T>& x, double p, Generator& gen, bool training = true) {
  if (!(p >= 0.0 && p <= 1.0)) throw value_error("dropout: p = " + std::to_string(p) + " is outside [0, 1]");
  const index_t n = x.numel();  // also checks the handle
  if (!training || p == 0.0) return x;
  const T scale = p == 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - p));
  auto forward = [&gen, n, p, scale](OpContext<T>& c) {
    const T* xp = c.in(0);
    T* y = c.out();
    T* mask = c.save(n);  // what backward multiplies by
    for (index_t i = 0; i < n; ++i) {
      const T m = gen.uniform() < p ? T(0) : scale;
      mask[i] = m;
      y[i] = xp[i] * m;
    }
  };
  auto backward = [n](OpContext<T>& c) {
    const T* mask = c.saved(0);
    // d(x * m)/dx = m
    if (c.needs_grad(0)) c.in_grad_vec(0) += c.out_grad_vec() * detail::const_array_map<T>(mask, n);
  };
  return make_op<T>("dropout", x.shape(), {x}, forward, backward);
}

}  // namespace tapegrad
