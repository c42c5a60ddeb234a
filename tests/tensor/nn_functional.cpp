// SPDX-License-Identifier: MIT
// The neural-network functions: each value checked against a closed form a
// reader can redo by hand, each gradient checked against finite differences in
// double precision, and each error checked for a message that names the bad value.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::contains;
using tapegrad::testing::DTensor;
using tapegrad::testing::inf;
using tapegrad::testing::message_of;
using tapegrad::testing::random_tensor;

namespace {

using Inputs = std::vector<DTensor>;

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("softmax turns every row into probabilities") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x({2, 3}, {1.0, 2.0, 3.0, 5.0, 5.0, 5.0});
  DTensor p = softmax(x);
  REQUIRE(p.shape() == Shape{2, 3});

  SUBCASE("row 0 is e^x / (e + e^2 + e^3); an all-equal row is uniform") {
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    CHECK(p.at({0, 0}) == doctest::Approx(std::exp(1.0) / z));
    CHECK(p.at({0, 2}) == doctest::Approx(0.6652409558));  // e^3 / z
    CHECK(p.at({1, 1}) == doctest::Approx(1.0 / 3.0));
  }

  SUBCASE("each row sums to 1") {
    CHECK(p.matrix().row(0).sum() == doctest::Approx(1.0));
    CHECK(p.matrix().row(1).sum() == doctest::Approx(1.0));
  }

  SUBCASE("subtracting the row maximum keeps huge logits finite") {
    DTensor big({3}, {1000.0, 1001.0, 1002.0});
    DTensor small({3}, {0.0, 1.0, 2.0});
    CHECK(softmax(big).data().isFinite().all());
    CHECK((softmax(big).data() - softmax(small).data()).abs().maxCoeff() < 1e-15);
  }

  SUBCASE("along another axis, each column sums to 1") {
    DTensor q = softmax(x, 0);
    CHECK(q.at({0, 0}) + q.at({1, 0}) == doctest::Approx(1.0));
    CHECK(q.at({0, 2}) == doctest::Approx(1.0 / (1.0 + std::exp(2.0))));  // e^3 / (e^3 + e^5)
  }
}

TEST_CASE("softmax and log_softmax pass the gradient check") {
  SUBCASE("last axis, several shapes") {
    for (const Shape& s : {Shape{7}, Shape{3, 5}, Shape{2, 3, 4}, Shape{2, 2, 2, 3}}) {
      CAPTURE(s.str());
      CHECK_GRADCHECK(gradcheck([](const Inputs& x) { return softmax(x[0]); }, {random_tensor(s, 1, -3, 3)}));
      CHECK_GRADCHECK(gradcheck([](const Inputs& x) { return log_softmax(x[0]); }, {random_tensor(s, 2, -3, 3)}));
    }
  }
  SUBCASE("the other axes") {
    for (int axis : {0, 1, -2}) {
      CAPTURE(axis);
      const DTensor x = random_tensor({2, 3, 4}, 3, -3, 3);
      CHECK_GRADCHECK(gradcheck([axis](const Inputs& v) { return softmax(v[0], axis); }, {x}));
      CHECK_GRADCHECK(gradcheck([axis](const Inputs& v) { return log_softmax(v[0], axis); }, {x}));
    }
  }
}

TEST_CASE("log_softmax is the log of softmax, without overflow") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = random_tensor({3, 5}, 4, -4, 4);
  CHECK((log_softmax(x).data() - softmax(x).data().log()).abs().maxCoeff() < 1e-12);
  DTensor big({2}, {0.0, 800.0});
  CHECK(log_softmax(big).at({0}) == doctest::Approx(-800.0));
  CHECK(log_softmax(big).at({1}) == doctest::Approx(0.0));
}

