// SPDX-License-Identifier: MIT
//
// Tensor ops at the sizes of the example transformer (batch 32 x sequence 8 =
// 256 rows, d_model 64, feed-forward 256, 4 heads of 16, vocabulary 20),
// measured in one run against up to three peers:
//
//   eigen_primal   the forward pass alone, written directly with Eigen: the
//                  cost of the arithmetic, with no gradient at all;
//   eigen_manual   forward and backward written by hand with Eigen: what a
//                  gradient costs with no framework around it;
//   tapegrad       forward and backward through the tape (record, backward(),
//                  clear);
//   libtorch       forward and backward with torch::Tensor and autograd, when
//                  the program is built with TAPEGRAD_HAVE_TORCH=1.
//
// Everything runs on one thread (Eigen is not built with OpenMP here, and
// libtorch is set to one thread), so the ratios compare the same work.
//
// After Google Benchmark's table the program prints a summary of ratios, each
// from the best CPU time of the repetitions, and the heap allocations of one
// warm tapegrad forward and backward (operator new is replaced to count them).

#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <tapegrad/tensor/attention.hpp>
#include <tapegrad/tensor/creation.hpp>
#include <tapegrad/tensor/linalg.hpp>
#include <tapegrad/tensor/nn_functional.hpp>
#include <tapegrad/tensor/tensor.hpp>

// The training step is timed on the example's own model when it is there.
#if __has_include("../../examples/transformer/model.hpp") && __has_include(<tapegrad/optim.hpp>)
#include <tapegrad/optim.hpp>

#include "../../examples/transformer/model.hpp"
#define TAPEGRAD_BENCH_TRANSFORMER 1
#else
#define TAPEGRAD_BENCH_TRANSFORMER 0
#endif

#ifndef TAPEGRAD_HAVE_TORCH
#define TAPEGRAD_HAVE_TORCH 0
#endif
#if TAPEGRAD_HAVE_TORCH
#include <torch/torch.h>
#endif

// ---------------------------------------------------------------------------
// Counting heap allocations (see the scalar benchmark): read around one warm
// tapegrad evaluation, outside the timed loops.

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

[[gnu::noinline]] void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t size) { return ::operator new(size); }
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
[[gnu::noinline]] void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return ::operator new(size, tag);
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using tapegrad::index_t;
using tapegrad::Shape;
using tapegrad::Tensor;

// The example transformer's sizes.
constexpr index_t kBatch = 32, kSeq = 8, kRows = kBatch * kSeq;  // 256 rows
constexpr index_t kModel = 64, kFfn = 256, kHeads = 4, kHeadDim = kModel / kHeads, kVocab = 20;
constexpr float kEps = 1e-5f;

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<Mat>;
using CMap = Eigen::Map<const Mat>;
using Arr = Eigen::Array<float, Eigen::Dynamic, 1>;
using ArrMap = Eigen::Map<Eigen::Array<float, Eigen::Dynamic, 1>>;
using CArrMap = Eigen::Map<const Eigen::Array<float, Eigen::Dynamic, 1>>;

// ---------------------------------------------------------------------------
// Inputs, drawn once from a fixed seed; every peer copies them.

std::vector<float> draw(index_t n, double scale, tapegrad::Generator& gen) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = static_cast<float>(scale * gen.normal());
  return v;
}

struct Inputs {
  std::vector<float> mm_x, mm_w;        // matmul [256, 64] x [64, 256]
  std::vector<float> ln_x, ln_g, ln_b;  // layer_norm over [256, 64]
  std::vector<float> logits;            // cross_entropy [256, 20]
  std::vector<index_t> targets;         // 256 classes in [0, 20)
  std::vector<float> q, k, v;           // attention [32, 4, 8, 16] each
};

