"""L7 proxying behaviour: routing, keep-alive and pipelining, HTTP/1.0, 100-continue, streamed bodies both
ways, the upstream pool, header rewriting, upgrades, the access log and the HTTP metrics."""

import os
import re
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import (HttpConn, HttpTestCase, PeerClosed, RawHttpBackend, ScriptedBackend, http_listener, iter_pattern, make_config, pattern_bytes,
                     pattern_sha256, recv_all, recv_head, route, static_cluster, vm_rss_kib, wait_until)


def target(path: str, *pairs: tuple[str, str], **params: object) -> str:
    """`path?query` for HttpOrigin: keyword parameters plus (name, value) pairs (e.g. repeated `hdr`)."""
    items = [(k, str(v)) for k, v in params.items()] + list(pairs)
    return f"{path}?{urllib.parse.urlencode(items)}" if items else path


def subsequence(headers, names):
    """The (name, value) pairs whose name is one of `names` (case-insensitive), in order, case kept."""
    wanted = {n.lower() for n in names}
    return [(k, v) for k, v in headers if k.lower() in wanted]


ACCESS_LOG_RE = re.compile(r"^(?P<time>\S+) (?P<client>\S+) (?P<method>\S+) (?P<target>\S+) (?P<status>\d{3}) "
                           r"(?P<bytes>\d+) (?P<duration>\d+(?:\.\d+)?) (?P<upstream>\S+) (?P<reason>\S+)$")


