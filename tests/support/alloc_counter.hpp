// SPDX-License-Identifier: MIT
#pragma once

// Counting heap allocations in a test: this header replaces the global
// operator new and delete (and, on glibc without a sanitizer, malloc itself,
// which is what Eigen's temporaries use). The replacement is program-wide, so
// it only counts while a `Counting` scope is alive and otherwise just
// forwards; it stays compatible with AddressSanitizer because new/delete go
// to malloc/free, which ASan intercepts as usual, and the malloc replacement
// is left out under ASan. `TG_TEST_COUNTS_MALLOC` says whether malloc is
// counted. Include it in exactly one source file of a test executable.

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

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

}  // namespace
