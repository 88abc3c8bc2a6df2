#!/usr/bin/env bash
# mambaseq set-up: install what is missing (Debian 12 packages only), build, then
#   scripts/setup.sh run    train the built-in default job and print its metrics
#   scripts/setup.sh test   run the test suite (Release, then ASan+UBSan)
#   scripts/setup.sh build  only install and build
# Safe to run again: apt-get is called only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-build}
jobs=${MAMBASEQ_JOBS:-$(nproc)}

# package -> why (the README lists the same)
packages=(
  g++ cmake ninja-build pkg-config   # compiler and build
  libopenblas-dev                    # matrix products (BLAS) on the CPU
  nlohmann-json3-dev                 # config.json, safetensors headers, JSONL logs
  libyaml-cpp-dev                    # training configs
  libcli11-dev                       # the command line
  libfmt-dev                         # formatting and error messages
  zlib1g-dev                         # gzip-compressed inputs
  libgtest-dev                       # tests
  libbenchmark-dev                   # benchmarks
  gnuplot-nox                        # PNG plots of training curves and reports
  clang libclang-rt-14-dev           # libFuzzer targets for the untrusted-input parsers
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build() {  # build DIR TYPE
  cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE="$2" ${MAMBASEQ_CMAKE_ARGS:-} > "$1.configure.log" 2>&1 \
    || { cat "$1.configure.log"; exit 1; }
  cmake --build "$1" -j "$jobs"
}

case "$mode" in
  build)
    build build Release ;;
  run)
    build build Release
    # The main job: the synthetic suite (Mamba vs CNN vs Transformer, 5 tasks, report + plots).
    ./build/mambaseq benchmark --config configs/suite_synthetic.yaml ;;
  test)
    # One CUDA architecture keeps CI's 2-core nvcc compile short; GPU tests report
    # themselves as skipped where no GPU is present.
    MAMBASEQ_CMAKE_ARGS="-DMAMBASEQ_CUDA_ARCHS=90 ${MAMBASEQ_CMAKE_ARGS:-}" build build Release
    (cd build && ctest --output-on-failure -j "$jobs")
    # Second build type: AddressSanitizer + UndefinedBehaviorSanitizer (no CUDA, no benchmarks).
    MAMBASEQ_CMAKE_ARGS="-DMAMBASEQ_CUDA=OFF -DMAMBASEQ_BUILD_BENCH=OFF" build build-sanitize Sanitize
    (cd build-sanitize && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
       ctest --output-on-failure -j "$jobs" -LE "gpu|slow")
    # A short run of every fuzz target (safetensors, config, index, tokenizer.json, FASTA, CSV, gzip).
    scripts/fuzz.sh "${MAMBASEQ_FUZZ_SECONDS:-15}"
    echo "setup: all tests passed" ;;
  *)
    echo "usage: scripts/setup.sh [build|run|test]" >&2; exit 2 ;;
esac
