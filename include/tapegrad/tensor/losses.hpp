// SPDX-License-Identifier: MIT
#pragma once

// The losses: cross-entropy with integer targets and mean squared error, each
// one fused node with its backward and jvp rules written out beside the
// forward pass. Row statistics and targets are saved in the tape's arena.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/detail/nn_kernels.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/op.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad {

/// How a loss combines its per-element terms.
enum class Reduction {
  none,  ///< no reduction: one loss per element (or per row for cross-entropy)
  mean,  ///< the average over the counted terms (the default)
  sum,   ///< the plain sum
};

/// Options of `cross_entropy`.
struct CrossEntropyOptions {
  Reduction reduction = Reduction::mean;  ///< how the rows' losses combine
  index_t ignore_index = -100;            ///< a target equal to this adds nothing and is not counted
};

/// Cross-entropy between the softmax of `logits` and integer class targets,
/// fused into one node: loss_r = logsumexp(logits_r) - logits_r[target_r].
///
/// `logits` is [N, C] or any shape [..., C]: the leading dimensions are the
/// rows, and `targets` holds one class id in [0, C) per row, in row-major order
/// (a `std::vector<index_t>` converts). A row whose target equals
/// `options.ignore_index` adds nothing and is left out of the mean's count; if
/// every row is ignored, the mean is 0. `Reduction::none` returns one loss per
/// row, shaped like `logits` without its last dimension (ignored rows give 0).
///
/// Backward: d loss_r / d logits_r = softmax(logits_r) - one_hot(target_r),
/// times the upstream gradient, divided by the count for the mean.
///
/// Errors: `shape_error` when the number of targets differs from the number
/// of rows; `index_error` naming the position, the target and C when a
/// target lies outside [0, C).
///
/// Example:
///   Tensor loss = cross_entropy(logits, targets);                        // mean
///   Tensor total = cross_entropy(logits, targets, {.reduction = Reduction::sum});
template <std::floating_point T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, std::span<const index_t> targets,
                              const CrossEntropyOptions& options = {}) {
  const Shape& s = logits.shape();
  if (s.rank() < 1 || s[-1] == 0)
    throw shape_error("cross_entropy: logits " + s.str() + " need a last dimension of at least one class");
  const detail::row_view rv = detail::rows_of(s);
  const index_t rows = rv.rows, classes = rv.cols;
  if (static_cast<index_t>(targets.size()) != rows)
    throw shape_error("cross_entropy: logits " + s.str() + " have " + std::to_string(rows) + " rows but " +
                      std::to_string(targets.size()) + " targets were given");
  const index_t ignore = options.ignore_index;
  index_t count = 0;
  for (index_t r = 0; r < rows; ++r) {
    const index_t t = targets[static_cast<std::size_t>(r)];
    if (t == ignore) continue;
    if (t < 0 || t >= classes)
      throw index_error("cross_entropy: target " + std::to_string(t) + " at position " + std::to_string(r) +
                        " is out of range [0, " + std::to_string(classes) + ") for logits " + s.str());
    ++count;
  }
  const Reduction red = options.reduction;
  const Shape out_shape = red == Reduction::none ? detail::with_last(s, -1) : Shape{};
  const index_t* caller_targets = targets.data();
  auto forward = [=](OpContext<T>& c) {
    // The backward pass needs the targets and each row's log-sum-exp.
    index_t* saved_targets = c.template save<index_t>(rows);
    T* lse = c.save(rows);
    std::copy_n(caller_targets, rows, saved_targets);
    T total = 0;
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = saved_targets[r];
      T loss = 0;
      if (t != ignore) {
        detail::const_array_map<T> x(c.in(0) + r * classes, classes);
        const T m = x.maxCoeff();
        const T l = m + std::log((x - m).exp().sum());
        lse[r] = l;
        loss = l - x[t];
      }
      if (red == Reduction::none)
        c.out()[r] = loss;
      else
        total += loss;
    }
    if (red == Reduction::sum) c.out()[0] = total;
    if (red == Reduction::mean) c.out()[0] = count == 0 ? T(0) : total / static_cast<T>(count);
  };
  auto backward = [=](OpContext<T>& c) {
    if (!c.needs_grad(0)) return;
    T* dx = c.in_grad(0);
    const T* g = c.out_grad();
    const index_t* saved_targets = c.template saved<index_t>(0);
    const T* lse = c.saved(1);
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = saved_targets[r];
      if (t == ignore) continue;
      // d loss_r / d x = softmax(x) - one_hot(t) = exp(x - lse) - one_hot(t)
      const T up = red == Reduction::none ? g[r] : red == Reduction::sum ? g[0] : g[0] / static_cast<T>(count);
      detail::const_array_map<T> x(c.in(0) + r * classes, classes);
      detail::array_map<T> d(dx + r * classes, classes);
      if (detail::has_minus_inf(x))
        d += detail::exp_masked(x - lse[r]) * up;
      else
        d += (x - lse[r]).exp() * up;
      d[t] -= up;
    }
  };
  // d loss_r = sum_c (softmax(x_r) - one_hot(t_r))_c dx_rc over the counted
  // rows, then reduced as the loss is. softmax = e^(x - logsumexp x) is
  // recorded so that the tangent differentiates; the one-hot rows are constants.
  auto jvp = [=](const JvpContext<T>& j) {
    std::vector<T> onehot(static_cast<std::size_t>(rows * classes), T(0)),
        counted(static_cast<std::size_t>(rows), T(0));
    for (index_t r = 0; r < rows; ++r) {
      const index_t t = caller_targets[r];  // the rule runs while the caller's targets live
      if (t == ignore) continue;
      onehot[static_cast<std::size_t>(r * classes + t)] = T(1);
      counted[static_cast<std::size_t>(r)] = T(1);
    }
    const basic_tensor<T> x = j.in(0);
    const basic_tensor<T> p = exp(x - logsumexp(x, -1, true));
    const basic_tensor<T> w =
        p * basic_tensor<T>(detail::with_last(s, 1), std::move(counted)) - basic_tensor<T>(s, std::move(onehot));
    const basic_tensor<T> per_row = sum(w * j.tangent(0), -1);
    if (red == Reduction::none) return per_row;
    if (red == Reduction::sum || count == 0) return red == Reduction::sum ? sum(per_row) : sum(per_row) * T(0);
    return sum(per_row) / static_cast<T>(count);
  };
  return make_op<T>("cross_entropy", out_shape, {logits}, forward, backward, jvp);
}

