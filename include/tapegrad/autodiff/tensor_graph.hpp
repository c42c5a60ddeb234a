// SPDX-License-Identifier: MIT
#pragma once

// Printing a tensor graph: the graph walker's view of a Tensor, the tape
// table and the Graphviz drawing, with leaves named by a module's
// `named_parameters()` when given.

#include <concepts>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/graph.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

namespace detail {

template <class T>
struct graph_traits<basic_tensor<T>> {
  using handle = basic_tensor<T>;
  static void check(const handle& t) { (void)t.shape(); }  // raises for an empty, stale or foreign root
  static std::uint64_t key(const handle& t) {
    if (t.is_leaf()) return static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(&access<handle>::storage(t)));
    return (std::uint64_t{1} << 63) | access<handle>::node_index(t);
  }
  static std::pair<int, std::uint64_t> order(const handle& t) {
    if (t.is_leaf()) return {0, ~std::uint64_t{0}};  // in the order the graph first uses them
    return {1, access<handle>::node_index(t)};
  }
  static void fill(const handle& t, GraphNode& n) {
    n.is_leaf = t.is_leaf();
    n.op = t.op();
    n.shape = t.shape().str();
    n.requires_grad = t.requires_grad();
    n.name = t.label();
    if (n.name.empty() && !n.is_leaf) n.name = n.op + "#" + std::to_string(access<handle>::node_index(t));
  }
  static std::string leaf_name(const handle& t, std::size_t k) {
    return t.label().empty() ? "leaf" + std::to_string(k) : t.label();
  }
};

}  // namespace detail

/// The tensor graph behind `root` as a table, one row per tensor in recording
/// order (leaves first): name, op, shape, whether it requires grad, and its
/// inputs. Leaves are named by `names` (a module's `named_parameters()`), by
/// their label, else leaf0, leaf1, ... in order of first use; op results by
/// their label, else `<op>#<tape position>`. A stop_gradient row marks its
/// input `(cut)`.
///
/// Example, for sum(relu(x + b)) with x [2, 3] and b [3]:
///   node    op    shape   grad  inputs
///   leaf0   leaf  [2, 3]  no    []
///   leaf1   leaf  [3]     yes   []
///   add#0   add   [2, 3]  yes   [leaf0, leaf1]
///   relu#1  relu  [2, 3]  yes   [add#0]
///   sum#2   sum   []      yes   [relu#1]
template <std::floating_point T>
std::string tape_table(const basic_tensor<T>& root,
                       const std::vector<std::pair<std::string, basic_tensor<T>>>& names = {}) {
  return graph_table(walk_graph(root, names), false);
}

/// The tensor graph behind `root` in Graphviz DOT: leaves are ellipses (filled
/// when they require grad), ops are boxes labelled with their name and shape,
/// edges carry the input's shape. A stop_gradient is a red octagon and the
/// edge into it is dashed: no gradient crosses it. Leaves are named as in
/// `tape_table`; pass `model.named_parameters()` to see `blocks.0.attn.w_q`.
/// Render with `dot -Tsvg graph.dot -o graph.svg`.
template <std::floating_point T>
std::string to_dot(const basic_tensor<T>& root,
                   const std::vector<std::pair<std::string, basic_tensor<T>>>& names = {}) {
  return graph_dot(walk_graph(root, names), false);
}

}  // namespace tapegrad
