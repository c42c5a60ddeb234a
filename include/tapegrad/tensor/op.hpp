// SPDX-License-Identifier: MIT
#pragma once

// The public op API: `make_op` records an op from its forward and backward
// rules, which are written against `OpContext`. The library's own ops use
// nothing else, and neither need users' ops.

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/detail/record.hpp"
#include "tapegrad/tensor/forward.hpp"
#include "tapegrad/tensor/shape.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

/// How `make_op` records an op.
struct OpOptions {
  /// A barrier, as `stop_gradient` is: the node and its edges are recorded,
  /// so printed graphs show the cut, but the backward rule never runs and the
  /// output does not require grad.
  bool barrier = false;
};

template <class T>
class OpContext;

namespace detail {

template <class T, class Inputs, class Forward, class Backward, class Jvp>
basic_tensor<T> make_op_impl(const char* name, const Shape& out_shape, const Inputs& inputs, Forward&& forward,
                             Backward&& backward, Jvp&& jvp, const OpOptions& options);

template <class T, class B>
struct op_node_with;

}  // namespace detail

/// What a tensor op's forward and backward functions see: the output, the
/// inputs, and (in backward) the output's gradient and the inputs' gradient
/// buffers to accumulate into. The library's ops and user-defined ops are
/// written against this one interface (see `make_op`).
template <class T>
class OpContext {
 public:
  using Vec = Eigen::Array<T, Eigen::Dynamic, 1>;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  /// Number of inputs.
  std::size_t inputs() const noexcept { return n_; }
  /// Shape of input `i` and of the output.
  const Shape& shape(std::size_t i) const { return in_[i].s->shape; }
  const Shape& out_shape() const noexcept { return out_.shape; }

  /// Raw buffers (row-major, contiguous).
  const T* in(std::size_t i) const noexcept { return in_[i].s->data; }
  T* out() noexcept { return out_.data; }
  const T* out() const noexcept { return out_.data; }

  /// Flat Eigen views of the buffers.
  Eigen::Map<const Vec> in_vec(std::size_t i) const {
    return {in_[i].s->data, static_cast<Eigen::Index>(in_[i].s->shape.numel())};
  }
  Eigen::Map<Vec> out_vec() noexcept { return {out_.data, static_cast<Eigen::Index>(out_.shape.numel())}; }
  Eigen::Map<const Vec> out_vec() const noexcept { return {out_.data, static_cast<Eigen::Index>(out_.shape.numel())}; }

