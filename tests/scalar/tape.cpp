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

TEST_CASE("tape: a stale handle raises stale_handle_error, never undefined behaviour") {
  Tape tape;
  Tape::Scope use(tape);
  Value w = 2.0;
  Value y = w * 3.0;
  tape.clear();
  Value z = w + 1.0;  // reuses the slot y had
  CHECK(z.data() == 3.0);

  CHECK_THROWS_AS(y.data(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(y.grad(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(y.backward(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(y * 2.0, tapegrad::stale_handle_error);
  CHECK_THROWS_AS(y + z, tapegrad::stale_handle_error);
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
      bytes_after_warmup = tape.bytes();  // node and leaf capacity
    }
  }
  CHECK(tape.bytes() == bytes_after_warmup);
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

// ---- lifetime and thread rules ---------------------------------------------
// Each case below once read freed memory; under AddressSanitizer it would
// report heap-use-after-free or stack-use-after-scope if the rule broke.

TEST_CASE("lifetime: every backward() starts all intermediates at zero, before and after its root") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 2.0, y = 3.0;
  Value a = x * y;   // 6
  Value l1 = a * a;  // recorded before l2's nodes
  Value yy = y * y;  // after l1: only l2 reads it
  Value l2 = exp(a) + yy;
  l2.backward();
  REQUIRE(yy.grad() == 1.0);
  REQUIRE(l2.grad() == 1.0);
  l1.backward();
  // l1's sweep does not reach yy or l2: they read zero, not l2's leftovers.
  CHECK(yy.grad() == 0.0);
  CHECK(l2.grad() == 0.0);
  CHECK(l1.grad() == 1.0);
  CHECK(a.grad() == 12.0);  // d(a^2)/da = 2a
}

TEST_CASE("lifetime: a Value whose tape went out of scope raises, it does not read the stack") {
  Value v;
  Value leaf;
  {
    Tape local;
    Tape::Scope use(local);
    leaf = Value(2.0);
    v = leaf * 3.0;
    REQUIRE(v.data() == 6.0);
  }
  CHECK_FALSE(v.is_alive());
  CHECK_FALSE(leaf.is_alive());
  CHECK_THROWS_AS(v.data(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(leaf.grad(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(v * 2.0, tapegrad::stale_handle_error);
  try {
    (void)v.data();
  } catch (const tapegrad::stale_handle_error& e) {
    CHECK(std::string(e.what()).find("tape was destroyed") != std::string::npos);
  }
  // Copying and dropping such handles touches nothing.
  Value copy = v;
  CHECK_FALSE(copy.is_alive());
}

TEST_CASE("lifetime: a Value made on a thread that has ended raises, and dropping it is safe") {
  Value z, v;
  std::thread worker([&] {
    v = Value(2.0);
    z = v * v;  // recorded on the worker's default tape
  });
  worker.join();
  // The worker's default tape died with the worker.
  CHECK_THROWS_AS(z.data(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(z.backward(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(v.grad(), tapegrad::stale_handle_error);
  z = Value(1.0);  // drops the old handle: nothing is read
  v = Value(1.0);
  CHECK(z.data() == 1.0);
}

TEST_CASE("threads: a Value used from another thread raises thread_error") {
  Tape tape;
  Tape::Scope use(tape);
  Value x = 2.0;
  Value y = x * 5.0;
  std::string message;
  bool alive = true;
  std::thread other([&] {
    alive = y.is_alive();
    try {
      (void)y.data();
    } catch (const tapegrad::thread_error& e) {
      message = e.what();
    }
    // Copies made and dropped on the other thread leave the owner's counts alone.
    Value copy = x;
  });
  other.join();
  CHECK_FALSE(alive);
  CHECK(message.find("another thread") != std::string::npos);
  CHECK(y.data() == 10.0);  // still fine on its own thread
  x.backward();
  CHECK(x.grad() == 1.0);
}

TEST_CASE("threads: a tape belongs to its thread until it is handed over") {
  Tape tape;
  Value w(tape, 1.5);
  std::string scope_error, record_error;
  std::thread other([&] {
    try {
      Tape::Scope use(tape);
    } catch (const tapegrad::thread_error& e) {
      scope_error = e.what();
    }
    try {
      Value(tape, 1.0);
    } catch (const tapegrad::thread_error& e) {
      record_error = e.what();
    }
  });
  other.join();
  CHECK(scope_error.find("Tape::Scope") != std::string::npos);
  CHECK(record_error.find("Value") != std::string::npos);

  SUBCASE("bind_to_this_thread hands the tape and its values over") {
    double seen = 0;
    std::thread taker([&] {
      tape.bind_to_this_thread();
      Tape::Scope use(tape);
      Value y = w * 2.0;
      y.backward();
      seen = w.grad();
    });
    taker.join();
    CHECK(seen == 2.0);
    CHECK_THROWS_AS(w.data(), tapegrad::thread_error);  // it belongs to the taker now
    tape.bind_to_this_thread();
    CHECK(w.grad() == 2.0);
  }
}

TEST_CASE("lifetime: moved-from and empty handles raise stale_handle_error") {
  Tape tape;
  Tape::Scope use(tape);
  Value a = 1.0;
  Value b = std::move(a);
  CHECK_FALSE(a.is_alive());  // NOLINT(bugprone-use-after-move): the point of the test
  CHECK_THROWS_AS(a.data(), tapegrad::stale_handle_error);
  CHECK_THROWS_AS(a + b, tapegrad::stale_handle_error);
  CHECK(b.data() == 1.0);
  CHECK_FALSE(Value::none().defined());
  CHECK_THROWS_AS(Value::none().grad(), tapegrad::stale_handle_error);
}

TEST_CASE("lifetime: a child handle keeps its leaf alive through a clear") {
  Tape tape;
  Tape::Scope use(tape);
  Value c;
  {
    Value w = 4.0;
    Value y = w * 2.0;
    c = y.children()[0];
  }  // w's own handle is gone; c holds the leaf
  tape.clear();
  Value other = 9.0;  // a new leaf must not take c's slot
  CHECK(c.is_alive());
  CHECK(c.data() == 4.0);
  CHECK(other.data() == 9.0);
}

TEST_CASE("lifetime: a rewind to a mark of another tape is refused") {
  Tape t1, t2;
  const Tape::Mark m = t1.mark();
  CHECK_THROWS_AS(t2.rewind(m), tapegrad::value_error);
  t1.rewind(m);
}

TEST_CASE("gradcheck: hold_stopped for scalar graphs with barriers") {
  // f(x) = x * stop_gradient(x): the tape's df/dx is x, plain differences see 2x.
  auto f = [](Value x) { return x * tapegrad::stop_gradient(x); };
  CHECK_FALSE(tapegrad::gradcheck(f, 1.5).passed);
  CHECK(tapegrad::gradcheck({.hold_stopped = true}, f, 1.5).passed);
}
