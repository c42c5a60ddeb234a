// SPDX-License-Identifier: MIT
//
// Gradient routing and graph printing: which loss reaches which parameters,
// read off one recorded graph.

#include <doctest/doctest.h>

#include <string>

#include "tapegrad/autodiff/routing.hpp"
#include "tapegrad/scalar.hpp"
#include "tapegrad/tensor.hpp"

using tapegrad::Tensor;
using tapegrad::Value;

namespace {

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("routing: a scalar graph, seed 000's a and b with a barrier") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value a = 2.0, b = 3.0;
  Value loss_a = a * a;  // 4: d/da = 2a = 4
  Value cut = tapegrad::stop_gradient(a);
  cut.label("a frozen");
  Value loss_b = b * b + cut * b;  // 9 + 6: d/db = 2b + a = 8, d/da = 0 (cut)
  Value total = loss_a + loss_b;
  // Gradients the user accumulated before: routing must leave them alone.
  (a * 5.0 + b * 7.0).backward();
  REQUIRE(a.grad() == 5.0);
  REQUIRE(b.grad() == 7.0);

  const auto t = tapegrad::routing({{"loss_a", loss_a}, {"loss_b", loss_b}, {"total", total}}, {{"a", a}, {"b", b}});

  SUBCASE("the numbers: each loss alone, then the sum") {
    CHECK(t.at("loss_a", "a").grad_norm == 4.0);
    CHECK(t.at("loss_a", "b").grad_norm == 0.0);
    CHECK(t.at("loss_b", "a").grad_norm == 0.0);
    CHECK(t.at("loss_b", "b").grad_norm == 8.0);
    CHECK(t.at("total", "a").grad_norm == 4.0);
    CHECK(t.at("total", "b").grad_norm == 8.0);
  }
  SUBCASE("the structure: connected, cut by the labelled barrier, or no path at all") {
    CHECK(t.at("loss_a", "a").connected);
    CHECK_FALSE(t.at("loss_a", "b").connected);
    CHECK(t.at("loss_a", "b").cut_by.empty());  // no path at all: not a barrier's doing
    CHECK_FALSE(t.at("loss_b", "a").connected);
    REQUIRE(t.at("loss_b", "a").cut_by.size() == 1);
    CHECK(t.at("loss_b", "a").cut_by[0] == "a frozen");
    CHECK(t.at("total", "a").connected);  // through loss_a
    CHECK(t.at("total", "a").cut_by.empty());
  }
  SUBCASE("the user's accumulated gradients are restored") {
    CHECK(a.grad() == 5.0);
    CHECK(b.grad() == 7.0);
  }
  SUBCASE("the printed table names the barrier") {
    const std::string s = t.str();
    CHECK(s.find("cut: a frozen") != std::string::npos);
    CHECK(s.find("4.000e+00") != std::string::npos);
    CHECK(s.find("8.000e+00") != std::string::npos);
  }
  SUBCASE("an unknown cell is an error naming it") {
    CHECK_THROWS_AS((void)t.at("loss_c", "a"), tapegrad::value_error);
  }
}

TEST_CASE("routing: tensors, groups by prefix, an unnamed barrier by op and position") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Tensor x = tapegrad::from<float>({{1, 2, 3}, {-1, 0, 2}});
  Tensor w1 = tapegrad::from<float>({{0.5f, -1}, {1, 0.25f}, {0, 1}}).requires_grad(true);
  Tensor w2 = tapegrad::from<float>({{1}, {-1}}).requires_grad(true);
  Tensor h = tapegrad::from<float>({{2}, {0.5f}}).requires_grad(true);
  const tapegrad::NamedTensors<float> params = {{"encoder.layer1.w", w1}, {"encoder.layer2.w", w2}, {"head.w", h}};

  Tensor features = matmul(matmul(x, w1), w2);  // [2, 1]
  Tensor loss_enc = sum(features);
  Tensor stopped = tapegrad::stop_gradient(features);
  Tensor loss_head = sum(mul(stopped, h));
  Tensor total = loss_enc + loss_head;

  SUBCASE("depth 1 groups: encoder hears loss_enc only, head hears loss_head only") {
    const auto t = tapegrad::routing({{"enc", loss_enc}, {"head", loss_head}, {"total", total}}, params);
    REQUIRE(t.groups == std::vector<std::string>{"encoder", "head"});
    CHECK(t.members[0].size() == 2);
    CHECK(t.at("enc", "encoder").grad_norm > 0);
    CHECK(t.at("head", "encoder").grad_norm == 0.0);  // exactly zero, not small
    CHECK(t.at("enc", "head").grad_norm == 0.0);
    CHECK(t.at("head", "head").grad_norm > 0);
    CHECK(t.at("total", "encoder").grad_norm == t.at("enc", "encoder").grad_norm);
    REQUIRE(t.at("head", "encoder").cut_by.size() == 1);
    // No name given: the barrier is named by its op and tape position.
    CHECK(t.at("head", "encoder").cut_by[0] ==
          "stop_gradient#" + std::to_string(tapegrad::detail::access<decltype(stopped)>::node_index(stopped)));
  }
  SUBCASE("a named barrier, groups by depth 2 and by prefix") {
    const auto t2 = tapegrad::routing({{"head", loss_head}}, params, {.depth = 2}, {{"feature barrier", stopped}});
    CHECK(t2.groups == std::vector<std::string>{"encoder.layer1", "encoder.layer2", "head.w"});
    CHECK(t2.at("head", "encoder.layer1").cut_by == std::vector<std::string>{"feature barrier"});
    const auto t3 = tapegrad::routing({{"head", loss_head}}, params, {.prefixes = {"encoder.layer1", "head"}});
    CHECK(t3.groups == std::vector<std::string>{"encoder.layer1", "encoder", "head"});
  }
  SUBCASE("accumulated gradients survive, also on parameters without a buffer yet") {
    REQUIRE_FALSE(h.has_grad());
    loss_enc.backward();  // w1 and w2 now hold d loss_enc
    const std::vector<float> before = w1.grad_tensor().to_vector();
    (void)tapegrad::routing({{"head", loss_head}, {"total", total}}, params);
    CHECK(w1.grad_tensor().to_vector() == before);
    CHECK(h.grad().matrix().squaredNorm() == 0.0f);
  }
}

