"""The controller of a three-broker cluster (cluster_harness.py, loopback): topic changes sent
to a broker that is not the controller are forwarded to it, every broker's Metadata names the
leader of partitions it does not host, and a broker killed with SIGKILL is fenced (left out of
Metadata, its replicas offline) until it comes back (docs/cluster-controller.md).

One cluster for the whole module (three brokers start in a few seconds; the checks run in
order on it).
"""

import json
import os
import unittest

from confluent_kafka import Producer

import kafka_wire as kw
from cluster_harness import Cluster

API_METADATA = 3
API_CREATE_TOPICS = 19
SESSION_MS = 3000
WAIT_S = 60


def create_topic(bootstrap, name, partitions, rf):
    """CreateTopics v2 sent to exactly this broker: (error code, message)."""
    body = kw.array([name], lambda n: kw.string(n) + kw.i32(partitions) + kw.i16(rf) +
                    kw.array([], None) + kw.array([], None))
    body += kw.i32(30000) + kw.i8(0)
    with kw.Connection(bootstrap) as c:
        r = kw.Reader(c.request(API_CREATE_TOPICS, 2, body))
    r.i32()  # throttle
    topics = r.array(lambda r: (r.string(), r.i16(), r.string()))
    assert len(topics) == 1 and topics[0][0] == name, topics
    return topics[0][1], topics[0][2]


def metadata(bootstrap, topic):
    """Metadata v1 from exactly this broker: (broker ids, {partition: leader})."""
    with kw.Connection(bootstrap) as c:
        r = kw.Reader(c.request(API_METADATA, 1, kw.metadata_v1_body([topic])))
    brokers = r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))
    r.i32()  # controller

    def partition(r):
        error, index, leader = r.i16(), r.i32(), r.i32()
        r.array(lambda r: r.i32())  # replicas
        r.array(lambda r: r.i32())  # isr
        return index, leader, error

    def topic_entry(r):
        error, name, _internal = r.i16(), r.string(), r.i8()
        return name, error, r.array(partition)
    topics = r.array(topic_entry)
    leaders = {}
    for name, error, parts in topics:
        if name == topic and error == 0:
            leaders = {index: leader for index, leader, _ in parts}
    return sorted(b[0] for b in brokers), leaders


class ClusterControlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(n=3, mode="loopback", extra_settings={
            "broker.session.timeout.ms": SESSION_MS, "broker.heartbeat.interval.ms": 300,
            "metadata.snapshot.interval.commands": 4})
        cls.passed = 0
        cls.cluster.start_all()

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close(failed=cls.passed < 4)

    def status_brokers(self, via):
        return {b["id"]: b["fenced"] for b in self.cluster.status(via)["brokers"]}

    def wait_unfenced(self, count, via=None):
        c = self.cluster

        def ready():
            s = c.status(via) if via else c.any_status()
            return s is not None and s["controller"]["leader"] > 0 and \
                sum(1 for b in s["brokers"] if not b["fenced"]) == count
        c.wait(ready, timeout=WAIT_S, what=f"{count} unfenced brokers")

    def produce(self, bootstrap, topic, partition, count):
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                      "message.timeout.ms": WAIT_S * 1000})
        errors = []
        acked = []
        for i in range(count):
            p.produce(topic, value=str(i), partition=partition,
                      on_delivery=lambda err, m: errors.append(err) if err else acked.append(m))
        self.assertEqual(p.flush(WAIT_S + 10), 0)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), count)

    def setUp(self):
        self.wait_unfenced(3)

    def test_1_forwarded_topic_change(self):
        # A topic created through a broker that is not the controller: forwarded, and answered
        # once that broker knows the topic, so a producer that bootstraps from it alone
        # produces at once.
        c = self.cluster
        controller = c.controller()
        follower = next(i for i in (1, 2, 3) if i != controller)
        other = next(i for i in (1, 2, 3) if i not in (controller, follower))
        error, message = create_topic(c.node(follower).kafka, "forwarded", 1, 3)
        self.assertEqual(error, 0, message)
        _, leaders = metadata(c.node(follower).kafka, "forwarded")
        self.assertEqual(list(leaders), [0], "the forwarding broker does not know the topic")
        self.produce(c.node(follower).kafka, "forwarded", 0, 20)
        error, _ = create_topic(c.node(other).kafka, "forwarded", 1, 3)
        self.assertEqual(error, 36)  # TOPIC_ALREADY_EXISTS, from the controller
        type(self).passed += 1

    def test_2_metadata_names_leaders_hosted_elsewhere(self):
        # Replication factor 1: each partition lives on one broker, yet every broker's Metadata
        # names its leader (the leaders report to the controller), and a producer bootstrapped
        # from a broker that does not host the partition produces to it.
        c = self.cluster
        error, message = create_topic(c.node(c.controller()).kafka, "single", 3, 1)
        self.assertEqual(error, 0, message)

        def everyone_knows():
            views = [metadata(c.node(i).kafka, "single")[1] for i in (1, 2, 3)]
            return all(len(v) == 3 and all(l > 0 for l in v.values()) and v == views[0]
                       for v in views)
        c.wait(everyone_knows, timeout=WAIT_S, what="every broker naming every leader")
        _, leaders = metadata(c.node(1).kafka, "single")
        for p, leader in leaders.items():
            elsewhere = next(i for i in (1, 2, 3) if i != leader)
            self.produce(c.node(elsewhere).kafka, "single", p, 5)
        type(self).passed += 1

    def test_3_killed_broker_fenced_then_unfenced(self):
        # SIGKILL of a broker: the controller fences it after its session, Metadata leaves it
        # out and counts its replicas offline; back, it is unfenced.
        c = self.cluster
        error, message = create_topic(c.node(c.controller()).kafka, "replicated", 1, 3)
        self.assertEqual(error, 0, message)
        victim = next(i for i in (1, 2, 3) if i != c.controller())
        watcher = next(i for i in (1, 2, 3) if i != victim)
        c.wait(lambda: any(p["topic"] == "replicated" for p in c.status(watcher)["partitions"]),
               timeout=WAIT_S, what="the topic known")
        c.kill(victim)
        c.wait(lambda: self.status_brokers(watcher).get(victim) is True, timeout=WAIT_S,
               what=f"broker {victim} fenced")
        brokers, _ = metadata(c.node(watcher).kafka, "replicated")
        self.assertEqual(brokers, sorted(i for i in (1, 2, 3) if i != victim))
        part = next(p for p in c.status(watcher)["partitions"] if p["topic"] == "replicated")
        self.assertEqual(part["offline"], [victim])
        c.start(victim)
        self.wait_unfenced(3, via=watcher)
        brokers, _ = metadata(c.node(watcher).kafka, "replicated")
        self.assertEqual(brokers, [1, 2, 3])
        type(self).passed += 1

    def test_4_restart_restores_metadata_checkpoint(self):
        # Every 4 commands each broker checkpoints its metadata; a restarted broker restores the
        # checkpoint and applies only the commands after it, to the same state (a topic deleted
        # before the checkpoint stays deleted).
        c = self.cluster
        controller = c.controller()
        error, message = create_topic(c.node(controller).kafka, "gone", 2, 3)
        self.assertEqual(error, 0, message)
        with kw.Connection(c.node(controller).kafka) as conn:
            body = kw.array(["gone"], kw.string) + kw.i32(30000)
            r = kw.Reader(conn.request(20, 1, body))  # DeleteTopics v1
            r.i32()
            self.assertEqual(r.array(lambda r: (r.string(), r.i16())), [("gone", 0)])
        for i in range(3):  # more commands: the next checkpoint covers the deletion
            error, message = create_topic(c.node(controller).kafka, f"after{i}", 1, 3)
            self.assertEqual(error, 0, message)
        node = next(i for i in (1, 2, 3) if i != controller)
        c.wait(lambda: sorted(p["topic"] for p in c.status(node)["partitions"]
                              if p["topic"].startswith("after")) ==
               ["after0", "after1", "after2"], timeout=WAIT_S, what="the topics known")

        def layout(i):
            return sorted((p["topic"], p["partition"], p["replicas"])
                          for p in c.status(i)["partitions"])
        before = layout(node)
        path = os.path.join(c.node(node).data_dir, "__cluster_metadata-0", "metadata.checkpoint")
        c.wait(lambda: os.path.exists(path), timeout=WAIT_S, what="a metadata checkpoint")
        self.assertEqual(c.stop(node), 0)
        with open(path) as f:
            checkpoint = json.load(f)
        self.assertNotIn("gone", [t["name"] for t in checkpoint["table"]["topics"]])
        c.start(node)
        self.assertIn("restored the metadata checkpoint at controller log offset "
                      f"{checkpoint['applied_offset']}", c.node(node).log())
        c.wait(lambda: layout(node) == before, timeout=WAIT_S, what="the same topics again")
        self.assertNotIn("gone", [t for t, _, _ in layout(node)])
        self.wait_unfenced(3, via=node)
        type(self).passed += 1


if __name__ == "__main__":
    unittest.main()
