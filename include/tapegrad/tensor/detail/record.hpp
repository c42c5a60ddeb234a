// SPDX-License-Identifier: MIT
#pragma once

// What the tape records for tensors: the storage behind handles, the edges
// from a node to its inputs, the nodes themselves and the store that keeps
// them in order.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/core/detail/arena.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/shape.hpp"

namespace tapegrad::detail {

/// What a tensor handle points at: a shape, a value buffer and a gradient
/// buffer. Leaves own their buffers; an intermediate's live in its tape's
/// arena and are freed with its node.
template <class T>
struct tensor_storage {
  Shape shape;
  T* data = nullptr;
  T* grad = nullptr;
  bool requires_grad = false;
  bool is_leaf = true;
  bool grad_live = false;     // leaves: a gradient arrived since the last zero_grad() (has_grad())
  std::uint32_t swept = 0;    // intermediates: the reverse sweep whose gradient `grad` holds
  std::vector<T> owned_data;  // leaves only
  std::vector<T> owned_grad;  // leaves, sized on first use; intermediates that read a gradient they never had
  std::string label;          // an optional name for printed graphs
};

/// The position an edge to a leaf has instead of a node.
inline constexpr std::uint32_t no_node = 0xffff'ffffu;

/// One input of a recorded node: what produced it (a node, by position and
/// serial, or a leaf, by its slot in the store's list of kept leaves) and its
/// storage, for the kernels.
template <class T>
struct edge {
  tensor_storage<T>* s = nullptr;
  std::uint32_t node = no_node;  // the producing node's position, or no_node for a leaf
  std::uint32_t kept = 0;        // for a leaf: where the store keeps it alive
  std::uint64_t serial = 0;      // the producing node's serial
};

class tensor_store;

/// A recorded tensor op, as the store and the reverse sweep see it; the
/// element type and the backward rule live in the derived `op_node`.
class tensor_node {
 public:
  tensor_node() = default;
  tensor_node(const tensor_node&) = delete;
  tensor_node& operator=(const tensor_node&) = delete;
  virtual ~tensor_node() = default;

  /// Turns the output's gradient into the inputs' gradients (a vector-Jacobian product).
  virtual void run_backward(tensor_store& store) = 0;
  /// True when the output received a gradient in reverse sweep `sweep`.
  virtual bool reached(std::uint32_t sweep) const noexcept = 0;
  /// Anomaly mode: raises when an input gradient holds a NaN or an infinity.
  virtual void check_input_grads(std::uint32_t sweep) const = 0;

  std::uint64_t serial = 0;  // unique per store, never reused: how stale handles are caught
  arena::mark arena_at{};    // the records arena just before this node
  std::size_t kept_at = 0;   // the store's kept-leaf count just before this node
  const char* name = "";     // the op's name, for printed graphs and messages
  bool barrier = false;      // a stop_gradient: edges recorded, no gradient passes
};

/// The tensor records of one tape: nodes in order of recording and the
/// leaves they read, kept alive until the nodes are freed.
class tensor_store final : public store {
 public:
  std::vector<tensor_node*> nodes;          // in the tape's records arena
  std::vector<std::shared_ptr<void>> kept;  // leaf storages read by recorded nodes
  std::uint64_t serials = 0;                // the last serial handed out
  std::uint32_t sweep = 0;                  // the current reverse sweep, counted from 1

  ~tensor_store() override { destroy_from(0); }

  std::size_t position() const noexcept override { return nodes.size(); }

  void truncate(std::size_t keep) override {
    if (keep >= nodes.size()) return;
    const arena::mark at = nodes[keep]->arena_at;
    const std::size_t kept_at = nodes[keep]->kept_at;
    destroy_from(keep);
    tape->records.rewind(at);
    kept.resize(kept_at);
  }

  std::size_t bytes() const noexcept override {
    return nodes.capacity() * sizeof(tensor_node*) + kept.capacity() * sizeof(std::shared_ptr<void>);
  }

  void release() noexcept override {
    destroy_from(0);
    std::vector<tensor_node*>().swap(nodes);
    std::vector<std::shared_ptr<void>>().swap(kept);
  }

  /// True when the node at `index` is still the one with `serial`.
  bool alive(std::uint32_t index, std::uint64_t serial) const noexcept {
    return index < nodes.size() && nodes[index]->serial == serial;
  }

 private:
  void destroy_from(std::size_t keep) noexcept {
    while (nodes.size() > keep) {
      nodes.back()->~tensor_node();
      nodes.pop_back();
    }
  }
};

template <class T>
void check_finite(const char* op, const char* what, const T* p, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      std::ostringstream os;
      os << "anomaly: " << op << " produced " << p[i] << " in its " << what << " at flat index " << i;
      throw anomaly_error(os.str());
    }
  }
}

/// A recorded op on tensors of element type T: its output, its edges and
/// the buffers its forward saved for its backward. A node made by `make_op`
/// with a backward rule derives from it; one without (nothing requires grad,
/// or a barrier) is an op_node itself.
template <class T>
struct op_node : tensor_node {
  static constexpr std::size_t max_saved = 6;

  tensor_storage<T> out;
  edge<T>* in = nullptr;
  std::uint32_t n_in = 0;
  std::uint32_t n_saved = 0;
  void* saved[max_saved] = {};

  void run_backward(tensor_store&) override {}
  bool reached(std::uint32_t sweep) const noexcept override { return out.grad && out.swept == sweep; }
  void check_input_grads(std::uint32_t sweep) const override {
    for (std::uint32_t k = 0; k < n_in; ++k) {
      const tensor_storage<T>& s = *in[k].s;
      const bool fresh = s.is_leaf ? s.grad_live : s.swept == sweep;
      if (s.grad && fresh) check_finite(name, "input gradient", s.grad, s.shape.numel());
    }
  }
};

}  // namespace tapegrad::detail
