// SPDX-License-Identifier: MIT
//
// The scalar tape beside two operator-overloading libraries from Debian,
// Sacado (Trilinos, reverse mode `Sacado::Rad::ADvar`) and ADOL-C (`adouble`,
// taped, then `gradient()`), on the four functions of ../scalar/kernels.hpp,
// each written once as a template. For every library and function the figure
// is gradient time over plain-double time in the same process: the median of
// 8 rounds, the libraries taking turns within each round.
//
// How each library is used, as its documentation shows:
//   tapegrad  the inputs are leaves made once; each evaluation records,
//             calls backward() and clears the tape;
//   Sacado    each evaluation assigns the inputs (which makes them new
//             independent variables), records and calls ADvar::Gradcomp();
//   ADOL-C    each evaluation opens a trace, declares the inputs with <<=,
//             records, closes the trace and calls gradient() on it (the
//             re-taped use: the trace is made anew for every input).
//
// Two more columns time the record-once use of the two libraries that have
// one: tapegrad::record, then Recording::value_and_grad per evaluation; and
// an ADOL-C trace made once, then gradient() per evaluation (which evaluates
// the trace forward at the given point, then sweeps it back; it does not
// return the value, where the replay does).
//
//   bench_scalar_peers

#include <adolc/adolc.h>

#include <Sacado_trad.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <tapegrad/scalar.hpp>

namespace {

using tapegrad::Value;
using Rad = Sacado::Rad::ADvar<double>;

double data_of(double x) { return x; }
double data_of(const Value& x) { return x.data(); }
double data_of(const Rad& x) { return x.val(); }
double data_of(const adouble& x) { return x.value(); }

}  // namespace

#include "../scalar/kernels.hpp"

