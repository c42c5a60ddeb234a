// SPDX-License-Identifier: MIT
#pragma once

// What every generated translation unit of documentation snippets includes
// (cmake/tapegradDocSnippets.cmake writes them): the library, the standard
// headers a snippet may take for granted, and the table that lets CTest run
// one snippet by name.

#include <tapegrad/tapegrad.hpp>

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace tapegrad_docs {

/// The context of statements whose fence names none: nothing.
struct no_context {};

/// One snippet of a page: its name ("docs/nn.md:84") and what running it does.
struct entry {
  const char* name;
  void (*run)();  // nullptr: declarations, compiled only
};

/// Runs the statements of snippet S on a fresh context.
template <class S>
void run_snippet() {
  S s;
  s.run();
}

/// Statements that are compiled, not run: the address of run() makes the
/// compiler emit it, and so instantiate every template it uses.
template <class S>
void compile_snippet() {
  [[maybe_unused]] void (S::*emit)() = &S::run;
}

/// main() of a page's snippets: runs the one named by the single argument.
inline int dispatch(int argc, char** argv, std::initializer_list<entry> entries) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <page>:<line>\n";
    return 2;
  }
  const std::string wanted = argv[1];
  for (const entry& e : entries) {
    if (wanted != e.name) continue;
    if (!e.run) return 0;
    try {
      e.run();
    } catch (const std::exception& x) {
      std::cerr << e.name << ": " << x.what() << "\n";
      return 1;
    }
    return 0;
  }
  std::cerr << "no snippet " << wanted << "; this page has:";
  for (const entry& e : entries) std::cerr << " " << e.name;
  std::cerr << "\n";
  return 2;
}

}  // namespace tapegrad_docs
