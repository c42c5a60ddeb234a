// SPDX-License-Identifier: MIT
#pragma once

// Internals shared by the neural-network functions (tensor/nn_functional.hpp
// and tensor/attention.hpp): row views, memory for the backward pass taken
// from the tape's arena, and the per-vector softmax kernels.

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad {

namespace detail {

/// Rows and columns of a tensor seen as a matrix over its last dimension.
struct row_view {
  index_t rows = 0;
  index_t cols = 0;
};

inline row_view rows_of(const Shape& s) {
  const index_t cols = s.rank() == 0 ? 1 : s[-1];
  return {cols == 0 ? 0 : s.numel() / cols, cols};
}

/// `s` with its last extent replaced by `last`, dropped when `last` is -1, or
/// with `last` appended when `append` is set. (No heap allocation, unlike dims().)
inline Shape with_last(const Shape& s, index_t last, bool append = false) {
  std::array<index_t, max_rank + 1> d{};
  int r = 0;
  for (; r < s.rank(); ++r) d[static_cast<std::size_t>(r)] = s[r];
  if (append)
    d[static_cast<std::size_t>(r++)] = last;
  else if (last < 0)
    --r;
  else
    d[static_cast<std::size_t>(r - 1)] = last;
  return Shape(std::span<const index_t>(d.data(), static_cast<std::size_t>(r)));
}

template <class T>
using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using strided_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<>>;
template <class T>
using const_strided_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<>>;

/// True when a vector holds -inf (a masked position).
template <class X>
bool has_minus_inf(const X& x) {
  using T = typename X::Scalar;
  return x.size() > 0 && x.minCoeff() == -std::numeric_limits<T>::infinity();
}

/// e^x elementwise with e^-inf exactly 0, for vectors that hold -inf. (Eigen's
/// vectorised exp clamps its argument, so -inf would give a tiny denormal; this
/// slower path runs only when `has_minus_inf`.)
template <class E>
auto exp_masked(const E& e) {
  using T = typename E::Scalar;
  return (e == -std::numeric_limits<T>::infinity()).select(T(0), e.exp());
}

/// y = softmax(x) over one vector. A vector that is all -inf gives zeros.
template <class X, class Y>
void softmax_vector(const X& x, Y&& y) {
  using T = typename std::decay_t<Y>::Scalar;
  const T m = x.maxCoeff();
  if (m == -std::numeric_limits<T>::infinity()) {
    y.setZero();
    return;
  }
  if (has_minus_inf(x))
    y = exp_masked(x - m);
  else
    y = (x - m).exp();
  y *= T(1) / y.sum();
}

/// dx += y * (dy - sum(dy * y)): softmax's Jacobian diag(y) - y y^T applied to dy.
template <class Y, class DY, class DX>
void softmax_vector_backward(const Y& y, const DY& dy, DX&& dx) {
  const auto c = (dy * y).sum();
  dx += y * (dy - c);
}

/// y = x - logsumexp(x) over one vector; all -inf gives all -inf (log 0).
template <class X, class Y>
void log_softmax_vector(const X& x, Y&& y) {
  using T = typename std::decay_t<Y>::Scalar;
  const T m = x.maxCoeff();
  if (m == -std::numeric_limits<T>::infinity()) {
    y.setConstant(m);
    return;
  }
  // A -inf entry adds e^-inf, at most a denormal next to the max's e^0 = 1.
  const T lse = m + std::log((x - m).exp().sum());
  y = x - lse;
}

/// dx += dy - softmax(x) * sum(dy), with softmax(x) = exp(y). A fully masked
/// vector (all -inf) passes no gradient.
template <class Y, class DY, class DX>
void log_softmax_vector_backward(const Y& y, const DY& dy, DX&& dx) {
  using T = typename std::decay_t<DX>::Scalar;
  if (y.maxCoeff() == -std::numeric_limits<T>::infinity()) return;
  const T s = dy.sum();
  if (has_minus_inf(y))
    dx += dy - exp_masked(y) * s;
  else
    dx += dy - y.exp() * s;
}

/// Calls f(offset, stride) for every vector along `axis` of a tensor of shape
/// `s`: the vector's first element and the distance between its elements.
template <class F>
void for_each_axis_vector(const Shape& s, int axis, F&& f) {
  index_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.rank(); ++d) inner *= s[d];
  const index_t len = s[axis];
  for (index_t o = 0; o < outer; ++o)
    for (index_t i = 0; i < inner; ++i) f(o * len * inner + i, inner);
}

/// Checks `axis` against the rank of `s` and makes it non-negative.
inline int normalize_axis(const char* op, const Shape& s, int axis) {
  const int k = axis < 0 ? axis + s.rank() : axis;
  if (k < 0 || k >= s.rank())
    throw index_error(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for shape " + s.str());
  return k;
}

/// softmax and log_softmax share their plumbing; `Log` picks the rule.
template <class T, bool Log, class Jvp>
basic_tensor<T> softmax_family(const basic_tensor<T>& x, int axis, Jvp jvp) {
  const char* name = Log ? "log_softmax" : "softmax";
  const int ax = normalize_axis(name, x.shape(), axis);
  const bool last = ax == x.rank() - 1;
  auto forward = [ax, last](OpContext<T>& c) {
    const Shape& s = c.shape(0);
    const index_t n = s[ax];
    if (n == 0) return;
    auto run = [&](const T* xp, T* yp, index_t stride) {
      if (stride == 1) {
        const_array_map<T> xv(xp, n);
        array_map<T> yv(yp, n);
        if constexpr (Log)
          log_softmax_vector(xv, yv);
        else
          softmax_vector(xv, yv);
      } else {
        const_strided_map<T> xv(xp, n, Eigen::InnerStride<>(stride));
        strided_map<T> yv(yp, n, Eigen::InnerStride<>(stride));
        if constexpr (Log)
          log_softmax_vector(xv, yv);
        else
          softmax_vector(xv, yv);
      }
    };
    if (last) {
      const row_view rv = rows_of(s);
      for (index_t r = 0; r < rv.rows; ++r) run(c.in(0) + r * n, c.out() + r * n, 1);
    } else {
      for_each_axis_vector(s, ax, [&](index_t off, index_t stride) { run(c.in(0) + off, c.out() + off, stride); });
    }
  };
  auto backward = [ax, last](OpContext<T>& c) {
    if (!c.needs_grad(0)) return;
    const Shape& s = c.shape(0);
    const index_t n = s[ax];
    if (n == 0) return;
    T* dx = c.in_grad(0);
    auto run = [&](index_t off, index_t stride) {
      if (stride == 1) {
        const_array_map<T> y(c.out() + off, n), dy(c.out_grad() + off, n);
        array_map<T> g(dx + off, n);
        if constexpr (Log)
          log_softmax_vector_backward(y, dy, g);
        else
          softmax_vector_backward(y, dy, g);
      } else {
        const Eigen::InnerStride<> st(stride);
        const_strided_map<T> y(c.out() + off, n, st), dy(c.out_grad() + off, n, st);
        strided_map<T> g(dx + off, n, st);
        if constexpr (Log)
          log_softmax_vector_backward(y, dy, g);
        else
          softmax_vector_backward(y, dy, g);
      }
    };
    if (last) {
      const row_view rv = rows_of(s);
      for (index_t r = 0; r < rv.rows; ++r) run(r * n, 1);
    } else {
      for_each_axis_vector(s, ax, run);
    }
  };
  return make_op<T>(name, x.shape(), {x}, forward, backward, std::move(jvp));
}

/// Padded rank-4 extents and strides of `s`, aligned to the right.
struct shape4 {
  index_t dim[4] = {1, 1, 1, 1};
  index_t stride[4] = {0, 0, 0, 0};
};

inline shape4 right_aligned(const Shape& s) {
  shape4 r;
  const int off = 4 - s.rank();
  for (int d = 0; d < s.rank(); ++d) {
    r.dim[off + d] = s[d];
    r.stride[off + d] = s.stride(d);
  }
  return r;
}

}  // namespace detail

}  // namespace tapegrad
