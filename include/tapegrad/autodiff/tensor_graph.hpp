// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

namespace detail {

/// The part of a tape that a tensor root depends on, in recording order,
/// including what lies behind a stop_gradient barrier (shown, but cut).
template <class T>
struct tensor_reach {
  struct entry {
    std::string name;                // "leaf0" or "matmul#4"
    const tensor_storage<T>* storage;
    const op_node<T>* node;          // null for a leaf
    std::vector<std::size_t> inputs; // positions in `entries`
  };
  std::vector<entry> entries;  // leaves first, then nodes in tape order
};

template <class T>
tensor_reach<T> reach(const basic_tensor<T>& root) {
  const tensor_storage<T>& top = root.storage();  // throws on a stale root
  tensor_reach<T> r;
  if (root.is_leaf()) {
    r.entries.push_back({"leaf0", &top, nullptr, {}});
    return r;
  }
  const auto& nodes = root.tape()->tensor_nodes();
  const std::size_t last = root.node_index();
  // Which node made each intermediate storage.
  std::map<const tensor_storage<T>*, std::size_t> maker;
  for (std::size_t i = 0; i <= last; ++i)
    if (auto* n = dynamic_cast<const op_node<T>*>(nodes[i])) maker[&n->out] = i;
  // Mark what the root reaches, walking the tape backwards.
  std::vector<char> seen(last + 1, 0);
  seen[last] = 1;
  std::vector<const tensor_storage<T>*> leaves;
  for (std::size_t i = last + 1; i-- > 0;) {
    if (!seen[i]) continue;
    const auto* n = static_cast<const op_node<T>*>(nodes[i]);
    for (std::uint32_t k = 0; k < n->n_in; ++k) {
      const tensor_storage<T>* s = n->in[k];
      auto it = s->is_leaf ? maker.end() : maker.find(s);
      if (it != maker.end())
        seen[it->second] = 1;
      else if (std::find(leaves.begin(), leaves.end(), s) == leaves.end())
        leaves.push_back(s);
    }
  }
  // Leaves are numbered in the order the graph first uses them.
  std::vector<const tensor_storage<T>*> ordered;
  std::map<const tensor_storage<T>*, std::size_t> pos;
  for (std::size_t i = 0; i <= last; ++i) {
    if (!seen[i]) continue;
    const auto* n = static_cast<const op_node<T>*>(nodes[i]);
    for (std::uint32_t k = 0; k < n->n_in; ++k)
      if (std::find(leaves.begin(), leaves.end(), n->in[k]) != leaves.end() && !pos.count(n->in[k])) {
        pos[n->in[k]] = r.entries.size();
        r.entries.push_back({"leaf" + std::to_string(r.entries.size()), n->in[k], nullptr, {}});
      }
  }
  for (std::size_t i = 0; i <= last; ++i) {
    if (!seen[i]) continue;
    const auto* n = static_cast<const op_node<T>*>(nodes[i]);
    typename tensor_reach<T>::entry e{std::string(n->name) + "#" + std::to_string(i), &n->out, n, {}};
    for (std::uint32_t k = 0; k < n->n_in; ++k) e.inputs.push_back(pos.at(n->in[k]));
    pos[&n->out] = r.entries.size();
    r.entries.push_back(std::move(e));
  }
  return r;
}

}  // namespace detail

/// The tensor graph behind `root` as a table, one row per tensor in recording
/// order (leaves first): name, op, shape, whether it requires grad, and its
/// inputs. Leaves are named leaf0, leaf1, ... in order of first use, op
/// results `<op>#<tape position>`. A stop_gradient row marks its input `(cut)`.
///
/// Example, for sum(relu(x + b)) with x [2, 3] and b [3]:
///   node    op     shape   grad  inputs
///   leaf0   leaf   [2, 3]  no    []
///   leaf1   leaf   [3]     yes   []
///   add#0   add    [2, 3]  yes   [leaf0, leaf1]
///   relu#1  relu   [2, 3]  yes   [add#0]
///   sum#2   sum    []      yes   [relu#1]
template <std::floating_point T>
std::string tape_table(const basic_tensor<T>& root) {
  const auto r = detail::reach(root);
  std::vector<std::array<std::string, 5>> rows;
  rows.push_back({"node", "op", "shape", "grad", "inputs"});
  for (const auto& e : r.entries) {
    std::string in = "[";
    for (std::size_t k = 0; k < e.inputs.size(); ++k) in += (k ? ", " : "") + r.entries[e.inputs[k]].name;
    in += (e.node && e.node->barrier) ? " (cut)]" : "]";
    rows.push_back({e.name, e.node ? std::string(e.node->name) : "leaf", e.storage->shape.str(),
                    e.storage->requires_grad ? "yes" : "no", in});
  }
  std::array<std::size_t, 4> w{};
  for (const auto& row : rows)
    for (std::size_t i = 0; i < 4; ++i) w[i] = std::max(w[i], row[i].size());
  std::ostringstream os;
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < 4; ++i) os << std::left << std::setw(static_cast<int>(w[i] + 2)) << row[i];
    os << row[4] << '\n';
  }
  return os.str();
}

/// The tensor graph behind `root` in Graphviz DOT: leaves are ellipses (filled
/// when they require grad), ops are boxes labelled with their name and shape, edges
/// carry the input's shape. A stop_gradient is a red octagon and the edge into it
/// is dashed: no gradient crosses it. Render with `dot -Tsvg graph.dot -o graph.svg`.
template <std::floating_point T>
std::string to_dot(const basic_tensor<T>& root) {
  const auto r = detail::reach(root);
  std::ostringstream os;
  os << "digraph tape {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11];\n";
  for (std::size_t i = 0; i < r.entries.size(); ++i) {
    const auto& e = r.entries[i];
    const std::string shape = e.storage->shape.str();
    os << "  t" << i;
    if (!e.node)
      os << " [shape=ellipse" << (e.storage->requires_grad ? ", style=filled, fillcolor=lightblue" : "")
         << ", label=\"" << e.name << "\\n" << shape << "\"];\n";
    else if (e.node->barrier)
      os << " [shape=octagon, color=red, fontcolor=red, label=\"" << e.name << "\\n" << shape << "\"];\n";
    else
      os << " [shape=box, label=\"" << e.name << "\\n" << shape << "\"];\n";
    for (std::size_t in : e.inputs) {
      os << "  t" << in << " -> t" << i;
      if (e.node->barrier)
        os << " [style=dashed, color=red, label=\"no gradient\"];\n";
      else
        os << " [label=\"" << r.entries[in].storage->shape.str() << "\"];\n";
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace tapegrad
