// SPDX-License-Identifier: MIT
#pragma once

// The task of the transformer example: read an expression such as
// `Max(1,6,2)` and answer with a digit. This file holds the vocabulary, the
// tokenizer, the parser for user input and the 5,000-example dataset with its
// training / validation / held-out split. It needs no tensors.

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tapegrad_examples::transformer {

/// Number of token ids; the model's embedding table and output have this many rows.
inline constexpr int vocab_size = 20;
/// Every expression is exactly this many tokens: op ( a , b , c ).
inline constexpr int seq_len = 8;

/// The token ids. Digits d sit at 2 + d, so `Max(1,6,2)` reads
/// [15, 17, 3, 19, 8, 19, 4, 18].
///
///   id  token      id  token      id  token
///    0  <PAD>       8  6          16  Min
///    1  <UNK>       9  7          17  (
///    2  0          10  8          18  )
///    3  1          11  9          19  ,
///    4  2          12  First
///    5  3          13  Last
///    6  4          14  Median
///    7  5          15  Max
///
/// <PAD> and <UNK> are reserved: every expression of the task has the same
/// length and only known tokens, so neither appears in the data.
namespace token {
inline constexpr int pad = 0;
inline constexpr int unk = 1;
inline constexpr int digit0 = 2;
inline constexpr int first_op = 12;
inline constexpr int lparen = 17;
inline constexpr int rparen = 18;
inline constexpr int comma = 19;
}  // namespace token

/// The five operations, in the order of their token ids (12 to 16).
enum class Operation : std::uint8_t { First, Last, Median, Max, Min };

/// All operations, for loops.
inline constexpr std::array<Operation, 5> all_operations = {Operation::First, Operation::Last, Operation::Median,
                                                            Operation::Max, Operation::Min};

/// The operation's name as written in an expression: "Max".
inline const char* name(Operation op) {
  static const char* names[] = {"First", "Last", "Median", "Max", "Min"};
  return names[static_cast<int>(op)];
}

/// The token id of an operation (12 to 16).
inline int token_of(Operation op) { return token::first_op + static_cast<int>(op); }

/// The token id of a digit 0-9 (2 to 11).
inline int token_of_digit(int d) { return token::digit0 + d; }

/// The digit a token id stands for, or -1 if it is not a digit.
inline int digit_of(int id) { return id >= token::digit0 && id < token::digit0 + 10 ? id - token::digit0 : -1; }

/// How a token id is written: "Max", "(", "6", "<PAD>".
inline std::string token_text(int id) {
  static const char* texts[vocab_size] = {"<PAD>", "<UNK>", "0",     "1",    "2",      "3",   "4",   "5", "6", "7",
                                          "8",     "9",     "First", "Last", "Median", "Max", "Min", "(", ")", ","};
  return id >= 0 && id < vocab_size ? texts[id] : "<?>";
}

/// The answer of `op` on three digits.
inline int answer(Operation op, int a, int b, int c) {
  switch (op) {
    case Operation::First:
      return a;
    case Operation::Last:
      return c;
    case Operation::Max:
      return std::max({a, b, c});
    case Operation::Min:
      return std::min({a, b, c});
    case Operation::Median:
      return std::max(std::min(a, b), std::min(std::max(a, b), c));
  }
  return -1;
}

/// One expression of the task: its operation and digits, its tokens and the
/// token id of the answer digit (what the model must predict).
struct Example {
  Operation op = Operation::First;
  std::array<int, 3> digits{};
  std::array<int, seq_len> tokens{};
  int target = 0;

  /// The expression as text: "Max(1,6,2)".
  std::string text() const {
    std::string s = name(op);
    s += '(';
    for (int i = 0; i < 3; ++i) s += (i ? "," : "") + std::to_string(digits[static_cast<std::size_t>(i)]);
    return s + ")";
  }
};

/// The example for `op` on digits a, b, c.
inline Example make_example(Operation op, int a, int b, int c) {
  Example e;
  e.op = op;
  e.digits = {a, b, c};
  e.tokens = {token_of(op),      token::lparen, token_of_digit(a), token::comma,
              token_of_digit(b), token::comma,  token_of_digit(c), token::rparen};
  e.target = token_of_digit(answer(op, a, b, c));
  return e;
}

/// Raised by `parse` for an expression outside the task's grammar.
class parse_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Reads an expression such as "Max(1,6,2)" or "median( 3, 9, 4 )": an
/// operation name (any letter case), '(', three single digits separated by
/// commas, ')'. Spaces are ignored. Anything else raises `parse_error`
/// saying what was expected where.
inline Example parse(std::string_view input) {
  std::string s;                   // the input without spaces
  std::vector<std::size_t> where;  // where each of its characters stood in the input
  for (std::size_t k = 0; k < input.size(); ++k)
    if (!std::isspace(static_cast<unsigned char>(input[k]))) {
      s += input[k];
      where.push_back(k);
    }
  auto fail = [&](const std::string& what, std::size_t at) -> parse_error {
    const std::size_t column = at < where.size() ? where[at] + 1 : input.size() + 1;
    return parse_error("cannot read \"" + std::string(input) + "\": " + what + " at character " +
                       std::to_string(column) + "; expected an operation (Max, Min, First, Last or Median) " +
                       "and three digits 0-9, as in Max(1,6,2)");
  };
  std::size_t i = 0;
  while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
  std::string word = s.substr(0, i);
  for (char& c : word) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const Operation* found = nullptr;
  for (const Operation& op : all_operations) {
    std::string n = name(op);
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == word) found = &op;
  }
  if (!found) throw fail(word.empty() ? "no operation name" : "unknown operation \"" + s.substr(0, i) + "\"", 0);
  auto expect = [&](char c) {
    if (i >= s.size()) throw fail(std::string("missing '") + c + "'", i);
    if (s[i] != c) throw fail(std::string("found '") + s[i] + "' where '" + c + "' belongs", i);
    ++i;
  };
  auto digit = [&]() {
    if (i >= s.size()) throw fail("missing a digit", i);
    if (!std::isdigit(static_cast<unsigned char>(s[i])))
      throw fail(std::string("found '") + s[i] + "' where a digit belongs", i);
    if (i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))
      throw fail("a number with more than one digit", i);
    return s[i++] - '0';
  };
  expect('(');
  const int a = digit();
  expect(',');
  const int b = digit();
  expect(',');
  const int c = digit();
  expect(')');
  if (i != s.size()) throw fail("unexpected text after ')'", i);
  return make_example(*found, a, b, c);
}

