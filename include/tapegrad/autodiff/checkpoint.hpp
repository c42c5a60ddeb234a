// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/tensor/creation.hpp"
#include "tapegrad/tensor/op.hpp"

// Rematerialization (gradient checkpointing). A checkpointed segment runs
// its function once in the forward pass on a nested tape, keeps only the
// output, and frees the segment's intermediates at once. In the reverse sweep
// its one recorded op runs the function again on a nested tape, with the
// segment's inputs as leaves, and backpropagates through that replay. Memory
// falls from every activation of every segment to the segments' outputs plus
// one segment's activations; time grows by one more forward of each segment.

namespace tapegrad {

/// Options of `checkpoint`.
struct CheckpointOptions {
  /// Generators the segment draws from (a dropout layer's masks, say). Each
  /// one's state is saved when the segment runs forward and put back for the
  /// replay, so the replay draws the same masks; afterwards the generator is
  /// left where the forward pass left it.
  std::span<Generator* const> generators{};
};

namespace detail {

/// A nested tape and the leaf storages that stand for a segment's inputs.
/// Reused from one checkpoint to the next, so a warm step allocates nothing.
template <class T>
struct checkpoint_slot {
  Tape tape;
  std::vector<std::shared_ptr<tensor_storage<T>>> leaves;
};

/// This thread's nested tapes, one per nesting depth of running checkpoints.
template <class T>
struct checkpoint_pool {
  std::vector<std::unique_ptr<checkpoint_slot<T>>> slots;
  std::size_t depth = 0;
};

template <class T>
checkpoint_pool<T>& checkpoint_slots() {
  thread_local checkpoint_pool<T> pool;
  return pool;
}

/// Takes the slot of the current depth for a scope; the slot's tape is
/// cleared and its leaves unbound when the scope ends (also on an exception).
template <class T>
class checkpoint_lease {
 public:
  explicit checkpoint_lease(std::size_t inputs) : pool_(checkpoint_slots<T>()) {
    if (pool_.depth == pool_.slots.size()) pool_.slots.push_back(std::make_unique<checkpoint_slot<T>>());
    slot_ = pool_.slots[pool_.depth++].get();
    while (slot_->leaves.size() < inputs) slot_->leaves.push_back(std::make_shared<tensor_storage<T>>());
  }
  ~checkpoint_lease() {
    slot_->tape.clear();
    for (auto& s : slot_->leaves) {
      s->data = nullptr;
      s->grad = nullptr;
    }
    --pool_.depth;
  }
  checkpoint_lease(const checkpoint_lease&) = delete;
  checkpoint_lease& operator=(const checkpoint_lease&) = delete;

  Tape& tape() noexcept { return slot_->tape; }

  /// Leaf `i` of the slot, bound to a caller's buffer: no copy of the values.
  /// `grad`, when given, is the caller's gradient buffer itself, so the replay
  /// accumulates into it in the same order the unsplit graph would.
  basic_tensor<T> leaf(std::size_t i, const Shape& shape, const T* data, bool requires_grad, T* grad) {
    tensor_storage<T>& s = *slot_->leaves[i];
    s.shape = shape;
    s.data = const_cast<T*>(data);  // the segment reads its inputs, never writes them
    s.grad = grad;
    s.requires_grad = requires_grad;
    s.is_leaf = true;
    return access<basic_tensor<T>>::from_leaf(slot_->leaves[i]);
  }

 private:
  checkpoint_pool<T>& pool_;
  checkpoint_slot<T>* slot_ = nullptr;
};

/// Swaps saved generator states in for a replay and puts the current ones
/// back afterwards (also on an exception).
class generator_replay {
 public:
  generator_replay(std::span<Generator* const> gens, const Generator* saved, Generator* current)
      : gens_(gens), current_(current) {
    for (std::size_t k = 0; k < gens_.size(); ++k) {
      current_[k] = *gens_[k];
      *gens_[k] = saved[k];
    }
  }
  ~generator_replay() {
    for (std::size_t k = 0; k < gens_.size(); ++k) *gens_[k] = current_[k];
  }
  generator_replay(const generator_replay&) = delete;
  generator_replay& operator=(const generator_replay&) = delete;

