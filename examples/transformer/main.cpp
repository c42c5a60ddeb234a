// SPDX-License-Identifier: MIT
//
// The operation transformer, trained end to end: it reads expressions such
// as Max(1,6,2) and answers with a digit (Max, Min, First, Last or Median of
// three digits). 4,000 of the 5,000 possible inputs train it, 500 guide the
// choices made while training (validation), 500 are looked at once, at the end.
//
//   transformer [--epochs N] [--lr X] [--optimizer adam] [--schedule warmup-cosine]
//               [--out transformer-out] [--predict "Max(1,6,2)"] ...
//
// The last line printed is `held-out accuracy: XX.XX% (N of M)`. A bad flag
// or a failure (a checkpoint that does not fit, a folder it cannot write)
// prints one line "error: ..." on stderr and exits with status 2 (the command
// line) or 1 (anything else).

#include <CLI/CLI.hpp>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <tapegrad/io.hpp>
#include <tapegrad/optim.hpp>

#include "../common/cli.hpp"
#include "../common/csv.hpp"
#include "../common/progress.hpp"
#include "../common/svg.hpp"
#include "data.hpp"
#include "distributed.hpp"
#include "model.hpp"
#include "report.hpp"

namespace ex = tapegrad_examples;
namespace tx = tapegrad_examples::transformer;
namespace optim = tapegrad::optim;
using tapegrad::Tensor;

/// Everything a user can change from the command line.
struct Flags {
  int epochs = 6;
  int batch = 32;
  double lr = 0;  // default_lr(optimizer) unless --lr is given
  std::string optimizer = "adam";
  std::string schedule = "warmup-cosine";
  double clip = 1.0;
  int accumulate = 1;
  std::uint32_t seed = 1;
  std::uint32_t split_seed = 0;
  int threads = 1;
  std::string out = "transformer-out";
  std::string save;
  std::string load;
  std::string predict;
  bool checkpoint = false;
};

/// The peak learning rate when --lr is not given. Adam and AdamW scale each
/// step by the gradient's running RMS, so their step is about lr whatever the
/// gradient's size; SGD's step is lr times the gradient (here norms of about
/// 0.1 to 1 after clipping) and needs a rate about 25 times larger.
double default_lr(const std::string& optimizer) { return optimizer == "sgd" ? 0.05 : 2e-3; }

std::unique_ptr<optim::basic_optimizer<float>> make_optimizer(const Flags& f, std::vector<Tensor> params) {
  if (f.optimizer == "sgd")
    return std::make_unique<optim::SGD>(std::move(params), optim::SGDOptions{.lr = f.lr, .momentum = 0.9});
  if (f.optimizer == "adamw") return std::make_unique<optim::AdamW>(std::move(params), optim::AdamWOptions{.lr = f.lr});
  return std::make_unique<optim::Adam>(std::move(params), optim::AdamOptions{.lr = f.lr});
}

/// The learning rate of optimizer step t for the chosen schedule, over `total` steps.
optim::Schedule make_schedule(const Flags& f, std::size_t total) {
  total = std::max<std::size_t>(total, 2);
  if (f.schedule == "constant") return optim::ConstantSchedule{.lr = f.lr};
  if (f.schedule == "step")
    return optim::StepDecay{.lr = f.lr, .step_size = std::max<std::size_t>(1, total / 3), .gamma = 0.1};
  if (f.schedule == "exp")
    return optim::ExponentialDecay{.lr = f.lr, .gamma = std::pow(0.01, 1.0 / static_cast<double>(total))};
  if (f.schedule == "cosine") return optim::CosineAnnealing{.lr = f.lr, .total_steps = total};
  return optim::WarmupCosine{.lr = f.lr, .warmup_steps = std::max<std::size_t>(1, total / 20), .total_steps = total};
}

/// Processor time used by this process so far: on a busy machine it says what
/// the run would take on an idle one.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