class HttpProxyTest(HttpTestCase):

    # -- basics and routing ------------------------------------------------------------------------

    def test_get_reaches_the_origin_and_its_answer_comes_back(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        resp = self.get(addr, "/hello?x=1", host="app.test")
        self.assertEqual(resp.status, 200, resp)
        self.assertIsNone(resp.header("drover-error"))
        echo = resp.json()
        self.assertEqual((echo["method"], echo["target"], echo["version"], echo["body_bytes"]),
                         ("GET", "/hello?x=1", "HTTP/1.1", 0))
        self.assertEqual(origin.requests[0].header_values("Host"), ["app.test"])
        self.assertEqual(origin.protocol_errors, [])

    def test_routes_match_host_and_path_prefix_and_the_first_match_wins(self):
        names = ("api", "wild", "static", "web")
        origins = {n: self.origin(n) for n in names}
        routes = [route("api", host="api.example.com", path_prefix="/v1/"),
                  route("wild", host="*.example.com"),
                  route("static", path_prefix="/static/"),
                  route("web", path_prefix="/")]
        clusters = [static_cluster(n, [origins[n]]) for n in names]
        _, addr = self.http_proxy(routes=routes, clusters=clusters)
        cases = [("api.example.com", "/v1/users", "api"),
                 ("API.Example.COM:8080", "/v1/users", "api"),    # host: case-insensitive, port ignored
                 ("api.example.com", "/v2/users", "wild"),        # host matches but the prefix does not
                 ("www.example.com", "/v1/users", "wild"),
                 ("www.example.com:80", "/static/a.css", "wild"),  # first match wins over a later match
                 ("example.org", "/static/a.css", "static"),
                 ("example.org", "/staticky", "web"),             # a prefix is a byte prefix of the path
                 ("evilexample.com", "/x", "web"),                # *.example.com needs the dot
                 ("api.example.com.evil.test", "/v1/x", "web"),   # ...and a suffix, not a substring
                 ("example.org", "/", "web")]
        conn = self.client(addr)
        for host, path, want in cases:
            with self.subTest(host=host, path=path):
                resp = conn.request("GET", path, host=host)
                self.assertEqual((resp.status, resp.json()["origin"], resp.json()["target"]), (200, want, path))

    def test_no_matching_route_is_a_local_404_and_the_connection_stays_usable(self):
        origin = self.origin()
        drover, addr = self.http_proxy(routes=[route("back", host="app.test")], hosts=[origin])
        conn = self.client(addr)
        resp = conn.request("GET", "/", host="other.test")
        self.assertLocalResponse(resp, "no_route")
        self.assertEqual(origin.heads, [])
        again = conn.request("GET", "/", host="app.test")
        self.assertEqual(again.status, 200, again)
        drover.wait_metric("drover_http_local_responses_total", {"listener": "web", "reason": "no_route"},
                           lambda v: v == 1, default=0)

    def test_cluster_without_hosts_is_a_local_503(self):
        # `static` needs an address, so the host-less cluster comes from an endpoints file without any.
        folder = tempfile.mkdtemp(prefix="drover-endpoints-")
        self.addCleanup(shutil.rmtree, folder, True)
        endpoints = os.path.join(folder, "endpoints.yaml")
        with open(endpoints, "w", encoding="utf-8") as f:
            f.write("endpoints: []\n")
        config = make_config([http_listener("web", [route("back", path_prefix="/")])],
                             [{"name": "back", "discovery": {"file": endpoints}}])
        drover = self.start_drover(config, wait_ready=False)  # not ready: a cluster has no hosts
        self.assertLocalResponse(self.get(drover.listener_addr("web"), "/"), "no_healthy_host")

    def test_round_robin_picks_a_host_per_request_not_per_connection(self):
        a, b = self.origin("a"), self.origin("b")
        _, addr = self.http_proxy([a, b])
        conn = self.client(addr)
        seen = [conn.request("GET", f"/{i}").json()["origin"] for i in range(6)]
        self.assertEqual(sorted(seen), ["a"] * 3 + ["b"] * 3, seen)
        self.assertTrue(all(x != y for x, y in zip(seen, seen[1:])), f"not alternating: {seen}")
        self.assertEqual((a.connections, b.connections), (1, 1))

    # -- client side: keep-alive, pipelining, HTTP/1.0, Connection: close, 100-continue -------------

    def test_keep_alive_serves_many_requests_on_one_client_and_one_origin_connection(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for i in range(10):
            resp = conn.request("GET", f"/n{i}")
            echo = resp.json()
            self.assertEqual((resp.status, echo["target"], echo["conn"], echo["seq"]), (200, f"/n{i}", 1, i + 1))
        self.assertEqual(origin.connections, 1)
        drover.wait_metric("drover_upstream_pool_reuses_total", {"cluster": "back", "host": origin.addr},
                           lambda v: v == 9, default=0)

    def test_idle_connections_are_parked_and_each_next_request_finds_its_own_listener(self):
        # Between requests a plain connection is parked without a session, and a spare session serves
        # whichever connection speaks next, on either listener: every answer must come from the right
        # route, on the right connection, in order.
        a, b = self.origin("a"), self.origin("b")
        config = make_config([http_listener("one", [route("ca")]), http_listener("two", [route("cb")])],
                             [static_cluster("ca", [a]), static_cluster("cb", [b])])
        drover = self.start_drover(config)
        one, two = drover.listener_addr("one"), drover.listener_addr("two")
        conns = [(name, self.client(addr)) for name, addr in [("a", one), ("b", two)] * 10]
        for rnd in range(3):
            order = conns if rnd % 2 == 0 else conns[::-1]
            for i, (name, conn) in enumerate(order):
                resp = conn.request("GET", f"/r{rnd}/c{i}")
                self.assertEqual((resp.status, resp.json()["origin"], resp.json()["target"]), (200, name, f"/r{rnd}/c{i}"))
            for listener in ("one", "two"):
                drover.wait_metric("drover_listener_connections_idle", {"listener": listener}, lambda v: v == 10)
        for _, conn in conns[:6]:
            conn.close()
        drover.wait_metric("drover_listener_connections_idle", {"listener": "one"}, lambda v: v == 7)
        drover.wait_metric("drover_listener_connections_active", {"listener": "two"}, lambda v: v == 7)

    # -- waiting for bytes (proxy/readiness.*: a socket known to be drained waits for its next edge) ---

    def test_a_response_that_trickles_in_is_relayed_whole_and_its_connection_reused(self):
        # Each pause leaves drover's read short (the socket drained): the next piece must wake it.
        def pause(conn, backend):
            time.sleep(0.15)
        pieces = [b"HTTP/1.1 200 OK\r\nContent-", pause, b"Length: 10\r\nX-Piece: ", pause, b"yes\r\n\r\n01234",
                  pause, b"56789"]
        backend = self.raw_backend([[RawHttpBackend.READ, *pieces, RawHttpBackend.READ,
                                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain"]])
        _, addr = self.http_proxy([backend])
        conn = self.client(addr)
        resp = conn.request("GET", "/slow", timeout=5)
        self.assertEqual((resp.status, resp.header("x-piece"), resp.body), (200, "yes", b"0123456789"), resp)
        resp = conn.request("GET", "/next", timeout=5)
        self.assertEqual((resp.status, resp.body), (200, b"again"), resp)
        self.assertEqual([(r.conn, r.target) for r in backend.requests], [(1, "/slow"), (1, "/next")])

    def test_a_backend_that_stalls_mid_body_is_cut_after_the_idle_timeout(self):
        # The body's first bytes leave drover's read short; then nothing comes: the wait for the next
        # edge must end at the idle timeout, and the client must see the cut (a close, never a hang).
        def stall(conn, backend):
            time.sleep(4)
        backend = self.raw_backend([[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n",
                                     b"x" * 5000, stall]])   # under the size that is spliced
        _, addr = self.http_proxy([backend], cluster_extra={"timeouts": {"idle": "500ms"}})   # the cluster's
        conn = self.client(addr)
        conn.send(HttpConn.build_request("GET", "/stalls"))
        started = time.monotonic()
        with self.assertRaises(PeerClosed) as cut:
            conn.read_response(timeout=5)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 3.5, "cut only when the backend gave up, not at the idle timeout")
        self.assertIn("5000 of 10000 body bytes missing", str(cut.exception))   # what came before was relayed

    def test_a_client_that_stalls_mid_body_is_cut_after_the_idle_timeout(self):
        # The body's first bytes leave drover's read of the client short; then nothing comes: the wait
        # for the next edge must end at the listener's idle timeout, and both connections close.
        origin = self.origin()
        _, addr = self.http_proxy([origin], listener_extra={"timeouts": {"idle": "500ms"}})
        conn = self.client(addr)
        conn.send(HttpConn.build_request("POST", "/stalls", headers=[("Content-Length", "10000")]) + b"x" * 100)
        wait_until(lambda: origin.body_progress >= 100, 3, message=lambda: f"origin got {origin.body_progress} bytes")
        started = time.monotonic()
        # It is told why first (408, as NGINX does), then the connection closes.
        self.assertLocalResponse(conn.read_response("POST", timeout=3), "request_body_timeout")
        self.assertIn(conn.wait_closed(timeout=3), ("eof", "reset"))
        self.assertGreaterEqual(time.monotonic() - started, 0.3)
        wait_until(lambda: origin.active == 0, 3, message="the origin's connection is still open")

    def test_a_client_that_half_closes_after_its_request_is_answered_and_closed(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        for pause_first in (False, True):
            with self.subTest(pause_first=pause_first), HttpConn(addr) as conn:
                if pause_first:
                    # Served once first, so the half-closed request arrives on a parked connection.
                    self.assertEqual(conn.request("GET", "/first", timeout=5).status, 200)
                conn.send(HttpConn.build_request("GET", "/last"))
                conn.sock.shutdown(socket.SHUT_WR)
                resp = conn.read_response(timeout=5)
                self.assertEqual((resp.status, resp.json()["target"]), (200, "/last"), resp)
                # Its FIN came with (or right after) the request: drover must still see it and close.
                self.assertIn(conn.wait_closed(timeout=3), ("eof", "reset"))

    def test_pipelined_requests_are_answered_in_order(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        # The first answer is the slowest: a proxy working on them concurrently would answer out of order.
        batch = [("GET", target("/p0", delay=0.3), None), ("POST", "/p1", b"one"),
                 ("GET", target("/p2", size=100000, framing="chunked"), None),
                 ("HEAD", target("/p3", size=10), None), ("GET", "/p4", None)]
        conn.send(b"".join(HttpConn.build_request(m, t, body=body) for m, t, body in batch))
        for method, path, body in batch:
            with self.subTest(path=path):
                resp = conn.read_response(method, timeout=10)
                self.assertEqual(resp.status, 200, resp)
                if "size=100000" in path:
                    self.assertEqual(resp.body_sha256, pattern_sha256(100000))
                elif method == "HEAD":
                    self.assertEqual((resp.body_len, resp.header("content-length")), (0, "10"))
                else:
                    self.assertEqual((resp.json()["target"], resp.json()["body_bytes"]), (path, len(body or b"")))
        self.assertTrue(conn.is_open())

    def test_http10_client_gets_a_body_it_can_frame_and_then_the_connection_closes(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        for framing in ("chunked", "close", "cl"):
            with self.subTest(origin_framing=framing):
                conn = self.client(addr)
                conn.send(f"GET {target('/old', size=50000, framing=framing)} HTTP/1.0\r\nHost: test\r\n\r\n"
                          .encode())
                resp = conn.read_response(timeout=10)
                self.assertEqual(resp.status, 200, resp)
                self.assertNotIn("chunked", resp.tokens("transfer-encoding"), "chunked sent to an HTTP/1.0 client")
                self.assertIn(resp.framing, ("close", "length"))
                self.assertEqual((resp.body_len, resp.body_sha256), (50000, pattern_sha256(50000)))
                conn.wait_closed(3)

    def test_http10_client_asking_for_keep_alive_keeps_its_connection(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for i in range(3):
            conn.send(f"GET /ka{i} HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n".encode())
            resp = conn.read_response(timeout=5)
            self.assertEqual((resp.status, resp.json()["target"]), (200, f"/ka{i}"))
            self.assertEqual(resp.framing, "length", "a kept-alive HTTP/1.0 response needs a Content-Length")
            self.assertNotIn("close", resp.tokens("connection"))
        self.assertTrue(conn.is_open())

    def test_connection_close_from_the_client_is_honoured(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        resp = conn.request("GET", "/", headers=[("Connection", "close")])
        self.assertEqual(resp.status, 200, resp)
        self.assertIn("close", resp.tokens("connection"))
        conn.wait_closed(3)

    def test_origin_saying_connection_close_does_not_close_the_client(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        first = conn.request("GET", target("/bye", ("hdr", "Connection:close"), close=1))
        self.assertEqual(first.status, 200, first)
        self.assertNotIn("close", first.tokens("connection"))
        second = conn.request("GET", "/next")
        self.assertEqual((second.status, second.json()["conn"]), (200, 2))
        self.assertEqual(origin.connections, 2)

    def test_expect_100_continue_gets_one_interim_response_then_the_body_goes_through(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        conn.send_request("POST", "/upload", headers=[("Expect", "100-continue"), ("Content-Length", "11")])
        first = conn.read_head(timeout=5)  # the body is held back until the client hears 100
        self.assertEqual(first.status, 100, first)
        conn.send(b"hello world")
        resp = conn.read_response("POST", timeout=5)
        self.assertEqual(resp.interim, [], "more than one 100 Continue")
        self.assertEqual((resp.status, resp.json()["body_bytes"]), (200, 11))
        self.assertEqual(origin.requests[0].body, b"hello world")
        self.assertEqual(conn.request("GET", "/after").status, 200)

    # -- bodies --------------------------------------------------------------------------------------

    def test_chunked_request_body_reaches_the_origin_intact_and_framed(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        body = pattern_bytes(300000)
        pieces = [body[:1], body[1:4097], body[4097:70000], body[70000:]]
        raw = (b"POST /chunked HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n")
        conn = self.client(addr)
        conn.send(raw)
        resp = conn.read_response("POST", timeout=10)
        echo = resp.json()
        self.assertEqual((resp.status, echo["body_bytes"], echo["body_sha256"]),
                         (200, len(body), pattern_sha256(len(body))))
        forwarded = origin.requests[0]
        self.assertIn(forwarded.framing, ("chunked", "length"))
        self.assertFalse(forwarded.header_values("Content-Length") and forwarded.header_values("Transfer-Encoding"),
                         f"ambiguous framing forwarded: {forwarded.headers}")

    @staticmethod
    def read_chunks(sock, head_end_marker=b"\r\n\r\n"):
        """Reads a head and a chunked body from `sock`: (head bytes, [chunk data, ...])."""
        data = b""
        while head_end_marker not in data:
            got = sock.recv(65536)
            if not got:
                raise AssertionError(f"closed in the head: {data[:200]!r}")
            data += got
        head, rest = data.split(head_end_marker, 1)
        chunks = []
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            line, rest = rest.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            if size == 0:
                return head, chunks
            chunks.append(rest[:size])
            rest = rest[size + 2:]

    def test_many_small_chunks_go_on_together_both_ways(self):
        # 3,000 one-byte chunks, sent in one go: Drover passes what it has buffered on in a few larger
        # chunks (it used to make a write, and a chunk, per byte), the bytes intact, both ways.
        body = pattern_bytes(3000)
        tiny = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
        seen = {}

        def script(conn, _backend):
            conn.settimeout(10)
            _, chunks = self.read_chunks(conn)
            seen["upload"] = chunks
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + tiny)
            recv_all(conn)
        backend = self.backend(ScriptedBackend(script))
        _, addr = self.http_proxy([backend])
        sock = socket.create_connection(addr, timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n" + tiny)
        head, chunks = self.read_chunks(sock)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(b"".join(chunks), body)
        self.assertEqual(b"".join(seen["upload"]), body)
        self.assertLess(len(seen["upload"]), 300, "upload: a chunk per byte")
        self.assertLess(len(chunks), 300, "download: a chunk per byte")

    def test_request_body_is_streamed_to_the_origin_before_it_is_complete(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        total = 1 << 20
        for first in (1000, 100000):  # a trickle, and more than one buffer's worth
            with self.subTest(first=first):
                conn = self.client(addr)
                conn.send(HttpConn.build_request("POST", "/stream", headers=[("Content-Length", str(total))])
                          + pattern_bytes(first))
                wait_until(lambda: origin.body_progress >= first, 3,
                           message=lambda: f"origin got {origin.body_progress} of the first {first} body bytes")
                for piece in iter_pattern(total - first, offset=first):
                    conn.send(piece)
                echo = conn.read_response("POST", timeout=20).json()
                self.assertEqual((echo["body_bytes"], echo["body_sha256"]), (total, pattern_sha256(total)))

    def test_response_body_is_streamed_to_the_client_before_it_is_complete(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        size = 1 << 20
        for framing in ("cl", "chunked"):
            for first in (1000, 60000):  # a trickle (think server-sent events), and several buffers' worth
                with self.subTest(framing=framing, first=first):
                    gate = f"{framing}-{first}"
                    self.addCleanup(origin.gate(gate).set)
                    conn = self.client(addr)
                    conn.send_request("GET", target("/held", size=size, framing=framing, chunk=first, gate=gate))
                    head = conn.read_head(timeout=5)
                    self.assertEqual(head.status, 200, head)
                    # The origin has sent its head and `first` bytes, then waits at the gate: they must arrive.
                    conn.reader.deadline = time.monotonic() + 3
                    try:
                        while len(conn.reader.buf) < first:
                            self.assertTrue(conn.reader.fill(), "connection closed")
                    except TimeoutError:
                        pass
                    finally:
                        conn.reader.deadline = None
                    self.assertGreaterEqual(len(conn.reader.buf), first,
                                            f"bytes (framing included) of the first {first} body bytes after 3s")
                    origin.gate(gate).set()
                    resp = conn.read_body(head, timeout=20)
                    self.assertEqual((resp.body_len, resp.body_sha256), (size, pattern_sha256(size)))

    def test_close_delimited_origin_response_is_rechunked_for_an_http11_client(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        resp = conn.request("GET", target("/eof", size=200000, framing="close"), timeout=10)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.framing, "chunked")
        self.assertEqual((resp.body_len, resp.body_sha256), (200000, pattern_sha256(200000)))
        again = conn.request("GET", "/after")  # the client connection outlives the origin's
        self.assertEqual((again.status, again.json()["conn"]), (200, 2))

    def test_head_responses_have_no_body_and_keep_the_connection_in_step(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for framing in ("cl", "chunked"):
            with self.subTest(framing=framing):
                resp = conn.request("HEAD", target("/h", size=5000, framing=framing), timeout=5)
                self.assertEqual((resp.status, resp.body_len), (200, 0))
                if framing == "cl":
                    self.assertEqual(resp.header("content-length"), "5000")
                nxt = conn.request("GET", f"/after-{framing}", timeout=5)
                self.assertEqual(nxt.json()["target"], f"/after-{framing}")

    def test_204_and_304_responses_have_no_body(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for status in (204, 304):
            with self.subTest(status=status):
                resp = conn.request("GET", target("/nb", ("hdr", 'ETag:"v1"'), status=status), timeout=5)
                self.assertEqual((resp.status, resp.body_len), (status, 0))
                self.assertEqual(conn.request("GET", f"/after{status}").json()["target"], f"/after{status}")

    def test_a_304_keeps_its_content_length(self):
        # RFC 9110 section 8.6: a 304's Content-Length is the size a 200 would have had; caches use it.
        backend = self.raw_backend([[RawHttpBackend.READ, b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1234\r\n\r\n',
                                     RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"]])
        _, addr = self.http_proxy([backend])
        conn = self.client(addr)
        resp = conn.request("GET", "/cached", headers={"If-None-Match": '"v1"'}, timeout=5)
        self.assertEqual((resp.status, resp.body_len), (304, 0))
        self.assertEqual(resp.header_values("content-length"), ["1234"])
        self.assertEqual(conn.request("GET", "/next", timeout=5).body, b"next")

    def test_64mib_upload_and_download_stream_with_bounded_memory(self):
        origin = self.origin(keep_body=0)
        drover, addr = self.http_proxy([origin])
        conn = self.client(addr, timeout=30)
        self.assertEqual(conn.request("GET", "/warm-up").status, 200)
        before = vm_rss_kib(drover.pid)
        size = 64 << 20
        conn.send(HttpConn.build_request("POST", "/up", headers=[("Content-Length", str(size))]))
        for piece in iter_pattern(size, 1 << 20):
            conn.send(piece)
        up = conn.read_response("POST", timeout=40).json()
        self.assertEqual((up["body_bytes"], up["body_sha256"]), (size, pattern_sha256(size)))
        down = conn.request("GET", target("/down", size=size, framing="chunked"), keep=0, timeout=40)
        self.assertEqual((down.status, down.body_len, down.body_sha256), (200, size, pattern_sha256(size)))
        grown = vm_rss_kib(drover.pid) - before
        self.assertLess(grown, 8 * 1024, f"drover's RSS grew by {grown} KiB moving 2 x 64 MiB")

    def test_large_length_framed_bodies_are_spliced_intact_and_keep_both_connections(self):
        # Bodies of 64 KiB or more between plain sockets move with splice(2), bypassing the parser: the
        # bytes, their count and the reuse of both connections must come out as with copying.
        origin = self.origin()
        drover, addr = self.http_proxy([origin])
        conn = self.client(addr, timeout=30)
        cases = [("/big", 3 << 20), ("/edge", 64 * 1024 + 1), ("/slow", 300000), ("/small", 1000), ("/big2", 1 << 20)]
        for path, size in cases:
            with self.subTest(path=path):
                extra = {"chunk": 50000, "drip": 0.05} if path == "/slow" else {}
                resp = conn.request("GET", target(path, size=size, **extra), timeout=20)
                self.assertEqual((resp.status, resp.body_len, resp.body_sha256), (200, size, pattern_sha256(size)))
                self.assertEqual(resp.header("Content-Length"), str(size))
        head = conn.request("HEAD", target("/head", size=1 << 20))
        self.assertEqual((head.status, head.body_len, head.header("Content-Length")), (200, 0, str(1 << 20)))
        self.assertEqual(conn.request("GET", "/after").json()["target"], "/after")
        self.assertEqual(origin.connections, 1)
        total = sum(size for _, size in cases)
        drover.wait_metric("drover_listener_bytes_sent_total", {"listener": "web"}, lambda v: v is not None and v >= total)

    def test_a_backend_closing_inside_a_spliced_body_cuts_the_client_connection(self):
        size, sent = 1 << 20, 200000
        raw = (b"HTTP/1.1 200 OK\r\nContent-Length: " + str(size).encode() + b"\r\n\r\n" + b"x" * sent)
        backend = self.raw_backend([[RawHttpBackend.READ, raw, RawHttpBackend.CLOSE]])
        drover, addr = self.http_proxy([backend])
        conn = self.client(addr, timeout=10)
        conn.send(HttpConn.build_request("GET", "/cut"))
        with self.assertRaises(PeerClosed) as cut:
            conn.read_response("GET", timeout=10)   # the head came, then the connection closed short
        self.assertIn(f"{size - sent} of {size} body bytes missing", str(cut.exception))
        self.assertEqual(backend.late_bytes.get(0, 0), 0)   # nothing more was sent on the cut connection

    def test_path_prefixes_match_the_path_a_backend_resolves(self):
        admin, public = self.origin("admin"), self.origin("public")
        _, addr = self.http_proxy(routes=[route("admin", path_prefix="/admin/"), route("public", path_prefix="/")],
                                  clusters=[static_cluster("admin", [admin]), static_cluster("public", [public])])
        for target in ("/public/../admin/x", "/public/%2E%2e/admin/x", "//admin/x"):
            with self.subTest(target=target):
                resp = self.get(addr, target)
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(resp.json()["target"], target)   # forwarded as it came
        self.assertEqual((len(admin.requests), len(public.requests)), (3, 0))

    def test_empty_lines_before_a_request_line_are_ignored(self):
        # RFC 9112 section 2.2; some clients send a CRLF after a POST body.
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        conn.send(b"\r\n" + HttpConn.build_request("GET", "/first"))
        self.assertEqual(conn.read_response("GET").json()["target"], "/first")
        conn.send(HttpConn.build_request("POST", "/form", body=b"a=1") + b"\r\n")
        self.assertEqual(conn.read_response("POST").json()["target"], "/form")
        conn.send(b"\r\n\r\n" + HttpConn.build_request("GET", "/after"))
        self.assertEqual(conn.read_response("GET").json()["target"], "/after")
        self.assertEqual(origin.connections, 1)

    def test_early_hints_and_other_interim_responses_reach_http11_clients(self):
        # RFC 9110 section 15.2: a proxy forwards 1xx responses (but 100 Continue is Drover's own to
        # send, and an HTTP/1.0 client gets none).
        hints = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n"
                 b"Connection: x-hop\r\nX-Hop: 1\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
                 b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
        backend = self.raw_backend([[RawHttpBackend.READ, hints, RawHttpBackend.READ, hints]])
        _, addr = self.http_proxy([backend])
        conn = self.client(addr)
        resp = conn.request("GET", "/page")
        self.assertEqual((resp.status, resp.body), (200, b"done"), resp)
        self.assertEqual([m.status for m in resp.interim], [103, 102], resp.interim)
        self.assertEqual(resp.interim[0].header("link"), "</a.css>; rel=preload")
        self.assertIsNone(resp.interim[0].header("x-hop"))   # hop-by-hop fields stay behind
        old = self.client(addr)
        old.send(HttpConn.build_request("GET", "/page", version="HTTP/1.0"))
        resp10 = old.read_response("GET")
        self.assertEqual((resp10.status, resp10.body, resp10.interim), (200, b"done", []), resp10)

    def upload_answered_early(self, refusal, *, size, wait_before=0.0, keep_open=0.3):
        """A POST of `size` bytes to a backend that reads the head only, waits `wait_before`, sends
        `refusal`, and closes `keep_open` later without reading more. Returns drover, the client's
        response, and the thread still sending the body."""
        backend = self.raw_backend([[lambda conn, _b: recv_head(conn), lambda conn, _b: time.sleep(wait_before), refusal,
                                     lambda conn, _b: time.sleep(keep_open), RawHttpBackend.CLOSE]])
        drover, addr = self.http_proxy([backend], cluster_extra={"retries": {"attempts": 0}})
        conn = self.client(addr, timeout=15)
        conn.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        sender = threading.Thread(target=conn.send_tolerant, args=(b"x" * size,), daemon=True)
        sender.start()
        self.addCleanup(sender.join, 15)
        return drover, conn.read_response("POST", timeout=10), sender

    def test_a_backend_that_answers_before_the_body_ends_has_its_answer_delivered(self):
        # An upload the backend refuses at its head (413 and close, no byte of the body read): the
        # client gets that 413, not a 502 for the connection the backend closed under the body.
        drover, resp, sender = self.upload_answered_early(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
            size=16 << 20)
        self.assertEqual((resp.status, resp.body), (413, b"too large"), resp)
        self.assertIn("close", resp.tokens("connection"))
        self.assertIsNone(resp.header("drover-error"))
        sender.join(10)   # the rest of the body was read and dropped (linger), not refused with a reset
        self.assertFalse(sender.is_alive())
        self.assertEqual(drover.metric_value("drover_http_local_responses_total",
                                             {"listener": "web", "reason": "bad_upstream_response"}, default=0), 0)

    def test_an_early_answer_from_a_backend_that_closes_at_once_is_delivered(self):
        # The backend answers and closes straight away with the body unread: its kernel resets the
        # connection after the answer, and the reset breaks Drover's body write before Drover has
        # read anything. The answer is still there to read.
        for attempt in range(3):
            with self.subTest(attempt=attempt):
                drover, resp, _ = self.upload_answered_early(
                    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
                    size=20 << 20, keep_open=0)
                self.assertEqual((resp.status, resp.body), (413, b"too large"), resp)

    def test_a_response_without_date_gets_one_and_a_dated_one_keeps_its_own(self):
        # RFC 9110 section 6.6.1: a recipient with a clock adds Date to a response that has none.
        backend = self.raw_backend([[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                                     RawHttpBackend.READ,
                                     b"HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nok"]])
        _, addr = self.http_proxy([backend])
        conn = self.client(addr)
        undated = conn.request("GET", "/a")
        self.assertRegex(undated.header("date") or "", r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} "
                                                       r"\d\d:\d\d:\d\d GMT$")
        dated = conn.request("GET", "/b")
        self.assertEqual(dated.header_values("date"), ["Sun, 06 Nov 1994 08:49:37 GMT"])

    def test_drovers_own_502_is_dated_and_keeps_a_bodyless_requests_connection(self):
        # The backend resets every request: the 502 is Drover's. The client's request was read whole,
        # so its connection goes on (a pool need not reconnect after every backend failure).
        def reset(conn, _backend):
            recv_head(conn)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        backend = self.backend(ScriptedBackend(reset))
        _, addr = self.http_proxy([backend], cluster_extra={"retries": {"attempts": 0}})
        conn = self.client(addr)
        for i in range(3):
            resp = conn.request("GET", f"/{i}")
            self.assertLocalResponse(resp, "bad_upstream_response")
            self.assertNotIn("close", resp.tokens("connection"))
            self.assertTrue(resp.header("date"), resp)
        # HEAD: the same answer without its body (bytes after the head would be taken for the next
        # response), and the connection stays in step.
        conn.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\nGET /after-head HTTP/1.1\r\nHost: t\r\n\r\n")
        head = conn.read_response("HEAD", timeout=5)
        self.assertEqual((head.status, head.header("drover-error"), head.body), (502, "bad_upstream_response", b""))
        self.assertLocalResponse(conn.read_response("GET", timeout=5), "bad_upstream_response")
        conn.send(b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        resp = conn.read_response("POST", timeout=5)
        self.assertLocalResponse(resp, "bad_upstream_response")
        self.assertIn("close", resp.tokens("connection"))   # a body: closed, as before

    def test_a_backend_that_dies_while_the_client_pauses_its_upload_gets_a_prompt_502(self):
        # The client sends part of its body and pauses; the backend dies (a close, or a reset) in the
        # pause. The client learns it then, not at its next byte or after timeouts.idle.
        for how in ("close", "reset"):
            with self.subTest(how=how):
                def die(conn, _backend, how=how):
                    got = len(recv_head(conn) or b"")
                    while got < 100_000:
                        got += len(conn.recv(65536))
                    time.sleep(0.2)
                    if how == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    conn.close()

                backend = self.backend(ScriptedBackend(die))
                _, addr = self.http_proxy([backend], cluster_extra={"retries": {"attempts": 0}})
                conn = self.client(addr, timeout=10)
                conn.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 200_000)
                started = time.monotonic()
                resp = conn.read_response("POST", timeout=5)
                self.assertLocalResponse(resp, "bad_upstream_response")
                self.assertLess(time.monotonic() - started, 3)

    def test_an_early_answer_from_a_backend_that_stops_reading_is_delivered_at_once(self):
        # The backend stops reading, and once Drover's body write has found no room, answers 413 and
        # keeps its connection open: the answer must reach the client then, not after timeouts.idle
        # (60 s) when the blocked write would give up.
        _, resp, _ = self.upload_answered_early(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large",
                                                size=64 << 20, wait_before=1.5, keep_open=15)
        self.assertEqual((resp.status, resp.body), (413, b"too large"), resp)
        self.assertIn("close", resp.tokens("connection"))

    def test_a_backend_that_stops_reading_an_upload_and_never_answers_gets_a_504_after_idle(self):
        # It reads the head, then neither reads the body nor answers nor closes: after the listener's
        # timeouts.idle of no room for the body, a 504 upstream_timeout, not a 502 saying it closed
        # (soak audit).
        backend = self.raw_backend([[lambda conn, _b: recv_head(conn), lambda conn, _b: time.sleep(15),
                                     RawHttpBackend.CLOSE]])
        _, addr = self.http_proxy([backend], listener_extra={"timeouts": {"idle": "1s"}},
                                  cluster_extra={"retries": {"attempts": 0}})
        conn = self.client(addr, timeout=15)
        size = 64 << 20
        conn.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        sender = threading.Thread(target=conn.send_tolerant, args=(b"x" * size,), daemon=True)
        sender.start()
        self.addCleanup(sender.join, 15)
        started = time.monotonic()
        resp = conn.read_response("POST", timeout=10)
        self.assertLocalResponse(resp, "upstream_timeout")
        self.assertIn("stopped reading the request body", resp.body.decode())
        self.assertLess(time.monotonic() - started, 6)

    # -- the upstream pool ---------------------------------------------------------------------------

    def test_pool_reuses_one_origin_connection_across_client_connections(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin])
        for i in range(8):
            with HttpConn(addr) as conn:
                self.assertEqual(conn.request("GET", f"/c{i}").json()["seq"], i + 1)
        self.assertEqual(origin.connections, 1)
        drover.wait_metric("drover_upstream_pool_reuses_total", {"cluster": "back", "host": origin.addr},
                           lambda v: v == 7, default=0)

    def test_connection_with_an_unfinished_response_is_never_reused(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        # The body is an HTTP response repeated: a proxy that reused this connection mid-body would
        # hand the next client "EVIL!".
        conn = HttpConn(addr)
        conn.send_request("GET", target("/big", size=8 << 20, fill="evil"))
        head = conn.read_head(timeout=5)
        self.assertEqual(head.status, 200, head)
        conn.close()  # abandon the response after its head
        for i in range(3):
            resp = self.get(addr, f"/after{i}", timeout=10)
            self.assertEqual((resp.status, resp.header("x-evil")), (200, None), resp)
            self.assertEqual(resp.json()["target"], f"/after{i}")

    def test_pooled_connection_closed_by_the_origin_is_retried_on_a_fresh_one(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for i in range(5):
            # The origin answers and then closes without saying so: drover pooled a dead connection.
            resp = conn.request("GET", target(f"/r{i}", close=1), timeout=5)
            self.assertEqual((resp.status, resp.json()["target"]), (200, target(f"/r{i}", close=1)))
            origin.wait_active(0)
        self.assertEqual(origin.connections, 5)

    def test_request_on_a_pooled_connection_that_dies_unanswered_is_retried_on_a_fresh_one(self):
        # The race the retry exists for: the origin gives up on an idle connection just as drover reuses it.
        # Here it reads the second request and closes without a byte of answer.
        backend = self.raw_backend([[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
                                     RawHttpBackend.READ, RawHttpBackend.CLOSE],
                                    [RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"]])
        _, addr = self.http_proxy([backend])
        conn = self.client(addr)
        self.assertEqual(conn.request("GET", "/1", timeout=5).body, b"first")
        resp = conn.request("GET", "/2", timeout=5)
        self.assertEqual((resp.status, resp.body), (200, b"fresh"), resp)
        self.assertEqual([(r.conn, r.target) for r in backend.requests], [(1, "/1"), (1, "/2"), (2, "/2")])

    def test_post_on_a_pooled_connection_closed_by_the_origin_is_retried_once(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        self.assertEqual(conn.request("GET", target("/first", close=1)).status, 200)
        origin.wait_active(0)
        resp = conn.request("POST", "/submit", body=b"payload", timeout=5)
        self.assertEqual((resp.status, resp.json()["body_bytes"]), (200, 7))
        self.assertEqual([r.method for r in origin.requests], ["GET", "POST"])

    # -- headers -------------------------------------------------------------------------------------

    def test_hop_by_hop_request_headers_and_those_named_in_connection_are_stripped(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        resp = self.get(addr, "/", headers=[
            ("Connection", "keep-alive, X-Hop-Secret"), ("Keep-Alive", "timeout=5"), ("X-Hop-Secret", "s3cr3t"),
            ("Proxy-Connection", "keep-alive"), ("TE", "trailers"), ("Trailer", "X-Checksum"), ("Upgrade", "foo/1"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("X-Kept", "yes")])
        self.assertEqual(resp.status, 200, resp)
        got = origin.requests[0]
        for name in ("Keep-Alive", "X-Hop-Secret", "Proxy-Connection", "TE", "Trailer", "Upgrade"):
            self.assertEqual(got.header_values(name), [], f"{name} forwarded: {got.headers}")
        self.assertNotIn("x-hop-secret", [t.lower() for v in got.header_values("Connection") for t in v.split(",")])
        self.assertEqual(got.header_values("Proxy-Authorization"), ["Basic Zm9vOmJhcg=="])
        self.assertEqual(got.header_values("X-Kept"), ["yes"])

    def test_hop_by_hop_response_headers_and_those_named_in_connection_are_stripped(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        resp = self.get(addr, target("/", ("hdr", "Keep-Alive:timeout=9"), ("hdr", "X-Resp-Hop:1"),
                                     ("hdr", "Connection:X-Resp-Hop"), ("hdr", "Proxy-Connection:keep-alive"),
                                     ("hdr", "Upgrade:foo/2"), ("hdr", "X-Resp-Kept:yes")))
        self.assertEqual(resp.status, 200, resp)
        for name in ("Keep-Alive", "X-Resp-Hop", "Proxy-Connection", "Upgrade"):
            self.assertEqual(resp.header_values(name), [], f"{name} forwarded: {resp.headers}")
        self.assertNotIn("x-resp-hop", resp.tokens("connection"))
        self.assertEqual(resp.header_values("X-Resp-Kept"), ["yes"])

    def test_x_forwarded_headers_are_set(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        self.assertEqual(conn.request("GET", "/a", host="app.test:8080").status, 200)
        self.assertEqual(conn.request("GET", "/b", host="app.test",
                                      headers=[("X-Forwarded-For", "203.0.113.7")]).status, 200)
        first, second = origin.requests
        self.assertEqual(first.header("X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(first.header_values("X-Forwarded-Proto"), ["http"])
        self.assertEqual(first.header_values("X-Forwarded-Host"), ["app.test:8080"])
        self.assertEqual(second.header("X-Forwarded-For"), "203.0.113.7, 127.0.0.1")
        self.assertEqual(second.header_values("X-Forwarded-Host"), ["app.test"])

    def test_an_http10_request_without_host_is_forwarded_with_the_address_it_came_to(self):
        # HTTP/1.0 allows no Host; what goes upstream is HTTP/1.1, where an empty Host is refused by
        # many servers (NGINX answers 400). RFC 9112 section 3.3: the authority is the listener's.
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        conn.send(HttpConn.build_request("GET", "/old", host=None, version="HTTP/1.0"))
        self.assertEqual(conn.read_response("GET").status, 200)
        sent = origin.requests[0]
        self.assertEqual(sent.header_values("Host"), [f"{addr[0]}:{addr[1]}"])
        self.assertEqual(sent.header_values("X-Forwarded-Host"), [])   # the client named no host

    def test_x_request_id_is_added_when_absent_and_kept_when_present(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for path in ("/a", "/b"):
            conn.request("GET", path)
        conn.request("GET", "/c", headers=[("X-Request-Id", "my-id-123")])
        ids = [r.header_values("X-Request-Id") for r in origin.requests]
        self.assertEqual([len(v) for v in ids], [1, 1, 1], ids)
        self.assertTrue(ids[0][0] and ids[1][0] and ids[0][0] != ids[1][0], ids)
        self.assertEqual(ids[2], ["my-id-123"])

    def test_header_order_and_case_are_preserved_both_ways(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        sent = [("X-Zeta", "1"), ("X-Zeta", "2"), ("x-lower", "3"), ("X-MiXeD-CaSe", "4"), ("Accept", "*/*"),
                ("X_Under_Score", "5")]
        resp = self.get(addr, target("/", ("hdr", "X-Resp-B:1"), ("hdr", "x-resp-a:2"), ("hdr", "X-RESP-C:3")),
                        headers=sent)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(subsequence(origin.requests[0].headers, [k for k, _ in sent]), sent)
        self.assertEqual(subsequence(resp.headers, ["x-resp-a", "x-resp-b", "x-resp-c"]),
                         [("X-Resp-B", "1"), ("x-resp-a", "2"), ("X-RESP-C", "3")])

    def test_a_repeated_header_keeps_its_place_among_the_others(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        sent = [("X-Zeta", "1"), ("X-Other", "2"), ("x-zeta", "3")]
        resp = self.get(addr, target("/", ("hdr", "X-Resp-B:1"), ("hdr", "X-Resp-A:2"), ("hdr", "X-Resp-B:3")),
                        headers=sent)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(subsequence(origin.requests[0].headers, ["x-zeta", "x-other"]), sent)
        self.assertEqual(subsequence(resp.headers, ["x-resp-a", "x-resp-b"]),
                         [("X-Resp-B", "1"), ("X-Resp-A", "2"), ("X-Resp-B", "3")])

    # -- upgrades ------------------------------------------------------------------------------------

    def test_websocket_upgrade_is_tunneled_after_the_origin_answers_101(self):
        logdir = tempfile.mkdtemp(prefix="drover-access-")
        self.addCleanup(shutil.rmtree, logdir, True)
        log = os.path.join(logdir, "access.log")
        origin = self.origin()
        # An adaptive limit of one: the open tunnel must not hold it (it is no request in flight).
        drover, addr = self.http_proxy([origin], access_log={"path": log},
                                       cluster_extra={"adaptive_concurrency": {"min_limit": 1, "max_limit": 1}})
        conn = self.client(addr)
        conn.send_request("GET", "/chat", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")])
        resp = conn.read_response(timeout=5)
        self.assertEqual(resp.status, 101, resp)
        self.assertEqual((resp.header("upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", resp.tokens("connection"))
        forwarded = origin.requests[0]
        self.assertEqual(forwarded.header_values("Upgrade"), ["websocket"])
        connection = [t.strip().lower() for v in forwarded.header_values("Connection") for t in v.split(",")]
        self.assertIn("upgrade", connection)
        self.assertEqual(forwarded.header_values("Sec-WebSocket-Key"), ["dGhlIHNhbXBsZSBub25jZQ=="])
        # Raw bytes both ways: first what the origin sent right after its 101, then an echo.
        self.assertEqual(conn.reader.read_exactly(9), b"upgraded\n")
        payload = os.urandom(300000)
        sender = threading.Thread(target=conn.send, args=(payload,), daemon=True)
        sender.start()
        self.assertEqual(conn.reader.read_exactly(len(payload)), payload)
        sender.join(5)
        self.assertEqual(self.get(addr, "/beside-the-tunnel").status, 200)
        conn.close()
        origin.wait_active(1)  # the client's close reached the origin through the tunnel (one left: pooled)
        # Counted and logged once, when the tunnel ends.
        wait_until(lambda: " GET /chat 101 " in open(log).read(), 5, message="the upgrade in the access log")
        web = {"listener": "web"}
        self.assertEqual(drover.metric_value("drover_http_requests_total", {**web, "code_class": "1xx"}), 1)
        self.assertEqual(drover.metric_value("drover_upstream_requests_total",
                                             {"cluster": "back", "host": origin.addr, "code_class": "1xx"}), 1)
        drover.wait_metric("drover_listener_bytes_sent_total", web, lambda v: v > len(payload))

    def test_declined_websocket_upgrade_stays_plain_http(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        resp = conn.request("GET", target("/chat", upgrade="decline"),
                            headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(conn.request("GET", "/plain").json()["target"], "/plain")

    def test_h2c_upgrade_is_stripped_and_never_tunneled(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        resp = conn.request("GET", "/", headers=[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                                 ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
        self.assertEqual(resp.status, 200, resp)
        forwarded = origin.requests[0]
        self.assertEqual(forwarded.header_values("Upgrade"), [], forwarded.headers)
        self.assertEqual(forwarded.header_values("HTTP2-Settings"), [], forwarded.headers)
        self.assertEqual(conn.request("GET", "/still-http1").json()["target"], "/still-http1")

    # -- access log and metrics ----------------------------------------------------------------------

    def test_access_log_file_has_one_line_per_request(self):
        logdir = tempfile.mkdtemp(prefix="drover-access-")
        self.addCleanup(shutil.rmtree, logdir, True)
        path = os.path.join(logdir, "access.log")
        origin = self.origin()
        _, addr = self.http_proxy([origin], routes=[route("back", path_prefix="/app/")], access_log={"path": path})
        conn = self.client(addr)
        ok = conn.request("GET", "/app/ok?x=1")
        missing = conn.request("GET", "/nope")
        posted = conn.request("POST", "/app/p", body=b"abc")

        def lines():
            with open(path, encoding="utf-8") as f:
                return f.read().splitlines()
        wait_until(lambda: len(lines()) >= 3, 5,
                   message=lambda: f"access log: {lines() if os.path.exists(path) else 'no file'}")
        got = [ACCESS_LOG_RE.match(line) for line in lines()]
        self.assertTrue(all(got), lines())
        want = [(conn.local_addr, "GET", "/app/ok?x=1", "200", str(ok.body_len), origin.addr, "-"),
                (conn.local_addr, "GET", "/nope", "404", str(missing.body_len), "-", "no_route"),
                (conn.local_addr, "POST", "/app/p", "200", str(posted.body_len), origin.addr, "-")]
        self.assertEqual([m.group("client", "method", "target", "status", "bytes", "upstream", "reason") for m in got],
                         want)

    def test_listener_byte_counters_count_heads_and_bodies_both_ways(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin])
        requests = [b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: counted\r\n\r\n",
                    b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                    b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]
        with socket.create_connection(addr, timeout=5) as sock:
            sock.sendall(b"".join(requests))   # pipelined; the last answer ends with the close
            answers = recv_all(sock)
        self.assertEqual(answers.count(b"HTTP/1.1 200 "), 3, answers)
        listener = {"listener": "web"}
        drover.wait_metric("drover_listener_bytes_received_total", listener, lambda v: v == sum(map(len, requests)))
        drover.wait_metric("drover_listener_bytes_sent_total", listener, lambda v: v == len(answers))

    def test_access_log_escapes_what_a_rejected_request_line_carries_and_counts_local_bodies(self):
        logdir = tempfile.mkdtemp(prefix="drover-access-")
        self.addCleanup(shutil.rmtree, logdir, True)
        path = os.path.join(logdir, "access.log")
        _, addr = self.http_proxy([self.origin()], access_log={"path": path})
        answers = []
        for raw in (b"GET /x\t200\t9\xff HTTP/1.1\r\nHost: x\r\n\r\n",   # a forged line's fields, and non-ASCII
                    b"NOT A REQUEST\r\n\r\n"):                              # no head to take a target from
            with socket.create_connection(addr, timeout=5) as sock:
                sock.sendall(raw)
                answers.append(recv_all(sock))

        def lines():
            with open(path, encoding="utf-8") as f:   # valid UTF-8: non-ASCII bytes are escaped
                return f.read().splitlines()
        wait_until(lambda: len(lines()) >= 2, 5, message=lambda: f"access log: {lines()}")
        got = [ACCESS_LOG_RE.match(line) for line in lines()]
        self.assertTrue(all(got), lines())
        bodies = [len(a.split(b"\r\n\r\n", 1)[1]) for a in answers]
        self.assertEqual([m.group("method", "target", "status", "bytes") for m in got],
                         [("GET", "/x\\x09200\\x099\\xff", "400", str(bodies[0])), ("-", "-", "400", str(bodies[1]))])

    def test_access_log_to_stderr(self):
        origin = self.origin()
        drover, addr = self.http_proxy([origin], access_log={"path": "stderr"})
        resp = self.get(addr, "/to-stderr")
        m = drover.wait_for_log(re.compile(r"^\S+ \S+ GET /to-stderr 200 (\d+) \S+ (\S+) -$"), 5)
        self.assertEqual((int(m.group(1)), m.group(2)), (resp.body_len, origin.addr))

    def test_a_connect_failure_counts_as_a_retry_only_when_another_host_is_tried(self):
        clusters = [static_cluster("one", [self.closed_port()], hold_timeout="0s"),
                    static_cluster("two", [self.closed_port(), self.closed_port()], hold_timeout="0s")]
        routes = [route("one", path_prefix="/one"), route("two", path_prefix="/two")]
        drover, addr = self.http_proxy(routes=routes, clusters=clusters)
        for path in ("/one", "/two"):
            self.assertEqual(self.get(addr, path).status, 502)
        retries = lambda cluster: drover.metric_value("drover_cluster_retries_total",
                                                      {"cluster": cluster, "cause": "connect_failure"}, default=0)
        self.assertEqual((retries("one"), retries("two")), (0, 1))

    def test_a_5xx_retried_elsewhere_is_in_the_upstream_latency(self):
        drover, addr = self.http_proxy([self.origin(), self.origin()], cluster_extra={"retries": {"attempts": 1}})
        resp = self.get(addr, target("/both-fail", status=502))
        self.assertEqual(resp.status, 502)
        self.assertEqual(drover.metric_value("drover_cluster_retries_total", {"cluster": "back", "cause": "budgeted"}), 1)
        self.assertEqual(drover.metric_value("drover_upstream_request_duration_seconds_count", {"cluster": "back"}), 2)

    def test_http_metrics(self):
        origin = self.origin()
        dead = self.closed_port()
        clusters = [static_cluster("back", [origin], load_balancing="round_robin"),
                    static_cluster("dead", [dead], retries={"attempts": 0})]
        routes = [route("dead", path_prefix="/dead"), route("back", path_prefix="/app")]
        drover, addr = self.http_proxy(routes=routes, clusters=clusters)
        conn = self.client(addr)
        statuses = [conn.request("GET", p).status
                    for p in ("/app/1", "/app/2", target("/app/3", status=503), "/nowhere", "/dead")]
        self.assertEqual(statuses, [200, 200, 503, 404, 502])
        web = {"listener": "web"}

        def value(name, **labels):
            return drover.metric_value(name, labels, default=0)
        wait_until(lambda: value("drover_http_request_duration_seconds_count", **web) == 5, 5,
                   message=lambda: f"duration count {value('drover_http_request_duration_seconds_count', **web)}")
        self.assertEqual([value("drover_http_requests_total", **web, code_class=c)
                          for c in ("2xx", "3xx", "4xx", "5xx")], [2, 0, 1, 2])
        self.assertEqual(value("drover_http_local_responses_total", **web, reason="no_route"), 1)
        self.assertEqual(value("drover_http_local_responses_total", **web, reason="upstream_connect_failed"), 1)
        self.assertEqual(value("drover_http_local_responses_total", **web), 2, "the origin's own 503 is not local")
        self.assertEqual(drover.metric_type("drover_http_request_duration_seconds_count"), "histogram")
        buckets = drover.metric_samples("drover_http_request_duration_seconds_bucket", web)
        self.assertGreater(len(buckets), 3)
        self.assertEqual(max(s.value for s in buckets), 5)  # the +Inf bucket
        self.assertGreater(value("drover_http_request_duration_seconds_sum", **web), 0)
        up = {"cluster": "back", "host": origin.addr}
        self.assertEqual(value("drover_upstream_requests_total", **up, code_class="2xx"), 2)
        self.assertEqual(value("drover_upstream_requests_total", **up, code_class="5xx"), 1)
        self.assertEqual(value("drover_upstream_pool_reuses_total", **up), 2)
        # Upstream latency per cluster: the three answers of "back" (its own 503 included), none for "dead".
        self.assertEqual(drover.metric_type("drover_upstream_request_duration_seconds_count"), "histogram")
        self.assertEqual(value("drover_upstream_request_duration_seconds_count", cluster="back"), 3)
        self.assertGreater(value("drover_upstream_request_duration_seconds_sum", cluster="back"), 0)
        self.assertEqual(value("drover_upstream_request_duration_seconds_count", cluster="dead"), 0)


if __name__ == "__main__":
    unittest.main()
