// SPDX-License-Identifier: MIT
#pragma once

// Helpers shared by the tests: random double tensors for gradient checks and
// a CHECK that prints gradcheck's report when it fails.

#include <doctest/doctest.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tapegrad/autodiff/tensor_gradcheck.hpp"
#include "tapegrad/tensor/creation.hpp"
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

constexpr double inf = std::numeric_limits<double>::infinity();

/// True when `part` occurs in `text`.
inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// A copy of a tensor's gradient, for comparing with a list of numbers.
inline std::vector<double> grad_of(const DTensor& t) {
  auto g = t.grad();
  return {g.data(), g.data() + g.size()};
}

/// A 1-D leaf that requires grad, as the optimizers' tests use.
inline DTensor parameter(std::vector<double> values) {
  const auto n = static_cast<index_t>(values.size());
  return DTensor(Shape{n}, std::move(values)).requires_grad(true);
}

/// The interval the sweeps draw inputs from for ops that need positive ones
/// (log, sqrt, division).
constexpr double pos_lo = 0.5, pos_hi = 2.0;

/// A [3, 1] 0/1 mask: rows 0 and 2 set.
inline DTensor mask_3x1() { return from<double>({{1}, {0}, {1}}); }

/// A 0/1 mask (1 = hidden) of the given shape with every `period`-th element
/// set, starting at `phase`.
inline DTensor every_nth(const Shape& s, index_t period, index_t phase) {
  std::vector<double> m(static_cast<std::size_t>(s.numel()), 0.0);
  for (index_t i = phase; i < s.numel(); i += period) m[static_cast<std::size_t>(i)] = 1.0;
  return DTensor(s, m);
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
