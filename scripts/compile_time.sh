#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# How long tapegrad takes to compile, against a budget.
#
#   scripts/compile_time.sh           measure, print, and fail when a figure is
#                                     more than 1.5 times the recorded one
#   scripts/compile_time.sh --record  measure and rewrite the recorded figures
#
# Three translation units are compiled with the dev preset's flags (taken
# from build/dev/compile_commands.json, so `cmake --preset dev` must have
# run): a program that includes only tapegrad/scalar.hpp, one that includes
# tapegrad/tapegrad.hpp, and the transformer example's main.cpp. Each figure
# is CPU time (user + sys seconds; best of 3, the transformer once). A busy or slower machine
# inflates CPU time too, so a fourth translation unit that does not use
# tapegrad (the standard library and one Eigen matrix product) is timed as a
# reference: before comparing, the recorded figures are scaled by how much
# slower or faster the reference compiles now than when they were recorded.
# The recorded figures live in benchmarks/compile_time.txt.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
record_file=benchmarks/compile_time.txt
budget=1.5  # a figure may grow by half over the recorded one

record=0
case "${1:-}" in
  --record) record=1 ;;
  "") ;;
  *)
    echo "usage: scripts/compile_time.sh [--record]" >&2
    exit 2
    ;;
esac

db=build/dev/compile_commands.json
if [[ ! -f $db ]]; then
  echo "compile_time.sh: $db is missing; run 'cmake --preset dev' first" >&2
  exit 2
fi

# The dev preset's command for the transformer example, without its output,
# input and dependency-file arguments.
command=$(grep -m1 '"command": .*-c [^"]*/examples/transformer/main\.cpp"' "$db" |
  sed -e 's/^ *"command": "//' -e 's/",\{0,1\} *$//' || true)
if [[ -z $command ]]; then
  echo "compile_time.sh: no compile command for examples/transformer/main.cpp in $db" >&2
  exit 2
fi
read -r -a words <<<"$command"
flags=()
skip=0
for w in "${words[@]:1}"; do
  if ((skip)); then
    skip=0
    continue
  fi
  case "$w" in
    -o | -c | -MT | -MF) skip=1 ;;
    -MD | -MMD) ;;
    *) flags+=("$w") ;;
  esac
done
compiler=${words[0]}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '#include <tapegrad/scalar.hpp>\nint main() { tapegrad::Value x = 2.0; return static_cast<int>(x.data()) - 2; }\n' \
  >"$scratch/scalar.cpp"
printf '#include <tapegrad/tapegrad.hpp>\nint main() { return 0; }\n' >"$scratch/tapegrad.cpp"
cat >"$scratch/reference.cpp" <<'EOF'
#include <Eigen/Dense>
#include <iostream>
#include <map>
#include <string>
#include <vector>
int main() {
  Eigen::MatrixXf a = Eigen::MatrixXf::Random(64, 64);
  std::map<std::string, std::vector<float>> m;
  m["sum"].push_back((a * a).sum());
  std::cout << m["sum"][0] << '\n';
}
EOF

# cpu_seconds FILE: user + sys seconds of one compilation of FILE.
cpu_seconds() {
  local TIMEFORMAT='%U %S' t tag
  tag=$(basename "$1" .cpp)
  t=$({ time "$compiler" "${flags[@]}" -o "$scratch/$tag.o" -c "$1" >/dev/null 2>"$scratch/$tag.errors"; } 2>&1) || {
    echo "compile_time.sh: compiling $1 failed:" >&2
    cat "$scratch/$tag.errors" >&2
    exit 1
  }
  awk '{ printf "%.2f", $1 + $2 }' <<<"$t"
}

# best_of N FILE: the smallest of N measurements.
best_of() {
  local best="" t
  for ((k = 0; k < $1; ++k)); do
    t=$(cpu_seconds "$2")
    if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
  done
  echo "$best"
}

# The transformer's unit (about a minute) is compiled once, on one core, while
# the three short ones are compiled three times each on the other; CPU time
# hardly depends on what the other core does, and one minute-long compilation
# varies far less than the budget allows.
names=(reference scalar.hpp tapegrad.hpp transformer)
declare -A measured
best_of 1 "$root/examples/transformer/main.cpp" >"$scratch/transformer.seconds" &
long=$!
measured[reference]=$(best_of 3 "$scratch/reference.cpp")
measured[scalar.hpp]=$(best_of 3 "$scratch/scalar.cpp")
measured[tapegrad.hpp]=$(best_of 3 "$scratch/tapegrad.cpp")
wait "$long"
measured[transformer]=$(<"$scratch/transformer.seconds")

if ((record)); then
  # The flags without include folders, which differ from machine to machine.
  shown=()
  skip=0
  for w in "${flags[@]}"; do
    if ((skip)); then
      skip=0
      continue
    fi
    case "$w" in
      -isystem) skip=1 ;;
      -I*) ;;
      *) shown+=("$w") ;;
    esac
  done
  {
    echo "# Compile time of tapegrad, CPU seconds (user + sys; best of 3, the transformer once), dev preset flags:"
    echo "# $("$compiler" --version | head -n 1); ${shown[*]}"
    echo "# Written by scripts/compile_time.sh --record; scripts/compile_time.sh fails when a"
    echo "# figure grows by more than half over the one here, scaled by the reference."
    for n in "${names[@]}"; do echo "$n ${measured[$n]}"; done
  } >"$record_file"
  echo "recorded in $record_file:"
  grep -v '^#' "$record_file"
  exit 0
fi

if [[ ! -f $record_file ]]; then
  echo "compile_time.sh: $record_file is missing; run scripts/compile_time.sh --record" >&2
  exit 2
fi

recorded_of() { awk -v n="$1" '$1 == n { print $2 }' "$record_file"; }
reference=$(recorded_of reference)
if [[ -z $reference ]]; then
  echo "compile_time.sh: no recorded figure for the reference in $record_file" >&2
  exit 2
fi
# How much slower (> 1) or faster this machine compiles now than at recording.
scale=$(awk -v a="${measured[reference]}" -v b="$reference" 'BEGIN { printf "%.2f", a / b }')
echo "reference: ${measured[reference]}s now, ${reference}s recorded: recorded figures scaled by $scale"

status=0
printf '%-16s %10s %10s %10s %8s\n' "translation unit" "recorded" "scaled" "now" "ratio"
for n in "${names[@]:1}"; do
  recorded=$(recorded_of "$n")
  if [[ -z $recorded ]]; then
    echo "compile_time.sh: no recorded figure for $n in $record_file" >&2
    status=1
    continue
  fi
  scaled=$(awk -v a="$recorded" -v s="$scale" 'BEGIN { printf "%.2f", a * s }')
  ratio=$(awk -v a="${measured[$n]}" -v b="$scaled" 'BEGIN { printf "%.2f", a / b }')
  verdict=""
  if awk -v r="$ratio" -v b="$budget" 'BEGIN { exit !(r > b) }'; then
    verdict="  over budget (more than ${budget}x the scaled recorded figure)"
    status=1
  fi
  printf '%-16s %9ss %9ss %9ss %7sx%s\n' "$n" "$recorded" "$scaled" "${measured[$n]}" "$ratio" "$verdict"
done
exit $status
