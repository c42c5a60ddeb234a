// SPDX-License-Identifier: MIT
//
// Chapter 4: a tiny neural network made of scalars, trained by hand.
//
// Neurons are sums of weighted inputs through tanh; a layer is a list of
// neurons; the network is a list of layers. The loss is a mean squared error
// over four points. Plain gradient descent moves every weight against its
// gradient, and a tape clear after each step keeps memory flat.

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "tapegrad/scalar.hpp"

using tapegrad::Value;

namespace {

// A small reproducible generator so the test does not depend on the
// standard library's distributions.
struct Lcg {
  std::uint64_t state;
  double uniform() {  // in [-1, 1)
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
  }
};

struct Neuron {
  std::vector<Value> w;
  Value b;
  Neuron(int inputs, Lcg& rng) : b(0.0) {
    for (int i = 0; i < inputs; ++i) w.emplace_back(rng.uniform());
  }
  Value operator()(const std::vector<Value>& x) const {
    Value act = b;
    for (std::size_t i = 0; i < w.size(); ++i) act = act + w[i] * x[i];
    return tanh(act);
  }
};

struct Layer {
  std::vector<Neuron> neurons;
  Layer(int inputs, int outputs, Lcg& rng) {
    for (int i = 0; i < outputs; ++i) neurons.emplace_back(inputs, rng);
  }
  std::vector<Value> operator()(const std::vector<Value>& x) const {
    std::vector<Value> out;
    for (const Neuron& n : neurons) out.push_back(n(x));
    return out;
  }
};

struct Mlp {
  std::vector<Layer> layers;
  Mlp(std::vector<int> sizes, Lcg& rng) {
    for (std::size_t i = 0; i + 1 < sizes.size(); ++i) layers.emplace_back(sizes[i], sizes[i + 1], rng);
  }
  Value operator()(std::vector<Value> x) const {
    for (const Layer& l : layers) x = l(x);
    return x[0];
  }
  std::vector<Value> parameters() const {
    std::vector<Value> p;
    for (const Layer& l : layers)
      for (const Neuron& n : l.neurons) {
        p.insert(p.end(), n.w.begin(), n.w.end());
        p.push_back(n.b);  // a copy of the handle: the same leaf
      }
    return p;
  }
};

}  // namespace

TEST_CASE("tutorial 4: a 3-4-4-1 network learns four points") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);

  Lcg rng{42};
  Mlp net({3, 4, 4, 1}, rng);
  const std::vector<std::vector<double>> xs = {{2, 3, -1}, {3, -1, 0.5}, {0.5, 1, 1}, {1, 1, -1}};
  const std::vector<double> ys = {1, -1, -1, 1};
  auto params = net.parameters();  // handles to the same leaves
  REQUIRE(params.size() == 41);    // 4*(3+1) + 4*(4+1) + 1*(4+1)

  auto loss_now = [&] {
    Value loss = 0.0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
      std::vector<Value> x(xs[i].begin(), xs[i].end());
      Value diff = net(x) - ys[i];
      loss = loss + diff * diff;
    }
    return loss * 0.25;
  };

  const double first = loss_now().data();
  tape.clear();
  double last = first;
  for (int step = 0; step < 200; ++step) {
    Value loss = loss_now();
    for (Value& p : params) p.zero_grad();
    loss.backward();
    for (Value& p : params) p.set_data(p.data() - 0.1 * p.grad());  // w <- w - lr * dL/dw
    last = loss.data();
    tape.clear();  // intermediates gone; the 41 parameters stay
  }

  CHECK(first > 0.5);
  CHECK(last < 0.01);  // the bound this chapter promises
  // Every prediction now has the right sign.
  for (std::size_t i = 0; i < xs.size(); ++i) {
    std::vector<Value> x(xs[i].begin(), xs[i].end());
    CHECK(net(x).data() * ys[i] > 0.8);
  }
}
