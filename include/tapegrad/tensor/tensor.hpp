// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/op_context.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad {

template <std::floating_point T>
class basic_tensor;

/// Records a tensor op: `forward(ctx)` fills `ctx.out()`, `backward(ctx)`
/// accumulates `ctx.in_grad(i)` from `ctx.out_grad()` for each input that
/// `ctx.needs_grad(i)`. Both stand together where the op is defined.
///
/// The library's own ops are written this way, and so are users' ops:
///
/// Example:
///   // y = x^3 elementwise; dy/dx = 3x^2
///   Tensor cube(const Tensor& x) {
///     return tapegrad::make_op<float>("cube", x.shape(), {x},
///         [](OpContext<float>& c) { c.out_vec() = c.in_vec(0).cube(); },
///         [](OpContext<float>& c) { c.in_grad_vec(0) += 3 * c.in_vec(0).square() * c.out_grad_vec(); });
///   }
template <class T, class Forward, class Backward>
basic_tensor<T> make_op(const char* name, const Shape& out_shape, std::initializer_list<basic_tensor<T>> inputs,
                        Forward&& forward, Backward&& backward);

/// `make_op` for any number of inputs held in a vector (concat, stack...).
template <class T, class Forward, class Backward>
basic_tensor<T> make_op(const char* name, const Shape& out_shape, const std::vector<basic_tensor<T>>& inputs,
                        Forward&& forward, Backward&& backward);

/// An n-dimensional array on the tape, float by default (`Tensor`) and double
/// for gradient checks (`basic_tensor<double>`). Storage is contiguous and
/// row-major. A tensor made by a creation function is a *leaf* that owns its
/// data and outlives every tape; a tensor returned by an op is an
/// *intermediate* in its tape's arena, freed by the tape's clear.
///
/// Example:
///   Tensor w = tapegrad::from<float>({{1, 2}, {3, 4}}).requires_grad(true);
///   Tensor loss = sum(matmul(w, w));
///   loss.backward();
///   w.grad();   // d loss / d w
template <std::floating_point T>
class basic_tensor {
 public:
  using value_type = T;
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  /// An empty handle: `defined()` is false.
  basic_tensor() = default;

  /// A leaf of the given shape filled with `fill`.
  explicit basic_tensor(const Shape& shape, T fill = T(0)) : leaf_(std::make_shared<detail::tensor_storage<T>>()) {
    leaf_->shape = shape;
    leaf_->owned_data.assign(static_cast<std::size_t>(shape.numel()), fill);
    leaf_->data = leaf_->owned_data.data();
    impl_ = leaf_.get();
  }

  /// A leaf with the given shape and values (row-major).
  basic_tensor(const Shape& shape, std::vector<T> values) : leaf_(std::make_shared<detail::tensor_storage<T>>()) {
    if (static_cast<index_t>(values.size()) != shape.numel())
      throw shape_error("Tensor: " + std::to_string(values.size()) + " values do not fill shape " + shape.str() + " (" +
                        std::to_string(shape.numel()) + " elements)");
    leaf_->shape = shape;
    leaf_->owned_data = std::move(values);
    leaf_->data = leaf_->owned_data.data();
    impl_ = leaf_.get();
  }

  /// True unless this is an empty handle.
  bool defined() const noexcept { return impl_ != nullptr; }

  /// The shape; `rank()`, `size(i)` and `numel()` read it.
  const Shape& shape() const { return storage().shape; }
  int rank() const { return shape().rank(); }
  index_t size(int i) const { return shape()[i]; }
  index_t numel() const { return shape().numel(); }

  /// True for a tensor made by a creation function rather than an op.
  bool is_leaf() const noexcept { return leaf_ != nullptr; }

  /// Whether gradients flow to this tensor.
  bool requires_grad() const { return storage().requires_grad; }

  /// Marks a leaf as a parameter that receives gradients; returns *this.
  basic_tensor& requires_grad(bool on) & {
    if (!is_leaf()) throw value_error("requires_grad: only a leaf can change it; " + describe() + " is an op result");
    leaf_->requires_grad = on;
    return *this;
  }
  basic_tensor&& requires_grad(bool on) && { return std::move(requires_grad(on)); }

  /// False once the tape clear that freed this intermediate has run.
  bool is_alive() const noexcept {
    if (!impl_) return false;
    if (leaf_) return true;
    return tape_->tensor_node_alive(node_, serial_);
  }

  /// The values as a flat Eigen array (row-major order).
  Eigen::Map<Vec> data() {
    auto& s = storage();
    return {s.data, static_cast<Eigen::Index>(s.shape.numel())};
  }
  Eigen::Map<const Vec> data() const {
    const auto& s = storage();
    return {s.data, static_cast<Eigen::Index>(s.shape.numel())};
  }

