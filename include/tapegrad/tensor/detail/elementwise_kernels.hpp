// SPDX-License-Identifier: MIT
#pragma once

// The loops behind the elementwise ops of tensor/elementwise.hpp: the fast
// paths of a broadcasting binary op (equal shapes, a single number, a row
// repeated under a matrix) as Eigen array expressions, the general strided
// broadcast, and the one-input op builder.

#include <Eigen/Core>
#include <cstddef>
#include <utility>

#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/tensor/detail/broadcast.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad::detail {

/// How the two inputs of a binary op meet: equal shapes, one a single number,
/// one repeated row after row under the other (a bias [D] under [N, D]), or
/// the general broadcast.
enum class binary_kind { same, scalar_a, scalar_b, rows_a, rows_b, general };

template <class T>
binary_kind classify(const OpContext<T>& c) {
  const Shape &a = c.shape(0), &b = c.shape(1), &y = c.out_shape();
  const bool a_full = a == y, b_full = b == y;
  if (a_full && b_full) return binary_kind::same;
  if (a_full && b.numel() == 1) return binary_kind::scalar_b;
  if (b_full && a.numel() == 1) return binary_kind::scalar_a;
  if (a_full && is_trailing_block(b, y)) return binary_kind::rows_a;
  if (b_full && is_trailing_block(a, y)) return binary_kind::rows_b;
  return binary_kind::general;
}

/// y = f(a, b) over the general broadcast of inputs 0 and 1, one element at a time.
template <class T, class F>
void binary_forward_general(OpContext<T>& c, F&& f) {
  const T* a = c.in(0);
  const T* b = c.in(1);
  T* y = c.out();
  broadcast_plan<2> p(c.out_shape(), {&c.shape(0), &c.shape(1)});
  broadcast_for_each(p, [&](index_t o, index_t i, index_t j) { y[o] = f(a[i], b[j]); });
}

/// y = f(a, b) over the broadcast of inputs 0 and 1. `f` is written once for
/// both Eigen arrays and plain numbers, e.g. `[](const auto& x, const auto& y)
/// { return x * y; }`: the fast paths run it on whole arrays or rows (vectorised),
/// the general broadcast on single elements.
template <class T, class F>
void binary_forward(OpContext<T>& c, F&& f) {
  using Vec = typename OpContext<T>::Vec;
  using CMap = Eigen::Map<const Vec>;
  const T* a = c.in(0);
  const T* b = c.in(1);
  T* y = c.out();
  const index_t n = c.out_shape().numel();
  switch (classify(c)) {
    case binary_kind::same:
      c.out_vec() = f(c.in_vec(0), c.in_vec(1));
      return;
    case binary_kind::scalar_b:
      c.out_vec() = f(c.in_vec(0), b[0]);
      return;
    case binary_kind::scalar_a:
      c.out_vec() = f(a[0], c.in_vec(1));
      return;
    case binary_kind::rows_a: {
      const index_t len = c.shape(1).numel();
      for (index_t r = 0; r < n; r += len) Eigen::Map<Vec>(y + r, len) = f(CMap(a + r, len), CMap(b, len));
      return;
    }
    case binary_kind::rows_b: {
      const index_t len = c.shape(0).numel();
      for (index_t r = 0; r < n; r += len) Eigen::Map<Vec>(y + r, len) = f(CMap(a, len), CMap(b + r, len));
      return;
    }
    case binary_kind::general:
      binary_forward_general(c, f);
      return;
  }
}

/// grad(input k) += g * d(a, b, y) over the general broadcast, one element at a
/// time, for a binary op whose local derivative in input k is `d`. Where g is
/// exactly 0 the contribution is exactly 0, even if d is infinite.
template <class T, class D>
void binary_backward_general(OpContext<T>& c, std::size_t k, D&& d) {
  if (!c.needs_grad(k)) return;
  const T* a = c.in(0);
  const T* b = c.in(1);
  const T* y = c.out();
  const T* g = c.out_grad();
  T* gk = c.in_grad(k);
  broadcast_plan<2> p(c.out_shape(), {&c.shape(0), &c.shape(1)});
  broadcast_for_each(p, [&](index_t o, index_t i, index_t j) {
    if (g[o] != T(0)) gk[k == 0 ? i : j] += g[o] * d(a[i], b[j], y[o]);
  });
}

