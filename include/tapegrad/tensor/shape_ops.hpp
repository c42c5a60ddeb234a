// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
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
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

// Ops that move values without changing them. Each result is a new contiguous
// tensor (an arena copy); the gradient is the same move run backwards.

namespace detail {

/// Copies (or with Add, adds) a permuted tensor: dst[j] (+)= src[i] where dst
/// has shape `dst_shape` and dimension k of dst is dimension perm[k] of src.
template <bool Add, class T>
void permute_copy(const T* src, const Shape& src_shape, T* dst, const Shape& dst_shape,
                  const std::array<int, 4>& perm) {
  // Strides of src, reordered into dst's dimension order, padded to 4.
  std::array<index_t, 4> e{1, 1, 1, 1}, st{0, 0, 0, 0};
  const int r = dst_shape.rank();
  for (int k = 0; k < r; ++k) {
    e[static_cast<std::size_t>(4 - r + k)] = dst_shape[k];
    st[static_cast<std::size_t>(4 - r + k)] = src_shape.stride(perm[static_cast<std::size_t>(k)]);
  }
  index_t o = 0;
  for (index_t i0 = 0; i0 < e[0]; ++i0)
    for (index_t i1 = 0; i1 < e[1]; ++i1)
      for (index_t i2 = 0; i2 < e[2]; ++i2) {
        const T* s = src + i0 * st[0] + i1 * st[1] + i2 * st[2];
        for (index_t i3 = 0; i3 < e[3]; ++i3, ++o) {
          if constexpr (Add)
            dst[o] += s[i3 * st[3]];
          else
            dst[o] = s[i3 * st[3]];
        }
      }
}

template <class T>
basic_tensor<T> reshape_to(const basic_tensor<T>& x, std::span<const index_t> dims, const char* name = "reshape") {
  const Shape& in = x.shape();
  extents d;
  int infer = -1;
  index_t known = 1;
  auto fail = [&](const std::string& why) {
    std::string want = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) want += (i ? ", " : "") + std::to_string(dims[i]);
    throw shape_error("reshape: " + in.str() + " (" + std::to_string(in.numel()) + " elements) to " + want +
                      "]: " + why);
  };
  if (static_cast<int>(dims.size()) > max_rank) fail("rank above " + std::to_string(max_rank));
  for (std::size_t i = 0; i < dims.size(); ++i) {
    d.push_back(dims[i]);
    if (dims[i] == -1) {
      if (infer >= 0) fail("more than one -1");
      infer = static_cast<int>(i);
    } else if (dims[i] < 0) {
      fail("negative extent");
    } else {
      known *= dims[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || in.numel() % known != 0) fail("no extent for -1 fits");
    d[infer] = in.numel() / known;
  } else if (known != in.numel()) {
    fail("the element counts differ");
  }
  return make_op<T>(
      name, d.shape(), {x}, [](OpContext<T>& c) { c.out_vec() = c.in_vec(0); },
      [](OpContext<T>& c) { c.in_grad_vec(0) += c.out_grad_vec(); },
      // linear: the tangent is reshaped the same way
      [name](const JvpContext<T>& j) {
        const std::vector<index_t> out = j.out().shape().dims();
        return reshape_to(j.tangent(0), std::span<const index_t>(out), name);
      });
}

}  // namespace detail

/// The same values in a new shape with the same number of elements. One
/// extent may be -1, inferred from the others: reshape(x, {-1, 64}).
/// d/dx: the gradient reshaped back.
template <std::floating_point T>
basic_tensor<T> reshape(const basic_tensor<T>& x, std::initializer_list<index_t> dims) {
  return detail::reshape_to(x, std::span<const index_t>(dims.begin(), dims.size()));
}

/// `reshape` with the extents in a vector.
template <std::floating_point T>
basic_tensor<T> reshape(const basic_tensor<T>& x, const std::vector<index_t>& dims) {
  return detail::reshape_to(x, std::span<const index_t>(dims));
}

/// `reshape` to a Shape: reshape(x, y.shape()).
template <std::floating_point T, std::same_as<Shape> S>
basic_tensor<T> reshape(const basic_tensor<T>& x, const S& shape) {
  const detail::extents e(shape);
  return detail::reshape_to(x, e.span());
}

/// x without its extent-1 dimensions: [2, 1, 3, 1] becomes [2, 3].
/// d/dx: the gradient reshaped back.
template <std::floating_point T>
basic_tensor<T> squeeze(const basic_tensor<T>& x) {
  detail::extents out;
  for (int k = 0; k < x.rank(); ++k)
    if (x.size(k) != 1) out.push_back(x.size(k));
  return detail::reshape_to(x, out.span(), "squeeze");
}