  /// The values as a row-major matrix: rank 2 as is, rank 1 as one row, rank 0
  /// as 1x1, higher ranks with all leading dimensions folded into rows.
  Eigen::Map<const Mat> matrix() const {
    const auto& s = storage();
    const index_t cols = s.shape.rank() == 0 ? 1 : s.shape[-1];
    const index_t rows = cols == 0 ? 0 : s.shape.numel() / cols;
    return {s.data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }
  Eigen::Map<Mat> matrix() {
    auto& s = storage();
    const index_t cols = s.shape.rank() == 0 ? 1 : s.shape[-1];
    const index_t rows = cols == 0 ? 0 : s.shape.numel() / cols;
    return {s.data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// d(root)/d(this) as a flat array: zeros until a gradient reaches it.
  /// Leaf gradients accumulate across backward() calls until zero_grad().
  Eigen::Map<const Vec> grad() const {
    auto& s = const_cast<detail::tensor_storage<T>&>(storage());
    if (!s.grad) ensure_grad(s);
    return {s.grad, static_cast<Eigen::Index>(s.shape.numel())};
  }
  /// Writable gradient of a leaf (for optimizers and gradient clipping).
  /// Writing a gradient supplies one: has_grad() is true afterwards.
  Eigen::Map<Vec> grad_mut() {
    auto& s = storage();
    if (!s.grad) ensure_grad(s);
    s.grad_live = true;
    return {s.grad, static_cast<Eigen::Index>(s.shape.numel())};
  }
  /// The gradient as a tensor leaf with this tensor's shape (a copy).
  basic_tensor grad_tensor() const {
    auto g = grad();
    return basic_tensor(shape(), std::vector<T>(g.data(), g.data() + g.size()));
  }
  /// True when a gradient reached this tensor (backward, or a write through
  /// grad_mut()) since it was last zeroed. Reading grad() never changes it.
  bool has_grad() const { return storage().grad_live; }

  /// Sets the gradient "to none": has_grad() becomes false and grad() reads
  /// zeros. The buffer is kept, so a training loop allocates nothing.
  void zero_grad() {
    auto& s = storage();
    if (s.grad) std::fill_n(s.grad, s.shape.numel(), T(0));
    s.grad_live = false;
  }

  /// The single value of a one-element tensor.
  T item() const {
    const auto& s = storage();
    if (s.shape.numel() != 1)
      throw shape_error("item: tensor of shape " + s.shape.str() + " has " + std::to_string(s.shape.numel()) +
                        " elements, not 1");
    return s.data[0];
  }

  /// The value at a multi-index: `t.at({1, 2})`.
  T at(std::initializer_list<index_t> idx) const { return storage().data[flat_index(idx)]; }
  /// The gradient at a multi-index.
  T grad_at(std::initializer_list<index_t> idx) const { return grad()[static_cast<Eigen::Index>(flat_index(idx))]; }

  /// A copy of the values, row-major.
  std::vector<T> to_vector() const {
    auto d = data();
    return {d.data(), d.data() + d.size()};
  }

  /// Runs the reverse sweep from this one-element tensor with seed 1.
  void backward() const {
    if (numel() != 1)
      throw shape_error("backward: the root has shape " + shape().str() +
                        "; a non-scalar root needs a seed: backward(seed)");
    const T one(1);
    backward_from(&one);  // no seed tensor: a warm training step allocates nothing
  }

  /// Runs the reverse sweep from this tensor with the given seed gradient,
  /// which must have this tensor's shape.
  void backward(const basic_tensor& seed) const;

  /// Internal: the reverse sweep from this tensor, seeded with numel() values at `seed`.
  void backward_from(const T* seed) const;

  /// A one-line description for messages: "matmul [8, 20]" or "leaf [64, 20]".
  std::string describe() const {
    if (!impl_) return "<undefined tensor>";
    if (!is_alive()) return "<stale tensor>";
    return std::string(leaf_ ? "leaf" : node()->name) + " " + impl_->shape.str();
  }

  /// The op that made this tensor ("leaf" for a leaf).
  std::string op() const { return leaf_ ? std::string("leaf") : std::string(node()->name); }

  /// The tensors this one was computed from (empty for a leaf and a barrier).
  std::vector<basic_tensor> children() const;

  /// The tape an intermediate lives on (nullptr for a leaf).
  Tape* tape() const noexcept { return tape_; }
  /// Position of an intermediate's node on its tape.
  std::size_t node_index() const noexcept { return node_; }

  /// Internal: the storage behind the handle, after checking it is alive.
  detail::tensor_storage<T>& storage() const {
    if (!impl_) throw value_error("Tensor: use of an undefined (empty) tensor handle");
    if (!leaf_ && !tape_->tensor_node_alive(node_, serial_))
      throw stale_value_error("Tensor: the intermediate at tape position " + std::to_string(node_) +
                              " was freed by a clear or rewind of its tape (stale handle)");
    return *impl_;
  }
  /// Internal: the shared leaf storage (null for intermediates).
  const std::shared_ptr<detail::tensor_storage<T>>& leaf_storage() const noexcept { return leaf_; }

  /// Internal: wraps a node's output.
  static basic_tensor from_node(Tape& tape, std::size_t index, detail::op_node<T>* n) {
    basic_tensor t;
    t.impl_ = &n->out;
    t.tape_ = &tape;
    t.node_ = index;
    t.serial_ = n->serial;
    return t;
  }
  /// Internal: wraps a leaf storage.
  static basic_tensor from_leaf(std::shared_ptr<detail::tensor_storage<T>> s) {
    basic_tensor t;
    t.leaf_ = std::move(s);
    t.impl_ = t.leaf_.get();
    return t;
  }

  friend std::ostream& operator<<(std::ostream& os, const basic_tensor& t) {
    os << "Tensor" << t.shape().str() << "(";
    auto d = t.data();
    const Eigen::Index n = std::min<Eigen::Index>(d.size(), 12);
    for (Eigen::Index i = 0; i < n; ++i) os << (i ? ", " : "") << d[i];
    if (d.size() > n) os << ", ...";
    return os << ")";
  }

 private:
  detail::op_node<T>* node() const { return static_cast<detail::op_node<T>*>(tape_->tensor_nodes()[node_]); }
  void ensure_grad(detail::tensor_storage<T>& s) const {
    if (s.is_leaf)
      OpContext<T>::grad_buffer(s, *tape_or_active());
    else
      OpContext<T>::grad_buffer(s, *tape_);
  }
  Tape* tape_or_active() const { return tape_ ? tape_ : &Tape::active(); }
  index_t flat_index(std::initializer_list<index_t> idx) const {
    const Shape& s = storage().shape;
    if (static_cast<int>(idx.size()) != s.rank())
      throw index_error("at: " + std::to_string(idx.size()) + " indices for a tensor of rank " +
                        std::to_string(s.rank()));
    index_t flat = 0;
    int d = 0;
    for (index_t i : idx) {
      if (i < 0 || i >= s[d])
        throw index_error("at: index " + std::to_string(i) + " out of range [0, " + std::to_string(s[d]) +
                          ") in dimension " + std::to_string(d) + " of shape " + s.str());
      flat = flat * s[d] + i;
      ++d;
    }
    return flat;
  }

  std::shared_ptr<detail::tensor_storage<T>> leaf_;
  detail::tensor_storage<T>* impl_ = nullptr;
  Tape* tape_ = nullptr;
  std::size_t node_ = 0;
  std::uint64_t serial_ = 0;
};

/// The float tensor.
using Tensor = basic_tensor<float>;

namespace detail {

template <class T, class Inputs, class Forward, class Backward>
basic_tensor<T> make_op_impl(const char* name, const Shape& out_shape, const Inputs& inputs, Forward&& forward,
                             Backward&& backward) {
  bool any_grad = false;
  Tape* tape = nullptr;
  for (const basic_tensor<T>& x : inputs) {
    tensor_storage<T>& s = x.storage();  // throws on undefined or stale inputs
    any_grad = any_grad || s.requires_grad;
    if (!x.is_leaf()) {
      if (tape && tape != x.tape()) throw tape_mismatch_error(std::string(name) + ": inputs live on different tapes");
      tape = x.tape();
    }
  }
  const thread_state& st = state();
  if (!st.grad_enabled) {
    // Nothing is recorded: the result is a fresh leaf that owns its values.
    auto s = std::make_shared<tensor_storage<T>>();
    s->shape = out_shape;
    s->owned_data.resize(static_cast<std::size_t>(out_shape.numel()));
    s->data = s->owned_data.data();
    std::vector<tensor_storage<T>*> in;
    in.reserve(inputs.size());
    for (const basic_tensor<T>& x : inputs) in.push_back(&x.storage());
    Tape& scratch_tape = tape ? *tape : Tape::active();
    OpContext<T> ctx(*s, in.data(), in.size(), scratch_tape);
    forward(ctx);
    if (st.anomaly) check_finite(name, "output", s->data, out_shape.numel());
    return basic_tensor<T>::from_leaf(std::move(s));
  }
  if (!tape) tape = &Tape::active();
  arena& a = tape->arena();
  op_node<T>* n;
  if (any_grad) {
    using B = std::decay_t<Backward>;
    void* mem = a.allocate(sizeof(op_node_with<T, B>), alignof(op_node_with<T, B>));
    n = new (mem) op_node_with<T, B>(std::forward<Backward>(backward));
  } else {
    void* mem = a.allocate(sizeof(op_node_plain<T>), alignof(op_node_plain<T>));
    n = new (mem) op_node_plain<T>();
  }
  n->name = name;
  n->tape = tape;
  n->out.shape = out_shape;
  n->out.is_leaf = false;
  n->out.requires_grad = any_grad;
  n->out.data = a.allocate_array<T>(static_cast<std::size_t>(out_shape.numel()));
  n->n_in = static_cast<std::uint32_t>(inputs.size());
  n->in = static_cast<tensor_storage<T>**>(a.allocate(sizeof(tensor_storage<T>*) * (inputs.size() + 1)));
  std::size_t i = 0;
  for (const basic_tensor<T>& x : inputs) {
    n->in[i++] = &x.storage();
    if (x.is_leaf()) tape->keep_alive(x.leaf_storage());
  }
  const std::size_t index = tape->push_tensor_node(n);
  OpContext<T> ctx(n->out, n->in, n->n_in, *tape);
  try {
    forward(ctx);
  } catch (...) {
    tape->pop_tensor_node();  // a failed op leaves nothing behind
    throw;
  }
  if (st.anomaly) check_finite(name, "output", n->out.data, out_shape.numel());
  return basic_tensor<T>::from_node(*tape, index, n);
}

}  // namespace detail

template <class T, class Forward, class Backward>
basic_tensor<T> make_op(const char* name, const Shape& out_shape, std::initializer_list<basic_tensor<T>> inputs,
                        Forward&& forward, Backward&& backward) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward));
}

