// SPDX-License-Identifier: MIT
//
// The tiny language model: six tokens, one causal transformer
// block, and one sentence to learn. Given <BOS> it must continue with
// "I like transformers <EOS>". The program prints the next-token probabilities
// before and after training and, for the first step, the gradient of the loss
// with respect to every logit: P - one_hot(target), each row summing to zero.
//
//   tiny_lm [--steps 60] [--lr 0.01] [--seed 0] [--out tiny_lm-out]

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/nn.hpp>
#include <tapegrad/optim.hpp>
#include <tapegrad/tensor.hpp>

#include "../common/cli.hpp"
#include "../common/progress.hpp"
#include "../common/svg.hpp"

namespace ex = tapegrad_examples;
namespace nn = tapegrad::nn;
using tapegrad::index_t;
using tapegrad::Tensor;

const std::vector<std::string> vocab = {"<PAD>", "<BOS>", "<EOS>", "I", "like", "transformers"};
constexpr index_t d_model = 16, heads = 2, d_ff = 64, max_len = 5;

/// Embedding + fixed positional encoding -> one causal block -> logits over the 6 tokens.
class TinyLM : public nn::Module {
 public:
  explicit TinyLM(std::uint64_t seed) {
    tapegrad::Generator gen(seed);
    embed_ = register_module("embed", nn::Embedding(6, d_model, {.generator = &gen}));
    position_ = std::make_shared<nn::PositionalEncoding>(max_len, d_model);
    block_ = register_module("block",
                             nn::TransformerBlock(d_model, heads, {.d_ff = d_ff, .causal = true, .generator = &gen}));
    head_ = register_module("lm_head", nn::Linear(d_model, 6, {.generator = &gen}));
  }

  /// Logits [T, 6]: row t scores the token that follows tokens 0..t.
  Tensor forward(const std::vector<index_t>& tokens) {
    Tensor x = position_->forward(embed_->forward(tokens));  // [T, 16]
    return head_->forward(block_->forward(x));               // causal: row t sees positions <= t only
  }

  nn::TransformerBlock& block() { return *block_; }

 private:
  std::shared_ptr<nn::Embedding> embed_;
  std::shared_ptr<nn::PositionalEncoding> position_;
  std::shared_ptr<nn::TransformerBlock> block_;
  std::shared_ptr<nn::Linear> head_;
};

/// One row per input position, one column per token: the layout of the
/// probability and cross-entropy gradient tables.
std::string token_table(const std::string& title, const std::vector<index_t>& inputs, const Tensor& values,
                        bool with_sum) {
  std::ostringstream os;
  os << title << "\n" << std::left << std::setw(14) << "position";
  for (const auto& t : vocab) os << std::right << std::setw(9) << (t == "transformers" ? "trans" : t);
  if (with_sum) os << std::setw(9) << "sum";
  os << "\n" << std::string(14 + 9 * (vocab.size() + (with_sum ? 1 : 0)), '-') << "\n";
  const auto m = values.matrix();
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    os << std::left << std::setw(14) << vocab[static_cast<std::size_t>(inputs[static_cast<std::size_t>(r)])]
       << std::right << std::fixed << std::setprecision(4);
    for (Eigen::Index c = 0; c < m.cols(); ++c) os << std::setw(9) << m(r, c);
    if (with_sum) os << std::setw(9) << std::abs(m.row(r).sum());  // |sum|: no "-0.0000"
    os << "\n";
  }
  return os.str();
}

