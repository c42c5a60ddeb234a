// SPDX-License-Identifier: MIT
// doctest's main() for the tests that run under mpirun: every rank runs
// every test case in the same order (the collectives inside them must
// match), and the job fails if any rank fails.

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <mpi.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  doctest::Context context(argc, argv);
  int failed = context.run() != 0 ? 1 : 0;
  const bool exit_now = context.shouldExit();
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return exit_now ? 0 : failed;
}
