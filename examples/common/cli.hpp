// SPDX-License-Identifier: MIT
#pragma once

// What every example does with its command line and its failures: parse the
// flags, check their ranges with messages a person can act on, and turn any
// error into one line on stderr and a non-zero exit status, never an abort.
// Not part of the library.
//
// Example:
//   int main(int argc, char** argv) {
//     return ex::guarded_main([&] {
//       CLI::App app{"what the program does"};
//       int steps = 100;
//       app.add_option("--steps", steps, "how many")->capture_default_str();
//       if (auto status = ex::parse_flags(app, argc, argv)) return *status;  // --help, or a bad flag
//       ex::require_at_least("--steps", steps, 1);
//       ...
//       return 0;
//     });
//   }

#include <CLI/CLI.hpp>

#include <exception>
#include <filesystem>
#include <iostream>
#include <new>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include <tapegrad/core/error.hpp>

namespace tapegrad_examples {

/// A mistake on the command line: reported as one line, exit status 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Exit status of a program stopped by a usage error (a bad flag or value).
inline constexpr int exit_usage = 2;
/// Exit status of a program stopped by a failure while it ran (a file it could
/// not read or write, an error the library raised).
inline constexpr int exit_failure = 1;

/// Parses the flags. Returns an exit status when the program should stop
/// right away (0 after printing --help), nothing when it should go on; a bad
/// flag throws usage_error.
inline std::optional<int> parse_flags(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // prints the help to stdout, status 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    throw usage_error(std::string(e.what()) + " (see --help)");
  }
  return std::nullopt;
}

/// A value as a person would type it (no trailing zeros for doubles).
template <class T>
std::string show(const T& value) {
  std::ostringstream os;
  os << value;
  return os.str();
}

/// Throws usage_error "<flag> must be at least <min> (got <value>)" when value < min.
template <class T>
void require_at_least(const std::string& flag, const T& value, const T& min) {
  if (value < min) throw usage_error(flag + " must be at least " + show(min) + " (got " + show(value) + ")");
}

/// Throws usage_error "<flag> must be positive (got <value>)" unless value > 0
/// (a NaN is not positive either).
template <class T>
void require_positive(const std::string& flag, const T& value) {
  if (!(value > T(0))) throw usage_error(flag + " must be positive (got " + show(value) + ")");
}

/// Throws usage_error "<flag> must be at most <max> (got <value>)" when value > max.
template <class T>
void require_at_most(const std::string& flag, const T& value, const T& max) {
  if (value > max) throw usage_error(flag + " must be at most " + show(max) + " (got " + show(value) + ")");
}

/// `text` on one line: line breaks become spaces.
inline std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

/// Runs `body` (which returns the exit status) and turns every exception into
/// one line "error: ..." on stderr: exit status 2 for a usage error, 1 for any
/// other failure. Standard output is flushed first, so the error comes last.
template <class Body>
int guarded_main(Body&& body) noexcept {
  auto report = [](const std::string& what, int status) {
    std::cout.flush();
    std::cerr << "error: " << one_line(what) << std::endl;
    return status;
  };
  try {
    return body();
  } catch (const usage_error& e) {
    return report(e.what(), exit_usage);
  } catch (const CLI::ParseError& e) {
    return report(e.what(), exit_usage);
  } catch (const tapegrad::error& e) {
    return report(e.what(), exit_failure);  // the library's messages name the operation and the values
  } catch (const std::filesystem::filesystem_error& e) {
    return report(e.what(), exit_failure);
  } catch (const std::bad_alloc&) {
    return report("out of memory", exit_failure);
  } catch (const std::exception& e) {
    return report(e.what(), exit_failure);
  } catch (...) {
    return report("unknown exception", exit_failure);
  }
}

/// True when `a` and `b` name the same file (or would, once created).
inline bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) return std::filesystem::equivalent(a, b, ec);
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

/// Creates the folder that will hold `file` (when missing) and throws
/// usage_error when it cannot, so that an unwritable path fails before any
/// work is done rather than after it.
inline void prepare_parent_dir(const std::string& flag, const std::filesystem::path& file) {
  const std::filesystem::path dir = file.parent_path();
  if (dir.empty()) return;  // the current folder
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw usage_error(flag + " " + file.string() + ": cannot create the folder " + dir.string() +
                      (ec ? ": " + ec.message() : std::string(": not a folder")));
}

}  // namespace tapegrad_examples
