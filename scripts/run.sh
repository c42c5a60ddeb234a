#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Build and run tapegrad through its CMake presets.
#
#   scripts/run.sh test            configure, build and test presets dev, then asan, then the
#                                  threaded tests under tsan (built while the asan tests run);
#                                  then check the compile-time budget
#   scripts/run.sh fuzz [seconds]  build the libFuzzer target (clang) and run it (default 60 s)
#   scripts/run.sh example [args]  build the release preset and run the main example (transformer)
#   scripts/run.sh example NAME [args]
#                                  build and run examples/NAME; an unknown NAME lists the examples
#   scripts/run.sh bench [args]    build the bench preset and run every benchmark
#
# Missing Debian packages are installed first (with sudo when not root).
set -euo pipefail

usage() {
  echo "usage: scripts/run.sh example [NAME]|test|bench|fuzz [extra args for the example or benchmarks; seconds to fuzz]" >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
mode=$1
shift

cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

current_phase="start"
phase() {
  current_phase=$*
  printf '\n==> %s\n' "$*"
}
trap 'printf "\n==> FAILED: %s\n" "$current_phase" >&2' ERR

# ensure_packages pkg... : install, with apt-get, the packages not yet installed.
ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    return 0  # not a Debian system: the tools must already be there
  fi
  local missing=() pkg
  for pkg in "$@"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  local sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  phase "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

packages=(cmake g++ ninja-build libeigen3-dev doctest-dev libcli11-dev)

case "$mode" in
  test)
    # Open MPI for the distributed tests (label mpi, dev preset only).
    ensure_packages "${packages[@]}" openmpi-bin libopenmpi-dev clang-format
    phase "format (.clang-format)"
    git ls-files -z -- '*.hpp' '*.cpp' | xargs -0 clang-format --dry-run --Werror
    phase "configure (dev)"
    cmake --preset dev
    phase "build (dev)"
    cmake --build --preset dev -j "$jobs"
    phase "test (dev)"
    ctest --preset dev --output-on-failure -j 2
    phase "configure (asan)"
    cmake --preset asan
    phase "build (asan)"
    cmake --build --preset asan -j "$jobs"
    # ThreadSanitizer on the threaded tests only (the preset builds test_threads
    # alone). Its build runs on one core beside the asan tests, which keep about
    # one core busy; its output is shown after theirs.
    phase "configure (tsan)"
    cmake --preset tsan
    tsan_log=build/tsan/build.log
    cmake --build --preset tsan -j 1 >"$tsan_log" 2>&1 &
    tsan_build=$!
    phase "test (asan), building tsan beside it"
    if ! ctest --preset asan --output-on-failure -j 2; then
      wait "$tsan_build" || true
      false
    fi
    phase "build (tsan)"
    tsan_status=0
    wait "$tsan_build" || tsan_status=$?
    cat "$tsan_log"
    [[ $tsan_status -eq 0 ]]
    phase "test (tsan)"
    ctest --preset tsan --output-on-failure
    phase "compile time (budget: 1.5x benchmarks/compile_time.txt)"
    scripts/compile_time.sh
    ;;

  fuzz)
    ensure_packages "${packages[@]}" clang libclang-rt-14-dev
    seconds=${1:-60}
    phase "configure (fuzz)"
    cmake --preset fuzz
    phase "build (fuzz)"
    cmake --build --preset fuzz -j "$jobs"
    mkdir -p build/fuzz/corpus
    phase "run fuzz_graphs for ${seconds} s"
    build/fuzz/fuzz/fuzz_graphs -max_total_time="$seconds" -timeout=10 -max_len=512 \
      -artifact_prefix=build/fuzz/ build/fuzz/corpus
    ;;

  example)
    ensure_packages "${packages[@]}"
    if [[ -f examples/transformer/CMakeLists.txt ]]; then
      name=transformer
    else
      name=scalar_mlp
    fi
    # A first argument that is not a flag names the example to run.
    if [[ $# -ge 1 && "$1" != -* ]]; then
      name=$1
      shift
      if [[ ! -f "examples/$name/CMakeLists.txt" ]]; then
        echo "run.sh: no example named '$name'; the examples are:" >&2
        for list in examples/*/CMakeLists.txt; do
          dir=${list%/CMakeLists.txt}
          echo "  ${dir#examples/}" >&2
        done
        exit 2
      fi
    fi
    if [[ ! -f "examples/$name/CMakeLists.txt" ]]; then
      echo "run.sh: no example to run (examples/transformer or examples/scalar_mlp)" >&2
      exit 1
    fi
    phase "configure (release)"
    cmake --preset release
    phase "build $name (release)"
    cmake --build --preset release -j "$jobs" --target "$name"
    phase "run $name $*"
    exec "build/release/bin/$name" "$@"
    ;;

  bench)
    # libtorch with OpenBLAS (not the reference BLAS), Sacado and ADOL-C: the
    # peers of the comparison, for bench only.
    ensure_packages "${packages[@]}" libbenchmark-dev libtorch-dev libopenblas0-openmp \
      libtrilinos-sacado-dev libadolc-dev
    phase "configure (bench)"
    cmake --preset bench
    phase "build (bench)"
    cmake --build --preset bench -j "$jobs"
    shopt -s nullglob
    benches=(build/bench/bench/*)
    if [[ ${#benches[@]} -eq 0 ]]; then
      echo "no benchmarks to run (benchmarks/scalar and benchmarks/tensor are empty)"
      exit 0
    fi
    for exe in "${benches[@]}"; do
      [[ -f "$exe" && -x "$exe" ]] || continue
      phase "run ${exe##*/} $*"
      "$exe" "$@"
    done
    phase "side by side: tapegrad, libtorch, Sacado, ADOL-C"
    benchmarks/compare.sh build/bench
    ;;

  *)
    usage
    ;;
esac
