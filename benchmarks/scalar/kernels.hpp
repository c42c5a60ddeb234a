// SPDX-License-Identifier: MIT
#pragma once

// The four scalar functions, each written once as a template over the number
// type, and their inputs. Shared by scalar_bench.cpp (the tape against plain
// double) and ../peers/scalar_peers.cpp (the tape beside Sacado and ADOL-C).
//
// Before including this header, declare `double data_of(const Num&)` for each
// number type Num used: the forward value, which the stable logsumexp reads
// to pick its shift without recording anything.

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace scalar_kernels {

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
  std::vector<double> a, b;               // dot
  std::vector<double> logits;             // logsumexp
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
    case Case::dot:
      return "dot";
    case Case::logsumexp:
      return "logsumexp";
    case Case::chain:
      return "chain";
    case Case::mlp:
      return "mlp";
  }
  return "?";
}

/// The inputs of case c, in a fixed order: what each library differentiates by.
template <class Num>
std::vector<Num*> inputs_of(Case c, Problem<Num>& p) {
  std::vector<Num*> out;
  auto add = [&](std::vector<Num>& v) {
    for (Num& e : v) out.push_back(&e);
  };
  switch (c) {
    case Case::dot:
      add(p.a), add(p.b);
      break;
    case Case::logsumexp:
      add(p.logits);
      break;
    case Case::chain:
      out.push_back(&p.chain_start);
      break;
    case Case::mlp:
      add(p.mlp.w1), add(p.mlp.b1), add(p.mlp.w2), add(p.mlp.b2), add(p.x);
      break;
  }
  return out;
}

template <class Num>
Num run(Case c, const Problem<Num>& p) {
  switch (c) {
    case Case::dot:
      return dot(p.a, p.b);
    case Case::logsumexp:
      return logsumexp(p.logits);
    case Case::chain:
      return chain(p.chain_start, kChainSteps);
    case Case::mlp:
      return mlp_loss(p.mlp, p.x, kMlpTarget);
  }
  return p.chain_start;
}

}  // namespace scalar_kernels
