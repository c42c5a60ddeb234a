// SPDX-License-Identifier: MIT
#pragma once

// The out-of-class half of basic_value: the recording helpers, the reverse
// sweep, describe() and stop_gradient. Included at the end of value.hpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

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
    if (!(index & leaf_bit)) s.keep_as_is(index);
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

/// How operations record. A new statement appends its operands (child,
/// partial) and one statement record. An operand passed as an rvalue that is
/// the only handle to the newest statement is consumed instead: its operands'
/// partials are scaled by the operation's local derivative (the chain rule,
/// applied at recording time) and the statement is extended in place, so a
/// whole expression, or a `+=` loop, ends as one statement.
template <class T>
struct recorder {
  using value = basic_value<T>;

  template <class A>
  static constexpr bool consumable = !std::is_lvalue_reference_v<A> && !std::is_const_v<std::remove_reference_t<A>>;

  /// True when `v` is the only handle to statement `at` of this epoch and
  /// that statement may still change: no label, no mark taken after it.
  /// A sealed statement (one with an infinite or NaN partial) is never
  /// extended: the sweep then meets the non-finite value in the statement of
  /// the operation that made it, as anomaly mode reports, and a zero gradient
  /// reaching it still passes nothing on (0 * inf is not taken).
  TAPEGRAD_ALWAYS_INLINE static bool sole_at(const value& v, const scalar_store<T>& s, std::uint32_t at) noexcept {
    return (v.h_.index & (leaf_bit | sole_bit)) == sole_bit && v.node_index() == at && v.h_.stamp == s.epoch &&
           at >= s.fuse_floor.load(std::memory_order_relaxed) && !(s.ops[at] & sealed_op) &&
           (at >= s.node_labels.size() || s.node_labels[at].empty());
  }

  /// Scaling a statement's partials costs one multiply per operand; a long
  /// statement (a `+=` loop) is only extended by operations of slope 1, so
  /// recording stays linear in the number of operations.
  static constexpr std::uint32_t max_scaled = 64;
  TAPEGRAD_ALWAYS_INLINE static bool can_scale(const scalar_store<T>& s, std::uint32_t at, T d) noexcept {
    return d == T(1) || s.nodes[at].end - s.begin_of(at) <= max_scaled;
  }

  TAPEGRAD_ALWAYS_INLINE static void scale(scalar_store<T>& s, std::uint32_t begin, std::uint32_t end, T d) noexcept {
    if (d == T(1)) return;
    T* p = s.partials.data();
    for (std::uint32_t k = begin; k < end; ++k) p[k] *= d;
  }

  static value seal(value v) noexcept {
    v.s_->ops[v.node_index()] |= sealed_op;
    return v;
  }

  static bool reads(const scalar_store<T>& s, std::uint32_t begin, std::uint32_t end, std::uint32_t node) noexcept {
    for (std::uint32_t k = begin; k < end; ++k)
      if (s.ids[k] == node) return true;
    return false;
  }

  // The statement's gradient slot may hold a value of an earlier sweep.
  static void forget_grad(scalar_store<T>& s, std::uint32_t i) noexcept {
    if (i < s.grads.size()) s.grads[i] = T(0);
  }

