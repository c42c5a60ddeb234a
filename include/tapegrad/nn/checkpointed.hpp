// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>

#include "tapegrad/autodiff/checkpoint.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/nn/dropout.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::nn {
/// The most dropout layers one checkpointed module may hold.
inline constexpr std::size_t max_checkpoint_generators = 32;
}  // namespace tapegrad::nn

namespace tapegrad::detail {

template <std::floating_point T>
void collect_dropout_generators(nn::basic_module<T>& m, std::array<Generator*, nn::max_checkpoint_generators>& out,
                                std::size_t& n) {
  if (auto* d = dynamic_cast<nn::basic_dropout<T>*>(&m)) {
    if (n == out.size())
      throw value_error("checkpointed: the module holds more than " + std::to_string(out.size()) + " dropout layers");
    out[n++] = &d->generator();
  }
  for (const auto& [name, child] : m.named_children()) collect_dropout_generators(*child, out, n);
}

}  // namespace tapegrad::detail

namespace tapegrad::nn {

/// `module.forward(x)` as one checkpointed segment (see `tapegrad::checkpoint`):
/// its activations are freed after the forward pass and recomputed in the
/// reverse sweep. The generators of every Dropout inside the module are saved
/// and replayed, so gradients are bitwise those of `module.forward(x)`.
/// The module must outlive the backward pass.
///
/// Example:
///   for (auto& block : blocks) x = tapegrad::nn::checkpointed(*block, x);   // one segment per block
template <class M, std::floating_point T>
requires std::derived_from<M, basic_module<T>> basic_tensor<T> checkpointed(M& module, const basic_tensor<T>& x) {
  std::array<Generator*, max_checkpoint_generators> gens{};
  std::size_t n = 0;
  tapegrad::detail::collect_dropout_generators<T>(module, gens, n);
  const CheckpointOptions options{.generators = std::span<Generator* const>(gens.data(), n)};
  return checkpoint(
      options, [&module](const basic_tensor<T>& h) { return basic_tensor<T>(module.forward(h)); }, x);
}

/// The same with a second input passed to `module.forward(x, mask)` (an
/// attention mask, say); an undefined mask is left out.
template <class M, std::floating_point T>
requires std::derived_from<M, basic_module<T>> basic_tensor<T> checkpointed(M& module, const basic_tensor<T>& x,
                                                                            const basic_tensor<T>& mask) {
  if (!mask.defined()) return checkpointed(module, x);
  std::array<Generator*, max_checkpoint_generators> gens{};
  std::size_t n = 0;
  tapegrad::detail::collect_dropout_generators<T>(module, gens, n);
  const CheckpointOptions options{.generators = std::span<Generator* const>(gens.data(), n)};
  return checkpoint(
      options,
      [&module](const basic_tensor<T>& h, const basic_tensor<T>& m) { return basic_tensor<T>(module.forward(h, m)); },
      x, mask);
}

}  // namespace tapegrad::nn