  /// Row-major matrix views with the given extents.
  Eigen::Map<const Mat> in_mat(std::size_t i, index_t rows, index_t cols) const {
    return {in_[i].s->data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }
  Eigen::Map<Mat> out_mat(index_t rows, index_t cols) noexcept {
    return {out_.data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// True when the op is recorded with its backward rule: a backward pass may
  /// run later, so forward should `save()` what backward needs.
  bool recording() const noexcept { return recording_; }

  /// Forward only: memory for `n` values of type U that backward reads back
  /// with `saved<U>(k)` (k counts the calls to save, from 0). It lives as long
  /// as the op's node, in the tape's arena: no heap allocation per step.
  /// When the op is not recorded it is scratch memory, gone after forward.
  template <class U = T>
  U* save(index_t n) {
    if (backward_phase_) throw value_error("OpContext::save: only forward can save; backward reads with saved()");
    if (*n_saved_ >= detail::op_node<T>::max_saved)
      throw value_error("OpContext::save: an op can save at most " + std::to_string(detail::op_node<T>::max_saved) +
                        " buffers");
    detail::arena& a = recording_ ? tape_.records : tape_.scratch;
    U* p = a.template allocate_array<U>(static_cast<std::size_t>(n));
    saved_[(*n_saved_)++] = p;
    return p;
  }

  /// Backward only: the k-th buffer forward saved.
  template <class U = T>
  U* saved(std::size_t k = 0) const {
    if (k >= *n_saved_)
      throw value_error("OpContext::saved: buffer " + std::to_string(k) + " was not saved (forward saved " +
                        std::to_string(*n_saved_) + ")");
    return static_cast<U*>(saved_[k]);
  }

  // ---- backward only ----------------------------------------------------

  /// True when input `i` wants a gradient (skip the work otherwise).
  bool needs_grad(std::size_t i) const noexcept { return in_[i].s->requires_grad; }

  /// The output's gradient (backward only).
  const T* out_grad() const noexcept { return out_.grad; }
  Eigen::Map<const Vec> out_grad_vec() const noexcept {
    return {out_.grad, static_cast<Eigen::Index>(out_.shape.numel())};
  }
  Eigen::Map<const Mat> out_grad_mat(index_t rows, index_t cols) const noexcept {
    return {out_.grad, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// Input `i`'s gradient buffer, zero at the start of each reverse sweep:
  /// accumulate with +=. For an input that does not need a gradient it is
  /// scratch memory whose contents go nowhere.
  T* in_grad(std::size_t i) { return grad_of(*in_[i].s); }
  Eigen::Map<Vec> in_grad_vec(std::size_t i) {
    return {grad_of(*in_[i].s), static_cast<Eigen::Index>(in_[i].s->shape.numel())};
  }
  Eigen::Map<Mat> in_grad_mat(std::size_t i, index_t rows, index_t cols) {
    return {grad_of(*in_[i].s), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// Scratch memory for this forward or backward call only, given back when it returns.
  T* scratch(index_t n) { return tape_.scratch.template allocate_array<T>(static_cast<std::size_t>(n)); }

  /// The tape the op is recorded on (the active tape when it is not recorded).
  Tape& tape() noexcept { return *Tape::of(tape_); }

 private:
  template <class U, class Inputs, class Forward, class Backward, class Jvp>
  friend basic_tensor<U> detail::make_op_impl(const char*, const Shape&, const Inputs&, Forward&&, Backward&&, Jvp&&,
                                              const OpOptions&);
  template <class U, class B>
  friend struct detail::op_node_with;

  OpContext(detail::tensor_storage<T>& out, detail::edge<T>* in, std::size_t n, detail::tape_state& tape, void** saved,
            std::uint32_t* n_saved, std::uint32_t sweep, bool recording, bool backward_phase) noexcept
      : out_(out),
        in_(in),
        n_(n),
        tape_(tape),
        saved_(saved),
        n_saved_(n_saved),
        sweep_(sweep),
        recording_(recording),
        backward_phase_(backward_phase) {}

  T* grad_of(detail::tensor_storage<T>& s) {
    const auto n = static_cast<std::size_t>(s.shape.numel());
    if (!s.requires_grad) return tape_.scratch.template allocate_array<T>(n);
    if (s.is_leaf) {
      // A leaf's buffer holds zeros while no gradient is live (see zero_grad()).
      if (!s.grad) {
        s.owned_grad.assign(n, T(0));
        s.grad = s.owned_grad.data();
      }
      s.grad_live = true;
      return s.grad;
    }
    if (s.swept != sweep_) {
      std::fill_n(s.grad, n, T(0));
      s.swept = sweep_;
    }
    return s.grad;
  }

  detail::tensor_storage<T>& out_;
  detail::edge<T>* in_;
  std::size_t n_;
  detail::tape_state& tape_;
  void** saved_;
  std::uint32_t* n_saved_;
  std::uint32_t sweep_;
  bool recording_;
  bool backward_phase_;
};

namespace detail {

template <class T, class B>
struct op_node_with final : op_node<T> {
  B backward;
  explicit op_node_with(B b) : backward(std::move(b)) {}
  void run_backward(tensor_store& store) override {
    OpContext<T> ctx(this->out, this->in, this->n_in, *store.tape, this->saved, &this->n_saved, store.sweep, true,
                     true);
    backward(ctx);
  }
};

template <class T, class Inputs, class Forward, class Backward, class Jvp>
basic_tensor<T> make_op_impl(const char* name, const Shape& out_shape, const Inputs& inputs, Forward&& forward,
                             Backward&& backward, Jvp&& jvp, const OpOptions& options) {
  using acc = access<basic_tensor<T>>;
  bool any_grad = false;
  tensor_store* store = nullptr;
  std::size_t n_in = 0;
  for (const basic_tensor<T>& x : inputs) {
    const tensor_storage<T>& s = acc::storage(x);  // throws on empty, stale and other threads' handles
    any_grad = any_grad || s.requires_grad;
    if (!x.is_leaf()) {
      tensor_store* xs = acc::store(x);
      if (store && store != xs) throw tape_mismatch_error(std::string(name) + ": inputs live on different tapes");
      store = xs;
    }
    ++n_in;
  }
  if (options.barrier) any_grad = false;
  const thread_state& st = state();
  Tape& tape = store ? *Tape::of(*store->tape) : Tape::active();
  tape_state& ts = tape.state();
  arena& scratch = ts.scratch;
  const arena::mark scratch_at = scratch.position();

  if (!st.grad_enabled) {
    // Nothing is recorded: the result is a fresh leaf that owns its values,
    // and whatever forward took from the arena is given back at once.
    auto out = std::make_shared<tensor_storage<T>>();
    out->shape = out_shape;
    out->owned_data.resize(static_cast<std::size_t>(out_shape.numel()));
    out->data = out->owned_data.data();
    auto* in = static_cast<edge<T>*>(scratch.allocate(sizeof(edge<T>) * (n_in + 1), alignof(edge<T>)));
    std::size_t k = 0;
    for (const basic_tensor<T>& x : inputs) in[k++] = edge<T>{&acc::storage(x), no_node, 0, 0};
    void* saved[op_node<T>::max_saved] = {};
    std::uint32_t n_saved = 0;
    OpContext<T> ctx(*out, in, n_in, ts, saved, &n_saved, 0, false, false);
    try {
      forward(ctx);
    } catch (...) {
      scratch.rewind(scratch_at);
      throw;
    }
    scratch.rewind(scratch_at);
    if (st.anomaly) check_finite(name, "output", out->data, out_shape.numel());
    basic_tensor<T> y = acc::from_leaf(std::move(out));
    if (tangent_table<T>* tt = active_tangents<T>; tt && !tt->suspended) [[unlikely]]
      propagate_tangent(*tt, name, inputs, y, jvp);
    return y;
  }

  tensor_store& rec = store ? *store : tape.template store<tensor_store>();
  arena& a = ts.records;
  const arena::mark at = a.position();
  const std::size_t kept_at = rec.kept.size();
  op_node<T>* n;
  if (any_grad) {
    using B = std::decay_t<Backward>;
    void* mem = a.allocate(sizeof(op_node_with<T, B>), alignof(op_node_with<T, B>));
    n = new (mem) op_node_with<T, B>(std::forward<Backward>(backward));
  } else {
    void* mem = a.allocate(sizeof(op_node<T>), alignof(op_node<T>));
    n = new (mem) op_node<T>();
  }
  n->arena_at = at;
  n->kept_at = kept_at;
  n->name = name;
  n->barrier = options.barrier;
  n->serial = ++rec.serials;
  try {
    rec.nodes.push_back(n);
  } catch (...) {
    n->~op_node<T>();
    a.rewind(at);
    throw;
  }
  const auto index = static_cast<std::uint32_t>(rec.nodes.size() - 1);
  try {
    const auto numel = static_cast<std::size_t>(out_shape.numel());
    n->out.shape = out_shape;
    n->out.is_leaf = false;
    n->out.requires_grad = any_grad;
    n->out.data = a.template allocate_array<T>(numel);
    // The gradient buffer is made with the node, so it lives exactly as long.
    if (any_grad) n->out.grad = a.template allocate_array<T>(numel);
    n->n_in = static_cast<std::uint32_t>(n_in);
    n->in = static_cast<edge<T>*>(a.allocate(sizeof(edge<T>) * (n_in + 1), alignof(edge<T>)));
    std::size_t k = 0;
    for (const basic_tensor<T>& x : inputs) {
      edge<T>& e = n->in[k++];
      e = edge<T>{&acc::storage(x), no_node, 0, 0};
      if (x.is_leaf()) {
        // The record owns the leaf until the node is freed.
        e.kept = static_cast<std::uint32_t>(rec.kept.size());
        rec.kept.push_back(acc::leaf(x));
      } else {
        e.node = acc::node_index(x);
        e.serial = acc::node(x)->serial;
      }
    }
    OpContext<T> ctx(n->out, n->in, n_in, ts, n->saved, &n->n_saved, rec.sweep, any_grad, false);
    forward(ctx);
  } catch (...) {
    scratch.rewind(scratch_at);
    rec.truncate(index);  // a failed op leaves nothing behind
    throw;
  }
  scratch.rewind(scratch_at);
  if (st.anomaly) check_finite(name, "output", n->out.data, out_shape.numel());
  basic_tensor<T> y = acc::from_node(rec, index, n);
  if (tangent_table<T>* tt = active_tangents<T>; tt && !tt->suspended) [[unlikely]]
    propagate_tangent(*tt, name, inputs, y, jvp);
  return y;
}

}  // namespace detail

/// Records a tensor op: `forward(ctx)` fills `ctx.out()`, `backward(ctx)`
/// accumulates `ctx.in_grad(i)` from `ctx.out_grad()` for each input that
/// `ctx.needs_grad(i)`. Both stand together where the op is defined. State
/// that forward computes and backward needs goes through `ctx.save<U>(n)`
/// and `ctx.saved<U>(k)`.
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
                        Forward&& forward, Backward&& backward, const OpOptions& options = {}) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward), nullptr, options);
}

/// `make_op` with a forward-derivative (jvp) rule beside the other two:
/// `jvp(const JvpContext<T>& j)` returns the output's tangent from the inputs
/// `j.in(i)`, their tangents `j.tangent(i)` (undefined when zero) and the
/// output `j.out()`, computed with tensor ops so that it can itself be
/// differentiated (see `ForwardScope` and `hvp`). It runs only inside a
/// forward-mode scope, after forward, when some input has a tangent; an op
/// without a rule raises `value_error` there.
///
/// Example:
///   // y = x^3 elementwise; dy/dx = 3x^2, so dy = 3 x^2 dx
///   Tensor cube(const Tensor& x) {
///     return tapegrad::make_op<float>("cube", x.shape(), {x},
///         [](OpContext<float>& c) { c.out_vec() = c.in_vec(0).cube(); },
///         [](OpContext<float>& c) { c.in_grad_vec(0) += 3 * c.in_vec(0).square() * c.out_grad_vec(); },
///         [](const JvpContext<float>& j) { return 3.0f * j.in(0) * j.in(0) * j.tangent(0); });
///   }
template <class T, class Forward, class Backward, class Jvp>
requires(!std::is_convertible_v<Jvp, OpOptions>) basic_tensor<T> make_op(const char* name, const Shape& out_shape,
                                                                         std::initializer_list<basic_tensor<T>> inputs,
                                                                         Forward&& forward, Backward&& backward,
                                                                         Jvp&& jvp, const OpOptions& options = {}) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward), std::forward<Jvp>(jvp), options);
}

/// `make_op` for any number of inputs held in a vector (concat, stack...).
template <class T, class Forward, class Backward>
basic_tensor<T> make_op(const char* name, const Shape& out_shape, const std::vector<basic_tensor<T>>& inputs,
                        Forward&& forward, Backward&& backward, const OpOptions& options = {}) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward), nullptr, options);
}

/// `make_op` for inputs held in a vector, with a jvp rule.
template <class T, class Forward, class Backward, class Jvp>
requires(!std::is_convertible_v<Jvp, OpOptions>) basic_tensor<T> make_op(const char* name, const Shape& out_shape,
                                                                         const std::vector<basic_tensor<T>>& inputs,
                                                                         Forward&& forward, Backward&& backward,
                                                                         Jvp&& jvp, const OpOptions& options = {}) {
  return detail::make_op_impl<T>(name, out_shape, inputs, std::forward<Forward>(forward),
                                 std::forward<Backward>(backward), std::forward<Jvp>(jvp), options);
}

}  // namespace tapegrad
