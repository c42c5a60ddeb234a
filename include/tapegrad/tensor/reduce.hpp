// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/broadcast.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

// Reductions over all elements (a rank-0 result) or over chosen axes.
// Negative axes count from the end. With keepdim the reduced axes stay as
// extent 1, so the result broadcasts against the input.

namespace detail {

/// The shapes of a reduction: `keep` with reduced axes set to 1, `out` with
/// them removed unless keepdim, and whether exactly one axis is reduced.
struct reduce_geometry {
  Shape keep, out;
  int single = -1;  // the one reduced axis, or -1 for several (or all)
};

inline reduce_geometry reduce_shapes(const char* op, const Shape& in, std::span<const int> axes, bool keepdim) {
  const int r = in.rank();
  std::array<bool, 4> reduced{};
  int count = 0;
  if (axes.empty()) {
    // As PyTorch: an empty list of axes reduces over all of them.
    for (int i = 0; i < r; ++i) reduced[static_cast<std::size_t>(i)] = true;
    count = r;
  }
  for (int a : axes) {
    const int d = normalize_dim(op, a, r);
    if (reduced[static_cast<std::size_t>(d)])
      throw value_error(std::string(op) + ": axis " + std::to_string(a) + " listed twice for shape " + in.str());
    reduced[static_cast<std::size_t>(d)] = true;
    ++count;
  }
  reduce_geometry g;
  extents keep, out;
  for (int i = 0; i < r; ++i) {
    const bool red = reduced[static_cast<std::size_t>(i)];
    keep.push_back(red ? 1 : in[i]);
    if (!red || keepdim) out.push_back(red ? 1 : in[i]);
    if (red && count == 1) g.single = i;
  }
  g.keep = keep.shape();
  g.out = out.shape();
  return g;
}

/// The sum over the axes of `g`, times 1/n when `average` (the mean).
template <class T>
basic_tensor<T> scaled_sum(const char* name, const basic_tensor<T>& x, const reduce_geometry& g, bool average) {
  using Vec = typename OpContext<T>::Vec;
  using Arr = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const index_t n = g.keep.numel() == 0 ? 0 : x.numel() / g.keep.numel();
  const T scale = average ? T(1) / static_cast<T>(n) : T(1);
  const Shape in = x.shape(), keep = g.keep;
  const int axis = g.single;
  return make_op<T>(
      name, g.out, {x},
      [=](OpContext<T>& c) {
        auto y = c.out_vec();
        if (axis >= 0) {
          // [outer, n, inner]: each outer block is an n x inner matrix summed down its columns.
          // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
          const std::array<index_t, 3> parts_ = split_at(in, axis);
          const index_t outer = parts_[0], len = parts_[1], inner = parts_[2];
          if (inner == 1) {
            y = Eigen::Map<const Arr>(c.in(0), outer, len).rowwise().sum() * scale;
          } else {
            for (index_t o = 0; o < outer; ++o)
              y.segment(o * inner, inner) =
                  Eigen::Map<const Arr>(c.in(0) + o * len * inner, len, inner).colwise().sum().transpose() * scale;
          }
        } else {
          y.setZero();
          unbroadcast_add(c.in(0), in, c.out(), keep);
          if (scale != T(1)) y *= scale;
        }
      },
      // d(sum)/dx_i = 1 and d(mean)/dx_i = 1/n for every x_i in the reduced group:
      // the gradient is broadcast back over the reduced axes.
      [=](OpContext<T>& c) {
        T* gx = c.in_grad(0);
        if (scale == T(1)) {
          broadcast_add(c.out_grad(), keep, gx, in);
        } else {
          // Scale into scratch first so the broadcast stays a plain add.
          const index_t m = keep.numel();
          T* s = c.scratch(m);
          Eigen::Map<Vec>(s, m) = c.out_grad_vec() * scale;
          broadcast_add(static_cast<const T*>(s), keep, gx, in);
        }
      },
      // linear: the tangent summed (or averaged) over the same axes
      [=](const JvpContext<T>& j) { return scaled_sum(name, j.tangent(0), g, average); });
}

}  // namespace detail

/// The sum of all elements, rank 0. d/dx_i = 1.
template <std::floating_point T>
basic_tensor<T> sum(const basic_tensor<T>& x) {
  return detail::scaled_sum("sum", x, detail::reduce_shapes("sum", x.shape(), {}, false), false);
}