const Inputs& inputs() {
  static const Inputs in = [] {
    tapegrad::Generator gen(7);
    Inputs r;
    r.mm_x = draw(kRows * kModel, 1.0, gen);
    r.mm_w = draw(kModel * kFfn, 0.125, gen);
    r.ln_x = draw(kRows * kModel, 2.0, gen);
    r.ln_g = draw(kModel, 0.2, gen);
    for (float& g : r.ln_g) g += 1.0f;
    r.ln_b = draw(kModel, 0.1, gen);
    r.logits = draw(kRows * kVocab, 2.0, gen);
    r.targets.resize(kRows);
    for (index_t& t : r.targets) t = static_cast<index_t>(gen.next() % kVocab);
    const index_t n = kBatch * kHeads * kSeq * kHeadDim;
    r.q = draw(n, 1.0, gen);
    r.k = draw(n, 1.0, gen);
    r.v = draw(n, 1.0, gen);
    return r;
  }();
  return in;
}

// ---------------------------------------------------------------------------
// The Eigen peers: each op written once as a forward (the primal) and once as
// forward plus hand-written backward. `Buffers` holds their outputs and
// gradients, allocated once; the backward passes accumulate, as autograd does.

struct Buffers {
  std::vector<float> y, dx, dw, db, stats, attn, ds, seed;
  explicit Buffers(index_t n_out, index_t n_dx, index_t n_dw = 0, index_t n_db = 0, index_t n_stats = 0)
      : y(static_cast<std::size_t>(n_out)),
        dx(static_cast<std::size_t>(n_dx)),
        dw(static_cast<std::size_t>(n_dw)),
        db(static_cast<std::size_t>(n_db)),
        stats(static_cast<std::size_t>(n_stats)),
        seed(static_cast<std::size_t>(n_out), 1.0f) {}
};

// matmul: Y = X W;  dX = G W^T, dW = X^T G.
void eigen_matmul(const Inputs& in, Buffers& b, bool backward) {
  CMap X(in.mm_x.data(), kRows, kModel), W(in.mm_w.data(), kModel, kFfn);
  Map Y(b.y.data(), kRows, kFfn);
  Y.noalias() = X * W;
  if (!backward) return;
  CMap G(b.seed.data(), kRows, kFfn);
  Map(b.dx.data(), kRows, kModel).noalias() += G * W.transpose();
  Map(b.dw.data(), kModel, kFfn).noalias() += X.transpose() * G;
}

// layer_norm per row: y = (x - mean) rstd gamma + beta;
// dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy gamma.
void eigen_layer_norm(const Inputs& in, Buffers& b, bool backward) {
  CArrMap gamma(in.ln_g.data(), kModel), beta(in.ln_b.data(), kModel);
  for (index_t r = 0; r < kRows; ++r) {
    CArrMap x(in.ln_x.data() + r * kModel, kModel);
    const float mu = x.mean();
    const float rstd = 1.0f / std::sqrt((x - mu).square().mean() + kEps);
    b.stats[static_cast<std::size_t>(2 * r)] = mu;
    b.stats[static_cast<std::size_t>(2 * r + 1)] = rstd;
    ArrMap(b.y.data() + r * kModel, kModel) = (x - mu) * rstd * gamma + beta;
  }
  if (!backward) return;
  ArrMap dgamma(b.dw.data(), kModel), dbeta(b.db.data(), kModel);
  for (index_t r = 0; r < kRows; ++r) {
    const float mu = b.stats[static_cast<std::size_t>(2 * r)], rstd = b.stats[static_cast<std::size_t>(2 * r + 1)];
    CArrMap x(in.ln_x.data() + r * kModel, kModel), dy(b.seed.data() + r * kModel, kModel);
    const Arr xhat = (x - mu) * rstd;
    const Arr g = dy * gamma;
    dbeta += dy;
    dgamma += dy * xhat;
    const float m1 = g.mean(), m2 = (g * xhat).mean();
    ArrMap(b.dx.data() + r * kModel, kModel) += rstd * (g - m1 - xhat * m2);
  }
}

