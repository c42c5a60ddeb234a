// SPDX-License-Identifier: MIT
#pragma once

#include <atomic>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/tape.hpp"
#include "tapegrad/scalar/detail/program.hpp"

namespace tapegrad {
template <std::floating_point T>
class basic_value;
}  // namespace tapegrad

namespace tapegrad::detail {

/// True for basic_value<T>.
template <class X>
inline constexpr bool is_basic_value = false;
template <class T>
inline constexpr bool is_basic_value<basic_value<T>> = true;
/// A (reference to a) basic_value: what the scalar math functions accept.
template <class X>
concept scalar_value = is_basic_value<std::remove_cvref_t<X>>;
/// The floating type of a scalar_value.
template <class X>
using value_t = typename std::remove_cvref_t<X>::value_type;
/// True when A is (a reference to) the Value type V.
template <class A, class V>
concept one_value = std::same_as<std::remove_cvref_t<A>, V>;

/// Marks a node index as one of the leaf slots rather than an intermediate.
inline constexpr std::uint32_t leaf_bit = 0x8000'0000u;
/// On a leaf handle: this handle holds one of the leaf's references. A copy
/// made where the leaf cannot be used (another thread, a stale handle) holds
/// none, so dropping it later never miscounts.
inline constexpr std::uint32_t counted_bit = 0x4000'0000u;
/// The leaf slot of a leaf handle's index.
inline constexpr std::uint32_t slot_mask = ~(leaf_bit | counted_bit);
/// On an intermediate handle: the handle an operation returned, so an
/// operation that consumes it (an rvalue) may extend its statement instead of
/// recording a new one, unless the store says a second handle was made (see
/// scalar_store::keep_as_is). A copy never carries it.
inline constexpr std::uint32_t sole_bit = counted_bit;
/// Set on a statement's op: the statement has a non-finite partial and is never extended.
inline constexpr std::uint16_t sealed_op = 0x8000u;
/// Intermediate index 0 is a sink: it has no operands and absorbs nothing.
inline constexpr std::uint32_t sink_index = 0;

/// One recorded statement: its value, where its operands end in the operand
/// arrays (they begin where the previous statement's end), and the epoch it
/// was recorded in. A statement is one operation, or several fused into one
/// (see docs/concepts.md, "How a statement is recorded").
template <class T>
struct scalar_node {
  T value;
  std::uint32_t end;    // one past the statement's last operand
  std::uint32_t epoch;  // the tape's epoch when the statement was recorded
};

/// A leaf: a parameter or an input. It lives until the last handle to it is
/// gone and a tape clear has run, so clears keep parameters and their gradients.
template <class T>
struct scalar_leaf {
  T value;
  T grad;
  std::uint32_t refs;
  std::uint32_t generation;  // unique per store over its whole life: a reused slot never matches an old handle
  std::uint32_t born;        // how many nodes the tape held when the leaf was made
  std::uint32_t queued;      // 1 while the slot waits in released_leaves
};

/// The names printed for scalar nodes. The library's ops take fixed slots;
/// custom scalar ops register a name and get the next one.
inline std::vector<std::string>& op_name_table() {
  static std::vector<std::string> names = {"leaf",  "sink",  "stop_gradient", "add",     "sub",  "mul", "div",
                                           "neg",   "pow",   "exp",           "log",     "sqrt", "sin", "cos",
                                           "tan",   "tanh",  "sigmoid",       "relu",    "abs",  "max", "min",
                                           "log1p", "expm1", "erf",           "softplus"};
  return names;
}

inline std::mutex& op_name_mutex() {
  static std::mutex m;
  return m;
}

/// The fixed slots of op_name_table().
enum scalar_op : std::uint16_t {
  op_leaf,
  op_sink,
  op_stop_gradient,
  op_add,
  op_sub,
  op_mul,
  op_div,
  op_neg,
  op_pow,
  op_exp,
  op_log,
  op_sqrt,
  op_sin,
  op_cos,
  op_tan,
  op_tanh,
  op_sigmoid,
  op_relu,
  op_abs,
  op_max,
  op_min,
  op_log1p,
  op_expm1,
  op_erf,
  op_softplus
};

inline std::string op_name(std::uint16_t op) {
  std::lock_guard lock(op_name_mutex());
  const auto& t = op_name_table();
  op = static_cast<std::uint16_t>(op & ~sealed_op);
  return op < t.size() ? t[op] : std::string("op#") + std::to_string(op);
}

/// Registers a name for a user-defined scalar op; the same name gets the same id.
inline std::uint16_t register_op_name(const std::string& name) {
  std::lock_guard lock(op_name_mutex());
  auto& t = op_name_table();
  for (std::size_t i = 0; i < t.size(); ++i)
    if (t[i] == name) return static_cast<std::uint16_t>(i);
  if (t.size() >= sealed_op) throw error("custom scalar op \"" + name + "\": more than 32767 op names registered");
  t.push_back(name);
  return static_cast<std::uint16_t>(t.size() - 1);
}

/// A growable array of trivially copyable records, for the tape's hot path:
/// appending is inlined down to one compare and one store; growing (doubling)
/// is out of line. Capacity is kept across clears.
template <class R>
class pod_array {
 public:
  pod_array() = default;
  pod_array(const pod_array&) = delete;
  pod_array& operator=(const pod_array&) = delete;
  ~pod_array() { ::operator delete(data_); }

