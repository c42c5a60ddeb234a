// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <compare>
#include <concepts>
#include <numbers>
#include <ostream>
#include <type_traits>
#include <utility>

#include "tapegrad/scalar/math.hpp"
#include "tapegrad/scalar/value.hpp"

// Forward mode: a dual number carries a value and a tangent, the derivative
// of that value along one chosen direction of the inputs. Every operation
// computes both: for y = g(x), y' = g'(x) x'. One forward pass of duals gives
// f(x) and the directional derivative J v, with no tape.
//
// The scalar S may be a plain floating type (Dual<double>: forward mode) or a
// Value (Dual<Value>: every value and tangent is recorded on the tape, so a
// reverse sweep from a tangent differentiates the directional derivative;
// that is how `hvp` gets a Hessian-vector product). The rules below are
// written once for both: each states its derivative.

namespace tapegrad {

namespace detail {

template <class S>
struct dual_real {
  using type = S;
};
template <std::floating_point T>
struct dual_real<basic_value<T>> {
  using type = T;
};

/// The plain number inside a scalar (itself, or a Value's data).
template <std::floating_point T>
T primal(T x) noexcept {
  return x;
}
template <std::floating_point T>
T primal(const basic_value<T>& x) {
  return x.data();
}

/// The logistic function of a plain number, without overflow.
template <std::floating_point T>
T plain_sigmoid(T v) {
  if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
  const T e = std::exp(v);
  return e / (T(1) + e);
}

// exp, log, ... of a scalar S: the standard function for a plain number,
// tapegrad's recorded one for a Value (found by argument-dependent lookup).
template <class S>
S s_exp(const S& x) {
  using std::exp;
  return exp(x);
}
template <class S>
S s_log(const S& x) {
  using std::log;
  return log(x);
}
template <class S>
S s_sqrt(const S& x) {
  using std::sqrt;
  return sqrt(x);
}
template <class S>
S s_sin(const S& x) {
  using std::sin;
  return sin(x);
}
template <class S>
S s_cos(const S& x) {
  using std::cos;
  return cos(x);
}
template <class S>
S s_tan(const S& x) {
  using std::tan;
  return tan(x);
}
template <class S>
S s_tanh(const S& x) {
  using std::tanh;
  return tanh(x);
}
template <class S>
S s_log1p(const S& x) {
  using std::log1p;
  return log1p(x);
}
template <class S>
S s_expm1(const S& x) {
  using std::expm1;
  return expm1(x);
}
template <class S>
S s_erf(const S& x) {
  using std::erf;
  return erf(x);
}
template <class S, class E>
S s_pow(const S& x, const E& e) {
  using std::pow;
  return pow(x, e);
}
template <class S, class R>
S s_pow_base(R c, const S& y) {
  using std::pow;
  return pow(c, y);
}
template <class S>
S s_sigmoid(const S& x) {
  if constexpr (std::is_floating_point_v<S>)
    return plain_sigmoid(x);
  else
    return sigmoid(x);
}
template <class S>
S s_softplus(const S& x) {
  if constexpr (std::is_floating_point_v<S>)
    return x > S(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  else
    return softplus(x);
}

}  // namespace detail

/// A dual number: `value` and `tangent`, the derivative of the value along a
/// direction chosen by seeding the inputs' tangents. `Dual<double>` is plain
/// forward mode; `Dual<Value>` records both parts on the tape, so a reverse
/// sweep from the tangent gives second derivatives (see `hvp`).
///
/// Example:
///   Dual<double> x(2.0, 1.0);            // x = 2, dx = 1
///   Dual<double> y = x * x + 3.0 * x;    // y = 10
///   y.tangent;                           // dy/dx = 2x + 3 = 7
template <class S>
struct Dual {
  /// The plain floating type underneath (double for Dual<Value> and Dual<double>).
  using real_type = typename detail::dual_real<S>::type;

  S value;    ///< the value
  S tangent;  ///< its derivative along the seeded direction

  /// Zero, with zero tangent.
  Dual() : value(real_type(0)), tangent(real_type(0)) {}
  /// A constant: tangent zero.
  Dual(const S& v) : value(v), tangent(real_type(0)) {}  // NOLINT(google-explicit-constructor)
  /// A plain number as a constant (for Dual<Value>: `Dual<Value> c = 2.0;`).
  Dual(real_type v) requires(!std::same_as<S, real_type>) : value(v), tangent(real_type(0)) {}
  /// A value with its tangent.
  Dual(S v, S t) : value(std::move(v)), tangent(std::move(t)) {}

