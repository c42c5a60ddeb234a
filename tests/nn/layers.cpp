// SPDX-License-Identifier: MIT
//
// The layers: what they compute (checked by hand on small numbers), their
// gradients (checked against central differences in double precision, with
// respect to every parameter and the input), how they name and count their
// parameters, and how train()/eval() reaches dropout.

#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tapegrad/nn.hpp"
#include "tapegrad/tensor.hpp"
#include "tapegrad/tensor/attention.hpp"
#include "tapegrad/tensor/nn_functional.hpp"
#include "testing.hpp"

using tapegrad::index_t;
using tapegrad::Shape;
using tapegrad::Tensor;
using tapegrad::testing::DTensor;
using tapegrad::testing::random_tensor;
namespace nn = tapegrad::nn;

namespace {

// Every parameter of `m`, plus the input x (marked requires_grad).
template <class M>
std::vector<DTensor> leaves_of(const M& m, DTensor& x) {
  std::vector<DTensor> out = m.parameters();
  x.requires_grad(true);
  out.push_back(x);
  return out;
}

// Gives every parameter random values in [-1, 1), so a check does not pass by
// the accident of gamma = 1 or beta = 0.
void randomize(const nn::basic_module<double>& m, unsigned seed) {
  for (auto p : m.parameters()) {
    DTensor r = random_tensor(p.shape(), seed++);
    p.data() = r.data();
  }
}

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("Linear computes y = x W + b with W stored [in, out]") {
  nn::basic_linear<double> lin(2, 3);
  REQUIRE(lin.weight().shape() == Shape{2, 3});
  REQUIRE(lin.bias().shape() == Shape{3});
  // W = [[1, 2, 3], [4, 5, 6]], b = [0.5, 0, -0.5]; x = [1, -1]:
  // y = [1 - 4, 2 - 5, 3 - 6] + b = [-2.5, -3, -3.5]
  auto w = lin.weight();
  auto b = lin.bias();
  w.data() << 1, 2, 3, 4, 5, 6;
  b.data() << 0.5, 0, -0.5;
  DTensor y = lin(DTensor(Shape{1, 2}, std::vector<double>{1, -1}));
  CHECK(y.shape() == Shape{1, 3});
  CHECK(y.at({0, 0}) == doctest::Approx(-2.5));
  CHECK(y.at({0, 1}) == doctest::Approx(-3.0));
  CHECK(y.at({0, 2}) == doctest::Approx(-3.5));
  tapegrad::Tape::active().clear();

  SUBCASE("initial values: U(-1/sqrt(in), 1/sqrt(in)) for W and b, fixed by the seed") {
    nn::Linear a(64, 20, {.seed = 7}), same(64, 20, {.seed = 7}), other(64, 20, {.seed = 8});
    const float bound = 1.0f / 8.0f;  // 1 / sqrt(64)
    CHECK(a.weight().data().abs().maxCoeff() <= bound);
    CHECK(a.bias().data().abs().maxCoeff() <= bound);
    CHECK(a.weight().data().abs().maxCoeff() > 0.9f * bound);  // the range is used
    CHECK((a.weight().data() == same.weight().data()).all());
    CHECK_FALSE((a.weight().data() == other.weight().data()).all());
  }

  SUBCASE("without bias there is one parameter") {
    nn::Linear no_bias(4, 2, {.bias = false});
    CHECK(no_bias.parameter_count() == 8);
    CHECK_FALSE(no_bias.bias().defined());
  }

  SUBCASE("an input whose last dimension is not in_features is refused") {
    nn::Linear l(4, 2);
    CHECK_THROWS_WITH_AS(l(Tensor(Shape{3, 5})), doctest::Contains("[3, 5] does not end in in_features = 4"),
                         tapegrad::shape_error);
  }
}

TEST_CASE("gradcheck of every layer, in double precision") {
  SUBCASE("Linear, on a batched input [2, 3, 4]") {
    nn::basic_linear<double> lin(4, 5, {.seed = 1});
    DTensor x = random_tensor({2, 3, 4}, 2);
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return lin(x); }, leaves_of(lin, x)));
  }

  SUBCASE("LayerNorm") {
    nn::basic_layer_norm<double> ln(6);
    randomize(ln, 3);
    DTensor x = random_tensor({4, 6}, 4);
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return ln(x); }, leaves_of(ln, x)));
  }

  SUBCASE("Embedding: a repeated id collects both positions' gradients") {
    nn::basic_embedding<double> emb(5, 3, {.seed = 5});
    const std::vector<index_t> ids = {4, 1, 4, 0, 2, 4};
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return emb(ids, Shape{2, 3}); }, emb.parameters()));
  }

  SUBCASE("MultiHeadAttention, no mask") {
    nn::basic_multi_head_attention<double> attn(4, 2, {.seed = 6});
    DTensor x = random_tensor({2, 3, 4}, 7);
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return attn(x); }, leaves_of(attn, x)));
  }

  SUBCASE("MultiHeadAttention, causal, with biases, unbatched [T, d]") {
    nn::basic_multi_head_attention<double> attn(4, 2, {.causal = true, .bias = true, .seed = 8});
    randomize(attn, 9);
    DTensor x = random_tensor({3, 4}, 10);
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return attn(x); }, leaves_of(attn, x)));
  }

  SUBCASE("MultiHeadAttention with a key-padding mask (the unfused path), causal too") {
    nn::basic_multi_head_attention<double> attn(4, 2, {.causal = true, .seed = 11});
    DTensor x = random_tensor({2, 3, 4}, 12);
    // batch 0 hides its last key, batch 1 hides none
    DTensor mask(Shape{2, 1, 1, 3}, std::vector<double>{0, 0, 1, 0, 0, 0});
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return attn(x, mask); }, leaves_of(attn, x)));
  }

  SUBCASE("FeedForward, ReLU and GELU") {
    for (auto act : {nn::Activation::relu, nn::Activation::gelu}) {
      nn::basic_feed_forward<double> ffn(4, 8, {.activation = act, .seed = 13});
      DTensor x = random_tensor({2, 3, 4}, 14);
      CHECK_GRADCHECK(tapegrad::gradcheck([&] { return ffn(x); }, leaves_of(ffn, x)));
    }
  }

  SUBCASE("TransformerBlock, post-LN (the default) and pre-LN") {
    for (bool pre_ln : {false, true}) {
      CAPTURE(pre_ln);
      nn::basic_transformer_block<double> block(
          4, 2, {.d_ff = 8, .activation = nn::Activation::gelu, .pre_ln = pre_ln, .seed = 15});
      randomize(block, 16);
      DTensor x = random_tensor({2, 3, 4}, 17);
      CHECK_GRADCHECK(tapegrad::gradcheck([&] { return block(x); }, leaves_of(block, x)));
    }
  }

  SUBCASE("TransformerBlock, causal") {
    nn::basic_transformer_block<double> block(4, 2, {.d_ff = 8, .causal = true, .seed = 18});
    DTensor x = random_tensor({1, 4, 4}, 19);
    CHECK_GRADCHECK(tapegrad::gradcheck([&] { return block(x); }, leaves_of(block, x)));
  }
}

