// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <concepts>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/nn_kernels.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "tapegrad/tensor/shape.hpp"

// Masking (masked_fill, causal_mask) and the fused attention core
// softmax(q k^T / sqrt(d)) v, for the attention layers of a transformer.

namespace tapegrad {

namespace detail {

/// Checks q [..., Tq, Dh], k [..., Tk, Dh], v [..., Tk, Dv] and returns the
/// number of (batch, head) pairs: the product of the leading dimensions.
inline index_t attention_batch(const Shape& q, const Shape& k, const Shape& v) {
  const char* op = "scaled_dot_product_attention";
  auto shapes = [&] { return "q " + q.str() + ", k " + k.str() + ", v " + v.str(); };
  if (q.rank() < 2 || q.rank() != k.rank() || q.rank() != v.rank())
    throw shape_error(std::string(op) + ": q, k and v need the same rank, 2 to 4 ([..., T, D]); got " + shapes());
  index_t batch = 1;
  for (int d = 0; d < q.rank() - 2; ++d) {
    if (k[d] != q[d] || v[d] != q[d])
      throw shape_error(std::string(op) + ": leading (batch, head) dimensions differ: " + shapes());
    batch *= q[d];
  }
  if (k[-1] != q[-1])
    throw shape_error(std::string(op) + ": q and k differ in head dimension (" + std::to_string(q[-1]) + " vs " +
                      std::to_string(k[-1]) + "): " + shapes());
  if (v[-2] != k[-2])
    throw shape_error(std::string(op) + ": k and v differ in sequence length (" + std::to_string(k[-2]) + " vs " +
                      std::to_string(v[-2]) + "): " + shapes());
  return batch;
}

}  // namespace detail

/// Replaces the elements of `x` where `mask` is nonzero by `value`. `mask` is
/// a 0/1 tensor that broadcasts to x's shape (NumPy rules: aligned on the
/// right, each of its dimensions equal to x's or 1). The mask is a constant:
/// it never receives a gradient.
///
/// Backward: dx = dy where the mask is 0, and 0 at the filled positions.
///
/// Errors: `shape_error` naming both shapes when the mask does not broadcast.
///
/// Example:
///   Tensor scores_masked = masked_fill(scores, causal_mask<float>(T), -INFINITY);
template <std::floating_point T>
basic_tensor<T> masked_fill(const basic_tensor<T>& x, const basic_tensor<T>& mask, std::type_identity_t<T> value) {
  const Shape& xs = x.shape();
  const Shape& ms = mask.shape();
  bool fits = ms.rank() <= xs.rank();
  for (int d = 1; fits && d <= ms.rank(); ++d) fits = ms[-d] == xs[-d] || ms[-d] == 1;
  if (!fits) throw shape_error("masked_fill: mask " + ms.str() + " does not broadcast to x " + xs.str());
  // The mask's stride along each of x's dimensions (0 where it is broadcast).
  detail::shape4 xv = detail::right_aligned(xs), mv = detail::right_aligned(ms);
  for (int d = 0; d < 4; ++d)
    if (mv.dim[d] == 1) mv.stride[d] = 0;
  // Calls f(x_offset, mask_offset) over the innermost rows of x.
  auto walk = [xv, mv](auto&& f) {
    for (index_t a = 0; a < xv.dim[0]; ++a)
      for (index_t b = 0; b < xv.dim[1]; ++b)
        for (index_t cc = 0; cc < xv.dim[2]; ++cc) {
          const index_t xo = a * xv.stride[0] + b * xv.stride[1] + cc * xv.stride[2];
          const index_t mo = a * mv.stride[0] + b * mv.stride[1] + cc * mv.stride[2];
          for (index_t k = 0; k < xv.dim[3]; ++k) f(xo + k, mo + k * mv.stride[3]);
        }
  };
  auto forward = [walk, value](OpContext<T>& c) {
    const T* xp = c.in(0);
    const T* mp = c.in(1);
    T* y = c.out();
    if (c.out_shape().numel() == 0) return;
    walk([&](index_t i, index_t m) { y[i] = mp[m] != T(0) ? static_cast<T>(value) : xp[i]; });
  };
  auto backward = [walk](OpContext<T>& c) {
    if (!c.needs_grad(0) || c.out_shape().numel() == 0) return;
    const T* mp = c.in(1);
    const T* dy = c.out_grad();
    T* dx = c.in_grad(0);
    // d y / d x = 1 where kept, 0 where filled
    walk([&](index_t i, index_t m) {
      if (mp[m] == T(0)) dx[i] += dy[i];
    });
  };
  // dy = dx where kept, 0 where filled
  auto jvp = [](const JvpContext<T>& j) { return masked_fill(j.tangent(0), j.in(1), T(0)); };
  return make_op<T>("masked_fill", xs, {x, mask}, forward, backward, jvp);
}

/// The causal mask of a sequence of length n: an [n, n] 0/1 leaf with ones
/// strictly above the diagonal, the positions to hide. Row i is a query
/// position and column j a key position; query i may look at keys j <= i.
///
/// Example: causal_mask<float>(3) is
///   0 1 1
///   0 0 1
///   0 0 0
template <std::floating_point T>
basic_tensor<T> causal_mask(index_t n) {
  if (n < 0) throw value_error("causal_mask: negative length " + std::to_string(n));
  std::vector<T> v(static_cast<std::size_t>(n * n), T(0));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = i + 1; j < n; ++j) v[static_cast<std::size_t>(i * n + j)] = T(1);
  return basic_tensor<T>(Shape{n, n}, std::move(v));
}

