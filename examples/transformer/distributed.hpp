// SPDX-License-Identifier: MIT
#pragma once

// The transformer example, data-parallel under MPI:
//
//   mpirun -np 2 transformer --distributed [--model tiny|big] [--steps N] ...
//
// Every rank builds the same model, rank 0's parameters are broadcast, and
// each global batch is split over the ranks (split_range); DataParallel
// averages the gradients, so the job trains as one process on the whole
// batch would. Before training, rank 0 times a few steps of that one process
// on the whole batch (the other ranks sleep), so the job can print the
// speed-up it measured. Rank 0 alone prints and writes the checkpoint.
//
// `--model big` is the scaling configuration of docs/distributed.md: a causal
// language model (seq 64, d_model 256, 8 heads, 4 blocks, feed-forward 1024,
// vocabulary 256) on random tokens, for timing only.
//
// Built without MPI, `--distributed` says so and exits with code 2.

#include <string_view>

namespace tapegrad_examples::transformer {

/// True when the program should train data-parallel: `--distributed` was
/// given, or (in a build with MPI) an MPI launcher started the process.
bool wants_distributed(int argc, char** argv);

/// The data-parallel run; its return value is the program's exit code.
int run_distributed(int argc, char** argv);

}  // namespace tapegrad_examples::transformer

#ifndef TAPEGRAD_EXAMPLE_MPI

#include <iostream>

namespace tapegrad_examples::transformer {

inline bool wants_distributed(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--distributed") return true;
  return false;
}

inline int run_distributed(int, char**) {
  std::cerr << "error: --distributed needs a build with MPI (Debian: libopenmpi-dev), and this one has none\n";
  return 2;
}

}  // namespace tapegrad_examples::transformer

#else

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include <tapegrad/distributed.hpp>
#include <tapegrad/io.hpp>
#include <tapegrad/optim.hpp>

#include "../common/progress.hpp"
#include "data.hpp"
#include "model.hpp"

namespace tapegrad_examples::transformer {

namespace dist = tapegrad::distributed;

/// The scaling configuration: a causal language model on random tokens.
class ScalingModel : public tapegrad::nn::Module {
 public:
  static constexpr index_t seq = 64, vocab = 256, d_model = 256, heads = 8, blocks = 4, d_ff = 1024;

  explicit ScalingModel(std::uint64_t seed) {
    tapegrad::Generator gen(seed);
    embed_ = register_module("embed", tapegrad::nn::Embedding(vocab, d_model, {.generator = &gen}));
    position_ = std::make_shared<tapegrad::nn::PositionalEncoding>(seq, d_model);
    blocks_ = register_module("blocks", tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock>());
    for (index_t b = 0; b < blocks; ++b)
      blocks_->push_back(tapegrad::nn::TransformerBlock(
          d_model, heads, {.d_ff = d_ff, .causal = true, .keep_attention = false, .generator = &gen}));
    out_ = register_module("out", tapegrad::nn::Linear(d_model, vocab, {.generator = &gen}));
  }

  /// Logits [batch * 64, 256] for `batch` sequences of 64 ids.
  Tensor forward(std::span<const index_t> ids, index_t batch) {
    Tensor x = position_->forward(embed_->forward(ids, {batch, seq}));
    for (auto& block : *blocks_) x = block->forward(x);
    return out_->forward(tapegrad::reshape(x, {batch * seq, d_model}));
  }

