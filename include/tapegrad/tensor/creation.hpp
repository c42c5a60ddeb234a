// SPDX-License-Identifier: MIT
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <numbers>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "tapegrad/core/error.hpp"
#include "tapegrad/tensor/shape.hpp"
#include "tapegrad/tensor/tensor.hpp"

namespace tapegrad {

// Every function here makes a *leaf*: a tensor that owns its values and
// outlives every tape. Pass `requires_grad = true` (or call
// `.requires_grad(true)` afterwards) for a parameter that should receive
// gradients. The element type defaults to float: `zeros({2, 3})` is a Tensor,
// `zeros<double>({2, 3})` a basic_tensor<double>.

/// A leaf of the given shape filled with 0.
template <std::floating_point T = float>
basic_tensor<T> zeros(const Shape& shape, bool requires_grad = false) {
  basic_tensor<T> t(shape, T(0));
  t.requires_grad(requires_grad);
  return t;
}

/// A leaf of the given shape filled with 1.
template <std::floating_point T = float>
basic_tensor<T> ones(const Shape& shape, bool requires_grad = false) {
  basic_tensor<T> t(shape, T(1));
  t.requires_grad(requires_grad);
  return t;
}

/// A leaf of the given shape filled with `value`.
template <std::floating_point T = float>
basic_tensor<T> full(const Shape& shape, std::type_identity_t<T> value, bool requires_grad = false) {
  basic_tensor<T> t(shape, value);
  t.requires_grad(requires_grad);
  return t;
}

/// The rank-1 leaf [start, start + step, ...] of the values below `stop`
/// (above it for a negative step), as NumPy's arange.
///
/// Example:
///   arange(0.0, 1.0, 0.25);   // [0, 0.25, 0.5, 0.75]
template <std::floating_point T = float>
basic_tensor<T> arange(std::type_identity_t<T> start, std::type_identity_t<T> stop, std::type_identity_t<T> step = 1,
                       bool requires_grad = false) {
  if (step == T(0) || !std::isfinite(step) || !std::isfinite(start) || !std::isfinite(stop))
    throw value_error("arange: start " + std::to_string(start) + ", stop " + std::to_string(stop) + ", step " +
                      std::to_string(step) + ": the step must be finite and nonzero");
  const double n = std::ceil((static_cast<double>(stop) - start) / step);
  const auto count = n > 0 ? static_cast<index_t>(n) : index_t{0};
  std::vector<T> v(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) v[static_cast<std::size_t>(i)] = static_cast<T>(start + i * step);
  basic_tensor<T> t(Shape{count}, std::move(v));
  t.requires_grad(requires_grad);
  return t;
}

/// The rank-1 leaf [0, 1, ..., n - 1].
template <std::floating_point T = float, std::integral I>
basic_tensor<T> arange(I n) {
  return arange<T>(T(0), static_cast<T>(n), T(1));
}

/// A leaf with the given shape and row-major values.
template <std::floating_point T = float>
basic_tensor<T> from(std::vector<T> values, const Shape& shape, bool requires_grad = false) {
  basic_tensor<T> t(shape, std::move(values));
  t.requires_grad(requires_grad);
  return t;
}

namespace detail {

// One number of a rank-1 list. Its converting constructor makes `from({{1}, {2}})`
// pick the rank-2 overload (a column), which needs no user-defined conversion.
template <class T>
struct list_number {
  T value;
  list_number(T v) : value(v) {}  // NOLINT: implicit on purpose
};

}  // namespace detail

/// A rank-1 leaf from a list: `from({1, 2, 3})` has shape [3].
template <std::floating_point T = float>
basic_tensor<T> from(std::initializer_list<detail::list_number<std::type_identity_t<T>>> values,
                     bool requires_grad = false) {
  std::vector<T> v;
  v.reserve(values.size());
  for (const auto& x : values) v.push_back(x.value);
  return from<T>(std::move(v), Shape{static_cast<index_t>(values.size())}, requires_grad);
}

/// A rank-2 leaf from nested lists, one inner list per row:
/// `from({{1, 2}, {3, 4}})` has shape [2, 2]. Rows of different lengths raise shape_error.
template <std::floating_point T = float>
basic_tensor<T> from(std::initializer_list<std::initializer_list<std::type_identity_t<T>>> rows,
                     bool requires_grad = false) {
  const auto n = static_cast<index_t>(rows.size());
  const auto m = n == 0 ? index_t{0} : static_cast<index_t>(rows.begin()->size());
  std::vector<T> v;
  v.reserve(static_cast<std::size_t>(n * m));
  index_t r = 0;
  for (const auto& row : rows) {
    if (static_cast<index_t>(row.size()) != m)
      throw shape_error("from: row " + std::to_string(r) + " has " + std::to_string(row.size()) +
                        " values, row 0 has " + std::to_string(m));
    v.insert(v.end(), row.begin(), row.end());
    ++r;
  }
  return from<T>(std::move(v), Shape{n, m}, requires_grad);
}

/// A leaf copied from an Eigen matrix, array, map or expression of any
/// storage order. The element type is the Eigen scalar. A compile-time column
/// vector (`Eigen::VectorXf`, `Eigen::ArrayXd`...) gives rank 1 [n]; anything
/// else gives rank 2 [rows, cols] with rows read as rows, whatever the layout.
///
/// Example:
///   Eigen::MatrixXf m(2, 3);                  // column-major
///   m << 1, 2, 3, 4, 5, 6;
///   Tensor t = tapegrad::from(m);             // [2, 3], t.at({0, 2}) == 3
template <class Derived>
requires std::floating_point<typename Derived::Scalar> basic_tensor<typename Derived::Scalar> from(
    const Eigen::DenseBase<Derived>& m, bool requires_grad = false) {
  using T = typename Derived::Scalar;
  const auto rows = static_cast<index_t>(m.rows()), cols = static_cast<index_t>(m.cols());
  std::vector<T> v(static_cast<std::size_t>(rows * cols));
  // Write through a row-major map so any source layout lands in row-major order.
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(v.data(), m.rows(), m.cols()) =
      m.derived().array();
  const Shape shape = Derived::ColsAtCompileTime == 1 ? Shape{rows} : Shape{rows, cols};
  return from<T>(std::move(v), shape, requires_grad);
}

// ---- reproducible random initialisers ------------------------------------

/// The random source of every initialiser: a 64-bit Mersenne Twister
/// (std::mt19937_64, whose output the C++ standard fixes) from an explicit
/// seed. The distributions are computed here rather than by the standard
/// library's, whose algorithms differ between implementations, so the same
/// seed gives the same tensors on every machine and compiler:
///
/// - `uniform()`: the top 53 bits of one 64-bit draw, times 2^-53: a double in [0, 1).
/// - `normal()`: Box–Muller on two uniforms u1, u2:
///   sqrt(-2 ln(1 - u1)) * cos(2 pi u2), then sqrt(-2 ln(1 - u1)) * sin(2 pi u2)
///   on the next call (each pair yields two values).
///
/// Values are made in double and rounded to the tensor's type, in row-major
/// order. Uniform draws are bit-identical everywhere; normal draws go through
/// std::log, std::cos and std::sin, which common C libraries round the same
/// way (at worst they could differ in the last bit of a double, far below
/// float precision).
///
/// Example:
///   tapegrad::Generator gen(42);
///   Tensor w = tapegrad::xavier_uniform({64, 20}, gen);
class Generator {
 public:
  /// A generator in the state given by `seed`.
  explicit Generator(std::uint64_t seed) : engine_(seed) {}

