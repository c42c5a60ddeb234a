// SPDX-License-Identifier: MIT
#pragma once

#include <mpi.h>

#include <concepts>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <ostream>
#include <streambuf>
#include <string>
#include <type_traits>
#include <utility>

#include "tapegrad/core/error.hpp"

namespace tapegrad::distributed {

/// An MPI call failed, or the ranks disagree about something they must share
/// (a failed checkpoint write on rank 0, a parameter missing its gradient).
class distributed_error : public error {
 public:
  using error::error;
};

/// Throws `distributed_error` naming the MPI call and MPI's own message when
/// `code` is not MPI_SUCCESS.
inline void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw distributed_error(std::string(call) + " failed with code " + std::to_string(code) + ": " +
                          std::string(text, static_cast<std::size_t>(length)));
}

/// The MPI datatype of float or double.
template <std::floating_point T>
MPI_Datatype mpi_datatype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "tapegrad::distributed: only float and double travel over MPI");
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else
    return MPI_DOUBLE;
}

/// True between MPI_Init and MPI_Finalize.
inline bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

/// This process's rank in `comm` (0 when MPI is not running).
inline int rank(MPI_Comm comm = MPI_COMM_WORLD) {
  if (!mpi_active()) return 0;
  int r = 0;
  check_mpi(MPI_Comm_rank(comm, &r), "MPI_Comm_rank");
  return r;
}

/// The number of processes in `comm` (1 when MPI is not running).
inline int world_size(MPI_Comm comm = MPI_COMM_WORLD) {
  if (!mpi_active()) return 1;
  int s = 1;
  check_mpi(MPI_Comm_size(comm, &s), "MPI_Comm_size");
  return s;
}

/// True on rank 0, the rank that alone prints progress and writes files.
inline bool is_root(MPI_Comm comm = MPI_COMM_WORLD) { return rank(comm) == 0; }

/// True when this process was started by an MPI launcher (mpirun, mpiexec,
/// srun) rather than directly: the launchers set these variables. It reads
/// the environment only, so a program can ask before it initializes MPI.
inline bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

/// std::cout on rank 0, a stream that discards everything on the other
/// ranks: `root_out() << "step " << s << "\n";` prints once per job.
inline std::ostream& root_out(MPI_Comm comm = MPI_COMM_WORLD) {
  struct null_buffer : std::streambuf {
    int overflow(int c) override { return traits_type::not_eof(c); }
  };
  static null_buffer discard;
  static std::ostream nowhere(&discard);
  return is_root(comm) ? std::cout : nowhere;
}

/// MPI for the lifetime of the object: MPI_Init in the constructor and
/// MPI_Finalize in the destructor, unless MPI was already running (then it
/// leaves both to whoever started it).
class Environment {
 public:
  /// Starts MPI with the program's arguments (MPI may remove its own).
  Environment(int& argc, char**& argv) {
    if (mpi_active()) return;
    check_mpi(MPI_Init(&argc, &argv), "MPI_Init");
    owner_ = true;
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (owner_ && mpi_active()) MPI_Finalize();
  }

 private:
  bool owner_ = false;
};

/// Prints "rank R: message" on stderr and ends the whole job with exit code
/// 1 through MPI_Abort, so that no other rank is left waiting in a collective.
[[noreturn]] inline void abort_job(const std::string& message, MPI_Comm comm = MPI_COMM_WORLD) {
  std::fprintf(stderr, "rank %d: %s\n", rank(comm), message.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(comm, 1);
  std::_Exit(1);  // MPI_Abort does not return; this is for the compiler
}

/// Runs `fn` (callable as `fn()` or `fn(argc, argv)`, returning an exit code
/// or nothing) between MPI_Init and MPI_Finalize. An exception that leaves
/// `fn` on any rank prints "rank R: <what()>" and aborts the whole job with a
/// non-zero exit code, instead of leaving the other ranks waiting forever.
///
/// Example:
///   int main(int argc, char** argv) {
///     return tapegrad::distributed::run(argc, argv, [&] {
///       // build the model, wrap it in DataParallel, train
///       return 0;
///     });
///   }
template <class F>
int run(int argc, char** argv, F&& fn) {
  Environment env(argc, argv);
  try {
    if constexpr (std::is_invocable_v<F, int, char**>) {
      using R = std::invoke_result_t<F, int, char**>;
      if constexpr (std::is_void_v<R>) {
        std::forward<F>(fn)(argc, argv);
        return 0;
      } else {
        return static_cast<int>(std::forward<F>(fn)(argc, argv));
      }
    } else {
      using R = std::invoke_result_t<F>;
      if constexpr (std::is_void_v<R>) {
        std::forward<F>(fn)();
        return 0;
      } else {
        return static_cast<int>(std::forward<F>(fn)());
      }
    }
  } catch (const std::exception& e) {
    abort_job(e.what());
  } catch (...) {
    abort_job("an exception that is not a std::exception");
  }
}

}  // namespace tapegrad::distributed
