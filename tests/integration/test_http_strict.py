"""Strict HTTP/1.1 at both edges (issue 3, "Strictness"): one test per rule.

Requests that break a rule get a local 400 (`drover-error: bad_request`) and the connection is closed,
without the request reaching the origin. Responses that break a rule become a local 502
(`drover-error: bad_upstream_response`) -- or, when the flaw is found only after the head was forwarded,
an incomplete response and a closed client connection -- and the origin connection is never reused.
Valid but unusual messages keep working."""

import threading
import unittest

from harness import (EVIL_RESPONSE, HttpTestCase, PeerClosed, RawHttpBackend, pattern_bytes, pattern_sha256, route,
                     static_cluster)

GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"


def request(start: bytes = b"GET / HTTP/1.1", *lines: bytes, body: bytes = b"") -> bytes:
    """Raw request bytes: the start line, header lines (as given), CRLF endings, then `body`."""
    return b"\r\n".join([start, *lines]) + b"\r\n\r\n" + body


HOST = b"Host: test"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


class RequestStrictnessTest(HttpTestCase):
    """Each sample is sent on a fresh client connection to one drover in front of a real origin."""

    def setUp(self):
        super().setUp()
        self.origin_ = self.origin()
        self.drover, self.addr = self.http_proxy([self.origin_])

    def assertBadRequests(self, *samples: bytes, reached_origin_ok: bool = False, reason: str = "bad_request") -> None:
        for raw in samples:
            with self.subTest(request=raw):
                heads_before = len(self.origin_.heads)
                conn = self.client(self.addr)
                conn.send_tolerant(raw)
                self.assertRejected(conn, reason)
                if not reached_origin_ok:
                    self.assertEqual(self.origin_.heads[heads_before:], [], "the bad request was forwarded")
        # The listener is still fine, and every rejection was counted.
        self.assertEqual(self.get(self.addr, "/still-serving").status, 200)
        self.drover.wait_metric("drover_http_local_responses_total", {"listener": "web", "reason": reason},
                                lambda v: v == len(samples), default=0)

    # -- message framing -----------------------------------------------------------------------------

    def test_content_length_together_with_transfer_encoding(self):
        self.assertBadRequests(
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO),
            request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Content-Length: 5", body=CHUNKED_HELLO),
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 0", b"Transfer-Encoding: chunked", body=CHUNKED_HELLO))

    def test_two_content_length_headers_even_if_equal(self):
        self.assertBadRequests(
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"))

    def test_content_length_list_value(self):
        self.assertBadRequests(
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5, 5", body=b"hello"),
            request(b"POST / HTTP/1.1", HOST, b"Content-Length: 5,5", body=b"hello"))

    def test_content_length_that_is_not_plain_digits(self):
        self.assertBadRequests(*[request(b"POST / HTTP/1.1", HOST, b"Content-Length: " + value, body=b"hello")
                                 for value in (b"+5", b" 5x", b"-1", b"0x5", b"5.0", b"1e1", b"5 5", b"")])

    def test_transfer_encoding_not_ending_in_chunked(self):
        self.assertBadRequests(
            *[request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: " + value, body=CHUNKED_HELLO)
              for value in (b"gzip", b"chunked, gzip", b"identity", b"xchunked")],
            request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity",
                    body=CHUNKED_HELLO))

    def test_a_transfer_coding_other_than_chunked_is_501(self):
        # "gzip, chunked" frames fine, but passed on as plain chunked the origin would take the gzip
        # bytes for the body: refused, and nothing reaches the origin.
        self.assertBadRequests(
            *[request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: " + value, body=CHUNKED_HELLO)
              for value in (b"gzip, chunked", b"deflate,chunked")],
            request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked",
                    body=CHUNKED_HELLO),
            reason="not_implemented")

    def test_transfer_encoding_in_an_http10_request(self):
        self.assertBadRequests(
            request(b"POST / HTTP/1.0", HOST, b"Transfer-Encoding: chunked", body=CHUNKED_HELLO))

    def test_bad_chunk_size(self):
        # The head may already be on its way to the origin when the body turns out bad.
        self.assertBadRequests(
            *[request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=size + b"\r\nhello\r\n0\r\n\r\n")
              for size in (b"zz", b"-5", b"0x5", b"", b"fffffffffffffffffffff5")],
            reached_origin_ok=True)

    def test_chunk_data_not_followed_by_crlf(self):
        self.assertBadRequests(
            *[request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=body)
              for body in (b"5\r\nhelloXX\r\n0\r\n\r\n", b"5\r\nhello0\r\n\r\n", b"5\r\nhello\n0\r\n\r\n")],
            reached_origin_ok=True)

    def test_trailer_lines_that_are_no_field_lines(self):
        self.assertBadRequests(
            *[request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n" + t + b"\r\n")
              for t in (b"no colon\r\n", b"X: y\r\n folded\r\n", b"GET /smuggled HTTP/1.1\r\n", b"X : y\r\n")],
            reached_origin_ok=True)

    # -- header fields -------------------------------------------------------------------------------

    def test_header_name_with_invalid_characters(self):
        self.assertBadRequests(*[request(b"GET / HTTP/1.1", HOST, line) for line in (
            b"X-Foo : bar", b"X-Foo\t: bar", b"Content Length: 0", b"X-F(o)o: 1", b"X-Fo\x01o: 1", b"X-F\xf6o: 1",
            b'"X": 1', b"X/Y: 1", b"X@Y: 1", b": no-name", b"NoColonHere")],
            request(b"GET / HTTP/1.1", b"Host : test"))

    def test_underscore_lookalikes_of_framing_and_forwarding_headers(self):
        self.assertBadRequests(
            request(b"POST / HTTP/1.1", HOST, b"Content_Length: 5", body=b"hello"),
            request(b"POST / HTTP/1.1", HOST, b"content_length: 5", body=b"hello"),
            request(b"POST / HTTP/1.1", HOST, b"Transfer_Encoding: chunked", body=CHUNKED_HELLO),
            request(b"POST / HTTP/1.1", HOST, b"TRANSFER_ENCODING: chunked", body=CHUNKED_HELLO),
            request(b"GET / HTTP/1.1", HOST, b"X_Forwarded_For: 10.0.0.1"))

    def test_control_bytes_in_field_values(self):
        self.assertBadRequests(*[request(b"GET / HTTP/1.1", HOST, b"X-A: " + value) for value in (
            b"a\x00b", b"a\rb", b"a\x01b", b"a\x1bb", b"a\x7fb", b"a\x0bb", b"a\x0cb", b"\x00")],
            request(b"GET / HTTP/1.1", b"Host: te\x00st"))

    def test_obs_fold(self):
        self.assertBadRequests(
            request(b"GET / HTTP/1.1", HOST, b"X-A: a", b" b"),
            request(b"GET / HTTP/1.1", HOST, b"X-A: a", b"\tb"),
            request(b"GET / HTTP/1.1", b" X-A: b", HOST),
            request(b"GET / HTTP/1.1", HOST, b"X-A: a", b" ", b"X-B: c"))

    def test_bare_lf_line_endings(self):
        self.assertBadRequests(
            b"GET / HTTP/1.1\nHost: test\n\n",
            b"GET / HTTP/1.1\nHost: test\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: test\nX-A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\nb: c\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: test\r\n\n")

    # -- Host ----------------------------------------------------------------------------------------

    def test_http11_request_without_host(self):
        self.assertBadRequests(request(b"GET / HTTP/1.1"), request(b"GET / HTTP/1.1", b"X-Host: test"))

    def test_two_host_headers(self):
        self.assertBadRequests(request(b"GET / HTTP/1.1", HOST, HOST),
                               request(b"GET / HTTP/1.1", HOST, b"Host: other.test"))

    def test_invalid_host(self):
        self.assertBadRequests(*[request(b"GET / HTTP/1.1", b"Host: " + value) for value in (
            b"a b", b"exa mple.com", b"@", b"user@test", b"test/x", b"test:abc", b"te\\st")])

    # -- request-target ------------------------------------------------------------------------------

    def test_request_target_with_a_fragment(self):
        self.assertBadRequests(*[request(b"GET " + t + b" HTTP/1.1", HOST) for t in (b"/a#frag", b"/#", b"/a?b#c")])

    def test_request_target_with_a_space_or_control_byte(self):
        self.assertBadRequests(*[request(b"GET " + t + b" HTTP/1.1", HOST) for t in (
            b"/a b", b"/a\tb", b"/a\x01b", b"/a\x7f", b"/a\x00")])

    def test_request_target_that_is_not_origin_form(self):
        self.assertBadRequests(
            request(b"GET a/b HTTP/1.1", HOST),
            request(b"GET test.example/x HTTP/1.1", HOST),
            request(b"GET ?x=1 HTTP/1.1", HOST),
            request(b"GET * HTTP/1.1", HOST))

    def test_connect_is_not_implemented(self):
        _, addr = self.http_proxy([self.origin()])
        conn = self.client(addr)
        conn.send(request(b"CONNECT test:443 HTTP/1.1", b"Host: test:443"))
        resp = conn.read_response("CONNECT", timeout=5)
        self.assertLocalResponse(resp, "not_implemented", 501)

    def test_absolute_form_host_must_agree_with_host(self):
        self.assertBadRequests(request(b"GET http://other.test/x HTTP/1.1", HOST),
                               request(b"GET http://test.evil/x HTTP/1.1", HOST))


