// SPDX-License-Identifier: MIT
//
// Checkpoints: a round trip restores parameters and optimizer state bit for
// bit; a mismatched, truncated or corrupted file is refused with an io_error
// that says where, and the model and optimizer keep their values; saving is
// atomic; and training resumed from a checkpoint continues exactly as if it
// had never stopped.

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tapegrad/io.hpp"
#include "tapegrad/nn.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
#include "tapegrad/tensor/nn_functional.hpp"

using tapegrad::index_t;
using tapegrad::io_error;
using tapegrad::Shape;
using tapegrad::Tensor;
namespace fs = std::filesystem;
namespace nn = tapegrad::nn;
namespace optim = tapegrad::optim;
namespace io = tapegrad::io;

namespace {

// A scratch directory of the test's own, removed at the end.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("tapegrad-checkpoint-test-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::size_t entries() const { return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {})); }
};

std::vector<unsigned char> read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& file, const std::vector<unsigned char>& bytes) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A small transformer classifier: every kind of parameter a real model has.
struct Tiny : nn::Module {
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::TransformerBlock> block;
  std::shared_ptr<nn::Linear> head;

  explicit Tiny(std::uint64_t seed, index_t d = 8) {
    tapegrad::Generator gen(seed);
    embed = register_module("embed", nn::Embedding(5, d, {.generator = &gen}));
    block = register_module("block", nn::TransformerBlock(d, 2, {.d_ff = 16, .generator = &gen}));
    head = register_module("head", nn::Linear(d, 5, {.generator = &gen}));
  }

  Tensor loss(std::size_t step) {
    // A fixed batch per step, a function of the step only: [4, 3] ids, target = first id.
    std::vector<index_t> ids, targets;
    for (index_t b = 0; b < 4; ++b) {
      for (index_t t = 0; t < 3; ++t) ids.push_back(static_cast<index_t>((step * 7 + b * 3 + t * 2) % 5));
      targets.push_back(ids[static_cast<std::size_t>(b * 3)]);
    }
    Tensor x = block->forward(embed->forward(ids, {4, 3}));
    return tapegrad::cross_entropy(head->forward(tapegrad::mean(x, 1)), targets);
  }
};

// Copies of every parameter's values, to compare bit for bit.
std::vector<std::vector<float>> snapshot(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& p : m.parameters()) out.push_back(p.to_vector());
  return out;
}

template <class Opt>
void train(Tiny& model, Opt& opt, std::size_t from, std::size_t to) {
  for (std::size_t step = from; step < to; ++step) {
    Tensor loss = model.loss(step);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(opt.parameters(), 0.5);
    opt.step();
    tapegrad::Tape::active().clear();
  }
}

}  // namespace

