// SPDX-License-Identifier: MIT
#pragma once

// Random scalar expression programs over every scalar `Value` op, their
// gradient check against central differences, shrinking of a failing program
// and printing it as C++.
//
// A program is a list of nodes; each node applies one op to earlier inputs or
// nodes, so a node used twice is a shared subexpression. Inputs and ops are
// chosen so that, at the program's inputs, every op's argument is inside its
// domain and away from its kinks by a margin far wider than the finite
// difference step.

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "choices.hpp"
#include "tapegrad/autodiff/gradcheck.hpp"
#include "tapegrad/scalar.hpp"

namespace tapegrad::fuzz {

/// One scalar op the generator may use.
struct ScalarOp {
  using Apply = std::function<Value(const Value& a, const Value& b, double c)>;
  using Valid = std::function<bool(double a, double b, double c)>;
  ScalarOp(std::string name_, int arity_, Apply apply_, Valid valid_, std::string code_,
           std::vector<double> constants_ = {}, bool barrier_ = false)
      : name(std::move(name_)),
        arity(arity_),
        apply(std::move(apply_)),
        valid(std::move(valid_)),
        code(std::move(code_)),
        constants(std::move(constants_)),
        barrier(barrier_) {}

  std::string name;
  int arity = 1;
  /// The op on Values; c is the node's constant (an exponent, a bound).
  Apply apply;
  /// True when arguments a, b (values at the program's inputs) are inside the
  /// op's domain and away from its kinks.
  Valid valid;
  /// C++ text with %0, %1 for the arguments and %c for the constant.
  std::string code;
  /// The constants the op picks from (empty: no constant).
  std::vector<double> constants;
  /// A stop_gradient barrier: checked against a function that holds its value constant.
  bool barrier = false;
};

/// Every scalar op of tapegrad, with its domain.
inline std::vector<ScalarOp> scalar_ops() {
  const double kink = 0.05;  // distance kept from a kink (relu, abs, max, min)
  auto any = [](double, double, double) { return true; };
  auto positive = [](double a, double, double) { return a > 0.1; };
  std::vector<ScalarOp> ops = {
      {"add", 2, [](const Value& a, const Value& b, double) { return a + b; }, any, "%0 + %1"},
      {"sub", 2, [](const Value& a, const Value& b, double) { return a - b; }, any, "%0 - %1"},
      {"mul", 2, [](const Value& a, const Value& b, double) { return a * b; }, any, "%0 * %1"},
      {"div", 2, [](const Value& a, const Value& b, double) { return a / b; },
       [](double, double b, double) { return std::abs(b) > 0.2; }, "%0 / %1"},
      {"neg", 1, [](const Value& a, const Value&, double) { return -a; }, any, "-%0"},
      {"pow_const",
       1,
       [](const Value& a, const Value&, double c) { return pow(a, c); },
       [](double a, double, double) { return a > 0.1 && a < 20; },
       "pow(%0, %c)",
       {2.0, 3.0, 0.5, 1.5, -1.0}},
      {"pow", 2, [](const Value& a, const Value& b, double) { return pow(a, b); },
       [](double a, double b, double) { return a > 0.1 && a < 20 && std::abs(b) < 3; }, "pow(%0, %1)"},
      {"exp", 1, [](const Value& a, const Value&, double) { return exp(a); },
       [](double a, double, double) { return a < 5; }, "exp(%0)"},
      {"log", 1, [](const Value& a, const Value&, double) { return log(a); }, positive, "log(%0)"},
      {"sqrt", 1, [](const Value& a, const Value&, double) { return sqrt(a); }, positive, "sqrt(%0)"},
      {"sin", 1, [](const Value& a, const Value&, double) { return sin(a); }, any, "sin(%0)"},
      {"cos", 1, [](const Value& a, const Value&, double) { return cos(a); }, any, "cos(%0)"},
      {"tan", 1, [](const Value& a, const Value&, double) { return tan(a); },
       [](double a, double, double) { return std::abs(std::cos(a)) > 0.3; }, "tan(%0)"},
      {"tanh", 1, [](const Value& a, const Value&, double) { return tanh(a); }, any, "tanh(%0)"},
      {"sigmoid", 1, [](const Value& a, const Value&, double) { return sigmoid(a); }, any, "sigmoid(%0)"},
      {"relu", 1, [](const Value& a, const Value&, double) { return relu(a); },
       [kink](double a, double, double) { return std::abs(a) > kink; }, "relu(%0)"},
      {"abs", 1, [](const Value& a, const Value&, double) { return abs(a); },
       [kink](double a, double, double) { return std::abs(a) > kink; }, "abs(%0)"},
      {"max", 2, [](const Value& a, const Value& b, double) { return max(a, b); },
       [kink](double a, double b, double) { return std::abs(a - b) > kink; }, "max(%0, %1)"},
      {"min", 2, [](const Value& a, const Value& b, double) { return min(a, b); },
       [kink](double a, double b, double) { return std::abs(a - b) > kink; }, "min(%0, %1)"},
      {"max_const",
       1,
       [](const Value& a, const Value&, double c) { return max(a, c); },
       [kink](double a, double, double c) { return std::abs(a - c) > kink; },
       "max(%0, %c)",
       {0.0, 0.5, -0.5}},
      {"min_const",
       1,
       [](const Value& a, const Value&, double c) { return min(a, c); },
       [kink](double a, double, double c) { return std::abs(a - c) > kink; },
       "min(%0, %c)",
       {0.0, 0.5, -0.5}},
      {"log1p", 1, [](const Value& a, const Value&, double) { return log1p(a); },
       [](double a, double, double) { return a > -0.8; }, "log1p(%0)"},
      {"expm1", 1, [](const Value& a, const Value&, double) { return expm1(a); },
       [](double a, double, double) { return a < 5; }, "expm1(%0)"},
      {"erf", 1, [](const Value& a, const Value&, double) { return erf(a); }, any, "erf(%0)"},
      {"softplus", 1, [](const Value& a, const Value&, double) { return softplus(a); }, any, "softplus(%0)"},
      {"stop_gradient",
       1,
       [](const Value& a, const Value&, double) { return stop_gradient(a); },
       any,
       "stop_gradient(%0)",
       {},
       true},
  };
  return ops;
}

/// One node: op `op` applied to references a, b (below the input count: an
/// input; else node ref - inputs) with constant c.
struct ScalarNode {
  int op = 0;
  int a = 0, b = 0;
  double c = 0;
};

/// A scalar program: inputs, nodes, and the reference of the output.
struct ScalarProgram {
  std::vector<double> inputs;
  std::vector<ScalarNode> nodes;
  int output = 0;
};

/// The program's output on inputs x. With `frozen` (the value of every node at
/// the program's own inputs), a barrier whose gradient is not being recorded
/// yields its frozen value: the function the finite differences must see.
inline Value eval_scalar(const ScalarProgram& p, const std::vector<ScalarOp>& ops, const std::vector<Value>& x,
                         const std::vector<double>* frozen = nullptr) {
  std::vector<Value> v(x.begin(), x.end());
  v.reserve(x.size() + p.nodes.size());
  for (std::size_t i = 0; i < p.nodes.size(); ++i) {
    const ScalarNode& n = p.nodes[i];
    const ScalarOp& op = ops[static_cast<std::size_t>(n.op)];
    if (op.barrier && frozen && !is_grad_enabled())
      v.emplace_back((*frozen)[i]);
    else
      v.push_back(op.apply(v[static_cast<std::size_t>(n.a)], v[static_cast<std::size_t>(n.b)], n.c));
  }
  return v[static_cast<std::size_t>(p.output)];
}

/// The value of every input and node at the program's inputs, or an empty
/// vector when some op leaves its domain or a value is not finite or huge.
inline std::vector<double> scalar_values(const ScalarProgram& p, const std::vector<ScalarOp>& ops) {
  Tape tape;
  Tape::Scope use(tape);
  NoGradGuard no_grad;
  std::vector<double> v(p.inputs);
  for (const ScalarNode& n : p.nodes) {
    const ScalarOp& op = ops[static_cast<std::size_t>(n.op)];
    const double a = v[static_cast<std::size_t>(n.a)], b = v[static_cast<std::size_t>(n.b)];
    if (!op.valid(a, b, n.c)) return {};
    const double r = op.apply(Value(a), Value(b), n.c).data();
    if (!std::isfinite(r) || std::abs(r) > 1e4) return {};
    v.push_back(r);
  }
  return v;
}

/// A random valid program: 1 to 4 inputs in [-2, 2], 1 to `max_nodes` nodes.
/// Arguments lean toward recent nodes (depth) but any earlier one may be
/// reused (shared subexpressions).
inline ScalarProgram random_scalar_program(Choices& ch, const std::vector<ScalarOp>& ops, int max_nodes = 12) {
  ScalarProgram p;
  const int n_in = 1 + ch.below(4);
  for (int i = 0; i < n_in; ++i) p.inputs.push_back(std::round(ch.uniform(-2, 2) * 1000) / 1000);
  std::vector<double> v = p.inputs;
  const int n_nodes = 1 + ch.below(max_nodes);
  auto pick_ref = [&] {
    const int n = static_cast<int>(v.size());
    return ch.chance(0.5) ? n - 1 - ch.below(n < 3 ? n : 3) : ch.below(n);
  };
  for (int k = 0; k < n_nodes; ++k) {
    ScalarNode chosen{0, pick_ref(), pick_ref(), 0};  // add: always valid
    double value = v[static_cast<std::size_t>(chosen.a)] + v[static_cast<std::size_t>(chosen.b)];
    for (int attempt = 0; attempt < 20; ++attempt) {
      ScalarNode n;
      n.op = ch.below(static_cast<int>(ops.size()));
      const ScalarOp& op = ops[static_cast<std::size_t>(n.op)];
      n.a = pick_ref();
      n.b = op.arity == 2 ? pick_ref() : n.a;
      if (!op.constants.empty())
        n.c = op.constants[static_cast<std::size_t>(ch.below(static_cast<int>(op.constants.size())))];
      ScalarProgram one{v, {n}, static_cast<int>(v.size())};
      const auto vals = scalar_values(one, ops);
      if (vals.empty()) continue;
      chosen = n;
      value = vals.back();
      break;
    }
    p.nodes.push_back(chosen);
    v.push_back(value);
  }
  p.output = static_cast<int>(v.size()) - 1;
  return p;
}

/// The verdict on one program.
struct CaseResult {
  bool passed = true;
  std::string report;
};

/// True when input i reaches the output along a path without a barrier.
inline std::vector<bool> scalar_live_inputs(const ScalarProgram& p, const std::vector<ScalarOp>& ops) {
  const std::size_t n_in = p.inputs.size();
  std::vector<bool> live(n_in + p.nodes.size(), false);
  live[static_cast<std::size_t>(p.output)] = true;
  for (std::size_t i = p.nodes.size(); i-- > 0;) {
    if (!live[n_in + i] || ops[static_cast<std::size_t>(p.nodes[i].op)].barrier) continue;
    live[static_cast<std::size_t>(p.nodes[i].a)] = true;
    live[static_cast<std::size_t>(p.nodes[i].b)] = true;
  }
  live.resize(n_in);
  return live;
}

/// Checks the tape's gradient of the program against central differences of
/// the function in which every stop_gradient holds its value, and checks that
/// an input reaching the output only through barriers gets exactly zero.
inline CaseResult check_scalar_program(const ScalarProgram& p, const std::vector<ScalarOp>& ops) {
  CaseResult res;
  try {
    const std::vector<double> all = scalar_values(p, ops);
    if (all.empty()) return {false, "the program leaves an op's domain at its own inputs"};
    const std::vector<double> frozen(all.begin() + static_cast<std::ptrdiff_t>(p.inputs.size()), all.end());
    auto f = [&](const std::vector<Value>& x) { return eval_scalar(p, ops, x, &frozen); };
    const GradcheckOptions opt{.eps = 1e-6, .rtol = 1e-4, .atol = 1e-6};
    const GradcheckResult r = gradcheck(f, p.inputs, opt);
    if (!r.passed) return {false, r.report()};
    const auto g = value_and_grad(f, p.inputs).grad;
    const auto live = scalar_live_inputs(p, ops);
    for (std::size_t i = 0; i < live.size(); ++i)
      if (!live[i] && g[i] != 0.0)
        return {false, "input x" + std::to_string(i) + " reaches the output only through stop_gradient but gets " +
                           std::to_string(g[i])};
  } catch (const std::exception& e) {
    return {false, std::string("threw: ") + e.what()};
  }
  return res;
}

/// Drops nodes the output does not use and inputs no node uses, renumbering.
inline ScalarProgram scalar_compact(const ScalarProgram& p) {
  const int n_in = static_cast<int>(p.inputs.size());
  std::vector<bool> used(p.inputs.size() + p.nodes.size(), false);
  used[static_cast<std::size_t>(p.output)] = true;
  for (int i = static_cast<int>(p.nodes.size()) - 1; i >= 0; --i) {
    if (!used[static_cast<std::size_t>(n_in + i)]) continue;
    used[static_cast<std::size_t>(p.nodes[static_cast<std::size_t>(i)].a)] = true;
    used[static_cast<std::size_t>(p.nodes[static_cast<std::size_t>(i)].b)] = true;
  }
  std::vector<int> remap(used.size(), -1);
  ScalarProgram q;
  for (int i = 0; i < n_in; ++i)
    if (used[static_cast<std::size_t>(i)]) {
      remap[static_cast<std::size_t>(i)] = static_cast<int>(q.inputs.size());
      q.inputs.push_back(p.inputs[static_cast<std::size_t>(i)]);
    }
  if (q.inputs.empty()) q.inputs.push_back(p.inputs.empty() ? 0.5 : p.inputs[0]);  // gradcheck needs one input
  const int q_in = static_cast<int>(q.inputs.size());
  for (int i = 0; i < static_cast<int>(p.nodes.size()); ++i) {
    if (!used[static_cast<std::size_t>(n_in + i)]) continue;
    ScalarNode n = p.nodes[static_cast<std::size_t>(i)];
    n.a = remap[static_cast<std::size_t>(n.a)];
    n.b = remap[static_cast<std::size_t>(n.b)];
    remap[static_cast<std::size_t>(n_in + i)] = q_in + static_cast<int>(q.nodes.size());
    q.nodes.push_back(n);
  }
  q.output = remap[static_cast<std::size_t>(p.output)];
  return q;
}

/// The smaller programs tried while shrinking: the output moved to an earlier
/// node or input, and each node's uses redirected to one of its arguments or
/// to an input (a subtree replaced by an input).
inline std::vector<ScalarProgram> scalar_shrink_candidates(const ScalarProgram& p) {
  std::vector<ScalarProgram> out;
  const int n_in = static_cast<int>(p.inputs.size());
  for (int r = 0; r < p.output; ++r) {
    ScalarProgram q = p;
    q.output = r;
    out.push_back(scalar_compact(q));
  }
  for (int i = 0; i < static_cast<int>(p.nodes.size()); ++i) {
    const int self = n_in + i;
    std::vector<int> targets = {p.nodes[static_cast<std::size_t>(i)].a, p.nodes[static_cast<std::size_t>(i)].b};
    for (int k = 0; k < n_in; ++k) targets.push_back(k);
    for (int t : targets) {
      ScalarProgram q = p;
      for (auto& n : q.nodes) {
        if (n.a == self) n.a = t;
        if (n.b == self) n.b = t;
      }
      if (q.output == self) q.output = t;
      out.push_back(scalar_compact(q));
    }
  }
  return out;
}

/// Greedily shrinks a failing program: takes the first smaller valid program
/// that still fails, until none does.
inline ScalarProgram shrink_scalar_program(ScalarProgram p, const std::vector<ScalarOp>& ops) {
  auto size = [](const ScalarProgram& q) { return q.nodes.size() * 4 + q.inputs.size(); };
  for (bool progress = true; progress;) {
    progress = false;
    for (const ScalarProgram& q : scalar_shrink_candidates(p)) {
      if (size(q) >= size(p) || scalar_values(q, ops).empty()) continue;
      if (!check_scalar_program(q, ops).passed) {
        p = q;
        progress = true;
        break;
      }
    }
  }
  return p;
}

/// The program as C++ that rebuilds it with tapegrad.
inline std::string scalar_program_cpp(const ScalarProgram& p, const std::vector<ScalarOp>& ops) {
  std::ostringstream os;
  os.precision(17);
  const std::size_t n_in = p.inputs.size();
  auto name = [&](int r) {
    return static_cast<std::size_t>(r) < n_in ? "x" + std::to_string(r)
                                              : "t" + std::to_string(r - static_cast<int>(n_in));
  };
  for (std::size_t i = 0; i < n_in; ++i) os << "Value x" << i << " = " << p.inputs[i] << ";\n";
  for (std::size_t i = 0; i < p.nodes.size(); ++i) {
    const ScalarNode& n = p.nodes[i];
    std::string code = ops[static_cast<std::size_t>(n.op)].code;
    std::ostringstream c;
    c << n.c;
    for (auto [key, text] : {std::pair<std::string, std::string>{"%0", name(n.a)}, {"%1", name(n.b)}, {"%c", c.str()}})
      for (std::size_t at; (at = code.find(key)) != std::string::npos;) code.replace(at, 2, text);
    os << "Value t" << i << " = " << code << ";\n";
  }
  os << "Value y = " << name(p.output) << ";  // y.backward(), then compare x.grad() with finite differences\n";
  return os.str();
}

/// The first failure of a fuzz run, shrunk.
struct FuzzFailure {
  bool found = false;
  std::uint64_t seed = 0;
  std::string report;   ///< the gradient check's verdict on the shrunk program
  std::string program;  ///< the shrunk program as C++
};

/// Generates and checks `count` programs from seeds first, first + 1, ...;
/// stops at the first failure and shrinks it.
inline FuzzFailure fuzz_scalar(std::uint64_t first, std::uint64_t count, const std::vector<ScalarOp>& ops) {
  for (std::uint64_t s = first; s < first + count; ++s) {
    SeededChoices ch(s);
    const ScalarProgram p = random_scalar_program(ch, ops);
    if (check_scalar_program(p, ops).passed) continue;
    const ScalarProgram q = shrink_scalar_program(p, ops);
    return {true, s, check_scalar_program(q, ops).report, scalar_program_cpp(q, ops)};
  }
  return {};
}

}  // namespace tapegrad::fuzz
