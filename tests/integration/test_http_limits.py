"""HTTP limits and timeouts: header bytes and count, URI length, body size, the request-header timeout
(slowloris), idle keep-alive, the upstream request timeout, connect failures and retries, the pool's idle
timeout. Each exceeded limit has its status, its `drover-error` reason and its metric."""

import socket
import struct
import threading
import time
import unittest

from harness import HttpConn, HttpTestCase, PeerClosed, ScriptedBackend, UnresponsivePort, recv_head, wait_until


class HttpLimitsTest(HttpTestCase):

    def proxy(self, origin=None, limits=None, timeouts=None, cluster_extra=None):
        origin = origin or self.origin()
        listener_extra = {}
        if limits:
            listener_extra["limits"] = limits
        if timeouts:
            listener_extra["timeouts"] = timeouts
        drover, addr = self.http_proxy([origin], listener_extra=listener_extra, cluster_extra=cluster_extra)
        return drover, addr, origin

    def assertLocalCount(self, drover, reason, n):
        drover.wait_metric("drover_http_local_responses_total", {"listener": "web", "reason": reason},
                           lambda v: v == n, default=0)

    def rejected(self, addr, raw, reason, closed=True):
        conn = self.client(addr)
        conn.send_tolerant(raw)
        return self.assertRejected(conn, reason, closed=closed)

    # -- request head ----------------------------------------------------------------------------------

    def test_header_bytes_over_the_limit_are_431_and_close(self):
        drover, addr, origin = self.proxy(limits={"max_request_header_bytes": "16KiB"})
        self.assertEqual(self.get(addr, "/", headers=[("X-Big", "a" * 12000)]).status, 200)
        self.assertEqual(self.get(addr, "/", headers=[(f"X-{i}", "a" * 3000) for i in range(4)]).status, 200)
        over = {"one field": [("X-Big", "a" * 17000)],
                "several fields": [(f"X-{i}", "b" * 5000) for i in range(4)],
                "many small fields": [(f"X-{i}", "b" * 500) for i in range(40)]}
        for name, headers in over.items():
            with self.subTest(name):
                self.rejected(addr, HttpConn.build_request("GET", "/", headers=headers), "headers_too_large")
        self.assertEqual(len(origin.heads), 2)
        self.assertLocalCount(drover, "headers_too_large", len(over))

    def test_default_header_bytes_limit_is_64kib(self):
        drover, addr, origin = self.proxy()
        self.assertEqual(self.get(addr, "/", headers=[(f"X-{i}", "c" * 10000) for i in range(6)]).status, 200)
        self.rejected(addr, HttpConn.build_request("GET", "/", headers=[(f"X-{i}", "c" * 10000) for i in range(7)]),
                      "headers_too_large")
        self.assertEqual(len(origin.heads), 1)

    def test_more_headers_than_max_request_headers_is_431(self):
        drover, addr, origin = self.proxy(limits={"max_request_headers": 10})
        self.assertEqual(self.get(addr, "/", headers=[(f"X-{i}", "v") for i in range(7)]).status, 200)
        self.rejected(addr, HttpConn.build_request("GET", "/", headers=[(f"X-{i}", "v") for i in range(12)]),
                      "headers_too_large")
        self.assertEqual(len(origin.heads), 1)
        self.assertLocalCount(drover, "headers_too_large", 1)

    def test_default_max_request_headers_is_100(self):
        _, addr, origin = self.proxy()
        self.assertEqual(self.get(addr, "/", headers=[(f"X-{i}", "v") for i in range(90)]).status, 200)
        self.rejected(addr, HttpConn.build_request("GET", "/", headers=[(f"X-{i}", "v") for i in range(110)]),
                      "headers_too_large")
        self.assertEqual(len(origin.heads), 1)

    def test_uri_longer_than_max_uri_bytes_is_414(self):
        drover, addr, origin = self.proxy(limits={"max_uri_bytes": "1KiB"})
        self.assertEqual(self.get(addr, "/" + "a" * 900).status, 200)
        self.rejected(addr, HttpConn.build_request("GET", "/" + "a" * 1100), "uri_too_long", closed=False)
        self.assertEqual(len(origin.heads), 1)
        self.assertLocalCount(drover, "uri_too_long", 1)

    def test_a_request_line_longer_than_the_whole_head_limit_is_414(self):
        # Past max_request_header_bytes before the request line even ends: the URI is what is too
        # long. The rest of that line was never read, so the connection closes.
        drover, addr, origin = self.proxy(limits={"max_request_header_bytes": "4KiB", "max_uri_bytes": "1KiB"})
        self.rejected(addr, HttpConn.build_request("GET", "/" + "a" * 6000), "uri_too_long")
        self.assertEqual(len(origin.heads), 0)
        self.assertLocalCount(drover, "uri_too_long", 1)

    def test_default_max_uri_bytes_is_8kib(self):
        _, addr, origin = self.proxy()
        self.assertEqual(self.get(addr, "/" + "a" * 8000).status, 200)
        self.rejected(addr, HttpConn.build_request("GET", "/" + "a" * 9000), "uri_too_long", closed=False)
        self.assertEqual(len(origin.heads), 1)

    # -- request body ----------------------------------------------------------------------------------

    def test_body_over_the_limit_with_content_length_is_413_before_anything_is_forwarded(self):
        drover, addr, origin = self.proxy(limits={"max_request_body_bytes": 1000})
        self.assertEqual(self.get(addr, "/", method="POST", body=b"x" * 1000).json()["body_bytes"], 1000)
        # Only the head is sent: drover must answer from the Content-Length alone.
        self.rejected(addr, HttpConn.build_request("POST", "/", headers=[("Content-Length", "1001")]),
                      "body_too_large")
        self.assertEqual(len(origin.heads), 1)
        self.assertLocalCount(drover, "body_too_large", 1)

    def test_chunked_body_is_413_where_it_exceeds_the_limit(self):
        drover, addr, origin = self.proxy(limits={"max_request_body_bytes": 1000})
        conn = self.client(addr)
        conn.send(b"POST /chunks HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"258\r\n" + b"y" * 600 + b"\r\n")
        self.assertTrue(conn.is_open(0.2), "answered before the limit was exceeded")
        conn.send_tolerant(b"258\r\n" + b"y" * 600 + b"\r\n")
        self.assertRejected(conn, "body_too_large")
        self.assertEqual(origin.requests, [], "the origin got a complete over-limit request")
        resp = self.get(addr, "/after", method="POST", body=b"z" * 10)
        self.assertEqual((resp.status, resp.json()["target"], resp.json()["seq"]), (200, "/after", 1))
        self.assertLocalCount(drover, "body_too_large", 1)

    def test_expect_100_continue_with_a_too_large_body_gets_413_instead_of_100(self):
        drover, addr, origin = self.proxy(limits={"max_request_body_bytes": 1000})
        conn = self.client(addr)
        conn.send_request("POST", "/", headers=[("Expect", "100-continue"), ("Content-Length", "5000")])
        head = conn.read_head(timeout=5)
        self.assertEqual(head.status, 413, "100 Continue invited a body that is over the limit")
        conn.read_body(head, timeout=5)
        self.assertLocalResponse(head, "body_too_large")
        conn.wait_closed(3)
        self.assertEqual(origin.heads, [])

    # -- client timeouts -------------------------------------------------------------------------------

    def test_slowloris_gets_408_and_is_closed_while_other_clients_are_served(self):
        drover, addr, origin = self.proxy(timeouts={"request_headers": "1s"})
        slow = self.client(addr)
        started = time.monotonic()
        stop = threading.Event()
        self.addCleanup(stop.set)

        def drip():  # one byte of a never-ending header every 100 ms
            try:
                slow.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                while not stop.wait(0.1):
                    slow.send(b"z")
            except OSError:
                pass
        threading.Thread(target=drip, name="slowloris", daemon=True).start()
        # Meanwhile everyone else is served at once.
        served = 0
        while time.monotonic() - started < 0.8:
            t0 = time.monotonic()
            self.assertEqual(self.get(addr, f"/other{served}", timeout=2).status, 200)
            self.assertLess(time.monotonic() - t0, 0.5)
            served += 1
        self.assertGreater(served, 2)
        resp = self.assertRejected(slow, "request_header_timeout", timeout=5)
        elapsed = time.monotonic() - started
        stop.set()
        self.assertGreaterEqual(elapsed, 0.9, f"408 after {elapsed:.2f}s")
        self.assertLess(elapsed, 3.0, f"408 after {elapsed:.2f}s although bytes kept coming")
        self.assertEqual(resp.status, 408)
        self.assertEqual(len(origin.heads), served)
        self.assertLocalCount(drover, "request_header_timeout", 1)

    def test_partial_head_then_silence_gets_408(self):
        drover, addr, _ = self.proxy(timeouts={"request_headers": "500ms"})
        conn = self.client(addr)
        started = time.monotonic()
        conn.send(b"GET /partial HTTP/1.1\r\nHost: te")
        self.assertRejected(conn, "request_header_timeout", timeout=5)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(self):
        _, addr, _ = self.proxy(timeouts={"idle": "500ms"})
        conn = self.client(addr)
        busy_until = time.monotonic() + 1.2
        while True:  # requests every 200 ms keep it open past the idle timeout
            self.assertEqual(conn.request("GET", "/tick", timeout=2).status, 200)
            quiet_since = time.monotonic()
            if quiet_since >= busy_until:
                break
            time.sleep(0.2)  # pacing the traffic, not waiting for state
        conn.wait_closed(3)  # silently: no bytes, just the close
        self.assertGreaterEqual(time.monotonic() - quiet_since, 0.4)

    def test_a_connection_that_never_speaks_is_parked_then_closed_after_the_request_header_timeout(self):
        drover, addr, _ = self.proxy(timeouts={"request_headers": "500ms", "idle": "30s"})
        conn = self.client(addr)
        started = time.monotonic()
        drover.wait_metric("drover_listener_connections_idle", {"listener": "web"}, lambda v: v == 1)
        conn.wait_closed(3)  # silently: no request, so no 408
        self.assertGreaterEqual(time.monotonic() - started, 0.4)
        drover.wait_metric("drover_listener_connections_idle", {"listener": "web"}, lambda v: v == 0)
        drover.wait_metric("drover_listener_connections_active", {"listener": "web"}, lambda v: v == 0)

    def test_a_body_that_ends_on_a_full_read_leaves_the_connection_idle(self):
        # 16 KiB is the session's read size. A body read to its end by reads that each filled the
        # buffer left the socket's "may read" note set: the parked connection woke at once with
        # nothing to read, waited for a head under request_headers, and answered 408 to a client
        # that had sent nothing (the next request on the connection could get that 408).
        drover, addr, _ = self.proxy(timeouts={"request_headers": "300ms", "idle": "30s"})
        for size in (16384, 32768):
            with self.subTest(size=size):
                conn = self.client(addr)
                conn.send(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
                time.sleep(0.1)   # the body comes after the head, in reads of its own
                conn.send(b"x" * size)
                self.assertEqual(conn.read_response("POST").status, 200)
                conn.sock.settimeout(0.8)   # longer than request_headers: a 408 would come by now
                with self.assertRaises(socket.timeout):
                    conn.sock.recv(1)
                conn.sock.settimeout(5)
                self.assertEqual(conn.request("GET", "/next").status, 200)
        self.assertLocalCount(drover, "request_header_timeout", 0)

    def test_idle_timeout_does_not_cut_a_request_waiting_for_a_slow_origin(self):
        _, addr, _ = self.proxy(timeouts={"idle": "300ms"})
        resp = self.get(addr, "/slow?delay=1", timeout=5)
        self.assertEqual(resp.status, 200, resp)

    @staticmethod
    def endless_response(kind):
        """A ScriptedBackend script: answers with a body without end, a large Content-Length (moved by
        splice) or chunked (copied), until the connection breaks."""
        def script(conn, _backend):
            conn.settimeout(10)
            try:
                recv_head(conn)
                if kind == "length":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
                    block = b"x" * 65536
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    block = b"10000\r\n" + b"x" * 65536 + b"\r\n"
                while True:
                    conn.sendall(block)
            except OSError:
                pass
        return script

    def stream_to_a_reader_that_never_reads(self, kind, idle, cluster_idle=None):
        """drover (listener timeouts.idle `idle`, the cluster's `cluster_idle` or the same, one request
        slot) and a client whose request gets an endless response it never reads, in flight. Returns
        (drover, addr, backend, client socket)."""
        backend = self.backend(ScriptedBackend(self.endless_response(kind)))
        drover, addr, _ = self.proxy(origin=backend, timeouts={"idle": idle},
                                     cluster_extra={"timeouts": {"idle": cluster_idle or idle}, "limits": {"max_requests": 1}})
        sock = socket.create_connection(addr, timeout=5)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: self.requests_active(drover) == 1, 5, message="the request in flight")
        return drover, addr, backend, sock

    @staticmethod
    def requests_active(drover):
        return drover.metric_value("drover_cluster_requests_active", {"cluster": "back"})

    def test_a_client_that_stops_reading_is_closed_after_idle_and_frees_the_backend(self):
        # Once the socket buffers are full, Drover's write waits: after the listener's timeouts.idle
        # without progress it gives up, closes both connections and frees the request's slot. The
        # cluster's idle (30 s here) is for the backend: a long body with a Content-Length (spliced)
        # waited for the client that long (soak audit).
        for kind in ("length", "chunked"):
            with self.subTest(kind=kind):
                drover, addr, backend, _ = self.stream_to_a_reader_that_never_reads(kind, "1s", cluster_idle="30s")
                wait_until(lambda: self.requests_active(drover) == 0, 8,
                           message="the request's slot freed after timeouts.idle without progress")
                self.assertEqual(drover.metric_value("drover_upstream_connections_active",
                                                     {"cluster": "back", "host": backend.addr}), 0)
                # The cluster's one slot is free again: another request is admitted.
                other = socket.create_connection(addr, timeout=5)
                self.addCleanup(other.close)
                other.sendall(b"GET /again HTTP/1.1\r\nHost: test\r\n\r\n")
                self.assertTrue(recv_head(other).startswith(b"HTTP/1.1 200"))

    def test_a_client_that_goes_away_mid_response_frees_the_backend_at_once(self):
        # The client closes with unread bytes (a reset) while Drover waits to write: the write fails
        # at once, long before timeouts.idle.
        for kind in ("length", "chunked"):
            with self.subTest(kind=kind):
                drover, _, backend, sock = self.stream_to_a_reader_that_never_reads(kind, "30s")
                time.sleep(0.3)
                sock.close()
                wait_until(lambda: self.requests_active(drover) == 0, 3, message="the slot freed when the client left")
                self.assertEqual(drover.metric_value("drover_upstream_connections_active",
                                                     {"cluster": "back", "host": backend.addr}), 0)

    def test_a_client_that_leaves_while_its_request_waits_frees_the_backend_within_a_second(self):
        # No answer yet and none soon: a client that closes (FIN) or resets its connection ends the
        # request within kClientCheck (1 s), not after the backend's answer or timeouts.request.
        drover, addr, origin = self.proxy(cluster_extra={"retries": {"attempts": 0, "per_try_timeout": "20s"}})
        for method, how in (("POST", "close"), ("GET", "reset")):
            with self.subTest(method=method, how=how):
                sock = socket.create_connection(addr, timeout=5)
                body = b"x" * 10 if method == "POST" else b""
                sock.sendall(HttpConn.build_request(method, "/slow?delay=10", body=body or None))
                wait_until(lambda: self.requests_active(drover) == 1, 5, message="the request in flight")
                time.sleep(0.2)
                if how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                left = time.monotonic()
                wait_until(lambda: self.requests_active(drover) == 0, 3, message="the request ended when its client left")
                self.assertLess(time.monotonic() - left, 2.0)
                self.assertEqual(drover.metric_value("drover_upstream_connections_active",
                                                     {"cluster": "back", "host": origin.addr}), 0,
                                 "the backend's connection closed, not pooled")
        # A client that stays gets its slow answer.
        self.assertEqual(self.get(addr, "/slow?delay=1.3", timeout=5).status, 200)

    # -- upstream timeouts and failures ----------------------------------------------------------------

    def test_slow_origin_gets_504_and_its_late_answer_is_never_delivered(self):
        drover, addr, origin = self.proxy(cluster_extra={"timeouts": {"request": "300ms"}, "retries": {"attempts": 0}})
        started = time.monotonic()
        resp = self.get(addr, "/slow?delay=1.5", timeout=5)
        elapsed = time.monotonic() - started
        self.assertLocalResponse(resp, "upstream_timeout")
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 1.4, "504 only after the origin answered")
        # The late answer is still coming on the first connection: the next request must not get it.
        fast = self.get(addr, "/fast", timeout=5)
        self.assertEqual((fast.status, fast.json()["target"]), (200, "/fast"))
        self.assertEqual(origin.connections, 2)
        self.assertLocalCount(drover, "upstream_timeout", 1)

    def slow_upload(self, addr, body, length):
        """A POST declaring `length` body bytes whose `body` comes a byte every 0.3 s; its response."""
        conn = HttpConn(addr, timeout=5)
        self.addCleanup(conn.close)
        conn.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
        for byte in body:
            time.sleep(0.3)
            conn.send(bytes([byte]))
        return conn.read_response("POST", timeout=5)

    def test_request_timeout_starts_when_an_upload_is_sent_not_when_it_began(self):
        # A slow upload (1.2 s here) against timeouts.request 500ms: the backend has it all and
        # answers at once, so the client gets that answer, not a 504.
        _, addr, origin = self.proxy(cluster_extra={"timeouts": {"request": "500ms"}})
        resp = self.slow_upload(addr, b"body", length=4)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(origin.requests[-1].body, b"body")

    def test_an_early_answer_to_an_upload_longer_than_the_request_timeout_is_delivered(self):
        # The backend answers (413) while a slow upload is still coming, well past timeouts.request:
        # that answer is the client's, not a 504 for a deadline that ran out during the upload.
        def refuse_later(conn, _backend):
            got = recv_head(conn) or b""
            while len(got.split(b"\r\n\r\n", 1)[-1]) < 3:
                got += conn.recv(100)
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\n")   # the head in two pieces
            time.sleep(0.3)
            conn.sendall(b"Content-Length: 3\r\nConnection: close\r\n\r\nbig")
            time.sleep(2)

        backend = self.backend(ScriptedBackend(refuse_later))
        _, addr = self.http_proxy([backend], cluster_extra={"timeouts": {"request": "500ms"}})
        resp = self.slow_upload(addr, b"abc", length=10)
        self.assertEqual((resp.status, resp.body), (413, b"big"), resp)

    def test_request_timeout_ends_with_the_response_head_not_the_body(self):
        _, addr, _ = self.proxy(cluster_extra={"timeouts": {"request": "500ms"}})
        started = time.monotonic()
        resp = self.get(addr, "/drip?size=60000&chunk=10000&drip=0.2", timeout=10)
        self.assertEqual((resp.status, resp.body_len), (200, 60000), resp)
        self.assertGreater(time.monotonic() - started, 1.0)

    def test_connect_failure_is_502_upstream_connect_failed(self):
        dead = self.closed_port()
        drover, addr = self.http_proxy([dead])
        self.assertLocalResponse(self.get(addr, "/"), "upstream_connect_failed")
        self.assertLocalCount(drover, "upstream_connect_failed", 1)

    def test_connect_timeout_is_502_upstream_connect_failed(self):
        hole = self.backend(UnresponsivePort())
        _, addr = self.http_proxy([hole], cluster_extra={"timeouts": {"connect": "200ms"}, "retries": {"attempts": 0}})
        started = time.monotonic()
        self.assertLocalResponse(self.get(addr, "/", timeout=5), "upstream_connect_failed")
        self.assertLess(time.monotonic() - started, 2.0)

    def test_dead_host_is_skipped_by_retrying_on_the_live_one(self):
        dead, origin = self.closed_port(), self.origin()
        drover, addr = self.http_proxy([dead, origin])
        conn = self.client(addr)
        for i in range(6):
            method = "POST" if i % 3 == 2 else "GET"  # connect failures are retried whatever the method
            resp = conn.request(method, f"/r{i}", body=b"data" if method == "POST" else None, timeout=5)
            self.assertEqual((resp.status, resp.json()["target"]), (200, f"/r{i}"), resp)
        self.assertEqual([r.target for r in origin.requests], [f"/r{i}" for i in range(6)])
        self.assertGreater(drover.metric_value("drover_upstream_connect_failures_total",
                                               {"cluster": "back", "host": dead.addr}, default=0), 0)

    def test_pooled_origin_connection_is_closed_after_the_cluster_idle_timeout(self):
        _, addr, origin = self.proxy(cluster_extra={"timeouts": {"idle": "300ms"}})
        self.assertEqual(self.get(addr, "/").status, 200)
        done = time.monotonic()
        origin.wait_active(0, timeout=3)
        self.assertGreaterEqual(time.monotonic() - done, 0.2)
        self.assertEqual(self.get(addr, "/again").json()["conn"], 2)

    def test_listener_max_connections_turns_the_excess_away(self):
        _, addr, _ = self.proxy(limits={"max_connections": 2})
        first, second = self.client(addr), self.client(addr)
        self.assertEqual(first.request("GET", "/1").status, 200)
        self.assertEqual(second.request("GET", "/2").status, 200)
        third = self.client(addr)
        third.send_tolerant(HttpConn.build_request("GET", "/3"))
        try:
            resp = third.read_response(timeout=3)
        except PeerClosed:
            pass  # closed at once
        else:
            self.assertEqual(resp.status, 503, resp)
            third.wait_closed(3)
        self.assertEqual(first.request("GET", "/1b").status, 200)
        first.close()
        wait_until(lambda: self.get(addr, "/4", timeout=2).status == 200, 3, message="a freed slot is usable again")


if __name__ == "__main__":
    unittest.main()
