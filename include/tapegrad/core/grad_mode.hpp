// SPDX-License-Identifier: MIT
#pragma once

#include "tapegrad/core/config.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"

namespace tapegrad {

namespace detail {

struct tape_state;

/// The values every stop_gradient produced on a recorded pass, in order, so
/// that later passes of the same function can hold them fixed (gradcheck's
/// `hold_stopped`): while `recording`, stop_gradient appends its values; after,
/// it returns them in the same order instead of its input's values.
struct stop_replay {
  std::vector<double> values;
  std::vector<std::size_t> sizes;
  std::size_t next = 0;    // which stop_gradient call comes next
  std::size_t offset = 0;  // where its values start
  bool recording = true;
};

/// A number for the calling thread, unique over the life of the process
/// (never reused, unlike thread ids and addresses): tapes remember the thread
/// they belong to by it.
inline std::uint64_t next_thread_id() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

/// Per-thread switches read by every recorded operation.
struct thread_state {
  std::uint64_t thread_id = next_thread_id();
  tape_state* active = nullptr;   // the innermost Tape::Scope's tape; nullptr: the thread's default
  std::uint64_t active_id = 0;    // which use of that tape the scope opened (see Tape::Scope)
  bool grad_enabled = true;       // false while a NoGradGuard is alive
  bool anomaly = false;           // true while an AnomalyGuard is alive
  stop_replay* replay = nullptr;  // set while gradcheck holds stop_gradient values fixed
};

inline thread_state& state() noexcept {
  thread_local thread_state s;
  return s;
}

/// Raises when a replayed pass used fewer stop_gradient values than were recorded.
inline void check_replay_complete(const stop_replay* r, const char* what) {
  if (r && !r->recording && r->next != r->sizes.size())
    throw value_error(std::string(what) + ": the function made " + std::to_string(r->next) +
                      " stop_gradient calls where its recorded pass made " + std::to_string(r->sizes.size()) +
                      ", so their values cannot be held fixed");
}

/// Called by every stop_gradient with the `n` values it passes on: records
/// them, or replaces them with the recorded ones, while a replay is active.
template <class T>
void replay_stopped(T* values, std::size_t n, const char* op) {
  stop_replay* r = state().replay;
  if (!r) return;
  if (r->recording) {
    r->values.insert(r->values.end(), values, values + n);
    r->sizes.push_back(n);
    return;
  }
  if (r->next >= r->sizes.size() || r->sizes[r->next] != n)
    throw value_error(std::string(op) +
                      ": the function made other stop_gradient calls than on its recorded pass, so their values "
                      "cannot be held fixed (call " +
                      std::to_string(r->next) + ", " + std::to_string(n) + " values)");
  for (std::size_t i = 0; i < n; ++i) values[i] = static_cast<T>(r->values[r->offset + i]);
  r->offset += n;
  ++r->next;
}

}  // namespace detail

/// True when operations are recorded on the tape (no NoGradGuard alive on this thread).
inline bool is_grad_enabled() noexcept { return detail::state().grad_enabled; }

/// While alive, operations on this thread record nothing: results are constants.
///
/// Example:
///   { tapegrad::NoGradGuard guard; Value y = x * 2.0; }  // y is a leaf, no edge to x
class NoGradGuard {
 public:
  NoGradGuard() noexcept : previous_(detail::state().grad_enabled) { detail::state().grad_enabled = false; }
  ~NoGradGuard() { detail::state().grad_enabled = previous_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// While alive, every forward value and every gradient is checked for NaN and
/// infinity; the first one raises `anomaly_error` naming the operation that made it.
class AnomalyGuard {
 public:
  AnomalyGuard() noexcept : previous_(detail::state().anomaly) { detail::state().anomaly = true; }
  ~AnomalyGuard() { detail::state().anomaly = previous_; }
  AnomalyGuard(const AnomalyGuard&) = delete;
  AnomalyGuard& operator=(const AnomalyGuard&) = delete;

 private:
  bool previous_;
};

/// True while an AnomalyGuard is alive on this thread.
inline bool is_anomaly_enabled() noexcept { return detail::state().anomaly; }

}  // namespace tapegrad
