// SPDX-License-Identifier: MIT
//
// Chapter 11: the backpropagation exercises, worked with tapegrad.
//
// A set of pen-and-paper exercises on backpropagation through a small
// language model asks for four numbers: the gradient of cross-entropy with
// respect to the logits, the gradient of one column of the output weights,
// the gradient through a ReLU, and a finite-difference estimate. Each test
// below first does the exercise by hand (in the comments), then lets tapegrad
// compute the same quantity and checks that the two agree.
//
// The exercises print their inputs rounded (probabilities to two decimals,
// losses to six), so "agree" has a tolerance, and each test states it: half a
// unit in the last printed digit of the hand number, or exact where the hand
// calculation involves no rounding at all.
//
// The last part is about a worked gradient check in the same material that
// compares a numerical gradient of 1200 with an analytic one of -0.0719. Those
// two numbers cannot both be right, and finding out why is the point of a
// gradient check: we redo the arithmetic, then show gradcheck catching the
// kind of backward rule that would produce such a pair.

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::index_t;
using tapegrad::OpContext;
using tapegrad::Shape;
using tapegrad::testing::DTensor;

namespace {

std::vector<double> grad_of(const DTensor& t) {
  auto g = t.grad();
  return {g.data(), g.data() + g.size()};
}

}  // namespace

// ---------------------------------------------------------------------------
// Exercise 7: logits [0.5, 1.2, -0.3, 2.1], target 3.
//
// By hand. The softmax is printed as [0.12, 0.24, 0.05, 0.59]. For softmax
// followed by cross-entropy, dL/dlogit_i = p_i - [i == target], so
//
//     dL/dlogits = [0.12, 0.24, 0.05, 0.59 - 1] = [0.12, 0.24, 0.05, -0.41]
//
// The three wrong classes are pushed down in proportion to the probability
// they took; the target is pushed up by what it lacked of 1. The gradient sums
// to 0 (the probabilities sum to 1, the one-hot sums to 1).
//
// Tolerance: the printed probabilities are rounded to two decimals, so the
// hand gradient is good to 0.005 per entry (the exact softmax is
// [0.1188, 0.2393, 0.0534, 0.5885]).
TEST_CASE("tutorial 11.1: the cross-entropy gradient is p - one_hot") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor logits = tapegrad::from<double>({{0.5, 1.2, -0.3, 2.1}}, true);

  SUBCASE("the printed probabilities are the softmax, to two decimals") {
    DTensor p = tapegrad::softmax(logits);
    const std::vector<double> printed = {0.12, 0.24, 0.05, 0.59};
    for (index_t i = 0; i < 4; ++i) CHECK(std::abs(p.at({0, i}) - printed[static_cast<std::size_t>(i)]) <= 0.005);
  }

  SUBCASE("tapegrad's dL/dlogits matches the hand gradient within 0.005") {
    tapegrad::cross_entropy(logits, {3}).backward();  // one row: the mean is the row's loss
    const std::vector<double> by_hand = {0.12, 0.24, 0.05, -0.41};
    const std::vector<double> g = grad_of(logits);
    for (std::size_t i = 0; i < 4; ++i) CHECK(std::abs(g[i] - by_hand[i]) <= 0.005);
    CHECK(std::abs(g[0] + g[1] + g[2] + g[3]) < 1e-15);  // sums to 0
  }
}

