// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <numbers>
#include <type_traits>

#include "tapegrad/tensor/detail/broadcast.hpp"
#include "tapegrad/tensor/detail/elementwise_kernels.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

// Elementwise ops. Binary ops broadcast as NumPy does (see detail/broadcast.hpp);
// the gradient of a broadcast operand is summed back to its shape. Each op
// states its derivative beside its backward rule. Kinks follow the scalar ops
// (scalar/math.hpp): relu'(0) = 0, abs'(0) = 0, sqrt has an infinite slope at
// 0, never NaN. Ops whose slope can be infinite at a finite input (log, sqrt,
// pow, division) pass exactly 0 on where their incoming gradient is exactly 0,
// as the scalar tape does, instead of 0 * inf = NaN.

// ---- arithmetic --------------------------------------------------------------

/// a + b, broadcasting.
template <std::floating_point T>
basic_tensor<T> add(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return make_op<T>(
      "add", detail::broadcast_shapes("add", a.shape(), b.shape()), {a, b},
      [](OpContext<T>& c) { detail::binary_forward(c, [](const auto& x, const auto& y) { return x + y; }); },
      // d(a+b)/da = 1, d(a+b)/db = 1, summed over broadcast dimensions
      [](OpContext<T>& c) {
        for (std::size_t k = 0; k < 2; ++k)
          if (c.needs_grad(k)) detail::unbroadcast_add(c.out_grad(), c.out_shape(), c.in_grad(k), c.shape(k));
      },
      // d(a+b) = da + db
      [](const JvpContext<T>& j) {
        return detail::widen_tangent(detail::tangent_add(j.tangent(0), j.tangent(1)), j.out().shape());
      });
}

/// a - b, broadcasting.
template <std::floating_point T>
basic_tensor<T> sub(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return make_op<T>(
      "sub", detail::broadcast_shapes("sub", a.shape(), b.shape()), {a, b},
      [](OpContext<T>& c) { detail::binary_forward(c, [](const auto& x, const auto& y) { return x - y; }); },
      // d(a-b)/da = 1, d(a-b)/db = -1
      [](OpContext<T>& c) {
        if (c.needs_grad(0)) detail::unbroadcast_add(c.out_grad(), c.out_shape(), c.in_grad(0), c.shape(0));
        detail::binary_backward(c, 1, [](const auto&, const auto&, const auto&) { return T(-1); });
      },
      // d(a-b) = da - db
      [](const JvpContext<T>& j) {
        const basic_tensor<T> mdb = j.has_tangent(1) ? -j.tangent(1) : basic_tensor<T>();
        return detail::widen_tangent(detail::tangent_add(j.tangent(0), mdb), j.out().shape());
      });
}

/// a * b elementwise, broadcasting.
template <std::floating_point T>
basic_tensor<T> mul(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return make_op<T>(
      "mul", detail::broadcast_shapes("mul", a.shape(), b.shape()), {a, b},
      [](OpContext<T>& c) { detail::binary_forward(c, [](const auto& x, const auto& y) { return x * y; }); },
      // d(a*b)/da = b, d(a*b)/db = a
      [](OpContext<T>& c) {
        detail::binary_backward(c, 0, [](const auto&, const auto& y, const auto&) { return y; });
        detail::binary_backward(c, 1, [](const auto& x, const auto&, const auto&) { return x; });
      },
      // d(a*b) = da b + a db
      [](const JvpContext<T>& j) {
        basic_tensor<T> t;
        if (j.has_tangent(0)) t = j.tangent(0) * j.in(1);
        if (j.has_tangent(1)) t = detail::tangent_add(t, j.in(0) * j.tangent(1));
        return detail::widen_tangent(t, j.out().shape());
      });
}

/// a / b elementwise, broadcasting.
template <std::floating_point T>
basic_tensor<T> div(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return make_op<T>(
      "div", detail::broadcast_shapes("div", a.shape(), b.shape()), {a, b},
      [](OpContext<T>& c) { detail::binary_forward(c, [](const auto& x, const auto& y) { return x / y; }); },
      // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -(a/b)/b
      [](OpContext<T>& c) {
        detail::binary_backward<T, true>(c, 0, [](const auto&, const auto& y, const auto&) { return T(1) / y; });
        detail::binary_backward<T, true>(c, 1, [](const auto&, const auto& y, const auto& q) { return -q / y; });
      },
      // d(a/b) = da / b - (a/b) db / b = (da - q db) / b
      [](const JvpContext<T>& j) {
        const basic_tensor<T> qdb = j.has_tangent(1) ? -(j.out() * j.tangent(1)) : basic_tensor<T>();
        return detail::widen_tangent(detail::tangent_add(j.tangent(0), qdb) / j.in(1), j.out().shape());
      });
}