class ResponseStrictnessTest(HttpTestCase):
    """Each sample is answered by its own raw backend behind its own route (`/s<i>/`); its connection 0
    sends the sample, later connections answer GOOD. Retries are off, so the client sees what drover
    made of the sample itself."""

    def serve(self, scripts_per_sample: list[list[list]]) -> list[RawHttpBackend]:
        self.backends = [self.raw_backend(scripts) for scripts in scripts_per_sample]
        clusters = [static_cluster(f"s{i}", [b], retries={"attempts": 0}, timeouts={"request": "3s"})
                    for i, b in enumerate(self.backends)]
        routes = [route(f"s{i}", path_prefix=f"/s{i}/") for i in range(len(self.backends))]
        self.drover, self.addr = self.http_proxy(routes=routes, clusters=clusters)
        return self.backends

    def assertNotReused(self, i: int) -> None:
        """Backend i's first connection was dropped: the next request is answered by a fresh one."""
        again = self.get(self.addr, f"/s{i}/again", timeout=5)
        self.assertEqual((again.status, again.body), (200, b"good"), again)
        self.assertEqual(self.backends[i].connections, 2)
        self.backends[i].wait_active(1, timeout=3)  # drover closed the bad connection; the fresh one is pooled

    def assertBadResponses(self, *samples: bytes, method: str = "GET", found_in_body: bool = False) -> None:
        """found_in_body: the flaw may show only after the head was forwarded; then an incomplete response
        followed by a closed client connection is the right answer too."""
        self.serve([[[RawHttpBackend.READ, sample], [RawHttpBackend.READ, GOOD]] for sample in samples])
        for i, sample in enumerate(samples):
            with self.subTest(response=sample):
                conn = self.client(self.addr)
                try:
                    resp = conn.request(method, f"/s{i}/first", timeout=5)
                except PeerClosed as exc:
                    if not found_in_body or exc.partial is None:
                        raise self.failureException(f"no 502 for a bad response: {exc}") from None
                else:
                    self.assertLocalResponse(resp, "bad_upstream_response")
                self.assertNotReused(i)
        self.drover.wait_metric("drover_http_local_responses_total",
                                {"listener": "web", "reason": "bad_upstream_response"},
                                lambda v: v <= len(samples) and (found_in_body or v == len(samples)), default=0)

    # -- framing -------------------------------------------------------------------------------------

    def test_response_with_content_length_and_transfer_encoding(self):
        self.assertBadResponses(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + CHUNKED_HELLO)

    def test_response_with_duplicate_content_length(self):
        self.assertBadResponses(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello")

    def test_response_content_length_that_is_not_plain_digits(self):
        self.assertBadResponses(*[b"HTTP/1.1 200 OK\r\nContent-Length: " + v + b"\r\n\r\nhello"
                                  for v in (b"+5", b"-1", b"5x", b"0x5")])

    def test_response_transfer_encoding_not_ending_in_chunked(self):
        self.assertBadResponses(*[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + v + b"\r\n\r\n" + CHUNKED_HELLO
                                  for v in (b"gzip", b"chunked, gzip", b"identity")])

    def test_response_with_a_transfer_coding_other_than_chunked(self):
        # Passed on as plain chunked, the client would get the gzip bytes as the body.
        self.assertBadResponses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKED_HELLO,
                                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                                + CHUNKED_HELLO)

    def test_response_bad_chunk_size(self):
        self.assertBadResponses(*[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size
                                  + b"\r\nhello\r\n0\r\n\r\n" for size in (b"zz", b"-5", b"fffffffffffffffffffff5")],
                                found_in_body=True)

    def test_response_chunk_data_not_followed_by_crlf(self):
        self.assertBadResponses(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
                                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n",
                                found_in_body=True)

    def test_response_with_transfer_encoding_in_http10(self):
        self.assertBadResponses(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO)

    def test_response_body_cut_short(self):
        cut = (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        self.serve([[[RawHttpBackend.READ, sample, RawHttpBackend.CLOSE], [RawHttpBackend.READ, GOOD]]
                    for sample in cut])
        for i, sample in enumerate(cut):
            with self.subTest(response=sample):
                conn = self.client(self.addr)
                conn.send_request("GET", f"/s{i}/cut")
                try:
                    resp = conn.read_response(timeout=5)
                except PeerClosed:
                    pass  # the head went out before the cut: an incomplete response, then a close, is right
                else:
                    # Only an honest 502 may arrive whole; a truncated body must never look complete.
                    self.assertLocalResponse(resp, "bad_upstream_response")
                self.assertNotReused(i)

    # -- header fields -------------------------------------------------------------------------------

    def test_response_header_name_with_invalid_characters(self):
        self.assertBadResponses(*[b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 5\r\n\r\nhello" for line in (
            b"X-Foo : bar", b"X Foo: 1", b"X-F(o)o: 1", b": no-name", b"NoColonHere", b"X-F\xf6o: 1")])

    def test_response_underscore_lookalike_is_rejected_or_stays_opaque(self):
        self.serve([[[RawHttpBackend.READ,
                      b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent_Length: 50\r\nTransfer_Encoding: chunked"
                      b"\r\n\r\nhello", RawHttpBackend.READ, GOOD], [RawHttpBackend.READ, GOOD]]])
        conn = self.client(self.addr)
        resp = conn.request("GET", "/s0/a", timeout=5)
        if resp.status == 502:
            self.assertLocalResponse(resp, "bad_upstream_response")
        else:
            self.assertEqual((resp.status, resp.body), (200, b"hello"), resp)
        # A 502 may close the client connection; the next request, on a fresh one, gets its own answer.
        nxt = conn.request("GET", "/s0/b", timeout=5) if resp.status == 200 else self.get(self.addr, "/s0/b", timeout=5)
        self.assertEqual(nxt.body, b"good")

    def test_response_control_bytes_in_field_values(self):
        self.assertBadResponses(*[b"HTTP/1.1 200 OK\r\nX-A: " + v + b"\r\nContent-Length: 5\r\n\r\nhello"
                                  for v in (b"a\x00b", b"a\rb", b"a\x01b", b"a\x7fb")])

    def test_response_obs_fold(self):
        self.assertBadResponses(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello",
                                b"HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\nContent-Length: 5\r\n\r\nhello")

    def test_response_bare_lf_line_endings(self):
        self.assertBadResponses(b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
                                b"HTTP/1.1 200 OK\r\nContent-Length: 5\nX-A: 1\r\n\r\nhello",
                                b"HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\nhello")

    # -- status line and 1xx -------------------------------------------------------------------------

    def test_invalid_status_line(self):
        self.assertBadResponses(*[line + b"\r\nContent-Length: 5\r\n\r\nhello" for line in (
            b"HTTP/1.1 2000 OK", b"HTTP/1.1 OK", b"ICY 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2O0 OK",
            b"garbage")])

    def test_origin_closing_before_a_complete_response_head(self):
        self.serve([[[RawHttpBackend.READ, RawHttpBackend.CLOSE], [RawHttpBackend.READ, GOOD]],
                    [[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Le", RawHttpBackend.CLOSE],
                     [RawHttpBackend.READ, GOOD]]])
        for i in range(2):
            with self.subTest(sample=i):
                self.assertLocalResponse(self.get(self.addr, f"/s{i}/x", timeout=5), "bad_upstream_response")
                self.assertNotReused(i)

    def test_unrequested_101_is_502(self):
        self.assertBadResponses(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n")

    def test_unrequested_1xx_never_desynchronises_the_connection(self):
        # RFC 9110 lets a proxy forward or drop a 1xx; either way the final answer must belong to this
        # request and the next request must get its own answer, not the leftover of this one.
        interims = (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n",
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        self.serve([[[RawHttpBackend.READ, interim + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
                      RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"],
                     [RawHttpBackend.READ, GOOD]] for interim in interims])
        for i, interim in enumerate(interims):
            with self.subTest(interim=interim):
                conn = self.client(self.addr)
                first = conn.request("GET", f"/s{i}/1", timeout=5)
                if first.status == 502:
                    self.assertLocalResponse(first, "bad_upstream_response")
                else:
                    self.assertEqual((first.status, first.body), (200, b"first"), first)
                second = self.get(self.addr, f"/s{i}/2", timeout=5)
                self.assertIn(second.body, (b"second", b"good"), second)

    # -- bytes outside a response --------------------------------------------------------------------

    def test_bytes_after_a_complete_response_make_the_connection_unusable(self):
        firsts = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + EVIL_RESPONSE,
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n" + EVIL_RESPONSE,
                  b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + b"garbage\r\n")
        self.serve([[[RawHttpBackend.READ, first], [RawHttpBackend.READ, GOOD, RawHttpBackend.READ, GOOD]]
                    for first in firsts])
        for i, first in enumerate(firsts):
            with self.subTest(response=first):
                conn = self.client(self.addr)
                resp = conn.request("GET", f"/s{i}/1", timeout=5)
                self.assertEqual((resp.status, resp.body), (200, b"first"), resp)
                for _ in range(2):
                    nxt = conn.request("GET", f"/s{i}/2", timeout=5)
                    self.assertEqual((nxt.status, nxt.body, nxt.header("x-evil")), (200, b"good", None), nxt)
                self.assertEqual(self.backends[i].connections, 2)

    def test_body_sent_to_a_head_request_makes_the_connection_unusable(self):
        self.serve([[[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
                     [RawHttpBackend.READ, GOOD]]])
        conn = self.client(self.addr)
        head = conn.request("HEAD", "/s0/h", timeout=5)
        self.assertEqual((head.status, head.header("content-length"), head.body_len), (200, "5", 0))
        nxt = conn.request("GET", "/s0/g", timeout=5)
        self.assertEqual((nxt.status, nxt.body), (200, b"good"), nxt)
        self.assertEqual(self.backends[0].connections, 2)

    def test_bytes_sent_on_an_idle_pooled_connection_make_it_unusable(self):
        unsolicited = threading.Event()
        self.addCleanup(unsolicited.set)
        self.serve([[[RawHttpBackend.READ, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
                      lambda conn, backend: unsolicited.wait(10), EVIL_RESPONSE],
                     [RawHttpBackend.READ, GOOD, RawHttpBackend.READ, GOOD]]])
        conn = self.client(self.addr)
        self.assertEqual(conn.request("GET", "/s0/1", timeout=5).body, b"first")
        unsolicited.set()
        self.backends[0].wait_steps(0, 4)  # the unsolicited response is on its way to drover's pooled socket
        for _ in range(2):
            nxt = conn.request("GET", "/s0/2", timeout=5)
            self.assertEqual((nxt.status, nxt.body, nxt.header("x-evil")), (200, b"good", None), nxt)
        self.assertEqual(self.backends[0].connections, 2)


class ValidButUnusualTest(HttpTestCase):

    def test_options_asterisk_is_routed_by_host_and_forwarded(self):
        opts, other = self.origin("opts"), self.origin("other")
        _, addr = self.http_proxy(routes=[route("opts", host="opts.test"), route("other", path_prefix="/")],
                                  clusters=[static_cluster("opts", [opts]), static_cluster("other", [other])])
        conn = self.client(addr)
        conn.send(request(b"OPTIONS * HTTP/1.1", b"Host: opts.test"))
        resp = conn.read_response(timeout=5)
        self.assertEqual((resp.status, resp.json()["origin"]), (200, "opts"), resp)
        self.assertEqual((opts.requests[0].method, opts.requests[0].target), ("OPTIONS", "*"))

    def test_http10_request_without_host_is_routed_by_path(self):
        hosted, legacy = self.origin("hosted"), self.origin("legacy")
        _, addr = self.http_proxy(routes=[route("hosted", host="app.test"), route("legacy", path_prefix="/old/")],
                                  clusters=[static_cluster("hosted", [hosted]), static_cluster("legacy", [legacy])])
        conn = self.client(addr)
        conn.send(b"GET /old/page HTTP/1.0\r\n\r\n")
        resp = conn.read_response(timeout=5)
        self.assertEqual((resp.status, resp.json()["origin"], resp.json()["target"]), (200, "legacy", "/old/page"))
        forwarded = legacy.requests[0]
        if forwarded.version == "HTTP/1.1":
            self.assertEqual(len(forwarded.header_values("Host")), 1, f"HTTP/1.1 needs one Host: {forwarded.headers}")
        conn.wait_closed(3)

    def test_long_but_legal_headers_within_the_default_limits(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        headers = [(f"X-Long-{i}", "v" * 1000) for i in range(40)] + [("X-Huge", "h" * 8000)]
        path = "/" + "p" * 4000
        resp = self.get(addr, path, headers=headers, timeout=5)
        self.assertEqual(resp.status, 200, resp)
        got = origin.requests[0]
        self.assertEqual(got.target, path)
        self.assertEqual([(k, v) for k, v in got.headers if k.startswith("X-Long-") or k == "X-Huge"], headers)

    def test_underscore_header_names_are_forwarded_verbatim(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        self.assertEqual(self.get(addr, "/", headers=[("X_Custom_Thing", "v"), ("my_header", "x")]).status, 200)
        got = origin.requests[0]
        self.assertEqual((got.header_values("X_Custom_Thing"), got.header_values("my_header")), (["v"], ["x"]))
        self.assertEqual([k for k, _ in got.headers if k in ("X_Custom_Thing", "my_header")],
                         ["X_Custom_Thing", "my_header"])

    def test_field_values_with_tab_obs_text_or_nothing_are_forwarded(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        conn.send(request(b"GET / HTTP/1.1", HOST, b"X-Tab: a\tb", b"X-Latin: caf\xe9", b"X-Empty:"))
        self.assertEqual(conn.read_response(timeout=5).status, 200)
        got = origin.requests[0]
        self.assertEqual((got.header("X-Tab"), got.header("X-Latin"), got.header("X-Empty")), ("a\tb", "caf\xe9", ""))

    def test_absolute_form_agreeing_with_host_is_forwarded_in_origin_form(self):
        # An empty path with a query is "/" and the query (RFC 9112 section 3.2.1), routed as such; the
        # default port may be written in the target and not in Host.
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        conn = self.client(addr)
        for target, forwarded in ((b"http://test/x?y=1", "/x?y=1"), (b"http://test?y=1", "/?y=1"),
                                  (b"http://test:80/z", "/z")):
            with self.subTest(target=target):
                conn.send(request(b"GET " + target + b" HTTP/1.1", HOST))
                self.assertEqual(conn.read_response(timeout=5).status, 200)
                got = origin.requests[-1]
                self.assertEqual((got.target, got.header_values("Host")), (forwarded, ["test"]))

    def test_unusual_but_valid_request_framing(self):
        origin = self.origin()
        _, addr = self.http_proxy([origin])
        body = pattern_bytes(26)
        chunked = (b"5;name=value\r\n" + body[:5] + b"\r\n" + b"A\r\n" + body[5:15] + b"\r\n"
                   + b"000b\r\n" + body[15:26] + b"\r\n" + b"0\r\nX-Trailer: t\r\n\r\n")
        samples = {"chunk extensions, hex case, leading zeros, trailer":
                   request(b"POST / HTTP/1.1", HOST, b"Transfer-Encoding: Chunked", body=chunked),
                   "Content-Length with leading zeros":
                   request(b"POST / HTTP/1.1", HOST, b"Content-Length: 0026", body=body)}
        conn = self.client(addr)
        for name, raw in samples.items():
            with self.subTest(name):
                conn.send(raw)
                resp = conn.read_response("POST", timeout=5)
                self.assertEqual((resp.status, resp.json()["body_bytes"], resp.json()["body_sha256"]),
                                 (200, 26, pattern_sha256(26)), resp)


if __name__ == "__main__":
    unittest.main()