template <class T, class Forward, class Backward>
basic_tensor<T> make_op(const char* name, const Shape& out_shape, const std::vector<basic_tensor<T>>& inputs,
                        Forward&& forward, Backward&& backward) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward));
}

template <std::floating_point T>
void basic_tensor<T>::backward(const basic_tensor& seed) const {
  auto& root = storage();
  const auto& sd = seed.storage();
  if (!(sd.shape == root.shape))
    throw shape_error("backward: seed shape " + sd.shape.str() + " differs from root shape " + root.shape.str());
  backward_from(sd.data);
}

template <std::floating_point T>
void basic_tensor<T>::backward_from(const T* seed) const {
  auto& root = storage();
  if (!root.requires_grad)
    throw value_error("backward: " + describe() + " does not require grad (no parameter reaches it)");
  const index_t n = root.shape.numel();
  if (leaf_) {
    T* g = OpContext<T>::grad_buffer(root, Tape::active());
    root.grad_live = true;
    for (index_t i = 0; i < n; ++i) g[i] += seed[i];
    return;
  }
  const auto& nodes = tape_->tensor_nodes();
  // Intermediate gradients describe the latest root only; leaves accumulate.
  for (std::size_t i = 0; i <= node_; ++i) nodes[i]->reset_grad();
  T* g = OpContext<T>::grad_buffer(root, *tape_);
  root.grad_live = true;
  std::copy_n(seed, n, g);
  const bool anomaly = is_anomaly_enabled();
  for (std::size_t i = node_ + 1; i-- > 0;) {
    detail::tensor_node* tn = nodes[i];
    if (!tn->reached()) continue;
    tn->run_backward();
    if (anomaly) {
      // Which T a node holds is known only to the node; check ours.
      if (auto* on = dynamic_cast<detail::op_node<T>*>(tn)) {
        for (std::uint32_t k = 0; k < on->n_in; ++k)
          if (on->in[k]->grad)
            detail::check_finite(on->name, "input gradient", on->in[k]->grad, on->in[k]->shape.numel());
      }
    }
  }
}

