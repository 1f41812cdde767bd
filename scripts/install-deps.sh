#!/usr/bin/env bash
# Installs everything Drover needs to build, test and benchmark on Debian 12, with apt.
# Idempotent: when every package is already present it prints nothing and exits at once.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --bench  also the tools benchmarks/e2e compares against (haproxy, nginx, wrk)
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libssl-dev libc-ares-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev
  python3 python3-prometheus-client python3-yaml curl dnsmasq-base openssl procps iproute2
  clang libclang-rt-14-dev
)
if [[ "${1:-}" == "--bench" ]]; then
  # nginx-light is only a transitional package in Debian 12 and has no stream (TCP) module;
  # libnginx-mod-stream is the dynamic module benchmarks/e2e loads for the TCP case.
  packages+=(haproxy nginx libnginx-mod-stream wrk nghttp2-client valgrind linux-perf)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root (or with sudo)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
