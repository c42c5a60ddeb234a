// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <utility>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad::detail {

// NumPy broadcasting for shapes of rank 0 to 4.
//
// Two shapes broadcast when, aligned at their last dimension, each pair of
// extents is equal or one of them is 1; the missing leading dimensions of the
// shorter shape count as 1. The result takes the larger extent of each pair.
// An operand is then read with stride 0 along the dimensions it is broadcast
// over, and its gradient is the output's gradient summed over those
// dimensions ("unbroadcast").

/// The broadcast shape of `a` and `b`, or a shape_error naming `op` and both shapes.
inline Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  if (a == b) return a;
  const int r = std::max(a.rank(), b.rank());
  std::array<index_t, max_rank> d{};
  for (int i = 0; i < r; ++i) {
    // Dimension i counted from the end.
    const index_t x = i < a.rank() ? a[a.rank() - 1 - i] : 1;
    const index_t y = i < b.rank() ? b[b.rank() - 1 - i] : 1;
    if (x != y && x != 1 && y != 1)
      throw shape_error(std::string(op) + ": " + a.str() + " and " + b.str() + ": shapes do not broadcast (" +
                        std::to_string(x) + " vs " + std::to_string(y) + " in dimension " + std::to_string(r - 1 - i) +
                        " of the result)");
    d[static_cast<std::size_t>(r - 1 - i)] = x == 1 ? y : x;
  }
  return Shape(std::span<const index_t>(d.data(), static_cast<std::size_t>(r)));
}

/// A shape's extents in a fixed array, to edit without touching the heap and
/// turn back into a Shape.
struct extents {
  std::array<index_t, max_rank> d{};
  int rank = 0;

  extents() = default;
  explicit extents(const Shape& s) : rank(s.rank()) {
    for (int i = 0; i < rank; ++i) d[static_cast<std::size_t>(i)] = s[i];
  }
  index_t& operator[](int i) { return d[static_cast<std::size_t>(i)]; }
  /// Appends an extent; the caller keeps the rank within max_rank.
  void push_back(index_t v) { d[static_cast<std::size_t>(rank++)] = v; }
  std::span<const index_t> span() const { return {d.data(), static_cast<std::size_t>(rank)}; }
  Shape shape() const { return Shape(span()); }
};

/// A dimension index with negatives counted from the end, or an index_error
/// naming the op, the dimension and the valid range.
inline int normalize_dim(const char* op, int dim, int rank) {
  const int d = dim < 0 ? dim + rank : dim;
  if (d < 0 || d >= rank)
    throw index_error(std::string(op) + ": dimension " + std::to_string(dim) + " out of range for rank " +
                      std::to_string(rank) + " (valid: " + std::to_string(-rank) + " to " + std::to_string(rank - 1) +
                      ")");
  return d;
}

/// The shape as [outer, n, inner] around dimension d: what lies before it, its
/// extent, and what lies after it.
inline std::array<index_t, 3> split_at(const Shape& s, int d) {
  index_t outer = 1;
  for (int i = 0; i < d; ++i) outer *= s[i];
  return {outer, s[d], s.stride(d)};
}

/// True when `in`, leading 1s aside, equals the last dimensions of `out`:
/// then `in` repeats row after row in `out` (a bias [D] under [N, D]).
inline bool is_trailing_block(const Shape& in, const Shape& out) {
  int lead = 0;
  while (lead < in.rank() && in[lead] == 1) ++lead;
  const int tail = in.rank() - lead;
  if (tail > out.rank() || in.numel() == 0) return false;
  for (int i = 1; i <= tail; ++i)
    if (in[-i] != out[-i]) return false;
  return true;
}

/// How to walk an output of up to 4 dimensions together with K operands that
/// broadcast to it: extents padded on the left to 4, and each operand's element
/// stride per dimension (0 along a broadcast dimension). Adjacent dimensions
/// that every operand walks contiguously are merged, so [2, 3, 4] * [4] becomes
/// a loop of 6 rows of 4 and the inner loop stays long.
template <std::size_t K>
struct broadcast_plan {
  std::array<index_t, 4> ext{1, 1, 1, 1};
  std::array<std::array<index_t, 4>, K> stride{};

