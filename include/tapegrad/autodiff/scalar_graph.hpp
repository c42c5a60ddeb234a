// SPDX-License-Identifier: MIT
#pragma once

// Printing a scalar graph: the graph walker's view of a Value, the tape
// table of seed 001, and the Graphviz drawing.

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/graph.hpp"
#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

namespace detail {

template <class T>
struct graph_traits<basic_value<T>> {
  using handle = basic_value<T>;
  static void check(const handle& v) { (void)v.data(); }  // raises for a stale or foreign root
  static std::uint64_t key(const handle& v) { return access<handle>::index_of(v); }
  static std::pair<int, std::uint64_t> order(const handle& v) {
    const std::uint32_t i = access<handle>::index_of(v);
    return {v.is_leaf() ? 0 : 1, i & ~leaf_bit};
  }
  static void fill(const handle& v, GraphNode& n) {
    n.name = v.describe();
    n.op = v.op();
    n.data = static_cast<double>(v.data());
    n.grad = static_cast<double>(v.grad());
    n.is_leaf = v.is_leaf();
    for (T g : v.local_grads()) n.local_grads.push_back(static_cast<double>(g));
  }
  static std::string leaf_name(const handle& v, std::size_t) { return v.describe(); }
};

}  // namespace detail

/// The tape behind `root` as a table, one row per node in recording order:
/// node, data, children, local grads. Leaves come first. A stop_gradient row
/// lists its source under "children" marked `(cut)`.
///
/// Example, for x = 2, y = 3, z = x*y, loss = z + one:
///   node  data  children  local grads
///   x     2     []        []
///   y     3     []        []
///   one   1     []        []
///   z     6     [x, y]    [3, 2]
///   loss  7     [z, one]  [1, 1]
template <std::floating_point T>
std::string tape_table(const basic_value<T>& root) {
  return graph_table(walk_graph(root), true);
}

/// The graph behind `root` in Graphviz DOT. Leaves are ellipses, operations
/// boxes, each edge is labelled with its local gradient; a stop_gradient is a
/// red octagon and the edge into it is dashed: no gradient crosses it.
/// Render with `dot -Tsvg graph.dot -o graph.svg`.
template <std::floating_point T>
std::string to_dot(const basic_value<T>& root) {
  return graph_dot(walk_graph(root), true);
}

}  // namespace tapegrad
