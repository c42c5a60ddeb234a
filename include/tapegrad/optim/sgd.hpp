// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::optim {

/// Options of `SGD`.
struct SGDOptions {
  double lr = 0.01;         ///< learning rate
  double momentum = 0;      ///< momentum factor mu; 0 is plain gradient descent
  bool nesterov = false;    ///< Nesterov momentum (needs momentum > 0)
  double weight_decay = 0;  ///< L2 penalty lambda, added to the gradient
};

/// Stochastic gradient descent, with optional momentum, Nesterov momentum and
/// weight decay, as PyTorch's `torch.optim.SGD` with dampening 0.
///
/// For each parameter w with gradient g:
///
///   g = g + weight_decay * w
///   plain:     w = w - lr * g
///   momentum:  b = momentum * b + g            (b starts at 0)
///              w = w - lr * b                   (classical)
///              w = w - lr * (g + momentum * b)  (Nesterov)
///
/// Example:
///   tapegrad::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
///   loss.backward();
///   opt.step();
template <std::floating_point T>
class basic_sgd : public basic_optimizer<T> {
 public:
  using tensor_type = basic_tensor<T>;

  /// An optimizer of `params` (leaves with requires_grad).
  explicit basic_sgd(std::vector<tensor_type> params, SGDOptions options = {})
      : basic_optimizer<T>("SGD", std::move(params), options.lr), options_(options) {
    tapegrad::detail::check_non_negative("SGD", "momentum", options.momentum);
    tapegrad::detail::check_non_negative("SGD", "weight_decay", options.weight_decay);
    if (options.nesterov && !(options.momentum > 0))
      tapegrad::detail::option_error("SGD", "momentum", "must be > 0 with nesterov", options.momentum);
    if (options.momentum > 0) buffer_.assign(this->total_size(), T(0));
  }

  std::string name() const override { return "SGD"; }

  /// The options given at construction (the learning rate is `lr()`).
  const SGDOptions& options() const noexcept { return options_; }

  void step() override {
    ++this->step_;
    const T lr = static_cast<T>(this->lr_);
    const T wd = static_cast<T>(options_.weight_decay);
    const T mu = static_cast<T>(options_.momentum);
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
      tensor_type& p = this->params_[i];
      if (!p.has_grad()) continue;  // no gradient: no decay, no momentum, no count
      ++this->param_steps_[i];
      auto w = p.data();
      auto g = p.grad();
      if (buffer_.empty()) {
        // d(loss + wd/2 |w|^2)/dw = g + wd * w
        if (wd != T(0))
          w -= lr * (g + wd * w);
        else
          w -= lr * g;
        continue;
      }
      auto b = this->slice(buffer_, i);
      if (wd != T(0))
        b = mu * b + (g + wd * w);
      else
        b = mu * b + g;
      if (options_.nesterov) {
        if (wd != T(0))
          w -= lr * ((g + wd * w) + mu * b);
        else
          w -= lr * (g + mu * b);
      } else {
        w -= lr * b;
      }
    }
  }

  std::vector<StateBuffer<T>> state() override {
    std::vector<StateBuffer<T>> out;
    if (!buffer_.empty()) this->add_views(out, "momentum_buffer", buffer_);
    return out;
  }

 private:
  SGDOptions options_;
  std::vector<T> buffer_;  // momentum buffers, laid out like the parameters
};

/// SGD on float parameters.
using SGD = basic_sgd<float>;

}  // namespace tapegrad::optim