/// -x. d(-x)/dx = -1.
template <std::floating_point T>
basic_tensor<T> neg(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "neg", x, [](const auto& v) { return -v; }, [](const auto&, const auto&) { return T(-1); },
      [](const JvpContext<T>& j) { return -j.tangent(0); });
}

/// x + c for a plain number c. d/dx = 1.
template <std::floating_point T>
basic_tensor<T> add(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return detail::unary_op<T>(
      "add_scalar", x, [c](const auto& v) { return v + c; }, [](const auto&, const auto&) { return T(1); },
      [](const JvpContext<T>& j) { return j.tangent(0); });
}

/// x * c for a plain number c. d/dx = c.
template <std::floating_point T>
basic_tensor<T> mul(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return detail::unary_op<T>(
      "mul_scalar", x, [c](const auto& v) { return v * c; }, [c](const auto&, const auto&) { return c; },
      [c](const JvpContext<T>& j) { return j.tangent(0) * c; });
}

/// x / c for a plain number c. d/dx = 1/c.
template <std::floating_point T>
basic_tensor<T> div(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return detail::unary_op<T>(
      "div_scalar", x, [c](const auto& v) { return v / c; }, [c](const auto&, const auto&) { return T(1) / c; },
      [c](const JvpContext<T>& j) { return j.tangent(0) / c; });
}

/// c - x for a plain number c. d/dx = -1.
template <std::floating_point T>
basic_tensor<T> sub(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "rsub_scalar", x, [c](const auto& v) { return c - v; }, [](const auto&, const auto&) { return T(-1); },
      [](const JvpContext<T>& j) { return -j.tangent(0); });
}

/// c / x for a plain number c. d/dx = -c/x^2 = -y/x.
template <std::floating_point T>
basic_tensor<T> div(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return detail::unary_op<T, true>(
      "rdiv_scalar", x, [c](const auto& v) { return c * v.inverse(); },
      [](const auto& v, const auto& y) { return -y / v; },
      [](const JvpContext<T>& j) { return -(j.out() / j.in(0)) * j.tangent(0); });
}

// Operators: between tensors, and with a plain number on either side
// (`x * 2.0` works for a float tensor: the number converts to the tensor's type).

/// a + b, broadcasting (see `add`).
template <std::floating_point T>
basic_tensor<T> operator+(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return add(a, b);
}
/// a - b, broadcasting (see `sub`).
template <std::floating_point T>
basic_tensor<T> operator-(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return sub(a, b);
}
/// a * b elementwise, broadcasting (see `mul`).
template <std::floating_point T>
basic_tensor<T> operator*(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return mul(a, b);
}
/// a / b elementwise, broadcasting (see `div`).
template <std::floating_point T>
basic_tensor<T> operator/(const basic_tensor<T>& a, const basic_tensor<T>& b) {
  return div(a, b);
}
/// -x (see `neg`).
template <std::floating_point T>
basic_tensor<T> operator-(const basic_tensor<T>& x) {
  return neg(x);
}

/// x + c.
template <std::floating_point T>
basic_tensor<T> operator+(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return add(x, c);
}
/// c + x.
template <std::floating_point T>
basic_tensor<T> operator+(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return add(x, c);
}
/// x - c.
template <std::floating_point T>
basic_tensor<T> operator-(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return add(x, -c);
}
/// c - x.
template <std::floating_point T>
basic_tensor<T> operator-(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return sub(c, x);
}
/// x * c.
template <std::floating_point T>
basic_tensor<T> operator*(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return mul(x, c);
}
/// c * x.
template <std::floating_point T>
basic_tensor<T> operator*(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return mul(x, c);
}
/// x / c.
template <std::floating_point T>
basic_tensor<T> operator/(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  return div(x, c);
}
/// c / x.
template <std::floating_point T>
basic_tensor<T> operator/(std::type_identity_t<T> c, const basic_tensor<T>& x) {
  return div(c, x);
}

// ---- math functions ------------------------------------------------------------

/// e^x. d/dx = e^x = y.
template <std::floating_point T>
basic_tensor<T> exp(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "exp", x, [](const auto& v) { return v.exp(); }, [](const auto&, const auto& y) { return y; },
      [](const JvpContext<T>& j) { return j.out() * j.tangent(0); });
}

