// SPDX-License-Identifier: MIT
//
// Chapter 8: backward through a transformer, one layer at a time.
//
// A transformer that reads "Max(1,6,2)" and should answer "6" ends in an
// output projection and a cross-entropy loss; before that come blocks of
// attention, a feed-forward network with a ReLU, layer norms and residual
// additions; at the very start, an embedding table. We follow the gradient
// from the loss back to the embeddings and check, at every stop, the numbers
// a person can work out by hand: the tape's gradients must equal the closed
// forms.

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "testing.hpp"

using tapegrad::Generator;
using tapegrad::index_t;
using tapegrad::Shape;
using tapegrad::Tensor;
using tapegrad::testing::DTensor;

namespace {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A tensor's gradient as a matrix of its shape (folded to rows x last dim).
Mat grad_matrix(const Tensor& t) {
  const index_t cols = t.shape()[-1];
  return Eigen::Map<const Mat>(t.grad().data(), t.numel() / cols, cols);
}

float max_abs_diff(const Mat& a, const Mat& b) { return (a - b).cwiseAbs().maxCoeff(); }

}  // namespace

// ---------------------------------------------------------------------------
// Stop 1: logits = final_repr W + b, then cross-entropy against token 8 ('6').
TEST_CASE("tutorial 8.1: the output projection's gradients") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Generator gen(3);

  // The final representation (its first five features, as in the worked
  // example), a weight [5, 20] and a bias [20] over a vocabulary of 20 tokens.
  Tensor repr = Tensor(Shape{1, 5}, {0.234f, -0.567f, 0.891f, -0.123f, 0.456f}).requires_grad(true);
  Tensor w = tapegrad::normal<float>({5, 20}, gen, 0.0, 0.5).requires_grad(true);
  // We pick the bias so the model gives the answer '6' probability 0.6925 and
  // shares the rest evenly: b = log P - repr W, so softmax(logits) = P.
  Eigen::RowVectorXf p = Eigen::RowVectorXf::Constant(20, (1.0f - 0.6925f) / 19);
  p[8] = 0.6925f;
  const Eigen::RowVectorXf b_values = p.array().log().matrix() - repr.matrix() * w.matrix();
  Tensor b = Tensor(Shape{20}, std::vector<float>(b_values.data(), b_values.data() + 20)).requires_grad(true);

  Tensor logits = matmul(repr, w) + b;  // [1, 20]; the bias broadcasts over the row
  Tensor loss = cross_entropy(logits, {8});
  REQUIRE(softmax(logits).at({0, 8}) == doctest::Approx(0.6925));
  loss.backward();

  SUBCASE("dL/dlogits = P - one_hot: -0.3075 for the answer") {
    // The bias enters with derivative 1, so its gradient *is* the logit gradient.
    CHECK(b.grad_at({8}) == doctest::Approx(-0.3075).epsilon(1e-4));
    CHECK(b.grad_at({0}) == doctest::Approx(0.3075 / 19).epsilon(1e-4));
    CHECK(b.grad().sum() == doctest::Approx(0.0).epsilon(1e-6));
  }

  SUBCASE("dL/dW[i, j] = final_repr[i] * dL/dlogit[j], an outer product") {
    // Column 8: 0.234 * -0.3075 = -0.071955 (printed -0.0719 in the worked
    // example), -0.567 * -0.3075 = 0.1744, ...
    CHECK(w.grad_at({0, 8}) == doctest::Approx(-0.071955).epsilon(1e-4));
    CHECK(w.grad_at({1, 8}) == doctest::Approx(0.1744).epsilon(1e-3));
    CHECK(w.grad_at({2, 8}) == doctest::Approx(-0.2740).epsilon(1e-3));
    CHECK(w.grad_at({3, 8}) == doctest::Approx(0.0378).epsilon(1e-3));
    CHECK(w.grad_at({4, 8}) == doctest::Approx(-0.1402).epsilon(1e-3));
    // And every other entry: repr^T [5, 1] times dlogits [1, 20].
    const Mat outer = repr.matrix().transpose() * grad_matrix(b).row(0);
    CHECK(max_abs_diff(grad_matrix(w), outer) < 1e-6f);
  }

  SUBCASE("dL/dfinal_repr = W dL/dlogits: what flows on into the blocks") {
    const Mat expected = (w.matrix() * grad_matrix(b).row(0).transpose()).transpose();
    CHECK(max_abs_diff(grad_matrix(repr), expected) < 1e-6f);
  }
}

