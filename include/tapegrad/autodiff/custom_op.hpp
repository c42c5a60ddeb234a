// SPDX-License-Identifier: MIT
#pragma once

/// Defining your own tensor op, and the functional `grad` / `value_and_grad`
/// for tensor functions.
///
/// An op is one call to `make_op` with its forward and its backward rule side
/// by side, exactly as the library's own ops are written:
///
///   make_op<T>(name, output_shape, {inputs...}, forward, backward)
///
/// - `forward(OpContext<T>& c)` fills the output: `c.out()` (raw, row-major)
///   or `c.out_vec()` / `c.out_mat(rows, cols)` (Eigen maps), from the inputs
///   `c.in(i)`, `c.in_vec(i)`, `c.in_mat(i, rows, cols)`. The output buffer is
///   uninitialised: write every element.
/// - `backward(OpContext<T>& c)` turns the output's gradient `c.out_grad_vec()`
///   into the inputs' gradients: for each input with `c.needs_grad(i)`, *add*
///   (never assign) to `c.in_grad_vec(i)`; other ops may have added there already.
///   It may read the inputs and the output, which stay alive until the tape is
///   cleared.
/// - Capture by value what the backward rule needs (shapes, constants). State
///   that forward computes and backward reads (saved statistics, indices)
///   goes through the context: `U* p = c.save<U>(n)` in forward, `c.saved<U>(k)`
///   in backward (k counts the saves, from 0). It lives as long as the op's
///   node, in the tape's arena. For temporaries inside one function,
///   `c.scratch(n)` gives memory that is handed back when the function
///   returns. Either way, no heap allocation per step.
/// - The name appears in printed graphs (`tape_table`, `to_dot`) and in
///   anomaly reports.
///
/// Then check it with `gradcheck` in double precision: write the op as a
/// template over T.
///
/// Example:
///   // y = x * sigmoid(x) (SiLU). dy/dx = s + x s (1 - s) = s (1 + x (1 - s)), s = sigmoid(x).
///   template <std::floating_point T>
///   tapegrad::basic_tensor<T> silu(const tapegrad::basic_tensor<T>& x) {
///     using tapegrad::OpContext;
///     return tapegrad::make_op<T>(
///         "silu", x.shape(), {x},
///         [](OpContext<T>& c) {
///           const auto v = c.in_vec(0);
///           c.out_vec() = v / (T(1) + (-v).exp());
///         },
///         [](OpContext<T>& c) {
///           const auto v = c.in_vec(0);
///           const auto s = (T(1) + (-v).exp()).inverse();
///           c.in_grad_vec(0) += c.out_grad_vec() * s * (T(1) + v * (T(1) - s));
///         });
///   }
///
///   auto r = tapegrad::gradcheck([](const auto& x) { return silu(x[0]); }, {random_tensor({3, 4}, 1)});
///   // r.passed; tape_table(sum(silu(x))) lists a "silu" row.

#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/functional.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/op.hpp"

namespace tapegrad {

/// The value of a tensor function `f` and its gradient with respect to each
/// input, as JAX's value_and_grad. `f` takes `const std::vector<basic_tensor<T>>&`
/// and returns a one-element tensor. It runs on a fresh tape of its own, on
/// copies of the inputs, so nothing lands on the caller's tape or tensors.
/// The gradients are leaves with the inputs' shapes.
///
/// Example:
///   auto [loss, g] = tapegrad::value_and_grad(
///       [](const auto& x) { return sum(x[0] * x[0]); }, std::vector<Tensor>{from({1, 2, 3})});
///   // loss = 14, g[0] = [2, 4, 6]
template <std::floating_point T, class F>
ValueAndGrad<T, std::vector<basic_tensor<T>>> value_and_grad(F&& f, const std::vector<basic_tensor<T>>& inputs) {
  Tape tape;
  Tape::Scope use(tape);
  std::vector<basic_tensor<T>> x;
  x.reserve(inputs.size());
  for (const auto& t : inputs) {
    x.emplace_back(t.shape(), t.to_vector());
    x.back().requires_grad(true);
  }
  basic_tensor<T> y = f(static_cast<const std::vector<basic_tensor<T>>&>(x));
  if (y.numel() != 1)
    throw shape_error("value_and_grad: f returned shape " + y.shape().str() + "; it must return one element");
  std::vector<basic_tensor<T>> g;
  g.reserve(x.size());
  if (y.requires_grad()) {
    y.backward();
    for (const auto& t : x) g.push_back(t.grad_tensor());
  } else {
    // f does not depend on its inputs (or only through stop_gradient): all zero.
    for (const auto& t : x) g.emplace_back(t.shape(), T(0));
  }
  return {y.item(), std::move(g)};
}

/// The gradients of a tensor function with respect to each input (see value_and_grad).
template <std::floating_point T, class F>
std::vector<basic_tensor<T>> grad(F&& f, const std::vector<basic_tensor<T>>& inputs) {
  return value_and_grad(std::forward<F>(f), inputs).grad;
}

}  // namespace tapegrad
