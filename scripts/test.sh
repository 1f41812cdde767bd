#!/usr/bin/env bash
# Builds Drover three ways and runs every test on each build:
#   build/fuzz     clang + libFuzzer: the HTTP request and response fronts, fuzzed for a bounded time
#   build/release  RelWithDebInfo, warnings as errors (what ships)
#   build/asan     AddressSanitizer + UndefinedBehaviorSanitizer, warnings as errors
# Installs what it needs first (scripts/install-deps.sh). ccache keeps rebuilds fast across clones.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

jobs=$(nproc)
# CI builds a fresh clone in a new folder each time: make ccache key on paths relative to the clone
# and ignore the working directory, so the cache (which outlives the clone) still hits.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
export CTEST_OUTPUT_ON_FAILURE=1
# Leaks are real bugs too; halt_on_error so a sanitizer report always fails the test that caused it.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

run_suite() {
  local name=$1; shift
  echo "== $name: configure and build"
  cmake -S . -B "build/$name" -G Ninja -DDROVER_WERROR=ON "$@" >/dev/null
  cmake --build "build/$name" -j "$jobs"
  echo "== $name: test"
  ctest --test-dir "build/$name" -j 2 --timeout 300
}

run_suite fuzz -DCMAKE_CXX_COMPILER=clang++ -DDROVER_FUZZ=ON -DDROVER_FUZZ_SECONDS=20
run_suite release -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_suite asan -DCMAKE_BUILD_TYPE=Debug -DDROVER_SANITIZE=ON -DDROVER_BUILD_BENCHMARKS=OFF