/// x without dimension `dim`, which must have extent 1 (as NumPy's squeeze
/// with an axis, a dimension of another extent is an error, not skipped).
template <std::floating_point T>
basic_tensor<T> squeeze(const basic_tensor<T>& x, int dim) {
  const int d = detail::normalize_dim("squeeze", dim, x.rank());
  if (x.size(d) != 1)
    throw shape_error("squeeze: dimension " + std::to_string(dim) + " of " + x.shape().str() + " has extent " +
                      std::to_string(x.size(d)) + ", not 1");
  detail::extents out;
  for (int k = 0; k < x.rank(); ++k)
    if (k != d) out.push_back(x.size(k));
  return detail::reshape_to(x, out.span(), "squeeze");
}

/// x with a new dimension of extent 1 at position `dim` of the result, from
/// -(rank + 1) to rank: unsqueeze(x [2, 3], 0) is [1, 2, 3], with -1 it is
/// [2, 3, 1]. d/dx: the gradient reshaped back.
template <std::floating_point T>
basic_tensor<T> unsqueeze(const basic_tensor<T>& x, int dim) {
  const int r = x.rank();
  if (r == max_rank)
    throw shape_error("unsqueeze: " + x.shape().str() + " already has the maximum rank " + std::to_string(max_rank));
  const int d = detail::normalize_dim("unsqueeze", dim, r + 1);
  detail::extents out;
  for (int k = 0; k <= r; ++k) out.push_back(k == d ? 1 : x.size(k < d ? k : k - 1));
  return detail::reshape_to(x, out.span(), "unsqueeze");
}

/// Dimensions `start` to `end` (inclusive, negatives from the end) merged into
/// one, as PyTorch's flatten: flatten(x [2, 3, 4]) is [24], flatten(x, 1) is
/// [2, 12]. A rank-0 x becomes [1]. d/dx: the gradient reshaped back.
template <std::floating_point T>
basic_tensor<T> flatten(const basic_tensor<T>& x, int start = 0, int end = -1) {
  const int r = x.rank();
  if (r == 0) return detail::reshape_to(x, std::span<const index_t>(std::array<index_t, 1>{1}), "flatten");
  const int a = detail::normalize_dim("flatten", start, r), b = detail::normalize_dim("flatten", end, r);
  if (a > b)
    throw value_error("flatten: start " + std::to_string(start) + " comes after end " + std::to_string(end) +
                      " for shape " + x.shape().str());
  detail::extents out;
  index_t merged = 1;
  for (int k = 0; k < r; ++k) {
    if (k < a || k > b) out.push_back(x.size(k));
    if (k >= a && k <= b) merged *= x.size(k);
    if (k == b) out.push_back(merged);
  }
  return detail::reshape_to(x, out.span(), "flatten");
}

namespace detail {

template <class T>
basic_tensor<T> permute_to(const basic_tensor<T>& x, std::span<const int> dims) {
  const Shape& in = x.shape();
  const int r = in.rank();
  auto list = [&] {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
  };
  if (static_cast<int>(dims.size()) != r)
    throw shape_error("permute: " + list() + " has " + std::to_string(dims.size()) + " entries for a tensor of shape " +
                      in.str());
  std::array<int, 4> perm{0, 1, 2, 3}, inverse{0, 1, 2, 3};
  std::array<bool, 4> seen{};
  extents out;
  for (int k = 0; k < r; ++k) {
    const int d = normalize_dim("permute", dims[static_cast<std::size_t>(k)], r);
    if (seen[static_cast<std::size_t>(d)])
      throw value_error("permute: " + list() + " names dimension " + std::to_string(d) + " twice");
    seen[static_cast<std::size_t>(d)] = true;
    perm[static_cast<std::size_t>(k)] = d;
    inverse[static_cast<std::size_t>(d)] = k;
    out.push_back(in[d]);
  }
  return make_op<T>(
      "permute", out.shape(), {x},
      [perm](OpContext<T>& c) {
        if (c.shape(0).rank() == 2 && perm[0] == 1) {
          // A plain matrix transpose: let Eigen do it blockwise.
          const index_t m = c.shape(0)[0], n = c.shape(0)[1];
          c.out_mat(n, m) = c.in_mat(0, m, n).transpose();
        } else {
          permute_copy<false>(c.in(0), c.shape(0), c.out(), c.out_shape(), perm);
        }
      },
      [inverse](OpContext<T>& c) {
        permute_copy<true>(c.out_grad(), c.out_shape(), c.in_grad(0), c.shape(0), inverse);
      },
      // linear: the tangent is permuted the same way
      [perm, r](const JvpContext<T>& j) {
        return permute_to(j.tangent(0), std::span<const int>(perm.data(), static_cast<std::size_t>(r)));
      });
}

}  // namespace detail