TEST_CASE("a row that is all -inf gives zeros, not NaN, in softmax and its gradient") {
  // A fully masked row: every key hidden. Softmax's 0/0 becomes 0.
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = DTensor({2, 3}, {-inf, -inf, -inf, 0.0, std::log(2.0), std::log(5.0)}).requires_grad(true);
  DTensor p = softmax(x);
  CHECK(p.at({0, 0}) == 0.0);
  CHECK(p.at({0, 2}) == 0.0);
  CHECK(p.at({1, 2}) == doctest::Approx(0.625));  // 5 / (1 + 2 + 5)
  p.backward(DTensor({2, 3}, {1.0, 2.0, 3.0, 1.0, 0.0, 0.0}));
  CHECK(x.grad().isFinite().all());
  CHECK(x.grad_at({0, 1}) == 0.0);
  // Row 1: dx = p * (dy - p . dy) with p = [1/8, 2/8, 5/8], dy = e_0.
  CHECK(x.grad_at({1, 0}) == doctest::Approx(0.125 * (1 - 0.125)));
  CHECK(x.grad_at({1, 1}) == doctest::Approx(-0.25 * 0.125));

  SUBCASE("log_softmax gives -inf (log 0) there and passes no gradient") {
    DTensor y = log_softmax(x);
    CHECK(y.at({0, 1}) == -inf);
    x.zero_grad();
    y.backward(DTensor({2, 3}, 1.0));
    CHECK(x.grad_at({0, 0}) == 0.0);
    CHECK(x.grad().isFinite().all());
  }
}

TEST_CASE("softmax rejects an axis the tensor does not have") {
  DTensor x({2, 3}, 0.0);
  const std::string m = message_of<index_error>([&] { softmax(x, 2); });
  CHECK(contains(m, "softmax: axis 2"));
  CHECK(contains(m, "[2, 3]"));
}

// ---------------------------------------------------------------------------
TEST_CASE("cross_entropy: -log of the target's probability, in one fused node") {
  Tape tape;
  Tape::Scope use(tape);

  SUBCASE("uniform logits over C classes cost log C per row") {
    DTensor logits({4, 6}, 0.7);
    CHECK(cross_entropy(logits, {0, 1, 2, 5}).item() == doctest::Approx(std::log(6.0)));
    CHECK(cross_entropy(logits, {0, 1, 2, 5}, {.reduction = Reduction::sum}).item() ==
          doctest::Approx(4 * std::log(6.0)));
  }

  SUBCASE("logits log(0.2, 0.3, 0.5) with target 2 cost -log 0.5 = 0.6931") {
    DTensor logits({1, 3}, {std::log(0.2), std::log(0.3), std::log(0.5)});
    CHECK(cross_entropy(logits, {2}).item() == doctest::Approx(0.6931471806));
  }

  SUBCASE("the gradient is softmax - one_hot, divided by the row count for the mean") {
    DTensor logits = DTensor({2, 3}, {std::log(0.2), std::log(0.3), std::log(0.5), 0.0, 0.0, 0.0}).requires_grad(true);
    cross_entropy(logits, {2, 0}).backward();
    CHECK(logits.grad_at({0, 0}) == doctest::Approx(0.2 / 2));
    CHECK(logits.grad_at({0, 2}) == doctest::Approx((0.5 - 1) / 2));
    CHECK(logits.grad_at({1, 0}) == doctest::Approx((1.0 / 3 - 1) / 2));
    CHECK(logits.grad_at({1, 1}) == doctest::Approx(1.0 / 6));
  }

  SUBCASE("reduction none gives one loss per row, shaped like the leading dimensions") {
    DTensor logits({2, 2, 3}, 0.0);
    DTensor l = cross_entropy(logits, {0, 1, 2, 0}, {.reduction = Reduction::none});
    REQUIRE(l.shape() == Shape{2, 2});
    CHECK(l.at({1, 1}) == doctest::Approx(std::log(3.0)));
  }
}

TEST_CASE("cross_entropy skips ignore_index targets, in the sum and in the mean's count") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor logits = random_tensor({4, 5}, 7, -2, 2).requires_grad(true);
  const std::vector<index_t> targets = {1, -1, 4, -1};
  DTensor all = cross_entropy(logits, targets, {.reduction = Reduction::none, .ignore_index = -1});
  CHECK(all.at({1}) == 0.0);
  DTensor mean = cross_entropy(logits, targets, {.ignore_index = -1});
  CHECK(mean.item() == doctest::Approx((all.at({0}) + all.at({2})) / 2));  // two counted rows, not four
  mean.backward();
  CHECK(logits.grad().segment(5, 5).isZero());  // row 1 is ignored
  CHECK(logits.grad().segment(0, 5).sum() == doctest::Approx(0.0));

  SUBCASE("every target ignored: the mean is 0, not 0/0") {
    CHECK(cross_entropy(logits, {-100, -100, -100, -100}).item() == 0.0);
  }
}

