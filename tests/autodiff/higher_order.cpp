// SPDX-License-Identifier: MIT
// jvp, vjp, hvp, hessian and jacobian on functions of many scalars: Hessians
// of closed forms, a scalar MLP's Hessian-vector product against finite
// differences of its gradient, and the Jacobian computed both ways.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "tapegrad/autodiff/functional.hpp"
#include "tapegrad/autodiff/higher_order.hpp"

using tapegrad::Dual;
using tapegrad::JacobianMode;
using tapegrad::Value;

namespace {

/// f(x) = sum_ij A_ij x_i x_j for a fixed integer matrix A: H = A + A^T.
constexpr double A[3][3] = {{2, -1, 3}, {4, 1, 0}, {-2, 5, 6}};

auto quadratic = [](const auto& x) {
  auto s = x[0] * x[0] * A[0][0];
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      if (i + j > 0) s = s + x[i] * x[j] * A[i][j];
  return s;
};

/// log sum_i e^(x_i), written as the stable max-shifted form would not be:
/// the plain form, to keep every step differentiable twice.
auto logsumexp = [](const auto& x) {
  auto s = exp(x[0]);
  for (std::size_t i = 1; i < x.size(); ++i) s = s + exp(x[i]);
  return log(s);
};

/// (1 - x)^2 + 100 (y - x^2)^2.
auto rosenbrock = [](const auto& x) {
  auto a = 1.0 - x[0];
  auto b = x[1] - x[0] * x[0];
  return a * a + 100.0 * b * b;
};

std::vector<double> softmax(const std::vector<double>& z) {
  double s = 0;
  for (double v : z) s += std::exp(v);
  std::vector<double> p;
  for (double v : z) p.push_back(std::exp(v) / s);
  return p;
}

/// A scalar MLP 3 -> 4 -> 1 with tanh, on two fixed samples, as a function of
/// its 21 parameters (w1: 12, b1: 4, w2: 4, b2: 1); the loss is the squared error.
auto mlp_loss = [](const auto& p) {
  constexpr double xs[2][3] = {{0.5, -1.0, 2.0}, {-0.3, 0.8, 0.1}};
  constexpr double ys[2] = {0.7, -0.2};
  auto loss = p[20] * 0.0;
  for (std::size_t s = 0; s < 2; ++s) {
    auto out = p[20];
    for (std::size_t h = 0; h < 4; ++h) {
      auto a = p[12 + h];
      for (std::size_t i = 0; i < 3; ++i) a = a + p[h * 3 + i] * xs[s][i];
      out = out + p[16 + h] * tanh(a);
    }
    auto err = out - ys[s];
    loss = loss + err * err;
  }
  return loss;
};

std::vector<double> random_vector(std::size_t n, unsigned seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = d(gen);
  return v;
}

}  // namespace

TEST_CASE("hessian: a quadratic form's Hessian is A + A^T, exactly") {
  const std::vector<double> x{1.0, -2.0, 3.0};
  const auto h = tapegrad::hessian(quadratic, x);
  REQUIRE(h.rows == 3);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j) CHECK(h(i, j) == A[i][j] + A[j][i]);  // small integers: no rounding
}

TEST_CASE("hessian: Rosenbrock's Hessian in closed form") {
  // d2f/dx2 = 2 - 400 (y - x^2) + 800 x^2, d2f/dxdy = -400 x, d2f/dy2 = 200.
  // At (1, 1), the minimum: [[802, -400], [-400, 200]]. At (-1.5, 2):
  // 2 - 400 (2 - 2.25) + 800 * 2.25 = 2 + 100 + 1800 = 1902, and 600.
  // Every operand is a short binary fraction, so the products are exact.
  const auto h = tapegrad::hessian(rosenbrock, std::vector{1.0, 1.0});
  CHECK(h(0, 0) == 802.0);
  CHECK(h(0, 1) == -400.0);
  CHECK(h(1, 0) == -400.0);
  CHECK(h(1, 1) == 200.0);
  const auto g = tapegrad::hessian(rosenbrock, std::vector{-1.5, 2.0});
  CHECK(g(0, 0) == 1902.0);
  CHECK(g(0, 1) == 600.0);
  CHECK(g(1, 0) == 600.0);
  CHECK(g(1, 1) == 200.0);
}

TEST_CASE("hessian: logsumexp's Hessian is diag(p) - p p^T") {
  const std::vector<double> z{0.3, -1.2, 2.0, 0.5};
  const auto p = softmax(z);
  const auto h = tapegrad::hessian(logsumexp, z);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j) {
      const double expected = (i == j ? p[i] : 0.0) - p[i] * p[j];
      CHECK(h(i, j) == doctest::Approx(expected).epsilon(1e-14));
    }
}

