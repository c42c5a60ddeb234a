// SPDX-License-Identifier: MIT
//
// What second-order derivatives cost next to one gradient, on a scalar MLP.
//
// The loss is one function template, called with each driver's number type:
// double (the primal), Value (one gradient: value_and_grad), Dual<double> (a
// Jacobian-vector product: jvp) and Dual<Value> (a Hessian-vector product:
// hvp, reverse-over-forward). Each driver records on a fresh tape of its own,
// as a user calling it would.
//
//   bench_scalar_higher_order
//   bench_scalar_higher_order --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include <tapegrad/autodiff/functional.hpp>
#include <tapegrad/autodiff/higher_order.hpp>

namespace {

constexpr std::size_t inputs = 8, hidden = 16, samples = 4;
constexpr std::size_t params = inputs * hidden + hidden + hidden + 1;  // 161

std::vector<double> uniform(std::size_t n, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = d(gen);
  return v;
}

const std::vector<double> data = uniform(samples * inputs, 1);
const std::vector<double> targets = uniform(samples, 2);

/// Squared error of an 8 -> 16 -> 1 tanh network over four samples, as a
/// function of its 161 parameters.
template <class V>
auto mlp_loss(const V& p) {
  using std::tanh;  // for double; Value and the duals find theirs by argument-dependent lookup
  auto loss = p[params - 1] * 0.0;
  for (std::size_t s = 0; s < samples; ++s) {
    auto out = p[params - 1];
    for (std::size_t h = 0; h < hidden; ++h) {
      auto a = p[inputs * hidden + h];
      for (std::size_t i = 0; i < inputs; ++i) a = a + p[h * inputs + i] * data[s * inputs + i];
      out = out + p[inputs * hidden + hidden + h] * tanh(a);
    }
    auto err = out - targets[s];
    loss = loss + err * err;
  }
  return loss;
}

auto loss_fn = [](const auto& p) { return mlp_loss(p); };

const std::vector<double> x = uniform(params, 3);
const std::vector<double> v = uniform(params, 4);

void primal(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(mlp_loss(x));
}
BENCHMARK(primal);

void gradient(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(tapegrad::value_and_grad(loss_fn, x));
}
BENCHMARK(gradient);

void jvp(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(tapegrad::jvp(loss_fn, x, v));
}
BENCHMARK(jvp);

void hvp(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(tapegrad::hvp(loss_fn, x, v));
}
BENCHMARK(hvp);

// The same two sweeps on a warm tape: leaves made once, the tape cleared after
// each evaluation, so its memory is reused. This is the cost inside a loop
// (Newton steps, a curvature probe per training step) without the fresh
// tape each driver call builds.

void gradient_warm_tape(benchmark::State& state) {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  std::vector<tapegrad::Value> leaves(x.begin(), x.end());
  for (auto _ : state) {
    for (auto& l : leaves) l.zero_grad();
    const tapegrad::Value y = mlp_loss(leaves);
    y.backward();
    benchmark::DoNotOptimize(leaves[0].grad());
    tape.clear();
  }
}
BENCHMARK(gradient_warm_tape);

void hvp_warm_tape(benchmark::State& state) {
  using D = tapegrad::Dual<tapegrad::Value>;
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  std::vector<tapegrad::Value> leaves(x.begin(), x.end());
  std::vector<tapegrad::Value> tangents(v.begin(), v.end());
  for (auto _ : state) {
    std::vector<D> xs;
    xs.reserve(params);
    for (std::size_t i = 0; i < params; ++i) xs.emplace_back(leaves[i], tangents[i]);
    for (auto& l : leaves) l.zero_grad();
    const D y = mlp_loss(xs);
    y.value.backward();  // the gradient, as hvp returns it
    for (auto& l : leaves) l.zero_grad();
    y.tangent.backward();  // H v
    benchmark::DoNotOptimize(leaves[0].grad());
    tape.clear();
  }
}
BENCHMARK(hvp_warm_tape);

}  // namespace

BENCHMARK_MAIN();