TEST_CASE("print_graph: seed 000's tree, with the barrier and the parameters' marks") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Value a = 2.0, b = 3.0;
  a.label("vlm");
  b.label("expert");
  Value loss_fast = a * a;
  loss_fast.label("FAST_loss");
  Value kv = a * 2.0;
  kv.label("kv");
  Value kv_stopped = tapegrad::stop_gradient(kv);
  kv_stopped.label("kv barrier");
  Value action_loss = kv_stopped * b;
  action_loss.label("action_loss");
  Value total = action_loss + loss_fast;
  total.label("total");

  // The tree, root first; the parameter a appears behind the barrier but is
  // marked as reached, since FAST_loss reaches it directly.
  const std::string expected =
      "total = 16  (add)\n"
      "├─ action_loss = 12  (mul)\n"
      "│  ├─ [stop_gradient] barrier kv barrier = 4, no gradient passes\n"
      "│  │  └─ kv = 4  (mul)\n"
      "│  │     └─ vlm = 2  [gradient reaches it]\n"
      "│  └─ expert = 3  [gradient reaches it]\n"
      "└─ FAST_loss = 4  (mul)\n"
      "   ├─ vlm = 2  [gradient reaches it]\n"
      "   └─ vlm = 2  [gradient reaches it]\n";
  CHECK(tapegrad::graph_tree(total) == expected);

  SUBCASE("from the action loss alone, the backbone parameter is blocked") {
    const std::string s = tapegrad::graph_tree(action_loss);
    CHECK(s.find("vlm = 2  [no gradient: behind a stop_gradient]") != std::string::npos);
    CHECK(s.find("expert = 3  [gradient reaches it]") != std::string::npos);
  }
}

TEST_CASE("print_graph: a shared tensor subgraph is drawn once") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Tensor x = tapegrad::from<float>({{1, 2}});
  Tensor w = tapegrad::from<float>({{1}, {1}}).requires_grad(true);
  Tensor shared = tanh(matmul(x, w));  // used twice below
  Tensor loss = sum(shared * shared + shared);
  const std::string s = tapegrad::graph_tree(loss, {{"w", w}, {"x", x}});
  // One line for the shared tanh with its subtree, and two references to it.
  CHECK(count_of(s, "tanh#") == 3);
  CHECK(count_of(s, "(shared: shown above)") == 2);
  CHECK(count_of(s, "matmul#") == 1);
  CHECK(count_of(s, "w (leaf) [2, 1]  [gradient reaches it]") == 1);
  CHECK(count_of(s, "x (leaf) [1, 2]  (input)") == 1);
  CHECK(s.rfind("sum#", 0) == 0);  // the root comes first
  CHECK(s.find("sum#4 [] = ") == 0);
}

TEST_CASE("print_graph: a tensor barrier and the parameter behind it") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  Tensor x = tapegrad::from<float>({{1, 2, 3}, {0, 1, 0}});
  Tensor w = tapegrad::from<float>({{1}, {0}, {1}}).requires_grad(true);
  Tensor v = tapegrad::from<float>({{0.5f}, {0.5f}, {0}}).requires_grad(true);
  Tensor kept = sum(matmul(x, w));
  Tensor stopped = tapegrad::stop_gradient(matmul(x, v));
  Tensor loss = kept + sum(stopped);
  const std::string expected =
      "add#5 [] = 6\n"  // 4 + 2
      "├─ sum#1 [] = 4\n"
      "│  └─ matmul#0 [2, 1]\n"
      "│     ├─ x (leaf) [2, 3]  (input)\n"
      "│     └─ w (leaf) [3, 1]  [gradient reaches it]\n"
      "└─ sum#4 [] = 2\n"
      "   └─ [stop_gradient] barrier stop_gradient#3 [2, 1], no gradient passes\n"
      "      └─ matmul#2 [2, 1]\n"
      "         ├─ x (leaf) [2, 3]  (input)\n"
      "         └─ v (leaf) [3, 1]  [no gradient: behind a stop_gradient]\n";
  CHECK(tapegrad::graph_tree(loss, {{"x", x}, {"w", w}, {"v", v}}) == expected);
}
