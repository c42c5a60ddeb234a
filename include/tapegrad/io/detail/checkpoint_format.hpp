// SPDX-License-Identifier: MIT
#pragma once

// The byte-level pieces of the checkpoint format (see docs/checkpoints.md):
// little-endian encoding, FNV-1a 64, a bounds-checked reader that names file
// offsets in its errors, and the atomic write (temporary file, then rename).

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tapegrad/core/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>  // fsync
#endif

namespace tapegrad::detail {

/// The first 8 bytes of every checkpoint.
inline constexpr unsigned char checkpoint_magic[8] = {0x89, 'T', 'G', 'C', 'K', 'P', 'T', '\n'};
/// The format version this build writes. Version 2 added the optimizer's
/// per-parameter step counts ("param_steps").
inline constexpr std::uint32_t checkpoint_version = 2;
/// The oldest version this build still reads.
inline constexpr std::uint32_t checkpoint_oldest_version = 1;
/// magic (8) + version (4) + record count (4) + payload size (8).
inline constexpr std::size_t checkpoint_header_size = 24;

/// Record sections and element types as stored in the file.
enum class ckpt_section : std::uint8_t { module = 1, optimizer = 2 };
enum class ckpt_dtype : std::uint8_t { f32 = 1, f64 = 2, u64 = 3, text = 4 };

inline const char* dtype_name(ckpt_dtype d) {
  switch (d) {
    case ckpt_dtype::f32:
      return "float32";
    case ckpt_dtype::f64:
      return "float64";
    case ckpt_dtype::u64:
      return "uint64";
    case ckpt_dtype::text:
      return "text";
  }
  return "unknown";
}

inline std::size_t dtype_size(ckpt_dtype d) { return d == ckpt_dtype::text ? 1 : d == ckpt_dtype::f32 ? 4 : 8; }

template <class T>
constexpr ckpt_dtype dtype_of() {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "checkpoints store float and double");
  return sizeof(T) == 4 ? ckpt_dtype::f32 : ckpt_dtype::f64;
}

/// FNV-1a, 64 bits: h = (h xor byte) * 1099511628211, from 14695981039346656037.
inline std::uint64_t fnv1a64(const unsigned char* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ULL;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ULL;
  }
  return h;
}

inline std::string hex64(std::uint64_t x) {
  std::ostringstream os;
  os << "0x" << std::hex;
  os.width(16);
  os.fill('0');
  os << x;
  return os.str();
}

/// Appends little-endian values to a byte buffer.
class byte_writer {
 public:
  std::vector<unsigned char> bytes;

  void u8(std::uint8_t x) { bytes.push_back(x); }
  void u32(std::uint32_t x) {
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(x >> (8 * i)));
  }
  void u64(std::uint64_t x) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<unsigned char>(x >> (8 * i)));
  }
  void f32(float x) { u32(std::bit_cast<std::uint32_t>(x)); }
  void f64(double x) { u64(std::bit_cast<std::uint64_t>(x)); }
  void raw(const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    bytes.insert(bytes.end(), c, c + n);
  }
  /// Overwrites 8 bytes at `at` (the payload size, once known).
  void patch_u64(std::size_t at, std::uint64_t x) {
    for (int i = 0; i < 8; ++i) bytes[at + static_cast<std::size_t>(i)] = static_cast<unsigned char>(x >> (8 * i));
  }
  template <class T>
  void values(const T* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (sizeof(T) == 4)
        f32(static_cast<float>(p[i]));
      else
        f64(static_cast<double>(p[i]));
    }
  }
};

/// Reads little-endian values from a byte buffer; running past `end` raises
/// io_error naming the file, the offset and what was being read.
class byte_reader {
 public:
  byte_reader(const std::string& file, const std::vector<unsigned char>& bytes, std::size_t begin, std::size_t end)
      : file_(file), bytes_(bytes), pos_(begin), end_(end) {}

