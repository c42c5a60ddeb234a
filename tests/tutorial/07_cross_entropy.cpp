// SPDX-License-Identifier: MIT
//
// Chapter 7: the gradient of cross-entropy is P - one_hot.
//
// A tiny language model over six tokens has read "<BOS> I like transformers"
// and must predict, at each of the four positions, the next token:
// I, like, transformers, <EOS>. An untrained model spreads its probability
// almost evenly, as in the table below. For softmax followed by cross-entropy
// the derivative of the loss with respect to each logit is
//
//     dL/dlogit_i = P(i) - [i == target]
//
// negative for the target (push its logit up), positive for every other class
// (push those down). `cross_entropy` computes exactly this in one fused node.
// Here we feed it logits whose softmax is the table and read the table of
// gradients back.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "tapegrad/tensor/nn_functional.hpp"

using tapegrad::index_t;
using tapegrad::Reduction;
using tapegrad::Shape;
using tapegrad::Tensor;

namespace {

const char* const token_names[] = {"<PAD>", "<BOS>", "<EOS>", "I", "like", "transformers"};

// Next-token probabilities at positions 0..3 (rows) over the six tokens (columns).
const std::vector<float> probs = {
    0.1785f, 0.2007f, 0.1759f, 0.1254f, 0.1563f, 0.1632f,  // pos 0, after <BOS>
    0.1836f, 0.1969f, 0.1805f, 0.1233f, 0.1500f, 0.1657f,  // pos 1, after I
    0.1795f, 0.2050f, 0.1782f, 0.1207f, 0.1437f, 0.1728f,  // pos 2, after like
    0.1855f, 0.2017f, 0.1771f, 0.1271f, 0.1391f, 0.1695f,  // pos 3, after transformers
};
const std::vector<index_t> targets = {3, 4, 5, 2};  // I, like, transformers, <EOS>
const std::vector<index_t> inputs = {1, 3, 4, 5};   // the token read at each position

// The table as the hand calculation prints it: position name, then one
// column per token, four decimals.
std::string format_table(const Tensor& grad) {
  std::string out;
  char line[128];
  std::snprintf(line, sizeof line, "%-12s %8s %8s %8s %8s %8s %8s\n", "Position", "<PAD>", "<BOS>", "<EOS>", "I",
                "like", "trans");
  out += line;
  for (index_t r = 0; r < 4; ++r) {
    std::snprintf(line, sizeof line, "%-12s", token_names[inputs[static_cast<std::size_t>(r)]]);
    out += line;
    for (index_t c = 0; c < 6; ++c) {
      std::snprintf(line, sizeof line, " %8.4f", static_cast<double>(grad.grad_at({r, c})));
      out += line;
    }
    out += "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("tutorial 7: the gradient of cross-entropy is P - one_hot") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  // Logits whose softmax is the table: log P. Softmax divides by the row sum,
  // so softmax(log P) = P / sum(P), which is P itself when the row sums to 1.
  std::vector<float> log_p(probs.size());
  for (std::size_t i = 0; i < probs.size(); ++i) log_p[i] = std::log(probs[i]);
  Tensor logits = Tensor(Shape{4, 6}, log_p).requires_grad(true);

  // Summed over the four positions, so each row's gradient is exactly P - one_hot
  // (the default, the mean, would divide every row by 4).
  Tensor loss = cross_entropy(logits, targets, {.reduction = Reduction::sum});
  loss.backward();

  SUBCASE("the loss is the sum of -log P(target)") {
    // -log 0.1254 - log 0.1500 - log 0.1728 - log 0.1771 = 7.4599, with row 2
    // renormalised by its sum 0.9999 (see below)
    const double expected = -std::log(0.1254) - std::log(0.1500) - std::log(0.1728 / 0.9999) - std::log(0.1771);
    CHECK(loss.item() == doctest::Approx(expected).epsilon(1e-5));
  }

  SUBCASE("position 0 (<BOS> -> I): the target gets P - 1, the others P") {
    CHECK(logits.grad_at({0, 3}) == doctest::Approx(0.1254 - 1).epsilon(1e-4));  // -0.8746
    CHECK(logits.grad_at({0, 0}) == doctest::Approx(0.1785).epsilon(1e-4));
    CHECK(logits.grad_at({0, 1}) == doctest::Approx(0.2007).epsilon(1e-4));
    CHECK(logits.grad_at({0, 5}) == doctest::Approx(0.1632).epsilon(1e-4));
  }

  SUBCASE("the other positions' targets: -0.8500, -0.8272, -0.8229") {
    CHECK(logits.grad_at({1, 4}) == doctest::Approx(-0.8500).epsilon(1e-4));
    CHECK(logits.grad_at({2, 5}) == doctest::Approx(-0.8272).epsilon(1e-4));
    CHECK(logits.grad_at({3, 2}) == doctest::Approx(-0.8229).epsilon(1e-4));
  }

  SUBCASE("negative only at the target: raise it, lower the rest") {
    for (index_t r = 0; r < 4; ++r)
      for (index_t c = 0; c < 6; ++c) {
        CAPTURE(r);
        CAPTURE(c);
        CHECK((logits.grad_at({r, c}) < 0) == (c == targets[static_cast<std::size_t>(r)]));
      }
  }

  SUBCASE("every row sums to zero: sum_i P(i) - 1 = 1 - 1") {
    for (Eigen::Index r = 0; r < 4; ++r) {
      CAPTURE(r);
      CHECK(std::abs(logits.grad().segment(6 * r, 6).sum()) < 1e-6f);
    }
    // The table itself is rounded to four decimals, and row 2 of it sums to
    // 0.9999, so subtracting the one-hot by hand leaves a row sum of -0.0001.
    // Our logits are log P, and softmax divides by the row sum, so the
    // probabilities we differentiate are P / 0.9999: they sum to 1 and the
    // gradient row to 0. (Rows 0, 1 and 3 sum to 1 already.) The
    // renormalisation moves entries by at most 0.00002, below the table's last
    // digit, so the printed table below is unchanged.
    double hand_row2 = -1.0;
    for (std::size_t c = 0; c < 6; ++c) hand_row2 += probs[12 + c];
    CHECK(hand_row2 == doctest::Approx(-0.0001).epsilon(1e-3));
  }

  SUBCASE("the table, printed as the hand calculation prints it") {
    const std::string table = format_table(logits);
    std::cout << "\nLoss gradients with respect to the logits\n" << table;
    CHECK(table ==
          "Position        <PAD>    <BOS>    <EOS>        I     like    trans\n"
          "<BOS>          0.1785   0.2007   0.1759  -0.8746   0.1563   0.1632\n"
          "I              0.1836   0.1969   0.1805   0.1233  -0.8500   0.1657\n"
          "like           0.1795   0.2050   0.1782   0.1207   0.1437  -0.8272\n"
          "transformers   0.1855   0.2017  -0.8229   0.1271   0.1391   0.1695\n");
  }

  SUBCASE("with the default mean, each row is divided by the 4 positions") {
    logits.zero_grad();
    cross_entropy(logits, targets).backward();
    CHECK(logits.grad_at({0, 3}) == doctest::Approx(-0.8746 / 4).epsilon(1e-4));
    CHECK(logits.grad_at({3, 0}) == doctest::Approx(0.1855 / 4).epsilon(1e-4));
  }
}