/// The dimensions reordered: dimension k of the result is dimension dims[k]
/// of x (negatives count from the end). d/dx: the inverse permutation of the gradient.
template <std::floating_point T>
basic_tensor<T> permute(const basic_tensor<T>& x, std::initializer_list<int> dims) {
  return detail::permute_to(x, std::span<const int>(dims.begin(), dims.size()));
}

/// `permute` with the order in a vector.
template <std::floating_point T>
basic_tensor<T> permute(const basic_tensor<T>& x, const std::vector<int>& dims) {
  return detail::permute_to(x, std::span<const int>(dims));
}

/// Dimensions d0 and d1 swapped (negatives count from the end):
/// transpose(x, -2, -1) swaps the last two.
template <std::floating_point T>
basic_tensor<T> transpose(const basic_tensor<T>& x, int d0 = -2, int d1 = -1) {
  const int r = x.rank();
  const int a = detail::normalize_dim("transpose", d0, r), b = detail::normalize_dim("transpose", d1, r);
  std::array<int, max_rank> p{0, 1, 2, 3};
  std::swap(p[static_cast<std::size_t>(a)], p[static_cast<std::size_t>(b)]);
  return detail::permute_to(x, std::span<const int>(p.data(), static_cast<std::size_t>(r)));
}

/// The `length` entries of dimension `dim` starting at `start` (PyTorch's
/// narrow). d/dx: the gradient placed back in that window, 0 elsewhere.
template <std::floating_point T>
basic_tensor<T> narrow(const basic_tensor<T>& x, int dim, index_t start, index_t length) {
  const Shape& in = x.shape();
  const int d = detail::normalize_dim("narrow", dim, in.rank());
  if (start < 0 || length < 0 || start + length > in[d])
    throw index_error("narrow: window [" + std::to_string(start) + ", " + std::to_string(start + length) +
                      ") out of range [0, " + std::to_string(in[d]) + ") in dimension " + std::to_string(d) +
                      " of shape " + in.str());
  detail::extents out(in);
  out[d] = length;
  // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
  const std::array<index_t, 3> parts_ = detail::split_at(in, d);
  const index_t outer = parts_[0], n = parts_[1], inner = parts_[2];
  return make_op<T>(
      "narrow", out.shape(), {x},
      [=](OpContext<T>& c) {
        for (index_t o = 0; o < outer; ++o)
          std::copy_n(c.in(0) + (o * n + start) * inner, length * inner, c.out() + o * length * inner);
      },
      [=](OpContext<T>& c) {
        using Vec = typename OpContext<T>::Vec;
        T* g = c.in_grad(0);
        for (index_t o = 0; o < outer; ++o)
          Eigen::Map<Vec>(g + (o * n + start) * inner, length * inner) +=
              Eigen::Map<const Vec>(c.out_grad() + o * length * inner, length * inner);
      },
      // linear: the same window of the tangent
      [=](const JvpContext<T>& j) { return narrow(j.tangent(0), d, start, length); });
}

/// Entries [start, end) of dimension `dim`; negative start and end count from
/// the end, as in Python: slice(x, -1, 0, -1) drops the last column.
template <std::floating_point T>
basic_tensor<T> slice(const basic_tensor<T>& x, int dim, index_t start, index_t end) {
  const Shape& in = x.shape();
  const int d = detail::normalize_dim("slice", dim, in.rank());
  const index_t s = start < 0 ? start + in[d] : start, e = end < 0 ? end + in[d] : end;
  if (s < 0 || e > in[d] || s > e)
    throw index_error("slice: [" + std::to_string(start) + ", " + std::to_string(end) + ") out of range [0, " +
                      std::to_string(in[d]) + ") in dimension " + std::to_string(d) + " of shape " + in.str());
  return narrow(x, d, s, e - s);
}

