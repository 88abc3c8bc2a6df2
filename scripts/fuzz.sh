#!/usr/bin/env bash
# Build the libFuzzer targets (clang++, AddressSanitizer + UndefinedBehaviorSanitizer) in
# build-fuzz/ and run each for SECONDS on its seed corpus; exit non-zero on any crash, hang
# (10 s per input), out-of-memory (2 GB) or sanitizer report.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default 30 s, every fuzz/fuzz_*.cpp
#
# Targets: fuzz/fuzz_NAME.cpp, seeds in fuzz/corpus/NAME/ (kept in the repository; new
# inputs go to build-fuzz/corpus/NAME/, never into the repository), libFuzzer dictionary
# fuzz/NAME.dict when present. Crash inputs: build-fuzz/artifacts/. Logs: build-fuzz/NAME.log.
# Environment: CXX (default clang++, else clang++-14), BUILD_DIR, JOBS (build, default 2),
# PARALLEL (targets run at once, default 1).
# Needs clang with libFuzzer (Debian: clang, libclang-rt-dev — or clang-14, libclang-rt-14-dev).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-30}
shift || true
build=${BUILD_DIR:-$root/build-fuzz}
cxx=${CXX:-}
if [[ -z $cxx ]]; then
  if command -v clang++ >/dev/null; then cxx=clang++; else cxx=clang++-14; fi
fi
command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (apt-get install clang libclang-rt-dev)" >&2; exit 2; }

cmake -S "$root/fuzz" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  > "$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; exit 2; }
cmake --build "$build" -j "${JOBS:-2}"

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for src in "$root"/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi
mkdir -p "$build/artifacts"

run_one() {  # run_one TARGET -> exit status of the fuzzer
  local t=$1 name=${1#fuzz_}
  local seeds=$root/fuzz/corpus/$name work=$build/corpus/$name
  mkdir -p "$work" "$seeds"
  local args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536
    -artifact_prefix="$build/artifacts/$t-" -print_final_stats=1)
  [[ -f $root/fuzz/$name.dict ]] && args+=(-dict="$root/fuzz/$name.dict")
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$build/$t" "${args[@]}" "$work" "$seeds" > "$build/$name.log" 2>&1
}

fail=0
pids=() names=()
for t in "${targets[@]}"; do
  [[ -x $build/$t ]] || { echo "fuzz.sh: no target $t" >&2; fail=1; continue; }
  run_one "$t" &
  pids+=($!) names+=("$t")
  if (( ${#pids[@]} >= ${PARALLEL:-1} )); then
    for i in "${!pids[@]}"; do
      if ! wait "${pids[$i]}"; then fail=1; echo "fuzz.sh: ${names[$i]} FAILED — see $build/${names[$i]#fuzz_}.log" >&2; fi
    done
    pids=() names=()
  fi
done
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then fail=1; echo "fuzz.sh: ${names[$i]} FAILED — see $build/${names[$i]#fuzz_}.log" >&2; fi
done

# One line per target: executions, coverage, corpus, and the verdict.
for t in "${targets[@]}"; do
  log=$build/${t#fuzz_}.log
  [[ -f $log ]] || continue
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  if grep -qE '^==[0-9]+==ERROR|runtime error|deadly signal|ALARM: working on the last Unit|out-of-memory' "$log"; then
    verdict=FAIL fail=1
    grep -E '^==[0-9]+==ERROR|runtime error|SUMMARY' "$log" | head -5 >&2
  else
    verdict=ok
  fi
  printf 'fuzz %-16s %6ss  %10s execs  cov %5s  %s\n' "${t#fuzz_}" "$secs" "${execs:-?}" "${cov:-?}" "$verdict"
done
exit $fail