/// Natural logarithm. d/dx = 1/x (infinite at 0).
template <std::floating_point T>
basic_tensor<T> log(const basic_tensor<T>& x) {
  return detail::unary_op<T, true>(
      "log", x, [](const auto& v) { return v.log(); }, [](const auto& v, const auto&) { return v.inverse(); },
      [](const JvpContext<T>& j) { return j.tangent(0) / j.in(0); });
}

/// Square root. d/dx = 1 / (2 sqrt x): infinite at 0, never NaN.
template <std::floating_point T>
basic_tensor<T> sqrt(const basic_tensor<T>& x) {
  return detail::unary_op<T, true>(
      "sqrt", x, [](const auto& v) { return v.sqrt(); },
      [](const auto&, const auto& y) { return T(0.5) * y.inverse(); },
      [](const JvpContext<T>& j) { return j.tangent(0) / j.out() * T(0.5); });
}

/// x^c for a plain number c. d/dx = c x^(c-1), taken as 0 when c = 0.
template <std::floating_point T>
basic_tensor<T> pow(const basic_tensor<T>& x, std::type_identity_t<T> c) {
  if (c == T(0))  // x^0 = 1, a constant
    return detail::unary_op<T>(
        "pow_scalar", x, [](const auto& v) { return v.pow(T(0)); }, [](const auto&, const auto&) { return T(0); },
        [](const JvpContext<T>&) { return basic_tensor<T>(); });
  return detail::unary_op<T, true>(
      "pow_scalar", x, [c](const auto& v) { return v.pow(c); },
      [c](const auto& v, const auto&) { return c * v.pow(c - T(1)); },
      // d(x^c) = c x^(c-1) dx
      [c](const JvpContext<T>& j) { return j.tangent(0) * pow(j.in(0), c - T(1)) * c; });
}

/// x^y elementwise, broadcasting. d/dx = y x^(y-1) (0 where y = 0);
/// d/dy = x^y log x (0 where x = 0; NaN for x < 0, as on the scalar tape).
template <std::floating_point T>
basic_tensor<T> pow(const basic_tensor<T>& x, const basic_tensor<T>& y) {
  return make_op<T>(
      "pow", detail::broadcast_shapes("pow", x.shape(), y.shape()), {x, y},
      [](OpContext<T>& c) { detail::binary_forward_general(c, [](T a, T b) { return std::pow(a, b); }); },
      [](OpContext<T>& c) {
        detail::binary_backward_general(c, 0, [](T a, T b, T) { return b == T(0) ? T(0) : b * std::pow(a, b - T(1)); });
        detail::binary_backward_general(c, 1, [](T a, T, T r) { return a == T(0) ? T(0) : r * std::log(a); });
      },
      // d(x^y) = y x^(y-1) dx + x^y log(x) dy
      [](const JvpContext<T>& j) {
        basic_tensor<T> t;
        if (j.has_tangent(0)) t = j.tangent(0) * j.in(1) * pow(j.in(0), j.in(1) - T(1));
        if (j.has_tangent(1)) t = detail::tangent_add(t, j.tangent(1) * j.out() * log(j.in(0)));
        return detail::widen_tangent(t, j.out().shape());
      });
}

/// |x|. d/dx = sign x, with abs'(0) = 0.
template <std::floating_point T>
basic_tensor<T> abs(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "abs", x, [](const auto& v) { return v.abs(); }, [](const auto& v, const auto&) { return v.sign(); },
      [](const JvpContext<T>& j) {
        return j.tangent(0) * detail::constant_of(j.in(0), [](const auto& v) { return v.sign(); });
      });
}

/// Hyperbolic tangent. d/dx = 1 - y^2.
template <std::floating_point T>
basic_tensor<T> tanh(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "tanh", x, [](const auto& v) { return v.tanh(); }, [](const auto&, const auto& y) { return T(1) - y.square(); },
      [](const JvpContext<T>& j) { return j.tangent(0) * (T(1) - j.out() * j.out()); });
}

/// The logistic function 1 / (1 + e^-x) (no overflow: e^-x = inf gives 0).
/// d/dx = y (1 - y).
template <std::floating_point T>
basic_tensor<T> sigmoid(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "sigmoid", x, [](const auto& v) { return (T(1) + (-v).exp()).inverse(); },
      [](const auto&, const auto& y) { return y * (T(1) - y); },
      [](const JvpContext<T>& j) { return j.tangent(0) * j.out() * (T(1) - j.out()); });
}

/// max(x, 0). d/dx = 1 for x > 0, else 0 (relu'(0) = 0).
template <std::floating_point T>
basic_tensor<T> relu(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "relu", x, [](const auto& v) { return v.max(T(0)); },
      [](const auto& v, const auto&) { return (v > T(0)).template cast<T>(); },
      [](const JvpContext<T>& j) {
        return j.tangent(0) * detail::constant_of(j.in(0), [](const auto& v) { return (v > T(0)).template cast<T>(); });
      });
}

