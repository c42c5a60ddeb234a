// SPDX-License-Identifier: MIT
//
// A HyperMixer trained on a task it makes itself.
//
// Each example is a sequence of 12 random tokens out of 16, labelled 1 when
// the first token occurs again later in the sequence. Answering needs mixing
// across positions, and knowing which position is first: the tokens enter
// without positions, and only the hypernetworks see them (sinusoidal
// encodings added to their input), so the token-mixing weights carry the
// order. With --variant seed one hypernetwork reads the mean of the tokens
// and emits a whole fixed-size token MLP instead.
//
//   hypermixer [--variant paper|seed] [--tied] [--steps 2000] [--batch 32] [--seed 1] [--out hypermixer-out]

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/csv.hpp"
#include "common/progress.hpp"
#include "common/svg.hpp"
#include "hypermixer/model.hpp"

namespace hm = hypermixer;
namespace ex = tapegrad_examples;
namespace tg = tapegrad;
using tg::index_t;
using Tensor = tg::Tensor;

namespace {

// The rows of a batch [begin, end) of `d`.
hm::Data rows(const hm::Data& d, index_t begin, index_t end) {
  hm::Data out;
  out.size = end - begin;
  out.length = d.length;
  out.ids.assign(d.ids.begin() + begin * d.length, d.ids.begin() + end * d.length);
  out.labels.assign(d.labels.begin() + begin, d.labels.begin() + end);
  return out;
}

index_t count_correct(const Tensor& logits, const std::vector<index_t>& labels) {
  index_t correct = 0;
  for (index_t i = 0; i < logits.size(0); ++i) {
    const index_t guess = logits.at({i, 1}) > logits.at({i, 0}) ? 1 : 0;
    correct += guess == labels[static_cast<std::size_t>(i)];
  }
  return correct;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 2000, batch = 32, held_out = 2000;
  std::uint64_t seed = 1;
  double lr = 3e-3;
  bool tied = false;
  hm::Variant variant = hm::Variant::paper;
  std::string out = "hypermixer-out";
  CLI::App app{"HyperMixer: token mixing with weights generated from the tokens by hypernetworks"};
  app.add_option("--variant", variant, "paper: W1, W2 generated per token; seed: one token MLP from the mean token")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, hm::Variant>{{"paper", hm::Variant::paper}, {"seed", hm::Variant::seed}}))
      ->capture_default_str();
  app.add_flag("--tied", tied, "paper variant: one hypernetwork makes both W1 and W2");
  app.add_option("--steps", steps, "Adam steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "sequences per step")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--held-out", held_out, "held-out sequences for the final accuracy")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate")->capture_default_str();
  app.add_option("--seed", seed, "seed for the data and the initial weights")->capture_default_str();
  app.add_option("--out", out, "folder for loss.svg and losses.csv")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    hm::Config config;
    config.variant = variant;
    config.tied = tied;
    config.seed = seed;
    hm::Model<float> model(config);
    const char* mixing = variant == hm::Variant::paper ? (tied ? "paper, tied: W1 = W2 = h(x_i + p_i)"
                                                               : "paper: W1 = h1(x_i + p_i), W2 = h2(x_i + p_i)")
                                                       : "seed: one token MLP generated from the mean token";
    std::cout << "task: " << config.max_len << " tokens out of " << config.vocab
              << "; label 1 when the first token occurs again later\n"
              << "model: " << config.layers << " HyperMixer blocks, d = " << config.d_model << ", k = " << config.k
              << ", token mixing " << mixing << "; " << ex::group_thousands(model.parameter_count())
              << " parameters\n\n";

    tg::Generator data_gen(seed * 7919 + 1);
    const hm::Data test = hm::make_data(held_out, config.max_len, config.vocab, data_gen);
    index_t positives = 0;
    for (index_t l : test.labels) positives += l;
    std::cout << "held-out set: " << held_out << " sequences, " << std::fixed << std::setprecision(1)
              << 100.0 * static_cast<double>(positives) / held_out << "% labelled 1\n";

    tg::optim::Adam opt(model.parameters(), {.lr = lr});
    ex::make_output_dir(out);
    ex::CsvWriter csv(std::filesystem::path(out) / "losses.csv", {"step", "loss", "accuracy"});
    std::vector<double> xs, loss_curve, eval_x, eval_loss;
    double loss_avg = 0, acc_avg = 0;
    ex::Progress progress(steps);
    auto held_out_pass = [&](index_t& correct) {
      tg::NoGradGuard no_grad;
      double loss = 0;
      correct = 0;
      for (index_t b = 0; b < test.size; b += 500) {
        const hm::Data part = rows(test, b, std::min<index_t>(test.size, b + 500));
        const Tensor logits = model.forward(part.ids, part.size, part.length);
        loss += tg::cross_entropy(logits, part.labels).item() * static_cast<double>(part.size);
        correct += count_correct(logits, part.labels);
      }
      return loss / static_cast<double>(test.size);
    };
    for (int step = 1; step <= steps; ++step) {
      const hm::Data b = hm::make_data(batch, config.max_len, config.vocab, data_gen);
      const Tensor logits = model.forward(b.ids, b.size, b.length);
      const Tensor loss = tg::cross_entropy(logits, b.labels);
      opt.zero_grad();
      loss.backward();
      opt.step();
      const double l = loss.item();
      const double acc = static_cast<double>(count_correct(logits, b.labels)) / batch;
      tg::Tape::active().clear();
      const double k = step == 1 ? 1.0 : 0.02;  // smoothed over about 50 steps
      loss_avg += k * (l - loss_avg);
      acc_avg += k * (acc - acc_avg);
      csv.row(step, l, acc);
      xs.push_back(step);
      loss_curve.push_back(loss_avg);
      if (step % 100 == 0 || step == steps) {
        index_t correct = 0;
        eval_x.push_back(step);
        eval_loss.push_back(held_out_pass(correct));
      }
      progress.update(step, {.loss = loss_avg, .accuracy = acc_avg});
    }
    progress.finish();
    csv.close();

    ex::LineChart chart{.title = std::string("HyperMixer (") + (variant == hm::Variant::paper ? "paper" : "seed") +
                                 " variant), first-token-repeats task",
                        .x_label = "step",
                        .y_label = "cross-entropy",
                        .log_y = true};
    chart.series.push_back({.name = "training (smoothed)", .x = xs, .y = loss_curve});
    chart.series.push_back({.name = "held-out", .x = eval_x, .y = eval_loss, .markers = true});
    chart.save(std::filesystem::path(out) / "loss.svg");

    index_t correct = 0;
    const double test_loss = held_out_pass(correct);
    std::cout << "trained " << steps << " steps in " << ex::format_duration(progress.elapsed()) << "; held-out loss "
              << std::setprecision(4) << test_loss << '\n'
              << "wrote " << (std::filesystem::path(out) / "loss.svg").string() << " and losses.csv\n"
              << "held-out accuracy: " << std::setprecision(2) << 100.0 * static_cast<double>(correct) / test.size
              << "% (" << correct << " of " << test.size << ")\n";
  } catch (const std::exception& e) {
    std::cerr << "hypermixer: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
