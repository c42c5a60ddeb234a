// SPDX-License-Identifier: MIT
#pragma once

// Knowledge insulation in miniature: a causal transformer backbone trained by
// next-token cross-entropy on discretised action tokens, and an action expert
// with its own smaller weights trained by flow matching. The expert reads the
// backbone's keys and values of the observation prefix, layer by layer,
// through one stop_gradient on the whole cache, so the action loss cannot
// reach the backbone. Shared by the example program and its tutorial test.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

namespace knowledge_insulation {

namespace tg = tapegrad;
namespace nn = tapegrad::nn;
using tg::index_t;
using tg::Tensor;

/// Sizes of the task and the two networks.
struct Config {
  index_t obs_len = 4;        ///< observation tokens in the prefix
  index_t obs_vocab = 8;      ///< observation token ids 0..obs_vocab-1
  index_t horizon = 4;        ///< action steps in a chunk
  index_t action_dim = 2;     ///< dimensions of one action
  index_t bins = 16;          ///< uniform bins per dimension over [-1, 1]
  index_t d_model = 32;       ///< backbone width (also the attention width the expert projects to)
  index_t heads = 2;          ///< attention heads, backbone and expert alike
  index_t layers = 2;         ///< layers, one expert layer per backbone layer
  index_t d_expert = 16;      ///< expert width
  bool stop_gradient = true;  ///< the barrier on the key/value cache (knowledge insulation)
  std::uint64_t seed = 1;     ///< initial weights

  index_t action_tokens() const { return horizon * action_dim; }
  index_t seq_len() const { return obs_len + action_tokens(); }
  index_t vocab() const { return obs_vocab + bins; }
};

// ---- the task -----------------------------------------------------------------

/// One batch: observation tokens, the continuous action chunk they call for,
/// and the backbone's token sequence (observation, then the action's bins).
struct Batch {
  index_t size = 0;
  std::vector<index_t> tokens;  ///< [size, seq_len]
  std::vector<float> actions;   ///< [size, horizon, action_dim], each in [-1, 1]
};

/// The bin of a value in [-1, 1]: plain uniform binning into `bins` cells.
inline index_t to_bin(float a, index_t bins) {
  const auto b = static_cast<index_t>(std::floor((a + 1.0f) * 0.5f * static_cast<float>(bins)));
  return std::clamp<index_t>(b, 0, bins - 1);
}
/// The centre of a bin, the value a decoded token stands for.
inline float from_bin(index_t b, index_t bins) {
  return -1.0f + (static_cast<float>(b) + 0.5f) * 2.0f / static_cast<float>(bins);
}

/// The action chunk an observation calls for: dimension d of step h is a ramp
/// u_d + v_d (h / (H - 1) - 1/2), with offset u_d and slope v_d read from the
/// observation tokens (o_{2d} and o_{2d+1}), clamped to [-1, 1].
inline void make_actions(const Config& c, const index_t* obs, float* out) {
  for (index_t h = 0; h < c.horizon; ++h)
    for (index_t d = 0; d < c.action_dim; ++d) {
      const float mid = 0.5f * static_cast<float>(c.obs_vocab - 1), scale = 0.5f * static_cast<float>(c.obs_vocab);
      const float u = (static_cast<float>(obs[(2 * d) % c.obs_len]) - mid) / scale;
      const float v = (static_cast<float>(obs[(2 * d + 1) % c.obs_len]) - mid) / scale;
      const float ramp = c.horizon > 1 ? static_cast<float>(h) / static_cast<float>(c.horizon - 1) - 0.5f : 0.0f;
      out[h * c.action_dim + d] = std::clamp(u + v * ramp, -1.0f, 1.0f);
    }
}

/// A batch of random observations with their actions and token sequences.
inline Batch make_batch(const Config& c, index_t size, tg::Generator& gen) {
  Batch b;
  b.size = size;
  b.tokens.resize(static_cast<std::size_t>(size * c.seq_len()));
  b.actions.resize(static_cast<std::size_t>(size * c.action_tokens()));
  for (index_t i = 0; i < size; ++i) {
    index_t* seq = b.tokens.data() + i * c.seq_len();
    for (index_t p = 0; p < c.obs_len; ++p) seq[p] = static_cast<index_t>(gen.next() % c.obs_vocab);
    float* act = b.actions.data() + i * c.action_tokens();
    make_actions(c, seq, act);
    // Time-major order: step 0 dim 0, step 0 dim 1, step 1 dim 0, ...
    for (index_t k = 0; k < c.action_tokens(); ++k) seq[c.obs_len + k] = c.obs_vocab + to_bin(act[k], c.bins);
  }
  return b;
}

// ---- attention helpers ----------------------------------------------------------

/// [B, T, d] -> [B, heads, T, d / heads].
inline Tensor split_heads(const Tensor& x, index_t heads) {
  const index_t b = x.size(0), t = x.size(1), d = x.size(2);
  return permute(reshape(x, {b, t, heads, d / heads}), {0, 2, 1, 3});
}
/// [B, heads, T, dh] -> [B, T, heads * dh].
inline Tensor merge_heads(const Tensor& x) {
  const index_t b = x.size(0), h = x.size(1), t = x.size(2), dh = x.size(3);
  return reshape(permute(x, {0, 2, 1, 3}), {b, t, h * dh});
}

// ---- the backbone -----------------------------------------------------------------

/// One pre-LN causal block that also hands out its keys and values.
struct BackboneLayer : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::Linear> wq, wk, wv, wo;
  std::shared_ptr<nn::FeedForward> ffn;
  index_t heads;

