// SPDX-License-Identifier: MIT
//
// The libtorch twin of step_tapegrad.cpp: the same model (its initial values
// copied from the tapegrad model built with the same seed), the same batches,
// the same loss, optimizer and recipe, written with torch::Tensor and autograd
// as a libtorch user would.
//
//   step_torch --config tiny|big --threads N            median ms per step
//   step_torch --mode converge --seed S --threads N     seconds to 99.5% held-out
//
// It first prints the BLAS library that libtorch loaded (from /proc/self/maps).

#include <torch/torch.h>

#include <fstream>
#include <map>

#include "twin.hpp"

using namespace tapegrad_bench;

namespace {

/// The shared objects mapped into this process whose name mentions BLAS.
std::string loaded_blas() {
  std::ifstream maps("/proc/self/maps");
  std::string line, found;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find("blas") != std::string::npos && found.find(path) == std::string::npos)
      found += (found.empty() ? "" : ",") + path;
  }
  return found.empty() ? "none" : found;
}

/// The model with libtorch tensors; weights are [in, out] and used as x W.
struct TorchClassifier {
  struct Block {
    torch::Tensor wq, wk, wv, wo, ln1_g, ln1_b, w1, b1, w2, b2, ln2_g, ln2_b;
  };
  Config c;
  torch::Tensor embed, position, out_w, out_b;
  std::vector<Block> blocks;
  std::vector<torch::Tensor> params;

  TorchClassifier(const Config& config, std::uint64_t seed) : c(config) {
    std::map<std::string, torch::Tensor> by_name;
    {
      // The tapegrad model with the same seed, only for its initial values.
      tapegrad::Tape tape;
      tapegrad::Tape::Scope use(tape);
      Classifier model(c, seed);
      for (const auto& [name, t] : model.named_parameters()) {
        std::vector<int64_t> shape;
        for (int d = 0; d < t.rank(); ++d) shape.push_back(t.size(d));
        const std::vector<float> v = t.to_vector();
        by_name[name] = torch::from_blob(const_cast<float*>(v.data()), shape, torch::kFloat32).clone();
      }
      const std::vector<float> pe = model.position_table();
      position = torch::from_blob(const_cast<float*>(pe.data()), {c.seq, c.d_model}, torch::kFloat32).clone();
    }
    auto param = [&](const std::string& name) {
      torch::Tensor t = by_name.at(name).requires_grad_(true);
      params.push_back(t);
      return t;
    };
    embed = param("embed.weight");
    for (index_t b = 0; b < c.blocks; ++b) {
      const std::string p = "blocks." + std::to_string(b) + ".";
      Block k;
      k.wq = param(p + "attn.w_q");
      k.wk = param(p + "attn.w_k");
      k.wv = param(p + "attn.w_v");
      k.wo = param(p + "attn.w_o");
      k.ln1_g = param(p + "ln1.gamma");
      k.ln1_b = param(p + "ln1.beta");
      k.w1 = param(p + "ffn.fc1.weight");
      k.b1 = param(p + "ffn.fc1.bias");
      k.w2 = param(p + "ffn.fc2.weight");
      k.b2 = param(p + "ffn.fc2.bias");
      k.ln2_g = param(p + "ln2.gamma");
      k.ln2_b = param(p + "ln2.beta");
      blocks.push_back(k);
    }
    out_w = param("out.weight");
    out_b = param("out.bias");
  }

  torch::Tensor forward(const torch::Tensor& ids, int64_t batch) {
    const int64_t dh = c.d_model / c.heads;
    const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
    torch::Tensor x = embed.index_select(0, ids).view({batch, c.seq, c.d_model}) + position;
    for (const Block& k : blocks) {
      auto heads = [&](const torch::Tensor& w) {
        return x.matmul(w).view({batch, c.seq, c.heads, dh}).permute({0, 2, 1, 3});
      };
      torch::Tensor q = heads(k.wq), kk = heads(k.wk), v = heads(k.wv);
      torch::Tensor a = torch::softmax(q.matmul(kk.transpose(-2, -1)) * scale, -1);
      torch::Tensor o = a.matmul(v).permute({0, 2, 1, 3}).reshape({batch, c.seq, c.d_model}).matmul(k.wo);
      torch::Tensor h = torch::layer_norm(x + o, {c.d_model}, k.ln1_g, k.ln1_b, 1e-5);
      torch::Tensor f = torch::relu(h.matmul(k.w1) + k.b1).matmul(k.w2) + k.b2;
      x = torch::layer_norm(h + f, {c.d_model}, k.ln2_g, k.ln2_b, 1e-5);
    }
    return x.mean(1).matmul(out_w) + out_b;
  }
};

torch::Tensor as_long(const std::vector<index_t>& v) {
  return torch::from_blob(const_cast<index_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse_args(argc, argv);
  torch::set_num_threads(a.threads);
  TorchClassifier model(*a.config, a.mode == "converge" ? a.seed : 1);
  torch::optim::Adam opt(model.params, torch::optim::AdamOptions(1e-3));

  auto step = [&](const torch::Tensor& ids, const torch::Tensor& targets, double lr) {
    opt.zero_grad();
    torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(ids, targets.size(0)), targets);
    loss.backward();
    if (lr > 0) {
      torch::nn::utils::clip_grad_norm_(model.params, Recipe{}.clip);
      for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    opt.step();
    return loss.item<float>();
  };

  if (a.mode == "converge") {
    const tx::Split split = tx::split_dataset(0);
    const Batch held = held_out_batch(split);
    const torch::Tensor held_ids = as_long(held.ids), held_targets = as_long(held.targets);
    converge(
        "libtorch", a, [&](const Batch& b, double lr) { step(as_long(b.ids), as_long(b.targets), lr); },
        [&] {
          torch::NoGradGuard no_grad;
          return static_cast<int>(
              model.forward(held_ids, held_targets.size(0)).argmax(1).eq(held_targets).sum().item<int64_t>());
        },
        split);
    return 0;
  }
  std::size_t params = 0;
  for (const torch::Tensor& p : model.params) params += static_cast<std::size_t>(p.numel());
  const Batch b = random_batch(*a.config);
  const torch::Tensor ids = as_long(b.ids), targets = as_long(b.targets);
  step(ids, targets, 0);
  std::printf("libtorch BLAS: %s\n", loaded_blas().c_str());
  time_steps("libtorch", a, params, [&] { return step(ids, targets, 0); });
  return 0;
}