/// `cross_entropy` with the targets written in place: `cross_entropy(logits, {3, 4, 5, 2})`.
template <std::floating_point T>
basic_tensor<T> cross_entropy(const basic_tensor<T>& logits, std::initializer_list<index_t> targets,
                              const CrossEntropyOptions& options = {}) {
  return cross_entropy(logits, std::span<const index_t>(targets.begin(), targets.size()), options);
}

/// Mean squared error: mean((pred - target)^2), or its sum, or the squares
/// themselves (`Reduction::none`). Both arguments may carry gradients.
///
/// Backward: d/d pred = 2 (pred - target) / n for the mean (n = numel), and
/// d/d target is its negative.
///
/// Errors: `shape_error` naming both shapes when they differ.
template <std::floating_point T>
basic_tensor<T> mse_loss(const basic_tensor<T>& pred, const basic_tensor<T>& target,
                         Reduction reduction = Reduction::mean) {
  if (!(pred.shape() == target.shape()))
    throw shape_error("mse_loss: pred " + pred.shape().str() + " and target " + target.shape().str() +
                      " differ in shape");
  const index_t n = pred.numel();
  const Shape out_shape = reduction == Reduction::none ? pred.shape() : Shape{};
  auto forward = [n, reduction](OpContext<T>& c) {
    auto diff = c.in_vec(0) - c.in_vec(1);
    if (reduction == Reduction::none) {
      c.out_vec() = diff.square();
    } else {
      const T total = n == 0 ? T(0) : diff.square().sum();
      c.out()[0] = reduction == Reduction::sum || n == 0 ? total : total / static_cast<T>(n);
    }
  };
  auto backward = [n, reduction](OpContext<T>& c) {
    auto diff = c.in_vec(0) - c.in_vec(1);
    // d (p - t)^2 / dp = 2 (p - t);  d/dt = -2 (p - t)
    if (reduction == Reduction::none) {
      if (c.needs_grad(0)) c.in_grad_vec(0) += T(2) * diff * c.out_grad_vec();
      if (c.needs_grad(1)) c.in_grad_vec(1) -= T(2) * diff * c.out_grad_vec();
    } else {
      const T k = T(2) * c.out_grad()[0] / (reduction == Reduction::mean ? static_cast<T>(n) : T(1));
      if (c.needs_grad(0)) c.in_grad_vec(0) += k * diff;
      if (c.needs_grad(1)) c.in_grad_vec(1) -= k * diff;
    }
  };
  // d (p - t)^2 = 2 (p - t) (dp - dt), then reduced as the loss is
  auto jvp = [n, reduction](const JvpContext<T>& j) {
    const basic_tensor<T> dt = j.has_tangent(1) ? -j.tangent(1) : basic_tensor<T>();
    const basic_tensor<T> term = (j.in(0) - j.in(1)) * detail::tangent_add(j.tangent(0), dt) * T(2);
    if (reduction == Reduction::none) return term;
    if (reduction == Reduction::sum || n == 0) return sum(term);
    return sum(term) / static_cast<T>(n);
  };
  return make_op<T>("mse_loss", out_shape, {pred, target}, forward, backward, jvp);
}

}  // namespace tapegrad
