// SPDX-License-Identifier: MIT
//
// The transformer example, tested through the same headers the program uses:
// first its data (the vocabulary, the tokenizer, the parser, the split), then
// a short training run that must learn.

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include "testing.hpp"

#include <tapegrad/optim.hpp>

#include "../../examples/transformer/data.hpp"
#include "../../examples/transformer/model.hpp"

namespace tx = tapegrad_examples::transformer;
using tx::Operation;

TEST_CASE("the vocabulary: Max(1,6,2) becomes [15, 17, 3, 19, 8, 19, 4, 18]") {
  // The operation transformer encodes its input this way: digits sit two
  // places up (1 -> 3, 6 -> 8, 2 -> 4), the brackets are 17 and 18, the comma
  // 19 and Max 15.
  const tx::Example e = tx::make_example(Operation::Max, 1, 6, 2);
  const std::array<int, 8> expected = {15, 17, 3, 19, 8, 19, 4, 18};
  CHECK(e.tokens == expected);
  CHECK(e.text() == "Max(1,6,2)");

  SUBCASE("the target is the token of the answer digit: max(1, 6, 2) = 6 -> id 8") { CHECK(e.target == 8); }
  SUBCASE("every id has a printed form, and the table has 20 entries") {
    CHECK(tx::vocab_size == 20);
    CHECK(tx::token_text(0) == "<PAD>");
    CHECK(tx::token_text(2) == "0");
    CHECK(tx::token_text(11) == "9");
    CHECK(tx::token_text(12) == "First");
    CHECK(tx::token_text(14) == "Median");
    CHECK(tx::token_text(16) == "Min");
    CHECK(tx::token_text(19) == ",");
    for (Operation op : tx::all_operations) CHECK(tx::token_text(tx::token_of(op)) == tx::name(op));
  }
}

TEST_CASE("the five operations on (1, 6, 2) and on ties") {
  CHECK(tx::answer(Operation::Max, 1, 6, 2) == 6);
  CHECK(tx::answer(Operation::Min, 1, 6, 2) == 1);
  CHECK(tx::answer(Operation::First, 1, 6, 2) == 1);
  CHECK(tx::answer(Operation::Last, 1, 6, 2) == 2);
  CHECK(tx::answer(Operation::Median, 1, 6, 2) == 2);  // sorted: 1 2 6
  // The median of every ordering of (3, 7, 5) is 5, and ties keep the tied value.
  for (auto [a, b, c] :
       std::vector<std::array<int, 3>>{{3, 7, 5}, {3, 5, 7}, {5, 3, 7}, {5, 7, 3}, {7, 3, 5}, {7, 5, 3}})
    CHECK(tx::answer(Operation::Median, a, b, c) == 5);
  CHECK(tx::answer(Operation::Median, 4, 4, 9) == 4);
  CHECK(tx::answer(Operation::Median, 9, 0, 9) == 9);
}

TEST_CASE("parse() reads what a user types and explains what it cannot") {
  SUBCASE("the canonical form, spaces and any letter case") {
    CHECK(tx::parse("Max(1,6,2)").tokens == tx::make_example(Operation::Max, 1, 6, 2).tokens);
    CHECK(tx::parse("  median( 3, 9 ,4 ) ").text() == "Median(3,9,4)");
    CHECK(tx::parse("LAST(0,0,7)").target == tx::token_of_digit(7));
  }
  SUBCASE("malformed input raises parse_error saying what went wrong") {
    CHECK_THROWS_WITH_AS(tx::parse("Mux(1,6,2)"), doctest::Contains("unknown operation \"Mux\""), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("(1,6,2)"), doctest::Contains("no operation name"), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(1,6)"), doctest::Contains("where ',' belongs"), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(1,16,2)"), doctest::Contains("more than one digit"), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(1,6,2"), doctest::Contains("missing ')'"), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(1,6,2)x"), doctest::Contains("after ')'"), tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(a,6,2)"), doctest::Contains("where a digit belongs"), tx::parse_error);
    CHECK_THROWS_AS(tx::parse(""), tx::parse_error);
  }
  SUBCASE("the position counts characters of the input as typed, spaces included") {
    // M a x ( _ 1 , _ 1 6: the '1' of "16" is the 9th character
    CHECK_THROWS_WITH_AS(tx::parse("Max( 1, 16,2)"), doctest::Contains("more than one digit at character 9"),
                         tx::parse_error);
    CHECK_THROWS_WITH_AS(tx::parse("Max(1,6)"), doctest::Contains("found ')' where ',' belongs at character 8"),
                         tx::parse_error);
  }
}

