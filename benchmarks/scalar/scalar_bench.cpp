// SPDX-License-Identifier: MIT
//
// The scalar tape against plain `double`, measured in the same run.
//
// Each of the four functions below is written once, as a template over the
// number type. Instantiated with `double` it is the primal: the plain
// computation, nothing recorded. Instantiated with `tapegrad::Value` it is the
// gradient: the same code records every operation on the tape, then
// `backward()` sweeps it and `clear()` frees it for the next iteration.
//
// After Google Benchmark's own table the program prints a summary: for each
// function the gradient/primal time ratio (best of the repetitions), the bytes
// of tape per recorded operation, and the heap allocations made by one warm
// gradient evaluation (operator new is replaced below to count them).
//
//   bench_scalar_scalar_bench                          # the defaults: 5 repetitions
//   bench_scalar_scalar_bench --benchmark_repetitions=9
//   bench_scalar_scalar_bench --benchmark_filter=chain

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <tapegrad/scalar.hpp>

// ---------------------------------------------------------------------------
// Counting heap allocations: every operator new of this program goes through
// here. The count is read around one warm gradient evaluation, outside the
// timed loops.

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

// Not inlined: GCC would otherwise see free() meet a pointer from operator new
// at the call site and warn about a mismatch that is not there.
[[gnu::noinline]] void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size) { return ::operator new(size); }
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return ::operator new(size, tag);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using tapegrad::Value;

// ---------------------------------------------------------------------------
// The four functions, each written once for any number type.

/// The forward value of a number, whatever its type: what the stable
/// logsumexp needs to pick its shift without recording anything.
double data_of(double x) { return x; }
double data_of(const Value& x) { return x.data(); }

