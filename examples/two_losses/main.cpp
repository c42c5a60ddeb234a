// SPDX-License-Identifier: MIT
//
// One total loss, two kinds of parameters, and a barrier between them.
//
// A shared encoder turns inputs into features. A classifier head reads the
// features and is trained by a cross-entropy loss; an action head reads the
// same features and is trained by a squared error. The two losses are added
// into one number, yet each parameter hears only the losses whose paths reach
// it: with stop_gradient on the features the action loss cannot move the
// encoder. The program measures that, loss by loss, with two backward()
// calls over one recorded graph, then trains the model and draws the graph.
//
//   two_losses [--steps 200] [--seed 7] [--no-barrier] [--out two_losses-out]

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include <tapegrad/tapegrad.hpp>

#include "../common/cli.hpp"
#include "../common/csv.hpp"

namespace ex = tapegrad_examples;
namespace tg = tapegrad;
namespace nn = tapegrad::nn;
using tg::Tensor;

namespace {

struct Model : nn::Module {
  std::shared_ptr<nn::Linear> encoder, classifier, action;
  explicit Model(std::uint64_t seed) {
    encoder = register_module("encoder", std::make_shared<nn::Linear>(4, 8, nn::LinearOptions{.seed = seed}));
    classifier = register_module("classifier", std::make_shared<nn::Linear>(8, 3, nn::LinearOptions{.seed = seed + 1}));
    action = register_module("action", std::make_shared<nn::Linear>(8, 2, nn::LinearOptions{.seed = seed + 2}));
  }
};

struct Losses {
  Tensor classification, action, total;
};

// The forward pass: both losses from one recording of the encoder.
Losses forward(Model& m, const Tensor& x, const std::vector<tg::index_t>& labels, const Tensor& targets, bool barrier) {
  const Tensor features = tanh(m.encoder->forward(x));
  const Tensor seen = barrier ? tg::stop_gradient(features) : features;  // the barrier
  Losses l;
  l.classification = tg::cross_entropy(m.classifier->forward(features), labels);
  l.action = tg::mse_loss(m.action->forward(seen), targets);
  l.total = l.classification + l.action;
  return l;
}

// The norm of each parameter's gradient, in named_parameters() order.
std::vector<double> grad_norms(Model& m) {
  std::vector<double> out;
  for (const auto& [name, p] : m.named_parameters()) out.push_back(p.grad().matrix().norm());
  return out;
}

}  // namespace

/// The program; main() turns its exceptions into one line on stderr.
int run(int argc, char** argv) {
  int steps = 200;
  std::uint64_t seed = 7;
  bool no_barrier = false;
  std::string out = "two_losses-out";
  CLI::App app{"Two losses added into one: which parameter hears which loss (stop_gradient routing)"};
  app.add_option("--steps", steps, "Adam steps on the total loss")->capture_default_str();
  app.add_option("--seed", seed, "seed for the data and the initial weights")->capture_default_str();
  app.add_flag("--no-barrier", no_barrier, "let the action loss reach the encoder too");
  app.add_option("--out", out, "folder for graph.dot")->capture_default_str();
  if (auto status = ex::parse_flags(app, argc, argv)) return *status;
  ex::require_at_least("--steps", steps, 0);
  ex::make_output_dir(out);  // before any work: an unwritable --out fails at once
  const bool barrier = !no_barrier;

  // Data the program makes itself: 64 points in 4-D, a class from the sign
  // pattern of two coordinates, and a 2-D action target.
  tg::Generator gen(seed);
  const Tensor x = tg::normal({64, 4}, gen);
  std::vector<tg::index_t> labels;
  std::vector<float> act;
  for (tg::index_t i = 0; i < 64; ++i) {
    const float a = x.at({i, 0}), b = x.at({i, 1});
    labels.push_back(a > 0 ? (b > 0 ? 0 : 1) : 2);
    act.push_back(a - b);
    act.push_back(0.5f * x.at({i, 2}));
  }
  const Tensor targets(tg::Shape{64, 2}, act);

  Model model(seed);
  std::cout << "model: encoder 4 -> 8 (tanh), classifier 8 -> 3, action head 8 -> 2; " << model.parameter_count()
            << " parameters\nbarrier (stop_gradient on the action head's input): " << (barrier ? "on" : "off")
            << "\n\n";

  // Two roots over one recorded graph: the gradient of each loss on its own.
  Losses l = forward(model, x, labels, targets, barrier);
  model.zero_grad();
  l.classification.backward();
  const std::vector<double> from_classification = grad_norms(model);
  model.zero_grad();
  l.action.backward();
  const std::vector<double> from_action = grad_norms(model);
  model.zero_grad();
  l.total.backward();
  const std::vector<double> from_total = grad_norms(model);

  std::cout << "total loss " << std::fixed << std::setprecision(4) << l.total.item() << " = classification "
            << l.classification.item() << " + action " << l.action.item() << "\n\n"
            << "gradient norm of each parameter, by the loss it came from:\n"
            << std::left << std::setw(20) << "parameter" << std::right << std::setw(16) << "classification"
            << std::setw(10) << "action" << std::setw(10) << "total" << '\n';
  std::size_t k = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    std::cout << std::left << std::setw(20) << name << std::right << std::setw(16) << from_classification[k]
              << std::setw(10) << from_action[k] << std::setw(10) << from_total[k] << '\n';
    ++k;
  }
  std::cout << (barrier ? "\nthe encoder hears the classification loss only: its action column is zero\n"
                        : "\nwithout the barrier the encoder hears both losses\n");

  ex::write_text_file(std::filesystem::path(out) / "graph.dot", tg::to_dot(l.total));
  tg::Tape::active().clear();

  // Training on the total loss: each head still learns from its own loss.
  tg::optim::Adam opt(model.parameters(), {.lr = 1e-2});
  for (int step = 1; step <= steps; ++step) {
    Losses s = forward(model, x, labels, targets, barrier);
    opt.zero_grad();
    s.total.backward();
    opt.step();
    if (step == 1 || step % 50 == 0 || step == steps)
      std::cout << "step " << std::setw(4) << step << ": classification " << s.classification.item() << ", action "
                << s.action.item() << '\n';
    tg::Tape::active().clear();
  }
  std::cout << "wrote " << (std::filesystem::path(out) / "graph.dot").string()
            << " (render: dot -Tsvg graph.dot -o graph.svg)\n";
  return 0;
}

int main(int argc, char** argv) {
  return ex::guarded_main([&] { return run(argc, argv); });
}
