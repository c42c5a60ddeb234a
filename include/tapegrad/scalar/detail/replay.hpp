// SPDX-License-Identifier: MIT
#pragma once

// A recorded program (program.hpp) compiled for replay, and the loops that
// replay it (autodiff/recording.hpp's Recording owns one). Compiling turns
// each step into a 20-byte instruction: the library's arithmetic, its
// constant operands and exp, tanh and sin run inline instead of through their
// kernels; a product whose only use is a sum is folded into it, so
// `s += a * b` is one instruction; only kernel calls keep partials for the
// reverse sweep, which recomputes the others from the registers. Every inline
// instruction computes what its kernel computes, and a folded product is
// rounded before it is added, so a replay's values stay the recording's bit
// for bit.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/scalar/detail/program.hpp"
#include "tapegrad/scalar/detail/store.hpp"

namespace tapegrad::detail {

/// `x` rounded to T, so that the compiler cannot fuse it into a following
/// addition (an FMA would change the sum's last bit).
template <class T>
TAPEGRAD_ALWAYS_INLINE T rounded(T x) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__aarch64__))
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
#if defined(__x86_64__)
    asm("" : "+x"(x));  // in a vector register, opaque to the compiler
#else
    asm("" : "+w"(x));
#endif
    return x;
  }
#endif
  volatile T kept = x;  // elsewhere: through memory
  return kept;
}

template <class T>
class compiled_replay {
 public:
  enum code_t : std::uint8_t {
    add,          // out = a + b
    sub,          // out = a - b
    mul,          // out = a * b
    fma,          // out = a * b + c, the product rounded first
    add_k,        // out = a + c, c a constant's register
    sub_k,        // out = a - c
    rsub_k,       // out = c - a
    mul_k,        // out = a * c
    fma_k,        // out = a * b + c, b a constant's register
    exp_fn,       // out = exp a
    tanh_fn,      // out = tanh a
    sin_fn,       // out = sin a (the reverse sweep takes cos a, off the forward's critical path)
    unary,        // out = kernel c (a); its partial kept in slot c
    binary,       // out = kernel c (a, b); both partials kept in slot c
    sum,          // out = c + the b terms from a on (a running sum, one term at a time)
    dot2,         // out = the two products from term a on, added
    stop,         // out = a, passing no gradient; this and what follows have no reverse step
    order_guard,  // a <=> b must give outcome c
    equal_guard,  // a == b must give outcome c
  };
  struct insn {
    std::uint32_t a = 0, b = 0, c = 0, out = 0;
    std::uint8_t code = add;
    bool no_grad = false;
  };

  /// A term of a running sum: a register, or the product of two (b != none).
  struct term {
    std::uint32_t a = 0, b = 0;
  };
  static constexpr std::uint32_t none = replay_program<T>::none;

  compiled_replay() = default;

  /// Compiles `p`, whose result is register `result` and whose first
  /// `inputs` registers are the inputs.
  compiled_replay(const replay_program<T>& p, std::uint32_t result, std::size_t inputs)
      : init_(p.init), inputs_(inputs), result_(result), guards_(p.guards), operations_(p.steps.size() - p.guards) {
    const std::vector<program_step<T>>& steps = p.steps;
    const std::size_t n = steps.size();
    // How often each register is read, and which step wrote it.
    std::vector<std::uint32_t> uses(init_.size(), 0), producer(init_.size(), none);
    std::vector<std::uint8_t> codes(n);
    std::vector<T> constant(n, T(0));
    for (std::size_t k = 0; k < n; ++k) {
      const program_step<T>& st = steps[k];
      codes[k] = classify(st, init_, constant[k]);
      ++uses[st.a];
      if (st.kind != program_step<T>::unary && st.kind != program_step<T>::stop) ++uses[st.b];
      if (codes[k] < order_guard) producer[st.out] = static_cast<std::uint32_t>(k);
    }
    ++uses[result];
    // A sum takes in a product that nothing else reads.
    std::vector<std::uint32_t> folded_into(n, none);
    for (std::size_t k = 0; k < n; ++k) {
      const program_step<T>& st = steps[k];
      if (codes[k] != add || st.no_grad) continue;
      for (const std::uint32_t r : {st.b, st.a}) {
        const std::uint32_t m = producer[r];
        if (m == none || uses[r] != 1 || steps[m].no_grad || (codes[m] != mul && codes[m] != mul_k)) continue;
        folded_into[m] = static_cast<std::uint32_t>(k);
        break;
      }
    }
    std::vector<std::uint32_t> folds(n, none);  // for a sum: the product it takes in
    for (std::size_t m = 0; m < n; ++m)
      if (folded_into[m] != none) folds[folded_into[m]] = static_cast<std::uint32_t>(m);

    code_.reserve(n);
    for (std::size_t k = 0; k < n; ++k) {
      if (folded_into[k] != none) continue;
      const program_step<T>& st = steps[k];
      insn in{st.a, st.b, 0, st.out, codes[k], st.no_grad};
      if (folds[k] != none) {
        const program_step<T>& m = steps[folds[k]];
        const std::uint32_t other = m.out == st.b ? st.a : st.b;
        in = codes[folds[k]] == mul ? insn{m.a, m.b, other, st.out, fma, false}
                                    : insn{m.a, constant_register(constant[folds[k]]), other, st.out, fma_k, false};
      } else if (in.code >= add_k && in.code <= mul_k) {
        in.c = constant_register(constant[k]);
      } else if (in.code == unary || in.code == binary) {
        in.c = static_cast<std::uint32_t>(kernels_.size());
        kernels_.push_back(kernel{st.call1, st.call2, {}});
        std::memcpy(kernels_.back().closure, st.closure, sizeof st.closure);
      } else if (in.code >= order_guard) {
        in.c = st.expect;
      }
      code_.push_back(in);
    }
    collapse_sums(uses);
  }