/// sum_i a_i b_i over two equally long vectors.
template <class Num>
Num dot(const std::vector<Num>& a, const std::vector<Num>& b) {
  Num s = a[0] * b[0];
  for (std::size_t i = 1; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// log sum_i exp(x_i), in the stable form m + log sum_i exp(x_i - m) with
/// m = max_i x_i. The shift m is taken as a constant: its gradient through the
/// two places it appears cancels exactly, so recording it would add work and
/// change nothing.
template <class Num>
Num logsumexp(const std::vector<Num>& x) {
  using std::exp;
  using std::log;
  double m = data_of(x[0]);
  for (const Num& xi : x) m = std::max(m, data_of(xi));
  Num s = exp(x[0] - m);
  for (std::size_t i = 1; i < x.size(); ++i) s += exp(x[i] - m);
  return log(s) + m;
}

/// `steps` times x <- sin(x) * x + 0.5 * x: a long chain of dependent steps.
template <class Num>
Num chain(const Num& x0, int steps) {
  using std::sin;
  Num x = x0;
  for (int k = 0; k < steps; ++k) x = sin(x) * x + 0.5 * x;
  return x;
}

/// A scalar multilayer perceptron 16 -> 32 (tanh) -> 1.
template <class Num>
struct Mlp {
  static constexpr int in = 16;
  static constexpr int hidden = 32;
  std::vector<Num> w1;  // hidden x in, row-major
  std::vector<Num> b1;  // hidden
  std::vector<Num> w2;  // hidden
  std::vector<Num> b2;  // 1
};

/// (mlp(x) - target)^2.
template <class Num>
Num mlp_loss(const Mlp<Num>& p, const std::vector<Num>& x, double target) {
  using std::tanh;
  Num out = p.b2[0];
  for (int j = 0; j < Mlp<Num>::hidden; ++j) {
    Num h = p.b1[j];
    for (int i = 0; i < Mlp<Num>::in; ++i) h += p.w1[j * Mlp<Num>::in + i] * x[i];
    out += p.w2[j] * tanh(h);
  }
  Num err = out - target;
  return err * err;
}

// ---------------------------------------------------------------------------
// Inputs: drawn once from a fixed seed, as plain numbers; each benchmark turns
// them into its own number type outside the timed loop.

constexpr int kVectorSize = 1000;
constexpr int kChainSteps = 10000;
constexpr double kChainStart = 0.7;
constexpr double kMlpTarget = 0.25;

struct Inputs {
  std::vector<double> a, b;    // dot
  std::vector<double> logits;  // logsumexp
  std::vector<double> w1, b1, w2, b2, x;  // MLP
};

const Inputs& inputs() {
  static const Inputs in = [] {
    std::mt19937_64 gen(2024);
    std::normal_distribution<double> normal(0.0, 1.0);
    auto draw = [&](int n, double scale) {
      std::vector<double> v(static_cast<std::size_t>(n));
      for (double& e : v) e = scale * normal(gen);
      return v;
    };
    Inputs r;
    r.a = draw(kVectorSize, 1.0);
    r.b = draw(kVectorSize, 1.0);
    r.logits = draw(kVectorSize, 3.0);
    r.w1 = draw(Mlp<double>::hidden * Mlp<double>::in, 0.25);
    r.b1 = draw(Mlp<double>::hidden, 0.1);
    r.w2 = draw(Mlp<double>::hidden, 0.18);
    r.b2 = draw(1, 0.1);
    r.x = draw(Mlp<double>::in, 1.0);
    return r;
  }();
  return in;
}

template <class Num>
std::vector<Num> as(const std::vector<double>& v) {
  return std::vector<Num>(v.begin(), v.end());
}

/// Everything one benchmark case needs, in number type Num. For Value every
/// element is a leaf, made once, before timing.
template <class Num>
struct Problem {
  std::vector<Num> a = as<Num>(inputs().a);
  std::vector<Num> b = as<Num>(inputs().b);
  std::vector<Num> logits = as<Num>(inputs().logits);
  Num chain_start = kChainStart;
  Mlp<Num> mlp{as<Num>(inputs().w1), as<Num>(inputs().b1), as<Num>(inputs().w2), as<Num>(inputs().b2)};
  std::vector<Num> x = as<Num>(inputs().x);
};

/// The four cases, by name; `run` evaluates one case on a Problem.
enum class Case { dot, logsumexp, chain, mlp };
constexpr Case kCases[] = {Case::dot, Case::logsumexp, Case::chain, Case::mlp};

const char* name_of(Case c) {
  switch (c) {
    case Case::dot: return "dot";
    case Case::logsumexp: return "logsumexp";
    case Case::chain: return "chain";
    case Case::mlp: return "mlp";
  }
  return "?";
}

template <class Num>
Num run(Case c, const Problem<Num>& p) {
  switch (c) {
    case Case::dot: return dot(p.a, p.b);
    case Case::logsumexp: return logsumexp(p.logits);
    case Case::chain: return chain(p.chain_start, kChainSteps);
    case Case::mlp: return mlp_loss(p.mlp, p.x, kMlpTarget);
  }
  return p.chain_start;
}

/// The targets for gradient time / primal time.
double target_ratio(Case c) {
  switch (c) {
    case Case::dot: return 6.0;
    case Case::logsumexp: return 2.5;
    case Case::chain: return 2.0;
    case Case::mlp: return 4.0;
  }
  return 0.0;
}

constexpr double kTargetBytesPerOp = 16.0;

// ---------------------------------------------------------------------------
// The timed loops.

/// The primal: the function on plain doubles.
void primal(benchmark::State& state, Case c) {
  Problem<double> p;
  for (auto _ : state) {
    double r = run(c, p);
    benchmark::DoNotOptimize(r);
    benchmark::ClobberMemory();  // the inputs may have changed: recompute
  }
}

/// The gradient: record the function, sweep it backward, clear the tape.
void gradient(benchmark::State& state, Case c) {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Problem<Value> p;  // leaves, made once
  for (auto _ : state) {
    {
      Value r = run(c, p);
      r.backward();
      benchmark::DoNotOptimize(r.data());
    }
    tape.clear();
  }
}

// ---------------------------------------------------------------------------
// A reporter that prints Google Benchmark's usual table and keeps, for each
// benchmark, the best (smallest) CPU time per iteration over the repetitions.

class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  CollectingReporter() : ConsoleReporter(OO_Tabular) {}  // no colour codes in logs

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      const std::string name = r.run_name.function_name;
      const double t = r.GetAdjustedCPUTime();  // in r.time_unit
      const double ns = t * (r.time_unit == benchmark::kNanosecond    ? 1.0
                             : r.time_unit == benchmark::kMicrosecond ? 1e3
                             : r.time_unit == benchmark::kMillisecond ? 1e6
                                                                      : 1e9);
      auto [it, fresh] = best_ns.try_emplace(name, ns);
      if (!fresh) it->second = std::min(it->second, ns);
      ++count[name];
    }
    ConsoleReporter::ReportRuns(runs);
  }

  std::map<std::string, double> best_ns;
  std::map<std::string, int> count;
};

