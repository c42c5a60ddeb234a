// SPDX-License-Identifier: MIT
#pragma once

// The HyperMixer: an MLP-Mixer whose token-mixing weights are made by
// hypernetworks from the tokens themselves, so one set of weights serves any
// sequence length and mixing follows the content. Shared by the example
// program and its tutorial test; templated on the element type so the test
// can check gradients in double.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace hypermixer {

namespace tg = tapegrad;
namespace nn = tapegrad::nn;
using tg::index_t;

/// Which token mixing a block uses.
enum class Variant {
  paper,  ///< W1, W2 (N x k) generated row by row from each token plus its position encoding
  seed,   ///< one hypernetwork from the mean-pooled tokens generates a whole fixed-size token MLP
};

/// Sizes and choices of a HyperMixer.
struct Config {
  index_t vocab = 16;                ///< token ids 0..vocab-1
  index_t max_len = 12;              ///< longest sequence (the seed variant's fixed length)
  index_t d_model = 32;              ///< channels
  index_t k = 16;                    ///< hidden width of the token-mixing MLP
  index_t layers = 2;                ///< blocks
  index_t classes = 2;               ///< outputs of the classifier
  Variant variant = Variant::paper;  ///< token mixing of the blocks
  bool tied = false;                 ///< paper variant: one hypernetwork makes both W1 and W2
  bool position_encoding = true;     ///< paper variant: add sinusoidal positions to the hypernetworks' input
  std::uint64_t seed = 1;            ///< initial weights
};

/// A hypernetwork: an MLP d -> d -> out applied to each row, GELU between.
template <class T>
struct HyperNet : nn::basic_module<T> {
  using Tensor = tg::basic_tensor<T>;
  std::shared_ptr<nn::basic_linear<T>> fc1, fc2;
  HyperNet(index_t d, index_t out, tg::Generator& gen) {
    fc1 =
        this->register_module("fc1", std::make_shared<nn::basic_linear<T>>(d, d, nn::LinearOptions{.generator = &gen}));
    fc2 = this->register_module("fc2",
                                std::make_shared<nn::basic_linear<T>>(d, out, nn::LinearOptions{.generator = &gen}));
  }
  /// The MLP with explicit weights: GELU(x W1 + b1) W2 + b2, as the layers compute it.
  static Tensor apply(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
    return matmul(gelu(matmul(x, w1) + b1), w2) + b2;
  }
  Tensor forward(const Tensor& x) { return apply(x, fc1->weight(), fc1->bias(), fc2->weight(), fc2->bias()); }
};

/// Token mixing as the HyperMixer paper defines it, for X [B, N, d]:
///   W1[i] = h1(x_i + p_i),  W2[i] = h2(x_i + p_i)      (each [B, N, k])
///   TM(X) = W2 · GELU(W1ᵀ · X)                        ([B, N, k] x [B, k, d])
/// The product W1ᵀ X mixes across positions, separately for every channel.
template <class T>
struct PaperTokenMixing : nn::basic_module<T> {
  using Tensor = tg::basic_tensor<T>;
  std::shared_ptr<HyperNet<T>> h1, h2;  // h2 == h1 when tied
  std::shared_ptr<nn::basic_positional_encoding<T>> pos;
  bool use_pos;

  PaperTokenMixing(const Config& c, tg::Generator& gen) : use_pos(c.position_encoding) {
    h1 = this->register_module("h1", std::make_shared<HyperNet<T>>(c.d_model, c.k, gen));
    h2 = c.tied ? h1 : this->register_module("h2", std::make_shared<HyperNet<T>>(c.d_model, c.k, gen));
    pos = std::make_shared<nn::basic_positional_encoding<T>>(c.max_len, c.d_model);
  }

  /// The generated weights for X [B, N, d]: W1 and W2, each [B, N, k].
  std::pair<Tensor, Tensor> weights(const Tensor& x) {
    const Tensor in = use_pos ? pos->forward(x) : x;
    Tensor w1 = h1->forward(in);
    return {w1, h2 == h1 ? w1 : h2->forward(in)};
  }

  /// TM(X) = W2 · GELU(W1ᵀ · X) for given W1, W2 [B, N, k] and X [B, N, d].
  static Tensor mix(const Tensor& x, const Tensor& w1, const Tensor& w2) {
    return matmul(w2, gelu(matmul(transpose(w1), x)));
  }

  Tensor forward(const Tensor& x) {
    auto [w1, w2] = weights(x);
    return mix(x, w1, w2);
  }
};

/// The seed's variant: one hypernetwork reads the mean of the tokens and
/// emits a whole token MLP of fixed size N = max_len (W1 [N, k], b1 [k],
/// W2 [N, k], b2 [N]), applied as TM(X) = W2 · GELU(W1ᵀ X + b1) + b2.
/// It needs sequences of exactly max_len tokens.
template <class T>
struct SeedTokenMixing : nn::basic_module<T> {
  using Tensor = tg::basic_tensor<T>;
  std::shared_ptr<HyperNet<T>> h;
  index_t n, k;

  SeedTokenMixing(const Config& c, tg::Generator& gen) : n(c.max_len), k(c.k) {
    h = this->register_module("h", std::make_shared<HyperNet<T>>(c.d_model, 2 * n * k + k + n, gen));
  }

