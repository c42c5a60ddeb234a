// SPDX-License-Identifier: MIT
#pragma once

/// The library's version, as major, minor and patch numbers.
#define TAPEGRAD_VERSION_MAJOR 0
#define TAPEGRAD_VERSION_MINOR 1
#define TAPEGRAD_VERSION_PATCH 0

namespace tapegrad {
/// The library's version as a string, "major.minor.patch".
inline constexpr const char* version_string = "0.1.0";
}  // namespace tapegrad