  bool empty() const noexcept { return init_.empty(); }
  std::size_t inputs() const noexcept { return inputs_; }
  std::size_t operations() const noexcept { return operations_; }
  std::size_t comparisons() const noexcept { return guards_; }
  std::size_t instructions() const noexcept { return code_.size(); }
  /// The adjoints of the inputs after backward().
  std::span<const T> input_adjoints() const noexcept { return {adjoints_.data(), inputs_}; }

  /// Runs the program forward at `x` (already checked to have inputs() entries).
  T forward(std::span<const T> x, const char* what) {
    // Constants keep their registers from one replay to the next; every other
    // register an instruction reads is written earlier in the same replay.
    if (regs_.size() != init_.size()) regs_.assign(init_.begin(), init_.end());
    std::copy(x.begin(), x.end(), regs_.begin());
    partials_.resize(2 * kernels_.size());
    T* r = regs_.data();
    T* pd = partials_.data();
    const kernel* kern = kernels_.data();
    const term* terms = terms_.data();
    const insn* code = code_.data();
    const std::size_t n = code_.size();
    for (std::size_t k = 0; k < n; ++k) {
      const insn& in = code[k];
      switch (in.code) {
        case add:
          r[in.out] = r[in.a] + r[in.b];
          break;
        case sub:
          r[in.out] = r[in.a] - r[in.b];
          break;
        case mul:
          r[in.out] = r[in.a] * r[in.b];
          break;
        case fma:
        case fma_k:
          r[in.out] = rounded(r[in.a] * r[in.b]) + r[in.c];
          break;
        case add_k:
          r[in.out] = r[in.a] + r[in.c];
          break;
        case sub_k:
          r[in.out] = r[in.a] - r[in.c];
          break;
        case rsub_k:
          r[in.out] = r[in.c] - r[in.a];
          break;
        case mul_k:
          r[in.out] = r[in.a] * r[in.c];
          break;
        case exp_fn:
          r[in.out] = std::exp(r[in.a]);
          break;
        case tanh_fn:
          r[in.out] = std::tanh(r[in.a]);
          break;
        case sin_fn:
          r[in.out] = std::sin(r[in.a]);
          break;
        case unary:
          r[in.out] = kern[in.c].call1(kern[in.c].closure, r[in.a], pd[2 * in.c]);
          break;
        case binary:
          r[in.out] = kern[in.c].call2(kern[in.c].closure, r[in.a], r[in.b], pd[2 * in.c], pd[2 * in.c + 1]);
          break;
        case dot2: {
          const term* t = terms + in.a;
          r[in.out] = rounded(r[t[1].a] * r[t[1].b]) + rounded(r[t[0].a] * r[t[0].b]);
          break;
        }
        case sum: {
          T acc = r[in.c];
          for (const term* t = terms + in.a; t != terms + in.a + in.b; ++t)
            acc = (t->b == none ? r[t->a] : rounded(r[t->a] * r[t->b])) + acc;
          r[in.out] = acc;
          break;
        }
        case stop:
          r[in.out] = r[in.a];
          break;
        case order_guard:
          if (ordering_code(r[in.a] <=> r[in.b]) != in.c) throw_branch(k, what);
          break;
        case equal_guard:
          if ((r[in.a] == r[in.b]) != (in.c != 0)) throw_branch(k, what);
          break;
        default:
          break;
      }
    }
    return r[result_];
  }