  /// Restarts the sequence from `seed`.
  void seed(std::uint64_t seed) {
    engine_.seed(seed);
    has_spare_ = false;
  }

  /// The next raw 64-bit draw.
  std::uint64_t next() { return engine_(); }

  /// A double uniform in [0, 1).
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

  /// A double from the standard normal distribution.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(1.0 - u1));  // 1 - u1 lies in (0, 1]: log is finite
    const double a = 2.0 * std::numbers::pi * u2;
    spare_ = r * std::sin(a);
    has_spare_ = true;
    return r * std::cos(a);
  }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0;
  bool has_spare_ = false;
};

// ---- the process-wide default generator ----------------------------------

namespace detail {

/// The default generator behind a lock; its seed before any manual_seed()
/// is fixed, so a program gives the same numbers on every run.
struct default_generator_state {
  static constexpr std::uint64_t initial_seed = 0x9e3779b97f4a7c15ULL;
  std::mutex mutex;
  Generator gen{initial_seed};
};

inline default_generator_state& default_generator() {
  static default_generator_state state;
  return state;
}

}  // namespace detail

/// Restarts the process-wide default generator from `seed`, as
/// torch.manual_seed does. Every layer built without a seed or a Generator
/// draws its initial values from it, as do `normal()` and `uniform()`
/// without a Generator. Thread-safe; two runs of the same program after the
/// same manual_seed build the same model, bit for bit.
///
/// Example:
///   tapegrad::manual_seed(7);
///   tapegrad::nn::Linear a(4, 4), b(4, 4);   // differ from each other; the same on every run
inline void manual_seed(std::uint64_t seed) {
  auto& d = detail::default_generator();
  std::lock_guard lock(d.mutex);
  d.gen.seed(seed);
}

/// One 64-bit draw from the default generator (thread-safe). A layer without
/// a seed or a Generator seeds its own generator with one such draw, so two
/// such layers differ and a manual_seed() before them reproduces both.
inline std::uint64_t default_generator_seed() {
  auto& d = detail::default_generator();
  std::lock_guard lock(d.mutex);
  return d.gen.next();
}

/// A leaf with values drawn from N(mean, std^2).
template <std::floating_point T = float>
basic_tensor<T> normal(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0) {
  if (!(std >= 0)) throw value_error("normal: standard deviation " + std::to_string(std) + " is negative");
  std::vector<T> v(static_cast<std::size_t>(shape.numel()));
  for (T& x : v) x = static_cast<T>(mean + std * gen.normal());
  return basic_tensor<T>(shape, std::move(v));
}

