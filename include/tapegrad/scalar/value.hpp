// SPDX-License-Identifier: MIT
#pragma once

#include <bit>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"

namespace tapegrad {

template <std::floating_point T>
class basic_value;

namespace detail {
template <class T>
basic_value<T> record_unary(std::uint16_t op, T value, const basic_value<T>& a, T da);
template <class T>
basic_value<T> record_binary(std::uint16_t op, T value, const basic_value<T>& a, T da, const basic_value<T>& b, T db);
template <class T>
void check_anomaly(std::uint16_t op, T value);
}  // namespace detail

/// A scalar on the tape: its value, its gradient, and how it was made.
///
/// A Value built from a number is a *leaf* (a parameter or an input); a Value
/// returned by an operation is an *intermediate* recorded on the active tape.
/// Handles are small (a tape pointer and two 32-bit numbers) and cheap to copy.
///
/// Example:
///   Value x = 2.0, y = 3.0;
///   Value loss = x * y + 1.0;   // 7
///   loss.backward();
///   x.grad();                   // 3 = y
///   y.grad();                   // 2 = x
template <std::floating_point T>
class basic_value {
 public:
  using value_type = T;

  /// A leaf holding zero.
  basic_value() : basic_value(T(0)) {}

  /// A leaf holding `x`, on the active tape.
  basic_value(T x) : basic_value(Tape::active(), x) {}  // NOLINT(google-explicit-constructor): Value x = 2.0;

  /// A leaf holding `x`, on the given tape.
  basic_value(Tape& tape, T x) : tape_(&tape) {
    auto& s = tape_->scalars<T>();
    const std::uint32_t slot = s.new_leaf(x);
    h_.index = slot | detail::leaf_bit;
    h_.stamp = s.leaves[slot].generation;
  }

  /// A leaf holding `x` on `tape` (what an operation returns under NoGradGuard).
  static basic_value leaf_on(Tape& tape, T x) { return basic_value(tape, x); }

  /// A leaf from any other arithmetic type: `Value n = 3;`.
  template <class U>
  requires(std::is_arithmetic_v<U> && !std::same_as<U, T>) basic_value(U x)
      : basic_value(static_cast<T>(x)) {}  // NOLINT(google-explicit-constructor)

  basic_value(const basic_value& o) noexcept : tape_(o.tape_), h_(o.h_) { retain(); }
  TAPEGRAD_ALWAYS_INLINE basic_value(basic_value&& o) noexcept : tape_(o.tape_), h_(o.h_) { o.tape_ = nullptr; }
  basic_value& operator=(const basic_value& o) noexcept {
    if (this != &o) {
      o.retain();
      release();
      tape_ = o.tape_;
      h_ = o.h_;
    }
    return *this;
  }
  TAPEGRAD_ALWAYS_INLINE basic_value& operator=(basic_value&& o) noexcept {
    if (this != &o) {
      release();
      tape_ = o.tape_;
      h_ = o.h_;
      o.tape_ = nullptr;
    }
    return *this;
  }
  TAPEGRAD_ALWAYS_INLINE ~basic_value() { release(); }

  /// The forward value.
  T data() const { return is_leaf() ? leaf().value : node().value; }

  /// d(root)/d(this) from the last `backward()`. Leaves accumulate across calls
  /// until `zero_grad()`; an intermediate holds the gradient of the latest root.
  T grad() const { return is_leaf() ? leaf().grad : node().grad; }

  /// Overwrites the value of a leaf (an optimizer step). Intermediates refuse:
  /// their value is what the recorded operation computed.
  void set_data(T x) {
    if (!is_leaf()) throw value_error("set_data: " + describe() + " is an intermediate; only a leaf can be set");
    leaf().value = x;
  }

  /// Sets this value's gradient to zero.
  void zero_grad() {
    if (is_leaf())
      leaf().grad = T(0);
    else
      node().grad = T(0);
  }

  /// True for a leaf (made from a number), false for an operation's result.
  bool is_leaf() const noexcept { return (h_.index & detail::leaf_bit) != 0; }

