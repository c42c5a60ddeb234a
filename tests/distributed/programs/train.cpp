// SPDX-License-Identifier: MIT
//
// The tests' training run as a program, built twice from this one file: with
// MPI (DataParallel around the optimizer) and without (no MPI anywhere).
// It trains six steps and writes every parameter's bytes to the file named
// by its argument, so that a test can compare the two builds bit for bit.

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "../training.hpp"

#ifdef TAPEGRAD_TEST_WITH_MPI
#include "tapegrad/distributed.hpp"
#endif

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output file>\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  tapegrad::testing::Mlp<float> model(1);
  tapegrad::optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  auto write = [&] {
    const auto values = tapegrad::testing::flat_parameters(model);
    std::ofstream file(out, std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(values.data()),
               static_cast<std::streamsize>(values.size() * sizeof(float)));
    return file ? 0 : 1;
  };
#ifdef TAPEGRAD_TEST_WITH_MPI
  return tapegrad::distributed::run(argc, argv, [&] {
    tapegrad::distributed::DataParallel dp(model, opt);
    tapegrad::testing::train(model, opt, 0, 6, dp.rank(), dp.size(), [&] { dp.all_reduce_gradients(); });
    return dp.is_root() ? write() : 0;
  });
#else
  tapegrad::testing::train(model, opt, 0, 6, 0, 1);
  return write();
#endif
}