/// A leaf with values drawn uniformly from [lo, hi).
template <std::floating_point T = float>
basic_tensor<T> uniform(const Shape& shape, Generator& gen, double lo = 0.0, double hi = 1.0) {
  if (!(lo <= hi)) throw value_error("uniform: lo " + std::to_string(lo) + " exceeds hi " + std::to_string(hi));
  std::vector<T> v(static_cast<std::size_t>(shape.numel()));
  for (T& x : v) x = static_cast<T>(lo + (hi - lo) * gen.uniform());
  return basic_tensor<T>(shape, std::move(v));
}

/// A leaf drawn from N(mean, std^2) with the default generator (see manual_seed).
template <std::floating_point T = float>
basic_tensor<T> normal(const Shape& shape, double mean = 0.0, double std = 1.0) {
  auto& d = detail::default_generator();
  std::lock_guard lock(d.mutex);
  return normal<T>(shape, d.gen, mean, std);
}

/// A leaf drawn uniformly from [lo, hi) with the default generator (see manual_seed).
template <std::floating_point T = float>
basic_tensor<T> uniform(const Shape& shape, double lo = 0.0, double hi = 1.0) {
  auto& d = detail::default_generator();
  std::lock_guard lock(d.mutex);
  return uniform<T>(shape, d.gen, lo, hi);
}

/// Fan-in and fan-out of a weight, for the scaled initialisers.
struct Fans {
  index_t in = 0;
  index_t out = 0;
};

/// Which fan the Kaiming initialisers scale by.
enum class FanMode { fan_in, fan_out };

/// The fans of a weight stored as tapegrad's Linear stores it: shape
/// [in, out], so y = x W. Then fan_in = shape[0] and fan_out = shape[1].
/// (PyTorch stores [out, in] and reads its fans the other way round; the
/// numbers are the same for the same layer.) For rank 3 and 4 the last two
/// dimensions are [in, out] and each fan is multiplied by the product of the
/// leading dimensions, the "receptive field". Rank 0 and 1 raise value_error:
/// a bias has no fans of its own.
inline Fans compute_fans(const Shape& shape, const char* op = "compute_fans") {
  if (shape.rank() < 2)
    throw value_error(std::string(op) + ": shape " + shape.str() +
                      " has fewer than 2 dimensions, so fan_in and fan_out are undefined");
  index_t field = 1;
  for (int i = 0; i + 2 < shape.rank(); ++i) field *= shape[i];
  return {shape[-2] * field, shape[-1] * field};
}

/// Glorot/Xavier uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).
template <std::floating_point T = float>
basic_tensor<T> xavier_uniform(const Shape& shape, Generator& gen, double gain = 1.0) {
  const Fans f = compute_fans(shape, "xavier_uniform");
  const double b = gain * std::sqrt(6.0 / static_cast<double>(f.in + f.out));
  return uniform<T>(shape, gen, -b, b);
}

/// Glorot/Xavier normal: N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out)).
template <std::floating_point T = float>
basic_tensor<T> xavier_normal(const Shape& shape, Generator& gen, double gain = 1.0) {
  const Fans f = compute_fans(shape, "xavier_normal");
  return normal<T>(shape, gen, 0.0, gain * std::sqrt(2.0 / static_cast<double>(f.in + f.out)));
}

namespace detail {

// The leaky-ReLU gain sqrt(2 / (1 + a^2)) over sqrt(fan): the standard
// deviation of the Kaiming initialisers.
inline double kaiming_std(const Shape& shape, double a, FanMode mode, const char* op) {
  const Fans f = compute_fans(shape, op);
  const double fan = static_cast<double>(mode == FanMode::fan_in ? f.in : f.out);
  if (fan == 0) throw value_error(std::string(op) + ": shape " + shape.str() + " has a fan of 0");
  return std::sqrt(2.0 / (1.0 + a * a)) / std::sqrt(fan);
}

}  // namespace detail

/// He/Kaiming uniform, as PyTorch's `kaiming_uniform_` with a leaky-ReLU
/// gain: U(-b, b) with b = sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan).
/// a = 0 (the default) is the ReLU gain sqrt(2). a = sqrt(5) gives
/// b = 1 / sqrt(fan_in), the default initialisation of PyTorch's Linear.
template <std::floating_point T = float>
basic_tensor<T> kaiming_uniform(const Shape& shape, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in) {
  const double b = std::sqrt(3.0) * detail::kaiming_std(shape, a, mode, "kaiming_uniform");
  return uniform<T>(shape, gen, -b, b);
}

/// He/Kaiming normal: N(0, s^2) with s = sqrt(2 / (1 + a^2)) / sqrt(fan).
template <std::floating_point T = float>
basic_tensor<T> kaiming_normal(const Shape& shape, Generator& gen, double a = 0.0, FanMode mode = FanMode::fan_in) {
  return normal<T>(shape, gen, 0.0, detail::kaiming_std(shape, a, mode, "kaiming_normal"));
}

}  // namespace tapegrad