/// The program; main() turns its exceptions into one line on stderr.
int run(int argc, char** argv) {
  int steps = 60;
  double lr = 0.01;
  std::uint64_t seed = 0;
  std::string out = "tiny_lm-out";
  CLI::App app{"A tiny causal language model learns \"<BOS> I like transformers <EOS>\""};
  app.add_option("--steps", steps, "Adam steps on the one sentence")->capture_default_str();
  app.add_option("--lr", lr, "Adam's learning rate")->capture_default_str();
  app.add_option("--seed", seed, "seed of the initial weights")->capture_default_str();
  app.add_option("--out", out, "folder for loss.svg and attention.svg")->capture_default_str();
  if (auto status = ex::parse_flags(app, argc, argv)) return *status;
  ex::require_at_least("--steps", steps, 1);
  ex::require_positive("--lr", lr);
  ex::make_output_dir(out);  // before training: an unwritable --out fails at once

  const std::vector<index_t> sentence = {1, 3, 4, 5, 2};                     // <BOS> I like transformers <EOS>
  const std::vector<index_t> inputs(sentence.begin(), sentence.end() - 1);   // what the model reads
  const std::vector<index_t> targets(sentence.begin() + 1, sentence.end());  // the next token at each position

  TinyLM model(seed);
  std::cout << "vocabulary: ";
  for (std::size_t i = 0; i < vocab.size(); ++i)
    std::cout << i << "=" << vocab[i] << (i + 1 < vocab.size() ? " " : "\n");
  std::cout << "d_model 16, 2 heads, feed-forward 64, causal attention, " << model.parameter_count()
            << " parameters\n\n";

  {
    tapegrad::NoGradGuard no_grad;
    std::cout << token_table("next-token probabilities before training:", inputs,
                             tapegrad::softmax(model.forward(inputs)), false)
              << "\n";
  }

  tapegrad::optim::Adam opt(model.parameters(), {.lr = lr});
  ex::Progress progress(steps);
  ex::Series curve{.name = "training loss"};
  for (int step = 1; step <= steps; ++step) {
    const Tensor logits = model.forward(inputs);
    // The sum over positions (not the mean), so that d loss / d logits is
    // exactly P - one_hot(target) at each position, as the cross-entropy
    // gradient table lists it.
    const Tensor loss = tapegrad::cross_entropy(logits, targets, {.reduction = tapegrad::Reduction::sum});
    opt.zero_grad();
    loss.backward();
    if (step == 1) {
      Tensor grad(logits.shape(), logits.grad_tensor().to_vector());
      std::cout << token_table("gradient of the loss with respect to the logits, first step (P - one_hot):", inputs,
                               grad, true)
                << "each row sums to zero: sum(P) - 1 = 0\n\n";
    }
    const double value = loss.item() / static_cast<double>(inputs.size());
    opt.step();
    tapegrad::Tape::active().clear();
    curve.x.push_back(step);
    curve.y.push_back(value);
    progress.update(step, {.loss = value});
  }
  progress.finish();
  std::cout << "trained " << steps << " Adam steps in " << ex::format_duration(progress.elapsed())
            << "; mean loss per position " << std::fixed << std::setprecision(4) << curve.y.front() << " -> "
            << curve.y.back() << "\n\n";

  tapegrad::NoGradGuard no_grad;
  model.eval();
  std::cout << token_table("next-token probabilities after training:", inputs, tapegrad::softmax(model.forward(inputs)),
                           false)
            << "\n";

  // Greedy generation: start from <BOS>, append the likeliest next token until <EOS>.
  std::vector<index_t> text = {1};
  while (text.back() != 2 && static_cast<index_t>(text.size()) < max_len) {
    const Tensor logits = model.forward(text);
    Eigen::Index next = 0;
    logits.matrix().row(logits.size(0) - 1).maxCoeff(&next);  // the last position predicts what comes next
    text.push_back(next);
  }

  ex::LineChart chart{
      .title = "tiny language model", .x_label = "Adam step", .y_label = "cross-entropy per position", .log_y = true};
  chart.series = {curve};
  chart.save(std::filesystem::path(out) / "loss.svg");
  model.forward(inputs);  // refresh the kept attention weights on the four input tokens
  const auto a = model.block().attn().last_attention().to_vector();  // [2, 4, 4]
  std::vector<std::string> labels;
  for (index_t t : inputs) labels.push_back(vocab[static_cast<std::size_t>(t)]);
  ex::Heatmap map{.title = "causal attention on <BOS> I like transformers", .row_labels = labels, .col_labels = labels};
  for (int h = 0; h < 2; ++h)
    map.panels.push_back({.title = "head " + std::to_string(h + 1),
                          .rows = 4,
                          .cols = 4,
                          .values = std::vector<double>(a.begin() + h * 16, a.begin() + (h + 1) * 16)});
  map.cell = 44;
  map.save(std::filesystem::path(out) / "attention.svg");
  std::cout << "wrote " << out << "/loss.svg and " << out << "/attention.svg\n";

  std::cout << "generated from <BOS>:";
  for (index_t t : text) std::cout << " " << vocab[static_cast<std::size_t>(t)];
  std::cout << "\n";
  return 0;
}

int main(int argc, char** argv) {
  return ex::guarded_main([&] { return run(argc, argv); });
}
