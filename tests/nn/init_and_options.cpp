// SPDX-License-Identifier: MIT
//
// Where a layer's initial values come from (an explicit seed, a Generator,
// or the process-wide default generator that manual_seed restarts), and the
// layer options that are refused before anything is built.

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "tapegrad/nn.hpp"
#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::value_error;
using tapegrad::testing::message_of;
namespace nn = tapegrad::nn;

namespace {

std::vector<std::vector<float>> values(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.to_vector());
  return out;
}

// A small model built the way a program would, without any seed.
struct Model : nn::Module {
  Model() {
    register_module("embed", nn::Embedding(5, 8));
    register_module("block", nn::TransformerBlock(8, 2, {.d_ff = 16}));
    register_module("head", nn::Linear(8, 5));
  }
};

}  // namespace

TEST_CASE("layers without a seed draw from the default generator") {
  SUBCASE("two default-constructed Linear(4, 4) differ") {
    nn::Linear a(4, 4), b(4, 4);
    CHECK(a.weight().to_vector() != b.weight().to_vector());
    CHECK(a.bias().to_vector() != b.bias().to_vector());
  }

  SUBCASE("the same program after manual_seed(7) builds the same model, bit for bit") {
    tapegrad::manual_seed(7);
    Model first;
    tapegrad::manual_seed(7);
    Model second;
    CHECK(values(first) == values(second));
    tapegrad::manual_seed(8);
    Model other;
    CHECK(values(other) != values(first));
  }

  SUBCASE("an explicit seed ignores the default generator and gives the same weights as a Generator of that seed") {
    tapegrad::manual_seed(1);
    nn::Linear a(3, 2, {.seed = 0});
    tapegrad::manual_seed(2);
    nn::Linear b(3, 2, {.seed = 0});
    CHECK(a.weight().to_vector() == b.weight().to_vector());
    // Linear's weight is the first draw: kaiming_uniform with a = sqrt(5), bound 1 / sqrt(in).
    tapegrad::Generator gen(0);
    const auto w = tapegrad::kaiming_uniform({3, 2}, gen, std::sqrt(5.0));
    CHECK(a.weight().to_vector() == w.to_vector());
  }

  SUBCASE("a layer given a Generator draws nothing from the default") {
    tapegrad::manual_seed(3);
    tapegrad::Generator gen(11);
    nn::Linear with_gen(2, 2, {.generator = &gen});
    nn::Linear after(2, 2);
    tapegrad::manual_seed(3);
    nn::Linear first(2, 2);
    CHECK(after.weight().to_vector() == first.weight().to_vector());
  }

  SUBCASE("normal() and uniform() without a Generator use it too") {
    tapegrad::manual_seed(5);
    const auto x = tapegrad::normal({4});
    const auto u = tapegrad::uniform({4}, -1.0, 1.0);
    tapegrad::manual_seed(5);
    CHECK(tapegrad::normal({4}).to_vector() == x.to_vector());
    CHECK(tapegrad::uniform({4}, -1.0, 1.0).to_vector() == u.to_vector());
    for (float v : u.to_vector()) CHECK((v >= -1.0f && v < 1.0f));
  }
}

TEST_CASE("layer options are checked, naming the option and the value") {
  tapegrad::manual_seed(9);
  const auto next_after_seed = [] {
    tapegrad::manual_seed(9);
    return tapegrad::default_generator_seed();
  };

  SUBCASE("Linear: in_features and out_features > 0") {
    CHECK(message_of<value_error>([] { nn::Linear(0, 4); }) == "Linear: in_features must be > 0 (got 0)");
    CHECK(message_of<value_error>([] { nn::Linear(4, -2); }) == "Linear: out_features must be > 0 (got -2)");
  }
  SUBCASE("LayerNorm: d > 0, eps >= 0") {
    CHECK(message_of<value_error>([] { nn::LayerNorm(0); }) == "LayerNorm: d must be > 0 (got 0)");
    CHECK(message_of<value_error>([] { nn::LayerNorm(4, {.eps = -1e-5}); }) ==
          "LayerNorm: eps must be finite and >= 0 (got -1e-05)");
  }
  SUBCASE("Dropout: p in [0, 1)") {
    CHECK(message_of<value_error>([] { nn::Dropout(1.0); }) == "Dropout: p must be in [0, 1) (got 1)");
    CHECK(message_of<value_error>([] { nn::Dropout(-0.1); }) == "Dropout: p must be in [0, 1) (got -0.1)");
    CHECK_NOTHROW(nn::Dropout(0.0, {.seed = 1}));
  }
  SUBCASE("Embedding: vocab and d > 0") {
    CHECK(message_of<value_error>([] { nn::Embedding(0, 8); }) == "Embedding: vocab must be > 0 (got 0)");
    CHECK(message_of<value_error>([] { nn::Embedding(10, 0); }) == "Embedding: d must be > 0 (got 0)");
  }
  SUBCASE("PositionalEncoding: max_len and d > 0") {
    CHECK(message_of<value_error>([] { nn::PositionalEncoding(0, 8); }) ==
          "PositionalEncoding: max_len must be > 0 (got 0)");
  }
  SUBCASE("MultiHeadAttention: d_model > 0, heads > 0 and dividing d_model") {
    CHECK(message_of<value_error>([] { nn::MultiHeadAttention(0, 2); }) ==
          "MultiHeadAttention: d_model must be > 0 (got 0)");
    CHECK(message_of<value_error>([] { nn::MultiHeadAttention(8, 0); }) ==
          "MultiHeadAttention: heads must be > 0 (got 0)");
    CHECK(message_of<value_error>([] { nn::MultiHeadAttention(10, 3); }) ==
          "MultiHeadAttention: heads must divide d_model = 10 (got 3)");
  }
  SUBCASE("FeedForward: d_model and d_ff > 0") {
    CHECK(message_of<value_error>([] { nn::FeedForward(8, 0); }) == "FeedForward: d_ff must be > 0 (got 0)");
  }
  SUBCASE("TransformerBlock: every option, before any child is built") {
    CHECK(message_of<value_error>([] { nn::TransformerBlock(8, 3); }) ==
          "TransformerBlock: heads must divide d_model = 8 (got 3)");
    CHECK(message_of<value_error>([] { nn::TransformerBlock(8, 2, {.d_ff = -1}); }) ==
          "TransformerBlock: d_ff must be >= 0 (0 means 4 * d_model) (got -1)");
    CHECK(message_of<value_error>([] { nn::TransformerBlock(8, 2, {.dropout = 1.5}); }) ==
          "TransformerBlock: dropout must be in [0, 1) (got 1.5)");
    CHECK(message_of<value_error>([] { nn::TransformerBlock(8, 2, {.eps = -1}); }) ==
          "TransformerBlock: eps must be finite and >= 0 (got -1)");
  }
  SUBCASE("a refused layer took nothing from the default generator") {
    tapegrad::manual_seed(9);
    CHECK_THROWS_AS(nn::TransformerBlock(8, 2, {.dropout = 1.0}), value_error);
    CHECK_THROWS_AS(nn::Linear(0, 1), value_error);
    const auto draw = tapegrad::default_generator_seed();
    CHECK(draw == next_after_seed());
  }
}
