"""Graceful shutdown on SIGTERM/SIGINT: stop accepting, report not ready, drain, exit 0."""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (LOG_LINE_RE, DroverTestCase, HttpTestCase, connect_refused, drover_bin, http_listener,
                     make_config, roundtrip, route, sha256, to_yaml,
                     static_cluster, tcp_listener, transfer, wait_closed, wait_until)


class SignalTest(DroverTestCase):

    def proxy(self, drain_timeout):
        echo = self.echo_backend()
        config = make_config([tcp_listener("front", "back")], [static_cluster("back", [echo])],
                             drain_timeout=drain_timeout)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("front"), echo

    def assert_not_ready(self, drover):
        """/ready answers 503 with a reason, or admin has already gone away."""
        seen = {}

        def not_ready():
            try:
                resp = drover.admin_get("/ready", timeout=1)
            except OSError:
                return True
            seen["resp"] = resp
            return resp.status == 503
        wait_until(not_ready, 5, message=lambda: f"/ready still {seen.get('resp')}")
        if "resp" in seen and seen["resp"].status == 503:
            self.assertTrue(seen["resp"].body.strip(), "503 from /ready should say why")

    def check_graceful_shutdown(self, sig):
        # A long drain timeout: exiting well before it proves drover exits when connections finish.
        drover, addr, echo = self.proxy(drain_timeout="20s")
        live = self.connect(addr)
        self.assertEqual(roundtrip(live, b"before"), b"before")
        mark = drover.log_mark()
        drover.send_signal(sig)
        drover.wait_for_log("draining", 5, start=mark)
        self.assert_not_ready(drover)
        wait_until(lambda: connect_refused(addr), 5, message="listener still accepting")
        # The live connection keeps relaying, both ways, until the client is done with it.
        payload = os.urandom(256 * 1024)
        self.assertEqual(sha256(roundtrip(live, payload)), sha256(payload))
        self.assertTrue(drover.running(), "exited while a connection was still live")
        self.assertEqual(transfer(live, b"last words"), b"last words")  # half-close, echo, EOF
        live.close()
        start = time.monotonic()
        self.assertEqual(drover.wait_exit(5), 0)
        self.assertLess(time.monotonic() - start, 5)
        drover.wait_for_log("drover stopped", 1, start=mark)

    def test_sigterm_drains_a_live_connection_then_exits_0(self):
        self.check_graceful_shutdown(signal.SIGTERM)

    def test_sigint_behaves_like_sigterm(self):
        self.check_graceful_shutdown(signal.SIGINT)

    def test_drain_timeout_closes_a_held_connection_and_exits_0(self):
        drover, addr, echo = self.proxy(drain_timeout="500ms")
        held = self.connect(addr)
        self.assertEqual(roundtrip(held, b"hold"), b"hold")
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        # Cut, and told so: a reset, not the FIN of a stream that ended.
        self.assertEqual(self.assertClosedPromptly(held, timeout=0.5 + 3), "reset")
        closed_after = time.monotonic() - start
        self.assertGreaterEqual(closed_after, 0.4, "closed before the drain timeout passed")
        self.assertEqual(drover.wait_exit(3), 0)
        self.assertLess(time.monotonic() - start, 0.5 + 3)
        wait_until(lambda: echo.active == 0, 3, message="upstream connection closed as well")

    def test_admin_post_drain_drains_like_sigterm(self):
        drover, addr, echo = self.proxy(drain_timeout="20s")
        live = self.connect(addr)
        self.assertEqual(roundtrip(live, b"before"), b"before")
        resp = drover.admin_post("/drain")
        self.assertEqual(resp.status, 200, resp.text)
        self.assert_not_ready(drover)
        wait_until(lambda: connect_refused(addr), 5, message="listener still accepting")
        self.assertEqual(roundtrip(live, b"still"), b"still")
        self.assertTrue(drover.running())
        live.close()
        self.assertEqual(drover.wait_exit(5), 0)

    def test_reload_and_log_signals_are_caught_before_static_initialisation(self):
        # main() comes ~10 ms after exec, behind the static constructors; the handlers are installed
        # from the executable's .preinit_array, which runs before any of them (early_signals.cpp).
        readelf = shutil.which("readelf")
        if readelf is None:
            self.skipTest("readelf is not installed")
        sections = subprocess.run([readelf, "-SW", drover_bin()], capture_output=True, text=True, check=True).stdout
        found = re.search(r"\[\s*(\d+)\]\s+\.preinit_array\s", sections)
        self.assertIsNotNone(found, "no .preinit_array section")
        symbols = subprocess.run([readelf, "-sW", drover_bin()], capture_output=True, text=True, check=True).stdout
        # The entry is ours (a sanitizer runtime may add its own beside it).
        self.assertRegex(symbols, rf"\s{found.group(1)}\s+\S*drover_catch_early_signals\n",
                         "drover_catch_early_signals is not in .preinit_array")

    def test_sighup_while_starting_is_a_reload_once_started(self):
        # SIGHUP's default action ends a process. Drover catches it from its first line; one that comes
        # while it starts takes effect once the server runs. The start is held where it reads its
        # config: from a FIFO, until the test writes it (a reload then finds the FIFO and is refused,
        # which shows the SIGHUP was kept all the same).
        echo = self.echo_backend()
        workdir = tempfile.mkdtemp(prefix="drover-hup-")
        self.addCleanup(shutil.rmtree, workdir, True)
        path = os.path.join(workdir, "drover.yaml")
        os.mkfifo(path)
        proc = subprocess.Popen([drover_bin(), "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(), proc.stderr.close()))
        lines = []
        started = threading.Event()
        hup_seen = threading.Event()

        def watch_log():
            for line in proc.stderr:
                lines.append(line)
                if b"admin listening" in line:
                    started.set()
                if b"SIGHUP: " in line:
                    hup_seen.set()
        threading.Thread(target=watch_log, daemon=True).start()

        def hup_taken():
            with open(f"/proc/{proc.pid}/status", encoding="ascii") as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
            return (int(fields["SigCgt"], 16) | int(fields["SigIgn"], 16)) & (1 << (signal.SIGHUP - 1)) != 0
        wait_until(hup_taken, 5, message="SIGHUP is not caught while Drover starts")
        proc.send_signal(signal.SIGHUP)   # while it waits for its config
        time.sleep(0.1)
        self.assertIsNone(proc.poll(), f"killed while starting (exit {proc.returncode})")
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_yaml(make_config([tcp_listener("front", "back")], [static_cluster("back", [echo])])))
        self.assertTrue(started.wait(10), "never started:\n" + b"".join(lines).decode())
        self.assertTrue(hup_seen.wait(5), "the SIGHUP sent while starting was lost:\n" + b"".join(lines).decode())
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)

    def test_sigterm_without_connections_exits_0_promptly(self):
        drover, _, _ = self.proxy(drain_timeout="20s")
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        self.assertEqual(drover.wait_exit(5), 0)
        self.assertLess(time.monotonic() - start, 5)
        lines = drover.stderr_lines
        draining = [i for i, line in enumerate(lines) if "draining" in line]
        stopped = [i for i, line in enumerate(lines) if "drover stopped" in line]
        self.assertTrue(draining and stopped and draining[0] < stopped[-1], lines)
        bad = [line for line in lines if not LOG_LINE_RE.match(line)]
        self.assertEqual(bad, [], "log lines not in `<UTC ISO time> <level> <message>` form")



