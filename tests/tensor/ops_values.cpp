// SPDX-License-Identifier: MIT
// The tensor ops on numbers small enough to redo by hand: values and
// gradients of broadcasting arithmetic, the math functions at their edges,
// matmul, the reductions and the shape ops. (Finite-difference checks of
// every op live in gradcheck_sweep.cpp.)

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::contains;
using tapegrad::testing::DTensor;
using tapegrad::testing::grad_of;
using tapegrad::testing::inf;
using tapegrad::testing::message_of;

namespace {

using V = std::vector<double>;
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

}  // namespace

TEST_CASE("broadcasting: [3, 1] + [1, 4] is a 3 x 4 table") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor a = from<double>({{0}, {10}, {20}}, true);
  DTensor b = from<double>({{1, 2, 3, 4}}, true);
  DTensor y = a + b;  // y[i][j] = a[i] + b[j]
  REQUIRE(y.shape() == Shape{3, 4});
  CHECK(y.at({2, 3}) == 24.0);
  CHECK(y.at({1, 0}) == 11.0);

  SUBCASE("each input's gradient sums over the dimension it was stretched along") {
    sum(y).backward();
    CHECK(grad_of(a) == V{4, 4, 4});     // each a[i] was used in 4 columns
    CHECK(grad_of(b) == V{3, 3, 3, 3});  // each b[j] in 3 rows
  }
}

TEST_CASE("broadcasting: a weight row [4] under [2, 3, 4]") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = reshape(arange<double>(24), {2, 3, 4});  // x[r][j] = 4r + j over the 6 rows r
  DTensor w = from<double>({1, 0, -1, 2}, true);
  DTensor y = sum(x * w);
  // Row r contributes (4r) - (4r + 2) + 2 (4r + 3) = 8r + 4; rows 0..5 give 8 * 15 + 24.
  CHECK(y.item() == 144.0);
  y.backward();
  // dy/dw[j] = sum over rows of x[r][j] = 4 (0 + ... + 5) + 6 j = 60 + 6 j.
  CHECK(grad_of(w) == V{60, 66, 72, 78});
}

TEST_CASE("a plain number on either side of an operator") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({1, 2, 4}, true);
  CHECK((x * 2.0).to_vector() == V{2, 4, 8});
  CHECK((2.0 * x).to_vector() == V{2, 4, 8});
  CHECK((10.0 - x).to_vector() == V{9, 8, 6});
  CHECK((x - 1.0).to_vector() == V{0, 1, 3});
  CHECK((4.0 / x).to_vector() == V{4, 2, 1});
  CHECK((x / 4.0).to_vector() == V{0.25, 0.5, 1});
  CHECK((-x).to_vector() == V{-1, -2, -4});

  SUBCASE("a float tensor takes a double literal") {
    Tensor f = from({1, 2});
    CHECK((f * 2.0).to_vector() == std::vector<float>{2, 4});
  }
  SUBCASE("d(4/x)/dx = -4/x^2") {
    sum(4.0 / x).backward();
    CHECK(grad_of(x) == V{-4, -1, -0.25});
  }
}