  /// False once a clear or rewind has freed the node this handle refers to.
  TAPEGRAD_ALWAYS_INLINE bool is_alive() const noexcept {
    if (!tape_) return false;
    const auto& s = tape_->scalars<T>();
    if (is_leaf()) {
      const std::uint32_t slot = h_.index & ~detail::leaf_bit;
      return slot < s.leaves.size() && s.leaves[slot].generation == h_.stamp;
    }
    // Within one epoch nodes are only appended, so a handle of the current
    // epoch is alive without looking at its node.
    if (h_.stamp == tape_->epoch()) return true;
    return h_.index < s.nodes.size() && s.nodes[h_.index].epoch == h_.stamp;
  }

  /// The tape this value lives on.
  Tape& tape() const {
    if (!tape_) throw stale_value_error("Value: use of a moved-from handle");
    return *tape_;
  }

  /// Runs the reverse sweep from this value with d(this)/d(this) = 1.
  void backward() const { backward(T(1)); }

  /// Runs the reverse sweep from this value with the given seed gradient.
  void backward(T seed) const;

  /// A short name for messages and printed graphs: the label, else `leaf#k` or `op#k`.
  std::string describe() const;

  /// Gives this value a name shown by the printed tape and the DOT export.
  basic_value& label(std::string name) {
    auto& s = tape().template scalars<T>();
    check_alive("label");
    auto& labels = is_leaf() ? s.leaf_labels : s.node_labels;
    const std::uint32_t i = h_.index & ~detail::leaf_bit;
    if (labels.size() <= i) labels.resize(i + 1);
    labels[i] = std::move(name);
    return *this;
  }

  /// The name given by `label()`, or an empty string.
  std::string label() const {
    const auto& s = tape().template scalars<T>();
    check_alive("label");
    const auto& labels = is_leaf() ? s.leaf_labels : s.node_labels;
    const std::uint32_t i = h_.index & ~detail::leaf_bit;
    return i < labels.size() ? labels[i] : std::string();
  }

  /// The inputs this value was computed from, in order (empty for a leaf and
  /// for a stop_gradient barrier). A plain number operand is folded into the
  /// node as a constant and is not a child.
  std::vector<basic_value> children() const {
    std::vector<basic_value> out;
    if (is_leaf()) return out;
    const detail::scalar_node<T>& n = node();
    if (n.arity >= 1) out.push_back(wrap(n.a));
    if (n.arity >= 2) out.push_back(wrap(n.b));
    return out;
  }

  /// The value a stop_gradient barrier was made from (the edge the barrier
  /// cuts); nullopt for every other value.
  std::optional<basic_value> stopped_input() const {
    if (is_leaf() || node().op != detail::op_stop_gradient) return std::nullopt;
    return wrap(node().a);
  }

  /// d(this)/d(child) for each child, as computed on the forward pass.
  std::vector<T> local_grads() const {
    std::vector<T> out;
    if (is_leaf()) return out;
    const detail::scalar_node<T>& n = node();
    if (n.arity >= 1) out.push_back(n.da);
    if (n.arity >= 2) out.push_back(n.db);
    return out;
  }

  /// The name of the operation that made this value ("mul", "stop_gradient", ...; "leaf").
  std::string op() const { return is_leaf() ? std::string("leaf") : detail::op_name(node().op); }

  /// Internal: the value, after checking the handle on behalf of operation `op`
  /// (so a stale handle's error names the operation).
  TAPEGRAD_ALWAYS_INLINE T data_for(std::uint16_t op) const {
    check_alive(op);
    return is_leaf() ? tape_->scalars<T>().leaves[h_.index & ~detail::leaf_bit].value
                     : tape_->scalars<T>().nodes[h_.index].value;
  }

  /// The raw index on the tape (leaf_bit set for leaves). For introspection.
  std::uint32_t raw_index() const noexcept { return h_.index; }

  // ---- arithmetic (hidden friends, so `x * 2` and `2 * x` both work) ----------

