// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <array>
#include <concepts>
#include <string>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/broadcast.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

/// Options of `matmul`: use an operand transposed, without copying it.
struct MatmulOptions {
  bool transpose_a = false;  ///< multiply by a's last two dimensions swapped
  bool transpose_b = false;  ///< multiply by b's last two dimensions swapped
};

namespace detail {

/// The shapes of one matmul: an M x K by K x N product per batch entry.
struct matmul_geometry {
  index_t m = 0, k = 0, n = 0;
  Shape batch_a, batch_b, batch;  // leading dimensions, and their broadcast
  Shape out;
};

inline std::string matmul_operand(const Shape& s, bool t) { return s.str() + (t ? "^T" : ""); }

inline matmul_geometry matmul_shapes(const Shape& a, const Shape& b, const MatmulOptions& opt) {
  // The start of every message, built only when there is an error to report.
  auto both = [&] {
    return "matmul: " + matmul_operand(a, opt.transpose_a) + " x " + matmul_operand(b, opt.transpose_b);
  };
  if (a.rank() == 0 || b.rank() == 0) throw shape_error(both() + ": operands must have at least 1 dimension");
  matmul_geometry g;
  // A vector on the left is a row [1, K], on the right a column [K, 1] (as
  // NumPy); the extra dimension is dropped from the result. Transposing a
  // vector changes nothing.
  const bool ta = opt.transpose_a && a.rank() >= 2, tb = opt.transpose_b && b.rank() >= 2;
  const index_t a_rows = a.rank() == 1 ? 1 : a[-2], a_cols = a[-1];
  const index_t b_rows = b.rank() == 1 ? b[0] : b[-2], b_cols = b.rank() == 1 ? 1 : b[-1];
  g.m = ta ? a_cols : a_rows;
  const index_t ka = ta ? a_rows : a_cols;
  const index_t kb = tb ? b_cols : b_rows;
  g.n = tb ? b_rows : b_cols;
  if (ka != kb)
    throw shape_error(both() + ": inner dimensions differ (" + std::to_string(ka) + " vs " + std::to_string(kb) + ")");
  g.k = ka;
  auto lead = [](const Shape& s) {
    extents e;
    for (int i = 0; i + 2 < s.rank(); ++i) e.push_back(s[i]);
    return e.shape();
  };
  g.batch_a = lead(a);
  g.batch_b = lead(b);
  try {
    g.batch = broadcast_shapes("matmul", g.batch_a, g.batch_b);
  } catch (const shape_error&) {
    throw shape_error(both() + ": batch dimensions " + g.batch_a.str() + " and " + g.batch_b.str() +
                      " do not broadcast");
  }
  // The batch has at most 2 dimensions (operands have at most 4), so the result fits in 4.
  extents d(g.batch);
  if (a.rank() >= 2) d.push_back(g.m);
  if (b.rank() >= 2) d.push_back(g.n);
  g.out = d.shape();
  return g;
}

/// Calls f with `m` or its transpose (an Eigen view, never a copy).
template <class M, class F>
void with_op(const M& m, bool t, F&& f) {
  if (t)
    f(m.transpose());
  else
    f(m);
}

}  // namespace detail

