// SPDX-License-Identifier: MIT
//
// Parameters that receive no gradient on some or all ranks, as PyTorch's
// find_unused_parameters handles them; and checkpoints written by rank 0
// that a single process loads and trains on.

#include <doctest/doctest.h>

#include <mpi.h>

#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tapegrad/distributed.hpp"
#include "tapegrad/io.hpp"
#include "training.hpp"

namespace dist = tapegrad::distributed;
namespace optim = tapegrad::optim;
namespace nn = tapegrad::nn;
using tapegrad::Tensor;
using tapegrad::testing::flat_parameters;
using tapegrad::testing::Mlp;
using tapegrad::testing::train;

namespace {

// Three scalar parameters: `a` is used on every rank, `b` on rank 0 only,
// `c` on no rank.
struct ThreeWays : nn::Module {
  Tensor a, b, c;
  ThreeWays() {
    a = register_parameter("a", Tensor({1}, 1.0f));
    b = register_parameter("b", Tensor({1}, 1.0f));
    c = register_parameter("c", Tensor({1}, 1.0f));
  }
};

// A path every rank agrees on: rank 0's process id names it.
std::string shared_path(const std::string& stem) {
  long long id = dist::is_root() ? static_cast<long long>(getpid()) : 0;
  MPI_Bcast(&id, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  return (std::filesystem::temp_directory_path() / (stem + "-" + std::to_string(id) + ".ckpt")).string();
}

}  // namespace

TEST_CASE("find_unused_parameters: a gradient missing on some ranks counts as zero, missing on all stays missing") {
  const int rank = dist::rank(), ranks = dist::world_size();
  ThreeWays m;
  optim::SGD opt(m.parameters(), {.lr = 1.0});
  dist::DataParallel dp(m, opt, {.find_unused_parameters = true});

  // loss = 2a on every rank, + 3b on rank 0 only: da = 2 everywhere,
  // db = 3 on rank 0 and none elsewhere, dc none anywhere.
  Tensor loss = m.a * 2.0f;
  if (rank == 0) loss = loss + m.b * 3.0f;
  tapegrad::sum(loss).backward();
  tapegrad::Tape::active().clear();
  REQUIRE(m.b.has_grad() == (rank == 0));
  REQUIRE_FALSE(m.c.has_grad());

  dp.step();

  SUBCASE("the mean over ranks: a gets (2 + 2 + ...) / p = 2, b gets 3 / p on every rank") {
    CHECK(m.a.grad()[0] == 2.0f);
    REQUIRE(m.b.has_grad());
    CHECK(m.b.grad()[0] == 3.0f / static_cast<float>(ranks));
    CHECK(m.b.data()[0] == 1.0f - 3.0f / static_cast<float>(ranks));  // lr 1
  }
  SUBCASE("c has a gradient on no rank: still none, and the optimizer skipped it") {
    CHECK_FALSE(m.c.has_grad());
    CHECK(m.c.data()[0] == 1.0f);
  }
  CHECK(dp.parameters_identical());
}

TEST_CASE("without find_unused_parameters a parameter with no gradient is an error that names it") {
  ThreeWays m;
  optim::SGD opt(m.parameters(), {.lr = 1.0});
  dist::DataParallel dp(m, opt);
  tapegrad::sum(m.a * 2.0f + m.b * 3.0f).backward();  // c unused on every rank, so every rank throws
  tapegrad::Tape::active().clear();
  const std::string message = [&] {
    try {
      dp.all_reduce_gradients();
    } catch (const dist::distributed_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  }();
  CHECK(message == "DataParallel: parameter 'c' [1] has no gradient on rank " + std::to_string(dist::rank()) +
                       "; set find_unused_parameters if the model does not use it every step");
}

TEST_CASE("a checkpoint written by rank 0 loads in a single process and training continues as before") {
  const int rank = dist::rank(), ranks = dist::world_size();
  const std::string path = shared_path("tapegrad-dp-test");

  Mlp<float> model(4);
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  dist::DataParallel dp(model, opt);
  train(model, opt, 0, 3, rank, ranks, [&] { dp.all_reduce_gradients(); });
  dp.save_checkpoint(path);  // rank 0 writes; returns on every rank once the file is complete
  const std::vector<float> at_save = flat_parameters(model);
  train(model, opt, 3, 3, rank, ranks, [&] { dp.all_reduce_gradients(); });

  // A single process: load (plain tapegrad::io, no MPI) and train on the
  // whole batches of steps 3, 4, 5.
  Mlp<float> loaded(99);
  optim::SGD loaded_opt(loaded.parameters(), {.lr = 0.1, .momentum = 0.9});
  tapegrad::io::load_checkpoint(path, loaded, loaded_opt);

  SUBCASE("the file holds the ranks' parameters and the step count, bit for bit") {
    CHECK(flat_parameters(loaded) == at_save);
    CHECK(loaded_opt.step_count() == 3);
  }
  SUBCASE("the single process continues as the job did, within summation order") {
    train(loaded, loaded_opt, 3, 3, 0, 1);
    double worst = 0;
    const auto a = flat_parameters(loaded), b = flat_parameters(model);
    for (std::size_t i = 0; i < a.size(); ++i)
      worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1 + std::abs(b[i])));
    if (ranks == 1)
      CHECK(worst == 0.0);  // same sums in the same order
    else
      CHECK(worst < 1e-6);  // as in the single-process comparison
  }
  SUBCASE("the momentum buffers came back too: a job resumed from the file matches the job that never stopped") {
    Mlp<float> resumed(98);
    optim::SGD resumed_opt(resumed.parameters(), {.lr = 0.1, .momentum = 0.9});
    if (rank == 0) tapegrad::io::load_checkpoint(path, resumed, resumed_opt);  // the others get it by broadcast
    dist::DataParallel resumed_dp(resumed, resumed_opt);
    train(resumed, resumed_opt, 3, 3, rank, ranks, [&] { resumed_dp.all_reduce_gradients(); });
    CHECK(flat_parameters(resumed) == flat_parameters(model));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::remove(path.c_str());
}

TEST_CASE("a checkpoint rank 0 cannot write fails on every rank with rank 0's message") {
  Mlp<float> model(5);
  optim::SGD opt(model.parameters(), {.lr = 0.1});
  dist::DataParallel dp(model, opt);
  const std::string bad = "/nonexistent-dir-for-tapegrad/model.ckpt";
  std::string message;
  try {
    dp.save_checkpoint(bad);
  } catch (const tapegrad::io_error& e) {
    message = e.what();
  }
  CHECK(message.rfind("DataParallel::save_checkpoint: rank 0 could not write '" + bad + "': ", 0) == 0);
}
