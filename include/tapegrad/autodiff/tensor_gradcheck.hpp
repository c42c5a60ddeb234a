// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <random>
#include <string>
#include <vector>

#include "tapegrad/autodiff/gradcheck.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

/// Checks the tape's gradients of a tensor function against central finite
/// differences, in double precision.
///
/// `f` takes `const std::vector<basic_tensor<double>>&` and returns a tensor of
/// any shape. A non-scalar output is reduced with fixed pseudo-random weights
/// r (the check is then of the vector-Jacobian product r^T J, which exercises
/// every entry of the Jacobian). Inputs marked `requires_grad(true)` are
/// checked; when none is marked, all are.
///
/// Example:
///   DTensor a = ..., b = ...;
///   auto r = tapegrad::gradcheck([](const auto& x) { return matmul(x[0], x[1]); }, {a, b});
///   CHECK_MESSAGE(r, r.report());
template <class F>
GradcheckResult gradcheck(F&& f, const std::vector<basic_tensor<double>>& inputs, const GradcheckOptions& opt = {}) {
  using DT = basic_tensor<double>;
  // Leaves of our own, so the caller's tensors and gradients stay untouched.
  std::vector<DT> x;
  bool any_marked = false;
  for (const DT& t : inputs) any_marked = any_marked || t.requires_grad();
  std::vector<char> checked;
  for (const DT& t : inputs) {
    x.emplace_back(t.shape(), t.to_vector());
    const bool c = any_marked ? t.requires_grad() : true;
    checked.push_back(c ? 1 : 0);
    if (c) x.back().requires_grad(true);
  }
  Tape tape;
  Tape::Scope use(tape);
  DT y = f(x);
  std::mt19937_64 gen(0x7a9e5eedULL);
  std::uniform_real_distribution<double> dist(0.5, 1.5);
  std::vector<double> r(static_cast<std::size_t>(y.numel()));
  for (double& v : r) v = y.numel() == 1 ? 1.0 : dist(gen) * ((gen() & 1) ? 1.0 : -1.0);
  y.backward(DT(y.shape(), r));

  std::vector<double> flat, analytic;
  std::vector<std::size_t> owner;
  for (std::size_t k = 0; k < x.size(); ++k) {
    if (!checked[k]) continue;
    auto d = x[k].data();
    auto g = x[k].grad();
    for (Eigen::Index i = 0; i < d.size(); ++i) {
      flat.push_back(d[i]);
      analytic.push_back(g[i]);
      owner.push_back(k);
    }
  }
  auto eval = [&](const std::vector<double>& v) {
    std::vector<DT> xs;
    std::size_t pos = 0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      if (!checked[k]) {
        xs.emplace_back(x[k].shape(), x[k].to_vector());
        continue;
      }
      const auto n = static_cast<std::size_t>(x[k].numel());
      xs.emplace_back(x[k].shape(), std::vector<double>(v.begin() + static_cast<std::ptrdiff_t>(pos),
                                                        v.begin() + static_cast<std::ptrdiff_t>(pos + n)));
      pos += n;
    }
    NoGradGuard no_grad;
    DT out = f(xs);
    auto o = out.data();
    double s = 0;
    for (Eigen::Index i = 0; i < o.size(); ++i) s += r[static_cast<std::size_t>(i)] * o[i];
    return s;
  };
  GradcheckResult res = detail::compare_gradients(eval, flat, analytic, opt);
  if (!owner.empty()) {
    // Name the worst entry by input and position within it.
    const std::size_t k = owner[res.worst_index];
    std::size_t start = 0;
    while (owner[start] != k) ++start;
    res.name = "(input " + std::to_string(k) + ", flat index " + std::to_string(res.worst_index - start) + ")";
  }
  return res;
}

}  // namespace tapegrad