// ---------------------------------------------------------------------------
// Exercise 8: final_repr = [0.8, -0.4, 0.6], dL/dlogits[5] = -0.25.
//
// By hand. logits[j] = sum_k final_repr[k] W[k][j] + b[j], so
// d logits[5] / d W[i][5] = final_repr[i], and by the chain rule
//
//     dL/dW[i][5] = dL/dlogits[5] * final_repr[i]
//     dL/dW[:, 5] = -0.25 * [0.8, -0.4, 0.6] = [-0.2, 0.1, -0.15]
//
// Dimensions: final_repr is [3], W is [3, V] (here V = 6 tokens), and the
// whole gradient dL/dW = outer(final_repr, dL/dlogits) is [3, 6]; column 5 is
// the [3] above. Only dL/dlogits[5] is given, so we seed the backward pass with
// exactly that: -0.25 at logit 5 and 0 elsewhere, and every other column of the
// gradient is 0.
//
// Tolerance: none. Multiplying by 0.25 only changes a binary exponent, so
// the products are exact in floating point, and the check is equality.
TEST_CASE("tutorial 11.2: the output-weight gradient is an outer product") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor final_repr = tapegrad::from<double>({{0.8, -0.4, 0.6}});              // [1, 3]
  DTensor w = tapegrad::testing::random_tensor({3, 6}, 5).requires_grad(true);  // any weights will do
  DTensor logits = tapegrad::matmul(final_repr, w);                             // [1, 6]
  logits.backward(tapegrad::from<double>({{0, 0, 0, 0, 0, -0.25}}));

  DTensor g = w.grad_tensor();  // [3, 6]
  CHECK(g.at({0, 5}) == -0.2);
  CHECK(g.at({1, 5}) == 0.1);
  CHECK(g.at({2, 5}) == -0.15);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 5; ++j) CHECK(g.at({i, j}) == 0.0);  // no gradient reached logits 0..4
}

// ---------------------------------------------------------------------------
// Exercise 9: ReLU backward. Forward input z = [-1.5, 2.3, 0.0, -0.7, 1.8],
// gradient from the next layer [0.5, -0.3, 0.2, -0.4, 0.6].
//
// By hand. relu(z) = max(z, 0) has slope 1 where z > 0 and 0 where z < 0, so
// the gradient passes where z was positive and is zeroed elsewhere:
//
//     [0.5 * 0, -0.3 * 1, 0.2 * ?, -0.4 * 0, 0.6 * 1]
//
// At z = 0 the slope is undefined; tapegrad (like PyTorch) takes relu'(0) = 0,
// so the third entry is zeroed too: [0, -0.3, 0, 0, 0.6]. The zeroed entries
// are the units that were off in the forward pass: a small change of their
// input does not change the output, so no gradient reaches what fed them.
//
// Tolerance: none; the gradient is copied or zeroed, never computed.
TEST_CASE("tutorial 11.3: ReLU passes the gradient where z > 0 and zeroes it elsewhere") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor z = tapegrad::from<double>({-1.5, 2.3, 0.0, -0.7, 1.8}, true);
  DTensor a = tapegrad::relu(z);
  CHECK(a.to_vector() == std::vector<double>{0, 2.3, 0, 0, 1.8});
  a.backward(tapegrad::from<double>({0.5, -0.3, 0.2, -0.4, 0.6}));
  CHECK(grad_of(z) == std::vector<double>{0, -0.3, 0, 0, 0.6});
}

// ---------------------------------------------------------------------------
// Exercise 12: W[2][3] = 0.5, loss(0.50001) = 0.450015, loss(0.49999) = 0.449985.
//
// By hand. The central difference with eps = 1e-5:
//
//     (0.450015 - 0.449985) / (2 * 1e-5) = 0.000030 / 0.00002 = 1.5
//
// Should the analytic gradient match? Yes: for a smooth loss the central
// difference differs from the derivative by about eps^2 |f'''| / 6, which is
// 1e-10 |f'''| / 6 (and 0 for the quadratic loss below).
// How close can we expect them to be from these numbers, though?
// Each loss is printed to six decimals, so each may be off by 5e-7, and their
// difference by 1e-6; divided by 2e-5 that is 0.05. So from the printed
// numbers we can only expect agreement within 0.05 (about 3%). gradcheck avoids
// that loss of digits by differencing the unrounded losses in double precision,
// and then expects |analytic - numeric| <= 1e-8 + 1e-5 |numeric|.
//
// A loss with exactly these printed values: L(w) = 0.45 + 1.5 (w - 0.5) +
// 2 (w - 0.5)^2, whose derivative at 0.5 is 1.5 (the curvature term adds
// 2e-10 to both losses, below the sixth decimal).
TEST_CASE("tutorial 11.4: a numerical gradient from two losses") {
  SUBCASE("the arithmetic: 1.5") {
    const double numeric = (0.450015 - 0.449985) / (2 * 1e-5);
    CHECK(numeric == doctest::Approx(1.5).epsilon(1e-9));  // only double rounding in the two subtractions
  }

  SUBCASE("tapegrad's analytic gradient of a loss with those values agrees") {
    tapegrad::Tape tape;
    tapegrad::Tape::Scope use(tape);
    auto loss_at = [](double w) {
      DTensor d = tapegrad::from<double>({w}) - 0.5;
      return tapegrad::sum(0.45 + 1.5 * d + 2.0 * d * d);
    };
    CHECK(std::round(loss_at(0.50001).item() * 1e6) / 1e6 == doctest::Approx(0.450015).epsilon(1e-12));
    CHECK(std::round(loss_at(0.49999).item() * 1e6) / 1e6 == doctest::Approx(0.449985).epsilon(1e-12));

    DTensor w = tapegrad::from<double>({0.5}, true);
    DTensor d = w - 0.5;
    tapegrad::sum(0.45 + 1.5 * d + 2.0 * d * d).backward();
    const double analytic = w.grad()[0];
    CHECK(analytic == 1.5);
    // Within 0.05 of the estimate from printed losses, as argued above ...
    CHECK(std::abs(analytic - (0.450015 - 0.449985) / 2e-5) <= 0.05);
    // ... and within 1e-8 of the estimate from unrounded ones.
    const double unrounded = (loss_at(0.50001).item() - loss_at(0.49999).item()) / 2e-5;
    CHECK(std::abs(analytic - unrounded) < 1e-8);
  }
}

