// SPDX-License-Identifier: MIT
#pragma once

// What the tapegrad program and its libtorch twin share: the two measured
// configurations, the tapegrad model (the twin copies its initial values),
// the batches, the training recipe, the command line and the report line.
// Each side runs in its own process, so its peak resident memory is its own.

#include <sys/resource.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <tapegrad/nn.hpp>
#include <tapegrad/tensor.hpp>

#include "../../examples/transformer/data.hpp"

namespace tapegrad_bench {

using tapegrad::index_t;
using tapegrad::Tensor;
namespace tx = tapegrad_examples::transformer;

/// The sizes of one measured model: a post-LN transformer classifier
/// (embedding + sinusoidal positions, blocks, mean over positions, linear).
struct Config {
  const char* name;
  index_t vocab, seq, d_model, heads, blocks, d_ff, batch;
  int warmup, steps;  ///< untimed and timed steps in the timing mode
};

/// The example's model and batch (vocabulary 20, sequence 8: its task).
inline constexpr Config tiny{"tiny", tx::vocab_size, tx::seq_len, 64, 4, 2, 256, 32, 30, 300};
/// The big configuration, on random tokens and targets.
inline constexpr Config big{"big", 256, 64, 256, 8, 4, 1024, 16, 4, 12};

/// The model on tapegrad's public layers, every one with its default options.
class Classifier : public tapegrad::nn::Module {
 public:
  Classifier(const Config& c, std::uint64_t seed) : c_(c), position_(c.seq, c.d_model) {
    tapegrad::Generator gen(seed);
    embed_ = register_module("embed", tapegrad::nn::Embedding(c.vocab, c.d_model, {.generator = &gen}));
    blocks_ = register_module("blocks", tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>());
    for (index_t b = 0; b < c.blocks; ++b)
      blocks_->push_back(tapegrad::nn::TransformerBlock(c.d_model, c.heads, {.d_ff = c.d_ff, .generator = &gen}));
    out_ = register_module("out", tapegrad::nn::Linear(c.d_model, c.vocab, {.generator = &gen}));
  }

  /// Logits [batch, vocab] for batch * seq token ids.
  Tensor forward(std::span<const index_t> ids, index_t batch) {
    Tensor x = position_.forward(embed_->forward(ids, {batch, c_.seq}));
    for (auto& block : *blocks_) x = block->forward(x);
    return out_->forward(tapegrad::mean(x, 1));
  }

  /// The sinusoidal table [seq, d_model] that forward adds.
  std::vector<float> position_table() {
    tapegrad::NoGradGuard no_grad;
    return position_.forward(tapegrad::zeros<float>({c_.seq, c_.d_model})).to_vector();
  }

 private:
  Config c_;
  tapegrad::nn::PositionalEncoding position_;
  std::shared_ptr<tapegrad::nn::Embedding> embed_;
  std::shared_ptr<tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>> blocks_;
  std::shared_ptr<tapegrad::nn::Linear> out_;
};

/// Token ids and targets of one batch.
struct Batch {
  std::vector<index_t> ids, targets;
};

/// The fixed batch the timing mode trains on: uniform random tokens and targets.
inline Batch random_batch(const Config& c) {
  std::mt19937 gen(11);
  Batch b;
  for (index_t i = 0; i < c.batch * c.seq; ++i) b.ids.push_back(static_cast<index_t>(tx::uniform_below(gen, c.vocab)));
  for (index_t i = 0; i < c.batch; ++i) b.targets.push_back(static_cast<index_t>(tx::uniform_below(gen, c.vocab)));
  return b;
}

/// The training recipe of the transformer example: Adam, warm-up then cosine
/// from a peak of 2e-3 over 6 epochs of 125 batches of 32, gradient norm
/// clipped to 1, mean cross-entropy.
struct Recipe {
  int epochs = 6;
  std::size_t batch = 32;
  double lr = 2e-3;
  double clip = 1.0;
  /// The learning rate of step `step` of `total` (warm-up over the first 5%).
  static double rate(std::size_t step, std::size_t total, double peak) {
    const std::size_t warm = std::max<std::size_t>(1, total / 20);
    if (step < warm) return peak * static_cast<double>(step + 1) / static_cast<double>(warm);
    if (step >= total) return 0;
    const double p = static_cast<double>(step - warm) / static_cast<double>(total - warm);
    return peak * 0.5 * (1.0 + std::cos(3.14159265358979323846 * p));
  }
};

/// Command line: --config tiny|big, --threads N, --mode time|converge, --seed S,
/// --steps N (timed steps), --target A (held-out accuracy to reach).
struct Args {
  const Config* config = &tiny;
  int threads = 1;
  std::string mode = "time";
  std::uint32_t seed = 1;
  double target = 0.995;
  int steps = 0;  ///< timed steps; 0 means the configuration's own count
};

inline Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config")
      a.config = v == "big" ? &big : &tiny;
    else if (k == "--threads")
      a.threads = std::max(1, std::atoi(v.c_str()));
    else if (k == "--mode")
      a.mode = v;
    else if (k == "--seed")
      a.seed = static_cast<std::uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    else if (k == "--steps")
      a.steps = std::max(1, std::atoi(v.c_str()));
    else if (k == "--target")
      a.target = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return a;
}