  // The reverse sweep over the last forward(). Every instruction writes a
  // register of its own, so each register's adjoint is complete when its
  // instruction is reached. One whose result gets no gradient passes nothing
  // on (an infinite slope times a zero gradient stays zero, as on the tape).
  void backward() {
    adjoints_.assign(init_.size(), T(0));
    T* g = adjoints_.data();
    const T* r = regs_.data();
    const T* pd = partials_.data();
    const term* terms = terms_.data();
    const insn* code = code_.data();
    g[result_] = T(1);
    for (std::size_t k = code_.size(); k-- > 0;) {
      const insn& in = code[k];
      if (in.code >= stop || in.no_grad) continue;
      const T go = g[in.out];
      if (go == T(0)) continue;
      switch (in.code) {
        case add:
          g[in.a] += go;
          g[in.b] += go;
          break;
        case sub:
          g[in.a] += go;
          g[in.b] -= go;
          break;
        case mul:
          g[in.a] += go * r[in.b];
          g[in.b] += go * r[in.a];
          break;
        case fma:
          g[in.a] += go * r[in.b];
          g[in.b] += go * r[in.a];
          g[in.c] += go;
          break;
        case add_k:
        case sub_k:
          g[in.a] += go;
          break;
        case rsub_k:
          g[in.a] -= go;
          break;
        case mul_k:
          g[in.a] += go * r[in.c];
          break;
        case fma_k:
          g[in.a] += go * r[in.b];
          g[in.c] += go;
          break;
        case exp_fn:
          g[in.a] += go * r[in.out];
          break;
        case tanh_fn:
          g[in.a] += go * (T(1) - r[in.out] * r[in.out]);
          break;
        case sin_fn:
          g[in.a] += go * std::cos(r[in.a]);
          break;
        case unary:
          g[in.a] += go * pd[2 * in.c];
          break;
        case binary:
          g[in.a] += go * pd[2 * in.c];
          g[in.b] += go * pd[2 * in.c + 1];
          break;
        case dot2:  // its c is a constant's register, which nothing reads back
        case sum:
          g[in.c] += go;
          for (const term* t = terms + in.a; t != terms + in.a + in.b; ++t) {
            if (t->b == none) {
              g[t->a] += go;
            } else {
              g[t->a] += go * r[t->b];
              g[t->b] += go * r[t->a];
            }
          }
          break;
        default:
          break;
      }
    }
  }

 private:
  struct kernel {
    typename program_step<T>::unary_kernel call1;
    typename program_step<T>::binary_kernel call2;
    alignas(std::max_align_t) unsigned char closure[sizeof(program_step<T>::closure)];
  };

  static bool same(T x, T y) noexcept { return x == y || (x != x && y != y); }

  /// What instruction a step becomes. A library op with one captured
  /// constant (`x + 2.0`, `3.0 - x`) runs inline when its kernel agrees with
  /// the inline form at two inputs; anything else calls its kernel.
  static std::uint8_t classify(const program_step<T>& st, const std::vector<T>& init, T& constant) {
    using step = program_step<T>;
    switch (st.kind) {
      case step::add:
        return add;
      case step::sub:
        return sub;
      case step::mul:
        return mul;
      case step::binary:
        return binary;
      case step::stop:
        return stop;
      case step::order_guard:
        return order_guard;
      case step::equal_guard:
        return equal_guard;
      default:
        break;
    }
    if (st.closure_bytes == 0) {
      if (st.op == op_exp) return exp_fn;
      if (st.op == op_tanh) return tanh_fn;
      if (st.op == op_sin) return sin_fn;
      return unary;
    }
    if (st.closure_bytes != sizeof(T) || (st.op != op_add && st.op != op_sub && st.op != op_mul)) return unary;
    std::memcpy(&constant, st.closure, sizeof(T));
    const auto kernel_at = [&](T x) {
      T d;
      return st.call1(st.closure, x, d);
    };
    const T k = constant;
    const auto agrees = [&](auto inline_form) {
      return same(kernel_at(T(1)), inline_form(T(1))) && same(kernel_at(init[st.a]), inline_form(init[st.a]));
    };
    if (st.op == op_add && agrees([k](T x) { return x + k; })) return add_k;
    if (st.op == op_mul && agrees([k](T x) { return x * k; })) return mul_k;
    if (st.op == op_sub && agrees([k](T x) { return x - k; })) return sub_k;
    if (st.op == op_sub && agrees([k](T x) { return k - x; })) return rsub_k;
    return unary;
  }

