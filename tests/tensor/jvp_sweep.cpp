// SPDX-License-Identifier: MIT
// Every tensor op's forward-derivative (jvp) rule, in one table.
//
// For each row, random inputs x and random directions v (double):
//   1. the tangent that the op's jvp rule gives inside a ForwardScope equals
//      the central difference (f(x + h v) - f(x - h v)) / 2h;
//   2. the tangent is itself differentiable: gradcheck of
//      x -> sum(tangent * f(x)) + sum(f(x)), which runs the reverse sweep
//      through the ops the jvp rules recorded (what hvp relies on).
// A new op adds one row.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::DTensor;
using tapegrad::testing::every_nth;
using tapegrad::testing::mask_3x1;
using tapegrad::testing::pos_hi;
using tapegrad::testing::pos_lo;
using tapegrad::testing::random_tensor;

namespace {

using Inputs = std::vector<DTensor>;

struct JvpCase {
  std::string name;
  std::vector<Shape> shapes;
  std::function<DTensor(const Inputs&)> f;
  double lo = -1.0, hi = 1.0;  // the inputs are drawn from [lo, hi)
};

DTensor dropped(const DTensor& x) {
  Generator gen(5);  // the same seed on every call: the same mask
  return dropout(x, 0.4, gen);
}

std::vector<JvpCase> cases() {
  using I = const Inputs&;
  return {
      // ---- arithmetic, with every broadcasting path ----
      {"add [2,3]+[2,3]", {{2, 3}, {2, 3}}, [](I x) { return x[0] + x[1]; }},
      {"add [3,1]+[1,4]", {{3, 1}, {1, 4}}, [](I x) { return x[0] + x[1]; }},
      {"add [2,3,4]+[4]", {{2, 3, 4}, {4}}, [](I x) { return x[0] + x[1]; }},
      {"add []+[2,3]", {{}, {2, 3}}, [](I x) { return x[0] + x[1]; }},
      {"sub [4]-[2,3,4]", {{4}, {2, 3, 4}}, [](I x) { return x[0] - x[1]; }},
      {"sub [3,1]-[1,4]", {{3, 1}, {1, 4}}, [](I x) { return x[0] - x[1]; }},
      {"mul [3,1]*[1,4]", {{3, 1}, {1, 4}}, [](I x) { return x[0] * x[1]; }},
      {"mul [2,3,4]*[4]", {{2, 3, 4}, {4}}, [](I x) { return x[0] * x[1]; }},
      {"mul x*x", {{2, 3}}, [](I x) { return x[0] * x[0]; }},
      {"div [3,1]/[1,4]", {{3, 1}, {1, 4}}, [](I x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div []/[2,3]", {{}, {2, 3}}, [](I x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"neg", {{2, 3}}, [](I x) { return -x[0]; }},
      {"scalar + - * /",
       {{2, 3}},
       [](I x) { return (x[0] + 2.0) * (2.0 - x[0]) * 3.0 / 2.0 + 2.0 / x[0]; },
       pos_lo,
       pos_hi},
      // ---- math functions ----
      {"exp", {{2, 3}}, [](I x) { return exp(x[0]); }},
      {"log", {{2, 3}}, [](I x) { return log(x[0]); }, pos_lo, pos_hi},
      {"sqrt", {{2, 3}}, [](I x) { return sqrt(x[0]); }, pos_lo, pos_hi},
      {"pow x^3", {{2, 3}}, [](I x) { return pow(x[0], 3.0); }},
      {"pow x^0 * x", {{2, 3}}, [](I x) { return pow(x[0], 0.0) * x[0]; }},
      {"pow [3,1]^[1,4]", {{3, 1}, {1, 4}}, [](I x) { return pow(x[0], x[1]); }, pos_lo, pos_hi},
      {"abs", {{2, 3}}, [](I x) { return abs(x[0]); }},
      {"tanh", {{2, 3}}, [](I x) { return tanh(x[0]); }},
      {"sigmoid", {{2, 3}}, [](I x) { return sigmoid(x[0]); }, -4.0, 4.0},
      {"relu", {{2, 3}}, [](I x) { return relu(x[0]); }},
      {"gelu", {{2, 3}}, [](I x) { return gelu(x[0]); }, -3.0, 3.0},
      {"clamp", {{3, 4}}, [](I x) { return clamp(x[0], -0.5, 0.5); }},
      {"where [3,1] ? [3,4] : [4]", {{3, 4}, {4}}, [](I x) { return where(mask_3x1(), x[0], x[1]); }},
      {"where [3,1] ? [] : [3,4]", {{}, {3, 4}}, [](I x) { return where(mask_3x1(), x[0], x[1]); }},
      {"bias_act relu", {{2, 3, 4}, {4}}, [](I x) { return bias_act(x[0], x[1], Activation::relu); }},
      {"bias_act gelu", {{5, 4}, {4}}, [](I x) { return bias_act(x[0], x[1], Activation::gelu); }},
      {"bias_act none", {{5, 4}, {4}}, [](I x) { return bias_act(x[0], x[1], Activation::none); }},
      {"sin cos", {{2, 3}}, [](I x) { return sin(x[0]) * cos(x[0]); }, -3.0, 3.0},
      {"log1p", {{2, 3}}, [](I x) { return log1p(x[0]); }, -0.5, 2.0},
      {"softplus silu", {{2, 3, 4}, {4}}, [](I x) { return silu(x[0]) * softplus(x[1]); }, -4.0, 4.0},
      {"leaky_relu 0.2", {{3, 4}}, [](I x) { return leaky_relu(x[0], 0.2); }},
      // ---- reductions ----
      {"sum all", {{2, 3, 4}}, [](I x) { return sum(x[0]); }},
      {"sum axes {0, 2}",
       {{2, 3, 4}},
       [](I x) {
         return sum(x[0], {0, 2});
       }},
      {"mean axes {0, 1} keepdim",
       {{2, 3, 4}},
       [](I x) {
         return mean(x[0], {0, 1}, true);
       }},
      {"max all", {{2, 3, 4}}, [](I x) { return max(x[0]); }},
      {"min all", {{2, 3, 4}}, [](I x) { return min(x[0]); }},
      {"logsumexp all", {{2, 3, 4}}, [](I x) { return logsumexp(x[0]); }, -3.0, 3.0},
      // ---- matmul: batched, broadcast, with transpose flags ----
      {"matmul [3,4]x[4,5]", {{3, 4}, {4, 5}}, [](I x) { return matmul(x[0], x[1]); }},
      {"matmul [4]x[4,5]", {{4}, {4, 5}}, [](I x) { return matmul(x[0], x[1]); }},
      {"matmul [3,4]x[4]", {{3, 4}, {4}}, [](I x) { return matmul(x[0], x[1]); }},
      {"matmul [2,3,4]x[4,5] (folded)", {{2, 3, 4}, {4, 5}}, [](I x) { return matmul(x[0], x[1]); }},
      {"matmul [2,1,3,4]x[3,4,5]", {{2, 1, 3, 4}, {3, 4, 5}}, [](I x) { return matmul(x[0], x[1]); }},
      {"matmul [4,3]^T x [5,4]^T", {{4, 3}, {5, 4}}, [](I x) { return matmul(x[0], x[1], true, true); }},
      {"matmul [2,1,4,3]^T x [3,5,4]^T", {{2, 1, 4, 3}, {3, 5, 4}}, [](I x) { return matmul(x[0], x[1], true, true); }},
      {"matmul [2,3,4] x [5,4]^T", {{2, 3, 4}, {5, 4}}, [](I x) { return matmul(x[0], x[1], {.transpose_b = true}); }},
      // ---- shape ops ----
      {"reshape",
       {{2, 3, 4}},
       [](I x) {
         return reshape(x[0], {-1, 6});
       }},
      {"permute and transpose",
       {{2, 3, 4}},
       [](I x) {
         return transpose(permute(x[0], {2, 0, 1}), 0, 2);
       }},
      {"narrow and slice", {{3, 5}}, [](I x) { return narrow(x[0], 1, 1, 3) * slice(x[0], 1, 0, 3); }},
      {"concat, one input twice",
       {{2, 1, 3}, {2, 4, 3}},
       [](I x) {
         return concat(Inputs{x[0], x[1], x[0]}, 1);
       }},
      {"stack dim -1",
       {{2, 3}, {2, 3}},
       [](I x) {
         return stack(Inputs{x[1], x[0]}, -1);
       }},
      {"split, squeeze, unsqueeze, flatten",
       {{2, 6}},
       [](I x) {
         auto p = split(x[0], std::vector<index_t>{1, 2, 3}, 1);
         return flatten(unsqueeze(p[0], 0) * sum(p[1])) + squeeze(sum(p[2], 1, true));
       }},
      {"index_select with repeats",
       {{4, 3}},
       [](I x) {
         return index_select(x[0], 0, {3, 0, 3, 3});
       }},
      {"gather dim 1 with repeats",
       {{3, 4}},
       [](I x) {
         return gather(x[0], 1, {3, 3, 0, 1, 2, 1, 0, 0, 0}, Shape{3, 3});
       }},
      {"scatter_add dim 1",
       {{3, 4}, {3, 2}},
       [](I x) {
         return scatter_add(x[0], 1, {3, 3, 0, 1, 2, 2}, x[1]);
       }},
      // ---- nn functions ----
      {"softmax axis -1", {{3, 4}}, [](I x) { return softmax(x[0]); }, -2.0, 2.0},
      {"softmax axis 0", {{3, 4}}, [](I x) { return softmax(x[0], 0); }, -2.0, 2.0},
      {"log_softmax axis 1 of [2,3,4]", {{2, 3, 4}}, [](I x) { return log_softmax(x[0], 1); }, -2.0, 2.0},
      {"cross_entropy mean",
       {{4, 5}},
       [](I x) {
         return cross_entropy(x[0], {1, 0, 4, 2});
       },
       -2.0,
       2.0},
      {"cross_entropy sum [2,2,3]",
       {{2, 2, 3}},
       [](I x) {
         return cross_entropy(x[0], {2, 0, 1, 1}, {.reduction = Reduction::sum});
       },
       -2.0,
       2.0},
      {"cross_entropy none, ignore_index",
       {{3, 4}},
       [](I x) {
         return cross_entropy(x[0], {1, -100, 3}, {.reduction = Reduction::none});
       },
       -2.0,
       2.0},
      {"mse_loss mean", {{2, 3}, {2, 3}}, [](I x) { return mse_loss(x[0], x[1]); }},
      {"mse_loss sum", {{2, 3}, {2, 3}}, [](I x) { return mse_loss(x[0], x[1], Reduction::sum); }},
      {"mse_loss none", {{2, 3}, {2, 3}}, [](I x) { return mse_loss(x[0], x[1], Reduction::none); }},
      {"layer_norm", {{2, 3, 5}, {5}, {5}}, [](I x) { return layer_norm(x[0], x[1], x[2]); }},
      {"rms_norm with weight", {{3, 4}, {4}}, [](I x) { return rms_norm(x[0], x[1]); }},
      {"rms_norm without weight", {{3, 5}}, [](I x) { return rms_norm(x[0]); }},
      {"embedding with repeats",
       {{5, 3}},
       [](I x) {
         static const std::vector<index_t> ids{4, 0, 4, 2};
         return embedding(x[0], std::span<const index_t>(ids), Shape{2, 2});
       }},
      {"dropout, fixed seed", {{4, 5}}, [](I x) { return dropped(x[0]); }},
      {"masked_fill [3,1] mask", {{3, 4}}, [](I x) { return masked_fill(x[0], mask_3x1(), -2.0); }},
      // ---- attention ----
      {"attention",
       {{2, 3, 4}, {2, 5, 4}, {2, 5, 2}},
       [](I x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }},
      {"attention causal [B,H,T,D]",
       {{2, 2, 4, 3}, {2, 2, 4, 3}, {2, 2, 4, 3}},
       [](I x) { return scaled_dot_product_attention(x[0], x[1], x[2], true); }},
      {"attention causal Lq 3, Lk 5",
       {{3, 2}, {5, 2}, {5, 3}},
       [](I x) { return scaled_dot_product_attention(x[0], x[1], x[2], true); }},
      {"attention mask [B,1,1,Lk]",
       {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}},
       [](I x) {
         return scaled_dot_product_attention(x[0], x[1], x[2], every_nth({2, 1, 1, 5}, 3, 1));
       }},
      {"attention mask [B,1,Lq,1] hides whole queries",
       {{2, 2, 3, 2}, {2, 2, 4, 2}, {2, 2, 4, 3}},
       [](I x) {
         return scaled_dot_product_attention(x[0], x[1], x[2], every_nth({2, 1, 3, 1}, 3, 1));
       }},
  };
}

// f(x + s v), unrecorded.
DTensor shifted(const JvpCase& c, const Inputs& x, const Inputs& v, double s) {
  NoGradGuard off;
  Inputs xs;
  for (std::size_t i = 0; i < x.size(); ++i) xs.push_back(x[i] + v[i] * s);
  return c.f(xs);
}

void check_against_differences(const JvpCase& c, const Inputs& x, const Inputs& v) {
  Tape tape;
  Tape::Scope use(tape);
  ForwardScope<double> fwd;
  for (std::size_t i = 0; i < x.size(); ++i) fwd.set_tangent(x[i], v[i]);
  const DTensor y = c.f(x);
  const DTensor t = fwd.tangent(y);
  const double h = 1e-6;
  const std::vector<double> up = shifted(c, x, v, h).to_vector(), down = shifted(c, x, v, -h).to_vector();
  const std::vector<double> tv = t.defined() ? t.to_vector() : std::vector<double>(up.size(), 0.0);
  REQUIRE(tv.size() == up.size());
  double worst = 0, scale = 1;
  for (std::size_t k = 0; k < up.size(); ++k) {
    const double fd = (up[k] - down[k]) / (2 * h);
    worst = std::max(worst, std::abs(tv[k] - fd));
    scale = std::max(scale, std::abs(fd));
  }
  CHECK_MESSAGE(worst <= 1e-6 * scale, c.name << ": |jvp - finite difference| = " << worst);
}

void check_differentiable(const JvpCase& c, const Inputs& x, const Inputs& v) {
  // x -> sum(J(x) v * f(x)) + sum(f(x)): its gradient runs back through the tangent's ops.
  auto g = [&](const Inputs& xs) {
    ForwardScope<double> fwd;
    for (std::size_t i = 0; i < xs.size(); ++i) fwd.set_tangent(xs[i], v[i]);
    const DTensor y = c.f(xs);
    const DTensor t = fwd.tangent(y);
    return t.defined() ? sum(t * y) + sum(y) : sum(y);
  };
  CHECK_GRADCHECK(gradcheck(g, x));
}

void run(const JvpCase& c) {
  Inputs x, v;
  unsigned seed = 21;
  for (const Shape& s : c.shapes) {
    x.push_back(random_tensor(s, seed, c.lo, c.hi));
    v.push_back(random_tensor(s, seed + 100));
    ++seed;
  }
  check_against_differences(c, x, v);
  check_differentiable(c, x, v);
}

}  // namespace

TEST_CASE("jvp sweep: every tensor op's forward rule against finite differences, and differentiable") {
  for (const JvpCase& c : cases()) {
    SUBCASE(c.name.c_str()) { run(c); }
  }
}

TEST_CASE("jvp: a tangent on one input only, the other's taken as zero") {
  const DTensor a = random_tensor({2, 3}, 1), b = random_tensor({3}, 2), v = random_tensor({2, 3}, 3);
  ForwardScope<double> fwd;
  fwd.set_tangent(a, v);
  const DTensor t = fwd.tangent(a * b + b);
  // d(a b + b) along (v, 0) = v b, broadcast over the rows
  const std::vector<double> tv = t.to_vector(), vv = v.to_vector(), bv = b.to_vector();
  for (std::size_t k = 0; k < tv.size(); ++k) CHECK(tv[k] == doctest::Approx(vv[k] * bv[k % 3]));
  SUBCASE("a tensor that depends on no seeded input has no tangent") { CHECK_FALSE(fwd.tangent(exp(b)).defined()); }
  SUBCASE("stop_gradient stops the tangent too") { CHECK_FALSE(fwd.tangent(stop_gradient(a)).defined()); }
}

TEST_CASE("jvp: an op without a forward-derivative rule names itself") {
  // y = x^3 with forward and backward rules only
  auto cube = [](const DTensor& x) {
    return make_op<double>(
        "cube", x.shape(), {x}, [](OpContext<double>& c) { c.out_vec() = c.in_vec(0).cube(); },
        [](OpContext<double>& c) { c.in_grad_vec(0) += 3 * c.in_vec(0).square() * c.out_grad_vec(); });
  };
  const DTensor x = random_tensor({3}, 4), v = random_tensor({3}, 5);
  SUBCASE("outside forward mode it runs as before") {
    CHECK(cube(x).to_vector()[0] == doctest::Approx(std::pow(x.to_vector()[0], 3)));
  }
  SUBCASE("with a tangent on its input it raises") {
    ForwardScope<double> fwd;
    fwd.set_tangent(x, v);
    CHECK(tapegrad::testing::message_of<tapegrad::error>([&] { (void)cube(x); }) ==
          "jvp: op 'cube' has no forward-derivative rule");
  }
  SUBCASE("with tangents elsewhere only, it runs") {
    ForwardScope<double> fwd;
    fwd.set_tangent(v, x);
    CHECK_NOTHROW((void)cube(x));
  }
}
