// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/scalar/value.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

/// How `routing` groups parameters into the table's columns.
struct RoutingOptions {
  /// Group by the first `depth` parts of each dotted name: with depth 1,
  /// "backbone.blocks.0.w_q" belongs to "backbone".
  int depth = 1;
  /// Or by these prefixes: a parameter joins the longest prefix its name
  /// starts with; a name no prefix matches is grouped by `depth`.
  std::vector<std::string> prefixes{};
};

/// One cell of a routing table: what one loss sends to one parameter group.
struct RouteCell {
  double grad_norm = 0;               ///< norm of the group's gradient from this loss alone
  bool connected = false;             ///< some path without a barrier joins the loss to the group
  std::vector<std::string> cut_by{};  ///< when not connected: the stop_gradients that cut the paths there are
};

/// Which loss reaches which parameter group, and with what gradient norm.
/// `cells[l][g]` is loss `l` against group `g`; `str()` is the printed table.
struct RoutingTable {
  std::vector<std::string> losses{};                ///< the losses' names, one row each
  std::vector<std::string> groups{};                ///< the groups' names, one column each
  std::vector<std::vector<std::string>> members{};  ///< each group's parameter names
  std::vector<std::vector<RouteCell>> cells{};      ///< [loss][group]

  /// The cell of a loss and a group, by name (value_error naming both when absent).
  const RouteCell& at(std::string_view loss, std::string_view group) const {
    for (std::size_t l = 0; l < losses.size(); ++l)
      for (std::size_t g = 0; g < groups.size(); ++g)
        if (losses[l] == loss && groups[g] == group) return cells[l][g];
    throw value_error("routing: no cell for loss \"" + std::string(loss) + "\" and group \"" + std::string(group) +
                      "\"");
  }

  /// The table for people: one row per loss, one column per group. A cell is
  /// the gradient norm where a path reaches the group, `cut: <barrier>` where
  /// every path is cut by a stop_gradient, and `-` where no path exists.
  std::string str() const {
    auto cell_text = [](const RouteCell& c) {
      if (c.connected) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.3e", c.grad_norm);
        return std::string(buf);
      }
      if (c.cut_by.empty()) return std::string("-");
      std::string s = "cut: ";
      for (std::size_t i = 0; i < c.cut_by.size(); ++i) s += (i ? ", " : "") + c.cut_by[i];
      return s;
    };
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"loss \\ group"});
    for (std::size_t g = 0; g < groups.size(); ++g)
      rows[0].push_back(groups[g] + " (" + std::to_string(members[g].size()) + ")");
    for (std::size_t l = 0; l < losses.size(); ++l) {
      rows.push_back({losses[l]});
      for (const RouteCell& c : cells[l]) rows.back().push_back(cell_text(c));
    }
    std::vector<std::size_t> width(groups.size() + 1, 0);
    for (const auto& r : rows)
      for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
    std::ostringstream os;
    for (std::size_t k = 0; k < rows.size(); ++k) {
      for (std::size_t i = 0; i < rows[k].size(); ++i) {
        os << rows[k][i];
        if (i + 1 < rows[k].size()) os << std::string(width[i] - rows[k][i].size() + 3, ' ');
      }
      os << '\n';
      if (k == 0) {
        std::size_t total = 0;
        for (std::size_t w : width) total += w + 3;
        os << std::string(total - 3, '-') << '\n';
      }
    }
    os << "cells: gradient norm from that loss alone; cut: the stop_gradient that blocks every path; -: no path\n";
    return os.str();
  }

  friend std::ostream& operator<<(std::ostream& os, const RoutingTable& t) { return os << t.str(); }
};

