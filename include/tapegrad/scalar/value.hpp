// SPDX-License-Identifier: MIT
#pragma once

#include <bit>
#include <cmath>
#include <compare>
#include <concepts>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/scalar/detail/store.hpp"

namespace tapegrad {

template <std::floating_point T>
class basic_value;

namespace detail {
template <class T>
struct recorder;  // how operations record (value_impl.hpp)
template <class T>
struct tracer;  // what they add while a function is recorded for replay (tracer.hpp)
/// True when A and B are both (references to) the Value type V.
template <class A, class B, class V>
concept both_values = std::same_as<std::remove_cvref_t<A>, V> && std::same_as<std::remove_cvref_t<B>, V>;
template <class T>
void check_anomaly(std::uint16_t op, T value);
}  // namespace detail

/// A scalar on the tape: its value, its gradient, and how it was made.
///
/// A Value built from a number is a *leaf* (a parameter or an input); a Value
/// returned by an operation is an *intermediate* recorded on the active tape.
/// Handles are small (a pointer and two 32-bit numbers) and cheap to copy.
///
/// A Value belongs to the tape it was recorded on, and a tape to the thread
/// that made it. Using an intermediate after its tape's clear or rewind, any
/// Value after its tape was destroyed, or a Value on another thread raises
/// `stale_handle_error` or `thread_error`; it never reads freed memory.
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
  /// Errors: `thread_error` when the tape belongs to another thread.
  basic_value(Tape& tape, T x) {
    tape.check_thread("Value");
    s_ = &tape.store<detail::scalar_store<T>>();
    make_leaf(x);
  }

  /// A leaf from any other arithmetic type: `Value n = 3;`.
  template <class U>
  requires(std::is_arithmetic_v<U> && !std::same_as<U, T>) basic_value(U x)
      : basic_value(static_cast<T>(x)) {}  // NOLINT(google-explicit-constructor)

  basic_value(const basic_value& o) noexcept : s_(o.s_), h_(o.h_) { adopt(); }
  TAPEGRAD_ALWAYS_INLINE basic_value(basic_value&& o) noexcept : s_(o.s_), h_(o.h_) { o.s_ = nullptr; }
  basic_value& operator=(const basic_value& o) noexcept {
    if (this != &o) {
      release();
      s_ = o.s_;
      h_ = o.h_;
      adopt();
    }
    return *this;
  }
  TAPEGRAD_ALWAYS_INLINE basic_value& operator=(basic_value&& o) noexcept {
    if (this != &o) {
      release();
      s_ = o.s_;
      h_ = o.h_;
      o.s_ = nullptr;
    }
    return *this;
  }
  TAPEGRAD_ALWAYS_INLINE ~basic_value() { release(); }

  /// The forward value.
  T data() const { return is_leaf() ? leaf().value : node().value; }

  /// d(root)/d(this) from the last `backward()`. Leaves accumulate across calls
  /// until `zero_grad()`; an intermediate holds the gradient of the latest
  /// root (zero when that sweep did not reach it).
  T grad() const {
    if (is_leaf()) return leaf().grad;
    (void)node();
    return s_->grad_of(node_index());
  }

  /// Overwrites the value of a leaf (an optimizer step). Intermediates refuse:
  /// their value is what the recorded operation computed.
  void set_data(T x) {
    if (!is_leaf()) throw value_error("set_data: " + describe() + " is an intermediate; only a leaf can be set");
    detail::tracer<T>::check_not_traced(*this, "set_data");
    leaf().value = x;
  }

  /// Sets this value's gradient to zero.
  void zero_grad() {
    if (is_leaf())
      leaf().grad = T(0);
    else if ((void)node(), node_index() < s_->grads.size())
      s_->grads[node_index()] = T(0);
  }

  /// True for a leaf (made from a number), false for an operation's result.
  bool is_leaf() const noexcept { return (h_.index & detail::leaf_bit) != 0; }

  /// True when this handle can be used here: not empty or moved from, its
  /// node not freed by a clear or rewind, its tape alive and owned by this thread.
  TAPEGRAD_ALWAYS_INLINE bool is_alive() const noexcept { return s_ && detail::usable_here(*s_) && fresh(); }

  /// False for an empty or moved-from handle.
  bool defined() const noexcept { return s_ != nullptr; }

  /// An empty handle (what `stopped_input()` gives for a value that is not a
  /// barrier); using it raises `stale_handle_error`.
  static basic_value none() noexcept { return basic_value(empty_tag{}); }

  /// The tape this value lives on.
  Tape& tape() const {
    check_alive("Value::tape");
    return *Tape::of(*s_->tape);
  }

  /// Runs the reverse sweep from this value with d(this)/d(this) = 1.
  void backward() const { backward(T(1)); }

