// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::detail {

/// True for a std::shared_ptr to a module of element type T.
template <class P, class T>
struct is_module_ptr : std::false_type {};
template <class M, class T>
struct is_module_ptr<std::shared_ptr<M>, T> : std::bool_constant<std::derived_from<M, nn::basic_module<T>>> {};

}  // namespace tapegrad::detail

namespace tapegrad::nn {

/// A chain of steps applied in order, y = f_n(...f_2(f_1(x))). A step is a
/// module with a one-tensor `forward` (it becomes a child named by its
/// position, "0", "1", ...) or any callable Tensor -> Tensor, such as an
/// activation (it takes a position too but holds no parameters), so the names
/// match PyTorch's Sequential.
///
/// Example:
///   tapegrad::nn::Sequential mlp;
///   mlp.push_back(Linear(2, 16, {.seed = 1}));                  // "0.weight", "0.bias"
///   mlp.push_back([](const Tensor& x) { return relu(x); });     // position 1
///   mlp.push_back(Linear(16, 2, {.seed = 2}));                  // "2.weight", "2.bias"
///   Tensor y = mlp(x);
template <std::floating_point T>
class basic_sequential : public basic_module<T> {
 public:
  using tensor_type = basic_tensor<T>;

  /// Appends a step and returns *this: a module (moved to the heap), a
  /// `std::shared_ptr` to a module (shared with the caller), or a callable.
  template <class S>
  basic_sequential& push_back(S&& step) {
    using D = std::remove_cvref_t<S>;
    if constexpr (tapegrad::detail::is_module_ptr<D, T>::value) {
      add_module(std::shared_ptr<basic_module<T>>(step),
                 [m = step.get()](const tensor_type& x) { return m->forward(x); });
    } else if constexpr (std::derived_from<D, basic_module<T>>) {
      auto m = std::make_shared<D>(std::forward<S>(step));
      add_module(m, [p = m.get()](const tensor_type& x) { return p->forward(x); });
    } else {
      static_assert(std::is_invocable_r_v<tensor_type, D&, const tensor_type&>,
                    "Sequential: a step must be a module or a callable Tensor -> Tensor");
      steps_.emplace_back(std::forward<S>(step));
    }
    return *this;
  }

  /// Runs the steps in order.
  tensor_type forward(const tensor_type& x) {
    tensor_type y = x;
    for (auto& step : steps_) y = step(y);
    return y;
  }
  tensor_type operator()(const tensor_type& x) { return forward(x); }

  /// Number of steps.
  std::size_t size() const noexcept { return steps_.size(); }

 private:
  template <class F>
  void add_module(std::shared_ptr<basic_module<T>> m, F&& call) {
    this->register_module(std::to_string(steps_.size()), std::move(m));
    steps_.emplace_back(std::forward<F>(call));
  }

  // Each step captures a raw pointer to its module; the module itself is kept
  // alive by the children list, which copies share.
  std::vector<std::function<tensor_type(const tensor_type&)>> steps_;
};

/// The float Sequential.
using Sequential = basic_sequential<float>;

/// A list of modules of one type, registered as children "0", "1", ...:
/// the stack of blocks of a transformer ("blocks.0.attn.w_q").
///
/// Example:
///   tapegrad::nn::ModuleList<TransformerBlock> blocks;
///   for (int i = 0; i < 2; ++i) blocks.push_back(TransformerBlock(64, 4, {.d_ff = 256, .generator = &gen}));
///   for (auto& block : blocks) x = block->forward(x);
template <class M>
class ModuleList : public basic_module<typename M::value_type> {
 public:
  using module_type = M;

  /// Appends a module (moved to the heap) and returns it.
  std::shared_ptr<M> push_back(M module) { return push_back(std::make_shared<M>(std::move(module))); }
  /// Appends a module shared with the caller and returns it.
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    this->register_module(std::to_string(items_.size()), module);
    items_.push_back(module);
    return module;
  }

  std::size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }
  /// The module at position i (index_error past the end).
  M& operator[](std::size_t i) const {
    if (i >= items_.size())
      throw index_error("ModuleList: index " + std::to_string(i) + " out of range [0, " +
                        std::to_string(items_.size()) + ")");
    return *items_[i];
  }
  auto begin() const noexcept { return items_.begin(); }
  auto end() const noexcept { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace tapegrad::nn
