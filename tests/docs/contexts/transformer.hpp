// SPDX-License-Identifier: MIT
#pragma once

// The names the training snippets of docs/optim.md and docs/checkpoints.md take
// for granted: the operation transformer of docs/nn.md, an Adam optimizer over
// it, and a batch (whole, and split into micro-batches).

#include <cstdint>
#include <memory>
#include <vector>

#include <tapegrad/nn.hpp>
#include <tapegrad/optim.hpp>
#include <tapegrad/tensor.hpp>

namespace tapegrad_docs {

/// The model of docs/nn.md: embedding, positional encoding, two blocks, a linear head.
struct OperationTransformer : tapegrad::nn::Module {
  std::shared_ptr<tapegrad::nn::Embedding> embed;
  std::shared_ptr<tapegrad::nn::PositionalEncoding> pos;
  std::shared_ptr<tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>> blocks;
  std::shared_ptr<tapegrad::nn::Linear> out;

  /// Initial values drawn from Generator(seed).
  explicit OperationTransformer(std::uint64_t seed) {
    namespace nn = tapegrad::nn;
    tapegrad::Generator gen(seed);
    embed = register_module("embed", nn::Embedding(20, 64, {.generator = &gen}));
    pos = register_module("pos", nn::PositionalEncoding(8, 64));
    blocks = register_module("blocks", nn::ModuleList<nn::TransformerBlock>());
    for (int i = 0; i < 2; ++i) blocks->push_back(nn::TransformerBlock(64, 4, {.d_ff = 256, .generator = &gen}));
    out = register_module("out", nn::Linear(64, 20, {.generator = &gen}));
  }

  /// Logits [batch, 20] of `batch` expressions of 8 token ids each.
  tapegrad::Tensor forward(const std::vector<tapegrad::index_t>& ids, tapegrad::index_t batch) {
    tapegrad::Tensor x = pos->forward(embed->forward(ids, {batch, 8}));
    for (auto& block : *blocks) x = block->forward(x);
    return out->forward(tapegrad::mean(x, 1));
  }
};

/// A model, its optimizer and a batch of two expressions.
struct transformer {
  using OperationTransformer = tapegrad_docs::OperationTransformer;
  using index_t = tapegrad::index_t;

  OperationTransformer model{42};
  tapegrad::optim::Adam opt{model.parameters(), {.lr = 1e-3}};
  index_t batch = 2;                                         // expressions per step
  std::vector<index_t> ids = {15, 17, 3, 19, 8, 19, 4, 18,   // Max(1,6,2)
                              16, 17, 3, 19, 8, 19, 4, 18};  // Min(1,6,2)
  std::vector<index_t> targets = {8, 3};                     // 6 and 1
  int k = 2;                                                 // micro-batches per step
  index_t micro = 1;                                         // expressions per micro-batch
  std::vector<std::vector<index_t>> micro_ids = {{15, 17, 3, 19, 8, 19, 4, 18}, {16, 17, 3, 19, 8, 19, 4, 18}};
  std::vector<std::vector<index_t>> micro_targets = {{8}, {3}};
};

}  // namespace tapegrad_docs