TEST_CASE("MultiHeadAttention keeps the last attention weights") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  nn::MultiHeadAttention attn(8, 2, {.causal = true, .seed = 20});
  CHECK_FALSE(attn.last_attention().defined());
  tapegrad::Generator gen(21);
  Tensor x = tapegrad::normal({3, 5, 8}, gen);
  Tensor y = attn(x);
  CHECK(y.shape() == Shape{3, 5, 8});
  const Tensor& a = attn.last_attention();
  REQUIRE(a.shape() == Shape{3, 2, 5, 5});  // [B, H, T, T]
  for (index_t b = 0; b < 3; ++b)
    for (index_t h = 0; h < 2; ++h)
      for (index_t i = 0; i < 5; ++i) {
        double row = 0;
        for (index_t j = 0; j < 5; ++j) {
          row += a.at({b, h, i, j});
          if (j > i) CHECK(a.at({b, h, i, j}) == 0.0f);  // causal: no look ahead
        }
        CHECK(row == doctest::Approx(1.0).epsilon(1e-5));
      }
  CHECK(a.at({0, 0, 0, 0}) == doctest::Approx(1.0));  // position 0 can only see itself
  CHECK_FALSE(a.requires_grad());
  tape.clear();
  CHECK(attn.last_attention().is_alive());  // a leaf: it outlives the tape's clear
}

