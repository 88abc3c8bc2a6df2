#!/usr/bin/env bash
# Build, test and benchmark the CUDA kernels on a machine with an NVIDIA GPU, in one go:
#   bench/gpu.sh            (writes logs and the result table under $OUT, default ./out-gpu)
# Steps: configure (Ninja, sm_90) and build the GPU tests and bench_cuda; run the GPU
# tests; time the reference kernels if a reference harness is present in .ref/ (kept out
# of the repository: it builds third-party sources); run bench_cuda with the reference
# times side by side, writing $OUT/cuda_h100.md (copied to bench/results/ by hand).
# SWEEP_FWD / SWEEP_BWD / SWEEP_FB / SWEEP_CONV (/ _FWD / _BWD)="VAR=VAL[,VAR=VAL] ..." add other launch shapes to the
# log, e.g. SWEEP_FWD="MAMBASEQ_SCAN_FWD_Q=4,1 MAMBASEQ_SCAN_FWD_Q=16,64"
# SWEEP_CONV="MAMBASEQ_CONV_RUN=128 MAMBASEQ_CONV_RING=1 MAMBASEQ_CONV_INTERIOR=0".
# TEST_ENVS="VAR=VAL[,VAR=VAL] ...": the scan GPU tests again under each setting.
# PROFILE / PROFILE_REF: Nsight Compute summaries of ours / the reference's kernels (below).
# SASS="regex": the SASS of our kernels whose mangled names match, into sass.txt.
# The secondary logs (build, reference build, ncu, sass) come back packed in logs.tgz, so
# that one call returns at most summary.log, tests.log, cuda_h100.md, ref.csv and logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out-gpu}
mkdir -p "$OUT"
export OUT
log="$OUT/summary.log"
say() { echo "$@" | tee -a "$log"; }
: > "$log"
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu \
  --format=csv 2>&1 | tee -a "$log"
nvcc --version 2>&1 | tail -1 | tee -a "$log"

refpid=""
if [ -x .ref/run.sh ]; then
  (.ref/run.sh build > "$OUT/ref_build.log" 2>&1) &
  refpid=$!
fi

jobs=${JOBS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}
start=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DMAMBASEQ_CUDA_ARCHS=90 > "$OUT/build.log" 2>&1 \
  && ninja -C build-gpu -j"$jobs" mambaseq_cuda_tests bench_cuda >> "$OUT/build.log" 2>&1
rc=$?
say "build: rc=$rc in $(( $(date +%s) - start )) s"
if [ $rc -ne 0 ]; then tail -40 "$OUT/build.log"; exit 1; fi

start=$(date +%s)
build-gpu/tests/cuda/mambaseq_cuda_tests ${GTEST_FILTER:+--gtest_filter=$GTEST_FILTER} > "$OUT/tests.log" 2>&1
trc=$?
say "gpu tests: rc=$trc in $(( $(date +%s) - start )) s"
grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|rel_err|Expected|Which is|error" "$OUT/tests.log" | head -60 | tee -a "$log"
# TEST_ENVS="VAR=VAL[,VAR=VAL] ...": the scan tests again under each setting (other kernel paths).
for item in ${TEST_ENVS:-}; do
  ( IFS=','; for kv in $item; do export "$kv"; done
    build-gpu/tests/cuda/mambaseq_cuda_tests --gtest_filter='ScanGpu*:StepGpu*' > "$OUT/tests_env.log" 2>&1 )
  erc=$?
  [ $erc -ne 0 ] && trc=$erc
  say "gpu scan tests under $item: rc=$erc, $(grep -c '^\[       OK' "$OUT/tests_env.log") passed"
  grep -E "^\[  FAILED |Failure|rel_err" "$OUT/tests_env.log" | head -20 | tee -a "$log"
done

ref=""
if [ -n "$refpid" ]; then
  wait "$refpid"
  say "reference build: rc=$? (log: ref_build.log)"
  tail -5 "$OUT/ref_build.log" | tee -a "$log"
  .ref/run.sh bench "$OUT/ref.csv" >> "$log" 2>&1 && ref="--ref $OUT/ref.csv"
fi

build-gpu/bench/bench_cuda $ref --out "$OUT/cuda_h100.md" 2>&1 | tee -a "$log"

# PROFILE="0 2": Nsight Compute summaries of every kernel at those shapes (indices 0-3).
if [ -n "${PROFILE:-}" ] && command -v ncu > /dev/null; then
  for i in $PROFILE; do
    ncu --clock-control none --kernel-name regex:"${PROFILE_KERNELS:-scan_|conv_}" --section SpeedOfLight \
      --section Occupancy --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section LaunchStats \
      ${PROFILE_SOURCE:+--section SourceCounters --print-details all} \
      build-gpu/bench/bench_cuda --profile "$i" >> "$OUT/ncu.txt" 2>&1
  done
  echo "ncu: $(grep -c 'scan_\|conv_' "$OUT/ncu.txt") lines (ncu.txt)" | tee -a "$log"
fi
# PROFILE_REF="0": the same for the reference's kernels at those shapes (its harness has a
# --profile mode that runs scan fwd+bwd and conv fwd+bwd once between profiler start/stop).
if [ -n "${PROFILE_REF:-}" ] && [ -n "$ref" ] && command -v ncu > /dev/null; then
  for i in $PROFILE_REF; do
    (cd .ref && ncu --profile-from-start off --clock-control none --section SpeedOfLight --section Occupancy \
      --section LaunchStats python3 bench.py --profile "$i") >> "$OUT/ncu_ref.txt" 2>&1
  done
  echo "ncu (reference): $(grep -c 'Duration' "$OUT/ncu_ref.txt") kernels (ncu_ref.txt)" | tee -a "$log"
fi
if [ -n "${SASS:-}" ] && command -v cuobjdump > /dev/null; then
  cuobjdump -sass build-gpu/bench/bench_cuda | awk -v re="$SASS" '/Function :/ { keep = ($0 ~ re) } keep' > "$OUT/sass.txt"
  echo "sass: $(grep -c 'Function :' "$OUT/sass.txt") kernels (sass.txt)" | tee -a "$log"
fi
(cd "$OUT" && packed=$(ls build.log ref_build.log tests_env.log ncu.txt ncu_ref.txt sass.txt 2>/dev/null || true) \
  && [ -n "$packed" ] && tar czf logs.tgz $packed && rm -f $packed)
exit $trc
