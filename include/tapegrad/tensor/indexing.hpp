// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/broadcast.hpp"
#include "tapegrad/tensor/detail/nn_kernels.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/reduce.hpp"

namespace tapegrad {

// Ops that read or write by integer position: the arg-max and arg-min (plain
// integers, no gradient), gather along an axis and its adjoint scatter_add.
//
// Integer positions are `index_t` values, not tensors: a tensor holds floating
// point values and carries gradients, and a position has no gradient. A list
// of positions is a `std::vector<index_t>` (or any span of them) in row-major
// order, with a `Shape` where the op needs one; what `argmax` returns feeds
// `cross_entropy`, `embedding`, `index_select` and `gather` as it is.

namespace detail {

// The first arg-max (Min: arg-min) of every group along `axis`, row-major over
// x's shape without that axis.
template <bool Min, class T>
std::vector<index_t> arg_extreme(const char* op, const basic_tensor<T>& x, int axis) {
  const Shape& s = x.shape();
  const int d = normalize_dim(op, axis, s.rank());
  // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
  const std::array<index_t, 3> parts_ = split_at(s, d);
  const index_t outer = parts_[0], len = parts_[1], inner = parts_[2];
  if (len == 0)
    throw value_error(std::string(op) + ": dimension " + std::to_string(d) + " of " + s.str() + " is empty");
  const T* p = x.data().data();
  std::vector<index_t> out(static_cast<std::size_t>(outer * inner));
  for (index_t o = 0; o < outer; ++o)
    for (index_t i = 0; i < inner; ++i)
      out[static_cast<std::size_t>(o * inner + i)] = argmax_strided<Min>(p + o * len * inner + i, len, inner);
  return out;
}

// The flat offset in x of every element that gather reads (or scatter_add
// writes): position p of the index tensor (shape `is`) stands for the element
// of x (shape `xs`) whose coordinates are p's, except along `dim`, where the
// coordinate is index[p]. Checks every shape and index first and names the op
// and the offending values. The offsets are written to `off` (is.numel() of them).
inline void gather_offsets(const char* op, const Shape& xs, int dim, std::span<const index_t> index, const Shape& is,
                           index_t* off) {
  const int d = normalize_dim(op, dim, xs.rank());
  if (is.rank() != xs.rank())
    throw shape_error(std::string(op) + ": index shape " + is.str() + " has rank " + std::to_string(is.rank()) +
                      ", x " + xs.str() + " has rank " + std::to_string(xs.rank()));
  for (int k = 0; k < xs.rank(); ++k)
    if (k != d && is[k] > xs[k])
      throw shape_error(std::string(op) + ": index shape " + is.str() + " exceeds x " + xs.str() + " in dimension " +
                        std::to_string(k) + " (" + std::to_string(is[k]) + " > " + std::to_string(xs[k]) + ")");
  if (static_cast<index_t>(index.size()) != is.numel())
    throw shape_error(std::string(op) + ": " + std::to_string(index.size()) + " indices do not fill index shape " +
                      is.str() + " (" + std::to_string(is.numel()) + " elements)");
  const index_t n = is.numel();
  std::array<index_t, max_rank> at{};  // the coordinates of position p, an odometer
  for (index_t p = 0; p < n; ++p) {
    const index_t j = index[static_cast<std::size_t>(p)];
    if (j < 0 || j >= xs[d])
      throw index_error(std::string(op) + ": index " + std::to_string(j) + " (position " + std::to_string(p) +
                        ") out of range [0, " + std::to_string(xs[d]) + ") for dimension " + std::to_string(d) +
                        " of x " + xs.str());
    index_t o = 0;
    for (int k = 0; k < xs.rank(); ++k) o += (k == d ? j : at[static_cast<std::size_t>(k)]) * xs.stride(k);
    off[p] = o;
    for (int k = is.rank() - 1; k >= 0; --k) {
      if (++at[static_cast<std::size_t>(k)] < is[k]) break;
      at[static_cast<std::size_t>(k)] = 0;
    }
  }
}

}  // namespace detail

/// The flat (row-major) position of the largest element; on ties the first.
/// Not recorded on the tape: a position has no gradient.
///
/// Errors: `value_error` when x has no elements.
template <std::floating_point T>
index_t argmax(const basic_tensor<T>& x) {
  if (x.numel() == 0) throw value_error("argmax: shape " + x.shape().str() + " has no elements");
  return detail::argmax_strided<false>(x.data().data(), x.numel(), 1);
}

/// The position along `axis` of the largest element of every group, on ties
/// the first: one per element of x's shape without `axis`, in row-major order.
/// `argmax(logits, -1)` of logits [N, C] gives N class ids.
///
/// Errors: `index_error` for an axis x lacks; `value_error` when the axis is empty.
template <std::floating_point T>
std::vector<index_t> argmax(const basic_tensor<T>& x, int axis) {
  return detail::arg_extreme<false>("argmax", x, axis);
}

/// The flat position of the smallest element; on ties the first.
template <std::floating_point T>
index_t argmin(const basic_tensor<T>& x) {
  if (x.numel() == 0) throw value_error("argmin: shape " + x.shape().str() + " has no elements");
  return detail::argmax_strided<true>(x.data().data(), x.numel(), 1);
}

/// The position along `axis` of the smallest element of every group (see `argmax`).
template <std::floating_point T>
std::vector<index_t> argmin(const basic_tensor<T>& x, int axis) {
  return detail::arg_extreme<true>("argmin", x, axis);
}

/// Values of x picked along dimension `dim` by an index tensor of shape
/// `index_shape` (the same rank as x, and no larger than x outside `dim`),
/// as PyTorch's gather. For rank 2 and dim 1:
///   out[i][j] = x[i][index[i][j]]
/// The result has shape `index_shape`; `index` holds its positions row-major.
///
/// Backward: dx[i][index[i][j]] += dy[i][j], a `scatter_add` (a position
/// picked twice receives both gradients).
///
/// Errors: `shape_error` naming both shapes when they do not fit; `index_error`
/// naming the index, its position and the bound when it lies outside [0, x.size(dim)).
///
/// Example:
///   Tensor picked = gather(logits, 1, targets, Shape{n, 1});   // logits[i][targets[i]]
template <std::floating_point T>
basic_tensor<T> gather(const basic_tensor<T>& x, int dim, std::span<const index_t> index, const Shape& index_shape) {
  const Shape xs = x.shape();
  return make_op<T>(
      "gather", index_shape, {x},
      [xs, dim, index, index_shape](OpContext<T>& c) {
        // The offsets are checked here and saved for backward.
        index_t* off = c.template save<index_t>(index_shape.numel());
        detail::gather_offsets("gather", xs, dim, index, index_shape, off);
        T* y = c.out();
        const T* xs = c.in(0);
        for (index_t p = 0; p < c.out_shape().numel(); ++p) y[p] = xs[off[p]];
      },
      // y_p = x_{off(p)}:  dx_{off(p)} += dy_p
      [](OpContext<T>& c) {
        const index_t* off = c.template saved<index_t>(0);
        T* gx = c.in_grad(0);
        const T* g = c.out_grad();
        for (index_t p = 0; p < c.out_shape().numel(); ++p) gx[off[p]] += g[p];
      },
      // linear: dy = the same picks of dx (the rule runs while the caller's indices live)
      [dim, index, index_shape](const JvpContext<T>& j) { return gather(j.tangent(0), dim, index, index_shape); });
}

/// `gather` with the indices written in place: `gather(x, 1, {2, 0}, Shape{2, 1})`.
template <std::floating_point T>
basic_tensor<T> gather(const basic_tensor<T>& x, int dim, std::initializer_list<index_t> index,
                       const Shape& index_shape) {
  return gather(x, dim, std::span<const index_t>(index.begin(), index.size()), index_shape);
}

/// `base` with the values of `src` added at the positions `index` names along
/// dimension `dim`, as PyTorch's scatter_add: for rank 2 and dim 1,
///   out[i][index[i][j]] += src[i][j]
/// `index` holds one position per element of src, row-major; src has base's
/// rank and is no larger than base outside `dim`. Positions may repeat: their
/// values add up. The result has base's shape. It is the adjoint of `gather`.
///
/// Backward: dbase = dy; dsrc[i][j] = dy[i][index[i][j]], a `gather`.
///
/// Errors: as `gather`, with src's shape in place of the index shape.
template <std::floating_point T>
basic_tensor<T> scatter_add(const basic_tensor<T>& base, int dim, std::span<const index_t> index,
                            const basic_tensor<T>& src) {
  const Shape bs = base.shape(), ss = src.shape();
  return make_op<T>(
      "scatter_add", bs, {base, src},
      [bs, ss, dim, index](OpContext<T>& c) {
        index_t* off = c.template save<index_t>(ss.numel());
        detail::gather_offsets("scatter_add", bs, dim, index, ss, off);
        c.out_vec() = c.in_vec(0);
        T* y = c.out();
        const T* s = c.in(1);
        for (index_t p = 0; p < c.shape(1).numel(); ++p) y[off[p]] += s[p];
      },
      // y = base + sum_p src_p e_{off(p)}:  dbase = dy,  dsrc_p = dy_{off(p)}
      [](OpContext<T>& c) {
        const index_t* off = c.template saved<index_t>(0);
        if (c.needs_grad(0)) c.in_grad_vec(0) += c.out_grad_vec();
        if (!c.needs_grad(1)) return;
        T* gs = c.in_grad(1);
        const T* g = c.out_grad();
        for (index_t p = 0; p < c.shape(1).numel(); ++p) gs[p] += g[off[p]];
      },
      // linear in both: dy = scatter_add(dbase, dsrc) at the same positions
      [dim, index](const JvpContext<T>& j) {
        const std::vector<basic_tensor<T>> t = detail::tangents_or_zeros(j);
        return scatter_add(t[0], dim, index, t[1]);
      });
}

/// `scatter_add` with the indices written in place.
template <std::floating_point T>
basic_tensor<T> scatter_add(const basic_tensor<T>& base, int dim, std::initializer_list<index_t> index,
                            const basic_tensor<T>& src) {
  return scatter_add(base, dim, std::span<const index_t>(index.begin(), index.size()), src);
}

}  // namespace tapegrad
