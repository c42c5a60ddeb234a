#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The side-by-side comparison: the transformer training step in tapegrad and
# in its libtorch twin (tiny and big configurations, 1 and 2 threads), time to
# 99.5% held-out on the example's task, peak resident memory, and the scalar
# tape beside Sacado and ADOL-C. Each measurement runs in its own process; the
# two sides alternate, ROUNDS times (default 3), and the medians are reported.
# Ends with the summary, one comparison a line.
#
#   benchmarks/compare.sh [build dir]        default: build/bench
#   ROUNDS=5 SEEDS="1 2 3 4 5" STEPS=50 benchmarks/compare.sh
set -euo pipefail

build=${1:-build/bench}
bench="$build/bench"
rounds=${ROUNDS:-3}
steps=${STEPS:+--steps $STEPS}  # timed steps per run; empty: each configuration's own count
seeds=${SEEDS:-"1 2 3"}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

tg="$bench/step/step_tapegrad"
th="$bench/step/step_torch"
peers="$bench/peers/bench_scalar_peers"
[[ -x "$tg" ]] || { echo "compare.sh: $tg not built" >&2; exit 1; }
[[ -x "$th" ]] || th=""
[[ -x "$peers" ]] || peers=""

# libtorch is measured on OpenBLAS's OpenMP build (libopenblas0-openmp). Debian
# selects one OpenBLAS variant for the whole system (update-alternatives), and
# installing libopenblas-dev selects the pthreads one; the twin's library path
# puts the OpenMP build first whichever is selected. The BLAS it loaded is
# printed with its results.
torch_env=()
for dir in /usr/lib/*/openblas-openmp; do
  if [[ -e "$dir/libopenblas.so.0" ]]; then
    torch_env=(env "LD_LIBRARY_PATH=$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  fi
done

# Each side's threads come from its own call (Eigen::setNbThreads,
# torch::set_num_threads); OMP_NUM_THREADS is set to match so that no library
# starts more OpenMP threads than that.
run() {  # run THREADS program args...
  local threads=$1
  shift
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$@" --threads "$threads" | tee -a "$log"
}

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

for round in $(seq 1 "$rounds"); do
  echo "--- round $round of $rounds"
  for config in tiny big; do
    for threads in 1 2; do
      run "$threads" "$tg" --config "$config" $steps
      [[ -n "$th" ]] && run "$threads" "${torch_env[@]}" "$th" --config "$config" $steps
    done
  done
done

echo "--- time to 99.5% held-out, seeds: $seeds (1 thread)"
for seed in $seeds; do
  run 1 "$tg" --mode converge --seed "$seed"
  [[ -n "$th" ]] && run 1 "${torch_env[@]}" "$th" --mode converge --seed "$seed"
done

if [[ -n "$peers" ]]; then
  echo "--- scalar kernels beside Sacado and ADOL-C"
  "$peers" | tee -a "$log"
fi
bytes=$("$bench/bench_scalar_scalar_bench" --benchmark_filter='^$' 2>/dev/null |
  sed -n 's/^scalar tape bytes per op: \([0-9.]*\).*/\1/p')

# median FIELD FILTER...: the median of key FIELD over the report lines that
# contain every FILTER word.
median() {
  local field=$1
  shift
  local lines
  lines=$(cat "$log")
  for f in "$@"; do lines=$(grep -E -- "(^| )$f( |\$)" <<<"$lines" || true); done
  grep -o "$field=[0-9.]*" <<<"$lines" | cut -d= -f2 | sort -g |
    awk '{v[NR]=$1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
bits() { grep "side=tapegrad config=$1 threads=$2 " "$log" | grep -o 'loss_bits=[0-9a-f]*' | sort -u | tr '\n' ' '; }

echo
echo "=== medians over $rounds rounds (ms per step, MiB)"
for config in tiny big; do
  for threads in 1 2; do
    echo "$config, $threads thread(s): tapegrad $(median median_ms side=tapegrad config=$config threads=$threads) ms," \
      "libtorch $(median median_ms side=libtorch config=$config threads=$threads) ms"
  done
  echo "$config peak memory: tapegrad $(median peak_rss_mib side=tapegrad config=$config threads=1) MiB," \
    "libtorch $(median peak_rss_mib side=libtorch config=$config threads=1) MiB"
  if [[ "$(bits "$config" 1)" == "$(bits "$config" 2)" ]]; then same=yes; else same=no; fi
  echo "$config: tapegrad's loss after the timed steps at 2 threads bitwise equal to 1 thread: $same"
done
grep -m1 '^libtorch BLAS:' "$log" || true

echo
echo "=== summary"
thread_word() { [[ $1 == 1 ]] && echo "1 thread" || echo "$1 threads"; }
for config in tiny big; do
  for threads in 1 2; do
    echo "speedup over libtorch, $config, $(thread_word "$threads"): $(ratio \
      "$(median median_ms side=libtorch config=$config threads=$threads)" \
      "$(median median_ms side=tapegrad config=$config threads=$threads)")"
  done
done
# Time to target: medians over the seeds where the side reached it.
tt_tg=$(grep 'side=tapegrad mode=converge' "$log" | grep 'reached=1' | grep -o 'seconds=[0-9.]*' | cut -d= -f2 |
  sort -g | awk '{v[NR]=$1} END {if (NR) print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
tt_th=$(grep 'side=libtorch mode=converge' "$log" | grep 'reached=1' | grep -o 'seconds=[0-9.]*' | cut -d= -f2 |
  sort -g | awk '{v[NR]=$1} END {if (NR) print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
echo "speedup over libtorch, time to 99.5%: $(ratio "$tt_th" "$tt_tg") (tapegrad ${tt_tg:-not reached} s, libtorch ${tt_th:-not reached} s)"
for config in tiny big; do
  echo "peak memory vs libtorch, $config: $(ratio \
    "$(median peak_rss_mib side=tapegrad config=$config threads=1)" \
    "$(median peak_rss_mib side=libtorch config=$config threads=1)")"
done
if [[ -n "$peers" ]]; then
  awk '/^(dot|logsumexp|chain|mlp) / {
    name = $1 == "mlp" ? "MLP" : $1
    printf "scalar grad/primal, %s: %.2fx (Sacado %.2fx, ADOL-C %.2fx)\n", name, $3, $4, $5 }' "$log"
  awk '/^(dot|logsumexp|chain|mlp) / {
    name = $1 == "mlp" ? "MLP" : $1
    printf "scalar replay grad/primal, %s: %.2fx (ADOL-C taped once %.2fx)\n", name, $6, $7 }' "$log"
fi
echo "scalar tape bytes per op: ${bytes:-n/a}"
echo "allocations per steady step: $(grep -o 'allocations_per_step=[0-9.]*' "$log" | cut -d= -f2 | sort -g | tail -1 |
  awk '{ printf "%g", $1 }')"