// cross_entropy, mean over rows: loss_r = logsumexp(x_r) - x_r[t_r];
// dx_r = (softmax(x_r) - one_hot(t_r)) / rows.
void eigen_cross_entropy(const Inputs& in, Buffers& b, bool backward) {
  float total = 0.0f;
  for (index_t r = 0; r < kRows; ++r) {
    CArrMap x(in.logits.data() + r * kVocab, kVocab);
    const float m = x.maxCoeff();
    const float lse = m + std::log((x - m).exp().sum());
    b.stats[static_cast<std::size_t>(r)] = lse;
    total += lse - x[in.targets[static_cast<std::size_t>(r)]];
  }
  b.y[0] = total / static_cast<float>(kRows);
  if (!backward) return;
  const float up = 1.0f / static_cast<float>(kRows);
  for (index_t r = 0; r < kRows; ++r) {
    CArrMap x(in.logits.data() + r * kVocab, kVocab);
    ArrMap d(b.dx.data() + r * kVocab, kVocab);
    d += (x - b.stats[static_cast<std::size_t>(r)]).exp() * up;
    d[in.targets[static_cast<std::size_t>(r)]] -= up;
  }
}

// attention per (batch, head): A = softmax(Q K^T / sqrt(Dh)), O = A V;
// dV = A^T dO, dA = dO V^T, dS = A (dA - rowsum(dA A)), dQ = s dS K, dK = s dS^T Q.
struct AttentionBuffers {
  std::vector<float> o, a, ds, dq, dk, dv, seed;
  AttentionBuffers() {
    const auto n = static_cast<std::size_t>(kBatch * kHeads * kSeq * kHeadDim);
    o.resize(n);
    a.resize(static_cast<std::size_t>(kBatch * kHeads * kSeq * kSeq));
    ds.resize(static_cast<std::size_t>(kSeq * kSeq));
    dq.resize(n);
    dk.resize(n);
    dv.resize(n);
    seed.assign(n, 1.0f);
  }
};

void eigen_attention(const Inputs& in, AttentionBuffers& b, bool backward) {
  const float s = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  const index_t qkv = kSeq * kHeadDim, att = kSeq * kSeq;
  for (index_t h = 0; h < kBatch * kHeads; ++h) {
    CMap Q(in.q.data() + h * qkv, kSeq, kHeadDim), K(in.k.data() + h * qkv, kSeq, kHeadDim),
        V(in.v.data() + h * qkv, kSeq, kHeadDim);
    Map A(b.a.data() + h * att, kSeq, kSeq);
    A.noalias() = (s * Q) * K.transpose();
    for (index_t i = 0; i < kSeq; ++i) {
      auto row = A.row(i).array();
      row = (row - row.maxCoeff()).exp();
      row /= row.sum();
    }
    Map(b.o.data() + h * qkv, kSeq, kHeadDim).noalias() = A * V;
  }
  if (!backward) return;
  for (index_t h = 0; h < kBatch * kHeads; ++h) {
    CMap Q(in.q.data() + h * qkv, kSeq, kHeadDim), K(in.k.data() + h * qkv, kSeq, kHeadDim),
        V(in.v.data() + h * qkv, kSeq, kHeadDim), dO(b.seed.data() + h * qkv, kSeq, kHeadDim);
    CMap A(b.a.data() + h * att, kSeq, kSeq);
    Map dS(b.ds.data(), kSeq, kSeq);
    Map(b.dv.data() + h * qkv, kSeq, kHeadDim).noalias() += A.transpose() * dO;
    dS.noalias() = dO * V.transpose();
    for (index_t i = 0; i < kSeq; ++i) {
      const float c = (dS.row(i).array() * A.row(i).array()).sum();
      dS.row(i).array() = A.row(i).array() * (dS.row(i).array() - c);
    }
    Map(b.dq.data() + h * qkv, kSeq, kHeadDim).noalias() += s * (dS * K);
    Map(b.dk.data() + h * qkv, kSeq, kHeadDim).noalias() += s * (dS.transpose() * Q);
  }
}

// ---------------------------------------------------------------------------
// The tapegrad peer: each op's forward and backward on a tape of its own.

Tensor leaf(const std::vector<float>& v, const Shape& shape, bool requires_grad) {
  return tapegrad::from(std::vector<float>(v), shape, requires_grad);
}

const Shape kAttentionShape{kBatch, kHeads, kSeq, kHeadDim};

/// One op's tapegrad case: its leaves, and one forward and backward.
struct TapegradCase {
  std::vector<Tensor> leaves;
  std::function<void()> step;  // forward and backward; the caller clears the tape
  std::function<const float*()> first_grad;
};

