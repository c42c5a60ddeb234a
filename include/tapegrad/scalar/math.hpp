// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <numbers>
#include <type_traits>

#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

// Each function computes its value and its local derivative together and
// records one node. The derivative is stated beside it. Choices at kinks and
// edges are documented in docs/concepts.md ("Gradients at kinks and edges").

/// x^c for a constant exponent. d/dx = c x^(c-1); taken as 0 when c = 0.
template <std::floating_point T>
basic_value<T> pow(const basic_value<T>& x, std::type_identity_t<T> c) {
  const T v = detail::value_data(x, detail::op_pow);
  const T d = c == T(0) ? T(0) : c * std::pow(v, c - T(1));
  return detail::record_unary<T>(detail::op_pow, std::pow(v, c), x, d);
}

/// c^y for a constant base. d/dy = c^y log c; taken as 0 when c = 0.
template <std::floating_point T>
basic_value<T> pow(std::type_identity_t<T> c, const basic_value<T>& y) {
  const T r = std::pow(c, detail::value_data(y, detail::op_pow));
  return detail::record_unary<T>(detail::op_pow, r, y, c == T(0) ? T(0) : r * std::log(c));
}

/// x^y. d/dx = y x^(y-1), d/dy = x^y log x (taken as 0 when x = 0; NaN for x < 0,
/// where x^y is not differentiable in y over the reals).
template <std::floating_point T>
basic_value<T> pow(const basic_value<T>& x, const basic_value<T>& y) {
  const T a = detail::value_data(x, detail::op_pow), b = detail::value_data(y, detail::op_pow);
  const T r = std::pow(a, b);
  const T dx = b == T(0) ? T(0) : b * std::pow(a, b - T(1));
  const T dy = a == T(0) ? T(0) : r * std::log(a);
  return detail::record_binary<T>(detail::op_pow, r, x, dx, y, dy);
}

/// e^x. d/dx = e^x.
template <std::floating_point T>
basic_value<T> exp(const basic_value<T>& x) {
  const T r = std::exp(detail::value_data(x, detail::op_exp));
  return detail::record_unary<T>(detail::op_exp, r, x, r);
}

/// Natural logarithm. d/dx = 1/x (infinite at 0).
template <std::floating_point T>
basic_value<T> log(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_log);
  return detail::record_unary<T>(detail::op_log, std::log(v), x, T(1) / v);
}

/// Square root. d/dx = 1 / (2 sqrt x): an infinite slope at 0, never NaN.
template <std::floating_point T>
basic_value<T> sqrt(const basic_value<T>& x) {
  const T r = std::sqrt(detail::value_data(x, detail::op_sqrt));
  return detail::record_unary<T>(detail::op_sqrt, r, x, T(0.5) / r);
}

/// Sine. d/dx = cos x.
template <std::floating_point T>
basic_value<T> sin(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_sin);
  return detail::record_unary<T>(detail::op_sin, std::sin(v), x, std::cos(v));
}

/// Cosine. d/dx = -sin x.
template <std::floating_point T>
basic_value<T> cos(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_cos);
  return detail::record_unary<T>(detail::op_cos, std::cos(v), x, -std::sin(v));
}

/// Tangent. d/dx = 1 + tan^2 x.
template <std::floating_point T>
basic_value<T> tan(const basic_value<T>& x) {
  const T r = std::tan(detail::value_data(x, detail::op_tan));
  return detail::record_unary<T>(detail::op_tan, r, x, T(1) + r * r);
}

/// Hyperbolic tangent. d/dx = 1 - tanh^2 x.
template <std::floating_point T>
basic_value<T> tanh(const basic_value<T>& x) {
  const T r = std::tanh(detail::value_data(x, detail::op_tanh));
  return detail::record_unary<T>(detail::op_tanh, r, x, T(1) - r * r);
}

/// The logistic function 1 / (1 + e^-x), computed without overflow.
/// d/dx = s (1 - s).
template <std::floating_point T>
basic_value<T> sigmoid(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_sigmoid);
  T s;
  if (v >= T(0)) {
    s = T(1) / (T(1) + std::exp(-v));
  } else {
    const T e = std::exp(v);
    s = e / (T(1) + e);
  }
  return detail::record_unary<T>(detail::op_sigmoid, s, x, s * (T(1) - s));
}

/// max(x, 0). d/dx = 1 for x > 0, else 0 (so relu'(0) = 0).
template <std::floating_point T>
basic_value<T> relu(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_relu);
  return detail::record_unary<T>(detail::op_relu, v > T(0) ? v : T(0), x, v > T(0) ? T(1) : T(0));
}

/// |x|. d/dx = sign x, with abs'(0) = 0.
template <std::floating_point T>
basic_value<T> abs(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_abs);
  const T sign = v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
  return detail::record_unary<T>(detail::op_abs, std::abs(v), x, sign);
}

