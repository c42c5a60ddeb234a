// SPDX-License-Identifier: MIT
#pragma once

/// Forces inlining of the small functions on the scalar recording path, where
/// a call per operation would cost more than the operation.
#if defined(__GNUC__) || defined(__clang__)
#define TAPEGRAD_ALWAYS_INLINE [[gnu::always_inline]] inline
#define TAPEGRAD_COLD [[gnu::cold, gnu::noinline]]
#elif defined(_MSC_VER)
#define TAPEGRAD_ALWAYS_INLINE __forceinline
#define TAPEGRAD_COLD __declspec(noinline)
#else
#define TAPEGRAD_ALWAYS_INLINE inline
#define TAPEGRAD_COLD
#endif
