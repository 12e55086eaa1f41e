"""TCP proxies on the links between cluster nodes, for faults on 127.0.0.1 (no root needed).

One `LinkProxy` per directed link "node a dials node b": node a is told that b listens at the
proxy's port, and the proxy forwards to b's real peer port. A connection carries bytes both
ways: `forward` is dialer -> target, `backward` target -> dialer. PeerTransport keeps one
connection per node pair (docs/cluster-transport.md), dialed by either side, so "traffic from
a to b" is the forward direction of link (a, b) plus the backward direction of link (b, a);
`PeerMesh` does that bookkeeping.

Faults (a TCP stream cannot lose single packets, so these are the stream-level analogues):
- block: the bytes of a blocked direction are read and thrown away (the connection stays
  open, as a black hole would leave it). Blocking closes the link's current connections
  first (so no frame is cut in the middle and then continued); heal() closes the connections
  that threw bytes away, whose streams are no longer whole.
- delay: every chunk is held back `delay_s` before it is written (order kept; a bounded queue
  per direction, the reader waits when it is full).
- loss: each open connection is closed with probability `loss_per_s` per second (checked
  every 0.1 s); the endpoints redial and Raft resends.
- reset(): close every connection of the link now.

    mesh = PeerMesh(3, lambda j: peer_port[j])   # node ids 1..3
    port = mesh.port(1, 2)       # what node 1 dials to reach node 2
    mesh.drop(1, 2)              # 1 -> 2 lost, 2 -> 1 still delivered
    mesh.isolate(3)              # 3 cut from everybody, both ways
    mesh.heal()
    mesh.close()
"""

import collections
import random
import socket
import threading
import time

CHUNK = 65536
MAX_QUEUED_BYTES = 16 << 20   # per direction of one connection
LOSS_TICK_S = 0.1


def _free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Direction:
    """Bytes from src to dst: a reader thread queues chunks, a writer thread writes each one
    when its due time comes."""

    def __init__(self, conn, src, dst, name):
        self.conn = conn
        self.src = src
        self.dst = dst
        self.name = name  # "forward" or "backward"
        self.queue = collections.deque()
        self.queued = 0
        self.cv = threading.Condition()
        self.done = False

    def start(self):
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self):
        link = self.conn.link
        while True:
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            if link.blocked(self.name):
                link.count("discarded_bytes", len(data))
                self.conn.tainted = True
                continue
            due = time.monotonic() + link.delay_s
            with self.cv:
                while self.queued >= MAX_QUEUED_BYTES and not self.done:
                    self.cv.wait(0.1)
                if self.done:
                    break
                self.queue.append((due, data))
                self.queued += len(data)
                self.cv.notify_all()
        with self.cv:
            self.done = True
            self.cv.notify_all()
        self.conn.close()

    def _write(self):
        while True:
            with self.cv:
                while not self.queue and not self.done:
                    self.cv.wait()
                if not self.queue:
                    return
                due, data = self.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cv:
                self.queue.popleft()
                self.queued -= len(data)
                self.cv.notify_all()
            try:
                self.dst.sendall(data)
                self.conn.link.count(self.name + "_bytes", len(data))
            except OSError:
                self.conn.close()
                return


class _Connection:
    def __init__(self, link, client, upstream):
        self.link = link
        self.client = client
        self.upstream = upstream
        self.tainted = False
        self.closed = False
        self.lock = threading.Lock()
        self.dirs = [_Direction(self, client, upstream, "forward"),
                     _Direction(self, upstream, client, "backward")]

    def start(self):
        for d in self.dirs:
            d.start()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        _close(self.client)
        _close(self.upstream)
        for d in self.dirs:
            with d.cv:
                d.done = True
                d.queue.clear()
                d.cv.notify_all()
        self.link._forget(self)


