#!/usr/bin/env bash
# Builds Drover and runs its embedded demo: a load balancer on 127.0.0.1:8080 in front of three
# replicas, admin on 127.0.0.1:9901. Extra arguments go to drover (e.g. --demo-listen 127.0.0.1:8081).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j "$(nproc)" --target drover
exec build/release/drover --demo "$@"