/// grad(input k) += g * d(a, b, y), summed where input k was broadcast, with
/// `d` written for arrays and numbers alike (as `f` above) and the same fast
/// paths. With Guard, elements where g is exactly 0 contribute exactly 0 even
/// where d is infinite (for ops with unbounded slopes).
template <class T, bool Guard = false, class D>
void binary_backward(OpContext<T>& c, std::size_t k, D&& d) {
  if (!c.needs_grad(k)) return;
  using Vec = typename OpContext<T>::Vec;
  using CMap = Eigen::Map<const Vec>;
  const T* a = c.in(0);
  const T* b = c.in(1);
  const T* y = c.out();
  const T* g = c.out_grad();
  T* gk = c.in_grad(k);
  const index_t n = c.out_shape().numel();
  auto term = [](const auto& gg, const auto& dd) {
    if constexpr (Guard)
      return (gg == T(0)).select(T(0), gg * dd);
    else
      return gg * dd;
  };
  const binary_kind kind = classify(c);
  switch (kind) {
    case binary_kind::same:
      c.in_grad_vec(k) += term(c.out_grad_vec(), d(c.in_vec(0), c.in_vec(1), c.out_vec()));
      return;
    case binary_kind::scalar_b:
      if (k == 0)
        c.in_grad_vec(0) += term(c.out_grad_vec(), d(c.in_vec(0), b[0], c.out_vec()));
      else
        gk[0] += term(c.out_grad_vec(), d(c.in_vec(0), b[0], c.out_vec())).sum();
      return;
    case binary_kind::scalar_a:
      if (k == 1)
        c.in_grad_vec(1) += term(c.out_grad_vec(), d(a[0], c.in_vec(1), c.out_vec()));
      else
        gk[0] += term(c.out_grad_vec(), d(a[0], c.in_vec(1), c.out_vec())).sum();
      return;
    case binary_kind::rows_a:
    case binary_kind::rows_b: {
      const bool rows_a = kind == binary_kind::rows_a;
      const std::size_t small = rows_a ? 1 : 0;  // the input repeated row after row
      const index_t len = c.shape(small).numel();
      for (index_t r = 0; r < n; r += len) {
        const CMap ar(rows_a ? a + r : a, len), br(rows_a ? b : b + r, len);
        Eigen::Map<Vec>(gk + (k == small ? 0 : r), len) += term(CMap(g + r, len), d(ar, br, CMap(y + r, len)));
      }
      return;
    }
    case binary_kind::general:
      binary_backward_general(c, k, d);
      return;
  }
}

/// A one-input elementwise op: y = f(x) and dy/dx = d(x, y), both written as
/// Eigen array expressions (vectorised). With Guard, elements whose incoming
/// gradient is exactly 0 pass exactly 0 even where d is infinite.
/// The jvp rule `j` receives the JvpContext, as make_op's does.
template <class T, bool Guard = false, class F, class D, class J>
basic_tensor<T> unary_op(const char* name, const basic_tensor<T>& x, F f, D d, J j) {
  return make_op<T>(
      name, x.shape(), {x}, [f](OpContext<T>& c) { c.out_vec() = f(c.in_vec(0)); },
      [d](OpContext<T>& c) {
        const auto g = c.out_grad_vec();
        if constexpr (Guard) {
          // Vectorised product into scratch, then a cheap pass that skips g == 0.
          using Vec = typename OpContext<T>::Vec;
          const auto n = g.size();
          Eigen::Map<Vec> t(c.scratch(n), n);
          t = g * d(c.in_vec(0), c.out_vec());
          T* gx = c.in_grad(0);
          for (Eigen::Index i = 0; i < n; ++i)
            if (g[i] != T(0)) gx[i] += t[i];
        } else {
          c.in_grad_vec(0) += g * d(c.in_vec(0), c.out_vec());
        }
      },
      std::move(j));
}

/// f(x) elementwise as a constant: a fresh tensor that no gradient reaches.
/// Jvp rules multiply tangents by such masks where the slope is piecewise
/// constant (relu, abs, clamp): its own derivative is 0 almost everywhere.
template <class T, class F>
basic_tensor<T> constant_of(const basic_tensor<T>& x, F f) {
  NoGradGuard off;
  return make_op<T>(
      "mask", x.shape(), {x}, [f](OpContext<T>& c) { c.out_vec() = f(c.in_vec(0)); }, [](OpContext<T>&) {});
}

/// A tangent t widened to `shape` (a broadcast operand's tangent, when the
/// other operand's is zero).
template <class T>
basic_tensor<T> widen_tangent(const basic_tensor<T>& t, const Shape& shape) {
  if (!t.defined() || t.shape() == shape) return t;
  basic_tensor<T> z(shape);
  return t + z;
}

// GELU, tanh form: y = x/2 (1 + tanh u) with u = k (x + 0.044715 x^3), k = sqrt(2/pi).
// dy/dx = (1 + t)/2 + x/2 (1 - t^2) k (1 + 3 * 0.044715 x^2), t = tanh u.
inline constexpr double gelu_k = 0.7978845608028654;  // sqrt(2/pi)
inline constexpr double gelu_c = 0.044715;

template <class T, class A>
auto gelu_value(const A& v) {
  return T(0.5) * v * (T(1) + (T(gelu_k) * (v + T(gelu_c) * v.cube())).tanh());
}
// tanh u, to be evaluated once (into a buffer) and passed to gelu_slope.
template <class T, class A>
auto gelu_tanh(const A& v) {
  return (T(gelu_k) * (v + T(gelu_c) * v.cube())).tanh();
}
template <class T, class A, class B>
auto gelu_slope(const A& v, const B& t) {
  return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t.square()) * T(gelu_k) * (T(1) + T(3 * gelu_c) * v.square());
}

// The slope as a tensor expression, for gelu's jvp rule.
template <class T>
basic_tensor<T> gelu_slope_tensor(const basic_tensor<T>& x) {
  const basic_tensor<T> x2 = x * x;
  const basic_tensor<T> t = tanh((x + x2 * x * T(gelu_c)) * T(gelu_k));
  return (T(1) + t) * T(0.5) + x * (T(1) - t * t) * (T(0.5 * gelu_k)) * (T(1) + x2 * T(3 * gelu_c));
}

}  // namespace tapegrad::detail