  /// Appends one operand to the operand arrays; on failure both are as before.
  TAPEGRAD_ALWAYS_INLINE static void push_operand(scalar_store<T>& s, std::uint32_t id, T d) {
    const std::size_t n = s.ids.size();
    if (n >= 0xFFFF'FFF0u) [[unlikely]]
      throw_tape_full();
    try {
      s.ids.push_back(id);
      s.partials.push_back(d);
    } catch (...) {
      s.ids.resize(n);
      s.partials.resize(n);
      throw;
    }
  }

  /// Ends a new statement over the operands pushed since the last one.
  TAPEGRAD_ALWAYS_INLINE static value close(scalar_store<T>& s, std::uint16_t op, T v) {
    const std::uint32_t index = static_cast<std::uint32_t>(s.nodes.size());
    const std::uint32_t begin = s.nodes.back().end;
    try {
      if (index >= sole_bit) [[unlikely]]
        throw_tape_full();
      s.ops.push_back(op);
      try {
        s.nodes.push_back(scalar_node<T>{v, static_cast<std::uint32_t>(s.ids.size()), s.epoch});
      } catch (...) {
        s.ops.pop_back();
        throw;
      }
    } catch (...) {
      s.ids.resize(begin);
      s.partials.resize(begin);
      throw;
    }
    return value::from_raw(s, index | sole_bit, s.epoch);
  }

  /// Where an rvalue operand `v` can be extended by an operation of local
  /// slope `d`: its statement index, or 0 (the sink) when it cannot. It can be
  /// the newest statement, or the one before when the newest does not read it
  /// (a Dual's value and tangent, say) and is short enough to shift by one.
  TAPEGRAD_ALWAYS_INLINE static std::uint32_t extendable(const value& v, const scalar_store<T>& s, T d) noexcept {
    const std::uint32_t top = static_cast<std::uint32_t>(s.nodes.size() - 1);
    const std::uint32_t at = v.node_index();
    if (at + 1 < top || at == 0 || !sole_at(v, s, at) || !can_scale(s, at, d)) return 0;
    if (at == top) return at;
    const std::uint32_t b = s.nodes[at].end, e = s.nodes[top].end;
    return e - b <= max_scaled && !reads(s, b, e, at) ? at : 0;
  }

  /// Empties a handle whose statement an operation took over.
  template <class A>
  static void consume(A&& a) noexcept {
    if constexpr (consumable<A>) a.s_ = nullptr;
  }

  /// True when statement `at` may read `id`: a leaf or an earlier statement.
  static bool earlier(std::uint32_t id, std::uint32_t at) noexcept { return (id & leaf_bit) || id < at; }

  /// Adds operand (id, d) at the end of statement `at` (the newest or the one before).
  TAPEGRAD_ALWAYS_INLINE static void insert(scalar_store<T>& s, std::uint32_t at, std::uint32_t id, T d) {
    push_operand(s, id, d);
    const std::uint32_t top = static_cast<std::uint32_t>(s.nodes.size() - 1);
    if (at != top) {
      const std::uint32_t pos = s.nodes[at].end;
      std::rotate(s.ids.begin() + pos, s.ids.end() - 1, s.ids.end());
      std::rotate(s.partials.begin() + pos, s.partials.end() - 1, s.partials.end());
      ++s.nodes[top].end;
    }
    ++s.nodes[at].end;
  }

  /// Rewrites statement `at` as the result of `op` and hands it over.
  TAPEGRAD_ALWAYS_INLINE static value reuse(scalar_store<T>& s, std::uint32_t at, std::uint16_t op, T v) {
    s.nodes[at].value = v;
    s.ops[at] = op;
    forget_grad(s, at);
    return value::from_raw(s, at | sole_bit, s.epoch);
  }

  /// A one-operand operation; `f(x, d)` returns the value and sets d = df/dx.
  template <class A, class F>
  TAPEGRAD_ALWAYS_INLINE static value unary(std::uint16_t op, A&& a, F f) {
    const T x = a.data_for(op);
    T d;
    const T v = f(x, d);
    if (a.s_->program) [[unlikely]]
      return tracer<T>::unary(op, std::forward<A>(a), f, v, d);
    return record_unary(op, std::forward<A>(a), v, d);
  }

  /// Records a one-operand operation whose value and slope are computed.
  template <class A>
  TAPEGRAD_ALWAYS_INLINE static value record_unary(std::uint16_t op, A&& a, T v, T d) {
    const thread_state& st = state();
    if (st.anomaly) check_anomaly(op, v);
    if (!st.grad_enabled) return a.leaf_beside(v);
    scalar_store<T>& s = *a.s_;
    ++s.elementary;
    if (!std::isfinite(d)) [[unlikely]] {
      push_operand(s, a.edge_index(), d);
      return seal(close(s, op, v));
    }
    if constexpr (consumable<A>) {
      if (const std::uint32_t at = extendable(a, s, d)) {
        scale(s, s.begin_of(at), s.nodes[at].end, d);
        a.s_ = nullptr;
        return reuse(s, at, op, v);
      }
    }
    push_operand(s, a.edge_index(), d);
    return close(s, op, v);
  }

  /// A two-operand operation; `f(x, y, da, db)` returns the value and sets its partials.
  template <class A, class B, class F>
  TAPEGRAD_ALWAYS_INLINE static value binary(std::uint16_t op, A&& a, B&& b, F f) {
    const T x = a.data_for(op), y = b.data_for(op);
    T da, db;
    const T v = f(x, y, da, db);
    if (a.s_->program) [[unlikely]]
      return tracer<T>::binary(op, std::forward<A>(a), std::forward<B>(b), f, v, da, db);
    return record_binary(op, std::forward<A>(a), std::forward<B>(b), v, da, db);
  }

  /// Records a two-operand operation whose value and partials are computed.
  template <class A, class B>
  TAPEGRAD_ALWAYS_INLINE static value record_binary(std::uint16_t op, A&& a, B&& b, T v, T da, T db) {
    const thread_state& st = state();
    if (st.anomaly) check_anomaly(op, v);
    if (a.s_ != b.s_) [[unlikely]]
      throw_tape_mismatch(op_name(op).c_str(), a, b);
    if (!st.grad_enabled) return a.leaf_beside(v);
    scalar_store<T>& s = *a.s_;
    ++s.elementary;
    if (!std::isfinite(da) || !std::isfinite(db)) [[unlikely]] {
      push_operand(s, a.edge_index(), da);
      push_operand(s, b.edge_index(), db);
      return seal(close(s, op, v));
    }
    std::uint32_t ta = 0, tb = 0;
    if constexpr (consumable<A>) ta = extendable(a, s, da);
    if constexpr (consumable<B>) tb = extendable(b, s, db);
    if (ta && tb && ta != tb) {
      // The operands are the two newest statements: merge them into the older.
      const std::uint32_t lo = ta < tb ? ta : tb, hi = ta < tb ? tb : ta;
      scale(s, s.begin_of(ta), s.nodes[ta].end, da);
      scale(s, s.begin_of(tb), s.nodes[tb].end, db);
      s.nodes[lo].end = s.nodes[hi].end;
      forget_grad(s, hi);
      s.nodes.pop_back();
      s.ops.pop_back();
      consume(std::forward<A>(a));
      consume(std::forward<B>(b));
      return reuse(s, lo, op, v);
    }
    if (tb && earlier(a.edge_index(), tb)) {
      const std::uint32_t begin = s.begin_of(tb), end = s.nodes[tb].end;
      insert(s, tb, a.edge_index(), da);
      scale(s, begin, end, db);
      consume(std::forward<B>(b));
      return reuse(s, tb, op, v);
    }
    if (ta && earlier(b.edge_index(), ta)) {
      const std::uint32_t begin = s.begin_of(ta), end = s.nodes[ta].end;
      insert(s, ta, b.edge_index(), db);
      scale(s, begin, end, da);
      consume(std::forward<A>(a));
      return reuse(s, ta, op, v);
    }
    push_operand(s, a.edge_index(), da);
    push_operand(s, b.edge_index(), db);
    return close(s, op, v);
  }

  /// A stop_gradient statement: no operands; its source is kept aside for printing.
  static value barrier(const value& x, T v) {
    scalar_store<T>& s = *x.s_;
    s.stopped.reserve(s.stopped.size() + 2);
    value out = seal(close(s, op_stop_gradient, v));  // sealed: extending it would lose the cut
    s.stopped.push_back(out.node_index());
    s.stopped.push_back(x.edge_index());
    return out;
  }
};

}  // namespace detail

