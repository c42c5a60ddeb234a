// SPDX-License-Identifier: MIT
#pragma once

// Recording for replay (autodiff/recording.hpp). While a store has a program,
// each scalar operation also appends a step to it: the registers it reads, a
// fresh register for its result, and its kernel (the same lambda that just
// ran), so a replay recomputes values and partials for new inputs.
// Statements may still fuse: the program keeps one register per operation
// whatever the tape does. Included at the end of value_impl.hpp.

#include <compare>
#include <cstdint>
#include <string>
#include <utility>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/scalar/detail/program.hpp"
#include "tapegrad/scalar/detail/store.hpp"
#include "tapegrad/scalar/detail/value_impl.hpp"
#include "tapegrad/scalar/value.hpp"

namespace tapegrad::detail {

template <class T>
struct tracer {
  using value = basic_value<T>;

  /// The first op slot that is not the library's own (custom ops).
  static constexpr std::uint16_t first_custom_op = op_softplus + 1;

  [[noreturn]] TAPEGRAD_COLD static void throw_not_replayable(std::uint16_t op) {
    throw value_error("record: op '" + op_name(op) +
                      "' is a custom op whose value was computed outside the tape; a recording cannot replay it");
  }

  /// The register holding what `v` names (a leaf never seen before becomes a
  /// constant: its value now).
  static std::uint32_t reg_of(scalar_store<T>& s, const value& v) {
    replay_program<T>& p = *s.program;
    const std::uint32_t id = v.edge_index();
    if (id & leaf_bit) {
      const std::uint32_t slot = id & slot_mask;
      if (slot >= p.leaf_reg.size()) p.leaf_reg.resize(slot + 1, p.none);
      if (p.leaf_reg[slot] == p.none) p.leaf_reg[slot] = p.fresh(s.leaves[slot].value);
      return p.leaf_reg[slot];
    }
    if (id >= p.node_reg.size() || p.node_reg[id] == p.none) [[unlikely]]
      throw value_error("record: " + v.describe() + " was recorded before the recording began");
    return p.node_reg[id];
  }

  /// Notes that register `reg` now holds what handle `out` names.
  static void bind(scalar_store<T>& s, const value& out, std::uint32_t reg) {
    replay_program<T>& p = *s.program;
    const std::uint32_t id = out.edge_index();
    auto& table = (id & leaf_bit) ? p.leaf_reg : p.node_reg;
    const std::uint32_t i = id & slot_mask;
    if (i >= table.size()) table.resize(i + 1, p.none);
    table[i] = reg;
  }

  template <class A, class F>
  TAPEGRAD_COLD static value unary(std::uint16_t op, A&& a, const F& f, T v, T d) {
    if (op >= first_custom_op) throw_not_replayable(op);
    scalar_store<T>& s = *a.s_;
    const std::uint32_t ra = reg_of(s, a);
    const bool no_grad = !is_grad_enabled();
    value out = recorder<T>::record_unary(op, std::forward<A>(a), v, d);
    bind(s, out, s.program->push_unary(f, op, ra, v, no_grad));
    return out;
  }

  template <class A, class B, class F>
  TAPEGRAD_COLD static value binary(std::uint16_t op, A&& a, B&& b, const F& f, T v, T da, T db) {
    if (op >= first_custom_op) throw_not_replayable(op);
    if (a.s_ != b.s_) throw_tape_mismatch(op_name(op).c_str(), a, b);
    scalar_store<T>& s = *a.s_;
    const std::uint32_t ra = reg_of(s, a), rb = reg_of(s, b);
    const bool no_grad = !is_grad_enabled();
    using step = program_step<T>;
    const std::uint8_t fast = op == op_add   ? step::add
                              : op == op_sub ? step::sub
                              : op == op_mul ? step::mul
                                             : step::binary;
    value out = recorder<T>::record_binary(op, std::forward<A>(a), std::forward<B>(b), v, da, db);
    bind(s, out, s.program->push_binary(f, op, fast, ra, rb, v, no_grad));
    return out;
  }

  /// stop_gradient while recording: the result copies its source's value and passes no gradient.
  TAPEGRAD_COLD static void stop(const value& x, const value& out, T v) {
    scalar_store<T>& s = *x.s_;
    bind(s, out, s.program->push_stop(op_stop_gradient, reg_of(s, x), v));
  }

  /// A comparison while recording: every replay checks it comes out the same.
  /// A Value of another tape compares as the constant it is now.
  static void guard(const value& a, const value* b, T constant, std::uint8_t kind, std::uint8_t outcome) {
    scalar_store<T>* s = a.s_->program ? a.s_ : b->s_;
    const auto reg = [&](const value* v, T c) {
      return v && v->s_ == s ? reg_of(*s, *v) : s->program->fresh(v ? v->data() : c);
    };
    const std::uint32_t ra = reg(&a, T(0)), rb = reg(b, constant);
    s->program->push_guard(kind, ra, rb, outcome);
  }
  static bool traced(const value& a, const value* b) noexcept { return a.s_->program || (b && b->s_->program); }
  static std::partial_ordering compare(const value& a, const value* b, T constant) {
    const T x = a.data(), y = b ? b->data() : constant;
    const std::partial_ordering r = x <=> y;
    if (traced(a, b)) [[unlikely]]
      guard(a, b, constant, program_step<T>::order_guard, ordering_code(r));
    return r;
  }
  static bool equal(const value& a, const value* b, T constant) {
    const T x = a.data(), y = b ? b->data() : constant;
    const bool r = x == y;
    if (traced(a, b)) [[unlikely]]
      guard(a, b, constant, program_step<T>::equal_guard, r ? 1 : 0);
    return r;
  }
  /// A leaf's value changed in place: a recording could not repeat it.
  static void check_not_traced(const value& v, const char* what) {
    if (v.s_ && v.s_->program) [[unlikely]]
      throw value_error(std::string("record: ") + what + " changes " + v.describe() +
                        " in place; a recording cannot replay that");
  }
};

}  // namespace tapegrad::detail
