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

# The figures assume the machine is otherwise idle; say so when it is not (the tables
# also carry an "other load" column measured while each benchmark ran).
read -r load1 _ </proc/loadavg
ncpu=$(nproc)
if awk -v l="$load1" -v n="$ncpu" 'BEGIN { exit !(l > 0.25 * n) }'; then
  echo "run_cpu.sh: warning: load average $load1 on $ncpu CPUs — other work will distort the timings" >&2
fi

mkdir -p "$(dirname "$out")"
echo "run_cpu.sh: commit $MAMBASEQ_COMMIT, tables → $out, raw output → $log" >&2
"$build/bench/bench_cpu" --out "$out" "$@" 2>&1 | tee "$log"
