// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"

namespace tapegrad::distributed {

/// A half-open range [begin, end) of positions.
struct Shard {
  std::size_t begin = 0;  ///< first position
  std::size_t end = 0;    ///< one past the last position
  /// Number of positions.
  std::size_t size() const noexcept { return end - begin; }
};

/// Rank `rank`'s contiguous part of n positions split over `size` ranks: the
/// first n % size ranks take one more than the others, so the sizes differ
/// by at most one and the parts, in rank order, tile [0, n).
///
/// Example: 10 positions over 4 ranks give [0, 3), [3, 6), [6, 8), [8, 10).
inline Shard split_range(std::size_t n, int rank, int size) {
  if (size <= 0 || rank < 0 || rank >= size)
    throw value_error("split_range: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(size) + ")");
  const auto p = static_cast<std::size_t>(size), r = static_cast<std::size_t>(rank);
  const std::size_t base = n / p, extra = n % p;
  const std::size_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

/// A permutation of [0, n) that depends only on (seed, epoch): every rank
/// that passes the same seed and epoch gets the same order, and each epoch a
/// new one. Fisher-Yates with an unbiased draw from std::mt19937_64 (both
/// fixed by the C++ standard, unlike std::uniform_int_distribution), so the
/// order is the same with every compiler and standard library.
inline std::vector<std::size_t> epoch_order(std::size_t n, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::mt19937_64 gen(seed + epoch);
  for (std::size_t i = n; i > 1; --i) {
    // A draw below i by rejection: values in the last partial block of size
    // 2^64 mod i are redrawn so that every j in [0, i) is equally likely.
    const std::uint64_t bound = static_cast<std::uint64_t>(i);
    const std::uint64_t limit = std::uint64_t(0) - (std::uint64_t(0) - bound) % bound;  // a multiple of bound
    std::uint64_t x = gen();
    while (limit != 0 && x >= limit) x = gen();
    std::swap(order[i - 1], order[static_cast<std::size_t>(x % bound)]);
  }
  return order;
}

/// How `shard_indices` draws each epoch's sample.
struct ShardOptions {
  bool shuffle = true;     ///< a new shared order each epoch (from seed + epoch); else 0, 1, 2, ...
  std::uint64_t seed = 0;  ///< must be the same on every rank
  bool drop_last = false;  ///< drop the tail that does not divide evenly instead of repeating the head
};

/// The dataset positions rank `rank` of `size` visits in `epoch`, following
/// PyTorch's DistributedSampler: one order shared by all ranks (shuffled by
/// seed + epoch), made a multiple of `size` long (by repeating its first
/// positions, or with `drop_last` by dropping its last ones), then every
/// size-th position starting at `rank`. Every rank gets the same number of
/// positions, so every rank runs the same number of steps, and together the
/// ranks cover the whole dataset each epoch.
///
/// Example: n = 5, 2 ranks, no shuffle: rank 0 gets {0, 2, 4}, rank 1 {1, 3, 0}.
inline std::vector<std::size_t> shard_indices(std::size_t n, std::uint64_t epoch, int rank, int size,
                                              const ShardOptions& options = {}) {
  if (size <= 0 || rank < 0 || rank >= size)
    throw value_error("shard_indices: rank " + std::to_string(rank) + " is not in [0, " + std::to_string(size) + ")");
  std::vector<std::size_t> order(n);
  if (options.shuffle)
    order = epoch_order(n, options.seed, epoch);
  else
    std::iota(order.begin(), order.end(), std::size_t{0});
  const auto p = static_cast<std::size_t>(size);
  const std::size_t per_rank = options.drop_last ? n / p : (n + p - 1) / p;
  if (!options.drop_last && n > 0)
    for (std::size_t i = 0; order.size() < per_rank * p; ++i) order.push_back(order[i % n]);
  std::vector<std::size_t> mine;
  mine.reserve(per_rank);
  for (std::size_t k = 0; k < per_rank; ++k) mine.push_back(order[static_cast<std::size_t>(rank) + k * p]);
  return mine;
}

}  // namespace tapegrad::distributed
