// SPDX-License-Identifier: MIT
// How tensors live on the tape: gradients that accumulate in leaves,
// stop_gradient and NoGradGuard, stale handles after a clear, printed graphs,
// the functional API and custom ops; then every error the tensor ops raise,
// each with a message that names the offending shapes or values.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::DTensor;
using tapegrad::testing::message_of;

namespace {

using V = std::vector<double>;

V grad_of(const DTensor& t) {
  auto g = t.grad();
  return {g.data(), g.data() + g.size()};
}

}  // namespace

TEST_CASE("leaf gradients accumulate until zero_grad") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor w = from<double>({1, 2}, true);

  sum(w * 3.0).backward();
  CHECK(grad_of(w) == V{3, 3});

  SUBCASE("a second backward adds to it, as in PyTorch") {
    sum(w * w).backward();  // d/dw = 2w = [2, 4]
    CHECK(grad_of(w) == V{5, 7});
  }
  SUBCASE("zero_grad starts over") {
    w.zero_grad();
    CHECK(grad_of(w) == V{0, 0});
  }
  SUBCASE("a tensor used twice gets the sum of both uses") {
    w.zero_grad();
    sum(w + w).backward();
    CHECK(grad_of(w) == V{2, 2});
  }
  SUBCASE("two roots over one recorded graph") {
    w.zero_grad();
    DTensor h = w * 2.0;
    DTensor first = sum(h), second = sum(h * h);  // 2w summed, and 4 w^2 summed
    first.backward();
    CHECK(grad_of(w) == V{2, 2});
    second.backward();
    CHECK(grad_of(w) == V{2 + 8, 2 + 16});  // d(4w^2)/dw = 8w added on
  }
}

TEST_CASE("stop_gradient: the value passes, the gradient does not") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({3}, true);
  DTensor s = stop_gradient(x);
  CHECK(s.item() == 3.0);
  CHECK_FALSE(s.requires_grad());
  CHECK(s.children().empty());  // no path back to x

  DTensor y = x * s;  // 9, but dy/dx is s = 3, not 2x = 6
  CHECK(y.item() == 9.0);
  y.backward();
  CHECK(x.grad()[0] == 3.0);

  SUBCASE("the printed graph shows the barrier") {
    const std::string table = tape_table(y);
    CHECK(table.find("stop_gradient#0") != std::string::npos);
    CHECK(table.find("[leaf0] (cut)") == std::string::npos);
    CHECK(table.find("[leaf0 (cut)]") != std::string::npos);
    const std::string dot = to_dot(y);
    CHECK(dot.find("octagon") != std::string::npos);
    CHECK(dot.find("no gradient") != std::string::npos);
  }
}

TEST_CASE("NoGradGuard: nothing is recorded") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({1, 2}, true);
  const std::size_t before = tape.size();
  {
    NoGradGuard guard;
    DTensor y = matmul(x, x) + 1.0;
    CHECK(y.item() == 6.0);
    CHECK(y.is_leaf());  // a plain constant
    CHECK_FALSE(y.requires_grad());
  }
  CHECK(tape.size() == before);
}

TEST_CASE("a handle to an intermediate goes stale when its tape is cleared") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor w = from<double>({1, 2}, true);
  DTensor y = w * 2.0;
  REQUIRE(y.is_alive());
  Tape::active().clear();
  CHECK_FALSE(y.is_alive());
  CHECK(w.to_vector() == V{1, 2});  // leaves survive
  CHECK_THROWS_AS(y.data(), stale_value_error);
  CHECK_THROWS_AS(sum(y), stale_value_error);
  CHECK_THROWS_AS(y.backward(), stale_value_error);
}

