// SPDX-License-Identifier: MIT
// The tensor ops on numbers small enough to redo by hand: values and
// gradients of broadcasting arithmetic, the math functions at their edges,
// matmul, the reductions and the shape ops. (Finite-difference checks of
// every op live in gradcheck_sweep.cpp.)

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::DTensor;

namespace {

using V = std::vector<double>;
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

V grad_of(const DTensor& t) {
  auto g = t.grad();
  return {g.data(), g.data() + g.size()};
}

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
    CHECK(x.grad()[0] == 6.0);                                         // 2x
    CHECK(a.grad()[0] == doctest::Approx(12.0));                       // b a^(b-1)
    CHECK(b.grad()[0] == doctest::Approx(8.0 * std::log(2.0)));        // a^b ln a
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
    CHECK(matmul(a, b, false, true).to_vector() == V{17, 23, 39, 53});  // A B^T
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