class HttpDrainTest(HttpTestCase):
    """SIGTERM on an HTTP listener: idle keep-alive connections are kept shutdown.idle_grace (a request
    already on its way is answered, with Connection: close) and then closed, a request in flight
    finishes and is told Connection: close, and the process exits without waiting out the drain."""

    def test_an_idle_keepalive_is_answered_within_idle_grace_then_closed_and_a_busy_request_finishes(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin], shutdown={"drain_timeout": "20s", "idle_grace": "1500ms"})
        late, idle = self.client(addr), self.client(addr)
        for conn in (late, idle):
            self.assertEqual(conn.request("GET", "/warm").status, 200)
        busy = self.client(addr)
        busy.send(b"GET /slow?delay=0.5 HTTP/1.1\r\nHost: test\r\n\r\n")
        origin.wait_requests(3, 5)
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # A request that crossed the drain's start on an idle connection: answered, then the close.
        resp = late.request("GET", "/late", timeout=5)
        self.assertEqual((resp.status, (resp.header("connection") or "").lower()), (200, "close"))
        late.wait_closed(5)
        response = busy.read_response("GET", timeout=5)
        self.assertEqual(response.status, 200)
        self.assertEqual((response.header("connection") or "").lower(), "close")
        idle.wait_closed(5)
        self.assertGreater(time.monotonic() - start, 1.2, "the idle connection was kept idle_grace")
        self.assertEqual(drover.wait_exit(10), 0)
        self.assertLess(time.monotonic() - start, 10, "drain waited for the idle connection")

    def test_a_request_cut_at_the_drain_timeout_is_reset_not_ended(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin], shutdown={"drain_timeout": "500ms"})
        busy = self.client(addr)
        busy.send(b"GET /slow?delay=5 HTTP/1.1\r\nHost: test\r\n\r\n")
        origin.wait_requests(1, 5)
        drover.send_signal(signal.SIGTERM)
        self.assertEqual(wait_closed(busy.sock, 4), "reset")
        self.assertEqual(drover.wait_exit(10), 0)

    def test_idle_grace_0s_closes_idle_keepalives_at_once(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin], shutdown={"drain_timeout": "20s", "idle_grace": "0s"})
        idle = self.client(addr)
        self.assertEqual(idle.request("GET", "/warm").status, 200)
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        idle.wait_closed(5)
        self.assertLess(time.monotonic() - start, 0.8)
        self.assertEqual(drover.wait_exit(10), 0)

    def test_shutdown_delay_turns_ready_503_while_still_serving_and_a_second_signal_drains_at_once(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin], shutdown={"delay": "1500ms", "drain_timeout": "10s"})
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        wait_until(lambda: drover.admin_get("/ready").status == 503, 2, message="/ready 503 at once")
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual(drover.metric_value("drover_draining"), 1)
        # Still accepting and serving as usual (keep-alive too) while load balancers catch up.
        conn = self.client(addr)
        resp = conn.request("GET", "/during-delay")
        self.assertEqual((resp.status, (resp.header("connection") or "").lower()), (200, ""))
        self.assertEqual(drover.admin_post("/drain").status, 409)
        # Then the drain proper: the listener refuses, and the process exits.
        wait_until(lambda: self.refused(addr), 5, message="the listener closed after the delay")
        self.assertGreater(time.monotonic() - start, 1.3)
        self.assertEqual(drover.wait_exit(10), 0)
        # A second signal during the delay starts the drain at once.
        drover, addr = self.http_proxy([origin], shutdown={"delay": "30s", "drain_timeout": "10s"})
        drover.send_signal(signal.SIGTERM)
        wait_until(lambda: drover.admin_get("/ready").status == 503, 2, message="/ready 503")
        start = time.monotonic()
        drover.send_signal(signal.SIGTERM)
        self.assertEqual(drover.wait_exit(10), 0)
        self.assertLess(time.monotonic() - start, 5)

    @staticmethod
    def refused(addr) -> bool:
        try:
            socket.create_connection(addr, timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True

    def test_under_load_every_request_a_backend_saw_is_answered(self):
        """Keep-alive clients hammer drover while it drains: a request either never reached it (the
        listener had closed) or it is answered 200. A request sent on a keep-alive connection as the
        drain began is answered too (idle_grace), with Connection: close: no client sees its
        connection cut."""
        import http.client
        origin = self.origin()
        drover, addr = self.http_proxy([origin], drain_timeout="10s")
        answered, unanswered, stop = set(), [], threading.Event()

        def client(n):
            conn, seq = None, 0
            while not stop.is_set():
                seq += 1
                target = f"/load/{n}/{seq}?delay=0.02"
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(*addr, timeout=5)
                    conn.request("GET", target)
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        answered.add(target)
                    else:
                        unanswered.append((target, resp.status))
                    if resp.will_close:
                        conn.close()
                        conn = None
                except ConnectionRefusedError:
                    return   # the listener is closed: this request arrived after the drain began
                except (OSError, http.client.HTTPException) as exc:
                    unanswered.append((target, type(exc).__name__))
                    if conn is not None:
                        conn.close()
                    conn = None
        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(answered) > 40, 10, message="load running")
        drover.send_signal(signal.SIGTERM)
        self.assertEqual(drover.wait_exit(15), 0)
        stop.set()
        for t in threads:
            t.join(10)
        seen = {r.target for r in origin.requests}
        self.assertEqual(seen - answered, set(), "requests the origin received but the client never got")
        self.assertFalse([u for u in unanswered if isinstance(u[1], int)], "non-200 answers during the drain")
        # What failed at the client never reached the origin: safe for any client to retry elsewhere.
        self.assertEqual({t for t, _ in unanswered} & seen, set())
        self.assertEqual(unanswered, [], "requests cut by the drain")



