// SPDX-License-Identifier: MIT
#pragma once

// The names the snippets of docs/tensors.md take for granted: two vectors,
// and the inputs of a transformer's building blocks with small shapes
// (batch 2, sequence 4, width 8, 2 heads of 4, vocabulary 10).

#include <vector>

#include <tapegrad/tensor.hpp>

namespace tapegrad_docs {

/// Tensors of consistent shapes for the tensor-function snippets.
struct tensors {
  using Tensor = tapegrad::Tensor;
  using index_t = tapegrad::index_t;

  tapegrad::Generator gen{7};
  Tensor a = tapegrad::from({1.0f, 2.0f, 3.0f});
  Tensor b = tapegrad::from({4.0f, 5.0f, 6.0f});
  index_t batch = 2, seq = 4;
  Tensor table = tapegrad::normal({10, 8}, gen).requires_grad(true);   // [V, D]
  std::vector<index_t> ids = {1, 2, 3, 4, 5, 6, 7, 8};                 // [B, T]
  Tensor gamma = tapegrad::normal({8}, gen).requires_grad(true);       // [D]
  Tensor beta = tapegrad::normal({8}, gen).requires_grad(true);        // [D]
  Tensor q = tapegrad::normal({2, 2, 4, 4}, gen).requires_grad(true);  // [B, H, T, Dh]
  Tensor k = tapegrad::normal({2, 2, 4, 4}, gen).requires_grad(true);
  Tensor v = tapegrad::normal({2, 2, 4, 4}, gen).requires_grad(true);
  Tensor logits = tapegrad::normal({2, 4, 10}, gen).requires_grad(true);  // [B, T, V]
  std::vector<index_t> targets = {0, 1, 2, 3, 4, 5, 6, 7};                // one per row of logits
};

}  // namespace tapegrad_docs