TEST_CASE("the printed tensor graph: one row per tensor") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({{1, 2, 3}, {4, 5, 6}});
  DTensor b = from<double>({1, 1, 1}, true);
  DTensor loss = sum(relu(x + b));
  const std::string expected =
      "node    op    shape   grad  inputs\n"
      "leaf0   leaf  [2, 3]  no    []\n"
      "leaf1   leaf  [3]     yes   []\n"
      "add#0   add   [2, 3]  yes   [leaf0, leaf1]\n"
      "relu#1  relu  [2, 3]  yes   [add#0]\n"
      "sum#2   sum   []      yes   [relu#1]\n";
  CHECK(tape_table(loss) == expected);

  const std::string dot = to_dot(loss);
  CHECK(dot.rfind("digraph tape {", 0) == 0);
  CHECK(dot.find("t2 -> t3") != std::string::npos);  // add feeds relu
  CHECK(dot.find("fillcolor=lightblue") != std::string::npos);  // b wants a gradient
}

TEST_CASE("value_and_grad for tensor functions") {
  auto [value, g] = value_and_grad([](const std::vector<DTensor>& x) { return sum(x[0] * x[1]); },
                                   std::vector<DTensor>{from<double>({1, 2}), from<double>({3, 4})});
  CHECK(value == 11.0);
  CHECK(g[0].to_vector() == V{3, 4});  // d(a.b)/da = b
  CHECK(g[1].to_vector() == V{1, 2});
  CHECK(grad([](const std::vector<DTensor>& x) { return mean(x[0]); }, std::vector<DTensor>{from<double>({5, 7})})[0]
            .to_vector() == V{0.5, 0.5});
  CHECK_THROWS_AS(value_and_grad([](const std::vector<DTensor>& x) { return x[0]; },
                                 std::vector<DTensor>{from<double>({1, 2})}),
                  shape_error);
}

