// SPDX-License-Identifier: MIT
#pragma once

#include "tapegrad/core/config.hpp"

namespace tapegrad {

class Tape;

namespace detail {

/// Per-thread switches read by every recorded operation.
struct thread_state {
  Tape* active = nullptr;    // nullptr means the thread's default tape
  bool grad_enabled = true;  // false while a NoGradGuard is alive
  bool anomaly = false;      // true while an AnomalyGuard is alive
};

inline thread_state& state() noexcept {
  thread_local thread_state s;
  return s;
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