/// The sum over one axis.
template <std::floating_point T>
basic_tensor<T> sum(const basic_tensor<T>& x, int axis, bool keepdim = false) {
  return detail::scaled_sum("sum", x, detail::reduce_shapes("sum", x.shape(), {&axis, 1}, keepdim), false);
}

/// The sum over several axes (an empty list means all of them).
template <std::floating_point T>
basic_tensor<T> sum(const basic_tensor<T>& x, std::initializer_list<int> axes, bool keepdim = false) {
  return detail::scaled_sum("sum", x, detail::reduce_shapes("sum", x.shape(), {axes.begin(), axes.size()}, keepdim),
                            false);
}
template <std::floating_point T>
basic_tensor<T> sum(const basic_tensor<T>& x, const std::vector<int>& axes, bool keepdim = false) {
  return detail::scaled_sum("sum", x, detail::reduce_shapes("sum", x.shape(), axes, keepdim), false);
}

/// The mean of all elements, rank 0. d/dx_i = 1/n.
template <std::floating_point T>
basic_tensor<T> mean(const basic_tensor<T>& x) {
  return detail::scaled_sum("mean", x, detail::reduce_shapes("mean", x.shape(), {}, false), true);
}

/// The mean over one axis.
template <std::floating_point T>
basic_tensor<T> mean(const basic_tensor<T>& x, int axis, bool keepdim = false) {
  return detail::scaled_sum("mean", x, detail::reduce_shapes("mean", x.shape(), {&axis, 1}, keepdim), true);
}

/// The mean over several axes (an empty list means all of them).
template <std::floating_point T>
basic_tensor<T> mean(const basic_tensor<T>& x, std::initializer_list<int> axes, bool keepdim = false) {
  return detail::scaled_sum("mean", x, detail::reduce_shapes("mean", x.shape(), {axes.begin(), axes.size()}, keepdim),
                            true);
}
template <std::floating_point T>
basic_tensor<T> mean(const basic_tensor<T>& x, const std::vector<int>& axes, bool keepdim = false) {
  return detail::scaled_sum("mean", x, detail::reduce_shapes("mean", x.shape(), axes, keepdim), true);
}