  TAPEGRAD_ALWAYS_INLINE void push_back(const R& r) {
    if (size_ == cap_) [[unlikely]]
      grow(size_ + 1);
    data_[size_++] = r;
  }
  void pop_back() noexcept { --size_; }
  /// Shrinks, or grows filling with `fill`.
  void resize(std::size_t n, R fill = R{}) {
    if (n > cap_) grow(n);
    for (std::size_t i = size_; i < n; ++i) data_[i] = fill;
    size_ = n;
  }
  void reserve(std::size_t n) {
    if (n > cap_) grow(n);
  }
  void clear() noexcept { size_ = 0; }
  /// Gives the memory back.
  void release() noexcept {
    ::operator delete(data_);
    data_ = nullptr;
    size_ = cap_ = 0;
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return cap_; }
  bool empty() const noexcept { return size_ == 0; }
  R* data() noexcept { return data_; }
  const R* data() const noexcept { return data_; }
  R* begin() noexcept { return data_; }
  R* end() noexcept { return data_ + size_; }
  R& operator[](std::size_t i) noexcept { return data_[i]; }
  const R& operator[](std::size_t i) const noexcept { return data_[i]; }
  R& back() noexcept { return data_[size_ - 1]; }
  const R& back() const noexcept { return data_[size_ - 1]; }

 private:
  TAPEGRAD_COLD void grow(std::size_t need) {
    std::size_t cap = cap_ ? cap_ * 2 : 64;
    while (cap < need) cap *= 2;
    R* fresh = static_cast<R*>(::operator new(cap * sizeof(R)));
    if (size_) std::memcpy(static_cast<void*>(fresh), data_, size_ * sizeof(R));
    ::operator delete(data_);
    data_ = fresh;
    cap_ = cap;
  }

  R* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
};

/// The scalar records of a tape for one floating type: intermediates in order
/// of recording, and the leaf slots beside them.
template <class T>
struct scalar_store final : store {
  pod_array<scalar_node<T>> nodes;  // statements, in order of recording; 0 is the sink
  pod_array<std::uint16_t> ops;     // the outermost operation of each statement
  pod_array<std::uint32_t> ids;     // operands: the child each one reads (leaf_bit for a leaf)
  pod_array<T> partials;            // operands: d(statement)/d(child)
  pod_array<T> grads;               // adjoints by statement, grown by the sweep
  std::vector<scalar_leaf<T>> leaves;
  std::vector<std::uint32_t> free_leaves;      // reusable now
  std::vector<std::uint32_t> released_leaves;  // reusable after the next clear or rewind
  std::vector<std::string> leaf_labels;        // optional names, by leaf slot
  std::vector<std::string> node_labels;        // optional names, by node index
  std::vector<std::uint32_t> stopped;          // stop_gradient statements and their sources, in pairs
  std::uint32_t swept = 0;                     // nodes below this index may hold a gradient of an earlier sweep
  std::uint32_t generations = 0;               // the last generation handed to a leaf
  // Statements below this are never extended: a mark was taken after them, or
  // a second handle to one of them was made. Copies may be made on any thread,
  // so it is atomic; it only grows, except when statements are freed.
  mutable std::atomic<std::uint32_t> fuse_floor{1};
  std::size_t elementary = 0;            // operations recorded since the last clear, fused or not
  replay_program<T>* program = nullptr;  // set while a function is recorded for replay

  scalar_store() { reset_nodes(); }

  // Positions count recorded statements; index 0 is the sink, not a record.
  // A mark reads the position: statements before it must stay as they are.
  std::size_t position() const noexcept override {
    if (!nodes.empty()) keep_as_is(static_cast<std::uint32_t>(nodes.size() - 1));
    return nodes.empty() ? 0 : nodes.size() - 1;
  }
  void truncate(std::size_t keep) override { truncate_to(static_cast<std::uint32_t>(keep + 1)); }
  std::size_t bytes() const noexcept override {
    return nodes.capacity() * sizeof(scalar_node<T>) + ops.capacity() * sizeof(std::uint16_t) +
           ids.capacity() * sizeof(std::uint32_t) + partials.capacity() * sizeof(T) + grads.capacity() * sizeof(T) +
           leaves.capacity() * sizeof(scalar_leaf<T>);
  }
  /// Bytes the recorded statements use (not capacity): statement records,
  /// operands and adjoints.
  std::size_t used_bytes() const noexcept {
    return nodes.size() * (sizeof(scalar_node<T>) + sizeof(std::uint16_t) + sizeof(T)) +
           ids.size() * (sizeof(std::uint32_t) + sizeof(T));
  }
  void release() noexcept override {
    // Keep `generations`: a handle from this use of the tape must never match a leaf of the next.
    nodes.release();
    ops.release();
    ids.release();
    partials.release();
    grads.release();
    std::vector<scalar_leaf<T>>().swap(leaves);
    std::vector<std::uint32_t>().swap(free_leaves);
    std::vector<std::uint32_t>().swap(released_leaves);
    std::vector<std::string>().swap(leaf_labels);
    std::vector<std::string>().swap(node_labels);
    std::vector<std::uint32_t>().swap(stopped);
    swept = 0;
    elementary = 0;
    try {
      reset_nodes();
    } catch (...) {
      // Out of memory: the sink is made again by the next record.
    }
  }

