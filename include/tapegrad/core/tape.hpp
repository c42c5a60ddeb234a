// SPDX-License-Identifier: MIT
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tapegrad/core/config.hpp"
#include "tapegrad/core/detail/arena.hpp"
#include "tapegrad/core/error.hpp"
#include "tapegrad/core/grad_mode.hpp"

namespace tapegrad {

class Tape;

namespace detail {

/// The one door to the internals of the library's handles (`access<basic_value<T>>`,
/// `access<basic_tensor<T>>`), specialised by each layer for its own handle and
/// used by the library's own code only. Nothing behind it is for users.
template <class Handle>
struct access;

/// How many kinds of store one tape can hold (scalars of three types, tensors, and room to spare).
inline constexpr std::size_t max_stores = 8;

/// One kind of record on a tape. The tape knows its stores only through this
/// interface, so the core names no layer above it: the scalar layer keeps its
/// nodes in one store, the tensor layer in another.
class store {
 public:
  store() = default;
  store(const store&) = delete;
  store& operator=(const store&) = delete;
  virtual ~store() = default;

  /// How many records the store holds; a mark remembers it.
  virtual std::size_t position() const noexcept = 0;
  /// Frees the records at and after `keep`.
  virtual void truncate(std::size_t keep) = 0;
  /// Bytes the store holds (capacity, not just use).
  virtual std::size_t bytes() const noexcept = 0;
  /// The tape is gone: drop every record and give the memory back. The store
  /// object itself stays (tape states are pooled), so a handle that outlives
  /// its tape can still find out that it did.
  virtual void release() noexcept = 0;

  // Mirrors of the owning tape's state, read by handles on their fast path.
  std::atomic<std::uint64_t> owner{0};  ///< the owning thread's id; 0 once the tape is gone
  std::uint32_t epoch = 1;              ///< the tape's epoch: it changes with every clear or rewind
  tape_state* tape = nullptr;           ///< the tape state the store belongs to
};

/// What a `Tape` object stands for. Tape states are pooled and never freed:
/// a handle that outlives its tape still points at valid memory and reads
/// from `owner` that the tape is gone, instead of reading freed memory.
struct tape_state {
  std::array<std::unique_ptr<store>, max_stores> stores{};
  arena records;  // recorded nodes and their buffers, freed by clear and rewind
  arena scratch;  // temporaries of one op's forward or backward
  std::atomic<std::uint64_t> owner{0};
  std::atomic<std::uint64_t> use{0};  // a new number for every Tape made on this state
  std::uint32_t epoch = 1;            // never reset, so stamps of an earlier use never match
  Tape* tape = nullptr;