namespace detail {

// One interface over both kinds of graph handle, for the walkers below.
template <class T>
std::uintptr_t graph_key(const basic_tensor<T>& t) {
  return reinterpret_cast<std::uintptr_t>(&access<basic_tensor<T>>::storage(t));
}
template <class T>
std::uintptr_t graph_key(const basic_value<T>& v) {
  return access<basic_value<T>>::index_of(v);
}
template <class T>
std::optional<basic_tensor<T>> graph_stopped(const basic_tensor<T>& t) {
  basic_tensor<T> s = t.stopped_input();
  if (!s.defined()) return std::nullopt;
  return s;
}
template <class T>
std::optional<basic_value<T>> graph_stopped(const basic_value<T>& v) {
  basic_value<T> s = v.stopped_input();
  if (!s.defined()) return std::nullopt;
  return s;
}
template <class T>
bool graph_is_parameter(const basic_tensor<T>& t) {
  return t.is_leaf() && t.requires_grad();
}
template <class T>
bool graph_is_parameter(const basic_value<T>& v) {
  return v.is_leaf();
}
// The position-based name of a node: "matmul#4", "leaf", "mul#7", "leaf#2".
template <class T>
std::string graph_position_name(const basic_tensor<T>& t) {
  return t.is_leaf() ? std::string("leaf") : t.op() + "#" + std::to_string(access<basic_tensor<T>>::node_index(t));
}
template <class T>
std::string graph_position_name(const basic_value<T>& v) {
  return v.describe();
}

// The user's names for handles, by key.
template <class H>
std::map<std::uintptr_t, std::string> graph_names(const std::vector<std::pair<std::string, H>>& named) {
  std::map<std::uintptr_t, std::string> out;
  for (const auto& [name, h] : named) out.emplace(graph_key(h), name);
  return out;
}

// The name of a barrier: the user's name for it, its label (scalars), else op and position.
template <class H>
std::string barrier_name(const H& h, const std::map<std::uintptr_t, std::string>& names) {
  if (auto it = names.find(graph_key(h)); it != names.end()) return it->second;
  if constexpr (requires { h.label(); }) {
    std::string l = h.label();
    if (!l.empty()) return l;
  }
  return graph_position_name(h);
}

// Everything `root` reaches without crossing a barrier (`direct`), and, for
// each barrier met on the way, everything behind it (crossing further barriers).
template <class H>
struct graph_reach {
  std::set<std::uintptr_t> direct;
  std::vector<std::pair<H, std::set<std::uintptr_t>>> barriers;
};

template <class H>
void graph_collect(const H& root, bool cross, std::set<std::uintptr_t>& seen, std::vector<H>* barriers) {
  std::vector<H> stack{root};
  seen.insert(graph_key(root));
  while (!stack.empty()) {
    H h = stack.back();
    stack.pop_back();
    std::vector<H> next = h.children();
    if (auto s = graph_stopped(h)) {
      if (barriers) barriers->push_back(h);
      if (cross) next.push_back(*s);
    }
    for (H& c : next)
      if (seen.insert(graph_key(c)).second) stack.push_back(std::move(c));
  }
}

template <class H>
graph_reach<H> reach_of(const H& root) {
  graph_reach<H> r;
  std::vector<H> barriers;
  graph_collect(root, false, r.direct, &barriers);
  for (const H& b : barriers) {
    std::set<std::uintptr_t> behind;
    graph_collect<H>(*graph_stopped(b), true, behind, nullptr);
    r.barriers.emplace_back(b, std::move(behind));
  }
  return r;
}

inline std::string group_of(const std::string& name, const RoutingOptions& o) {
  std::string best;
  for (const std::string& p : o.prefixes)
    if (name.compare(0, p.size(), p) == 0 && p.size() > best.size()) best = p;
  if (!best.empty()) return best;
  std::size_t end = std::string::npos, from = 0;
  for (int d = 0; d < std::max(o.depth, 1); ++d) {
    end = name.find('.', from);
    if (end == std::string::npos) return name;
    from = end + 1;
  }
  return name.substr(0, end);
}

template <class T>
double grad_sq(const basic_tensor<T>& p) {
  return p.has_grad() ? static_cast<double>(p.grad().matrix().squaredNorm()) : 0.0;
}
template <class T>
double grad_sq(const basic_value<T>& p) {
  return static_cast<double>(p.grad()) * static_cast<double>(p.grad());
}

// Saves the parameters' gradients, zeroes them, and puts them back when done,
// so that routing leaves what the user accumulated untouched.
template <class T>
struct routing_saved_grads {
  const std::vector<std::pair<std::string, basic_tensor<T>>>& params;
  std::vector<std::vector<T>> keep;
  explicit routing_saved_grads(const std::vector<std::pair<std::string, basic_tensor<T>>>& p) : params(p) {
    for (const auto& [name, t] : params) {
      keep.emplace_back();
      if (t.has_grad()) keep.back().assign(t.grad().data(), t.grad().data() + t.numel());
    }
  }
  void zero() {
    for (auto& [name, t] : params) const_cast<basic_tensor<T>&>(t).zero_grad();
  }
  ~routing_saved_grads() {
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto& t = const_cast<basic_tensor<T>&>(params[i].second);
      if (keep[i].empty())
        t.zero_grad();
      else
        t.grad_mut() = Eigen::Map<const typename basic_tensor<T>::Vec>(keep[i].data(), t.numel());
    }
  }
};
template <class T>
struct routing_saved_grads_scalar {
  const std::vector<std::pair<std::string, basic_value<T>>>& params;
  std::vector<T> keep;
  explicit routing_saved_grads_scalar(const std::vector<std::pair<std::string, basic_value<T>>>& p) : params(p) {
    for (const auto& [name, v] : params) keep.push_back(v.grad());
  }
  void zero() {
    for (auto& [name, v] : params) const_cast<basic_value<T>&>(v).zero_grad();
  }
  ~routing_saved_grads_scalar() {
    zero();
    // On a leaf, backward(seed) adds the seed to its gradient.
    for (std::size_t i = 0; i < params.size(); ++i) params[i].second.backward(keep[i]);
  }
};