  // Operands are taken by value and their last use moved, so that for
  // Dual<Value> a temporary's statements can be extended rather than
  // recorded again (see docs/concepts.md, "How a statement is recorded").
  // d(a+b) = da + db
  friend Dual operator+(Dual a, Dual b) {
    return {std::move(a.value) + std::move(b.value), std::move(a.tangent) + std::move(b.tangent)};
  }
  // d(a-b) = da - db
  friend Dual operator-(Dual a, Dual b) {
    return {std::move(a.value) - std::move(b.value), std::move(a.tangent) - std::move(b.tangent)};
  }
  // d(a*b) = da b + a db
  friend Dual operator*(Dual a, Dual b) {
    return {a.value * b.value, std::move(a.tangent) * b.value + a.value * std::move(b.tangent)};
  }
  // d(a/b) = (da - (a/b) db) / b
  friend Dual operator/(Dual a, Dual b) {
    const S q = a.value / b.value;
    return {q, (std::move(a.tangent) - q * std::move(b.tangent)) / b.value};
  }
  // d(-a) = -da
  friend Dual operator-(Dual a) { return {-std::move(a.value), -std::move(a.tangent)}; }
  friend Dual operator+(const Dual& a) { return a; }

  // With a plain constant c: d(a+c) = da, d(a*c) = c da, d(c/a) = -c da / a^2.
  friend Dual operator+(const Dual& a, real_type c) { return {a.value + c, a.tangent}; }
  friend Dual operator+(real_type c, const Dual& a) { return {c + a.value, a.tangent}; }
  friend Dual operator-(const Dual& a, real_type c) { return {a.value - c, a.tangent}; }
  friend Dual operator-(real_type c, const Dual& a) { return {c - a.value, -a.tangent}; }
  friend Dual operator*(const Dual& a, real_type c) { return {a.value * c, a.tangent * c}; }
  friend Dual operator*(real_type c, const Dual& a) { return {c * a.value, c * a.tangent}; }
  friend Dual operator/(const Dual& a, real_type c) { return {a.value / c, a.tangent / c}; }
  friend Dual operator/(real_type c, const Dual& a) {
    const S q = c / a.value;
    return {q, -q * a.tangent / a.value};
  }

  Dual& operator+=(const Dual& o) { return *this = *this + o; }
  Dual& operator-=(const Dual& o) { return *this = *this - o; }
  Dual& operator*=(const Dual& o) { return *this = *this * o; }
  Dual& operator/=(const Dual& o) { return *this = *this / o; }

  // Comparisons look at the values only, as Value's do.
  friend bool operator==(const Dual& a, const Dual& b) { return detail::primal(a.value) == detail::primal(b.value); }
  friend auto operator<=>(const Dual& a, const Dual& b) { return detail::primal(a.value) <=> detail::primal(b.value); }
  friend bool operator==(const Dual& a, real_type c) { return detail::primal(a.value) == c; }
  friend auto operator<=>(const Dual& a, real_type c) { return detail::primal(a.value) <=> c; }

