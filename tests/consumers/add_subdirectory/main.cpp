// SPDX-License-Identifier: MIT
// Builds a two-input graph and checks its gradient: the smallest program of a
// user who adds tapegrad's source tree with add_subdirectory.
#include <tapegrad/tapegrad.hpp>

#include <cstdio>

int main() {
  tapegrad::Value x = 2.0, y = 3.0;
  tapegrad::Value z = x * y + 1.0;  // z = 7
  z.backward();                     // dz/dx = y = 3, dz/dy = x = 2

  const bool ok = z.data() == 7.0 && x.grad() == 3.0 && y.grad() == 2.0;
  std::printf("add_subdirectory consumer: z = %g, dz/dx = %g, dz/dy = %g: %s\n", z.data(), x.grad(), y.grad(),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