/// GELU in its tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <std::floating_point T>
basic_tensor<T> gelu(const basic_tensor<T>& x) {
  using Vec = typename OpContext<T>::Vec;
  return make_op<T>(
      "gelu", x.shape(), {x}, [](OpContext<T>& c) { c.out_vec() = detail::gelu_value<T>(c.in_vec(0)); },
      [](OpContext<T>& c) {
        const auto v = c.in_vec(0);
        Eigen::Map<Vec> t(c.scratch(v.size()), v.size());
        t = detail::gelu_tanh<T>(v);  // once, not once per use in the slope
        c.in_grad_vec(0) += c.out_grad_vec() * detail::gelu_slope<T>(v, t);
      },
      // dy = gelu'(x) dx, the slope written with tensor ops so that it differentiates
      [](const JvpContext<T>& j) { return j.tangent(0) * detail::gelu_slope_tensor(j.in(0)); });
}

/// x limited to [lo, hi]. d/dx = 1 where lo <= x <= hi, else 0 (as PyTorch:
/// the bounds themselves pass the gradient).
template <std::floating_point T>
basic_tensor<T> clamp(const basic_tensor<T>& x, std::type_identity_t<T> lo, std::type_identity_t<T> hi) {
  if (!(lo <= hi)) throw value_error("clamp: lo " + std::to_string(lo) + " exceeds hi " + std::to_string(hi));
  return detail::unary_op<T>(
      "clamp", x, [lo, hi](const auto& v) { return v.max(lo).min(hi); },
      [lo, hi](const auto& v, const auto&) { return (v >= lo && v <= hi).template cast<T>(); },
      [lo, hi](const JvpContext<T>& j) {
        return j.tangent(0) * detail::constant_of(
                                  j.in(0), [lo, hi](const auto& v) { return (v >= lo && v <= hi).template cast<T>(); });
      });
}

/// The activation applied by `bias_act`.
enum class Activation {
  none,  ///< identity: bias_act is then a plain bias add
  relu,  ///< max(z, 0)
  gelu,  ///< GELU, tanh form
};

/// act(x + bias) in one node: the bias (shape [D]) is added to every row of x
/// (shape [.., D]), then the activation runs. What a Linear layer followed by
/// ReLU or GELU needs, without the intermediate z = x + bias in memory: the
/// backward pass recomputes z row by row.
/// With g = dL/dy: dL/dx = g act'(z), dL/dbias = that summed over the rows.
template <std::floating_point T>
basic_tensor<T> bias_act(const basic_tensor<T>& x, const basic_tensor<T>& bias, Activation act) {
  const Shape& xs = x.shape();
  if (bias.rank() != 1 || xs.rank() == 0 || xs[-1] != bias.size(0))
    throw shape_error("bias_act: " + xs.str() + " and bias " + bias.shape().str() +
                      ": the bias must have shape [D] for an input of shape [.., D]");
  using Vec = typename OpContext<T>::Vec;
  using CMap = Eigen::Map<const Vec>;
  return make_op<T>(
      "bias_act", xs, {x, bias},
      [act](OpContext<T>& c) {
        const index_t d = c.shape(1).numel(), n = c.out_shape().numel();
        const CMap b(c.in(1), d);
        for (index_t r = 0; r < n; r += d) {
          const auto z = CMap(c.in(0) + r, d) + b;
          Eigen::Map<Vec> y(c.out() + r, d);
          if (act == Activation::relu)
            y = z.max(T(0));
          else if (act == Activation::gelu)
            y = detail::gelu_value<T>(z);
          else
            y = z;
        }
      },
      [act](OpContext<T>& c) {
        const index_t d = c.shape(1).numel(), n = c.out_shape().numel();
        const CMap b(c.in(1), d);
        T* gx = c.needs_grad(0) ? c.in_grad(0) : nullptr;
        T* gb = c.needs_grad(1) ? c.in_grad(1) : nullptr;
        // One row at a time: z, tanh u (for GELU) and dL/dz, in scratch.
        Eigen::Map<Vec> z(c.scratch(d), d), t(c.scratch(d), d), dzr(c.scratch(d), d);
        for (index_t r = 0; r < n; r += d) {
          const CMap g(c.out_grad() + r, d);
          z = CMap(c.in(0) + r, d) + b;
          if (act == Activation::relu) {
            dzr = (z > T(0)).select(g, T(0));  // relu'(0) = 0
          } else if (act == Activation::gelu) {
            t = detail::gelu_tanh<T>(z);
            dzr = g * detail::gelu_slope<T>(z, t);
          } else {
            dzr = g;
          }
          if (gx) Eigen::Map<Vec>(gx + r, d) += dzr;
          if (gb) Eigen::Map<Vec>(gb, d) += dzr;
        }
      },
      // dy = act'(z) (dx + dbias), z = x + bias
      [act](const JvpContext<T>& j) {
        const basic_tensor<T> dz =
            detail::widen_tangent(detail::tangent_add(j.tangent(0), j.tangent(1)), j.out().shape());
        if (act == Activation::relu) {
          const basic_tensor<T> z = detail::constant_of(j.in(0), [](const auto& v) { return v; }) + j.in(1);
          return dz * detail::constant_of(z, [](const auto& v) { return (v > T(0)).template cast<T>(); });
        }
        if (act == Activation::gelu) return dz * detail::gelu_slope_tensor(j.in(0) + j.in(1));
        return dz;
      });
}