  /// Runs the reverse sweep from this value with the given seed gradient.
  void backward(T seed) const;

  /// A short name for messages and printed graphs: the label, else `leaf#k` or `op#k`.
  std::string describe() const;

  /// Gives this value a name shown by the printed tape and the DOT export.
  basic_value& label(std::string name) {
    check_alive("label");
    auto& labels = is_leaf() ? s_->leaf_labels : s_->node_labels;
    const std::uint32_t i = slot();
    if (labels.size() <= i) labels.resize(i + 1);
    labels[i] = std::move(name);
    return *this;
  }

  /// The name given by `label()`, or an empty string.
  std::string label() const {
    check_alive("label");
    const auto& labels = is_leaf() ? s_->leaf_labels : s_->node_labels;
    const std::uint32_t i = slot();
    return i < labels.size() ? labels[i] : std::string();
  }

  /// The inputs this value was computed from, in order (empty for a leaf and
  /// for a stop_gradient barrier). A plain number operand is folded into the
  /// node as a constant and is not a child. A child is a handle like any
  /// other: a leaf child keeps its leaf alive.
  std::vector<basic_value> children() const;

  /// The input whose gradient a stop_gradient node blocks, drawn by printed
  /// graphs as a cut edge; an empty handle (`defined()` false) for any other value.
  basic_value stopped_input() const;

  /// d(this)/d(child) for each child, as computed on the forward pass.
  std::vector<T> local_grads() const;

  /// The name of the operation that made this value ("mul", "stop_gradient", ...; "leaf").
  /// For a statement that fused several operations it is the outermost one:
  /// "add" for `x * y + sin(x)`.
  std::string op() const;

  // ---- arithmetic (hidden friends, so `x * 2` and `2 * x` both work) ----------
  // Each operator takes its Value operands as forwarding references: an
  // operand passed as an rvalue that is the only handle to the newest
  // statement is consumed, and the operation extends that statement.

  // d(a+b)/da = 1, d(a+b)/db = 1
  template <class A, class B>
  requires detail::both_values<A, B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(A&& a, B&& b) {
    return detail::recorder<T>::binary(detail::op_add, std::forward<A>(a), std::forward<B>(b),
                                       [](T x, T y, T& da, T& db) {
                                         da = T(1);
                                         db = T(1);
                                         return x + y;
                                       });
  }
  template <class A>
  requires detail::one_value<A, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(A&& a, T b) {
    return detail::recorder<T>::unary(detail::op_add, std::forward<A>(a), [b](T x, T& d) {
      d = T(1);
      return x + b;
    });
  }
  template <class B>
  requires detail::one_value<B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(T a, B&& b) {
    return std::forward<B>(b) + a;
  }

  // d(a-b)/da = 1, d(a-b)/db = -1
  template <class A, class B>
  requires detail::both_values<A, B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(A&& a, B&& b) {
    return detail::recorder<T>::binary(detail::op_sub, std::forward<A>(a), std::forward<B>(b),
                                       [](T x, T y, T& da, T& db) {
                                         da = T(1);
                                         db = T(-1);
                                         return x - y;
                                       });
  }
  template <class A>
  requires detail::one_value<A, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(A&& a, T b) {
    return detail::recorder<T>::unary(detail::op_sub, std::forward<A>(a), [b](T x, T& d) {
      d = T(1);
      return x - b;
    });
  }
  template <class B>
  requires detail::one_value<B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(T a, B&& b) {
    return detail::recorder<T>::unary(detail::op_sub, std::forward<B>(b), [a](T y, T& d) {
      d = T(-1);
      return a - y;
    });
  }

  // d(a*b)/da = b, d(a*b)/db = a
  template <class A, class B>
  requires detail::both_values<A, B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(A&& a, B&& b) {
    return detail::recorder<T>::binary(detail::op_mul, std::forward<A>(a), std::forward<B>(b),
                                       [](T x, T y, T& da, T& db) {
                                         da = y;
                                         db = x;
                                         return x * y;
                                       });
  }
  template <class A>
  requires detail::one_value<A, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(A&& a, T b) {
    return detail::recorder<T>::unary(detail::op_mul, std::forward<A>(a), [b](T x, T& d) {
      d = b;
      return x * b;
    });
  }
  template <class B>
  requires detail::one_value<B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator*(T a, B&& b) {
    return std::forward<B>(b) * a;
  }

  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
  template <class A, class B>
  requires detail::both_values<A, B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(A&& a, B&& b) {
    return detail::recorder<T>::binary(detail::op_div, std::forward<A>(a), std::forward<B>(b),
                                       [](T x, T y, T& da, T& db) {
                                         const T inv = T(1) / y;
                                         da = inv;
                                         db = -x * inv * inv;
                                         return x * inv;
                                       });
  }
  template <class A>
  requires detail::one_value<A, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(A&& a, T b) {
    return detail::recorder<T>::unary(detail::op_div, std::forward<A>(a), [b](T x, T& d) {
      d = T(1) / b;
      return x / b;
    });
  }
  template <class B>
  requires detail::one_value<B, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator/(T a, B&& b) {
    return detail::recorder<T>::unary(detail::op_div, std::forward<B>(b), [a](T y, T& d) {
      d = -a / (y * y);
      return a / y;
    });
  }

