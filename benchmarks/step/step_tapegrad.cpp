// SPDX-License-Identifier: MIT
//
// The transformer training step on tapegrad: one side of the libtorch
// comparison (step_torch.cpp is the other; benchmarks/compare.sh runs both).
//
//   step_tapegrad --config tiny|big --threads N            median ms per step
//   step_tapegrad --mode converge --seed S --threads N     seconds to 99.5% held-out
//   step_tapegrad --mode gemm --config big --threads N     Eigen's float GEMM alone at the step's shapes
//
// A step is zero_grad, forward, mean cross-entropy, backward, the tape's clear
// and an Adam step. Threads are Eigen's (OpenMP builds only).

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <tapegrad/optim.hpp>

#include "twin.hpp"

// Heap allocations are counted through operator new while `counting` is set:
// the report gives the allocations per timed (steady) step.
namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
}  // namespace

[[gnu::noinline]] void* operator new(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) { return ::operator new(n); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace tapegrad_bench;

namespace {

/// Counts the right answers of `model` on the held-out set.
int correct(Classifier& model, const Batch& held_out) {
  tapegrad::NoGradGuard no_grad;
  model.eval();
  const Tensor logits = model.forward(held_out.ids, static_cast<index_t>(held_out.targets.size()));
  const auto m = logits.matrix();
  int right = 0;
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    Eigen::Index best = 0;
    m.row(r).maxCoeff(&best);
    right += best == held_out.targets[static_cast<std::size_t>(r)];
  }
  model.train();
  return right;
}

/// The rate of Eigen's float matrix product alone, built as this program is,
/// at the products of a step's linear layers ([tokens x d_model] times
/// [d_model x d_ff], and back): the ceiling a GEMM-bound step approaches.
void gemm_rate(const Config& c) {
  const index_t tokens = c.batch * c.seq;
  const index_t shapes[][3] = {
      {tokens, c.d_model, c.d_ff}, {tokens, c.d_ff, c.d_model}, {tokens, c.d_model, c.d_model}};
  for (const auto& s : shapes) {
    const Eigen::MatrixXf a = Eigen::MatrixXf::Random(s[0], s[1]), b = Eigen::MatrixXf::Random(s[1], s[2]);
    Eigen::MatrixXf out(s[0], s[2]);
    double best = 1e30;
    for (int round = 0; round < 9; ++round) {
      constexpr int reps = 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) out.noalias() = a * b;
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
    std::printf("side=eigen mode=gemm config=%s shape=[%ld x %ld]x[%ld x %ld] threads=%d gflops=%.1f check=%g\n",
                c.name, static_cast<long>(s[0]), static_cast<long>(s[1]), static_cast<long>(s[1]),
                static_cast<long>(s[2]), Eigen::nbThreads(),
                2.0 * double(s[0]) * double(s[1]) * double(s[2]) / best / 1e9, static_cast<double>(out(0, 0)));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  Eigen::setNbThreads(a.threads);
  if (a.mode == "gemm") {
    gemm_rate(*a.config);
    return 0;
  }
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Classifier model(*a.config, a.mode == "converge" ? a.seed : 1);
  tapegrad::optim::Adam opt(model.parameters(), {.lr = 1e-3});

  auto step = [&](const Batch& b, double lr) {
    opt.zero_grad();
    float value;
    {
      Tensor loss = tapegrad::cross_entropy(model.forward(b.ids, static_cast<index_t>(b.targets.size())),
                                            std::span<const index_t>(b.targets));
      loss.backward();
      value = loss.item();
    }
    tape.clear();
    if (lr > 0) {
      tapegrad::optim::clip_grad_norm(opt.parameters(), Recipe{}.clip);
      opt.set_lr(lr);
    }
    opt.step();
    return value;
  };

  if (a.mode == "converge") {
    const tx::Split split = tx::split_dataset(0);
    const Batch held_out = held_out_batch(split);
    converge(
        "tapegrad", a, [&](const Batch& b, double lr) { step(b, lr); }, [&] { return correct(model, held_out); },
        split);
    return 0;
  }
  std::size_t params = 0;
  for (const Tensor& p : opt.parameters()) params += static_cast<std::size_t>(p.numel());
  const Batch b = random_batch(*a.config);
  int calls = 0;
  time_steps("tapegrad", a, params, [&] {
    // Counting starts with the first timed step (after the warm-up steps)
    // and ends with the last, before the report's own allocations.
    if (++calls == a.config->warmup + 1) counting = true;
    const float value = step(b, 0);
    if (calls == a.config->warmup + (a.steps > 0 ? a.steps : a.config->steps)) counting = false;
    return value;
  });
  counting = false;
  std::printf("side=tapegrad config=%s allocations_per_step=%.2f\n", a.config->name,
              static_cast<double>(allocations.load()) / (a.steps > 0 ? a.steps : a.config->steps));
  return 0;
}
