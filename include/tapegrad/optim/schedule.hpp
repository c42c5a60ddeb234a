// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <cstddef>
#include <functional>
#include <numbers>
#include <string>

#include "tapegrad/core/error.hpp"

namespace tapegrad::optim {

// Learning-rate schedules: small objects the training loop asks for the rate
// of step t (t = 0 is the first step), then hands to the optimizer:
//
//   tapegrad::optim::WarmupCosine schedule{.lr = 1e-3, .warmup_steps = 100, .total_steps = 2000};
//   for (std::size_t t = 0; t < 2000; ++t) {
//     opt.set_lr(schedule.rate(t));
//     ...
//     opt.step();
//   }
//
// Each has `rate(t)` and `operator()(t)`; `Schedule` holds any of them.

namespace detail {

inline void check_schedule(const char* who, bool ok, const std::string& what) {
  if (!ok) throw value_error(std::string(who) + ": " + what);
}

}  // namespace detail

/// The same rate at every step.
struct ConstantSchedule {
  double lr = 1e-3;  ///< the rate

  /// lr.
  double rate(std::size_t /*step*/) const { return lr; }
  double operator()(std::size_t step) const { return rate(step); }
};

/// Step decay: the rate is multiplied by `gamma` every `step_size` steps,
/// lr * gamma^floor(t / step_size). The schedule "0.001 x 0.1 every 30
/// epochs" is {.lr = 1e-3, .step_size = 30, .gamma = 0.1} stepped once per
/// epoch.
struct StepDecay {
  double lr = 1e-3;            ///< the rate of the first steps
  std::size_t step_size = 30;  ///< steps between decays
  double gamma = 0.1;          ///< the factor applied at each decay

  /// lr * gamma^floor(step / step_size).
  double rate(std::size_t step) const {
    detail::check_schedule("StepDecay", step_size > 0, "step_size must be > 0");
    return lr * std::pow(gamma, static_cast<double>(step / step_size));
  }
  double operator()(std::size_t step) const { return rate(step); }
};

/// Exponential decay: lr * gamma^t.
struct ExponentialDecay {
  double lr = 1e-3;     ///< the rate at step 0
  double gamma = 0.95;  ///< the factor per step

  /// lr * gamma^step.
  double rate(std::size_t step) const { return lr * std::pow(gamma, static_cast<double>(step)); }
  double operator()(std::size_t step) const { return rate(step); }
};

/// Cosine annealing from `lr` at step 0 down to `min_lr` at step
/// `total_steps`, then `min_lr`:
/// min_lr + (lr - min_lr) * (1 + cos(pi * t / total_steps)) / 2.
struct CosineAnnealing {
  double lr = 1e-3;                ///< the rate at step 0
  std::size_t total_steps = 1000;  ///< the step at which min_lr is reached
  double min_lr = 0;               ///< the floor

  /// The cosine curve at `step`, min_lr past the end.
  double rate(std::size_t step) const {
    detail::check_schedule("CosineAnnealing", total_steps > 0, "total_steps must be > 0");
    if (step >= total_steps) return min_lr;
    const double progress = static_cast<double>(step) / static_cast<double>(total_steps);
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }
  double operator()(std::size_t step) const { return rate(step); }
};

/// Linear warm-up, then cosine annealing. During the first `warmup_steps`
/// steps the rate climbs linearly, lr * (t + 1) / warmup_steps, reaching lr at
/// t = warmup_steps - 1; from t = warmup_steps it follows a cosine from lr down
/// to min_lr at t = total_steps: with s = (t - warmup_steps) / (total_steps - warmup_steps),
/// min_lr + (lr - min_lr) * (1 + cos(pi * s)) / 2.
struct WarmupCosine {
  double lr = 1e-3;                ///< the peak rate
  std::size_t warmup_steps = 100;  ///< steps of linear warm-up
  std::size_t total_steps = 1000;  ///< the step at which min_lr is reached
  double min_lr = 0;               ///< the floor

  /// The warm-up line or the cosine curve at `step`; min_lr past the end.
  double rate(std::size_t step) const {
    detail::check_schedule("WarmupCosine", warmup_steps < total_steps,
                           "warmup_steps (" + std::to_string(warmup_steps) + ") must be < total_steps (" +
                               std::to_string(total_steps) + ")");
    if (step < warmup_steps) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (step >= total_steps) return min_lr;
    const double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps);
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  }
  double operator()(std::size_t step) const { return rate(step); }
};

/// Any schedule, chosen at run time (from a command-line flag, say):
/// `Schedule s = CosineAnnealing{.lr = 1e-3, .total_steps = 500};  s(10);`
using Schedule = std::function<double(std::size_t)>;

}  // namespace tapegrad::optim