/// The program; main() turns its exceptions into one line on stderr.
int run(int argc, char** argv) {
  // Under mpirun, or with --distributed: data-parallel training (distributed.hpp).
  if (tx::wants_distributed(argc, argv)) return tx::run_distributed(argc, argv);
  Flags f;
  CLI::App app{"Train the operation transformer on Max/Min/First/Last/Median of three digits"};
  app.add_option("--epochs", f.epochs,
                 "length of the run in passes over the 4,000 training inputs, counted from "
                 "step 0 also when resuming (0: no training)")
      ->capture_default_str();
  app.add_option("--batch", f.batch, "examples per optimizer step (1 to 4,000)")->capture_default_str();
  auto* lr_flag = app.add_option("--lr", f.lr, "peak learning rate (default: 0.002 for adam and adamw, 0.05 for sgd)");
  app.add_option("--optimizer", f.optimizer, "sgd (momentum 0.9), adam or adamw (weight decay 0.01)")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  app.add_option("--schedule", f.schedule, "learning-rate schedule over the run")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "step", "exp", "cosine", "warmup-cosine"}));
  app.add_option("--clip", f.clip, "clip the gradient norm to this (0: no clipping)")->capture_default_str();
  app.add_option("--accumulate", f.accumulate, "split each batch into this many micro-batches, one backward each")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "seed of the initial weights and the batch order")->capture_default_str();
  app.add_option("--split-seed", f.split_seed, "seed of the training/validation/held-out split")->capture_default_str();
  app.add_option("--threads", f.threads,
                 "threads for Eigen's matrix products (takes effect only in a build with "
                 "OpenMP; the program says so otherwise)")
      ->capture_default_str();
  app.add_option("--out", f.out, "folder for metrics, pictures and the checkpoint")->capture_default_str();
  app.add_option("--save", f.save,
                 "checkpoint path (default: <out>/model.ckpt, unless that is the --load file: a run never "
                 "overwrites the checkpoint it loaded unless --save names it)");
  app.add_option("--load", f.load,
                 "start from this checkpoint: resume training where it stopped (same --optimizer), or, "
                 "with --predict, answer without training");
  auto* predict_flag = app.add_option("--predict", f.predict, "an expression to answer, e.g. \"Max(1,6,2)\"");
  app.add_flag("--checkpoint", f.checkpoint, "recompute each block in the backward pass: less memory, more time");
  if (auto status = ex::parse_flags(app, argc, argv)) return *status;

  // Every flag is checked before any work is done.
  if (lr_flag->count() == 0) f.lr = default_lr(f.optimizer);
  ex::require_at_least("--epochs", f.epochs, 0);
  ex::require_at_least("--batch", f.batch, 1);
  ex::require_positive("--lr", f.lr);
  ex::require_at_least("--clip", f.clip, 0.0);
  ex::require_at_least("--accumulate", f.accumulate, 1);
  ex::require_at_least("--threads", f.threads, 1);
  if (f.accumulate > f.batch)
    throw ex::usage_error("--accumulate " + std::to_string(f.accumulate) + " exceeds --batch " +
                          std::to_string(f.batch) + " (a micro-batch needs at least one example)");
  const tx::Split split = tx::split_dataset(f.split_seed);
  if (static_cast<std::size_t>(f.batch) > split.train.size())
    throw ex::usage_error("--batch " + std::to_string(f.batch) + " is larger than the training data (" +
                          std::to_string(split.train.size()) + " examples)");
  std::optional<tx::Example> query;
  if (predict_flag->count() > 0) {
    if (f.predict.find_first_not_of(" \t") == std::string::npos)
      throw ex::usage_error("--predict needs an expression, e.g. --predict \"Max(1,6,2)\"");
    try {
      query = tx::parse(f.predict);
    } catch (const tx::parse_error& e) {
      throw ex::usage_error(std::string("--predict: ") + e.what());
    }
  }

  const auto start = std::chrono::steady_clock::now();
  Eigen::setNbThreads(f.threads);
  if (Eigen::nbThreads() != f.threads)
    std::cerr << "note: --threads " << f.threads << ": Eigen runs " << Eigen::nbThreads()
              << " thread(s); its products use more only in a build with OpenMP (-fopenmp), which this one "
#ifdef _OPENMP
              << "is, but OpenMP gave fewer threads\n";
#else
              << "is not\n";
