// SPDX-License-Identifier: MIT
//
// A small neural network built from scalar Values, trained to tell apart two
// interleaved half-moons of points: every weight, every multiply and every add
// is a node on the tape, as in a first course on backpropagation.
//
//   scalar_mlp [--steps 100] [--seed 1] [--points 100] [--lr 1.0] [--out scalar_mlp-out]
//
// Writes to --out: graph.dot (one neuron's graph with its gradients) and
// loss.svg (training and held-out loss per step).

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <tapegrad/scalar.hpp>

#include "../common/cli.hpp"
#include "../common/csv.hpp"
#include "../common/progress.hpp"
#include "../common/svg.hpp"

using tapegrad::Value;
namespace ex = tapegrad_examples;

/// A point of the plane and its class, +1 (upper moon) or -1 (lower moon).
struct Point {
  double x1, x2;
  int label;
};

/// `n` points on two interleaved half-circles with Gaussian noise.
std::vector<Point> two_moons(int n, double noise, std::mt19937& gen) {
  std::uniform_real_distribution<double> angle(0.0, std::numbers::pi);
  std::normal_distribution<double> jitter(0.0, noise);
  std::vector<Point> points;
  for (int i = 0; i < n; ++i) {
    const double t = angle(gen);
    if (i % 2 == 0)
      points.push_back({std::cos(t) + jitter(gen), std::sin(t) + jitter(gen), +1});  // upper moon
    else
      points.push_back({1.0 - std::cos(t) + jitter(gen), 0.5 - std::sin(t) + jitter(gen), -1});  // lower moon
  }
  return points;
}

/// One unit: tanh(w . x + b), or w . x + b for the output unit.
struct Neuron {
  std::vector<Value> w;
  Value b;
  bool nonlinear;

  Neuron(int inputs, bool nonlinear_, std::mt19937& gen) : nonlinear(nonlinear_) {
    std::uniform_real_distribution<double> init(-1.0, 1.0);
    for (int i = 0; i < inputs; ++i) w.emplace_back(init(gen));
    b = Value(0.0);
  }

  Value operator()(const std::vector<Value>& x) const {
    Value z = b;
    for (std::size_t i = 0; i < w.size(); ++i) z = z + w[i] * x[i];  // 2 nodes per input
    return nonlinear ? tanh(z) : z;
  }
};

/// Layers of neurons: 2 inputs -> hidden -> hidden -> 1 score.
struct MLP {
  std::vector<std::vector<Neuron>> layers;

  MLP(const std::vector<int>& sizes, std::mt19937& gen) {
    for (std::size_t l = 1; l < sizes.size(); ++l) {
      const bool last = l + 1 == sizes.size();
      layers.emplace_back();
      for (int j = 0; j < sizes[l]; ++j) layers.back().emplace_back(sizes[l - 1], !last, gen);
    }
  }

  Value operator()(const Point& p) const {
    std::vector<Value> x = {Value(p.x1), Value(p.x2)};
    for (const auto& layer : layers) {
      std::vector<Value> y;
      for (const Neuron& n : layer) y.push_back(n(x));
      x = std::move(y);
    }
    return x[0];
  }

  std::vector<Value> parameters() const {
    std::vector<Value> ps;
    for (const auto& layer : layers)
      for (const Neuron& n : layer) {
        ps.insert(ps.end(), n.w.begin(), n.w.end());
        ps.push_back(n.b);  // a copy of a handle refers to the same leaf
      }
    return ps;
  }
};

/// Mean hinge loss max(0, 1 - y * score) over the points, and the accuracy.
struct Evaluation {
  Value loss;
  int correct = 0;
};

Evaluation evaluate(const MLP& model, const std::vector<Point>& points) {
  Evaluation e;
  Value total = 0.0;
  for (const Point& p : points) {
    const Value score = model(p);
    total = total + relu(1.0 - static_cast<double>(p.label) * score);
    if ((score.data() > 0) == (p.label > 0)) ++e.correct;
  }
  e.loss = total / static_cast<double>(points.size());
  return e;
}

/// The graph of one neuron scoring one point, after backward(): leaves, ops,
/// and on each edge the local gradient recorded on the forward pass.
std::string one_neuron_graph(const Neuron& n, const Point& p) {
  tapegrad::Tape tape;  // a tape of its own: nothing else is drawn
  tapegrad::Tape::Scope use(tape);
  Value x1 = p.x1, x2 = p.x2, w1 = n.w[0].data(), w2 = n.w[1].data(), b = n.b.data();
  x1.label("x1");
  x2.label("x2");
  w1.label("w1");
  w2.label("w2");
  b.label("b");
  Value a1 = w1 * x1;  // one statement per node, so the drawing's order is fixed
  a1.label("w1*x1");
  Value a2 = w2 * x2;
  a2.label("w2*x2");
  Value s = a1 + a2;
  s.label("sum");
  Value z = s + b;
  z.label("z");
  Value h = tanh(z);
  h.label("h = tanh(z)");
  h.backward();  // dh/dw1 = (1 - h^2) x1, ...
  return tapegrad::to_dot(h);
}