// ---- selection and barriers ------------------------------------------------------

/// mask ? a : b elementwise, all three broadcasting; `mask` holds 0/1 values
/// (any nonzero counts as 1) and receives no gradient. d/da = mask, d/db = 1 - mask,
/// applied by selection, not multiplication: the branch not taken gets exactly
/// 0, never NaN, even where its value or incoming gradient is infinite.
///
/// Behind the branch not taken, the zero travels on as an exact zero through
/// the elementwise ops (see the note at the top of this file), so
/// where(x > 0, sqrt(x), 0) has gradient 0, not NaN, at x <= 0. Ops that
/// multiply matrices (matmul) do not promise this: 0 * inf is NaN in a GEMM.
template <std::floating_point T>
basic_tensor<T> where(const basic_tensor<T>& mask, const basic_tensor<T>& a, const basic_tensor<T>& b) {
  const Shape ab = detail::broadcast_shapes("where", a.shape(), b.shape());
  const Shape s = detail::broadcast_shapes("where", mask.shape(), ab);
  return make_op<T>(
      "where", s, {mask, a, b},
      [](OpContext<T>& c) {
        const T* m = c.in(0);
        const T* x = c.in(1);
        const T* y = c.in(2);
        T* out = c.out();
        detail::broadcast_plan<3> p(c.out_shape(), {&c.shape(0), &c.shape(1), &c.shape(2)});
        detail::broadcast_for_each(
            p, [&](index_t o, index_t i, index_t j, index_t k) { out[o] = m[i] != T(0) ? x[j] : y[k]; });
      },
      [](OpContext<T>& c) {
        const T* m = c.in(0);
        const T* g = c.out_grad();
        T* ga = c.needs_grad(1) ? c.in_grad(1) : nullptr;
        T* gb = c.needs_grad(2) ? c.in_grad(2) : nullptr;
        detail::broadcast_plan<3> p(c.out_shape(), {&c.shape(0), &c.shape(1), &c.shape(2)});
        detail::broadcast_for_each(p, [&](index_t o, index_t i, index_t j, index_t k) {
          if (m[i] != T(0)) {
            if (ga) ga[j] += g[o];
          } else if (gb) {
            gb[k] += g[o];
          }
        });
      },
      // d(mask ? a : b) = mask ? da : db; the mask has no tangent
      [](const JvpContext<T>& j) {
        if (!j.has_tangent(1) && !j.has_tangent(2)) return basic_tensor<T>();
        const basic_tensor<T> zero{Shape{}};
        return where(j.in(0), j.has_tangent(1) ? j.tangent(1) : zero, j.has_tangent(2) ? j.tangent(2) : zero);
      });
}

/// x's value with no path back to x: the gradient stops here. The node is
/// recorded and marked as a barrier, so printed graphs show where the flow was
/// cut; its result does not require grad. Under NoGradGuard it is a plain copy.
template <std::floating_point T>
basic_tensor<T> stop_gradient(const basic_tensor<T>& x) {
  return make_op<T>(
      "stop_gradient", x.shape(), {x},
      [](OpContext<T>& c) {
        c.out_vec() = c.in_vec(0);
        // gradcheck's hold_stopped mode replays the values of its recorded pass.
        detail::replay_stopped(c.out(), static_cast<std::size_t>(c.out_shape().numel()), "stop_gradient");
      },
      [](OpContext<T>&) {},  // the rule never runs: nothing passes the barrier
      // the tangent stops too: d(stop_gradient x) = 0
      [](const JvpContext<T>&) { return basic_tensor<T>(); }, {.barrier = true});
}

}  // namespace tapegrad
