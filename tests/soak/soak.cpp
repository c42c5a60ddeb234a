// SPDX-License-Identifier: MIT
//
// Long training loops in flat memory: after a warm-up, the tape's arena and
// the process's resident set size must not grow, however many steps run.
// Label `soak`. Under AddressSanitizer (whose run is several times slower and
// whose LeakSanitizer already reports any lost allocation) the loops are
// shorter.

#include <doctest/doctest.h>

#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>

#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/scalar.hpp"
#include "tapegrad/tensor.hpp"

using tapegrad::Value;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr long scalar_steps = 100'000;
constexpr long tensor_steps = 500;
#else
constexpr long scalar_steps = 1'000'000;
constexpr long tensor_steps = 10'000;
#endif

/// Resident set size of this process in bytes (second field of /proc/self/statm, in pages).
std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

// What the resident set may grow by after warm-up without a leak: the C
// library's allocator may map a few more pages for its own bookkeeping, and
// a test framework message may allocate. 512 KiB is below what a leak of 64
// bytes per tensor step (10 000 steps) or one byte per scalar step (a million
// steps) would add, so such a leak still fails.
constexpr std::size_t rss_slack = 512 * 1024;

}  // namespace

TEST_CASE("A million scalar training steps run in flat memory") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value w = 0.5, b = -0.25;
  auto step = [&](long i) {
    // A small regression step: loss = (w x + b - y)^2 + 0.01 sin(w), then plain SGD.
    const double x = static_cast<double>(i % 7) / 7.0, y = 2.0 * x - 0.5;
    Value loss = pow(w * x + b - y, 2.0) + 0.01 * sin(w);
    w.zero_grad();
    b.zero_grad();
    loss.backward();
    {
      tapegrad::NoGradGuard no_grad;
      w -= 0.05 * w.grad();
      b -= 0.05 * b.grad();
    }
    tape.clear();
  };
  long i = 0;
  for (; i < 10'000; ++i) step(i);  // warm-up: the tape reaches its working size
  const std::size_t nodes_warm = tape.bytes();
  const std::size_t arena_warm = tape.arena().reserved_bytes();
  const std::size_t rss_warm = resident_bytes();
  for (; i < scalar_steps; ++i) step(i);
  CHECK(tape.bytes() == nodes_warm);
  CHECK(tape.arena().reserved_bytes() == arena_warm);
  CHECK(resident_bytes() <= rss_warm + rss_slack);
  // And it learned: w -> 2, b -> -0.5 (the sin term shifts w by about 0.01 cos(w) / (2 E[x^2])).
  CHECK(w.data() == doctest::Approx(2.0).epsilon(0.05));
  CHECK(b.data() == doctest::Approx(-0.5).epsilon(0.1));
}

TEST_CASE("Ten thousand transformer training steps with Adam run in flat memory") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  tapegrad::nn::TransformerBlock block(16, 2, {.d_ff = 32, .seed = 5});
  tapegrad::optim::Adam opt(block.parameters(), {.lr = 1e-3});
  tapegrad::Generator gen(6);
  const tapegrad::Tensor x = tapegrad::normal({2, 6, 16}, gen);
  const tapegrad::Tensor target = tapegrad::normal({2, 6, 16}, gen);
  float first_loss = 0, last_loss = 0;
  auto step = [&] {
    opt.zero_grad();
    tapegrad::Tensor loss = mse_loss(block(x), target);
    loss.backward();
    opt.step();
    last_loss = loss.item();
    tape.clear();
  };
  step();
  first_loss = last_loss;
  long i = 1;
  for (; i < 100; ++i) step();  // warm-up
  const std::size_t arena_warm = tape.arena().reserved_bytes();
  const std::size_t rss_warm = resident_bytes();
  for (; i < tensor_steps; ++i) step();
  CHECK(tape.arena().reserved_bytes() == arena_warm);
  CHECK(tape.size() == 0);
  CHECK(resident_bytes() <= rss_warm + rss_slack);
  CHECK(last_loss < first_loss);  // the steps were real training steps
}
