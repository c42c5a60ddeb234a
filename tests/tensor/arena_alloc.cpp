// SPDX-License-Identifier: MIT
// A training step in steady state allocates nothing on the heap.
//
// Every intermediate of a step (op results, their gradients, what the
// backward rules save) lives in the tape's arena, and `tape.clear()` rewinds
// the arena without giving its blocks back. So once a step has run, the next
// identical step finds all the memory it needs already there. We show it by
// counting heap allocations while steps run.
//
// How we count: see tests/support/alloc_counter.hpp.

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "testing.hpp"

#include "alloc_counter.hpp"

namespace {

using tapegrad::Generator;
using tapegrad::index_t;
using tapegrad::Shape;
using tapegrad::Tensor;

/// A small transformer-like model and its training step: embedding, layer norm,
/// causal attention, a residual, a ReLU feed-forward layer with dropout, the
/// output projection and cross-entropy; backward; an SGD update; clear.
struct TinyModel {
  static constexpr index_t batch = 4, seq = 8, dim = 16, vocab = 12, hidden = 32;
  Generator gen{11};
  Tensor table = tapegrad::normal<float>({vocab, dim}, gen, 0.0, 0.5).requires_grad(true);
  Tensor gamma = tapegrad::ones<float>({dim}, true);
  Tensor beta = tapegrad::zeros<float>({dim}, true);
  Tensor wq = tapegrad::xavier_uniform<float>({dim, dim}, gen).requires_grad(true);
  Tensor wk = tapegrad::xavier_uniform<float>({dim, dim}, gen).requires_grad(true);
  Tensor wv = tapegrad::xavier_uniform<float>({dim, dim}, gen).requires_grad(true);
  Tensor w1 = tapegrad::xavier_uniform<float>({dim, hidden}, gen).requires_grad(true);
  Tensor b1 = tapegrad::zeros<float>({hidden}, true);
  Tensor w2 = tapegrad::xavier_uniform<float>({hidden, vocab}, gen).requires_grad(true);
  Tensor b2 = tapegrad::zeros<float>({vocab}, true);
  std::vector<Tensor*> params = {&table, &gamma, &beta, &wq, &wk, &wv, &w1, &b1, &w2, &b2};
  std::vector<index_t> tokens, targets;

  TinyModel() {
    // Each sequence counts up modulo the vocabulary; the target is the next token.
    for (index_t b = 0; b < batch; ++b)
      for (index_t t = 0; t < seq; ++t) {
        tokens.push_back((b + t) % vocab);
        targets.push_back((b + t + 1) % vocab);
      }
  }

  float step(tapegrad::Tape& tape) {
    Tensor x = embedding(table, tokens, Shape{batch, seq});  // [4, 8, 16]
    Tensor h = layer_norm(x, gamma, beta);
    Tensor att = scaled_dot_product_attention(matmul(h, wq), matmul(h, wk), matmul(h, wv), true);
    Tensor r = x + att;                                      // residual
    Tensor f = dropout(relu(matmul(r, w1) + b1), 0.1, gen);  // [4, 8, 32]
    Tensor logits = matmul(f, w2) + b2;                      // [4, 8, 12]
    Tensor loss = cross_entropy(logits, targets);
    loss.backward();
    const float value = loss.item();
    for (Tensor* p : params) {
      p->data() -= 0.1f * p->grad();  // plain SGD, in place
      p->zero_grad();
    }
    tape.clear();
    return value;
  }

  /// The same without the matrix products: only the fused neural-network
  /// functions and a residual add, with the 16 features read as logits.
  float fused_step(tapegrad::Tape& tape) {
    Tensor x = embedding(table, tokens, Shape{batch, seq});
    Tensor h = layer_norm(x, gamma, beta);
    Tensor r = x + scaled_dot_product_attention(h, h, h, true);
    Tensor loss = cross_entropy(dropout(r, 0.1, gen), targets);
    loss.backward();
    const float value = loss.item();
    for (Tensor* p : {&table, &gamma, &beta}) {
      p->data() -= 0.1f * p->grad();
      p->zero_grad();
    }
    tape.clear();
    return value;
  }
};

}  // namespace

TEST_CASE("the allocation counter sees what it should") {
  // A counter that could never count would make the next test pass for nothing.
  Counting c;
  auto* v = new std::vector<int>(100);
  c.stop();
  CHECK(c.news() >= 2);  // the vector object and its buffer
  delete v;
#if TG_TEST_COUNTS_MALLOC
  Counting m;
  Eigen::MatrixXf big = Eigen::MatrixXf::Random(40, 40);  // Eigen's own malloc
  m.stop();
  CHECK(m.mallocs() >= 1);
  CHECK(big.size() == 1600);
#endif
}

TEST_CASE("once warm, a training step allocates nothing on the heap") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  TinyModel model;
  // Warm-up: the first steps size the arena, the tape's node list and the
  // parameters' gradient buffers.
  const float first = model.step(tape);
  for (int i = 0; i < 4; ++i) model.step(tape);

  SUBCASE("ten more steps: no operator new, no malloc") {
    Counting c;
    float last = 0;
    for (int i = 0; i < 10; ++i) last = model.step(tape);
    c.stop();
    CHECK(c.news() == 0);
    if (TG_TEST_COUNTS_MALLOC) CHECK(c.mallocs() == 0);
    CHECK(last < first);  // and it is training: the loss went down
  }

  SUBCASE("the fused functions alone: no operator new, no malloc") {
    for (int i = 0; i < 3; ++i) model.fused_step(tape);
    Counting c;
    for (int i = 0; i < 10; ++i) model.fused_step(tape);
    c.stop();
    CHECK(c.news() == 0);
    if (TG_TEST_COUNTS_MALLOC) CHECK(c.mallocs() == 0);
  }

  SUBCASE("two hundred more steps: the arena stops growing") {
    const std::size_t reserved = tape.arena().reserved_bytes();
    const std::size_t blocks = tape.arena().block_count();
    for (int i = 0; i < 200; ++i) model.step(tape);
    CHECK(tape.arena().reserved_bytes() == reserved);
    CHECK(tape.arena().block_count() == blocks);
    CHECK(tape.size() == 0);  // every step's nodes were freed by its clear
  }
}

TEST_CASE("no-grad ops leave nothing on the tape or in its arenas") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  tapegrad::Tensor w = tapegrad::from<float>({{1, 2}, {3, 4}}).requires_grad(true);
  tapegrad::Tensor x = tapegrad::from<float>({{0.5f, -1}, {2, 0}});
  {
    tapegrad::NoGradGuard no_grad;
    tapegrad::Tensor y = x;
    for (int i = 0; i < 2000; ++i) {
      // Ops that take scratch memory in forward (softmax, layer norm, attention).
      y = tapegrad::softmax(tapegrad::matmul(y, w), -1) + x;
    }
    CHECK(y.is_leaf());
  }
  CHECK(tape.size() == 0);
  CHECK(tape.arena().used_bytes() == 0);
  CHECK(tape.state().scratch.used_bytes() == 0);
}