  std::size_t offset() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return end_ - pos_; }

  std::uint8_t u8(const char* what) {
    need(1, what);
    return bytes_[pos_++];
  }
  std::uint32_t u32(const char* what) {
    need(4, what);
    std::uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x |= std::uint32_t{bytes_[pos_ + static_cast<std::size_t>(i)]} << (8 * i);
    pos_ += 4;
    return x;
  }
  std::uint64_t u64(const char* what) {
    need(8, what);
    std::uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= std::uint64_t{bytes_[pos_ + static_cast<std::size_t>(i)]} << (8 * i);
    pos_ += 8;
    return x;
  }
  std::string text(std::size_t n, const char* what) {
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  /// Skips n bytes, checking they are there; returns where they start.
  std::size_t skip(std::size_t n, const char* what) {
    need(n, what);
    const std::size_t at = pos_;
    pos_ += n;
    return at;
  }

  [[noreturn]] void fail(std::size_t at, const std::string& msg) const {
    throw io_error("checkpoint '" + file_ + "': " + msg + " (at file offset " + std::to_string(at) + ")");
  }

 private:
  void need(std::size_t n, const char* what) const {
    if (n > end_ - pos_)
      fail(pos_, std::string("truncated while reading ") + what + ": " + std::to_string(n) + " bytes needed, " +
                     std::to_string(end_ - pos_) + " left");
  }

  const std::string& file_;
  const std::vector<unsigned char>& bytes_;
  std::size_t pos_, end_;
};

/// Decodes n little-endian values of the file's type `d` (f32 or f64) into T.
template <class T>
void decode_values(const unsigned char* p, ckpt_dtype d, T* out, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (d == ckpt_dtype::f32) {
      std::uint32_t x = 0;
      for (int k = 0; k < 4; ++k) x |= std::uint32_t{p[4 * i + static_cast<std::size_t>(k)]} << (8 * k);
      out[i] = static_cast<T>(std::bit_cast<float>(x));
    } else {
      std::uint64_t x = 0;
      for (int k = 0; k < 8; ++k) x |= std::uint64_t{p[8 * i + static_cast<std::size_t>(k)]} << (8 * k);
      out[i] = static_cast<T>(std::bit_cast<double>(x));
    }
  }
}

/// The whole file in memory.
inline std::vector<unsigned char> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error("checkpoint '" + path + "': cannot open for reading");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw io_error("checkpoint '" + path + "': read error");
  return bytes;
}

/// Test hook: when set, the next atomic write stops after this many bytes and
/// fails as a full disk would. Lets the tests show a failed save leaves the
/// previous checkpoint whole.
inline std::size_t& checkpoint_write_limit() {
  thread_local std::size_t limit = static_cast<std::size_t>(-1);
  return limit;
}

/// Writes `bytes` to `path` atomically: first to a temporary file in the same
/// directory, flushed to disk, then renamed over `path`. A failure (or a
/// crash) at any point leaves `path` as it was; the temporary file is removed.
inline void write_file_atomically(const std::string& path, const std::vector<unsigned char>& bytes) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  std::random_device rd;
  const std::uint64_t tag = (std::uint64_t{rd()} << 32) ^ rd();
  fs::path tmp = target;
  tmp += ".tmp-" + hex64(tag).substr(2, 8);

  auto fail = [&](const std::string& why) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw io_error("checkpoint '" + path + "': " + why + "; the previous file (if any) is unchanged");
  };

  std::FILE* f = std::fopen(tmp.string().c_str(), "wb");
  if (!f)
    throw io_error("checkpoint '" + path + "': cannot create temporary file '" + tmp.string() +
                   "': " + std::strerror(errno));
  std::size_t limit = checkpoint_write_limit();
  checkpoint_write_limit() = static_cast<std::size_t>(-1);
  const std::size_t n = bytes.size() < limit ? bytes.size() : limit;
  const std::size_t written = std::fwrite(bytes.data(), 1, n, f);
  bool ok = written == bytes.size();
  ok = std::fflush(f) == 0 && ok;
#if defined(__unix__) || defined(__APPLE__)
  ok = ::fsync(::fileno(f)) == 0 && ok;
#endif
  ok = std::fclose(f) == 0 && ok;
  if (!ok)
    fail("writing the temporary file failed after " + std::to_string(written) + " of " + std::to_string(bytes.size()) +
         " bytes");
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) fail("cannot rename the temporary file over it: " + ec.message());
}

}  // namespace tapegrad::detail
