// SPDX-License-Identifier: MIT
//
// A job in which one rank raises an error while the others wait in the
// gradient all-reduce. Run under distributed::run, the job must end with a
// non-zero exit code and the failing rank's message instead of hanging.
//
//   fail <rank that throws>

#include <cstdlib>
#include <string>

#include "../training.hpp"
#include "tapegrad/distributed.hpp"

int main(int argc, char** argv) {
  return tapegrad::distributed::run(argc, argv, [&] {
    const int thrower = argc > 1 ? std::atoi(argv[1]) : 1;
    tapegrad::testing::Mlp<float> model(1);
    tapegrad::optim::SGD opt(model.parameters(), {.lr = 0.1});
    tapegrad::distributed::DataParallel dp(model, opt);
    tapegrad::testing::train(model, opt, 0, 3, dp.rank(), dp.size(), [&] {
      if (dp.rank() == thrower) throw tapegrad::value_error("batch 7: token id 31 is outside the vocabulary of 20");
      dp.all_reduce_gradients();  // the other ranks wait here for the thrower
    });
    return 0;
  });
}