TapegradCase tapegrad_case(const std::string& op) {
  const Inputs& in = inputs();
  TapegradCase c;
  if (op == "matmul") {
    Tensor x = leaf(in.mm_x, {kRows, kModel}, true), w = leaf(in.mm_w, {kModel, kFfn}, true);
    Tensor seed = tapegrad::ones<float>({kRows, kFfn});
    c.leaves = {x, w};
    c.step = [x, w, seed] { tapegrad::matmul(x, w).backward(seed); };
  } else if (op == "layer_norm") {
    Tensor x = leaf(in.ln_x, {kRows, kModel}, true), g = leaf(in.ln_g, {kModel}, true),
           b = leaf(in.ln_b, {kModel}, true);
    Tensor seed = tapegrad::ones<float>({kRows, kModel});
    c.leaves = {x, g, b};
    c.step = [x, g, b, seed] { tapegrad::layer_norm(x, g, b, kEps).backward(seed); };
  } else if (op == "cross_entropy") {
    Tensor x = leaf(in.logits, {kRows, kVocab}, true);
    c.leaves = {x};
    c.step = [x] { tapegrad::cross_entropy(x, std::span<const index_t>(inputs().targets)).backward(); };
  } else {  // attention
    Tensor q = leaf(in.q, kAttentionShape, true), k = leaf(in.k, kAttentionShape, true),
           v = leaf(in.v, kAttentionShape, true);
    Tensor seed = tapegrad::ones<float>(kAttentionShape);
    c.leaves = {q, k, v};
    c.step = [q, k, v, seed] { tapegrad::scaled_dot_product_attention(q, k, v).backward(seed); };
  }
  Tensor first = c.leaves[0];
  c.first_grad = [first] { return first.grad().data(); };
  return c;
}

void bench_tapegrad(benchmark::State& state, const std::string& op) {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  TapegradCase c = tapegrad_case(op);
  for (auto _ : state) {
    c.step();
    tape.clear();
  }
}

void bench_eigen(benchmark::State& state, const std::string& op, bool backward) {
  const Inputs& in = inputs();
  if (op == "attention") {
    AttentionBuffers b;
    for (auto _ : state) {
      eigen_attention(in, b, backward);
      benchmark::ClobberMemory();
    }
    return;
  }
  Buffers b = op == "matmul"       ? Buffers(kRows * kFfn, kRows * kModel, kModel * kFfn)
              : op == "layer_norm" ? Buffers(kRows * kModel, kRows * kModel, kModel, kModel, 2 * kRows)
                                   : Buffers(1, kRows * kVocab, 0, 0, kRows);
  auto f = op == "matmul" ? eigen_matmul : op == "layer_norm" ? eigen_layer_norm : eigen_cross_entropy;
  for (auto _ : state) {
    f(in, b, backward);
    benchmark::ClobberMemory();
  }
}

#if TAPEGRAD_HAVE_TORCH
// ---------------------------------------------------------------------------
// The libtorch peer: the same ops with autograd, one thread.

torch::Tensor torch_leaf(const std::vector<float>& v, std::vector<int64_t> shape, bool requires_grad) {
  return torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone().requires_grad_(requires_grad);
}

struct TorchCase {
  std::vector<torch::Tensor> leaves;
  std::function<void()> step;
};