TEST_CASE("cross_entropy passes the gradient check") {
  const std::vector<index_t> t4 = {3, 0, 5, 2};
  const std::vector<index_t> t6 = {1, 0, 2, 2, 4, 3};
  const std::vector<index_t> ignored = {3, -100, 5, -100};
  for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none}) {
    CAPTURE(static_cast<int>(r));
    CHECK_GRADCHECK(gradcheck([&](const Inputs& x) { return cross_entropy(x[0], t4, {.reduction = r}); },
                              {random_tensor({4, 6}, 11, -2, 2)}));
    CHECK_GRADCHECK(gradcheck([&](const Inputs& x) { return cross_entropy(x[0], t6, {.reduction = r}); },
                              {random_tensor({2, 3, 5}, 12, -2, 2)}));
    CHECK_GRADCHECK(gradcheck([&](const Inputs& x) { return cross_entropy(x[0], ignored, {.reduction = r}); },
                              {random_tensor({4, 6}, 13, -2, 2)}));
  }
}

TEST_CASE("cross_entropy names the bad target, its position and C") {
  DTensor logits({4, 6}, 0.0);
  const std::string m = message_of<index_error>([&] { cross_entropy(logits, {3, 4, 7, 2}); });
  CHECK(contains(m, "target 7"));
  CHECK(contains(m, "position 2"));
  CHECK(contains(m, "[0, 6)"));
  CHECK(contains(message_of<index_error>([&] { cross_entropy(logits, {3, -2, 0, 1}); }), "target -2"));
  const std::string n = message_of<shape_error>([&] { cross_entropy(logits, {3, 4, 5}); });
  CHECK(contains(n, "[4, 6]"));
  CHECK(contains(n, "3 targets"));
}

// ---------------------------------------------------------------------------
TEST_CASE("mse_loss: the mean of squared differences") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor pred = DTensor({3}, {1.0, 2.0, 3.0}).requires_grad(true);
  DTensor target({3}, {1.0, 0.0, 0.0});
  CHECK(mse_loss(pred, target).item() == doctest::Approx(13.0 / 3));  // (0 + 4 + 9) / 3
  CHECK(mse_loss(pred, target, Reduction::sum).item() == doctest::Approx(13.0));
  CHECK(mse_loss(pred, target, Reduction::none).at({2}) == doctest::Approx(9.0));
  mse_loss(pred, target).backward();
  CHECK(pred.grad_at({1}) == doctest::Approx(4.0 / 3));  // 2 (2 - 0) / 3

  SUBCASE("gradient check, for both arguments and every reduction") {
    for (Reduction r : {Reduction::mean, Reduction::sum, Reduction::none})
      CHECK_GRADCHECK(gradcheck([r](const Inputs& x) { return mse_loss(x[0], x[1], r); },
                                {random_tensor({2, 3}, 21), random_tensor({2, 3}, 22)}));
  }

  SUBCASE("different shapes are named") {
    const std::string m = message_of<shape_error>([&] { mse_loss(pred, DTensor({3, 1}, 0.0)); });
    CHECK(contains(m, "[3]"));
    CHECK(contains(m, "[3, 1]"));
  }
}

// ---------------------------------------------------------------------------
TEST_CASE("layer_norm: each row to mean 0 and variance 1, then gamma and beta") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor ones({4}, 1.0), zeros({4}, 0.0);

  SUBCASE("[1, 2, 3, 4]: mean 2.5, variance 1.25, so (x - 2.5) / sqrt(1.25)") {
    DTensor y = layer_norm(DTensor({1, 4}, {1.0, 2.0, 3.0, 4.0}), ones, zeros, 0.0);
    CHECK(y.at({0, 0}) == doctest::Approx(-1.3416407865));
    CHECK(y.at({0, 2}) == doctest::Approx(0.4472135955));
  }

  SUBCASE("random rows come out with mean 0 and variance 1 before gamma and beta") {
    DTensor y = layer_norm(random_tensor({5, 4}, 31, -3, 5), ones, zeros, 1e-12);
    for (Eigen::Index r = 0; r < 5; ++r) {
      auto row = y.matrix().row(r).array();
      CHECK(row.mean() == doctest::Approx(0.0).epsilon(1e-12));
      CHECK((row - row.mean()).square().mean() == doctest::Approx(1.0));
    }
  }

  SUBCASE("gamma scales and beta shifts each column") {
    DTensor x = random_tensor({3, 4}, 32);
    DTensor g({4}, {2.0, 1.0, 0.5, -1.0}), b({4}, {0.0, 1.0, 2.0, 3.0});
    DTensor plain = layer_norm(x, ones, zeros);
    DTensor affine = layer_norm(x, g, b);
    CHECK(affine.at({1, 3}) == doctest::Approx(-plain.at({1, 3}) + 3.0));
    CHECK(affine.at({2, 0}) == doctest::Approx(2.0 * plain.at({2, 0})));
  }
}