  // d(a+b)/da = 1, d(a+b)/db = 1
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(const basic_value& a, const basic_value& b) {
    return detail::record_binary<T>(detail::op_add, a.data_for(detail::op_add) + b.data_for(detail::op_add), a, T(1), b,
                                    T(1));
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(const basic_value& a, T b) {
    return detail::record_unary<T>(detail::op_add, a.data_for(detail::op_add) + b, a, T(1));
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(T a, const basic_value& b) { return b + a; }

  // d(a-b)/da = 1, d(a-b)/db = -1
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(const basic_value& a, const basic_value& b) {
    return detail::record_binary<T>(detail::op_sub, a.data_for(detail::op_sub) - b.data_for(detail::op_sub), a, T(1), b,
                                    T(-1));
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(const basic_value& a, T b) {
    return detail::record_unary<T>(detail::op_sub, a.data_for(detail::op_sub) - b, a, T(1));
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(T a, const basic_value& b) {
    return detail::record_unary<T>(detail::op_sub, a - b.data_for(detail::op_sub), b, T(-1));
  }

  // d(a*b)/da = b, d(a*b)/db = a
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(const basic_value& a, const basic_value& b) {
    const T x = a.data_for(detail::op_mul), y = b.data_for(detail::op_mul);
    return detail::record_binary<T>(detail::op_mul, x * y, a, y, b, x);
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(const basic_value& a, T b) {
    return detail::record_unary<T>(detail::op_mul, a.data_for(detail::op_mul) * b, a, b);
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(T a, const basic_value& b) { return b * a; }

  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(const basic_value& a, const basic_value& b) {
    const T x = a.data_for(detail::op_div), y = b.data_for(detail::op_div);
    const T inv = T(1) / y;
    return detail::record_binary<T>(detail::op_div, x * inv, a, inv, b, -x * inv * inv);
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(const basic_value& a, T b) {
    return detail::record_unary<T>(detail::op_div, a.data_for(detail::op_div) / b, a, T(1) / b);
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(T a, const basic_value& b) {
    const T y = b.data_for(detail::op_div);
    return detail::record_unary<T>(detail::op_div, a / y, b, -a / (y * y));
  }

  // d(-a)/da = -1
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(const basic_value& a) {
    return detail::record_unary<T>(detail::op_neg, -a.data_for(detail::op_neg), a, T(-1));
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(const basic_value& a) { return a; }

  // Compound assignment rebinds this handle to the new node, as `x = x + y`
  // would. Under NoGradGuard a leaf is updated in place instead, which is how
  // an optimizer step reads: `{ NoGradGuard g; w -= lr * w.grad(); }`.
  TAPEGRAD_ALWAYS_INLINE basic_value& operator+=(const basic_value& o) {
    return assign_op(
        o, [](T a, T b) { return a + b; }, *this + o);
  }
  TAPEGRAD_ALWAYS_INLINE basic_value& operator-=(const basic_value& o) {
    return assign_op(
        o, [](T a, T b) { return a - b; }, *this - o);
  }
  TAPEGRAD_ALWAYS_INLINE basic_value& operator*=(const basic_value& o) {
    return assign_op(
        o, [](T a, T b) { return a * b; }, *this * o);
  }
  TAPEGRAD_ALWAYS_INLINE basic_value& operator/=(const basic_value& o) {
    return assign_op(
        o, [](T a, T b) { return a / b; }, *this / o);
  }

  // Comparisons look at the data only; they record nothing.
  friend bool operator==(const basic_value& a, const basic_value& b) { return a.data() == b.data(); }
  friend bool operator==(const basic_value& a, T b) { return a.data() == b; }
  friend auto operator<=>(const basic_value& a, const basic_value& b) { return a.data() <=> b.data(); }
  friend auto operator<=>(const basic_value& a, T b) { return a.data() <=> b; }

  friend std::ostream& operator<<(std::ostream& os, const basic_value& v) {
    return os << "Value(data=" << v.data() << ", grad=" << v.grad() << ")";
  }

  /// Wraps an existing node or leaf slot (used by the recording helpers).
  TAPEGRAD_ALWAYS_INLINE static basic_value from_raw(Tape& tape, std::uint32_t index, std::uint32_t stamp) noexcept {
    basic_value v(raw_tag{}, tape, index, stamp);
    v.retain();
    return v;
  }

 private:
  struct raw_tag {};
  basic_value(raw_tag, Tape& tape, std::uint32_t index, std::uint32_t stamp) noexcept
      // One 8-byte store: a later 8-byte load of both fields is then forwarded
      // from the store buffer instead of waiting for two 4-byte stores to retire.
      : tape_(&tape), h_(std::bit_cast<handle_bits>(std::uint64_t(index) | (std::uint64_t(stamp) << 32))) {}

  basic_value wrap(std::uint32_t index) const {
    const auto& s = tape_->scalars<T>();
    const std::uint32_t stamp =
        (index & detail::leaf_bit) ? s.leaves[index & ~detail::leaf_bit].generation : s.nodes[index].epoch;
    return from_raw(*tape_, index, stamp);
  }

  template <class F>
  TAPEGRAD_ALWAYS_INLINE basic_value& assign_op(const basic_value& o, F f, basic_value&& recorded) {
    if (!is_grad_enabled() && is_leaf()) {
      leaf().value = f(leaf().value, o.data());
    } else {
      *this = std::move(recorded);
    }
    return *this;
  }

  TAPEGRAD_ALWAYS_INLINE void retain() const noexcept {
    if (tape_ && is_leaf()) ++tape_->scalars<T>().leaves[h_.index & ~detail::leaf_bit].refs;
  }
  TAPEGRAD_ALWAYS_INLINE void release() noexcept {
    if (tape_ && is_leaf()) tape_->scalars<T>().release_leaf(h_.index & ~detail::leaf_bit);
  }

  TAPEGRAD_ALWAYS_INLINE void check_alive(std::uint16_t op) const {
    if (!is_alive()) [[unlikely]]
      throw_stale_op(op);
  }
  [[noreturn]] TAPEGRAD_COLD void throw_stale_op(std::uint16_t op) const { throw_stale(detail::op_name(op).c_str()); }
  void check_alive(const char* what) const {
    if (!is_alive()) [[unlikely]]
      throw_stale(what);
  }
  [[noreturn]] TAPEGRAD_COLD void throw_stale(const char* what) const {
    {
      std::ostringstream os;
      os << what << ": the node at tape position " << h_.index
         << " was freed by a clear or rewind of its tape (stale handle)";
      throw stale_value_error(os.str());
    }
  }

  detail::scalar_leaf<T>& leaf() const {
    check_alive("Value");
    return tape_->scalars<T>().leaves[h_.index & ~detail::leaf_bit];
  }
  detail::scalar_node<T>& node() const {
    check_alive("Value");
    return tape_->scalars<T>().nodes[h_.index];
  }

  template <class U>
  friend basic_value<U> detail::record_unary(std::uint16_t, U, const basic_value<U>&, U);
  template <class U>
  friend basic_value<U> detail::record_binary(std::uint16_t, U, const basic_value<U>&, U, const basic_value<U>&, U);
  template <std::floating_point U>
  friend basic_value<U> stop_gradient(const basic_value<U>&);

  // The node's index (leaf_bit set for a leaf slot) and its stamp: the epoch
  // an intermediate was recorded in, or a leaf slot's generation.
  struct handle_bits {
    std::uint32_t index = 0;
    std::uint32_t stamp = 0;
  };

  Tape* tape_ = nullptr;
  handle_bits h_;
};

/// The double-precision scalar: what the tutorials and the worked examples use.
using Value = basic_value<double>;

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
inline void same_tape(const char* op, const basic_value<T>& a, const basic_value<T>& b) {
  if (&a.tape() != &b.tape()) {
    throw tape_mismatch_error(std::string(op) + ": operands " + a.describe() + " and " + b.describe() +
                              " live on different tapes");
  }
}

[[noreturn]] TAPEGRAD_COLD inline void throw_tape_full() {
  throw error("Tape: more than 2^31 scalar nodes recorded without a clear");
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> make_node(Tape& tape, std::uint16_t op, std::uint16_t arity, T value,
                                                std::uint32_t a, T da, std::uint32_t b, T db) {
  auto& s = tape.scalars<T>();
  const std::uint32_t index = static_cast<std::uint32_t>(s.nodes.size());
  if (index >= leaf_bit) [[unlikely]]
    throw_tape_full();
  s.nodes.push_back(scalar_node<T>{value, T(0), da, db, a, b, tape.epoch(), op, arity});
  return basic_value<T>::from_raw(tape, index, tape.epoch());
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> record_unary(std::uint16_t op, T value, const basic_value<T>& a, T da) {
  const thread_state& st = state();
  if (st.anomaly) check_anomaly(op, value);
  // The caller read a.data_for(op), which checked the handle.
  Tape& tape = *a.tape_;
  if (!st.grad_enabled) return basic_value<T>::leaf_on(tape, value);
  return make_node<T>(tape, op, 1, value, a.h_.index, da, sink_index, T(0));
}

template <class T>
TAPEGRAD_ALWAYS_INLINE basic_value<T> record_binary(std::uint16_t op, T value, const basic_value<T>& a, T da,
                                                    const basic_value<T>& b, T db) {
  const thread_state& st = state();
  if (st.anomaly) check_anomaly(op, value);
  if (a.tape_ != b.tape_) [[unlikely]]
    same_tape(op_name(op).c_str(), a, b);
  Tape& tape = *a.tape_;
  if (!st.grad_enabled) return basic_value<T>::leaf_on(tape, value);
  return make_node<T>(tape, op, 2, value, a.h_.index, da, b.h_.index, db);
}

}  // namespace detail

}  // namespace tapegrad

namespace tapegrad {

template <std::floating_point T>
void basic_value<T>::backward(T seed) const {
  check_alive("backward");
  auto& s = tape_->scalars<T>();
  if (is_leaf()) {
    s.leaves[h_.index & ~detail::leaf_bit].grad += seed;
    return;
  }
  detail::scalar_node<T>* nodes = s.nodes.data();
  // Intermediates hold the gradient of the latest root only, so they start at
  // zero on every sweep; leaves keep accumulating until zero_grad().
  // Nodes are born with a zero gradient: only those a previous sweep wrote to
  // (below its root, the store's high-water mark) need zeroing again.
  const std::uint32_t dirty = std::min(h_.index, s.swept);
  for (std::uint32_t i = 1; i < dirty; ++i) nodes[i].grad = T(0);
  if (h_.index + 1 > s.swept) s.swept = h_.index + 1;
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
  if (!tape_) return "<moved-from>";
  if (!is_alive()) return "<stale #" + std::to_string(h_.index & ~detail::leaf_bit) + ">";
  std::string name = label();
  if (!name.empty()) return name;
  if (is_leaf()) return "leaf#" + std::to_string(h_.index & ~detail::leaf_bit);
  return detail::op_name(tape_->scalars<T>().nodes[h_.index].op) + "#" + std::to_string(h_.index);
}

/// A node with x's value and no path back to x: gradient stops here.
/// It is recorded (and drawn as a barrier), so graphs show where flow was cut.
template <std::floating_point T>
basic_value<T> stop_gradient(const basic_value<T>& x) {
  x.check_alive("stop_gradient");
  Tape& tape = *x.tape_;
  if (!is_grad_enabled()) return basic_value<T>::leaf_on(tape, x.data());
  // Arity 0: the sweep passes nothing on. The source is kept in edge a only so
  // that printed graphs can draw the cut edge.
  return detail::make_node<T>(tape, detail::op_stop_gradient, 0, x.data(), x.h_.index, T(0), detail::sink_index, T(0));
}

}  // namespace tapegrad