  // d(-a)/da = -1
  template <class A>
  requires detail::one_value<A, basic_value> TAPEGRAD_ALWAYS_INLINE friend basic_value operator-(A&& a) {
    return detail::recorder<T>::unary(detail::op_neg, std::forward<A>(a), [](T x, T& d) {
      d = T(-1);
      return -x;
    });
  }
  TAPEGRAD_ALWAYS_INLINE friend basic_value operator+(const basic_value& a) { return a; }

  // Compound assignment rebinds this handle to the new node, as `x = x + y`
  // would; this handle's own statement is extended when it is the only
  // handle to the newest one (`s += a * b` in a loop builds one statement).
  // Under NoGradGuard a leaf is updated in place instead, which is how an
  // optimizer step reads: `{ NoGradGuard g; w -= lr * w.grad(); }`.
  template <class O>
  TAPEGRAD_ALWAYS_INLINE basic_value& operator+=(O&& o) {
    if (in_place_leaf()) return set_in_place(data() + value_of(o));
    *this = std::move(*this) + std::forward<O>(o);
    return *this;
  }
  template <class O>
  TAPEGRAD_ALWAYS_INLINE basic_value& operator-=(O&& o) {
    if (in_place_leaf()) return set_in_place(data() - value_of(o));
    *this = std::move(*this) - std::forward<O>(o);
    return *this;
  }
  template <class O>
  TAPEGRAD_ALWAYS_INLINE basic_value& operator*=(O&& o) {
    if (in_place_leaf()) return set_in_place(data() * value_of(o));
    *this = std::move(*this) * std::forward<O>(o);
    return *this;
  }
  template <class O>
  TAPEGRAD_ALWAYS_INLINE basic_value& operator/=(O&& o) {
    if (in_place_leaf()) return set_in_place(data() / value_of(o));
    *this = std::move(*this) / std::forward<O>(o);
    return *this;
  }

  // Comparisons look at the data and record nothing on the tape; a recording
  // for replay (autodiff/recording.hpp) notes each and rechecks it per replay.
  friend bool operator==(const basic_value& a, const basic_value& b) { return detail::tracer<T>::equal(a, &b, T(0)); }
  friend bool operator==(const basic_value& a, T b) { return detail::tracer<T>::equal(a, nullptr, b); }
  friend auto operator<=>(const basic_value& a, const basic_value& b) {
    return detail::tracer<T>::compare(a, &b, T(0));
  }
  friend auto operator<=>(const basic_value& a, T b) { return detail::tracer<T>::compare(a, nullptr, b); }

  friend std::ostream& operator<<(std::ostream& os, const basic_value& v) {
    return os << "Value(data=" << v.data() << ", grad=" << v.grad() << ")";
  }

 private:
  friend struct detail::access<basic_value>;
  friend struct detail::recorder<T>;
  friend struct detail::tracer<T>;
  struct raw_tag {};
  struct empty_tag {};
  explicit basic_value(empty_tag) noexcept {}
  basic_value(raw_tag, detail::scalar_store<T>& s, std::uint32_t index, std::uint32_t stamp) noexcept
      // One 8-byte store: a later 8-byte load of both fields is then forwarded
      // from the store buffer instead of waiting for two 4-byte stores to retire.
      : s_(&s), h_(std::bit_cast<handle_bits>(std::uint64_t(index) | (std::uint64_t(stamp) << 32))) {}

  // Wraps an existing node or leaf slot (used by the recording helpers).
  TAPEGRAD_ALWAYS_INLINE static basic_value from_raw(detail::scalar_store<T>& s, std::uint32_t index,
                                                     std::uint32_t stamp) noexcept {
    basic_value v(raw_tag{}, s, index, stamp);
    v.retain();
    return v;
  }

  // A leaf holding `x` on the same tape as this handle (what an operation
  // returns under NoGradGuard).
  basic_value leaf_beside(T x) const {
    basic_value v(empty_tag{});
    v.s_ = s_;
    v.make_leaf(x);
    return v;
  }

  void make_leaf(T x) {
    const std::uint32_t slot = s_->new_leaf(x);
    h_.index = slot | detail::leaf_bit | detail::counted_bit;
    h_.stamp = s_->leaves[slot].generation;
  }

