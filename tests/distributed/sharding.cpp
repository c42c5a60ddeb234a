// SPDX-License-Identifier: MIT
//
// Sharding a dataset by rank: contiguous parts of a batch, and
// DistributedSampler's strided shards of one order all ranks share.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "tapegrad/distributed/sharding.hpp"

namespace dist = tapegrad::distributed;
using V = std::vector<std::size_t>;

TEST_CASE("split_range tiles a batch with parts that differ by at most one") {
  // 10 = 3 + 3 + 2 + 2: the first 10 % 4 = 2 ranks take one more.
  CHECK(dist::split_range(10, 0, 4).begin == 0);
  CHECK(dist::split_range(10, 0, 4).end == 3);
  CHECK(dist::split_range(10, 1, 4).end == 6);
  CHECK(dist::split_range(10, 2, 4).end == 8);
  CHECK(dist::split_range(10, 3, 4).begin == 8);
  CHECK(dist::split_range(10, 3, 4).end == 10);
  CHECK(dist::split_range(3, 3, 4).size() == 0);  // more ranks than examples: the last ones get none
  CHECK_THROWS_AS(dist::split_range(10, 4, 4), tapegrad::value_error);
}

TEST_CASE("epoch_order is a permutation fixed by seed and epoch") {
  const V e0 = dist::epoch_order(50, 7, 0);
  V sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  V identity(50);
  for (std::size_t i = 0; i < 50; ++i) identity[i] = i;
  CHECK(sorted == identity);
  CHECK(dist::epoch_order(50, 7, 0) == e0);  // what every rank computes
  CHECK(dist::epoch_order(50, 7, 1) != e0);  // a new order each epoch
  CHECK(dist::epoch_order(50, 8, 0) != e0);  // and for each seed
}

TEST_CASE("shard_indices follows DistributedSampler") {
  SUBCASE("no shuffle, 5 examples on 2 ranks: padded by repeating the head") {
    CHECK(dist::shard_indices(5, 0, 0, 2, {.shuffle = false}) == V{0, 2, 4});
    CHECK(dist::shard_indices(5, 0, 1, 2, {.shuffle = false}) == V{1, 3, 0});
  }
  SUBCASE("drop_last drops the tail instead") {
    CHECK(dist::shard_indices(5, 0, 0, 2, {.shuffle = false, .drop_last = true}) == V{0, 2});
    CHECK(dist::shard_indices(5, 0, 1, 2, {.shuffle = false, .drop_last = true}) == V{1, 3});
  }
  SUBCASE("shuffled: the ranks' shards are disjoint and cover the epoch's order") {
    const V order = dist::epoch_order(12, 3, 5);
    const V r0 = dist::shard_indices(12, 5, 0, 3, {.seed = 3});
    const V r1 = dist::shard_indices(12, 5, 1, 3, {.seed = 3});
    const V r2 = dist::shard_indices(12, 5, 2, 3, {.seed = 3});
    CHECK(r0 == V{order[0], order[3], order[6], order[9]});
    CHECK(r1 == V{order[1], order[4], order[7], order[10]});
    V all = r0;
    all.insert(all.end(), r1.begin(), r1.end());
    all.insert(all.end(), r2.begin(), r2.end());
    std::sort(all.begin(), all.end());
    CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
    CHECK(all.size() == 12);
  }
}