/// The program; main() turns its exceptions into one line on stderr.
int run(int argc, char** argv) {
  int steps = 100, points = 100;
  unsigned seed = 1;
  double lr = 1.0;
  std::string out = "scalar_mlp-out";
  CLI::App app{"Train a scalar-Value MLP on two half-moons (every weight is a node on the tape)"};
  app.add_option("--steps", steps, "gradient-descent steps (full batch)")->capture_default_str();
  app.add_option("--seed", seed, "seed for the data and the initial weights")->capture_default_str();
  app.add_option("--points", points, "training points, 4 to 100,000 (held-out set: half as many)")
      ->capture_default_str();
  app.add_option("--lr", lr, "initial learning rate, decayed linearly to a tenth")->capture_default_str();
  app.add_option("--out", out, "folder for graph.dot and loss.svg")->capture_default_str();
  if (auto status = ex::parse_flags(app, argc, argv)) return *status;
  ex::require_at_least("--steps", steps, 1);
  ex::require_at_least("--points", points, 4);
  ex::require_at_most("--points", points, 100000);
  ex::require_positive("--lr", lr);

  std::mt19937 gen(seed);
  const std::vector<Point> train = two_moons(points, 0.1, gen);
  const std::vector<Point> held_out = two_moons(points / 2, 0.1, gen);
  MLP model({2, 16, 16, 1}, gen);
  const std::vector<Value> params = model.parameters();
  std::cout << "two moons: " << train.size() << " training points, " << held_out.size()
            << " held-out points\nMLP 2-16-16-1 with tanh: " << params.size() << " parameters, each a Value\n";

  ex::make_output_dir(out);
  ex::write_text_file(std::filesystem::path(out) / "graph.dot", one_neuron_graph(model.layers[0][0], train[0]));

  ex::Series train_curve{.name = "training"}, held_out_curve{.name = "held-out"};
  ex::Progress progress(steps);
  std::size_t nodes_per_step = 0;
  for (int step = 1; step <= steps; ++step) {
    Evaluation e = evaluate(model, train);  // forward: records the tape
    Value reg = 0.0;
    for (const Value& p : params) reg = reg + p * p;
    Value loss = e.loss + 1e-4 * reg;       // hinge + small L2 penalty
    loss.backward();                        // fills p.grad() for every leaf
    const double loss_value = loss.data();  // read before the clear below
    nodes_per_step = tapegrad::Tape::active().size();

    const double rate = lr * (1.0 - 0.9 * (step - 1) / std::max(1, steps - 1));  // lr down to lr/10
    for (Value p : params) {
      tapegrad::NoGradGuard no_grad;  // update the leaf in place
      p -= rate * p.grad();
      p.zero_grad();
    }
    tapegrad::Tape::active().clear();  // free this step's nodes

    double held_out_loss;
    {
      tapegrad::NoGradGuard no_grad;  // evaluation records nothing
      held_out_loss = evaluate(model, held_out).loss.data();
    }
    train_curve.x.push_back(step);
    train_curve.y.push_back(loss_value);
    held_out_curve.x.push_back(step);
    held_out_curve.y.push_back(held_out_loss);
    progress.update(step, {.loss = loss_value, .accuracy = static_cast<double>(e.correct) / train.size()});
  }
  progress.finish();
  std::cout << "trained " << steps << " steps in " << ex::format_duration(progress.elapsed()) << " (" << std::fixed
            << std::setprecision(0) << progress.steps_per_second() << " steps/s, " << nodes_per_step
            << " tape nodes per step)\n";

  ex::LineChart chart{.title = "scalar MLP on two moons", .x_label = "step", .y_label = "hinge loss"};
  chart.series = {train_curve, held_out_curve};
  chart.save(std::filesystem::path(out) / "loss.svg");

  // The decision regions as characters: '+' and '-' where the model says so,
  // 'o' and 'x' for the training points of each class.
  tapegrad::NoGradGuard no_grad;
  std::vector<std::string> picture(15, std::string(50, ' '));
  for (int r = 0; r < 15; ++r)
    for (int c = 0; c < 50; ++c) {
      const Point p{-1.5 + 4.0 * c / 49, 1.5 - 2.5 * r / 14, 0};
      picture[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = model(p).data() > 0 ? '+' : '.';
    }
  for (const Point& p : train) {
    const int c = static_cast<int>(std::lround((p.x1 + 1.5) / 4.0 * 49));
    const int r = static_cast<int>(std::lround((1.5 - p.x2) / 2.5 * 14));
    if (r >= 0 && r < 15 && c >= 0 && c < 50)
      picture[static_cast<std::size_t>(r)][static_cast<std::size_t>(c)] = p.label > 0 ? 'o' : 'x';
  }
  std::cout << "decision regions ('+' upper class, '.' lower class; o, x: training points):\n";
  for (const std::string& line : picture) std::cout << "  " << line << '\n';
  std::cout << "wrote " << out << "/graph.dot (render: dot -Tsvg graph.dot -o graph.svg) and " << out << "/loss.svg\n";

  const int train_correct = evaluate(model, train).correct, held_correct = evaluate(model, held_out).correct;
  std::cout << std::fixed << std::setprecision(2) << "training accuracy: " << 100.0 * train_correct / train.size()
            << "% (" << train_correct << " of " << train.size() << ")\n"
            << "held-out accuracy: " << 100.0 * held_correct / held_out.size() << "% (" << held_correct << " of "
            << held_out.size() << ")\n";
  return 0;
}

int main(int argc, char** argv) {
  return ex::guarded_main([&] { return run(argc, argv); });
}