// ---------------------------------------------------------------------------
// Stop 2: the feed-forward network, hidden = relu(x W1 + b1), out = hidden W2 + b2.
TEST_CASE("tutorial 8.2: ReLU zeroes the gradient where its input was negative") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  SUBCASE("z = [-2.3, 1.5, -0.7, 3.2, 0.8]") {
    Tensor z = Tensor(Shape{5}, {-2.3f, 1.5f, -0.7f, 3.2f, 0.8f}).requires_grad(true);
    Tensor h = relu(z);
    CHECK(h.to_vector() == std::vector<float>{0.0f, 1.5f, 0.0f, 3.2f, 0.8f});
    h.backward(Tensor(Shape{5}, {0.5f, -0.3f, 0.2f, -0.8f, 0.4f}));  // the upstream gradient
    CHECK(z.grad_tensor().to_vector() == std::vector<float>{0.0f, -0.3f, 0.0f, -0.8f, 0.4f});
  }

  SUBCASE("the two linear layers around it follow the output projection's pattern") {
    Generator gen(5);
    Tensor x = tapegrad::normal<float>({3, 4}, gen).requires_grad(true);
    Tensor w1 = tapegrad::normal<float>({4, 6}, gen).requires_grad(true);
    Tensor b1 = tapegrad::normal<float>({6}, gen).requires_grad(true);
    Tensor w2 = tapegrad::normal<float>({6, 4}, gen).requires_grad(true);
    Tensor b2 = tapegrad::normal<float>({4}, gen).requires_grad(true);
    Tensor z = matmul(x, w1) + b1;
    Tensor hidden = relu(z);
    Tensor out = matmul(hidden, w2) + b2;
    const Tensor g = tapegrad::normal<float>({3, 4}, gen);  // dL/dout
    out.backward(g);

    const Mat dhidden = g.matrix() * w2.matrix().transpose();                                // dL/dhidden = dout W2^T
    const Mat dz = dhidden.cwiseProduct((z.matrix().array() > 0).cast<float>().matrix());    // ReLU's gate
    CHECK(max_abs_diff(grad_matrix(w2), hidden.matrix().transpose() * g.matrix()) < 1e-5f);  // hidden^T dout
    CHECK(max_abs_diff(grad_matrix(b2), g.matrix().colwise().sum()) < 1e-5f);                // summed over rows
    CHECK(max_abs_diff(grad_matrix(w1), x.matrix().transpose() * dz) < 1e-5f);               // x^T dz
    CHECK(max_abs_diff(grad_matrix(b1), dz.colwise().sum()) < 1e-5f);
    CHECK(max_abs_diff(grad_matrix(x), dz * w1.matrix().transpose()) < 1e-5f);  // dz W1^T
  }
}

