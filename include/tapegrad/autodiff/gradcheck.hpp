// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tapegrad/autodiff/functional.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/scalar/value.hpp"

namespace tapegrad {

/// Tolerances for `gradcheck`: an entry passes when
/// |analytic - numeric| <= atol + rtol * |numeric|.
struct GradcheckOptions {
  double eps = 1e-6;   ///< the finite-difference step
  double rtol = 1e-5;  ///< relative tolerance
  double atol = 1e-8;  ///< absolute tolerance
  /// Hold every stop_gradient's value fixed at what it was on the recorded
  /// pass while perturbing. The tape's gradient treats a stopped value as a
  /// constant; plain finite differences do not (the value moves with its
  /// input), so a graph with barriers passes only with this on. f must make
  /// the same stop_gradient calls on every pass.
  bool hold_stopped = false;
};

/// The outcome of a gradient check, with the worst entry for the report.
struct GradcheckResult {
  bool passed = true;
  std::size_t checked = 0;      ///< how many input entries were compared
  std::size_t worst_index = 0;  ///< flat index of the worst entry
  double analytic = 0;          ///< the tape's gradient there
  double numeric = 0;           ///< the central difference there
  double abs_error = 0;         ///< |analytic - numeric| there
  double rel_error = 0;         ///< abs_error / max(|numeric|, tiny)
  std::string name;             ///< what was checked, for the report

  explicit operator bool() const noexcept { return passed; }

  /// One readable line: verdict, worst entry and its two gradients.
  std::string report() const {
    std::ostringstream os;
    os.precision(10);
    os << "gradcheck" << (name.empty() ? "" : " " + name) << ": " << (passed ? "passed" : "FAILED") << " on " << checked
       << " entries; worst entry " << worst_index << ": analytic " << analytic << ", numeric " << numeric
       << ", abs error " << abs_error << ", rel error " << rel_error;
    return os.str();
  }
};

namespace detail {

/// Makes `r` the active stop_gradient replay of this thread for a scope
/// (nullptr: none).
class replay_scope {
 public:
  explicit replay_scope(stop_replay* r) noexcept : previous_(state().replay) {
    if (r) {
      r->next = 0;
      r->offset = 0;
    }
    state().replay = r;
  }
  ~replay_scope() { state().replay = previous_; }
  replay_scope(const replay_scope&) = delete;
  replay_scope& operator=(const replay_scope&) = delete;

 private:
  stop_replay* previous_;
};

/// Compares analytic gradients with central differences of `eval` (a function
/// of the flat input vector that returns f's value) and keeps the worst entry.
template <class Eval>
GradcheckResult compare_gradients(Eval&& eval, std::vector<double> x, const std::vector<double>& analytic,
                                  const GradcheckOptions& opt) {
  GradcheckResult r;
  double worst = -1;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    const double h = opt.eps * std::max(1.0, std::abs(saved));
    x[i] = saved + h;
    const double fp = eval(x);
    x[i] = saved - h;
    const double fm = eval(x);
    x[i] = saved;
    const double numeric = (fp - fm) / (2 * h);
    const double err = std::abs(analytic[i] - numeric);
    const bool ok = err <= opt.atol + opt.rtol * std::abs(numeric) || (std::isnan(analytic[i]) && std::isnan(numeric));
    // Rank by how far past the tolerance an entry is, so the report names the worst.
    const double score = err / (opt.atol + opt.rtol * std::abs(numeric));
    if (!ok) r.passed = false;
    if (score > worst || (!ok && r.passed)) {
      worst = score;
      r.worst_index = i;
      r.analytic = analytic[i];
      r.numeric = numeric;
      r.abs_error = err;
      r.rel_error = err / std::max(std::abs(numeric), std::numeric_limits<double>::min());
    }
    ++r.checked;
  }
  return r;
}

}  // namespace detail

/// Checks the tape's gradient of a scalar function against central finite
/// differences, in double precision. f takes Values and returns a Value.
///
/// Example:
///   auto r = tapegrad::gradcheck([](Value x, Value y) { return sin(x) * y; }, 0.3, 2.0);
///   CHECK_MESSAGE(r, r.report());
template <class F, class... A>
requires(sizeof...(A) >= 1 && (std::is_arithmetic_v<A> && ...)) GradcheckResult gradcheck(F&& f, A... xs) {
  return gradcheck(GradcheckOptions{}, std::forward<F>(f), xs...);
}

/// `gradcheck` with explicit tolerances.
template <class F, class... A>
requires(sizeof...(A) >= 1 && (std::is_arithmetic_v<A> && ...)) GradcheckResult
    gradcheck(const GradcheckOptions& opt, F&& f, A... xs) {
  detail::stop_replay stopped;
  detail::stop_replay* replay = opt.hold_stopped ? &stopped : nullptr;
  std::vector<double> analytic;
  {
    detail::replay_scope record(replay);
    const auto g = value_and_grad(f, static_cast<double>(xs)...).grad;
    analytic.assign(g.begin(), g.end());
  }
  stopped.recording = false;
  auto eval = [&](const std::vector<double>& x) {
    detail::replay_scope hold(replay);
    Tape tape;
    Tape::Scope use(tape);
    NoGradGuard no_grad;
    std::array<Value, sizeof...(A)> v;
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = Value(x[i]);
    const double y = std::apply([&](auto&... a) { return Value(f(a...)).data(); }, v);
    detail::check_replay_complete(replay, "gradcheck");
    return y;
  };
  return detail::compare_gradients(eval, std::vector<double>{static_cast<double>(xs)...}, analytic, opt);
}

/// The vector form: f takes `const std::vector<Value>&`.
template <class F>
GradcheckResult gradcheck(F&& f, const std::vector<double>& xs, const GradcheckOptions& opt = {}) {
  detail::stop_replay stopped;
  detail::stop_replay* replay = opt.hold_stopped ? &stopped : nullptr;
  std::vector<double> analytic;
  {
    detail::replay_scope record(replay);
    analytic = value_and_grad(f, xs).grad;
  }
  stopped.recording = false;
  auto eval = [&](const std::vector<double>& x) {
    detail::replay_scope hold(replay);
    Tape tape;
    Tape::Scope use(tape);
    NoGradGuard no_grad;
    std::vector<Value> v(x.begin(), x.end());
    const double y = Value(f(v)).data();
    detail::check_replay_complete(replay, "gradcheck");
    return y;
  };
  return detail::compare_gradients(eval, xs, analytic, opt);
}

}  // namespace tapegrad