TEST_CASE("math functions at the points worth knowing") {
  Tape tape;
  Tape::Scope use(tape);

  SUBCASE("relu'(0) = 0 and abs'(0) = 0, as for scalars") {
    DTensor x = from<double>({-1, 0, 2}, true);
    sum(relu(x) + abs(x)).backward();
    CHECK(grad_of(x) == V{-1, 0, 2});  // relu' = [0, 0, 1], abs' = [-1, 0, 1]
  }
  SUBCASE("sqrt at 0: an infinite slope, never NaN") {
    DTensor x = from<double>({0, 4}, true);
    DTensor y = sqrt(x);
    sum(y).backward();
    CHECK(grad_of(x)[0] == inf);
    CHECK(grad_of(x)[1] == 0.25);  // 1 / (2 sqrt 4)
  }
  SUBCASE("sigmoid: 1/2 with slope 1/4 at 0, and no NaN far out") {
    DTensor x = from<double>({0, -1000, 1000}, true);
    DTensor s = sigmoid(x);
    CHECK(s.to_vector() == V{0.5, 0, 1});
    sum(s).backward();
    CHECK(grad_of(x) == V{0.25, 0, 0});
  }
  SUBCASE("gelu: 0 at 0 with slope 1/2; gelu(1) = 0.8412") {
    DTensor x = from<double>({0, 1}, true);
    DTensor y = gelu(x);
    CHECK(y.at({0}) == 0.0);
    CHECK(y.at({1}) == doctest::Approx(0.5 * (1 + std::tanh(0.7978845608 * 1.044715))));
    sum(y).backward();
    CHECK(grad_of(x)[0] == doctest::Approx(0.5));
  }
  SUBCASE("pow: x^2 at 3 and x^y at (2, 3)") {
    DTensor x = from<double>({3}, true), a = from<double>({2}, true), b = from<double>({3}, true);
    DTensor y = pow(x, 2.0) + pow(a, b);
    CHECK(y.item() == 17.0);  // 9 + 8
    y.backward();
    CHECK(x.grad()[0] == 6.0);                                   // 2x
    CHECK(a.grad()[0] == doctest::Approx(12.0));                 // b a^(b-1)
    CHECK(b.grad()[0] == doctest::Approx(8.0 * std::log(2.0)));  // a^b ln a
  }
  SUBCASE("clamp passes the gradient on [lo, hi], bounds included") {
    DTensor x = from<double>({-2, -0.5, 0, 0.5, 2}, true);
    DTensor y = clamp(x, -0.5, 0.5);
    CHECK(y.to_vector() == V{-0.5, -0.5, 0, 0.5, 0.5});
    sum(y).backward();
    CHECK(grad_of(x) == V{0, 1, 1, 1, 0});
  }
}

TEST_CASE("where: the branch not taken gets exactly 0") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor mask = from<double>({1, 0, 1});
  DTensor a = from<double>({1, 2, 3}, true);
  DTensor b = from<double>({inf, 5, not_a_number}, true);
  DTensor y = where(mask, a, b);
  CHECK(y.to_vector() == V{1, 5, 3});

  SUBCASE("even with an infinite incoming gradient") {
    y.backward(DTensor({3}, V{inf, 1, inf}));
    CHECK(grad_of(a) == V{inf, 0, inf});
    CHECK(grad_of(b) == V{0, 1, 0});  // not NaN at the inf and NaN entries
  }
  SUBCASE("and the zero passes through the ops behind it: where(x > 0, sqrt(x), 0)") {
    DTensor x = from<double>({-4, 0, 4}, true);
    DTensor positive = from<double>({0, 0, 1});  // the mask x > 0, written out
    DTensor z = where(positive, sqrt(x), zeros<double>({}));
    sum(z).backward();
    CHECK(grad_of(x) == V{0, 0, 0.25});  // sqrt(-4) is NaN and sqrt'(0) infinite, yet both get 0
  }
}

TEST_CASE("matmul on 2 x 2 matrices, by hand") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor a = from<double>({{1, 2}, {3, 4}}, true);
  DTensor b = from<double>({{5, 6}, {7, 8}}, true);
  DTensor c = matmul(a, b);
  CHECK(c.to_vector() == V{19, 22, 43, 50});

  SUBCASE("d sum(AB)/dA = 1 B^T, d sum(AB)/dB = A^T 1") {
    sum(c).backward();
    CHECK(grad_of(a) == V{11, 15, 11, 15});  // row sums of B: 5 + 6, 7 + 8
    CHECK(grad_of(b) == V{4, 4, 6, 6});      // column sums of A: 1 + 3, 2 + 4
  }
  SUBCASE("the transpose flags read an operand transposed") {
    CHECK(matmul(a, b, false, true).to_vector() == V{17, 23, 39, 53});            // A B^T
    CHECK(matmul(a, b, {.transpose_a = true}).to_vector() == V{26, 30, 38, 44});  // A^T B
    CHECK(matmul(a, b, true, true).to_vector() == matmul(transpose(a), transpose(b)).to_vector());
  }
  SUBCASE("vectors: a row on the left, a column on the right, a dot product of two") {
    DTensor v = from<double>({1, 1});
    CHECK(matmul(v, b).to_vector() == V{12, 14});
    CHECK(matmul(a, v).to_vector() == V{3, 7});
    CHECK(matmul(v, v).shape() == Shape{});
    CHECK(matmul(v, v).item() == 2.0);
  }
  SUBCASE("batch dimensions broadcast: [2, 1, 2, 2] x [3, 2, 2] -> [2, 3, 2, 2]") {
    DTensor x = zeros<double>({2, 1, 2, 2}), y = zeros<double>({3, 2, 2});
    CHECK(matmul(x, y).shape() == Shape{2, 3, 2, 2});
  }
}

