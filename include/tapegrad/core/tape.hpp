// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"
#include "tapegrad/core/scalar_store.hpp"
#include "tapegrad/detail/arena.hpp"

namespace tapegrad {

namespace detail {

/// A recorded tensor operation. The tensor layer derives from it; the tape only
/// needs to run its backward rule, print it, and destroy it on a clear.
class tensor_node {
 public:
  virtual ~tensor_node() = default;
  /// Turns the output's gradient into the inputs' gradients (a vector-Jacobian product).
  virtual void run_backward() = 0;
  /// True when the output received a gradient in the current reverse sweep.
  virtual bool reached() const noexcept = 0;
  /// Forgets the output gradient before a new reverse sweep.
  virtual void reset_grad() noexcept = 0;

  std::uint64_t serial = 0;  // unique per tape, never reused: how stale handles are caught
};

}  // namespace detail

/// The record of a forward pass. Operations append nodes; `backward()` walks
/// them in reverse. Each thread has a default tape; a `Tape` of your own becomes
/// active for a scope through `Tape::Scope`.
///
/// Clearing (or rewinding to a mark) frees the intermediate nodes and keeps the
/// leaves, such as parameters, and their gradients, so a training loop runs in
/// flat memory:
///
/// Example:
///   tapegrad::Tape tape;
///   tapegrad::Tape::Scope use(tape);          // ops below record on `tape`
///   Value w = 0.5;
///   for (int step = 0; step < 100; ++step) {
///     Value loss = pow(w * 3.0 - 1.0, 2.0);
///     loss.backward();
///     ...update w...
///     tape.clear();                           // intermediates gone, w kept
///   }
class Tape {
 public:
  /// A position on the tape; `rewind(m)` frees everything recorded after it.
  struct Mark {
    std::uint32_t scalar_nodes[3] = {1, 1, 1};
    std::size_t tensor_nodes = 0;
    std::size_t kept_alive = 0;
    detail::arena::mark arena{};
  };

  /// Makes a tape the active one on this thread until the scope ends.
  class Scope {
   public:
    explicit Scope(Tape& tape) noexcept : previous_(detail::state().active) { detail::state().active = &tape; }
    ~Scope() { detail::state().active = previous_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Tape* previous_;
  };

  Tape() = default;
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  ~Tape() { destroy_tensor_nodes(0); }

  /// Frees every intermediate node; leaves and their gradients stay.
  void clear() { rewind(Mark{}); }

  /// The current position, to rewind to later.
  Mark mark() const noexcept {
    Mark m;
    m.scalar_nodes[0] = static_cast<std::uint32_t>(std::get<0>(scalar_).nodes.size());
    m.scalar_nodes[1] = static_cast<std::uint32_t>(std::get<1>(scalar_).nodes.size());
    m.scalar_nodes[2] = static_cast<std::uint32_t>(std::get<2>(scalar_).nodes.size());
    m.tensor_nodes = tensor_nodes_.size();
    m.kept_alive = kept_alive_.size();
    m.arena = arena_.position();
    return m;
  }

  /// Frees the intermediates recorded after `m`. Handles to them become stale.
  void rewind(const Mark& m) {
    std::get<0>(scalar_).truncate(m.scalar_nodes[0]);
    std::get<1>(scalar_).truncate(m.scalar_nodes[1]);
    std::get<2>(scalar_).truncate(m.scalar_nodes[2]);
    destroy_tensor_nodes(m.tensor_nodes);
    if (kept_alive_.size() > m.kept_alive) kept_alive_.resize(m.kept_alive);
    arena_.rewind(m.tensor_nodes == 0 ? detail::arena::mark{} : m.arena);
    ++epoch_;
  }

  /// Recorded nodes (scalar and tensor) currently on the tape.
  std::size_t size() const noexcept {
    return std::get<0>(scalar_).nodes.size() + std::get<1>(scalar_).nodes.size() + std::get<2>(scalar_).nodes.size() -
           3 + tensor_nodes_.size();
  }

  /// Bytes the tape holds for recorded scalar nodes (capacity, not just size).
  std::size_t scalar_bytes() const noexcept {
    auto bytes = [](const auto& s) {
      using node = typename std::decay_t<decltype(s.nodes)>::value_type;
      return s.nodes.capacity() * sizeof(node);
    };
    return bytes(std::get<0>(scalar_)) + bytes(std::get<1>(scalar_)) + bytes(std::get<2>(scalar_));
  }

  /// The tape active on this thread: the innermost Scope's, or the thread's default.
  static Tape& active() {
    Tape* t = detail::state().active;
    return t ? *t : thread_default();
  }

  /// This thread's default tape.
  static Tape& thread_default() {
    thread_local Tape tape;
    return tape;
  }

  /// Changes every time nodes are freed; handles remember it to detect staleness.
  std::uint32_t epoch() const noexcept { return epoch_; }

  // ---- used by the scalar and tensor layers -------------------------------

  /// The scalar store for floating type T (float, double or long double).
  template <class T>
  detail::scalar_store<T>& scalars() noexcept {
    return std::get<detail::scalar_store<T>>(scalar_);
  }
  template <class T>
  const detail::scalar_store<T>& scalars() const noexcept {
    return std::get<detail::scalar_store<T>>(scalar_);
  }

  /// The arena that holds tensor intermediates and their buffers.
  detail::arena& arena() noexcept { return arena_; }

  /// Appends a tensor node (already constructed in the arena) and gives it a serial.
  std::size_t push_tensor_node(detail::tensor_node* node) {
    node->serial = ++serial_;
    tensor_nodes_.push_back(node);
    return tensor_nodes_.size() - 1;
  }

  /// Destroys the most recent tensor node (an op whose forward failed).
  void pop_tensor_node() noexcept {
    if (!tensor_nodes_.empty()) {
      tensor_nodes_.back()->~tensor_node();
      tensor_nodes_.pop_back();
    }
  }

  /// The recorded tensor nodes, in order.
  const std::vector<detail::tensor_node*>& tensor_nodes() const noexcept { return tensor_nodes_; }

  /// Keeps an object (a leaf's storage) alive until the next clear.
  void keep_alive(std::shared_ptr<void> p) { kept_alive_.push_back(std::move(p)); }

  /// True when the tensor node at `index` is still the one with `serial`.
  bool tensor_node_alive(std::size_t index, std::uint64_t serial) const noexcept {
    return index < tensor_nodes_.size() && tensor_nodes_[index]->serial == serial;
  }

 private:
  void destroy_tensor_nodes(std::size_t keep) noexcept {
    while (tensor_nodes_.size() > keep) {
      tensor_nodes_.back()->~tensor_node();
      tensor_nodes_.pop_back();
    }
  }

  std::tuple<detail::scalar_store<float>, detail::scalar_store<double>, detail::scalar_store<long double>> scalar_;
  std::vector<detail::tensor_node*> tensor_nodes_;
  std::vector<std::shared_ptr<void>> kept_alive_;
  detail::arena arena_;
  std::uint64_t serial_ = 0;
  std::uint32_t epoch_ = 1;
};

}  // namespace tapegrad
