#!/usr/bin/env python3
"""Instructions per proxied HTTP keep-alive request, with a per-function profile to read.

    benchmarks/profile/http_keepalive_callgrind.py --drover build/perf/drover --out /tmp/cg.out [-n 2000]
        [--case http-keepalive|http-conn|tcp-keepalive|tcp-conn]   (listener; -conn: a new connection each)

Starts one NGINX origin (100-byte file) and Drover under valgrind --tool=callgrind (the e2e benchmark's
config), sends warm-up requests on one keep-alive connection, zeroes the counters, sends N more
sequential `GET /small`, dumps, and prints Ir per request. Read the dump with
`callgrind_annotate --inclusive=yes OUT.1`. Same method as benchmarks/e2e --callgrind (http-keepalive),
without HAProxy, NGINX-as-proxy and the throughput cases, so a change can be measured in about a minute.
"""
import argparse, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

here = Path(__file__).resolve().parent
e2e = here.parent / "e2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port}")


def render(name: str, out: Path, **values) -> Path:
    text = (e2e / name).read_text()
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    out.write_text(text)
    return out


def start_origin(work: Path, procs: list) -> tuple[dict[str, int], Path]:
    """An NGINX origin serving /small (100 bytes) from `work`, and the e2e Drover config in front of
    it (one worker). Returns the ports (origin, http, tcp, admin) and the config's path."""
    work.chmod(0o755)   # the NGINX worker (nobody) reads the docroot
    docroot = work / "docroot"
    docroot.mkdir()
    (docroot / "small").write_bytes(b"x" * 100)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "origin-tmp" / d).mkdir(parents=True)
    ports = {k: free_port() for k in ("origin", "http", "tcp", "admin")}
    oconf = render("nginx-origin.conf.tmpl", work / "origin.conf", WORKDIR=work, DOCROOT=docroot,
                   ORIGIN_PORT=ports["origin"])
    procs.append(subprocess.Popen(["nginx", "-p", str(work), "-e", str(work / "origin.err"), "-c", str(oconf)],
                                  start_new_session=True))
    wait_port(ports["origin"], 10)
    dconf = render("drover.yaml.tmpl", work / "drover.yaml", ORIGIN_PORT=ports["origin"], HTTP_PORT=ports["http"],
                   TCP_PORT=ports["tcp"], ADMIN_PORT=ports["admin"], WORKERS=1)
    return ports, dconf


def stop_all(procs: list) -> None:
    for proc in reversed(procs):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except Exception:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except Exception:
                pass


def requests(port: int, n: int, new_connection: bool = False) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    req = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    for i in range(n):
        if new_connection and i > 0:
            f.close()
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            f = sock.makefile("rb")
        sock.sendall(req)
        status = f.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"bad status {status!r}")
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        if len(f.read(length)) != length:
            raise RuntimeError("short body")
    sock.close()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--drover", default=str(here.parent.parent / "build/release/drover"))
    p.add_argument("--out", default="/tmp/drover-callgrind.out")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--case", choices=("http-keepalive", "http-conn", "tcp-keepalive", "tcp-conn"),
                   default="http-keepalive", help="listener, and one connection or a new one per request")
    a = p.parse_args()
    mode, _, reuse = a.case.partition("-")
    new_connection = reuse == "conn"
    work = Path(tempfile.mkdtemp(prefix="drover-prof."))
    procs = []
    try:
        ports, dconf = start_origin(work, procs)
        for old in Path(a.out).parent.glob(Path(a.out).name + "*"):
            old.unlink()
        log = open(work / "drover.log", "w")
        drover = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={a.out}", a.drover, "-c", str(dconf)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(drover)
        wait_port(ports[mode], 120)
        requests(ports[mode], max(20, a.n // 10), new_connection)
        subprocess.run(["callgrind_control", "-z", str(drover.pid)], check=True, capture_output=True)
        requests(ports[mode], a.n, new_connection)
        subprocess.run(["callgrind_control", "-d", str(drover.pid)], check=True, capture_output=True)
        dump = Path(f"{a.out}.1")
        end = time.monotonic() + 30
        total = None
        while time.monotonic() < end and total is None:
            if dump.exists():
                m = re.search(r"^totals:\s*(\d+)", dump.read_text(errors="replace"), re.M)
                total = int(m.group(1)) if m else None
            time.sleep(0.1)
        if total is None:
            raise RuntimeError("no callgrind dump")
        print(f"{total} Ir / {a.n} requests = {total / a.n:.0f} Ir per request  (profile: {dump})")
        return 0
    finally:
        stop_all(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