TEST_CASE("the file layout, byte by byte, for Linear(2, 1)") {
  // docs/checkpoints.md walks through this file.
  ScratchDir dir;
  nn::Linear lin(2, 1, {.seed = 1});
  io::save_checkpoint(dir.file("lin.tgc"), lin);
  const auto b = read_bytes(dir.file("lin.tgc"));
  REQUIRE(b.size() == 92);  // header 24 + weight record 37 + bias record 23 + checksum 8
  auto u32 = [&](std::size_t at) {
    return std::uint32_t{b[at]} | std::uint32_t{b[at + 1]} << 8 | std::uint32_t{b[at + 2]} << 16 |
           std::uint32_t{b[at + 3]} << 24;
  };
  auto u64 = [&](std::size_t at) { return std::uint64_t{u32(at)} | std::uint64_t{u32(at + 4)} << 32; };
  const std::vector<unsigned char> magic = {0x89, 'T', 'G', 'C', 'K', 'P', 'T', '\n'};
  CHECK(std::vector<unsigned char>(b.begin(), b.begin() + 8) == magic);
  CHECK(u32(8) == 2);    // version
  CHECK(u32(12) == 2);   // records
  CHECK(u64(16) == 60);  // payload
  // the weight record
  CHECK(b[24] == 1);  // section: parameter
  CHECK(u32(25) == 6);
  CHECK(std::string(b.begin() + 29, b.begin() + 35) == "weight");
  CHECK(b[35] == 1);  // float32
  CHECK(b[36] == 2);  // rank 2
  CHECK(u64(37) == 2);
  CHECK(u64(45) == 1);
  float w10 = 0;
  std::memcpy(&w10, &b[57], 4);  // the second value, w[1, 0] (the host is little-endian here too)
  CHECK(w10 == lin.weight().at({1, 0}));
  // the bias record starts at 24 + 37 = 61
  CHECK(b[61] == 1);
  CHECK(u32(62) == 4);
  CHECK(std::string(b.begin() + 66, b.begin() + 70) == "bias");
  // the checksum: FNV-1a 64 of the first 84 bytes
  std::uint64_t h = 14695981039346656037ULL;
  for (std::size_t i = 0; i < 84; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  CHECK(u64(84) == h);
}

TEST_CASE("a round trip restores parameters and optimizer state exactly") {
  ScratchDir dir;
  Tiny model(1);
  optim::Adam opt(model.parameters(), {.lr = 0.01});
  train(model, opt, 0, 2);
  opt.set_lr(0.005);
  io::save_checkpoint(dir.file("tiny.tgc"), model, opt);

  Tiny fresh(99);  // other initial values
  optim::Adam fresh_opt(fresh.parameters(), {.lr = 0.01});
  REQUIRE(snapshot(fresh) != snapshot(model));
  io::load_checkpoint(dir.file("tiny.tgc"), fresh, fresh_opt);
  CHECK(snapshot(fresh) == snapshot(model));
  CHECK(fresh_opt.step_count() == 2);
  CHECK(fresh_opt.lr() == 0.005);
  const auto a = opt.state(), b = fresh_opt.state();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    for (index_t k = 0; k < a[i].shape.numel(); ++k) CHECK(a[i].data[k] == b[i].data[k]);

  SUBCASE("a model-only load ignores the optimizer section") {
    Tiny other(5);
    io::load_checkpoint(dir.file("tiny.tgc"), other);
    CHECK(snapshot(other) == snapshot(model));
  }

  SUBCASE("a file saved without an optimizer cannot restore one") {
    io::save_checkpoint(dir.file("model-only.tgc"), model);
    Tiny other(5);
    optim::Adam other_opt(other.parameters());
    const auto before = snapshot(other);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("model-only.tgc"), other, other_opt),
                         doctest::Contains("holds no optimizer state"), io_error);
    CHECK(snapshot(other) == before);
  }

  SUBCASE("the optimizer must be of the saved type") {
    Tiny other(5);
    optim::SGD sgd(other.parameters(), {.momentum = 0.9});
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("tiny.tgc"), other, sgd),
                         doctest::Contains("expected SGD state, the file holds Adam"), io_error);
  }

  SUBCASE("a double model round-trips in double") {
    nn::basic_linear<double> lin(3, 2, {.seed = 4}), back(3, 2, {.seed = 5});
    io::save_checkpoint(dir.file("double.tgc"), lin);
    io::load_checkpoint(dir.file("double.tgc"), back);
    CHECK((back.weight().data() == lin.weight().data()).all());
    nn::Linear as_float(3, 2);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("double.tgc"), as_float),
                         doctest::Contains("expected float32, the file stores float64"), io_error);
  }
}

TEST_CASE("loading into a different model names the first mismatch and changes nothing") {
  ScratchDir dir;
  nn::Sequential saved;
  saved.push_back(nn::Linear(4, 8, {.seed = 1}));
  saved.push_back(nn::Linear(8, 2, {.seed = 2}));
  io::save_checkpoint(dir.file("mlp.tgc"), saved);

  SUBCASE("a different shape: name, expected shape, file shape") {
    nn::Sequential wider;
    wider.push_back(nn::Linear(4, 9, {.seed = 3}));
    wider.push_back(nn::Linear(9, 2, {.seed = 4}));
    const auto before = snapshot(wider);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("mlp.tgc"), wider),
                         doctest::Contains("parameter '0.weight': expected shape [4, 9], file shape [4, 8]"), io_error);
    CHECK(snapshot(wider) == before);
  }

  SUBCASE("a different name") {
    struct Renamed : nn::Module {
      Renamed() {
        register_module("first", nn::Linear(4, 8));
        register_module("1", nn::Linear(8, 2));
      }
    } renamed;
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("mlp.tgc"), renamed),
                         doctest::Contains("expected 'first.weight' [4, 8], the file has '0.weight' [4, 8]"), io_error);
  }

  SUBCASE("a missing and an extra parameter") {
    nn::Sequential shorter;
    shorter.push_back(nn::Linear(4, 8, {.seed = 1}));
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("mlp.tgc"), shorter),
                         doctest::Contains("the file has parameter '1.weight' [8, 2] that the model lacks"), io_error);
    nn::Sequential longer = saved;  // shares the saved layers
    longer.push_back(nn::Linear(2, 2));
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("mlp.tgc"), longer),
                         doctest::Contains("parameter '2.weight' [2, 2] is missing from the file"), io_error);
  }

  SUBCASE("a file that is not there") {
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("nowhere.tgc"), saved), doctest::Contains("cannot open"),
                         io_error);
  }
}

