// SPDX-License-Identifier: MIT
#pragma once

// The model of the transformer example, the operation transformer: token
// embeddings plus a fixed sinusoidal positional encoding, two post-LN
// transformer blocks, the mean over the eight positions, and a projection to
// 20 logits. Also the batching helpers and the evaluation loop, so the tests
// train the very same model the program does.

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <tapegrad/nn.hpp>
#include <tapegrad/tensor.hpp>

#include "data.hpp"

namespace tapegrad_examples::transformer {

using tapegrad::index_t;
using tapegrad::Tensor;

/// The sizes of the model; the defaults are the operation transformer's
/// (d_model 64, 4 heads, 2 blocks, feed-forward 256).
struct ModelOptions {
  index_t d_model = 64;    ///< width of every token's representation
  index_t heads = 4;       ///< attention heads per block (d_model / heads = 16 each)
  index_t blocks = 2;      ///< transformer blocks
  index_t d_ff = 256;      ///< feed-forward width
  std::uint64_t seed = 1;  ///< seed of the initial values
  /// Recompute each block's activations in the backward pass: less memory, more time.
  bool checkpoint = false;
};

/// Embedding -> positional encoding -> blocks -> mean over positions -> logits.
///
/// Why the mean: every position has seen every other through attention, and
/// averaging the eight final representations gives the output layer one
/// [d_model] vector per expression (`final_repr`) without
/// privileging a position. The answer's evidence sits at the operation token
/// and at the three digits; the mean lets the output read all of them.
///
/// Parameter names: embed.weight, blocks.<i>.attn.w_q ... blocks.<i>.ln2.beta,
/// out.weight, out.bias.
class OperationTransformer : public tapegrad::nn::Module {
 public:
  /// A freshly initialised model; the same seed gives the same model.
  explicit OperationTransformer(const ModelOptions& options = {}) : options_(options) {
    tapegrad::Generator gen(options.seed);
    embed_ = register_module("embed", tapegrad::nn::Embedding(vocab_size, options.d_model, {.generator = &gen}));
    // The positional table is a constant: no parameters, not in the summary.
    position_ = std::make_shared<tapegrad::nn::PositionalEncoding>(seq_len, options.d_model);
    blocks_ = register_module("blocks", tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>());
    for (index_t b = 0; b < options.blocks; ++b)
      blocks_->push_back(
          tapegrad::nn::TransformerBlock(options.d_model, options.heads, {.d_ff = options.d_ff, .generator = &gen}));
    out_ = register_module("out", tapegrad::nn::Linear(options.d_model, vocab_size, {.generator = &gen}));
  }

  /// Logits [batch, 20] for `batch` expressions whose token ids lie one after
  /// another in `ids` (batch * 8 of them).
  Tensor forward(std::span<const index_t> ids, index_t batch) {
    Tensor x = embed_->forward(ids, {batch, seq_len});  // [B, 8, d]
    x = position_->forward(x);                          // + PE[pos], a constant
    for (auto& block : *blocks_) x = options_.checkpoint ? tapegrad::nn::checkpointed(*block, x) : block->forward(x);
    final_repr_ = tapegrad::mean(x, 1);  // [B, d]: final_repr
    return out_->forward(final_repr_);   // [B, 20]
  }

  /// The pooled representation of the last forward, [B, d] (an intermediate:
  /// valid until the tape is cleared). Its gradient is dloss/dfinal_repr.
  const Tensor& final_repr() const noexcept { return final_repr_; }

  /// Block `b` (0-based): its attention keeps the last forward's weights.
  tapegrad::nn::TransformerBlock& block(std::size_t b) { return (*blocks_)[b]; }

  /// The sizes the model was built with.
  const ModelOptions& options() const noexcept { return options_; }

 private:
  ModelOptions options_;
  std::shared_ptr<tapegrad::nn::Embedding> embed_;
  std::shared_ptr<tapegrad::nn::PositionalEncoding> position_;
  std::shared_ptr<tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>> blocks_;
  std::shared_ptr<tapegrad::nn::Linear> out_;
  Tensor final_repr_;
};

/// A batch as the model reads it: token ids one expression after another,
/// and one target per expression.
struct Batch {
  std::vector<index_t> ids;      ///< size() * 8 token ids
  std::vector<index_t> targets;  ///< the answer tokens
  index_t size() const { return static_cast<index_t>(targets.size()); }
};

/// The batch of examples [begin, end) of `data`, taken in the order given by
/// `order` (positions into `data`), or in place when `order` is empty.
inline Batch make_batch(const std::vector<Example>& data, const std::vector<std::size_t>& order, std::size_t begin,
                        std::size_t end) {
  Batch b;
  b.ids.reserve((end - begin) * seq_len);
  b.targets.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) {
    const Example& e = data[order.empty() ? i : order[i]];
    b.ids.insert(b.ids.end(), e.tokens.begin(), e.tokens.end());
    b.targets.push_back(e.target);
  }
  return b;
}

/// The predicted token of each row of logits [B, 20]: the largest logit.
inline std::vector<index_t> argmax_rows(const Tensor& logits) {
  const auto m = logits.matrix();
  std::vector<index_t> out(static_cast<std::size_t>(m.rows()));
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    Eigen::Index best = 0;
    m.row(r).maxCoeff(&best);
    out[static_cast<std::size_t>(r)] = best;
  }
  return out;
}

/// Mean loss and accuracy of a model on a set of examples.
struct Score {
  double loss = 0;
  int correct = 0;
  int total = 0;
  double accuracy() const { return total ? static_cast<double>(correct) / total : 0.0; }
};

/// Scores `model` on `data` without recording anything, in chunks of `chunk`.
inline Score evaluate(OperationTransformer& model, const std::vector<Example>& data, std::size_t chunk = 500) {
  tapegrad::NoGradGuard no_grad;
  model.eval();
  Score s;
  for (std::size_t begin = 0; begin < data.size(); begin += chunk) {
    const std::size_t end = std::min(data.size(), begin + chunk);
    const Batch b = make_batch(data, {}, begin, end);
    const Tensor logits = model.forward(b.ids, b.size());
    s.loss += tapegrad::cross_entropy(logits, b.targets, {.reduction = tapegrad::Reduction::sum}).item();
    const auto predicted = argmax_rows(logits);
    for (std::size_t i = 0; i < predicted.size(); ++i) s.correct += predicted[i] == b.targets[i];
  }
  s.total = static_cast<int>(data.size());
  s.loss /= std::max<std::size_t>(1, data.size());
  model.train();
  return s;
}

}  // namespace tapegrad_examples::transformer