template <class H, class Saved>
RoutingTable routing_impl(const std::vector<std::pair<std::string, H>>& losses,
                          const std::vector<std::pair<std::string, H>>& params, const RoutingOptions& options,
                          const std::vector<std::pair<std::string, H>>& names) {
  RoutingTable table;
  std::vector<std::size_t> group_of_param;
  for (const auto& [name, p] : params) {
    const std::string g = group_of(name, options);
    std::size_t k = 0;
    while (k < table.groups.size() && table.groups[k] != g) ++k;
    if (k == table.groups.size()) {
      table.groups.push_back(g);
      table.members.emplace_back();
    }
    table.members[k].push_back(name);
    group_of_param.push_back(k);
  }
  const auto barrier_names = graph_names(names);
  Saved saved(params);
  for (const auto& named_loss : losses) {
    const auto& loss_name = named_loss.first;
    const auto& loss = named_loss.second;
    table.losses.push_back(loss_name);
    std::vector<RouteCell> row(table.groups.size());
    // Structure: which parameters a barrier-free path reaches, and which lie behind which barrier.
    const graph_reach<H> r = reach_of(loss);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const std::uintptr_t key = graph_key(params[i].second);
      RouteCell& c = row[group_of_param[i]];
      if (r.direct.count(key)) c.connected = true;
      for (const auto& [b, behind] : r.barriers)
        if (behind.count(key)) {
          const std::string n = barrier_name(b, barrier_names);
          if (std::find(c.cut_by.begin(), c.cut_by.end(), n) == c.cut_by.end()) c.cut_by.push_back(n);
        }
    }
    // Numbers: one reverse sweep from this loss over the recorded graph.
    saved.zero();
    bool swept = true;
    if constexpr (requires { loss.requires_grad(); }) swept = loss.requires_grad();
    if (swept) loss.backward();
    std::vector<double> sq(table.groups.size(), 0.0);
    for (std::size_t i = 0; i < params.size(); ++i) sq[group_of_param[i]] += grad_sq(params[i].second);
    for (std::size_t g = 0; g < row.size(); ++g) {
      row[g].grad_norm = std::sqrt(sq[g]);
      if (row[g].connected) row[g].cut_by.clear();
    }
    table.cells.push_back(std::move(row));
  }
  return table;
}

}  // namespace detail

