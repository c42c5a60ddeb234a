// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/dual.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/scalar/value.hpp"

// Beyond one gradient, for functions of many scalars (the vector form of
// `grad` in autodiff/functional.hpp). Each function runs f on a tape of its
// own, so nothing lands on the caller's: a per-thread tape, cleared after the
// call and kept, so repeated calls reuse its memory (one per nesting depth,
// for an f that calls a driver itself).
//
// f is written once, generically (`[](const auto& x) { ... }`), because each
// driver calls it with a different scalar:
//   jvp, forward jacobian   Dual<T>          forward mode, no tape
//   vjp, reverse jacobian   basic_value<T>   reverse mode
//   hvp, hessian            Dual<Value>      reverse-over-forward
//
// Sweeps, with n inputs and m outputs (docs/higher-order.md has measured costs):
//   jvp       one dual pass, no tape
//   vjp       one recorded pass and one reverse sweep
//   hvp       one recorded dual pass and two reverse sweeps (gradient, then H v)
//   hessian   n hvps
//   jacobian  n dual passes (forward) or one recording and m sweeps (reverse)

namespace tapegrad {

/// What `jvp` returns: f(x) and the directional derivative J v.
template <class Y>
struct JvpResult {
  Y value;    ///< f(x)
  Y tangent;  ///< J v (a number for a scalar f)
};

/// What `vjp` returns: f(x) and u^T J.
template <class T>
struct VjpResult {
  std::vector<T> value;  ///< f(x), one entry per output
  std::vector<T> grad;   ///< u^T J, one entry per input
};

/// What `hvp` returns: f(x), its gradient and the Hessian-vector product H v.
template <class T>
struct HvpResult {
  T value;              ///< f(x)
  std::vector<T> grad;  ///< the gradient of f at x
  std::vector<T> hvp;   ///< H v
};

/// How `jacobian` builds the matrix.
enum class JacobianMode {
  automatic,  ///< reverse when there are fewer outputs than inputs, forward otherwise
  forward,    ///< one dual pass per column (input)
  reverse,    ///< one recorded pass, then one reverse sweep per row (output)
};

/// A dense row-major matrix of derivatives, as `jacobian` and `hessian` return.
template <class T>
struct DerivativeMatrix {
  std::size_t rows = 0, cols = 0;
  std::vector<T> data;                          ///< row-major, rows * cols entries
  JacobianMode mode = JacobianMode::automatic;  ///< how it was computed (forward or reverse)
  /// Entry (i, j): d output i / d input j.
  T operator()(std::size_t i, std::size_t j) const { return data[i * cols + j]; }
};

namespace detail {

template <class Y>
struct is_vector : std::false_type {};
template <class E>
struct is_vector<std::vector<E>> : std::true_type {};

inline void check_same_size(const char* op, const char* what, std::size_t got, std::size_t want) {
  if (got != want)
    throw shape_error(std::string(op) + ": " + what + " has " + std::to_string(got) + " entries, x has " +
                      std::to_string(want));
}

/// A per-thread scratch tape for one driver call, cleared when the call ends.
class driver_tape {
 public:
  driver_tape() : pool_(tapes()) {
    if (pool_.depth == pool_.tapes.size()) pool_.tapes.push_back(std::make_unique<Tape>());
    tape_ = pool_.tapes[pool_.depth++].get();
    tape_->clear();
  }
  ~driver_tape() {
    tape_->clear();
    --pool_.depth;
  }
  driver_tape(const driver_tape&) = delete;
  driver_tape& operator=(const driver_tape&) = delete;
  Tape& get() noexcept { return *tape_; }