TorchCase torch_case(const std::string& op) {
  const Inputs& in = inputs();
  TorchCase c;
  if (op == "matmul") {
    auto x = torch_leaf(in.mm_x, {kRows, kModel}, true), w = torch_leaf(in.mm_w, {kModel, kFfn}, true);
    auto seed = torch::ones({kRows, kFfn});
    c.leaves = {x, w};
    c.step = [x, w, seed] { torch::mm(x, w).backward(seed); };
  } else if (op == "layer_norm") {
    auto x = torch_leaf(in.ln_x, {kRows, kModel}, true), g = torch_leaf(in.ln_g, {kModel}, true),
         b = torch_leaf(in.ln_b, {kModel}, true);
    auto seed = torch::ones({kRows, kModel});
    c.leaves = {x, g, b};
    c.step = [x, g, b, seed] { torch::layer_norm(x, {kModel}, g, b, kEps).backward(seed); };
  } else if (op == "cross_entropy") {
    auto x = torch_leaf(in.logits, {kRows, kVocab}, true);
    auto t = torch::from_blob(const_cast<index_t*>(in.targets.data()), {kRows}, torch::kInt64).clone();
    c.leaves = {x};
    c.step = [x, t] { torch::nn::functional::cross_entropy(x, t).backward(); };
  } else {  // attention: torch 1.13 has no fused scaled_dot_product_attention; the same three steps
    const std::vector<int64_t> s{kBatch, kHeads, kSeq, kHeadDim};
    auto q = torch_leaf(in.q, s, true), k = torch_leaf(in.k, s, true), v = torch_leaf(in.v, s, true);
    auto seed = torch::ones(s);
    const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
    c.leaves = {q, k, v};
    c.step = [q, k, v, seed, scale] {
      auto a = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * scale, -1);
      torch::matmul(a, v).backward(seed);
    };
  }
  return c;
}

void bench_torch(benchmark::State& state, const std::string& op) {
  TorchCase c = torch_case(op);
  for (auto _ : state) c.step();
}
#endif

#if TAPEGRAD_BENCH_TRANSFORMER
// ---------------------------------------------------------------------------
// A whole training step of the example transformer (embedding, positional
// encoding, two post-LN blocks of 4-head attention and a 64 -> 256 -> 64 ReLU
// feed-forward, mean over the 8 positions, 64 -> 20 output): forward,
// cross-entropy, backward, tape clear and an Adam step, on one batch of 32.

namespace tx = tapegrad_examples::transformer;

struct StepBatch {
  std::vector<index_t> ids, targets;
};

const StepBatch& step_batch() {
  static const StepBatch b = [] {
    tapegrad::Generator gen(11);
    StepBatch r;
    for (index_t i = 0; i < kRows; ++i) r.ids.push_back(static_cast<index_t>(gen.next() % kVocab));
    for (index_t i = 0; i < kBatch; ++i) r.targets.push_back(static_cast<index_t>(gen.next() % kVocab));
    return r;
  }();
  return b;
}

/// The example's model and an Adam optimizer, on a tape of their own.
struct TapegradStep {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use{tape};
  tx::OperationTransformer model;
  tapegrad::optim::Adam opt{model.parameters(), {.lr = 1e-3}};

  float step() {
    const StepBatch& b = step_batch();
    opt.zero_grad();
    float loss_value;
    {
      Tensor loss = tapegrad::cross_entropy(model.forward(b.ids, kBatch), std::span<const index_t>(b.targets));
      loss.backward();
      loss_value = loss.item();
    }
    tape.clear();
    opt.step();
    return loss_value;
  }

  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (const Tensor& p : opt.parameters()) n += static_cast<std::size_t>(p.numel());
    return n;
  }
};

void bench_tapegrad_step(benchmark::State& state) {
  TapegradStep s;
  for (auto _ : state) benchmark::DoNotOptimize(s.step());
}

#if TAPEGRAD_HAVE_TORCH
/// The same model written with libtorch tensors: same sizes, same layer order
/// (post-LN), same loss and optimizer. Initial values differ (they do not
/// change the cost of a step).
struct TorchStep {
  struct Block {
    torch::Tensor wq, wk, wv, wo, ln1_g, ln1_b, w1, b1, w2, b2, ln2_g, ln2_b;
  };
  torch::Tensor embed, position, out_w, out_b;
  std::vector<Block> blocks;
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::Adam> opt;
  torch::Tensor ids, targets;