/// The tensors joined along dimension `dim`; all other extents must agree.
/// d/dx_i: the matching window of the gradient.
template <std::floating_point T>
basic_tensor<T> concat(const std::vector<basic_tensor<T>>& xs, int dim) {
  if (xs.empty()) throw value_error("concat: no tensors to join");
  const Shape& first = xs[0].shape();
  const int d = detail::normalize_dim("concat", dim, first.rank());
  detail::extents out(first);
  out[d] = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const Shape& s = xs[i].shape();
    bool ok = s.rank() == first.rank();
    for (int k = 0; ok && k < s.rank(); ++k)
      if (k != d && s[k] != first[k]) ok = false;
    if (!ok)
      throw shape_error("concat: " + first.str() + " and " + s.str() + " (tensor " + std::to_string(i) +
                        ") differ outside dimension " + std::to_string(d));
    out[d] += s[d];
  }
  const Shape os = out.shape();
  // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
  const std::array<index_t, 3> parts_ = detail::split_at(os, d);
  const index_t outer = parts_[0], total = parts_[1], inner = parts_[2];
  (void)total;
  return make_op<T>(
      "concat", os, xs,
      [=](OpContext<T>& c) {
        index_t at = 0;  // offset of input i within one outer block of the result
        for (std::size_t i = 0; i < c.inputs(); ++i) {
          const index_t w = c.shape(i)[d] * inner;
          for (index_t o = 0; o < outer; ++o) std::copy_n(c.in(i) + o * w, w, c.out() + o * total * inner + at);
          at += w;
        }
      },
      [=](OpContext<T>& c) {
        using Vec = typename OpContext<T>::Vec;
        index_t at = 0;
        for (std::size_t i = 0; i < c.inputs(); ++i) {
          const index_t w = c.shape(i)[d] * inner;
          if (c.needs_grad(i)) {
            T* g = c.in_grad(i);
            for (index_t o = 0; o < outer; ++o)
              Eigen::Map<Vec>(g + o * w, w) += Eigen::Map<const Vec>(c.out_grad() + o * total * inner + at, w);
          }
          at += w;
        }
      },
      // linear: the tangents joined the same way (zeros for inputs without one)
      [d](const JvpContext<T>& j) { return concat(detail::tangents_or_zeros(j), d); });
}

/// Tensors of one shape joined along a new dimension `dim` of the result
/// (from -(rank + 1) to rank): three [2, 4] tensors stack to [3, 2, 4] at
/// dim 0 and to [2, 4, 3] at dim -1. d/dx_i: slice i of the gradient along dim.
template <std::floating_point T>
basic_tensor<T> stack(const std::vector<basic_tensor<T>>& xs, int dim = 0) {
  if (xs.empty()) throw value_error("stack: no tensors to stack");
  const Shape& first = xs[0].shape();
  const int r = first.rank();
  if (r == max_rank)
    throw shape_error("stack: " + first.str() + " already has the maximum rank " + std::to_string(max_rank));
  const int d = detail::normalize_dim("stack", dim, r + 1);
  for (std::size_t i = 1; i < xs.size(); ++i)
    if (!(xs[i].shape() == first))
      throw shape_error("stack: " + first.str() + " and " + xs[i].shape().str() + " (tensor " + std::to_string(i) +
                        ") differ; stacked tensors need one shape");
  const auto n = static_cast<index_t>(xs.size());
  detail::extents out;
  for (int k = 0; k <= r; ++k) out.push_back(k == d ? n : first[k < d ? k : k - 1]);
  // The result is [outer, n, inner]: input i fills block i of every outer block.
  index_t outer = 1;
  for (int k = 0; k < d; ++k) outer *= first[k];
  const index_t inner = outer == 0 ? 0 : first.numel() / outer;
  return make_op<T>(
      "stack", out.shape(), xs,
      [=](OpContext<T>& c) {
        for (index_t i = 0; i < n; ++i)
          for (index_t o = 0; o < outer; ++o)
            std::copy_n(c.in(static_cast<std::size_t>(i)) + o * inner, inner, c.out() + (o * n + i) * inner);
      },
      [=](OpContext<T>& c) {
        using Vec = typename OpContext<T>::Vec;
        for (index_t i = 0; i < n; ++i) {
          const auto k = static_cast<std::size_t>(i);
          if (!c.needs_grad(k)) continue;
          T* g = c.in_grad(k);
          for (index_t o = 0; o < outer; ++o)
            Eigen::Map<Vec>(g + o * inner, inner) += Eigen::Map<const Vec>(c.out_grad() + (o * n + i) * inner, inner);
        }
      },
      // linear: the tangents stacked the same way (zeros for inputs without one)
      [d](const JvpContext<T>& j) { return stack(detail::tangents_or_zeros(j), d); });
}