/// The larger of a and b. The gradient goes to the larger; on a tie it is
/// split in halves, so max(x, x) still has slope 1 in x.
template <std::floating_point T>
basic_value<T> max(const basic_value<T>& a, const basic_value<T>& b) {
  const T x = detail::value_data(a, detail::op_max), y = detail::value_data(b, detail::op_max);
  const T da = x > y ? T(1) : (x < y ? T(0) : T(0.5));
  return detail::record_binary<T>(detail::op_max, x >= y ? x : y, a, da, b, T(1) - da);
}
template <std::floating_point T>
basic_value<T> max(const basic_value<T>& a, std::type_identity_t<T> c) {
  const T x = detail::value_data(a, detail::op_max);
  return detail::record_unary<T>(detail::op_max, x >= c ? x : c, a, x > c ? T(1) : (x < c ? T(0) : T(0.5)));
}
template <std::floating_point T>
basic_value<T> max(std::type_identity_t<T> c, const basic_value<T>& a) {
  return max(a, c);
}

/// The smaller of a and b; ties split the gradient in halves, as for max.
template <std::floating_point T>
basic_value<T> min(const basic_value<T>& a, const basic_value<T>& b) {
  const T x = detail::value_data(a, detail::op_min), y = detail::value_data(b, detail::op_min);
  const T da = x < y ? T(1) : (x > y ? T(0) : T(0.5));
  return detail::record_binary<T>(detail::op_min, x <= y ? x : y, a, da, b, T(1) - da);
}
template <std::floating_point T>
basic_value<T> min(const basic_value<T>& a, std::type_identity_t<T> c) {
  const T x = detail::value_data(a, detail::op_min);
  return detail::record_unary<T>(detail::op_min, x <= c ? x : c, a, x < c ? T(1) : (x > c ? T(0) : T(0.5)));
}
template <std::floating_point T>
basic_value<T> min(std::type_identity_t<T> c, const basic_value<T>& a) {
  return min(a, c);
}

/// log(1 + x), accurate near 0. d/dx = 1 / (1 + x).
template <std::floating_point T>
basic_value<T> log1p(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_log1p);
  return detail::record_unary<T>(detail::op_log1p, std::log1p(v), x, T(1) / (T(1) + v));
}

/// e^x - 1, accurate near 0. d/dx = e^x.
template <std::floating_point T>
basic_value<T> expm1(const basic_value<T>& x) {
  const T r = std::expm1(detail::value_data(x, detail::op_expm1));
  return detail::record_unary<T>(detail::op_expm1, r, x, r + T(1));
}

/// The error function. d/dx = 2/sqrt(pi) e^(-x^2).
template <std::floating_point T>
basic_value<T> erf(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_erf);
  const T d = T(2) / std::sqrt(std::numbers::pi_v<T>) * std::exp(-v * v);
  return detail::record_unary<T>(detail::op_erf, std::erf(v), x, d);
}

/// log(1 + e^x), computed without overflow. d/dx = sigmoid(x).
template <std::floating_point T>
basic_value<T> softplus(const basic_value<T>& x) {
  const T v = detail::value_data(x, detail::op_softplus);
  const T r = v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
  const T s = v >= T(0) ? T(1) / (T(1) + std::exp(-v)) : std::exp(v) / (T(1) + std::exp(v));
  return detail::record_unary<T>(detail::op_softplus, r, x, s);
}

/// A user-defined scalar op: `value` is f(x), `slope` is f'(x). The node is
/// printed under `name`.
///
/// Example:
///   // y = cbrt(x); dy/dx = 1 / (3 cbrt(x)^2)
///   const double c = std::cbrt(x.data());
///   Value y = tapegrad::custom_unary(x, c, 1.0 / (3.0 * c * c), "cbrt");
template <std::floating_point T>
basic_value<T> custom_unary(const basic_value<T>& x, std::type_identity_t<T> value, std::type_identity_t<T> slope,
                            const std::string& name) {
  const std::uint16_t op = detail::register_op_name(name);
  (void)detail::value_data(x, op);  // checks the handle: recording a stale one would corrupt the tape
  return detail::record_unary<T>(op, value, x, slope);
}

/// A user-defined scalar op of two inputs: `value` is f(a, b), `da` and `db`
/// its partial derivatives.
template <std::floating_point T>
basic_value<T> custom_binary(const basic_value<T>& a, const basic_value<T>& b, std::type_identity_t<T> value,
                             std::type_identity_t<T> da, std::type_identity_t<T> db, const std::string& name) {
  const std::uint16_t op = detail::register_op_name(name);
  (void)detail::value_data(a, op);  // checks both handles, as the library's ops do
  (void)detail::value_data(b, op);
  return detail::record_binary<T>(op, value, a, da, b, db);
}

}  // namespace tapegrad
