// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::optim {

/// Options of `Adam`.
struct AdamOptions {
  double lr = 1e-3;                         ///< learning rate alpha
  std::array<double, 2> betas{0.9, 0.999};  ///< decay rates of the first and second moments
  double eps = 1e-8;                        ///< added to the denominator
  double weight_decay = 0;                  ///< L2 penalty, added to the gradient
};

/// Options of `AdamW`: Adam's, with a decoupled weight decay of 0.01 by default.
struct AdamWOptions {
  double lr = 1e-3;                         ///< learning rate alpha
  std::array<double, 2> betas{0.9, 0.999};  ///< decay rates of the first and second moments
  double eps = 1e-8;                        ///< added to the denominator
  double weight_decay = 1e-2;               ///< decoupled decay: w shrinks by lr * weight_decay * w per step
};

namespace detail {

/// What Adam and AdamW share; `decoupled` picks AdamW's weight decay.
template <std::floating_point T>
class adam_base : public basic_optimizer<T> {
 public:
  using tensor_type = basic_tensor<T>;

  std::string name() const override { return decoupled_ ? "AdamW" : "Adam"; }

  /// Each parameter has its own t: the updates it received, this one
  /// included (t = 1 at its first gradient), as in PyTorch, whose state
  /// "step" is per parameter.
  void step() override {
    ++this->step_;
    const T b1 = static_cast<T>(beta1_), b2 = static_cast<T>(beta2_);
    const T lr = static_cast<T>(this->lr_), eps = static_cast<T>(eps_), wd = static_cast<T>(weight_decay_);
    const T shrink = static_cast<T>(1.0 - this->lr_ * weight_decay_);
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
      tensor_type& p = this->params_[i];
      if (!p.has_grad()) continue;  // no gradient: no decay, no moments, no count
      const double t = static_cast<double>(++this->param_steps_[i]);
      // Bias corrections undo the zero start of m and v: E[m_t] = (1 - beta1^t) E[g].
      const T inv_bc1 = static_cast<T>(1.0 / (1.0 - std::pow(beta1_, t)));
      const T inv_bc2 = static_cast<T>(1.0 / (1.0 - std::pow(beta2_, t)));
      auto w = p.data();
      auto g = p.grad();
      auto m = this->slice(m_, i);
      auto v = this->slice(v_, i);
      if (decoupled_) {
        // AdamW: the decay acts on w directly and never enters the moments.
        if (weight_decay_ != 0) w *= shrink;
        m = b1 * m + (T(1) - b1) * g;
        v = b2 * v + (T(1) - b2) * g.square();
      } else if (weight_decay_ != 0) {
        // Adam with L2: the penalty's gradient wd * w joins g before the moments.
        m = b1 * m + (T(1) - b1) * (g + wd * w);
        v = b2 * v + (T(1) - b2) * (g + wd * w).square();
      } else {
        m = b1 * m + (T(1) - b1) * g;
        v = b2 * v + (T(1) - b2) * g.square();
      }
      // w = w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
      w -= lr * (m * inv_bc1) / ((v * inv_bc2).sqrt() + eps);
    }
  }

  std::vector<StateBuffer<T>> state() override {
    std::vector<StateBuffer<T>> out;
    this->add_views(out, "exp_avg", m_);
    this->add_views(out, "exp_avg_sq", v_);
    return out;
  }

 protected:
  adam_base(const char* who, bool decoupled, std::vector<tensor_type> params, double lr, std::array<double, 2> betas,
            double eps, double weight_decay)
      : basic_optimizer<T>(who, std::move(params), lr),
        beta1_(betas[0]),
        beta2_(betas[1]),
        eps_(eps),
        weight_decay_(weight_decay),
        decoupled_(decoupled) {
    tapegrad::detail::check_unit_interval(who, "betas.0", beta1_);
    tapegrad::detail::check_unit_interval(who, "betas.1", beta2_);
    tapegrad::detail::check_non_negative(who, "eps", eps_);
    tapegrad::detail::check_non_negative(who, "weight_decay", weight_decay_);
    m_.assign(this->total_size(), T(0));
    v_.assign(this->total_size(), T(0));
  }

 private:
  double beta1_, beta2_, eps_, weight_decay_;
  bool decoupled_;
  std::vector<T> m_, v_;  // first and second moments, laid out like the parameters
};

}  // namespace detail

/// Adam: per-parameter step sizes from running averages of the gradient (m)
/// and of its square (v), with bias correction. For each parameter w with
/// gradient g, at its t-th update (t = 1, 2, ..., counted per parameter; a
/// step at which w has no gradient does not count):
///
///   g     = g + weight_decay * w           (L2 penalty; 0 by default)
///   m     = beta1 * m + (1 - beta1) * g
///   v     = beta2 * v + (1 - beta2) * g^2
///   m_hat = m / (1 - beta1^t)
///   v_hat = v / (1 - beta2^t)
///   w     = w - lr * m_hat / (sqrt(v_hat) + eps)
///
/// Example:
///   tapegrad::optim::Adam opt(model.parameters(), {.lr = 1e-3});
template <std::floating_point T>
class basic_adam : public detail::adam_base<T> {
 public:
  /// An optimizer of `params` (leaves with requires_grad).
  explicit basic_adam(std::vector<basic_tensor<T>> params, AdamOptions options = {})
      : detail::adam_base<T>("Adam", false, std::move(params), options.lr, options.betas, options.eps,
                             options.weight_decay),
        options_(options) {}

  /// The options given at construction (the learning rate is `lr()`).
  const AdamOptions& options() const noexcept { return options_; }

 private:
  AdamOptions options_;
};

/// AdamW: Adam with decoupled weight decay. Before Adam's update the
/// parameter shrinks, w = w * (1 - lr * weight_decay), and the decay never
/// enters m and v, so every weight decays at the same rate whatever its
/// gradient history.
///
/// Example:
///   tapegrad::optim::AdamW opt(model.parameters(), {.lr = 1e-3, .weight_decay = 0.01});
template <std::floating_point T>
class basic_adamw : public detail::adam_base<T> {
 public:
  /// An optimizer of `params` (leaves with requires_grad).
  explicit basic_adamw(std::vector<basic_tensor<T>> params, AdamWOptions options = {})
      : detail::adam_base<T>("AdamW", true, std::move(params), options.lr, options.betas, options.eps,
                             options.weight_decay),
        options_(options) {}

  /// The options given at construction (the learning rate is `lr()`).
  const AdamWOptions& options() const noexcept { return options_; }

 private:
  AdamWOptions options_;
};

/// Adam on float parameters.
using Adam = basic_adam<float>;
/// AdamW on float parameters.
using AdamW = basic_adamw<float>;

}  // namespace tapegrad::optim