TEST_CASE("errors name the operation and the offending values") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor a = zeros<double>({2, 3}), b = zeros<double>({4});

  SUBCASE("shapes that do not broadcast") {
    CHECK(message_of<shape_error>([&] { return a + b; }) ==
          "add: [2, 3] and [4]: shapes do not broadcast (3 vs 4 in dimension 1 of the result)");
    CHECK(message_of<shape_error>([&] { return a * b; }).rfind("mul: [2, 3] and [4]", 0) == 0);
    CHECK(message_of<shape_error>([&] { return where(b, a, a); }).rfind("where: [4] and [2, 3]", 0) == 0);
  }
  SUBCASE("matmul names both shapes") {
    CHECK(message_of<shape_error>([] { return matmul(zeros<double>({8, 64}), zeros<double>({32, 20})); }) ==
          "matmul: [8, 64] x [32, 20]: inner dimensions differ (64 vs 32)");
    CHECK(message_of<shape_error>([] {
            return matmul(zeros<double>({8, 64}), zeros<double>({20, 32}), {.transpose_b = true});
          }) == "matmul: [8, 64] x [20, 32]^T: inner dimensions differ (64 vs 32)");
    CHECK(message_of<shape_error>([] { return matmul(zeros<double>({2, 3, 4}), zeros<double>({5, 4, 6})); }) ==
          "matmul: [2, 3, 4] x [5, 4, 6]: batch dimensions [2] and [5] do not broadcast");
    CHECK_THROWS_AS(matmul(zeros<double>({}), a), shape_error);
  }
  SUBCASE("a reshape that cannot be") {
    CHECK(message_of<shape_error>([&] { return reshape(a, {4, 2}); }) ==
          "reshape: [2, 3] (6 elements) to [4, 2]: the element counts differ");
    CHECK(message_of<shape_error>([&] { return reshape(a, {-1, -1}); }).find("more than one -1") !=
          std::string::npos);
    CHECK(message_of<shape_error>([&] { return reshape(a, {4, -1}); }).find("no extent for -1 fits") !=
          std::string::npos);
    CHECK(message_of<shape_error>([&] { return reshape(a, {-2, -3}); }).find("negative extent") != std::string::npos);
    CHECK(message_of<shape_error>([&] { return reshape(a, {1, 1, 1, 2, 3}); }).find("rank above 4") !=
          std::string::npos);
  }
  SUBCASE("an index out of range names the index and the bound") {
    CHECK(message_of<index_error>([&] { return index_select(a, 1, {0, 3}); }) ==
          "index_select: index 3 (position 1) out of range [0, 3) for dimension 1 of shape [2, 3]");
    CHECK(message_of<index_error>([&] { return index_select(a, 0, {-1}); }).find("index -1") != std::string::npos);
    CHECK(message_of<index_error>([&] { return narrow(a, 1, 2, 2); }) ==
          "narrow: window [2, 4) out of range [0, 3) in dimension 1 of shape [2, 3]");
    CHECK_THROWS_AS(slice(a, 0, 1, 5), index_error);
  }
  SUBCASE("a bad axis") {
    CHECK(message_of<index_error>([&] { return sum(a, 2); }) ==
          "sum: dimension 2 out of range for rank 2 (valid: -2 to 1)");
    CHECK_THROWS_AS(mean(a, -3), index_error);
    CHECK_THROWS_AS(max(a, 5), index_error);
    CHECK_THROWS_AS(logsumexp(a, 2), index_error);
    CHECK_THROWS_AS(transpose(a, 0, 2), index_error);
    CHECK(message_of<value_error>([&] { return sum(a, {1, -1}); }) == "sum: axis -1 listed twice for shape [2, 3]");
    CHECK(message_of<value_error>([&] { return permute(a, {1, 1}); }) == "permute: [1, 1] names dimension 1 twice");
    CHECK_THROWS_AS(permute(a, {0}), shape_error);
  }
  SUBCASE("pieces that do not fit") {
    CHECK(message_of<shape_error>([&] { return concat(std::vector<DTensor>{a, zeros<double>({3, 2})}, 0); }) ==
          "concat: [2, 3] and [3, 2] (tensor 1) differ outside dimension 0");
    CHECK_THROWS_AS(concat(std::vector<DTensor>{}, 0), value_error);
    CHECK(message_of<shape_error>([&] { return split(a, std::vector<index_t>{1, 1}, 1); }) ==
          "split: pieces summing to 2 do not cover extent 3 of dimension 1 of shape [2, 3]");
    CHECK_THROWS_AS(split(a, 0, 1), value_error);
    CHECK(message_of<value_error>([&] { return split(a, std::vector<index_t>{4, -1}, 1); }) ==
          "split: negative piece size -1");
    CHECK_THROWS_AS(bias_act(a, b, Activation::relu), shape_error);
  }
  SUBCASE("bad values") {
    CHECK(message_of<value_error>([&] { return clamp(a, 1.0, -1.0); }).rfind("clamp: lo", 0) == 0);
    CHECK(message_of<value_error>([] { return max(zeros<double>({0})); }) == "max: shape [0] has no elements");
    CHECK(message_of<value_error>([] { return logsumexp(zeros<double>({2, 0, 3}), 1); }) ==
          "logsumexp: the reduced axis of shape [2, 0, 3] is empty");
    Generator gen(1);
    CHECK(message_of<value_error>([&] { return xavier_uniform({5}, gen); }) ==
          "xavier_uniform: shape [5] has fewer than 2 dimensions, so fan_in and fan_out are undefined");
    CHECK(message_of<value_error>([&] { return kaiming_normal({0, 5}, gen); }) ==
          "kaiming_normal: shape [0, 5] has a fan of 0");
    CHECK(message_of<value_error>([&] { return normal({2}, gen, 0.0, -1.0); }).rfind("normal: standard deviation", 0) ==
          0);
    CHECK(message_of<value_error>([&] { return uniform({2}, gen, 1.0, 0.0); }).rfind("uniform: lo", 0) == 0);
  }
  SUBCASE("a failed op leaves nothing on the tape") {
    const std::size_t before = tape.size();
    CHECK_THROWS(a + b);
    CHECK(tape.size() == before);
  }
}
