// SPDX-License-Identifier: MIT
#pragma once

// Random tensor op chains over every op family (elementwise with broadcasting,
// reductions, matmul, shape ops, nn functions, stop_gradient), reduced to a
// scalar, checked against central differences; shrinking and printing as C++.
//
// A program is a list of entries, each an input (a leaf with its values) or a
// node that applies one op to earlier entries. Each op is generated with the
// values of its arguments at hand, so it is kept inside its domain and away
// from its kinks (relu, abs, clamp, ties in max) by a wide margin.

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "choices.hpp"
#include "scalar_program.hpp"  // CaseResult, FuzzFailure
#include "tapegrad/autodiff/tensor_gradcheck.hpp"
#include "tapegrad/tensor.hpp"

namespace tapegrad::fuzz {

using DTensor = basic_tensor<double>;

/// One tensor op applied to earlier entries.
struct TensorNode {
  std::string op;         ///< the family member's name, for coverage and reports
  std::vector<int> args;  ///< the entries it reads
  std::function<DTensor(const std::vector<DTensor>&)> apply;
  /// True when the arguments (values at the program's inputs) are inside the
  /// op's domain and away from its kinks; empty: always.
  std::function<bool(const std::vector<DTensor>&)> valid;
  std::string code;  ///< C++ with %0, %1, %2 for the arguments
  bool barrier = false;
};

/// A node with every field given but the barrier flag.
inline TensorNode make_node(std::string op, std::vector<int> args,
                            std::function<DTensor(const std::vector<DTensor>&)> apply,
                            std::function<bool(const std::vector<DTensor>&)> valid, std::string code) {
  TensorNode n;
  n.op = std::move(op);
  n.args = std::move(args);
  n.apply = std::move(apply);
  n.valid = std::move(valid);
  n.code = std::move(code);
  return n;
}

/// An input (a leaf with its values) or a node.
struct TensorEntry {
  bool is_input = true;
  DTensor value;  ///< the input's values
  TensorNode node;
};

/// A tensor program: entries in order and the entry that is the output.
struct TensorProgram {
  std::vector<TensorEntry> entries;
  int output = 0;
};

/// A copy of t as a fresh leaf, owning its values (not in any tape's arena).
inline DTensor detached(const DTensor& t) { return DTensor(t.shape(), t.to_vector()); }

/// The program's output on inputs x (one per input entry, in order). With
/// `frozen` (every entry's value at the program's inputs), a barrier whose
/// gradient is not being recorded yields its frozen value.
inline DTensor eval_tensor(const TensorProgram& p, const std::vector<DTensor>& x,
                           const std::vector<DTensor>* frozen = nullptr) {
  std::vector<DTensor> v;
  v.reserve(p.entries.size());
  std::size_t next_input = 0;
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    const TensorEntry& e = p.entries[i];
    if (e.is_input) {
      v.push_back(x[next_input++]);
      continue;
    }
    if (e.node.barrier && frozen && !is_grad_enabled()) {
      v.push_back((*frozen)[i]);
      continue;
    }
    std::vector<DTensor> a;
    for (int r : e.node.args) a.push_back(v[static_cast<std::size_t>(r)]);
    v.push_back(e.node.apply(a));
  }
  return v[static_cast<std::size_t>(p.output)];
}

/// True when every element is finite and below 1e4 in magnitude.
inline bool tame(const DTensor& t) {
  const auto d = t.data();
  for (Eigen::Index i = 0; i < d.size(); ++i)
    if (!std::isfinite(d[i]) || std::abs(d[i]) > 1e4) return false;
  return true;
}

/// Applies node n to argument values a and checks its domain; the result as a
/// fresh leaf, or an undefined tensor when it is out of domain or throws.
inline DTensor apply_checked(const TensorNode& n, const std::vector<DTensor>& a) {
  try {
    Tape tape;
    Tape::Scope use(tape);
    NoGradGuard no_grad;
    if (n.valid && !n.valid(a)) return {};
    DTensor r = n.apply(a);
    if (!tame(r)) return {};
    return detached(r);
  } catch (const error&) {
    return {};
  }
}

