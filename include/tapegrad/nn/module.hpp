// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {

/// The base of every layer and model: it holds named parameters and named
/// child modules, in the order they were registered.
///
/// Layers are templates on the element type: `basic_linear<double>` is the
/// layer a gradient check uses, `Linear = basic_linear<float>` the one a model
/// trains with. `Module = basic_module<float>` is the float base.
///
/// Parameters are leaf tensors with `requires_grad` set. Child modules are
/// held by `std::shared_ptr`, so a module can be copied and moved freely; a
/// copy is shallow (it shares parameters with the original), as tensor handles
/// are.
///
/// Names are dotted paths: a module's own parameters first, then each child's
/// parameters under the child's name, depth first, e.g. "blocks.0.attn.w_q".
/// The order never changes between runs, which is what checkpoints rely on.
///
/// Example:
///   struct TwoLayer : tapegrad::nn::Module {
///     std::shared_ptr<nn::Linear> fc1, fc2;
///     TwoLayer() {
///       fc1 = register_module("fc1", nn::Linear(4, 8, {.seed = 1}));
///       fc2 = register_module("fc2", nn::Linear(8, 2, {.seed = 2}));
///     }
///     Tensor forward(const Tensor& x) { return fc2->forward(relu(fc1->forward(x))); }
///   };
///   TwoLayer net;
///   net.named_parameters();   // fc1.weight, fc1.bias, fc2.weight, fc2.bias
///   net.parameter_count();    // 4*8 + 8 + 8*2 + 2 = 58
template <std::floating_point T>
class basic_module {
 public:
  using value_type = T;
  using tensor_type = basic_tensor<T>;

  basic_module() = default;
  basic_module(const basic_module&) = default;
  basic_module(basic_module&&) noexcept = default;
  basic_module& operator=(const basic_module&) = default;
  basic_module& operator=(basic_module&&) noexcept = default;
  virtual ~basic_module() = default;

  /// Adds a parameter under `name` (no dots; unique in this module), marks it
  /// `requires_grad` and returns the handle (it shares storage with the one kept here).
  tensor_type register_parameter(const std::string& name, tensor_type t) {
    check_new_name("register_parameter", name);
    if (!t.defined()) throw value_error("register_parameter: '" + name + "' is an undefined tensor");
    if (!t.is_leaf())
      throw value_error("register_parameter: '" + name + "' must be a leaf, not the op result " + t.describe());
    t.requires_grad(true);
    params_.emplace_back(name, t);
    return t;
  }

  /// Adds a child module under `name` and returns it.
  template <class M>
  requires std::derived_from<M, basic_module> std::shared_ptr<M> register_module(const std::string& name,
                                                                                 std::shared_ptr<M> child) {
    check_new_name("register_module", name);
    if (!child) throw value_error("register_module: '" + name + "' is a null module");
    children_.emplace_back(name, child);
    return child;
  }

  /// Adds a child module given by value (moved to the heap) and returns it.
  template <class M>
  requires std::derived_from<std::remove_cvref_t<M>, basic_module> &&
      (!std::is_lvalue_reference_v<M>)std::shared_ptr<std::remove_cvref_t<M>> register_module(const std::string& name,
                                                                                              M&& child) {
    return register_module(name, std::make_shared<std::remove_cvref_t<M>>(std::forward<M>(child)));
  }

  /// Every parameter with its dotted name: own parameters first, then each
  /// child's, in registration order.
  std::vector<std::pair<std::string, tensor_type>> named_parameters() const {
    std::vector<std::pair<std::string, tensor_type>> out;
    collect_named("", out);
    return out;
  }

  /// Every parameter, in the order of `named_parameters()`.
  std::vector<tensor_type> parameters() const {
    std::vector<tensor_type> out;
    collect(out);
    return out;
  }

  /// The direct children with their names.
  const std::vector<std::pair<std::string, std::shared_ptr<basic_module>>>& named_children() const noexcept {
    return children_;
  }

  /// Sets every parameter's gradient to zero (the buffers are kept).
  void zero_grad() {
    for (auto& [name, p] : params_) p.zero_grad();
    for (auto& [name, c] : children_) c->zero_grad();
  }