/// Peak resident set size of this process, in MiB.
inline double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

/// Milliseconds between two time points.
inline double ms_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Times `step` (one training step, returning the loss): `warmup` untimed
/// steps, then `steps` timed one by one. Prints the report line.
template <class Step>
void time_steps(const char* side, const Args& a, std::size_t params, Step&& step) {
  const Config& c = *a.config;
  const int steps = a.steps > 0 ? a.steps : c.steps;
  for (int i = 0; i < c.warmup; ++i) step();
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(steps));  // no allocation of ours inside the timed steps
  float loss = 0;
  for (int i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = step();
    ms.push_back(ms_between(t0, std::chrono::steady_clock::now()));
  }
  std::printf("side=%s config=%s threads=%d params=%zu median_ms=%.4f min_ms=%.4f loss_bits=%08x peak_rss_mib=%.1f\n",
              side, c.name, a.threads, params, median(ms), *std::min_element(ms.begin(), ms.end()),
              std::bit_cast<std::uint32_t>(loss), peak_rss_mib());
}

/// The example's task with the example's recipe: trains until the held-out
/// accuracy, checked every 25 steps with the clock stopped, reaches
/// `a.target`. `train_step(batch, lr)` runs one step; `held_out_correct()`
/// counts right answers on the held-out set. Prints the report line.
template <class TrainStep, class Score>
void converge(const char* side, const Args& a, TrainStep&& train_step, Score&& held_out_correct,
              const tx::Split& split) {
  const Recipe r;
  const std::size_t steps_per_epoch = (split.train.size() + r.batch - 1) / r.batch;
  const std::size_t total = steps_per_epoch * static_cast<std::size_t>(r.epochs);
  std::mt19937 shuffle(a.seed);
  std::vector<std::size_t> order(split.train.size());
  double train_ms = 0;
  std::size_t step = 0;
  double accuracy = 0;
  bool reached = false;
  for (int epoch = 0; epoch < r.epochs && !reached; ++epoch) {
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (std::size_t i = order.size() - 1; i > 0; --i)
      std::swap(order[i], order[tx::uniform_below(shuffle, static_cast<std::uint32_t>(i + 1))]);
    for (std::size_t begin = 0; begin < order.size() && !reached; begin += r.batch) {
      const std::size_t end = std::min(order.size(), begin + r.batch);
      Batch b;
      for (std::size_t i = begin; i < end; ++i) {
        const tx::Example& e = split.train[order[i]];
        b.ids.insert(b.ids.end(), e.tokens.begin(), e.tokens.end());
        b.targets.push_back(e.target);
      }
      const auto t0 = std::chrono::steady_clock::now();
      train_step(b, Recipe::rate(step, total, r.lr));
      train_ms += ms_between(t0, std::chrono::steady_clock::now());
      ++step;
      if (step % 25 == 0 || step == total) {
        accuracy = static_cast<double>(held_out_correct()) / static_cast<double>(split.held_out.size());
        reached = accuracy >= a.target;
      }
    }
  }
  std::printf(
      "side=%s mode=converge seed=%u threads=%d reached=%d steps=%zu accuracy=%.4f seconds=%.4f "
      "peak_rss_mib=%.1f\n",
      side, a.seed, a.threads, reached ? 1 : 0, step, accuracy, train_ms / 1000.0, peak_rss_mib());
}

/// The held-out set as one batch.
inline Batch held_out_batch(const tx::Split& split) {
  Batch b;
  for (const tx::Example& e : split.held_out) {
    b.ids.insert(b.ids.end(), e.tokens.begin(), e.tokens.end());
    b.targets.push_back(e.target);
  }
  return b;
}

}  // namespace tapegrad_bench