// ---------------------------------------------------------------------------
// The mismatched example: "numerical 1200, analytic -0.0719".
//
// The worked check perturbs W_output[10][8], said to be 0.234, by eps = 1e-5
// and reads the losses 0.450012 and 0.449988, then writes
//
//     numerical = (0.450012 - 0.449988) / (2 * 1e-5) = 0.024 / 0.00002 = 1200
//
// and compares it with the analytic -0.0719 "within 1e-5". Two things are wrong.
//
// 1. The scale. 0.450012 - 0.449988 is 0.000024, not 0.024: the difference was
//    written a thousand times too large, and 0.000024 / 0.00002 = 1.2. (It is
//    not a forgotten division by 2 eps: that division is there; the
//    numerator is off by 10^3.)
//
// 2. The pairing. -0.0719 is 0.234 * -0.3075, the gradient the same material
//    derived for W_output[0][8] = final_repr[0] * dL/dlogits[8] with
//    final_repr[0] = 0.234. The perturbed entry is W_output[10][8], whose
//    gradient is final_repr[10] * dL/dlogits[8]. The 0.234 quoted as the
//    weight's value is final_repr[0], an activation. So the numerical and the
//    analytic number describe different entries, and even after fixing the
//    scale, 1.2 against -0.0719 differ in sign: a real check must fail here.
//
// A backward rule that produces exactly this pairing is easy to write by
// mistake: one that forms dW[i][j] = final_repr[0] * dL/dlogits[j] for every
// row i (the first activation where each row's own belongs). gradcheck compares
// every entry of dW with its own finite difference and flags it.

namespace {

// Three backward rules for the output layer.
enum class Rule {
  right,       // dW[i][j] = h[i] g[j]
  first_row,   // dW[i][j] = h[0] g[j] for every row: the pairing mistake
  times_1000,  // dW[i][j] = 1000 h[i] g[j]: the scale mistake
};

// logits = h W for h [1, K], W [K, V]. d logits[j] / d W[i][j] = h[i], so the
// right rule is dW[i][j] += h[i] g[j], and dh[i] += sum_j W[i][j] g[j].
template <class T>
tapegrad::basic_tensor<T> output_layer(const tapegrad::basic_tensor<T>& h, const tapegrad::basic_tensor<T>& w,
                                       Rule rule) {
  const index_t k = w.size(0), v = w.size(1);
  return tapegrad::make_op<T>(
      "output_layer", Shape{1, v}, {h, w},
      [k, v](OpContext<T>& c) { c.out_mat(1, v) = c.in_mat(0, 1, k) * c.in_mat(1, k, v); },
      [k, v, rule](OpContext<T>& c) {
        const auto g = c.out_grad_mat(1, v);
        if (c.needs_grad(0)) c.in_grad_mat(0, 1, k) += g * c.in_mat(1, k, v).transpose();
        if (!c.needs_grad(1)) return;
        auto dw = c.in_grad_mat(1, k, v);
        const T scale = rule == Rule::times_1000 ? T(1000) : T(1);
        for (index_t i = 0; i < k; ++i) dw.row(i) += scale * (rule == Rule::first_row ? c.in(0)[0] : c.in(0)[i]) * g;
      });
}

// The setting of the example: final_repr with final_repr[0] = 0.234, 20 tokens,
// target token 8, and the output bias chosen so that the softmax gives token 8
// the probability 0.6925, hence dL/dlogits[8] = 0.6925 - 1 = -0.3075. (With
// W = 0 the logits are the bias: 0 for the other 19 tokens and a for token 8,
// where e^a / (e^a + 19) = 0.6925.)
struct Example {
  DTensor h = tapegrad::from<double>(
      {{0.234, -0.567, 0.891, -0.123, 0.456, 0.31, -0.22, 0.05, 0.77, -0.41, 0.62, -0.18}});  // [1, 12]
  DTensor bias;
  Example() {
    std::vector<double> b(20, 0.0);
    b[8] = std::log(0.6925 * 19 / 0.3075);
    bias = DTensor(Shape{1, 20}, b);
  }
  DTensor loss(const DTensor& w, Rule rule) const {
    return tapegrad::cross_entropy(output_layer(h, w, rule) + bias, {8});
  }
};

}  // namespace