TEST_CASE("hvp: softmax cross-entropy in scalar form") {
  // L = logsumexp(z) - z_k: the gradient is p - e_k and the Hessian is that of
  // logsumexp, diag(p) - p p^T (the target term is linear).
  const std::vector<double> z{1.0, -0.5, 0.25};
  const std::size_t k = 1;
  auto ce = [k](const auto& x) { return logsumexp(x) - x[k]; };
  const auto p = softmax(z);
  const std::vector<double> v{0.5, 2.0, -1.0};
  const auto r = tapegrad::hvp(ce, z, v);
  const double pv = p[0] * v[0] + p[1] * v[1] + p[2] * v[2];
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(r.grad[i] == doctest::Approx(p[i] - (i == k ? 1.0 : 0.0)).epsilon(1e-14));
    CHECK(r.hvp[i] == doctest::Approx(p[i] * v[i] - p[i] * pv).epsilon(1e-14));  // (diag(p) - p p^T) v
  }
  CHECK(r.value == doctest::Approx(std::log(std::exp(1.0) + std::exp(-0.5) + std::exp(0.25)) + 0.5).epsilon(1e-15));
}

TEST_CASE("hvp: a scalar MLP's H v matches finite differences of its gradient") {
  const auto p = random_vector(21, 1);
  const auto v = random_vector(21, 2);
  const auto r = tapegrad::hvp(mlp_loss, p, v);
  // H v = (grad(p + h v) - grad(p - h v)) / 2h + O(h^2).
  const double h = 1e-5;
  std::vector<double> plus(p), minus(p);
  for (std::size_t i = 0; i < p.size(); ++i) {
    plus[i] += h * v[i];
    minus[i] -= h * v[i];
  }
  const auto gp = tapegrad::grad(mlp_loss, plus), gm = tapegrad::grad(mlp_loss, minus);
  const auto g = tapegrad::grad(mlp_loss, p);
  for (std::size_t i = 0; i < p.size(); ++i) {
    CAPTURE(i);
    CHECK(r.hvp[i] == doctest::Approx((gp[i] - gm[i]) / (2 * h)).epsilon(1e-7));
    CHECK(r.grad[i] == doctest::Approx(g[i]).epsilon(1e-14));
  }
  CHECK(r.value == doctest::Approx(tapegrad::value_and_grad(mlp_loss, p).value).epsilon(1e-15));
}

TEST_CASE("hessian: a scalar MLP's Hessian is symmetric") {
  const auto p = random_vector(21, 3);
  const auto h = tapegrad::hessian(mlp_loss, p);
  double largest = 0;
  for (double x : h.data) largest = std::max(largest, std::abs(x));
  REQUIRE(largest > 0.1);  // a Hessian with real curvature, not all zeros
  for (std::size_t i = 0; i < 21; ++i)
    for (std::size_t j = 0; j < i; ++j) CHECK(h(i, j) == doctest::Approx(h(j, i)).epsilon(1e-12));
}

TEST_CASE("jvp and vjp: J v and u^T J agree through u^T J v") {
  // f: R^3 -> R^2, f = (x0 x1 + sin x2, x0^2 - x2 x1).
  auto f = [](const auto& x) {
    using S = std::decay_t<decltype(x[0])>;
    return std::vector<S>{x[0] * x[1] + sin(x[2]), x[0] * x[0] - x[2] * x[1]};
  };
  const std::vector<double> x{1.5, -2.0, 0.5};
  // J = [[x1, x0, cos x2], [2 x0, -x2, -x1]] = [[-2, 1.5, cos 0.5], [3, -0.5, 2]].
  const std::vector<double> v{1.0, 2.0, -1.0}, u{3.0, -1.0};
  const auto j = tapegrad::jvp(f, x, v);
  CHECK(j.value[0] == doctest::Approx(-3.0 + std::sin(0.5)));
  CHECK(j.tangent[0] == doctest::Approx(-2.0 + 3.0 - std::cos(0.5)));
  CHECK(j.tangent[1] == doctest::Approx(3.0 - 1.0 - 2.0));
  const auto r = tapegrad::vjp(f, x, u);
  CHECK(r.grad[0] == doctest::Approx(3 * -2.0 - 3.0));
  CHECK(r.grad[1] == doctest::Approx(3 * 1.5 + 0.5));
  CHECK(r.grad[2] == doctest::Approx(3 * std::cos(0.5) - 2.0));
  double ujv = 0, ujv2 = 0;
  for (std::size_t i = 0; i < 2; ++i) ujv += u[i] * j.tangent[i];
  for (std::size_t k = 0; k < 3; ++k) ujv2 += r.grad[k] * v[k];
  CHECK(ujv == doctest::Approx(ujv2).epsilon(1e-15));

  SUBCASE("a scalar f gives a number: d(x0 x1)/dx . (1, 0) = x1") {
    const auto s = tapegrad::jvp([](const auto& y) { return y[0] * y[1]; }, std::vector{2.0, 3.0}, {1.0, 0.0});
    CHECK(s.value == 6.0);
    CHECK(s.tangent == 3.0);
  }
}

