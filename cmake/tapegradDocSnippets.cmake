# SPDX-License-Identifier: MIT
#
# The C++ snippets of Markdown pages, compiled and run by the test suite.
#
#   include(tapegradDocSnippets)
#   tapegrad_doc_snippets(ROOT <dir> PAGES <page.md>... SUPPORT <dir>)
#
# Every block fenced with ```cpp becomes one CTest test, named by its page and
# the line of its opening fence ("snippet:docs/nn.md:9") and labelled `docs`.
# Words after `cpp` on the fence line say how the block is compiled:
#
#   ```cpp                  a whole program when the block has main(): it is
#                           compiled on its own, exactly as written, and run;
#                           otherwise statements, compiled as a function body
#   ```cpp namespace        declarations, compiled at namespace scope
#   ```cpp with=NAME        statements that use names from a context: the
#                           function body becomes a member function of the
#                           struct tapegrad_docs::NAME (SUPPORT/contexts/NAME.hpp),
#                           so its members (a model, an optimizer, a batch)
#                           are in scope
#   ```cpp run              statements that are also run (a program always is)
#
# Statements and declarations see the names of namespace tapegrad (as after
# `using namespace tapegrad;`) and the standard headers that SUPPORT/snippets.hpp
# includes; their #include lines move to the top of the translation unit. The statements and declarations of one page share one translation
# unit (Eigen makes each one expensive); each program is its own. Errors point
# at the page: the generated files carry #line directives.
#
# The extraction runs at configure time; editing a page re-runs it.

