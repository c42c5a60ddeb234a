// SPDX-License-Identifier: MIT
#pragma once

// jvp, vjp and hvp for functions of tensors, built on the ops' jvp rules (see
// `ForwardScope` and `make_op`). The scalar versions, on Dual and Value
// numbers, are in autodiff/higher_order.hpp.

#include <concepts>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/per_sample.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/forward.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

/// What the tensor `jvp` returns: f(x) and the directional derivative J v.
template <class T>
struct TensorJvpResult {
  basic_tensor<T> value;    ///< f(x)
  basic_tensor<T> tangent;  ///< J v, of f(x)'s shape
};

/// What the tensor `vjp` returns: f(x) and u^T J, one tensor per input.
template <class T>
struct TensorVjpResult {
  basic_tensor<T> value;              ///< f(x)
  std::vector<basic_tensor<T>> grad;  ///< u^T J with respect to each input
};

/// What the tensor `hvp` returns: the loss, its gradient and H v, one tensor
/// per parameter.
template <class T>
struct TensorHvpResult {
  basic_tensor<T> loss;               ///< f(), a one-element tensor
  std::vector<basic_tensor<T>> grad;  ///< d loss / d parameter
  std::vector<basic_tensor<T>> hvp;   ///< H v, the Hessian of the loss times v
};

namespace detail {

template <class T>
void check_directions(const char* op, const std::vector<basic_tensor<T>>& x, const std::vector<basic_tensor<T>>& v) {
  if (x.size() != v.size())
    throw value_error(std::string(op) + ": " + std::to_string(v.size()) + " directions for " +
                      std::to_string(x.size()) + " tensors");
  for (std::size_t i = 0; i < x.size(); ++i)
    if (x[i].shape() != v[i].shape())
      throw shape_error(std::string(op) + ": direction " + std::to_string(i) + " has shape " + v[i].shape().str() +
                        " for a tensor of shape " + x[i].shape().str());
}

template <class T>
basic_tensor<T> copy_of(const basic_tensor<T>& x) {
  return basic_tensor<T>(x.shape(), x.to_vector());
}

template <class T>
basic_tensor<T> grad_copy(const basic_tensor<T>& p) {
  const auto g = p.grad();
  return basic_tensor<T>(p.shape(), std::vector<T>(g.data(), g.data() + g.size()));
}

}  // namespace detail

/// f(x) and the directional derivative J v, by forward mode: f runs once
/// with tangents, unrecorded, each op computing its output's tangent with
/// its jvp rule. Cost: about two to three forward passes, no tape.
///
/// Example:
///   auto r = tapegrad::jvp([](const std::vector<Tensor>& x) { return tanh(matmul(x[0], x[1])); }, {a, w}, {da, dw});
///   // r.tangent = (1 - tanh^2) * (da w + a dw)
template <std::floating_point T, class F>
TensorJvpResult<T> jvp(F&& f, const std::vector<basic_tensor<T>>& inputs,
                       const std::vector<basic_tensor<T>>& tangents) {
  detail::check_directions("jvp", inputs, tangents);
  NoGradGuard off;
  ForwardScope<T> fwd;
  for (std::size_t i = 0; i < inputs.size(); ++i) fwd.set_tangent(inputs[i], tangents[i]);
  basic_tensor<T> y = f(inputs);
  basic_tensor<T> t = fwd.tangent(y);
  if (!t.defined()) t = basic_tensor<T>(y.shape());  // f does not depend on the inputs along v
  return {detail::copy_of(y), detail::copy_of(t)};
}

/// f(x) and u^T J, by reverse mode: f runs once, recorded on the active tape
/// after a mark (rewound when it returns) on copies of the inputs, and one
/// reverse sweep starts from u. Parameters f reads receive nothing.
///
/// Example:
///   auto r = tapegrad::vjp([](const std::vector<Tensor>& x) { return x[0] * x[1]; }, {a, b}, u);
///   // r.grad[0] = u * b, r.grad[1] = u * a
template <std::floating_point T, class F>
TensorVjpResult<T> vjp(F&& f, const std::vector<basic_tensor<T>>& inputs, const basic_tensor<T>& u) {
  std::vector<basic_tensor<T>> x;
  for (const auto& in : inputs) x.push_back(detail::copy_of(in).requires_grad(true));
  Tape& tape = Tape::active();
  const Tape::Mark mark = tape.mark();
  TensorVjpResult<T> r;
  {
    const basic_tensor<T> y = f(static_cast<const std::vector<basic_tensor<T>>&>(x));
    if (y.shape() != u.shape())
      throw shape_error("vjp: u has shape " + u.shape().str() + " for an output of shape " + y.shape().str());
    r.value = detail::copy_of(y);
    if (y.requires_grad()) y.backward(u);
  }
  tape.rewind(mark);
  for (const auto& xi : x) r.grad.push_back(detail::grad_copy(xi));
  return r;
}

/// The Hessian-vector product of a scalar loss with respect to parameters,
/// with the loss and its gradient. `f()` computes the loss (a one-element
/// tensor) from `params` (e.g. `model.parameters()`), which it reads itself;
/// `v` holds one direction per parameter.
///
/// How: reverse-over-forward. f runs once, recorded, inside a forward-mode
/// scope whose tangents are v, so every op also records its output's tangent
/// (its jvp rule is made of recorded tensor ops). The loss's tangent is
/// g = <grad loss, v>; a reverse sweep from the loss gives the gradient, one
/// from g gives grad g = H v. The Hessian is never formed.
///
/// Cost: one recorded pass of f and its tangents (two to four times f's
/// nodes) and two reverse sweeps; memory for that tape. Everything is
/// recorded on the active tape after a mark and rewound before returning;
/// the parameters' accumulated gradients are left as they were.
///
/// Example:
///   auto params = model.parameters();
///   auto r = tapegrad::hvp([&] { return cross_entropy(model(x), targets); }, params, v);
///   // r.hvp[i]: the Hessian times v, for parameter i
template <std::floating_point T, class F>
TensorHvpResult<T> hvp(F&& f, const std::vector<basic_tensor<T>>& params, const std::vector<basic_tensor<T>>& v) {
  detail::check_directions("hvp", params, v);
  detail::saved_grads<T> keep(params);
  Tape& tape = Tape::active();
  const Tape::Mark mark = tape.mark();
  TensorHvpResult<T> r;
  {
    ForwardScope<T> fwd;
    for (std::size_t i = 0; i < params.size(); ++i) fwd.set_tangent(params[i], v[i]);
    const basic_tensor<T> loss = f();
    if (loss.numel() != 1) throw shape_error("hvp: the loss has shape " + loss.shape().str() + ", not one element");
    if (!loss.requires_grad()) throw value_error("hvp: the loss depends on no parameter");
    const basic_tensor<T> g = fwd.tangent(loss);
    for (auto p : params) p.zero_grad();
    loss.backward();
    for (const auto& p : params) r.grad.push_back(detail::grad_copy(p));
    for (auto p : params) p.zero_grad();
    if (g.defined() && g.requires_grad()) g.backward();  // else the loss is linear along v: H v = 0
    for (const auto& p : params) r.hvp.push_back(detail::grad_copy(p));
    r.loss = detail::copy_of(loss);
  }
  tape.rewind(mark);
  return r;
}

}  // namespace tapegrad
