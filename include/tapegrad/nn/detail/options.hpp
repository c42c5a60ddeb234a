// SPDX-License-Identifier: MIT
#pragma once

// Checks of layer and optimizer options. Every failure raises value_error
// naming the owner, the option and the value: "Adam: betas.0 must be in
// [0, 1) (got 1.5)". Constructors run these before they build anything.

#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/creation.hpp"

namespace tapegrad::detail {

/// A number as a person writes it: 1.5, 1e-08, -inf, nan.
inline std::string option_number(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

/// Raises value_error "<who>: <option> <rule> (got <value>)".
[[noreturn]] inline void option_error(const char* who, const std::string& option, const char* rule, double got) {
  throw value_error(std::string(who) + ": " + option + " " + rule + " (got " + option_number(got) + ")");
}

/// x > 0 (an extent or a count: d_model, heads, vocab, ...).
inline void check_positive(const char* who, const char* option, double x) {
  if (!(x > 0)) option_error(who, option, "must be > 0", x);
}

/// 0 <= x < inf (a rate, a decay, an epsilon).
inline void check_non_negative(const char* who, const char* option, double x) {
  if (!(x >= 0) || !std::isfinite(x)) option_error(who, option, "must be finite and >= 0", x);
}

/// x in [0, 1) (a probability that must leave something, a decay rate).
inline void check_unit_interval(const char* who, const std::string& option, double x) {
  if (!(x >= 0 && x < 1)) option_error(who, option, "must be in [0, 1)", x);
}

/// The seed of a layer's own generator: `seed` when given, else one draw
/// from the process-wide default generator. Not called when the layer was
/// handed a Generator, so that one draws nothing from the default.
inline std::uint64_t layer_seed(const std::optional<std::uint64_t>& seed) {
  return seed ? *seed : default_generator_seed();
}

}  // namespace tapegrad::detail
