// SPDX-License-Identifier: MIT
//
// Chapter 12: knowledge insulation, proved on the model itself.
//
// Seed 000 asks how one total loss, a single number, can train a backbone
// with one of its parts and an action expert with the other. The answer is
// the graph: the expert reads the backbone's keys and values through
// stop_gradient, so no path leads from the action loss back to the backbone.
// Here we take a small instance of examples/knowledge_insulation's model,
// record one forward pass, and sweep backwards from each loss in turn. The
// claims are exact: zero means zero, equal means bitwise equal.

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "knowledge_insulation/model.hpp"

namespace ki = knowledge_insulation;
namespace tg = tapegrad;

namespace {

// A model small enough to run in milliseconds, with every part of the real one.
ki::Config small_config(bool stop_gradient) {
  ki::Config c;
  c.d_model = 8;
  c.heads = 2;
  c.layers = 2;
  c.d_expert = 8;
  c.stop_gradient = stop_gradient;
  c.seed = 3;
  return c;
}

// Every gradient of the parameters whose names start with `prefix`, flattened.
std::vector<float> grads_of(const ki::Model& m, const std::string& prefix) {
  std::vector<float> out;
  for (const auto& [name, p] : m.named_parameters())
    if (name.rfind(prefix, 0) == 0) {
      const auto g = p.grad();
      out.insert(out.end(), g.data(), g.data() + g.size());
    }
  return out;
}

bool all_zero(const std::vector<float>& v) {
  for (float x : v)
    if (x != 0.0f) return false;
  return true;
}

// The gradients of each loss on its own and of the total, from one recording.
struct Sweeps {
  std::vector<float> backbone_token, backbone_action, backbone_total;
  std::vector<float> expert_token, expert_action;
};

Sweeps sweep(bool stop_gradient) {
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  const ki::Config c = small_config(stop_gradient);
  ki::Model m(c);
  tg::Generator gen(11);
  const ki::Batch b = ki::make_batch(c, 4, gen);
  const ki::FlowSample s = ki::sample_flow(c, b, gen);
  const ki::Forward f = m.forward(b, s);
  Sweeps out;
  m.zero_grad();
  f.token_loss.backward();
  out.backbone_token = grads_of(m, "backbone.");
  out.expert_token = grads_of(m, "expert.");
  m.zero_grad();
  f.action_loss.backward();
  out.backbone_action = grads_of(m, "backbone.");
  out.expert_action = grads_of(m, "expert.");
  m.zero_grad();
  f.total.backward();
  out.backbone_total = grads_of(m, "backbone.");
  return out;
}

}  // namespace

TEST_CASE("tutorial 12: the task, discretised by uniform binning") {
  // 16 bins over [-1, 1] are 0.125 wide: -1 falls in bin 0, 0 in bin 8, 1 in bin 15.
  CHECK(ki::to_bin(-1.0f, 16) == 0);
  CHECK(ki::to_bin(0.0f, 16) == 8);
  CHECK(ki::to_bin(1.0f, 16) == 15);
  CHECK(ki::from_bin(8, 16) == 0.0625f);  // the centre of [0, 0.125)
  // Observation (7, 0, 4, 4) with 8 token values: mid 3.5, scale 4, so
  // u_0 = 3.5/4 = 0.875, v_0 = -3.5/4 = -0.875; u_1 = v_1 = 0.5/4 = 0.125.
  // Step h of 4 has ramp h/3 - 1/2: dim 0 at h = 0 is 0.875 + 0.4375 -> clamped to 1.
  ki::Config c;
  const tg::index_t obs[4] = {7, 0, 4, 4};
  float a[8];
  ki::make_actions(c, obs, a);
  CHECK(a[0] == 1.0f);
  CHECK(a[1] == doctest::Approx(0.125 - 0.0625));
  CHECK(a[6] == doctest::Approx(0.875 - 0.875 * 0.5));
}

TEST_CASE("tutorial 12: with the barrier, each part hears its own loss only") {
  const Sweeps s = sweep(/*stop_gradient=*/true);
  REQUIRE_FALSE(s.backbone_token.empty());
  REQUIRE_FALSE(s.expert_action.empty());

  SUBCASE("the backbone's gradient from the action loss is exactly zero") { CHECK(all_zero(s.backbone_action)); }
  SUBCASE("the backbone's gradient from the total is bitwise its gradient from the token loss") {
    CHECK_FALSE(all_zero(s.backbone_token));
    CHECK(s.backbone_total == s.backbone_token);
  }
  SUBCASE("the expert's gradient from the token loss is exactly zero") { CHECK(all_zero(s.expert_token)); }
  SUBCASE("the expert does learn from the action loss") { CHECK_FALSE(all_zero(s.expert_action)); }
}

TEST_CASE("tutorial 12: without the barrier the action loss reaches the backbone") {
  const Sweeps with = sweep(true);
  const Sweeps without = sweep(false);
  // Same weights, same data: the token loss's gradient does not depend on the barrier.
  CHECK(without.backbone_token == with.backbone_token);
  CHECK_FALSE(all_zero(without.backbone_action));
  CHECK(without.backbone_total != without.backbone_token);
  CHECK(without.backbone_total != with.backbone_total);
  // The expert never reaches into the token loss, barrier or not.
  CHECK(all_zero(without.expert_token));
}

TEST_CASE("tutorial 12: the routing table says the same, and names the barrier") {
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  const ki::Config c = small_config(true);
  ki::Model m(c);
  tg::Generator gen(11);
  const ki::Batch b = ki::make_batch(c, 4, gen);
  const ki::FlowSample s = ki::sample_flow(c, b, gen);
  const ki::Forward f = m.forward(b, s);
  const auto t = tg::routing({{"token", f.token_loss}, {"action", f.action_loss}}, m.named_parameters(), {},
                             {{"kv barrier", f.kv_read}});
  REQUIRE(t.groups == std::vector<std::string>{"backbone", "expert"});
  CHECK(t.at("token", "backbone").grad_norm > 0);
  CHECK(t.at("token", "expert").grad_norm == 0.0);
  CHECK(t.at("token", "expert").cut_by.empty());  // no path at all
  CHECK(t.at("action", "backbone").grad_norm == 0.0);
  CHECK(t.at("action", "backbone").cut_by == std::vector<std::string>{"kv barrier"});
  CHECK(t.at("action", "expert").grad_norm > 0);
}
