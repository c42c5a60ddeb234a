// SPDX-License-Identifier: MIT
#pragma once

// Forward mode for tensor ops. A `ForwardScope<T>` holds tangents: for each
// tensor it knows, the directional derivative of that tensor along the
// direction seeded on the inputs. While a scope is active on a thread,
// `make_op` asks each op whose inputs have tangents for its output's tangent,
// through the op's jvp rule (see `make_op`). A rule computes the tangent with
// the library's tensor ops, so when grad mode is on the tangent is recorded on
// the tape like any value, and a reverse sweep from it differentiates the
// directional derivative: that is how `hvp` gets H v (reverse-over-forward).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/record.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

namespace detail {

// A tensor is known by its storage and its node's serial (0 for a leaf): an
// intermediate's storage lives in the arena and can be reused after a rewind,
// and the serial tells the new node from the old one.
struct tangent_key {
  const void* storage = nullptr;
  std::uint64_t serial = 0;
  bool operator==(const tangent_key&) const = default;
};

struct tangent_key_hash {
  std::size_t operator()(const tangent_key& k) const noexcept {
    return std::hash<const void*>()(k.storage) ^ (std::hash<std::uint64_t>()(k.serial) * 0x9e3779b97f4a7c15ull);
  }
};

template <class T>
tangent_key key_of(const basic_tensor<T>& x) {
  using acc = access<basic_tensor<T>>;
  const op_node<T>* n = acc::node(x);
  return {&acc::storage(x), n ? n->serial : 0};
}

template <class T>
struct tangent_table {
  struct entry {
    basic_tensor<T> primal;  // keeps a leaf's storage (and so its key) alive
    basic_tensor<T> tangent;
  };
  std::unordered_map<tangent_key, entry, tangent_key_hash> map;
  bool suspended = false;  // true while a jvp rule runs: its own ops carry no tangents
  tangent_table* outer = nullptr;
};

/// The innermost active scope of this thread, or null: the one pointer
/// `make_op` reads, so an op outside forward mode pays one load and a branch.
template <class T>
inline thread_local tangent_table<T>* active_tangents = nullptr;

}  // namespace detail

/// What an op's jvp rule sees: the primal inputs, their tangents (an undefined
/// tensor where the tangent is zero) and the primal output, all as tensor
/// handles. The rule returns the output's tangent, computed with tensor ops,
/// or an undefined tensor for zero.
template <class T>
class JvpContext {
 public:
  JvpContext(std::span<const basic_tensor<T>> in, std::span<const basic_tensor<T>> tangents,
             const basic_tensor<T>& out) noexcept
      : in_(in), tan_(tangents), out_(out) {}
  /// Number of inputs.
  std::size_t inputs() const noexcept { return in_.size(); }
  /// Input `i` (its value as the op saw it).
  const basic_tensor<T>& in(std::size_t i) const { return in_[i]; }
  /// Input `i`'s tangent; undefined when it is zero (check `has_tangent`).
  const basic_tensor<T>& tangent(std::size_t i) const { return tan_[i]; }
  /// True when input `i` has a nonzero tangent.
  bool has_tangent(std::size_t i) const { return tan_[i].defined(); }
  /// The op's output.
  const basic_tensor<T>& out() const noexcept { return out_; }

 private:
  std::span<const basic_tensor<T>> in_, tan_;
  const basic_tensor<T>& out_;
};

/// A forward-mode scope for tensors of type T: while it lives, the ops this
/// thread runs carry tangents from the tensors given one with `set_tangent`
/// to their results. Scopes nest; the innermost is the active one.
///
/// Example:
///   ForwardScope<double> fwd;
///   fwd.set_tangent(x, v);          // differentiate along v
///   auto y = tanh(matmul(x, w));
///   auto dy = fwd.tangent(y);       // J v, computed with the ops' jvp rules
template <class T>
class ForwardScope {
 public:
  ForwardScope() : table_{}, saved_(detail::active_tangents<T>) {
    table_.outer = saved_;
    detail::active_tangents<T> = &table_;
  }
  ~ForwardScope() { detail::active_tangents<T> = saved_; }
  ForwardScope(const ForwardScope&) = delete;
  ForwardScope& operator=(const ForwardScope&) = delete;

  /// Seeds x's tangent (its shape must be x's); an undefined t means zero.
  void set_tangent(const basic_tensor<T>& x, const basic_tensor<T>& t) {
    if (t.defined() && t.shape() != x.shape())
      throw shape_error("ForwardScope::set_tangent: tangent " + t.shape().str() + " for a tensor of shape " +
                        x.shape().str());
    table_.map[detail::key_of(x)] = {x, t};
  }

  /// x's tangent in this scope; undefined when it is zero (x depends on no
  /// seeded tensor, or only through ops whose tangent is zero).
  basic_tensor<T> tangent(const basic_tensor<T>& x) const {
    auto it = table_.map.find(detail::key_of(x));
    return it == table_.map.end() ? basic_tensor<T>() : it->second.tangent;
  }

 private:
  detail::tangent_table<T> table_;
  detail::tangent_table<T>* saved_;
};

namespace detail {

/// a + b for tangents, where an undefined tensor is zero.
template <class T>
basic_tensor<T> tangent_add(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return a + b;
}

/// Every input's tangent, zeros of the input's shape where it has none.
template <class T>
std::vector<basic_tensor<T>> tangents_or_zeros(const JvpContext<T>& j) {
  std::vector<basic_tensor<T>> t;
  for (std::size_t i = 0; i < j.inputs(); ++i)
    t.push_back(j.has_tangent(i) ? j.tangent(i) : basic_tensor<T>(j.in(i).shape()));
  return t;
}

/// Runs an op's jvp rule after its forward, when the active scope knows a
/// tangent for one of its inputs. Out of line from make_op: nothing here runs
/// (or allocates) unless forward mode is in use.
template <class T, class Inputs, class Jvp>
void propagate_tangent(tangent_table<T>& table, const char* name, const Inputs& inputs, const basic_tensor<T>& out,
                       Jvp& jvp) {
  std::vector<basic_tensor<T>> in, tan;
  bool any = false;
  for (const basic_tensor<T>& x : inputs) {
    auto it = table.map.find(key_of(x));
    in.push_back(x);
    tan.push_back(it == table.map.end() ? basic_tensor<T>() : it->second.tangent);
    any = any || tan.back().defined();
  }
  if (!any) return;
  if constexpr (std::is_same_v<std::remove_cvref_t<Jvp>, std::nullptr_t>) {
    throw value_error(std::string("jvp: op '") + name + "' has no forward-derivative rule");
  } else {
    basic_tensor<T> t;
    {
      table.suspended = true;
      struct resume {
        tangent_table<T>& t;
        ~resume() { t.suspended = false; }
      } r{table};
      t = jvp(JvpContext<T>(in, tan, out));
    }
    if (!t.defined()) return;
    if (t.shape() != out.shape())
      throw shape_error(std::string("jvp: the rule of op '") + name + "' made a tangent of shape " + t.shape().str() +
                        " for an output of shape " + out.shape().str());
    table.map[key_of(out)] = {out, t};
  }
}

}  // namespace detail

}  // namespace tapegrad
