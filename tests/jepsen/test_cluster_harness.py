"""cluster_harness.py driving fake_ordo.py (a stand-in speaking the cluster command line and
GET /v1/cluster): command lines, --bootstrap only without node.meta, ports kept across
restarts, kill/stop/sigstop/restart/wipe, status and leader lookups, cleanup. The netns test
(root with `ip` and `nft`, else skipped with the reason) checks the namespaces' addresses, an
nft one-way drop between two nodes and its heal, and that close() removes everything."""

import json
import os
import subprocess
import sys
import unittest

import cluster_harness
from cluster_harness import Cluster

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_ordo.py")


def starts(c, i):
    with open(os.path.join(c.node(i).data_dir, "starts.jsonl")) as f:
        return [json.loads(line) for line in f]


def flag(args, name):
    return args[args.index(name) + 1]


class LoopbackHarnessTest(unittest.TestCase):
    def test_lifecycle(self):
        with Cluster(3, mode="loopback", bin=FAKE,
                     extra_settings={"raft.election.ticks": 20}) as c:
            self.assertEqual(c.mode, "loopback")
            c.start_all()
            ports = {i: (nd.kafka_port, nd.peer_port, nd.admin_port) for i, nd in c.nodes.items()}
            self.assertEqual(len({p for t in ports.values() for p in t}), 9)
            for i in (1, 2, 3):
                args = starts(c, i)[0]
                self.assertIn("--bootstrap", args)
                self.assertEqual(flag(args, "--node-id"), str(i))
                self.assertEqual(flag(args, "--cluster-listen"), f"127.0.0.1:{ports[i][1]}")
                voters = dict(v.split("@") for v in flag(args, "--cluster").split(","))
                self.assertEqual(set(voters), {"1", "2", "3"})
                for j in (1, 2, 3):  # itself directly, the others through its proxies
                    want = ports[j][1] if i == j else c.mesh.port(i, j)
                    self.assertEqual(voters[str(j)], f"127.0.0.1:{want}")
                sets = [args[k + 1] for k, a in enumerate(args) if a == "--set"]
                self.assertEqual(sets, ["default.replication.factor=3",
                                        "offsets.topic.replication.factor=3",
                                        "raft.election.ticks=20"])
            self.assertEqual(c.status(2)["node_id"], 2)
            self.assertEqual(c.controller(), 1)
            self.assertEqual(c.leader_of("t", 0), 1)
            self.assertIsNone(c.leader_of("t", 7))
            self.assertEqual(c.bootstrap_servers,
                             ",".join(f"127.0.0.1:{ports[i][0]}" for i in (1, 2, 3)))

            c.kill(2)
            self.assertEqual(c.alive(), [1, 3])
            c.start(2)
            self.assertNotIn("--bootstrap", starts(c, 2)[1])  # node.meta is there now
            self.assertEqual(c.node(2).kafka_port, ports[2][0])

            c.sigstop(3)
            with self.assertRaises(TimeoutError):
                c.wait(lambda: c.status(3), timeout=0.5, what="a stopped node's status")
            self.assertEqual(c.stop(3), 0)  # SIGCONT then SIGTERM
            c.wipe(3)  # a lost disk: the node must not bootstrap again
            c.start(3)
            self.assertEqual(len(starts(c, 3)), 1)
            self.assertNotIn("--bootstrap", starts(c, 3)[0])
            c.kill(3)
            c.wipe(3)
            c.start(3, bootstrap=True)  # unless asked to
            self.assertIn("--bootstrap", starts(c, 3)[0])
            c.restart(1)
            self.assertEqual(len(starts(c, 1)), 2)
            self.assertEqual(c.wait(lambda: c.status(1)["node_id"], 10, "node 1"), 1)
            procs = [nd.proc.pid for nd in c.nodes.values()]
            root = c.root
        self.assertFalse(os.path.exists(root))
        for pid in procs:
            self.assertFalse(os.path.exists(f"/proc/{pid}") and
                             open(f"/proc/{pid}/stat").read().split()[2] != "Z", pid)

    def test_failed_start_reports_the_log(self):
        with Cluster(1, mode="loopback", bin="/bin/false") as c:
            with self.assertRaisesRegex(RuntimeError, "node 1 exited with 1"):
                c.start(1)


@unittest.skipIf(cluster_harness.netns_unavailable(),
                 f"netns mode: {cluster_harness.netns_unavailable()}")
class NetnsHarnessTest(unittest.TestCase):
    def probe(self, c, src, dst):
        """Can node src's namespace open a TCP connection to node dst's Kafka port?"""
        nd = c.node(dst)
        code = ("import socket,sys\n"
                "try:\n"
                f"  socket.create_connection(('{nd.host}', {nd.kafka_port}), timeout=1).close()\n"
                "except OSError:\n  sys.exit(1)\n")
        return subprocess.run(c.netns.wrap(src, [sys.executable, "-c", code])).returncode == 0

    def test_namespaces_rules_and_cleanup(self):
        with Cluster(2, mode="netns", bin=FAKE) as c:
            self.assertEqual(c.mode, "netns")
            c.start_all()  # reachable from the root namespace through the bridge
            self.assertTrue(c.node(1).host.startswith("10."))
            self.assertEqual(c.status(2)["node_id"], 2)
            self.assertTrue(self.probe(c, 1, 2))
            c.drop(1, 2)  # a rule in node 2's input chain
            self.assertIn("drop", c.netns.rules(2))
            self.assertFalse(self.probe(c, 1, 2))
            c.heal()
            self.assertTrue(self.probe(c, 1, 2))
            c.loss(1, 100)  # every packet between 1 and its peers
            self.assertIn("drop", c.netns.rules(1))
            self.assertFalse(self.probe(c, 2, 1))
            c.heal()
            c.loss(1, 50)
            self.assertIn("numgen random mod 100 < 50", c.netns.rules(1))
            c.heal()
            self.assertNotIn("drop", c.netns.rules(1) + c.netns.rules(2))
            self.assertTrue(self.probe(c, 2, 1))
            names = list(c.netns.created_ns)
            bridge = c.netns.bridge
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for ns in names:
            self.assertNotIn(ns, listed)
        self.assertNotEqual(subprocess.run(["ip", "link", "show", bridge],
                                           capture_output=True).returncode, 0)

    def test_sigterm_of_the_test_process_cleans_up(self):
        code = ("import sys, time, cluster_harness\n"
                f"c = cluster_harness.Cluster(2, mode='netns', bin={FAKE!r})\n"
                "c.start_all()\n"
                "print(' '.join(str(nd.proc.pid) for nd in c.nodes.values()), flush=True)\n"
                "time.sleep(60)\n")
        env = dict(os.environ, PYTHONPATH=os.path.join(HERE, "..", "integration"))
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                 env=env)
        pids = [int(p) for p in child.stdout.readline().split()]
        self.assertEqual(len(pids), 2)
        child.terminate()
        self.assertEqual(child.wait(30), 143)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        self.assertNotIn(f"ordo{child.pid}c", listed)
        for pid in pids:
            self.assertFalse(os.path.exists(f"/proc/{pid}"), f"broker {pid} left running")


if __name__ == "__main__":
    unittest.main()
