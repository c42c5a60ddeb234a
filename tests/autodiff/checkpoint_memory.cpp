// SPDX-License-Identifier: MIT
// What checkpointing costs and saves in memory: the peak arena bytes of a
// deep stack with and without it, and the heap allocations of a warm
// checkpointed step (none: the nested tapes are pooled and reused).
//
// How we count: see tests/support/alloc_counter.hpp.

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include "tapegrad/autodiff/checkpoint.hpp"
#include "tapegrad/nn/checkpointed.hpp"
#include "tapegrad/nn/transformer.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/reduce.hpp"

#include "alloc_counter.hpp"

namespace {

using tapegrad::Generator;
using tapegrad::index_t;
using tapegrad::Tape;
using tapegrad::Tensor;

/// `segments` segments of `per_segment` dense tanh layers. At width 256 and
/// batch 128 one activation is 128 KiB, and a layer keeps three of them (the
/// product, the sum and the tanh) plus, in the reverse sweep, their gradients.
struct Stack {
  index_t segments, per_segment, batch, width;
  std::vector<Tensor> w;
  Tensor x;

  Stack(index_t segments_, index_t per_segment_, index_t batch_ = 128, index_t width_ = 256)
      : segments(segments_), per_segment(per_segment_), batch(batch_), width(width_) {
    Generator gen(7);
    for (index_t i = 0; i < segments * per_segment; ++i)
      w.push_back(tapegrad::xavier_uniform<float>({width, width}, gen).requires_grad(true));
    x = tapegrad::normal<float>({batch, width}, gen);
  }

  Tensor segment(index_t s, const Tensor& in) {
    Tensor h = in;
    for (index_t k = 0; k < per_segment; ++k)
      h = tanh(matmul(h, w[static_cast<std::size_t>(s * per_segment + k)]) + 0.5f);
    return h;
  }

  /// One training step (forward, backward, SGD, clear) on `tape`.
  void step(Tape& tape, bool checkpointed) {
    Tensor h = x;
    for (index_t s = 0; s < segments; ++s)
      h = checkpointed ? tapegrad::checkpoint([this, s](const Tensor& in) { return segment(s, in); }, h)
                       : segment(s, h);
    sum(h).backward();
    for (Tensor& p : w) {
      p.data() -= 0.01f * p.grad();
      p.zero_grad();
    }
    tape.clear();
  }
};

/// The arena bytes a step needs at its peak: the caller's tape plus the
/// nested tapes (arenas keep their blocks, so what they hold is the peak).
std::size_t peak_bytes(index_t segments, index_t per_segment, bool checkpointed) {
  Tape tape;
  Tape::Scope use(tape);
  Stack stack(segments, per_segment);
  const std::size_t nested_before = tapegrad::checkpoint_reserved_bytes<float>();
  stack.step(tape, checkpointed);
  return tape.arena().reserved_bytes() + (tapegrad::checkpoint_reserved_bytes<float>() - nested_before);
}

}  // namespace

TEST_CASE("checkpoint: activation memory falls with the number of segments") {
  // 8 segments of 4 layers. Without checkpointing the tape holds all 32
  // layers' activations and gradients; with it, the 8 segment outputs (and
  // their gradients) plus one segment's 4 layers at a time.
  const std::size_t plain = peak_bytes(8, 4, false);
  const std::size_t ckpt = peak_bytes(8, 4, true);
  MESSAGE("peak arena bytes: plain " << plain << ", checkpointed " << ckpt);
  // One activation is 128 KiB; a plain layer costs about 6 of them
  // (3 values, 3 gradients): 32 layers, some 24 MiB.
  CHECK(plain > 20u * 1024 * 1024);
  // Checkpointed: 8 outputs and their gradients (2 MiB) plus one segment
  // (about 3 MiB), and the arenas' 1 MiB block rounding: well under a third.
  CHECK(ckpt * 3 < plain);

  // Twice the segments at half the length: the plain graph is the same size;
  // the checkpointed one holds more outputs but a shorter segment.
  const std::size_t plain16 = peak_bytes(16, 2, false);
  const std::size_t ckpt16 = peak_bytes(16, 2, true);
  MESSAGE("16 segments of 2: plain " << plain16 << ", checkpointed " << ckpt16);
  CHECK(ckpt16 * 3 < plain16);
}

TEST_CASE("checkpoint: a warm checkpointed step allocates nothing on the heap") {
  Tape tape;
  Tape::Scope use(tape);
  // Small matrices: Eigen's products of large ones take their blocking
  // workspace from malloc, with or without checkpointing.
  Stack stack(4, 2, 8, 32);
  for (int warm = 0; warm < 3; ++warm) stack.step(tape, true);
  Counting count;
  for (int step = 0; step < 3; ++step) stack.step(tape, true);
  CHECK(count.news() == 0);
  if (TG_TEST_COUNTS_MALLOC) CHECK(count.mallocs() == 0);
}

TEST_CASE("checkpoint: a warm checkpointed transformer block step allocates nothing on the heap") {
  Tape tape;
  Tape::Scope use(tape);
  using tapegrad::nn::TransformerBlock;
  // keep_attention copies the weights into a new leaf each forward: off here.
  TransformerBlock b1(16, 2, {.d_ff = 32, .dropout = 0.1, .keep_attention = false, .seed = 1});
  TransformerBlock b2(16, 2, {.d_ff = 32, .dropout = 0.1, .keep_attention = false, .seed = 2});
  Generator gen(3);
  const Tensor x = tapegrad::normal<float>({2, 6, 16}, gen);
  auto params = b1.parameters();
  for (const auto& p : b2.parameters()) params.push_back(p);
  auto step = [&] {
    Tensor h = tapegrad::nn::checkpointed(b2, tapegrad::nn::checkpointed(b1, x));
    sum(h * h).backward();
    for (Tensor& p : params) p.zero_grad();
    tape.clear();
  };
  for (int warm = 0; warm < 3; ++warm) step();
  Counting count;
  for (int s = 0; s < 3; ++s) step();
  CHECK(count.news() == 0);
  if (TG_TEST_COUNTS_MALLOC) CHECK(count.mallocs() == 0);
}
