// SPDX-License-Identifier: MIT
#pragma once

#include <concepts>
#include <cstddef>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/autodiff/gradcheck.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

namespace detail {

/// The tensor form of gradcheck: perturbs the given tensors in place, so it
/// reaches whatever f reads (a module's parameters, inputs captured by f).
/// Their values and gradients are as before when it returns, also on error.
template <class F>
GradcheckResult gradcheck_tensors(F& f, std::vector<basic_tensor<double>> leaves, const GradcheckOptions& opt) {
  using DT = basic_tensor<double>;
  for (const DT& l : leaves)
    if (!l.is_leaf())
      throw value_error("gradcheck: " + l.describe() +
                        " is an op result; only leaves (parameters, inputs) can be checked");
  // The caller's gradients, restored at the end.
  std::vector<std::vector<double>> kept_grads;
  std::vector<char> had_grad, wanted_grad;
  for (DT& l : leaves) {
    had_grad.push_back(l.has_grad() ? 1 : 0);
    wanted_grad.push_back(l.requires_grad() ? 1 : 0);
    auto g = l.grad();
    kept_grads.emplace_back(g.data(), g.data() + g.size());
    l.requires_grad(true);
    l.zero_grad();
  }
  std::vector<double> flat, analytic;
  std::vector<std::size_t> owner;
  for (std::size_t k = 0; k < leaves.size(); ++k) {
    auto d = leaves[k].data();
    flat.insert(flat.end(), d.data(), d.data() + d.size());
    owner.insert(owner.end(), static_cast<std::size_t>(d.size()), k);
  }
  auto write = [&](const std::vector<double>& v) {
    std::size_t pos = 0;
    for (DT& l : leaves) {
      auto d = l.data();
      for (Eigen::Index i = 0; i < d.size(); ++i) d[i] = v[pos++];
    }
  };
  auto restore = [&] {
    write(flat);
    for (std::size_t k = 0; k < leaves.size(); ++k) {
      DT& l = leaves[k];
      l.zero_grad();
      if (had_grad[k]) {
        auto g = l.grad_mut();
        for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = kept_grads[k][static_cast<std::size_t>(i)];
      }
      l.requires_grad(wanted_grad[k] != 0);
    }
  };
  stop_replay stopped;
  stop_replay* replay = opt.hold_stopped ? &stopped : nullptr;
  GradcheckResult res;
  try {
    std::vector<double> r;
    {
      Tape tape;
      Tape::Scope use(tape);
      replay_scope record(replay);
      DT y = f();
      // A non-scalar output is reduced with fixed pseudo-random weights r: the
      // check is of r^T J, which exercises every entry of the Jacobian.
      std::mt19937_64 gen(0x7a9e5eedULL);
      std::uniform_real_distribution<double> dist(0.5, 1.5);
      r.resize(static_cast<std::size_t>(y.numel()));
      for (double& v : r) v = y.numel() == 1 ? 1.0 : dist(gen) * ((gen() & 1) ? 1.0 : -1.0);
      if (y.requires_grad()) y.backward(DT(y.shape(), r));
      for (DT& l : leaves) {
        auto g = l.grad();
        analytic.insert(analytic.end(), g.data(), g.data() + g.size());
      }
    }
    stopped.recording = false;
    auto eval = [&](const std::vector<double>& v) {
      write(v);
      replay_scope hold(replay);
      Tape tape;
      Tape::Scope use(tape);
      NoGradGuard no_grad;
      DT out = f();
      check_replay_complete(replay, "gradcheck");
      auto o = out.data();
      double s = 0;
      for (Eigen::Index i = 0; i < o.size(); ++i) s += r[static_cast<std::size_t>(i)] * o[i];
      return s;
    };
    res = compare_gradients(eval, flat, analytic, opt);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  if (!owner.empty()) {
    // Name the worst entry by input and position within it.
    const std::size_t k = owner[res.worst_index];
    std::size_t start = 0;
    while (owner[start] != k) ++start;
    res.name = "(input " + std::to_string(k) + ", flat index " + std::to_string(res.worst_index - start) + ")";
  }
  return res;
}

}  // namespace detail

/// Checks the tape's gradients of a tensor function against central finite
/// differences, in double precision.
///
/// `f` takes `const std::vector<basic_tensor<double>>&` and returns a tensor of
/// any shape. A non-scalar output is reduced with fixed pseudo-random weights
/// r (the check is then of the vector-Jacobian product r^T J, which exercises
/// every entry of the Jacobian). Inputs marked `requires_grad(true)` are
/// checked; when none is marked, all are. f runs on copies: the caller's
/// tensors and their gradients stay untouched.
///
/// Example:
///   DTensor a = ..., b = ...;
///   auto r = tapegrad::gradcheck([](const auto& x) { return matmul(x[0], x[1]); }, {a, b});
///   CHECK_MESSAGE(r, r.report());
template <class F>
requires std::invocable < F&, const std::vector<basic_tensor<double>>
& > GradcheckResult gradcheck(F&& f, const std::vector<basic_tensor<double>>& inputs,
                              const GradcheckOptions& opt = {}) {
  using DT = basic_tensor<double>;
  bool any_marked = false;
  for (const DT& t : inputs) any_marked = any_marked || t.requires_grad();
  std::vector<DT> x, checked;
  for (const DT& t : inputs) {
    x.emplace_back(t.shape(), t.to_vector());
    if (!any_marked || t.requires_grad()) checked.push_back(x.back());
  }
  auto call = [&] { return f(static_cast<const std::vector<DT>&>(x)); };
  return detail::gradcheck_tensors(call, std::move(checked), opt);
}

/// Checks the gradients of `f()` with respect to tensors that f reads itself:
/// a module's `parameters()`, inputs it captured. They are perturbed in
/// place and restored, values and gradients, when the check returns.
///
/// Example:
///   nn::basic_linear<double> layer(3, 2, {.seed = 1});
///   DTensor x = random_tensor({4, 3}, 7);
///   auto params = layer.parameters();
///   params.push_back(x);
///   auto r = tapegrad::gradcheck([&] { return layer(x); }, params);
template <class F>
requires std::invocable<F&> GradcheckResult gradcheck(F&& f, const std::vector<basic_tensor<double>>& tensors,
                                                      const GradcheckOptions& opt = {}) {
  return detail::gradcheck_tensors(f, tensors, opt);
}

}  // namespace tapegrad