TEST_CASE("layer_norm passes the gradient check for x, gamma and beta") {
  for (const Shape& s : {Shape{1, 5}, Shape{3, 5}, Shape{2, 3, 4}}) {
    CAPTURE(s.str());
    const index_t d = s[-1];
    CHECK_GRADCHECK(gradcheck([](const Inputs& x) { return layer_norm(x[0], x[1], x[2]); },
                              {random_tensor(s, 41, -2, 2), random_tensor({d}, 42, 0.5, 1.5), random_tensor({d}, 43)}));
  }
}

TEST_CASE("layer_norm names gamma's and x's shapes when they disagree") {
  DTensor x({2, 4}, 0.0);
  const std::string m = message_of<shape_error>([&] { layer_norm(x, DTensor({5}, 1.0), DTensor({4}, 0.0)); });
  CHECK(contains(m, "gamma [5]"));
  CHECK(contains(m, "[2, 4]"));
  CHECK(contains(message_of<shape_error>([&] { layer_norm(x, DTensor({4}, 1.0), DTensor({2}, 0.0)); }), "beta [2]"));
}

// ---------------------------------------------------------------------------
TEST_CASE("embedding looks up rows and adds the gradients of repeated ids") {
  Tape tape;
  Tape::Scope use(tape);
  // Row v of the table is [v, 10 v].
  DTensor table = DTensor({5, 2}, {0, 0, 1, 10, 2, 20, 3, 30, 4, 40}).requires_grad(true);
  DTensor e = embedding(table, {3, 1, 3});
  REQUIRE(e.shape() == Shape{3, 2});
  CHECK(e.at({0, 1}) == 30.0);
  CHECK(e.at({1, 0}) == 1.0);
  e.backward(DTensor({3, 2}, {1.0, 2.0, 0.5, 0.5, 4.0, 8.0}));
  CHECK(table.grad_at({3, 0}) == 5.0);   // 1 + 4 from positions 0 and 2
  CHECK(table.grad_at({3, 1}) == 10.0);  // 2 + 8
  CHECK(table.grad_at({1, 1}) == 0.5);
  CHECK(table.grad_at({0, 0}) == 0.0);  // never looked up

  SUBCASE("ids with a shape give that shape followed by D") {
    const std::vector<index_t> ids = {0, 1, 2, 3, 4, 0};
    DTensor batch = embedding(table, ids, Shape{2, 3});
    REQUIRE(batch.shape() == Shape{2, 3, 2});
    CHECK(batch.at({1, 1, 1}) == 40.0);
  }

  SUBCASE("gradient check") {
    const std::vector<index_t> ids = {2, 0, 2, 4, 2, 1};
    CHECK_GRADCHECK(gradcheck(
        [&](const Inputs& x) {
          return embedding(x[0], ids, Shape{3, 2});
        },
        {random_tensor({5, 3}, 51)}));
  }
}

TEST_CASE("embedding names the bad id, its position and V") {
  DTensor table({20, 4}, 0.0);
  const std::string m = message_of<index_error>([&] { embedding(table, {15, 17, 3, 25}); });
  CHECK(contains(m, "id 25"));
  CHECK(contains(m, "position 3"));
  CHECK(contains(m, "[0, 20)"));
  CHECK(contains(message_of<index_error>([&] { embedding(table, {-1}); }), "id -1"));
  const std::vector<index_t> ids = {1, 2, 3};
  CHECK(contains(message_of<shape_error>([&] { embedding(table, ids, Shape{2, 2}); }), "[2, 2]"));
}