 private:
  std::shared_ptr<tapegrad::nn::Embedding> embed_;
  std::shared_ptr<tapegrad::nn::PositionalEncoding> position_;
  std::shared_ptr<tapegrad::nn::ModuleList<tapegrad::nn::TransformerBlock> > blocks_;
  std::shared_ptr<tapegrad::nn::Linear> out_;
};

/// The flags of the data-parallel run.
struct DistributedFlags {
  std::string model = "tiny";
  int epochs = 1;
  int steps = 0;  // 0: all the epochs' steps
  int batch = 0;  // 0: 32 for tiny, 16 for big
  double lr = 2e-3;
  std::uint32_t seed = 1;
  std::uint32_t split_seed = 0;
  int baseline = 0;  // 0: 10 for tiny, 5 for big
  int threads = 1;
  std::string out = "transformer-out";
};

namespace detail {

// Processor time of this process: what a step would take on an idle core.
inline double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One global batch's examples: its part for this rank, as ids and targets.
struct Part {
  std::vector<index_t> ids, targets;
  index_t size = 0;         // sequences in this part
  double loss_scale = 1.0;  // ranks / (global sequences x targets per sequence)
};

// Makes step `s`'s part of the global batch for rank `rank` of `ranks`.
// tiny: the operation task, in the epoch's shared order; big: random tokens,
// the target of each position the next token.
class Batches {
 public:
  Batches(const DistributedFlags& f, const Split& split) : f_(f), split_(split) {}

  std::size_t steps_per_epoch() const {
    return f_.model == "big" ? 1000000 : (split_.train.size() + f_.batch - 1) / f_.batch;
  }

  Part part(std::size_t step, int rank, int ranks) const {
    const std::size_t per_epoch = steps_per_epoch();
    Part p;
    if (f_.model == "big") {
      const auto range = dist::split_range(static_cast<std::size_t>(f_.batch), rank, ranks);
      std::mt19937_64 gen(f_.seed * 1000003ULL + step);  // the global batch, the same on every rank
      std::vector<index_t> all(static_cast<std::size_t>(f_.batch) * (ScalingModel::seq + 1));
      for (auto& t : all) t = static_cast<index_t>(gen() % ScalingModel::vocab);
      for (std::size_t b = range.begin; b < range.end; ++b)
        for (index_t t = 0; t < ScalingModel::seq; ++t) {
          p.ids.push_back(all[b * (ScalingModel::seq + 1) + static_cast<std::size_t>(t)]);
          p.targets.push_back(all[b * (ScalingModel::seq + 1) + static_cast<std::size_t>(t) + 1]);
        }
      p.size = static_cast<index_t>(range.size());
      p.loss_scale = static_cast<double>(ranks) / (static_cast<double>(f_.batch) * ScalingModel::seq);
      return p;
    }
    const std::size_t n = split_.train.size();
    const auto order = dist::epoch_order(n, f_.seed, step / per_epoch);  // shared by all ranks
    const std::size_t begin = (step % per_epoch) * static_cast<std::size_t>(f_.batch);
    const std::size_t end = std::min(n, begin + static_cast<std::size_t>(f_.batch));
    const auto range = dist::split_range(end - begin, rank, ranks);
    const Batch b = make_batch(split_.train, order, begin + range.begin, begin + range.end);
    p.ids = b.ids;
    p.targets = b.targets;
    p.size = b.size();
    p.loss_scale = static_cast<double>(ranks) / static_cast<double>(end - begin);
    return p;
  }

