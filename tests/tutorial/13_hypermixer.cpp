// SPDX-License-Identifier: MIT
//
// Chapter 13: the HyperMixer, and three ways to apply gradients that agree.
//
// In a HyperMixer the token-mixing weights are not parameters: hypernetworks
// make them from the tokens. So the hypernetworks learn only through the
// weights they generate, and the tape must carry gradients through those
// generated weights. Seed 004 builds this by hand (forward, backward,
// compute_gradients, apply_gradients) and asks that the ways of applying
// gradients agree. Here the tape does the backward pass, and we check the
// same promises on examples/hypermixer's model, in double precision.

#include <doctest/doctest.h>

#include <vector>

#include "hypermixer/model.hpp"
#include "testing.hpp"

namespace hm = hypermixer;
namespace tg = tapegrad;
using DTensor = tg::basic_tensor<double>;
using tg::index_t;

namespace {

hm::Config tiny(bool position_encoding = true) {
  hm::Config c;
  c.vocab = 5;
  c.max_len = 6;
  c.d_model = 4;
  c.k = 3;
  c.layers = 1;
  c.position_encoding = position_encoding;
  c.seed = 5;
  return c;
}

std::vector<double> flat_params(const hm::Model<double>& m) {
  std::vector<double> out;
  for (const auto& p : m.parameters()) {
    const auto v = p.to_vector();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

std::vector<double> flat_grads(const hm::Model<double>& m) {
  std::vector<double> out;
  for (const auto& p : m.parameters()) {
    const auto g = p.grad();
    out.insert(out.end(), g.data(), g.data() + g.size());
  }
  return out;
}

// 8 sequences of 6 tokens and their labels, fixed.
hm::Data batch_of_8() {
  tg::Generator gen(21);
  return hm::make_data(8, 6, 5, gen);
}

}  // namespace

TEST_CASE("tutorial 13: the hypernetworks learn through the weights they generate") {
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  hm::Model<double> m(tiny());
  auto& mixing = *(*m.blocks)[0].paper;
  const DTensor x = tg::testing::random_tensor({2, 6, 4}, 1);
  const DTensor& pe = mixing.pos->table(6);
  auto& h1 = *mixing.h1;
  auto& h2 = *mixing.h2;

  // The block's token mixing is W2 · GELU(W1ᵀ X), with W1 = h1(x + p), W2 = h2(x + p).
  auto by_hand = [&](const std::vector<DTensor>& w) {
    const DTensor in = x + pe;
    const DTensor w1 = hm::HyperNet<double>::apply(in, w[0], w[1], w[2], w[3]);
    const DTensor w2 = hm::HyperNet<double>::apply(in, w[4], w[5], w[6], w[7]);
    return hm::PaperTokenMixing<double>::mix(x, w1, w2);
  };
  const std::vector<DTensor> hyper = {h1.fc1->weight(), h1.fc1->bias(), h1.fc2->weight(), h1.fc2->bias(),
                                      h2.fc1->weight(), h2.fc1->bias(), h2.fc2->weight(), h2.fc2->bias()};
  REQUIRE(mixing.forward(x).to_vector() == by_hand(hyper).to_vector());

  SUBCASE("every hypernetwork parameter receives a gradient") {
    sum(mixing.forward(x)).backward();
    for (const DTensor& p : hyper) CHECK(p.grad().matrix().squaredNorm() > 0);
  }
  SUBCASE("and that gradient is right: gradcheck through the generated W1 and W2") {
    const auto r = tg::gradcheck(by_hand, hyper);
    CHECK_MESSAGE(r.passed, r.report());
  }
  SUBCASE("the seed's variant: one hypernetwork from the mean token, also checked") {
    hm::Config c = tiny();
    c.variant = hm::Variant::seed;
    hm::Model<double> s(c);
    auto& h = *(*s.blocks)[0].seed->h;
    const std::vector<DTensor> w = {h.fc1->weight(), h.fc1->bias(), h.fc2->weight(), h.fc2->bias()};
    // The module with its own weights: its recorded gradient against central
    // differences, perturbing every 7th entry of h's output weights in place.
    auto& seed_mixing = *(*s.blocks)[0].seed;
    sum(seed_mixing.forward(x)).backward();
    for (const DTensor& p : w) CHECK(p.grad().matrix().squaredNorm() > 0);
    // Central differences of the module against its recorded gradient.
    const double eps = 1e-6;
    auto& p = const_cast<DTensor&>(w[2]);
    for (Eigen::Index i = 0; i < p.numel(); i += 7) {
      const double keep = p.data()[i];
      tg::NoGradGuard no_grad;
      p.data()[i] = keep + eps;
      const double up = sum(seed_mixing.forward(x)).item();
      p.data()[i] = keep - eps;
      const double down = sum(seed_mixing.forward(x)).item();
      p.data()[i] = keep;
      CHECK(p.grad()[i] == doctest::Approx((up - down) / (2 * eps)).epsilon(1e-6));
    }
  }
}

TEST_CASE("tutorial 13: without position encodings, permuting the tokens permutes the outputs") {
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  const DTensor x = tg::testing::random_tensor({1, 6, 4}, 2);
  const std::vector<index_t> perm = {3, 0, 5, 1, 4, 2};
  const DTensor xp = index_select(x, 1, perm);

  hm::Model<double> plain(tiny(/*position_encoding=*/false));
  const auto y = plain.features(x);
  const auto yp = plain.features(xp);
  // W1 and W2 are made row by row from the tokens, so they permute with them:
  // W1ᵀ X is unchanged, and W2 · (...) comes out with its rows permuted.
  const auto expected = index_select(y, 1, perm).to_vector();
  const auto got = yp.to_vector();
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));

