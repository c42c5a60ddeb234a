// SPDX-License-Identifier: MIT
#pragma once

// What the transformer example writes and prints besides training itself:
// the per-step metrics, the epoch summaries, the table of gradient
// magnitudes at different stages of the backward pass (measured), the loss curves, the attention maps, the graph of
// one forward pass and the answer to --predict.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/nn.hpp>
#include <tapegrad/tensor.hpp>

#include "../common/csv.hpp"
#include "../common/progress.hpp"
#include "../common/svg.hpp"
#include "data.hpp"
#include "model.hpp"

namespace tapegrad_examples::transformer {

/// How the parameter count compares with the 102,016 of the reference
/// walk-through of the operation transformer, which leaves out the output bias.
inline std::string parameter_note(const OperationTransformer& model) {
  const std::size_t n = model.parameter_count();
  std::ostringstream os;
  os << "the reference walk-through of the operation transformer counts 102,016 parameters, this model "
     << group_thousands(n);
  if (n == 102036 && model.options().d_model == 64)
    os << ":\n"
          "the 20 more are the output bias b_output, which the walk-through's formula\n"
          "logits = final_repr @ W_output + b_output uses but its count leaves out. As in the walk-through,\n"
          "W_q, W_k, W_v and W_o have no biases, and the positional encoding is a fixed table, not a parameter.";
  return os.str();
}

/// The mean and the largest |gradient| of a set of tensors.
struct GradStat {
  double mean_abs = 0;
  double max_abs = 0;
};

/// GradStat over every element of `tensors`; a tensor that has no gradient
/// buffer yet counts as zeros.
inline GradStat grad_stat(const std::vector<Tensor>& tensors) {
  double sum = 0, mx = 0;
  std::size_t n = 0;
  for (const Tensor& t : tensors) {
    if (!t.has_grad()) {
      n += static_cast<std::size_t>(t.numel());
      continue;
    }
    const auto g = t.grad().abs();
    sum += static_cast<double>(g.template cast<double>().sum());
    mx = std::max(mx, static_cast<double>(g.maxCoeff()));
    n += static_cast<std::size_t>(t.numel());
  }
  return {n ? sum / static_cast<double>(n) : 0.0, mx};
}

/// Everything recorded during training: metrics.csv line by line, the
/// curves, the gradient snapshots and the epoch summaries.
class TrainingLog {
 public:
  /// The rows of the table "Gradient Magnitudes at Different Stages": the
  /// logits, the output weight, the pooled representation, each block and the
  /// embeddings.
  static constexpr const char* stages[6] = {"dloss/dlogits",      "dloss/dW_output",    "dloss/dfinal_repr",
                                            "block 2 parameters", "block 1 parameters", "embeddings"};

  TrainingLog(const std::filesystem::path& out, OperationTransformer& model, const Split& split,
              std::size_t steps_per_epoch, std::size_t total_steps)
      : out_(out),
        model_(model),
        split_(split),
        metrics_(out / "metrics.csv", {"step", "epoch", "loss", "accuracy", "learning_rate", "grad_norm",
                                       "validation_loss", "validation_accuracy"}),
        gradients_(out / "gradients.csv", {"step", "stage", "mean_abs_grad", "max_abs_grad"}) {
    snapshot_steps_ = {1, steps_per_epoch, total_steps / 2, total_steps};
    std::sort(snapshot_steps_.begin(), snapshot_steps_.end());
    snapshot_steps_.erase(std::unique(snapshot_steps_.begin(), snapshot_steps_.end()), snapshot_steps_.end());
    for (const auto& [name, p] : model.named_parameters()) {
      if (name.rfind("out.weight", 0) == 0) w_output_.push_back(p);
      if (name.rfind("blocks.1.", 0) == 0) block2_.push_back(p);
      if (name.rfind("blocks.0.", 0) == 0) block1_.push_back(p);
      if (name.rfind("embed.", 0) == 0) embeddings_.push_back(p);
    }
  }

