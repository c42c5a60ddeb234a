// SPDX-License-Identifier: MIT
#pragma once

// The tensor ops the generator draws from, one maker per op (or op and
// variant), grouped by family: elementwise (with broadcasting), reduce,
// linalg, shape, nn, barrier.

#include <numeric>
#include <string>
#include <vector>

#include "tensor_program.hpp"

namespace tapegrad::fuzz {

namespace detail {

using Args = std::vector<DTensor>;
using Apply = std::function<DTensor(const Args&)>;
using Valid = std::function<bool(const Args&)>;

inline bool any_shape(const Shape&) { return true; }

/// A unary elementwise op on any entry.
inline TensorOpMaker unary(const std::string& name, Apply f, Valid ok, const std::string& code) {
  return {"elementwise", [=](TensorBuilder& b, TensorNode& n) {
            n = make_node(name, {b.pick(any_shape)}, f, ok, code);
            return true;
          }};
}

/// A binary elementwise op: the second operand broadcasts against the first
/// (an earlier entry when one fits, else a new input), in either order.
inline TensorOpMaker binary(const std::string& name, Apply f, Valid ok, const std::string& code) {
  return {"elementwise", [=](TensorBuilder& b, TensorNode& n) {
            const int a = b.pick(any_shape);
            const Shape sa = b.shape(a);
            int c = b.ch.chance(0.5) ? b.pick([&](const Shape& s) { return broadcastable(sa, s); }) : -1;
            if (c < 0) c = b.input(broadcast_variant(b.ch, sa), 0.3, 2);
            n = make_node(name, b.ch.chance(0.5) ? std::vector<int>{a, c} : std::vector<int>{c, a}, f, ok, code);
            return true;
          }};
}

/// A random axis of a shape of rank r, sometimes negative.
inline int random_axis(Choices& ch, int r) {
  const int a = ch.below(r);
  return ch.chance(0.3) ? a - r : a;
}

/// A reduction along one axis, keepdim or not.
inline TensorOpMaker reduce_axis(const std::string& name, std::function<DTensor(const DTensor&, int, bool)> f,
                                 bool kink_at_ties) {
  return {"reduce", [=](TensorBuilder& b, TensorNode& n) {
            const int x = b.pick(any_shape);
            const int r = b.shape(x).rank();
            const int axis = random_axis(b.ch, r);
            const bool keep = b.ch.chance(0.5);
            Valid ok;
            if (kink_at_ties)
              ok = [axis, r](const Args& a) { return top_gap(a[0], axis < 0 ? axis + r : axis) > 0.05; };
            n = make_node(
                name, {x}, [=](const Args& a) { return f(a[0], axis, keep); }, ok,
                name + "(%0, " + std::to_string(axis) + ", " + (keep ? "true" : "false") + ")");
            return true;
          }};
}

}  // namespace detail

/// Every maker, each op family represented.
inline std::vector<TensorOpMaker> tensor_op_makers() {
  using namespace detail;
  const auto pos = [](const Args& a) { return a[0].data().minCoeff() > 0.1; };
  const auto away0 = [](const Args& a) { return gap_from(a[0], 0) > 0.05; };
  std::vector<TensorOpMaker> m = {
      // elementwise
      unary(
          "neg", [](const Args& a) { return -a[0]; }, {}, "-%0"),
      unary(
          "exp", [](const Args& a) { return exp(a[0]); }, [](const Args& a) { return a[0].data().maxCoeff() < 4; },
          "exp(%0)"),
      unary(
          "log", [](const Args& a) { return log(a[0]); }, pos, "log(%0)"),
      unary(
          "sqrt", [](const Args& a) { return sqrt(a[0]); }, pos, "sqrt(%0)"),
      unary(
          "pow_const", [](const Args& a) { return pow(a[0], 1.5); }, pos, "pow(%0, 1.5)"),
      unary(
          "square", [](const Args& a) { return pow(a[0], 2.0); }, {}, "pow(%0, 2.0)"),
      unary(
          "abs", [](const Args& a) { return abs(a[0]); }, away0, "abs(%0)"),
      unary(
          "tanh", [](const Args& a) { return tanh(a[0]); }, {}, "tanh(%0)"),
      unary(
          "sigmoid", [](const Args& a) { return sigmoid(a[0]); }, {}, "sigmoid(%0)"),
      unary(
          "relu", [](const Args& a) { return relu(a[0]); }, away0, "relu(%0)"),
      unary(
          "gelu", [](const Args& a) { return gelu(a[0]); }, {}, "gelu(%0)"),
      unary(
          "clamp", [](const Args& a) { return clamp(a[0], -0.5, 0.5); },
          [](const Args& a) { return gap_from(a[0], 0.5) > 0.05 && gap_from(a[0], -0.5) > 0.05; },
          "clamp(%0, -0.5, 0.5)"),
      unary(
          "affine", [](const Args& a) { return a[0] * 0.5 + 0.25; }, {}, "%0 * 0.5 + 0.25"),
      unary(
          "reciprocal", [](const Args& a) { return 1.0 / a[0]; }, [](const Args& a) { return gap_from(a[0], 0) > 0.3; },
          "1.0 / %0"),
      unary(
          "rsub", [](const Args& a) { return 2.0 - a[0]; }, {}, "2.0 - %0"),
      binary(
          "add", [](const Args& a) { return a[0] + a[1]; }, {}, "%0 + %1"),
      binary(
          "sub", [](const Args& a) { return a[0] - a[1]; }, {}, "%0 - %1"),
      binary(
          "mul", [](const Args& a) { return a[0] * a[1]; }, {}, "%0 * %1"),
      binary(
          "div", [](const Args& a) { return a[0] / a[1]; }, [](const Args& a) { return gap_from(a[1], 0) > 0.3; },
          "%0 / %1"),
      binary(
          "pow", [](const Args& a) { return pow(a[0], a[1]); },
          [](const Args& a) {
            return a[0].data().minCoeff() > 0.1 && a[0].data().maxCoeff() < 20 && a[1].data().cwiseAbs().maxCoeff() < 3;
          },
          "pow(%0, %1)"),
      {"elementwise",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int c = b.input(b.shape(a));
         std::vector<double> mask(static_cast<std::size_t>(b.shape(a).numel()));
         for (double& v : mask) v = b.ch.chance(0.5) ? 1.0 : 0.0;
         const Shape s = b.shape(a);
         n = make_node(
             "where", {a, c}, [=](const Args& x) { return where(DTensor(s, mask), x[0], x[1]); }, {},
             "where(DTensor(Shape" + list_text(s.dims()) + ", std::vector<double>" + list_text(mask) + "), %0, %1)");
         return true;
       }},
      // reduce
      reduce_axis(
          "sum", [](const DTensor& x, int ax, bool k) { return sum(x, ax, k); }, false),
      reduce_axis(
          "mean", [](const DTensor& x, int ax, bool k) { return mean(x, ax, k); }, false),
      reduce_axis(
          "max", [](const DTensor& x, int ax, bool k) { return max(x, ax, k); }, true),
      reduce_axis(
          "logsumexp", [](const DTensor& x, int ax, bool k) { return logsumexp(x, ax, k); }, false),
      {"reduce",
       [](TensorBuilder& b, TensorNode& n) {
         n = make_node(
             "max_all", {b.pick(any_shape)}, [](const Args& a) { return max(a[0]); },
             [](const Args& a) { return top_gap(a[0], 99) > 0.05; }, "max(%0)");
         return true;
       }},
      // linalg: a [.., m, k] (or transposed) times a new input b of the matching shape
      {"linalg",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick([](const Shape& s) { return s.rank() >= 2; });
         if (a < 0) return false;
         const bool ta = b.ch.chance(0.3), tb = b.ch.chance(0.3);
         std::vector<index_t> d = b.shape(a).dims();
         const index_t inner = ta ? d[d.size() - 2] : d.back();
         const index_t cols = 1 + b.ch.below(4);
         d.pop_back();
         d.pop_back();
         d.push_back(tb ? cols : inner);
         d.push_back(tb ? inner : cols);
         const int w = b.input(Shape(d));
         n = make_node(
             "matmul", {a, w},
             [=](const Args& x) { return matmul(x[0], x[1], MatmulOptions{.transpose_a = ta, .transpose_b = tb}); }, {},
             std::string("matmul(%0, %1, {.transpose_a = ") + (ta ? "true" : "false") +
                 ", .transpose_b = " + (tb ? "true" : "false") + "})");
         return true;
       }},
      // shape
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         std::vector<index_t> d = b.shape(a).dims();
         if (b.ch.chance(0.5))
           d = {b.shape(a).numel()};
         else
           std::reverse(d.begin(), d.end());
         n = make_node(
             "reshape", {a}, [=](const Args& x) { return reshape(x[0], d); }, {},
             "reshape(%0, std::vector<index_t>" + list_text(d) + ")");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick([](const Shape& s) { return s.rank() >= 2; });
         if (a < 0) return false;
         std::vector<int> perm(static_cast<std::size_t>(b.shape(a).rank()));
         std::iota(perm.begin(), perm.end(), 0);
         for (std::size_t i = perm.size(); i-- > 1;)
           std::swap(perm[i], perm[static_cast<std::size_t>(b.ch.below(static_cast<int>(i) + 1))]);
         n = make_node(
             "permute", {a}, [=](const Args& x) { return permute(x[0], perm); }, {},
             "permute(%0, std::vector<int>" + list_text(perm) + ")");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick([](const Shape& s) { return s.rank() >= 2; });
         if (a < 0) return false;
         n = make_node(
             "transpose", {a}, [](const Args& x) { return transpose(x[0]); }, {}, "transpose(%0)");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int dim = b.ch.below(b.shape(a).rank());
         const index_t size = b.shape(a)[dim];
         const index_t start = b.ch.below(static_cast<int>(size));
         const index_t len = 1 + b.ch.below(static_cast<int>(size - start));
         n = make_node(
             "narrow", {a}, [=](const Args& x) { return narrow(x[0], dim, start, len); }, {},
             "narrow(%0, " + std::to_string(dim) + ", " + std::to_string(start) + ", " + std::to_string(len) + ")");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int dim = b.ch.below(b.shape(a).rank());
         std::vector<index_t> d = b.shape(a).dims();
         d[static_cast<std::size_t>(dim)] = 1 + b.ch.below(3);
         const int c = b.input(Shape(d));
         n = make_node(
             "concat", {a, c},
             [=](const Args& x) {
               return concat(std::vector<DTensor>{x[0], x[1]}, dim);
             },
             {}, "concat(std::vector<DTensor>{%0, %1}, " + std::to_string(dim) + ")");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int dim = b.ch.below(b.shape(a).rank());
         const index_t size = b.shape(a)[dim];
         const index_t chunk = 1 + b.ch.below(static_cast<int>(size));
         const int piece = b.ch.below(static_cast<int>((size + chunk - 1) / chunk));
         n = make_node(
             "split", {a}, [=](const Args& x) { return split(x[0], chunk, dim)[static_cast<std::size_t>(piece)]; }, {},
             "split(%0, " + std::to_string(chunk) + ", " + std::to_string(dim) + ")[" + std::to_string(piece) + "]");
         return true;
       }},
      {"shape",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int dim = b.ch.below(b.shape(a).rank());
         std::vector<index_t> idx(static_cast<std::size_t>(1 + b.ch.below(4)));
         for (auto& i : idx) i = b.ch.below(static_cast<int>(b.shape(a)[dim]));
         n = make_node(
             "index_select", {a}, [=](const Args& x) { return index_select(x[0], dim, idx); }, {},
             "index_select(%0, " + std::to_string(dim) + ", std::vector<index_t>" + list_text(idx) + ")");
         return true;
       }},
      // nn
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int axis = random_axis(b.ch, b.shape(a).rank());
         if (b.ch.chance(0.5))
           n = make_node(
               "softmax", {a}, [=](const Args& x) { return softmax(x[0], axis); }, {},
               "softmax(%0, " + std::to_string(axis) + ")");
         else
           n = make_node(
               "log_softmax", {a}, [=](const Args& x) { return log_softmax(x[0], axis); }, {},
               "log_softmax(%0, " + std::to_string(axis) + ")");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick([](const Shape& s) { return s[-1] >= 2; });
         if (a < 0) return false;
         const index_t d = b.shape(a)[-1];
         const int g = b.input(Shape{d}, 0.5, 1.5), be = b.input(Shape{d});
         n = make_node(
             "layer_norm", {a, g, be}, [](const Args& x) { return layer_norm(x[0], x[1], x[2]); },
             [d](const Args& x) {
               // Rows of nearly equal values make 1/std huge: keep their spread wide.
               const auto v = x[0].data();
               for (Eigen::Index r = 0; r < v.size() / d; ++r) {
                 const auto row = v.segment(r * d, d);
                 if ((row.array() - row.mean()).square().mean() < 0.05) return false;
               }
               return true;
             },
             "layer_norm(%0, %1, %2)");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick([](const Shape& s) { return s.rank() <= 2; });
         if (a < 0) return false;
         const index_t rows = b.shape(a).rank() == 2 ? b.shape(a)[0] : 1, classes = b.shape(a)[-1];
         std::vector<index_t> t(static_cast<std::size_t>(rows));
         for (auto& v : t) v = b.ch.below(static_cast<int>(classes));
         n = make_node(
             "cross_entropy", {a}, [=](const Args& x) { return cross_entropy(x[0], std::span<const index_t>(t)); }, {},
             "cross_entropy(%0, std::vector<index_t>" + list_text(t) + ")");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int t = b.input(b.shape(a));
         n = make_node(
             "mse_loss", {a, t}, [](const Args& x) { return mse_loss(x[0], x[1]); }, {}, "mse_loss(%0, %1)");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         // q [.., Tq, D] against new k [.., Tk, D] and v [.., Tk, Dv].
         const int q = b.pick([](const Shape& s) { return s.rank() >= 2; });
         if (q < 0) return false;
         std::vector<index_t> kd = b.shape(q).dims(), vd;
         const bool causal = b.ch.chance(0.3);
         if (!causal) kd[kd.size() - 2] = 1 + b.ch.below(4);
         vd = kd;
         vd.back() = 1 + b.ch.below(4);
         const int k = b.input(Shape(kd)), v = b.input(Shape(vd));
         n = make_node(
             "attention", {q, k, v},
             [=](const Args& x) { return scaled_dot_product_attention(x[0], x[1], x[2], causal); }, {},
             std::string("scaled_dot_product_attention(%0, %1, %2, ") + (causal ? "true" : "false") + ")");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const Shape s = broadcast_variant(b.ch, b.shape(a));
         std::vector<double> mask(static_cast<std::size_t>(s.numel()));
         for (double& v : mask) v = b.ch.chance(0.3) ? 1.0 : 0.0;
         n = make_node(
             "masked_fill", {a}, [=](const Args& x) { return masked_fill(x[0], DTensor(s, mask), -0.75); }, {},
             "masked_fill(%0, DTensor(Shape" + list_text(s.dims()) + ", std::vector<double>" + list_text(mask) +
                 "), -0.75)");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const std::uint64_t seed = b.ch.next() % 1000;
         n = make_node(
             "dropout", {a},
             [=](const Args& x) {
               Generator gen(seed);  // a fresh generator per call: the same mask every evaluation
               return dropout(x[0], 0.4, gen);
             },
             {}, "dropout(%0, 0.4, gen)  /* Generator gen(" + std::to_string(seed) + ") */");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int w = b.pick([](const Shape& s) { return s.rank() == 2; });
         if (w < 0) return false;
         std::vector<index_t> ids(static_cast<std::size_t>(1 + b.ch.below(4)));
         for (auto& i : ids) i = b.ch.below(static_cast<int>(b.shape(w)[0]));
         n = make_node(
             "embedding", {w}, [=](const Args& x) { return embedding(x[0], std::span<const index_t>(ids)); }, {},
             "embedding(%0, std::vector<index_t>" + list_text(ids) + ")");
         return true;
       }},
      {"nn",
       [](TensorBuilder& b, TensorNode& n) {
         const int a = b.pick(any_shape);
         const int bias = b.input(Shape{b.shape(a)[-1]});
         const int which = b.ch.below(3);
         const Activation act = which == 0 ? Activation::none : which == 1 ? Activation::relu : Activation::gelu;
         const char* act_name = which == 0 ? "none" : which == 1 ? "relu" : "gelu";
         n = make_node(
             "bias_act", {a, bias}, [=](const Args& x) { return bias_act(x[0], x[1], act); },
             [=](const Args& x) { return act != Activation::relu || gap_from(detached(x[0] + x[1]), 0) > 0.05; },
             std::string("bias_act(%0, %1, Activation::") + act_name + ")");
         return true;
       }},
      // barrier
      {"barrier",
       [](TensorBuilder& b, TensorNode& n) {
         n = make_node(
             "stop_gradient", {b.pick(any_shape)}, [](const Args& x) { return stop_gradient(x[0]); }, {},
             "stop_gradient(%0)");
         n.barrier = true;
         return true;
       }},
  };
  return m;
}

}  // namespace tapegrad::fuzz