  // With position encodings the hypernetworks know the order, and the equality breaks.
  hm::Model<double> positional(tiny(/*position_encoding=*/true));
  const auto z = index_select(positional.features(x), 1, perm).to_vector();
  const auto zp = positional.features(xp).to_vector();
  double diff = 0;
  for (std::size_t i = 0; i < z.size(); ++i) diff = std::max(diff, std::abs(z[i] - zp[i]));
  CHECK(diff > 1e-3);
}

TEST_CASE("tutorial 13: the same weights run at two sequence lengths") {
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  hm::Model<double> m(tiny());
  tg::Generator gen(9);
  const hm::Data short_seq = hm::make_data(2, 3, 5, gen);
  const hm::Data long_seq = hm::make_data(2, 6, 5, gen);
  const DTensor a = m.forward(short_seq.ids, 2, 3);
  const DTensor b = m.forward(long_seq.ids, 2, 6);
  CHECK(a.shape() == tg::Shape{2, 2});
  CHECK(b.shape() == tg::Shape{2, 2});
  // Both lengths train one set of weights: their gradients add up in it.
  m.zero_grad();
  cross_entropy(a, short_seq.labels).backward();
  const auto g_short = flat_grads(m);
  m.zero_grad();
  cross_entropy(b, long_seq.labels).backward();
  const auto g_long = flat_grads(m);
  m.zero_grad();
  (cross_entropy(a, short_seq.labels) + cross_entropy(b, long_seq.labels)).backward();
  const auto g_both = flat_grads(m);
  for (std::size_t i = 0; i < g_both.size(); ++i) CHECK(g_both[i] == doctest::Approx(g_short[i] + g_long[i]));
}

TEST_CASE("tutorial 13: one step on the whole batch equals accumulated micro-batches and one step") {
  const hm::Data all = batch_of_8();
  auto rows = [&](index_t begin, index_t end) {
    return std::vector<index_t>(all.ids.begin() + begin * all.length, all.ids.begin() + end * all.length);
  };
  auto labels = [&](index_t begin, index_t end) {
    return std::vector<index_t>(all.labels.begin() + begin, all.labels.begin() + end);
  };

  tg::Tape tape;
  tg::Tape::Scope use(tape);
  hm::Model<double> whole(tiny()), micro(tiny());
  REQUIRE(flat_params(whole) == flat_params(micro));
  tg::optim::basic_sgd<double> opt_whole(whole.parameters(), {.lr = 0.1});
  tg::optim::basic_sgd<double> opt_micro(micro.parameters(), {.lr = 0.1});

  // The mean over 8 sequences at once.
  cross_entropy(whole.forward(all.ids, 8, 6), all.labels).backward();
  opt_whole.step();
  // Two micro-batches of 4, each adding sum(loss) / 8: together the same mean.
  for (index_t b = 0; b < 8; b += 4) {
    const auto l = labels(b, b + 4);
    (cross_entropy(micro.forward(rows(b, b + 4), 4, 6), l, {.reduction = tg::Reduction::sum}) * (1.0 / 8)).backward();
    tg::Tape::active().clear();
  }
  opt_micro.step();

  const auto p = flat_params(whole), q = flat_params(micro);
  REQUIRE(p.size() == q.size());
  double worst = 0;
  for (std::size_t i = 0; i < p.size(); ++i) worst = std::max(worst, std::abs(p[i] - q[i]));
  CHECK(worst < 1e-14);  // equal up to the order of floating-point sums
}

TEST_CASE("tutorial 13: gradients computed, kept and applied later equal gradients applied at once") {
  const hm::Data all = batch_of_8();
  tg::Tape tape;
  tg::Tape::Scope use(tape);
  hm::Model<double> now(tiny()), later(tiny());
  tg::optim::basic_adam<double> opt_now(now.parameters(), {.lr = 0.01});
  tg::optim::basic_adam<double> opt_later(later.parameters(), {.lr = 0.01});

  // Seed 004's backward(): compute and apply in one go.
  cross_entropy(now.forward(all.ids, 8, 6), all.labels).backward();
  opt_now.step();

  // Seed 004's compute_gradients(): compute and keep them, with no update...
  cross_entropy(later.forward(all.ids, 8, 6), all.labels).backward();
  std::vector<std::vector<double>> kept;
  for (const auto& p : later.parameters()) kept.push_back(p.grad_tensor().to_vector());
  later.zero_grad();
  // ...other work in between (another batch's backward, thrown away)...
  tg::Generator gen(4);
  const hm::Data other = hm::make_data(8, 6, 5, gen);
  cross_entropy(later.forward(other.ids, 8, 6), other.labels).backward();
  later.zero_grad();
  // ...then apply_gradients(): put the kept gradients back and step.
  std::size_t i = 0;
  for (auto p : later.parameters()) {
    p.grad_mut() = Eigen::Map<const Eigen::ArrayXd>(kept[i].data(), static_cast<Eigen::Index>(kept[i].size()));
    ++i;
  }
  opt_later.step();

  CHECK(flat_params(now) == flat_params(later));  // bitwise: the same numbers went into the same update
}