TEST_CASE("the dataset: 5,000 distinct inputs split with no overlap") {
  const auto all = tx::all_examples();
  std::set<std::string> distinct;
  for (const auto& e : all) distinct.insert(e.text());
  CHECK(all.size() == 5000);  // 5 operations x 10^3 digit triples
  CHECK(distinct.size() == 5000);

  const tx::Split split = tx::split_dataset(7);
  CHECK(split.train.size() == 4000);
  CHECK(split.validation.size() == 500);
  CHECK(split.held_out.size() == 500);

  SUBCASE("every input lands in exactly one part") {
    std::set<std::string> train, validation, held_out;
    for (const auto& e : split.train) train.insert(e.text());
    for (const auto& e : split.validation) validation.insert(e.text());
    for (const auto& e : split.held_out) held_out.insert(e.text());
    CHECK(train.size() + validation.size() + held_out.size() == 5000);
    int shared = 0;  // inputs found in two parts
    for (const auto& s : held_out) shared += static_cast<int>(train.count(s) + validation.count(s));
    for (const auto& s : validation) shared += static_cast<int>(train.count(s));
    CHECK(shared == 0);
  }
  SUBCASE("the same seed gives the same split, another seed a different one") {
    const tx::Split again = tx::split_dataset(7), other = tx::split_dataset(8);
    CHECK(again.held_out.front().text() == split.held_out.front().text());
    CHECK(again.held_out.back().text() == split.held_out.back().text());
    int same = 0;
    for (std::size_t i = 0; i < 500; ++i) same += other.held_out[i].text() == split.held_out[i].text();
    CHECK(same < 10);
  }
  SUBCASE("each operation is about a fifth of the held-out set") {
    for (Operation op : tx::all_operations) {
      const auto n =
          std::count_if(split.held_out.begin(), split.held_out.end(), [op](const auto& e) { return e.op == op; });
      CHECK(n > 60);  // 100 expected
      CHECK(n < 140);
    }
  }
}

TEST_CASE("a small version of the model learns Max and Min in 400 steps") {
  // The example's model at a quarter of the width, with one block, on the two
  // operations that compare digits: 2,000 inputs, of which 1,600 train it and
  // 400 are held out. Plain mini-batch Adam, the batches taken in order.
  std::vector<tx::Example> data;
  for (const auto& e : tx::all_examples())
    if (e.op == Operation::Max || e.op == Operation::Min) data.push_back(e);
  std::mt19937 gen(3);
  for (std::size_t i = data.size() - 1; i > 0; --i)
    std::swap(data[i], data[tx::uniform_below(gen, static_cast<std::uint32_t>(i + 1))]);
  const std::vector<tx::Example> train(data.begin(), data.begin() + 1600), held_out(data.begin() + 1600, data.end());

  tx::OperationTransformer model({.d_model = 16, .heads = 2, .blocks = 1, .d_ff = 32, .seed = 1});
  REQUIRE(model.parameter_count() == 20 * 16                                // embeddings
                                         + 4 * 16 * 16                      // W_q, W_k, W_v, W_o
                                         + (16 * 32 + 32) + (32 * 16 + 16)  // feed-forward
                                         + 2 * (16 + 16)                    // two layer norms
                                         + 16 * 20 + 20);                   // output projection: 2,820 in all
  tapegrad::optim::Adam opt(model.parameters(), {.lr = 1e-2});
  const tx::Score before = tx::evaluate(model, held_out);

  double first_loss = 0, last_loss = 0;
  for (std::size_t step = 0; step < 400; ++step) {
    const std::size_t begin = (step * 32) % train.size();  // 50 batches make an epoch: 8 epochs
    const tx::Batch b = tx::make_batch(train, {}, begin, begin + 32);
    const tapegrad::Tensor loss = tapegrad::cross_entropy(model.forward(b.ids, b.size()), b.targets);
    opt.zero_grad();
    loss.backward();
    opt.step();
    (step == 0 ? first_loss : last_loss) = loss.item();
    tapegrad::Tape::active().clear();
  }
  const tx::Score after = tx::evaluate(model, held_out);
  INFO("held-out accuracy ", before.accuracy(), " -> ", after.accuracy(), ", batch loss ", first_loss, " -> ",
       last_loss);

  CHECK(before.accuracy() < 0.3);  // about 0.1 by chance
  CHECK(first_loss > 2.0);         // about log(20) = 3.0 at the start
  CHECK(last_loss < 0.3);
  CHECK(after.total == 400);
  CHECK(after.accuracy() >= 0.95);  // at most 20 of the 400 held-out inputs wrong (measured: 398 right)
}