// ---------------------------------------------------------------------------
// Stop 3: layer norm, y = gamma * (x - mean) / std + beta over each row.
TEST_CASE("tutorial 8.3: layer norm's gradients") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  // Row 0 is [1, 2, 3, 4]: mean 2.5, variance 1.25. Row 1 is twice row 0
  // (mean 5, variance 5). Both normalise to the same
  // xhat = [-3, -1, 1, 3] / sqrt(5) = [-1.3416, -0.4472, 0.4472, 1.3416].
  Tensor x = Tensor(Shape{2, 4}, {1, 2, 3, 4, 2, 4, 6, 8}).requires_grad(true);
  Tensor gamma = Tensor(Shape{4}, 1.0f).requires_grad(true);
  Tensor beta = Tensor(Shape{4}, 0.0f).requires_grad(true);
  Tensor y = layer_norm(x, gamma, beta, /*eps=*/0.0);
  REQUIRE(y.at({1, 0}) == doctest::Approx(-1.3416).epsilon(1e-4));
  y.backward(Tensor(Shape{2, 4}, {0.5f, -0.3f, 0.2f, -0.8f, 0.1f, 0.4f, -0.2f, 0.3f}));

  SUBCASE("dbeta sums the upstream gradient over the rows") {
    CHECK(beta.grad_tensor().to_vector() == std::vector<float>{0.5f + 0.1f, -0.3f + 0.4f, 0.2f - 0.2f, -0.8f + 0.3f});
  }

  SUBCASE("dgamma sums upstream * xhat over the rows") {
    // Both rows share xhat, so dgamma = (dy_0 + dy_1) * xhat = [0.6, 0.1, 0, -0.5] * xhat.
    CHECK(gamma.grad_at({0}) == doctest::Approx(0.6 * -1.3416).epsilon(1e-4));  // -0.8050
    CHECK(gamma.grad_at({1}) == doctest::Approx(0.1 * -0.4472).epsilon(1e-4));  // -0.0447
    CHECK(gamma.grad_at({2}) == doctest::Approx(0.0).epsilon(1e-6));
    CHECK(gamma.grad_at({3}) == doctest::Approx(-0.5 * 1.3416).epsilon(1e-4));  // -0.6708
  }

  SUBCASE("dx carries the mean and variance corrections") {
    // Shifting a row or scaling it leaves y unchanged, so dx is orthogonal to
    // both directions: each row of dx sums to 0 and has zero dot product
    // with xhat. A plain 1/std scaling of the gradient would satisfy neither.
    const Mat dx = grad_matrix(x);
    const Mat xhat = y.matrix();  // gamma = 1, beta = 0
    for (Eigen::Index r = 0; r < 2; ++r) {
      CHECK(std::abs(dx.row(r).sum()) < 1e-6f);
      CHECK(std::abs(dx.row(r).dot(xhat.row(r))) < 1e-6f);
    }
    // By hand for row 0, with dy = [0.5, -0.3, 0.2, -0.8]: 1/std = 0.8944,
    // mean(dy) = -0.1, mean(dy * xhat) = -0.3801, so
    // dx[0] = 0.8944 * (0.5 + 0.1 - (-1.3416)(-0.3801)) = 0.0805.
    CHECK(dx(0, 0) == doctest::Approx(0.0805).epsilon(1e-3));
    CHECK(dx(0, 1) == doctest::Approx(-0.3309).epsilon(1e-3));
  }

  SUBCASE("and the whole rule passes the gradient check") {
    auto r = tapegrad::gradcheck(
        [](const std::vector<DTensor>& in) { return layer_norm(in[0], in[1], in[2]); },
        {tapegrad::testing::random_tensor({3, 6}, 1, -2, 2), tapegrad::testing::random_tensor({6}, 2, 0.5, 1.5),
         tapegrad::testing::random_tensor({6}, 3)});
    CHECK_MESSAGE(r.passed, r.report());
  }
}