  void reset_nodes() {
    nodes.clear();
    ops.clear();
    ids.clear();
    partials.clear();
    stopped.clear();
    nodes.push_back(scalar_node<T>{T(0), 0, 0});
    ops.push_back(op_sink);
    fuse_floor.store(1, std::memory_order_relaxed);
    elementary = 0;
  }

  /// Statement `i`, and every one before it, stays as recorded: a second
  /// handle names it or a mark was taken after it. Safe from any thread.
  void keep_as_is(std::uint32_t i) const noexcept {
    std::uint32_t floor = fuse_floor.load(std::memory_order_relaxed);
    while (floor <= i && !fuse_floor.compare_exchange_weak(floor, i + 1, std::memory_order_relaxed)) {
    }
  }

  /// Where statement i's operands begin.
  std::uint32_t begin_of(std::uint32_t i) const noexcept { return i == 0 ? 0 : nodes[i - 1].end; }

  std::uint32_t new_leaf(T value) {
    std::uint32_t slot;
    if (!free_leaves.empty()) {
      slot = free_leaves.back();
      free_leaves.pop_back();
      scalar_leaf<T>& l = leaves[slot];
      l.value = value;
      l.grad = T(0);
      l.refs = 1;
      l.generation = ++generations;
      l.born = static_cast<std::uint32_t>(nodes.size());
      l.queued = 0;
      if (slot < leaf_labels.size()) leaf_labels[slot].clear();
    } else {
      slot = static_cast<std::uint32_t>(leaves.size());
      if (slot > slot_mask) [[unlikely]]
        throw error("Value: more than 2^30 scalar leaves alive on one tape");
      leaves.push_back(scalar_leaf<T>{value, T(0), 1, ++generations, static_cast<std::uint32_t>(nodes.size()), 0});
    }
    return slot;
  }

  void release_leaf(std::uint32_t slot) noexcept {
    scalar_leaf<T>& l = leaves[slot];
    if (--l.refs == 0 && !l.queued) {
      // A recorded node may still point here; the slot is reused only after
      // the nodes are gone.
      try {
        released_leaves.push_back(slot);
        l.queued = 1;
      } catch (...) {
        // Out of memory: the slot is simply never reused.
      }
    }
  }

  /// Frees every statement recorded at or after index `keep`.
  void truncate_to(std::uint32_t keep) {
    if (nodes.empty()) reset_nodes();
    if (keep < 1) keep = 1;
    if (keep < nodes.size()) {
      const std::uint32_t operands = nodes[keep - 1].end;
      nodes.resize(keep);
      ops.resize(keep);
      ids.resize(operands);
      partials.resize(operands);
      if (grads.size() > keep) grads.resize(keep);
      std::size_t kept_stops = 0;
      for (std::size_t k = 0; k + 1 < stopped.size(); k += 2)
        if (stopped[k] < keep) {
          stopped[kept_stops++] = stopped[k];
          stopped[kept_stops++] = stopped[k + 1];
        }
      stopped.resize(kept_stops);
    }
    if (keep <= 1) elementary = 0;
    if (fuse_floor.load(std::memory_order_relaxed) > keep) fuse_floor.store(keep, std::memory_order_relaxed);
    if (swept > keep) swept = keep;
    if (node_labels.size() > keep) node_labels.resize(keep);
    // A released leaf made before `keep` may still be a child of a kept node.
    // One that a handle took up again (through children()) is alive once more.
    std::size_t kept = 0;
    for (std::uint32_t slot : released_leaves) {
      scalar_leaf<T>& l = leaves[slot];
      if (l.refs > 0) {
        l.queued = 0;
      } else if (l.born >= keep) {
        l.queued = 0;
        free_leaves.push_back(slot);
      } else {
        released_leaves[kept++] = slot;
      }
    }
    released_leaves.resize(kept);
  }

  T grad_of(std::uint32_t i) const noexcept {
    if (i & leaf_bit) return leaves[i & slot_mask].grad;
    return i < grads.size() ? grads[i] : T(0);
  }
  T value_of(std::uint32_t i) const noexcept { return (i & leaf_bit) ? leaves[i & slot_mask].value : nodes[i].value; }
};

}  // namespace tapegrad::detail
