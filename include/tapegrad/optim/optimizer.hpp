// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/detail/options.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::optim {

/// A named view of one piece of an optimizer's state (Adam's first moment of
/// parameter 3, say), with the parameter's shape. Checkpoints save and restore
/// the optimizer through these views.
template <std::floating_point T>
struct StateBuffer {
  std::string name;       ///< e.g. "exp_avg.3": the kind of state, then the parameter's position
  Shape shape;            ///< the parameter's shape
  T* data = nullptr;      ///< shape.numel() values, owned by the optimizer
  std::size_t param = 0;  ///< the position of the parameter this buffer belongs to
};

/// The base of the optimizers: a fixed list of parameters (leaf tensors with
/// `requires_grad`), a learning rate, a count of `step()` calls and, per
/// parameter, a count of the updates it received.
///
/// Every optimizer updates the parameters in place through their `data()`
/// and `grad()` buffers. Its per-parameter state (moments, momentum buffers)
/// lives in one contiguous array allocated at construction, so `step()` never
/// allocates. A parameter that received no gradient since its last
/// `zero_grad()` (`has_grad()` is false) is skipped by `step()` entirely: no
/// weight decay, no momentum or moment update, no step count, as PyTorch skips
/// a parameter whose gradient is None.
///
/// The training loop:
///
///   auto loss = ...;                      // forward
///   opt.zero_grad();
///   loss.backward();
///   clip_grad_norm(opt.parameters(), 1.0);
///   opt.step();
///   tapegrad::Tape::active().clear();
template <std::floating_point T>
class basic_optimizer {
 public:
  using value_type = T;
  using tensor_type = basic_tensor<T>;

  basic_optimizer(const basic_optimizer&) = default;
  basic_optimizer(basic_optimizer&&) noexcept = default;
  basic_optimizer& operator=(const basic_optimizer&) = default;
  basic_optimizer& operator=(basic_optimizer&&) noexcept = default;
  virtual ~basic_optimizer() = default;

  /// Applies one update to every parameter from its current gradient.
  virtual void step() = 0;

  /// The optimizer's name as checkpoints record it: "SGD", "Adam", "AdamW".
  virtual std::string name() const = 0;

  /// Views of the per-parameter state, for checkpoints (empty for plain SGD).
  virtual std::vector<StateBuffer<T>> state() { return {}; }

  /// Sets every parameter's gradient "to none" (see `Tensor::zero_grad`):
  /// until the next backward reaches it, a parameter is skipped by `step()`.
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }

  /// The learning rate the next `step()` uses.
  double lr() const noexcept { return lr_; }

  /// Changes the learning rate (a schedule calls this before each step).
  void set_lr(double lr) {
    check_lr(name().c_str(), lr);
    lr_ = lr;
  }

  /// How many times `step()` has run (what a learning-rate schedule counts).
  std::uint64_t step_count() const noexcept { return step_; }

  /// Sets the count of `step()` calls (checkpoints restore it).
  void set_step_count(std::uint64_t n) noexcept { step_ = n; }

  /// How many updates parameter `i` received: the steps at which it had a
  /// gradient. Adam's bias correction uses this count, t, as PyTorch's does.
  std::uint64_t param_step_count(std::size_t i) const { return param_steps_.at(i); }

  /// Every parameter's update count, in parameter order.
  const std::vector<std::uint64_t>& param_step_counts() const noexcept { return param_steps_; }

  /// Sets every parameter's update count (checkpoints restore them).
  void set_param_step_counts(const std::vector<std::uint64_t>& counts) {
    if (counts.size() != params_.size())
      throw value_error(name() + ": set_param_step_counts got " + std::to_string(counts.size()) + " counts for " +
                        std::to_string(params_.size()) + " parameters");
    param_steps_ = counts;
  }

  /// The parameters, in the order given at construction.
  const std::vector<tensor_type>& parameters() const noexcept { return params_; }

 protected:
  basic_optimizer(const char* who, std::vector<tensor_type> params, double lr) : params_(std::move(params)) {
    check_lr(who, lr);
    lr_ = lr;
    std::size_t total = 0;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const tensor_type& p = params_[i];
      if (!p.defined()) throw value_error(std::string(who) + ": parameter " + std::to_string(i) + " is undefined");
      if (!p.is_leaf())
        throw value_error(std::string(who) + ": parameter " + std::to_string(i) + " is the op result " + p.describe() +
                          ", not a leaf");
      if (!p.requires_grad())
        throw value_error(std::string(who) + ": parameter " + std::to_string(i) + " (" + p.describe() +
                          ") does not require grad");
      offsets_.push_back(total);
      total += static_cast<std::size_t>(p.numel());
    }
    offsets_.push_back(total);
    param_steps_.assign(params_.size(), 0);
  }

  static void check_lr(const char* who, double lr) { tapegrad::detail::check_non_negative(who, "lr", lr); }

  /// Total number of parameter values (the size of one state array).
  std::size_t total_size() const noexcept { return offsets_.back(); }

  /// The state views of one array laid out like the parameters: "<kind>.<i>".
  void add_views(std::vector<StateBuffer<T>>& out, const std::string& kind, std::vector<T>& array) const {
    for (std::size_t i = 0; i < params_.size(); ++i)
      out.push_back({kind + "." + std::to_string(i), params_[i].shape(), array.data() + offsets_[i], i});
  }

  /// Parameter i's slice of a state array laid out like the parameters.
  Eigen::Map<typename tensor_type::Vec> slice(std::vector<T>& array, std::size_t i) {
    return {array.data() + offsets_[i], static_cast<Eigen::Index>(offsets_[i + 1] - offsets_[i])};
  }

  std::vector<tensor_type> params_;
  std::vector<std::size_t> offsets_;  // parameter i's state starts at offsets_[i]; the last entry is the total
  double lr_ = 0;
  std::uint64_t step_ = 0;                  // step() calls
  std::vector<std::uint64_t> param_steps_;  // updates each parameter received
};

}  // namespace tapegrad::optim
