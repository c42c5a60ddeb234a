// SPDX-License-Identifier: MIT
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace tapegrad::detail {

/// A bump allocator made of large blocks. `rewind()` keeps the blocks, so a
/// loop that records the same graph every step reuses the same memory and, once
/// warm, allocates nothing on the heap.
class arena {
 public:
  /// A position in the arena; rewinding to it frees everything allocated after.
  struct mark {
    std::size_t block = 0;
    std::size_t offset = 0;
  };

  explicit arena(std::size_t block_bytes = std::size_t{1} << 20) : block_bytes_(block_bytes) {}
  arena(const arena&) = delete;
  arena& operator=(const arena&) = delete;

  /// Uninitialised storage of `bytes` bytes aligned to `align` (a power of two).
  void* allocate(std::size_t bytes, std::size_t align = alignof(std::max_align_t)) {
    if (bytes == 0) bytes = 1;
    while (true) {
      if (current_ < blocks_.size()) {
        block& b = blocks_[current_];
        auto base = reinterpret_cast<std::uintptr_t>(b.data.get());
        std::uintptr_t p = (base + offset_ + (align - 1)) & ~static_cast<std::uintptr_t>(align - 1);
        if (p + bytes <= base + b.size) {
          offset_ = static_cast<std::size_t>(p + bytes - base);
          if (base_ + offset_ > peak_) peak_ = base_ + offset_;
          return reinterpret_cast<void*>(p);
        }
        // The next block may already exist (kept from an earlier step).
        if (current_ + 1 < blocks_.size() && blocks_[current_ + 1].size >= bytes + align) {
          base_ += b.size;
          ++current_;
          offset_ = 0;
          continue;
        }
      }
      add_block(bytes + align);
    }
  }

  /// Storage for `n` objects of type T, uninitialised.
  template <class T>
  T* allocate_array(std::size_t n) {
    return static_cast<T*>(allocate(n * sizeof(T), alignof(T) < 64 ? 64 : alignof(T)));
  }

  mark position() const noexcept { return {current_, offset_}; }

  /// Frees everything allocated after `m`; the blocks themselves are kept.
  void rewind(mark m) noexcept {
    current_ = m.block;
    offset_ = m.offset;
    base_ = 0;
    for (std::size_t i = 0; i < current_ && i < blocks_.size(); ++i) base_ += blocks_[i].size;
  }

  /// Bytes from the start of the first block to the current position: what is in use.
  std::size_t used_bytes() const noexcept { return base_ + offset_; }

  /// The largest `used_bytes()` seen since the arena was made or `reset_peak()` ran.
  std::size_t peak_bytes() const noexcept { return peak_; }

  /// Starts a new peak measurement from the current use.
  void reset_peak() noexcept { peak_ = used_bytes(); }

  /// Gives every block back to the heap (the owner is gone or asked to shrink).
  void release() noexcept {
    blocks_.clear();
    blocks_.shrink_to_fit();
    current_ = offset_ = base_ = peak_ = 0;
  }

  /// Bytes held in blocks (what the arena costs in memory).
  std::size_t reserved_bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& b : blocks_) n += b.size;
    return n;
  }

  /// How many blocks were ever obtained from the heap.
  std::size_t block_count() const noexcept { return blocks_.size(); }

 private:
  struct block {
    std::unique_ptr<std::byte[]> data;
    std::size_t size = 0;
  };

  void add_block(std::size_t at_least) {
    std::size_t size = block_bytes_ > at_least ? block_bytes_ : at_least;
    // Insert after the current block so kept blocks further on stay usable.
    std::size_t at = blocks_.empty() ? 0 : current_ + 1;
    blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(at),
                   block{std::unique_ptr<std::byte[]>(new std::byte[size]), size});
    if (!blocks_.empty() && at > 0) {
      base_ = 0;
      for (std::size_t i = 0; i < at; ++i) base_ += blocks_[i].size;
    }
    current_ = at;
    offset_ = 0;
  }

  std::vector<block> blocks_;
  std::size_t current_ = 0;
  std::size_t offset_ = 0;
  std::size_t base_ = 0;  // bytes in the blocks before the current one
  std::size_t peak_ = 0;
  std::size_t block_bytes_;
};

}  // namespace tapegrad::detail
