// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"

namespace tapegrad {

/// The integer type of sizes and indices.
using index_t = std::int64_t;

/// The most dimensions a tensor has.
inline constexpr int max_rank = 4;

/// The extents of a tensor, rank 0 (a scalar) to 4, row-major.
///
/// Example:
///   Shape s{8, 64};   // s.rank() == 2, s.numel() == 512, s.str() == "[8, 64]"
class Shape {
 public:
  /// A rank-0 shape: one element.
  Shape() = default;

  Shape(std::initializer_list<index_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(std::span<const index_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<index_t>& dims) { assign(dims.begin(), dims.end()); }

  /// Number of dimensions.
  int rank() const noexcept { return rank_; }

  /// Extent of dimension `i`; negative `i` counts from the end.
  index_t operator[](int i) const {
    const int k = i < 0 ? i + rank_ : i;
    if (k < 0 || k >= rank_)
      throw index_error("Shape" + str() + ": dimension " + std::to_string(i) + " out of range for rank " +
                        std::to_string(rank_));
    return dims_[static_cast<std::size_t>(k)];
  }

  /// Number of elements (1 for rank 0).
  index_t numel() const noexcept {
    index_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }

  /// Row-major stride of dimension `i` in elements.
  index_t stride(int i) const {
    index_t s = 1;
    for (int k = rank_ - 1; k > i; --k) s *= dims_[static_cast<std::size_t>(k)];
    return s;
  }

  /// The extents as a vector.
  std::vector<index_t> dims() const { return {dims_.begin(), dims_.begin() + rank_}; }

  /// "[8, 64]"; "[]" for rank 0.
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    return s + "]";
  }

  friend bool operator==(const Shape& a, const Shape& b) noexcept {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)]) return false;
    return true;
  }

 private:
  template <class It>
  void assign(It first, It last) {
    const auto n = last - first;
    if (n > max_rank)
      throw shape_error("Shape: rank " + std::to_string(n) + " exceeds the maximum of " + std::to_string(max_rank));
    rank_ = static_cast<int>(n);
    int i = 0;
    for (It it = first; it != last; ++it, ++i) {
      if (*it < 0) throw shape_error("Shape: negative extent " + std::to_string(*it));
      dims_[static_cast<std::size_t>(i)] = static_cast<index_t>(*it);
    }
  }

  std::array<index_t, max_rank> dims_{};
  int rank_ = 0;
};

}  // namespace tapegrad
