// SPDX-License-Identifier: MIT
#pragma once

// The names the snippets of docs/higher-order.md take for granted: a small
// classifier, a batch of inputs with their targets, and a square weight.

#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tapegrad_docs {

/// A linear classifier of 4 features into 3 classes and a batch of 2.
struct higher_order {
  using Tensor = tapegrad::Tensor;
  using index_t = tapegrad::index_t;

  tapegrad::Generator gen{11};
  tapegrad::nn::Linear model{4, 3, {.seed = 1}};
  index_t batch = 2;
  Tensor x = tapegrad::normal({2, 4}, gen);                       // [batch, features]
  std::vector<index_t> targets = {0, 2};                          // one class per sample
  Tensor w1 = tapegrad::normal({4, 4}, gen).requires_grad(true);  // [features, features]
};

}  // namespace tapegrad_docs