function(tapegrad_doc_snippets)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "ROOT;SUPPORT" "PAGES")
  set(gen_dir "${CMAKE_CURRENT_BINARY_DIR}/snippets")
  set(run_dir "${CMAKE_CURRENT_BINARY_DIR}/run")
  file(MAKE_DIRECTORY "${run_dir}")

  # CMake lists split at ';' and treat '[', ']' and '\' specially: swap them
  # for control characters while the page is a list of lines.
  string(ASCII 1 semi)
  string(ASCII 2 lbracket)
  string(ASCII 3 rbracket)
  string(ASCII 4 backslash)

  foreach(page IN LISTS arg_PAGES)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${page}")
    file(RELATIVE_PATH rel "${arg_ROOT}" "${page}")
    string(MAKE_C_IDENTIFIER "${rel}" page_id)

    file(READ "${page}" text)
    string(REPLACE "\r" "" text "${text}")  # CRLF pages
    string(REPLACE "\\" "${backslash}" text "${text}")
    string(REPLACE ";" "${semi}" text "${text}")
    string(REPLACE "[" "${lbracket}" text "${text}")
    string(REPLACE "]" "${rbracket}" text "${text}")
    string(REPLACE "\n" ";" lines "${text}")

    set(number 0)
    set(inside OFF)
    set(unit "")          # the page's translation unit of statements and declarations
    set(includes "")      # the #include lines of its statements and declarations
    set(entries "")       # its table of snippets
    set(contexts "")
    foreach(line IN LISTS lines)
      math(EXPR number "${number} + 1")
      if(NOT inside)
        if(line MATCHES "^[ ]*```cpp([ ].*)?$")
          set(inside ON)
          set(start ${number})
          string(STRIP "${CMAKE_MATCH_1}" words)
          string(REPLACE " " ";" words "${words}")
          set(text "")        # the block as written
          set(body "")        # the block without its #include lines
          set(hoisted "")     # its #include lines, each with its line number
        endif()
        continue()
      endif()
      if(NOT line MATCHES "^[ ]*```[ ]*$")
        string(REPLACE "${semi}" ";" line "${line}")
        string(REPLACE "${lbracket}" "[" line "${line}")
        string(REPLACE "${rbracket}" "]" line "${line}")
        string(REPLACE "${backslash}" "\\" line "${line}")
        string(APPEND text "${line}\n")
        if(line MATCHES "^[ ]*#[ ]*include")
          math(EXPR next "${number} + 1")
          string(APPEND hoisted "#line ${number} \"${page}\"\n${line}\n")
          string(APPEND body "#line ${next} \"${page}\"\n")
        else()
          string(APPEND body "${line}\n")
        endif()
        continue()
      endif()

      # The block ends: what kind is it?
      set(inside OFF)
      set(name "snippet:${rel}:${start}")
      math(EXPR first "${start} + 1")
      set(line_directive "#line ${first} \"${page}\"\n")
      set(kind statements)
      set(context "")
      set(run OFF)
      foreach(word IN LISTS words)
        if(word STREQUAL "namespace")
          set(kind declarations)
        elseif(word STREQUAL "run")
          set(run ON)
        elseif(word MATCHES "^with=([A-Za-z_][A-Za-z_0-9]*)$")
          set(context "${CMAKE_MATCH_1}")
          if(NOT EXISTS "${arg_SUPPORT}/contexts/${context}.hpp")
            message(FATAL_ERROR "${page}:${start}: the fence names context '${context}', "
              "but ${arg_SUPPORT}/contexts/${context}.hpp does not exist")
          endif()
          list(APPEND contexts "${context}")
        elseif(NOT word STREQUAL "")
          message(FATAL_ERROR "${page}:${start}: unknown word '${word}' after ```cpp "
            "(known: namespace, run, with=NAME)")
        endif()
      endforeach()
      if(kind STREQUAL "statements" AND context STREQUAL "" AND text MATCHES "int[ ]+main[ ]*\\(")
        set(kind program)
      endif()

      set(id "${page_id}_${start}")
      if(kind STREQUAL "program")
        # Exactly as written, alone: a missing #include is an error here.
        set(source "${gen_dir}/${id}.cpp")
        tapegrad_doc_snippets_write("${source}" "${line_directive}${text}")
        set(target "docs_${id}")
        # A program of the distributed layer needs MPI: built where MPI was
        # found, run as a single process (MPI's singleton start).
        set(needs_mpi OFF)
        if(text MATCHES "tapegrad/distributed")
          if(NOT TARGET tapegrad::distributed)
            continue()
          endif()
          set(needs_mpi ON)
        endif()
        add_executable(${target} "${source}")
        tapegrad_doc_snippets_target(${target})
        add_test(NAME "${name}" COMMAND ${target} WORKING_DIRECTORY "${run_dir}")
        if(needs_mpi)
          target_link_libraries(${target} PRIVATE tapegrad::distributed)
          set_tests_properties("${name}" PROPERTIES
            ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
        endif()
      else()
        string(APPEND includes "${hoisted}")
        set(base "tapegrad_docs::no_context")
        if(context)
          set(base "tapegrad_docs::${context}")
        endif()
        string(APPEND unit "\n// ${rel}:${start}\nnamespace tapegrad_docs::s${id} {\nusing namespace tapegrad;\n")
        if(kind STREQUAL "declarations")
          string(APPEND unit "${line_directive}${body}")
          string(APPEND entries "      {\"${rel}:${start}\", nullptr},\n")
        else()
          string(APPEND unit "struct snippet : ${base} {\n  void run() {\n${line_directive}${body}  }\n};\n")
          if(run)
            string(APPEND entries
              "      {\"${rel}:${start}\", &tapegrad_docs::run_snippet<tapegrad_docs::s${id}::snippet>},\n")
          else()
            string(APPEND entries
              "      {\"${rel}:${start}\", &tapegrad_docs::compile_snippet<tapegrad_docs::s${id}::snippet>},\n")
          endif()
        endif()
        string(APPEND unit "}  // namespace tapegrad_docs::s${id}\n")
        add_test(NAME "${name}" COMMAND docs_${page_id} "${rel}:${start}" WORKING_DIRECTORY "${run_dir}")
      endif()
      set_tests_properties("${name}" PROPERTIES LABELS docs TIMEOUT 120)
    endforeach()
    if(inside)
      message(FATAL_ERROR "${page}:${start}: the ```cpp block is never closed")
    endif()

    if(NOT unit STREQUAL "")
      set(head "// Generated from ${rel} by tapegradDocSnippets.cmake; edit the page, not this file.\n")
      string(APPEND head "#include \"snippets.hpp\"\n${includes}")
      list(REMOVE_DUPLICATES contexts)
      foreach(context IN LISTS contexts)
        string(APPEND head "#include \"contexts/${context}.hpp\"\n")
      endforeach()
      set(tail "\n#line 1 \"${page_id}.cpp\"\nint main(int argc, char** argv) {\n")
      string(APPEND tail "  return tapegrad_docs::dispatch(argc, argv, {\n${entries}  });\n}\n")
      set(source "${gen_dir}/${page_id}.cpp")
      tapegrad_doc_snippets_write("${source}" "${head}${unit}${tail}")
      add_executable(docs_${page_id} "${source}")
      tapegrad_doc_snippets_target(docs_${page_id})
      target_include_directories(docs_${page_id} PRIVATE "${arg_SUPPORT}")
      # Snippets show a value in a variable and leave it there.
      if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
        target_compile_options(docs_${page_id} PRIVATE -Wno-unused-variable -Wno-unused-but-set-variable)
      endif()
    endif()
  endforeach()
endfunction()

# Writes `content` to `path` only when it changed, so re-configuring does not
# rebuild the snippets.
function(tapegrad_doc_snippets_write path content)
  file(WRITE "${path}.new" "${content}")
  configure_file("${path}.new" "${path}" COPYONLY)
  file(REMOVE "${path}.new")
endfunction()

# The flags of a snippet target: tapegrad, the project's warnings, and no
# optimisation (the snippets are tiny; compiling Eigen at -O2 is not).
function(tapegrad_doc_snippets_target target)
  target_link_libraries(${target} PRIVATE tapegrad::tapegrad tapegrad_warnings)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -O0 -g0)
  endif()
endfunction()
