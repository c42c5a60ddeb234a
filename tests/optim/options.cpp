// SPDX-License-Identifier: MIT
//
// Optimizer options out of range: each raises value_error that names the
// optimizer, the option and the value, before the optimizer exists.

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::Shape;
using tapegrad::value_error;
using tapegrad::testing::message_of;
using DTensor = tapegrad::basic_tensor<double>;
namespace optim = tapegrad::optim;

namespace {

DTensor parameter() { return DTensor(Shape{1}, 1.0).requires_grad(true); }

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();
constexpr double infinity = std::numeric_limits<double>::infinity();

}  // namespace

TEST_CASE("SGD options are checked") {
  DTensor w = parameter();
  auto sgd = [&](optim::SGDOptions o) { return message_of<value_error>([&] { optim::basic_sgd<double>({w}, o); }); };

  SUBCASE("lr >= 0 and finite") {
    CHECK(sgd({.lr = -1}) == "SGD: lr must be finite and >= 0 (got -1)");
    CHECK(sgd({.lr = not_a_number}) == "SGD: lr must be finite and >= 0 (got nan)");
    CHECK(sgd({.lr = infinity}) == "SGD: lr must be finite and >= 0 (got inf)");
  }
  SUBCASE("momentum >= 0") { CHECK(sgd({.momentum = -0.5}) == "SGD: momentum must be finite and >= 0 (got -0.5)"); }
  SUBCASE("nesterov needs momentum > 0") {
    CHECK(sgd({.nesterov = true}) == "SGD: momentum must be > 0 with nesterov (got 0)");
  }
  SUBCASE("weight_decay >= 0") {
    CHECK(sgd({.weight_decay = -0.01}) == "SGD: weight_decay must be finite and >= 0 (got -0.01)");
  }
  SUBCASE("the edges of the ranges are accepted") {
    CHECK_NOTHROW(optim::basic_sgd<double>({w}, {.lr = 0, .momentum = 0, .weight_decay = 0}));
    CHECK_NOTHROW(optim::basic_sgd<double>({w}, {.momentum = 0.9, .nesterov = true}));
  }
  SUBCASE("set_lr checks too, and keeps the old rate") {
    optim::basic_sgd<double> opt({w}, {.lr = 0.1});
    CHECK(message_of<value_error>([&] { opt.set_lr(-2); }) == "SGD: lr must be finite and >= 0 (got -2)");
    CHECK(opt.lr() == 0.1);
  }
}

TEST_CASE("Adam and AdamW options are checked") {
  DTensor w = parameter();
  auto adam = [&](optim::AdamOptions o) { return message_of<value_error>([&] { optim::basic_adam<double>({w}, o); }); };
  auto adamw = [&](optim::AdamWOptions o) {
    return message_of<value_error>([&] { optim::basic_adamw<double>({w}, o); });
  };

  SUBCASE("lr >= 0") {
    CHECK(adam({.lr = -0.001}) == "Adam: lr must be finite and >= 0 (got -0.001)");
    CHECK(adamw({.lr = -0.001}) == "AdamW: lr must be finite and >= 0 (got -0.001)");
  }
  SUBCASE("betas.0 in [0, 1)") {
    CHECK(adam({.betas = {1.5, 0.999}}) == "Adam: betas.0 must be in [0, 1) (got 1.5)");
    CHECK(adam({.betas = {-0.1, 0.999}}) == "Adam: betas.0 must be in [0, 1) (got -0.1)");
    CHECK(adamw({.betas = {1.0, 0.999}}) == "AdamW: betas.0 must be in [0, 1) (got 1)");
  }
  SUBCASE("betas.1 in [0, 1)") {
    CHECK(adam({.betas = {0.9, 1.0}}) == "Adam: betas.1 must be in [0, 1) (got 1)");
    CHECK(adamw({.betas = {0.9, not_a_number}}) == "AdamW: betas.1 must be in [0, 1) (got nan)");
  }
  SUBCASE("eps >= 0") {
    CHECK(adam({.eps = -1e-8}) == "Adam: eps must be finite and >= 0 (got -1e-08)");
    CHECK(adamw({.eps = infinity}) == "AdamW: eps must be finite and >= 0 (got inf)");
  }
  SUBCASE("weight_decay >= 0") {
    CHECK(adam({.weight_decay = -1}) == "Adam: weight_decay must be finite and >= 0 (got -1)");
    CHECK(adamw({.weight_decay = -0.01}) == "AdamW: weight_decay must be finite and >= 0 (got -0.01)");
  }
  SUBCASE("the edges of the ranges are accepted") {
    CHECK_NOTHROW(optim::basic_adam<double>({w}, {.lr = 0, .betas = {0, 0}, .eps = 0, .weight_decay = 0}));
  }
}

TEST_CASE("clip_grad_norm checks max_norm") {
  DTensor w = parameter();
  w.grad_mut()[0] = 3.0;
  auto clip = [&](double max_norm) {
    return message_of<value_error>([&] { optim::clip_grad_norm(std::vector<DTensor>{w}, max_norm); });
  };

  SUBCASE("max_norm > 0") {
    CHECK(clip(0) == "clip_grad_norm: max_norm must be > 0 (got 0)");
    CHECK(clip(-1) == "clip_grad_norm: max_norm must be > 0 (got -1)");
    CHECK(clip(not_a_number) == "clip_grad_norm: max_norm must be > 0 (got nan)");
    CHECK(w.grad()[0] == 3.0);  // nothing was scaled
  }
}
