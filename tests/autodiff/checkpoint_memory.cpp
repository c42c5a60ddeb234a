// SPDX-License-Identifier: MIT
// What checkpointing costs and saves in memory: the peak arena bytes of a
// deep stack with and without it, and the heap allocations of a warm
// checkpointed step (none: the nested tapes are pooled and reused).
//
// How we count, as tests/tensor/arena_alloc.cpp does: this file replaces the global operator new and delete (and,
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

#include "tapegrad/autodiff/checkpoint.hpp"
#include "tapegrad/nn/checkpointed.hpp"
#include "tapegrad/nn/transformer.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/elementwise.hpp"
#include "tapegrad/tensor/linalg.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "tapegrad/tensor/reduce.hpp"

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

/// Counts heap allocations from construction to destruction.
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
};

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