#endif
  const std::filesystem::path out(f.out);
  ex::make_output_dir(out);
  // A run that loaded a checkpoint never overwrites it unless --save names it.
  std::string ckpt = f.save.empty() ? (out / "model.ckpt").string() : f.save;
  if (f.save.empty() && !f.load.empty() && ex::same_file(f.load, ckpt)) ckpt.clear();
  if (!ckpt.empty()) ex::prepare_parent_dir("--save", ckpt);

  // ---- data and model --------------------------------------------------
  std::cout << "data: " << split.train.size() << " training, " << split.validation.size() << " validation, "
            << split.held_out.size() << " held-out inputs (split seed " << f.split_seed << ")\n";
  tx::OperationTransformer model({.seed = f.seed, .checkpoint = f.checkpoint});
  auto opt = make_optimizer(f, model.parameters());
  bool train = f.epochs > 0 && (f.load.empty() || !query);
  if (train)
    std::cout << model.summary() << tx::parameter_note(model) << "\n";
  else
    std::cout << "model: " << ex::group_thousands(model.parameter_count()) << " parameters\n";
  if (!f.load.empty()) {
    if (train)
      tapegrad::io::load_checkpoint(f.load, model, *opt);  // resume: moments and step count too
    else
      tapegrad::io::load_checkpoint(f.load, model);
    std::cout << "loaded " << f.load << (train ? " (at optimizer step " + std::to_string(opt->step_count()) + ")" : "")
              << "\n";
  }

  // ---- training ----------------------------------------------------------
  // The schedule spans the whole run, --epochs from step 0; a resumed run
  // picks it up at the checkpoint's step instead of warming up again.
  const int steps_per_epoch = static_cast<int>((split.train.size() + f.batch - 1) / f.batch);
  const std::size_t total = static_cast<std::size_t>(f.epochs) * steps_per_epoch;
  const std::size_t first_step = train ? static_cast<std::size_t>(opt->step_count()) : 0;
  if (train && first_step >= total) {
    std::cout << "nothing to train: the checkpoint has taken " << first_step << " steps, a run of " << f.epochs
              << " epoch(s) has " << total << " (raise --epochs to train on)\n";
    train = false;
  }
  if (train) {
    const optim::Schedule schedule = make_schedule(f, total);
    if (first_step > 0)
      std::cout << "resuming at step " << first_step << " of " << total << ", learning rate " << schedule(first_step)
                << "\n";
    std::cout << "training: " << f.epochs << (f.epochs == 1 ? " epoch x " : " epochs x ") << steps_per_epoch
              << " steps of " << f.batch << " examples, " << opt->name() << ", " << f.schedule
              << " schedule peaking at " << f.lr << ", clip " << f.clip << ", " << Eigen::nbThreads() << " thread(s)\n";

    tx::TrainingLog log(out, model, split, steps_per_epoch, total);
    const double cpu_start = cpu_seconds();
    ex::Progress progress(static_cast<std::int64_t>(total - first_step));
    std::mt19937 shuffle(f.seed);
    std::vector<std::size_t> order(split.train.size());
    std::size_t step = 0;
    for (int epoch = 1; epoch <= f.epochs; ++epoch) {
      const auto epoch_start = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      for (std::size_t i = order.size() - 1; i > 0; --i)
        std::swap(order[i], order[tx::uniform_below(shuffle, static_cast<std::uint32_t>(i + 1))]);
      // Resuming: the epochs and batches before the checkpoint's step are
      // skipped, their shuffles drawn all the same, so the batch order is the
      // one an uninterrupted run would see.
      if (step + static_cast<std::size_t>(steps_per_epoch) <= first_step) {
        step += static_cast<std::size_t>(steps_per_epoch);
        continue;
      }
      tx::Score running;
      for (std::size_t begin = 0; begin < order.size(); begin += f.batch) {
        if (step < first_step) {
          ++step;
          continue;
        }
        const std::size_t end = std::min(order.size(), begin + static_cast<std::size_t>(f.batch));
        const double batch_size = static_cast<double>(end - begin);
        opt->zero_grad();
        tx::Score batch;
        // The batch in `accumulate` micro-batches: each adds sum(loss) / batch
        // to the gradients, so together they make the batch mean's gradient.
        const std::size_t micro = (end - begin + f.accumulate - 1) / f.accumulate;
        for (std::size_t m = begin; m < end; m += micro) {
          const tx::Batch b = tx::make_batch(split.train, order, m, std::min(end, m + micro));
          const Tensor logits = model.forward(b.ids, b.size());
          const Tensor loss = tapegrad::cross_entropy(logits, b.targets, {.reduction = tapegrad::Reduction::sum}) *
                              static_cast<float>(1.0 / batch_size);
          loss.backward();
          batch.loss += loss.item();
          const auto predicted = tx::argmax_rows(logits);
          for (std::size_t i = 0; i < predicted.size(); ++i) batch.correct += predicted[i] == b.targets[i];
          batch.total += static_cast<int>(b.size());
          if (m == begin) log.capture_activations(logits, model.final_repr());  // before the clear
          tapegrad::Tape::active().clear();  // the step's intermediates go; parameters and gradients stay
        }
        log.capture_gradients(step + 1);  // before clipping changes them
        const double norm =
            f.clip > 0 ? optim::clip_grad_norm(opt->parameters(), f.clip) : optim::grad_norm(opt->parameters());
        const double rate = schedule(step);
        opt->set_lr(rate);
        opt->step();
        ++step;
        log.step(step, epoch, batch, rate, norm);
        running.loss += batch.loss * batch.total;
        running.correct += batch.correct;
        running.total += batch.total;
        progress.update(
            static_cast<std::int64_t>(step - first_step),
            {.epoch = epoch, .epochs = f.epochs, .loss = log.smoothed_loss(), .accuracy = running.accuracy()});
      }
      running.loss /= std::max(1, running.total);
      progress.print(log.end_epoch(epoch, f.epochs, running, ex::seconds_since(epoch_start)));
    }
    progress.finish();
    const double cpu = cpu_seconds() - cpu_start;
    std::cout << "trained " << step - first_step << " steps in " << ex::format_duration(progress.elapsed()) << " ("
              << std::fixed << std::setprecision(1) << progress.steps_per_second() << " steps/s, "
              << std::setprecision(2) << 1000.0 * progress.elapsed() / std::max<std::size_t>(1, step - first_step)
              << " ms per step; CPU time " << ex::format_duration(cpu) << ")\n\n";
    std::cout << "tape memory at its peak: "
              << (tapegrad::Tape::active().arena().reserved_bytes() + tapegrad::checkpoint_reserved_bytes<float>()) /
                     1024
              << " KiB\n";
    std::cout << log.gradient_table() << "\n";
    log.write_curves();
    if (!ckpt.empty()) tapegrad::io::save_checkpoint(ckpt, model, *opt);
    std::cout << "wrote " << (out / "metrics.csv").string() << ", " << (out / "gradients.csv").string() << ", "
              << (out / "loss.svg").string() << (ckpt.empty() ? "" : ", " + ckpt) << "\n";
    if (ckpt.empty())
      std::cout << "not saved: the checkpoint would replace " << f.load
                << ", which this run loaded; name it with --save "
                << "to replace it, or another path\n";
  }

  // ---- pictures of one input, the prediction ---------------------------
  const tx::Example shown = query ? *query : tx::parse("Max(1,6,2)");
  tx::write_attention_map(model, shown, out / "attention.svg");
  tx::write_graph(model, shown, out / "graph.dot");
  std::cout << "wrote " << (out / "attention.svg").string() << " (" << shown.text() << ") and "
            << (out / "graph.dot").string() << "\n";
  if (query) std::cout << "\n" << tx::prediction_report(model, *query) << "\n";

  // ---- the one number that measures generalisation ---------------------
  const tx::Score held = tx::evaluate(model, split.held_out);
  std::cout << "total time " << ex::format_duration(ex::seconds_since(start)) << " (CPU time "
            << ex::format_duration(cpu_seconds()) << ")\n";
  std::cout << "held-out accuracy: " << std::fixed << std::setprecision(2) << 100.0 * held.accuracy() << "% ("
            << held.correct << " of " << held.total << ")\n";
  return 0;
}

int main(int argc, char** argv) {
  return ex::guarded_main([&] { return run(argc, argv); });
}
