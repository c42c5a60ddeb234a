// SPDX-License-Identifier: MIT
#pragma once

// The names the scalar snippets of docs/concepts.md take for granted: one
// parameter `w`, a learning rate, a model of one input and an update rule.

#include <vector>

#include <tapegrad/scalar.hpp>

namespace tapegrad_docs {

/// A one-parameter model, loss = w * batch^2, trained by plain gradient descent.
struct scalar {
  tapegrad::Value w = 0.5;                        // the parameter
  double lr = 0.1;                                // the learning rate
  int steps = 3;                                  // training steps
  double batch = 2.0;                             // the input
  std::vector<tapegrad::Value> parameters = {w};  // a copy of a handle is the same leaf

  /// The loss of one batch.
  tapegrad::Value model(double x) const { return w * (x * x); }

  /// One gradient-descent step on every parameter.
  void update(std::vector<tapegrad::Value>& ps) const {
    tapegrad::NoGradGuard no_grad;
    for (tapegrad::Value& p : ps) {
      p -= lr * p.grad();
      p.zero_grad();
    }
  }
};

}  // namespace tapegrad_docs
