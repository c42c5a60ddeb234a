// SPDX-License-Identifier: MIT
#pragma once

// Writing the examples' output files: CSV tables, plain text, the output
// folder. Not part of the library.

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace tapegrad_examples {

/// Creates `dir` (and its parents) when missing; throws when it cannot.
inline void make_output_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create the output folder " + dir.string() + ": " + ec.message());
}

/// Writes `text` to `path`, replacing the file; throws when it cannot.
inline void write_text_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path.string());
  f << text;
  if (!f.flush()) throw std::runtime_error("error while writing " + path.string());
}

/// A CSV file written row by row: a header line, then one line per `row()`.
/// Numbers are written with 6 significant digits, text is quoted when it holds
/// a comma, a quote or a line break.
///
/// Example:
///   CsvWriter csv("metrics.csv", {"step", "loss"});
///   csv.row(1, 2.303);
///   csv.row(2, 1.971);
class CsvWriter {
 public:
  /// Opens (truncates) `path` and writes the header line.
  CsvWriter(const std::filesystem::path& path, const std::vector<std::string>& header)
      : path_(path), file_(path, std::ios::binary | std::ios::trunc), columns_(header.size()) {
    if (!file_) throw std::runtime_error("cannot write " + path.string());
    for (std::size_t i = 0; i < header.size(); ++i) file_ << (i ? "," : "") << quote(header[i]);
    file_ << '\n';
  }

  /// Appends one line; the number of fields must match the header.
  template <class... Fields>
  void row(const Fields&... fields) {
    if (sizeof...(Fields) != columns_)
      throw std::logic_error("CsvWriter: " + std::to_string(sizeof...(Fields)) + " fields for " +
                             std::to_string(columns_) + " columns in " + path_.string());
    std::size_t i = 0;
    ((file_ << (i++ ? "," : "") << field(fields)), ...);
    file_ << '\n';
  }

  /// Appends one line given as text fields.
  void row(const std::vector<std::string>& fields) {
    if (fields.size() != columns_)
      throw std::logic_error("CsvWriter: " + std::to_string(fields.size()) + " fields for " + std::to_string(columns_) +
                             " columns in " + path_.string());
    for (std::size_t i = 0; i < fields.size(); ++i) file_ << (i ? "," : "") << quote(fields[i]);
    file_ << '\n';
  }

  /// Flushes to disk; throws when the file could not be written.
  void close() {
    file_.flush();
    if (!file_) throw std::runtime_error("error while writing " + path_.string());
    file_.close();
  }

 private:
  template <class F>
  static std::string field(const F& x) {
    if constexpr (std::is_floating_point_v<F>) {
      if (std::isnan(x)) return "";
      std::ostringstream os;
      os << std::setprecision(6) << x;
      return os.str();
    } else if constexpr (std::is_arithmetic_v<F>) {
      return std::to_string(x);
    } else {
      return quote(std::string(x));
    }
  }

  static std::string quote(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }

  std::filesystem::path path_;
  std::ofstream file_;
  std::size_t columns_;
};

}  // namespace tapegrad_examples
