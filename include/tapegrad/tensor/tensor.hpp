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
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/detail/record.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad {

/// An n-dimensional array on the tape, float by default (`Tensor`) and double
/// for gradient checks (`basic_tensor<double>`). Storage is contiguous and
/// row-major. A tensor made by a creation function is a *leaf* that owns its
/// data and outlives every tape; a tensor returned by an op is an
/// *intermediate* in its tape's arena, freed by the tape's clear or rewind (a
/// handle to it then raises `stale_handle_error`), and usable only on the
/// thread its tape belongs to (elsewhere: `thread_error`).
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

  basic_tensor(const basic_tensor&) = default;
  basic_tensor& operator=(const basic_tensor&) = default;
  /// A moved-from handle is empty: using it raises `stale_handle_error`.
  basic_tensor(basic_tensor&& o) noexcept
      : leaf_(std::move(o.leaf_)),
        impl_(std::exchange(o.impl_, nullptr)),
        store_(std::exchange(o.store_, nullptr)),
        node_(o.node_),
        serial_(o.serial_) {}
  basic_tensor& operator=(basic_tensor&& o) noexcept {
    if (this != &o) {
      leaf_ = std::move(o.leaf_);
      impl_ = std::exchange(o.impl_, nullptr);
      store_ = std::exchange(o.store_, nullptr);
      node_ = o.node_;
      serial_ = o.serial_;
    }
    return *this;
  }
  ~basic_tensor() = default;

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

  /// True when the handle can be used here: a leaf, or an intermediate whose
  /// node is still recorded on a live tape that belongs to this thread.
  bool is_alive() const noexcept {
    if (!impl_) return false;
    if (leaf_) return true;
    return detail::usable_here(*store_) && store_->alive(node_, serial_);
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

  /// d(root)/d(this) as a flat array: zeros when no gradient reached it.
  /// Leaf gradients accumulate across backward() calls until zero_grad(); an
  /// intermediate's is the gradient of the latest reverse sweep on its tape.
  /// Reading never changes `has_grad()`, so an optimizer treats a gradient
  /// that was only read as none.
  Eigen::Map<const Vec> grad() const {
    detail::tensor_storage<T>& s = storage();
    return {readable_grad(s), static_cast<Eigen::Index>(s.shape.numel())};
  }
  /// Writable gradient of a leaf (for optimizers, gradient clipping and
  /// all-reduce). Writing through it counts as a gradient: `has_grad()` is then true.
  Eigen::Map<Vec> grad_mut() {
    detail::tensor_storage<T>& s = storage();
    if (s.is_leaf) {
      T* g = readable_grad(s);
      s.grad_live = true;
      return {g, static_cast<Eigen::Index>(s.shape.numel())};
    }
    if (!s.grad) throw value_error("grad_mut: " + describe() + " does not require grad");
    if (s.swept != store_->sweep) {
      std::fill_n(s.grad, s.shape.numel(), T(0));
      s.swept = store_->sweep;
    }
    return {s.grad, static_cast<Eigen::Index>(s.shape.numel())};
  }
  /// The gradient as a tensor leaf with this tensor's shape (a copy).
  basic_tensor grad_tensor() const {
    auto g = grad();
    return basic_tensor(shape(), std::vector<T>(g.data(), g.data() + g.size()));
  }
  /// True when a gradient reached this tensor: for a leaf, since its last
  /// `zero_grad()`; for an intermediate, in the latest reverse sweep. As
  /// PyTorch's `grad is not None`.
  bool has_grad() const {
    const detail::tensor_storage<T>& s = storage();
    if (s.is_leaf) return s.grad_live;
    return s.grad && s.swept == store_->sweep;
  }

  /// Forgets the gradient, as PyTorch's `zero_grad(set_to_none=True)`: it
  /// reads as zeros and `has_grad()` is false until a gradient arrives. The
  /// buffer is kept, so a training loop does not allocate.
  void zero_grad() {
    detail::tensor_storage<T>& s = storage();
    if (s.grad) std::fill_n(s.grad, s.shape.numel(), T(0));
    if (s.is_leaf) s.grad_live = false;
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
  void backward(const basic_tensor& seed) const {
    const detail::tensor_storage<T>& root = storage();
    const detail::tensor_storage<T>& sd = seed.storage();
    if (!(sd.shape == root.shape))
      throw shape_error("backward: seed shape " + sd.shape.str() + " differs from root shape " + root.shape.str());
    backward_from(sd.data);
  }

  /// A one-line description for messages: "matmul [8, 20]" or "leaf [64, 20]".
  std::string describe() const {
    if (!impl_) return "<undefined tensor>";
    if (!is_alive()) return "<stale tensor>";
    std::string what = !impl_->label.empty() ? impl_->label : leaf_ ? std::string("leaf") : std::string(node()->name);
    return what + " " + impl_->shape.str();
  }

  /// The op that made this tensor ("leaf" for a leaf).
  std::string op() const {
    storage();
    return leaf_ ? std::string("leaf") : std::string(node()->name);
  }

  /// Gives this tensor a name shown by printed graphs and DOT export (a
  /// module names its parameters by their dotted path). Returns *this.
  basic_tensor& label(std::string name) {
    storage().label = std::move(name);
    return *this;
  }
  /// The name given by `label()`, or an empty string.
  const std::string& label() const { return storage().label; }

  /// The tensors this one was computed from, in order (empty for a leaf and a
  /// barrier). Each is a handle like any other: a leaf child keeps its
  /// storage alive, an intermediate child lives as long as its node.
  std::vector<basic_tensor> children() const {
    std::vector<basic_tensor> out;
    storage();
    if (leaf_) return out;
    const detail::op_node<T>* n = node();
    if (n->barrier) return out;
    out.reserve(n->n_in);
    for (std::uint32_t k = 0; k < n->n_in; ++k) out.push_back(from_edge(n->in[k]));
    return out;
  }

  /// The input a stop_gradient node blocks (drawn by printed graphs as a cut
  /// edge); an empty handle for any other tensor.
  basic_tensor stopped_input() const {
    storage();
    if (leaf_) return {};
    const detail::op_node<T>* n = node();
    if (!n->barrier || n->n_in == 0) return {};
    return from_edge(n->in[0]);
  }

  /// True when both handles refer to the same tensor (the same storage).
  bool same_as(const basic_tensor& o) const noexcept { return impl_ != nullptr && impl_ == o.impl_; }

  /// The tape an intermediate lives on; nullptr for a leaf.
  Tape* tape() const {
    storage();
    return leaf_ ? nullptr : Tape::of(*store_->tape);
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
  friend struct detail::access<basic_tensor>;

  // The storage behind the handle, after checking the handle can be used here.
  detail::tensor_storage<T>& storage() const {
    if (!impl_) [[unlikely]]
      throw stale_handle_error("Tensor: use of an empty (default-made or moved-from) tensor handle");
    if (!leaf_) {
      if (!detail::usable_here(*store_)) [[unlikely]]
        detail::throw_unusable(*store_, "Tensor");
      if (!store_->alive(node_, serial_)) [[unlikely]]
        throw stale_handle_error("Tensor: the intermediate at tape position " + std::to_string(node_) +
                                 " was freed by a clear or rewind of its tape (stale handle)");
    }
    return *impl_;
  }

  detail::op_node<T>* node() const { return static_cast<detail::op_node<T>*>(store_->nodes[node_]); }

  // The gradient buffer for reading: zeros when no gradient arrived.
  T* readable_grad(detail::tensor_storage<T>& s) const {
    const auto n = static_cast<std::size_t>(s.shape.numel());
    if (s.is_leaf) {
      // A leaf's buffer holds zeros whenever grad_live is false.
      if (!s.grad) {
        s.owned_grad.assign(n, T(0));
        s.grad = s.owned_grad.data();
      }
      return s.grad;
    }
    if (s.grad && s.swept == store_->sweep) return s.grad;
    // Not reached in the latest sweep (or not requiring grad): zeros, from a
    // buffer of the node's own, freed with it; the arena buffer stays
    // untouched so that reading does not count as a gradient.
    if (s.owned_grad.size() != n) s.owned_grad.assign(n, T(0));
    return s.owned_grad.data();
  }

  basic_tensor from_edge(const detail::edge<T>& e) const {
    if (e.node == detail::no_node)
      return from_leaf(std::static_pointer_cast<detail::tensor_storage<T>>(store_->kept[e.kept]));
    return from_node(*store_, e.node, e.serial, e.s);
  }

  static basic_tensor from_node(detail::tensor_store& store, std::uint32_t index, std::uint64_t serial,
                                detail::tensor_storage<T>* s) {
    basic_tensor t;
    t.impl_ = s;
    t.store_ = &store;
    t.node_ = index;
    t.serial_ = serial;
    return t;
  }
  static basic_tensor from_leaf(std::shared_ptr<detail::tensor_storage<T>> s) {
    basic_tensor t;
    t.leaf_ = std::move(s);
    t.impl_ = t.leaf_.get();
    return t;
  }

  void backward_from(const T* seed) const;

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

  std::shared_ptr<detail::tensor_storage<T>> leaf_;  // leaves: shared ownership of the storage
  detail::tensor_storage<T>* impl_ = nullptr;
  detail::tensor_store* store_ = nullptr;  // intermediates: the store of their tape
  std::uint32_t node_ = 0;                 // intermediates: position on the tape
  std::uint64_t serial_ = 0;               // intermediates: the node's serial
};

/// The float tensor.
using Tensor = basic_tensor<float>;

namespace detail {

/// The internals of tensor handles, for the library's own layers. Nothing here is for users.
template <class T>
struct access<basic_tensor<T>> {
  using tensor = basic_tensor<T>;
  static tensor_storage<T>& storage(const tensor& t) { return t.storage(); }
  static tensor_store* store(const tensor& t) noexcept { return t.store_; }
  static std::uint32_t node_index(const tensor& t) noexcept { return t.node_; }
  static const op_node<T>* node(const tensor& t) {
    t.storage();
    return t.leaf_ ? nullptr : t.node();
  }
  static const std::shared_ptr<tensor_storage<T>>& leaf(const tensor& t) noexcept { return t.leaf_; }
  static tensor from_node(tensor_store& store, std::uint32_t index, op_node<T>* n) {
    return tensor::from_node(store, index, n->serial, &n->out);
  }
  static tensor from_leaf(std::shared_ptr<tensor_storage<T>> s) { return tensor::from_leaf(std::move(s)); }
  static tensor from_edge(const tensor& parent, const edge<T>& e) { return parent.from_edge(e); }
  static void backward_from(const tensor& t, const T* seed) { t.backward_from(seed); }
};

}  // namespace detail

template <std::floating_point T>
void basic_tensor<T>::backward_from(const T* seed) const {
  detail::tensor_storage<T>& root = storage();
  if (!root.requires_grad)
    throw value_error("backward: " + describe() + " does not require grad (no parameter reaches it)");
  const index_t n = root.shape.numel();
  if (leaf_) {
    T* g = readable_grad(root);
    root.grad_live = true;
    for (index_t i = 0; i < n; ++i) g[i] += seed[i];
    return;
  }
  detail::tensor_store& ts = *store_;
  // A new sweep number: every intermediate, before and after the root, now
  // reads as unreached (zero) until this sweep writes to it. Leaves keep
  // accumulating across sweeps until zero_grad().
  const std::uint32_t sweep = ++ts.sweep;
  std::copy_n(seed, n, root.grad);
  root.swept = sweep;
  detail::arena& scratch = ts.tape->scratch;
  const bool anomaly = is_anomaly_enabled();
  // Inputs were recorded before their users, so one walk from the root down
  // visits every node after all of its users: no sort, no recursion.
  for (std::size_t i = node_ + 1; i-- > 0;) {
    detail::tensor_node* tn = ts.nodes[i];
    if (tn->barrier || !tn->reached(sweep)) continue;
    const detail::arena::mark m = scratch.position();
    tn->run_backward(ts);
    scratch.rewind(m);
    if (anomaly) tn->check_input_grads(sweep);
  }
}

}  // namespace tapegrad
