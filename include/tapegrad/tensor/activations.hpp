// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <concepts>
#include <type_traits>

#include "tapegrad/tensor/detail/elementwise_kernels.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

// More one-input elementwise functions, beside those of tensor/elementwise.hpp
// and with the same rules: the result has x's shape, each op states its
// derivative, and an op whose slope can be infinite at a finite input (log1p at
// -1) passes exactly 0 where its incoming gradient is exactly 0.

/// Sine. d/dx = cos x.
template <std::floating_point T>
basic_tensor<T> sin(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "sin", x, [](const auto& v) { return v.sin(); }, [](const auto& v, const auto&) { return v.cos(); },
      // d sin x = cos x dx
      [](const JvpContext<T>& j) { return j.tangent(0) * cos(j.in(0)); });
}

/// Cosine. d/dx = -sin x.
template <std::floating_point T>
basic_tensor<T> cos(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "cos", x, [](const auto& v) { return v.cos(); }, [](const auto& v, const auto&) { return -v.sin(); },
      // d cos x = -sin x dx
      [](const JvpContext<T>& j) { return -(j.tangent(0) * sin(j.in(0))); });
}

/// log(1 + x), accurate for small x. d/dx = 1 / (1 + x), infinite at -1.
template <std::floating_point T>
basic_tensor<T> log1p(const basic_tensor<T>& x) {
  return detail::unary_op<T, true>(
      "log1p", x, [](const auto& v) { return v.log1p(); },
      [](const auto& v, const auto&) { return (v + T(1)).inverse(); },
      // d log1p x = dx / (1 + x)
      [](const JvpContext<T>& j) { return j.tangent(0) / (j.in(0) + T(1)); });
}

/// log(1 + e^x), computed as max(x, 0) + log1p(e^-|x|) so that no e^x
/// overflows. d/dx = sigmoid(x) = 1 / (1 + e^-x).
template <std::floating_point T>
basic_tensor<T> softplus(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "softplus", x, [](const auto& v) { return v.max(T(0)) + (-v.abs()).exp().log1p(); },
      [](const auto& v, const auto&) { return (T(1) + (-v).exp()).inverse(); },
      // d softplus x = sigmoid(x) dx
      [](const JvpContext<T>& j) { return j.tangent(0) * sigmoid(j.in(0)); });
}

/// SiLU (swish): x sigmoid(x). With s = sigmoid(x), d/dx = s + x s (1 - s)
/// = s (1 + x (1 - s)).
template <std::floating_point T>
basic_tensor<T> silu(const basic_tensor<T>& x) {
  return detail::unary_op<T>(
      "silu", x, [](const auto& v) { return v * (T(1) + (-v).exp()).inverse(); },
      [](const auto& v, const auto&) {
        return (T(1) + (-v).exp()).inverse() * (T(1) + v * (T(1) - (T(1) + (-v).exp()).inverse()));
      },
      // d silu x = s (1 + x (1 - s)) dx, s = sigmoid x
      [](const JvpContext<T>& j) {
        const basic_tensor<T> s = sigmoid(j.in(0));
        return j.tangent(0) * s * (T(1) + j.in(0) * (T(1) - s));
      });
}

/// x where x > 0, else slope * x. d/dx = 1 for x > 0, else slope; at 0 the
/// slope, as PyTorch's leaky_relu (compare relu'(0) = 0).
template <std::floating_point T>
basic_tensor<T> leaky_relu(const basic_tensor<T>& x, std::type_identity_t<T> slope = T(0.01)) {
  return detail::unary_op<T>(
      "leaky_relu", x, [slope](const auto& v) { return (v > T(0)).select(v, slope * v); },
      [slope](const auto& v, const auto&) { return (v > T(0)).template cast<T>() * (T(1) - slope) + slope; },
      // d leaky_relu x = (x > 0 ? 1 : slope) dx, a constant slope
      [slope](const JvpContext<T>& j) {
        return j.tangent(0) * detail::constant_of(j.in(0), [slope](const auto& v) {
                 return (v > T(0)).template cast<T>() * (T(1) - slope) + slope;
               });
      });
}

}  // namespace tapegrad