// ---------------------------------------------------------------------------
TEST_CASE("dropout keeps 1 - p of the elements, scaled by 1 / (1 - p)") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = DTensor({100, 100}, 3.0).requires_grad(true);
  Generator gen(7);
  DTensor y = dropout(x, 0.25, gen);
  const auto v = y.data();
  const Eigen::Index kept = (v != 0.0).count();
  CHECK(kept > 7300);  // 7500 expected; the binomial's standard deviation is about 43
  CHECK(kept < 7700);
  CHECK(((v == 0.0) || (v == 4.0)).all());  // 3 / (1 - 0.25)

  SUBCASE("the gradient is the mask: 1 / (1 - p) where kept, 0 where dropped") {
    y.backward(DTensor({100, 100}, 1.0));
    CHECK(((x.grad() == 0.0) == (v == 0.0)).all());
    CHECK(x.grad().maxCoeff() == doctest::Approx(4.0 / 3));
  }

  SUBCASE("the same seed gives the same mask") {
    Generator again(7);
    CHECK((dropout(x, 0.25, again).data() == v).all());
  }

  SUBCASE("evaluation mode and p = 0 return x itself; p = 1 drops all") {
    CHECK(dropout(x, 0.25, gen, false).is_leaf());
    CHECK(dropout(x, 0.0, gen).is_leaf());
    CHECK(dropout(x, 1.0, gen).data().isZero());
  }

  SUBCASE("gradient check with a fixed mask") {
    CHECK_GRADCHECK(gradcheck(
        [](const Inputs& in) {
          Generator g(3);
          return dropout(in[0], 0.5, g);
        },
        {random_tensor({4, 5}, 61)}));
  }

  SUBCASE("p outside [0, 1] is refused") {
    CHECK(contains(message_of<value_error>([&] { dropout(x, 1.5, gen); }), "p = 1.5"));
  }
}

// ---------------------------------------------------------------------------
TEST_CASE("causal_mask hides the keys after each query; masked_fill applies it") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor mask = causal_mask<double>(3);
  CHECK(mask.to_vector() == std::vector<double>{0, 1, 1, 0, 0, 1, 0, 0, 0});

  // One [3, 3] mask broadcast over two score matrices [2, 3, 3].
  DTensor scores = random_tensor({2, 3, 3}, 71).requires_grad(true);
  DTensor filled = masked_fill(scores, mask, -inf);
  CHECK(filled.at({1, 0, 2}) == -inf);
  CHECK(filled.at({1, 2, 0}) == scores.at({1, 2, 0}));

  SUBCASE("a masked score's probability is exactly 0") {
    DTensor p = softmax(filled);
    CHECK(p.at({0, 0, 1}) == 0.0);
    CHECK(p.at({0, 0, 0}) == 1.0);
  }

  SUBCASE("filled positions get zero gradient") {
    filled.backward(DTensor({2, 3, 3}, 1.0));
    CHECK(scores.grad_at({0, 0, 1}) == 0.0);
    CHECK(scores.grad_at({0, 1, 1}) == 1.0);
  }

  SUBCASE("gradient check, with masks of several broadcast shapes") {
    for (const Shape& ms : {Shape{3, 3}, Shape{2, 1, 3}, Shape{3, 1}, Shape{1}}) {
      CAPTURE(ms.str());
      DTensor m = random_tensor(ms, 72, 0, 2);  // values in [0, 2): about half become 1
      m.data() = m.data().floor();
      CHECK_GRADCHECK(gradcheck([](const Inputs& x) { return masked_fill(x[0], x[1], 0.5); },
                                {random_tensor({2, 3, 3}, 73).requires_grad(true), m}));
    }
  }

  SUBCASE("a mask that does not broadcast is named with x") {
    const std::string m = message_of<shape_error>([&] { masked_fill(scores, DTensor({2, 3}, 0.0), 0.0); });
    CHECK(contains(m, "mask [2, 3]"));
    CHECK(contains(m, "[2, 3, 3]"));
  }
}

// ---------------------------------------------------------------------------
namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// softmax(q k^T / sqrt(d) + mask) v for one head, spelled out with Eigen.
Mat reference_attention(const Mat& q, const Mat& k, const Mat& v, bool causal, Mat* weights = nullptr) {
  Mat s = q * k.transpose() / std::sqrt(static_cast<double>(q.cols()));
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    if (causal)
      for (Eigen::Index j = i + 1; j < s.cols(); ++j) s(i, j) = -inf;
    s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp().matrix();
    s.row(i) /= s.row(i).sum();
  }
  if (weights) *weights = s;
  return s * v;
}

