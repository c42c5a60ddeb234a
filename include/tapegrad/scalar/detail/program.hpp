// SPDX-License-Identifier: MIT
#pragma once

// The program a recording for replay builds (see autodiff/recording.hpp):
// every elementary operation a function performed, in order, over numbered
// registers, with the kernel that computes its value and partials. The scalar
// store writes it while a function is recorded; the recording owns it.

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "tapegrad/core/error.hpp"

namespace tapegrad::detail {

/// One step of a recorded program.
template <class T>
struct program_step {
  enum kind_t : std::uint8_t {
    unary,        // out = kernel(a); partial d(out)/da
    binary,       // out = kernel(a, b); both partials
    add,          // out = a + b (no kernel call)
    sub,          // out = a - b
    mul,          // out = a * b
    stop,         // out = a, no gradient (stop_gradient, or an op under NoGradGuard)
    order_guard,  // a <=> b gave `expect` when recorded
    equal_guard,  // a == b gave `expect` when recorded
  };
  using unary_kernel = T (*)(const void* closure, T x, T& d);
  using binary_kernel = T (*)(const void* closure, T x, T y, T& da, T& db);

  unary_kernel call1 = nullptr;
  binary_kernel call2 = nullptr;
  std::uint32_t a = 0, b = 0, out = 0;
  std::uint16_t op = 0;  // the op's name slot, for messages
  std::uint8_t kind = unary;
  std::uint8_t expect = 0;                                   // guards: the recorded outcome
  bool no_grad = false;                                      // computed, but passes no gradient
  std::uint8_t closure_bytes = 0;                            // how much of `closure` the kernel uses
  alignas(std::max_align_t) unsigned char closure[16] = {};  // the kernel's captured constants
};

/// How a comparison came out: 0 less, 1 equivalent, 2 greater, 3 unordered (a NaN).
inline std::uint8_t ordering_code(std::partial_ordering o) noexcept {
  if (o == std::partial_ordering::less) return 0;
  if (o == std::partial_ordering::equivalent) return 1;
  if (o == std::partial_ordering::greater) return 2;
  return 3;
}

template <class T>
struct replay_program {
  static constexpr std::uint32_t none = std::numeric_limits<std::uint32_t>::max();

  std::vector<program_step<T>> steps;
  std::vector<T> init;                  // each register's value when recorded (inputs, constants, results)
  std::vector<std::uint32_t> node_reg;  // while recording: the register of each statement
  std::vector<std::uint32_t> leaf_reg;  // while recording: the register of each leaf slot
  std::size_t guards = 0;

  std::uint32_t fresh(T value) {
    init.push_back(value);
    return static_cast<std::uint32_t>(init.size() - 1);
  }

  template <class F>
  static T call_unary(const void* closure, T x, T& d) {
    return (*static_cast<const F*>(closure))(x, d);
  }
  template <class F>
  static T call_binary(const void* closure, T x, T y, T& da, T& db) {
    return (*static_cast<const F*>(closure))(x, y, da, db);
  }

  /// True when a kernel's captures fit in a step (the library's kernels
  /// capture at most one constant; custom ops, which capture more, are
  /// refused before they get here).
  template <class F>
  static constexpr bool fits = std::is_trivially_copyable_v<F> && sizeof(F) <= sizeof(program_step<T>::closure) &&
                               alignof(F) <= alignof(std::max_align_t);

  template <class F>
  static void keep_closure(program_step<T>& st, const F& f) {
    if constexpr (fits<F>) {
      std::memcpy(st.closure, &f, sizeof(F));
      st.closure_bytes = static_cast<std::uint8_t>(std::is_empty_v<F> ? 0 : sizeof(F));
    } else
      throw value_error("record: an operation whose kernel captures more than a step holds cannot be replayed");
  }

  /// Appends a one-input step computing a new register; returns the register.
  template <class F>
  std::uint32_t push_unary(const F& f, std::uint16_t op, std::uint32_t a, T value, bool no_grad) {
    program_step<T> st;
    st.kind = program_step<T>::unary;
    st.call1 = &call_unary<F>;
    keep_closure(st, f);
    st.a = a;
    st.op = op;
    st.no_grad = no_grad;
    return push(st, value);
  }

  /// Appends a two-input step; `fast` names add, sub or mul, which replay computes inline.
  template <class F>
  std::uint32_t push_binary(const F& f, std::uint16_t op, std::uint8_t fast, std::uint32_t a, std::uint32_t b, T value,
                            bool no_grad) {
    program_step<T> st;
    st.kind = fast;
    st.call2 = &call_binary<F>;
    keep_closure(st, f);
    st.a = a;
    st.b = b;
    st.op = op;
    st.no_grad = no_grad;
    return push(st, value);
  }

  std::uint32_t push_stop(std::uint16_t op, std::uint32_t a, T value) {
    program_step<T> st;
    st.kind = program_step<T>::stop;
    st.a = a;
    st.op = op;
    st.no_grad = true;
    return push(st, value);
  }

  void push_guard(std::uint8_t kind, std::uint32_t a, std::uint32_t b, std::uint8_t expect) {
    program_step<T> st;
    st.kind = kind;
    st.a = a;
    st.b = b;
    st.expect = expect;
    steps.push_back(st);
    ++guards;
  }

 private:
  std::uint32_t push(program_step<T>& st, T value) {
    st.out = fresh(value);
    try {
      steps.push_back(st);
    } catch (...) {
      init.pop_back();
      throw;
    }
    return st.out;
  }
};

}  // namespace tapegrad::detail
