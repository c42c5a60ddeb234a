// SPDX-License-Identifier: MIT
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace tapegrad::detail {

/// Marks a node index as one of the leaf slots rather than an intermediate.
inline constexpr std::uint32_t leaf_bit = 0x8000'0000u;
/// Intermediate index 0 is a sink: unary nodes point their unused edge at it.
inline constexpr std::uint32_t sink_index = 0;

/// One recorded scalar operation: its value, its gradient and up to two edges,
/// each a child and the local gradient d(node)/d(child) taken on the forward pass.
template <class T>
struct scalar_node {
  T value;
  T grad;
  T da;             // d(node)/d(child a)
  T db;             // d(node)/d(child b)
  std::uint32_t a;  // child a (leaf_bit set for a leaf)
  std::uint32_t b;  // child b, or sink_index for a unary op
  std::uint32_t epoch;
  std::uint16_t op;  // index into op_names()
  std::uint16_t arity;
};

/// A leaf: a parameter or an input. It lives until the last handle to it is
/// gone and a tape clear has run, so clears keep parameters and their gradients.
template <class T>
struct scalar_leaf {
  T value;
  T grad;
  std::uint32_t refs;
  std::uint32_t generation;
  std::uint32_t born;  // how many nodes the tape held when the leaf was made
};

/// The names printed for scalar nodes. The library's ops take fixed slots;
/// custom scalar ops register a name and get the next one.
inline std::vector<std::string>& op_name_table() {
  static std::vector<std::string> names = {"leaf",  "sink",  "stop_gradient", "add",     "sub",  "mul", "div",
                                           "neg",   "pow",   "exp",           "log",     "sqrt", "sin", "cos",
                                           "tan",   "tanh",  "sigmoid",       "relu",    "abs",  "max", "min",
                                           "log1p", "expm1", "erf",           "softplus"};
  return names;
}

inline std::mutex& op_name_mutex() {
  static std::mutex m;
  return m;
}

/// The fixed slots of op_name_table().
enum scalar_op : std::uint16_t {
  op_leaf,
  op_sink,
  op_stop_gradient,
  op_add,
  op_sub,
  op_mul,
  op_div,
  op_neg,
  op_pow,
  op_exp,
  op_log,
  op_sqrt,
  op_sin,
  op_cos,
  op_tan,
  op_tanh,
  op_sigmoid,
  op_relu,
  op_abs,
  op_max,
  op_min,
  op_log1p,
  op_expm1,
  op_erf,
  op_softplus
};

inline std::string op_name(std::uint16_t op) {
  std::lock_guard lock(op_name_mutex());
  const auto& t = op_name_table();
  return op < t.size() ? t[op] : std::string("op#") + std::to_string(op);
}

/// Registers a name for a user-defined scalar op; the same name gets the same id.
inline std::uint16_t register_op_name(const std::string& name) {
  std::lock_guard lock(op_name_mutex());
  auto& t = op_name_table();
  for (std::size_t i = 0; i < t.size(); ++i)
    if (t[i] == name) return static_cast<std::uint16_t>(i);
  t.push_back(name);
  return static_cast<std::uint16_t>(t.size() - 1);
}

/// The scalar half of a tape for one floating type: intermediates in order of
/// recording, and the leaf slots beside them.
template <class T>
struct scalar_store {
  std::vector<scalar_node<T>> nodes;
  std::vector<scalar_leaf<T>> leaves;
  std::vector<std::uint32_t> free_leaves;      // reusable now
  std::vector<std::uint32_t> released_leaves;  // reusable after the next clear or rewind
  std::vector<std::string> leaf_labels;        // optional names, by leaf slot
  std::vector<std::string> node_labels;        // optional names, by node index
  std::uint32_t swept = 0;                     // nodes below this index may hold a stale gradient

  scalar_store() { reset_nodes(); }

  void reset_nodes() {
    nodes.clear();
    nodes.push_back(scalar_node<T>{T(0), T(0), T(0), T(0), sink_index, sink_index, 0, op_sink, 0});
  }

  std::uint32_t new_leaf(T value) {
    std::uint32_t slot;
    if (!free_leaves.empty()) {
      slot = free_leaves.back();
      free_leaves.pop_back();
      scalar_leaf<T>& l = leaves[slot];
      l.value = value;
      l.grad = T(0);
      l.refs = 1;
      ++l.generation;
      l.born = static_cast<std::uint32_t>(nodes.size());
      if (slot < leaf_labels.size()) leaf_labels[slot].clear();
    } else {
      slot = static_cast<std::uint32_t>(leaves.size());
      leaves.push_back(scalar_leaf<T>{value, T(0), 1, 0, static_cast<std::uint32_t>(nodes.size())});
    }
    return slot;
  }

  void release_leaf(std::uint32_t slot) noexcept {
    if (--leaves[slot].refs == 0) {
      // A recorded node may still point here; the slot is reused only after
      // the nodes are gone.
      try {
        released_leaves.push_back(slot);
      } catch (...) {
        // Out of memory: the slot is simply never reused.
      }
    }
  }

  /// Frees every intermediate recorded at or after index `keep`.
  void truncate(std::uint32_t keep) {
    if (keep < 1) keep = 1;
    if (keep < nodes.size()) nodes.resize(keep);
    if (swept > keep) swept = keep;
    if (node_labels.size() > keep) node_labels.resize(keep);
    // A released leaf made before `keep` may still be a child of a kept node.
    std::size_t kept = 0;
    for (std::uint32_t slot : released_leaves) {
      if (leaves[slot].born >= keep)
        free_leaves.push_back(slot);
      else
        released_leaves[kept++] = slot;
    }
    released_leaves.resize(kept);
  }

  T& grad_ref(std::uint32_t i) noexcept { return (i & leaf_bit) ? leaves[i & ~leaf_bit].grad : nodes[i].grad; }
  T value_of(std::uint32_t i) const noexcept { return (i & leaf_bit) ? leaves[i & ~leaf_bit].value : nodes[i].value; }
};

}  // namespace tapegrad::detail
