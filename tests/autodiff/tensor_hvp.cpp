// SPDX-License-Identifier: MIT
// jvp, vjp and hvp on tensor functions. hvp works by reverse-over-forward:
// the ops' jvp rules record the loss's directional derivative <grad, v> on
// the tape, and a reverse sweep from it gives H v. We check H v of a
// quadratic form exactly, of an MLP and of a transformer block against
// finite differences of gradients, and the symmetry <u, H v> = <v, H u>.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <vector>

#include "tapegrad/autodiff/tensor_higher_order.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::DTensor;
using tapegrad::testing::random_tensor;

namespace {

using Tensors = std::vector<DTensor>;

std::vector<Tensors::value_type> directions(const Tensors& params, unsigned seed) {
  Tensors v;
  for (const DTensor& p : params) v.push_back(random_tensor(p.shape(), seed++));
  return v;
}

double dot(const Tensors& a, const Tensors& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = a[i].to_vector(), y = b[i].to_vector();
    for (std::size_t k = 0; k < x.size(); ++k) s += x[k] * y[k];
  }
  return s;
}

// The gradient of f() at params + s v, by one backward pass.
template <class F>
Tensors gradient_at(F& f, Tensors& params, const Tensors& v, double s) {
  for (std::size_t i = 0; i < params.size(); ++i) params[i].data() += s * v[i].data();
  Tape& tape = Tape::active();
  const Tape::Mark mark = tape.mark();
  for (auto& p : params) p.zero_grad();
  Tensors g;
  {
    const DTensor loss = f();
    loss.backward();
    for (const auto& p : params)
      g.emplace_back(p.shape(), std::vector<double>(p.grad().data(), p.grad().data() + p.numel()));
  }
  tape.rewind(mark);
  for (auto& p : params) p.zero_grad();
  for (std::size_t i = 0; i < params.size(); ++i) params[i].data() -= s * v[i].data();
  return g;
}

// H v by central differences of the gradient, (g(p + h v) - g(p - h v)) / 2h,
// checked entry by entry against `hv` with a relative tolerance.
template <class F>
void check_against_gradient_differences(F f, Tensors params, const Tensors& v, const Tensors& hv) {
  const double h = 1e-5;
  const Tensors up = gradient_at(f, params, v, h), down = gradient_at(f, params, v, -h);
  double worst = 0, scale = 1e-3;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto a = hv[i].to_vector(), u = up[i].to_vector(), d = down[i].to_vector();
    for (std::size_t k = 0; k < a.size(); ++k) {
      const double fd = (u[k] - d[k]) / (2 * h);
      worst = std::max(worst, std::abs(a[k] - fd));
      scale = std::max(scale, std::abs(fd));
    }
  }
  CHECK_MESSAGE(worst <= 1e-6 * scale, "|H v - finite difference of gradients| = " << worst << ", scale " << scale);
}

}  // namespace

TEST_CASE("tensor hvp of a quadratic form is exact") {
  // f(x) = x^T A x, so grad = (A + A^T) x and H = A + A^T
  const DTensor a = from<double>({{2, -1, 3}, {4, 1, 0}, {-2, 5, 6}});
  DTensor x = from<double>({1, 2, -1}).requires_grad(true);
  const DTensor v = from<double>({1, 0, 2});
  auto r = hvp([&] { return sum(x * matmul(a, x)); }, Tensors{x}, Tensors{v});
  // x^T A x = 1*(2-2-3) + 2*(4+2+0) + (-1)*(-2+10-6) = -3 + 12 - 2 = 7
  CHECK(r.loss.item() == doctest::Approx(7));
  // (A + A^T) = [[4, 3, 1], [3, 2, 5], [1, 5, 12]]; times x = (1, 2, -1): (9, 2, -1)
  const auto g = r.grad[0].to_vector();
  CHECK(g == std::vector<double>{9, 2, -1});
  // times v = (1, 0, 2): (6, 13, 25)
  const auto hv = r.hvp[0].to_vector();
  CHECK(hv == std::vector<double>{6, 13, 25});
  SUBCASE("the parameter's accumulated gradient values are left as they were (zero)") { CHECK(x.grad().isZero(0.0)); }
}

TEST_CASE("tensor hvp of an MLP against finite differences of its gradient") {
  nn::basic_linear<double> fc1(4, 6, {.seed = 1}), fc2(6, 3, {.seed = 2});
  const DTensor x = random_tensor({5, 4}, 3);
  const std::vector<index_t> targets{0, 2, 1, 1, 0};
  auto loss = [&] { return cross_entropy(fc2(tanh(fc1(x))), std::span<const index_t>(targets)); };
  Tensors params = fc1.parameters();
  for (const auto& p : fc2.parameters()) params.push_back(p);
  const Tensors v = directions(params, 10);
  const auto r = hvp(loss, params, v);
  check_against_gradient_differences(loss, params, v, r.hvp);

  SUBCASE("the gradient is the plain backward pass's") {
    const Tensors g = gradient_at(loss, params, v, 0.0);
    CHECK(dot(g, v) == doctest::Approx(dot(r.grad, v)).epsilon(1e-12));
  }
  SUBCASE("the Hessian is symmetric: <u, H v> = <v, H u>") {
    const Tensors u = directions(params, 40);
    const auto ru = hvp(loss, params, u);
    CHECK(dot(u, r.hvp) == doctest::Approx(dot(v, ru.hvp)).epsilon(1e-10));
  }
}

TEST_CASE("tensor hvp of a transformer block against finite differences of its gradient") {
  nn::basic_transformer_block<double> block(8, 2,
                                            {.d_ff = 16, .activation = Activation::gelu, .causal = true, .seed = 3});
  const DTensor x = random_tensor({2, 4, 8}, 4);
  const DTensor w = random_tensor({2, 4, 8}, 5);
  auto loss = [&] {
    const DTensor y = block(x);
    return mean(y * y * w);
  };
  const Tensors params = block.parameters();
  const Tensors v = directions(params, 20);
  const auto r = hvp(loss, params, v);
  check_against_gradient_differences(loss, params, v, r.hvp);
  SUBCASE("symmetry") {
    const Tensors u = directions(params, 60);
    const auto ru = hvp(loss, params, u);
    CHECK(dot(u, r.hvp) == doctest::Approx(dot(v, ru.hvp)).epsilon(1e-10));
  }
}

TEST_CASE("tensor jvp and vjp of a product") {
  const DTensor a = from<double>({1, 2, 3}), b = from<double>({4, 5, 6});
  auto f = [](const Tensors& x) { return x[0] * x[1]; };
  SUBCASE("jvp: d(a b) = da b + a db") {
    const auto r = jvp(f, Tensors{a, b}, Tensors{from<double>({1, 0, 1}), from<double>({0, 1, 1})});
    CHECK(r.value.to_vector() == std::vector<double>{4, 10, 18});
    // (1*4 + 1*0, 0*5 + 2*1, 1*6 + 3*1)
    CHECK(r.tangent.to_vector() == std::vector<double>{4, 2, 9});
  }
  SUBCASE("vjp: u^T J = (u b, u a)") {
    const auto r = vjp(f, Tensors{a, b}, from<double>({1, -1, 2}));
    CHECK(r.grad[0].to_vector() == std::vector<double>{4, -5, 12});
    CHECK(r.grad[1].to_vector() == std::vector<double>{1, -2, 6});
  }
}
