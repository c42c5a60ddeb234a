// SPDX-License-Identifier: MIT
#pragma once

#include "tapegrad/core/config.hpp"

#include <stdexcept>
#include <string>

namespace tapegrad {

/// The base of every error the library raises.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A handle refers to something that is gone: a node freed by a tape's clear
/// or rewind, a tape that was destroyed (its thread ended, or it went out of
/// scope), or nothing at all (a moved-from handle).
class stale_handle_error : public error {
 public:
  using error::error;
};

/// A handle or a tape is used from a thread other than the one its tape belongs to.
class thread_error : public error {
 public:
  using error::error;
};

/// Operand shapes do not fit the operation (broadcasting, matmul, reshape...).
class shape_error : public error {
 public:
  using error::error;
};

/// An index (a token id, a class target, an axis) lies outside its bound.
class index_error : public error {
 public:
  using error::error;
};

/// An argument has a value the operation does not accept.
class value_error : public error {
 public:
  using error::error;
};

/// Values from two different tapes meet in one operation.
class tape_mismatch_error : public error {
 public:
  using error::error;
};

/// Anomaly mode found a NaN or an infinity in a forward value or a gradient.
class anomaly_error : public error {
 public:
  using error::error;
};

/// A recorded function, replayed at new inputs, took another branch: one of
/// the comparisons it made came out differently. Record it again there.
class replay_error : public error {
 public:
  using error::error;
};

/// A checkpoint could not be read or written; the model and the file are untouched.
class io_error : public error {
 public:
  using error::error;
};

}  // namespace tapegrad
