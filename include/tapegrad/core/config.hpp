// SPDX-License-Identifier: MIT
#pragma once

// tapegrad uses concepts, std::span and designated initializers. Below C++20
// the compiler would report thousands of errors; stop at the first line with
// one clear message instead. GCC and Clang go on after #error, but not after a
// missing header, so the include below ends the compilation there.
#if !defined(__cplusplus) || (defined(_MSVC_LANG) ? _MSVC_LANG : __cplusplus) < 202002L
#error tapegrad needs C++20: compile with -std=c++20 or later
#include <tapegrad-needs-c++20>
#endif

/// Forces inlining of the small functions on the scalar recording path, where
/// a call per operation would cost more than the operation. Not under
/// AddressSanitizer or ThreadSanitizer: there the instrumented recording code,
/// inlined into every operation of a long function, can take the compiler
/// minutes per function, and a sanitized build is for finding bugs, not for speed.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TAPEGRAD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TAPEGRAD_SANITIZED 1
#endif
#endif

#if defined(TAPEGRAD_SANITIZED) && (defined(__GNUC__) || defined(__clang__))
#define TAPEGRAD_ALWAYS_INLINE inline
#define TAPEGRAD_COLD [[gnu::cold, gnu::noinline]]
#elif defined(__GNUC__) || defined(__clang__)
#define TAPEGRAD_ALWAYS_INLINE [[gnu::always_inline]] inline
#define TAPEGRAD_COLD [[gnu::cold, gnu::noinline]]
#elif defined(_MSC_VER)
#define TAPEGRAD_ALWAYS_INLINE __forceinline
#define TAPEGRAD_COLD __declspec(noinline)
#else
#define TAPEGRAD_ALWAYS_INLINE inline
#define TAPEGRAD_COLD
#endif
