// SPDX-License-Identifier: MIT
#pragma once

#include <mpi.h>

#include <chrono>
#include <climits>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/distributed/environment.hpp"
#include "tapegrad/io/checkpoint.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::distributed {

/// Options of `DataParallel`.
struct DataParallelOptions {
  /// Gradients travel in buckets of about this many bytes (PyTorch's default
  /// bucket_cap_mb is 25 MiB). A model smaller than this goes in one call;
  /// a parameter larger than this gets a bucket of its own.
  std::size_t bucket_bytes = std::size_t{25} << 20;
  /// Allow parameters without a gradient (`has_grad()` false) on some ranks,
  /// as PyTorch's find_unused_parameters does. Costs one small extra
  /// all-reduce per step (a byte per parameter). When false, such a
  /// parameter is an error that names it.
  bool find_unused_parameters = false;
  /// The communicator of the ranks that train together.
  MPI_Comm comm = MPI_COMM_WORLD;
};

/// Data-parallel training over MPI, with PyTorch DistributedDataParallel's
/// conventions: the same model on every rank, its parameters (and the
/// optimizer's state) broadcast from rank 0 at construction, each rank on its
/// own shard of every batch, the gradients averaged over the ranks after
/// `backward()`, and each rank stepping its own optimizer, so that all ranks
/// hold bitwise the same parameters after every step.
///
/// The gradients are copied into one flat buffer, in reverse parameter order
/// (the order in which backward finishes them), and reduced in place by
/// MPI_Iallreduce in buckets of `bucket_bytes`; each bucket's sum is divided
/// by the number of ranks and copied back while later buckets are in flight.
/// The tape offers no hook that fires when one parameter's gradient is final,
/// so the buckets start when `all_reduce_gradients()` is called after
/// `backward()`, not during it.
///
/// Example:
///   tapegrad::distributed::run(argc, argv, [&] {
///     Net model;  Adam opt(model.parameters(), {.lr = 1e-3});
///     tapegrad::distributed::DataParallel dp(model, opt);  // rank 0's values everywhere
///     for (...) {
///       opt.zero_grad();
///       loss_of_my_shard(model).backward();  // mean over this rank's examples
///       dp.all_reduce_gradients();           // now the mean over all ranks
///       opt.step();                          // or dp.step() for both
///     }
///   });
template <std::floating_point T>
class basic_data_parallel {
 public:
  using tensor_type = basic_tensor<T>;

