#!/usr/bin/env bash
# Build the CPU benchmark (Release, Ninja, in build-bench/) and run it once.
#
#   bench/run_cpu.sh                 full run (several minutes on 2 cores) →
#                                    bench/results/cpu.md (tables) + bench/results/cpu.log (raw output)
#   bench/run_cpu.sh --quick         CI smoke: small sizes → build-bench/cpu-quick.md
#   bench/run_cpu.sh [--quick] ARGS  ARGS go to bench_cpu (e.g. --scan-dim 768,
#                                    --benchmark_filter=scan, --no-memory)
#
# Environment: BUILD_DIR (default build-bench), JOBS (default 2), OUT (tables file),
# WAIT_IDLE (bench_cpu --wait-idle: seconds each benchmark call may wait for an idle machine),
# MAMBASEQ_COMMIT (default: git rev-parse --short HEAD, "+dirty" when tracked files differ).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-bench}
jobs=${JOBS:-2}

quick=0
for a in "$@"; do [[ $a == --quick ]] && quick=1; done
if ((quick)); then
  out=${OUT:-$build/cpu-quick.md}
  log=$build/cpu-quick.log
else
  out=${OUT:-$root/bench/results/cpu.md}
  log=$(dirname "$out")/$(basename "$out" .md).log
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DMAMBASEQ_BUILD_TESTS=OFF -DMAMBASEQ_BUILD_BENCH=ON -DMAMBASEQ_CUDA=OFF >/dev/null
cmake --build "$build" --target bench_cpu -j "$jobs"

if [[ -z ${MAMBASEQ_COMMIT:-} ]]; then
  MAMBASEQ_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ $MAMBASEQ_COMMIT != unknown ]] && ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then
    MAMBASEQ_COMMIT="$MAMBASEQ_COMMIT+dirty"
  fi
fi
export MAMBASEQ_COMMIT

# The figures assume the machine is otherwise idle. WAIT_IDLE=N makes bench_cpu wait (up
# to N s, before every benchmark call, outside the timed loop) for a moment when other
# processes leave the CPUs alone; the tables carry an "other load" column either way.
a=($(head -n1 /proc/stat)); sleep 2; b=($(head -n1 /proc/stat))
busy=$(awk -v u="$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8]))" \
  -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", u / hz / 2 }')
if awk -v b="$busy" 'BEGIN { exit !(b >= 0.15) }'; then
  echo "run_cpu.sh: warning: other processes keep $busy CPUs busy — timings will be distorted" \
    "${WAIT_IDLE:+(waiting up to ${WAIT_IDLE} s per benchmark call for quiet)}" >&2
fi
extra=()
[[ -n ${WAIT_IDLE:-} ]] && extra+=(--wait-idle "$WAIT_IDLE")

mkdir -p "$(dirname "$out")"
echo "run_cpu.sh: commit $MAMBASEQ_COMMIT, tables → $out, raw output → $log" >&2
"$build/bench/bench_cpu" --out "$out" "${extra[@]}" "$@" 2>&1 | tee "$log"
