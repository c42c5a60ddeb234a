// SPDX-License-Identifier: MIT
#pragma once

// A one-line live status for the examples' training loops. Not part of the
// library: the examples share it, a user's program would bring its own.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>

#if defined(_WIN32)
#include <io.h>
#else
#include <unistd.h>
#endif

namespace tapegrad_examples {

/// True when standard output is a terminal (false when piped, redirected or in CI).
inline bool stdout_is_terminal() {
#if defined(_WIN32)
  return _isatty(_fileno(stdout)) != 0;
#else
  return isatty(fileno(stdout)) != 0;
#endif
}

/// A duration for people: "0.8s", "12.3s", "2m05s".
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  std::ostringstream os;
  if (seconds < 60) {
    os << std::fixed << std::setprecision(1) << seconds << "s";
  } else {
    const auto total = static_cast<long long>(std::lround(seconds));
    os << total / 60 << "m" << std::setw(2) << std::setfill('0') << total % 60 << "s";
  }
  return os.str();
}

/// A count with thousands separators: 102036 -> "102,036".
inline std::string group_thousands(std::size_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

/// Seconds since `start`, as a double.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/// What a training loop reports on each update. Fields left at NaN or zero are
/// not shown.
struct Status {
  int epoch = 0;                                               // 1-based; 0 hides it
  int epochs = 0;                                              // total epochs
  double loss = std::numeric_limits<double>::quiet_NaN();      // latest (or smoothed) loss
  double accuracy = std::numeric_limits<double>::quiet_NaN();  // a fraction in [0, 1]
  std::string extra{};                                         // anything else, appended as is
};

/// How a Progress draws itself.
struct ProgressOptions {
  /// Seconds between redraws of the live line on a terminal.
  double refresh_seconds = 0.1;
  /// When not on a terminal, how many plain lines to print over the whole run
  /// (one every 1/n of the steps); 0 prints none.
  int plain_lines = 10;
  /// Draw the live line with carriage returns (a terminal) or print plain lines.
  bool terminal = stdout_is_terminal();
};

/// One line of live status: epoch, step, loss, accuracy, steps per second and
/// time left. On a terminal the line is redrawn in place with a carriage
/// return; elsewhere (a pipe, a CI log) a plain line is printed every tenth of
/// the run, so logs stay short.
///
/// Example:
///   Progress progress(total_steps);
///   for (std::int64_t step = 1; step <= total_steps; ++step) {
///     ...train...
///     progress.update(step, {.epoch = e, .epochs = n, .loss = loss});
///   }
///   progress.finish();   // erases the live line
class Progress {
 public:
  /// A status for a run of `total_steps` steps; the clock starts now.
  explicit Progress(std::int64_t total_steps, ProgressOptions options = {}, std::ostream& out = std::cout)
      : total_(std::max<std::int64_t>(total_steps, 1)),
        options_(options),
        out_(out),
        start_(std::chrono::steady_clock::now()),
        last_draw_(start_) {}

  /// Reports that `step` of the total steps are done (1-based: the count so far).
  void update(std::int64_t step, const Status& status) {
    step_ = step;
    const auto now = std::chrono::steady_clock::now();
    if (options_.terminal) {
      const bool last = step >= total_;
      if (!last && std::chrono::duration<double>(now - last_draw_).count() < options_.refresh_seconds) return;
      last_draw_ = now;
      draw(line(status));
    } else if (options_.plain_lines > 0) {
      // Print when the step crosses the next 1/n mark of the run.
      const int n = options_.plain_lines;
      auto mark = [&](int k) { return static_cast<std::int64_t>(k) * total_ / n; };
      if (next_plain_ >= n || step < mark(next_plain_ + 1)) return;
      while (next_plain_ < n && mark(next_plain_ + 1) <= step) ++next_plain_;
      out_ << line(status) << '\n' << std::flush;
    }
  }

  /// Prints a line that stays (an epoch summary), above the live line.
  void print(const std::string& text) {
    erase();
    out_ << text << '\n' << std::flush;
  }

  /// Erases the live line, so what is printed next starts on a clean line.
  void finish() { erase(); }

  /// Seconds since the Progress was made.
  double elapsed() const { return seconds_since(start_); }

  /// Steps per second over the whole run so far.
  double steps_per_second() const {
    const double t = elapsed();
    return t > 0 ? static_cast<double>(step_) / t : 0.0;
  }

  /// The status line itself, without drawing it.
  std::string line(const Status& s) const {
    std::ostringstream os;
    if (s.epoch > 0) os << "epoch " << s.epoch << "/" << s.epochs << "  ";
    const int width = static_cast<int>(std::to_string(total_).size());
    os << "step " << std::setw(width) << step_ << "/" << total_;
    if (std::isfinite(s.loss)) os << "  loss " << std::fixed << std::setprecision(4) << s.loss;
    if (std::isfinite(s.accuracy)) os << "  acc " << std::fixed << std::setprecision(1) << 100.0 * s.accuracy << "%";
    const double rate = steps_per_second();
    if (rate > 0) {
      os << "  " << std::fixed << std::setprecision(rate < 100 ? 1 : 0) << rate << " steps/s";
      os << "  " << format_duration(static_cast<double>(total_ - step_) / rate) << " left";
    }
    if (!s.extra.empty()) os << "  " << s.extra;
    return os.str();
  }

 private:
  void draw(const std::string& text) {
    // Pad with spaces over what a longer previous line left behind.
    out_ << '\r' << text;
    if (text.size() < drawn_) out_ << std::string(drawn_ - text.size(), ' ');
    out_ << std::flush;
    drawn_ = text.size();
  }

  void erase() {
    if (!options_.terminal || drawn_ == 0) return;
    out_ << '\r' << std::string(drawn_, ' ') << '\r' << std::flush;
    drawn_ = 0;
  }

  std::int64_t total_;
  ProgressOptions options_;
  std::ostream& out_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  std::int64_t step_ = 0;
  int next_plain_ = 0;     // plain lines printed so far
  std::size_t drawn_ = 0;  // length of the live line on screen
};

}  // namespace tapegrad_examples