/// Every input of the task, 5 operations x 1,000 digit triples, in a fixed
/// order (operation, then a, b, c).
inline std::vector<Example> all_examples() {
  std::vector<Example> out;
  out.reserve(5000);
  for (Operation op : all_operations)
    for (int a = 0; a < 10; ++a)
      for (int b = 0; b < 10; ++b)
        for (int c = 0; c < 10; ++c) out.push_back(make_example(op, a, b, c));
  return out;
}

/// The three disjoint parts of the dataset.
struct Split {
  std::vector<Example> train;       ///< what the optimizer sees
  std::vector<Example> validation;  ///< for choices made during training (early stopping)
  std::vector<Example> held_out;    ///< looked at once, at the end: the reported accuracy
};

/// A uniform integer in [0, n) from a 32-bit Mersenne Twister, by rejection,
/// so the same seed gives the same split with every standard library.
inline std::uint32_t uniform_below(std::mt19937& gen, std::uint32_t n) {
  const std::uint32_t limit = static_cast<std::uint32_t>((0x1'0000'0000ull / n) * n - 1);
  std::uint32_t x;
  do x = static_cast<std::uint32_t>(gen());
  while (x > limit);
  return x % n;
}

/// Shuffles the 5,000 inputs with `seed` (Fisher-Yates) and cuts them into
/// training, validation and held-out parts: 4,000 / 500 / 500 by default.
/// Each input lands in exactly one part.
inline Split split_dataset(std::uint32_t seed, int validation_size = 500, int held_out_size = 500) {
  std::vector<Example> all = all_examples();
  const int n = static_cast<int>(all.size());
  if (validation_size < 0 || held_out_size < 0 || validation_size + held_out_size >= n)
    throw std::invalid_argument("split_dataset: validation " + std::to_string(validation_size) + " + held-out " +
                                std::to_string(held_out_size) + " leave no training examples out of " +
                                std::to_string(n));
  std::mt19937 gen(seed);
  for (int i = n - 1; i > 0; --i)
    std::swap(all[static_cast<std::size_t>(i)], all[uniform_below(gen, static_cast<std::uint32_t>(i + 1))]);
  Split split;
  const auto v = all.begin() + (n - validation_size - held_out_size), h = all.end() - held_out_size;
  split.train.assign(all.begin(), v);
  split.validation.assign(v, h);
  split.held_out.assign(h, all.end());
  return split;
}

}  // namespace tapegrad_examples::transformer