/// `stack` of a braced list: stack({a, b, c}, 1).
template <std::floating_point T>
basic_tensor<T> stack(std::initializer_list<basic_tensor<T>> xs, int dim = 0) {
  return stack(std::vector<basic_tensor<T>>(xs), dim);
}

/// `concat` of a braced list: concat({a, b}, -1).
template <std::floating_point T>
basic_tensor<T> concat(std::initializer_list<basic_tensor<T>> xs, int dim) {
  return concat(std::vector<basic_tensor<T>>(xs), dim);
}

/// x cut along dimension `dim` into pieces of the given extents, which must
/// sum to x's extent there.
template <std::floating_point T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, const std::vector<index_t>& sizes, int dim) {
  const Shape& in = x.shape();
  const int d = detail::normalize_dim("split", dim, in.rank());
  index_t sum = 0;
  for (index_t s : sizes) {
    if (s < 0) throw value_error("split: negative piece size " + std::to_string(s));
    sum += s;
  }
  if (sum != in[d])
    throw shape_error("split: pieces summing to " + std::to_string(sum) + " do not cover extent " +
                      std::to_string(in[d]) + " of dimension " + std::to_string(d) + " of shape " + in.str());
  std::vector<basic_tensor<T>> out;
  out.reserve(sizes.size());
  index_t at = 0;
  for (index_t s : sizes) {
    out.push_back(narrow(x, d, at, s));
    at += s;
  }
  return out;
}

/// x cut along dimension `dim` into pieces of `chunk` entries each (the last
/// may be shorter), as PyTorch's split with an integer size.
template <std::floating_point T>
std::vector<basic_tensor<T>> split(const basic_tensor<T>& x, index_t chunk, int dim) {
  const Shape& in = x.shape();
  const int d = detail::normalize_dim("split", dim, in.rank());
  if (chunk <= 0) throw value_error("split: chunk size " + std::to_string(chunk) + " must be positive");
  std::vector<index_t> sizes;
  for (index_t at = 0; at < in[d]; at += chunk) sizes.push_back(std::min(chunk, in[d] - at));
  return split(x, sizes, d);
}

/// The entries of dimension `dim` at the given indices, in order; an index may
/// repeat. d/dx: each gradient slice added back at its index (repeats accumulate).
/// An index outside [0, extent) raises index_error naming the index and the bound.
template <std::floating_point T>
basic_tensor<T> index_select(const basic_tensor<T>& x, int dim, const std::vector<index_t>& indices) {
  const Shape& in = x.shape();
  const int d = detail::normalize_dim("index_select", dim, in.rank());
  for (std::size_t i = 0; i < indices.size(); ++i)
    if (indices[i] < 0 || indices[i] >= in[d])
      throw index_error("index_select: index " + std::to_string(indices[i]) + " (position " + std::to_string(i) +
                        ") out of range [0, " + std::to_string(in[d]) + ") for dimension " + std::to_string(d) +
                        " of shape " + in.str());
  detail::extents out(in);
  const auto count = static_cast<index_t>(indices.size());
  out[d] = count;
  // Plain copies rather than a structured binding: lambdas capture them (clang before 16 cannot).
  const std::array<index_t, 3> parts_ = detail::split_at(in, d);
  const index_t outer = parts_[0], n = parts_[1], inner = parts_[2];
  const index_t* caller_indices = indices.data();
  return make_op<T>(
      "index_select", out.shape(), {x},
      [=](OpContext<T>& c) {
        // The indices outlive this call: backward reads the copy saved with the node.
        index_t* idx = c.template save<index_t>(count);
        std::copy_n(caller_indices, count, idx);
        for (index_t o = 0; o < outer; ++o)
          for (index_t j = 0; j < count; ++j)
            std::copy_n(c.in(0) + (o * n + idx[j]) * inner, inner, c.out() + (o * count + j) * inner);
      },
      [=](OpContext<T>& c) {
        using Vec = typename OpContext<T>::Vec;
        T* g = c.in_grad(0);
        const index_t* idx = c.template saved<index_t>(0);
        for (index_t o = 0; o < outer; ++o)
          for (index_t j = 0; j < count; ++j)
            Eigen::Map<Vec>(g + (o * n + idx[j]) * inner, inner) +=
                Eigen::Map<const Vec>(c.out_grad() + (o * count + j) * inner, inner);
      },
      // linear: the same entries of the tangent (the rule runs while the caller's indices live)
      [=](const JvpContext<T>& j) {
        return index_select(j.tangent(0), d, std::vector<index_t>(caller_indices, caller_indices + count));
      });
}

}  // namespace tapegrad
