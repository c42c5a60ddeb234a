// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/functional.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/scalar/detail/replay.hpp"
#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

/// A scalar function recorded once and replayed for new inputs: values and
/// gradients without recording again. Made by `tapegrad::record`.
///
/// A replay repeats the operations the function performed when it was
/// recorded, in the same order, each computed as its kernel computed it (the
/// recording is compiled once: common operations inline, running sums of
/// products as one step): at the recorded inputs it gives the same value, bit
/// for bit. It is right at other inputs as long
/// as the function would take the same path there. Every comparison between
/// Values the function made (`x < y`, `x == 0.0`) is checked again at each
/// replay, and a different outcome raises `replay_error`: record again at
/// those inputs. A branch on a plain number (`if (x.data() > 0)`) is not seen;
/// such a function must compare Values, or be recorded at every input.
///
/// A Recording owns its buffers: after the first call, a replay allocates
/// nothing. It is not shared between threads while in use (copy it instead).
///
/// Example:
///   auto f = tapegrad::record([](const std::vector<Value>& x) { return x[0] * x[1] + sin(x[0]); }, {1.0, 2.0});
///   auto [y, g] = f.value_and_grad({3.0, 4.0});  // y = 12 + sin 3, g = {4 + cos 3, 3}
template <std::floating_point T>
class Recording {
 public:
  /// How many inputs the function takes.
  std::size_t inputs() const noexcept { return code_.inputs(); }
  /// How many elementary operations a replay performs.
  std::size_t operations() const noexcept { return code_.operations(); }
  /// How many instructions a replay runs: the operations and comparisons,
  /// less the products it adds in the same instruction as their sum.
  std::size_t instructions() const noexcept { return code_.instructions(); }
  /// How many comparisons a replay checks.
  std::size_t comparisons() const noexcept { return code_.comparisons(); }

  /// f at `x`.
  /// Errors: `value_error` for the wrong number of inputs; `replay_error`
  /// when a recorded comparison comes out differently at `x`.
  T value(std::span<const T> x) { return forward(x, "Recording::value"); }
  T value(const std::vector<T>& x) { return value(std::span<const T>(x)); }

  /// f at `x`, with its gradient written to `grad` (one entry per input).
  T value_and_grad(std::span<const T> x, std::span<T> grad) {
    if (grad.size() != inputs())
      throw value_error("Recording::value_and_grad: a gradient buffer of " + std::to_string(grad.size()) +
                        " entries for " + std::to_string(inputs()) + " inputs");
    const T y = forward(x, "Recording::value_and_grad");
    code_.backward();
    const std::span<const T> adjoints = code_.input_adjoints();
    std::copy(adjoints.begin(), adjoints.end(), grad.begin());
    return y;
  }

  /// f at `x` and its gradient, as `tapegrad::value_and_grad` returns them.
  ValueAndGrad<T, std::vector<T>> value_and_grad(const std::vector<T>& x) {
    ValueAndGrad<T, std::vector<T>> out{T(0), std::vector<T>(inputs())};
    out.value = value_and_grad(std::span<const T>(x), std::span<T>(out.grad));
    return out;
  }

  /// The gradient of f at `x`.
  std::vector<T> grad(const std::vector<T>& x) { return value_and_grad(x).grad; }

 private:
  template <std::floating_point U, class F>
  friend Recording<U> record(F&& f, const std::vector<U>& xs);

  T forward(std::span<const T> x, const char* what) {
    if (code_.empty()) throw value_error(std::string(what) + ": an empty Recording (make one with tapegrad::record)");
    if (x.size() != inputs())
      throw value_error(std::string(what) + ": " + std::to_string(x.size()) +
                        " inputs given; the function was recorded with " + std::to_string(inputs()));
    return code_.forward(x, what);
  }

  detail::compiled_replay<T> code_;
};

/// Records `f` once at `xs` for replay (see Recording). f takes
/// `const std::vector<basic_value<T>>&` and returns a Value; it runs on a
/// fresh tape of its own, so nothing lands on yours.
/// Errors: `value_error` when f uses a custom op (its value was computed
/// outside the tape), changes a leaf in place, or clears or rewinds the tape
/// it runs on; whatever f itself raises.
template <std::floating_point T, class F>
Recording<T> record(F&& f, const std::vector<T>& xs) {
  detail::replay_program<T> program;
  Tape tape;
  Tape::Scope use(tape);
  auto& store = tape.store<detail::scalar_store<T>>();
  struct detach {
    detail::scalar_store<T>& s;
    ~detach() { s.program = nullptr; }
  } attached{store};
  store.program = &program;

  std::vector<basic_value<T>> inputs;
  inputs.reserve(xs.size());
  for (const T x : xs) {
    inputs.emplace_back(tape, x);
    (void)detail::tracer<T>::reg_of(store, inputs.back());
  }
  const std::uint32_t epoch = tape.epoch();
  const basic_value<T> y = std::forward<F>(f)(std::as_const(inputs));
  if (tape.epoch() != epoch)
    throw value_error("record: the function cleared or rewound the tape it was recorded on; it cannot be replayed");
  if (!y.is_alive() || &detail::access<basic_value<T>>::store_of(y) != &store)
    throw value_error("record: the function returned " + y.describe() +
                      ", which is not a Value of the recording's tape");
  Recording<T> out;
  out.code_ = detail::compiled_replay<T>(program, detail::tracer<T>::reg_of(store, y), xs.size());
  return out;
}

/// `record` with the inputs written in braces: `record(f, {1.0, 2.0})`.
template <std::floating_point T, class F>
Recording<T> record(F&& f, std::initializer_list<T> xs) {
  return record(std::forward<F>(f), std::vector<T>(xs));
}

}  // namespace tapegrad
