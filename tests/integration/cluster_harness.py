"""Starts, stops and breaks a cluster of `ordo serve` processes (docs/cluster.md).

    with Cluster(n=3) as c:                  # mode "auto": netns when root with ip + nft
        c.start_all()
        c.wait(lambda: c.controller() is not None, 30, "a controller leader")
        bootstrap = c.bootstrap_servers      # "host:port,host:port,..."
        c.kill(2); c.start(2)                # SIGKILL, then start on the same data dir
        c.isolate(1); c.heal()               # network faults between nodes
        c.leader_of("t", 0)                  # from GET /v1/cluster (or via="metadata")

Each node i (1..n) has its own data dir (<root>/n<i>), and Kafka, peer and admin ports picked
once and kept across restarts. A node is started with the broker's cluster command line
(`--node-id --cluster-listen --cluster ... [--bootstrap]`); `--bootstrap` only on the node's first
start (its data dir has no node.meta and this Cluster never bootstrapped it: a voter whose disk
was lost, wipe(i), must not bootstrap again, docs/configuration.md), unless start(i,
bootstrap=...) says otherwise.

Modes:
- "loopback": every node on 127.0.0.1. Peers reach each other through peer_proxy.PeerMesh (one
  TCP proxy per directed link; a node's --cluster list names the proxies), so blocks, delays
  and connection loss work without root. Packet loss is approximated by closing connections
  (probability per second = pct / 100).
- "netns" (root, `ip`, `nft`): one bridge and one network namespace per node with a veth pair,
  addresses 10.X.Y.<i>/24 (X.Y derived from the pid, the bridge is .254 and is how clients in
  the root namespace reach the nodes), brokers run under `ip netns exec`. Faults are nft rules
  in the receiving node's namespace (input chain): drop from a peer, or a random share of
  packets (`numgen random mod 100 < pct`). No delay: the kernel has no netem.
- "auto": netns when possible, else loopback; `fallback_reason` says why.

Everything a Cluster creates (processes, namespaces, bridge, temp dir) is removed by close(),
which __exit__ and an atexit hook call (also on SIGTERM of the test process). Logs of each
node are kept in <root>/n<i>.log across restarts; dump_logs() prints their tails and __exit__
does so when the block raised.

Used by tests/integration/test_cluster_*.py and tests/jepsen/run.py against real brokers; the
proxy, the netns plumbing and the nft rules also have tests without a broker
(tests/jepsen/test_peer_proxy.py, test_cluster_harness.py). Note for fault tests: with TCP a
one-way drop also stops new connections the other way (the SYN-ACK is dropped).
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

from peer_proxy import PeerMesh

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 2


def _ordo_bin():
    b = os.environ.get("ORDO_BIN")
    if b:
        return b
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, "..", "..", "build", "src", "cli", "ordo")
    return os.path.normpath(built) if os.path.exists(built) else "ordo"


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run(args, check=True, input=None):
    p = subprocess.run(args, input=input, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


_live = set()
_live_lock = threading.Lock()
_counter = [0]


def _close_all():
    with _live_lock:
        clusters = list(_live)
    for c in clusters:
        try:
            c.close()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"cluster_harness: cleanup failed: {e}", file=sys.stderr)


atexit.register(_close_all)


def _install_sigterm_handler():
    """SIGTERM of the test process runs the atexit hooks (the default action would not)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Node:
    def __init__(self, cluster, i, host):
        self.cluster = cluster
        self.id = i
        self.host = host
        self.data_dir = os.path.join(cluster.root, f"n{i}")
        self.log_path = os.path.join(cluster.root, f"n{i}.log")
        self.kafka_port = _free_port()
        self.peer_port = _free_port()
        self.admin_port = _free_port()
        self.proc = None
        self.starts = 0
        self.bootstrapped = False  # started with --bootstrap by this Cluster
        self.stopped = False  # SIGSTOPped

    @property
    def kafka(self):
        return f"{self.host}:{self.kafka_port}"

    @property
    def admin_url(self):
        return f"http://{self.host}:{self.admin_port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class _Netns:
    """The bridge, namespaces, veths and nft tables of one cluster in netns mode."""

    def __init__(self, n, tag):
        self.n = n
        self.tag = tag  # unique per live cluster on this machine: f"{pid}c{k}"
        self.bridge = f"ob{tag}"
        self.created_ns = []
        self.created_links = []
        h = (os.getpid() * 8 + _counter[0]) % (200 * 250)
        self.subnet = f"10.{40 + h // 250}.{h % 250}"
        self.bridge_ip = f"{self.subnet}.254"

    def ns(self, i):
        return f"ordo{self.tag}n{i}"

    def ip(self, i):
        return f"{self.subnet}.{i}"

    def setup(self):
        try:
            used = _run(["ip", "-4", "-o", "addr"]).stdout
            if f" {self.subnet}." in used:
                raise RuntimeError(f"{self.subnet}.0/24 is in use on this machine")
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            self.created_links.append(self.bridge)
            _run(["ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge])
            _run(["ip", "link", "set", self.bridge, "up"])
            for i in range(1, self.n + 1):
                ns, outer, inner = self.ns(i), f"ov{self.tag}n{i}", f"oi{self.tag}n{i}"
                _run(["ip", "netns", "add", ns])
                self.created_ns.append(ns)
                _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
                self.created_links.append(outer)
                _run(["ip", "link", "set", inner, "netns", ns])
                _run(["ip", "link", "set", outer, "master", self.bridge])
                _run(["ip", "link", "set", outer, "up"])
                _run(["ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", inner])
                _run(["ip", "-n", ns, "link", "set", inner, "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
                self.nft(i, "add table inet ordo\n"
                            "add chain inet ordo input { type filter hook input priority 0; "
                            "policy accept; }\n")
        except Exception:
            self.teardown()
            raise

    def nft(self, i, script):
        _run(["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"], input=script)

    def wrap(self, i, args):
        return ["ip", "netns", "exec", self.ns(i)] + args

    # faults: each is an input-chain rule in the receiving node's namespace
    def drop(self, src, dst):
        self.nft(dst, f"add rule inet ordo input ip saddr {self.ip(src)} drop\n")

    def loss(self, i, pct):
        others = [j for j in range(1, self.n + 1) if j != i]
        if not others:
            return
        pct = int(pct)
        if pct <= 0:
            return
        share = f"numgen random mod 100 < {pct} " if pct < 100 else ""
        peers = ", ".join(self.ip(j) for j in others)
        self.nft(i, f"add rule inet ordo input ip saddr {{ {peers} }} {share}drop\n")
        for j in others:
            self.nft(j, f"add rule inet ordo input ip saddr {self.ip(i)} {share}drop\n")

    def heal(self):
        for i in range(1, self.n + 1):
            self.nft(i, "flush chain inet ordo input\n")

    def rules(self, i):
        return _run(self.wrap(i, ["nft", "list", "table", "inet", "ordo"])).stdout

    def teardown(self):
        for ns in reversed(self.created_ns):
            _run(["ip", "netns", "del", ns], check=False)  # takes its veth end (and pair)
        self.created_ns = []
        for link in reversed(self.created_links):
            if _run(["ip", "link", "show", link], check=False).returncode == 0:
                _run(["ip", "link", "del", link], check=False)
        self.created_links = []


_probe = []


def netns_unavailable():
    """Why netns mode cannot run here (None when it can). Probed once per process: a
    namespace with an nft table is created and deleted."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (scripts/install-deps installs nftables)"
    if not _probe:
        name = f"ordo{os.getpid()}probe"
        try:
            _run(["ip", "netns", "add", name])
            try:
                _run(["ip", "netns", "exec", name, "nft", "-f", "-"],
                     input="add table inet ordo\n")
            finally:
                _run(["ip", "netns", "del", name], check=False)
            _probe.append(None)
        except RuntimeError as e:
            _probe.append(f"cannot create a network namespace with nft rules: {e}")
    return _probe[0]


def cleanup_stale():
    """Removes namespaces and bridges left by harness processes that died (names hold the pid)."""
    if netns_unavailable():
        return
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("ordo") and "c" in name and "n" in name[4:]:
            pid = name[4:].split("c")[0]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _run(["ip", "netns", "del", name], check=False)
    bridges = _run(["ip", "-o", "link", "show", "type", "bridge"], check=False).stdout
    for line in bridges.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip()
            pid = name[2:].split("c")[0] if name.startswith("ob") else ""
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                _run(["ip", "link", "del", name], check=False)


class Cluster:
    def __init__(self, n=3, mode="auto", extra_settings=None, root=None, keep_dir=False,
                 seed=1, env=None, extra_args=(), bin=None):
        if mode not in ("auto", "loopback", "netns"):
            raise ValueError(f"mode {mode!r}")
        self.n = n
        self.seed = seed
        self.extra_args = list(extra_args)
        rf = str(min(3, n))
        self.settings = {"default.replication.factor": rf, "offsets.topic.replication.factor": rf}
        self.settings.update({k: str(v) for k, v in (extra_settings or {}).items()})
        self._own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="ordo-cluster-")
        os.makedirs(self.root, exist_ok=True)
        self.keep_dir = keep_dir
        self.env = dict(os.environ, **(env or {}))
        for var in ("ORDO_BIN", "ORDO_JEPSEN_SEED"):  # the broker refuses unknown ORDO_* ones
            self.env.pop(var, None)
        self.bin = bin or _ordo_bin()
        self.fallback_reason = None
        self.netns = None
        self.mesh = None
        self.closed = False
        with _live_lock:
            _counter[0] += 1
            tag = f"{os.getpid()}c{_counter[0] % 10}"
            _live.add(self)
        _install_sigterm_handler()

        if mode in ("auto", "netns"):
            why = netns_unavailable()
            if why is None:
                cleanup_stale()
                net = _Netns(n, tag)
                try:
                    net.setup()
                    self.netns = net
                except RuntimeError as e:
                    why = str(e)
            if why is not None:
                if mode == "netns":
                    self.close()
                    raise RuntimeError(f"netns mode unavailable: {why}")
                self.fallback_reason = why
                print(f"cluster_harness: loopback mode ({why})", file=sys.stderr)
        self.mode = "netns" if self.netns else "loopback"
        if self.mode == "loopback":
            # The proxies listen first: a node's ports, picked free below, cannot be one of
            # theirs (picked the other way round, a proxy could take a port a node was given
            # but had not bound yet, and the node then fails to listen).
            self.mesh = PeerMesh(n, lambda j: self.nodes[j].peer_port, seed=seed)
        self.nodes = {i: Node(self, i, self.netns.ip(i) if self.netns else "127.0.0.1")
                      for i in range(1, n + 1)}

    # ------------------------------------------------------------------ processes
    def node(self, i):
        return self.nodes[i]

    @property
    def bootstrap_servers(self):
        return ",".join(nd.kafka for nd in self.nodes.values())

    def peer_address(self, src, dst):
        """Where node src dials node dst."""
        d = self.nodes[dst]
        if self.mesh is not None and src != dst:
            return f"127.0.0.1:{self.mesh.port(src, dst)}"
        return f"{d.host}:{d.peer_port}"

    def command(self, i, bootstrap):
        nd = self.nodes[i]
        voters = ",".join(f"{j}@{self.peer_address(i, j)}" for j in self.nodes)
        args = [self.bin, "serve", "--data-dir", nd.data_dir,
                "--listen", nd.kafka,
                "--admin-listen", f"{nd.host}:{nd.admin_port}",
                "--node-id", str(i),
                "--cluster-listen", f"{nd.host}:{nd.peer_port}",
                "--cluster", voters]
        if bootstrap:
            args.append("--bootstrap")
        for k, v in self.settings.items():
            args += ["--set", f"{k}={v}"]
        args += self.extra_args
        return self.netns.wrap(i, args) if self.netns else args

    def start(self, i, bootstrap=None, wait=True):
        nd = self.nodes[i]
        if nd.alive():
            raise RuntimeError(f"node {i} is already running")
        if bootstrap is None:
            bootstrap = (not nd.bootstrapped
                         and not os.path.exists(os.path.join(nd.data_dir, "node.meta")))
        nd.bootstrapped = nd.bootstrapped or bootstrap
        nd.starts += 1
        args = self.command(i, bootstrap)
        with open(nd.log_path, "ab") as log:
            log.write(f"=== harness: start {nd.starts}: {' '.join(args)}\n".encode())
            log.flush()
            # `ip netns exec` execs the broker: the child's pid is the broker's
            nd.proc = subprocess.Popen(args, stdout=log, stderr=log, env=self.env,
                                       start_new_session=True)
        nd.stopped = False
        if wait:
            self.wait_serving(i)
        return nd

    def wait_serving(self, i, timeout=START_TIMEOUT_S):
        """Until node i accepts TCP connections on its Kafka port (or exits: an error)."""
        nd = self.nodes[i]

        def up():
            if nd.proc.poll() is not None:
                raise RuntimeError(f"node {i} exited with {nd.proc.returncode}:\n"
                                   f"{self._tail(nd)}")
            try:
                socket.create_connection((nd.host, nd.kafka_port), timeout=1).close()
                return True
            except OSError:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if up():
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {i} did not listen within {timeout}s:\n{self._tail(nd)}")

    def start_all(self):
        for i in self.nodes:
            self.start(i, wait=False)
        for i in self.nodes:
            self.wait_serving(i)

    def stop(self, i, timeout=STOP_TIMEOUT_S):
        """SIGTERM (after SIGCONT if stopped); returns the exit code (0: clean)."""
        nd = self.nodes[i]
        if nd.proc is None:
            return None
        if nd.proc.poll() is None:
            if nd.stopped:
                nd.proc.send_signal(signal.SIGCONT)
            nd.proc.send_signal(signal.SIGTERM)
            try:
                nd.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                nd.proc.kill()
                nd.proc.wait()
                nd.proc = None
                raise RuntimeError(f"node {i} ignored SIGTERM for {timeout}s:\n{self._tail(nd)}")
        code = nd.proc.returncode
        nd.proc = None
        nd.stopped = False
        return code

    def kill(self, i):
        nd = self.nodes[i]
        if nd.proc is None:
            return
        if nd.proc.poll() is None:
            nd.proc.kill()
        nd.proc.wait()
        nd.proc = None
        nd.stopped = False

    def sigstop(self, i):
        nd = self.nodes[i]
        nd.proc.send_signal(signal.SIGSTOP)
        nd.stopped = True

    def sigcont(self, i):
        nd = self.nodes[i]
        nd.proc.send_signal(signal.SIGCONT)
        nd.stopped = False

    def restart(self, i):
        code = self.stop(i)
        if code not in (0, None):
            raise RuntimeError(f"node {i} exited with {code} on SIGTERM:\n"
                               f"{self._tail(self.nodes[i])}")
        return self.start(i)

    def wipe(self, i):
        """Deletes node i's data dir (the node must be down), as a lost disk: its next start
        has no --bootstrap (it joins as an empty node) unless start(i, bootstrap=True)."""
        nd = self.nodes[i]
        if nd.alive():
            raise RuntimeError(f"wipe({i}) of a running node")
        shutil.rmtree(nd.data_dir, ignore_errors=True)

    def alive(self):
        return [i for i, nd in self.nodes.items() if nd.alive()]

    # ------------------------------------------------------------------ observation
    def status(self, i):
        """GET /v1/cluster of node i (a dict); raises when it does not answer."""
        nd = self.nodes[i]
        with urllib.request.urlopen(f"{nd.admin_url}/v1/cluster", timeout=HTTP_TIMEOUT_S) as r:
            return json.loads(r.read())

    def any_status(self):
        """The status of the first live node that answers (None if none does)."""
        for i in self.alive():
            if self.nodes[i].stopped:
                continue
            try:
                return self.status(i)
            except (OSError, ValueError):
                continue
        return None

    def controller(self):
        s = self.any_status()
        if not s:
            return None
        leader = (s.get("controller") or {}).get("leader")
        return leader if leader not in (None, -1) else None

    def leader_of(self, topic, partition, via="status"):
        """The node id leading topic/partition (None when unknown or leaderless)."""
        if via == "status":
            s = self.any_status()
            for p in (s or {}).get("partitions", ()):
                if p.get("topic") == topic and p.get("partition") == partition:
                    leader = p.get("leader")
                    return leader if leader not in (None, -1) else None
            return None
        from confluent_kafka.admin import AdminClient  # only this path needs the client
        md = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(topic, 5)
        t = md.topics.get(topic)
        if t is None or t.error is not None or partition not in t.partitions:
            return None
        leader = t.partitions[partition].leader
        return leader if leader >= 0 else None

    def view(self, i, topic, partition):
        """Node i's own view of topic/partition from GET /v1/cluster: (leader, epoch) or None
        (raises when node i does not answer)."""
        for p in self.status(i).get("partitions", ()):
            if p.get("topic") == topic and p.get("partition") == partition:
                return p.get("leader"), p.get("epoch")
        return None

    def agreed_leader(self, topic, partition, nodes=None, exclude=()):
        """The leader that every node of `nodes` (default: all) names for topic/partition in
        its own view, when they agree and it is not in `exclude`; else None."""
        seen = set()
        for i in nodes or self.nodes:
            v = self.view(i, topic, partition)
            if v is None or v[0] in (None, -1) or v[0] in exclude:
                return None
            seen.add(v[0])
        return seen.pop() if len(seen) == 1 else None

    def partition_ends(self, i, topic, partition):
        """(log end offset, high watermark) of node i's replica (GET /v1/partitions), or None."""
        nd = self.nodes[i]
        with urllib.request.urlopen(f"{nd.admin_url}/v1/partitions",
                                    timeout=HTTP_TIMEOUT_S) as r:
            rows = json.loads(r.read())
        for row in rows:
            if row.get("topic") == topic and row.get("partition") == partition:
                return row["log_end_offset"], row["high_watermark"]
        return None

    def registered(self):
        """How many brokers the controller has registered and not fenced (0: no controller)."""
        s = self.any_status()
        if s is None or (s.get("controller") or {}).get("leader", -1) in (None, -1, 0):
            return 0
        return sum(1 for b in s.get("brokers", ()) if not b.get("fenced"))

    def wait(self, cond, timeout=30, what="condition", interval=0.1):
        """Polls cond() (exceptions count as false) until it returns something truthy, which is
        returned; raises TimeoutError after timeout seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                v = cond()
                if v:
                    return v
            except Exception as e:  # noqa: BLE001 - polled conditions may fail until ready
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what}: not within {timeout}s"
                                   + (f" (last error: {last!r})" if last else ""))
            time.sleep(interval)

    def _tail(self, nd, lines=60):
        return "\n".join(nd.log().splitlines()[-lines:])

    def dump_logs(self, lines=80, out=sys.stderr):
        for i, nd in self.nodes.items():
            print(f"----- node {i} ({nd.log_path}), last {lines} lines -----", file=out)
            print(self._tail(nd, lines), file=out)

    # ------------------------------------------------------------------ faults
    def drop(self, src, dst):
        """What src sends to dst is lost (dst -> src still delivered)."""
        if self.netns:
            self.netns.drop(src, dst)
        else:
            self.mesh.drop(src, dst)

    def cut(self, a, b):
        self.drop(a, b)
        self.drop(b, a)

    def isolate(self, i):
        for j in self.nodes:
            if j != i:
                self.cut(i, j)

    def partition(self, *groups):
        for gi, g in enumerate(groups):
            for h in groups[gi + 1:]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def loss(self, i, pct):
        """netns: pct % of the packets between i and its peers dropped; loopback: each of i's
        peer connections closed with probability pct/100 per second."""
        if self.netns:
            self.netns.loss(i, pct)
        else:
            self.mesh.loss(i, pct / 100.0)

    def delay(self, i, seconds):
        if self.netns:
            raise NotImplementedError("delay needs loopback mode (peer proxies): no netem here")
        self.mesh.delay(i, seconds)

    def heal(self):
        if self.netns:
            self.netns.heal()
        else:
            self.mesh.heal()

    # ------------------------------------------------------------------ teardown
    def close(self, failed=False):
        if self.closed:
            return
        self.closed = True
        for i, nd in getattr(self, "nodes", {}).items():
            if nd.proc is None:
                continue
            try:
                self.stop(i, timeout=10)
            except RuntimeError:
                pass
        if failed and getattr(self, "nodes", None):
            self.dump_logs()
        if self.mesh is not None:
            self.mesh.close()
        if self.netns is not None:
            self.netns.teardown()
        if self._own_root and not self.keep_dir and not failed:
            shutil.rmtree(self.root, ignore_errors=True)
        elif failed:
            print(f"cluster_harness: kept {self.root}", file=sys.stderr)
        with _live_lock:
            _live.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.close(failed=exc_type is not None)
        return False


class ClusterTestCase(unittest.TestCase):
    """A test class whose tests share one started cluster of NODES brokers (MODE as for
    Cluster): every broker registered before the first test; the nodes' logs are printed at
    the end when a test set `type(self).failed`."""

    NODES = 3
    MODE = "loopback"
    START_TIMEOUT_S = 60

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(n=cls.NODES, mode=cls.MODE)
        cls.failed = False
        try:
            cls.c.start_all()
            cls.c.wait(lambda: cls.c.registered() == cls.NODES, cls.START_TIMEOUT_S,
                       f"{cls.NODES} registered brokers")
        except Exception:
            cls.c.close(failed=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.c.close(failed=cls.failed)
