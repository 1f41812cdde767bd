"""TLS through the real binary, both ways: listeners terminating TLS (SNI picks the certificate,
wildcards, the default certificate, ALPN, TLS 1.2 and 1.3, session resumption, plain text refused, tcp
listeners), clusters speaking TLS to their hosts (SNI and verification, the detail of a failed handshake
in the 502, verify: false, client certificates), health checks over TLS, certificate errors from
--check and at start, and reload re-reading certificate files (a bad one refused, the old one kept).

Certificates are made at test time with the openssl CLI (EC P-256: fast): a test CA, leaves for
a.test (DNS:a.test, IP:127.0.0.1), b.test (DNS:b.test, DNS:*.b.test), a second a.test leaf for reload,
a client certificate, and a self-signed a.test certificate that the CA never saw."""

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import textwrap
import threading
import time
import unittest

from harness import (IO_TIMEOUT, Backend, HttpBackend, HttpTestCase, ScriptedBackend, drover_bin, http_listener,
                     make_config, parse_http_response, read_slowly, recv_all, recv_exactly, recv_head, roundtrip, route,
                     run_drover, sending_script, static_cluster, tcp_listener, to_yaml, wait_until)
from test_check import line_of

# `file:line:col: key.path: message` (as in test_check.py).
ERROR_RE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?:(?P<path>[A-Za-z_][\w.\[\]]*): )?"
                      r"(?P<message>.+)$")

FAST_CHECK = {"interval": "300ms", "unhealthy_interval": "100ms", "timeout": "300ms",
              "healthy_threshold": 1, "unhealthy_threshold": 2}

SUBPROCESS_TIMEOUT = 30


# --------------------------------------------------------------------------------------------------
# Certificates


class Certs:
    """A CA and certificates signed by it, in a temp dir; `path(name)` gives a file's absolute path."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="drover-tls-certs-")
        self.dir = self._tmp.name
        self._serial = 1000
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Drover Test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.leaf("a", "a.test", "DNS:a.test,IP:127.0.0.1")
        self.leaf("a2", "a2.test", "DNS:a.test,IP:127.0.0.1")   # the same names, another certificate
        self.leaf("b", "b.test", "DNS:b.test,DNS:*.b.test")
        self.leaf("client", "client.test", None, usage="clientAuth")
        # Self-signed, for the same names as a.test: only its issuer is wrong.
        self.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", "self.key", "-out", "self.pem", "-days", "2", "-subj", "/CN=a.test",
                     "-addext", "subjectAltName=DNS:a.test,IP:127.0.0.1",
                     "-addext", "basicConstraints=critical,CA:FALSE",
                     "-addext", "extendedKeyUsage=serverAuth")

    def openssl(self, *args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")

    def leaf(self, name: str, cn: str, san: str | None, usage: str = "serverAuth", issuer: str = "ca",
             days: int = 2, intermediate: bool = False) -> None:
        """A certificate `name`.pem (and .key) signed by `issuer` (a name made here, "ca" by default);
        `intermediate`: a CA certificate that may sign others."""
        self.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        if intermediate:
            ext = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"]
        else:
            ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature", f"extendedKeyUsage={usage}"]
        ext += ["subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer"]
        if san:
            ext.append(f"subjectAltName={san}")
        with open(os.path.join(self.dir, f"{name}.ext"), "w", encoding="ascii") as f:
            f.write("\n".join(ext) + "\n")
        self._serial += 1
        self.openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
                     "-set_serial", str(self._serial), "-out", f"{name}.pem", "-days", str(days),
                     "-extfile", f"{name}.ext")

    def expired_ca(self, name: str, cn: str) -> None:
        """A self-signed CA certificate `name`.pem that was valid in January 2020 only (`x509 -req` of
        OpenSSL 3.0 cannot set past dates; `ca` can)."""
        db = os.path.join(self.dir, f"{name}-db")
        os.mkdir(db)
        open(os.path.join(db, "index.txt"), "w", encoding="ascii").close()
        with open(os.path.join(db, "serial"), "w", encoding="ascii") as f:
            f.write("01\n")
        with open(os.path.join(self.dir, f"{name}.cnf"), "w", encoding="ascii") as f:
            f.write(f"[ca]\ndefault_ca = old\n[old]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\n"
                    f"serial = {db}/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
                    "x509_extensions = ext\n[any]\ncommonName = supplied\n"
                    "[ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n")
        self.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        self.openssl("ca", "-batch", "-config", f"{name}.cnf", "-selfsign", "-keyfile", f"{name}.key",
                     "-in", f"{name}.csr", "-out", f"{name}.pem", "-notext",
                     "-startdate", "20200101000000Z", "-enddate", "20200201000000Z")

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def pair(self, name: str) -> dict:
        """A `{cert, key}` item for a listener's tls.certificates."""
        return {"cert": self.path(f"{name}.pem"), "key": self.path(f"{name}.key")}

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()

    def cleanup(self) -> None:
        self._tmp.cleanup()


