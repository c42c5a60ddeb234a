// SPDX-License-Identifier: MIT
// How tensors live on the tape: gradients that accumulate in leaves,
// stop_gradient and NoGradGuard, stale handles after a clear, printed graphs,
// the functional API and custom ops; then every error the tensor ops raise,
// each with a message that names the offending shapes or values.

#include <doctest/doctest.h>

#include <string>
#include <thread>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using namespace tapegrad;
using tapegrad::testing::DTensor;
using tapegrad::testing::grad_of;
using tapegrad::testing::message_of;

namespace {

using V = std::vector<double>;

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
  CHECK_THROWS_AS(y.data(), stale_handle_error);
  CHECK_THROWS_AS(sum(y), stale_handle_error);
  CHECK_THROWS_AS(y.backward(), stale_handle_error);
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
  CHECK(dot.find("t2 -> t3") != std::string::npos);             // add feeds relu
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
  CHECK_THROWS_AS(
      value_and_grad([](const std::vector<DTensor>& x) { return x[0]; }, std::vector<DTensor>{from<double>({1, 2})}),
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
    CHECK(message_of<shape_error>([] {
            return matmul(zeros<double>({8, 64}), zeros<double>({32, 20}));
          }) == "matmul: [8, 64] x [32, 20]: inner dimensions differ (64 vs 32)");
    CHECK(message_of<shape_error>([] {
            return matmul(zeros<double>({8, 64}), zeros<double>({20, 32}), {.transpose_b = true});
          }) == "matmul: [8, 64] x [20, 32]^T: inner dimensions differ (64 vs 32)");
    CHECK(message_of<shape_error>([] {
            return matmul(zeros<double>({2, 3, 4}), zeros<double>({5, 4, 6}));
          }) == "matmul: [2, 3, 4] x [5, 4, 6]: batch dimensions [2] and [5] do not broadcast");
    CHECK_THROWS_AS(matmul(zeros<double>({}), a), shape_error);
  }
  SUBCASE("a reshape that cannot be") {
    CHECK(message_of<shape_error>([&] {
            return reshape(a, {4, 2});
          }) == "reshape: [2, 3] (6 elements) to [4, 2]: the element counts differ");
    CHECK(message_of<shape_error>([&] { return reshape(a, {-1, -1}); }).find("more than one -1") != std::string::npos);
    CHECK(message_of<shape_error>([&] {
            return reshape(a, {4, -1});
          }).find("no extent for -1 fits") != std::string::npos);
    CHECK(message_of<shape_error>([&] { return reshape(a, {-2, -3}); }).find("negative extent") != std::string::npos);
    CHECK(message_of<shape_error>([&] {
            return reshape(a, {1, 1, 1, 2, 3});
          }).find("rank above 4") != std::string::npos);
  }
  SUBCASE("an index out of range names the index and the bound") {
    CHECK(message_of<index_error>([&] {
            return index_select(a, 1, {0, 3});
          }) == "index_select: index 3 (position 1) out of range [0, 3) for dimension 1 of shape [2, 3]");
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
    CHECK(message_of<shape_error>([&] {
            return concat(std::vector<DTensor>{a, zeros<double>({3, 2})}, 0);
          }) == "concat: [2, 3] and [3, 2] (tensor 1) differ outside dimension 0");
    CHECK_THROWS_AS(concat(std::vector<DTensor>{}, 0), value_error);
    CHECK(message_of<shape_error>([&] {
            return split(a, std::vector<index_t>{1, 1}, 1);
          }) == "split: pieces summing to 2 do not cover extent 3 of dimension 1 of shape [2, 3]");
    CHECK_THROWS_AS(split(a, 0, 1), value_error);
    CHECK(message_of<value_error>([&] {
            return split(a, std::vector<index_t>{4, -1}, 1);
          }) == "split: negative piece size -1");
    CHECK_THROWS_AS(bias_act(a, b, Activation::relu), shape_error);
  }
  SUBCASE("bad values") {
    CHECK(message_of<value_error>([&] { return clamp(a, 1.0, -1.0); }).rfind("clamp: lo", 0) == 0);
    CHECK(message_of<value_error>([] { return max(zeros<double>({0})); }) == "max: shape [0] has no elements");
    CHECK(message_of<value_error>([] {
            return logsumexp(zeros<double>({2, 0, 3}), 1);
          }) == "logsumexp: the reduced axis of shape [2, 0, 3] is empty");
    Generator gen(1);
    CHECK(message_of<value_error>([&] { return xavier_uniform({5}, gen); }) ==
          "xavier_uniform: shape [5] has fewer than 2 dimensions, so fan_in and fan_out are undefined");
    CHECK(message_of<value_error>([&] {
            return kaiming_normal({0, 5}, gen);
          }) == "kaiming_normal: shape [0, 5] has a fan of 0");
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

// ---- lifetime and thread rules ---------------------------------------------
// Each case below once read freed memory; under AddressSanitizer it would
// report heap-use-after-free if the rule broke.

TEST_CASE("lifetime: a child handle to a leaf owns the leaf's storage") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor c;
  {
    DTensor w = from<double>({1, 2, 3}, true);
    DTensor y = w * 2.0;
    c = y.children()[0];
    CHECK(c.same_as(w));
  }              // w's own handle is gone
  tape.clear();  // and the record that held it too
  CHECK(c.is_alive());
  CHECK(c.to_vector() == V{1, 2, 3});
}

TEST_CASE("lifetime: children() walks the recorded edges, leaves and intermediates") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor a = from<double>({1, 2}, true), b = from<double>({3, 4});
  DTensor s = a + b;
  DTensor p = s * a;
  const auto kids = p.children();
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].op() == "add");
  CHECK(kids[0].to_vector() == V{4, 6});
  CHECK(kids[1].same_as(a));
  CHECK(kids[0].children()[1].same_as(b));
  CHECK(stop_gradient(p).stopped_input().op() == "mul");
  CHECK_FALSE(p.stopped_input().defined());
}

