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
#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

/// A scalar function recorded once and replayed for new inputs: values and
/// gradients without recording again. Made by `tapegrad::record`.
///
/// A replay repeats the operations the function performed when it was
/// recorded, in the same order, with the same kernels: at the recorded inputs
/// it gives the same value, bit for bit. It is right at other inputs as long
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
  std::size_t inputs() const noexcept { return inputs_; }
  /// How many elementary operations a replay performs.
  std::size_t operations() const noexcept { return program_.steps.size() - program_.guards; }
  /// How many comparisons a replay checks.
  std::size_t comparisons() const noexcept { return program_.guards; }

  /// f at `x`.
  /// Errors: `value_error` for the wrong number of inputs; `replay_error`
  /// when a recorded comparison comes out differently at `x`.
  T value(std::span<const T> x) { return forward(x, "Recording::value"); }
  T value(const std::vector<T>& x) { return value(std::span<const T>(x)); }

  /// f at `x`, with its gradient written to `grad` (one entry per input).
  T value_and_grad(std::span<const T> x, std::span<T> grad) {
    if (grad.size() != inputs_)
      throw value_error("Recording::value_and_grad: a gradient buffer of " + std::to_string(grad.size()) +
                        " entries for " + std::to_string(inputs_) + " inputs");
    const T y = forward(x, "Recording::value_and_grad");
    backward();
    std::copy(adjoints_.begin(), adjoints_.begin() + static_cast<std::ptrdiff_t>(inputs_), grad.begin());
    return y;
  }

  /// f at `x` and its gradient, as `tapegrad::value_and_grad` returns them.
  ValueAndGrad<T, std::vector<T>> value_and_grad(const std::vector<T>& x) {
    ValueAndGrad<T, std::vector<T>> out{T(0), std::vector<T>(inputs_)};
    out.value = value_and_grad(std::span<const T>(x), std::span<T>(out.grad));
    return out;
  }

  /// The gradient of f at `x`.
  std::vector<T> grad(const std::vector<T>& x) { return value_and_grad(x).grad; }

 private:
  template <std::floating_point U, class F>
  friend Recording<U> record(F&& f, const std::vector<U>& xs);
  using step = detail::program_step<T>;

  T forward(std::span<const T> x, const char* what) {
    if (program_.init.empty())
      throw value_error(std::string(what) + ": an empty Recording (make one with tapegrad::record)");
    if (x.size() != inputs_)
      throw value_error(std::string(what) + ": " + std::to_string(x.size()) +
                        " inputs given; the function was recorded with " + std::to_string(inputs_));
    regs_.assign(program_.init.begin(), program_.init.end());
    std::copy(x.begin(), x.end(), regs_.begin());
    partials_.resize(2 * program_.steps.size());
    T* r = regs_.data();
    T* p = partials_.data();
    const step* steps = program_.steps.data();
    const std::size_t n = program_.steps.size();
    for (std::size_t k = 0; k < n; ++k) {
      const step& st = steps[k];
      T da = T(0), db = T(0);
      switch (st.kind) {
        case step::add:
          r[st.out] = r[st.a] + r[st.b];
          da = db = T(1);
          break;
        case step::sub:
          r[st.out] = r[st.a] - r[st.b];
          da = T(1);
          db = T(-1);
          break;
        case step::mul:
          da = r[st.b];
          db = r[st.a];
          r[st.out] = db * da;
          break;
        case step::unary:
          r[st.out] = st.call1(st.closure, r[st.a], da);
          break;
        case step::binary:
          r[st.out] = st.call2(st.closure, r[st.a], r[st.b], da, db);
          break;
        case step::stop:
          r[st.out] = r[st.a];
          break;
        case step::order_guard:
          if (detail::ordering_code(r[st.a] <=> r[st.b]) != st.expect) throw_branch(k, what);
          break;
        case step::equal_guard:
          if ((r[st.a] == r[st.b]) != (st.expect != 0)) throw_branch(k, what);
          break;
        default:
          break;
      }
      if (st.no_grad) da = db = T(0);
      p[2 * k] = da;
      p[2 * k + 1] = db;
    }
    return r[result_];
  }

  // The reverse sweep over the steps of the last forward(). Every step writes
  // a register of its own, so each register's adjoint is complete when its
  // step is reached. A step whose result gets no gradient passes nothing on
  // (so an infinite slope times a zero gradient stays zero, as on the tape).
  void backward() {
    adjoints_.assign(program_.init.size(), T(0));
    T* g = adjoints_.data();
    const T* p = partials_.data();
    const step* steps = program_.steps.data();
    g[result_] = T(1);
    for (std::size_t k = program_.steps.size(); k-- > 0;) {
      const step& st = steps[k];
      if (st.kind >= step::stop || st.no_grad) continue;
      const T go = g[st.out];
      if (go == T(0)) continue;
      g[st.a] += go * p[2 * k];
      if (st.kind != step::unary) g[st.b] += go * p[2 * k + 1];
    }
  }

  [[noreturn]] void throw_branch(std::size_t k, const char* what) const {
    const step& st = program_.steps[k];
    std::size_t nth = 0;
    for (std::size_t i = 0; i <= k; ++i) nth += program_.steps[i].kind >= step::order_guard ? 1 : 0;
    static const char* const order[] = {" < ", " == ", " > ", " unordered with "};
    std::ostringstream os;
    os << what << ": comparison " << nth << " of " << program_.guards << " took another branch: recorded as "
       << program_.init[st.a] << (st.kind == step::order_guard ? order[st.expect] : (st.expect ? " == " : " != "))
       << program_.init[st.b] << ", now " << regs_[st.a] << " and " << regs_[st.b]
       << "; record the function again at these inputs";
    throw replay_error(os.str());
  }

  detail::replay_program<T> program_;
  std::size_t inputs_ = 0;
  std::uint32_t result_ = 0;
  std::vector<T> regs_, partials_, adjoints_;
};

/// Records `f` once at `xs` for replay (see Recording). f takes
/// `const std::vector<basic_value<T>>&` and returns a Value; it runs on a
/// fresh tape of its own, so nothing lands on yours.
/// Errors: `value_error` when f uses a custom op (its value was computed
/// outside the tape), changes a leaf in place, or clears or rewinds the tape
/// it runs on; whatever f itself raises.
template <std::floating_point T, class F>
Recording<T> record(F&& f, const std::vector<T>& xs) {
  Recording<T> out;
  detail::replay_program<T>& program = out.program_;
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
  out.inputs_ = xs.size();
  const std::uint32_t epoch = tape.epoch();
  const basic_value<T> y = std::forward<F>(f)(std::as_const(inputs));
  if (tape.epoch() != epoch)
    throw value_error("record: the function cleared or rewound the tape it was recorded on; it cannot be replayed");
  if (!y.is_alive() || &detail::access<basic_value<T>>::store_of(y) != &store)
    throw value_error("record: the function returned " + y.describe() +
                      ", which is not a Value of the recording's tape");
  out.result_ = detail::tracer<T>::reg_of(store, y);
  program.node_reg = {};
  program.leaf_reg = {};
  return out;
}

/// `record` with the inputs written in braces: `record(f, {1.0, 2.0})`.
template <std::floating_point T, class F>
Recording<T> record(F&& f, std::initializer_list<T> xs) {
  return record(std::forward<F>(f), std::vector<T>(xs));
}

}  // namespace tapegrad