  /// Notes |dloss/dlogits| and |dloss/dfinal_repr| of the micro-batch just
  /// back-propagated (intermediates: they must be read before the tape clear).
  void capture_activations(const Tensor& logits, const Tensor& final_repr) {
    logits_ = grad_stat({logits});
    final_repr_ = grad_stat({final_repr});
  }

  /// Before clipping and the update of step `step` (1-based): at the snapshot
  /// steps, takes the gradient magnitudes of every stage.
  void capture_gradients(std::size_t step) {
    if (!std::binary_search(snapshot_steps_.begin(), snapshot_steps_.end(), step)) return;
    const GradStat row[6] = {
        logits_, grad_stat(w_output_), final_repr_, grad_stat(block2_), grad_stat(block1_), grad_stat(embeddings_)};
    for (int i = 0; i < 6; ++i) {
      gradients_.row(step, std::string(stages[i]), row[i].mean_abs, row[i].max_abs);
      table_[step][i] = row[i].mean_abs;
    }
  }

  /// Records optimizer step `step` (1-based) of `epoch`.
  void step(std::size_t step, int epoch, const Score& batch, double lr, double grad_norm) {
    const double loss = batch.loss, nan = std::numeric_limits<double>::quiet_NaN();
    smoothed_ = train_curve_.x.empty() ? loss : 0.95 * smoothed_ + 0.05 * loss;  // a resumed run starts past step 1
    metrics_.row(step, epoch, loss, batch.accuracy(), lr, grad_norm, nan, nan);
    train_curve_.x.push_back(static_cast<double>(step));
    train_curve_.y.push_back(smoothed_);
    last_step_ = step;
  }

  /// The training loss averaged over the last ~20 steps (for the progress line).
  double smoothed_loss() const { return smoothed_; }

  /// Scores the validation set (and, only for the curve, the held-out set)
  /// and returns the epoch's summary line.
  std::string end_epoch(int epoch, int epochs, const Score& train, double seconds) {
    const Score val = evaluate(model_, split_.validation);
    const Score held = evaluate(model_, split_.held_out);  // plotted, never used for a decision
    const double nan = std::numeric_limits<double>::quiet_NaN();
    metrics_.row(last_step_, epoch, nan, nan, nan, nan, val.loss, val.accuracy());
    for (auto* c : {&val_curve_, &held_curve_}) c->x.push_back(static_cast<double>(last_step_));
    val_curve_.y.push_back(val.loss);
    held_curve_.y.push_back(held.loss);
    std::ostringstream os;
    os << std::fixed << "epoch " << epoch << "/" << epochs << ": train loss " << std::setprecision(4) << train.loss
       << " acc " << std::setprecision(2) << 100 * train.accuracy() << "% | validation loss " << std::setprecision(4)
       << val.loss << " acc " << std::setprecision(2) << 100 * val.accuracy() << "% | " << std::setprecision(1)
       << seconds << "s";
    return os.str();
  }

  /// The table of gradient magnitudes, measured: mean |gradient| per stage at a
  /// few steps.
  std::string gradient_table() const {
    std::ostringstream os;
    os << "gradient magnitudes at different stages (mean |gradient| of the batch-mean loss):\n";
    os << std::left << std::setw(22) << "stage";
    for (const auto& [step, row] : table_) os << std::right << std::setw(12) << ("step " + std::to_string(step));
    os << "\n" << std::string(22 + 12 * table_.size(), '-') << "\n";
    for (int i = 0; i < 6; ++i) {
      os << std::left << std::setw(22) << stages[i];
      for (const auto& [step, row] : table_) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2e", row[i]);
        os << std::right << std::setw(12) << buf;
      }
      os << "\n";
    }
    return os.str();
  }

  /// Writes loss.svg and closes the CSV files.
  void write_curves() {
    LineChart chart{
        .title = "operation transformer: loss", .x_label = "optimizer step", .y_label = "cross-entropy", .log_y = true};
    train_curve_.name = "training (smoothed)";
    val_curve_.name = "validation (per epoch)";
    held_curve_.name = "held-out (per epoch)";
    val_curve_.markers = held_curve_.markers = true;
    chart.series = {train_curve_, val_curve_, held_curve_};
    chart.save(out_ / "loss.svg");
    metrics_.close();
    gradients_.close();
  }

