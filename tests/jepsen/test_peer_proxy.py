"""peer_proxy.py (tests/integration) alone, with an echo server behind it: bytes pass, a
blocked direction loses exactly its bytes, heal closes the damaged connection and new ones
work, delay holds bytes back in order, loss and reset close connections, and PeerMesh blocks
the right directions of the right links."""

import socket
import threading
import time
import unittest

from peer_proxy import LinkProxy, PeerMesh

WAIT_S = 10


class EchoServer:
    """Echoes what it reads; counts the bytes it received."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        while True:
            try:
                data = c.recv(65536)
            except OSError:
                break
            if not data:
                break
            with self.lock:
                self.received += len(data)
            try:
                c.sendall(data)
            except OSError:
                break
        c.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() and stops listening
        except OSError:
            pass
        self.sock.close()


def wait_for(cond, what):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def closed_by_peer(sock):
    """True once the proxy closed the connection (recv gives EOF or a reset)."""
    sock.settimeout(WAIT_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class PeerProxyTest(unittest.TestCase):
    def setUp(self):
        self.echo = EchoServer()
        self.proxy = LinkProxy(self.echo.port)
        self.socks = []

    def tearDown(self):
        self.proxy.close()
        self.echo.close()
        for s in self.socks:
            s.close()

    def dial(self):
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=WAIT_S)
        self.socks.append(s)
        wait_for(lambda: self.proxy.stats["accepted"] >= len(self.socks), "the proxy's accept")
        return s

    def test_passes_bytes_both_ways(self):
        s = self.dial()
        data = bytes(range(256)) * 1000
        s.sendall(data)
        self.assertEqual(recv_exact(s, len(data)), data)
        self.assertEqual(self.echo.received, len(data))

    def test_block_both_ways_then_heal(self):
        s = self.dial()
        self.proxy.block()
        self.assertTrue(closed_by_peer(s), "block() did not close the link's connection")
        s = self.dial()
        s.sendall(b"x" * 1000)
        wait_for(lambda: self.proxy.stats["discarded_bytes"] == 1000, "the bytes to be dropped")
        self.assertEqual(self.echo.received, 0)
        self.proxy.heal()
        self.assertTrue(closed_by_peer(s), "heal() kept a connection that lost bytes")
        s = self.dial()
        s.sendall(b"after")
        self.assertEqual(recv_exact(s, 5), b"after")

    def test_block_forward_only(self):
        self.proxy.block(forward=True, backward=False)
        s = self.dial()
        s.sendall(b"y" * 100)
        wait_for(lambda: self.proxy.stats["discarded_bytes"] == 100, "the bytes to be dropped")
        self.assertEqual(self.echo.received, 0)

    def test_block_backward_only(self):
        self.proxy.block(forward=False, backward=True)
        s = self.dial()
        s.sendall(b"z" * 100)
        # the server gets them; its echo is what is lost
        wait_for(lambda: self.echo.received == 100, "the server to receive")
        wait_for(lambda: self.proxy.stats["discarded_bytes"] == 100, "the echo to be dropped")
        s.settimeout(0.2)
        with self.assertRaises(socket.timeout):
            s.recv(1)

    def test_delay_holds_bytes_back_in_order(self):
        self.proxy.set_delay(0.2)
        s = self.dial()
        start = time.monotonic()
        parts = [bytes([i]) * 500 for i in range(20)]
        for p in parts:
            s.sendall(p)
        got = recv_exact(s, 500 * 20)
        took = time.monotonic() - start
        self.assertEqual(got, b"".join(parts))
        # each way held back at least 0.2 s: a lower bound, not a timing threshold
        self.assertGreaterEqual(took, 0.4)

    def test_loss_closes_connections(self):
        s = self.dial()
        self.proxy.set_loss(1.0)
        self.assertTrue(closed_by_peer(s))
        self.assertGreaterEqual(self.proxy.stats["lost_connections"], 1)
        self.proxy.heal()
        s = self.dial()
        s.sendall(b"ok")
        self.assertEqual(recv_exact(s, 2), b"ok")

    def test_reset(self):
        s = self.dial()
        self.proxy.reset()
        self.assertTrue(closed_by_peer(s))

    def test_upstream_down_closes_the_client(self):
        self.echo.close()
        s = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=WAIT_S)
        self.socks.append(s)
        self.assertTrue(closed_by_peer(s))


class PeerMeshTest(unittest.TestCase):
    def test_directions(self):
        echoes = {i: EchoServer() for i in (1, 2, 3)}
        mesh = PeerMesh(3, lambda j: echoes[j].port)
        try:
            self.assertEqual(len(mesh.links), 6)
            self.assertEqual(len({mesh.port(a, b) for (a, b) in mesh.links}), 6)
            mesh.drop(1, 2)
            flags = {k: (v.block_forward, v.block_backward) for k, v in mesh.links.items()}
            self.assertEqual(flags[(1, 2)], (True, False))
            self.assertEqual(flags[(2, 1)], (False, True))
            self.assertEqual({k: f for k, f in flags.items() if f != (False, False)},
                             {(1, 2): (True, False), (2, 1): (False, True)})
            mesh.heal()
            mesh.isolate(3)
            for (a, b), link in mesh.links.items():
                cut = 3 in (a, b)
                self.assertEqual((link.block_forward, link.block_backward), (cut, cut), (a, b))
            mesh.heal()
            # through link (1, 2) to node 2's server
            s = socket.create_connection(("127.0.0.1", mesh.port(1, 2)), timeout=WAIT_S)
            s.sendall(b"hello")
            self.assertEqual(recv_exact(s, 5), b"hello")
            s.close()
            wait_for(lambda: echoes[2].received == 5, "node 2's server")
            self.assertEqual(echoes[1].received + echoes[3].received, 0)
        finally:
            mesh.close()
            for e in echoes.values():
                e.close()


if __name__ == "__main__":
    unittest.main()