TEST_CASE("a truncated or corrupted file is refused, naming the offset, and the model is untouched") {
  ScratchDir dir;
  nn::Linear lin(3, 2, {.seed = 1});
  optim::Adam opt(lin.parameters());
  for (auto p : lin.parameters()) p.grad_mut().setConstant(0.5f);
  opt.step();
  io::save_checkpoint(dir.file("lin.tgc"), lin, opt);
  const auto good = read_bytes(dir.file("lin.tgc"));
  // header 24 + 2 parameter records + type, step, lr + 4 state records + checksum 8
  REQUIRE(good.size() > 100);

  nn::Linear target(3, 2, {.seed = 2});
  optim::Adam target_opt(target.parameters());
  const auto before = snapshot(target);
  auto untouched = [&] {
    CHECK(snapshot(target) == before);
    CHECK(target_opt.step_count() == 0);
    for (const auto& b : target_opt.state()) CHECK(b.data[0] == 0.0f);
  };

  SUBCASE("cut at every length: 'truncated' with the offset where it ends") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      CAPTURE(n);
      write_bytes(dir.file("cut.tgc"), {good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)});
      CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("cut.tgc"), target, target_opt), doctest::Contains("truncated"),
                           io_error);
    }
    untouched();
    write_bytes(dir.file("cut.tgc"), {good.begin(), good.begin() + 50});
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("cut.tgc"), target), doctest::Contains("(at file offset 50)"),
                         io_error);
  }

  SUBCASE("one flipped bit anywhere is caught") {
    for (std::size_t i = 0; i < good.size(); ++i) {
      CAPTURE(i);
      auto bad = good;
      bad[i] ^= 0x10;
      write_bytes(dir.file("flipped.tgc"), bad);
      CHECK_THROWS_AS(io::load_checkpoint(dir.file("flipped.tgc"), target, target_opt), io_error);
    }
    untouched();
  }

  SUBCASE("a flipped byte in a value: checksum mismatch, at the checksum's offset") {
    auto bad = good;
    bad[40] ^= 0xff;  // inside the first record
    write_bytes(dir.file("flipped.tgc"), bad);
    const std::string at = "(at file offset " + std::to_string(good.size() - 8) + ")";
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("flipped.tgc"), target), doctest::Contains("checksum mismatch"),
                         io_error);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("flipped.tgc"), target), doctest::Contains(at.c_str()), io_error);
    untouched();
  }

  SUBCASE("the header: magic and version") {
    auto bad = good;
    bad[1] = 'X';
    write_bytes(dir.file("magic.tgc"), bad);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("magic.tgc"), target),
                         doctest::Contains("not a tapegrad checkpoint"), io_error);
    bad = good;
    bad[8] = 7;  // version 7
    write_bytes(dir.file("version.tgc"), bad);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("version.tgc"), target),
                         doctest::Contains("format version 7 is not supported (this build reads versions 1 to 2)"),
                         io_error);
    untouched();
  }

  SUBCASE("bytes appended after the checksum") {
    auto bad = good;
    bad.push_back(0);
    write_bytes(dir.file("long.tgc"), bad);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("long.tgc"), target), doctest::Contains("unexpected bytes"),
                         io_error);
  }
}

