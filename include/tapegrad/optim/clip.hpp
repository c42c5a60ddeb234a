// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::optim {

/// The L2 norm of all gradients together, sqrt(sum over parameters of |g|^2),
/// computed in double. Parameters without a gradient (`has_grad()` false)
/// are left out, as PyTorch leaves out a parameter whose gradient is None.
template <std::floating_point T>
double grad_norm(const std::vector<basic_tensor<T>>& params) {
  double sum = 0;
  for (const auto& p : params)
    if (p.has_grad()) sum += p.grad().template cast<double>().square().sum();
  return std::sqrt(sum);
}

/// Rescales the gradients so that their joint L2 norm is at most `max_norm`
/// and returns the norm before clipping. When the norm exceeds max_norm every
/// gradient is multiplied by max_norm / norm (the direction is kept);
/// otherwise nothing changes. A norm that is NaN or infinite is returned
/// without touching the gradients, so the caller can see it and skip the step.
///
/// Example (the clipping exercise of the optimizer tutorial): a gradient
/// (1.5, 2.0) has norm 2.5; clipped to 1.0 it becomes (0.6, 0.8) and
/// clip_grad_norm returns 2.5.
///
///   double norm = tapegrad::optim::clip_grad_norm(opt.parameters(), 1.0);
template <std::floating_point T>
double clip_grad_norm(const std::vector<basic_tensor<T>>& params, double max_norm) {
  if (!(max_norm > 0)) tapegrad::detail::option_error("clip_grad_norm", "max_norm", "must be > 0", max_norm);
  const double norm = grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const T scale = static_cast<T>(max_norm / norm);
  for (auto p : params)
    if (p.has_grad()) p.grad_mut() *= scale;
  return norm;
}

}  // namespace tapegrad::optim
