// SPDX-License-Identifier: MIT
#pragma once

// Where the random program generators take their decisions from: a seeded
// engine in the test suite, the fuzz input's bytes in the libFuzzer target.
// Either way the same stream of decisions gives the same program.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>

namespace tapegrad::fuzz {

/// A stream of random decisions.
class Choices {
 public:
  virtual ~Choices() = default;

  /// The next raw 64-bit decision.
  virtual std::uint64_t next() = 0;

  /// A number in [0, n), n >= 1.
  int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }

  /// A number in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53; }

  /// True with probability about p.
  bool chance(double p) { return uniform(0, 1) < p; }
};

/// Decisions from a seeded 64-bit Mersenne Twister: one seed, one program.
class SeededChoices final : public Choices {
 public:
  explicit SeededChoices(std::uint64_t seed) : gen_(seed) {}
  std::uint64_t next() override { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

/// Decisions read from a byte string, two bytes each (a short input still
/// makes a program of many nodes), spread over 64 bits by an odd multiplier so
/// that both small choices and the high bits `uniform` reads depend on them;
/// zero once the string is used up, so every input decodes to some program.
class ByteChoices final : public Choices {
 public:
  ByteChoices(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint64_t next() override {
    std::uint64_t v = 0;
    const std::size_t n = size_ - pos_ < 2 ? size_ - pos_ : 2;
    if (n > 0) std::memcpy(&v, data_ + pos_, n);
    pos_ += n;
    return v * 0x9E3779B97F4A7C15ULL;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace tapegrad::fuzz