TEST_CASE("reductions of [[1, 2, 3], [4, 5, 6]]") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{1, 2, 3}, {4, 5, 6}}, true);

  CHECK(sum(x).item() == 21.0);
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x, 0).to_vector() == V{5, 7, 9});
  CHECK(sum(x, -1).to_vector() == V{6, 15});
  CHECK(sum(x, 1, true).shape() == Shape{2, 1});
  CHECK(sum(x, {0, 1}, true).shape() == Shape{1, 1});
  CHECK(mean(x).item() == 3.5);
  CHECK(mean(x, 1).to_vector() == V{2, 5});
  CHECK(max(x).item() == 6.0);
  CHECK(max(x, 0).to_vector() == V{4, 5, 6});
  CHECK(max(x, 1, true).to_vector() == V{3, 6});

  SUBCASE("mean spreads 1/n; max sends everything to the arg-max") {
    (mean(x) + max(x)).backward();
    CHECK(grad_of(x) == V{1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6 + 1});
  }
  SUBCASE("a tie goes to the first index") {
    DTensor t = from<double>({3, 1, 3}, true);
    max(t).backward();
    CHECK(grad_of(t) == V{1, 0, 0});
  }
}

TEST_CASE("logsumexp is stable and its gradient is the softmax") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({0, std::log(3.0)}, true);
  DTensor y = logsumexp(x);
  CHECK(y.item() == doctest::Approx(std::log(4.0)));  // log(1 + 3)
  y.backward();
  CHECK(x.grad()[0] == doctest::Approx(0.25));
  CHECK(x.grad()[1] == doctest::Approx(0.75));

  SUBCASE("no overflow at 1000") {
    CHECK(logsumexp(from<double>({1000, 1000})).item() == doctest::Approx(1000 + std::log(2.0)));
  }
  SUBCASE("a row of -inf gives -inf and a zero gradient, not NaN") {
    DTensor m = from<double>({{-inf, -inf}, {0, 0}}, true);
    DTensor r = logsumexp(m, 1);
    CHECK(r.at({0}) == -inf);
    r.backward(DTensor({2}, V{1, 1}));
    CHECK(grad_of(m) == V{0, 0, 0.5, 0.5});
  }
}

TEST_CASE("shape ops move values and move gradients back") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{1, 2, 3}, {4, 5, 6}}, true);

  CHECK(reshape(x, {3, -1}).shape() == Shape{3, 2});
  CHECK(reshape(x, {-1}).to_vector() == V{1, 2, 3, 4, 5, 6});
  CHECK(transpose(x).to_vector() == V{1, 4, 2, 5, 3, 6});
  CHECK(permute(reshape(x, {1, 2, 3}), {2, 0, 1}).shape() == Shape{3, 1, 2});
  CHECK(narrow(x, 1, 1, 2).to_vector() == V{2, 3, 5, 6});
  CHECK(slice(x, -1, 0, -1).to_vector() == V{1, 2, 4, 5});
  CHECK(concat(std::vector<DTensor>{x, x}, 0).shape() == Shape{4, 3});
  CHECK(concat(std::vector<DTensor>{x, narrow(x, 1, 0, 1)}, 1).to_vector() == V{1, 2, 3, 1, 4, 5, 6, 4});

  SUBCASE("split into pieces and back") {
    auto p = split(x, std::vector<index_t>{1, 2}, 1);
    REQUIRE(p.size() == 2);
    CHECK(p[1].to_vector() == V{2, 3, 5, 6});
    auto q = split(x, 2, 1);  // chunks of 2: the last is shorter
    CHECK(q[0].shape() == Shape{2, 2});
    CHECK(q[1].shape() == Shape{2, 1});
  }
  SUBCASE("index_select: repeated rows add up in the gradient") {
    DTensor rows = index_select(x, 0, {1, 0, 1});
    CHECK(rows.to_vector() == V{4, 5, 6, 1, 2, 3, 4, 5, 6});
    sum(rows).backward();
    CHECK(grad_of(x) == V{1, 1, 1, 2, 2, 2});
  }
  SUBCASE("transpose's gradient is transposed back") {
    sum(transpose(x) * from<double>({{1, 0}, {0, 0}, {0, 2}})).backward();
    CHECK(grad_of(x) == V{1, 0, 0, 0, 0, 2});
  }
}