TEST_CASE("tutorial 11.5: the example's numbers, redone") {
  SUBCASE("the scale: the difference is 0.000024, so the quotient is 1.2") {
    CHECK(0.450012 - 0.449988 == doctest::Approx(0.000024).epsilon(1e-9));
    CHECK((0.450012 - 0.449988) / (2 * 1e-5) == doctest::Approx(1.2).epsilon(1e-9));
    CHECK(0.024 / (2 * 1e-5) == doctest::Approx(1000 * 1.2));  // what was written: 10^3 too large
  }

  SUBCASE("the pairing: -0.0719 is the gradient of W[0][8], not of W[10][8]") {
    tapegrad::Tape tape;
    tapegrad::Tape::Scope use(tape);
    const Example ex;
    DTensor w = DTensor({12, 20}, 0.0).requires_grad(true);
    ex.loss(w, Rule::right).backward();
    // 0.234 * -0.3075 = -0.071955, printed truncated as -0.0719: tolerance 1e-4.
    CHECK(std::abs(w.grad_at({0, 8}) - -0.0719) <= 1e-4);
    CHECK(w.grad_at({0, 8}) == doctest::Approx(0.234 * -0.3075));
    // W[10][8] has its own gradient, final_repr[10] * -0.3075 = 0.62 * -0.3075.
    CHECK(w.grad_at({10, 8}) == doctest::Approx(0.62 * -0.3075));
  }
}

TEST_CASE("tutorial 11.6: gradcheck catches the backward rule behind such a pair") {
  const Example ex;
  DTensor w0 = tapegrad::testing::random_tensor({12, 20}, 11, -0.1, 0.1);

  SUBCASE("the right rule passes: every dW[i][j] matches its finite difference") {
    auto r = tapegrad::gradcheck([&](const std::vector<DTensor>& x) { return ex.loss(x[0], Rule::right); }, {w0});
    CHECK_MESSAGE(r.passed, r.report());
  }

  SUBCASE("the rule that uses final_repr[0] for every row fails, and the report says where") {
    auto r = tapegrad::gradcheck([&](const std::vector<DTensor>& x) { return ex.loss(x[0], Rule::first_row); }, {w0});
    CHECK_FALSE(r.passed);
    CHECK(r.report().find("FAILED") != std::string::npos);
    // The worst entry sits in a row i != 0, where h[0] stood in for h[i]:
    // the analytic value there is h[0] * g[j], the numeric one h[i] * g[j].
    const auto row = static_cast<index_t>(r.worst_index / 20);
    CHECK(row != 0);
    CHECK(r.analytic / r.numeric == doctest::Approx(ex.h.at({0, 0}) / ex.h.at({0, row})));
  }

  SUBCASE("a gradient a thousand times too large fails as well") {
    // The analogue of the scale slip: the right rule, times 1000.
    auto r = tapegrad::gradcheck([&](const std::vector<DTensor>& x) { return ex.loss(x[0], Rule::times_1000); }, {w0});
    CHECK_FALSE(r.passed);
    CHECK(r.analytic == doctest::Approx(1000 * r.numeric));
  }
}
