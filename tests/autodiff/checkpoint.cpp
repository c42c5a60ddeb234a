// SPDX-License-Identifier: MIT
// Rematerialization: a checkpointed segment keeps only its output on the
// caller's tape and runs again in the reverse sweep. The claim is exactness:
// every gradient equals, bit for bit, the gradient without checkpointing.

#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "tapegrad/autodiff/checkpoint.hpp"
#include "tapegrad/nn/checkpointed.hpp"
#include "tapegrad/nn/transformer.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/reduce.hpp"
#include "testing.hpp"

namespace {

using tapegrad::Generator;
using tapegrad::index_t;
using tapegrad::Tape;
using tapegrad::Tensor;

/// A stack of dense tanh layers, `per_segment` layers to a segment; the
/// weights are captured by the segments, not passed as inputs.
struct DeepStack {
  index_t width, segments, per_segment;
  std::vector<Tensor> w, b;
  Generator drop_gen{5};
  double drop = 0;

  DeepStack(index_t width_, index_t segments_, index_t per_segment_, std::uint64_t seed = 1)
      : width(width_), segments(segments_), per_segment(per_segment_) {
    Generator gen(seed);
    for (index_t i = 0; i < segments * per_segment; ++i) {
      w.push_back(tapegrad::xavier_uniform<float>({width, width}, gen).requires_grad(true));
      b.push_back(tapegrad::normal<float>({width}, gen, 0.0, 0.1).requires_grad(true));
    }
  }

  Tensor segment(index_t s, const Tensor& x) {
    Tensor h = x;
    for (index_t k = 0; k < per_segment; ++k) {
      const auto i = static_cast<std::size_t>(s * per_segment + k);
      h = tanh(matmul(h, w[i]) + b[i]);
      if (drop > 0) h = dropout(h, drop, drop_gen);
    }
    return h;
  }

  Tensor forward(const Tensor& x, bool checkpointed) {
    Tensor h = x;
    Generator* gens[] = {&drop_gen};
    const tapegrad::CheckpointOptions options{.generators = gens};
    for (index_t s = 0; s < segments; ++s)
      h = checkpointed ? tapegrad::checkpoint(
                             options, [this, s](const Tensor& in) { return segment(s, in); }, h)
                       : segment(s, h);
    return h;
  }

  void zero_grad() {
    for (auto& p : w) p.zero_grad();
    for (auto& p : b) p.zero_grad();
  }

  std::vector<std::vector<float>> grads() const {
    std::vector<std::vector<float>> out;
    for (const auto& p : w) out.push_back(p.grad_tensor().to_vector());
    for (const auto& p : b) out.push_back(p.grad_tensor().to_vector());
    return out;
  }
};

Tensor batch_input(index_t rows, index_t width, bool requires_grad) {
  Generator gen(99);
  return tapegrad::normal<float>({rows, width}, gen).requires_grad(requires_grad);
}

/// Loss sum(h * h): a root that sends every element a different gradient.
Tensor loss_of(const Tensor& h) { return sum(h * h); }

}  // namespace

TEST_CASE("checkpoint: gradients are bitwise those of the unsplit graph") {
  Tape tape;
  Tape::Scope use(tape);
  DeepStack stack(16, 4, 3);

  for (bool input_grad : {false, true}) {
    CAPTURE(input_grad);
    Tensor x = batch_input(8, 16, input_grad);

    stack.zero_grad();
    loss_of(stack.forward(x, false)).backward();
    const auto plain = stack.grads();
    const auto plain_x = input_grad ? x.grad_tensor().to_vector() : std::vector<float>{};
    tape.clear();

    stack.zero_grad();
    x.zero_grad();
    Tensor y = stack.forward(x, true);
    CHECK(y.op() == "checkpoint");
    loss_of(y).backward();
    CHECK(stack.grads() == plain);  // every parameter inside every segment, every bit
    if (input_grad) CHECK(x.grad_tensor().to_vector() == plain_x);
    tape.clear();
  }
}

TEST_CASE("checkpoint: the caller's tape keeps one op per segment") {
  Tape tape;
  Tape::Scope use(tape);
  DeepStack stack(8, 4, 3);
  Tensor x = batch_input(2, 8, false);
  Tensor y = stack.forward(x, true);
  // 4 checkpoint ops; the 4 * 3 * 3 matmul/add/tanh ops ran on nested tapes and are gone.
  CHECK(tape.size() == 4);
  Tensor z = stack.forward(x, false);
  CHECK(tape.size() == 4 + 4 * 3 * 3);
}

TEST_CASE("checkpoint: dropout masks are replayed, and the generator moves on once") {
  Tape tape;
  Tape::Scope use(tape);
  DeepStack plain(16, 3, 2), ckpt(16, 3, 2);
  plain.drop = ckpt.drop = 0.3;
  Tensor x = batch_input(8, 16, true);

  for (int step = 0; step < 2; ++step) {
    CAPTURE(step);
    plain.zero_grad();
    x.zero_grad();
    Tensor lp = loss_of(plain.forward(x, false));
    lp.backward();
    const auto gp = plain.grads();
    const auto gx = x.grad_tensor().to_vector();

    ckpt.zero_grad();
    x.zero_grad();
    Tensor lc = loss_of(ckpt.forward(x, true));
    lc.backward();
    CHECK(lc.item() == lp.item());
    CHECK(ckpt.grads() == gp);
    CHECK(x.grad_tensor().to_vector() == gx);
    // The replay did not consume draws: both generators are at the same place.
    CHECK(Generator(ckpt.drop_gen).next() == Generator(plain.drop_gen).next());
    tape.clear();
  }
}