// ---------------------------------------------------------------------------
// Checks made once, outside the timed loops.

/// What one warm gradient evaluation costs in tape and in heap allocations.
struct TapeFacts {
  std::size_t ops = 0;           // nodes recorded
  std::size_t bytes_per_op = 0;  // sizeof one scalar node
  double capacity_bytes_per_op = 0;  // the store's capacity over the ops
  long allocations = 0;          // operator new calls in one warm evaluation
};

TapeFacts measure_tape(Case c) {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Problem<Value> p;
  auto once = [&] {
    Value r = run(c, p);
    r.backward();
    return r.data();
  };
  // Warm up: the tape's arrays grow to their steady size and keep it.
  for (int i = 0; i < 3; ++i) {
    once();
    tape.clear();
  }
  TapeFacts f;
  const long before = g_allocations.load(std::memory_order_relaxed);
  {
    Value r = run(c, p);
    f.ops = tape.size();
    f.capacity_bytes_per_op = static_cast<double>(tape.bytes()) / static_cast<double>(f.ops);
    r.backward();
  }
  tape.clear();
  f.allocations = g_allocations.load(std::memory_order_relaxed) - before;
  f.bytes_per_op = sizeof(tapegrad::detail::scalar_node<double>);
  return f;
}

/// The gradient of every case against central differences on the double
/// instantiation of the same template: the benchmark times correct code.
/// Returns the worst relative error over a few coordinates of each case.
double check_gradients() {
  double worst = 0.0;
  auto compare = [&](double tape_grad, auto&& f_at) {
    const double h = 1e-6;
    const double fd = (f_at(h) - f_at(-h)) / (2 * h);
    const double err = std::abs(tape_grad - fd) / std::max(1.0, std::abs(fd));
    worst = std::max(worst, err);
  };
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Problem<Value> p;
  Problem<double> q;
  for (Case c : kCases) {
    Value r = run(c, p);
    r.backward();
    switch (c) {
      case Case::dot:
        for (std::size_t i : {0u, 17u, 999u})
          compare(p.a[i].grad(), [&](double h) {
            Problem<double> s = q;
            s.a[i] += h;
            return run(c, s);
          });
        break;
      case Case::logsumexp:
        for (std::size_t i : {0u, 500u, 999u})
          compare(p.logits[i].grad(), [&](double h) {
            Problem<double> s = q;
            s.logits[i] += h;
            return run(c, s);
          });
        break;
      case Case::chain:
        compare(p.chain_start.grad(), [&](double h) {
          Problem<double> s = q;
          s.chain_start += h;
          return run(c, s);
        });
        break;
      case Case::mlp:
        for (std::size_t i : {0u, 100u, 511u})
          compare(p.mlp.w1[i].grad(), [&](double h) {
            Problem<double> s = q;
            s.mlp.w1[i] += h;
            return run(c, s);
          });
        compare(p.mlp.b2[0].grad(), [&](double h) {
          Problem<double> s = q;
          s.mlp.b2[0] += h;
          return run(c, s);
        });
        break;
    }
    tape.clear();
  }
  return worst;
}

