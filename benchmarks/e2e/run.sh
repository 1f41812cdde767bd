#!/usr/bin/env bash
# End-to-end benchmark: Drover vs HAProxy vs NGINX on this machine, same origin and load, as ratios.
#
#   benchmarks/e2e/run.sh                 3 rounds × 10 s per case (about 14 minutes)
#   benchmarks/e2e/run.sh --quick         smoke run: 1 round × 2 s per case (about 2 minutes)
#   benchmarks/e2e/run.sh --callgrind     also instructions per request under callgrind (+2 minutes)
#   options: --rounds N --duration S --warmup S --idle-connections N --callgrind-requests N
#            --cases http-small,http-16k,http-1m,tcp-small,tcp-conn  --drover PATH  --out FILE
#            --floor PATH | --no-floor   the bare byte relay of the floor rows (default: built next
#                                        to Drover, build/release/benchmarks/drover_floor_relay)
#            --congestion-control NAME   TCP congestion control of the run (default cubic, the
#                                        kernel's default, or reno where the machine does not allow
#                                        cubic in a namespace; "machine" keeps the machine's own)
#
# Installs haproxy, nginx (+ stream module), wrk and valgrind (scripts/install-deps.sh --bench), builds
# nothing, starts everything on 127.0.0.1 with free ports, and stops every process it started on exit.
# As root, everything runs in a private network namespace of its own loopback, with the congestion
# control above: a machine set to bbr paces every loopback send from timers whose softirqs ran on the
# proxy's core, so the direct baseline used that core too (docs/performance.md). The machine's own
# setting is left alone.
# Needs 2+ cores: proxies run on core 0, wrk and the origin on core 1. The Markdown table goes to stdout
# and benchmarks/e2e/results/latest.md; raw numbers and logs to benchmarks/e2e/results/raw/ (ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

drover="$repo/build/release/drover"
congestion=cubic
congestion_asked=0   # --congestion-control given: no fallback
args=()   # what the harness gets: all but --congestion-control, which only this script handles
while (($#)); do
  case "$1" in
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --congestion-control) congestion="${2:-}"; congestion_asked=1; shift 2 || shift; continue ;;
    --congestion-control=*) congestion="${1#--congestion-control=}"; congestion_asked=1; shift; continue ;;
    --drover) drover="${2:-}" ;;
    --drover=*) drover="${1#--drover=}" ;;
  esac
  args+=("$1")
  shift
done
if [[ ! "$congestion" =~ ^[a-z0-9_]+$ ]]; then
  echo "e2e: --congestion-control takes a name (cubic, bbr, reno, ...) or machine" >&2
  exit 2
fi
machine_congestion="$(cat /proc/sys/net/ipv4/tcp_congestion_control)"

"$repo/scripts/install-deps.sh" --bench

if [[ ! -x "$drover" ]]; then
  cat >&2 <<MSG
e2e: no Drover binary at $drover. Build it first (release, as scripts/demo.sh does):
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cmake --build build/release --target drover drover_floor_relay
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

# The network the run measures in: a private namespace (root only) or the machine's own.
netns=""
if [[ "$congestion" != machine ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "e2e: not root: measuring with the machine's network and its congestion control ($machine_congestion)" >&2
    congestion=machine
  elif ! grep -qw -- "$congestion" /proc/sys/net/ipv4/tcp_available_congestion_control &&
       ! modprobe "tcp_$congestion" 2>/dev/null; then
    echo "e2e: congestion control '$congestion' is not available here" \
         "($(cat /proc/sys/net/ipv4/tcp_available_congestion_control))" >&2
    exit 2
  fi
  # A namespace other than the machine's may only take an algorithm the machine allows
  # (net.ipv4.tcp_allowed_congestion_control; the kernel refuses the rest with EPERM). A machine
  # whose default is bbr may allow only "reno bbr". Then reno stands in for cubic: both are loss-based
  # and unpaced, and on loopback, where nothing is lost, neither backs off.
  allowed="$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control)"
  if [[ "$congestion" != machine ]] && ! grep -qw -- "$congestion" <<<"$allowed"; then
    if (( !congestion_asked )) && grep -qw reno <<<"$allowed"; then
      echo "e2e: cubic is not in net.ipv4.tcp_allowed_congestion_control ($allowed), which bounds what a" \
           "network namespace may use: measuring with reno (loss-based and unpaced like cubic)" >&2
      congestion=reno
    else
      echo "e2e: '$congestion' is not in net.ipv4.tcp_allowed_congestion_control ($allowed), which bounds" \
           "what a network namespace may use: add it there or pass --congestion-control machine" >&2
      exit 2
    fi
  fi
fi

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
  if [[ -n "$netns" ]]; then ip netns delete "$netns" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

run=(/usr/bin/python3 "$here/harness.py" --workdir "$workdir" --machine-congestion-control "$machine_congestion")
if [[ "$congestion" != machine ]]; then
  netns="drover-e2e-$$"
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  ip netns exec "$netns" sysctl -qw "net.ipv4.tcp_congestion_control=$congestion"
  run=(ip netns exec "$netns" "${run[@]}" --netns "$netns")
fi
"${run[@]}" "${args[@]}" &
harness_pid=$!
status=0
wait "$harness_pid" || status=$?
harness_pid=""
exit "$status"