// ---------------------------------------------------------------------------
// Stop 4: one attention head, A = softmax(Q K^T / sqrt(d)), out = A V.
namespace {

// The backward pass of one head written out by hand, as the formulas read.
struct HandAttention {
  Mat a, dq, dk, dv;
};

HandAttention attention_by_hand(const Mat& q, const Mat& k, const Mat& v, const Mat& d_out, bool causal) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(q.cols()));
  HandAttention h;
  Mat s = q * k.transpose() * scale;
  h.a = Mat(s.rows(), s.cols());
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    Eigen::RowVectorXf e = (s.row(i).array() - s.row(i).maxCoeff()).exp().matrix();
    if (causal)
      for (Eigen::Index j = i + 1; j < s.cols(); ++j) e[j] = 0;  // keys after the query are hidden
    h.a.row(i) = e / e.sum();
  }
  h.dv = h.a.transpose() * d_out;        // dV = A^T dO
  const Mat da = d_out * v.transpose();  // dA = dO V^T
  const Eigen::VectorXf rowdot = da.cwiseProduct(h.a).rowwise().sum();
  const Mat ds = h.a.cwiseProduct(da - rowdot.replicate(1, da.cols()));  // dS = A * (dA - rowsum(dA * A))
  h.dq = ds * k * scale;                                                 // dQ = dS K / sqrt(d)
  h.dk = ds.transpose() * q * scale;                                     // dK = dS^T Q / sqrt(d)
  return h;
}

}  // namespace

TEST_CASE("tutorial 8.4: attention's gradients go through softmax's non-diagonal Jacobian") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Generator gen(8);
  // Eight positions ("Max(1,6,2)" as tokens), one head of width 16.
  Tensor q = tapegrad::normal<float>({8, 16}, gen).requires_grad(true);
  Tensor k = tapegrad::normal<float>({8, 16}, gen).requires_grad(true);
  Tensor v = tapegrad::normal<float>({8, 16}, gen).requires_grad(true);
  const Tensor d_out = tapegrad::normal<float>({8, 16}, gen);  // what the next layer sends back

  for (bool causal : {false, true}) {
    CAPTURE(causal);
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
    Tensor weights;
    Tensor out = scaled_dot_product_attention(q, k, v, causal, &weights);
    out.backward(d_out);
    const HandAttention hand = attention_by_hand(q.matrix(), k.matrix(), v.matrix(), d_out.matrix(), causal);
    CHECK(max_abs_diff(weights.matrix(), hand.a) < 1e-6f);
    CHECK(max_abs_diff(grad_matrix(v), hand.dv) < 1e-5f);
    CHECK(max_abs_diff(grad_matrix(q), hand.dq) < 1e-5f);
    CHECK(max_abs_diff(grad_matrix(k), hand.dk) < 1e-5f);
  }

  SUBCASE("softmax's Jacobian is diag(a) - a a^T: every score moves every weight of its row") {
    // The shortcut A * (dA - rowsum(dA * A)) is this full Jacobian applied to dA.
    Tensor weights;
    scaled_dot_product_attention(q, k, v, false, &weights);
    const Eigen::VectorXf a = weights.matrix().row(0).transpose();
    const Mat jacobian = Mat(a.asDiagonal()) - a * a.transpose();
    CHECK(jacobian(0, 1) == doctest::Approx(-a[0] * a[1]));  // off the diagonal, not 0
    CHECK(std::abs(jacobian(0, 1)) > 0.0f);
    const Eigen::VectorXf da = (d_out.matrix() * v.matrix().transpose()).row(0).transpose();
    const Eigen::VectorXf shortcut = a.cwiseProduct(da - Eigen::VectorXf::Constant(8, da.dot(a)));
    CHECK((jacobian * da - shortcut).cwiseAbs().maxCoeff() < 1e-6f);
  }

  SUBCASE("heads do not mix: a head whose output gets no gradient sends none back") {
    // Four heads [H, T, Dh] = [4, 8, 16]; only head 1's output is used by the loss.
    Tensor q4 = tapegrad::normal<float>({4, 8, 16}, gen).requires_grad(true);
    Tensor k4 = tapegrad::normal<float>({4, 8, 16}, gen).requires_grad(true);
    Tensor v4 = tapegrad::normal<float>({4, 8, 16}, gen).requires_grad(true);
    std::vector<float> seed(4 * 8 * 16, 0.0f);
    for (int i = 0; i < 8 * 16; ++i) seed[static_cast<std::size_t>(8 * 16 + i)] = 1.0f;
    scaled_dot_product_attention(q4, k4, v4, true).backward(Tensor(Shape{4, 8, 16}, seed));
    CHECK(q4.grad().segment(0, 128).isZero());     // head 0
    CHECK(!q4.grad().segment(128, 128).isZero());  // head 1
    CHECK(k4.grad().segment(256, 256).isZero());   // heads 2 and 3
  }
}

