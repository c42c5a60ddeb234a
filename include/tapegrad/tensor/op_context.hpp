// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/shape.hpp"

// The storage behind tensor handles and the interface an op's forward and
// backward functions are written against.

namespace tapegrad {

namespace detail {

/// What a tensor handle points at: a shape, a value buffer and, once a
/// gradient reaches it, a gradient buffer. Leaves own their buffers; an
/// intermediate's buffers live in its tape's arena.
template <class T>
struct tensor_storage {
  Shape shape;
  T* data = nullptr;
  T* grad = nullptr;
  bool grad_live = false;  // a gradient reached this storage since its last zero_grad (see has_grad)
  bool requires_grad = false;
  bool is_leaf = true;
  std::vector<T> owned_data;  // leaves only
  std::vector<T> owned_grad;  // leaves only, sized on first use
};

template <class T>
struct op_node;

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

  OpContext(detail::tensor_storage<T>& out, detail::tensor_storage<T>* const* in, std::size_t n, Tape& tape)
      : out_(out), in_(in), n_(n), tape_(tape) {}

  /// Number of inputs.
  std::size_t inputs() const noexcept { return n_; }
  /// Shape of input `i` and of the output.
  const Shape& shape(std::size_t i) const { return in_[i]->shape; }
  const Shape& out_shape() const noexcept { return out_.shape; }

  /// Raw buffers (row-major, contiguous).
  const T* in(std::size_t i) const noexcept { return in_[i]->data; }
  T* out() noexcept { return out_.data; }
  const T* out() const noexcept { return out_.data; }

  /// Flat Eigen views of the buffers.
  Eigen::Map<const Vec> in_vec(std::size_t i) const {
    return {in_[i]->data, static_cast<Eigen::Index>(in_[i]->shape.numel())};
  }
  Eigen::Map<Vec> out_vec() noexcept { return {out_.data, static_cast<Eigen::Index>(out_.shape.numel())}; }
  Eigen::Map<const Vec> out_vec() const noexcept { return {out_.data, static_cast<Eigen::Index>(out_.shape.numel())}; }

  /// Row-major matrix views with the given extents.
  Eigen::Map<const Mat> in_mat(std::size_t i, index_t rows, index_t cols) const {
    return {in_[i]->data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }
  Eigen::Map<Mat> out_mat(index_t rows, index_t cols) noexcept {
    return {out_.data, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  // ---- backward only ----------------------------------------------------

  /// True when input `i` wants a gradient (skip the work otherwise).
  bool needs_grad(std::size_t i) const noexcept { return in_[i]->requires_grad; }

  /// The output's gradient (backward only).
  const T* out_grad() const noexcept { return out_.grad; }
  Eigen::Map<const Vec> out_grad_vec() const noexcept {
    return {out_.grad, static_cast<Eigen::Index>(out_.shape.numel())};
  }
  Eigen::Map<const Mat> out_grad_mat(index_t rows, index_t cols) const noexcept {
    return {out_.grad, static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// Input `i`'s gradient buffer, zero-filled on first use: accumulate with +=.
  T* in_grad(std::size_t i) { return grad_buffer(*in_[i]); }
  Eigen::Map<Vec> in_grad_vec(std::size_t i) {
    return {grad_buffer(*in_[i]), static_cast<Eigen::Index>(in_[i]->shape.numel())};
  }
  Eigen::Map<Mat> in_grad_mat(std::size_t i, index_t rows, index_t cols) {
    return {grad_buffer(*in_[i]), static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols)};
  }

  /// Scratch memory from the tape's arena, freed with the tape's next clear.
  T* scratch(index_t n) { return tape_.arena().template allocate_array<T>(static_cast<std::size_t>(n)); }

  /// The tape the op is recorded on.
  Tape& tape() noexcept { return tape_; }

  /// The gradient buffer of a storage, created zero-filled when missing.
  static T* grad_buffer(detail::tensor_storage<T>& s, Tape& tape) {
    if (!s.grad) {
      const auto n = static_cast<std::size_t>(s.shape.numel());
      if (s.is_leaf) {
        s.owned_grad.assign(n, T(0));
        s.grad = s.owned_grad.data();
      } else {
        s.grad = tape.arena().template allocate_array<T>(n);
        std::fill_n(s.grad, n, T(0));
      }
    }
    return s.grad;
  }

 private:
  // Backward writes here, so the input has now received a gradient.
  T* grad_buffer(detail::tensor_storage<T>& s) {
    s.grad_live = true;
    return grad_buffer(s, tape_);
  }

  detail::tensor_storage<T>& out_;
  detail::tensor_storage<T>* const* in_;
  std::size_t n_;
  Tape& tape_;
};

namespace detail {

/// A recorded tensor op: its output storage, its inputs and its name. The
/// backward rule lives in the derived `op_node_with`.
template <class T>
struct op_node : tensor_node {
  tensor_storage<T> out;
  tensor_storage<T>** in = nullptr;
  std::uint32_t n_in = 0;
  const char* name = "";
  bool barrier = false;  // stop_gradient
  Tape* tape = nullptr;

  bool reached() const noexcept override { return out.grad != nullptr; }
  void reset_grad() noexcept override {
    out.grad = nullptr;
    out.grad_live = false;
  }
  virtual bool has_backward() const noexcept = 0;
};

template <class T, class B>
struct op_node_with final : op_node<T> {
  B backward;
  explicit op_node_with(B b) : backward(std::move(b)) {}
  bool has_backward() const noexcept override { return true; }
  void run_backward() override {
    OpContext<T> ctx(this->out, this->in, this->n_in, *this->tape);
    backward(ctx);
  }
};

template <class T>
struct op_node_plain final : op_node<T> {
  bool has_backward() const noexcept override { return false; }
  void run_backward() override {}
};

template <class T>
void check_finite(const char* op, const char* what, const T* p, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      std::ostringstream os;
      os << "anomaly: " << op << " produced " << p[i] << " in its " << what << " at flat index " << i;
      throw anomaly_error(os.str());
    }
  }
}

}  // namespace detail

}  // namespace tapegrad