TEST_CASE("saving is atomic: a temporary file, then a rename") {
  ScratchDir dir;
  nn::Linear first(3, 2, {.seed = 1}), second(3, 2, {.seed = 2});
  io::save_checkpoint(dir.file("model.tgc"), first);
  CHECK(dir.entries() == 1);  // no temporary file left behind

  SUBCASE("a save that fails half way leaves the previous checkpoint whole") {
    // The test hook makes the next write stop after 30 bytes, as a full disk would.
    tapegrad::detail::checkpoint_write_limit() = 30;
    CHECK_THROWS_WITH_AS(io::save_checkpoint(dir.file("model.tgc"), second),
                         doctest::Contains("the previous file (if any) is unchanged"), io_error);
    CHECK(dir.entries() == 1);  // the partial temporary file was removed
    nn::Linear check(3, 2, {.seed = 3});
    io::load_checkpoint(dir.file("model.tgc"), check);
    CHECK((check.weight().data() == first.weight().data()).all());
  }

  SUBCASE("a successful save replaces the file whole") {
    io::save_checkpoint(dir.file("model.tgc"), second);
    nn::Linear check(3, 2, {.seed = 3});
    io::load_checkpoint(dir.file("model.tgc"), check);
    CHECK((check.weight().data() == second.weight().data()).all());
    CHECK(dir.entries() == 1);
  }

  SUBCASE("a directory that does not exist") {
    CHECK_THROWS_WITH_AS(io::save_checkpoint(dir.file("missing/model.tgc"), first),
                         doctest::Contains("cannot create temporary file"), io_error);
  }
}

TEST_CASE("resuming from a checkpoint continues exactly as if training had not stopped") {
  // 6 steps straight, against 3 steps, save, load into a fresh model and
  // optimizer, 3 more steps. Every parameter must agree bit for bit.
  ScratchDir dir;
  auto check_resume = [&](auto make_optimizer) {
    Tiny straight(11);
    auto opt = make_optimizer(straight);
    train(straight, opt, 0, 6);

    Tiny first_half(11);
    auto opt1 = make_optimizer(first_half);
    train(first_half, opt1, 0, 3);
    io::save_checkpoint(dir.file("half.tgc"), first_half, opt1);

    Tiny resumed(12);  // a fresh model with other initial values
    auto opt2 = make_optimizer(resumed);
    io::load_checkpoint(dir.file("half.tgc"), resumed, opt2);
    train(resumed, opt2, 3, 6);

    CHECK(snapshot(resumed) == snapshot(straight));
    CHECK(snapshot(resumed) != snapshot(first_half));  // the last 3 steps did move it
    CHECK(opt2.step_count() == 6);
  };
  SUBCASE("Adam") {
    check_resume([](Tiny& m) { return optim::Adam(m.parameters(), {.lr = 0.01}); });
  }
  SUBCASE("AdamW") {
    check_resume([](Tiny& m) { return optim::AdamW(m.parameters(), {.lr = 0.01, .weight_decay = 0.1}); });
  }
  SUBCASE("SGD with Nesterov momentum") {
    check_resume([](Tiny& m) { return optim::SGD(m.parameters(), {.lr = 0.1, .momentum = 0.9, .nesterov = true}); });
  }
}

namespace {

// Two parameters, "weight" [1, 1] and "bias" [1], in double; `grads` gives
// each step's gradients (a negative entry: no gradient for that parameter).
using DLinear = nn::basic_linear<double>;
using DAdam = optim::basic_adam<double>;

void adam_steps(DLinear& lin, DAdam& opt, const std::vector<std::array<double, 2>>& grads) {
  for (const auto& g : grads) {
    opt.zero_grad();
    auto params = lin.parameters();
    for (std::size_t i = 0; i < 2; ++i)
      if (g[i] >= 0) params[i].grad_mut()[0] = g[i];
    opt.step();
  }
}

}  // namespace