TEST_CASE("jacobian: forward and reverse give the same matrix, and automatic picks the cheaper") {
  auto wide = [](const auto& x) {  // R^3 -> R^2: reverse (2 sweeps) beats forward (3 passes)
    using S = std::decay_t<decltype(x[0])>;
    return std::vector<S>{x[0] * x[1] * x[2], exp(x[0]) - x[2]};
  };
  auto tall = [](const auto& x) {  // R^2 -> R^3: forward (2 passes) beats reverse (3 sweeps)
    using S = std::decay_t<decltype(x[0])>;
    return std::vector<S>{x[0] * x[1], x[0] + x[1], tanh(x[1])};
  };
  const std::vector<double> x3{0.5, -1.0, 2.0}, x2{2.0, 3.0};

  const auto wf = tapegrad::jacobian(wide, x3, JacobianMode::forward);
  const auto wr = tapegrad::jacobian(wide, x3, JacobianMode::reverse);
  const auto wa = tapegrad::jacobian(wide, x3);
  CHECK(wa.mode == JacobianMode::reverse);
  REQUIRE(wf.rows == 2);
  REQUIRE(wr.rows == 2);
  CHECK(wf.data == wr.data);
  CHECK(wa.data == wr.data);
  // Row 0: (x1 x2, x0 x2, x0 x1) = (-2, 1, -0.5); row 1: (e^x0, 0, -1).
  CHECK(wr(0, 0) == -2.0);
  CHECK(wr(0, 1) == 1.0);
  CHECK(wr(0, 2) == -0.5);
  CHECK(wr(1, 0) == std::exp(0.5));
  CHECK(wr(1, 1) == 0.0);
  CHECK(wr(1, 2) == -1.0);

  const auto tf = tapegrad::jacobian(tall, x2, JacobianMode::forward);
  const auto tr = tapegrad::jacobian(tall, x2, JacobianMode::reverse);
  const auto ta = tapegrad::jacobian(tall, x2);
  CHECK(ta.mode == JacobianMode::forward);
  REQUIRE(tf.rows == 3);
  CHECK(tf.data == tr.data);
  CHECK(ta.data == tf.data);
  CHECK(tf(0, 0) == 3.0);  // d(x0 x1)/dx0 = x1
  CHECK(tf(0, 1) == 2.0);
  CHECK(tf(1, 0) == 1.0);
  CHECK(tf(2, 0) == 0.0);
  CHECK(tf(2, 1) == doctest::Approx(1.0 - std::tanh(3.0) * std::tanh(3.0)));
}

TEST_CASE("higher-order drivers name the mismatched sizes") {
  auto f = [](const auto& x) { return x[0] * x[1]; };
  CHECK_THROWS_AS(tapegrad::hvp(f, std::vector{1.0, 2.0}, {1.0}), tapegrad::shape_error);
  CHECK_THROWS_WITH(tapegrad::jvp(f, std::vector{1.0, 2.0}, {1.0, 2.0, 3.0}), "jvp: v has 3 entries, x has 2");
}

TEST_CASE("hvp: the dual pass records a few times the nodes of f") {
  // A product of duals records its value and three tangent nodes; a sum, two
  // nodes; a product with a constant, two. Those dominate f, so the dual pass
  // records between two and four times f's nodes (docs/higher-order.md).
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  const auto p = random_vector(21, 5), v = random_vector(21, 6);
  std::vector<Value> leaves(p.begin(), p.end()), tangents(v.begin(), v.end());
  const Value y = mlp_loss(leaves);
  const std::size_t plain = tape.size();
  std::vector<Dual<Value>> xs;
  for (std::size_t i = 0; i < p.size(); ++i) xs.emplace_back(leaves[i], tangents[i]);
  const Dual<Value> yd = mlp_loss(xs);
  const std::size_t dual = tape.size() - plain;
  MESSAGE("nodes: f " << plain << ", dual pass " << dual);
  CHECK(dual > 2 * plain);
  CHECK(dual < 4 * plain);
}
