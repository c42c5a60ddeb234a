// SPDX-License-Identifier: MIT
//
// The tape's rules: leaves and intermediates, clear and rewind, stale
// handles, no-grad, anomaly mode, tapes per thread and per scope, and sweeps
// that never recurse.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "tapegrad/scalar.hpp"

using tapegrad::Tape;
using tapegrad::Value;

TEST_CASE("tape: a clear frees intermediates and keeps leaves and their gradients") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 2.0;
  Value y = w * w;
  y.backward();
  REQUIRE(w.grad() == 4.0);

  tape.clear();
  CHECK(w.is_alive());
  CHECK(w.data() == 2.0);
  CHECK(w.grad() == 4.0);
  CHECK_FALSE(y.is_alive());
}

TEST_CASE("tape: a stale handle raises stale_value_error, never undefined behaviour") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 2.0;
  Value y = w * 3.0;
  tape.clear();
  Value z = w + 1.0;  // reuses the slot y had
  CHECK(z.data() == 3.0);

  CHECK_THROWS_AS(y.data(), tapegrad::stale_value_error);
  CHECK_THROWS_AS(y.grad(), tapegrad::stale_value_error);
  CHECK_THROWS_AS(y.backward(), tapegrad::stale_value_error);
  CHECK_THROWS_AS(y * 2.0, tapegrad::stale_value_error);
  CHECK_THROWS_AS(y + z, tapegrad::stale_value_error);
  // The message says what happened and where.
  try {
    (void)(y * 2.0);
  } catch (const tapegrad::error& e) {
    CHECK(std::string(e.what()).find("mul") != std::string::npos);
    CHECK(std::string(e.what()).find("stale") != std::string::npos);
  }
}

TEST_CASE("tape: marks and rewind free only what came after the mark") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 3.0;
  Value features = w * 2.0;  // kept
  const Tape::Mark m = tape.mark();
  Value step = features * features;
  step.backward();
  CHECK(w.grad() == doctest::Approx(24.0));  // d(4w^2)/dw = 8w at w = 3

  tape.rewind(m);
  CHECK(features.is_alive());
  CHECK(features.data() == 6.0);
  CHECK_FALSE(step.is_alive());
}

TEST_CASE("tape: one million training steps run in flat memory") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 0.0, b = 0.0;
  std::size_t bytes_after_warmup = 0;
  std::size_t leaves_after_warmup = 0;
  for (int step = 0; step < 1'000'000; ++step) {
    Value x = static_cast<double>(step % 7) / 7.0;  // an input: a leaf made each step
    Value err = w * x + b - (2.0 * x.data() - 1.0);
    Value loss = err * err;
    loss.backward();
    {
      tapegrad::NoGradGuard no_grad;
      w -= 0.1 * w.grad();
      b -= 0.1 * b.grad();
    }
    w.zero_grad();
    b.zero_grad();
    tape.clear();
    if (step == 100) {
      bytes_after_warmup = tape.scalar_bytes();
      leaves_after_warmup = tape.scalars<double>().leaves.size();
    }
  }
  CHECK(tape.scalar_bytes() == bytes_after_warmup);
  CHECK(tape.scalars<double>().leaves.size() == leaves_after_warmup);
  CHECK(w.data() == doctest::Approx(2.0).epsilon(1e-6));
  CHECK(b.data() == doctest::Approx(-1.0).epsilon(1e-6));
}

TEST_CASE("tape: a chain of ten million nodes backpropagates without recursion") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 1.0;
  Value y = x;
  for (int i = 0; i < 10'000'000; ++i) y = y * 1.0;  // the sweep is a loop, not a call per node
  y.backward();
  CHECK(x.grad() == 1.0);
  CHECK(tape.size() == 10'000'000);
}

TEST_CASE("tape: backward() twice on one root adds the leaf gradients twice") {
  Tape tape;
  Tape::Scope use(tape);
  Value a = 2.0;
  Value b = a * a;
  b.backward();
  b.backward();
  CHECK(a.grad() == 8.0);  // 4 + 4
  CHECK(b.grad() == 1.0);  // intermediates restart at every sweep
}

TEST_CASE("tape: backward from a leaf seeds its own gradient") {
  Tape tape;
  Tape::Scope use(tape);
  Value a = 2.0;
  a.backward();
  CHECK(a.grad() == 1.0);
  a.backward(2.5);
  CHECK(a.grad() == 3.5);
}

TEST_CASE("tape: NoGradGuard records nothing") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 3.0;
  const auto before = tape.size();
  {
    tapegrad::NoGradGuard no_grad;
    CHECK_FALSE(tapegrad::is_grad_enabled());
    Value y = x * x + 1.0;
    CHECK(y.data() == 10.0);
    CHECK(y.is_leaf());  // a constant, with no edge back to x
    y.backward();
    CHECK(x.grad() == 0.0);
  }
  CHECK(tapegrad::is_grad_enabled());
  CHECK(tape.size() == before);
}