  // The leaf slot or node index, for messages and labels.
  std::uint32_t slot() const noexcept { return h_.index & detail::slot_mask; }
  // The statement index of an intermediate handle.
  std::uint32_t node_index() const noexcept { return h_.index & detail::slot_mask; }

  // This handle was just copied: a leaf copy takes a reference; a copy of an
  // intermediate tells the store its statement has two handles, so nothing
  // extends it. The source is only read (another thread may read it too).
  void adopt() noexcept {
    if (!s_) return;
    if (is_leaf()) return retain();
    h_.index &= ~detail::sole_bit;
    s_->keep_as_is(node_index());
  }

  bool in_place_leaf() const { return !is_grad_enabled() && is_leaf(); }
  basic_value& set_in_place(T x) {
    detail::tracer<T>::check_not_traced(*this, "an in-place update under NoGradGuard");
    leaf().value = x;
    return *this;
  }
  static T value_of(const basic_value& o) { return o.data(); }
  static T value_of(T o) noexcept { return o; }

  // True when the node or leaf slot is still the one this handle was made
  // for. Only meaningful where usable_here() holds.
  TAPEGRAD_ALWAYS_INLINE bool fresh() const noexcept {
    if (is_leaf()) {
      const std::uint32_t i = h_.index & detail::slot_mask;
      return i < s_->leaves.size() && s_->leaves[i].generation == h_.stamp;
    }
    // Within one epoch nodes are only appended, so a handle of the current
    // epoch is alive without looking at its node.
    if (h_.stamp == s_->epoch) return true;
    const std::uint32_t i = node_index();
    return i < s_->nodes.size() && s_->nodes[i].epoch == h_.stamp;
  }

  basic_value wrap(std::uint32_t index) const { return detail::access<basic_value>::wrap(*s_, index); }

  // A leaf handle holds one reference to its slot while its counted bit is
  // set. A copy takes one only where the leaf can be used (this thread owns
  // the tape and the slot is still this leaf's), so a handle copied or dropped
  // on another thread, or after its tape is gone, never touches the store.
  TAPEGRAD_ALWAYS_INLINE void retain() noexcept {
    if (!s_ || !is_leaf()) return;
    if (detail::usable_here(*s_) && fresh()) {
      ++s_->leaves[h_.index & detail::slot_mask].refs;
      h_.index |= detail::counted_bit;
    } else {
      h_.index &= ~detail::counted_bit;
    }
  }
  TAPEGRAD_ALWAYS_INLINE void release() noexcept {
    if (s_ && (h_.index & detail::counted_bit) && is_leaf() && detail::usable_here(*s_) && fresh())
      s_->release_leaf(h_.index & detail::slot_mask);
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
    if (!s_) throw stale_handle_error(std::string(what) + ": use of an empty or moved-from Value handle");
    if (!detail::usable_here(*s_)) detail::throw_unusable(*s_, what);
    std::ostringstream os;
    os << what << ": the " << (is_leaf() ? "leaf in slot " : "node at tape position ") << slot()
       << " was freed by a clear or rewind of its tape (stale handle)";
    throw stale_handle_error(os.str());
  }

  // The value, after checking the handle on behalf of operation `op` (so a
  // stale handle's error names the operation).
  TAPEGRAD_ALWAYS_INLINE T data_for(std::uint16_t op) const {
    check_alive(op);
    return is_leaf() ? s_->leaves[h_.index & detail::slot_mask].value : s_->nodes[node_index()].value;
  }

  detail::scalar_leaf<T>& leaf() const {
    check_alive("Value");
    return s_->leaves[h_.index & detail::slot_mask];
  }
  detail::scalar_node<T>& node() const {
    check_alive("Value");
    return s_->nodes[node_index()];
  }

  // The index a recorded edge keeps: the leaf slot (with leaf_bit) or the node.
  std::uint32_t edge_index() const noexcept { return h_.index & ~detail::counted_bit; }

  template <std::floating_point U>
  friend basic_value<U> stop_gradient(const basic_value<U>&);

  // The node's index (leaf_bit set for a leaf slot) and its stamp: the epoch
  // an intermediate was recorded in, or a leaf slot's generation.
  struct handle_bits {
    std::uint32_t index = 0;
    std::uint32_t stamp = 0;
  };

  detail::scalar_store<T>* s_ = nullptr;
  handle_bits h_;
};

/// The double-precision scalar: what the tutorials and the worked examples use.
using Value = basic_value<double>;

}  // namespace tapegrad

// The recording helpers, the reverse sweep and stop_gradient.
#include "tapegrad/scalar/detail/value_impl.hpp"