template <std::floating_point T>
void basic_value<T>::backward(T seed) const {
  check_alive("backward");
  auto& s = *s_;
  if (is_leaf()) {
    s.leaves[h_.index & detail::slot_mask].grad += seed;
    return;
  }
  const std::uint32_t root = node_index();
  if (s.grads.size() < s.nodes.size()) s.grads.resize(s.nodes.size(), T(0));
  T* g = s.grads.data();
  // Intermediates hold the gradient of the latest root only, so every sweep
  // starts all of them at zero, before and after the root; leaves keep
  // accumulating until zero_grad(). A sweep writes only at and below its
  // root, so only statements below the highest root of earlier sweeps
  // (`swept`) can hold an old gradient.
  for (std::uint32_t i = 1; i < s.swept; ++i) g[i] = T(0);
  s.swept = root + 1;
  g[root] = seed;
  const detail::scalar_node<T>* nodes = s.nodes.data();
  const std::uint32_t* ids = s.ids.data();
  const T* partials = s.partials.data();
  detail::scalar_leaf<T>* leaves = s.leaves.data();
  const bool anomaly = is_anomaly_enabled();
  // Inputs were recorded before their users, so one walk from the root down
  // visits every statement after all of its users: no sort, no recursion.
  // Each statement adds gradient x partial into each of its operands.
  for (std::uint32_t i = root; i >= 1; --i) {
    const T gi = g[i];
    // An unreached statement passes nothing on. Skipping it also keeps 0 * inf
    // (sqrt's slope at 0, say) from turning into NaN.
    if (gi == T(0)) continue;
    const std::uint32_t end = nodes[i].end;
    for (std::uint32_t k = nodes[i - 1].end; k < end; ++k) {
      const T c = gi * partials[k];
      if (anomaly && !std::isfinite(c)) [[unlikely]] {
        std::ostringstream os;
        os << "anomaly: the backward rule of " << detail::op_name(s.ops[i]) << " (node " << i << ", value "
           << nodes[i].value << ") produced a non-finite gradient";
        throw anomaly_error(os.str());
      }
      const std::uint32_t id = ids[k];
      if (id & detail::leaf_bit)
        leaves[id & detail::slot_mask].grad += c;
      else
        g[id] += c;
    }
  }
}

