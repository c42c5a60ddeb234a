// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <numbers>
#include <string>
#include <type_traits>
#include <utility>

#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

// Each function computes its value and its local derivative together and
// records them (see detail::recorder: an rvalue operand that is the newest
// statement is extended rather than recorded anew). The derivative is stated
// beside it. A function takes its Value by forwarding reference, so that an
// expression like `sin(x * y)` reaches it as an rvalue. Choices at kinks and
// edges are documented in docs/concepts.md ("Gradients at kinks and edges").

/// x^c for a constant exponent. d/dx = c x^(c-1); taken as 0 when c = 0.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> pow(X&& x, detail::value_t<X> c) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_pow, std::forward<X>(x), [c](T v, T& d) {
    d = c == T(0) ? T(0) : c * std::pow(v, c - T(1));
    return std::pow(v, c);
  });
}

/// c^y for a constant base. d/dy = c^y log c; taken as 0 when c = 0.
template <detail::scalar_value Y>
basic_value<detail::value_t<Y>> pow(detail::value_t<Y> c, Y&& y) {
  using T = detail::value_t<Y>;
  return detail::recorder<T>::unary(detail::op_pow, std::forward<Y>(y), [c](T v, T& d) {
    const T r = std::pow(c, v);
    d = c == T(0) ? T(0) : r * std::log(c);
    return r;
  });
}

/// x^y. d/dx = y x^(y-1), d/dy = x^y log x (taken as 0 when x = 0; NaN for x < 0,
/// where x^y is not differentiable in y over the reals).
template <detail::scalar_value X, detail::scalar_value Y>
requires std::same_as<std::remove_cvref_t<X>, std::remove_cvref_t<Y>> basic_value<detail::value_t<X>> pow(X&& x,
                                                                                                          Y&& y) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::binary(detail::op_pow, std::forward<X>(x), std::forward<Y>(y),
                                     [](T a, T b, T& dx, T& dy) {
                                       const T r = std::pow(a, b);
                                       dx = b == T(0) ? T(0) : b * std::pow(a, b - T(1));
                                       dy = a == T(0) ? T(0) : r * std::log(a);
                                       return r;
                                     });
}

/// e^x. d/dx = e^x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> exp(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_exp, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    const T r = std::exp(v);
    d = r;
    return r;
  });
}

/// Natural logarithm. d/dx = 1/x (infinite at 0).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> log(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_log, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = T(1) / v;
    return std::log(v);
  });
}

/// Square root. d/dx = 1 / (2 sqrt x): an infinite slope at 0, never NaN.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> sqrt(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_sqrt, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    const T r = std::sqrt(v);
    d = T(0.5) / r;
    return r;
  });
}

/// Sine. d/dx = cos x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> sin(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_sin, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = std::cos(v);
    return std::sin(v);
  });
}

/// Cosine. d/dx = -sin x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> cos(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_cos, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = -std::sin(v);
    return std::cos(v);
  });
}

/// Tangent. d/dx = 1 + tan^2 x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> tan(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_tan, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    const T r = std::tan(v);
    d = T(1) + r * r;
    return r;
  });
}

/// Hyperbolic tangent. d/dx = 1 - tanh^2 x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> tanh(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_tanh, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    const T r = std::tanh(v);
    d = T(1) - r * r;
    return r;
  });
}

/// The logistic function 1 / (1 + e^-x), computed without overflow.
/// d/dx = s (1 - s).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> sigmoid(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_sigmoid, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    T s;
    if (v >= T(0)) {
      s = T(1) / (T(1) + std::exp(-v));
    } else {
      const T e = std::exp(v);
      s = e / (T(1) + e);
    }
    d = s * (T(1) - s);
    return s;
  });
}

/// max(x, 0). d/dx = 1 for x > 0, else 0 (so relu'(0) = 0).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> relu(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_relu, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = v > T(0) ? T(1) : T(0);
    return v > T(0) ? v : T(0);
  });
}

/// |x|. d/dx = sign x, with abs'(0) = 0.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> abs(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_abs, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
    return std::abs(v);
  });
}

