// SPDX-License-Identifier: MIT
// Builds a two-input graph and checks its gradient: the smallest program a
// user of an installed tapegrad would write.
#include <tapegrad/tapegrad.hpp>

#include <cstdio>

int main() {
  tapegrad::Value x = 2.0, y = 3.0;
  tapegrad::Value z = x * y + 1.0;  // z = 7
  z.backward();                     // dz/dx = y = 3, dz/dy = x = 2

  const bool ok = z.data() == 7.0 && x.grad() == 3.0 && y.grad() == 2.0;
  std::printf("find_package consumer: z = %g, dz/dx = %g, dz/dy = %g: %s\n", z.data(), x.grad(), y.grad(),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
