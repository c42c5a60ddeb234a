// SPDX-License-Identifier: MIT
//
// Chapter 6: an op of your own.
//
// tapegrad's tensor ops are each one call to `make_op`: a name, the output
// shape, the inputs, then a forward function and a backward function side by
// side. Your ops are written the same way. Here we write SiLU again, under
// its other name swish (the library's own is `tapegrad::silu`, made the same way),
//
//     y = x * sigmoid(x),   dy/dx = s (1 + x (1 - s))   with s = sigmoid(x),
//
// check its gradient against finite differences, see it in the printed graph,
// and watch gradcheck catch a backward rule with a mistake in it. Last, an op
// whose backward rule needs something its forward pass found (where each
// row's maximum was) saves it with the node through `save` and reads it back
// in backward with `saved`.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"
#include "testing.hpp"

using tapegrad::basic_tensor;
using tapegrad::OpContext;
using tapegrad::testing::random_tensor;

namespace {

// Written as a template over the element type, so gradcheck can run it in double.
template <std::floating_point T>
basic_tensor<T> swish(const basic_tensor<T>& x) {
  return tapegrad::make_op<T>(
      "swish", x.shape(), {x},
      // forward: fill the output from the input (flat Eigen arrays)
      [](OpContext<T>& c) {
        const auto v = c.in_vec(0);
        c.out_vec() = v / (T(1) + (-v).exp());
      },
      // backward: add dL/dy * dy/dx into the input's gradient
      [](OpContext<T>& c) {
        const auto v = c.in_vec(0);
        const auto s = (T(1) + (-v).exp()).inverse();
        c.in_grad_vec(0) += c.out_grad_vec() * s * (T(1) + v * (T(1) - s));
      });
}

// The same op with a slip in its backward rule: the factor (1 - s) is missing.
template <std::floating_point T>
basic_tensor<T> swish_wrong(const basic_tensor<T>& x) {
  return tapegrad::make_op<T>(
      "swish_wrong", x.shape(), {x},
      [](OpContext<T>& c) {
        const auto v = c.in_vec(0);
        c.out_vec() = v / (T(1) + (-v).exp());
      },
      [](OpContext<T>& c) {
        const auto v = c.in_vec(0);
        const auto s = (T(1) + (-v).exp()).inverse();
        c.in_grad_vec(0) += c.out_grad_vec() * s * (T(1) + v);
      });
}

// The maximum of each row of x [N, D], shape [N]. d/dx = 1 at the row's
// arg-max, 0 elsewhere: forward finds the arg-max, backward reuses it.
template <std::floating_point T>
basic_tensor<T> row_max(const basic_tensor<T>& x) {
  const tapegrad::index_t n = x.size(0), d = x.size(1);
  return tapegrad::make_op<T>(
      "row_max", tapegrad::Shape{n}, {x},
      [n, d](OpContext<T>& c) {
        // Tape memory kept with the node, freed with it: no heap allocation per step.
        tapegrad::index_t* arg = c.template save<tapegrad::index_t>(n);
        for (tapegrad::index_t r = 0; r < n; ++r) {
          const T* row = c.in(0) + r * d;
          arg[r] = std::max_element(row, row + d) - row;  // the first maximum on ties
          c.out()[r] = row[arg[r]];
        }
      },
      [n, d](OpContext<T>& c) {
        const tapegrad::index_t* arg = c.template saved<tapegrad::index_t>(0);
        T* g = c.in_grad(0);
        for (tapegrad::index_t r = 0; r < n; ++r) g[r * d + arg[r]] += c.out_grad()[r];
      });
}

}  // namespace

TEST_CASE("tutorial 6.1: swish by hand at 0") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  auto x = tapegrad::from<double>({0.0}, true);
  auto y = swish(x);
  CHECK(y.item() == 0.0);  // 0 * sigmoid(0)
  y.backward();
  CHECK(x.grad()[0] == 0.5);  // s (1 + 0) = sigmoid(0) = 1/2
}

TEST_CASE("tutorial 6.2: gradcheck agrees with the backward rule") {
  auto r = tapegrad::gradcheck([](const auto& in) { return swish(in[0]); }, {random_tensor({3, 4}, 6, -3.0, 3.0)});
  CHECK_MESSAGE(r.passed, r.report());
}

TEST_CASE("tutorial 6.3: ... and catches one with a mistake") {
  auto r =
      tapegrad::gradcheck([](const auto& in) { return swish_wrong(in[0]); }, {random_tensor({3, 4}, 6, -3.0, 3.0)});
  CHECK_FALSE(r.passed);
  // The report names the worst entry with both gradients, for debugging.
  CHECK(r.report().find("FAILED") != std::string::npos);
}

TEST_CASE("tutorial 6.4: the op shows up in the graph under its name") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  auto w = tapegrad::from<double>({{1, -1}, {2, 0}}, true);
  auto loss = tapegrad::sum(swish(w) * 2.0);
  const std::string table = tapegrad::tape_table(loss);
  //   node           op          shape   grad  inputs
  //   leaf0          leaf        [2, 2]  yes   []
  //   swish#0         swish        [2, 2]  yes   [leaf0]
  //   mul_scalar#1   mul_scalar  [2, 2]  yes   [swish#0]
  //   sum#2          sum         []      yes   [mul_scalar#1]
  CHECK(table.find("swish#0") != std::string::npos);
  CHECK(table.find("[swish#0]") != std::string::npos);  // mul_scalar reads swish's output
  CHECK(tapegrad::to_dot(loss).find("swish#0\\n[2, 2]") != std::string::npos);
}

TEST_CASE("tutorial 6.5: an op that saves what its forward pass found") {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  auto x = tapegrad::from<double>({{1, 5, 2}, {7, 0, 3}}, true);
  auto m = row_max(x);
  CHECK(m.to_vector() == std::vector<double>{5, 7});
  tapegrad::sum(m * tapegrad::from<double>({10, 100})).backward();
  // Row 0 sends 10 to its maximum (column 1), row 1 sends 100 to column 0.
  CHECK(x.grad_tensor().to_vector() == std::vector<double>{0, 10, 0, 100, 0, 0});

  auto r = tapegrad::gradcheck([](const auto& in) { return row_max(in[0]); }, {random_tensor({4, 5}, 9)});
  CHECK_MESSAGE(r.passed, r.report());
}
