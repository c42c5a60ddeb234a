// SPDX-License-Identifier: MIT
// The cost of a tensor Hessian-vector product against one gradient, for a
// transformer block (d_model 64, 4 heads, d_ff 256) on a [8, 16, 64] batch.
// Both run on a warm tape: recorded after a mark, rewound after each call.

#include <benchmark/benchmark.h>

#include <vector>

#include "tapegrad/autodiff/tensor_higher_order.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/tensor.hpp"

using namespace tapegrad;

namespace {

struct Setup {
  nn::TransformerBlock block{64, 4, {.d_ff = 256, .activation = Activation::gelu, .causal = true, .seed = 1}};
  Tensor x = normal<float>({8, 16, 64});
  std::vector<Tensor> params = block.parameters();
  std::vector<Tensor> v;
  Setup() {
    for (const Tensor& p : params) v.push_back(normal<float>(p.shape()));
  }
  Tensor loss() {
    const Tensor y = block(x);
    return mean(y * y);
  }
};

void BM_gradient(benchmark::State& state) {
  Setup s;
  Tape& tape = Tape::active();
  for (auto _ : state) {
    const Tape::Mark mark = tape.mark();
    {
      const Tensor l = s.loss();
      l.backward();
      benchmark::DoNotOptimize(s.params[0].grad().data());
    }
    tape.rewind(mark);
  }
}
BENCHMARK(BM_gradient)->Unit(benchmark::kMicrosecond);

void BM_hvp(benchmark::State& state) {
  Setup s;
  for (auto _ : state) {
    auto r = hvp([&] { return s.loss(); }, s.params, s.v);
    benchmark::DoNotOptimize(r.hvp[0].data().data());
  }
}
BENCHMARK(BM_hvp)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