// ---------------------------------------------------------------------------
// Stop 5: the embedding table, x[p] = E[token[p]] + PE[p].
TEST_CASE("tutorial 8.5: a token that appears twice collects both positions' gradients") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Generator gen(9);
  // "Max(1,6,2)": the comma, token 19, sits at positions 3 and 5.
  const std::vector<index_t> tokens = {15, 17, 3, 19, 8, 19, 4, 18};
  Tensor table = tapegrad::normal<float>({20, 4}, gen).requires_grad(true);
  const Tensor positions = tapegrad::normal<float>({8, 4}, gen);  // fixed positional encodings
  Tensor x = embedding(table, tokens) + positions;
  // The gradient arriving at position p: (p + 1) * [1, 0.5, -1, 2].
  std::vector<float> g;
  for (int p = 0; p < 8; ++p)
    for (float c : {1.0f, 0.5f, -1.0f, 2.0f}) g.push_back(static_cast<float>(p + 1) * c);
  x.backward(Tensor(Shape{8, 4}, g));

  // Row 19 receives position 3's (4x) plus position 5's (6x): 10 * [1, 0.5, -1, 2].
  CHECK(table.grad_at({19, 0}) == 10.0f);
  CHECK(table.grad_at({19, 1}) == 5.0f);
  CHECK(table.grad_at({19, 2}) == -10.0f);
  CHECK(table.grad_at({19, 3}) == 20.0f);
  // Tokens read once get their one position's gradient: token 15 at position 0, token 18 at 7.
  CHECK(table.grad_at({15, 3}) == 2.0f);
  CHECK(table.grad_at({18, 0}) == 8.0f);
  // Tokens not in the input get nothing.
  CHECK(grad_matrix(table).row(0).isZero());
  CHECK(grad_matrix(table).row(7).isZero());
}

// ---------------------------------------------------------------------------
// All stops together: embedding -> layer norm -> attention with a residual ->
// output projection -> cross-entropy, checked against finite differences.
TEST_CASE("tutorial 8.6: the whole chain passes the gradient check") {
  const std::vector<index_t> tokens = {1, 4, 2, 4, 0};
  const std::vector<index_t> next = {4, 2, 4, 0, 3};
  auto model = [&](const std::vector<DTensor>& p) {
    // p: table [6, 4], gamma [4], beta [4], Wq, Wk, Wv [4, 4], Wout [4, 6], bout [6]
    DTensor x = embedding(p[0], tokens);
    DTensor h = layer_norm(x, p[1], p[2]);
    DTensor att = scaled_dot_product_attention(matmul(h, p[3]), matmul(h, p[4]), matmul(h, p[5]), true);
    DTensor logits = matmul(x + att, p[6]) + p[7];  // the residual: gradient reaches x by two roads
    return cross_entropy(logits, next);
  };
  std::vector<DTensor> params;
  unsigned seed = 10;
  for (const Shape& s : {Shape{6, 4}, Shape{4}, Shape{4}, Shape{4, 4}, Shape{4, 4}, Shape{4, 4}, Shape{4, 6}, Shape{6}})
    params.push_back(tapegrad::testing::random_tensor(s, seed++));
  params[1].data() += 1.0;  // gamma near 1
  auto r = tapegrad::gradcheck(model, params);
  CHECK_MESSAGE(r.passed, r.report());
}