Mat head(const DTensor& t, index_t h, index_t rows, index_t cols) {
  return Eigen::Map<const Mat>(t.data().data() + h * rows * cols, rows, cols);
}

}  // namespace

TEST_CASE("scaled_dot_product_attention equals softmax(q k^T / sqrt(d)) v for every head") {
  Tape tape;
  Tape::Scope use(tape);
  // [B, H, T, Dh] = [2, 2, 3, 4], with values of a different width Dv = 5.
  DTensor q = random_tensor({2, 2, 3, 4}, 81), k = random_tensor({2, 2, 3, 4}, 82), v = random_tensor({2, 2, 3, 5}, 83);
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    DTensor weights;
    DTensor out = scaled_dot_product_attention(q, k, v, causal, &weights);
    REQUIRE(out.shape() == Shape{2, 2, 3, 5});
    REQUIRE(weights.shape() == Shape{2, 2, 3, 3});
    for (index_t h = 0; h < 4; ++h) {
      Mat a;
      const Mat expect = reference_attention(head(q, h, 3, 4), head(k, h, 3, 4), head(v, h, 3, 5), causal, &a);
      CHECK((head(out, h, 3, 5) - expect).cwiseAbs().maxCoeff() < 1e-12);
      CHECK((head(weights, h, 3, 3) - a).cwiseAbs().maxCoeff() < 1e-12);
    }
    CHECK(weights.matrix().rowwise().sum().isOnes(1e-12));  // every row of A is a distribution
    if (causal) CHECK(weights.at({1, 0, 0, 2}) == 0.0);     // query 0 cannot see key 2
  }
}

TEST_CASE("scaled_dot_product_attention passes the gradient check for q, k and v") {
  struct Case {
    Shape q, k, v;
  };
  const Case cases[] = {
      {{3, 4}, {3, 4}, {3, 4}},                    // one head
      {{3, 4, 2}, {3, 4, 2}, {3, 4, 3}},           // [B*H, T, Dh], Dv != Dh
      {{2, 2, 3, 4}, {2, 2, 3, 4}, {2, 2, 3, 4}},  // [B, H, T, Dh]
      {{2, 2, 4}, {2, 5, 4}, {2, 5, 3}},           // more keys than queries
  };
  SUBCASE("every layout, causal and not") {
    for (const Case& c : cases) {
      for (bool causal : {false, true}) {
        CAPTURE(c.q.str());
        CAPTURE(causal);
        CHECK_GRADCHECK(
            gradcheck([causal](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], causal); },
                      {random_tensor(c.q, 91, -1.5, 1.5), random_tensor(c.k, 92, -1.5, 1.5), random_tensor(c.v, 93)}));
      }
    }
  }
  SUBCASE("one tensor as q, k and v: its three gradients add up") {
    CHECK_GRADCHECK(gradcheck([](const Inputs& x) { return scaled_dot_product_attention(x[0], x[0], x[0], true); },
                              {random_tensor({2, 4, 3}, 94, -1.5, 1.5)}));
  }
}

TEST_CASE("scaled_dot_product_attention names all three shapes when they do not fit") {
  DTensor q({2, 3, 4}, 0.0);
  const std::string m = message_of<shape_error>([&] {
    scaled_dot_product_attention(q, DTensor({2, 3, 5}, 0.0), DTensor({2, 3, 4}, 0.0));
  });
  CHECK(contains(m, "head dimension (4 vs 5)"));
  CHECK(contains(m, "k [2, 3, 5]"));
  CHECK(contains(message_of<shape_error>([&] {
                   scaled_dot_product_attention(q, DTensor({2, 3, 4}, 0.0), DTensor({2, 2, 4}, 0.0));
                 }),
                 "sequence length (3 vs 2)"));
  CHECK(contains(message_of<shape_error>([&] {
                   scaled_dot_product_attention(q, DTensor({1, 3, 4}, 0.0), DTensor({1, 3, 4}, 0.0));
                 }),
                 "leading"));
}

