// SPDX-License-Identifier: MIT
// Built with tapegrad's include directory and nothing else (no Eigen): the
// scalar layer must stand on its own.
#include <tapegrad/scalar.hpp>

namespace tapegrad_check {

/// d(x*y + x)/dx at (x, y), computed on the tape: y + 1.
double scalar_only_gradient(double x, double y) {
  tapegrad::Value a = x, b = y;
  tapegrad::Value z = a * b + a;
  z.backward();
  return a.grad();
}

}  // namespace tapegrad_check