/// Every entry's value at the program's inputs, or empty when an op leaves
/// its domain.
inline std::vector<DTensor> tensor_values(const TensorProgram& p) {
  std::vector<DTensor> v;
  for (const TensorEntry& e : p.entries) {
    if (e.is_input) {
      v.push_back(e.value);
      continue;
    }
    std::vector<DTensor> a;
    for (int r : e.node.args) a.push_back(v[static_cast<std::size_t>(r)]);
    DTensor r = apply_checked(e.node, a);
    if (!r.defined()) return {};
    v.push_back(std::move(r));
  }
  return v;
}

/// Checks the program's gradients against central differences of the
/// function in which every stop_gradient holds its value.
inline CaseResult check_tensor_program(const TensorProgram& p) {
  try {
    const std::vector<DTensor> frozen = tensor_values(p);
    if (frozen.empty()) return {false, "the program leaves an op's domain at its own inputs"};
    // An output reached from no input but through stop_gradient is a constant:
    // its gradient is zero by construction and there is nothing to compare.
    std::vector<bool> live(p.entries.size(), false);
    live[static_cast<std::size_t>(p.output)] = true;
    bool any_live_input = false;
    for (std::size_t i = p.entries.size(); i-- > 0;) {
      if (!live[i]) continue;
      if (p.entries[i].is_input) any_live_input = true;
      if (p.entries[i].is_input || p.entries[i].node.barrier) continue;
      for (int r : p.entries[i].node.args) live[static_cast<std::size_t>(r)] = true;
    }
    if (!any_live_input) return {};
    std::vector<DTensor> inputs;
    for (const TensorEntry& e : p.entries)
      if (e.is_input) inputs.push_back(e.value);
    auto f = [&](const std::vector<DTensor>& x) { return eval_tensor(p, x, &frozen); };
    const GradcheckResult r = gradcheck(f, inputs, {.eps = 1e-6, .rtol = 1e-4, .atol = 1e-6});
    if (!r.passed) return {false, r.report()};
  } catch (const std::exception& e) {
    return {false, std::string("threw: ") + e.what()};
  }
  return {};
}

// ---- generation -------------------------------------------------------------

/// The state a generator step works on: the program so far and the value of
/// each entry at the inputs.
struct TensorBuilder {
  Choices& ch;
  TensorProgram p;
  std::vector<DTensor> vals;

  /// A new input of the given shape with values in [lo, hi).
  int input(const Shape& s, double lo = -2, double hi = 2) {
    std::vector<double> v(static_cast<std::size_t>(s.numel()));
    for (double& x : v) x = std::round(ch.uniform(lo, hi) * 1000) / 1000;
    TensorEntry e;
    e.value = DTensor(s, std::move(v));
    vals.push_back(e.value);
    p.entries.push_back(std::move(e));
    return static_cast<int>(vals.size()) - 1;
  }

  /// A random entry of rank 1 or more whose shape satisfies `ok`, leaning toward
  /// recent ones; -1 if none. (Every program has an input of rank 1 or more.)
  template <class Ok>
  int pick(Ok ok) {
    std::vector<int> fit;
    for (int i = 0; i < static_cast<int>(vals.size()); ++i)
      if (vals[static_cast<std::size_t>(i)].shape().rank() > 0 && ok(vals[static_cast<std::size_t>(i)].shape()))
        fit.push_back(i);
    if (fit.empty()) return -1;
    const int n = static_cast<int>(fit.size());
    return fit[static_cast<std::size_t>(ch.chance(0.6) ? n - 1 - ch.below(std::min(n, 2)) : ch.below(n))];
  }

  const Shape& shape(int r) const { return vals[static_cast<std::size_t>(r)].shape(); }
};

/// A random shape of rank 1 to 3 with dimensions 1 to 4.
inline Shape random_shape(Choices& ch) {
  std::vector<index_t> d(static_cast<std::size_t>(1 + ch.below(3)));
  for (auto& x : d) x = 1 + ch.below(4);
  return Shape(d);
}

/// A shape that broadcasts against s: leading dimensions dropped, some set to 1.
inline Shape broadcast_variant(Choices& ch, const Shape& s) {
  std::vector<index_t> d = s.dims();
  const int drop = ch.below(static_cast<int>(d.size()));
  d.erase(d.begin(), d.begin() + drop);
  for (auto& x : d)
    if (ch.chance(0.3)) x = 1;
  return Shape(d);
}

/// NumPy broadcasting compatibility of two shapes.
inline bool broadcastable(const Shape& a, const Shape& b) {
  for (int i = 1; i <= std::min(a.rank(), b.rank()); ++i)
    if (a[-i] != b[-i] && a[-i] != 1 && b[-i] != 1) return false;
  return true;
}