TEST_CASE("PositionalEncoding adds fixed sines and cosines") {
  nn::basic_positional_encoding<double> pe(8, 4);
  CHECK(pe.parameter_count() == 0);
  const DTensor& t = pe.table(8);
  REQUIRE(t.shape() == Shape{8, 4});
  // PE[pos, 2i] = sin(pos / 10000^(2i/4)), PE[pos, 2i+1] = cos(same)
  CHECK(t.at({0, 0}) == 0.0);
  CHECK(t.at({0, 1}) == 1.0);
  CHECK(t.at({1, 0}) == doctest::Approx(std::sin(1.0)));
  CHECK(t.at({1, 1}) == doctest::Approx(std::cos(1.0)));
  CHECK(t.at({3, 2}) == doctest::Approx(std::sin(3.0 / 100.0)));  // 10000^(2/4) = 100
  CHECK(t.at({3, 3}) == doctest::Approx(std::cos(3.0 / 100.0)));

  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  DTensor x = DTensor(Shape{2, 3, 4}, 1.0).requires_grad(true);
  DTensor y = pe(x);  // T = 3 <= max_len
  CHECK(y.at({1, 2, 0}) == doctest::Approx(1.0 + std::sin(2.0)));
  tapegrad::sum(y).backward();
  CHECK(x.grad().isApprox(DTensor(Shape{2, 3, 4}, 1.0).data()));  // dy/dx = 1
  CHECK_THROWS_AS(pe(DTensor(Shape{9, 4})), tapegrad::shape_error);
}

TEST_CASE("LayerNorm and Embedding start as PyTorch's do") {
  nn::LayerNorm ln(5);
  CHECK((ln.gamma().data() == 1.0f).all());
  CHECK((ln.beta().data() == 0.0f).all());
  nn::basic_embedding<double> emb(20, 64, {.seed = 22});
  const auto w = emb.weight().data();
  const double mean = w.mean();
  const double sd = std::sqrt((w - mean).square().mean());
  // N(0, 1) over 1,280 draws: the mean within 4 standard errors (4 / sqrt(1280) = 0.11) and sd near 1
  CHECK(std::abs(mean) < 0.11);
  CHECK(sd == doctest::Approx(1.0).epsilon(0.08));
}

// ---------------------------------------------------------------------------
// The operation transformer: token embedding, fixed positional encoding, two
// post-LN blocks, and a Linear output projection to the 20 logits.
namespace {

struct OperationTransformer : nn::Module {
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::PositionalEncoding> pos;
  std::shared_ptr<nn::ModuleList<nn::TransformerBlock>> blocks;
  std::shared_ptr<nn::Linear> out;

  explicit OperationTransformer(std::uint64_t seed) {
    tapegrad::Generator gen(seed);
    embed = register_module("embed", nn::Embedding(20, 64, {.generator = &gen}));
    pos = register_module("pos", nn::PositionalEncoding(8, 64));
    blocks = register_module("blocks", nn::ModuleList<nn::TransformerBlock>());
    for (int i = 0; i < 2; ++i) blocks->push_back(nn::TransformerBlock(64, 4, {.d_ff = 256, .generator = &gen}));
    out = register_module("out", nn::Linear(64, 20, {.generator = &gen}));
  }
};

}  // namespace

TEST_CASE("the operation transformer has 102,036 parameters") {
  OperationTransformer model(42);
  // embed.weight                 20 x 64                          =  1,280
  // per block: w_q, w_k, w_v, w_o 4 x 64 x 64                     = 16,384
  //            ln1, ln2           2 x (64 + 64)                    =    256
  //            ffn                64 x 256 + 256 + 256 x 64 + 64   = 33,088
  //            block total                                         = 49,728, times 2 = 99,456
  // out.weight, out.bias          64 x 20 + 20                     =  1,300
  //                                                          total = 102,036
  // The reference walk-through of the operation transformer quotes 102,016:
  // exactly 20 fewer, the output bias b_output [20]. Its formula
  // logits = final_repr @ W_output + b_output uses that bias, but its count
  // leaves it out (1,280 + 99,456 + 1,280 = 102,016). The attention
  // projections have no biases, as the walk-through draws them; the
  // positional encoding is fixed and adds nothing.
  CHECK(model.parameter_count() == 102036);
  CHECK(model.parameter_count() - 20 == 102016);
  CHECK(model.named_parameters().size() == 1 + 2 * 12 + 2);
  const std::string summary = model.summary();
  CHECK(summary.find("total (27 tensors)                  102,036\n") != std::string::npos);
  MESSAGE("the operation transformer:\n" << summary);
}

