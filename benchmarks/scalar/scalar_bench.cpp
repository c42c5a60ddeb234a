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
// A third variant, replay, records each function once with tapegrad::record
// and times Recording::value_and_grad: the same gradient without recording.
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

}  // namespace

#include "kernels.hpp"

namespace {

using namespace scalar_kernels;

/// The targets for gradient time / primal time.
double target_ratio(Case c) {
  switch (c) {
    case Case::dot:
      return 6.0;
    case Case::logsumexp:
      return 2.5;
    case Case::chain:
      return 1.4;
    case Case::mlp:
      return 4.0;
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

/// The inputs of case `c` as one flat list, and a Problem whose fields for
/// `c` are the given Values: how a case is recorded for replay.
std::vector<double> flat_inputs(Case c) {
  Problem<double> p;
  std::vector<double> x;
  for (const double* v : inputs_of(c, p)) x.push_back(*v);
  return x;
}

Problem<Value> problem_from(Case c, const std::vector<Value>& x) {
  Problem<Value> p;
  const std::vector<Value*> slots = inputs_of(c, p);
  for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = x[i];
  return p;
}

tapegrad::Recording<double> record_case(Case c) {
  return tapegrad::record([c](const std::vector<Value>& x) { return run(c, problem_from(c, x)); }, flat_inputs(c));
}

/// Record once, then replay: value and gradient from the recorded program,
/// for the same inputs each time (the function has no branch on Values).
void replay(benchmark::State& state, Case c) {
  tapegrad::Recording<double> rec = record_case(c);
  const std::vector<double> x = flat_inputs(c);
  std::vector<double> g(x.size());
  for (auto _ : state) {
    double r = rec.value_and_grad(x, g);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(g.data());
    benchmark::ClobberMemory();
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
  std::size_t ops = 0;               // elementary operations recorded
  std::size_t statements = 0;        // statements they were recorded as
  double bytes_per_op = 0;           // statement records, operands and adjoints, over the ops
  double capacity_bytes_per_op = 0;  // the store's capacity over the ops
  long allocations = 0;              // operator new calls in one warm evaluation
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
    r.backward();
    const auto& store = tape.store<tapegrad::detail::scalar_store<double>>();
    f.ops = store.elementary;
    f.statements = tape.size();
    f.bytes_per_op = static_cast<double>(store.used_bytes()) / static_cast<double>(f.ops);
    f.capacity_bytes_per_op = static_cast<double>(tape.bytes()) / static_cast<double>(f.ops);
  }
  tape.clear();
  f.allocations = g_allocations.load(std::memory_order_relaxed) - before;
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
  // A replay's gradient against the tape's, entry by entry.
  for (Case c : kCases) {
    tapegrad::Recording<double> rec = record_case(c);
    const std::vector<double> x = flat_inputs(c);
    const std::vector<double> replayed = rec.grad(x);
    tapegrad::Tape fresh;
    tapegrad::Tape::Scope in_fresh(fresh);
    std::vector<Value> leaves(x.begin(), x.end());
    Value r = run(c, problem_from(c, leaves));
    r.backward();
    for (std::size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, std::abs(replayed[i] - leaves[i].grad()) / std::max(1.0, std::abs(leaves[i].grad())));
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
    benchmark::RegisterBenchmark((std::string(name_of(c)) + "/replay").c_str(), replay, c);
  }
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary (best CPU time per iteration over the repetitions; ratio = gradient / primal)\n");
  std::printf("%-10s %12s %14s %8s %8s  %-8s %8s %8s %8s %8s %12s %8s\n", "function", "primal ns", "gradient ns",
              "ratio", "target", "", "ops", "stmts", "B/op", "allocs", "replay ns", "ratio");
  bool all_met = true;
  double max_bytes = 0;
  std::vector<std::string> summary;
  for (Case c : kCases) {
    const std::string name = name_of(c);
    const auto p = reporter.best_ns.find(name + "/primal");
    const auto g = reporter.best_ns.find(name + "/gradient");
    const TapeFacts facts = measure_tape(c);
    const bool bytes_met = facts.bytes_per_op <= kTargetBytesPerOp;
    const bool allocs_met = facts.allocations == 0;
    all_met = all_met && bytes_met && allocs_met;
    max_bytes = std::max(max_bytes, facts.bytes_per_op);
    if (p == reporter.best_ns.end() || g == reporter.best_ns.end()) {
      std::printf("%-10s %12s %14s %8s %8.1f  %-8s %8zu %8zu %8.1f %8ld\n", name.c_str(), "-", "-", "-",
                  target_ratio(c), "(filtered)", facts.ops, facts.statements, facts.bytes_per_op, facts.allocations);
      continue;
    }
    const double ratio = g->second / p->second;
    const bool met = ratio <= target_ratio(c);
    all_met = all_met && met;
    const auto rp = reporter.best_ns.find(name + "/replay");
    const double replay_ns = rp == reporter.best_ns.end() ? 0.0 : rp->second;
    std::printf("%-10s %12.0f %14.0f %8.2f %8.1f  %-8s %8zu %8zu %8.1f %8ld %12.0f %8.2f\n", name.c_str(), p->second,
                g->second, ratio, target_ratio(c), verdict(met), facts.ops, facts.statements, facts.bytes_per_op,
                facts.allocations, replay_ns, replay_ns / p->second);
    char line[96];
    std::snprintf(line, sizeof line, "scalar grad/primal, %s: %.2fx", name.c_str(), ratio);
    summary.push_back(line);
    if (replay_ns > 0) {
      std::snprintf(line, sizeof line, "scalar replay grad/primal, %s: %.2fx", name.c_str(), replay_ns / p->second);
      summary.push_back(line);
    }
  }
  const TapeFacts mlp = measure_tape(Case::mlp);
  std::printf(
      "\ntape bytes per elementary op: at most %.1f over the four functions (statement records, operands and "
      "adjoints in use; %.1f counting the store's capacity for the MLP); target <= %.0f: %s\n",
      max_bytes, mlp.capacity_bytes_per_op, kTargetBytesPerOp, verdict(max_bytes <= kTargetBytesPerOp));
  long allocs = 0;
  for (Case c : kCases) allocs += measure_tape(c).allocations;
  std::printf(
      "heap allocations in one warm gradient evaluation (record, backward, clear), all four "
      "functions together: %ld; target 0: %s\n",
      allocs, verdict(allocs == 0));
  std::printf("all targets: %s\n", all_met ? "met" : "not all met");
  std::printf("\n");
  for (const std::string& line : summary) std::printf("%s\n", line.c_str());
  std::printf("scalar tape bytes per op: %.1f\n", max_bytes);
  benchmark::Shutdown();
  return 0;
}