TEST_CASE("bias_act: a bias row and an activation in one node") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{-1, 2}, {3, -4}}, true);
  DTensor b = from<double>({0.5, 1}, true);
  DTensor y = bias_act(x, b, Activation::relu);
  CHECK(y.to_vector() == V{0, 3, 3.5, 0});
  CHECK(y.to_vector() == relu(x + b).to_vector());
  sum(y).backward();
  CHECK(grad_of(x) == V{0, 1, 1, 0});
  CHECK(grad_of(b) == V{1, 1});  // one active row per column
}

// ---------------------------------------------------------------------------
// sin, cos, log1p, softplus, silu, leaky_relu

TEST_CASE("sin and cos at 0, pi/6 and pi/2, and their slopes") {
  Tape tape;
  Tape::Scope use(tape);
  const double pi = std::numbers::pi;
  DTensor x = from<double>({0.0, pi / 6, pi / 2}, true);
  SUBCASE("sin x = 0, 1/2, 1; d/dx = cos x = 1, sqrt(3)/2, 0") {
    DTensor y = sin(x);
    CHECK(y.at({1}) == doctest::Approx(0.5));
    CHECK(y.at({2}) == doctest::Approx(1.0));
    sum(y).backward();
    CHECK(grad_of(x)[0] == doctest::Approx(1.0));
    CHECK(grad_of(x)[1] == doctest::Approx(std::sqrt(3.0) / 2));
    CHECK(std::abs(grad_of(x)[2]) < 1e-15);
  }
  SUBCASE("cos x = 1, sqrt(3)/2, 0; d/dx = -sin x = 0, -1/2, -1") {
    DTensor y = cos(x);
    CHECK(y.at({0}) == 1.0);
    CHECK(y.at({1}) == doctest::Approx(std::sqrt(3.0) / 2));
    sum(y).backward();
    CHECK(grad_of(x)[0] == 0.0);
    CHECK(grad_of(x)[1] == doctest::Approx(-0.5));
    CHECK(grad_of(x)[2] == doctest::Approx(-1.0));
  }
}

TEST_CASE("log1p keeps the digits that log(1 + x) loses") {
  Tape tape;
  Tape::Scope use(tape);
  const double e = std::numbers::e;
  DTensor x = from<double>({0.0, e - 1, 1e-12}, true);
  DTensor y = log1p(x);
  CHECK(y.at({0}) == 0.0);
  CHECK(y.at({1}) == doctest::Approx(1.0));
  // log(1 + 1e-12) = 1e-12 - 5e-25 + ...: log1p keeps it to the last digit,
  // while 1 + 1e-12 rounds before the log sees it.
  CHECK(y.at({2}) == doctest::Approx(1e-12).epsilon(1e-12));
  sum(y).backward();  // d/dx = 1 / (1 + x) = 1, 1/e, 1 - 1e-12
  CHECK(grad_of(x)[0] == 1.0);
  CHECK(grad_of(x)[1] == doctest::Approx(1 / e));
}

