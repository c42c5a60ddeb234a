// SPDX-License-Identifier: MIT
// A training step in steady state allocates nothing on the heap.
//
// Every intermediate of a step (op results, their gradients, what the
// backward rules save) lives in the tape's arena, and `tape.clear()` rewinds
// the arena without giving its blocks back. So once a step has run, the next
// identical step finds all the memory it needs already there. We show it by
// counting heap allocations while steps run.
//
// How we count: this file replaces the global operator new and delete (and,
// on glibc without a sanitizer, malloc itself, which is what Eigen's
// temporaries use). The replacement is program-wide, so it only counts while a
// `Counting` scope is alive and otherwise just forwards; it stays compatible
// with AddressSanitizer because new/delete go to malloc/free, which ASan
// intercepts as usual, and the malloc replacement is left out under ASan.

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

namespace {

constinit std::atomic<bool> counting{false};
constinit std::atomic<long> new_calls{0};
constinit std::atomic<long> malloc_calls{0};

void* counted_new(std::size_t n) noexcept {
  if (counting.load(std::memory_order_relaxed)) new_calls.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}

void* counted_new_aligned(std::size_t n, std::align_val_t a) noexcept {
  if (counting.load(std::memory_order_relaxed)) new_calls.fetch_add(1, std::memory_order_relaxed);
  const auto align = static_cast<std::size_t>(a);
#if defined(_WIN32)
  return _aligned_malloc(n == 0 ? 1 : n, align);
#else
  const std::size_t size = n == 0 ? align : (n + align - 1) / align * align;  // aligned_alloc wants a multiple
  return std::aligned_alloc(align, size);
#endif
}

// Out of line, so the compiler does not pair an inlined delete's free() with
// an inlined new and warn about a mismatch: these are the matching pair.
#if defined(_MSC_VER)
#define TG_TEST_NOINLINE __declspec(noinline)
#else
#define TG_TEST_NOINLINE __attribute__((noinline))
#endif

TG_TEST_NOINLINE void release(void* p) noexcept { std::free(p); }

TG_TEST_NOINLINE void release_aligned(void* p) noexcept {
#if defined(_WIN32)
  _aligned_free(p);
#else
  std::free(p);
#endif
}

void* or_throw(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

// ---- the replacements: every form of new goes to malloc, every delete to free

void* operator new(std::size_t n) { return or_throw(counted_new(n)); }
void* operator new[](std::size_t n) { return or_throw(counted_new(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void* operator new(std::size_t n, std::align_val_t a) { return or_throw(counted_new_aligned(n, a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return or_throw(counted_new_aligned(n, a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new_aligned(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_new_aligned(n, a);
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release_aligned(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release_aligned(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release_aligned(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release_aligned(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release_aligned(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release_aligned(p); }

// malloc too, where we can forward to the C library's own entry points.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define TG_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TG_TEST_SANITIZED 1
#endif
#if defined(__GLIBC__) && !defined(TG_TEST_SANITIZED)
#define TG_TEST_COUNTS_MALLOC 1
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void __libc_free(void*);

void* malloc(std::size_t n) noexcept {
  if (counting.load(std::memory_order_relaxed)) malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) noexcept {
  if (counting.load(std::memory_order_relaxed)) malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) noexcept {
  if (counting.load(std::memory_order_relaxed)) malloc_calls.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void free(void* p) noexcept { __libc_free(p); }
}
#else
#define TG_TEST_COUNTS_MALLOC 0
#endif

namespace {

/// Counts heap allocations from construction to `stop()`.
class Counting {
 public:
  Counting() {
    new_calls = 0;
    malloc_calls = 0;
    counting = true;
  }
  ~Counting() { counting = false; }
  Counting(const Counting&) = delete;
  Counting& operator=(const Counting&) = delete;
  /// Allocations through operator new, and through malloc when it is counted
  /// (operator new itself calls malloc, so that count includes the first).
  long news() const { return new_calls.load(); }
  long mallocs() const { return malloc_calls.load(); }
  void stop() { counting = false; }
};

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