 private:
  std::filesystem::path out_;
  OperationTransformer& model_;
  const Split& split_;
  CsvWriter metrics_, gradients_;
  std::vector<Tensor> w_output_, block2_, block1_, embeddings_;
  std::vector<std::size_t> snapshot_steps_;
  std::map<std::size_t, std::array<double, 6>> table_;
  GradStat logits_, final_repr_;
  Series train_curve_, val_curve_, held_curve_;
  double smoothed_ = 0;
  std::size_t last_step_ = 0;
};

/// The tokens of an example as the axes of a picture: "Max", "(", "1", ...
inline std::vector<std::string> token_labels(const Example& e) {
  std::vector<std::string> labels;
  for (int id : e.tokens) labels.push_back(token_text(id));
  return labels;
}

/// attention.svg: every head of every block on one input, one panel each.
inline void write_attention_map(OperationTransformer& model, const Example& e, const std::filesystem::path& path) {
  tapegrad::NoGradGuard no_grad;
  model.eval();
  const std::vector<index_t> ids(e.tokens.begin(), e.tokens.end());
  model.forward(ids, 1);
  Heatmap map{.title = "attention weights on " + e.text() + " (row: query position, column: key position)",
              .row_labels = token_labels(e),
              .col_labels = token_labels(e)};
  for (std::size_t b = 0; b < static_cast<std::size_t>(model.options().blocks); ++b) {
    const Tensor a = model.block(b).attn().last_attention();  // [1, H, 8, 8]
    const auto v = a.to_vector();
    const index_t heads = a.size(1);
    for (index_t h = 0; h < heads; ++h)
      map.panels.push_back(
          {.title = "block " + std::to_string(b + 1) + ", head " + std::to_string(h + 1),
           .rows = seq_len,
           .cols = seq_len,
           .values = std::vector<double>(v.begin() + h * seq_len * seq_len, v.begin() + (h + 1) * seq_len * seq_len)});
  }
  map.per_row = static_cast<int>(model.options().heads);
  map.save(path);
  model.train();
}

/// graph.dot: the tensor graph of one forward pass and its loss, parameters named by their path.
inline void write_graph(OperationTransformer& model, const Example& e, const std::filesystem::path& path) {
  const std::vector<index_t> ids(e.tokens.begin(), e.tokens.end());
  const Tensor logits = model.forward(ids, 1);
  const Tensor loss = tapegrad::cross_entropy(logits, {static_cast<index_t>(e.target)});
  write_text_file(path, tapegrad::to_dot(loss, model.named_parameters()));
  tapegrad::Tape::active().clear();
}

/// The model's answer to one expression and its probabilities for the ten digits.
inline std::string prediction_report(OperationTransformer& model, const Example& e) {
  tapegrad::NoGradGuard no_grad;
  model.eval();
  const std::vector<index_t> ids(e.tokens.begin(), e.tokens.end());
  const auto p = tapegrad::softmax(model.forward(ids, 1)).to_vector();
  model.train();
  const auto best = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
  std::ostringstream os;
  os << e.text() << " -> " << token_text(best) << " (probability " << std::fixed << std::setprecision(4)
     << p[static_cast<std::size_t>(best)] << "; the right answer is " << token_text(e.target) << ")\n";
  os << "  digit  probability\n";
  for (int d = 0; d < 10; ++d) {
    const double q = p[static_cast<std::size_t>(token_of_digit(d))];
    const auto bar = static_cast<std::size_t>(std::lround(q * 40));
    os << "  " << d << "      " << std::setprecision(4) << q << (bar ? "  " + std::string(bar, '#') : "") << "\n";
  }
  double rest = 0;
  for (int id = 0; id < vocab_size; ++id)
    if (digit_of(id) < 0) rest += p[static_cast<std::size_t>(id)];
  os << "  (the ten non-digit tokens together: " << std::scientific << std::setprecision(1) << rest << ")\n";
  return os.str();
}

}  // namespace tapegrad_examples::transformer
