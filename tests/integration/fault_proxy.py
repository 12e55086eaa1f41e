"""A TCP proxy between Kafka clients and the broker that loses responses on purpose.

It forwards whole frames (4-byte size prefix) in both directions. With probability `drop`, a
response is not delivered: the proxy closes both connections instead, after the broker has
handled the request, which is exactly what makes a producer retry a batch that is already
stored. With probability `delay`, a response is held back for up to `max_delay_s`. The broker
must advertise the proxy's address (advertised.listen) so that clients never bypass it.

    with FaultProxy(upstream_port=lambda: broker.port, drop=0.02) as proxy:
        ... clients use 127.0.0.1:proxy.port ...
"""

import random
import socket
import struct
import threading
import time


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(sock):
    head = _read_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    if size < 0 or size > 200 << 20:
        return None
    body = _read_exact(sock, size)
    return None if body is None else head + body


class FaultProxy:
    def __init__(self, upstream_port, drop=0.0, delay=0.0, max_delay_s=0.05, seed=1):
        self.upstream_port = upstream_port  # a callable: the broker's port may change
        self.drop = drop
        self.delay = delay
        self.max_delay_s = max_delay_s
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.dropped = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.enabled = True
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.listener.close()
        return False

    def _chance(self, p):
        with self.lock:
            return self.enabled and self.random.random() < p

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port()), timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return

        def close_both():
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        def requests():
            while True:
                try:
                    frame = _read_frame(client)
                    if frame is None:
                        break
                    upstream.sendall(frame)
                except OSError:
                    break
            close_both()

        threading.Thread(target=requests, daemon=True).start()
        while True:
            try:
                frame = _read_frame(upstream)
            except OSError:
                break
            if frame is None:
                break
            if self._chance(self.drop):
                with self.lock:
                    self.dropped += 1
                break
            if self._chance(self.delay):
                time.sleep(self.random.uniform(0, self.max_delay_s))
            try:
                client.sendall(frame)
            except OSError:
                break
        close_both()