TEST_CASE("softplus: log(1 + e^x) without overflow, its slope the sigmoid") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({0, 2, -2, 800, -800}, true);
  DTensor y = softplus(x);
  CHECK(y.at({0}) == doctest::Approx(std::log(2.0)));       // log 2 = 0.693147
  CHECK(y.at({1}) == doctest::Approx(2.126928011042972));   // log(1 + e^2)
  CHECK(y.at({2}) == doctest::Approx(0.1269280110429725));  // log(1 + e^-2) = softplus(2) - 2
  CHECK(y.at({3}) == 800.0);                                // e^800 overflows; softplus does not
  CHECK(y.at({4}) == 0.0);                                  // e^-800 underflows to 0
  sum(y).backward();
  CHECK(grad_of(x)[0] == 0.5);
  CHECK(grad_of(x)[1] == doctest::Approx(0.8807970779778823));  // 1 / (1 + e^-2)
  CHECK(grad_of(x)[2] == doctest::Approx(0.1192029220221176));
  CHECK(grad_of(x)[3] == 1.0);
  CHECK(grad_of(x)[4] == 0.0);
}

TEST_CASE("silu: x sigmoid(x), slope s (1 + x (1 - s))") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({0, 1, -1}, true);
  DTensor y = silu(x);
  const double s1 = 1 / (1 + std::exp(-1.0));  // sigmoid(1) = 0.731059
  CHECK(y.at({0}) == 0.0);
  CHECK(y.at({1}) == doctest::Approx(s1));
  CHECK(y.at({2}) == doctest::Approx(-(1 - s1)));  // -1 * sigmoid(-1)
  sum(y).backward();
  CHECK(grad_of(x)[0] == 0.5);                                   // s(0) (1 + 0)
  CHECK(grad_of(x)[1] == doctest::Approx(s1 * (2 - s1)));        // 0.927671
  CHECK(grad_of(x)[2] == doctest::Approx((1 - s1) * (1 - s1)));  // s(-1) (1 - s(1)) = 0.072329
}

TEST_CASE("leaky_relu: slope 1 above 0, the given slope at and below 0") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({-2, 0, 3}, true);
  DTensor y = leaky_relu(x, 0.1);
  CHECK(y.to_vector() == V{-0.2, 0, 3});
  sum(y).backward();
  CHECK(grad_of(x) == V{0.1, 0.1, 1});  // at 0 the slope, as PyTorch
  SUBCASE("the default slope is 0.01") { CHECK(leaky_relu(x).at({0}) == -0.02); }
}

// ---------------------------------------------------------------------------
// min, argmax, argmin

TEST_CASE("min of [[3, 1, 1], [0, 5, -2]]: ties send the gradient to the first") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{3, 1, 1}, {0, 5, -2}}, true);
  SUBCASE("all elements") {
    DTensor m = min(x);
    CHECK(m.item() == -2.0);
    m.backward();
    CHECK(grad_of(x) == V{0, 0, 0, 0, 0, 1});
  }
  SUBCASE("along axis 1: row 0 has two 1s, the first takes the gradient") {
    DTensor m = min(x, 1);
    CHECK(m.to_vector() == V{1, -2});
    sum(m).backward();
    CHECK(grad_of(x) == V{0, 1, 0, 0, 0, 1});
  }
  SUBCASE("along axis 0, keepdim") {
    DTensor m = min(x, 0, true);
    CHECK(m.shape() == Shape{1, 3});
    CHECK(m.to_vector() == V{0, 1, -2});
  }
  SUBCASE("an empty axis has no minimum") {
    CHECK(contains(message_of<value_error>([] { min(DTensor({2, 0}), 1); }), "min: the reduced axis of shape [2, 0]"));
  }
}

TEST_CASE("argmax and argmin return positions, first on ties") {
  DTensor x = from<double>({{3, 1, 1}, {0, 5, -2}});
  CHECK(argmax(x) == 4);  // the 5, flat position 4
  CHECK(argmin(x) == 5);  // the -2
  CHECK(argmax(x, 1) == std::vector<index_t>{0, 1});
  CHECK(argmin(x, 1) == std::vector<index_t>{1, 2});  // 1 and 1 tie in row 0: the first
  CHECK(argmax(x, 0) == std::vector<index_t>{0, 1, 0});
  CHECK(argmax(from<double>({2, 2, 2})) == 0);
  SUBCASE("they feed cross_entropy's targets as they are") {
    DTensor logits = from<double>({{0.1, 2.0, -1.0}, {3.0, 0.0, 0.5}});
    const std::vector<index_t> best = argmax(logits, -1);
    CHECK(best == std::vector<index_t>{1, 0});
    CHECK(cross_entropy(logits, best).item() > 0.0);
  }
  SUBCASE("errors name the op and the shape") {
    CHECK(contains(message_of<value_error>([] { argmax(DTensor({0})); }), "argmax: shape [0] has no elements"));
    CHECK(contains(message_of<index_error>([&] { argmin(x, 2); }), "argmin: dimension 2 out of range for rank 2"));
    CHECK(contains(message_of<value_error>([] { argmax(DTensor({3, 0}), 1); }), "argmax: dimension 1 of [3, 0]"));
  }
}

