// SPDX-License-Identifier: MIT
//
// Knowledge insulation: one total loss trains a backbone with one part of
// itself and an action expert with another.
//
// The backbone, a small causal transformer, reads an observation (4 tokens)
// followed by the action it calls for, discretised into tokens by plain
// uniform binning (16 bins per dimension over [-1, 1]), and is trained by
// next-token cross-entropy on those action tokens. The action expert, a
// smaller transformer with its own weights, denoises a continuous action
// chunk by flow matching; in every layer its queries attend to the
// backbone's keys and values of the observation and to its own positions,
// never to the action tokens. The keys and values reach it through one
// stop_gradient, so the action loss cannot move the backbone. The routing
// table printed before training shows exactly that; --no-stop-gradient trains
// the other graph, where the backbone hears both losses.
//
//   knowledge_insulation [--steps 1200] [--batch 32] [--seed 1] [--no-stop-gradient] [--out ki-out]

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/csv.hpp"
#include "common/progress.hpp"
#include "common/svg.hpp"
#include "knowledge_insulation/model.hpp"

namespace ki = knowledge_insulation;
namespace ex = tapegrad_examples;
namespace tg = tapegrad;

int main(int argc, char** argv) {
  int steps = 1200, batch = 32, held_out = 256;
  std::uint64_t seed = 1;
  double lr = 3e-3;
  bool no_stop_gradient = false;
  std::string out = "ki-out";
  CLI::App app{"Knowledge insulation: a token-trained backbone and a flow-matching action expert behind stop_gradient"};
  app.add_option("--steps", steps, "Adam steps on the total loss")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "examples per step")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--held-out", held_out, "held-out examples for the summary")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", lr, "Adam learning rate")->capture_default_str();
  app.add_option("--seed", seed, "seed for the data and the initial weights")->capture_default_str();
  app.add_flag("--no-stop-gradient", no_stop_gradient,
               "let the action loss reach the backbone through the keys and values");
  app.add_option("--out", out, "folder for loss.svg, losses.csv and graph.dot")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    ki::Config config;
    config.seed = seed;
    config.stop_gradient = !no_stop_gradient;
    ki::Model model(config);
    std::cout << "backbone: " << config.layers << " causal layers of width " << config.d_model << ", "
              << ex::group_thousands(model.backbone->parameter_count()) << " parameters\n"
              << "expert:   " << config.layers << " layers of width " << config.d_expert << ", "
              << ex::group_thousands(model.expert->parameter_count()) << " parameters\n"
              << "actions:  " << config.horizon << " steps x " << config.action_dim
              << " dims, tokenised by uniform binning into " << config.bins << " bins per dim\n"
              << "barrier:  stop_gradient on the key/value cache: " << (config.stop_gradient ? "on" : "off") << "\n\n";

    tg::Generator data_gen(seed * 7919 + 1), noise_gen(seed * 104729 + 3);

    // ---- the routing table, from one recorded forward pass ----------------------
    {
      const ki::Batch b = ki::make_batch(config, batch, data_gen);
      const ki::FlowSample s = ki::sample_flow(config, b, noise_gen);
      const ki::Forward f = model.forward(b, s);
      const auto table = tg::routing({{"token loss", f.token_loss}, {"action loss", f.action_loss}, {"total", f.total}},
                                     model.named_parameters(), {.depth = 1}, {{"kv-cache stop_gradient", f.kv_read}});
      std::cout << "gradient routing (norm of each group's gradient from each loss alone):\n" << table << '\n';
      const bool insulated = table.at("action loss", "backbone").grad_norm == 0.0;
      std::cout << (insulated ? "the backbone hears the token loss only; the expert hears the action loss only\n\n"
                              : "without the barrier the backbone hears both losses\n\n");
      ex::make_output_dir(out);
      ex::write_text_file(std::filesystem::path(out) / "graph.dot", tg::to_dot(f.total));
      tg::Tape::active().clear();
    }

    // ---- training on the total loss -----------------------------------------
    tg::optim::Adam opt(model.parameters(), {.lr = lr});
    ex::CsvWriter csv(std::filesystem::path(out) / "losses.csv", {"step", "token_loss", "action_loss"});
    std::vector<double> xs, token_curve, action_curve;
    double token_avg = 0, action_avg = 0;
    ex::Progress progress(steps);
    for (int step = 1; step <= steps; ++step) {
      const ki::Batch b = ki::make_batch(config, batch, data_gen);
      const ki::FlowSample s = ki::sample_flow(config, b, noise_gen);
      const ki::Forward f = model.forward(b, s);
      opt.zero_grad();
      f.total.backward();
      opt.step();
      const double tl = f.token_loss.item(), al = f.action_loss.item();
      tg::Tape::active().clear();  // the step's intermediates go; parameters stay
      // Smoothed over about 20 steps for the status line and the curves.
      const double k = step == 1 ? 1.0 : 0.05;
      token_avg += k * (tl - token_avg);
      action_avg += k * (al - action_avg);
      csv.row(step, tl, al);
      xs.push_back(step);
      token_curve.push_back(token_avg);
      action_curve.push_back(action_avg);
      std::ostringstream extra;
      extra << std::fixed << std::setprecision(4) << "token " << token_avg << "  action " << action_avg;
      progress.update(step, {.extra = extra.str()});
    }
    progress.finish();
    csv.close();

    ex::LineChart chart{
        .title = std::string("knowledge insulation, stop_gradient ") + (config.stop_gradient ? "on" : "off"),
        .x_label = "step",
        .y_label = "loss (smoothed)",
        .log_y = true};
    chart.series.push_back({.name = "token loss (cross-entropy)", .x = xs, .y = token_curve});
    chart.series.push_back({.name = "action loss (flow matching)", .x = xs, .y = action_curve});
    chart.save(std::filesystem::path(out) / "loss.svg");

    // ---- held-out summary ------------------------------------------------------
    tg::Generator test_gen(seed * 15485863 + 5);
    const ki::Batch test = ki::make_batch(config, held_out, test_gen);
    const ki::Evaluation e = ki::evaluate(model, test, test_gen, 10);
    tg::Tape::active().clear();
    std::cout << "trained " << steps << " steps in " << ex::format_duration(progress.elapsed()) << "; final token loss "
              << std::fixed << std::setprecision(4) << token_avg << ", action loss " << action_avg << '\n'
              << "held-out: token accuracy " << std::setprecision(2) << 100.0 * e.correct / e.tokens << "% ("
              << e.correct << " of " << e.tokens << "), action error after 10 Euler steps: mse " << std::setprecision(4)
              << e.action_mse << ", mean |error| " << e.action_mae << '\n'
              << "wrote " << (std::filesystem::path(out) / "loss.svg").string() << ", losses.csv, graph.dot"
              << " (render: dot -Tsvg graph.dot -o graph.svg)\n";
  } catch (const std::exception& e) {
    std::cerr << "knowledge_insulation: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