  Tensor forward(const Tensor& x) {
    const index_t b = x.size(0);
    if (x.size(1) != n)
      throw tg::shape_error("SeedTokenMixing: input " + x.shape().str() + " must have exactly " + std::to_string(n) +
                            " positions");
    const Tensor p = h->forward(mean(x, 1));  // [B, 2Nk + k + N]
    const Tensor w1 = reshape(slice(p, 1, 0, n * k), {b, n, k});
    const Tensor w2 = reshape(slice(p, 1, n * k, 2 * n * k), {b, n, k});
    const Tensor b1 = reshape(slice(p, 1, 2 * n * k, 2 * n * k + k), {b, k, 1});
    const Tensor b2 = reshape(slice(p, 1, 2 * n * k + k, 2 * n * k + k + n), {b, n, 1});
    return matmul(w2, gelu(matmul(transpose(w1), x) + b1)) + b2;
  }
};

/// One HyperMixer block: X + TokenMixing(LayerNorm(X)), then X + MLP(LayerNorm(X)).
template <class T>
struct Block : nn::basic_module<T> {
  using Tensor = tg::basic_tensor<T>;
  std::shared_ptr<nn::basic_layer_norm<T>> ln1, ln2;
  std::shared_ptr<PaperTokenMixing<T>> paper;
  std::shared_ptr<SeedTokenMixing<T>> seed;
  std::shared_ptr<nn::basic_feed_forward<T>> mlp;

  Block(const Config& c, tg::Generator& gen) {
    ln1 = this->register_module("ln1", std::make_shared<nn::basic_layer_norm<T>>(c.d_model));
    if (c.variant == Variant::paper)
      paper = this->register_module("mixing", std::make_shared<PaperTokenMixing<T>>(c, gen));
    else
      seed = this->register_module("mixing", std::make_shared<SeedTokenMixing<T>>(c, gen));
    ln2 = this->register_module("ln2", std::make_shared<nn::basic_layer_norm<T>>(c.d_model));
    mlp = this->register_module(
        "mlp",
        std::make_shared<nn::basic_feed_forward<T>>(
            c.d_model, 2 * c.d_model, nn::FeedForwardOptions{.activation = nn::Activation::gelu, .generator = &gen}));
  }

  Tensor mix(const Tensor& x) { return paper ? paper->forward(x) : seed->forward(x); }

  Tensor forward(const Tensor& x) {
    const Tensor y = x + mix(ln1->forward(x));
    return y + mlp->forward(ln2->forward(y));
  }
};

/// A sequence classifier: embedding, HyperMixer blocks, layer norm, mean over
/// positions, linear head. Positions enter only through the hypernetworks.
template <class T>
struct Model : nn::basic_module<T> {
  using Tensor = tg::basic_tensor<T>;
  Config config;
  std::shared_ptr<nn::basic_embedding<T>> embed;
  std::shared_ptr<nn::ModuleList<Block<T>>> blocks;
  std::shared_ptr<nn::basic_layer_norm<T>> ln_f;
  std::shared_ptr<nn::basic_linear<T>> head;

  explicit Model(const Config& c) : config(c) {
    tg::Generator gen(c.seed);
    embed = this->register_module(
        "embed", std::make_shared<nn::basic_embedding<T>>(c.vocab, c.d_model, nn::EmbeddingOptions{.generator = &gen}));
    blocks = this->register_module("blocks", std::make_shared<nn::ModuleList<Block<T>>>());
    for (index_t l = 0; l < c.layers; ++l) blocks->push_back(Block<T>(c, gen));
    ln_f = this->register_module("ln_f", std::make_shared<nn::basic_layer_norm<T>>(c.d_model));
    head = this->register_module(
        "head", std::make_shared<nn::basic_linear<T>>(c.d_model, c.classes, nn::LinearOptions{.generator = &gen}));
  }

  /// The blocks' output for token features x [B, N, d].
  Tensor features(Tensor x) {
    for (auto& b : *blocks) x = b->forward(x);
    return x;
  }

  /// Logits [B, classes] for `batch` sequences of `length` token ids.
  Tensor forward(const std::vector<index_t>& ids, index_t batch, index_t length) {
    const Tensor x = embed->forward(ids, {batch, length});
    return head->forward(mean(ln_f->forward(features(x)), 1));
  }
};

// ---- the task -----------------------------------------------------------------

/// Sequences of random tokens, labelled 1 when the first token occurs again
/// later in the sequence. A property of the whole sequence that depends on
/// order: a model that only pools tokens cannot tell which one came first.
struct Data {
  index_t size = 0, length = 0;
  std::vector<index_t> ids;     ///< [size, length]
  std::vector<index_t> labels;  ///< [size]
};

inline Data make_data(index_t size, index_t length, index_t vocab, tg::Generator& gen) {
  Data d;
  d.size = size;
  d.length = length;
  for (index_t i = 0; i < size; ++i) {
    index_t first = 0, label = 0;
    for (index_t p = 0; p < length; ++p) {
      const auto t = static_cast<index_t>(gen.next() % static_cast<std::uint64_t>(vocab));
      if (p == 0) first = t;
      if (p > 0 && t == first) label = 1;
      d.ids.push_back(t);
    }
    d.labels.push_back(label);
  }
  return d;
}

}  // namespace hypermixer
