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
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/losses.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "tapegrad/tensor/shape.hpp"

// The neural-network functions: softmax, log-softmax, layer norm, embedding
// lookup and dropout (the losses are in tensor/losses.hpp). Each is one recorded node whose
// backward rule is written out in closed form next to its forward pass. They
// work row by row over the last dimension with Eigen maps; whatever the
// backward pass needs besides the inputs and the output (row statistics, class
// targets, token ids, dropout masks) is saved in the tape's arena, so a warm
// training step allocates nothing on the heap.
//
// Masking and the attention core live in tensor/attention.hpp.

namespace tapegrad {

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
  // dy = y (dx - sum(y dx)) along the axis
  return detail::softmax_family<T, false>(x, axis, [axis](const JvpContext<T>& j) {
    const basic_tensor<T>& y = j.out();
    return y * (j.tangent(0) - sum(y * j.tangent(0), axis, true));
  });
}

/// Log-softmax along `axis`: y_i = x_i - log sum_j exp(x_j), computed from the
/// row maximum so it never overflows. A vector that is entirely -inf gives -inf
/// (the log of probability 0) and passes no gradient.
///
/// Backward: dx = dy - softmax(x) * sum(dy).
template <std::floating_point T>
basic_tensor<T> log_softmax(const basic_tensor<T>& x, int axis = -1) {
  // dy = dx - sum(softmax(x) dx) along the axis, softmax(x) = e^y
  return detail::softmax_family<T, true>(
      x, axis, [axis](const JvpContext<T>& j) { return j.tangent(0) - sum(exp(j.out()) * j.tangent(0), axis, true); });
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
  // With xc = x - mean, rstd = (mean(xc^2) + eps)^(-1/2), xhat = xc rstd (per row):
  //   dxhat = rstd (dxc - xhat mean(xhat dxc)),  dxc = dx - mean(dx)
  //   dy    = dxhat gamma + xhat dgamma + dbeta
  auto jvp = [e](const JvpContext<T>& j) {
    const basic_tensor<T> xc = j.in(0) - mean(j.in(0), -1, true);
    const basic_tensor<T> rstd = pow(mean(xc * xc, -1, true) + e, T(-0.5));
    const basic_tensor<T> xhat = xc * rstd;
    basic_tensor<T> dy;
    if (j.has_tangent(0)) {
      const basic_tensor<T> dxc = j.tangent(0) - mean(j.tangent(0), -1, true);
      dy = (dxc - xhat * mean(xhat * dxc, -1, true)) * rstd * j.in(1);
    }
    if (j.has_tangent(1)) dy = detail::tangent_add(dy, xhat * j.tangent(1));
    return detail::widen_tangent(detail::tangent_add(dy, j.tangent(2)), j.out().shape());
  };
  return make_op<T>("layer_norm", s, {x, gamma, beta}, forward, backward, jvp);
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
  // With rstd = (mean(x^2) + eps)^(-1/2), xhat = x rstd (per row):
  //   dxhat = rstd (dx - xhat mean(xhat dx)),  dy = dxhat weight + xhat dweight
  auto jvp = [e, has_w](const JvpContext<T>& j) {
    const basic_tensor<T> rstd = pow(mean(j.in(0) * j.in(0), -1, true) + e, T(-0.5));
    const basic_tensor<T> xhat = j.in(0) * rstd;
    basic_tensor<T> dy;
    if (j.has_tangent(0)) {
      dy = (j.tangent(0) - xhat * mean(xhat * j.tangent(0), -1, true)) * rstd;
      if (has_w) dy = dy * j.in(1);
    }
    if (has_w && j.has_tangent(1)) dy = detail::tangent_add(dy, xhat * j.tangent(1));
    return detail::widen_tangent(dy, j.out().shape());
  };
  if (has_w) return make_op<T>("rms_norm", s, {x, weight}, forward, backward, jvp);
  return make_op<T>("rms_norm", s, {x}, forward, backward, jvp);
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
  // linear in the table: d out = the same rows of d weight (the rule runs while the caller's ids live)
  auto jvp = [=](const JvpContext<T>& j) {
    return embedding(j.tangent(0), std::span<const index_t>(caller_ids, static_cast<std::size_t>(n)), ids_shape);
  };
  return make_op<T>("embedding", detail::with_last(ids_shape, d, true), {weight}, forward, backward, jvp);
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
  T* mask_at = nullptr;  // for the jvp rule, which runs right after forward
  auto forward = [&gen, &mask_at, n, p, scale](OpContext<T>& c) {
    const T* xp = c.in(0);
    T* y = c.out();
    T* mask = c.save(n);  // what backward multiplies by
    mask_at = mask;
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
  // d(x * m) = m dx, with this draw's mask as a constant. The rule copies the
  // mask before any other op runs (unrecorded, it sits in released scratch).
  auto jvp = [&mask_at, n](const JvpContext<T>& j) {
    const basic_tensor<T> m(j.in(0).shape(), std::vector<T>(mask_at, mask_at + n));
    return j.tangent(0) * m;
  };
  return make_op<T>("dropout", x.shape(), {x}, forward, backward, jvp);
}

}  // namespace tapegrad