  void set_epoch(std::uint32_t e) noexcept {
    epoch = e;
    for (auto& s : stores)
      if (s) s->epoch = e;
  }
  void set_owner(std::uint64_t thread) noexcept {
    owner.store(thread, std::memory_order_relaxed);
    for (auto& s : stores)
      if (s) s->owner.store(thread, std::memory_order_relaxed);
  }
};

/// The free tape states. Never destroyed, so that handles kept in static
/// objects stay checkable at program exit.
struct tape_pool {
  std::mutex mutex;
  std::vector<tape_state*> free;
  std::uint64_t uses = 0;
};

inline tape_pool& pool() {
  static tape_pool* p = new tape_pool;  // intentionally never deleted (see above)
  return *p;
}

inline std::size_t new_store_slot() noexcept {
  static std::atomic<std::size_t> next{0};
  return next++;
}

/// The slot of store type S in every tape, fixed on first use.
template <class S>
std::size_t store_slot() noexcept {
  static const std::size_t slot = new_store_slot();
  return slot;
}

/// True when handles into `s` may be used on the calling thread.
TAPEGRAD_ALWAYS_INLINE bool usable_here(const store& s) noexcept {
  return s.owner.load(std::memory_order_relaxed) == state().thread_id;
}

/// Raises the error for a handle into `s` that cannot be used on this thread:
/// its tape is gone, or it belongs to another thread.
[[noreturn]] TAPEGRAD_COLD inline void throw_unusable(const store& s, const std::string& what) {
  if (s.owner.load(std::memory_order_relaxed) == 0)
    throw stale_handle_error(what + ": its tape was destroyed (the Tape went out of scope, or its thread ended)");
  throw thread_error(what +
                     ": the handle belongs to a tape of another thread (a tape and its handles are used by the "
                     "thread that made the tape; see Tape::bind_to_this_thread)");
}

}  // namespace detail

/// The record of a forward pass. Operations append nodes; `backward()` walks
/// them in reverse. Each thread has a default tape; a `Tape` of your own becomes
/// active for a scope through `Tape::Scope`.
///
/// Clearing (or rewinding to a mark) frees the intermediate nodes and keeps the
/// leaves, such as parameters, and their gradients, so a training loop runs in
/// flat memory. Destroying a tape frees everything on it: scalar leaves made
/// on it included (tensor leaves own their memory and live on).
///
/// A tape belongs to the thread that made it. Recording on it, or using a
/// handle into it, from another thread raises `thread_error`; a handle whose
/// tape is gone raises `stale_handle_error`. Neither ever reads freed memory.
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
    std::uint64_t use = 0;  // which tape the mark was taken on
    std::array<std::size_t, detail::max_stores> position{};
  };

  /// Makes a tape the active one on this thread until the scope ends.
  class Scope {
   public:
    explicit Scope(Tape& tape) {
      tape.check_thread("Tape::Scope");
      detail::thread_state& st = detail::state();
      previous_ = st.active;
      previous_use_ = st.active_id;
      st.active = tape.s_;
      st.active_id = tape.s_->use.load(std::memory_order_relaxed);
    }
    ~Scope() {
      detail::thread_state& st = detail::state();
      st.active = previous_;
      st.active_id = previous_use_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    detail::tape_state* previous_ = nullptr;
    std::uint64_t previous_use_ = 0;
  };

  /// A new, empty tape belonging to the calling thread.
  Tape() {
    detail::tape_pool& p = detail::pool();
    {
      std::lock_guard lock(p.mutex);
      if (p.free.empty()) {
        s_ = new detail::tape_state;  // pooled: returned on destruction, never deleted
      } else {
        s_ = p.free.back();
        p.free.pop_back();
      }
      s_->use.store(++p.uses, std::memory_order_relaxed);
    }
    s_->tape = this;
    s_->set_epoch(s_->epoch + 1);
    s_->set_owner(detail::state().thread_id);
  }

  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  /// Frees everything recorded on the tape; every handle into it becomes stale.
  ~Tape() {
    for (auto& s : s_->stores)
      if (s) s->release();
    s_->records.release();
    s_->scratch.release();
    s_->set_owner(0);
    s_->set_epoch(s_->epoch + 1);
    s_->tape = nullptr;
    detail::tape_pool& p = detail::pool();
    std::lock_guard lock(p.mutex);
    try {
      p.free.push_back(s_);
    } catch (...) {
      // Out of memory: this state is simply not reused.
    }
  }

  /// Frees every intermediate node; leaves and their gradients stay.
  void clear() {
    check_thread("Tape::clear");
    for (auto& s : s_->stores)
      if (s) s->truncate(0);
    s_->records.rewind({});
    s_->scratch.rewind({});
    s_->set_epoch(s_->epoch + 1);
  }

  /// The current position, to rewind to later.
  Mark mark() const {
    check_thread("Tape::mark");
    Mark m;
    m.use = s_->use.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < detail::max_stores; ++i)
      if (s_->stores[i]) m.position[i] = s_->stores[i]->position();
    return m;
  }

  /// Frees the intermediates recorded after `m`; handles to them become stale.
  /// Errors: `value_error` when `m` was taken on another tape.
  void rewind(const Mark& m) {
    check_thread("Tape::rewind");
    if (m.use != s_->use.load(std::memory_order_relaxed))
      throw value_error("Tape::rewind: the mark was taken on another tape (or on an earlier tape at this address)");
    for (std::size_t i = 0; i < detail::max_stores; ++i)
      if (s_->stores[i]) s_->stores[i]->truncate(m.position[i]);
    s_->set_epoch(s_->epoch + 1);
  }

  /// Recorded nodes (scalar and tensor) currently on the tape.
  std::size_t size() const {
    check_thread("Tape::size");
    std::size_t n = 0;
    for (const auto& s : s_->stores)
      if (s) n += s->position();
    return n;
  }

  /// Bytes the tape holds: its stores' records and its arenas (capacity, not just use).
  std::size_t bytes() const {
    check_thread("Tape::bytes");
    std::size_t n = s_->records.reserved_bytes() + s_->scratch.reserved_bytes();
    for (const auto& s : s_->stores)
      if (s) n += s->bytes();
    return n;
  }

  /// The tape active on this thread: the innermost Scope's, or the thread's default.
  /// Errors: `stale_handle_error` when the innermost Scope's tape was destroyed
  /// while the Scope was still alive.
  static Tape& active() {
    const detail::thread_state& st = detail::state();
    if (!st.active) return thread_default();
    if (st.active->use.load(std::memory_order_relaxed) != st.active_id || !st.active->tape) [[unlikely]]
      throw stale_handle_error("Tape::active: the tape of the innermost Tape::Scope was destroyed before the Scope");
    return *st.active->tape;
  }

  /// This thread's default tape; it is destroyed when the thread ends.
  static Tape& thread_default() {
    thread_local Tape tape;
    return tape;
  }

  /// Changes every time nodes are freed; handles remember it to detect staleness.
  std::uint32_t epoch() const noexcept { return s_->epoch; }

  /// The arena that holds recorded tensor nodes and their buffers: its
  /// `reserved_bytes()`, `used_bytes()` and `peak_bytes()` tell what a graph costs.
  detail::arena& arena() noexcept { return s_->records; }
  const detail::arena& arena() const noexcept { return s_->records; }

  /// True when the calling thread may record on this tape and use its handles.
  bool is_owned_by_this_thread() const noexcept {
    return s_->owner.load(std::memory_order_relaxed) == detail::state().thread_id;
  }

  /// Hands the tape, and every handle into it, to the calling thread. The
  /// thread that had it must be done with it (joined, or waiting on a lock):
  /// from now on its uses raise `thread_error`.
  void bind_to_this_thread() noexcept { s_->set_owner(detail::state().thread_id); }

  /// Raises `thread_error` naming `what` unless the calling thread owns the tape.
  void check_thread(const char* what) const {
    if (!is_owned_by_this_thread()) [[unlikely]]
      throw thread_error(std::string(what) + ": the tape belongs to another thread");
  }

  /// The store of type S on this tape, made on first use. For the layers
  /// above the core (the scalar and the tensor layer each keep one).
  template <class S>
  S& store() {
    const std::size_t slot = detail::store_slot<S>();
    if (slot >= detail::max_stores) [[unlikely]]
      throw error("Tape: more than " + std::to_string(detail::max_stores) + " kinds of store");
    std::unique_ptr<detail::store>& p = s_->stores[slot];
    if (!p) [[unlikely]] {
      p = std::make_unique<S>();
      p->tape = s_;
      p->epoch = s_->epoch;
      p->owner.store(s_->owner.load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    return static_cast<S&>(*p);
  }

  /// The state behind the tape (for the layers above the core).
  detail::tape_state& state() noexcept { return *s_; }

  /// The Tape object of a tape state, or nullptr once that tape is destroyed.
  static Tape* of(const detail::tape_state& s) noexcept { return s.tape; }

 private:
  detail::tape_state* s_ = nullptr;
};

}  // namespace tapegrad
