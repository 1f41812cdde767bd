#!/usr/bin/env bash
# End-to-end benchmark: Drover vs HAProxy vs NGINX on this machine, same origin and load, as ratios.
#
#   benchmarks/e2e/run.sh                 3 rounds × 10 s per case (about 14 minutes)
#   benchmarks/e2e/run.sh --quick         smoke run: 1 round × 2 s per case (about 2 minutes)
#   benchmarks/e2e/run.sh --callgrind     also instructions per request under callgrind (+2 minutes)
#   options: --rounds N --duration S --warmup S --idle-connections N --callgrind-requests N
#            --cases http-small,http-16k,http-1m,tcp-small,tcp-conn  --drover PATH  --out FILE
#
# Installs haproxy, nginx (+ stream module), wrk and valgrind (scripts/install-deps.sh --bench), builds
# nothing, starts everything on 127.0.0.1 with free ports, and stops every process it started on exit.
# Needs 2+ cores: proxies run on core 0, wrk and the origin on core 1. The Markdown table goes to stdout
# and benchmarks/e2e/results/latest.md; raw numbers and logs to benchmarks/e2e/results/raw/ (ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

drover="$repo/build/release/drover"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --drover) drover="${args[i+1]:-}" ;;
    --drover=*) drover="${args[i]#--drover=}" ;;
  esac
done

"$repo/scripts/install-deps.sh" --bench

if [[ ! -x "$drover" ]]; then
  cat >&2 <<MSG
e2e: no Drover binary at $drover. Build it first (release, as scripts/demo.sh does):
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build build/release --target drover
MSG
  exit 2
fi
if (( $(nproc) < 2 )); then
  echo "e2e: needs at least 2 cores (proxy on core 0, client and origin on core 1)" >&2
  exit 2
fi

# Thousands of idle connections: the client, the proxies and the origin each need the descriptors.
# (HAProxy's maxconn and NGINX's worker_connections in the templates assume about 16k.)
hard="$(ulimit -Hn)"
if [[ "$hard" == unlimited ]] || (( hard > 65536 )); then hard=65536; fi
ulimit -n "$hard"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/drover-e2e.XXXXXX")"
harness_pid=""
cleanup() {
  trap - EXIT INT TERM HUP
  if [[ -n "$harness_pid" ]] && kill -0 "$harness_pid" 2>/dev/null; then
    kill -TERM "$harness_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$harness_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$harness_pid" 2>/dev/null || true
  fi
  # Backstop: every service the harness started leads its own process group and has the workdir on its
  # command line; stop any that outlived the harness (checked by command line, never by name).
  if [[ -f "$workdir/pids" ]]; then
    while read -r pid; do
      if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$workdir"; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$workdir/pids"
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

/usr/bin/python3 "$here/harness.py" --workdir "$workdir" "$@" &
harness_pid=$!
status=0
wait "$harness_pid" || status=$?
harness_pid=""
exit "$status"