/// Named tensors: losses, parameters (`Module::named_parameters()`), or
/// barriers to name in printed output.
template <class T>
using NamedTensors = std::vector<std::pair<std::string, basic_tensor<T>>>;
/// Named scalar values.
template <class T>
using NamedValues = std::vector<std::pair<std::string, basic_value<T>>>;

/// Which loss reaches which parameter group, with what gradient norm: one
/// reverse sweep per loss over the graph already recorded (nothing is
/// recorded again), each from zeroed gradients, and the parameters'
/// gradients are restored afterwards, so accumulated gradients are untouched.
/// Where every path from a loss to a group is cut, the cell names the
/// stop_gradient that cut it: its name in `names`, else `stop_gradient#<pos>`.
///
/// Example:
///   auto table = tapegrad::routing({{"token", token_loss}, {"action", action_loss}},
///                                  model.named_parameters(), {.depth = 1}, {{"kv barrier", kv_stopped}});
///   std::cout << table;                                    // the table
///   table.at("action", "backbone").grad_norm;              // 0: cut by "kv barrier"
template <std::floating_point T>
RoutingTable routing(const NamedTensors<T>& losses, const NamedTensors<T>& params, const RoutingOptions& options = {},
                     const NamedTensors<T>& names = {}) {
  return detail::routing_impl<basic_tensor<T>, detail::routing_saved_grads<T>>(losses, params, options, names);
}
/// `routing` for float tensors given as braced lists.
inline RoutingTable routing(const NamedTensors<float>& losses, const NamedTensors<float>& params,
                            const RoutingOptions& options = {}, const NamedTensors<float>& names = {}) {
  return routing<float>(losses, params, options, names);
}

/// `routing` on a scalar graph. A barrier is named by `names`, else its label, else `stop_gradient#<pos>`.
template <std::floating_point T>
RoutingTable routing(const NamedValues<T>& losses, const NamedValues<T>& params, const RoutingOptions& options = {},
                     const NamedValues<T>& names = {}) {
  return detail::routing_impl<basic_value<T>, detail::routing_saved_grads_scalar<T>>(losses, params, options, names);
}
/// `routing` for double values given as braced lists.
inline RoutingTable routing(const NamedValues<double>& losses, const NamedValues<double>& params,
                            const RoutingOptions& options = {}, const NamedValues<double>& names = {}) {
  return routing<double>(losses, params, options, names);
}

namespace detail {

template <class T>
std::string tree_head(const basic_tensor<T>& t, const std::map<std::uintptr_t, std::string>& names) {
  std::string s;
  auto it = names.find(graph_key(t));
  if (it != names.end())
    s = it->second + " (" + graph_position_name(t) + ")";
  else
    s = graph_position_name(t);
  s += " " + t.shape().str();
  if (t.numel() == 1) {
    std::ostringstream os;
    os << " = " << std::setprecision(6) << static_cast<double>(t.item());
    s += os.str();
  }
  return s;
}
template <class T>
std::string tree_head(const basic_value<T>& v, const std::map<std::uintptr_t, std::string>& names) {
  std::ostringstream os;
  auto it = names.find(graph_key(v));
  os << (it != names.end() ? it->second : v.describe()) << " = " << std::setprecision(6)
     << static_cast<double>(v.data());
  if (!v.is_leaf()) os << "  (" << v.op() << ")";
  return os.str();
}

template <class T>
std::string tree_value(const basic_tensor<T>& t) {
  return " " + t.shape().str();
}
template <class T>
std::string tree_value(const basic_value<T>& v) {
  std::ostringstream os;
  os << " = " << std::setprecision(6) << static_cast<double>(v.data());
  return os.str();
}

template <class H>
struct tree_printer {
  std::map<std::uintptr_t, std::string> names;
  std::set<std::uintptr_t> direct;  // reached from the root without crossing a barrier
  std::set<std::uintptr_t> shown;
  std::ostringstream os;