// ---------------------------------------------------------------------------
TEST_CASE("rms_norm: each row divided by its root mean square, then the weight") {
  Tape tape;
  Tape::Scope use(tape);
  // x = [3, 4]: mean(x^2) = (9 + 16) / 2 = 12.5, rms = sqrt(12.5) = 3.5355339,
  // so y = [3, 4] / 3.5355339 = [0.8485281, 1.1313708] (eps = 0).
  DTensor x = from<double>({{3, 4}}, true);

  SUBCASE("without a weight") {
    DTensor y = rms_norm(x, 0.0);
    CHECK(y.at({0, 0}) == doctest::Approx(0.8485281374));
    CHECK(y.at({0, 1}) == doctest::Approx(1.1313708499));
    // sum(y) = sqrt(2) (x0 + x1) / |x|, |x| = 5:
    // d/dx0 = sqrt(2) (1/|x| - (x0 + x1) x0 / |x|^3) = sqrt(2) (0.2 - 21/125) = 0.0452548
    // d/dx1 = sqrt(2) (0.2 - 28/125) = -0.0339411
    sum(y).backward();
    CHECK(x.grad()[0] == doctest::Approx(std::sqrt(2.0) * 0.032));
    CHECK(x.grad()[1] == doctest::Approx(std::sqrt(2.0) * -0.024));
  }
  SUBCASE("with a weight: each column scaled; dweight = sum over rows of dy * xhat") {
    DTensor w = from<double>({2, 0.5}, true);
    DTensor y = rms_norm(x, w, 0.0);
    CHECK(y.at({0, 0}) == doctest::Approx(2 * 0.8485281374));
    CHECK(y.at({0, 1}) == doctest::Approx(0.5 * 1.1313708499));
    sum(y).backward();
    CHECK(w.grad()[0] == doctest::Approx(0.8485281374));
    CHECK(w.grad()[1] == doctest::Approx(1.1313708499));
  }
  SUBCASE("on a row of mean 0 it is layer_norm without gamma and beta") {
    DTensor r = random_tensor({3, 5}, 41, -2, 2);
    DTensor centred = r - mean(r, -1, true);
    DTensor a = rms_norm(centred, 1e-5), b = layer_norm(centred, DTensor({5}, 1.0), DTensor({5}, 0.0), 1e-5);
    CHECK((a.data() - b.data()).abs().maxCoeff() < 1e-12);
  }
  SUBCASE("eps keeps a zero row finite") {
    DTensor z = DTensor({1, 3}, 0.0).requires_grad(true);
    DTensor y = rms_norm(z);
    sum(y).backward();
    CHECK(y.to_vector() == std::vector<double>{0, 0, 0});
    CHECK(z.grad().allFinite());
  }
}

TEST_CASE("rms_norm names the weight's and x's shapes when they disagree") {
  DTensor x({2, 4}, 1.0);
  const std::string m = message_of<shape_error>([&] { rms_norm(x, DTensor({3}, 1.0)); });
  CHECK(contains(m, "rms_norm: weight [3]"));
  CHECK(contains(m, "x [2, 4] (expected [4])"));
  CHECK(contains(message_of<value_error>([&] { rms_norm(x, -1.0); }), "rms_norm: eps = -1"));
  CHECK(contains(message_of<shape_error>([] { rms_norm(DTensor(Shape{}, 1.0)); }), "needs at least one dimension"));
}

// ---------------------------------------------------------------------------
namespace {

// softmax(q k^T / sqrt(d)) v for one head with hidden[i][j] keys set to -inf;
// a query with every key hidden gets a row of zeros.
Mat reference_masked(const Mat& q, const Mat& k, const Mat& v, const std::vector<std::vector<bool>>& hidden,
                     Mat* weights = nullptr) {
  Mat s = q * k.transpose() / std::sqrt(static_cast<double>(q.cols()));
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    bool any = false;
    for (Eigen::Index j = 0; j < s.cols(); ++j) {
      if (hidden[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]) s(i, j) = -inf;
      any = any || !hidden[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)];
    }
    if (!any) {
      s.row(i).setZero();
      continue;
    }
    s.row(i) = (s.row(i).array() - s.row(i).maxCoeff()).exp().matrix();
    s.row(i) /= s.row(i).sum();
  }
  if (weights) *weights = s;
  return s * v;
}

}  // namespace