  /// Wraps `model` and `optimizer` (both must outlive the wrapper) and
  /// broadcasts rank 0's parameters and optimizer state to every rank.
  basic_data_parallel(nn::basic_module<T>& model, optim::basic_optimizer<T>& optimizer,
                      DataParallelOptions options = {})
      : model_(&model), optimizer_(&optimizer), options_(options) {
    if (!mpi_active()) throw distributed_error("DataParallel: MPI is not initialized (use distributed::run)");
    check_mpi(MPI_Comm_rank(options_.comm, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(options_.comm, &size_), "MPI_Comm_size");
    for (auto& [name, p] : model.named_parameters()) {
      names_.push_back(name);
      params_.push_back(p);
    }
    plan_buckets();
    broadcast_state();
  }

  /// Averages every parameter's gradient over the ranks, in place. Call it
  /// on every rank after `backward()` and before clipping or `step()`.
  ///
  /// A parameter with no gradient on this rank (`has_grad()` false) counts
  /// as zero in the sum. With `find_unused_parameters`, a parameter that has
  /// no gradient on any rank is left as it is (no gradient), so the
  /// optimizer skips it on every rank, as PyTorch leaves such a gradient
  /// None; one that has a gradient on some rank gets the average everywhere.
  void all_reduce_gradients() {
    const auto start = std::chrono::steady_clock::now();
    const std::size_t n = params_.size();
    std::vector<unsigned char> used(n, 1);
    if (options_.find_unused_parameters) {
      for (std::size_t i = 0; i < n; ++i) used[i] = params_[i].has_grad() ? 1 : 0;
      check_mpi(
          MPI_Allreduce(MPI_IN_PLACE, used.data(), static_cast<int>(n), MPI_UNSIGNED_CHAR, MPI_MAX, options_.comm),
          "MPI_Allreduce");
    } else {
      for (std::size_t i = 0; i < n; ++i)
        if (!params_[i].has_grad())
          throw distributed_error("DataParallel: parameter '" + names_[i] + "' " + params_[i].shape().str() +
                                  " has no gradient on rank " + std::to_string(rank_) +
                                  "; set find_unused_parameters if the model does not use it every step");
    }
    std::vector<MPI_Request> requests(buckets_.size(), MPI_REQUEST_NULL);
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      const Bucket& bucket = buckets_[b];
      for (std::size_t i : bucket.params) {
        T* dst = flat_.data() + offsets_[i];
        const auto count = static_cast<std::size_t>(params_[i].numel());
        if (params_[i].has_grad())
          std::memcpy(dst, params_[i].grad().data(), count * sizeof(T));
        else
          std::fill_n(dst, count, T(0));
      }
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, flat_.data() + bucket.begin, static_cast<int>(bucket.end - bucket.begin),
                               mpi_datatype<T>(), MPI_SUM, options_.comm, &requests[b]),
                "MPI_Iallreduce");
    }
    const T ranks = static_cast<T>(size_);
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      check_mpi(MPI_Wait(&requests[b], MPI_STATUS_IGNORE), "MPI_Wait");
      for (std::size_t i : buckets_[b].params) {
        if (!used[i]) continue;
        // The mean over ranks; x / 1 is exact, so one rank changes nothing.
        auto g = params_[i].grad_mut();
        const T* src = flat_.data() + offsets_[i];
        for (Eigen::Index k = 0; k < g.size(); ++k) g[k] = src[k] / ranks;
      }
    }
    last_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    total_seconds_ += last_seconds_;
    ++calls_;
  }

  /// `all_reduce_gradients()`, then the optimizer's `step()`.
  void step() {
    all_reduce_gradients();
    optimizer_->step();
  }

  /// The optimizer's `zero_grad()`.
  void zero_grad() { optimizer_->zero_grad(); }

  /// Sends rank 0's values of `t` (a parameter, a buffer, any tensor of the
  /// same shape on every rank) to every rank.
  void broadcast(tensor_type& t) { broadcast_values(t.data().data(), static_cast<std::size_t>(t.numel())); }

  /// True when every rank holds bitwise the same parameter values as rank 0
  /// (a collective: call it on every rank).
  bool parameters_identical() {
    std::vector<T> mine(flat_.size()), root(flat_.size());
    for (std::size_t i = 0; i < params_.size(); ++i)
      std::memcpy(mine.data() + offsets_[i], params_[i].data().data(),
                  static_cast<std::size_t>(params_[i].numel()) * sizeof(T));
    root = mine;
    broadcast_values(root.data(), root.size());
    int same = std::memcmp(mine.data(), root.data(), mine.size() * sizeof(T)) == 0 ? 1 : 0;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_LAND, options_.comm), "MPI_Allreduce");
    return same != 0;
  }

  /// Rank 0 writes a checkpoint of the model and the optimizer (tapegrad::io
  /// format, loadable by a single process); the other ranks write nothing.
  /// A collective: if rank 0 fails, every rank throws its message.
  void save_checkpoint(const std::string& path) {
    std::string failure;
    if (rank_ == 0) {
      try {
        io::save_checkpoint(path, *model_, *optimizer_);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    unsigned long long length = failure.size();
    check_mpi(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG_LONG, 0, options_.comm), "MPI_Bcast");
    if (length == 0) return;
    failure.resize(static_cast<std::size_t>(length));
    check_mpi(MPI_Bcast(failure.data(), static_cast<int>(length), MPI_CHAR, 0, options_.comm), "MPI_Bcast");
    throw io_error("DataParallel::save_checkpoint: rank 0 could not write '" + path + "': " + failure);
  }

  /// This process's rank.
  int rank() const noexcept { return rank_; }
  /// The number of ranks.
  int size() const noexcept { return size_; }
  /// True on rank 0, which alone should print and write files.
  bool is_root() const noexcept { return rank_ == 0; }
  /// The number of all-reduce calls each step makes for the gradients.
  std::size_t bucket_count() const noexcept { return buckets_.size(); }
  /// Bytes of gradient each rank sends into the all-reduce per step.
  std::size_t gradient_bytes() const noexcept { return flat_.size() * sizeof(T); }
  /// Wall time of the last `all_reduce_gradients()`, in seconds.
  double last_reduce_seconds() const noexcept { return last_seconds_; }
  /// Wall time of all `all_reduce_gradients()` calls so far, in seconds.
  double total_reduce_seconds() const noexcept { return total_seconds_; }
  /// How many times `all_reduce_gradients()` has run.
  std::size_t reduce_calls() const noexcept { return calls_; }
  /// The wrapped model.
  nn::basic_module<T>& module() noexcept { return *model_; }
  /// The wrapped optimizer.
  optim::basic_optimizer<T>& optimizer() noexcept { return *optimizer_; }

 private:
  struct Bucket {
    std::size_t begin = 0, end = 0;   // element range of the flat buffer
    std::vector<std::size_t> params;  // the parameters in it, in buffer order
  };

  // Reverse parameter order: the last layer's gradients are final first.
  void plan_buckets() {
    offsets_.assign(params_.size(), 0);
    const std::size_t cap = std::max<std::size_t>(1, options_.bucket_bytes / sizeof(T));
    std::size_t at = 0;
    for (std::size_t k = params_.size(); k-- > 0;) {
      const auto count = static_cast<std::size_t>(params_[k].numel());
      if (count > static_cast<std::size_t>(INT_MAX))
        throw distributed_error("DataParallel: parameter '" + names_[k] + "' has " + std::to_string(count) +
                                " values, more than one MPI call can carry");
      if (buckets_.empty() || (at + count - buckets_.back().begin > cap && !buckets_.back().params.empty()) ||
          at + count - buckets_.back().begin > static_cast<std::size_t>(INT_MAX))
        buckets_.push_back({at, at, {}});
      offsets_[k] = at;
      at += count;
      buckets_.back().params.push_back(k);
      buckets_.back().end = at;
    }
    flat_.assign(at, T(0));
  }

  void broadcast_values(T* data, std::size_t count) {
    for (std::size_t done = 0; done < count;) {
      const std::size_t chunk = std::min<std::size_t>(count - done, static_cast<std::size_t>(INT_MAX));
      check_mpi(MPI_Bcast(data + done, static_cast<int>(chunk), mpi_datatype<T>(), 0, options_.comm), "MPI_Bcast");
      done += chunk;
    }
  }

  // Rank 0's parameters, optimizer state, step count and learning rate.
  void broadcast_state() {
    for (auto& p : params_) broadcast(p);
    for (auto& s : optimizer_->state()) broadcast_values(s.data, static_cast<std::size_t>(s.shape.numel()));
    unsigned long long step = optimizer_->step_count();
    double lr = optimizer_->lr();
    check_mpi(MPI_Bcast(&step, 1, MPI_UNSIGNED_LONG_LONG, 0, options_.comm), "MPI_Bcast");
    check_mpi(MPI_Bcast(&lr, 1, MPI_DOUBLE, 0, options_.comm), "MPI_Bcast");
    optimizer_->set_step_count(step);
    optimizer_->set_lr(lr);
  }

  nn::basic_module<T>* model_;
  optim::basic_optimizer<T>* optimizer_;
  DataParallelOptions options_;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> names_;
  std::vector<tensor_type> params_;
  std::vector<std::size_t> offsets_;  // parameter i's place in flat_
  std::vector<Bucket> buckets_;       // in the order they are sent
  std::vector<T> flat_;
  double last_seconds_ = 0, total_seconds_ = 0;
  std::size_t calls_ = 0;
};

/// Data-parallel training of a float model.
using DataParallel = basic_data_parallel<float>;

}  // namespace tapegrad::distributed