 private:
  std::span<Generator* const> gens_;
  Generator* current_;
};

// Generators live in arena memory that is rewound without running destructors.
static_assert(std::is_trivially_destructible_v<Generator>);

/// Room for `n` generators in a tape's arena (freed by its next clear).
inline Generator* arena_generators(Tape& tape, std::size_t n) {
  return n == 0 ? nullptr : static_cast<Generator*>(tape.arena().allocate(n * sizeof(Generator), alignof(Generator)));
}

/// A leaf that requires grad and is never written: an input of a checkpoint op
/// whose real inputs need no gradient but whose parameters do, so that the op
/// is recorded with its backward rule.
template <class T>
const basic_tensor<T>& checkpoint_anchor() {
  thread_local const basic_tensor<T> anchor = basic_tensor<T>(Shape{1}).requires_grad(true);
  return anchor;
}

/// Where a segment input lives: the caller's shape, values and (in the
/// reverse sweep) gradient buffer.
template <class T>
struct segment_input {
  const Shape* shape = nullptr;
  const T* data = nullptr;
  bool requires_grad = false;
  T* grad = nullptr;
};

template <class T, class F, std::size_t... I>
basic_tensor<T> run_segment(F& f, checkpoint_lease<T>& lease, const std::array<segment_input<T>, sizeof...(I)>& in,
                            std::index_sequence<I...>) {
  Tape::Scope use(lease.tape());
  basic_tensor<T> y = f(lease.leaf(I, *in[I].shape, in[I].data, in[I].requires_grad, in[I].grad)...);
  if (!y.defined()) throw value_error("checkpoint: the segment returned an undefined tensor");
  if (!y.is_leaf() && y.tape() != &lease.tape())
    throw value_error("checkpoint: the segment returned " + y.describe() +
                      ", which was recorded outside the segment; pass the tensors it reads as inputs of checkpoint");
  return y;
}

}  // namespace detail

/// Runs `f(xs...)` without keeping its intermediates: the caller's tape gets
/// one op, "checkpoint", whose backward rule runs f again on a nested tape and
/// backpropagates through that replay. `f` takes the inputs as tensors and
/// returns one tensor; it may read module parameters captured by reference
/// (they are leaves and receive their gradients directly in the replay), and
/// it may call `checkpoint` itself (nested segments).
///
/// Gradients are bitwise those of `f(xs...)` without checkpointing, provided
/// f computes the same thing twice: list in `options.generators` every
/// generator f draws from (dropout), so the replay draws the same masks.
/// Whatever f captures by reference must outlive the backward passes.
///
/// Cost: f runs twice (forward, and again in the reverse sweep); memory holds
/// the output instead of every intermediate of f. Nested tapes come from a
/// per-thread pool, one per nesting depth, kept between steps, so a warm
/// training step allocates nothing on the heap.
///
/// Example:
///   tapegrad::nn::Linear fc1(64, 256), fc2(256, 64);
///   Tensor y = tapegrad::checkpoint([&](const Tensor& h) { return fc2(relu(fc1(h))); }, x);
///   sum(y).backward();   // fc1 and fc2 receive their gradients
template <class F, std::floating_point T, class... Rest>
requires(std::same_as<Rest, basic_tensor<T>>&&...) basic_tensor<T> checkpoint(const CheckpointOptions& options, F&& f,
                                                                              const basic_tensor<T>& x,
                                                                              const Rest&... rest) {
  constexpr std::size_t N = 1 + sizeof...(Rest);
  if (!is_grad_enabled()) return basic_tensor<T>(f(x, rest...));  // nothing to keep, nothing to replay
  // The jvp rule of a segment is the jvp rules of its ops: in forward mode f
  // runs as itself, so tangents pass op by op and the tangent's own graph
  // (which a reverse sweep over it, as in hvp, needs) is recorded. Nothing is
  // rematerialized then: the memory saving is given up for the derivative.
  if (const auto* fwd = detail::active_tangents<T>; fwd && !fwd->suspended) return basic_tensor<T>(f(x, rest...));

  // The op lands where make_op will put it: the inputs' tape, else the active one.
  const std::array<const basic_tensor<T>*, N> xs{&x, &rest...};
  std::array<detail::segment_input<T>, N> in{};
  Tape* tape = nullptr;
  bool any_input_grad = false;
  for (std::size_t i = 0; i < N; ++i) {
    const detail::tensor_storage<T>& s =
        detail::access<basic_tensor<T>>::storage(*xs[i]);  // throws on undefined or stale inputs
    in[i] = {&s.shape, s.data, s.requires_grad, nullptr};
    any_input_grad = any_input_grad || s.requires_grad;
    if (!xs[i]->is_leaf()) {
      if (tape && tape != xs[i]->tape()) throw tape_mismatch_error("checkpoint: inputs live on different tapes");
      tape = xs[i]->tape();
    }
  }
  if (!tape) tape = &Tape::active();

  // The generators and their states before f draws, kept on the caller's tape
  // for as long as the op is.
  const std::size_t n_gen = options.generators.size();
  Generator** gens =
      n_gen == 0 ? nullptr
                 : static_cast<Generator**>(tape->arena().allocate(n_gen * sizeof(Generator*), alignof(Generator*)));
  Generator* saved = detail::arena_generators(*tape, n_gen);
  for (std::size_t k = 0; k < n_gen; ++k) {
    gens[k] = options.generators[k];
    new (saved + k) Generator(*gens[k]);
  }

  // The forward pass: f on a nested tape, whose intermediates go when the lease does.
  detail::checkpoint_lease<T> lease(N);
  basic_tensor<T> y = detail::run_segment<T>(f, lease, in, std::make_index_sequence<N>{});
  const T* values = y.data().data();
  const index_t n = y.numel();

  auto forward = [values, n](OpContext<T>& c) { std::copy_n(values, n, c.out()); };
  auto backward = [fn = std::forward<F>(f), gens, saved, n_gen](OpContext<T>& c) mutable {
    // The replay: f again, on a nested tape, from the same inputs and the same
    // generator states. Each input's leaf accumulates straight into the
    // caller's gradient buffer; parameters accumulate into their own.
    std::array<detail::segment_input<T>, N> inputs{};
    for (std::size_t i = 0; i < N; ++i)
      inputs[i] = {&c.shape(i), c.in(i), c.needs_grad(i), c.needs_grad(i) ? c.in_grad(i) : nullptr};
    Generator* current = detail::arena_generators(c.tape(), n_gen);
    detail::checkpoint_lease<T> replay_lease(N);
    detail::generator_replay replay({gens, n_gen}, saved, current);
    basic_tensor<T> out = detail::run_segment<T>(fn, replay_lease, inputs, std::make_index_sequence<N>{});
    if (!out.requires_grad()) return;  // f cut every path (stop_gradient): nothing flows back
    Tape::Scope use(replay_lease.tape());
    detail::access<basic_tensor<T>>::backward_from(
        out, c.out_grad());  // d out / d inputs, seeded with the incoming gradient
  };
  // When no input needs a gradient but a parameter inside f does, the anchor
  // (a leaf that requires grad) makes make_op record the backward rule.
  if (y.requires_grad() && !any_input_grad)
    return make_op<T>("checkpoint", y.shape(), {x, rest..., detail::checkpoint_anchor<T>()}, forward, backward);
  return make_op<T>("checkpoint", y.shape(), {x, rest...}, forward, backward);
}

/// `checkpoint` with default options: for segments that draw no random numbers.
template <class F, std::floating_point T, class... Rest>
requires(std::same_as<Rest, basic_tensor<T>>&&...) basic_tensor<T> checkpoint(F&& f, const basic_tensor<T>& x,
                                                                              const Rest&... rest) {
  return checkpoint(CheckpointOptions{}, std::forward<F>(f), x, rest...);
}

/// Bytes held by this thread's nested checkpoint tapes for element type T
/// (their arenas keep their blocks between steps): add it to the caller's
/// `tape.arena().reserved_bytes()` to see what a checkpointed step costs.
template <std::floating_point T>
std::size_t checkpoint_reserved_bytes() {
  std::size_t bytes = 0;
  for (const auto& slot : detail::checkpoint_slots<T>().slots) bytes += slot->tape.arena().reserved_bytes();
  return bytes;
}

}  // namespace tapegrad