namespace detail {

/// The fused attention of `scaled_dot_product_attention`, with an optional
/// mask (nonzero = hidden) that broadcasts to the scores [..., Tq, Tk].
template <class T>
basic_tensor<T> attention_impl(const basic_tensor<T>& q, const basic_tensor<T>& k, const basic_tensor<T>& v,
                               bool causal, const basic_tensor<T>* mask, basic_tensor<T>* weights) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MapC = Eigen::Map<const Mat>;
  using MapM = Eigen::Map<Mat>;
  const char* op = "scaled_dot_product_attention";
  const Shape &qs = q.shape(), &ks = k.shape(), &vs = v.shape();
  const index_t batch = attention_batch(qs, ks, vs);
  const index_t tq = qs[-2], tk = ks[-2], dh = qs[-1], dv = vs[-1];
  const T scale = dh == 0 ? T(1) : T(1) / std::sqrt(static_cast<T>(dh));
  const Shape out_shape = with_last(qs, dv);
  const Shape score_shape = with_last(qs, tk);

  // The mask's stride along each dimension of the scores, padded to 4 (0 where broadcast).
  shape4 sv = right_aligned(score_shape), mv;
  if (mask) {
    const Shape& ms = mask->shape();
    bool fits = ms.rank() <= score_shape.rank();
    for (int d = 1; fits && d <= ms.rank(); ++d) fits = ms[-d] == score_shape[-d] || ms[-d] == 1;
    if (!fits)
      throw shape_error(std::string(op) + ": mask " + ms.str() + " does not broadcast to the scores " +
                        score_shape.str() + " (q " + qs.str() + ", k " + ks.str() + ")");
    mv = right_aligned(ms);
    for (int d = 0; d < 4; ++d)
      if (mv.dim[d] == 1) mv.stride[d] = 0;
  }

  basic_tensor<T> copy;
  if (weights) {
    // The caller's buffer from the previous forward is rewritten in place when
    // it fits: a steady training step allocates nothing.
    const bool reuse =
        weights->defined() && weights->is_leaf() && !weights->requires_grad() && weights->shape() == score_shape;
    copy = reuse ? *weights : basic_tensor<T>(score_shape);
  }
  T* copy_out = weights ? copy.data().data() : nullptr;
  const bool masked = mask != nullptr;

