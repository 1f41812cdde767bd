"""benchmarks/e2e's floor relay (drover_floor_relay). The e2e table compares every proxy with it, so it
must be a relay in earnest: every byte both ways, back pressure, half-close, a connection each."""

import hashlib
import os
import re
import select
import socket
import subprocess
import threading
import unittest

from harness import DroverTestCase, ScriptedBackend, recv_all, roundtrip, sha256, wait_until

START_TIMEOUT = 10.0


class FloorRelayTest(DroverTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.binary = os.environ.get("DROVER_FLOOR_RELAY", "")
        if not self.binary:
            self.skipTest("DROVER_FLOOR_RELAY is not set (the build has no benchmarks)")

    def relay(self, backend) -> tuple[str, int]:
        """Starts the relay on a free port in front of `backend`; returns its address."""
        proc = subprocess.Popen([self.binary, "0", str(backend.port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

        def stop() -> None:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop)
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        m = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        self.assertIsNotNone(m, f"no 'listening on' line within {START_TIMEOUT} s: {line!r}")
        return ("127.0.0.1", int(m.group(1)))

    def test_large_transfer_is_intact_both_ways_and_half_close_passes(self):
        # 16 MiB each way, read and written at once: every byte back intact, and the client's EOF
        # passed on only once everything before it is through.
        echo = self.echo_backend()
        addr = self.relay(echo)
        data = os.urandom(16 << 20)
        self.assert_echoed_whole(echo, self.connect(addr, timeout=20), data)

    def test_a_side_that_cannot_take_more_holds_the_other_back(self):
        # The backend reads nothing until released, so the relay's sends to it must come back EAGAIN;
        # it must then stop reading the client (which stalls) and lose nothing once the backend reads.
        # 64 MiB is more than every socket buffer on the path can hold (tcp_rmem/tcp_wmem maxima).
        release = threading.Event()
        got: dict[str, object] = {}

        def slow_reader(conn: socket.socket, _backend) -> None:
            release.wait(30)
            digest, total = hashlib.sha256(), 0
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
                total += len(chunk)
            got.update(total=total, sha=digest.hexdigest())

        backend = self.backend(ScriptedBackend(slow_reader))
        sock = self.connect(self.relay(backend), timeout=30)
        data = os.urandom(64 << 20)
        stalled = threading.Event()

        def send() -> None:   # non-blocking sends: a socket not writable for 0.5 s has stalled
            sock.setblocking(False)
            view = memoryview(data)
            while view:
                if not select.select([], [sock], [], 0.5)[1]:
                    stalled.set()
                    select.select([], [sock], [], 30)
                    continue
                view = view[sock.send(view):]
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        self.assertTrue(stalled.wait(20), "the client never stalled: the relay did not hold back")
        release.set()
        sender.join(30)
        self.assertFalse(sender.is_alive(), "the client's sends did not finish once the backend read")
        wait_until(lambda: "sha" in got, 30, message="the backend read to the end")
        self.assertEqual(got["total"], len(data))
        self.assertEqual(got["sha"], sha256(data))

    def test_backend_close_reaches_the_client(self):
        addr = self.relay(self.tagged_backend("bye"))
        self.assertEqual(recv_all(self.connect(addr)), b"bye")

    def test_each_client_gets_an_upstream_connection_of_its_own(self):
        echo = self.echo_backend()
        addr = self.relay(echo)
        clients = [self.connect(addr) for _ in range(20)]
        for round_ in range(3):   # interleaved on the one loop, and the connections stay open
            for i, sock in enumerate(clients):
                message = f"client {i} round {round_}".encode()
                self.assertEqual(roundtrip(sock, message), message)
        self.assertEqual(echo.connections, len(clients))


if __name__ == "__main__":
    unittest.main()