  /// Switches this module and all its children to training mode (`on`) or
  /// evaluation mode. Dropout is active only in training mode.
  void train(bool on = true) {
    training_ = on;
    for (auto& [name, c] : children_) c->train(on);
  }
  /// Same as `train(false)`.
  void eval() { train(false); }
  /// True in training mode (the default).
  bool is_training() const noexcept { return training_; }

  /// Total number of scalar parameters.
  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (const auto& [name, p] : params_) n += static_cast<std::size_t>(p.numel());
    for (const auto& [name, c] : children_) n += c->parameter_count();
    return n;
  }

  /// A table with one row per parameter (name, shape, count) and the total:
  ///
  ///   name        shape    count
  ///   ------------------------------
  ///   fc.weight   [4, 8]      32
  ///   fc.bias     [8]          8
  ///   ------------------------------
  ///   total (2 tensors)       40
  std::string summary() const;

 private:
  void check_new_name(const char* what, const std::string& name) const {
    if (name.empty()) throw value_error(std::string(what) + ": empty name");
    if (name.find('.') != std::string::npos)
      throw value_error(std::string(what) + ": name '" + name + "' contains a '.', which separates path parts");
    for (const auto& [n, p] : params_)
      if (n == name) throw value_error(std::string(what) + ": name '" + name + "' is already a parameter");
    for (const auto& [n, c] : children_)
      if (n == name) throw value_error(std::string(what) + ": name '" + name + "' is already a child module");
  }

  void collect_named(const std::string& prefix, std::vector<std::pair<std::string, tensor_type>>& out) const {
    for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
    for (const auto& [n, c] : children_) c->collect_named(prefix + n + ".", out);
  }

  void collect(std::vector<tensor_type>& out) const {
    for (const auto& [n, p] : params_) out.push_back(p);
    for (const auto& [n, c] : children_) c->collect(out);
  }

  std::vector<std::pair<std::string, tensor_type>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<basic_module>>> children_;
  bool training_ = true;
};

/// The float module base.
using Module = basic_module<float>;

}  // namespace tapegrad::nn

namespace tapegrad::detail {

/// 102036 -> "102,036".
inline std::string group_thousands(std::size_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace tapegrad::detail

namespace tapegrad::nn {

template <std::floating_point T>
std::string basic_module<T>::summary() const {
  const auto named = named_parameters();
  std::vector<std::string> counts;
  std::size_t name_w = 4, shape_w = 5, count_w = 5, total = 0;
  for (const auto& [name, p] : named) {
    counts.push_back(tapegrad::detail::group_thousands(static_cast<std::size_t>(p.numel())));
    total += static_cast<std::size_t>(p.numel());
    name_w = std::max(name_w, name.size());
    shape_w = std::max(shape_w, p.shape().str().size());
    count_w = std::max(count_w, counts.back().size());
  }
  const std::string total_label = "total (" + std::to_string(named.size()) + " tensors)";
  const std::string total_str = tapegrad::detail::group_thousands(total);
  count_w = std::max(count_w, total_str.size());
  // The total's label spans the name and shape columns.
  const std::size_t left_w = std::max(name_w + 2 + shape_w, total_label.size());
  name_w = left_w - 2 - shape_w;
  const std::size_t width = left_w + 2 + count_w;

  std::ostringstream os;
  auto pad_right = [](const std::string& s, std::size_t w) { return s + std::string(w - s.size(), ' '); };
  auto pad_left = [](const std::string& s, std::size_t w) { return std::string(w - s.size(), ' ') + s; };
  os << pad_right("name", name_w) << "  " << pad_right("shape", shape_w) << "  " << pad_left("count", count_w) << "\n";
  os << std::string(width, '-') << "\n";
  for (std::size_t i = 0; i < named.size(); ++i)
    os << pad_right(named[i].first, name_w) << "  " << pad_right(named[i].second.shape().str(), shape_w) << "  "
       << pad_left(counts[i], count_w) << "\n";
  os << std::string(width, '-') << "\n";
  os << pad_right(total_label, left_w) << "  " << pad_left(total_str, count_w) << "\n";
  return os.str();
}

}  // namespace tapegrad::nn