/// The matrix product of the last two dimensions of a and b, batched over the
/// leading dimensions, which broadcast (NumPy's matmul): [.., M, K] x [.., K, N]
/// -> [.., M, N]. A 1-D operand is a vector: [K] x [K, N] -> [N] and
/// [M, K] x [K] -> [M]. `opt.transpose_a` / `opt.transpose_b` use an operand
/// with its last two dimensions swapped, through an Eigen view (no copy): for
/// attention scores, `matmul(q, k, {.transpose_b = true})` is q k^T.
///
/// Gradients (per batch entry, C = A B, G = dL/dC): dL/dA = G B^T,
/// dL/dB = A^T G, summed over batch entries that an operand was broadcast to.
///
/// Errors name both shapes: `matmul: [8, 64] x [32, 20]: inner dimensions differ (64 vs 32)`.
///
/// Example:
///   Tensor x = ...;            // [256, 64]
///   Tensor w = ...;            // [64, 256]
///   Tensor h = matmul(x, w);   // [256, 256]
template <std::floating_point T>
basic_tensor<T> matmul(const basic_tensor<T>& a, const basic_tensor<T>& b, MatmulOptions opt = {}) {
  const detail::matmul_geometry g = detail::matmul_shapes(a.shape(), b.shape(), opt);
  opt.transpose_a = opt.transpose_a && a.rank() >= 2;
  opt.transpose_b = opt.transpose_b && b.rank() >= 2;
  using Mat = typename OpContext<T>::Mat;
  using CMap = Eigen::Map<const Mat>;
  using MMap = Eigen::Map<Mat>;
  const auto M = static_cast<Eigen::Index>(g.m), K = static_cast<Eigen::Index>(g.k), N = static_cast<Eigen::Index>(g.n);
  const bool ta = opt.transpose_a, tb = opt.transpose_b;
  // Stored extents of one batch entry of each operand.
  const Eigen::Index ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  // With b shared by every batch entry and a not transposed, the batch folds
  // into the rows of a single GEMM: [B*M, K] x [K, N].
  const bool fold = g.batch_b.numel() == 1 && !ta;
  const auto rows = static_cast<Eigen::Index>(g.batch.numel()) * M;

  // Visits every batch entry q with the batch entries ia, ib of a and b.
  auto each_batch = [g](auto&& f) {
    detail::broadcast_plan<2> p(g.batch, {&g.batch_a, &g.batch_b});
    detail::broadcast_for_each(p, f);
  };

  return make_op<T>(
      "matmul", g.out, {a, b},
      [=](OpContext<T>& c) {
        if (fold) {
          MMap C(c.out(), rows, N);
          detail::with_op(CMap(c.in(1), br, bc), tb, [&](const auto& B) { C.noalias() = CMap(c.in(0), rows, K) * B; });
          return;
        }
        each_batch([&](index_t q, index_t ia, index_t ib) {
          MMap C(c.out() + q * M * N, M, N);
          const CMap A(c.in(0) + ia * M * K, ar, ac), B(c.in(1) + ib * K * N, br, bc);
          detail::with_op(A, ta, [&](const auto& opA) {
            detail::with_op(B, tb, [&](const auto& opB) { C.noalias() = opA * opB; });
          });
        });
      },
      // C = op(A) op(B), G = dL/dC:
      //   dL/d op(A) = G op(B)^T     so dL/dA = G op(B)^T,  or (G op(B)^T)^T = op(B) G^T when A is used transposed
      //   dL/d op(B) = op(A)^T G     so dL/dB = op(A)^T G,  or G^T op(A) when B is used transposed
      [=](OpContext<T>& c) {
        if (fold) {
          const CMap G(c.out_grad(), rows, N), A(c.in(0), rows, K), B(c.in(1), br, bc);
          if (c.needs_grad(0)) {
            MMap GA(c.in_grad(0), rows, K);
            detail::with_op(B, !tb, [&](const auto& opBt) { GA.noalias() += G * opBt; });
          }
          if (c.needs_grad(1)) {
            MMap GB(c.in_grad(1), br, bc);
            if (tb)
              GB.noalias() += G.transpose() * A;
            else
              GB.noalias() += A.transpose() * G;
          }
          return;
        }
        T* ga = c.needs_grad(0) ? c.in_grad(0) : nullptr;
        T* gb = c.needs_grad(1) ? c.in_grad(1) : nullptr;
        each_batch([&](index_t q, index_t ia, index_t ib) {
          const CMap G(c.out_grad() + q * M * N, M, N);
          const CMap A(c.in(0) + ia * M * K, ar, ac), B(c.in(1) + ib * K * N, br, bc);
          if (ga) {
            MMap GA(ga + ia * M * K, ar, ac);
            if (ta)
              detail::with_op(B, tb, [&](const auto& opB) { GA.noalias() += opB * G.transpose(); });
            else
              detail::with_op(B, !tb, [&](const auto& opBt) { GA.noalias() += G * opBt; });
          }
          if (gb) {
            MMap GB(gb + ib * K * N, br, bc);
            if (tb)
              detail::with_op(A, ta, [&](const auto& opA) { GB.noalias() += G.transpose() * opA; });
            else
              detail::with_op(A, !ta, [&](const auto& opAt) { GB.noalias() += opAt * G; });
          }
        });
      },
      // d(A B) = dA B + A dB, with the same transposes
      [opt](const JvpContext<T>& j) {
        basic_tensor<T> t;
        if (j.has_tangent(0)) t = matmul(j.tangent(0), j.in(1), opt);
        if (j.has_tangent(1)) t = detail::tangent_add(t, matmul(j.in(0), j.tangent(1), opt));
        return t;
      });
}

/// `matmul(a, b, {.transpose_a = transpose_a, .transpose_b = transpose_b})`.
template <std::floating_point T>
basic_tensor<T> matmul(const basic_tensor<T>& a, const basic_tensor<T>& b, bool transpose_a, bool transpose_b) {
  return matmul(a, b, MatmulOptions{transpose_a, transpose_b});
}

}  // namespace tapegrad