TEST_CASE("named_parameters: dotted names in a stable, depth-first order") {
  OperationTransformer model(1);
  const auto named = model.named_parameters();
  std::vector<std::string> names;
  for (const auto& [name, p] : named) names.push_back(name);
  // clang-format off
  const std::vector<std::string> expected = {
      "embed.weight",
      "blocks.0.attn.w_q", "blocks.0.attn.w_k", "blocks.0.attn.w_v", "blocks.0.attn.w_o",
      "blocks.0.ln1.gamma", "blocks.0.ln1.beta",
      "blocks.0.ffn.fc1.weight", "blocks.0.ffn.fc1.bias", "blocks.0.ffn.fc2.weight", "blocks.0.ffn.fc2.bias",
      "blocks.0.ln2.gamma", "blocks.0.ln2.beta",
      "blocks.1.attn.w_q", "blocks.1.attn.w_k", "blocks.1.attn.w_v", "blocks.1.attn.w_o",
      "blocks.1.ln1.gamma", "blocks.1.ln1.beta",
      "blocks.1.ffn.fc1.weight", "blocks.1.ffn.fc1.bias", "blocks.1.ffn.fc2.weight", "blocks.1.ffn.fc2.bias",
      "blocks.1.ln2.gamma", "blocks.1.ln2.beta",
      "out.weight", "out.bias"};
  // clang-format on
  CHECK(names == expected);
  CHECK(named[1].second.shape() == Shape{64, 64});

  SUBCASE("parameters() are the same tensors, in the same order") {
    const auto params = model.parameters();
    REQUIRE(params.size() == named.size());
    for (std::size_t i = 0; i < params.size(); ++i) CHECK(params[i].same_as(named[i].second));
  }

  SUBCASE("the same seed builds the same model; copies share parameters") {
    OperationTransformer again(1);
    CHECK((again.parameters()[5].data() == model.parameters()[5].data()).all());
    OperationTransformer copy = model;
    CHECK(copy.parameters()[0].same_as(model.parameters()[0]));
  }

  SUBCASE("bad names are refused") {
    nn::Module m;
    m.register_parameter("w", Tensor(Shape{2}));
    CHECK_THROWS_WITH_AS(m.register_parameter("w", Tensor(Shape{2})), doctest::Contains("'w' is already"),
                         tapegrad::value_error);
    CHECK_THROWS_WITH_AS(m.register_module("a.b", nn::Linear(2, 2)), doctest::Contains("contains a '.'"),
                         tapegrad::value_error);
  }

  SUBCASE("zero_grad reaches every parameter") {
    for (auto p : model.parameters()) p.grad_mut().setConstant(1.0f);
    model.zero_grad();
    for (const auto& p : model.parameters()) CHECK(p.grad().abs().sum() == 0.0f);
  }
}

TEST_CASE("summary(): one row per parameter, then the total") {
  nn::Sequential mlp;
  mlp.push_back(nn::Linear(4, 8, {.seed = 1}));
  mlp.push_back([](const Tensor& x) { return tapegrad::relu(x); });
  mlp.push_back(nn::LayerNorm(8));
  // Sequential names its steps by position; the activation takes position 1.
  const std::string expected =
      "name       shape   count\n"
      "------------------------\n"
      "0.weight   [4, 8]     32\n"
      "0.bias     [8]         8\n"
      "2.gamma    [8]         8\n"
      "2.beta     [8]         8\n"
      "------------------------\n"
      "total (4 tensors)     56\n";
  CHECK(mlp.summary() == expected);
  CHECK(mlp.size() == 3);

  SUBCASE("counts group their thousands") {
    nn::Linear big(64, 256);
    CHECK(big.summary().find("16,384") != std::string::npos);
    CHECK(big.summary().find("16,640") != std::string::npos);  // total with the bias
  }
}

TEST_CASE("train() and eval() switch dropout, down the whole tree") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  nn::Dropout drop(0.5, {.seed = 3});
  Tensor x(Shape{1000}, 1.0f);
  REQUIRE(drop.is_training());

  SUBCASE("training: about half the elements are 0, the rest 1 / (1 - p) = 2") {
    Tensor y = drop(x);
    int zeros = 0, twos = 0;
    for (index_t i = 0; i < 1000; ++i) {
      zeros += y.at({i}) == 0.0f;
      twos += y.at({i}) == 2.0f;
    }
    CHECK(zeros + twos == 1000);
    CHECK(zeros > 430);  // binomial(1000, 0.5): 500 +- 16 per standard deviation
    CHECK(zeros < 570);
  }

  SUBCASE("evaluation: the input passes unchanged") {
    drop.eval();
    CHECK_FALSE(drop.is_training());
    Tensor y = drop(x);
    CHECK((y.data() == 1.0f).all());
  }

  SUBCASE("eval() on a parent reaches the dropout inside a block") {
    nn::TransformerBlock block(8, 2, {.dropout = 0.5, .seed = 4});
    tapegrad::Generator gen(5);
    Tensor in = tapegrad::normal({2, 3, 8}, gen);
    block.eval();
    const Tensor a = block(in), b = block(in);
    CHECK((a.data() == b.data()).all());  // deterministic in evaluation mode
    block.train();
    const Tensor c = block(in), d = block(in);
    CHECK_FALSE((c.data() == d.data()).all());  // fresh masks each forward
    for (const auto& [name, child] : block.named_children()) CHECK(child->is_training());
  }
}