namespace detail {

/// The index along the reduced axis (of length `len`, stride `inner`) of the
/// largest (or with Min, smallest) element of the group starting at `p`; ties
/// go to the first. A NaN is never chosen over a number that came before it.
template <bool Min = false, class T>
index_t argmax_strided(const T* p, index_t len, index_t inner) {
  index_t best = 0;
  for (index_t i = 1; i < len; ++i)
    if (Min ? p[i * inner] < p[best * inner] : p[i * inner] > p[best * inner]) best = i;
  return best;
}

// Passed as the axis of max_or_lse: reduce over all elements.
inline constexpr int every_axis = std::numeric_limits<int>::min();

// What max_or_lse computes for each group.
enum class extreme { max, min, lse };

// The largest element, the smallest, or the log-sum-exp over one axis, or
// over all elements for `every_axis`.
template <class T>
basic_tensor<T> max_or_lse(const char* name, const basic_tensor<T>& x, int axis, bool keepdim, extreme kind) {
  const bool lse = kind == extreme::lse, is_min = kind == extreme::min;
  auto pick = [is_min](const T* p, index_t len, index_t inner) {
    return is_min ? argmax_strided<true>(p, len, inner) : argmax_strided<false>(p, len, inner);
  };
  const Shape in = x.shape();
  reduce_geometry g;
  std::array<index_t, 3> split{1, in.numel(), 1};
  if (axis == every_axis) {
    g = reduce_shapes(name, in, {}, false);
  } else {
    g = reduce_shapes(name, in, std::span<const int>(&axis, 1), keepdim);
    split = split_at(in, g.single);
  }
  // A group with nothing in it has no maximum (and log 0 would be -inf).
  if (split[1] == 0) {
    if (axis == every_axis) throw value_error(std::string(name) + ": shape " + in.str() + " has no elements");
    throw value_error(std::string(name) + ": the reduced axis of shape " + in.str() + " is empty");
  }
  // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
  const std::array<index_t, 3> parts_ = split;
  const index_t outer = parts_[0], len = parts_[1], inner = parts_[2];
  return make_op<T>(
      name, g.out, {x},
      [=](OpContext<T>& c) {
        const T* xs = c.in(0);
        T* y = c.out();
        for (index_t o = 0; o < outer; ++o)
          for (index_t i = 0; i < inner; ++i) {
            const T* p = xs + o * len * inner + i;
            const T m = p[pick(p, len, inner) * inner];
            if (!lse) {
              y[o * inner + i] = m;
              continue;
            }
            // log sum e^x = m + log sum e^(x - m): no term exceeds e^0.
            const T shift = std::isfinite(m) ? m : T(0);
            T s = 0;
            for (index_t k = 0; k < len; ++k) s += std::exp(p[k * inner] - shift);
            y[o * inner + i] = shift + std::log(s);
          }
      },
      // max (min): d/dx_k = 1 at the first arg-max (arg-min), 0 elsewhere.
      // logsumexp: d/dx_k = e^(x_k - y), the softmax of the group.
      [=](OpContext<T>& c) {
        const T* xs = c.in(0);
        const T* y = c.out();
        const T* gy = c.out_grad();
        T* gx = c.in_grad(0);
        for (index_t o = 0; o < outer; ++o)
          for (index_t i = 0; i < inner; ++i) {
            const index_t j = o * inner + i;
            if (gy[j] == T(0)) continue;
            const index_t base = o * len * inner + i;
            if (!lse) {
              gx[base + pick(xs + base, len, inner) * inner] += gy[j];
            } else if (std::isfinite(y[j])) {
              for (index_t k = 0; k < len; ++k) gx[base + k * inner] += gy[j] * std::exp(xs[base + k * inner] - y[j]);
            }
          }
      },
      // max/min: dy = dx at the picked entry (the one backward routes to);
      // logsumexp: dy = sum(softmax(x) dx) = sum(e^(x - y) dx) over the axis
      [=](const JvpContext<T>& j) {
        if (lse) {
          const basic_tensor<T> y = axis == every_axis ? j.out() : max_or_lse(name, j.in(0), axis, true, kind);
          return scaled_sum("sum", exp(j.in(0) - y) * j.tangent(0), g, false);
        }
        const basic_tensor<T> pick_mask = [&] {
          NoGradGuard off;  // a constant: the pick does not move under small changes of x
          return make_op<T>(
              "mask", in, {j.in(0)},
              [=](OpContext<T>& c) {
                c.out_vec().setZero();
                for (index_t o = 0; o < outer; ++o)
                  for (index_t i = 0; i < inner; ++i) {
                    const index_t base = o * len * inner + i;
                    c.out()[base + pick(c.in(0) + base, len, inner) * inner] = T(1);
                  }
              },
              [](OpContext<T>&) {});
        }();
        return scaled_sum("sum", pick_mask * j.tangent(0), g, false);
      });
}

}  // namespace detail

/// The largest element, rank 0. The gradient goes to the first largest
/// element (on ties, the lowest flat index), as for an arg-max.
template <std::floating_point T>
basic_tensor<T> max(const basic_tensor<T>& x) {
  return detail::max_or_lse("max", x, detail::every_axis, false, detail::extreme::max);
}

/// The largest element along one axis; the gradient goes to the first arg-max of each group.
template <std::floating_point T>
basic_tensor<T> max(const basic_tensor<T>& x, int axis, bool keepdim = false) {
  return detail::max_or_lse("max", x, axis, keepdim, detail::extreme::max);
}

/// The smallest element, rank 0. As for `max`, the gradient goes to the
/// first smallest element (on ties, the lowest flat index).
template <std::floating_point T>
basic_tensor<T> min(const basic_tensor<T>& x) {
  return detail::max_or_lse("min", x, detail::every_axis, false, detail::extreme::min);
}

/// The smallest element along one axis; the gradient goes to the first arg-min of each group.
template <std::floating_point T>
basic_tensor<T> min(const basic_tensor<T>& x, int axis, bool keepdim = false) {
  return detail::max_or_lse("min", x, axis, keepdim, detail::extreme::min);
}

/// log(sum(exp(x))) over all elements, computed stably (the maximum is
/// subtracted before exponentiating). d/dx_k = exp(x_k - y): the softmax.
template <std::floating_point T>
basic_tensor<T> logsumexp(const basic_tensor<T>& x) {
  return detail::max_or_lse("logsumexp", x, detail::every_axis, false, detail::extreme::lse);
}

/// logsumexp along one axis.
template <std::floating_point T>
basic_tensor<T> logsumexp(const basic_tensor<T>& x, int axis, bool keepdim = false) {
  return detail::max_or_lse("logsumexp", x, axis, keepdim, detail::extreme::lse);
}

}  // namespace tapegrad