  auto forward = [=](OpContext<T>& c) {
    const index_t ahead = tq * tk;
    // A for every head: saved for backward when recording, else a per-head scratch.
    T* saved = c.recording() ? c.save(batch * ahead) : nullptr;
    T* a = saved ? saved : c.scratch(ahead);
    const T* mp = masked ? c.in(3) : nullptr;
    for (index_t h = 0; h < batch; ++h) {
      T* ah = saved ? a + h * ahead : a;
      MapC Q(c.in(0) + h * tq * dh, tq, dh), K(c.in(1) + h * tk * dh, tk, dh), V(c.in(2) + h * tk * dv, tk, dv);
      MapM S(ah, tq, tk), O(c.out() + h * tq * dv, tq, dv);
      S.noalias() = (scale * Q) * K.transpose();
      // Head h is (h / d1, h % d1) in the two leading dimensions of the scores.
      const index_t mh = masked ? (h / sv.dim[1]) * mv.stride[0] + (h % sv.dim[1]) * mv.stride[1] : 0;
      for (index_t i = 0; i < tq; ++i) {
        // Query i sees keys 0..i when causal: softmax over those, exact zeros after.
        const index_t seen = causal ? std::min(i + 1, tk) : tk;
        T* row = ah + i * tk;
        if (mp)  // a hidden key scores -inf: weight exactly 0 (all hidden: a row of zeros)
          for (index_t j = 0; j < seen; ++j)
            if (mp[mh + i * mv.stride[2] + j * mv.stride[3]] != T(0)) row[j] = -std::numeric_limits<T>::infinity();
        if (seen > 0) softmax_vector(array_map<T>(row, seen), array_map<T>(row, seen));
        std::fill(row + seen, row + tk, T(0));
      }
      O.noalias() = S * V;
      if (copy_out) std::copy_n(ah, ahead, copy_out + h * ahead);
    }
  };
  // A hidden key has A = 0, so the softmax backward below gives it dS = 0:
  // the mask needs no step of its own.
  auto backward = [=](OpContext<T>& c) {
    const bool gq = c.needs_grad(0), gk = c.needs_grad(1), gv = c.needs_grad(2);
    T* dq = gq ? c.in_grad(0) : nullptr;
    T* dk = gk ? c.in_grad(1) : nullptr;
    T* dvp = gv ? c.in_grad(2) : nullptr;
    T* ds_buf = (gq || gk) ? c.scratch(tq * tk) : nullptr;
    const T* saved = c.saved(0);
    for (index_t h = 0; h < batch; ++h) {
      MapC A(saved + h * tq * tk, tq, tk), dO(c.out_grad() + h * tq * dv, tq, dv);
      MapC Q(c.in(0) + h * tq * dh, tq, dh), K(c.in(1) + h * tk * dh, tk, dh), V(c.in(2) + h * tk * dv, tk, dv);
      // out = A V:  dV = A^T dO
      if (gv) MapM(dvp + h * tk * dv, tk, dv).noalias() += A.transpose() * dO;
      if (!ds_buf) continue;
      // out = A V:  dA = dO V^T
      MapM dS(ds_buf, tq, tk);
      dS.noalias() = dO * V.transpose();
      // A = softmax(S) row by row: dS = A * (dA - rowsum(dA * A)), then the 1/sqrt(Dh)
      for (index_t i = 0; i < tq; ++i) {
        auto da = dS.row(i).array();
        const T cdot = (da * A.row(i).array()).sum();
        da = scale * A.row(i).array() * (da - cdot);
      }
      // S = s Q K^T:  dQ = s dS K,  dK = s dS^T Q  (s already folded into dS)
      if (gq) MapM(dq + h * tq * dh, tq, dh).noalias() += dS * K;
      if (gk) MapM(dk + h * tk * dh, tk, dh).noalias() += dS.transpose() * Q;
    }
  };
  // Per (batch, head), with A recomputed by tensor ops so that the tangent differentiates:
  //   dS = s (dQ K^T + Q dK^T),  dA = A * (dS - rowsum(A * dS)),  dO = dA V + A dV
  auto jvp = [=](const JvpContext<T>& j) {
    basic_tensor<T> scores = matmul(j.in(0), j.in(1), false, true) * scale;
    if (causal) {
      std::vector<T> hide(static_cast<std::size_t>(tq * tk), T(0));
      for (index_t i = 0; i < tq; ++i)
        for (index_t m = i + 1; m < tk; ++m) hide[static_cast<std::size_t>(i * tk + m)] = T(1);
      scores =
          masked_fill(scores, basic_tensor<T>(Shape{tq, tk}, std::move(hide)), -std::numeric_limits<T>::infinity());
    }
    if (masked) scores = masked_fill(scores, j.in(3), -std::numeric_limits<T>::infinity());
    const basic_tensor<T> a = softmax(scores, -1);
    basic_tensor<T> ds, dout;
    if (j.has_tangent(0)) ds = matmul(j.tangent(0), j.in(1), false, true);
    if (j.has_tangent(1)) ds = tangent_add(ds, matmul(j.in(0), j.tangent(1), false, true));
    if (ds.defined()) {
      ds = ds * scale;
      dout = matmul(a * (ds - sum(a * ds, -1, true)), j.in(2));
    }
    if (j.has_tangent(2)) dout = tangent_add(dout, matmul(a, j.tangent(2)));
    return dout;
  };
  basic_tensor<T> out = masked ? make_op<T>(op, out_shape, {q, k, v, *mask}, forward, backward, jvp)
                               : make_op<T>(op, out_shape, {q, k, v}, forward, backward, jvp);
  if (weights) *weights = std::move(copy);
  return out;
}

}  // namespace detail

