# SPDX-License-Identifier: MIT
#
# Speed options for tapegrad's own programs: the tests, examples and
# benchmarks built from this source tree. They are directory-wide compile and
# link settings made after the library target exists, so they never reach
# tapegrad::tapegrad and a project that uses tapegrad keeps its own flags.

option(TAPEGRAD_NATIVE "Compile tapegrad's own programs for the host CPU (-march=native)" OFF)
option(TAPEGRAD_USE_BLAS "Let Eigen pass float/double matrix products to the system BLAS (EIGEN_USE_BLAS, OpenBLAS on Debian)" OFF)
option(TAPEGRAD_OPENMP "Build tapegrad's own programs with OpenMP, so that Eigen's matrix products can use several threads" OFF)

if(TAPEGRAD_NATIVE)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    add_compile_options(-march=native)
    # g++ 12 flags Eigen's AVX-512 code with a false "may be used
    # uninitialized" or "is used uninitialized" inside its own intrinsics
    # headers (the `_mm512_undefined_*` operands); the dev preset, built
    # without -march=native, still checks our code for both.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      add_compile_options(-Wno-maybe-uninitialized -Wno-uninitialized)
    endif()
  else()
    message(WARNING "TAPEGRAD_NATIVE: no host-CPU flag known for ${CMAKE_CXX_COMPILER_ID}; building portable code")
  endif()
endif()

if(TAPEGRAD_USE_BLAS)
  # Debian's libopenblas-dev; any BLAS that CMake's FindBLAS knows works.
  if(NOT DEFINED BLA_VENDOR)
    set(BLA_VENDOR OpenBLAS)
  endif()
  find_package(BLAS REQUIRED)
  add_compile_definitions(EIGEN_USE_BLAS)
  link_libraries(BLAS::BLAS)
endif()

if(TAPEGRAD_OPENMP)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  link_libraries(OpenMP::OpenMP_CXX)
endif()
