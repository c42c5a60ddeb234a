// SPDX-License-Identifier: MIT
#pragma once

// The out-of-class half of basic_value: the recording helpers, the reverse
// sweep, describe() and stop_gradient. Included at the end of value.hpp.

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/scalar/detail/store.hpp"
#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

namespace detail {

template <class T>
void check_anomaly(std::uint16_t op, T value) {
  if (!std::isfinite(value)) {
    std::ostringstream os;
    os << "anomaly: " << op_name(op) << " produced " << value << " in the forward pass";
    throw anomaly_error(os.str());
  }
}

template <class T>
[[noreturn]] TAPEGRAD_COLD void throw_tape_mismatch(const char* op, const basic_value<T>& a, const basic_value<T>& b) {
  throw tape_mismatch_error(std::string(op) + ": operands " + a.describe() + " and " + b.describe() +
                            " live on different tapes");
}

[[noreturn]] TAPEGRAD_COLD inline void throw_tape_full() {
  throw error("Tape: more than 2^30 scalar nodes recorded without a clear");
}

/// The internals of scalar handles, for the library's own layers (the math
/// functions, printers, the functional API). Nothing here is for users.
template <class T>
struct access<basic_value<T>> {
  /// The store a handle lives in, after checking the handle.
  static scalar_store<T>& store_of(const basic_value<T>& v) {
    v.check_alive("Value");
    return *v.s_;
  }
  /// The index a recorded edge to `v` keeps (leaf_bit set for a leaf slot).
  static std::uint32_t index_of(const basic_value<T>& v) noexcept { return v.edge_index(); }
  /// A handle to the node or leaf slot `index` of store `s`.
  static basic_value<T> wrap(scalar_store<T>& s, std::uint32_t index) {
    const std::uint32_t stamp = (index & leaf_bit) ? s.leaves[index & slot_mask].generation : s.nodes[index].epoch;
    return basic_value<T>::from_raw(s, index, stamp);
  }
  /// A handle to node or leaf slot `index` with a known stamp (the recording fast path).
  TAPEGRAD_ALWAYS_INLINE static basic_value<T> from_raw(scalar_store<T>& s, std::uint32_t index,
                                                        std::uint32_t stamp) noexcept {
    return basic_value<T>::from_raw(s, index, stamp);
  }
  /// The value, after checking the handle on behalf of operation `op`.
  TAPEGRAD_ALWAYS_INLINE static T data_for(const basic_value<T>& v, std::uint16_t op) { return v.data_for(op); }
};

/// The value of `v` after checking the handle on behalf of operation `op`:
/// how the scalar math functions read their operands.
template <class T>
TAPEGRAD_ALWAYS_INLINE T value_data(const basic_value<T>& v, std::uint16_t op) {
  return access<basic_value<T>>::data_for(v, op);
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> make_node(scalar_store<T>& s, std::uint16_t op, std::uint16_t arity, T value,
                                                std::uint32_t a, T da, std::uint32_t b, T db) {
  const std::uint32_t index = static_cast<std::uint32_t>(s.nodes.size());
  if (index >= counted_bit) [[unlikely]]
    throw_tape_full();
  s.nodes.push_back(scalar_node<T>{value, T(0), da, db, a, b, s.epoch, op, arity});
  return access<basic_value<T>>::from_raw(s, index, s.epoch);
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> record_unary(std::uint16_t op, T value, const basic_value<T>& a, T da) {
  const thread_state& st = state();
  if (st.anomaly) check_anomaly(op, value);
  // The caller read a.data_for(op), which checked the handle.
  if (!st.grad_enabled) return a.leaf_beside(value);
  return make_node<T>(*a.s_, op, 1, value, a.edge_index(), da, sink_index, T(0));
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> record_binary(std::uint16_t op, T value, const basic_value<T>& a, T da,
                                                    const basic_value<T>& b, T db) {
  const thread_state& st = state();
  if (st.anomaly) check_anomaly(op, value);
  if (a.s_ != b.s_) [[unlikely]]
    throw_tape_mismatch(op_name(op).c_str(), a, b);
  if (!st.grad_enabled) return a.leaf_beside(value);
  return make_node<T>(*a.s_, op, 2, value, a.edge_index(), da, b.edge_index(), db);
}

}  // namespace detail

template <std::floating_point T>
void basic_value<T>::backward(T seed) const {
  check_alive("backward");
  auto& s = *s_;
  if (is_leaf()) {
    s.leaves[h_.index & detail::slot_mask].grad += seed;
    return;
  }
  detail::scalar_node<T>* nodes = s.nodes.data();
  // Intermediates hold the gradient of the latest root only, so every sweep
  // starts all of them at zero, before and after the root; leaves keep
  // accumulating until zero_grad(). Nodes are born with a zero gradient and a
  // sweep writes only at and below its root, so only nodes below the highest
  // root of earlier sweeps (`swept`) can hold an old gradient.
  for (std::uint32_t i = 1; i < s.swept; ++i) nodes[i].grad = T(0);
  s.swept = h_.index + 1;
  nodes[h_.index].grad = seed;
  const bool anomaly = is_anomaly_enabled();
  // Inputs were recorded before their users, so one walk from the root down
  // visits every node after all of its users: no sort, no recursion.
  for (std::uint32_t i = h_.index; i >= 1; --i) {
    const detail::scalar_node<T>& n = nodes[i];
    const T g = n.grad;
    // An unreached node passes nothing on. Skipping it also keeps 0 * inf
    // (sqrt's slope at 0, say) from turning into NaN.
    if (g == T(0) || n.arity == 0) continue;
    const T ga = g * n.da;
    const T gb = g * n.db;
    if (anomaly && (!std::isfinite(ga) || (n.arity == 2 && !std::isfinite(gb)))) {
      std::ostringstream os;
      os << "anomaly: the backward rule of " << detail::op_name(n.op) << " (node " << i << ", value " << n.value
         << ") produced a non-finite gradient";
      throw anomaly_error(os.str());
    }
    s.grad_ref(n.a) += ga;
    // A unary node has no second child. Writing its zero into a shared sink
    // would chain every unary node through one memory cell.
    if (n.arity == 2) s.grad_ref(n.b) += gb;
  }
}

template <std::floating_point T>
std::string basic_value<T>::describe() const {
  if (!s_) return "<empty>";
  if (!is_alive()) return "<stale #" + std::to_string(slot()) + ">";
  std::string name = label();
  if (!name.empty()) return name;
  if (is_leaf()) return "leaf#" + std::to_string(slot());
  return detail::op_name(s_->nodes[h_.index].op) + "#" + std::to_string(h_.index);
}

/// A node with x's value and no path back to x: gradient stops here.
/// It is recorded (and drawn as a barrier), so graphs show where flow was cut.
template <std::floating_point T>
basic_value<T> stop_gradient(const basic_value<T>& x) {
  x.check_alive("stop_gradient");
  T value = x.data();
  detail::replay_stopped(&value, 1, "stop_gradient");
  if (!is_grad_enabled()) return x.leaf_beside(value);
  // Arity 0: the sweep passes nothing on. The source is kept in edge a only so
  // that printed graphs can draw the cut edge.
  return detail::make_node<T>(*x.s_, detail::op_stop_gradient, 0, value, x.edge_index(), T(0), detail::sink_index,
                              T(0));
}

}  // namespace tapegrad