def common_name(cert: dict) -> str | None:
    """The subject CN of a certificate as SSLSocket.getpeercert() returns it."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


# --------------------------------------------------------------------------------------------------
# TLS backends


class HttpsBackend:
    """An HTTPS/1.1 origin (http.server, a thread per connection, the TLS handshake on that thread).

    Answers `/healthz` with 200 `ok`; anything else (`/slow?delay=S` after S seconds) with 200 and a
    JSON body saying who answered, the SNI the client sent and the CN of its client certificate (with `client_ca`: the client must present
    one signed by it). Records each connection's SNI and session reuse, and failed handshakes."""

    def __init__(self, name: str, certfile: str, keyfile: str, client_ca: str | None = None,
                 close_each: bool = False, max_version: ssl.TLSVersion | None = None):
        import http.server

        backend = self
        self.name = name
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.handshakes: list[dict] = []       # {"sni", "reused", "version"} per completed handshake
        self.snis: list[str | None] = []         # the SNI of every ClientHello, completed handshakes or not
        self.handshake_errors: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        if max_version is not None:
            context.maximum_version = max_version
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)

        def on_sni(sock, server_name, _context):
            sock.drover_test_sni = server_name
            with backend.lock:
                backend.snis.append(server_name)
            return None
        context.sni_callback = on_sni
        self.context = context

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = IO_TIMEOUT

            def setup(self) -> None:
                self.request.settimeout(IO_TIMEOUT)
                try:
                    self.request = context.wrap_socket(self.request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    with backend.lock:
                        backend.handshake_errors.append(repr(exc))
                    raise
                self.sni = getattr(self.request, "drover_test_sni", None)
                with backend.lock:
                    backend.handshakes.append({"sni": self.sni, "reused": self.request.session_reused,
                                               "version": self.request.version()})
                super().setup()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    try:
                        self.request.close()
                    except OSError:
                        pass

            def do_GET(self) -> None:
                if self.path.startswith("/slow?delay="):   # answers after that many seconds
                    time.sleep(float(self.path.split("=", 1)[1]))
                if self.path.startswith("/healthz"):
                    body = b"ok\n"
                else:
                    peer = self.request.getpeercert() or {}
                    info = {"backend": backend.name, "path": self.path, "sni": self.sni,
                            "client_cn": common_name(peer) if peer else None}
                    with backend.lock:
                        backend.requests.append(info)
                    body = json.dumps(info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if close_each:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass   # failed handshakes are recorded above; no tracebacks on stderr

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"{name}-https", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addr(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2.0)


class TlsEchoBackend(Backend):
    """A TLS server that echoes every byte (for tcp listeners whose cluster speaks TLS)."""

    def __init__(self, certfile: str, keyfile: str, **kw) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)

        def on_sni(sock, server_name, _context):
            sock.drover_test_sni = server_name
        self.context.sni_callback = on_sni
        self.snis: list[str | None] = []
        super().__init__(name="tls-echo", **kw)

    def handle(self, conn: socket.socket) -> None:
        tls = self.context.wrap_socket(conn, server_side=True)
        with self.lock:
            self.snis.append(getattr(tls, "drover_test_sni", None))
        try:
            while True:
                data = tls.recv(65536)
                if not data:
                    return
                self._count_received(len(data))
                tls.sendall(data)
        finally:
            tls.close()


class TlsRefusingBackend(Backend):
    """A TLS server that reads a request head, answers `refusal` at once, and closes 0.3 s later with
    the body unread (so its kernel resets the connection under the upload)."""

    def __init__(self, certfile: str, keyfile: str, refusal: bytes, **kw) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.refusal = refusal
        super().__init__(name="tls-refusing", **kw)

    def handle(self, conn: socket.socket) -> None:
        tls = self.context.wrap_socket(conn, server_side=True)
        try:
            if recv_head(tls) is None:
                return
            tls.sendall(self.refusal)
            time.sleep(0.3)
        finally:
            tls.close()


# --------------------------------------------------------------------------------------------------
# Clients


def client_context(ca: str | None, *, alpn: list[str] | None = None, version: ssl.TLSVersion | None = None,
                   verify: bool = True) -> ssl.SSLContext:
    """A client context trusting `ca`; hostnames are not checked (tests read the served CN instead)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
    else:
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def tls_connect(addr: tuple[str, int], context: ssl.SSLContext, server_name: str | None = None,
                session: ssl.SSLSession | None = None, timeout: float = IO_TIMEOUT) -> ssl.SSLSocket:
    """A TLS connection (handshake done); `server_name` None sends no SNI."""
    raw = socket.create_connection(addr, timeout=timeout)
    raw.settimeout(timeout)
    try:
        return context.wrap_socket(raw, server_hostname=server_name, session=session)
    except BaseException:
        raw.close()
        raise


def tls_roundtrip(sock: ssl.SSLSocket, data: bytes, chunk: int = 16384) -> bytes:
    """Sends `data` to an echo in lockstep pieces and reads each back. (harness.roundtrip sends on a
    thread while reading: an SSLSocket must not be used by two threads at once, that loses data.)"""
    received = []
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        sock.sendall(piece)
        received.append(recv_exactly(sock, len(piece)))
    return b"".join(received)


def tls_get(sock: ssl.SSLSocket, path: str = "/", host: str = "a.test"):
    """One `Connection: close` request on a TLS socket; the response read until EOF."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    return parse_http_response(recv_all(sock))


class TlsTestCase(HttpTestCase):
    certs: Certs

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.certs = Certs()   # needs the openssl command (scripts/install-deps.sh installs it)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.certs.cleanup()
        super().tearDownClass()

    # -- helpers -----------------------------------------------------------------------------------

    def temp_dir(self, prefix: str) -> str:
        """A folder of this test's own, removed at cleanup."""
        folder = tempfile.TemporaryDirectory(prefix=prefix)
        self.addCleanup(folder.cleanup)
        return folder.name

    def https_backend(self, name: str = "secure", cert: str = "a", **kw) -> HttpsBackend:
        return self.backend(HttpsBackend(name, self.certs.path(f"{cert}.pem"), self.certs.path(f"{cert}.key"), **kw))

    def plain_backend(self, name: str = "plain") -> HttpBackend:
        return self.backend(HttpBackend(name))

    def tls_listener_proxy(self, backend, certificates, **config_extra):
        """An http listener `web` terminating TLS with `certificates`, every request to `backend`."""
        tls = {"certificates": certificates}
        config = make_config([http_listener("web", [route("back", path_prefix="/")], tls=tls)],
                             [static_cluster("back", [backend])], **config_extra)
        drover = self.start_drover(config)
        return drover, drover.listener_addr("web")

    def upstream_tls_proxy(self, backend, tls, **cluster_extra):
        """A plain http listener `web` in front of cluster `back` speaking TLS to `backend`."""
        config = make_config([http_listener("web", [route("back", path_prefix="/")])],
                             [static_cluster("back", [backend], tls=tls, **cluster_extra)])
        drover = self.start_drover(config)
        return drover, drover.listener_addr("web")

    def served_cn(self, addr, server_name, context=None) -> str | None:
        context = context or client_context(self.certs.path("ca.pem"))
        with tls_connect(addr, context, server_name) as sock:
            return common_name(sock.getpeercert())

    def curl(self, port: int, name: str, path: str = "/", *extra: str) -> tuple[int, str, str, str]:
        """curl over TLS to `name` (resolved to 127.0.0.1), verifying against the test CA.
        Returns (exit code, body, http code, stderr)."""
        marker = "\n--curl-status--"
        argv = ["curl", "-sS", "--max-time", "10", "--cacert", self.certs.path("ca.pem"),
                "--resolve", f"{name}:{port}:127.0.0.1", *extra,
                "-w", marker + "%{http_code} %{http_version}", f"https://{name}:{port}{path}"]
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=SUBPROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail(f"curl still running after {SUBPROCESS_TIMEOUT}s: {argv}")
        body, _, status = proc.stdout.rpartition(marker)
        return proc.returncode, body, status, proc.stderr

    def host_state(self, drover, cluster: str, addr: str) -> dict:
        for c in drover.admin_json("/clusters")["clusters"]:
            if c["name"] == cluster:
                for h in c["hosts"]:
                    if h["address"] == addr:
                        return h
        raise AssertionError(f"{cluster}/{addr} not in /clusters")

    @staticmethod
    def requests_active(drover) -> float:
        return drover.metric_value("drover_cluster_requests_active", {"cluster": "back"})

    def assert_ends_when_its_client_left(self, drover, host: str) -> None:
        """The request in flight ends within a client check (1 s) of its client leaving (just now),
        and its backend connection is closed rather than pooled."""
        left = time.monotonic()
        wait_until(lambda: self.requests_active(drover) == 0, 3, message="the request ended when its client left")
        self.assertLess(time.monotonic() - left, 2.0)
        self.assertEqual(drover.metric_value("drover_upstream_connections_active", {"cluster": "back", "host": host}), 0,
                         "the backend's connection closed, not pooled")

    def handshakes(self, drover, result: str, listener: str = "web") -> float:
        return drover.metric_value("drover_listener_tls_handshakes_total", {"listener": listener, "result": result},
                                   default=0)


# --------------------------------------------------------------------------------------------------
# Listeners terminating TLS


class ListenerTlsTest(TlsTestCase):

    def test_sni_picks_the_certificate_and_the_first_is_the_default(self):
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [self.certs.pair("a"), self.certs.pair("b")])
        cases = [("a.test", "a.test"), ("b.test", "b.test"), ("x.b.test", "b.test"), ("X.B.Test", "b.test"),
                 ("x.b.test.", "b.test"),    # a fully qualified name: the final dot is no part of it
                 ("y.x.b.test", "a.test"),   # a wildcard covers one label only
                 ("c.test", "a.test"),       # no match: the default
                 (None, "a.test")]           # no SNI: the default
        for server_name, want in cases:
            with self.subTest(server_name=server_name):
                self.assertEqual(self.served_cn(addr, server_name), want)
        # curl checks the served certificate against the name it asked for, and proxies through.
        for name in ("a.test", "b.test", "x.b.test"):
            with self.subTest(curl=name):
                code, body, status, err = self.curl(addr[1], name, f"/via/{name}")
                self.assertEqual(code, 0, err)
                self.assertEqual(status, "200 1.1", (body, err))
                self.assertEqual(body, f"plain GET /via/{name}\n")
        self.assertEqual(plain.requests, 3)
        self.assertGreaterEqual(self.handshakes(drover, "ok"), len(cases) + 3)
        self.assertEqual(self.handshakes(drover, "failed"), 0)

    def test_alpn_offers_http11_and_both_tls12_and_tls13_work(self):
        plain = self.plain_backend("plain")
        _, addr = self.tls_listener_proxy(plain, [self.certs.pair("a")])
        ca = self.certs.path("ca.pem")
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with self.subTest(version=name):
                context = client_context(ca, alpn=["h2", "http/1.1"], version=version)
                with tls_connect(addr, context, "a.test") as sock:
                    self.assertEqual(sock.version(), name)
                    self.assertEqual(sock.selected_alpn_protocol(), "http/1.1")
                    resp = tls_get(sock, f"/{name}")
                self.assertEqual((resp.status, resp.body), (200, f"plain GET /{name}\n".encode()), resp.raw)
        with self.subTest("only h2 offered: no ALPN, still HTTP/1.1"):
            with tls_connect(addr, client_context(ca, alpn=["h2"]), "a.test") as sock:
                self.assertIsNone(sock.selected_alpn_protocol())
                self.assertEqual(tls_get(sock, "/h2-only").status, 200)
        with self.subTest("keep-alive: several requests on one TLS connection"):
            with tls_connect(addr, client_context(ca), "a.test") as sock:
                for i in range(3):
                    sock.sendall(f"GET /ka/{i} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = sock.recv(1)
                        self.assertTrue(chunk, f"EOF after {head!r}")
                        head += chunk
                    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
                    resp = parse_http_response(head + recv_exactly(sock, length))
                    self.assertEqual((resp.status, resp.body), (200, f"plain GET /ka/{i}\n".encode()))

    def test_a_request_head_that_stalls_over_tls_gets_408_then_the_close(self):
        plain = self.plain_backend("plain")
        tls = {"certificates": [self.certs.pair("a")]}
        listener = http_listener("web", [route("back", path_prefix="/")], tls=tls, timeouts={"request_headers": "500ms"})
        drover = self.start_drover(make_config([listener], [static_cluster("back", [plain])]))
        with tls_connect(drover.listener_addr("web"), client_context(self.certs.path("ca.pem")), "a.test") as sock:
            started = time.monotonic()
            sock.sendall(b"GET /stalled HTTP/1.1\r\nHost: a.te")
            raw = recv_all(sock)   # to the close_notify that follows the answer
            elapsed = time.monotonic() - started
        resp = parse_http_response(raw)
        self.assertEqual((resp.status, resp.headers.get("drover-error")), (408, "request_header_timeout"), raw)
        self.assertIn(b"request header not received in time", resp.body)
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 5.0)
        self.assertEqual(plain.requests, 0)
        drover.wait_metric("drover_http_local_responses_total", {"listener": "web", "reason": "request_header_timeout"},
                           lambda v: v == 1, default=0)

    def test_a_tls_client_that_leaves_while_its_request_waits_frees_the_backend_within_a_second(self):
        # A leaving TLS client sends close_notify before its FIN: the unread alert must not hide the FIN.
        def responder(handler):
            if handler.path.startswith("/slow"):
                time.sleep(8)
            return 200, {}, b"late\n"
        plain = self.backend(HttpBackend("plain", responder=responder))
        tls = {"certificates": [self.certs.pair("a")]}
        listener = http_listener("web", [route("back", path_prefix="/")], tls=tls)
        cluster = static_cluster("back", [plain], retries={"attempts": 0, "per_try_timeout": "20s"})
        drover = self.start_drover(make_config([listener], [cluster]))
        sock = tls_connect(drover.listener_addr("web"), client_context(self.certs.path("ca.pem")), "a.test")
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
        wait_until(lambda: self.requests_active(drover) == 1, 5, message="the request in flight")
        time.sleep(0.2)
        sock.setblocking(False)
        with self.assertRaises(ssl.SSLWantReadError):
            sock.unwrap()   # sends close_notify; the peer's is not awaited
        sock.shutdown(socket.SHUT_WR)   # then the FIN
        self.addCleanup(sock.close)
        self.assert_ends_when_its_client_left(drover, plain.addr)

    def test_an_idle_tls_keepalive_is_closed_after_idle_grace_when_drover_drains(self):
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [self.certs.pair("a")],
                                               shutdown={"idle_grace": "300ms", "drain_timeout": "20s"})
        with tls_connect(addr, client_context(self.certs.path("ca.pem")), "a.test") as sock:
            sock.sendall(b"GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n")   # keep-alive
            got = recv_head(sock)
            head, _, body = got.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            body += recv_exactly(sock, length - len(body))
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            start = time.monotonic()
            drover.send_signal(signal.SIGTERM)
            self.assertEqual(recv_all(sock), b"")   # close_notify, then the FIN: no bytes, no error
            self.assertLess(time.monotonic() - start, 3, "closed after idle_grace, not at drain_timeout")
        self.assertEqual(drover.wait_exit(10), 0)
        self.assertLess(time.monotonic() - start, 5)

    def test_an_upload_refused_over_tls_gets_its_413_not_a_reset(self):
        # Drover answers 413 at the limit while curl is still sending. Closing then, with the rest of
        # the upload arriving, would reset the connection, and the reset often destroyed the answer
        # before curl read it ("Send failure"); after the close_notify the bytes are read and dropped.
        origin = self.origin()   # reads the whole body before it answers
        tls = {"certificates": [self.certs.pair("a")]}
        listener = http_listener("web", [route("back", path_prefix="/")], tls=tls,
                                 limits={"max_request_body_bytes": "1MiB"})
        drover = self.start_drover(make_config([listener], [static_cluster("back", [origin])]))
        upload = os.path.join(self.temp_dir("upload"), "body")
        with open(upload, "wb") as f:
            f.write(b"x" * (32 << 20))
        for attempt in range(4):
            with self.subTest(attempt=attempt):
                code, body, status, err = self.curl(drover.listener_addr("web")[1], "a.test", "/up", "-X", "POST",
                                                    "-H", "Transfer-Encoding: chunked", "-T", upload)
                self.assertEqual((code, status), (0, "413 1.1"), err)
                self.assertIn("request body larger than the limit", body)

    def tcp_tls_front(self, backend, **listener_extra):
        config = make_config([tcp_listener("front", "back", tls={"certificates": [self.certs.pair("a")]},
                                           **listener_extra)],
                             [static_cluster("back", [backend])])
        drover = self.start_drover(config)
        raw = socket.create_connection(drover.listener_addr("front"), timeout=20)
        context = client_context(self.certs.path("ca.pem"))
        context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)   # a bare FIN must be an error
        sock = context.wrap_socket(raw, server_hostname="a.test", suppress_ragged_eofs=False)
        self.addCleanup(sock.close)
        return drover, sock

    def test_a_tcp_listener_ends_a_tls_stream_with_close_notify(self):
        # The backend sends its bytes and closes: the client must see TLS's end (close_notify), not a
        # bare FIN, which OpenSSL 3 clients report as "unexpected EOF" (a possibly cut stream).
        data = os.urandom(1 << 20)

        def source(conn, _backend):
            conn.sendall(data)
            conn.close()
        _, sock = self.tcp_tls_front(self.backend(ScriptedBackend(source)))
        got = bytearray()
        while True:
            chunk = sock.recv(65536)   # raises SSLEOFError on a ragged end
            if not chunk:
                break
            got += chunk
        self.assertEqual(bytes(got), data)

    def test_a_slow_tls_reader_on_a_tcp_listener_is_not_cut_by_the_idle_timeout(self):
        data = os.urandom(16 << 20)
        _, sock = self.tcp_tls_front(self.backend(ScriptedBackend(sending_script(data))), timeouts={"idle": "100ms"})
        started = time.monotonic()
        got = read_slowly(sock)   # never 100 ms without reading
        self.assertEqual(len(got), len(data), f"cut after {time.monotonic() - started:.1f}s")
        self.assertEqual(got, data)

    def test_client_certificates_are_required_with_client_ca(self):
        plain = self.origin()
        tls = {"certificates": [self.certs.pair("a")], "client_ca": self.certs.path("ca.pem")}
        drover = self.start_drover(make_config([http_listener("web", [route("back", path_prefix="/")], tls=tls)],
                                               [static_cluster("back", [plain])]))
        addr = drover.listener_addr("web")
        ca = self.certs.path("ca.pem")
        with_cert = client_context(ca)
        with_cert.load_cert_chain(self.certs.path("client.pem"), self.certs.path("client.key"))
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with self.subTest(version=name):
                context = client_context(ca, version=version)
                context.load_cert_chain(self.certs.path("client.pem"), self.certs.path("client.key"))
                with tls_connect(addr, context, "a.test") as sock:
                    # The backend learns who it is (X-Forwarded-Client-Cert, as Envoy sends it); what a
                    # client says itself is dropped.
                    sock.sendall(f"GET /{name} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
                                 "X-Forwarded-Client-Cert: Subject=\"CN=admin\"\r\n\r\n".encode())
                    self.assertEqual(parse_http_response(recv_all(sock)).status, 200)
                sent = plain.requests[-1].header_values("X-Forwarded-Client-Cert")
                self.assertEqual(len(sent), 1, sent)
                self.assertRegex(sent[0], r'^Hash=[0-9a-f]{64};Subject="CN=client\.test"$')
                # Without one: refused (TLS 1.3 says so after the client's handshake, at its first read).
                with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                    with tls_connect(addr, client_context(ca, version=version), "a.test") as sock:
                        tls_get(sock, "/no-cert")
                # One from another issuer: refused too.
                rogue = client_context(ca, version=version)
                rogue.load_cert_chain(self.certs.path("self.pem"), self.certs.path("self.key"))
                with self.assertRaises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
                    with tls_connect(addr, rogue, "a.test") as sock:
                        tls_get(sock, "/rogue")
        self.assertEqual(len(plain.requests), 2)
        self.assertGreaterEqual(self.handshakes(drover, "failed"), 4)
        listener = drover.admin_json("/config")["listeners"][0]
        self.assertEqual(listener["tls"]["client_ca"], ca)

    def test_min_version_13_refuses_tls12_clients(self):
        plain = self.plain_backend("plain")
        tls = {"certificates": [self.certs.pair("a")], "min_version": "1.3"}
        drover = self.start_drover(make_config([http_listener("web", [route("back", path_prefix="/")], tls=tls)],
                                               [static_cluster("back", [plain])]))
        addr = drover.listener_addr("web")
        ca = self.certs.path("ca.pem")
        with self.assertRaises(ssl.SSLError):
            tls_connect(addr, client_context(ca, version=ssl.TLSVersion.TLSv1_2), "a.test").close()
        with tls_connect(addr, client_context(ca), "a.test") as sock:
            self.assertEqual(sock.version(), "TLSv1.3")
            self.assertEqual(tls_get(sock, "/").status, 200)

    def test_a_client_cannot_set_x_forwarded_client_cert_itself(self):
        origin = self.origin()
        _, addr = self.tls_listener_proxy(origin, [self.certs.pair("a")])   # no client_ca
        with tls_connect(addr, client_context(self.certs.path("ca.pem")), "a.test") as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n"
                         b"X-Forwarded-Client-Cert: Subject=\"CN=admin\"\r\n\r\n")
            self.assertEqual(parse_http_response(recv_all(sock)).status, 200)
        self.assertEqual(origin.requests[-1].header_values("X-Forwarded-Client-Cert"), [])

    def test_requests_over_tls_are_forwarded_with_x_forwarded_proto_https(self):
        origin = self.origin()
        _, addr = self.tls_listener_proxy(origin, [self.certs.pair("a")])
        with tls_connect(addr, client_context(self.certs.path("ca.pem")), "a.test") as sock:
            sock.sendall(b"GET /p HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n")
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
        self.assertEqual(parse_http_response(raw).status, 200, raw)
        (request,) = origin.requests
        self.assertEqual(request.header_values("X-Forwarded-Proto"), ["https"])   # the client's own is dropped

    def test_certificate_expiry_is_a_metric_and_a_soon_expiring_one_is_logged(self):
        plain = self.plain_backend("plain")
        drover, _ = self.tls_listener_proxy(plain, [self.certs.pair("a"), self.certs.pair("b")])
        for index, name in enumerate(("a", "b")):
            path = self.certs.path(f"{name}.pem")
            not_after = ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(path)["notAfter"])
            self.assertEqual(drover.metric_value("drover_listener_tls_certificate_expiry_timestamp_seconds",
                                                 {"listener": "web", "certificate": path}), not_after)
            # The test certificates are valid for two days: inside the 14 days that are worth a warning.
            drover.wait_for_log(rf"config: \S+:\d+:\d+: warning: listeners\[0\]\.tls\.certificates\[{index}\]: "
                                rf"certificate {re.escape(path)} \(or its chain\) expires in [12]\.\d days", 5)
        self.assertEqual(drover.metric_type("drover_listener_tls_certificate_expiry_timestamp_seconds"), "gauge")

    def test_expired_and_expiring_client_cas_are_warned_about(self):
        # A CA of client_ca that has expired makes every client certificate it issued fail; one
        # about to expire soon will. Each is named; the bundle still loads and the valid CA works.
        c = self.certs
        c.expired_ca("old-ca", "Old Client CA")
        with open(c.path("bundle.pem"), "wb") as f:
            f.write(c.read("old-ca.pem") + c.read("ca.pem"))
        tls = {"certificates": [c.pair("a")], "client_ca": c.path("bundle.pem")}
        drover = self.start_drover(make_config([http_listener("web", [route("back", path_prefix="/")], tls=tls)],
                                               [static_cluster("back", [self.origin()])]))
        bundle = re.escape(c.path("bundle.pem"))
        drover.wait_for_log(rf"config: \S+:\d+:\d+: warning: listeners\[0\]\.tls\.client_ca: client_ca {bundle}: "
                            r"CA /CN=Old Client CA expired \d+\.\d days ago: client certificates it issued fail "
                            r"verification", 5)
        drover.wait_for_log(rf"warning: listeners\[0\]\.tls\.client_ca: client_ca {bundle}: "
                            r"CA /CN=Drover Test CA expires in [12]\.\d days", 5)
        context = client_context(c.path("ca.pem"))
        context.load_cert_chain(c.path("client.pem"), c.path("client.key"))
        with tls_connect(drover.listener_addr("web"), context, "a.test") as sock:
            self.assertEqual(tls_get(sock, "/").status, 200)

    def test_certificate_expiry_counts_the_chain(self):
        # A leaf valid for two days under an intermediate valid for one: clients refuse the chain when
        # the intermediate expires, so that is the date that counts.
        c = self.certs
        c.leaf("int", "Drover Test Intermediate", None, days=1, intermediate=True)
        c.leaf("leaf-only", "chained.test", "DNS:chained.test", issuer="int")
        with open(c.path("chained.pem"), "wb") as f:
            f.write(c.read("leaf-only.pem") + c.read("int.pem"))
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [{"cert": c.path("chained.pem"), "key": c.path("leaf-only.key")}])
        intermediate = ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(c.path("int.pem"))["notAfter"])
        leaf = ssl.cert_time_to_seconds(ssl._ssl._test_decode_cert(c.path("leaf-only.pem"))["notAfter"])
        self.assertLess(intermediate, leaf)
        self.assertEqual(drover.metric_value("drover_listener_tls_certificate_expiry_timestamp_seconds",
                                             {"listener": "web", "certificate": c.path("chained.pem")}), intermediate)
        with tls_connect(addr, client_context(c.path("ca.pem")), "chained.test") as sock:   # the chain is served
            self.assertEqual(tls_get(sock, "/").status, 200)

    def test_sessions_resume_and_are_counted(self):
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [self.certs.pair("a"), self.certs.pair("b")])
        ca = self.certs.path("ca.pem")
        expected_resumed = 0
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            for server_name in ("a.test", "x.b.test"):
                with self.subTest(version=name, sni=server_name):
                    context = client_context(ca, version=version)
                    with tls_connect(addr, context, server_name) as first:
                        self.assertFalse(first.session_reused)
                        self.assertEqual(tls_get(first, "/first").status, 200)   # TLS 1.3 tickets come after the handshake
                        session = first.session
                    self.assertIsNotNone(session)
                    before = drover.metric_value("drover_listener_tls_resumed_total", {"listener": "web"}, default=0)
                    with tls_connect(addr, context, server_name, session=session) as second:
                        self.assertTrue(second.session_reused, f"{name} {server_name}: not resumed")
                        want = "b.test" if server_name.endswith(".b.test") else "a.test"
                        self.assertEqual(common_name(second.getpeercert()), want)
                        resp = tls_get(second, "/second")
                        self.assertEqual(resp.status, 200, resp.raw)
                    expected_resumed += 1
                    drover.wait_metric("drover_listener_tls_resumed_total", {"listener": "web"},
                                       lambda v: v is not None and v >= before + 1, timeout=5)
        self.assertEqual(drover.metric_type("drover_listener_tls_resumed_total"), "counter")
        self.assertEqual(drover.metric_value("drover_listener_tls_resumed_total", {"listener": "web"}),
                         expected_resumed)
        # A reload that changes nothing keeps the certificates (and so the sessions) as they are.
        context = client_context(ca, version=ssl.TLSVersion.TLSv1_2)
        with tls_connect(addr, context, "a.test") as first:
            tls_get(first, "/before-reload")
            session = first.session
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        with tls_connect(addr, context, "a.test", session=session) as second:
            self.assertTrue(second.session_reused, "a reload without changes lost the TLS sessions")

    def test_a_session_resumes_only_under_the_certificate_it_was_made_with(self):
        # RFC 6066 section 3: a session made for one name must not resume for another, which would
        # give the client a certificate that does not cover the name it asked for.
        plain = self.plain_backend("plain")
        _, addr = self.tls_listener_proxy(plain, [self.certs.pair("a"), self.certs.pair("b")])
        ca = self.certs.path("ca.pem")
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            context = client_context(ca, version=version)
            context.check_hostname = False   # a wrongly resumed session must show, not fail the test early
            for made, resumed, want, reused in (("a.test", "x.b.test", "b.test", False),
                                                ("x.b.test", "a.test", "a.test", False),
                                                ("x.b.test", "y.b.test", "b.test", True)):   # one certificate
                with self.subTest(version=name, made=made, resumed=resumed):
                    with tls_connect(addr, context, made) as first:
                        self.assertEqual(tls_get(first, "/first").status, 200)   # TLS 1.3 tickets come after
                        session = first.session
                    with tls_connect(addr, context, resumed, session=session) as second:
                        self.assertEqual(second.session_reused, reused)
                        self.assertEqual(common_name(second.getpeercert()), want)
                        self.assertEqual(tls_get(second, "/second").status, 200)

    def test_plain_text_to_a_tls_listener_is_not_proxied(self):
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [self.certs.pair("a")])
        before = self.handshakes(drover, "failed")
        # Plain HTTP (http:// to an https:// port) gets a plain 400 saying so, as NGINX answers.
        sock = self.connect(addr, timeout=5)
        sock.sendall(b"GET /plain HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        resp = parse_http_response(recv_all(sock))
        self.assertEqual((resp.status, resp.headers.get("drover-error")), (400, "bad_request"), resp.raw)
        self.assertIn(b"plain HTTP sent to a TLS port", resp.body)
        self.assertIn("date", {k.lower() for k in resp.headers})   # as every local answer has
        # A request answered like any other local one: counted with the listener's requests.
        drover.wait_metric("drover_http_requests_total", {"listener": "web", "code_class": "4xx"}, lambda v: v == 1)
        # Other bytes that are no ClientHello get nothing.
        sock = self.connect(addr, timeout=5)
        sock.sendall(b"\x00\x01not a client hello at all\r\n\r\n")
        got = b""
        try:
            got = recv_all(sock)   # a TLS alert at most, then the close
        except (ConnectionResetError, ConnectionAbortedError):
            pass
        self.assertNotIn(b"HTTP/", got)
        drover.wait_metric("drover_listener_tls_handshakes_total", {"listener": "web", "result": "failed"},
                           lambda v: v is not None and v >= before + 2, timeout=5)
        self.assertEqual(plain.requests, 0)
        # A client that trusts nothing it is shown also fails its handshake: counted too.
        with self.assertRaises(ssl.SSLError):
            tls_connect(addr, client_context(self.certs.path("self.pem")), "a.test").close()
        drover.wait_metric("drover_listener_tls_handshakes_total", {"listener": "web", "result": "failed"},
                           lambda v: v is not None and v >= before + 3, timeout=5)
        # And the listener still serves TLS clients.
        with tls_connect(addr, client_context(self.certs.path("ca.pem")), "a.test") as good:
            self.assertEqual(tls_get(good, "/after").status, 200)
        self.assertEqual(plain.requests, 1)

    def test_a_tcp_listener_terminates_tls_and_relays_bytes(self):
        echo = self.echo_backend()
        config = make_config([tcp_listener("front", "echo", tls={"certificates": [self.certs.pair("a"),
                                                                              self.certs.pair("b")]})],
                             [static_cluster("echo", [echo])])
        drover = self.start_drover(config)
        addr = drover.listener_addr("front")
        ca = self.certs.path("ca.pem")
        data = os.urandom(300_000)
        for server_name, want in (("a.test", "a.test"), ("q.b.test", "b.test")):
            with self.subTest(sni=server_name):
                with tls_connect(addr, client_context(ca, alpn=["http/1.1"]), server_name) as sock:
                    self.assertEqual(common_name(sock.getpeercert()), want)
                    self.assertIsNone(sock.selected_alpn_protocol(), "ALPN is for http listeners")
                    self.assertEqual(tls_roundtrip(sock, b"hello over tls\n"), b"hello over tls\n")
                    self.assertEqual(tls_roundtrip(sock, data), data)
        wait_until(lambda: echo.bytes_received == 2 * (len(data) + 15), 5,
                   message=lambda: f"echo got {echo.bytes_received} bytes")
        self.assertGreaterEqual(self.handshakes(drover, "ok", "front"), 2)
        # Plain bytes never reach the backend.
        connections = echo.connections
        sock = self.connect(addr, timeout=5)
        sock.sendall(b"not a client hello\r\n" * 4)
        try:
            recv_all(sock)
        except (ConnectionResetError, ConnectionAbortedError):
            pass
        drover.wait_metric("drover_listener_tls_handshakes_total", {"listener": "front", "result": "failed"},
                           lambda v: v is not None and v >= 1, timeout=5)
        self.assertEqual(echo.connections, connections)


# --------------------------------------------------------------------------------------------------
# Clusters speaking TLS to their hosts


class UpstreamTlsTest(TlsTestCase):

    def assertTlsFailure(self, resp, backend, *details):
        self.assertLocalResponse(resp, "upstream_connect_failed")
        self.assertIn(f"TLS handshake with {backend.addr} failed: certificate verify failed: ", resp.text)
        for detail in details:
            self.assertRegex(resp.text, detail)

    def test_https_backend_with_sni_and_verification(self):
        secure = self.https_backend("secure", "a")
        _, addr = self.upstream_tls_proxy(secure, {"sni": "a.test", "ca": self.certs.path("ca.pem")})
        resp = self.get(addr, "/hello")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json(), {"backend": "secure", "path": "/hello", "sni": "a.test", "client_cn": None})
        # Keep-alive to the client, and more requests: all answered.
        conn = self.client(addr)
        for i in range(3):
            self.assertEqual(conn.request("GET", f"/{i}").status, 200)

    def test_a_client_that_leaves_while_a_tls_backend_thinks_frees_the_backend_within_a_second(self):
        # The wait for a TLS backend's answer looks at the client every second too (the TLS read is
        # cancelled and started again), and a client that stays still gets a slow answer.
        secure = self.https_backend("secure", "a")
        drover, addr = self.upstream_tls_proxy(secure, {"sni": "a.test", "ca": self.certs.path("ca.pem")},
                                               retries={"attempts": 0, "per_try_timeout": "20s"})
        for how in ("close", "reset"):
            with self.subTest(how=how):
                sock = socket.create_connection(addr, timeout=5)
                sock.sendall(b"GET /slow?delay=8 HTTP/1.1\r\nHost: a.test\r\n\r\n")
                wait_until(lambda: self.requests_active(drover) == 1, 5, message="the request in flight")
                time.sleep(0.2)
                if how == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                self.assert_ends_when_its_client_left(drover, secure.addr)
        resp = self.get(addr, "/slow?delay=2.3", timeout=6)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["path"], "/slow?delay=2.3")

    def test_an_ip_literal_sni_is_checked_against_the_ip_san_and_not_sent(self):
        secure = self.https_backend("secure", "a")
        _, addr = self.upstream_tls_proxy(secure, {"sni": "127.0.0.1", "ca": self.certs.path("ca.pem")})
        resp = self.get(addr, "/ip")
        self.assertEqual(resp.status, 200, resp)
        self.assertIsNone(resp.json()["sni"], "an IP literal must not go out as SNI")
        # b.test's certificate has no IP SAN: the same setting fails there.
        other = self.https_backend("other", "b")
        _, addr = self.upstream_tls_proxy(other, {"sni": "127.0.0.1", "ca": self.certs.path("ca.pem")})
        self.assertTlsFailure(self.get(addr, "/ip"), other, "IP address mismatch")

    def test_sni_not_matching_the_host_certificate_is_a_502_saying_why(self):
        secure = self.https_backend("secure", "a")
        _, addr = self.upstream_tls_proxy(secure, {"sni": "b.test", "ca": self.certs.path("ca.pem")})
        started = time.monotonic()
        resp = self.get(addr, "/mismatch")
        self.assertTlsFailure(resp, secure, "hostname mismatch")
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(secure.requests, [])
        self.assertEqual(set(secure.snis), {"b.test"})
        self.assertEqual(secure.handshakes, [])   # drover gave up before the handshake completed

    def test_a_certificate_from_another_issuer_is_a_502_and_verify_false_accepts_it(self):
        rogue = self.https_backend("rogue", "self")
        _, addr = self.upstream_tls_proxy(rogue, {"sni": "a.test", "ca": self.certs.path("ca.pem")})
        self.assertTlsFailure(self.get(addr, "/"), rogue, "self.signed certificate")
        self.assertEqual(rogue.requests, [])
        _, addr = self.upstream_tls_proxy(rogue, {"sni": "a.test", "verify": False})
        resp = self.get(addr, "/unverified")
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.json()["sni"], "a.test")

    def test_without_ca_the_system_cas_are_used(self):
        secure = self.https_backend("secure", "a")
        _, addr = self.upstream_tls_proxy(secure, {"sni": "a.test"})
        self.assertTlsFailure(self.get(addr, "/"), secure, "unable to get local issuer certificate")
        self.assertEqual(secure.requests, [])

    def test_client_certificate_for_a_backend_that_requires_one(self):
        mtls = self.https_backend("mtls", "a", client_ca=self.certs.path("ca.pem"))
        base = {"sni": "a.test", "ca": self.certs.path("ca.pem")}
        with self.subTest("no client certificate"):
            # TLS 1.3: the client's handshake is over before the server checks its certificate, so
            # drover learns of the refusal when it reads the response.
            _, addr = self.upstream_tls_proxy(mtls, base)
            resp = self.get(addr, "/no-cert")
            self.assertLocalResponse(resp, "bad_upstream_response")
            self.assertIn(f"TLS error from backend {mtls.addr} before its response: ", resp.text)
            self.assertIn("certificate required", resp.text)   # OpenSSL's name for the backend's alert
            self.assertEqual(mtls.requests, [])
            wait_until(lambda: mtls.handshake_errors, 3, message="the backend refused the handshake")
        with self.subTest("no client certificate, TLS 1.2: the handshake itself fails"):
            mtls12 = self.https_backend("mtls12", "a", client_ca=self.certs.path("ca.pem"),
                                        max_version=ssl.TLSVersion.TLSv1_2)
            _, addr = self.upstream_tls_proxy(mtls12, base)
            resp = self.get(addr, "/no-cert-12")
            self.assertLocalResponse(resp, "upstream_connect_failed")
            self.assertIn(f"TLS handshake with {mtls12.addr} failed: ", resp.text)
            self.assertEqual(mtls12.requests, [])
        with self.subTest("with the client certificate"):
            _, addr = self.upstream_tls_proxy(mtls, {**base, "cert": self.certs.path("client.pem"),
                                                     "key": self.certs.path("client.key")})
            resp = self.get(addr, "/with-cert")
            self.assertEqual(resp.status, 200, resp)
            self.assertEqual(resp.json()["client_cn"], "client.test")

    def test_new_upstream_connections_resume_the_tls_session(self):
        # The backend closes after every answer, so each request needs a new TLS connection.
        secure = self.https_backend("secure", "a", close_each=True)
        _, addr = self.upstream_tls_proxy(secure, {"sni": "a.test", "ca": self.certs.path("ca.pem")})
        for i in range(3):
            resp = self.get(addr, f"/{i}")
            self.assertEqual(resp.status, 200, resp)
        wait_until(lambda: len(secure.handshakes) >= 3, 3, message="three handshakes")
        self.assertFalse(secure.handshakes[0]["reused"], secure.handshakes)
        self.assertTrue(any(h["reused"] for h in secure.handshakes[1:]), secure.handshakes)

    def test_a_tls_backend_that_refuses_an_upload_early_has_its_answer_delivered(self):
        # It answers 413 after the head and closes under the body: the client gets that 413, not a
        # 502 for the reset Drover's next body write finds.
        refusing = self.backend(TlsRefusingBackend(
            self.certs.path("a.pem"), self.certs.path("a.key"),
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"))
        drover, addr = self.upstream_tls_proxy(refusing, {"sni": "a.test", "ca": self.certs.path("ca.pem")},
                                               retries={"attempts": 0})
        size = 16 << 20
        conn = self.client(addr, timeout=15)
        conn.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        sender = threading.Thread(target=conn.send_tolerant, args=(b"x" * size,), daemon=True)
        sender.start()
        self.addCleanup(sender.join, 15)
        resp = conn.read_response("POST", timeout=10)
        self.assertEqual((resp.status, resp.body), (413, b"too large"), resp)
        self.assertIn("close", resp.tokens("connection"))
        self.assertEqual(drover.metric_value("drover_http_local_responses_total",
                                             {"listener": "web", "reason": "bad_upstream_response"}, default=0), 0)

    def test_a_tcp_listener_relays_to_a_tls_host(self):
        echo = self.backend(TlsEchoBackend(self.certs.path("b.pem"), self.certs.path("b.key")))
        config = make_config([tcp_listener("front", "secure")],
                             [static_cluster("secure", [echo], tls={"sni": "db.b.test", "ca": self.certs.path("ca.pem")})])
        drover = self.start_drover(config)
        sock = self.connect(drover.listener_addr("front"), timeout=5)
        data = os.urandom(100_000)
        self.assertEqual(roundtrip(sock, data), data)
        self.assertEqual(echo.snis, ["db.b.test"])
        # With a name the certificate does not cover, the connection gets nowhere.
        config = make_config([tcp_listener("front", "secure")],
                             [static_cluster("secure", [echo], tls={"sni": "a.test", "ca": self.certs.path("ca.pem")})])
        drover = self.start_drover(config)
        sock = self.connect(drover.listener_addr("front"), timeout=5)
        try:
            got = recv_all(sock)
        except (ConnectionResetError, ConnectionAbortedError):
            got = b""
        self.assertEqual(got, b"")
        self.assertEqual(echo.bytes_received, len(data))


# --------------------------------------------------------------------------------------------------
# Health checks over TLS


class TlsHealthTest(TlsTestCase):

    def checked_config(self, backend, probe, tls=None):
        extra = {"tls": tls} if tls is not None else {}
        clusters = [static_cluster("app", [backend], self_healing=True,
                                   health_check={**FAST_CHECK, **probe}, **extra)]
        return make_config([http_listener("web", [route("app", path_prefix="/")])], clusters)

    def checked_proxy(self, backend, probe, tls=None):
        drover = self.start_drover(self.checked_config(backend, probe, tls))
        return drover, drover.listener_addr("web")

    def wait_host(self, drover, backend, pred, what):
        box = [None]

        def check():
            box[0] = self.host_state(drover, "app", backend.addr)
            return pred(box[0])
        wait_until(check, 8, message=lambda: f"host {what}: {box[0]}")
        return box[0]

    def wait_state(self, drover, backend, state):
        return self.wait_host(drover, backend, lambda h: h["state"] == state, state)

    def wait_failing(self, drover, backend, failures=2):
        """A host whose checks have failed `failures` times in a row (never passed: state `unknown`)."""
        return self.wait_host(drover, backend, lambda h: h["consecutive_check_failures"] >= failures,
                              f"failed {failures} checks")

    def test_https_probe_of_a_tls_cluster(self):
        secure = self.https_backend("secure", "a")
        drover, addr = self.checked_proxy(secure, {"http": {"path": "/healthz"}},
                                          {"sni": "a.test", "ca": self.certs.path("ca.pem")})
        h = self.wait_state(drover, secure, "healthy")
        self.assertTrue(h["eligible"], h)
        self.assertIn("200", h["last_check"]["detail"], h)
        self.assertTrue(h["last_check"]["passed"], h)
        self.assertEqual(self.get(addr, "/").status, 200)
        self.assertTrue(secure.handshakes, "the probe never reached the backend over TLS")
        self.assertEqual({hs["sni"] for hs in secure.handshakes}, {"a.test"})

    def test_a_probe_failing_verification_keeps_the_host_out_and_says_why(self):
        for probe in ({"http": {"path": "/healthz"}}, {"tls": {}}):
            with self.subTest(probe=probe):
                secure = self.https_backend("secure", "a")
                drover, addr = self.checked_proxy(secure, probe, {"sni": "b.test", "ca": self.certs.path("ca.pem")})
                h = self.wait_failing(drover, secure)
                self.assertNotEqual(h["state"], "healthy", h)
                self.assertFalse(h["last_check"]["passed"], h)
                self.assertIn("certificate verify failed: hostname mismatch", h["last_check"]["detail"], h)
                self.assertIn("certificate verify failed", h["why"], h)
                self.assertEqual(secure.requests, [])

    def test_a_healthy_host_turns_unhealthy_when_its_certificate_no_longer_verifies(self):
        secure = self.https_backend("secure", "a")
        good = {"sni": "a.test", "ca": self.certs.path("ca.pem")}
        drover, addr = self.checked_proxy(secure, {"http": {"path": "/healthz"}}, good)
        self.wait_state(drover, secure, "healthy")
        with open(drover.config_path, "w", encoding="utf-8") as f:
            f.write(to_yaml(self.checked_config(secure, {"http": {"path": "/healthz"}}, {**good, "sni": "b.test"})))
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        h = self.wait_state(drover, secure, "unhealthy")   # (still eligible: a lone host is used in panic)
        self.assertIn("certificate verify failed: hostname mismatch", h["last_check"]["detail"], h)
        self.assertIn("certificate verify failed", h["why"], h)

    def test_tls_probe_of_a_tls_cluster_passes(self):
        secure = self.https_backend("secure", "b")
        drover, _ = self.checked_proxy(secure, {"tls": {}}, {"sni": "x.b.test", "ca": self.certs.path("ca.pem")})
        h = self.wait_state(drover, secure, "healthy")
        self.assertTrue(h["last_check"]["passed"], h)
        self.assertEqual({hs["sni"] for hs in secure.handshakes}, {"x.b.test"})

    def test_tls_probe_sees_a_tls13_backend_refuse_the_client_certificate(self):
        # TLS 1.3: the backend checks the client certificate after the client's side of the handshake
        # is over, and refuses with an alert only a read sees; the probe must not call it healthy.
        mtls = self.https_backend("mtls", "a", client_ca=self.certs.path("ca.pem"))
        base = {"sni": "a.test", "ca": self.certs.path("ca.pem")}
        drover, _ = self.checked_proxy(mtls, {"tls": {}}, base)
        h = self.wait_failing(drover, mtls)
        self.assertNotEqual(h["state"], "healthy", h)
        self.assertIn("certificate required", h["last_check"]["detail"], h)
        # Not even the first check passed (this backend sends its alert, then resets the connection,
        # and the probe's close_notify finds the reset before it reads the alert).
        events = [e["event"] for e in drover.admin_json(f"/clusters/app/{mtls.addr}")["history"]]
        self.assertNotIn("healthy", events)
        with_cert = {**base, "cert": self.certs.path("client.pem"), "key": self.certs.path("client.key")}
        drover, _ = self.checked_proxy(mtls, {"tls": {}}, with_cert)
        h = self.wait_state(drover, mtls, "healthy")
        self.assertTrue(h["last_check"]["passed"], h)

    def test_a_tls_cluster_checks_with_its_handshake_by_default(self):
        # No probe given: a TLS cluster's check is the handshake traffic does, so a host whose
        # certificate does not verify is out of rotation by its checks (a TCP check would pass).
        secure = self.https_backend("secure", "a")
        drover, _ = self.checked_proxy(secure, {}, {"sni": "b.test", "ca": self.certs.path("ca.pem")})
        h = self.wait_failing(drover, secure)
        self.assertNotEqual(h["state"], "healthy", h)
        self.assertIn("certificate verify failed", h["last_check"]["detail"], h)
        (cluster,) = drover.admin_json("/config")["clusters"]
        self.assertIn("tls", cluster["health_check"], cluster["health_check"])

    def test_tls_probe_without_cluster_tls_only_needs_a_handshake(self):
        # Self-signed: nothing is verified, a TLS stack answering is enough.
        rogue = self.https_backend("rogue", "self")
        drover, _ = self.checked_proxy(rogue, {"tls": {}})
        h = self.wait_state(drover, rogue, "healthy")
        self.assertTrue(h["eligible"], h)
        # A plain HTTP backend does not speak TLS: the probe fails.
        plain = self.plain_backend("plain")
        drover, _ = self.checked_proxy(plain, {"tls": {}})
        h = self.wait_failing(drover, plain)
        self.assertNotEqual(h["state"], "healthy", h)
        self.assertIn("TLS", h["last_check"]["detail"], h)


# --------------------------------------------------------------------------------------------------
# Config errors: --check and start


class TlsConfigTest(TlsTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.temp_dir("drover-tls-check-")
        for name in ("ca.pem", "a.pem", "a.key", "b.pem", "b.key", "client.pem", "client.key"):
            shutil.copy(self.certs.path(name), os.path.join(self.dir, name))
        with open(os.path.join(self.dir, "garbage.pem"), "w", encoding="ascii") as f:
            f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")

    def config(self, listener_tls: str, cluster_tls: str = "", protocol: str = "http") -> str:
        """A config in the temp dir; TLS blocks are YAML lines (indented to fit), file names relative."""
        listener = textwrap.dedent(f"""\
            admin:
              address: 127.0.0.1:0
            listeners:
              - name: web
                address: 127.0.0.1:0
                protocol: {protocol}
            """)
        listener += textwrap.indent(textwrap.dedent(listener_tls), "    ")
        if protocol == "http":
            listener += "    routes:\n      - { match: {}, cluster: api }\n"
        else:
            listener += "    cluster: api\n"
        cluster = textwrap.dedent("""\
            clusters:
              - name: api
                discovery: { static: [127.0.0.1:9] }
                health_check: { enabled: false }
            """)
        cluster += textwrap.indent(textwrap.dedent(cluster_tls), "    ")
        return listener + cluster

    def run_drover(self, text, *args):
        path = os.path.join(self.dir, "drover.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            # Run from elsewhere: relative file names must be resolved against the config's folder.
            return path, run_drover([*args, "-c", path], timeout=SUBPROCESS_TIMEOUT, cwd="/")
        except subprocess.TimeoutExpired as exc:
            self.fail(f"drover {args} still running after {SUBPROCESS_TIMEOUT}s; stderr:\n{exc.stderr}")

    def errors(self, text, *args):
        path, proc = self.run_drover(text, *args)
        self.assertEqual(proc.returncode, 2, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        found = []
        for line in proc.stderr.splitlines():
            m = ERROR_RE.match(line)
            if m:
                self.assertEqual(m["file"], path, line)
                found.append({"line": int(m["line"]), "path": m["path"] or "", "message": m["message"], "text": line})
        self.assertTrue(found, f"no `file:line:col: key.path: message` line in stderr:\n{proc.stderr}")
        return found

    def test_good_tls_config_with_relative_paths_passes(self):
        text = self.config("""\
            tls:
              certificates:
                - { cert: a.pem, key: a.key }
                - { cert: b.pem, key: b.key }
            """, "tls: { sni: a.test, ca: ca.pem, cert: client.pem, key: client.key }\n")
        path, proc = self.run_drover(text, "--check")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.strip(), f"{path}: ok")
        text = self.config("tls: { certificates: [{ cert: b.pem, key: b.key }] }\n",
                           "tls: { sni: b.test, verify: false }\n", protocol="tcp")
        _, proc = self.run_drover(text, "--check")
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_listener_certificate_errors_name_the_item_and_its_line(self):
        cases = [
            ("missing key", "- { cert: b.pem, key: missing.key }",
             r"cannot load key \S*missing\.key: No such file or directory"),
            ("missing cert", "- { cert: missing.pem, key: b.key }",
             r"cannot load cert \S*missing\.pem: No such file or directory"),
            ("key of another cert", "- { cert: b.pem, key: a.key }",
             r"key \S*a\.key does not match cert \S*b\.pem"),
            ("not a certificate", "- { cert: garbage.pem, key: b.key }",
             r"cannot load cert \S*garbage\.pem: \S"),
            ("a cert as the key", "- { cert: b.pem, key: b.pem }",
             r"cannot load key \S*b\.pem: \S"),
        ]
        for name, item, message in cases:
            with self.subTest(name):
                text = self.config(f"""\
                    tls:
                      certificates:
                        - {{ cert: a.pem, key: a.key }}
                        {item}
                    """)
                for args in (("--check",), ()):   # --check, and a start: the same errors, nothing started
                    errors = self.errors(text, *args)
                    self.assertEqual(len(errors), 1, [e["text"] for e in errors])
                    e = errors[0]
                    self.assertEqual(e["path"], "listeners[0].tls.certificates[1]", e["text"])
                    self.assertEqual(e["line"], line_of(text, item), e["text"])
                    self.assertRegex(e["message"], message)

    def test_client_ca_and_min_version_errors_name_their_key(self):
        cases = [
            ("missing client_ca", "client_ca: nope.pem", "listeners[0].tls.client_ca",
             r"cannot load client_ca \S*nope\.pem: No such file or directory"),
            ("not PEM", "client_ca: drover.yaml", "listeners[0].tls.client_ca", r"no PEM certificate in it"),
            ("bad min_version", "min_version: '1.1'", "listeners[0].tls.min_version",
             r"min_version must be \"1\.2\" or \"1\.3\", not '1\.1'"),
        ]
        for name, line, path, message in cases:
            with self.subTest(name):
                text = self.config(f"""\
                    tls:
                      certificates: [{{ cert: a.pem, key: a.key }}]
                      {line}
                    """)
                errors = self.errors(text, "--check")
                self.assertEqual(len(errors), 1, [e["text"] for e in errors])
                self.assertEqual(errors[0]["path"], path, errors[0]["text"])
                self.assertRegex(errors[0]["message"], message)

    def test_every_bad_certificate_is_reported(self):
        text = self.config("""\
            tls:
              certificates:
                - { cert: a.pem, key: nope.key }
                - { cert: b.pem, key: a.key }
            """)
        errors = self.errors(text, "--check")
        self.assertEqual([e["path"] for e in errors],
                         ["listeners[0].tls.certificates[0]", "listeners[0].tls.certificates[1]"],
                         [e["text"] for e in errors])

    def test_empty_certificates_is_an_error(self):
        errors = self.errors(self.config("tls: { certificates: [] }\n"), "--check")
        self.assertTrue(any("certificates" in e["path"] + e["message"] for e in errors), errors)

    def test_cluster_tls_errors_name_the_tls_block(self):
        cases = [
            ("missing ca", "tls: { sni: a.test, ca: missing-ca.pem }",
             "clusters[0].tls", r"cannot load ca \S*missing-ca\.pem: No such file or directory"),
            ("client key of another cert", "tls: { sni: a.test, ca: ca.pem, cert: client.pem, key: a.key }",
             "clusters[0].tls", r"key \S*a\.key does not match cert \S*client\.pem"),
            ("missing client key", "tls: { sni: a.test, ca: ca.pem, cert: client.pem, key: gone.key }",
             "clusters[0].tls", r"cannot load key \S*gone\.key: No such file or directory"),
            ("cert without key", "tls: { sni: a.test, cert: client.pem }",
             "clusters[0].tls", r"cert and key go together"),
            ("ca with verify false", "tls: { sni: a.test, ca: ca.pem, verify: false }",
             "clusters[0].tls", r"ca is unused with verify: false"),
            ("sni with a space", "tls: { sni: 'bad name', ca: ca.pem }",
             "clusters[0].tls.sni", r"sni 'bad name' is not a DNS name or an IP address"),
            ("empty sni", "tls: { sni: '', ca: ca.pem }",
             "clusters[0].tls.sni", r"sni '' is not a DNS name or an IP address"),
        ]
        for name, block, path, message in cases:
            with self.subTest(name):
                text = self.config("", block + "\n")
                errors = self.errors(text, "--check")
                self.assertEqual(len(errors), 1, [e["text"] for e in errors])
                e = errors[0]
                self.assertTrue(e["path"].startswith(path), e["text"])
                self.assertEqual(e["line"], line_of(text, block), e["text"])
                self.assertRegex(e["message"], message)

    def test_verification_without_sni_is_a_warning(self):
        text = self.config("", "tls: { ca: ca.pem }\n")
        path, proc = self.run_drover(text, "--check")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stderr, rf"{re.escape(path)}:{line_of(text, 'tls: { ca')}:\d+: warning: "
                                      r"clusters\[0\]\.tls: no sni: .*not their names")
        for quiet in ("tls: { sni: 10.0.0.1, ca: ca.pem }\n", "tls: { verify: false }\n"):
            with self.subTest(quiet):
                _, proc = self.run_drover(self.config("", quiet), "--check")
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertNotIn("warning", proc.stderr)

    def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(self):
        self.certs.openssl("pkey", "-in", self.certs.path("a.key"), "-aes256", "-passout", "pass:secret",
                           "-out", os.path.join(self.dir, "enc.key"))
        listener_text = self.config("tls: { certificates: [{ cert: a.pem, key: enc.key }] }\n")
        cluster_text = self.config("", "tls: { sni: a.test, ca: ca.pem, cert: a.pem, key: enc.key }\n")
        for text, path in ((listener_text, "listeners[0].tls.certificates[0]"), (cluster_text, "clusters[0].tls")):
            with self.subTest(path):
                errors = self.errors(text, "--check")
                self.assertEqual([e["path"] for e in errors], [path], [e["text"] for e in errors])
                self.assertRegex(errors[0]["message"], r"cannot load key \S*enc\.key: it is encrypted")
        # On a terminal OpenSSL would prompt for the passphrase and wait: at start, or in a reload
        # that then blocks the control loop (admin included).
        config_path = os.path.join(self.dir, "drover.yaml")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(listener_text)
        program = drover_bin()
        pid, terminal = pty.fork()
        if pid == 0:
            try:
                os.execv(program, [program, "--check", "-c", config_path])
            finally:
                os._exit(127)
        output = b""
        deadline = time.monotonic() + 10
        status = None
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([terminal], [], [], 0.2)
                chunk = b""
                if ready:
                    try:
                        chunk = os.read(terminal, 4096)
                    except OSError:   # EIO: the child is gone
                        pass
                    output += chunk
                if not chunk:
                    waited, wait_status = os.waitpid(pid, os.WNOHANG)
                    if waited:
                        status = wait_status
                        break
        finally:
            if status is None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(terminal)
        self.assertIsNotNone(status, f"drover --check still running on a terminal after 10 s: {output!r}")
        self.assertEqual(os.waitstatus_to_exitcode(status), 2, output)
        self.assertIn(b"it is encrypted", output)
        self.assertNotIn(b"pass phrase", output.lower())



# --------------------------------------------------------------------------------------------------
# Reload


class TlsReloadTest(TlsTestCase):

    def setUp(self):
        super().setUp()
        self.dir = self.temp_dir("drover-tls-reload-")

    def install(self, cert: str, key: str) -> None:
        """Puts the test certificate `cert` and key `key` (names in Certs, or raw bytes) in site.pem/site.key."""
        for target, source in (("site.pem", cert), ("site.key", key)):
            data = source if isinstance(source, bytes) else self.certs.read(source)
            with open(os.path.join(self.dir, target), "wb") as f:
                f.write(data)

    def reloads(self, drover, result):
        return drover.metric_value("drover_config_reloads_total", {"result": result}, default=0)

    def test_changed_certificate_files_are_picked_up_and_a_bad_one_is_refused(self):
        self.install("a.pem", "a.key")
        plain = self.plain_backend("plain")
        site = {"cert": os.path.join(self.dir, "site.pem"), "key": os.path.join(self.dir, "site.key")}
        drover, addr = self.tls_listener_proxy(plain, [site, self.certs.pair("b")])
        ca = self.certs.path("ca.pem")
        self.assertEqual(self.served_cn(addr, "a.test"), "a.test")
        # A connection opened before the reload keeps working afterwards.
        old = tls_connect(addr, client_context(ca), "a.test")
        self.addCleanup(old.close)

        # The config is the same; only the files changed.
        self.install("a2.pem", "a2.key")
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertEqual(self.served_cn(addr, "a.test"), "a2.test")
        self.assertEqual(self.served_cn(addr, None), "a2.test")
        self.assertEqual(self.served_cn(addr, "x.b.test"), "b.test")
        self.assertEqual(common_name(old.getpeercert()), "a.test")
        self.assertEqual(tls_get(old, "/old").status, 200)
        self.assertEqual(self.reloads(drover, "success"), 1)

        # A broken key: refused with the item's path, and the running certificate stays.
        self.install("a.pem", b"-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n")
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("listeners[0].tls.certificates[0]", resp.text)
        self.assertRegex(resp.text, r"cannot load key \S*site\.key")
        self.assertIn("drover.yaml:", resp.text)
        self.assertEqual(self.served_cn(addr, "a.test"), "a2.test")
        with tls_connect(addr, client_context(ca), "a.test") as sock:
            self.assertEqual(tls_get(sock, "/still").status, 200)
        self.assertEqual(self.reloads(drover, "failure"), 1)

        # A key of another certificate: refused too.
        self.install("a.pem", "b.key")
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 400, resp.text)
        self.assertIn("listeners[0].tls.certificates[0]", resp.text)
        self.assertEqual(self.served_cn(addr, "a.test"), "a2.test")
        with self.subTest("the mismatch is named as such"):
            self.assertRegex(resp.text, r"key \S*site\.key does not match cert \S*site\.pem")

        # Good files again, by SIGHUP this time.
        self.install("a.pem", "a.key")
        mark = drover.log_mark()
        drover.send_signal(signal.SIGHUP)
        drover.wait_for_log(r"SIGHUP: config reloaded", 5, start=mark)
        self.assertEqual(self.served_cn(addr, "a.test"), "a.test")
        self.assertEqual(self.reloads(drover, "success"), 2)
        self.assertEqual(self.reloads(drover, "failure"), 2)

    def test_changed_tls_settings_take_effect(self):
        plain = self.plain_backend("plain")
        drover, addr = self.tls_listener_proxy(plain, [self.certs.pair("a")])
        self.assertEqual(self.served_cn(addr, "b.test"), "a.test")
        config = make_config([http_listener("web", [route("back", path_prefix="/")],
                                            tls={"certificates": [self.certs.pair("b"), self.certs.pair("a")]})],
                             [static_cluster("back", [plain])])
        with open(drover.config_path, "w", encoding="utf-8") as f:
            f.write(to_yaml(config))
        resp = drover.admin_post("/reload")
        self.assertEqual(resp.status, 200, resp.text)
        self.assertEqual(self.served_cn(addr, "b.test"), "b.test")
        self.assertEqual(self.served_cn(addr, "a.test"), "a.test")
        self.assertEqual(self.served_cn(addr, None), "b.test")   # the new first is the new default


if __name__ == "__main__":
    unittest.main()