  BackboneLayer(index_t d, index_t heads_, tg::Generator& gen) : heads(heads_) {
    ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(d));
    wq = register_module("wq", std::make_shared<nn::Linear>(d, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wk = register_module("wk", std::make_shared<nn::Linear>(d, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wv = register_module("wv", std::make_shared<nn::Linear>(d, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wo = register_module("wo", std::make_shared<nn::Linear>(d, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(d));
    ffn = register_module("ffn",
                          std::make_shared<nn::FeedForward>(
                              d, 4 * d, nn::FeedForwardOptions{.activation = nn::Activation::gelu, .generator = &gen}));
  }

  /// x [B, T, d] -> the block's output; `k` and `v` receive this layer's keys and values [B, T, d].
  Tensor forward(const Tensor& x, Tensor& k, Tensor& v) {
    const Tensor h = ln1->forward(x);
    k = wk->forward(h);
    v = wv->forward(h);
    const Tensor att = scaled_dot_product_attention(split_heads(wq->forward(h), heads), split_heads(k, heads),
                                                    split_heads(v, heads), /*causal=*/true);
    const Tensor y = x + wo->forward(merge_heads(att));
    return y + ffn->forward(ln2->forward(y));
  }
};

/// The backbone: token and position embeddings, causal layers, a token head.
struct Backbone : nn::Module {
  std::shared_ptr<nn::Embedding> embed;
  Tensor pos;
  std::shared_ptr<nn::ModuleList<BackboneLayer>> layers;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> head;

  Backbone(const Config& c, tg::Generator& gen) {
    embed = register_module(
        "embed", std::make_shared<nn::Embedding>(c.vocab(), c.d_model, nn::EmbeddingOptions{.generator = &gen}));
    pos = register_parameter("pos", tg::normal({c.seq_len(), c.d_model}, gen, 0.0, 0.1));
    layers = register_module("layers", std::make_shared<nn::ModuleList<BackboneLayer>>());
    for (index_t l = 0; l < c.layers; ++l) layers->push_back(BackboneLayer(c.d_model, c.heads, gen));
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(c.d_model));
    head = register_module("head",
                           std::make_shared<nn::Linear>(c.d_model, c.vocab(), nn::LinearOptions{.generator = &gen}));
  }
};

// ---- the action expert ------------------------------------------------------------

/// One expert layer: its queries attend to the backbone's keys and values of
/// the observation prefix and to the expert's own positions.
struct ExpertLayer : nn::Module {
  std::shared_ptr<nn::LayerNorm> ln1, ln2;
  std::shared_ptr<nn::Linear> wq, wk, wv, wo;
  std::shared_ptr<nn::FeedForward> ffn;
  index_t heads;

  ExpertLayer(index_t de, index_t d, index_t heads_, tg::Generator& gen) : heads(heads_) {
    ln1 = register_module("ln1", std::make_shared<nn::LayerNorm>(de));
    wq =
        register_module("wq", std::make_shared<nn::Linear>(de, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wk =
        register_module("wk", std::make_shared<nn::Linear>(de, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wv =
        register_module("wv", std::make_shared<nn::Linear>(de, d, nn::LinearOptions{.bias = false, .generator = &gen}));
    wo =
        register_module("wo", std::make_shared<nn::Linear>(d, de, nn::LinearOptions{.bias = false, .generator = &gen}));
    ln2 = register_module("ln2", std::make_shared<nn::LayerNorm>(de));
    ffn = register_module(
        "ffn", std::make_shared<nn::FeedForward>(
                   de, 4 * de, nn::FeedForwardOptions{.activation = nn::Activation::gelu, .generator = &gen}));
  }

  /// h [B, H, de]; prefix_k, prefix_v [B, P, d] from the backbone's same layer.
  Tensor forward(const Tensor& h, const Tensor& prefix_k, const Tensor& prefix_v) {
    const Tensor n = ln1->forward(h);
    // Keys and values: the observation prefix first, then the expert's own positions.
    const Tensor k = tg::concat(std::vector<Tensor>{prefix_k, wk->forward(n)}, 1);
    const Tensor v = tg::concat(std::vector<Tensor>{prefix_v, wv->forward(n)}, 1);
    const Tensor att =
        scaled_dot_product_attention(split_heads(wq->forward(n), heads), split_heads(k, heads), split_heads(v, heads));
    const Tensor y = h + wo->forward(merge_heads(att));
    return y + ffn->forward(ln2->forward(y));
  }
};

/// The expert: embeds (x_t, time features) per action step, runs its layers,
/// and predicts the flow's velocity e - a.
struct Expert : nn::Module {
  std::shared_ptr<nn::Linear> in;
  Tensor pos;
  std::shared_ptr<nn::ModuleList<ExpertLayer>> layers;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> out;

  static constexpr index_t time_features = 8;

  Expert(const Config& c, tg::Generator& gen) {
    in = register_module("in", std::make_shared<nn::Linear>(c.action_dim + time_features, c.d_expert,
                                                            nn::LinearOptions{.generator = &gen}));
    pos = register_parameter("pos", tg::normal({c.horizon, c.d_expert}, gen, 0.0, 0.1));
    layers = register_module("layers", std::make_shared<nn::ModuleList<ExpertLayer>>());
    for (index_t l = 0; l < c.layers; ++l) layers->push_back(ExpertLayer(c.d_expert, c.d_model, c.heads, gen));
    ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(c.d_expert));
    out = register_module("out",
                          std::make_shared<nn::Linear>(c.d_expert, c.action_dim, nn::LinearOptions{.generator = &gen}));
  }
};

/// The expert's input per action step: x_t and sin/cos features of t.
inline Tensor expert_input(const Config& c, const std::vector<float>& x_t, const std::vector<float>& t, index_t batch) {
  const index_t f = c.action_dim + Expert::time_features;
  std::vector<float> v(static_cast<std::size_t>(batch * c.horizon * f));
  for (index_t b = 0; b < batch; ++b)
    for (index_t h = 0; h < c.horizon; ++h) {
      float* row = v.data() + (b * c.horizon + h) * f;
      for (index_t d = 0; d < c.action_dim; ++d)
        row[d] = x_t[static_cast<std::size_t>((b * c.horizon + h) * c.action_dim + d)];
      for (index_t k = 0; k < Expert::time_features / 2; ++k) {
        const float w = std::numbers::pi_v<float> * static_cast<float>(1 << k);
        row[c.action_dim + 2 * k] = std::sin(w * t[static_cast<std::size_t>(b)]);
        row[c.action_dim + 2 * k + 1] = std::cos(w * t[static_cast<std::size_t>(b)]);
      }
    }
  return Tensor(tg::Shape{batch, c.horizon, f}, std::move(v));
}

// ---- the whole model ---------------------------------------------------------------

/// What one forward pass records: the backbone's logits and token loss, the
/// key/value cache the expert reads (and the barrier over it), and the
/// expert's velocity prediction and flow-matching loss.
struct Forward {
  Tensor logits;       ///< [B, seq_len, vocab]
  Tensor token_loss;   ///< next-token cross-entropy on the action tokens
  Tensor kv_cache;     ///< the prefix's keys and values of every layer, [B, P, 2 * layers * d]
  Tensor kv_read;      ///< what the expert reads: stop_gradient(kv_cache), or kv_cache itself
  Tensor velocity;     ///< [B, horizon, action_dim]
  Tensor action_loss;  ///< mean squared error of the velocity against e - a
  Tensor total;        ///< token_loss + action_loss
};

/// The noisy actions and their flow-matching target for one batch.
struct FlowSample {
  std::vector<float> t;       ///< [B], in (0.001, 1)
  std::vector<float> x_t;     ///< [B, H, D] = t e + (1 - t) a
  std::vector<float> target;  ///< [B, H, D] = e - a
};

/// t ~ Beta(1.5, 1) scaled into (0.001, 1), e ~ N(0, I), x_t = t e + (1 - t) a.
/// Beta(alpha, 1) has CDF t^alpha, so t = U^(1 / alpha) for U uniform.
inline FlowSample sample_flow(const Config& c, const Batch& b, tg::Generator& gen) {
  FlowSample s;
  const index_t per = c.action_tokens();
  for (index_t i = 0; i < b.size; ++i) {
    const double beta = std::pow(gen.uniform(), 1.0 / 1.5);
    const auto t = static_cast<float>(0.001 + 0.999 * beta);
    s.t.push_back(t);
    for (index_t k = 0; k < per; ++k) {
      const float a = b.actions[static_cast<std::size_t>(i * per + k)];
      const auto e = static_cast<float>(gen.normal());
      s.x_t.push_back(t * e + (1 - t) * a);
      s.target.push_back(e - a);
    }
  }
  return s;
}

/// The two networks under one root, so `named_parameters()` reads
/// "backbone.*" and "expert.*".
struct Model : nn::Module {
  Config config;
  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<Expert> expert;

  explicit Model(const Config& c) : config(c) {
    tg::Generator gen(c.seed);
    backbone = register_module("backbone", std::make_shared<Backbone>(c, gen));
    expert = register_module("expert", std::make_shared<Expert>(c, gen));
  }

  /// The backbone on the token sequences: logits and the prefix's key/value cache.
  void run_backbone(const Batch& b, Forward& f) {
    const Config& c = config;
    Tensor x = backbone->embed->forward(b.tokens, {b.size, c.seq_len()}) + backbone->pos;
    std::vector<Tensor> cache;
    for (auto& layer : *backbone->layers) {
      Tensor k, v;
      x = layer->forward(x, k, v);
      // Only the observation prefix: the expert never sees the action tokens.
      cache.push_back(slice(k, 1, 0, c.obs_len));
      cache.push_back(slice(v, 1, 0, c.obs_len));
    }
    f.logits = backbone->head->forward(backbone->ln_f->forward(x));
    f.kv_cache = tg::concat(cache, 2);
    f.kv_read = c.stop_gradient ? tg::stop_gradient(f.kv_cache) : f.kv_cache;  // the barrier
  }

  /// The expert on noisy actions x_t at times t, reading `kv` ([B, P, 2 * layers * d]).
  Tensor run_expert(const Tensor& kv, const std::vector<float>& x_t, const std::vector<float>& t, index_t batch) {
    const Config& c = config;
    Tensor h = expert->in->forward(expert_input(c, x_t, t, batch)) + expert->pos;
    index_t l = 0;
    for (auto& layer : *expert->layers) {
      const Tensor k = slice(kv, 2, (2 * l) * c.d_model, (2 * l + 1) * c.d_model);
      const Tensor v = slice(kv, 2, (2 * l + 1) * c.d_model, (2 * l + 2) * c.d_model);
      h = layer->forward(h, k, v);
      ++l;
    }
    return expert->out->forward(expert->ln_f->forward(h));
  }

  /// One training forward pass: both losses and their sum on one graph.
  Forward forward(const Batch& b, const FlowSample& s) {
    const Config& c = config;
    Forward f;
    run_backbone(b, f);
    // Next-token prediction: positions P-1 .. T-2 predict the action tokens at P .. T-1.
    const index_t n = c.action_tokens();
    const Tensor pred = reshape(slice(f.logits, 1, c.obs_len - 1, c.seq_len() - 1), {b.size * n, c.vocab()});
    std::vector<index_t> targets;
    for (index_t i = 0; i < b.size; ++i)
      for (index_t k = 0; k < n; ++k)
        targets.push_back(b.tokens[static_cast<std::size_t>(i * c.seq_len() + c.obs_len + k)]);
    f.token_loss = cross_entropy(pred, targets);
    f.velocity = run_expert(f.kv_read, s.x_t, s.t, b.size);
    f.action_loss = mse_loss(f.velocity, Tensor(tg::Shape{b.size, c.horizon, c.action_dim}, s.target));
    f.total = f.token_loss + f.action_loss;
    return f;
  }
};

/// Held-out quality: teacher-forced accuracy on the action tokens, and the
/// error of actions sampled by `steps` Euler steps of the flow from noise.
struct Evaluation {
  index_t correct = 0, tokens = 0;  ///< action tokens predicted right, of all
  double action_mse = 0;            ///< mean squared error of the sampled actions
  double action_mae = 0;            ///< mean absolute error of the sampled actions
};

inline Evaluation evaluate(Model& m, const Batch& b, tg::Generator& gen, int steps = 10) {
  const Config& c = m.config;
  tg::NoGradGuard no_grad;
  Forward f;
  m.run_backbone(b, f);
  Evaluation e;
  const index_t n = c.action_tokens();
  for (index_t i = 0; i < b.size; ++i)
    for (index_t k = 0; k < n; ++k) {
      const index_t p = c.obs_len - 1 + k;  // the position that predicts token P + k
      index_t best = 0;
      for (index_t v = 1; v < c.vocab(); ++v)
        if (f.logits.at({i, p, v}) > f.logits.at({i, p, best})) best = v;
      e.correct += best == b.tokens[static_cast<std::size_t>(i * c.seq_len() + c.obs_len + k)];
      ++e.tokens;
    }
  // Euler from t = 1 (noise) to t = 0 (data): dx/dt = e - a, so x <- x - dt * v.
  std::vector<float> x(static_cast<std::size_t>(b.size * n));
  for (float& v : x) v = static_cast<float>(gen.normal());
  const float dt = 1.0f / static_cast<float>(steps);
  for (int s = 0; s < steps; ++s) {
    const std::vector<float> t(static_cast<std::size_t>(b.size), 1.0f - static_cast<float>(s) * dt);
    const Tensor v = m.run_expert(f.kv_read, x, t, b.size);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] -= dt * v.data()[static_cast<Eigen::Index>(i)];
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - b.actions[i];
    e.action_mse += d * d;
    e.action_mae += std::abs(d);
  }
  e.action_mse /= static_cast<double>(x.size());
  e.action_mae /= static_cast<double>(x.size());
  return e;
}

}  // namespace knowledge_insulation
