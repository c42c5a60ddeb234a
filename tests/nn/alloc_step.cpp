// SPDX-License-Identifier: MIT
// A warm training step of the library's own layers, with their default
// options, allocates nothing on the heap: a TransformerBlock, a Linear head,
// cross-entropy, backward, the tape's clear and an Adam step.
//
// How we count: this file replaces the global operator new and delete (and,
// on glibc without a sanitizer, malloc, which Eigen's temporaries use). The
// replacement is program-wide, so it counts only while a `Counting` scope is
// alive and otherwise forwards to the C library.

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include "tapegrad/nn/linear.hpp"
#include "tapegrad/nn/transformer.hpp"
#include "tapegrad/optim/adam.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/reduce.hpp"
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
  const std::size_t size = n == 0 ? align : (n + align - 1) / align * align;  // aligned_alloc wants a multiple
  return std::aligned_alloc(align, size);
}

// Out of line, so that an inlined delete's free() is not paired with an
// inlined new by the compiler's mismatch warning: these are the matching pair.
__attribute__((noinline)) void release(void* p) noexcept { std::free(p); }

void* or_throw(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

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
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define TG_ALLOC_STEP_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TG_ALLOC_STEP_SANITIZED 1
#endif
#if defined(__GLIBC__) && !defined(TG_ALLOC_STEP_SANITIZED)
#define TG_ALLOC_STEP_COUNTS_MALLOC 1
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
#define TG_ALLOC_STEP_COUNTS_MALLOC 0
#endif

namespace {

/// Counts heap allocations while it is alive.
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
  long news() const { return new_calls.load(); }
  long mallocs() const { return malloc_calls.load(); }
  void stop() { counting = false; }
};

namespace nn = tapegrad::nn;
using tapegrad::index_t;
using tapegrad::Tensor;

/// One TransformerBlock and a Linear head over the mean of the positions,
/// every layer with its default options, trained by Adam with its defaults.
struct BlockModel {
  static constexpr index_t batch = 4, seq = 6, dim = 16, heads = 2, classes = 5;
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use{tape};
  tapegrad::Generator gen{7};
  nn::TransformerBlock block{dim, heads, {.generator = &gen}};
  nn::Linear head{dim, classes, {.generator = &gen}};
  std::vector<Tensor> params;
  Tensor x = tapegrad::normal<float>({batch, seq, dim}, gen);
  std::vector<index_t> targets{0, 3, 1, 4};
  std::unique_ptr<tapegrad::optim::Adam> opt;

  BlockModel() {
    params = block.parameters();
    for (const Tensor& p : head.parameters()) params.push_back(p);
    opt = std::make_unique<tapegrad::optim::Adam>(params);
  }

  float step() {
    opt->zero_grad();
    float value = 0;
    {
      Tensor loss = tapegrad::cross_entropy(head(tapegrad::mean(block(x), 1)), std::span<const index_t>(targets));
      loss.backward();
      value = loss.item();
    }
    tape.clear();
    opt->step();
    return value;
  }
};

}  // namespace

TEST_CASE("a warm step of TransformerBlock and Adam with default options allocates nothing") {
  BlockModel m;
  const float first = m.step();
  for (int i = 0; i < 3; ++i) m.step();  // warm: the arena, Adam's state, the attention buffer
  const float* weights = m.block.attn().last_attention().data().data();

  SUBCASE("the counter sees an allocation") {
    Counting c;
    std::vector<float> v(100);
    c.stop();
    CHECK(v.size() == 100);
    CHECK(c.news() >= 1);
  }
  SUBCASE("five warm steps: no operator new, no malloc") {
    float last = 0;
    Counting c;
    for (int i = 0; i < 5; ++i) last = m.step();
    c.stop();
    CHECK(c.news() == 0);
    if (TG_ALLOC_STEP_COUNTS_MALLOC) CHECK(c.mallocs() == 0);
    CHECK(last < first);  // the steps did train
    // The attention weights were rewritten in the buffer the first forward made.
    CHECK(m.block.attn().last_attention().data().data() == weights);
  }
}

TEST_CASE("MultiHeadAttention rewrites its kept weights in place") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  tapegrad::Generator gen(3);
  nn::MultiHeadAttention attn(8, 2, {.generator = &gen});
  const Tensor x1 = tapegrad::normal<float>({2, 3, 8}, gen);
  const Tensor x2 = tapegrad::normal<float>({2, 3, 8}, gen);
  attn(x1);
  const Tensor kept = attn.last_attention();  // shares the layer's buffer
  const std::vector<float> first = kept.to_vector();
  attn(x2);
  const std::vector<float> second = attn.last_attention().to_vector();
  CHECK(first != second);             // different inputs, different weights
  CHECK(kept.to_vector() == second);  // the earlier handle sees the new ones
  // Each row of every head is a softmax: it sums to 1.
  for (std::size_t r = 0; r < second.size(); r += 3)
    CHECK(second[r] + second[r + 1] + second[r + 2] == doctest::Approx(1.0));
  SUBCASE("a new shape makes a new buffer") {
    attn(tapegrad::normal<float>({1, 4, 8}, gen));
    CHECK(attn.last_attention().shape() == tapegrad::Shape{1, 2, 4, 4});
    CHECK(kept.shape() == tapegrad::Shape{2, 2, 3, 3});  // the old handle keeps the old buffer
  }
}