  // A chain of sums, each read only by the next (`s += a * b` in a loop,
  // after products are folded in), becomes one `sum` instruction at the
  // place of the last: the running total stays in a register, and the
  // reverse sweep hands every term the same adjoint, which is what each link
  // of the chain would have passed on. The intermediate totals are never
  // written; nothing else reads them.
  void collapse_sums(const std::vector<std::uint32_t>& read) {
    const std::size_t n = code_.size();
    // Registers made for inline constants come after those `read` counts.
    const auto once = [&](std::uint32_t r) { return r < read.size() && read[r] == 1; };
    const auto links = [](const insn& in) {
      return !in.no_grad && (in.code == add || in.code == fma || in.code == fma_k);
    };
    std::vector<std::uint32_t> writer(init_.size(), none), prev(n, none), next(n, none);
    for (std::size_t k = 0; k < n; ++k)
      if (code_[k].code < order_guard) writer[code_[k].out] = static_cast<std::uint32_t>(k);
    for (std::size_t k = 0; k < n; ++k) {
      const insn& in = code_[k];
      if (!links(in)) continue;
      for (const std::uint32_t r : {in.code == add ? in.a : in.c, in.code == add ? in.b : none}) {
        if (r == none || !once(r) || writer[r] == none || !links(code_[writer[r]])) continue;
        prev[k] = writer[r];
        next[writer[r]] = static_cast<std::uint32_t>(k);
        break;
      }
    }
    // A chain that starts from a product nothing else reads takes it in as
    // its first term, added to -0 (which leaves every number as it is).
    std::vector<std::uint32_t> first(n, none);
    std::vector<bool> taken(n, false);
    std::uint32_t minus_zero = none;
    for (std::size_t k = 0; k < n; ++k) {
      const insn& in = code_[k];
      if (!links(in) || prev[k] != none || in.code == add) continue;
      const std::uint32_t w = writer[in.c];
      if (!once(in.c) || w == none || code_[w].no_grad || (code_[w].code != mul && code_[w].code != mul_k)) continue;
      first[k] = w;
      taken[w] = true;
      if (minus_zero == none) minus_zero = constant_register(T(-0.0));
    }
    std::vector<insn> out;
    out.reserve(n);
    std::vector<std::uint32_t> chain;
    for (std::size_t k = 0; k < n; ++k) {
      if (next[k] != none || taken[k]) continue;  // emitted with the chain's last link
      chain.clear();
      for (std::uint32_t j = static_cast<std::uint32_t>(k); j != none; j = prev[j]) chain.push_back(j);
      std::reverse(chain.begin(), chain.end());
      const std::uint32_t h = chain.front();
      if (chain.size() == 1 && first[h] == none) {
        out.push_back(code_[k]);
        continue;
      }
      const insn& head = code_[h];
      insn total{static_cast<std::uint32_t>(terms_.size()),
                 0,
                 first[h] != none   ? minus_zero
                 : head.code == add ? head.a
                                    : head.c,
                 code_[k].out,
                 sum,
                 false};
      if (first[h] != none) {
        const insn& m = code_[first[h]];
        terms_.push_back(term{m.a, m.code == mul ? m.b : m.c});
      }
      for (std::size_t j = 0; j < chain.size(); ++j) {
        const insn& in = code_[chain[j]];
        if (in.code != add) {
          terms_.push_back(term{in.a, in.b});
        } else if (j == 0) {
          terms_.push_back(term{in.b, none});
        } else {
          terms_.push_back(term{in.a == code_[chain[j - 1]].out ? in.b : in.a, none});
        }
      }
      total.b = static_cast<std::uint32_t>(terms_.size()) - total.a;
      if (chain.size() == 1 && first[h] != none) total.code = dot2;  // a * b + c * d
      out.push_back(total);
    }
    code_ = std::move(out);
  }

  std::uint32_t constant_register(T value) {
    init_.push_back(value);
    return static_cast<std::uint32_t>(init_.size() - 1);
  }

  [[noreturn]] TAPEGRAD_COLD void throw_branch(std::size_t k, const char* what) const {
    const insn& in = code_[k];
    std::size_t nth = 0;
    for (std::size_t i = 0; i <= k; ++i) nth += code_[i].code >= order_guard ? 1 : 0;
    static const char* const order[] = {" < ", " == ", " > ", " unordered with "};
    std::ostringstream os;
    os << what << ": comparison " << nth << " of " << guards_ << " took another branch: recorded as " << init_[in.a]
       << (in.code == order_guard ? order[in.c] : (in.c ? " == " : " != ")) << init_[in.b] << ", now " << regs_[in.a]
       << " and " << regs_[in.b] << "; record the function again at these inputs";
    throw replay_error(os.str());
  }

  std::vector<insn> code_;
  std::vector<kernel> kernels_;
  std::vector<term> terms_;  // the terms of every `sum`
  std::vector<T> init_;      // each register's value when recorded, then the constants of inline steps
  std::size_t inputs_ = 0;
  std::uint32_t result_ = 0;
  std::size_t guards_ = 0, operations_ = 0;
  std::vector<T> regs_, partials_, adjoints_;
};

}  // namespace tapegrad::detail