// ---------------------------------------------------------------------------
// stack, squeeze, unsqueeze, flatten

TEST_CASE("stack: [1, 2] and [3, 4] as rows or as columns") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor a = from<double>({1, 2}, true), b = from<double>({3, 4}, true);
  SUBCASE("dim 0: one row each") {
    DTensor s = stack({a, b});
    CHECK(s.shape() == Shape{2, 2});
    CHECK(s.to_vector() == V{1, 2, 3, 4});
  }
  SUBCASE("dim -1: one column each; the gradient is each column back") {
    DTensor s = stack({a, b}, -1);
    CHECK(concat({unsqueeze(a, 1), unsqueeze(b, 1)}, 1).to_vector() == s.to_vector());  // the same, by concat
    CHECK(s.shape() == Shape{2, 2});
    CHECK(s.to_vector() == V{1, 3, 2, 4});
    sum(s * from<double>({{10, 20}, {30, 40}})).backward();
    CHECK(grad_of(a) == V{10, 30});
    CHECK(grad_of(b) == V{20, 40});
  }
  SUBCASE("errors: shapes that differ, no tensors, a dimension beyond rank + 1") {
    const std::string m = message_of<shape_error>([&] { stack(std::vector<DTensor>{a, DTensor({3})}); });
    CHECK(contains(m, "stack: [2] and [3] (tensor 1) differ"));
    CHECK(contains(message_of<value_error>([] { stack(std::vector<DTensor>{}); }), "stack: no tensors"));
    CHECK(contains(message_of<index_error>([&] { stack(std::vector<DTensor>{a, b}, 2); }), "stack: dimension 2"));
    CHECK(contains(message_of<shape_error>([] {
                     stack(std::vector<DTensor>{DTensor({1, 1, 1, 1})});
                   }),
                   "maximum rank 4"));
  }
}

TEST_CASE("squeeze, unsqueeze and flatten change the shape, never the values") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = reshape(arange<double>(6), {2, 1, 3, 1});
  CHECK(squeeze(x).shape() == Shape{2, 3});
  CHECK(squeeze(x, 1).shape() == Shape{2, 3, 1});
  CHECK(squeeze(x, -1).shape() == Shape{2, 1, 3});
  CHECK(squeeze(x).to_vector() == V{0, 1, 2, 3, 4, 5});
  DTensor v = arange<double>(3);
  CHECK(unsqueeze(v, 0).shape() == Shape{1, 3});
  CHECK(unsqueeze(v, 1).shape() == Shape{3, 1});
  CHECK(unsqueeze(v, -1).shape() == Shape{3, 1});
  CHECK(unsqueeze(v, -2).shape() == Shape{1, 3});
  DTensor y = DTensor({2, 3, 4, 5});
  CHECK(flatten(y).shape() == Shape{120});
  CHECK(flatten(y, 1).shape() == Shape{2, 60});
  CHECK(flatten(y, 1, 2).shape() == Shape{2, 12, 5});
  CHECK(flatten(y, -2, -1).shape() == Shape{2, 3, 20});
  CHECK(flatten(DTensor(Shape{}, 7.0)).shape() == Shape{1});
  SUBCASE("the gradient comes back in x's shape") {
    DTensor w = from<double>({1, 2, 3}, true);
    sum(unsqueeze(w, 0) * from<double>({{1, 10, 100}})).backward();
    CHECK(grad_of(w) == V{1, 10, 100});
  }
  SUBCASE("errors name the op, the dimension and the shape") {
    CHECK(contains(message_of<shape_error>([&] { squeeze(x, 2); }),
                   "squeeze: dimension 2 of [2, 1, 3, 1] has extent 3, not 1"));
    CHECK(contains(message_of<index_error>([&] { unsqueeze(v, 2); }), "unsqueeze: dimension 2"));
    CHECK(contains(message_of<shape_error>([&] { unsqueeze(x, 0); }), "unsqueeze: [2, 1, 3, 1] already has"));
    CHECK(contains(message_of<value_error>([&] { flatten(y, 2, 1); }), "flatten: start 2 comes after end 1"));
  }
}