/// The smallest distance of any element of t from the point k.
inline double gap_from(const DTensor& t, double k) { return (t.data().array() - k).abs().minCoeff(); }

/// The smallest gap between the largest and the second largest element of
/// any slice along `axis` (a whole tensor when axis is past the rank): a tie
/// there is a kink of max.
inline double top_gap(const DTensor& t, int axis) {
  const Shape& s = t.shape();
  index_t outer = 1, len = s.numel(), inner = 1;
  if (axis < s.rank()) {
    for (int i = 0; i < axis; ++i) outer *= s[i];
    len = s[axis];
    for (int i = axis + 1; i < s.rank(); ++i) inner *= s[i];
  }
  const auto d = t.data();
  double gap = 1e9;
  for (index_t o = 0; o < outer; ++o)
    for (index_t i = 0; i < inner; ++i) {
      double m1 = -1e300, m2 = -1e300;
      for (index_t k = 0; k < len; ++k) {
        const double v = d[o * len * inner + k * inner + i];
        if (v > m1) {
          m2 = m1;
          m1 = v;
        } else if (v > m2) {
          m2 = v;
        }
      }
      if (len > 1) gap = std::min(gap, m1 - m2);
    }
  return gap;
}

/// The text of a list of numbers, "{1, 2, 3}".
template <class V>
std::string list_text(const V& v) {
  std::ostringstream os;
  os << "{";
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "}";
  return os.str();
}

/// One way of adding a node: fills `n` (args, apply, valid, code) from the
/// builder, or returns false when no entry fits.
struct TensorOpMaker {
  std::string family;  ///< elementwise, reduce, linalg, shape, nn, barrier
  std::function<bool(TensorBuilder&, TensorNode&)> make;
};

/// A random valid program: one or two inputs, 1 to `max_nodes` nodes, then a
/// reduction to a scalar.
inline TensorProgram random_tensor_program(Choices& ch, const std::vector<TensorOpMaker>& makers, int max_nodes = 6) {
  TensorBuilder b{ch, {}, {}};
  const int n_in = 1 + ch.below(2);
  for (int i = 0; i < n_in; ++i) b.input(random_shape(ch));
  const int n_nodes = 1 + ch.below(max_nodes);
  auto add = [&](TensorNode n) {
    std::vector<DTensor> a;
    for (int r : n.args) a.push_back(b.vals[static_cast<std::size_t>(r)]);
    DTensor v = apply_checked(n, a);
    if (!v.defined()) return false;
    TensorEntry e;
    e.is_input = false;
    e.node = std::move(n);
    b.p.entries.push_back(std::move(e));
    b.vals.push_back(std::move(v));
    return true;
  };
  for (int k = 0; k < n_nodes; ++k) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      const std::size_t before = b.p.entries.size();
      TensorNode n;
      const TensorOpMaker& m = makers[static_cast<std::size_t>(ch.below(static_cast<int>(makers.size())))];
      if (m.make(b, n) && add(std::move(n))) break;
      b.p.entries.resize(before);  // drop inputs made for a rejected node
      b.vals.resize(before);
    }
  }
  // Reduce the last entry to a scalar.
  TensorNode r;
  r.args = {static_cast<int>(b.vals.size()) - 1};
  switch (ch.below(3)) {
    case 0:
      r = make_node(
          "sum_all", r.args, [](const auto& a) { return sum(a[0]); }, {}, "sum(%0)");
      break;
    case 1:
      r = make_node(
          "mean_all", r.args, [](const auto& a) { return mean(a[0]); }, {}, "mean(%0)");
      break;
    default:
      r = make_node(
          "logsumexp_all", r.args, [](const auto& a) { return logsumexp(a[0]); }, {}, "logsumexp(%0)");
      break;
  }
  add(std::move(r));
  b.p.output = static_cast<int>(b.vals.size()) - 1;
  return std::move(b.p);
}

// ---- shrinking and printing -------------------------------------------------