  friend std::ostream& operator<<(std::ostream& os, const Dual& d) {
    return os << "Dual(value=" << detail::primal(d.value) << ", tangent=" << detail::primal(d.tangent) << ")";
  }
};

// ---- the scalar math functions, each with its forward rule ------------------
// Kinks and edges follow scalar/math.hpp: relu'(0) = 0, abs'(0) = 0, ties of
// max and min split the derivative in halves.

/// e^x. d = e^x dx.
template <class S>
Dual<S> exp(const Dual<S>& x) {
  const S r = detail::s_exp(x.value);
  return {r, r * x.tangent};
}

/// log x. d = dx / x.
template <class S>
Dual<S> log(const Dual<S>& x) {
  return {detail::s_log(x.value), x.tangent / x.value};
}

/// sqrt x. d = dx / (2 sqrt x).
template <class S>
Dual<S> sqrt(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_sqrt(x.value);
  return {r, x.tangent / (R(2) * r)};
}

/// sin x. d = cos x dx.
template <class S>
Dual<S> sin(const Dual<S>& x) {
  return {detail::s_sin(x.value), detail::s_cos(x.value) * x.tangent};
}

/// cos x. d = -sin x dx.
template <class S>
Dual<S> cos(const Dual<S>& x) {
  return {detail::s_cos(x.value), -(detail::s_sin(x.value) * x.tangent)};
}

/// tan x. d = (1 + tan^2 x) dx.
template <class S>
Dual<S> tan(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_tan(x.value);
  return {r, (R(1) + r * r) * x.tangent};
}

/// tanh x. d = (1 - tanh^2 x) dx.
template <class S>
Dual<S> tanh(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_tanh(x.value);
  return {r, (R(1) - r * r) * x.tangent};
}

/// The logistic function s. d = s (1 - s) dx.
template <class S>
Dual<S> sigmoid(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const S s = detail::s_sigmoid(x.value);
  return {s, s * (R(1) - s) * x.tangent};
}

/// max(x, 0). d = dx where x > 0, else 0.
template <class S>
Dual<S> relu(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const bool on = detail::primal(x.value) > R(0);
  return {on ? x.value : S(R(0)), on ? x.tangent : S(R(0))};
}

/// |x|. d = sign(x) dx, with sign(0) = 0.
template <class S>
Dual<S> abs(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const R v = detail::primal(x.value);
  const R sign = v > R(0) ? R(1) : (v < R(0) ? R(-1) : R(0));
  return {x.value * sign, x.tangent * sign};
}

/// The larger of a and b. d = da or db; on a tie (da + db) / 2.
template <class S>
Dual<S> max(const Dual<S>& a, const Dual<S>& b) {
  using R = typename Dual<S>::real_type;
  const R x = detail::primal(a.value), y = detail::primal(b.value);
  if (x > y) return a;
  if (x < y) return b;
  return {a.value, R(0.5) * (a.tangent + b.tangent)};
}

/// The smaller of a and b. d = da or db; on a tie (da + db) / 2.
template <class S>
Dual<S> min(const Dual<S>& a, const Dual<S>& b) {
  using R = typename Dual<S>::real_type;
  const R x = detail::primal(a.value), y = detail::primal(b.value);
  if (x < y) return a;
  if (x > y) return b;
  return {a.value, R(0.5) * (a.tangent + b.tangent)};
}

/// log(1 + x). d = dx / (1 + x).
template <class S>
Dual<S> log1p(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  return {detail::s_log1p(x.value), x.tangent / (R(1) + x.value)};
}

/// e^x - 1. d = e^x dx.
template <class S>
Dual<S> expm1(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_expm1(x.value);
  return {r, (r + R(1)) * x.tangent};
}

/// The error function. d = 2/sqrt(pi) e^(-x^2) dx.
template <class S>
Dual<S> erf(const Dual<S>& x) {
  using R = typename Dual<S>::real_type;
  const R k = R(2) / std::sqrt(std::numbers::pi_v<R>);
  return {detail::s_erf(x.value), k * detail::s_exp(-(x.value * x.value)) * x.tangent};
}

/// log(1 + e^x). d = sigmoid(x) dx.
template <class S>
Dual<S> softplus(const Dual<S>& x) {
  return {detail::s_softplus(x.value), detail::s_sigmoid(x.value) * x.tangent};
}

/// x^c for a constant c. d = c x^(c-1) dx; zero when c = 0.
template <class S>
Dual<S> pow(const Dual<S>& x, std::type_identity_t<typename Dual<S>::real_type> c) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_pow(x.value, c);
  if (c == R(0)) return {r, S(R(0))};
  return {r, c * detail::s_pow(x.value, c - R(1)) * x.tangent};
}

/// c^y for a constant c. d = c^y log c dy; zero when c = 0.
template <class S>
Dual<S> pow(std::type_identity_t<typename Dual<S>::real_type> c, const Dual<S>& y) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_pow_base(c, y.value);
  if (c == R(0)) return {r, S(R(0))};
  return {r, r * std::log(c) * y.tangent};
}

/// x^y. d = y x^(y-1) dx + x^y log x dy; the dy part is taken as zero when x = 0.
template <class S>
Dual<S> pow(const Dual<S>& x, const Dual<S>& y) {
  using R = typename Dual<S>::real_type;
  const S r = detail::s_pow(x.value, y.value);
  const S dx = detail::s_pow(x.value, y.value - R(1)) * y.value * x.tangent;
  if (detail::primal(x.value) == R(0)) return {r, dx};
  return {r, dx + r * detail::s_log(x.value) * y.tangent};
}

}  // namespace tapegrad
