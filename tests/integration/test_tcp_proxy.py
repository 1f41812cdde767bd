"""L4 proxying: bytes, half-close, concurrency, round robin, failover, limits and the idle timeout."""

import collections
import concurrent.futures
import fcntl
import os
import socket
import struct
import termios
import threading
import time
import unittest

from harness import (DroverTestCase, EchoBackend, ScriptedBackend, UnresponsivePort, ipv6_loopback_available,
                     make_config, read_slowly, recv_all, roundtrip, sending_script, sha256, static_cluster,
                     tcp_listener, transfer, wait_until)


def unacknowledged(sock: socket.socket) -> int:
    """Bytes `sock` has sent that its peer has not acknowledged yet (SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def abort(sock: socket.socket) -> None:
    """Closes with a reset (SO_LINGER 0), as a crashed or aborting peer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TcpProxyTest(DroverTestCase):

    def proxy(self, hosts, listener_extra=None, cluster_extra=None, **config_extra):
        """drover with one tcp listener `front` -> cluster `back` over `hosts`; returns (drover, address)."""
        config = make_config([tcp_listener("front", "back", **(listener_extra or {}))],
                             [static_cluster("back", hosts, **(cluster_extra or {}))], **config_extra)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("front")

    # -- bytes -------------------------------------------------------------------------------------

    def test_large_transfer_is_intact_both_ways(self):
        echo = self.echo_backend()
        _, addr = self.proxy([echo])
        data = os.urandom(16 << 20)
        self.assert_echoed_whole(echo, self.connect(addr, timeout=20), data)

    def test_config_shows_a_tcp_listener_only_the_keys_it_can_have(self):
        drover, _ = self.proxy([self.echo_backend()])
        listener = drover.admin_json("/config")["listeners"][0]
        self.assertEqual(set(listener["limits"]), {"max_connections"})
        self.assertEqual(set(listener["timeouts"]), {"idle"})

    def test_client_half_close_reaches_backend_and_reply_still_arrives(self):
        echo = self.echo_backend()
        _, addr = self.proxy([echo])
        sock = self.connect(addr, timeout=5)
        data = b"half-close " * 1000
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        # The echo backend closes its side only once it has seen our EOF (after echoing everything),
        # so EOF here means the half-close went through and the reply still came back whole.
        self.assertEqual(recv_all(sock), data)
        self.assertEqual(echo.eofs, 1)
        self.assertEqual(echo.bytes_received, len(data))

    def test_backend_half_close_reaches_client_and_client_can_still_send(self):
        received = []
        done = threading.Event()

        def greet_then_listen(conn, backend):
            conn.sendall(b"hello, then EOF")
            conn.shutdown(socket.SHUT_WR)
            received.append(recv_all(conn))  # the client keeps talking after our EOF
            done.set()

        backend = self.backend(ScriptedBackend(greet_then_listen))
        _, addr = self.proxy([backend])
        sock = self.connect(addr)
        self.assertEqual(recv_all(sock), b"hello, then EOF")  # EOF reached the client...
        payload = os.urandom(256 * 1024)
        sock.sendall(payload)  # ...while its own direction stays open
        sock.shutdown(socket.SHUT_WR)
        self.assertTrue(done.wait(5), "backend never saw the client's EOF")
        self.assertEqual(sha256(received[0]), sha256(payload))

    def test_a_backend_reset_reaches_the_client_as_a_reset(self):
        # A crashed backend is not a finished one: the client sees what was sent, then the reset,
        # not the FIN of an orderly end.
        def send_then_reset(conn, _backend):
            conn.sendall(b"partial answer")
            wait_until(lambda: unacknowledged(conn) == 0, 5)
            abort(conn)

        _, addr = self.proxy([self.backend(ScriptedBackend(send_then_reset))])
        sock = self.connect(addr, timeout=5)
        got = b""
        with self.assertRaises(ConnectionResetError, msg="the client got an orderly EOF"):
            while data := sock.recv(65536):
                got += data
        self.assertEqual(got, b"partial answer")

    def test_a_client_reset_reaches_the_backend_as_a_reset(self):
        seen: list = []
        done = threading.Event()

        def read_until_the_end(conn, _backend):
            got = b""
            try:
                while data := conn.recv(65536):
                    got += data
                seen.append(("eof", got))
            except ConnectionResetError:
                seen.append(("reset", got))
            done.set()

        backend = self.backend(ScriptedBackend(read_until_the_end))
        _, addr = self.proxy([backend])
        sock = self.connect(addr, timeout=5)
        sock.sendall(b"request")
        wait_until(lambda: backend.connections == 1, 5)
        time.sleep(0.1)   # the request is across
        abort(sock)
        self.assertTrue(done.wait(5), "the backend never saw the end")
        self.assertEqual(seen, [("reset", b"request")])

    def test_bytes_queued_for_a_slow_client_are_not_lost_to_a_backend_reset(self):
        # The backend sends, sees it all acknowledged (by Drover) and resets. The client reads
        # slowly, so Drover still has bytes for it when it reads the reset: a reset now would discard
        # them, so they are delivered first.
        data = os.urandom(1 << 20)

        def send_then_reset(conn, _backend):
            conn.sendall(data)
            wait_until(lambda: unacknowledged(conn) == 0, 10)
            abort(conn)

        _, addr = self.proxy([self.backend(ScriptedBackend(send_then_reset))])
        sock = self.connect(addr, timeout=10)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        time.sleep(0.5)   # the backend is done and reset; Drover holds the rest
        got = bytearray()
        try:
            while chunk := sock.recv(16384):
                got += chunk
                time.sleep(0.001)
        except ConnectionResetError:
            pass
        self.assertEqual(len(got), len(data))
        self.assertEqual(sha256(bytes(got)), sha256(data))

    def test_many_concurrent_connections_are_each_intact(self):
        echo = self.echo_backend()
        _, addr = self.proxy([echo], workers=2)
        n = 50
        barrier = threading.Barrier(n, timeout=10)

        def one(i):
            data = os.urandom(64 * 1024 + i)
            with socket.create_connection(addr, timeout=10) as sock:
                sock.settimeout(10)
                # Everyone proves the path works, then all transfer while all are open.
                self.assertEqual(roundtrip(sock, b"ping"), b"ping")
                barrier.wait()
                return sha256(transfer(sock, data)) == sha256(data)

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            results = list(pool.map(one, range(n), timeout=30))
        self.assertEqual(results, [True] * n)
        self.assertEqual(echo.connections, n)

    # -- load balancing and failover ---------------------------------------------------------------

    def test_round_robin_spreads_sequential_connections_evenly(self):
        backends = [self.tagged_backend(tag) for tag in ("A", "B", "C")]
        _, addr = self.proxy(backends, workers=1, cluster_extra={"load_balancing": "round_robin"})
        counts = collections.Counter()
        for _ in range(30):
            with self.connect(addr) as sock:
                counts[recv_all(sock)] += 1
        self.assertEqual(counts, {b"A": 10, b"B": 10, b"C": 10})
        self.assertEqual([b.connections for b in backends], [10, 10, 10])

    def test_refusing_host_is_skipped(self):
        live = [self.tagged_backend("A"), self.tagged_backend("B")]
        dead = self.closed_port()
        drover, addr = self.proxy([live[0], dead, live[1]], workers=1, cluster_extra={"load_balancing": "round_robin"})
        answers = []
        for _ in range(9):
            with self.connect(addr) as sock:
                answers.append(recv_all(sock))
        self.assertEqual(sorted(set(answers)), [b"A", b"B"], answers)
        self.assertEqual(sum(b.connections for b in live), 9)
        failures = drover.metric_value("drover_upstream_connect_failures_total",
                                       {"cluster": "back", "host": dead.addr}, default=0)
        self.assertGreater(failures, 0)
        for b in live:
            self.assertEqual(drover.metric_value("drover_upstream_connect_failures_total",
                                                 {"cluster": "back", "host": b.addr}, default=0), 0)

    def test_all_hosts_refusing_closes_client_promptly(self):
        dead = [self.closed_port(), self.closed_port()]
        drover, addr = self.proxy(dead, cluster_extra={"timeouts": {"connect": "200ms"}})
        sock = self.connect(addr)
        start = time.monotonic()
        self.assertClosedPromptly(sock, timeout=3)
        self.assertLess(time.monotonic() - start, 3)
        drover.wait_metric("drover_cluster_upstream_unavailable_total",
                           {"cluster": "back", "reason": "no_host"}, lambda v: v == 1, default=0)
        for d in dead:
            self.assertGreater(drover.metric_value("drover_upstream_connect_failures_total",
                                                   {"cluster": "back", "host": d.addr}, default=0), 0)
        # The warning says why the last host failed, not only that none was reachable.
        drover.wait_for_log(r"no host of cluster back reachable, closing client; last failure: "
                            r"127\.0\.0\.1:\d+: Connection refused", 3)

    def test_connect_timeout_moves_on_to_the_next_host(self):
        # UnresponsivePort drops SYNs (its accept queue is full), so connecting there only ends by
        # drover's timeouts.connect; it skips the test if the kernel cannot do that deterministically.
        hole = self.backend(UnresponsivePort())
        echo = self.echo_backend()
        drover, addr = self.proxy([hole, echo], workers=1,
                                  cluster_extra={"timeouts": {"connect": "200ms"}, "load_balancing": "round_robin"})
        # With round robin over two hosts, one of two connections starts at the unresponsive one.
        for _ in range(2):
            sock = self.connect(addr)
            start = time.monotonic()
            self.assertEqual(roundtrip(sock, b"still here"), b"still here")
            self.assertLess(time.monotonic() - start, 3)
            sock.close()
        self.assertEqual(echo.connections, 2)
        failed = drover.metric_value("drover_upstream_connect_failures_total", {"cluster": "back", "host": hole.addr},
                                     default=0)
        self.assertGreaterEqual(failed, 1)
        # Each failed connect went on to the other host: a retry, counted like an http one.
        self.assertEqual(drover.metric_value("drover_cluster_retries_total",
                                             {"cluster": "back", "cause": "connect_failure"}, default=0), failed)

    def test_connect_timeout_on_only_host_closes_client_after_the_timeout(self):
        hole = self.backend(UnresponsivePort())
        drover, addr = self.proxy([hole], cluster_extra={"timeouts": {"connect": "200ms"},
                                                         "retries": {"attempts": 0}})
        sock = self.connect(addr)
        start = time.monotonic()
        self.assertClosedPromptly(sock, timeout=3)
        elapsed = time.monotonic() - start
        self.assertGreaterEqual(elapsed, 0.15, "closed before the connect timeout could have passed")
        drover.wait_metric("drover_cluster_upstream_unavailable_total",
                           {"cluster": "back", "reason": "no_host"}, lambda v: v == 1, default=0)

    def test_retries_bound_the_hosts_tried_per_connection(self):
        # retries.attempts: 1 -> each client connection tries at most two hosts, then is closed.
        dead = [self.closed_port() for _ in range(3)]
        echo = self.echo_backend()
        drover, addr = self.proxy([*dead, echo], workers=1,
                                  cluster_extra={"retries": {"attempts": 1}, "load_balancing": "round_robin"})

        def failures():
            return drover.metric_value("drover_upstream_connect_failures_total", {"cluster": "back"}, default=0)
        closed = 0
        for _ in range(8):
            before = failures()
            sock = self.connect(addr, timeout=5)
            try:
                served = roundtrip(sock, b"x") == b"x"
            except (AssertionError, ConnectionResetError):
                served = False
            sock.close()
            if served:
                self.assertLessEqual(failures() - before, 1)
            else:
                closed += 1
                wait_until(lambda: failures() - before == 2, 3,
                           message=lambda: f"{failures() - before} failed attempts for a closed connection, want 2")
        # Round robin over three dead hosts and one live one: some connections must run out of tries.
        self.assertGreater(closed, 0)
        self.assertEqual(echo.connections, 8 - closed)
        drover.wait_metric("drover_cluster_upstream_unavailable_total", {"cluster": "back", "reason": "no_host"},
                           lambda v: v == closed, default=0)

    def test_least_request_sends_new_connections_to_the_host_with_fewer_open(self):
        # The default policy. With two hosts, both are compared on every pick, so it is deterministic.
        backends = [self.echo_backend(), self.echo_backend()]
        drover, addr = self.proxy(backends, workers=1)

        def open_one():
            before = [b.connections for b in backends]
            sock = self.connect(addr)
            self.assertEqual(roundtrip(sock, b"x"), b"x")  # connected upstream: counted as active
            return sock, next(i for i, b in enumerate(backends) if b.connections > before[i])
        held = [open_one() for _ in range(4)]
        self.assertEqual([b.connections for b in backends], [2, 2])
        # Close both connections of one host: the next two go there (round robin would alternate).
        freed = held[0][1]
        for sock, where in held:
            if where == freed:
                sock.close()
        drover.wait_metric("drover_upstream_connections_active", {"cluster": "back", "host": backends[freed].addr},
                           lambda v: v == 0, default=0)
        more = [open_one() for _ in range(2)]
        self.assertEqual([where for _, where in more], [freed, freed])
        for sock, _ in held + more:
            sock.close()

    def test_maglev_keeps_a_client_on_one_host(self):
        # Every connection comes from 127.0.0.1, so every one hashes alike, on every worker. If the
        # key's host is the dead one, each retry walks to the same next host.
        backends = [self.tagged_backend(tag) for tag in ("A", "B", "C")]
        dead = self.closed_port()
        drover, addr = self.proxy([backends[0], dead, *backends[1:]], workers=2,
                                  cluster_extra={"load_balancing": "maglev"})
        # /config shows the hash it uses though the file names none.
        self.assertEqual(drover.admin_json("/config")["clusters"][0]["hash"], {"source_ip": True})
        answers = set()
        for _ in range(12):
            with self.connect(addr) as sock:
                answers.add(recv_all(sock))
        self.assertEqual(len(answers), 1, answers)

    def test_ipv6_loopback_listener_and_host(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        echo = self.backend(EchoBackend(host="::1"))
        self.assertEqual(echo.addr, f"[::1]:{echo.port}")
        drover, addr = self.proxy([echo], listener_extra={"address": "[::1]:0"})
        self.assertEqual(addr[0], "::1")
        sock = self.connect(addr)
        self.assertEqual(roundtrip(sock, b"over v6"), b"over v6")
        listeners = drover.admin_json("/listeners")["listeners"]
        self.assertEqual(listeners[0]["address"], f"[::1]:{addr[1]}")

    # -- limits and timeouts -----------------------------------------------------------------------

    def test_listener_max_connections_rejects_the_excess(self):
        echo = self.echo_backend()
        drover, addr = self.proxy([echo], listener_extra={"limits": {"max_connections": 2}})
        first, second = self.connect(addr), self.connect(addr)
        self.assertEqual(roundtrip(first, b"1"), b"1")
        self.assertEqual(roundtrip(second, b"2"), b"2")
        third = self.connect(addr)  # the kernel completes the handshake; drover closes it at once
        self.assertClosedPromptly(third, timeout=3)
        self.assertEqual(roundtrip(first, b"still 1"), b"still 1")
        self.assertEqual(roundtrip(second, b"still 2"), b"still 2")
        self.assertEqual(echo.connections, 2)
        drover.wait_metric("drover_listener_connections_rejected_total",
                           {"listener": "front", "reason": "max_connections"}, lambda v: v == 1, default=0)
        # A freed slot can be used again.
        first.close()
        drover.wait_metric("drover_listener_connections_active", {"listener": "front"}, lambda v: v == 1)
        fourth = self.connect(addr)
        self.assertEqual(roundtrip(fourth, b"4"), b"4")

    def test_listener_idle_timeout_closes_a_quiet_connection(self):
        echo = self.echo_backend()
        _, addr = self.proxy([echo], listener_extra={"timeouts": {"idle": "300ms"}})
        sock = self.connect(addr)
        # Traffic keeps the connection alive past the idle timeout...
        busy_until = time.monotonic() + 0.9
        while True:
            self.assertEqual(roundtrip(sock, b"tick"), b"tick")
            quiet_since = time.monotonic()
            if quiet_since >= busy_until:
                break
            time.sleep(0.1)  # pacing the traffic, not waiting for state
        # ...and silence ends it (after ~300ms; the margin covers our own scheduling delay).
        self.assertClosedPromptly(sock, timeout=3)
        self.assertGreaterEqual(time.monotonic() - quiet_since, 0.2)
        wait_until(lambda: echo.active == 0, 3, message="upstream side closed too")

    def test_a_client_that_reads_slowly_is_not_cut_by_the_idle_timeout(self):
        # The backend sends at once; the client reads steadily, but slower, so the socket buffers fill
        # and Drover's writes wait: the kernel lets them go on only once a third of its send buffer is
        # free, far longer than the idle timeout, and no read happens meanwhile. Bytes still move all
        # the time, so the connection must stay until the end.
        data = os.urandom(16 << 20)
        backend = self.backend(ScriptedBackend(sending_script(data)))
        _, addr = self.proxy([backend], listener_extra={"timeouts": {"idle": "100ms"}})
        started = time.monotonic()
        got = read_slowly(self.connect(addr, timeout=20))   # never 100 ms without reading
        self.assertEqual(len(got), len(data), f"cut after {time.monotonic() - started:.1f}s")
        self.assertEqual(sha256(got), sha256(data))

    def test_cluster_max_connections_closes_the_excess_client(self):
        echo = self.echo_backend()
        drover, addr = self.proxy([echo], cluster_extra={"limits": {"max_connections": 1}})
        first = self.connect(addr)
        self.assertEqual(roundtrip(first, b"1"), b"1")
        second = self.connect(addr)
        self.assertClosedPromptly(second, timeout=3)
        self.assertEqual(roundtrip(first, b"still 1"), b"still 1")
        self.assertEqual(echo.connections, 1)
        drover.wait_metric("drover_cluster_upstream_unavailable_total",
                           {"cluster": "back", "reason": "max_connections"}, lambda v: v == 1, default=0)
        # Once the first connection is gone, the slot is free again.
        first.close()
        drover.wait_metric("drover_upstream_connections_active", {"cluster": "back"}, lambda v: v == 0,
                           default=0)
        third = self.connect(addr)
        self.assertEqual(roundtrip(third, b"3"), b"3")


if __name__ == "__main__":
    unittest.main()
