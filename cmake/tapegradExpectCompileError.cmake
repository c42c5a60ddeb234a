# SPDX-License-Identifier: MIT
#
# Compiles one source file and expects it to fail, with a given message as the
# first error the compiler reports. Run as a script:
#
#   cmake -DCOMPILER=<c++> -DSOURCE=<file.cpp> -DEXPECT=<text>
#         [-DFLAGS=<flag;flag>] [-DINCLUDE_DIRS=<dir;dir>] [-DMAX_ERRORS=<n>]
#         -P tapegradExpectCompileError.cmake
#
# EXPECT is plain text, not a regular expression. MAX_ERRORS bounds the number
# of lines that say "error:".

foreach(var COMPILER SOURCE EXPECT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "tapegradExpectCompileError: ${var} is not set")
  endif()
endforeach()

set(args ${FLAGS})
foreach(dir IN LISTS INCLUDE_DIRS)
  list(APPEND args "-I${dir}")
endforeach()

execute_process(
  COMMAND "${COMPILER}" ${args} -fsyntax-only "${SOURCE}"
  RESULT_VARIABLE result
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)

if(result EQUAL 0)
  message(FATAL_ERROR "compiling ${SOURCE} with ${FLAGS} succeeded; it should have failed with: ${EXPECT}")
endif()

# The first line the compiler marks as an error (GCC and Clang: "error:").
string(REPLACE "\n" ";" lines "${err}${out}")
set(first "")
foreach(line IN LISTS lines)
  if(line MATCHES "error:")
    set(first "${line}")
    break()
  endif()
endforeach()

string(FIND "${first}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the first error is not the expected one.\n"
    "expected: ${EXPECT}\nfirst error: ${first}\nfull output:\n${err}${out}")
endif()
string(REGEX MATCHALL "error:" all_errors "${err}${out}")
list(LENGTH all_errors count)
if(DEFINED MAX_ERRORS AND count GREATER MAX_ERRORS)
  message(FATAL_ERROR "${count} error lines, more than ${MAX_ERRORS}:\n${err}${out}")
endif()
message(STATUS "first error, as expected: ${first} (${count} error line(s) in all)")