  broadcast_plan(const Shape& out, const std::array<const Shape*, K>& in) {
    std::array<index_t, 4> e{1, 1, 1, 1};
    std::array<std::array<index_t, 4>, K> s{};
    const int r = out.rank();
    for (int i = 0; i < r; ++i) e[static_cast<std::size_t>(4 - r + i)] = out[i];
    for (std::size_t k = 0; k < K; ++k) {
      const Shape& x = *in[k];
      index_t st = 1;
      for (int i = 1; i <= x.rank(); ++i) {
        s[k][static_cast<std::size_t>(4 - i)] = x[-i] == 1 ? 0 : st;
        st *= x[-i];
      }
    }
    // Merge dimension d into d+1 when every operand steps through both as one run.
    int n = 0;  // dimensions written so far, from the innermost
    std::array<index_t, 4> me{};
    std::array<std::array<index_t, 4>, K> ms{};
    for (int d = 3; d >= 0; --d) {
      const auto du = static_cast<std::size_t>(d);
      if (e[du] == 1) continue;  // an extent of 1 never moves the walk
      if (n > 0) {
        const auto prev = static_cast<std::size_t>(4 - n);
        bool merge = true;
        for (std::size_t k = 0; k < K; ++k)
          if (s[k][du] != ms[k][prev] * me[prev]) merge = false;
        if (merge) {
          me[prev] *= e[du];
          continue;
        }
      }
      ++n;
      const auto at = static_cast<std::size_t>(4 - n);
      me[at] = e[du];
      for (std::size_t k = 0; k < K; ++k) ms[k][at] = s[k][du];
    }
    for (int i = 0; i < 4 - n; ++i) me[static_cast<std::size_t>(i)] = 1;
    ext = me;
    stride = ms;
  }
};

/// Calls `f(o, i_0, ..., i_{K-1})` for every flat output index `o` with each
/// operand's flat index `i_k`, in row-major order of the output.
template <std::size_t K, class F>
void broadcast_for_each(const broadcast_plan<K>& p, F&& f) {
  const auto& e = p.ext;
  const auto& s = p.stride;
  index_t o = 0;
  std::array<index_t, K> base0{}, base1{}, base2{};
  for (index_t i0 = 0; i0 < e[0]; ++i0) {
    for (std::size_t k = 0; k < K; ++k) base0[k] = i0 * s[k][0];
    for (index_t i1 = 0; i1 < e[1]; ++i1) {
      for (std::size_t k = 0; k < K; ++k) base1[k] = base0[k] + i1 * s[k][1];
      for (index_t i2 = 0; i2 < e[2]; ++i2) {
        for (std::size_t k = 0; k < K; ++k) base2[k] = base1[k] + i2 * s[k][2];
        [&]<std::size_t... I>(std::index_sequence<I...>) {
          // Contiguous operands in the inner loop get a constant stride of 1,
          // which the compiler can vectorise.
          if (((s[I][3] == 1) && ...)) {
            for (index_t j = 0; j < e[3]; ++j) f(o + j, (base2[I] + j)...);
          } else {
            for (index_t j = 0; j < e[3]; ++j) f(o + j, (base2[I] + j * s[I][3])...);
          }
        }
        (std::make_index_sequence<K>{});
        o += e[3];
      }
    }
  }
}

/// dst (shape `in`) += src (shape `out`) summed over the dimensions along which
/// `in` was broadcast to `out`: the gradient of a broadcast.
template <class T>
void unbroadcast_add(const T* src, const Shape& out, T* dst, const Shape& in) {
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Mat = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n_out = out.numel(), n_in = in.numel();
  if (n_out == n_in) {  // same elements in the same order (shapes differ only by 1s)
    Eigen::Map<Vec>(dst, n_in) += Eigen::Map<const Vec>(src, n_out);
    return;
  }
  if (n_in == 1) {
    dst[0] += Eigen::Map<const Vec>(src, n_out).sum();
    return;
  }
  // A trailing block, such as a bias [D] under [N, D]: a column sum.
  const bool trailing = is_trailing_block(in, out);
  if (trailing) {
    Eigen::Map<Vec>(dst, n_in) += Eigen::Map<const Mat>(src, n_out / n_in, n_in).colwise().sum().transpose();
    return;
  }
  broadcast_plan<1> p(out, {&in});
  broadcast_for_each(p, [&](index_t o, index_t i) { dst[i] += src[o]; });
}

/// dst (shape `out`) += src (shape `in`) broadcast to `out`.
template <class T>
void broadcast_add(const T* src, const Shape& in, T* dst, const Shape& out) {
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  const index_t n_out = out.numel(), n_in = in.numel();
  if (n_out == n_in) {
    Eigen::Map<Vec>(dst, n_out) += Eigen::Map<const Vec>(src, n_in);
    return;
  }
  if (n_in == 1) {
    Eigen::Map<Vec>(dst, n_out) += src[0];
    return;
  }
  broadcast_plan<1> p(out, {&in});
  broadcast_for_each(p, [&](index_t o, index_t i) { dst[o] += src[i]; });
}

}  // namespace tapegrad::detail