template <std::floating_point T>
std::vector<basic_tensor<T>> basic_tensor<T>::children() const {
  std::vector<basic_tensor<T>> out;
  if (leaf_ || !is_alive()) return out;
  // Children are found by storage: a leaf input is wrapped through the tape's
  // kept-alive list, an intermediate through its node.
  const detail::op_node<T>* n = node();
  if (n->barrier) return out;
  const auto& nodes = tape_->tensor_nodes();
  for (std::uint32_t k = 0; k < n->n_in; ++k) {
    const detail::tensor_storage<T>* s = n->in[k];
    bool found = false;
    if (!s->is_leaf) {
      for (std::size_t j = node_; j-- > 0;) {
        auto* on = dynamic_cast<detail::op_node<T>*>(nodes[j]);
        if (on && &on->out == s) {
          out.push_back(from_node(*tape_, j, const_cast<detail::op_node<T>*>(on)));
          found = true;
          break;
        }
      }
    }
    if (!found) {
      // A leaf: share ownership with a handle that is still around, if any.
      basic_tensor t;
      t.impl_ = const_cast<detail::tensor_storage<T>*>(s);
      t.leaf_ = std::shared_ptr<detail::tensor_storage<T>>(std::shared_ptr<void>{}, t.impl_);
      out.push_back(t);
    }
  }
  return out;
}

}  // namespace tapegrad
