// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

namespace detail {

/// The nodes and leaves that `root` depends on, including what lies behind a
/// stop_gradient barrier (drawn, but cut).
template <class T>
struct scalar_reach {
  std::vector<std::uint32_t> nodes;   // ascending tape positions
  std::vector<std::uint32_t> leaves;  // ascending leaf slots
};

template <class T>
scalar_reach<T> reach(const basic_value<T>& root) {
  scalar_reach<T> r;
  auto& s = root.tape().template scalars<T>();
  if (!root.is_alive()) throw stale_value_error("graph: the root " + root.describe() + " is stale");
  const std::uint32_t top = root.raw_index();
  if (top & leaf_bit) {
    r.leaves.push_back(top & ~leaf_bit);
    return r;
  }
  std::vector<char> node_seen(top + 1, 0), leaf_seen(s.leaves.size(), 0);
  node_seen[top] = 1;
  auto mark = [&](std::uint32_t i) {
    if (i & leaf_bit)
      leaf_seen[i & ~leaf_bit] = 1;
    else if (i != sink_index)
      node_seen[i] = 1;
  };
  for (std::uint32_t i = top; i >= 1; --i) {
    if (!node_seen[i]) continue;
    const scalar_node<T>& n = s.nodes[i];
    if (n.op == op_stop_gradient || n.arity >= 1) mark(n.a);
    if (n.arity >= 2) mark(n.b);
  }
  for (std::uint32_t i = 0; i < leaf_seen.size(); ++i)
    if (leaf_seen[i]) r.leaves.push_back(i);
  for (std::uint32_t i = 1; i <= top; ++i)
    if (node_seen[i]) r.nodes.push_back(i);
  return r;
}

template <class T>
std::string number(T x) {
  std::ostringstream os;
  os << std::setprecision(6) << static_cast<double>(x);
  return os.str();
}

}  // namespace detail

/// The tape behind `root` as a table, one row per node in recording order:
/// node, data, children, local grads. Leaves come first. A stop_gradient row
/// lists its source under "children" marked `(cut)`.
///
/// Example, for x = 2, y = 3, z = x*y, loss = z + one:
///   node  data  children   local grads
///   x     2     []         []
///   y     3     []         []
///   one   1     []         []
///   z     6     [x, y]     [3, 2]
///   loss  7     [z, one]   [1, 1]
template <std::floating_point T>
std::string tape_table(const basic_value<T>& root) {
  const auto r = detail::reach(root);
  auto& tape = root.tape();
  auto& s = tape.template scalars<T>();
  auto name = [&](std::uint32_t i) {
    const std::uint32_t stamp = (i & detail::leaf_bit) ? s.leaves[i & ~detail::leaf_bit].generation : s.nodes[i].epoch;
    return basic_value<T>::from_raw(tape, i, stamp).describe();
  };
  struct row {
    std::string node, data, children, grads;
  };
  std::vector<row> rows;
  rows.push_back({"node", "data", "children", "local grads"});
  for (std::uint32_t slot : r.leaves)
    rows.push_back({name(slot | detail::leaf_bit), detail::number(s.leaves[slot].value), "[]", "[]"});
  for (std::uint32_t i : r.nodes) {
    const auto& n = s.nodes[i];
    std::string children = "[", grads = "[";
    if (n.op == detail::op_stop_gradient) {
      children += name(n.a) + " (cut)";
    } else {
      if (n.arity >= 1) {
        children += name(n.a);
        grads += detail::number(n.da);
      }
      if (n.arity >= 2) {
        children += ", " + name(n.b);
        grads += ", " + detail::number(n.db);
      }
    }
    rows.push_back({name(i), detail::number(n.value), children + "]", grads + "]"});
  }
  std::size_t w[3] = {0, 0, 0};
  for (const row& x : rows) {
    w[0] = std::max(w[0], x.node.size());
    w[1] = std::max(w[1], x.data.size());
    w[2] = std::max(w[2], x.children.size());
  }
  std::ostringstream os;
  for (const row& x : rows) {
    os << std::left << std::setw(static_cast<int>(w[0] + 2)) << x.node << std::setw(static_cast<int>(w[1] + 2))
       << x.data << std::setw(static_cast<int>(w[2] + 2)) << x.children << x.grads << '\n';
  }
  return os.str();
}

/// The graph behind `root` in Graphviz DOT. Leaves are ellipses, operations
/// boxes, each edge is labelled with its local gradient; a stop_gradient is a
/// red octagon and the edge into it is dashed: no gradient crosses it.
/// Render with `dot -Tsvg graph.dot -o graph.svg`.
template <std::floating_point T>
std::string to_dot(const basic_value<T>& root) {
  const auto r = detail::reach(root);
  auto& tape = root.tape();
  auto& s = tape.template scalars<T>();
  auto id = [](std::uint32_t i) {
    return (i & detail::leaf_bit) ? "l" + std::to_string(i & ~detail::leaf_bit) : "n" + std::to_string(i);
  };
  auto name = [&](std::uint32_t i) {
    const std::uint32_t stamp = (i & detail::leaf_bit) ? s.leaves[i & ~detail::leaf_bit].generation : s.nodes[i].epoch;
    return basic_value<T>::from_raw(tape, i, stamp).describe();
  };
  std::ostringstream os;
  os << "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n";
  for (std::uint32_t slot : r.leaves) {
    const auto& l = s.leaves[slot];
    os << "  " << id(slot | detail::leaf_bit) << " [shape=ellipse, label=\"" << name(slot | detail::leaf_bit)
       << "\\ndata " << detail::number(l.value) << " | grad " << detail::number(l.grad) << "\"];\n";
  }
  for (std::uint32_t i : r.nodes) {
    const auto& n = s.nodes[i];
    if (n.op == detail::op_stop_gradient) {
      os << "  " << id(i) << " [shape=octagon, color=red, fontcolor=red, label=\"stop_gradient\\ndata "
         << detail::number(n.value) << "\"];\n";
      os << "  " << id(n.a) << " -> " << id(i) << " [style=dashed, color=red, label=\"no gradient\"];\n";
      continue;
    }
    os << "  " << id(i) << " [shape=box, label=\"" << name(i) << "\\ndata " << detail::number(n.value) << " | grad "
       << detail::number(n.grad) << "\"];\n";
    if (n.arity >= 1) os << "  " << id(n.a) << " -> " << id(i) << " [label=\"" << detail::number(n.da) << "\"];\n";
    if (n.arity >= 2) os << "  " << id(n.b) << " -> " << id(i) << " [label=\"" << detail::number(n.db) << "\"];\n";
  }
  os << "}\n";
  return os.str();
}

}  // namespace tapegrad