TEST_CASE("tape: stop_gradient is a node with the value and no path back") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 3.0;
  Value s = tapegrad::stop_gradient(x * 2.0);
  CHECK(s.data() == 6.0);
  CHECK(s.op() == "stop_gradient");
  CHECK(s.children().empty());
  Value y = s * x;  // only the direct path counts: dy/dx = s = 6
  y.backward();
  CHECK(x.grad() == 6.0);
}

TEST_CASE("tape: set_data works on leaves and refuses intermediates") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 1.0;
  w.set_data(5.0);
  CHECK(w.data() == 5.0);
  Value y = w * 2.0;
  CHECK_THROWS_AS(y.set_data(1.0), tapegrad::value_error);
}

TEST_CASE("tape: values from two tapes do not meet") {
  Tape t1, t2;
  Value a = [&] {
    Tape::Scope use(t1);
    return Value(1.0);
  }();
  Tape::Scope use(t2);
  Value b = 2.0;
  CHECK(&a.tape() == &t1);
  CHECK(&b.tape() == &t2);
  CHECK_THROWS_AS(a + b, tapegrad::tape_mismatch_error);
}

TEST_CASE("tape: a scope makes a tape active and restores the previous one") {
  Tape outer, inner;
  Tape::Scope a(outer);
  CHECK(&Tape::active() == &outer);
  {
    Tape::Scope b(inner);
    CHECK(&Tape::active() == &inner);
    Value v = 1.0;
    CHECK(&v.tape() == &inner);
  }
  CHECK(&Tape::active() == &outer);
}

TEST_CASE("tape: each thread records on its own tape") {
  std::vector<double> grads(4, 0.0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &grads] {
      // Each thread's default tape: no locking, no sharing.
      Value x = static_cast<double>(t + 1);
      Value y = x * x * x;  // dy/dx = 3x^2
      for (int i = 0; i < 1000; ++i) y = y + 0.0;
      y.backward();
      grads[static_cast<std::size_t>(t)] = x.grad();
      Tape::active().clear();
    });
  }
  for (auto& th : threads) th.join();
  CHECK(grads == std::vector<double>{3.0, 12.0, 27.0, 48.0});
}

TEST_CASE("tape: anomaly mode names the op that made the first NaN or infinity") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = -1.0;

  SUBCASE("in the forward pass") {
    tapegrad::AnomalyGuard anomaly;
    try {
      Value y = log(x);
      FAIL("no anomaly reported");
    } catch (const tapegrad::anomaly_error& e) {
      CHECK(std::string(e.what()).find("log") != std::string::npos);
    }
  }

  SUBCASE("in the reverse sweep") {
    Value z = 0.0;
    Value y = sqrt(z) * 3.0;  // slope of sqrt at 0 is infinite
    tapegrad::AnomalyGuard anomaly;
    try {
      y.backward();
      FAIL("no anomaly reported");
    } catch (const tapegrad::anomaly_error& e) {
      CHECK(std::string(e.what()).find("sqrt") != std::string::npos);
    }
  }

  SUBCASE("off by default: NaN flows silently") {
    Value y = log(x);
    CHECK(std::isnan(y.data()));
  }
}

TEST_CASE("tape: float values have a store of their own") {
  Tape tape;
  Tape::Scope use(tape);
  tapegrad::basic_value<float> a = 2.0f;
  auto b = a * a * 3.0f;  // 12, slope 6a = 12
  b.backward();
  CHECK(b.data() == 12.0f);
  CHECK(a.grad() == 12.0f);
}

TEST_CASE("tape: the vector forms of grad and gradcheck") {
  // logsumexp of three values: its gradient is softmax.
  auto lse = [](const std::vector<Value>& v) {
    Value m = v[0];
    for (const Value& x : v) m = max(m, x);
    const double mx = m.data();
    Value s = 0.0;
    for (const Value& x : v) s = s + exp(x - mx);
    return log(s) + mx;
  };
  const std::vector<double> xs = {0.5, -1.0, 2.0};
  const auto g = tapegrad::grad(lse, xs);
  double denom = 0;
  for (double x : xs) denom += std::exp(x);
  for (std::size_t i = 0; i < xs.size(); ++i) CHECK(g[i] == doctest::Approx(std::exp(xs[i]) / denom));
  const auto r = tapegrad::gradcheck(lse, xs);
  CHECK_MESSAGE(r.passed, r.report());
}

TEST_CASE("tape: gradcheck reports a wrong gradient") {
  // A deliberately wrong derivative: claims d(x^2)/dx = x.
  auto wrong = [](Value x) { return tapegrad::custom_unary(x, x.data() * x.data(), x.data(), "bad_square"); };
  const auto r = tapegrad::gradcheck(wrong, 3.0);
  CHECK_FALSE(r.passed);
  CHECK(r.analytic == 3.0);
  CHECK(r.numeric == doctest::Approx(6.0));
  CHECK(r.report().find("FAILED") != std::string::npos);
}