 private:
  struct pool {
    std::vector<std::unique_ptr<Tape>> tapes;
    std::size_t depth = 0;
  };
  static pool& tapes() {
    thread_local pool p;
    return p;
  }
  pool& pool_;
  Tape* tape_ = nullptr;
};

template <std::floating_point T, class F>
auto run_dual(F& f, const std::vector<T>& x, const std::vector<T>& v) {
  std::vector<Dual<T>> xs;
  xs.reserve(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) xs.emplace_back(x[i], v[i]);
  return f(std::as_const(xs));
}

}  // namespace detail

/// f(x) and the directional derivative J v, by forward mode: one pass of f on
/// Dual<T> numbers, no tape. f takes `const std::vector<Dual<T>>&` and returns
/// a Dual<T> (then J v is a number) or a std::vector<Dual<T>>.
///
/// Example:
///   auto r = tapegrad::jvp([](const auto& x) { return x[0] * x[1]; }, std::vector{2.0, 3.0}, {1.0, 0.0});
///   // r.value = 6, r.tangent = d(x0 x1)/dx0 = x1 = 3
template <std::floating_point T, class F>
auto jvp(F&& f, const std::vector<T>& x, const std::vector<T>& v) {
  detail::check_same_size("jvp", "v", v.size(), x.size());
  const auto y = detail::run_dual(f, x, v);
  if constexpr (detail::is_vector<std::decay_t<decltype(y)>>::value) {
    JvpResult<std::vector<T>> r;
    for (const auto& yi : y) {
      r.value.push_back(yi.value);
      r.tangent.push_back(yi.tangent);
    }
    return r;
  } else {
    return JvpResult<T>{y.value, y.tangent};
  }
}

/// f(x) and u^T J, by reverse mode: f runs once on the tape and one reverse
/// sweep starts from sum_i u_i f_i(x). f takes `const std::vector<basic_value<T>>&`
/// and returns a std::vector of them (u has one entry per output).
///
/// Example:
///   auto r = tapegrad::vjp([](const auto& x) { return std::vector{x[0] * x[1], x[0]}; },
///                          std::vector{2.0, 3.0}, {1.0, 10.0});
///   // r.grad = 1 * (3, 2) + 10 * (1, 0) = (13, 2)
template <std::floating_point T, class F>
VjpResult<T> vjp(F&& f, const std::vector<T>& x, const std::vector<T>& u) {
  detail::driver_tape tape;
  Tape::Scope use(tape.get());
  std::vector<basic_value<T>> leaves;
  leaves.reserve(x.size());
  for (T xi : x) leaves.emplace_back(xi);
  const std::vector<basic_value<T>> y = f(std::as_const(leaves));
  if (y.size() != u.size())
    throw shape_error("vjp: u has " + std::to_string(u.size()) + " entries, f has " + std::to_string(y.size()) +
                      " outputs");
  VjpResult<T> r;
  r.grad.assign(x.size(), T(0));
  if (y.empty()) return r;
  basic_value<T> s = y[0] * u[0];  // d(sum u_i y_i)/dy_i = u_i
  for (std::size_t i = 1; i < y.size(); ++i) s = s + y[i] * u[i];
  s.backward();
  for (const auto& yi : y) r.value.push_back(yi.data());
  for (std::size_t i = 0; i < x.size(); ++i) r.grad[i] = leaves[i].grad();
  return r;
}

/// The Hessian-vector product H v of a scalar f at x, with f(x) and its
/// gradient, by reverse-over-forward: f runs once on Dual<Value> numbers
/// (values x, tangents v), which records both f and its directional
/// derivative g = grad f . v on the tape; a reverse sweep from g gives
/// grad g = H v, and one from f gives the gradient. The Hessian is never
/// formed: memory is the tape of one dual pass, two to four times f's nodes.
///
/// Example:
///   auto r = tapegrad::hvp([](const auto& x) { return x[0] * x[0] * x[1]; }, std::vector{1.0, 2.0}, {1.0, 0.0});
///   // H = [[2 x1, 2 x0], [2 x0, 0]] = [[4, 2], [2, 0]];  r.hvp = H (1, 0) = (4, 2)
template <std::floating_point T, class F>
HvpResult<T> hvp(F&& f, const std::vector<T>& x, const std::vector<T>& v) {
  detail::check_same_size("hvp", "v", v.size(), x.size());
  detail::driver_tape tape;
  Tape::Scope use(tape.get());
  std::vector<basic_value<T>> leaves;
  std::vector<Dual<basic_value<T>>> xs;
  leaves.reserve(x.size());
  xs.reserve(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    leaves.emplace_back(x[i]);
    xs.emplace_back(leaves.back(), basic_value<T>(v[i]));  // the tangent is a constant leaf
  }
  const Dual<basic_value<T>> y = f(std::as_const(xs));
  HvpResult<T> r{y.value.data(), std::vector<T>(x.size()), std::vector<T>(x.size())};
  y.value.backward();
  for (std::size_t i = 0; i < x.size(); ++i) {
    r.grad[i] = leaves[i].grad();
    leaves[i].zero_grad();
  }
  y.tangent.backward();  // d(grad f . v)/dx = H v
  for (std::size_t i = 0; i < x.size(); ++i) r.hvp[i] = leaves[i].grad();
  return r;
}

/// The full Hessian of a scalar f at x, one `hvp` per column (n
/// reverse-over-forward passes). For small n; the result is n x n.
template <std::floating_point T, class F>
DerivativeMatrix<T> hessian(F&& f, const std::vector<T>& x) {
  const std::size_t n = x.size();
  DerivativeMatrix<T> h{n, n, std::vector<T>(n * n), JacobianMode::reverse};
  std::vector<T> e(n, T(0));
  for (std::size_t j = 0; j < n; ++j) {
    e[j] = T(1);
    const HvpResult<T> col = hvp(f, x, e);  // column j: H e_j
    for (std::size_t i = 0; i < n; ++i) h.data[i * n + j] = col.hvp[i];
    e[j] = T(0);
  }
  return h;
}

/// The m x n Jacobian of f at x. Forward mode costs n dual passes (one per
/// column); reverse mode one recorded pass and m reverse sweeps (one per row).
/// `automatic` first runs the dual pass of column 0, which tells m, then keeps
/// going forward when m >= n and switches to reverse when m < n. f is generic:
/// it is called with Dual<T> and, for reverse mode, with basic_value<T>.
///
/// Example:
///   auto j = tapegrad::jacobian([](const auto& x) { return std::vector{x[0] * x[1], x[0] + x[1], x[1]}; },
///                               std::vector{2.0, 3.0});
///   // 3 outputs, 2 inputs: forward, 2 passes. j(0, 0) = x1 = 3, j(0, 1) = x0 = 2
template <std::floating_point T, class F>
DerivativeMatrix<T> jacobian(F&& f, const std::vector<T>& x, JacobianMode mode = JacobianMode::automatic) {
  const std::size_t n = x.size();
  DerivativeMatrix<T> jac;
  jac.cols = n;
  std::vector<T> e(n, T(0));
  std::size_t first = 0;  // columns already done by the probe
  if (mode != JacobianMode::reverse && n > 0) {
    e[0] = T(1);
    const auto col = jvp(f, x, e).tangent;
    e[0] = T(0);
    jac.rows = col.size();
    if (mode == JacobianMode::automatic) mode = jac.rows >= n ? JacobianMode::forward : JacobianMode::reverse;
    if (mode == JacobianMode::forward) {
      jac.data.assign(jac.rows * n, T(0));
      for (std::size_t i = 0; i < jac.rows; ++i) jac.data[i * n] = col[i];
      first = 1;
    }
  }
  if (mode == JacobianMode::reverse) {
    detail::driver_tape tape;
    Tape::Scope use(tape.get());
    std::vector<basic_value<T>> leaves;
    leaves.reserve(n);
    for (T xi : x) leaves.emplace_back(xi);
    const std::vector<basic_value<T>> y = f(std::as_const(leaves));
    jac.rows = y.size();
    jac.data.assign(jac.rows * n, T(0));
    for (std::size_t i = 0; i < jac.rows; ++i) {
      for (auto& l : leaves) l.zero_grad();
      y[i].backward();  // row i: d y_i / dx
      for (std::size_t j = 0; j < n; ++j) jac.data[i * n + j] = leaves[j].grad();
    }
  } else {
    mode = JacobianMode::forward;
    for (std::size_t j = first; j < n; ++j) {
      e[j] = T(1);
      const auto col = jvp(f, x, e).tangent;
      e[j] = T(0);
      if (col.size() != jac.rows)
        throw shape_error("jacobian: f returned " + std::to_string(col.size()) + " outputs after " +
                          std::to_string(jac.rows) + " on the first column");
      for (std::size_t i = 0; i < jac.rows; ++i) jac.data[i * n + j] = col[i];
    }
  }
  jac.mode = mode;
  return jac;
}

}  // namespace tapegrad
