// SPDX-License-Identifier: MIT
//
// Data-parallel training under mpirun (this file runs with 1 and with 2
// ranks): every rank starts from rank 0's parameters, the averaged gradients
// make p ranks on parts of a batch train as one process on the whole batch,
// and all ranks hold the same bits after every step.

#include <doctest/doctest.h>

#include <mpi.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "tapegrad/distributed.hpp"
#include "training.hpp"

namespace dist = tapegrad::distributed;
namespace optim = tapegrad::optim;
using tapegrad::testing::flat_parameters;
using tapegrad::testing::Mlp;
using tapegrad::testing::train;

namespace {

// The largest |a - b| / (1 + |b|) over two arrays of the same size.
template <class T>
double max_relative_difference(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / (1.0 + std::abs(static_cast<double>(b[i]))));
  return worst;
}

}  // namespace

TEST_CASE("the wrapper starts every rank from rank 0's parameters and optimizer state") {
  const int rank = dist::rank(), ranks = dist::world_size();
  Mlp<float> model(100 + static_cast<std::uint64_t>(rank));  // a different start on each rank
  optim::Adam opt(model.parameters(), {.lr = 0.01});
  opt.set_step_count(static_cast<std::uint64_t>(rank) * 5);
  REQUIRE(ranks >= 1);

  dist::DataParallel dp(model, opt);

  CHECK(dp.parameters_identical());
  CHECK(flat_parameters(model) == flat_parameters(Mlp<float>(100)));
  CHECK(opt.step_count() == 0);  // rank 0's
}

TEST_CASE("p ranks on parts of each batch train as one process on the whole batch") {
  const int rank = dist::rank(), ranks = dist::world_size();

  // The reference: this process alone, the whole batch, no MPI involved.
  Mlp<float> single(1);
  optim::SGD single_opt(single.parameters(), {.lr = 0.1, .momentum = 0.9});
  train(single, single_opt, 0, 6, 0, 1);

  Mlp<float> model(1);
  optim::SGD opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  dist::DataParallel dp(model, opt);
  int steps_in_sync = 0;
  train(
      model, opt, 0, 6, rank, ranks, [&] { dp.all_reduce_gradients(); },
      [&] { steps_in_sync += dp.parameters_identical(); });

  SUBCASE("every rank holds bitwise the same parameters after every step") { CHECK(steps_in_sync == 6); }

  SUBCASE("one small model is one all-reduce call per step") {
    CHECK(dp.bucket_count() == 1);
    CHECK(dp.gradient_bytes() == 131 * sizeof(float));  // 4*16 + 16 + 16*3 + 3 = 131 values
    CHECK(dp.reduce_calls() == 6);
  }

  SUBCASE("the parameters match the single process's") {
    // One rank sums the same numbers in the same order: bit for bit. Two
    // ranks each sum their half of the batch and MPI adds the halves, a
    // different order of float additions; each gradient value is off by a
    // few units in the last place (2^-24 relative), and six steps of SGD at
    // lr 0.1 keep the parameters within 1e-6 of each other.
    const double diff = max_relative_difference(flat_parameters(model), flat_parameters(single));
    if (ranks == 1)
      CHECK(diff == 0.0);
    else
      CHECK(diff < 1e-6);
    CHECK(flat_parameters(model) != flat_parameters(Mlp<float>(1)));  // it did train
  }
}

TEST_CASE("double precision: the same agreement, to 1e-14") {
  const int rank = dist::rank(), ranks = dist::world_size();
  Mlp<double> single(2);
  optim::basic_sgd<double> single_opt(single.parameters(), {.lr = 0.1, .momentum = 0.9});
  train(single, single_opt, 0, 6, 0, 1);

  Mlp<double> model(2);
  optim::basic_sgd<double> opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
  dist::basic_data_parallel<double> dp(model, opt);
  train(model, opt, 0, 6, rank, ranks, [&] { dp.all_reduce_gradients(); });

  CHECK(dp.parameters_identical());
  // Summation order again, now at 2^-53 relative per addition.
  CHECK(max_relative_difference(flat_parameters(model), flat_parameters(single)) < 1e-14);
}

TEST_CASE("buckets split the all-reduce without changing a single bit") {
  const int rank = dist::rank(), ranks = dist::world_size();
  Mlp<float> one(3), many(3);
  optim::SGD one_opt(one.parameters(), {.lr = 0.1}), many_opt(many.parameters(), {.lr = 0.1});
  dist::DataParallel one_dp(one, one_opt);
  // 64 bytes = 16 floats per bucket, in reverse parameter order: fc2.bias
  // (3) and fc2.weight (48) cannot share one, so they go alone; then
  // fc1.bias (16) fills one; fc1.weight (64) is alone: 4 buckets.
  dist::DataParallel many_dp(many, many_opt, {.bucket_bytes = 64});
  REQUIRE(many_dp.bucket_count() == 4);

  train(one, one_opt, 0, 3, rank, ranks, [&] { one_dp.all_reduce_gradients(); });
  train(many, many_opt, 0, 3, rank, ranks, [&] { many_dp.all_reduce_gradients(); });

  // Each value is still the sum over ranks of the same numbers.
  CHECK(flat_parameters(one) == flat_parameters(many));
  CHECK(many_dp.parameters_identical());
}
