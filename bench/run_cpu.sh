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
# WAIT_IDLE (seconds to wait for an idle machine first, default 0),
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

# The figures assume the machine is otherwise idle. WAIT_IDLE=N waits up to N seconds for
# a 5-second window in which other processes use < 10% of one CPU; either way a busy
# machine is reported (the tables also carry an "other load" column per benchmark).
busy_cpus() {  # CPUs kept busy over the next 5 s (all processes; this script is idle meanwhile)
  local a b
  a=($(head -n1 /proc/stat)); sleep 5; b=($(head -n1 /proc/stat))
  awk -v u="$((b[1] + b[2] + b[3] + b[6] + b[7] + b[8] - a[1] - a[2] - a[3] - a[6] - a[7] - a[8]))" \
      -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", u / hz / 5 }'
}
wait_idle=${WAIT_IDLE:-0}
waited=0
while :; do
  busy=$(busy_cpus)
  awk -v b="$busy" 'BEGIN { exit !(b < 0.1) }' && break
  if ((waited >= wait_idle)); then
    echo "run_cpu.sh: warning: other processes keep $busy CPUs busy — timings will be distorted" >&2
    break
  fi
  waited=$((waited + 5))
done

mkdir -p "$(dirname "$out")"
echo "run_cpu.sh: commit $MAMBASEQ_COMMIT, tables → $out, raw output → $log" >&2
"$build/bench/bench_cpu" --out "$out" "$@" 2>&1 | tee "$log"