TEST_CASE("checkpoint: segments nest") {
  Tape tape;
  Tape::Scope use(tape);
  DeepStack stack(8, 4, 2);
  Tensor x = batch_input(4, 8, true);

  loss_of(stack.forward(x, false)).backward();
  const auto plain = stack.grads();
  const auto plain_x = x.grad_tensor().to_vector();
  tape.clear();
  stack.zero_grad();
  x.zero_grad();

  // Two outer segments, each made of two inner checkpointed segments.
  auto inner = [&](index_t s) { return [&stack, s](const Tensor& in) { return stack.segment(s, in); }; };
  auto outer = [&](index_t first) {
    return [&, first](const Tensor& in) {
      return tapegrad::checkpoint(inner(first + 1), tapegrad::checkpoint(inner(first), in));
    };
  };
  Tensor y = tapegrad::checkpoint(outer(2), tapegrad::checkpoint(outer(0), x));
  loss_of(y).backward();
  CHECK(stack.grads() == plain);
  CHECK(x.grad_tensor().to_vector() == plain_x);
}

TEST_CASE("checkpoint: a second backward adds the same gradients again") {
  Tape tape;
  Tape::Scope use(tape);
  DeepStack stack(8, 3, 2);
  Tensor x = batch_input(4, 8, false);
  Tensor loss = loss_of(stack.forward(x, true));
  loss.backward();
  const auto once = stack.grads();
  loss.backward();  // the replay runs again from the same saved inputs
  const auto twice = stack.grads();
  REQUIRE(once.size() == twice.size());
  for (std::size_t p = 0; p < once.size(); ++p)
    for (std::size_t i = 0; i < once[p].size(); ++i) CHECK(twice[p][i] == 2 * once[p][i]);  // g + g = 2g exactly
}

TEST_CASE("checkpoint: gradients of its inputs match finite differences") {
  using tapegrad::testing::DTensor;
  DTensor x = tapegrad::testing::random_tensor({3, 4}, 1).requires_grad(true);
  DTensor w = tapegrad::testing::random_tensor({4, 4}, 2).requires_grad(true);
  auto f = [](const std::vector<DTensor>& in) {
    return tapegrad::checkpoint([](const DTensor& a, const DTensor& v) { return tanh(matmul(a, v)) * a; }, in[0],
                                in[1]);
  };
  CHECK_GRADCHECK(tapegrad::gradcheck(f, {x, w}));
}

TEST_CASE("checkpoint: the wrapper checkpoints a transformer block, dropout included") {
  Tape tape;
  Tape::Scope use(tape);
  using tapegrad::nn::TransformerBlock;
  TransformerBlock a(16, 2, {.d_ff = 32, .pre_ln = true, .dropout = 0.2, .seed = 3});
  TransformerBlock b(16, 2, {.d_ff = 32, .pre_ln = true, .dropout = 0.2, .seed = 3});
  Generator gen(4);
  Tensor x = tapegrad::normal<float>({2, 5, 16}, gen).requires_grad(true);

  loss_of(a(a(x))).backward();  // the block twice: its dropout draws two different masks
  const auto gx = x.grad_tensor().to_vector();
  tape.clear();
  x.zero_grad();
  loss_of(tapegrad::nn::checkpointed(b, tapegrad::nn::checkpointed(b, x))).backward();

  CHECK(x.grad_tensor().to_vector() == gx);
  const auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(pa.size() == pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pb[i].grad_tensor().to_vector() == pa[i].grad_tensor().to_vector());
}

TEST_CASE("checkpoint: a segment must return a tensor it computed") {
  Tape tape;
  Tape::Scope use(tape);
  Tensor p = tapegrad::ones<float>({2}, true);
  Tensor outside = p * 2.0f;
  const std::string msg = tapegrad::testing::message_of<tapegrad::value_error>(
      [&] { (void)tapegrad::checkpoint([&](const Tensor&) { return outside; }, p); });
  CHECK(msg.find("checkpoint") != std::string::npos);
}

TEST_CASE("checkpoint: an input also used outside the segment gets bitwise the same gradient") {
  // x feeds an op recorded before the segment, the segment, and an op after
  // it. The replay adds into x's gradient buffer at the point of the sweep
  // where the unsplit graph would, so the floating-point sums match.
  Tape tape;
  Tape::Scope use(tape);
  Generator gen(8);
  Tensor x = tapegrad::normal<float>({4, 6}, gen).requires_grad(true);
  Tensor w = tapegrad::xavier_uniform<float>({6, 6}, gen).requires_grad(true);
  auto segment = [&w](const Tensor& in) { return tanh(matmul(tanh(matmul(in, w)), w)); };
  auto run = [&](bool checkpointed) {
    Tensor before = x * 0.5f;
    Tensor s = checkpointed ? tapegrad::checkpoint(segment, x) : segment(x);
    Tensor out = s * x + before;
    loss_of(out).backward();
  };
  run(false);
  const auto gx = x.grad_tensor().to_vector(), gw = w.grad_tensor().to_vector();
  tape.clear();
  x.zero_grad();
  w.zero_grad();
  run(true);
  CHECK(x.grad_tensor().to_vector() == gx);
  CHECK(w.grad_tensor().to_vector() == gw);
}