 private:
  const DistributedFlags& f_;
  const Split& split_;
};

// Forward and backward of one part; returns its contribution to the loss.
template <class Model>
double forward_backward(Model& model, const Part& p) {
  if (p.size == 0) return 0;  // more ranks than examples: this rank adds zeros
  const Tensor logits = model.forward(p.ids, p.size);
  const Tensor loss = tapegrad::cross_entropy(logits, p.targets, {.reduction = tapegrad::Reduction::sum}) *
                      static_cast<float>(p.loss_scale);
  loss.backward();
  const double value = loss.item();
  tapegrad::Tape::active().clear();
  return value;
}

// Waits for rank 0 without spinning on a core (MPI_Barrier busy-polls, which
// would slow down rank 0's single-process timing on a small machine).
inline void sleepy_barrier() {
  MPI_Request request;
  dist::check_mpi(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
  int done = 0;
  while (!done) {
    dist::check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

template <class Model>
int train_data_parallel(const DistributedFlags& f, Model& model, const Split& split, Model& baseline_model) {
  const int rank = dist::rank(), ranks = dist::world_size();
  std::ostream& out = dist::root_out();
  const Batches batches(f, split);
  const std::size_t total =
      f.steps > 0 ? static_cast<std::size_t>(f.steps) : static_cast<std::size_t>(f.epochs) * batches.steps_per_epoch();

  // One process on the whole global batch, timed on rank 0 alone.
  std::vector<double> single;
  if (rank == 0) {
    tapegrad::optim::Adam opt(baseline_model.parameters(), {.lr = f.lr});
    for (int s = 0; s < f.baseline + 1; ++s) {
      const auto start = std::chrono::steady_clock::now();
      opt.zero_grad();
      forward_backward(baseline_model, batches.part(static_cast<std::size_t>(s), 0, 1));
      opt.step();
      if (s > 0) single.push_back(seconds_since(start));  // the first step warms the caches up
    }
  }
  sleepy_barrier();

  tapegrad::optim::Adam opt(model.parameters(), {.lr = f.lr});
  dist::DataParallel dp(model, opt);
  // Gradient buffers from the start, so that a rank whose part of a batch is
  // empty (a last batch smaller than the number of ranks) sends zeros.
  for (auto p : model.parameters()) p.grad_mut();
  out << "data-parallel: " << ranks << (ranks == 1 ? " rank, " : " ranks, ") << f.batch << " examples per step ("
      << batches.part(0, ranks - 1, ranks).size << " to " << batches.part(0, 0, ranks).size << " per rank), "
      << group_thousands(model.parameter_count()) << " parameters, " << group_thousands(dp.gradient_bytes())
      << " gradient bytes in " << dp.bucket_count() << " all-reduce call(s) per step\n";

  std::vector<double> step_times, reduce_times, compute_times, cpu_times;
  double running = 0;
  for (std::size_t s = 0; s < total; ++s) {
    const auto start = std::chrono::steady_clock::now();
    const Part part = batches.part(s, rank, ranks);
    dp.zero_grad();
    const auto compute_start = std::chrono::steady_clock::now();
    const double cpu_start = detail::cpu_seconds();
    double loss = forward_backward(model, part);
    const double compute = seconds_since(compute_start), cpu = detail::cpu_seconds() - cpu_start;
    dp.all_reduce_gradients();
    tapegrad::optim::clip_grad_norm(opt.parameters(), 1.0);  // on the averaged gradients: the same on every rank
    opt.step();
    // The global batch's loss, for printing only.
    MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    loss /= ranks;
    running = s == 0 ? loss : 0.95 * running + 0.05 * loss;
    if (s > 0) {  // the first step warms the caches up
      step_times.push_back(seconds_since(start));
      reduce_times.push_back(dp.last_reduce_seconds());
      compute_times.push_back(compute);
      cpu_times.push_back(cpu);
    }
    if ((s + 1) % 25 == 0 || s + 1 == total)
      out << "step " << s + 1 << "/" << total << "  loss " << std::fixed << std::setprecision(4) << running
          << std::defaultfloat << "\n";
  }
  const double step = detail::median(step_times), reduce = detail::median(reduce_times);
  const double one = detail::median(single);
  out << std::fixed << std::setprecision(2) << "median step " << 1000 * step << " ms (all-reduce " << 1000 * reduce
      << " ms) on " << ranks << (ranks == 1 ? " rank" : " ranks") << "; one process on the whole batch " << 1000 * one
      << " ms; speed-up " << (step > 0 ? one / step : 0.0) << "x (medians of " << step_times.size() << " and "
      << single.size() << " steps)\n"
      << std::defaultfloat;

  // Each rank's own forward and backward: the all-reduce waits for the slowest.
  std::vector<double> computes(static_cast<std::size_t>(ranks));
  double mine = detail::median(compute_times);
  dist::check_mpi(MPI_Gather(&mine, 1, MPI_DOUBLE, computes.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Gather");
  std::vector<double> cpus(static_cast<std::size_t>(ranks));
  double mine_cpu = detail::median(cpu_times);
  dist::check_mpi(MPI_Gather(&mine_cpu, 1, MPI_DOUBLE, cpus.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), "MPI_Gather");
  out << "forward and backward, median per rank:";
  for (std::size_t r = 0; r < computes.size(); ++r)
    out << " " << std::fixed << std::setprecision(2) << 1000 * computes[r] << " ms (CPU " << 1000 * cpus[r] << " ms)";
  out << std::defaultfloat << "\n";
  // The all-reduce inside a step also waits for the slowest rank. Alone,
  // after a barrier, it measures the communication itself.
  std::vector<float> buffer(dp.gradient_bytes() / sizeof(float), 1.0f);
  std::vector<double> alone;
  for (int r = 0; r < 20; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto start = std::chrono::steady_clock::now();
    dist::check_mpi(
        MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(buffer.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
        "MPI_Allreduce");
    alone.push_back(seconds_since(start));
  }
  out << std::fixed << std::setprecision(3) << "all-reduce of " << group_thousands(dp.gradient_bytes())
      << " bytes after a barrier: " << 1000 * detail::median(alone) << " ms (median of 20)\n"
      << std::defaultfloat;

  if (!dp.parameters_identical()) throw dist::distributed_error("the ranks' parameters differ after training");
  const std::filesystem::path dir(f.out);
  if (rank == 0) make_output_dir(dir);
  const std::string ckpt = (dir / (f.model == "big" ? "scaling.ckpt" : "model.ckpt")).string();
  dp.save_checkpoint(ckpt);
  out << "wrote " << ckpt << "\n";
  return 0;
}

}  // namespace detail

inline bool wants_distributed(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string_view(argv[i]) == "--distributed") return true;
  return dist::launched_by_mpi();
}

inline int run_distributed(int argc, char** argv) {
  return dist::run(argc, argv, [&]() -> int {
    DistributedFlags f;
    CLI::App app{"Train the transformer data-parallel over MPI ranks (mpirun -np N transformer --distributed)"};
    bool distributed = true;
    app.add_flag("--distributed", distributed, "train data-parallel (implied under mpirun)");
    app.add_option("--model", f.model, "tiny: the operation transformer; big: the scaling configuration")
        ->capture_default_str()
        ->check(CLI::IsMember({"tiny", "big"}));
    app.add_option("--epochs", f.epochs, "passes over the training inputs (tiny)")->capture_default_str();
    app.add_option("--steps", f.steps, "stop after this many steps (0: all the epochs' steps)")->capture_default_str();
    app.add_option("--batch", f.batch, "examples per step over all ranks (0: 32 tiny, 16 big)")->capture_default_str();
    app.add_option("--lr", f.lr, "Adam's learning rate")->capture_default_str();
    app.add_option("--seed", f.seed, "seed of the weights and the shared batch order")->capture_default_str();
    app.add_option("--split-seed", f.split_seed, "seed of the training/validation/held-out split")
        ->capture_default_str();
    app.add_option("--baseline", f.baseline, "single-process steps rank 0 times first (0: 10 tiny, 5 big)")
        ->capture_default_str();
    app.add_option("--threads", f.threads, "Eigen threads per rank")->capture_default_str();
    app.add_option("--out", f.out, "folder for the checkpoint (rank 0 writes it)")->capture_default_str();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      // Every rank parses the same arguments; rank 0 alone prints.
      return dist::is_root() ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
    }
    if (f.batch <= 0) f.batch = f.model == "big" ? 16 : 32;
    if (f.baseline <= 0) f.baseline = f.model == "big" ? 5 : 10;
    Eigen::setNbThreads(f.threads);
    const Split split = split_dataset(f.split_seed);
    if (f.model == "big") {
      ScalingModel model(f.seed), baseline(f.seed);
      return detail::train_data_parallel(f, model, split, baseline);
    }
    OperationTransformer model({.seed = f.seed}), baseline({.seed = f.seed});
    const int code = detail::train_data_parallel(f, model, split, baseline);
    if (dist::is_root()) {
      const Score held = evaluate(model, split.held_out);
      std::cout << "held-out accuracy: " << std::fixed << std::setprecision(2) << 100.0 * held.accuracy() << "% ("
                << held.correct << " of " << held.total << ")\n";
    }
    return code;
  });
}

}  // namespace tapegrad_examples::transformer

#endif
