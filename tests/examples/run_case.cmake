# SPDX-License-Identifier: MIT
#
# Runs one example program on one command line and checks how it ends: the
# exit status, the text on stderr (one line when the program fails, never
# "terminate called") and, when asked, stdout and files it must not touch.
#
#   cmake -DCASE=<case file> -P run_case.cmake
#
# The case file (written by tapegrad_example_case in CMakeLists.txt) sets:
#   PROGRAM   the program to run
#   ARGS      its arguments; the element <empty> stands for an empty argument
#   WORKDIR   a folder made empty for the run, its working directory
#   EXIT      the exit status expected
#   STDERR    a regular expression stderr must match (optional)
#   STDOUT    a regular expression stdout must match (optional)
#   PREPARE   optional: copy SRC DST | truncate SRC DST BYTES | corrupt SRC DST
#             (a copy whose last 8 bytes, the checksum, are overwritten); a
#             relative DST is in WORKDIR
#   UNCHANGED optional: a file (relative: in WORKDIR) that must have the same
#             content after the run

if(NOT DEFINED CASE)
  message(FATAL_ERROR "run_case.cmake: pass -DCASE=<case file>")
endif()
include("${CASE}")

file(REMOVE_RECURSE "${WORKDIR}")
file(MAKE_DIRECTORY "${WORKDIR}")

# ---- preparation -----------------------------------------------------------
if(PREPARE)
  list(GET PREPARE 0 op)
  list(GET PREPARE 1 src)
  list(GET PREPARE 2 dst)
  cmake_path(ABSOLUTE_PATH dst BASE_DIRECTORY "${WORKDIR}")  # relative paths are in WORKDIR
  get_filename_component(dst_dir "${dst}" DIRECTORY)
  file(MAKE_DIRECTORY "${dst_dir}")
  if(NOT EXISTS "${src}")
    message(FATAL_ERROR "PREPARE ${op}: ${src} does not exist (did its fixture run?)")
  endif()
  if(op STREQUAL "copy")
    file(COPY_FILE "${src}" "${dst}")
  elseif(op STREQUAL "truncate" OR op STREQUAL "corrupt")
    file(SIZE "${src}" size)
    if(op STREQUAL "truncate")
      list(GET PREPARE 3 keep)
    else()
      math(EXPR keep "${size} - 8")
    endif()
    # CMake cannot write binary data; head(1) copies the first bytes.
    find_program(HEAD head REQUIRED)
    execute_process(COMMAND "${HEAD}" -c "${keep}" "${src}" OUTPUT_FILE "${dst}" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "head -c ${keep} ${src} failed: ${rc}")
    endif()
    if(op STREQUAL "corrupt")
      file(APPEND "${dst}" "XXXXXXXX")  # the stored checksum no longer matches
    endif()
  else()
    message(FATAL_ERROR "PREPARE: unknown operation '${op}'")
  endif()
endif()

if(UNCHANGED)
  cmake_path(ABSOLUTE_PATH UNCHANGED BASE_DIRECTORY "${WORKDIR}")
  file(SHA256 "${UNCHANGED}" before)
endif()

# ---- the run -----------------------------------------------------------------
# Each argument bracket-quoted, so that empty and special ones survive.
set(command "execute_process(COMMAND [==[${PROGRAM}]==]")
foreach(arg IN LISTS ARGS)
  if(arg STREQUAL "<empty>")
    set(arg "")
  endif()
  string(APPEND command " [==[${arg}]==]")
endforeach()
string(APPEND command
  " WORKING_DIRECTORY [==[${WORKDIR}]==] RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)")
cmake_language(EVAL CODE "${command}")

string(REPLACE ";" " " shown "${ARGS}")
set(context "program: ${PROGRAM} ${shown}\nexit status: ${status}\nstderr:\n${err}\nstdout (last 2000 characters):\n")
string(LENGTH "${out}" out_length)
if(out_length GREATER 2000)
  math(EXPR from "${out_length} - 2000")
  string(SUBSTRING "${out}" ${from} -1 tail)
  string(APPEND context "${tail}")
else()
  string(APPEND context "${out}")
endif()

# ---- the checks --------------------------------------------------------------
set(failures "")
if(NOT status STREQUAL "${EXIT}")
  string(APPEND failures "expected exit status ${EXIT}, got ${status}\n")
endif()
if(err MATCHES "terminate called|Aborted|Segmentation fault")
  string(APPEND failures "the program aborted\n")
endif()
if(NOT EXIT EQUAL 0)
  string(STRIP "${err}" stripped)
  if(stripped MATCHES "\n")
    string(APPEND failures "a failing run must print exactly one line on stderr\n")
  endif()
  if(NOT stripped MATCHES "^error: ")
    string(APPEND failures "the line on stderr must start with 'error: '\n")
  endif()
endif()
if(DEFINED STDERR AND NOT err MATCHES "${STDERR}")
  string(APPEND failures "stderr does not match: ${STDERR}\n")
endif()
if(DEFINED STDOUT AND NOT out MATCHES "${STDOUT}")
  string(APPEND failures "stdout does not match: ${STDOUT}\n")
endif()
if(UNCHANGED)
  file(SHA256 "${UNCHANGED}" after)
  if(NOT before STREQUAL after)
    string(APPEND failures "${UNCHANGED} was changed\n")
  endif()
endif()

if(failures)
  message(FATAL_ERROR "${failures}\n${context}")
endif()
message(STATUS "as expected: exit status ${status}; stderr: ${err}")
