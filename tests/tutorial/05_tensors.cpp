// SPDX-License-Identifier: MIT
//
// Chapter 5: tensors.
//
// Everything so far worked on single numbers. A transformer works on arrays:
// a row of 64 features times a [64 x 20] weight matrix, plus a bias of 20.
// tapegrad's Tensor is such an array, recorded on the same tape. One tensor op
// is one node, and its backward rule moves a whole array of gradients at once.
//
// We build the output projection of a (very) small model, logits = x W + b,
// and check by hand the three gradients every linear layer has:
//
//     dL/db = dL/dlogits                 (summed over rows)
//     dL/dW = x^T dL/dlogits             (an outer product for one row)
//     dL/dx = dL/dlogits W^T             (what flows on to earlier layers)

#include <doctest/doctest.h>

#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::Shape;
using tapegrad::Tensor;

namespace {
std::vector<float> grad_of(const Tensor& t) {
  auto g = t.grad();
  return {g.data(), g.data() + g.size()};
}
}  // namespace

TEST_CASE("tutorial 5.1: a tensor is a shape and row-major values") {
  // Nested lists are rows: two rows of three.
  Tensor x = tapegrad::from({{1, 2, 3}, {4, 5, 6}});
  CHECK(x.shape() == Shape{2, 3});
  CHECK(x.rank() == 2);
  CHECK(x.numel() == 6);
  CHECK(x.at({1, 0}) == 4.0f);  // row 1, column 0
  // Made by a creation function, it is a leaf: it owns its values and outlives the tape.
  CHECK(x.is_leaf());
  CHECK_FALSE(x.requires_grad());  // inputs do not want gradients; parameters do
}

TEST_CASE("tutorial 5.2: broadcasting adds a bias to every row") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Tensor x = tapegrad::from({{1, 2, 3}, {4, 5, 6}});
  Tensor b = tapegrad::from({10, 20, 30}, /*requires_grad=*/true);

  // [2, 3] + [3]: shapes line up from the right, and b is reused for each row.
  Tensor y = x + b;
  CHECK(y.shape() == Shape{2, 3});
  CHECK(y.to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});

  // b was used once per row, so its gradient is the sum over the rows.
  Tensor loss = tapegrad::sum(y * tapegrad::from({{1, 0, 2}, {1, 1, 0}}));
  loss.backward();
  CHECK(grad_of(b) == std::vector<float>{2, 1, 2});  // column sums of the weights
}

TEST_CASE("tutorial 5.3: logits = x W + b, and its three gradients by hand") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  // One row of 3 features, 2 classes. W is stored [in, out], so x W is [1, 2].
  Tensor x = tapegrad::from({{1, 2, 3}}, true);
  Tensor W = tapegrad::from({{1, 0}, {0, 1}, {1, 1}}, true);
  Tensor b = tapegrad::from({0.5, -0.5}, true);

  Tensor logits = tapegrad::matmul(x, W) + b;  // [1 + 3 + 0.5, 2 + 3 - 0.5]
  CHECK(logits.to_vector() == std::vector<float>{4.5f, 4.5f});

  // Pretend the loss above sends back dL/dlogits = [0.25, -0.75] (as softmax
  // minus one-hot would: positive for the wrong class, negative for the right one).
  Tensor upstream = tapegrad::from({{0.25, -0.75}});
  Tensor loss = tapegrad::sum(logits * upstream);
  loss.backward();

  SUBCASE("the bias gradient is the logit gradient") { CHECK(grad_of(b) == std::vector<float>{0.25f, -0.75f}); }
  SUBCASE("the weight gradient is the outer product x^T dL/dlogits") {
    // Row i of dW is x_i times [0.25, -0.75].
    CHECK(grad_of(W) == std::vector<float>{0.25f, -0.75f, 0.5f, -1.5f, 0.75f, -2.25f});
  }
  SUBCASE("the input gradient is dL/dlogits W^T") {
    // [0.25*1 + -0.75*0, 0.25*0 + -0.75*1, 0.25*1 + -0.75*1]
    CHECK(grad_of(x) == std::vector<float>{0.25f, -0.75f, -0.5f});
  }
}

TEST_CASE("tutorial 5.4: trust, but check: gradcheck in double precision") {
  // The same layer on random numbers, with a batch of 4 rows: gradcheck
  // compares the tape's gradients with finite differences.
  using tapegrad::testing::random_tensor;
  auto r = tapegrad::gradcheck([](const auto& in) { return tapegrad::matmul(in[0], in[1]) + in[2]; },
                               {random_tensor({4, 3}, 1), random_tensor({3, 2}, 2), random_tensor({2}, 3)});
  CHECK_MESSAGE(r.passed, r.report());
}