  TorchStep() {
    torch::manual_seed(3);
    auto param = [&](std::vector<int64_t> shape, double scale) {
      torch::Tensor t = (torch::randn(shape) * scale).requires_grad_(true);
      params.push_back(t);
      return t;
    };
    auto ones = [&](int64_t n) {
      torch::Tensor t = torch::ones({n}).requires_grad_(true);
      params.push_back(t);
      return t;
    };
    auto zeros = [&](int64_t n) {
      torch::Tensor t = torch::zeros({n}).requires_grad_(true);
      params.push_back(t);
      return t;
    };
    embed = param({kVocab, kModel}, 1.0);
    for (int b = 0; b < 2; ++b) {
      Block k;
      k.wq = param({kModel, kModel}, 0.125);
      k.wk = param({kModel, kModel}, 0.125);
      k.wv = param({kModel, kModel}, 0.125);
      k.wo = param({kModel, kModel}, 0.125);
      k.ln1_g = ones(kModel);
      k.ln1_b = zeros(kModel);
      k.w1 = param({kModel, kFfn}, 0.125);
      k.b1 = zeros(kFfn);
      k.w2 = param({kFfn, kModel}, 0.0625);
      k.b2 = zeros(kModel);
      k.ln2_g = ones(kModel);
      k.ln2_b = zeros(kModel);
      blocks.push_back(k);
    }
    out_w = param({kModel, kVocab}, 0.125);
    out_b = zeros(kVocab);
    position = torch::zeros({kSeq, kModel});
    for (int64_t pos = 0; pos < kSeq; ++pos)
      for (int64_t i = 0; i < kModel; ++i) {
        const double angle = static_cast<double>(pos) / std::pow(10000.0, static_cast<double>(i - i % 2) / kModel);
        position[pos][i] = i % 2 == 0 ? std::sin(angle) : std::cos(angle);
      }
    opt = std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
    const StepBatch& b = step_batch();
    ids = torch::from_blob(const_cast<index_t*>(b.ids.data()), {kRows}, torch::kInt64).clone();
    targets = torch::from_blob(const_cast<index_t*>(b.targets.data()), {kBatch}, torch::kInt64).clone();
  }

  torch::Tensor forward() {
    torch::Tensor x = embed.index_select(0, ids).view({kBatch, kSeq, kModel}) + position;
    const double scale = 1.0 / std::sqrt(static_cast<double>(kHeadDim));
    for (const Block& k : blocks) {
      auto heads = [&](const torch::Tensor& w) {
        return x.matmul(w).view({kBatch, kSeq, kHeads, kHeadDim}).permute({0, 2, 1, 3});
      };
      torch::Tensor q = heads(k.wq), kk = heads(k.wk), v = heads(k.wv);
      torch::Tensor a = torch::softmax(q.matmul(kk.transpose(-2, -1)) * scale, -1);
      torch::Tensor o = a.matmul(v).permute({0, 2, 1, 3}).reshape({kBatch, kSeq, kModel}).matmul(k.wo);
      torch::Tensor h = torch::layer_norm(x + o, {kModel}, k.ln1_g, k.ln1_b, kEps);
      torch::Tensor f = torch::relu(h.matmul(k.w1) + k.b1).matmul(k.w2) + k.b2;
      x = torch::layer_norm(h + f, {kModel}, k.ln2_g, k.ln2_b, kEps);
    }
    return x.mean(1).matmul(out_w) + out_b;
  }

  float step() {
    opt->zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(forward(), targets);
    loss.backward();
    opt->step();
    return loss.item<float>();
  }

  std::size_t parameter_count() const {
    std::size_t n = 0;
    for (const torch::Tensor& p : params) n += static_cast<std::size_t>(p.numel());
    return n;
  }
};

void bench_torch_step(benchmark::State& state) {
  TorchStep s;
  for (auto _ : state) benchmark::DoNotOptimize(s.step());
}
#endif
#endif

// ---------------------------------------------------------------------------
// Checks made once, before timing: every peer computes the same gradient.

/// Largest |a - b| / max(1, |b|) over n entries.
double max_rel_diff(const float* a, const float* b, std::size_t n) {
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
  return worst;
}