// ---------------------------------------------------------------------------
// gather and scatter_add

TEST_CASE("gather picks x[i][index[i][j]]; its gradient adds back at each pick") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{10, 11, 12}, {20, 21, 22}}, true);
  SUBCASE("dim 1: row 0 picks columns 2, 0; row 1 picks column 1 twice") {
    DTensor g = gather(x, 1, {2, 0, 1, 1}, Shape{2, 2});
    CHECK(g.shape() == Shape{2, 2});
    CHECK(g.to_vector() == V{12, 10, 21, 21});
    sum(g).backward();
    CHECK(grad_of(x) == V{1, 0, 1, 0, 2, 0});  // x[1][1] picked twice
  }
  SUBCASE("dim 0 with an index smaller than x: out[0][j] = x[index[j]][j]") {
    DTensor g = gather(x, 0, {1, 0}, Shape{1, 2});
    CHECK(g.to_vector() == V{20, 11});
  }
  SUBCASE("the target's log-probability: gather of log_softmax is -cross_entropy") {
    DTensor logits = from<double>({{0.5, 1.2, -0.3, 2.1}, {1.0, 0.0, 0.0, 0.0}});
    DTensor picked = gather(log_softmax(logits), -1, {3, 0}, Shape{2, 1});
    CHECK(-mean(picked).item() == doctest::Approx(cross_entropy(logits, {3, 0}).item()));
  }
  SUBCASE("errors name the index, its position, the bound and the shapes") {
    const std::string m = message_of<index_error>([&] { gather(x, 1, {0, 3}, Shape{2, 1}); });
    CHECK(contains(m, "gather: index 3 (position 1) out of range [0, 3) for dimension 1 of x [2, 3]"));
    CHECK(contains(message_of<index_error>([&] { gather(x, 1, {-1, 0}, Shape{2, 1}); }), "index -1"));
    CHECK(contains(message_of<shape_error>([&] {
                     gather(x, 1, {0, 0, 0}, Shape{3, 1});
                   }),
                   "gather: index shape [3, 1] exceeds x [2, 3] in dimension 0 (3 > 2)"));
    CHECK(contains(message_of<shape_error>([&] { gather(x, 1, {0, 0}, Shape{2}); }), "has rank 1"));
    CHECK(contains(message_of<shape_error>([&] {
                     gather(x, 1, {0, 0}, Shape{2, 2});
                   }),
                   "2 indices do not fill index shape [2, 2]"));
  }
}

TEST_CASE("scatter_add adds src into base at the positions index names") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor base = DTensor({2, 3}, 0.0).requires_grad(true);
  DTensor src = from<double>({{1, 2}, {3, 4}}, true);
  // Row 0: src 1 to column 2, src 2 to column 0. Row 1: 3 and 4 both to column 1.
  DTensor y = scatter_add(base, 1, {2, 0, 1, 1}, src);
  CHECK(y.to_vector() == V{2, 0, 1, 0, 7, 0});
  sum(y * from<double>({{1, 2, 3}, {4, 5, 6}})).backward();
  CHECK(grad_of(base) == V{1, 2, 3, 4, 5, 6});  // d/dbase = dy
  CHECK(grad_of(src) == V{3, 1, 5, 5});         // dsrc[i][j] = dy[i][index[i][j]]
  SUBCASE("errors name the op and src's shape") {
    CHECK(contains(message_of<index_error>([&] {
                     scatter_add(base, 1, {2, 0, 1, 5}, src);
                   }),
                   "scatter_add: index 5 (position 3)"));
    CHECK(contains(message_of<shape_error>([&] {
                     scatter_add(base, 1, {2, 0, 1}, src);
                   }),
                   "scatter_add: 3 indices do not fill index shape [2, 2]"));
  }
}
