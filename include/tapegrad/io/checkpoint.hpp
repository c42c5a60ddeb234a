// SPDX-License-Identifier: MIT
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/io/detail/checkpoint_format.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad::detail {

/// One record of a parsed file: where its values lie in the file's bytes.
struct ckpt_record {
  ckpt_section section{};
  std::string name;
  ckpt_dtype dtype{};
  Shape shape;
  std::size_t offset = 0;  // file offset of the record's first byte
  std::size_t data = 0;    // file offset of its values
  std::size_t count = 0;   // number of values
};

/// Writes a record's head: section, name, element type, rank and extents.
inline void ckpt_write_record(byte_writer& w, ckpt_section section, const std::string& name, ckpt_dtype dtype,
                              const Shape& shape) {
  w.u8(static_cast<std::uint8_t>(section));
  w.u32(static_cast<std::uint32_t>(name.size()));
  w.raw(name.data(), name.size());
  w.u8(static_cast<std::uint8_t>(dtype));
  w.u8(static_cast<std::uint8_t>(shape.rank()));
  for (int d = 0; d < shape.rank(); ++d) w.u64(static_cast<std::uint64_t>(shape[d]));
}

/// The whole file: header, records, checksum. `version` 1 writes the previous
/// layout (no per-parameter step counts), which the tests use to show that
/// such files still load.
template <std::floating_point T>
std::vector<unsigned char> ckpt_encode(const nn::basic_module<T>& model, optim::basic_optimizer<T>* opt,
                                       std::uint32_t version = checkpoint_version) {
  byte_writer w;
  w.raw(checkpoint_magic, 8);
  w.u32(version);
  w.u32(0);  // record count, patched below
  w.u64(0);  // payload size, patched below
  std::uint32_t records = 0;
  constexpr ckpt_dtype dt = dtype_of<T>();
  for (const auto& [name, p] : model.named_parameters()) {
    ckpt_write_record(w, ckpt_section::module, name, dt, p.shape());
    w.values(p.data().data(), static_cast<std::size_t>(p.numel()));
    ++records;
  }
  if (opt) {
    const std::string type = opt->name();
    ckpt_write_record(w, ckpt_section::optimizer, "type", ckpt_dtype::text, Shape{static_cast<index_t>(type.size())});
    w.raw(type.data(), type.size());
    ckpt_write_record(w, ckpt_section::optimizer, "step", ckpt_dtype::u64, Shape{});
    w.u64(opt->step_count());
    ckpt_write_record(w, ckpt_section::optimizer, "lr", ckpt_dtype::f64, Shape{});
    w.f64(opt->lr());
    records += 3;
    if (version >= 2) {
      const auto& counts = opt->param_step_counts();
      ckpt_write_record(w, ckpt_section::optimizer, "param_steps", ckpt_dtype::u64,
                        Shape{static_cast<index_t>(counts.size())});
      for (std::uint64_t c : counts) w.u64(c);
      ++records;
    }
    for (const auto& b : opt->state()) {
      ckpt_write_record(w, ckpt_section::optimizer, b.name, dt, b.shape);
      w.values(b.data, static_cast<std::size_t>(b.shape.numel()));
      ++records;
    }
  }
  for (int i = 0; i < 4; ++i)
    w.bytes[12 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(records >> (8 * i));
  w.patch_u64(16, w.bytes.size() - checkpoint_header_size);
  w.u64(fnv1a64(w.bytes.data(), w.bytes.size()));
  return w.bytes;
}

/// Checks the header, the length and the checksum, then splits the payload
/// into records. Nothing outside the returned list is touched. The file's
/// format version goes to `*version` when given.
inline std::vector<ckpt_record> ckpt_parse(const std::string& path, const std::vector<unsigned char>& bytes,
                                           std::uint32_t* version_out = nullptr) {
  byte_reader head(path, bytes, 0, bytes.size());
  if (bytes.size() < checkpoint_header_size)
    head.fail(bytes.size(), "truncated: the file has " + std::to_string(bytes.size()) + " bytes, fewer than the " +
                                std::to_string(checkpoint_header_size) + "-byte header");
  for (std::size_t i = 0; i < 8; ++i)
    if (bytes[i] != checkpoint_magic[i]) head.fail(i, "not a tapegrad checkpoint (wrong magic bytes)");
  head.skip(8, "the magic");
  const std::uint32_t version = head.u32("the version");
  if (version < checkpoint_oldest_version || version > checkpoint_version)
    head.fail(8, "format version " + std::to_string(version) + " is not supported (this build reads versions " +
                     std::to_string(checkpoint_oldest_version) + " to " + std::to_string(checkpoint_version) + ")");
  if (version_out) *version_out = version;
  const std::uint32_t count = head.u32("the record count");
  const std::uint64_t payload = head.u64("the payload size");
  const std::size_t body_end = checkpoint_header_size + payload;
  if (payload > bytes.size() || body_end + 8 > bytes.size())
    head.fail(bytes.size(), "truncated: the file ends at " + std::to_string(bytes.size()) +
                                " bytes but its header announces " +
                                std::to_string(checkpoint_header_size + payload + 8));
  if (body_end + 8 < bytes.size())
    head.fail(body_end + 8, std::to_string(bytes.size() - body_end - 8) + " unexpected bytes after the checksum");
  byte_reader tail(path, bytes, body_end, body_end + 8);
  const std::uint64_t stored = tail.u64("the checksum");
  const std::uint64_t computed = fnv1a64(bytes.data(), body_end);
  if (stored != computed)
    head.fail(body_end, "checksum mismatch: stored " + hex64(stored) + ", computed " + hex64(computed) +
                            " over bytes [0, " + std::to_string(body_end) + "): the file is corrupted");

  std::vector<ckpt_record> out;
  byte_reader r(path, bytes, checkpoint_header_size, body_end);
  for (std::uint32_t k = 0; k < count; ++k) {
    ckpt_record rec;
    rec.offset = r.offset();
    const std::uint8_t section = r.u8("a record's section");
    if (section != 1 && section != 2)
      r.fail(rec.offset, "record " + std::to_string(k) + " has unknown section " + std::to_string(section));
    rec.section = static_cast<ckpt_section>(section);
    const std::uint32_t name_len = r.u32("a record's name length");
    rec.name = r.text(name_len, "a record's name");
    const std::size_t dtype_at = r.offset();
    const std::uint8_t dtype = r.u8("a record's element type");
    if (dtype < 1 || dtype > 4)
      r.fail(dtype_at, "record '" + rec.name + "' has unknown element type " + std::to_string(dtype));
    rec.dtype = static_cast<ckpt_dtype>(dtype);
    const std::size_t rank_at = r.offset();
    const std::uint8_t rank = r.u8("a record's rank");
    if (rank > max_rank) r.fail(rank_at, "record '" + rec.name + "' has rank " + std::to_string(rank));
    std::vector<index_t> dims;
    std::uint64_t n = 1;
    for (std::uint8_t d = 0; d < rank; ++d) {
      const std::uint64_t e = r.u64("a record's shape");
      // An extent larger than what is left cannot be real; this also keeps n from overflowing.
      if (e > r.remaining() + 1)
        r.fail(r.offset() - 8, "record '" + rec.name + "' has an impossible extent " + std::to_string(e));
      dims.push_back(static_cast<index_t>(e));
      // Saturate instead of overflowing: a count past what is left fails the read below.
      const std::uint64_t cap = r.remaining() + 1;
      n = (e != 0 && n > cap / e) ? cap : n * e;
    }
    rec.shape = Shape(dims);
    rec.count = static_cast<std::size_t>(n);
    rec.data = r.skip(rec.count * dtype_size(rec.dtype), "a record's values");
    out.push_back(std::move(rec));
  }
  if (r.remaining() != 0) r.fail(r.offset(), std::to_string(r.remaining()) + " bytes after the last record");
  return out;
}

[[noreturn]] inline void ckpt_mismatch(const std::string& path, const std::string& msg) {
  throw io_error("checkpoint '" + path + "': " + msg);
}

/// The values of `rec`, checked against what the model expects.
template <std::floating_point T>
void ckpt_check_tensor(const std::string& path, const char* what, const std::string& name, const Shape& shape,
                       const ckpt_record& rec) {
  constexpr ckpt_dtype dt = dtype_of<T>();
  if (rec.name != name)
    ckpt_mismatch(path, std::string(what) + " mismatch: expected '" + name + "' " + shape.str() + ", the file has '" +
                            rec.name + "' " + rec.shape.str());
  if (!(rec.shape == shape))
    ckpt_mismatch(
        path, std::string(what) + " '" + name + "': expected shape " + shape.str() + ", file shape " + rec.shape.str());
  if (rec.dtype != dt)
    ckpt_mismatch(path, std::string(what) + " '" + name + "': expected " + dtype_name(dt) + ", the file stores " +
                            dtype_name(rec.dtype));
}

/// Validates the file against the model (and the optimizer), then copies.
template <std::floating_point T>
void ckpt_load(const std::string& path, nn::basic_module<T>& model, optim::basic_optimizer<T>* opt) {
  const std::vector<unsigned char> bytes = read_file_bytes(path);
  std::uint32_t version = 0;
  const std::vector<ckpt_record> records = ckpt_parse(path, bytes, &version);

  std::vector<const ckpt_record*> params, state;
  for (const ckpt_record& r : records) (r.section == ckpt_section::module ? params : state).push_back(&r);

  // 1. Parameters: the same names, in the same order, with the same shapes.
  const auto named = model.named_parameters();
  for (std::size_t i = 0; i < named.size() || i < params.size(); ++i) {
    if (i >= params.size())
      ckpt_mismatch(path, "parameter '" + named[i].first + "' " + named[i].second.shape().str() +
                              " is missing from the file (it has " + std::to_string(params.size()) +
                              " parameters, the model " + std::to_string(named.size()) + ")");
    if (i >= named.size())
      ckpt_mismatch(path, "the file has parameter '" + params[i]->name + "' " + params[i]->shape.str() +
                              " that the model lacks (the file has " + std::to_string(params.size()) +
                              " parameters, the model " + std::to_string(named.size()) + ")");
    ckpt_check_tensor<T>(path, "parameter", named[i].first, named[i].second.shape(), *params[i]);
  }

  // 2. Optimizer: same type, then step, lr, (from version 2) the
  // per-parameter step counts, and the state buffers in order.
  std::vector<optim::StateBuffer<T>> buffers;
  std::uint64_t step = 0;
  double lr = 0;
  std::vector<std::uint64_t> param_steps;
  std::size_t first_buffer = 3;  // index in `state` of the first state buffer
  if (opt) {
    if (state.empty()) ckpt_mismatch(path, "the file holds no optimizer state (it was saved without an optimizer)");
    const std::string type = opt->name();
    if (state.size() < 3 || state[0]->name != "type" || state[0]->dtype != ckpt_dtype::text ||
        state[1]->name != "step" || state[1]->dtype != ckpt_dtype::u64 || state[1]->count != 1 ||
        state[2]->name != "lr" || state[2]->dtype != ckpt_dtype::f64 || state[2]->count != 1)
      ckpt_mismatch(path, "the optimizer section does not start with its type, step and lr records");
    const std::string file_type(reinterpret_cast<const char*>(bytes.data() + state[0]->data), state[0]->count);
    if (file_type != type)
      ckpt_mismatch(path, "optimizer mismatch: expected " + type + " state, the file holds " + file_type);
    byte_reader sr(path, bytes, state[1]->data, state[1]->data + 8);
    step = sr.u64("the step count");
    decode_values(bytes.data() + state[2]->data, ckpt_dtype::f64, &lr, 1);
    if (!(lr >= 0) || !std::isfinite(lr))
      ckpt_mismatch(path, "the stored learning rate " + std::to_string(lr) + " is invalid");
    const std::size_t n_params = opt->parameters().size();
    if (version >= 2) {
      if (state.size() < 4 || state[3]->name != "param_steps" || state[3]->dtype != ckpt_dtype::u64 ||
          state[3]->shape.rank() != 1)
        ckpt_mismatch(path, "the optimizer section lacks its per-parameter step counts ('param_steps', uint64 [n])");
      if (state[3]->count != n_params)
        ckpt_mismatch(path, "the file has step counts for " + std::to_string(state[3]->count) +
                                " parameters, the optimizer has " + std::to_string(n_params));
      byte_reader pr(path, bytes, state[3]->data, state[3]->data + 8 * n_params);
      for (std::size_t i = 0; i < n_params; ++i) param_steps.push_back(pr.u64("a parameter's step count"));
      first_buffer = 4;
    }
    buffers = opt->state();
    const std::size_t file_buffers = state.size() - first_buffer;
    for (std::size_t i = 0; i < buffers.size() || i < file_buffers; ++i) {
      if (i >= file_buffers)
        ckpt_mismatch(
            path, "optimizer state '" + buffers[i].name + "' " + buffers[i].shape.str() + " is missing from the file");
      const ckpt_record& rec = *state[first_buffer + i];
      if (i >= buffers.size())
        ckpt_mismatch(
            path, "the file has optimizer state '" + rec.name + "' " + rec.shape.str() + " that the optimizer lacks");
      ckpt_check_tensor<T>(path, "optimizer state", buffers[i].name, buffers[i].shape, rec);
    }
  }

  // 3. Everything fits: copy. Nothing below can fail.
  for (std::size_t i = 0; i < named.size(); ++i) {
    auto param = named[i].second;
    auto d = param.data().data();
    decode_values(bytes.data() + params[i]->data, params[i]->dtype, d, params[i]->count);
  }
  if (opt) {
    for (std::size_t i = 0; i < buffers.size(); ++i) {
      const ckpt_record& rec = *state[first_buffer + i];
      decode_values(bytes.data() + rec.data, rec.dtype, buffers[i].data, rec.count);
    }
    if (version < 2) {
      // Version 1 kept one count for the whole optimizer. A parameter with
      // state (a buffer not all zero) had received updates: it gets that
      // count; a parameter without state, none.
      param_steps.assign(opt->parameters().size(), 0);
      for (const auto& b : buffers) {
        const T* d = b.data;
        const auto n = static_cast<std::size_t>(b.shape.numel());
        for (std::size_t k = 0; k < n; ++k)
          if (d[k] != T(0)) {
            param_steps[b.param] = step;
            break;
          }
      }
    }
    opt->set_param_step_counts(param_steps);
    opt->set_step_count(step);
    opt->set_lr(lr);
  }
}

}  // namespace tapegrad::detail

namespace tapegrad::io {

// Checkpoints: a module's parameters, and optionally an optimizer's state, in
// one versioned binary file (the format is described byte by byte in
// docs/checkpoints.md).
//
//   tapegrad::io::save_checkpoint("model.tgc", model, opt);    // atomic
//   ...
//   Model fresh(options);
//   tapegrad::optim::Adam opt2(fresh.parameters(), {.lr = 1e-3});
//   tapegrad::io::load_checkpoint("model.tgc", fresh, opt2);   // all or nothing
//
// Loading checks everything before it changes anything: a missing, truncated,
// corrupted or mismatched file raises tapegrad::io_error, and the module and
// optimizer keep their values.

/// Saves the module's parameters (by dotted name) to `path`. The file is
/// written to a temporary file in the same directory and renamed over `path`,
/// so `path` always holds either the old checkpoint or the new one, whole.
template <std::floating_point T>
void save_checkpoint(const std::string& path, const nn::basic_module<T>& model) {
  tapegrad::detail::write_file_atomically(path, tapegrad::detail::ckpt_encode<T>(model, nullptr));
}

/// Saves the module's parameters and the optimizer's state (its type, step
/// count, learning rate, per-parameter step counts and per-parameter buffers
/// such as Adam's moments).
template <std::floating_point T>
void save_checkpoint(const std::string& path, const nn::basic_module<T>& model,
                     const optim::basic_optimizer<T>& optimizer) {
  // Saving only reads the state; state() hands out writable views for loading.
  auto& opt = const_cast<optim::basic_optimizer<T>&>(optimizer);
  tapegrad::detail::write_file_atomically(path, tapegrad::detail::ckpt_encode<T>(model, &opt));
}

/// Loads parameters saved by `save_checkpoint` into `model`. The file's
/// parameters must match the model's `named_parameters()` one for one (name,
/// shape and element type); any optimizer state in the file is ignored. On
/// any error (missing, truncated, corrupted or mismatched file) raises
/// io_error and leaves the model unchanged.
template <std::floating_point T>
void load_checkpoint(const std::string& path, nn::basic_module<T>& model) {
  tapegrad::detail::ckpt_load<T>(path, model, nullptr);
}

/// Loads parameters and optimizer state; the optimizer must be of the type
/// that was saved, over the same parameters. All or nothing, as above. A
/// file of format version 1 (one step count for the whole optimizer) loads
/// too: each parameter with state gets that count, the others 0.
template <std::floating_point T>
void load_checkpoint(const std::string& path, nn::basic_module<T>& model, optim::basic_optimizer<T>& optimizer) {
  tapegrad::detail::ckpt_load<T>(path, model, &optimizer);
}

}  // namespace tapegrad::io