class LogSignalTest(HttpTestCase):

    def test_sigusr1_reopens_the_access_log_and_sigusr2_is_ignored(self):
        # After logrotate moved the file away, SIGUSR1 makes Drover write to a new one at the path.
        echo = self.echo_backend()
        logdir = tempfile.mkdtemp(prefix="drover-access-")
        self.addCleanup(shutil.rmtree, logdir, True)
        path = os.path.join(logdir, "access.log")
        drover = self.start_drover(make_config([http_listener("web", [route("back", path_prefix="/")])],
                                               [static_cluster("back", [self.origin()])], access_log={"path": path}))
        addr = drover.listener_addr("web")
        self.assertEqual(self.get(addr, "/before").status, 200)
        wait_until(lambda: "/before" in open(path, encoding="utf-8").read(), 5)
        os.rename(path, path + ".1")
        mark = drover.log_mark()
        drover.send_signal(signal.SIGUSR1)
        drover.wait_for_log(r"SIGUSR1: access log \S+ reopened", 5, start=mark)
        self.assertEqual(self.get(addr, "/after").status, 200)
        wait_until(lambda: os.path.exists(path) and "/after" in open(path, encoding="utf-8").read(), 5)
        with open(path + ".1", encoding="utf-8") as f:
            self.assertNotIn("/after", f.read())
        drover.send_signal(signal.SIGUSR2)
        drover.wait_for_log(r"SIGUSR2: ignored", 5, start=mark)
        self.assertTrue(drover.running())
        self.assertEqual(self.get(addr, "/still").status, 200)


if __name__ == "__main__":
    unittest.main()