template <std::floating_point T>
std::vector<basic_value<T>> basic_value<T>::children() const {
  std::vector<basic_value> out;
  if (is_leaf()) return out;
  (void)node();
  const std::uint32_t i = node_index();
  for (std::uint32_t k = s_->begin_of(i); k < s_->nodes[i].end; ++k) out.push_back(wrap(s_->ids[k]));
  return out;
}

template <std::floating_point T>
basic_value<T> basic_value<T>::stopped_input() const {
  if (is_leaf()) return basic_value(empty_tag{});
  (void)node();
  const std::uint32_t i = node_index();
  if ((s_->ops[i] & ~detail::sealed_op) != detail::op_stop_gradient) return basic_value(empty_tag{});
  for (std::size_t k = 0; k + 1 < s_->stopped.size(); k += 2)
    if (s_->stopped[k] == i) return wrap(s_->stopped[k + 1]);
  return basic_value(empty_tag{});
}

template <std::floating_point T>
std::vector<T> basic_value<T>::local_grads() const {
  std::vector<T> out;
  if (is_leaf()) return out;
  (void)node();
  const std::uint32_t i = node_index();
  for (std::uint32_t k = s_->begin_of(i); k < s_->nodes[i].end; ++k) out.push_back(s_->partials[k]);
  return out;
}

template <std::floating_point T>
std::string basic_value<T>::op() const {
  if (is_leaf()) return "leaf";
  (void)node();
  return detail::op_name(s_->ops[node_index()]);
}

template <std::floating_point T>
std::string basic_value<T>::describe() const {
  if (!s_) return "<empty>";
  if (!is_alive()) return "<stale #" + std::to_string(slot()) + ">";
  std::string name = label();
  if (!name.empty()) return name;
  if (is_leaf()) return "leaf#" + std::to_string(slot());
  return detail::op_name(s_->ops[node_index()]) + "#" + std::to_string(node_index());
}

/// A node with x's value and no path back to x: gradient stops here.
/// It is recorded (and drawn as a barrier), so graphs show where flow was cut.
template <std::floating_point T>
basic_value<T> stop_gradient(const basic_value<T>& x) {
  x.check_alive("stop_gradient");
  T value = x.data();
  detail::replay_stopped(&value, 1, "stop_gradient");
  // No operands: the sweep passes nothing on. The source is kept aside only
  // so that printed graphs can draw the cut edge.
  basic_value<T> out = is_grad_enabled() ? detail::recorder<T>::barrier(x, value) : x.leaf_beside(value);
  if (x.s_->program) [[unlikely]]
    detail::tracer<T>::stop(x, out, value);
  return out;
}

}  // namespace tapegrad

// The recording-for-replay hooks (detail::tracer).
#include "tapegrad/scalar/detail/tracer.hpp"