  void line(const H& h, const std::string& lead, const std::string& rest) {
    const std::uintptr_t key = graph_key(h);
    if (graph_stopped(h))
      os << lead << "[stop_gradient] barrier " << barrier_name(h, names) << tree_value(h) << ", no gradient passes";
    else
      os << lead << tree_head(h, names);
    if (h.is_leaf()) {
      if (graph_is_parameter(h))
        os << (direct.count(key) ? "  [gradient reaches it]" : "  [no gradient: behind a stop_gradient]");
      else
        os << "  (input)";
    }
    if (!shown.insert(key).second) {
      // A shared subgraph is drawn once; later uses point back to it.
      if (!h.is_leaf()) os << "  (shared: shown above)";
      os << '\n';
      return;
    }
    os << '\n';
    std::vector<H> kids = h.children();
    if (auto s = graph_stopped(h)) {
      line(*s, rest + "└─ ", rest + "   ");
      return;
    }
    for (std::size_t i = 0; i < kids.size(); ++i) {
      const bool last = i + 1 == kids.size();
      line(kids[i], rest + (last ? "└─ " : "├─ "), rest + (last ? "   " : "│  "));
    }
  }
};

template <class H>
std::string graph_tree_impl(const H& root, const std::vector<std::pair<std::string, H>>& names) {
  tree_printer<H> p;
  p.names = graph_names(names);
  p.direct = reach_of(root).direct;
  p.line(root, "", "");
  return p.os.str();
}

}  // namespace detail

/// The graph behind `root` as an indented tree, root first: each line is a
/// node (its name or `op#position`, its shape, its value when it has one
/// element) with its children below it. A stop_gradient shows as a
/// `[stop_gradient] barrier` line with the blocked input under it; each
/// parameter (a leaf that requires grad) is marked `[gradient reaches it]` or
/// `[no gradient: behind a stop_gradient]`; inputs are marked `(input)`. A
/// subgraph used twice is drawn once and marked `(shared: shown above)` after.
/// `names` gives nodes names to print (parameters, barriers, losses).
///
/// Example, for kept = sum(matmul(x, w)), then loss = kept + sum(stop_gradient(matmul(x, v))):
///   add#5 [] = 6
///   ├─ sum#1 [] = 4
///   │  └─ matmul#0 [2, 1]
///   │     ├─ x (leaf) [2, 3]  (input)
///   │     └─ w (leaf) [3, 1]  [gradient reaches it]
///   └─ sum#4 [] = 2
///      └─ [stop_gradient] barrier stop_gradient#3 [2, 1], no gradient passes
///         └─ matmul#2 [2, 1]
///            ├─ x (leaf) [2, 3]  (input)
///            └─ v (leaf) [3, 1]  [no gradient: behind a stop_gradient]
template <std::floating_point T>
std::string graph_tree(const basic_tensor<T>& root, const NamedTensors<T>& names = {}) {
  return detail::graph_tree_impl(root, names);
}
/// `graph_tree` of a scalar graph; values show their labels.
template <std::floating_point T>
std::string graph_tree(const basic_value<T>& root, const NamedValues<T>& names = {}) {
  return detail::graph_tree_impl(root, names);
}

/// Prints `graph_tree(root, names)` to `os` (standard output by default).
template <std::floating_point T>
void print_graph(const basic_tensor<T>& root, const NamedTensors<T>& names = {}, std::ostream& os = std::cout) {
  os << graph_tree(root, names);
}
/// Prints `graph_tree(root, names)` of a scalar graph.
template <std::floating_point T>
void print_graph(const basic_value<T>& root, const NamedValues<T>& names = {}, std::ostream& os = std::cout) {
  os << graph_tree(root, names);
}

}  // namespace tapegrad