TEST_CASE("each parameter's step count is saved (format version 2)") {
  // Steps 1 and 2 reach only the weight, step 3 both: counts {3, 1}.
  ScratchDir dir;
  DLinear lin(1, 1, {.seed = 1});
  DAdam opt(lin.parameters(), {.lr = 0.1});
  adam_steps(lin, opt, {{0.5, -1}, {0.25, -1}, {1.0, 2.0}});
  REQUIRE(opt.param_step_counts() == std::vector<std::uint64_t>{3, 1});
  io::save_checkpoint(dir.file("lin.tgc"), lin, opt);
  const auto bytes = read_bytes(dir.file("lin.tgc"));
  CHECK(bytes[8] == 2);
  CHECK(std::string(bytes.begin(), bytes.end()).find("param_steps") != std::string::npos);

  DLinear back(1, 1, {.seed = 2});
  DAdam back_opt(back.parameters(), {.lr = 0.1});
  io::load_checkpoint(dir.file("lin.tgc"), back, back_opt);
  CHECK(back_opt.param_step_counts() == std::vector<std::uint64_t>{3, 1});
  CHECK(back_opt.step_count() == 3);

  SUBCASE("the next step agrees bit for bit with training that never stopped") {
    adam_steps(lin, opt, {{0.5, 0.5}});
    adam_steps(back, back_opt, {{0.5, 0.5}});
    CHECK(back.weight().item() == lin.weight().item());
    CHECK(back.bias().item() == lin.bias().item());
  }

  SUBCASE("an optimizer over other parameters is refused") {
    DLinear same(1, 1, {.seed = 3});
    DAdam only_weight({same.weight()});
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("lin.tgc"), same, only_weight),
                         doctest::Contains("step counts for 2 parameters, the optimizer has 1"), io_error);
    CHECK(only_weight.param_step_counts() == std::vector<std::uint64_t>{0});
  }
}

TEST_CASE("a version 1 checkpoint (one step count per optimizer) still loads") {
  // Version 1 stored only the optimizer's count. On loading, a parameter with
  // state (a moment not all zero) gets that count, a parameter without, 0.
  ScratchDir dir;
  DLinear lin(1, 1, {.seed = 1});
  DAdam opt(lin.parameters(), {.lr = 0.1});
  adam_steps(lin, opt, {{0.5, -1}, {0.25, -1}, {1.0, -1}});  // the bias never gets a gradient
  const double bias0 = lin.bias().item();
  write_bytes(dir.file("v1.tgc"), tapegrad::detail::ckpt_encode<double>(lin, &opt, 1));
  REQUIRE(read_bytes(dir.file("v1.tgc"))[8] == 1);

  DLinear back(1, 1, {.seed = 2});
  DAdam back_opt(back.parameters(), {.lr = 0.1});
  io::load_checkpoint(dir.file("v1.tgc"), back, back_opt);
  CHECK(back_opt.step_count() == 3);
  CHECK(back_opt.param_step_counts() == std::vector<std::uint64_t>{3, 0});

  SUBCASE("the weight continues with t = 4, the bias starts at t = 1") {
    // bias: its first update, g = 2: m_hat = g, v_hat = g^2, so it moves by
    // lr * 2 / (2 + 1e-8) = 0.1 (with t = 4 it would move by 0.0581).
    adam_steps(lin, opt, {{0.5, 2.0}});
    adam_steps(back, back_opt, {{0.5, 2.0}});
    CHECK(back.weight().item() == lin.weight().item());
    CHECK(back.bias().item() == doctest::Approx(bias0 - 0.1).epsilon(1e-8));
    CHECK(back.bias().item() == lin.bias().item());
  }

  SUBCASE("a parameter with state gets the file's count") {
    DLinear both(1, 1, {.seed = 1});
    DAdam both_opt(both.parameters(), {.lr = 0.1});
    adam_steps(both, both_opt, {{0.5, -1}, {0.25, 1.0}});  // counts {2, 1}; version 1 keeps only 2
    write_bytes(dir.file("v1-both.tgc"), tapegrad::detail::ckpt_encode<double>(both, &both_opt, 1));
    io::load_checkpoint(dir.file("v1-both.tgc"), back, back_opt);
    CHECK(back_opt.param_step_counts() == std::vector<std::uint64_t>{2, 2});
  }

  SUBCASE("a future version is refused, naming both") {
    auto bytes = read_bytes(dir.file("v1.tgc"));
    bytes[8] = 3;
    write_bytes(dir.file("v3.tgc"), bytes);
    CHECK_THROWS_WITH_AS(io::load_checkpoint(dir.file("v3.tgc"), back, back_opt),
                         doctest::Contains("format version 3 is not supported (this build reads versions 1 to 2)"),
                         io_error);
  }
}
