# SPDX-License-Identifier: MIT
#
# Configure, build and run a small consumer project of tapegrad, as a user
# would. Run in script mode by CTest (see tests/CMakeLists.txt):
#
#   cmake -DCONSUMER_SOURCE_DIR=<project> -DCONSUMER_BINARY_DIR=<scratch>
#         -DCONSUMER_GENERATOR=<generator> [options] -P tapegradConsumerTest.cmake
#
# Options:
#   CONSUMER_MAKE_PROGRAM, CONSUMER_CXX_COMPILER, CONSUMER_COMPILER_LAUNCHER,
#   CONSUMER_BUILD_TYPE, CONSUMER_CXX_FLAGS, CONSUMER_LINKER_FLAGS
#       forwarded so the consumer is built with the same toolchain as tapegrad
#   CONSUMER_EXECUTABLE   program to run after the build (default: app)
#   INSTALL_BUILD_DIR, INSTALL_PREFIX [, INSTALL_COMPONENT, INSTALL_CONFIG]
#       first install that build tree into a fresh prefix, and point the
#       consumer's CMAKE_PREFIX_PATH at it (the find_package way)
#   TAPEGRAD_SOURCE_DIR   passed to the consumer (the add_subdirectory way)
#
# Any failing step, including a non-zero exit of the program, fails the script.

foreach(var IN ITEMS CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR CONSUMER_GENERATOR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "tapegradConsumerTest: ${var} is required")
  endif()
endforeach()
if(NOT DEFINED CONSUMER_EXECUTABLE)
  set(CONSUMER_EXECUTABLE app)
endif()

function(consumer_step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc COMMAND_ECHO STDOUT)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer ${name} failed (${rc})")
  endif()
endfunction()

set(configure_args
  -S "${CONSUMER_SOURCE_DIR}"
  -B "${CONSUMER_BINARY_DIR}"
  -G "${CONSUMER_GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${CONSUMER_BUILD_TYPE}"
  "-DCMAKE_CXX_FLAGS=${CONSUMER_CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_LINKER_FLAGS}")
if(CONSUMER_MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${CONSUMER_MAKE_PROGRAM}")
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER}")
endif()
if(CONSUMER_COMPILER_LAUNCHER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CONSUMER_COMPILER_LAUNCHER}")
endif()

if(DEFINED INSTALL_PREFIX)
  if(NOT DEFINED INSTALL_BUILD_DIR)
    message(FATAL_ERROR "tapegradConsumerTest: INSTALL_PREFIX needs INSTALL_BUILD_DIR")
  endif()
  # A fresh prefix each time, so a header deleted from the source tree cannot
  # linger in the installed copy.
  file(REMOVE_RECURSE "${INSTALL_PREFIX}")
  set(install_cmd "${CMAKE_COMMAND}" --install "${INSTALL_BUILD_DIR}" --prefix "${INSTALL_PREFIX}")
  if(INSTALL_COMPONENT)
    list(APPEND install_cmd --component "${INSTALL_COMPONENT}")
  endif()
  if(INSTALL_CONFIG)
    list(APPEND install_cmd --config "${INSTALL_CONFIG}")
  endif()
  consumer_step(install ${install_cmd})
  # Only the fresh prefix may satisfy find_package(tapegrad).
  list(APPEND configure_args
    "-DCMAKE_PREFIX_PATH=${INSTALL_PREFIX}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
endif()

if(DEFINED TAPEGRAD_SOURCE_DIR)
  list(APPEND configure_args "-DTAPEGRAD_SOURCE_DIR=${TAPEGRAD_SOURCE_DIR}")
endif()

consumer_step(configure "${CMAKE_COMMAND}" ${configure_args})
consumer_step(build "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}")
consumer_step(run "${CONSUMER_BINARY_DIR}/${CONSUMER_EXECUTABLE}")