TEST_CASE("lifetime: the gradient of a node before a mark survives ops recorded after a rewind") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor w = from<double>({1, 2, 3}, true);
  DTensor y = w * 2.0;
  const Tape::Mark m = tape.mark();
  sum(y * y).backward();
  tape.rewind(m);
  DTensor z = w;
  for (int i = 0; i < 20; ++i) z = z - 7.0;
  CHECK(y.is_alive());
  CHECK(grad_of(y) == V{4, 8, 12});
}

TEST_CASE("lifetime: every backward() starts all intermediates at zero, before and after its root") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor x = from<double>({2}, true), y = from<double>({3}, true);
  DTensor a = x * y;
  DTensor l1 = a * a;
  DTensor yy = y * y;
  DTensor l2 = exp(a) + yy;
  l2.backward();
  REQUIRE(grad_of(yy) == V{1});
  l1.backward();
  CHECK(grad_of(yy) == V{0});
  CHECK(grad_of(l2) == V{0});
  CHECK_FALSE(yy.has_grad());
  CHECK(grad_of(a) == V{12});
}

TEST_CASE("lifetime: reading a gradient does not make one") {
  DTensor w = from<double>({1, 2}, true);
  CHECK_FALSE(w.has_grad());
  CHECK(grad_of(w) == V{0, 0});  // reads zeros
  CHECK_FALSE(w.has_grad());     // and still has none: an optimizer skips w
  Tape tape;
  Tape::Scope use(tape);
  sum(w * 3.0).backward();
  CHECK(w.has_grad());
  w.zero_grad();  // as PyTorch's zero_grad(set_to_none=True)
  CHECK_FALSE(w.has_grad());
  CHECK(grad_of(w) == V{0, 0});
}