/// The first input's gradient after one backward, from each peer, compared
/// with the hand-written Eigen one. Returns the worst difference.
double check_gradients(const std::string& op) {
  const Inputs& in = inputs();
  std::vector<float> reference;
  if (op == "attention") {
    AttentionBuffers b;
    eigen_attention(in, b, true);
    reference = b.dq;
  } else {
    Buffers b = op == "matmul"       ? Buffers(kRows * kFfn, kRows * kModel, kModel * kFfn)
                : op == "layer_norm" ? Buffers(kRows * kModel, kRows * kModel, kModel, kModel, 2 * kRows)
                                     : Buffers(1, kRows * kVocab, 0, 0, kRows);
    (op == "matmul" ? eigen_matmul : op == "layer_norm" ? eigen_layer_norm : eigen_cross_entropy)(in, b, true);
    reference = b.dx;
  }
  double worst = 0.0;
  {
    tapegrad::Tape tape;
    tapegrad::Tape::Scope use(tape);
    TapegradCase c = tapegrad_case(op);
    c.step();
    worst = std::max(worst, max_rel_diff(c.first_grad(), reference.data(), reference.size()));
    tape.clear();
  }
#if TAPEGRAD_HAVE_TORCH
  {
    TorchCase c = torch_case(op);
    c.step();
    torch::Tensor g = c.leaves[0].grad().contiguous();
    worst = std::max(worst, max_rel_diff(g.data_ptr<float>(), reference.data(), reference.size()));
  }
#endif
  return worst;
}

/// operator new calls in one warm tapegrad forward, backward and clear.
long tapegrad_allocations(const std::string& op) {
  tapegrad::Tape tape;
  tapegrad::Tape::Scope use(tape);
  TapegradCase c = tapegrad_case(op);
  for (int i = 0; i < 3; ++i) {
    c.step();
    tape.clear();
  }
  const long before = g_allocations.load(std::memory_order_relaxed);
  c.step();
  tape.clear();
  return g_allocations.load(std::memory_order_relaxed) - before;
}

// ---------------------------------------------------------------------------
// Reporting: Google Benchmark's table, then the ratios.

class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  CollectingReporter() : ConsoleReporter(OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.run_type != Run::RT_Iteration || r.error_occurred) continue;
      const double ns = r.GetAdjustedCPUTime() * (r.time_unit == benchmark::kNanosecond    ? 1.0
                                                  : r.time_unit == benchmark::kMicrosecond ? 1e3
                                                  : r.time_unit == benchmark::kMillisecond ? 1e6
                                                                                           : 1e9);
      auto [it, fresh] = best_ns.try_emplace(r.run_name.function_name, ns);
      if (!fresh) it->second = std::min(it->second, ns);
    }
    ConsoleReporter::ReportRuns(runs);
  }

  /// Best CPU time in microseconds, or a negative number when the case did not run.
  double best_us(const std::string& name) const {
    auto it = best_ns.find(name);
    return it == best_ns.end() ? -1.0 : it->second / 1e3;
  }

  std::map<std::string, double> best_ns;
};

const std::vector<std::string> kOps = {"matmul", "layer_norm", "cross_entropy", "attention"};

const char* describe(const std::string& op) {
  if (op == "matmul") return "[256,64]x[64,256]";
  if (op == "layer_norm") return "[256,64]";
  if (op == "cross_entropy") return "[256,20]";
  return "[32,4,8,16]";
}

void print_ratio(double num, double den) {
  if (num > 0 && den > 0)
    std::printf(" %9.2f", num / den);
  else
    std::printf(" %9s", "-");
}

}  // namespace

int main(int argc, char** argv) {
  Eigen::setNbThreads(1);
#if TAPEGRAD_HAVE_TORCH
  torch::set_num_threads(1);
#endif
  // Several interleaved repetitions by default, so the best of them is fair on
  // a shared machine. Flags given on the command line win.
  std::vector<char*> args(argv, argv + argc);
  bool has_reps = false, has_interleave = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    has_reps = has_reps || a.rfind("--benchmark_repetitions", 0) == 0;
    has_interleave = has_interleave || a.rfind("--benchmark_enable_random_interleaving", 0) == 0;
  }
  std::string reps = "--benchmark_repetitions=5";
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  if (!has_reps) args.push_back(reps.data());
  if (!has_interleave) args.push_back(interleave.data());
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;

  double worst = 0.0;
  for (const std::string& op : kOps) worst = std::max(worst, check_gradients(op));
  std::printf("gradient check (tapegrad%s against hand-written Eigen): worst relative difference %.2e\n",
              TAPEGRAD_HAVE_TORCH ? " and libtorch" : "", worst);
  if (!(worst < 1e-4)) {
    std::printf("the peers disagree: not timing them\n");
    return 1;
  }

  for (const std::string& op : kOps) {
    benchmark::RegisterBenchmark((op + "/eigen_primal").c_str(), bench_eigen, op, false);
    benchmark::RegisterBenchmark((op + "/eigen_manual").c_str(), bench_eigen, op, true);
    benchmark::RegisterBenchmark((op + "/tapegrad").c_str(), bench_tapegrad, op);
#if TAPEGRAD_HAVE_TORCH
    benchmark::RegisterBenchmark((op + "/libtorch").c_str(), bench_torch, op);
#endif
  }