/// Drops the entries the output does not use, renumbering the arguments.
inline TensorProgram tensor_compact(const TensorProgram& p) {
  std::vector<bool> used(p.entries.size(), false);
  used[static_cast<std::size_t>(p.output)] = true;
  for (std::size_t i = p.entries.size(); i-- > 0;)
    if (used[i] && !p.entries[i].is_input)
      for (int r : p.entries[i].node.args) used[static_cast<std::size_t>(r)] = true;
  std::vector<int> remap(p.entries.size(), -1);
  TensorProgram q;
  for (std::size_t i = 0; i < p.entries.size(); ++i) {
    if (!used[i]) continue;
    TensorEntry e = p.entries[i];
    for (int& r : e.node.args) r = remap[static_cast<std::size_t>(r)];
    remap[i] = static_cast<int>(q.entries.size());
    q.entries.push_back(std::move(e));
  }
  q.output = remap[static_cast<std::size_t>(p.output)];
  return q;
}

/// Greedily shrinks a failing program: the output moved to an earlier entry,
/// a node replaced by an input holding its value (a subtree replaced by an
/// input), or a node's uses sent to an argument of the same shape; the first
/// smaller program that still fails is kept, until none does.
inline TensorProgram shrink_tensor_program(TensorProgram p) {
  auto size = [](const TensorProgram& q) {
    std::size_t s = 0;
    for (const auto& e : q.entries) s += e.is_input ? 1 : 4;
    return s;
  };
  auto still_fails = [&](const TensorProgram& q) {
    return size(q) < size(p) && !tensor_values(q).empty() && !check_tensor_program(q).passed;
  };
  for (bool progress = true; progress;) {
    progress = false;
    const std::vector<DTensor> vals = tensor_values(p);
    std::vector<TensorProgram> cands;
    for (int r = 0; r < p.output; ++r) {
      TensorProgram q = p;
      q.output = r;
      cands.push_back(tensor_compact(q));
    }
    for (std::size_t i = 0; i < p.entries.size(); ++i) {
      if (p.entries[i].is_input) continue;
      TensorProgram q = p;
      q.entries[i] = TensorEntry{true, vals[i], {}};
      cands.push_back(tensor_compact(q));
      for (int a : p.entries[i].node.args) {
        if (!(vals[static_cast<std::size_t>(a)].shape() == vals[i].shape())) continue;
        TensorProgram q2 = p;
        for (auto& e : q2.entries)
          for (int& r : e.node.args)
            if (r == static_cast<int>(i)) r = a;
        if (q2.output == static_cast<int>(i)) q2.output = a;
        cands.push_back(tensor_compact(q2));
      }
    }
    for (const TensorProgram& q : cands)
      if (still_fails(q)) {
        p = q;
        progress = true;
        break;
      }
  }
  return p;
}

/// The program as C++ that rebuilds it with tapegrad.
inline std::string tensor_program_cpp(const TensorProgram& p) {
  std::ostringstream os;
  os.precision(17);
  std::vector<std::string> names;
  int inputs = 0, nodes = 0;
  for (const TensorEntry& e : p.entries) {
    if (e.is_input) {
      names.push_back("x" + std::to_string(inputs++));
      os << "DTensor " << names.back() << "(Shape" << list_text(e.value.shape().dims()) << ", std::vector<double>"
         << list_text(e.value.to_vector()) << ");\n";
      continue;
    }
    names.push_back("t" + std::to_string(nodes++));
    std::string code = e.node.code;
    for (std::size_t k = 0; k < e.node.args.size(); ++k) {
      const std::string key = "%" + std::to_string(k);
      for (std::size_t at; (at = code.find(key)) != std::string::npos;)
        code.replace(at, key.size(), names[static_cast<std::size_t>(e.node.args[k])]);
    }
    os << "DTensor " << names.back() << " = " << code << ";\n";
  }
  os << "DTensor y = " << names[static_cast<std::size_t>(p.output)] << ";  // gradcheck over the inputs x0, x1, ...\n";
  return os.str();
}

/// Generates and checks `count` programs from seeds first, first + 1, ...;
/// stops at the first failure and shrinks it.
inline FuzzFailure fuzz_tensor(std::uint64_t first, std::uint64_t count, const std::vector<TensorOpMaker>& makers) {
  for (std::uint64_t s = first; s < first + count; ++s) {
    SeededChoices ch(s);
    const TensorProgram p = random_tensor_program(ch, makers);
    if (check_tensor_program(p).passed) continue;
    const TensorProgram q = shrink_tensor_program(p);
    return {true, s, check_tensor_program(q).report, tensor_program_cpp(q)};
  }
  return {};
}

}  // namespace tapegrad::fuzz