class LinkProxy:
    """Listens on 127.0.0.1:port (free port picked once, or the one given) and forwards each
    connection to target(), an int or a callable returning the target port."""

    def __init__(self, target, port=0, host="127.0.0.1", target_host="127.0.0.1", seed=1,
                 name=""):
        self.target = target if callable(target) else (lambda: target)
        self.target_host = target_host
        self.name = name
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.conns = set()
        self.block_forward = False
        self.block_backward = False
        self.delay_s = 0.0
        self.loss_per_s = 0.0
        self.stats = collections.Counter()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._loss_ticker, daemon=True).start()

    # --- faults
    def blocked(self, direction):
        return self.block_forward if direction == "forward" else self.block_backward

    def block(self, forward=True, backward=True):
        """Throw away the bytes of the given directions from now on (adds to what is blocked)."""
        with self.lock:
            changed = (forward and not self.block_forward) or (backward and not self.block_backward)
            self.block_forward = self.block_forward or forward
            self.block_backward = self.block_backward or backward
        if changed:
            self.reset()

    def set_delay(self, seconds):
        self.delay_s = max(0.0, float(seconds))

    def set_loss(self, per_second):
        self.loss_per_s = min(1.0, max(0.0, float(per_second)))

    def heal(self):
        """No block, no delay, no loss; the connections that lost bytes are closed."""
        with self.lock:
            self.block_forward = self.block_backward = False
            self.delay_s = 0.0
            self.loss_per_s = 0.0
            tainted = [c for c in self.conns if c.tainted]
        for c in tainted:
            c.close()

    def reset(self):
        with self.lock:
            conns = list(self.conns)
        self.count("resets", len(conns))
        for c in conns:
            c.close()

    def close(self):
        self.stopping = True
        _close(self.listener)
        self.reset()

    # --- internals
    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def _forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.target_host, self.target()), timeout=5)
                upstream.settimeout(None)
            except OSError:
                self.count("upstream_refused")
                _close(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream)
            with self.lock:
                if self.stopping:
                    conn.closed = True
                self.conns.add(conn)
                self.stats["accepted"] += 1
            if conn.closed:
                _close(client)
                _close(upstream)
                return
            conn.start()

    def _loss_ticker(self):
        while not self.stopping:
            time.sleep(LOSS_TICK_S)
            p = self.loss_per_s
            if p <= 0:
                continue
            q = 1.0 - (1.0 - p) ** LOSS_TICK_S if p < 1 else 1.0
            with self.lock:
                victims = [c for c in self.conns if self.random.random() < q]
            if victims:
                self.count("lost_connections", len(victims))
            for c in victims:
                c.close()


class PeerMesh:
    """A LinkProxy for every ordered pair of node ids (1..n): link (a, b) is what a dials to
    reach b and forwards to peer_port(b)."""

    def __init__(self, n, peer_port, seed=1, ports=None):
        self.ids = list(range(1, n + 1))
        self.links = {}
        for a in self.ids:
            for b in self.ids:
                if a != b:
                    fixed = (ports or {}).get((a, b), 0)
                    self.links[(a, b)] = LinkProxy(lambda b=b: peer_port(b), port=fixed,
                                                   seed=seed * 1000 + a * 10 + b,
                                                   name=f"{a}->{b}")

    def port(self, a, b):
        return self.links[(a, b)].port

    def drop(self, src, dst):
        """What src sends to dst is lost (on either node's connection)."""
        self.links[(src, dst)].block(forward=True, backward=False)
        self.links[(dst, src)].block(forward=False, backward=True)

    def cut(self, a, b):
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, i):
        for j in self.ids:
            if j != i:
                self.cut(i, j)

    def partition(self, *groups):
        """Nodes in different groups cannot talk (nodes in no group keep every link)."""
        for gi, g in enumerate(groups):
            for h in groups[gi + 1:]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def _touching(self, i):
        return [link for (a, b), link in self.links.items() if i in (a, b)]

    def delay(self, i, seconds):
        for link in self._touching(i):
            link.set_delay(seconds)

    def loss(self, i, per_second):
        for link in self._touching(i):
            link.set_loss(per_second)

    def reset(self, i=None):
        for (a, b), link in self.links.items():
            if i is None or i in (a, b):
                link.reset()

    def heal(self):
        for link in self.links.values():
            link.heal()

    def stats(self):
        return {link.name: dict(link.stats) for link in self.links.values()}

    def close(self):
        for link in self.links.values():
            link.close()