#if TAPEGRAD_BENCH_TRANSFORMER
  benchmark::RegisterBenchmark("train_step/tapegrad", bench_tapegrad_step);
#if TAPEGRAD_HAVE_TORCH
  benchmark::RegisterBenchmark("train_step/libtorch", bench_torch_step);
#endif
#endif
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  std::printf("\nSummary: best CPU time per forward+backward over the repetitions (eigen_primal: forward only)\n");
  std::printf("%-14s %-18s %10s %10s %10s %10s | %9s %9s %9s %9s %7s\n", "op", "shape", "primal us", "manual us",
              "tapegrad us", "torch us", "tg/prim", "tg/man", "tg/torch", "torch/pr", "allocs");
  for (const std::string& op : kOps) {
    const double p = reporter.best_us(op + "/eigen_primal"), m = reporter.best_us(op + "/eigen_manual"),
                 t = reporter.best_us(op + "/tapegrad"), l = reporter.best_us(op + "/libtorch");
    std::printf("%-14s %-18s", op.c_str(), describe(op));
    for (double v : {p, m, t, l}) {
      if (v > 0)
        std::printf(" %10.1f", v);
      else
        std::printf(" %10s", "-");
    }
    std::printf(" |");
    print_ratio(t, p);
    print_ratio(t, m);
    print_ratio(t, l);
    print_ratio(l, p);
    std::printf(" %7ld\n", tapegrad_allocations(op));
  }
  std::printf(
      "\ntg/prim: tapegrad forward+backward over the Eigen forward alone; tg/man: over forward+backward\n"
      "written by hand in Eigen (the framework's overhead); tg/torch: over libtorch's forward+backward\n"
      "(below 1: tapegrad is faster); allocs: heap allocations in one warm tapegrad forward+backward.\n");
#if TAPEGRAD_BENCH_TRANSFORMER
  {
    long allocations = 0;
    std::size_t params = 0;
    {
      TapegradStep s;
      for (int i = 0; i < 3; ++i) s.step();
      params = s.parameter_count();
      const long before = g_allocations.load(std::memory_order_relaxed);
      s.step();
      allocations = g_allocations.load(std::memory_order_relaxed) - before;
    }
    const double t = reporter.best_us("train_step/tapegrad"), l = reporter.best_us("train_step/libtorch");
    std::printf("\nTraining step of the example transformer (batch 32; forward, backward, clear, Adam step)\n");
    std::printf("  tapegrad: %zu parameters, %s us per step, %ld heap allocations per warm step\n", params,
                t > 0 ? std::to_string(static_cast<long>(t + 0.5)).c_str() : "-", allocations);
#if TAPEGRAD_HAVE_TORCH
    std::size_t torch_params = 0;
    {
      TorchStep s;
      torch_params = s.parameter_count();
    }
    std::printf("  libtorch: %zu parameters, %s us per step\n", torch_params,
                l > 0 ? std::to_string(static_cast<long>(l + 0.5)).c_str() : "-");
    std::printf("  tapegrad / libtorch:");
    print_ratio(t, l);
    std::printf("\n");
#else
    (void)l;
#endif
  }
#endif
#if !TAPEGRAD_HAVE_TORCH
  std::printf("libtorch was not found at build time: its columns are empty.\n");
#endif
  benchmark::Shutdown();
  return 0;
}