/// The larger of a and b. The gradient goes to the larger; on a tie it is
/// split in halves, so max(x, x) still has slope 1 in x.
template <detail::scalar_value A, detail::scalar_value B>
requires std::same_as<std::remove_cvref_t<A>, std::remove_cvref_t<B>> basic_value<detail::value_t<A>> max(A&& a,
                                                                                                          B&& b) {
  using T = detail::value_t<A>;
  return detail::recorder<T>::binary(detail::op_max, std::forward<A>(a), std::forward<B>(b),
                                     [](T x, T y, T& da, T& db) {
                                       da = x > y ? T(1) : (x < y ? T(0) : T(0.5));
                                       db = T(1) - da;
                                       return x >= y ? x : y;
                                     });
}
/// max of a Value and a constant.
template <detail::scalar_value A>
basic_value<detail::value_t<A>> max(A&& a, detail::value_t<A> c) {
  using T = detail::value_t<A>;
  return detail::recorder<T>::unary(detail::op_max, std::forward<A>(a), [c](T x, T& d) {
    d = x > c ? T(1) : (x < c ? T(0) : T(0.5));
    return x >= c ? x : c;
  });
}
/// max of a constant and a Value.
template <detail::scalar_value A>
basic_value<detail::value_t<A>> max(detail::value_t<A> c, A&& a) {
  return max(std::forward<A>(a), c);
}

/// The smaller of a and b; ties split the gradient in halves, as for max.
template <detail::scalar_value A, detail::scalar_value B>
requires std::same_as<std::remove_cvref_t<A>, std::remove_cvref_t<B>> basic_value<detail::value_t<A>> min(A&& a,
                                                                                                          B&& b) {
  using T = detail::value_t<A>;
  return detail::recorder<T>::binary(detail::op_min, std::forward<A>(a), std::forward<B>(b),
                                     [](T x, T y, T& da, T& db) {
                                       da = x < y ? T(1) : (x > y ? T(0) : T(0.5));
                                       db = T(1) - da;
                                       return x <= y ? x : y;
                                     });
}
/// min of a Value and a constant.
template <detail::scalar_value A>
basic_value<detail::value_t<A>> min(A&& a, detail::value_t<A> c) {
  using T = detail::value_t<A>;
  return detail::recorder<T>::unary(detail::op_min, std::forward<A>(a), [c](T x, T& d) {
    d = x < c ? T(1) : (x > c ? T(0) : T(0.5));
    return x <= c ? x : c;
  });
}
/// min of a constant and a Value.
template <detail::scalar_value A>
basic_value<detail::value_t<A>> min(detail::value_t<A> c, A&& a) {
  return min(std::forward<A>(a), c);
}

/// log(1 + x), accurate near 0. d/dx = 1 / (1 + x).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> log1p(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_log1p, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = T(1) / (T(1) + v);
    return std::log1p(v);
  });
}

/// e^x - 1, accurate near 0. d/dx = e^x.
template <detail::scalar_value X>
basic_value<detail::value_t<X>> expm1(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_expm1, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    const T r = std::expm1(v);
    d = r + T(1);
    return r;
  });
}

/// The error function. d/dx = 2/sqrt(pi) e^(-x^2).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> erf(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_erf, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = T(2) / std::sqrt(std::numbers::pi_v<T>) * std::exp(-v * v);
    return std::erf(v);
  });
}

/// log(1 + e^x), computed without overflow. d/dx = sigmoid(x).
template <detail::scalar_value X>
basic_value<detail::value_t<X>> softplus(X&& x) {
  using T = detail::value_t<X>;
  return detail::recorder<T>::unary(detail::op_softplus, std::forward<X>(x), []([[maybe_unused]] T v, T& d) {
    d = v >= T(0) ? T(1) / (T(1) + std::exp(-v)) : std::exp(v) / (T(1) + std::exp(v));
    return v > T(0) ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
  });
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
  // The recorder checks the handle: recording a stale one would corrupt the tape.
  return detail::recorder<T>::unary(op, x, [value, slope](T, T& d) {
    d = slope;
    return value;
  });
}

/// A user-defined scalar op of two inputs: `value` is f(a, b), `da` and `db`
/// its partial derivatives.
template <std::floating_point T>
basic_value<T> custom_binary(const basic_value<T>& a, const basic_value<T>& b, std::type_identity_t<T> value,
                             std::type_identity_t<T> da, std::type_identity_t<T> db, const std::string& name) {
  const std::uint16_t op = detail::register_op_name(name);
  return detail::recorder<T>::binary(op, a, b, [value, da, db](T, T, T& pa, T& pb) {
    pa = da;
    pb = db;
    return value;
  });
}

}  // namespace tapegrad
