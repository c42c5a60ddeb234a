// SPDX-License-Identifier: MIT
#pragma once

// One graph walker for every recorded graph, scalar or tensor, and the
// printers built on it: the tape table and the Graphviz drawing.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tapegrad {

/// One node of a recorded graph, as printers and tools see it.
struct GraphNode {
  std::string name;                 ///< the label, else `leaf#k` / `op#position` (see describe())
  std::string op;                   ///< "leaf", "mul", "stop_gradient", ...
  std::string shape;                ///< tensors: "[2, 3]"; scalars: empty
  double data = 0;                  ///< scalars: the value
  double grad = 0;                  ///< scalars: the gradient
  bool is_leaf = false;             ///< a parameter or an input
  bool barrier = false;             ///< a stop_gradient: its one input is cut
  bool requires_grad = true;        ///< whether gradient can reach it
  std::vector<std::size_t> inputs;  ///< positions in Graph::nodes (for a barrier, the blocked input)
  std::vector<double> local_grads;  ///< scalars: d(this)/d(input) per input
};

/// The graph behind a root: every node it depends on, each once, with every
/// node's inputs before it (leaves first, then the recording order).
struct Graph {
  std::vector<GraphNode> nodes;
  std::size_t root = 0;  ///< the root's position in `nodes`
};

namespace detail {

/// What the walker needs of a handle type; the scalar and tensor layers'
/// printer headers specialise it.
template <class Handle>
struct graph_traits;

inline std::string graph_number(double x) {
  std::ostringstream os;
  os << std::setprecision(6) << x;
  return os.str();
}

}  // namespace detail

/// Walks the graph behind `root` (a Value or a Tensor) once, without
/// recursion, so deep graphs do not overflow the stack. A stop_gradient node
/// lists the input it blocks, marked as a barrier. `names` gives names to
/// leaves (a module's `named_parameters()`); the others are named as
/// `describe()` would.
template <class Handle>
Graph walk_graph(const Handle& root, const std::vector<std::pair<std::string, Handle>>& names = {}) {
  using traits = detail::graph_traits<Handle>;
  traits::check(root);
  std::unordered_map<std::uint64_t, std::size_t> seen;  // key -> position in `found`
  std::vector<Handle> found;
  std::vector<std::vector<std::size_t>> inputs;
  std::vector<char> barrier;
  // Discover every node; inputs are resolved once all are known.
  std::vector<Handle> stack{root};
  std::vector<std::vector<Handle>> kids;
  while (!stack.empty()) {
    Handle h = std::move(stack.back());
    stack.pop_back();
    const std::uint64_t key = traits::key(h);
    if (seen.count(key)) continue;
    seen.emplace(key, found.size());
    std::vector<Handle> children = h.children();
    bool cut = false;
    if (children.empty() && !h.is_leaf()) {
      Handle s = h.stopped_input();
      if (s.defined()) {
        children.push_back(std::move(s));
        cut = true;
      }
    }
    for (auto it = children.rbegin(); it != children.rend(); ++it) stack.push_back(*it);
    found.push_back(h);
    kids.push_back(std::move(children));
    barrier.push_back(cut ? 1 : 0);
  }
  // Order: leaves first, then the recording order. Leaves without a natural
  // order (tensor leaves) come in the order the graph first uses them.
  std::vector<std::size_t> order(found.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto rank = [&](std::size_t i) { return traits::order(found[i]); };
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rank(a) < rank(b); });
  constexpr std::uint64_t by_use = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::size_t> final_order;
  std::vector<char> placed(found.size(), 0);
  for (std::size_t i : order)
    if (found[i].is_leaf() && rank(i).second != by_use) {
      final_order.push_back(i);
      placed[i] = 1;
    }
  for (std::size_t i : order) {
    if (found[i].is_leaf()) continue;
    for (const Handle& c : kids[i]) {
      const std::size_t j = seen.at(traits::key(c));
      if (found[j].is_leaf() && !placed[j]) {
        final_order.push_back(j);
        placed[j] = 1;
      }
    }
  }
  for (std::size_t i : order)
    if (found[i].is_leaf() && !placed[i]) final_order.push_back(i);  // a root that is a leaf
  for (std::size_t i : order)
    if (!found[i].is_leaf()) final_order.push_back(i);

  std::vector<std::size_t> position(found.size());
  for (std::size_t p = 0; p < final_order.size(); ++p) position[final_order[p]] = p;
  Graph g;
  g.nodes.resize(found.size());
  std::size_t leaf_number = 0;
  for (std::size_t p = 0; p < final_order.size(); ++p) {
    const std::size_t i = final_order[p];
    GraphNode& n = g.nodes[p];
    traits::fill(found[i], n);
    n.barrier = barrier[i] != 0;
    if (n.is_leaf) {
      for (const auto& [name, h] : names)
        if (traits::key(h) == traits::key(found[i])) n.name = name;
      if (n.name.empty()) n.name = traits::leaf_name(found[i], leaf_number);
      ++leaf_number;
    }
    for (const Handle& c : kids[i]) n.inputs.push_back(position[seen.at(traits::key(c))]);
  }
  g.root = position[0];
  return g;
}

