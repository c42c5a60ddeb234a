// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

/// What `value_and_grad` returns: f's value and its gradient.
template <class T, class G>
struct ValueAndGrad {
  T value;
  G grad;
};

namespace detail {

template <class... A>
using common_float_t = std::conditional_t<(std::is_same_v<std::decay_t<A>, float> && ...), float, double>;

template <class T, class F, class... A>
auto run_scalar_function(F& f, Tape& tape, A... xs) {
  Tape::Scope use(tape);
  std::array<basic_value<T>, sizeof...(A)> leaves{basic_value<T>(static_cast<T>(xs))...};
  basic_value<T> y = std::apply([&](auto&... v) { return basic_value<T>(f(v...)); }, leaves);
  y.backward();
  std::array<T, sizeof...(A)> g{};
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = leaves[i].grad();
  return std::pair{y.data(), g};
}

}  // namespace detail

/// f's value and its gradient with respect to every argument, as JAX's
/// `value_and_grad(f, argnums=(0, 1, ...))`. f takes Values and returns a Value;
/// it runs on a fresh tape of its own, so nothing lands on yours.
///
/// Example:
///   auto [loss, g] = tapegrad::value_and_grad([](Value a, Value b) { return a * a + b * b; }, 2.0, 3.0);
///   // loss = 13, g = {4, 6}
template <class F, class... A>
requires(sizeof...(A) >= 1 && (std::is_arithmetic_v<A> && ...)) auto value_and_grad(F&& f, A... xs) {
  using T = detail::common_float_t<A...>;
  Tape tape;
  auto [v, g] = detail::run_scalar_function<T>(f, tape, xs...);
  return ValueAndGrad<T, std::array<T, sizeof...(A)>>{v, g};
}

/// The gradient of f with respect to every argument: an array with one entry
/// per argument (a plain number when f has one argument).
///
/// Example:
///   auto [ga, gb] = tapegrad::grad([](Value a, Value b) { return a * a + b * b; }, 2.0, 3.0);  // 4, 6
template <class F, class... A>
requires(sizeof...(A) >= 1 && (std::is_arithmetic_v<A> && ...)) auto grad(F&& f, A... xs) {
  auto r = value_and_grad(std::forward<F>(f), xs...);
  if constexpr (sizeof...(A) == 1)
    return r.grad[0];
  else
    return r.grad;
}

/// The vector form: f takes `const std::vector<basic_value<T>>&`.
template <std::floating_point T, class F>
ValueAndGrad<T, std::vector<T>> value_and_grad(F&& f, const std::vector<T>& xs) {
  Tape tape;
  Tape::Scope use(tape);
  std::vector<basic_value<T>> leaves;
  leaves.reserve(xs.size());
  for (T x : xs) leaves.emplace_back(x);
  basic_value<T> y = f(leaves);
  y.backward();
  std::vector<T> g(xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) g[i] = leaves[i].grad();
  return {y.data(), std::move(g)};
}

/// The vector form of `grad`.
template <std::floating_point T, class F>
std::vector<T> grad(F&& f, const std::vector<T>& xs) {
  return value_and_grad(std::forward<F>(f), xs).grad;
}

}  // namespace tapegrad
