// SPDX-License-Identifier: MIT
#pragma once

// How many random cases a fuzz test runs, and from which seed.
//
// The regular suite runs a few thousand cases. More: set the environment
// variable TAPEGRAD_FUZZ_CASES (e.g. 50000) or configure with
// -DTAPEGRAD_FUZZ_CASES=50000. To replay one failing case, set
// TAPEGRAD_FUZZ_SEED to the seed it printed (and TAPEGRAD_FUZZ_CASES=1).

#include <cstdint>
#include <cstdlib>
#include <string>

#ifndef TAPEGRAD_FUZZ_CASES
#define TAPEGRAD_FUZZ_CASES 0  // 0: each test's own regular count
#endif

namespace tapegrad::fuzz {

/// The case count: TAPEGRAD_FUZZ_CASES from the environment, else from the
/// build, else `regular`; `scale` divides it for a slower kind of case.
inline std::uint64_t fuzz_cases(std::uint64_t regular, std::uint64_t scale = 1) {
  std::uint64_t n = TAPEGRAD_FUZZ_CASES;
  if (const char* e = std::getenv("TAPEGRAD_FUZZ_CASES")) n = std::strtoull(e, nullptr, 10);
  if (n == 0) return regular;
  return n / scale > 0 ? n / scale : 1;
}

/// The first seed: TAPEGRAD_FUZZ_SEED from the environment, else `fallback`.
inline std::uint64_t fuzz_first_seed(std::uint64_t fallback) {
  if (const char* e = std::getenv("TAPEGRAD_FUZZ_SEED")) return std::strtoull(e, nullptr, 10);
  return fallback;
}

/// True when built with AddressSanitizer, whose run is several times slower.
constexpr bool sanitized_build() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

}  // namespace tapegrad::fuzz
