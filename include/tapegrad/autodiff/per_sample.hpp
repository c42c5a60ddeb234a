// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/shape.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

namespace detail {

/// Puts the parameters' gradients back as they were when constructed (also on
/// an exception), so per-sample work leaves the caller's accumulation intact.
template <class T>
class saved_grads {
 public:
  explicit saved_grads(const std::vector<basic_tensor<T>>& params) : params_(params) {
    for (const auto& p : params_) {
      auto g = p.grad();
      saved_.emplace_back(g.data(), g.data() + g.size());
    }
  }
  ~saved_grads() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      auto g = const_cast<basic_tensor<T>&>(params_[i]).grad_mut();
      std::copy(saved_[i].begin(), saved_[i].end(), g.data());
    }
  }
  saved_grads(const saved_grads&) = delete;
  saved_grads& operator=(const saved_grads&) = delete;

 private:
  const std::vector<basic_tensor<T>>& params_;
  std::vector<std::vector<T>> saved_;
};

}  // namespace detail

/// The gradient of each sample's loss with respect to each parameter: for a
/// parameter of shape [d...], a leaf of shape [batch, d...] whose row b is
/// d loss_of_sample(b) / d parameter. `loss_of_sample(b)` returns sample b's
/// loss, a one-element tensor (it slices its batch itself). `params` is what
/// `module.parameters()` returns; their accumulated gradients are left as
/// they were.
///
/// Cost: a loop over the samples, each one forward and one backward pass of
/// a single sample, recorded on the active tape after a mark and rewound
/// before the next: `batch` small passes instead of one batched pass (no
/// batched matrix products), memory for one sample's graph plus the results,
/// batch times the parameter count.
///
/// Errors: `shape_error` when a parameter has rank 4 (the result would have
/// rank 5) or a loss has more than one element; `value_error` when a loss does
/// not depend on any parameter.
///
/// Example:
///   auto g = tapegrad::per_sample_gradients(model.parameters(), 32, [&](index_t b) {
///     return mse_loss(model(row(x, b)), row(y, b));
///   });
///   g[0];   // [32, out, in]: one weight gradient per sample
template <std::floating_point T, class F>
std::vector<basic_tensor<T>> per_sample_gradients(const std::vector<basic_tensor<T>>& params, index_t batch,
                                                  F&& loss_of_sample) {
  if (batch < 0) throw value_error("per_sample_gradients: negative batch size " + std::to_string(batch));
  std::vector<basic_tensor<T>> out;
  out.reserve(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Shape& s = params[i].shape();
    if (s.rank() >= max_rank)
      throw shape_error("per_sample_gradients: parameter " + std::to_string(i) + " has shape " + s.str() +
                        "; a [batch, ...] result would exceed rank " + std::to_string(max_rank));
    std::vector<index_t> dims{batch};
    for (index_t d : s.dims()) dims.push_back(d);
    out.emplace_back(Shape(dims));
  }
  detail::saved_grads<T> keep(params);
  Tape& tape = Tape::active();
  const Tape::Mark mark = tape.mark();
  for (index_t b = 0; b < batch; ++b) {
    for (auto p : params) p.zero_grad();
    {
      const basic_tensor<T> loss = loss_of_sample(b);
      if (loss.numel() != 1)
        throw shape_error("per_sample_gradients: the loss of sample " + std::to_string(b) + " has shape " +
                          loss.shape().str() + ", not one element");
      loss.backward();
    }
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto g = params[i].grad();
      std::copy(g.data(), g.data() + g.size(), out[i].data().data() + b * g.size());
    }
    tape.rewind(mark);  // the sample's graph goes; the next one reuses its memory
  }
  return out;
}

}  // namespace tapegrad