/// The attention core, fused into one node:
///   A = softmax(q k^T / sqrt(Dh)),  out = A v
/// for q [..., Tq, Dh], k [..., Tk, Dh], v [..., Tk, Dv], where the leading
/// dimensions ([B, H], [B*H] or none) are the same for all three and each
/// (batch, head) pair is one independent attention. The result is [..., Tq, Dv].
/// The queries and the keys may come from different sequences (Tq != Tk):
/// cross attention.
///
/// With `causal`, query i attends only to keys j <= i (the positions that
/// `causal_mask` hides get weight 0).
///
/// When `weights` is not null it receives a copy of A, shaped [..., Tq, Tk],
/// as a leaf for inspection (plots, tests): no gradient flows through it.
/// When `*weights` already is a leaf of that shape that does not require a
/// gradient, A is written into its storage in place (so a layer that keeps
/// the weights of every forward allocates only once, and handles that share
/// that storage see the new values); otherwise a new leaf is made.
///
/// Backward, per (batch, head), with dO the output's gradient and s = 1/sqrt(Dh):
///   dV = A^T dO
///   dA = dO V^T
///   dS = A * (dA - rowsum(dA * A))     softmax's Jacobian, which is not diagonal
///   dQ = s dS K,   dK = s dS^T Q
/// A is kept in the tape's arena from the forward pass; the products are Eigen
/// GEMMs on per-head matrix maps, with transposes as views.
///
/// Errors: `shape_error` naming the three shapes when they do not fit.
///
/// Example:
///   Tensor out = scaled_dot_product_attention(q, k, v, /*causal=*/true);  // [B, H, T, Dh]
template <std::floating_point T>
basic_tensor<T> scaled_dot_product_attention(const basic_tensor<T>& q, const basic_tensor<T>& k,
                                             const basic_tensor<T>& v, bool causal = false,
                                             basic_tensor<T>* weights = nullptr) {
  return detail::attention_impl<T>(q, k, v, causal, nullptr, weights);
}

/// Attention with a mask: as above, where `mask` is a 0/1 tensor that
/// broadcasts to the scores [..., Tq, Tk] (NumPy rules, aligned on the right)
/// and a nonzero entry hides that key from that query, as in `masked_fill` and
/// `causal_mask`: its weight is exactly 0. So [Tq, Tk] is one mask for every
/// head, [B, 1, 1, Tk] hides padded keys per batch entry, [B, H, Tq, Tk] is a
/// mask per head. A query whose keys are all hidden gets weight 0 everywhere:
/// its output row is 0 and passes no gradient (not NaN). The mask receives
/// no gradient; the backward pass is the fused one above, unchanged (a hidden
/// key has A = 0 and so dS = 0).
///
/// Errors: `shape_error` naming the mask and the scores' shape when the mask
/// does not broadcast, and the three shapes when q, k and v do not fit.
///
/// Example:
///   // an action expert's queries [B, H, Ta, Dh] read backbone keys [B, H, Tb, Dh]
///   Tensor out = scaled_dot_product_attention(q, k_backbone, v_backbone, pad_mask);  // pad_mask [B, 1, 1, Tb]
template <std::floating_point T>
basic_tensor<T> scaled_dot_product_attention(const basic_tensor<T>& q, const basic_tensor<T>& k,
                                             const basic_tensor<T>& v, const basic_tensor<T>& mask,
                                             basic_tensor<T>* weights = nullptr) {
  return detail::attention_impl<T>(q, k, v, false, &mask, weights);
}

}  // namespace tapegrad