TEST_CASE("attention with a mask: Lq != Lk, a mask of any broadcastable shape") {
  Tape tape;
  Tape::Scope use(tape);
  // Two batch entries, two heads, 2 queries reading 4 keys (cross attention).
  DTensor q = random_tensor({2, 2, 2, 3}, 101), k = random_tensor({2, 2, 4, 3}, 102),
          v = random_tensor({2, 2, 4, 5}, 103);

  SUBCASE("key padding [B, 1, 1, Lk]: batch 0 hides key 3, batch 1 hides keys 2 and 3") {
    DTensor pad = DTensor({2, 1, 1, 4}, {0, 0, 0, 1, 0, 0, 1, 1});
    DTensor weights;
    DTensor out = scaled_dot_product_attention(q, k, v, pad, &weights);
    REQUIRE(out.shape() == Shape{2, 2, 2, 5});
    REQUIRE(weights.shape() == Shape{2, 2, 2, 4});
    for (index_t h = 0; h < 4; ++h) {
      const index_t b = h / 2;
      std::vector<std::vector<bool>> hidden(2, {false, false, b == 1, true});
      Mat a;
      const Mat expect = reference_masked(head(q, h, 2, 3), head(k, h, 4, 3), head(v, h, 4, 5), hidden, &a);
      CHECK((head(out, h, 2, 5) - expect).cwiseAbs().maxCoeff() < 1e-12);
      CHECK((head(weights, h, 2, 4) - a).cwiseAbs().maxCoeff() < 1e-12);
    }
    CHECK(weights.at({0, 1, 0, 3}) == 0.0);  // exactly 0, not small
    CHECK(weights.at({1, 0, 1, 2}) == 0.0);
    SUBCASE("a hidden key's value receives exactly zero gradient") {
      DTensor vv = random_tensor({2, 2, 4, 5}, 104).requires_grad(true);
      sum(scaled_dot_product_attention(q, k, vv, pad)).backward();
      DTensor gv = vv.grad_tensor();
      for (index_t c = 0; c < 5; ++c) {
        CHECK(gv.at({0, 0, 3, c}) == 0.0);
        CHECK(gv.at({1, 1, 2, c}) == 0.0);
        CHECK(gv.at({0, 0, 2, c}) != 0.0);
      }
    }
  }
  SUBCASE("one [Lq, Lk] mask for every head") {
    DTensor m = DTensor({2, 4}, {1, 0, 0, 1, 0, 1, 1, 0});
    DTensor out = scaled_dot_product_attention(q, k, v, m);
    const std::vector<std::vector<bool>> hidden = {{true, false, false, true}, {false, true, true, false}};
    for (index_t h = 0; h < 4; ++h)
      CHECK((head(out, h, 2, 5) - reference_masked(head(q, h, 2, 3), head(k, h, 4, 3), head(v, h, 4, 5), hidden))
                .cwiseAbs()
                .maxCoeff() < 1e-12);
  }
  SUBCASE("causal_mask as the mask gives what causal = true gives") {
    DTensor x = random_tensor({2, 4, 3}, 105);
    DTensor a = scaled_dot_product_attention(x, x, x, causal_mask<double>(4));
    DTensor b = scaled_dot_product_attention(x, x, x, true);
    CHECK((a.data() - b.data()).abs().maxCoeff() < 1e-15);
  }
  SUBCASE("a query with every key hidden: output 0 and gradient 0, never NaN") {
    DTensor qq = random_tensor({2, 3}, 106).requires_grad(true);
    DTensor kk = random_tensor({4, 3}, 107).requires_grad(true);
    DTensor m = DTensor({2, 1}, {0, 1});  // query 1 sees nothing
    DTensor out = scaled_dot_product_attention(qq, kk, kk, m);
    for (index_t c = 0; c < 3; ++c) CHECK(out.at({1, c}) == 0.0);
    sum(out).backward();
    CHECK(qq.grad().allFinite());
    CHECK(kk.grad().allFinite());
    for (index_t c = 0; c < 3; ++c) CHECK(qq.grad_at({1, c}) == 0.0);
  }
}

TEST_CASE("attention names the mask and the scores' shape when the mask does not broadcast") {
  DTensor q({2, 2, 3}, 0.0), k({2, 4, 3}, 0.0);
  const std::string m = message_of<shape_error>([&] { scaled_dot_product_attention(q, k, k, DTensor({2, 3}, 0.0)); });
  CHECK(contains(m, "scaled_dot_product_attention: mask [2, 3] does not broadcast to the scores [2, 2, 4]"));
  CHECK(contains(m, "k [2, 4, 3]"));
  CHECK(contains(message_of<shape_error>([&] {
                   scaled_dot_product_attention(q, k, k, DTensor({1, 1, 1, 4}, 0.0));
                 }),
                 "mask [1, 1, 1, 4]"));
}
