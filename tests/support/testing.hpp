// SPDX-License-Identifier: MIT
#pragma once

// Helpers shared by the tests: random double tensors for gradient checks and
// a CHECK that prints gradcheck's report when it fails.

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "tapegrad/autodiff/tensor_gradcheck.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::testing {

using DTensor = basic_tensor<double>;

/// A leaf of the given shape with values drawn uniformly from [lo, hi),
/// reproducible from `seed`.
inline DTensor random_tensor(const Shape& shape, unsigned seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(shape.numel()));
  for (double& x : v) x = dist(gen);
  return DTensor(shape, std::move(v));
}

/// The text of the exception `f` throws, checked to be of type E.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (...) {
    FAIL("threw an exception of another type");
    return "";
  }
  FAIL("did not throw");
  return "";
}

}  // namespace tapegrad::testing

/// Checks a gradcheck result and shows its report (worst entry, both gradients) on failure.
#define CHECK_GRADCHECK(result)                            \
  do {                                                     \
    const auto tg_result_ = (result);                      \
    CHECK_MESSAGE(tg_result_.passed, tg_result_.report()); \
  } while (0)