/// The graph as a table, one row per node, inputs first. For scalars the
/// columns are node, data, children, local grads (seed 001's table); for
/// tensors node, op, shape, grad, inputs. A stop_gradient row marks its
/// input `(cut)`.
inline std::string graph_table(const Graph& g, bool scalar) {
  std::vector<std::vector<std::string>> rows;
  auto list = [&](const GraphNode& n) {
    std::string s = "[";
    for (std::size_t k = 0; k < n.inputs.size(); ++k) s += (k ? ", " : "") + g.nodes[n.inputs[k]].name;
    return s + (n.barrier ? " (cut)]" : "]");
  };
  if (scalar) {
    rows.push_back({"node", "data", "children", "local grads"});
    for (const GraphNode& n : g.nodes) {
      std::string grads = "[";
      for (std::size_t k = 0; k < n.local_grads.size(); ++k)
        grads += (k ? ", " : "") + detail::graph_number(n.local_grads[k]);
      rows.push_back({n.name, detail::graph_number(n.data), list(n), grads + "]"});
    }
  } else {
    rows.push_back({"node", "op", "shape", "grad", "inputs"});
    for (const GraphNode& n : g.nodes) rows.push_back({n.name, n.op, n.shape, n.requires_grad ? "yes" : "no", list(n)});
  }
  const std::size_t cols = rows[0].size();
  std::vector<std::size_t> w(cols, 0);
  for (const auto& r : rows)
    for (std::size_t c = 0; c + 1 < cols; ++c) w[c] = std::max(w[c], r[c].size());
  std::ostringstream os;
  for (const auto& r : rows) {
    for (std::size_t c = 0; c + 1 < cols; ++c) os << std::left << std::setw(static_cast<int>(w[c] + 2)) << r[c];
    os << r[cols - 1] << '\n';
  }
  return os.str();
}

/// The graph in Graphviz DOT: leaves are ellipses (filled when they receive
/// gradient), operations boxes, each labelled with its name and its value or
/// shape; an edge carries the local gradient (scalars) or the input's shape
/// (tensors). A stop_gradient is a red octagon and the edge into it is
/// dashed: no gradient crosses it. Render with `dot -Tsvg graph.dot -o graph.svg`.
inline std::string graph_dot(const Graph& g, bool scalar) {
  auto summary = [&](const GraphNode& n) {
    if (!scalar) return n.shape;
    if (n.barrier) return "data " + detail::graph_number(n.data);
    return "data " + detail::graph_number(n.data) + " | grad " + detail::graph_number(n.grad);
  };
  std::ostringstream os;
  os << "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n";
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const GraphNode& n = g.nodes[i];
    const std::string label = n.name + "\\n" + summary(n);
    os << "  t" << i;
    if (n.is_leaf)
      os << " [shape=ellipse" << (!scalar && n.requires_grad ? ", style=filled, fillcolor=lightblue" : "")
         << ", label=\"" << label << "\"];\n";
    else if (n.barrier)
      os << " [shape=octagon, color=red, fontcolor=red, label=\"" << label << "\"];\n";
    else
      os << " [shape=box, label=\"" << label << "\"];\n";
    for (std::size_t k = 0; k < n.inputs.size(); ++k) {
      os << "  t" << n.inputs[k] << " -> t" << i;
      if (n.barrier)
        os << " [style=dashed, color=red, label=\"no gradient\"];\n";
      else if (scalar)
        os << " [label=\"" << detail::graph_number(k < n.local_grads.size() ? n.local_grads[k] : 0.0) << "\"];\n";
      else
        os << " [label=\"" << g.nodes[n.inputs[k]].shape << "\"];\n";
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace tapegrad