const char* verdict(bool met) { return met ? "met" : "NOT met"; }

}  // namespace

int main(int argc, char** argv) {
  // Defaults for a noisy shared machine: several repetitions, interleaved, so
  // that the best of them is a fair figure. Flags given on the command line win.
  std::vector<char*> args(argv, argv + argc);
  bool has_reps = false, has_interleave = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    has_reps = has_reps || a.rfind("--benchmark_repetitions", 0) == 0;
    has_interleave = has_interleave || a.rfind("--benchmark_enable_random_interleaving", 0) == 0;
  }
  std::string reps = "--benchmark_repetitions=5";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  if (!has_reps) args.push_back(reps.data());
  if (!has_interleave) args.push_back(interleave.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  const double grad_error = check_gradients();
  std::printf("gradient check against central differences: worst relative error %.2e\n", grad_error);
  if (!(grad_error < 1e-5)) {
    std::printf("the tape's gradients disagree with finite differences: not timing wrong code\n");
    return 1;
  }

  for (Case c : kCases) {
    benchmark::RegisterBenchmark((std::string(name_of(c)) + "/primal").c_str(), primal, c);
    benchmark::RegisterBenchmark((std::string(name_of(c)) + "/gradient").c_str(), gradient, c);
  }
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary (best CPU time per iteration over the repetitions; ratio = gradient / primal)\n");
  std::printf("%-10s %12s %14s %8s %8s  %-8s %10s %8s %8s\n", "function", "primal ns", "gradient ns", "ratio",
              "target", "", "ops", "B/op", "allocs");
  bool all_met = true;
  for (Case c : kCases) {
    const std::string name = name_of(c);
    const auto p = reporter.best_ns.find(name + "/primal");
    const auto g = reporter.best_ns.find(name + "/gradient");
    const TapeFacts facts = measure_tape(c);
    const bool bytes_met = static_cast<double>(facts.bytes_per_op) <= kTargetBytesPerOp;
    const bool allocs_met = facts.allocations == 0;
    all_met = all_met && bytes_met && allocs_met;
    if (p == reporter.best_ns.end() || g == reporter.best_ns.end()) {
      std::printf("%-10s %12s %14s %8s %8.1f  %-8s %10zu %8zu %8ld\n", name.c_str(), "-", "-", "-",
                  target_ratio(c), "(filtered)", facts.ops, facts.bytes_per_op, facts.allocations);
      continue;
    }
    const double ratio = g->second / p->second;
    const bool met = ratio <= target_ratio(c);
    all_met = all_met && met;
    std::printf("%-10s %12.0f %14.0f %8.2f %8.1f  %-8s %10zu %8zu %8ld\n", name.c_str(), p->second, g->second,
                ratio, target_ratio(c), verdict(met), facts.ops, facts.bytes_per_op, facts.allocations);
  }
  const TapeFacts mlp = measure_tape(Case::mlp);
  std::printf("\ntape bytes per recorded op: %zu (sizeof one scalar node; %.1f counting the store's capacity "
              "for the MLP); target <= %.0f: %s\n",
              mlp.bytes_per_op, mlp.capacity_bytes_per_op, kTargetBytesPerOp,
              verdict(static_cast<double>(mlp.bytes_per_op) <= kTargetBytesPerOp));
  long allocs = 0;
  for (Case c : kCases) allocs += measure_tape(c).allocations;
  std::printf("heap allocations in one warm gradient evaluation (record, backward, clear), all four "
              "functions together: %ld; target 0: %s\n",
              allocs, verdict(allocs == 0));
  std::printf("all targets: %s\n", all_met ? "met" : "not all met");
  benchmark::Shutdown();
  return 0;
}