namespace {

using namespace scalar_kernels;

/// One evaluation of each kind, as a callable that returns the value and
/// leaves the gradient where `first_grad` reads it.
struct Runner {
  std::string name;
  std::function<double()> once;
  std::function<double()> first_grad;  // d f / d (first input)
};

constexpr int kTag = 1;

std::vector<Runner> runners(Case c) {
  std::vector<Runner> r;
  {
    auto p = std::make_shared<Problem<double>>();
    r.push_back({"double", [c, p] { return run(c, *p); }, [] { return 0.0; }});
  }
  {
    auto tape = std::make_shared<tapegrad::Tape>();
    auto p = std::make_shared<std::unique_ptr<Problem<Value>>>();
    auto grad = std::make_shared<double>(0);
    r.push_back({"tapegrad",
                 [c, tape, p, grad] {
                   tapegrad::Tape::Scope use(*tape);
                   if (!*p) *p = std::make_unique<Problem<Value>>();
                   double v;
                   {
                     Value y = run(c, **p);
                     y.backward();
                     v = y.data();
                     *grad = inputs_of(c, **p)[0]->grad();
                   }
                   tape->clear();
                   return v;
                 },
                 [grad] { return *grad; }});
  }
  {
    auto p = std::make_shared<Problem<Rad>>();
    auto q = std::make_shared<Problem<double>>();
    r.push_back({"Sacado",
                 [c, p, q] {
                   // Assigning a double makes a fresh independent variable.
                   auto in = inputs_of(c, *p);
                   auto vals = inputs_of(c, *q);
                   for (std::size_t i = 0; i < in.size(); ++i) *in[i] = *vals[i];
                   Rad y = run(c, *p);
                   Rad::Gradcomp();
                   return y.val();
                 },
                 [c, p] { return inputs_of(c, *p)[0]->adj(); }});
  }
  {
    auto q = std::make_shared<Problem<double>>();
    auto x = std::make_shared<std::vector<double>>();
    for (double* v : inputs_of(c, *q)) x->push_back(*v);
    auto g = std::make_shared<std::vector<double>>(x->size());
    r.push_back({"ADOL-C",
                 [c, x, g] {
                   double out = 0;
                   trace_on(kTag);
                   {
                     Problem<adouble> p;
                     auto in = inputs_of(c, p);
                     for (std::size_t i = 0; i < in.size(); ++i) *in[i] <<= (*x)[i];
                     adouble y = run(c, p);
                     y >>= out;
                   }
                   trace_off();
                   gradient(kTag, static_cast<int>(x->size()), x->data(), g->data());
                   return out;
                 },
                 [g] { return (*g)[0]; }});
  }
  {
    auto x = std::make_shared<std::vector<double>>();
    Problem<double> q;
    for (double* v : inputs_of(c, q)) x->push_back(*v);
    auto rec = std::make_shared<tapegrad::Recording<double>>(tapegrad::record(
        [c](const std::vector<Value>& in) {
          Problem<Value> p;
          auto slots = inputs_of(c, p);
          for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = in[i];
          return run(c, p);
        },
        *x));
    auto g = std::make_shared<std::vector<double>>(x->size());
    r.push_back({"tapegrad replay", [rec, x, g] { return rec->value_and_grad(*x, *g); }, [g] { return (*g)[0]; }});
  }
  {
    auto x = std::make_shared<std::vector<double>>();
    Problem<double> q;
    for (double* v : inputs_of(c, q)) x->push_back(*v);
    auto g = std::make_shared<std::vector<double>>(x->size());
    trace_on(kTag + 1);
    {
      Problem<adouble> p;
      auto in = inputs_of(c, p);
      for (std::size_t i = 0; i < in.size(); ++i) *in[i] <<= (*x)[i];
      adouble y = run(c, p);
      double out = 0;
      y >>= out;
    }
    trace_off();
    r.push_back({"ADOL-C taped once",
                 [x, g] {
                   // gradient() evaluates the trace at x (the value is not returned) and sweeps it back.
                   gradient(kTag + 1, static_cast<int>(x->size()), x->data(), g->data());
                   return (*g)[0];
                 },
                 [g] { return (*g)[0]; }});
  }
  return r;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

}  // namespace

int main() {
  constexpr int kRounds = 8;
  std::printf("scalar gradient / primal time, median of %d rounds (lower is better)\n", kRounds);
  std::printf("%-10s %12s %10s %10s %10s %10s %10s\n", "function", "primal ns", "tapegrad", "Sacado", "ADOL-C",
              "tg replay", "ADOL-C 1x");
  for (Case c : kCases) {
    std::vector<Runner> rs = runners(c);
    // Check: every library's first gradient entry agrees with tapegrad's.
    for (Runner& r : rs) r.once();
    const double ref = rs[1].first_grad();
    for (std::size_t i = 2; i < rs.size(); ++i)
      if (std::abs(rs[i].first_grad() - ref) > 1e-9 * std::max(1.0, std::abs(ref))) {
        std::printf("%s: %s's gradient %.12g differs from tapegrad's %.12g\n", name_of(c), rs[i].name.c_str(),
                    rs[i].first_grad(), ref);
        return 1;
      }
    // Repetitions per round: about 20 ms of the slowest library.
    std::vector<int> reps(rs.size());
    for (std::size_t i = 0; i < rs.size(); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      int n = 0;
      while (seconds_since(t0) < 0.02) rs[i].once(), ++n;
      reps[i] = std::max(1, n);
    }
    std::vector<std::vector<double>> ns(rs.size());
    volatile double sink = 0;
    for (int round = 0; round < kRounds; ++round)
      for (std::size_t i = 0; i < rs.size(); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int k = 0; k < reps[i]; ++k) sink = sink + rs[i].once();
        ns[i].push_back(seconds_since(t0) * 1e9 / reps[i]);
      }
    const double primal = median(ns[0]);
    std::printf("%-10s %12.0f %10.2f %10.2f %10.2f %10.2f %10.2f\n", name_of(c), primal, median(ns[1]) / primal,
                median(ns[2]) / primal, median(ns[3]) / primal, median(ns[4]) / primal, median(ns[5]) / primal);
  }
  return 0;
}
