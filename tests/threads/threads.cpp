// SPDX-License-Identifier: MIT
//
// tapegrad on several threads at once. Each thread records on its own default
// tape, so independent work on different threads must give exactly what it
// gives one after the other. These tests also run under ThreadSanitizer (the
// tsan preset, label `threads`), which reports any data race between them.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "../fuzz/scalar_program.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/scalar.hpp"
#include "tapegrad/tensor.hpp"

using tapegrad::Value;
namespace nn = tapegrad::nn;

namespace {

/// Trains a small transformer block with Adam on the calling thread's default
/// tape, every weight and input drawn from `seed`; returns every parameter's
/// values in order.
std::vector<float> train_block(std::uint64_t seed, int steps) {
  tapegrad::Tape& tape = tapegrad::Tape::active();
  nn::TransformerBlock block(8, 2, {.d_ff = 16, .seed = seed});
  tapegrad::optim::Adam opt(block.parameters(), {.lr = 1e-2});
  tapegrad::Generator gen(seed + 1000);
  const tapegrad::Tensor x = tapegrad::normal({2, 4, 8}, gen);
  const tapegrad::Tensor target = tapegrad::normal({2, 4, 8}, gen);
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    tapegrad::Tensor loss = mse_loss(block(x), target);
    loss.backward();
    opt.step();
    tape.clear();
  }
  std::vector<float> out;
  for (const auto& p : block.parameters()) {
    const auto v = p.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

}  // namespace

TEST_CASE("Two models trained on two threads at once match the same trainings one after the other") {
  const int steps = 15;
  const std::vector<float> a_seq = train_block(11, steps);
  const std::vector<float> b_seq = train_block(22, steps);
  REQUIRE(a_seq.size() == b_seq.size());
  REQUIRE(a_seq != b_seq);  // different seeds, different models: the comparison below means something

  std::vector<float> a_par, b_par;
  std::thread ta([&] { a_par = train_block(11, steps); });
  std::thread tb([&] { b_par = train_block(22, steps); });
  ta.join();
  tb.join();
  // Bitwise: the same operations in the same order, whatever runs beside them.
  CHECK(a_par == a_seq);
  CHECK(b_par == b_seq);
}

TEST_CASE("Scalar graphs on four threads at once all match finite differences") {
  const auto ops = tapegrad::fuzz::scalar_ops();
  std::vector<tapegrad::fuzz::FuzzFailure> result(4);
  std::vector<std::thread> workers;
  for (std::uint64_t t = 0; t < 4; ++t)
    workers.emplace_back([&, t] { result[t] = tapegrad::fuzz::fuzz_scalar(1000 * (t + 1), 150, ops); });
  for (auto& w : workers) w.join();
  for (const auto& f : result) {
    INFO("seed " << f.seed << ": " << f.report << "\n" << f.program);
    CHECK_FALSE(f.found);
  }
}

TEST_CASE("Each thread's tape holds only its own graph") {
  // y = w^2 + 3w on every thread with its own w; dy/dw = 2w + 3.
  std::vector<double> grads(4), sizes(4);
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t)
    workers.emplace_back([&, t] {
      for (int step = 0; step < 200; ++step) {
        Value w = 1.0 + t;
        Value y = w * w + 3.0 * w;
        y.backward();
        grads[static_cast<std::size_t>(t)] = w.grad();
        sizes[static_cast<std::size_t>(t)] = static_cast<double>(tapegrad::Tape::active().size());
        tapegrad::Tape::active().clear();
      }
    });
  for (auto& w : workers) w.join();
  for (int t = 0; t < 4; ++t) {
    CAPTURE(t);
    CHECK(grads[static_cast<std::size_t>(t)] == 2.0 * (1 + t) + 3.0);
    CHECK(sizes[static_cast<std::size_t>(t)] == 1);  // one statement, w*w + 3*w: no other thread's nodes
  }
}

TEST_CASE("A handle used from another thread works or raises tapegrad::error") {
  SUBCASE("a Value made on this thread, used while this thread waits") {
    tapegrad::Tape tape;
    tapegrad::Tape::Scope use(tape);
    Value x = 3.0;
    bool worked = false, refused = false;
    double y_value = 0, x_grad = 0;
    std::thread other([&] {
      try {
        Value y = x * x + 1.0;  // 10; dy/dx = 2x = 6
        y.backward();
        y_value = y.data();
        x_grad = x.grad();
        worked = true;
      } catch (const tapegrad::error&) {
        refused = true;
      }
    });
    other.join();
    CHECK(worked != refused);
    if (worked) {
      CHECK(y_value == 10.0);
      CHECK(x_grad == 6.0);
    }
  }

  SUBCASE("a Tensor leaf made on this thread, differentiated on another") {
    const tapegrad::Tensor w = tapegrad::from<float>({1, -2, 3}).requires_grad(true);
    bool worked = false, refused = false;
    std::vector<float> g;
    std::thread other([&] {
      try {
        tapegrad::Tensor loss = sum(w * w);  // d/dw = 2w
        loss.backward();
        const auto gv = w.grad();
        g.assign(gv.data(), gv.data() + gv.size());
        tapegrad::Tape::active().clear();
        worked = true;
      } catch (const tapegrad::error&) {
        refused = true;
      }
    });
    other.join();
    CHECK(worked != refused);
    if (worked) CHECK(g == std::vector<float>{2, -4, 6});
  }
}

// Copying a handle reads it and nothing else: two threads copying the same
// Value at once is not a data race (ThreadSanitizer would stop this test), and
// a copy brought back to the owner is a second handle like any other, so an
// operation that consumes it never rewrites the original's statement.
TEST_CASE("Copies of one Value made on two threads at once leave it as it was") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value x = 3.0;
  const Value y = x * x;  // 9
  Value brought_back[2];
  auto copy_many = [&](int t) {
    std::vector<Value> copies;
    for (int i = 0; i < 1000; ++i) copies.push_back(y);
    brought_back[t] = copies.back();
  };
  std::thread a(copy_many, 0), b(copy_many, 1);
  a.join();
  b.join();
  Value z = std::move(brought_back[0]) + 1.0;
  Value w = std::move(brought_back[1]) * 2.0;
  CHECK(y.data() == 9.0);
  CHECK(z.data() == 10.0);
  CHECK(w.data() == 18.0);
  w.backward();
  CHECK(x.grad() == 12.0);  // d/dx 2x^2
}

// A Value recorded on a worker's default tape outlives the tape when the
// worker ends. The rule (docs/concepts.md, "Tapes and threads"): using it then
// raises tapegrad::error, or it still reads the right value; it never reads
// freed memory (AddressSanitizer and ThreadSanitizer would stop this test).
TEST_CASE("A handle used after its thread ended works or raises tapegrad::error") {
  Value v;
  std::thread worker([&] {
    Value a = 2.0;
    v = a * a;  // 4, on the worker's default tape
  });
  worker.join();
  bool worked = false, refused = false;
  double value = 0;
  try {
    value = v.data();
    worked = true;
  } catch (const tapegrad::error&) {
    refused = true;
  }
  CHECK(worked != refused);
  if (worked) CHECK(value == 4.0);
  CHECK_NOTHROW(v = Value());  // dropping the handle is safe either way
}
