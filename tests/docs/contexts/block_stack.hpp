// SPDX-License-Identifier: MIT
#pragma once

// The names the checkpointing snippet of docs/nn.md takes for granted: a
// stack of transformer blocks and the activations that flow through it.

#include <memory>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace tapegrad_docs {

/// Two blocks of width 8 with 2 heads, and an input [batch 1, sequence 4, 8].
struct block_stack {
  using Tensor = tapegrad::Tensor;
  using Block = tapegrad::nn::TransformerBlock;

  tapegrad::Generator gen{5};
  std::vector<std::shared_ptr<Block>> stack = {std::make_shared<Block>(8, 2, tapegrad::nn::TransformerBlockOptions{}),
                                               std::make_shared<Block>(8, 2, tapegrad::nn::TransformerBlockOptions{})};
  std::vector<std::shared_ptr<Block>>* blocks = &stack;  // the snippet iterates *blocks
  Tensor x = tapegrad::normal({1, 4, 8}, gen);
};

}  // namespace tapegrad_docs
