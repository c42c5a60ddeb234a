// SPDX-License-Identifier: MIT
// Every tensor op against finite differences, in one table.
//
// Each row names a case, gives the input shapes (and the range the random
// inputs are drawn from) and the function to check. A new op adds one row.
// Broadcasting rows cover every path an op can take: equal shapes, a single
// number on either side, a row repeated under a matrix ([2, 3, 4] * [4]), and
// the general case ([3, 1] + [1, 4]).

#include <doctest/doctest.h>

#include <functional>
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

struct SweepCase {
  std::string name;
  std::vector<Shape> shapes;
  std::function<DTensor(const Inputs&)> f;
  double lo = -1.0, hi = 1.0;  // the inputs are drawn from [lo, hi)
};

const std::vector<SweepCase>& sweep() {
  static const std::vector<SweepCase> cases = {
      // ---- arithmetic, with every broadcasting path ----
      {"add [2,3]+[2,3]", {{2, 3}, {2, 3}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"add [3,1]+[1,4]", {{3, 1}, {1, 4}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"add [2,3,4]+[4]", {{2, 3, 4}, {4}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"add [4]+[2,3,4]", {{4}, {2, 3, 4}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"add []+[2,3]", {{}, {2, 3}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"add [2,1,3,1]+[1,2,1,4]", {{2, 1, 3, 1}, {1, 2, 1, 4}}, [](const Inputs& x) { return x[0] + x[1]; }},
      {"sub [2,3]-[2,3]", {{2, 3}, {2, 3}}, [](const Inputs& x) { return x[0] - x[1]; }},
      {"sub [3,1]-[1,4]", {{3, 1}, {1, 4}}, [](const Inputs& x) { return x[0] - x[1]; }},
      {"sub [4]-[2,3,4]", {{4}, {2, 3, 4}}, [](const Inputs& x) { return x[0] - x[1]; }},
      {"sub [2,3]-[]", {{2, 3}, {}}, [](const Inputs& x) { return x[0] - x[1]; }},
      {"mul [2,3]*[2,3]", {{2, 3}, {2, 3}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul [3,1]*[1,4]", {{3, 1}, {1, 4}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul [2,3,4]*[4]", {{2, 3, 4}, {4}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul [3,4]*[2,3,4]", {{3, 4}, {2, 3, 4}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul []*[2,3]", {{}, {2, 3}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul [2,3]*[]", {{2, 3}, {}}, [](const Inputs& x) { return x[0] * x[1]; }},
      {"mul x*x (one input twice)", {{2, 3}}, [](const Inputs& x) { return x[0] * x[0]; }},
      {"div [2,3]/[2,3]", {{2, 3}, {2, 3}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div [3,1]/[1,4]", {{3, 1}, {1, 4}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div [2,3,4]/[4]", {{2, 3, 4}, {4}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div [4]/[2,3,4]", {{4}, {2, 3, 4}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div []/[2,3]", {{}, {2, 3}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"div [2,3]/[]", {{2, 3}, {}}, [](const Inputs& x) { return x[0] / x[1]; }, pos_lo, pos_hi},
      {"neg", {{2, 3}}, [](const Inputs& x) { return -x[0]; }},
      {"x + 2, 2 + x", {{2, 3}}, [](const Inputs& x) { return (x[0] + 2.0) * (2.0 + x[0]); }},
      {"x - 2, 2 - x", {{2, 3}}, [](const Inputs& x) { return (x[0] - 2.0) * (2.0 - x[0]); }},
      {"x * 3, 3 * x", {{2, 3}}, [](const Inputs& x) { return (x[0] * 3.0) * (3.0 * x[0]); }},
      {"x / 2, 2 / x", {{2, 3}}, [](const Inputs& x) { return (x[0] / 2.0) + (2.0 / x[0]); }, pos_lo, pos_hi},
      // ---- math functions ----
      {"exp", {{2, 3}}, [](const Inputs& x) { return exp(x[0]); }},
      {"log", {{2, 3}}, [](const Inputs& x) { return log(x[0]); }, pos_lo, pos_hi},
      {"sqrt", {{2, 3}}, [](const Inputs& x) { return sqrt(x[0]); }, pos_lo, pos_hi},
      {"pow x^3", {{2, 3}}, [](const Inputs& x) { return pow(x[0], 3.0); }},
      {"pow x^0.5", {{2, 3}}, [](const Inputs& x) { return pow(x[0], 0.5); }, pos_lo, pos_hi},
      {"pow x^0", {{2, 3}}, [](const Inputs& x) { return pow(x[0], 0.0) * x[0]; }},
      {"pow [2,3]^[2,3]", {{2, 3}, {2, 3}}, [](const Inputs& x) { return pow(x[0], x[1]); }, pos_lo, pos_hi},
      {"pow [3,1]^[1,4]", {{3, 1}, {1, 4}}, [](const Inputs& x) { return pow(x[0], x[1]); }, pos_lo, pos_hi},
      {"abs", {{2, 3}}, [](const Inputs& x) { return abs(x[0]); }},
      {"tanh", {{2, 3}}, [](const Inputs& x) { return tanh(x[0]); }},
      {"sigmoid", {{2, 3}}, [](const Inputs& x) { return sigmoid(x[0]); }, -4.0, 4.0},
      {"relu", {{2, 3}}, [](const Inputs& x) { return relu(x[0]); }},
      {"gelu", {{2, 3}}, [](const Inputs& x) { return gelu(x[0]); }, -3.0, 3.0},
      {"clamp", {{3, 4}}, [](const Inputs& x) { return clamp(x[0], -0.5, 0.5); }},
      {"where [3,1] ? [3,4] : [4]", {{3, 4}, {4}}, [](const Inputs& x) { return where(mask_3x1(), x[0], x[1]); }},
      {"where [3,1] ? [] : [3,4]", {{}, {3, 4}}, [](const Inputs& x) { return where(mask_3x1(), x[0], x[1]); }},
      {"bias_act relu", {{2, 3, 4}, {4}}, [](const Inputs& x) { return bias_act(x[0], x[1], Activation::relu); }},
      {"bias_act gelu", {{5, 4}, {4}}, [](const Inputs& x) { return bias_act(x[0], x[1], Activation::gelu); }},
      {"bias_act none", {{5, 4}, {4}}, [](const Inputs& x) { return bias_act(x[0], x[1], Activation::none); }},
      {"sin", {{2, 3}}, [](const Inputs& x) { return sin(x[0]); }, -3.0, 3.0},
      {"cos", {{2, 3}}, [](const Inputs& x) { return cos(x[0]); }, -3.0, 3.0},
      {"log1p", {{2, 3}}, [](const Inputs& x) { return log1p(x[0]); }, -0.5, 2.0},
      {"softplus", {{2, 3}}, [](const Inputs& x) { return softplus(x[0]); }, -4.0, 4.0},
      {"silu", {{2, 3}}, [](const Inputs& x) { return silu(x[0]); }, -4.0, 4.0},
      {"leaky_relu", {{3, 4}}, [](const Inputs& x) { return leaky_relu(x[0]); }},
      {"leaky_relu slope 0.2", {{3, 4}}, [](const Inputs& x) { return leaky_relu(x[0], 0.2); }},
      {"silu * softplus [2,3,4]*[4]", {{2, 3, 4}, {4}}, [](const Inputs& x) { return silu(x[0]) * softplus(x[1]); }},
      // ---- reductions: all elements, each axis, with and without keepdim ----
      {"sum all", {{2, 3, 4}}, [](const Inputs& x) { return sum(x[0]); }},
      {"sum axes {0, 2}", {{2, 3, 4}}, [](const Inputs& x) { return sum(x[0], {0, 2}); }},
      {"sum axes {-1, 1} keepdim", {{2, 3, 4}}, [](const Inputs& x) { return sum(x[0], {-1, 1}, true); }},
      {"mean all", {{2, 3, 4}}, [](const Inputs& x) { return mean(x[0]); }},
      {"mean axes {0, 1} keepdim", {{2, 3, 4}}, [](const Inputs& x) { return mean(x[0], {0, 1}, true); }},
      {"max all", {{2, 3, 4}}, [](const Inputs& x) { return max(x[0]); }},
      {"logsumexp all", {{2, 3, 4}}, [](const Inputs& x) { return logsumexp(x[0]); }, -3.0, 3.0},
      {"min all", {{2, 3, 4}}, [](const Inputs& x) { return min(x[0]); }},
      {"max - min along -1", {{3, 4}}, [](const Inputs& x) { return max(x[0], -1) - min(x[0], -1); }},
      // ---- matmul ----
      {"matmul [3,4]x[4,5]", {{3, 4}, {4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [4]x[4,5]", {{4}, {4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [3,4]x[4]", {{3, 4}, {4}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [4]x[4]", {{4}, {4}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [2,3,4]x[4,5] (folded batch)", {{2, 3, 4}, {4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [2,3,4]x[2,4,5]", {{2, 3, 4}, {2, 4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [2,1,3,4]x[3,4,5]", {{2, 1, 3, 4}, {3, 4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [3,4]x[2,4,5]", {{3, 4}, {2, 4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul [4,3]^T x [4,5]", {{4, 3}, {4, 5}}, [](const Inputs& x) { return matmul(x[0], x[1], true, false); }},
      {"matmul [3,4] x [5,4]^T", {{3, 4}, {5, 4}}, [](const Inputs& x) { return matmul(x[0], x[1], false, true); }},
      {"matmul [4,3]^T x [5,4]^T", {{4, 3}, {5, 4}}, [](const Inputs& x) { return matmul(x[0], x[1], true, true); }},
      {"matmul [2,3,4] x [5,4]^T (folded)", {{2, 3, 4}, {5, 4}},
       [](const Inputs& x) { return matmul(x[0], x[1], {.transpose_b = true}); }},
      {"matmul [2,1,4,3]^T x [3,5,4]^T", {{2, 1, 4, 3}, {3, 5, 4}},
       [](const Inputs& x) { return matmul(x[0], x[1], true, true); }},
      {"matmul [2,4,3]^T x [1,4,5]", {{2, 4, 3}, {1, 4, 5}},
       [](const Inputs& x) { return matmul(x[0], x[1], {.transpose_a = true}); }},
      // ---- shape ops ----
      {"reshape [2,3,4] -> [-1, 6]", {{2, 3, 4}}, [](const Inputs& x) { return reshape(x[0], {-1, 6}); }},
      {"transpose [3,4]", {{3, 4}}, [](const Inputs& x) { return transpose(x[0]); }},
      {"transpose [2,3,4] dims 0, 2", {{2, 3, 4}}, [](const Inputs& x) { return transpose(x[0], 0, 2); }},
      {"permute [2,3,4,5] -> {0, 2, 1, 3}", {{2, 3, 4, 5}},
       [](const Inputs& x) { return permute(x[0], {0, 2, 1, 3}); }},
      {"permute [2,3,4] -> {2, 0, 1}", {{2, 3, 4}}, [](const Inputs& x) { return permute(x[0], {2, 0, 1}); }},
      {"narrow [3,5] dim 1", {{3, 5}}, [](const Inputs& x) { return narrow(x[0], 1, 1, 3); }},
      {"slice [2,3,4] dim -1 [1, -1)", {{2, 3, 4}}, [](const Inputs& x) { return slice(x[0], -1, 1, -1); }},
      {"concat dim 1", {{2, 1, 3}, {2, 4, 3}}, [](const Inputs& x) { return concat(Inputs{x[0], x[1], x[0]}, 1); }},
      {"concat dim -1", {{2, 2}, {2, 3}}, [](const Inputs& x) { return concat(Inputs{x[0], x[1]}, -1); }},
      {"split sizes", {{2, 6}},
       [](const Inputs& x) {
         auto p = split(x[0], std::vector<index_t>{1, 2, 3}, 1);
         return p[0] * sum(p[1]) + p[2];
       }},
      {"split chunk", {{5, 2}}, [](const Inputs& x) { auto p = split(x[0], 2, 0); return p[0] * p[1] + sum(p[2]); }},
      {"index_select with repeats", {{4, 3}},
       [](const Inputs& x) { return index_select(x[0], 0, {3, 0, 3, 3}); }},
      {"index_select dim 1 of [2,4,3]", {{2, 4, 3}}, [](const Inputs& x) { return index_select(x[0], 1, {1, 1, 2}); }},
      {"squeeze all", {{2, 1, 3, 1}}, [](const Inputs& x) { return squeeze(x[0]) * squeeze(x[0]); }},
      {"squeeze dim -1", {{2, 3, 1}}, [](const Inputs& x) { return matmul(squeeze(x[0], -1), transpose(x[0], 0, 2)); }},
      {"unsqueeze 1 and -1", {{2, 3}}, [](const Inputs& x) { return unsqueeze(x[0], 1) * unsqueeze(x[0], -1); }},
      {"unsqueeze 0", {{2, 3}}, [](const Inputs& x) { return unsqueeze(x[0], 0) * x[0]; }},
      {"flatten all", {{2, 3, 4}}, [](const Inputs& x) { return flatten(x[0]) * flatten(x[0]); }},
      {"flatten 1..2 of [2,3,4,2]", {{2, 3, 4, 2}}, [](const Inputs& x) { return flatten(x[0], 1, 2); }},
      {"stack dim 0", {{2, 3}, {2, 3}}, [](const Inputs& x) { return stack(Inputs{x[0], x[1], x[0]}); }},
      {"stack dim 1", {{2, 3}, {2, 3}}, [](const Inputs& x) { return stack(Inputs{x[0], x[1]}, 1) * x[1]; }},
      {"stack dim -1 of [2,2,3]", {{2, 2, 3}, {2, 2, 3}}, [](const Inputs& x) { return stack(Inputs{x[1], x[0]}, -1); }},
      // ---- gather and scatter_add ----
      {"gather dim 1 with repeats", {{3, 4}},
       [](const Inputs& x) { return gather(x[0], 1, {3, 3, 0, 1, 2, 1, 0, 0, 0}, Shape{3, 3}); }},
      {"gather dim 0, index smaller than x", {{3, 4}},
       [](const Inputs& x) { return gather(x[0], 0, {2, 0, 1, 2, 2, 2}, Shape{2, 3}); }},
      {"gather dim -1 of [2,3,4]", {{2, 3, 4}},
       [](const Inputs& x) { return gather(x[0], -1, {3, 0, 1, 1, 2, 0}, Shape{2, 3, 1}); }},
      {"scatter_add dim 1 with repeats", {{3, 4}, {3, 2}},
       [](const Inputs& x) { return scatter_add(x[0], 1, {3, 3, 0, 1, 2, 2}, x[1]); }},
      {"scatter_add dim 0 into [3,4]", {{3, 4}, {2, 4}},
       [](const Inputs& x) { return scatter_add(x[0], 0, {2, 0, 1, 2, 1, 1, 0, 2}, x[1]) * x[0]; }},
      {"gather of scatter_add", {{2, 3}, {2, 2}},
       [](const Inputs& x) { return gather(scatter_add(x[0], 1, {0, 0, 2, 1}, x[1]), 1, {0, 1, 2, 2}, Shape{2, 2}); }},
      // ---- compositions through transposed and permuted tensors ----
      {"matmul(transpose(a), b)", {{4, 3}, {4, 5}}, [](const Inputs& x) { return matmul(transpose(x[0]), x[1]); }},
      {"sum(permute(x), 1)", {{2, 3, 4}}, [](const Inputs& x) { return sum(permute(x[0], {2, 0, 1}), 1); }},
      {"attention-like scores", {{2, 3, 4}, {2, 3, 4}},
       [](const Inputs& x) {
         DTensor q = reshape(x[0], {2, 3, 2, 2}), k = reshape(x[1], {2, 3, 2, 2});
         return matmul(permute(q, {0, 2, 1, 3}), permute(k, {0, 2, 1, 3}), {.transpose_b = true});
       }},
  };
  return cases;
}

// One row per (axis, keepdim) for a reduction: every axis of [2, 3, 4], with negatives.
void add_axis_rows(std::vector<SweepCase>& rows, const std::string& name, DTensor (*f)(const DTensor&, int, bool),
                   double lo, double hi) {
  for (int axis : {0, 1, 2, -1, -2})
    for (bool keep : {false, true})
      rows.push_back({name + " axis " + std::to_string(axis) + (keep ? " keepdim" : ""),
                      {{2, 3, 4}},
                      [f, axis, keep](const Inputs& x) { return f(x[0], axis, keep); },
                      lo,
                      hi});
}

std::vector<SweepCase> axis_sweep() {
  std::vector<SweepCase> rows;
  add_axis_rows(
      rows, "sum", [](const DTensor& x, int a, bool k) { return sum(x, a, k); }, -1, 1);
  add_axis_rows(
      rows, "mean", [](const DTensor& x, int a, bool k) { return mean(x, a, k); }, -1, 1);
  add_axis_rows(
      rows, "max", [](const DTensor& x, int a, bool k) { return max(x, a, k); }, -1, 1);
  add_axis_rows(
      rows, "logsumexp", [](const DTensor& x, int a, bool k) { return logsumexp(x, a, k); }, -3, 3);
  add_axis_rows(
      rows, "min", [](const DTensor& x, int a, bool k) { return min(x, a, k); }, -1, 1);
  return rows;
}

// The fused normalizations and attention with a mask of each broadcastable
// shape, queries and keys of different lengths.
std::vector<SweepCase> fused_sweep() {
  auto attend = [](Shape mask) {
    return [mask](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], every_nth(mask, 3, 1)); };
  };
  return {
      {"rms_norm with weight [2,3,4]", {{2, 3, 4}, {4}}, [](const Inputs& x) { return rms_norm(x[0], x[1]); }},
      {"rms_norm without weight", {{3, 5}}, [](const Inputs& x) { return rms_norm(x[0]); }},
      {"rms_norm eps 0.1, weight from a product",
       {{2, 4}, {4}},
       [](const Inputs& x) { return rms_norm(x[0], x[1] * x[1], 0.1); }},
      {"attention Lq 2, Lk 5, mask [5]", {{2, 2, 4}, {2, 5, 4}, {2, 5, 3}}, attend({5})},
      {"attention mask [Lq, Lk] = [3, 4]", {{2, 3, 4}, {2, 4, 4}, {2, 4, 2}}, attend({3, 4})},
      {"attention mask [B,1,1,Lk]", {{2, 2, 3, 4}, {2, 2, 5, 4}, {2, 2, 5, 4}}, attend({2, 1, 1, 5})},
      {"attention mask [B,H,Lq,Lk]", {{2, 2, 3, 2}, {2, 2, 4, 2}, {2, 2, 4, 3}}, attend({2, 2, 3, 4})},
      {"attention mask [B,1,Lq,1] hides whole queries",
       {{2, 2, 3, 2}, {2, 2, 4, 2}, {2, 2, 4, 3}},
       attend({2, 1, 3, 1})},
      {"attention causal_mask as a mask",
       {{2, 4, 3}, {2, 4, 3}, {2, 4, 3}},
       [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], causal_mask<double>(4)); }},
  };
}

void run(const SweepCase& c) {
  Inputs in;
  unsigned seed = 11;
  for (const Shape& s : c.shapes) in.push_back(random_tensor(s, seed++, c.lo, c.hi));
  CHECK_GRADCHECK(gradcheck(c.f, in));
}

}  // namespace

TEST_CASE("gradcheck sweep: every tensor op against finite differences") {
  for (const SweepCase& c : sweep()) {
    SUBCASE(c.name.c_str()) { run(c); }
  }
}

TEST_CASE("gradcheck sweep: each reduction over each axis, with and without keepdim") {
  for (const SweepCase& c : axis_sweep()) {
    SUBCASE(c.name.c_str()) { run(c); }
  }
}

TEST_CASE("gradcheck sweep: rms_norm and attention with masks of every broadcastable shape") {
  for (const SweepCase& c : fused_sweep()) {
    SUBCASE(c.name.c_str()) { run(c); }
  }
}