TEST_CASE("lifetime: a tensor whose tape was destroyed raises") {
  DTensor w = from<double>({1, 2}, true);
  DTensor y;
  {
    Tape local;
    Tape::Scope use(local);
    y = w * 2.0;
  }
  CHECK_FALSE(y.is_alive());
  CHECK_THROWS_AS(y.data(), stale_handle_error);
  CHECK_THROWS_AS(y.children(), stale_handle_error);
  CHECK(message_of<stale_handle_error>([&] { (void)sum(y); }).find("tape was destroyed") != std::string::npos);
  CHECK(w.to_vector() == V{1, 2});  // the leaf lives on
}

TEST_CASE("threads: an intermediate used from another thread raises thread_error") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor w = from<double>({1, 2}, true);
  DTensor y = w * 2.0;
  std::string message;
  std::thread other([&] {
    try {
      (void)y.data();
    } catch (const thread_error& e) {
      message = e.what();
    }
    // A leaf is plain data: reading it on another thread works.
    CHECK(w.to_vector() == V{1, 2});
  });
  other.join();
  CHECK(message.find("another thread") != std::string::npos);
  CHECK(y.to_vector() == V{2, 4});
}

TEST_CASE("lifetime: empty and moved-from tensor handles raise") {
  DTensor a = from<double>({1});
  DTensor b = std::move(a);
  CHECK_THROWS_AS(a.data(), stale_handle_error);  // NOLINT(bugprone-use-after-move)
  CHECK_THROWS_AS(DTensor().shape(), stale_handle_error);
  CHECK(b.item() == 1.0);
}

TEST_CASE("named graphs: labels and named_parameters name the leaves") {
  Tape tape;
  Tape::Scope use(tape);
  DTensor w = from<double>({1, 2}, true);
  DTensor x = from<double>({3, 4});
  x.label("input");
  DTensor loss = sum(w * x);
  const std::string table = tape_table(loss, {{"layer.weight", w}});
  CHECK(table.find("layer.weight") != std::string::npos);
  CHECK(table.find("input") != std::string::npos);
  CHECK(table.find("leaf0") == std::string::npos);
  CHECK(to_dot(loss, {{"layer.weight", w}}).find("layer.weight\\n[2]") != std::string::npos);
}

TEST_CASE("gradcheck: stopped values held fixed make a graph with barriers checkable") {
  // f(x) = sum(x * stop_gradient(x)). The tape treats the stopped copy as a
  // constant c, so df/dx = c = x. Plain central differences move the copy
  // with x and see d(x^2)/dx = 2x instead.
  auto f = [](const std::vector<DTensor>& x) { return sum(x[0] * stop_gradient(x[0])); };
  const std::vector<DTensor> x{from<double>({0.5, -1.5, 2.0})};

  SUBCASE("plain finite differences disagree by design") {
    const auto r = gradcheck(f, x);
    CHECK_FALSE(r.passed);
    CHECK(r.analytic == doctest::Approx(r.numeric / 2));  // x against 2x
  }
  SUBCASE("holding the stopped values fixed, they agree") { CHECK_GRADCHECK(gradcheck(f, x, {.hold_stopped = true})); }
  SUBCASE("a function that changes its stop_gradient calls is refused") {
    int calls = 0;
    auto g = [&](const std::vector<DTensor>& v) {
      ++calls;
      return calls == 1 ? sum(v[0] * stop_gradient(v[0])) : sum(v[0] * v[0]);
    };
    CHECK_THROWS_AS(gradcheck(g, x, {.hold_stopped = true}), value_error);
  }
}

TEST_CASE("gradcheck: tensors read by f itself are perturbed in place and restored") {
  DTensor w = from<double>({{1.0, -2.0}, {0.5, 3.0}}, true);
  DTensor x = from<double>({0.25, -0.75});
  Tape tape;
  Tape::Scope use(tape);
  sum(w * 2.0).backward();  // a gradient of the caller's that the check must keep
  CHECK_GRADCHECK(gradcheck([&] { return tanh(matmul(w, x)); }, {w, x}));
  CHECK(w.to_vector() == V{1.0, -2.0, 0.5, 3.0});
  CHECK(grad_of(w) == V{2, 2, 2, 2});
  CHECK(w.has_grad());
  CHECK_FALSE(x.requires_grad());  // as it was
}
