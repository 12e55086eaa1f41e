"""Network faults and pauses on a three-broker cluster (cluster_harness.py).

Runs in netns mode (each broker in its own network namespace, faults are nft drops) when the
test runs as root with `ip` and `nft`, else in loopback mode (the faults are applied by the
peer proxies); the mode is printed. Clients reach every broker directly: only peer traffic is
faulted. One cluster serves the module; each test has its own single-partition topic with
replication factor 3 and heals what it broke.

- leader isolated (both ways): a new leader on the majority side answers acks=all produces;
  the isolated old leader answers no acks=all produce with success (raw Produce v7 sent to it),
  and what it was sent is never read; after the heal it follows the new leader and its log holds
  the same bytes as the others'.
- one-way: the leader hears nobody (what the others send it is dropped) or nobody hears the
  leader: either way a leader serves acks=all again, and after the heal the logs are equal.
- minority: a follower cut off: acks=all goes on; after the heal it catches up byte for byte.
- SIGSTOP of the leader, then SIGCONT: a producer (acks=all, idempotence) and an assign()
  reader run throughout; the history passes tests/jepsen/checker.py (nothing acknowledged lost,
  no duplicate, in order, polls never go back, no two reads of one offset differ).

Conditions are waited for (with generous bounds); the recovery times are printed, not judged.
"""

import glob
import hashlib
import json
import os
import socket
import sys
import threading
import time
import unittest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire
from cluster_harness import Cluster, ClusterTestCase

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "jepsen"))
import checker  # noqa: E402

WAIT_S = 60  # bound of every wait (a failure, not a measurement)


def log_digest(data_dir, tp):
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(data_dir, tp, "*.log"))):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


class ClusterFaultsTest(ClusterTestCase):
    MODE = "auto"  # network namespaces when this can make them

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        print(f"cluster_faults: {cls.c.mode} mode"
              + (f" ({cls.c.fallback_reason})" if cls.c.fallback_reason else ""), flush=True)

    def setUp(self):
        self._outcome_failed = True

    def tearDown(self):
        if self._outcome_failed:
            type(self).failed = True
        self.c.heal()

    def passed(self):
        self._outcome_failed = False

    # ------------------------------------------------------------------ helpers
    def create(self, topic):
        # after a heal, every node knows the controller again before a topic request
        self.c.wait(lambda: all(self.c.status(i)["controller"]["leader"] > 0 for i in self.c.nodes)
                    and self.c.registered() == 3, WAIT_S, "a controller known by every node")
        def created():
            # a new AdminClient each time, and again on NOT_CONTROLLER: librdkafka 2.0's admin
            # client does not follow a controller that moved
            admin = AdminClient({"bootstrap.servers": self.c.bootstrap_servers})
            try:
                admin.create_topics([NewTopic(topic, 1, replication_factor=3)])[topic].result(30)
            except KafkaException as e:
                if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return True
                if e.args[0].code() == KafkaError.NOT_CONTROLLER:
                    return False
                raise
            return True
        self.c.wait(created, WAIT_S, f"{topic} created", interval=0.5)
        return self.c.wait(lambda: self.agreed_leader(topic, (1, 2, 3)), WAIT_S,
                           f"a leader of {topic}-0 named by every node")

    def agreed_leader(self, topic, nodes, exclude=()):
        return self.c.agreed_leader(topic, 0, nodes, exclude)

    def partition_ends(self, i, topic):
        return self.c.partition_ends(i, topic, 0)

    def producer(self, nodes=None):
        boot = ",".join(self.c.node(i).kafka for i in (nodes or self.c.nodes))
        return Producer({"bootstrap.servers": boot, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "message.timeout.ms": 60000, "request.timeout.ms": 5000,
                         "retry.backoff.ms": 50})

    def produce(self, p, topic, values):
        """Sends values; returns {value: offset} of the acknowledged ones after a flush."""
        acked, errors = {}, []

        def on_delivery(err, msg):
            if err is None:
                acked[msg.value().decode()] = msg.offset()
            else:
                errors.append(str(err))
        for v in values:
            p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
            p.poll(0)
        p.flush(WAIT_S + 30)
        self.assertEqual(errors, [], "delivery errors")
        self.assertEqual(sorted(acked), sorted(values), "not every value acknowledged")
        return acked

    def raw_produce(self, node, topic, value, timeout_s=3):
        """One acks=all Produce v7 straight to `node`: its error code, or None when it did not
        answer within timeout_s + 2 s (or closed the connection)."""
        batch = kafka_wire.record_batch([(None, value.encode(), ())])
        try:
            with kafka_wire.Connection(self.c.node(node).kafka, timeout=timeout_s + 2) as conn:
                body = kafka_wire.produce_v7_body(topic, 0, batch, acks=-1,
                                                  timeout_ms=int(timeout_s * 1000))
                resp = conn.request(kafka_wire.API_PRODUCE, 7, body)
                return kafka_wire.parse_produce_v7(resp)[0]
        except (socket.timeout, kafka_wire.ConnectionClosed, OSError):
            return None

    def assert_logs_equal(self, topic):
        """Once every replica has the same log end and high watermark (= log end), their
        segment files hold the same bytes."""
        def caught_up():
            ends = [self.partition_ends(i, topic) for i in (1, 2, 3)]
            return ends[0] is not None and all(e == ends[0] for e in ends) and \
                ends[0][0] == ends[0][1]
        self.c.wait(caught_up, WAIT_S, f"every replica of {topic}-0 caught up")
        digests = {i: log_digest(self.c.node(i).data_dir, f"{topic}-0") for i in (1, 2, 3)}
        self.assertEqual(len(set(digests.values())), 1, f"{topic}-0 replicas differ: {digests}")

    def read_all(self, topic):
        """Every (offset, value) of topic-0 up to its high watermark, read by an assign()
        consumer."""
        c = Consumer({"bootstrap.servers": self.c.bootstrap_servers, "group.id": "faults-reader",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and (not out or out[-1][0] < end - 1):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append((m.offset(), m.value().decode()))
            elif m is None and out and end > 0:
                # Raft's own entries take offsets clients never see: stop once nothing comes
                break
        c.close()
        return out

    def assert_read_exactly(self, topic, acked):
        got = self.read_all(topic)
        offsets = [o for o, _ in got]
        self.assertEqual(offsets, sorted(set(offsets)), "offsets repeat or go back")
        by_value = {v: o for o, v in got}
        self.assertEqual(len(by_value), len(got), "a value read twice")
        self.assertEqual(set(by_value), set(acked), "read != acknowledged")
        moved = {v: (o, by_value[v]) for v, o in acked.items() if by_value[v] != o}
        self.assertEqual(moved, {}, "values read at other offsets than acknowledged")

    # ------------------------------------------------------------------ tests
    def test_isolated_leader(self):
        c, topic = self.c, "iso"
        old = self.create(topic)
        others = [i for i in c.nodes if i != old]
        p = self.producer()
        acked = self.produce(p, topic, [f"a{i}" for i in range(100)])

        c.isolate(old)
        t0 = time.monotonic()
        new = c.wait(lambda: self.agreed_leader(topic, others, exclude=(old,)), WAIT_S,
                     "a new leader on the majority side")
        t_elect = time.monotonic() - t0
        pm = self.producer(others)
        acked.update(self.produce(pm, topic, [f"b{i}" for i in range(100)]))
        t_serve = time.monotonic() - t0
        print(f"leader {old} of {topic}-0 isolated: node {new} leads after {t_elect:.2f} s, "
              f"acks=all served after {t_serve:.2f} s", flush=True)

        # The old leader, cut off, never acknowledges an acks=all write (while it still thinks
        # it leads it waits for a quorum; once it steps down it answers NOT_LEADER).
        answers = [self.raw_produce(old, topic, f"iso{k}", timeout_s=2) for k in range(3)]
        print(f"acks=all produce to the isolated old leader {old}: error codes {answers} "
              f"(None: no answer)", flush=True)
        self.assertNotIn(0, answers, "the isolated old leader acknowledged an acks=all write")

        c.heal()
        t1 = time.monotonic()
        c.wait(lambda: self.agreed_leader(topic, c.nodes), WAIT_S,
               "every node names one leader after the heal")
        acked.update(self.produce(pm, topic, [f"c{i}" for i in range(100)]))
        self.assert_logs_equal(topic)
        print(f"healed: node {old} rejoined and caught up in {time.monotonic() - t1:.2f} s",
              flush=True)
        self.assert_read_exactly(topic, acked)
        p.flush(5)
        self.passed()

    def one_way(self, topic, inbound):
        c = self.c
        old = self.create(topic)
        others = [i for i in c.nodes if i != old]
        p = self.producer()
        acked = self.produce(p, topic, [f"a{i}" for i in range(50)])
        for j in others:
            if inbound:
                c.drop(j, old)  # the leader hears nobody
            else:
                c.drop(old, j)  # nobody hears the leader
        t0 = time.monotonic()
        leader = c.wait(lambda: self.agreed_leader(topic, others, exclude=(old,)), WAIT_S,
                        "the majority names a new leader")
        t_elect = time.monotonic() - t0
        # A producer that starts now on the majority's addresses: one connected only to the old
        # leader keeps asking it for metadata, and it names no leader (docs/cluster.md, "Not
        # yet")
        pm = self.producer(others)
        acked.update(self.produce(pm, topic, [f"b{i}" for i in range(50)]))
        t_serve = time.monotonic() - t0
        print(f"one-way ({'to' if inbound else 'from'} leader {old}): node {leader} leads after "
              f"{t_elect:.2f} s, acks=all served after {t_serve:.2f} s", flush=True)
        c.heal()
        t1 = time.monotonic()
        c.wait(lambda: self.agreed_leader(topic, c.nodes), WAIT_S, "one leader after the heal")
        acked.update(self.produce(p, topic, [f"c{i}" for i in range(50)]))
        pm.flush(5)
        self.assert_logs_equal(topic)
        print(f"healed in {time.monotonic() - t1:.2f} s", flush=True)
        self.assert_read_exactly(topic, acked)

    def test_one_way_leader_deaf(self):
        self.one_way("deaf", inbound=True)
        self.passed()

    def test_one_way_leader_mute(self):
        self.one_way("mute", inbound=False)
        self.passed()

    def test_minority_follower_cut_off(self):
        c, topic = self.c, "minority"
        leader = self.create(topic)
        follower = next(i for i in c.nodes if i != leader)
        p = self.producer()
        acked = self.produce(p, topic, [f"a{i}" for i in range(100)])
        c.isolate(follower)
        t0 = time.monotonic()
        acked.update(self.produce(p, topic, [f"b{i}" for i in range(100)]))
        print(f"follower {follower} cut off: 100 acks=all writes in "
              f"{time.monotonic() - t0:.2f} s", flush=True)
        c.heal()
        t1 = time.monotonic()
        self.assert_logs_equal(topic)
        print(f"healed: follower {follower} caught up in {time.monotonic() - t1:.2f} s",
              flush=True)
        self.assert_read_exactly(topic, acked)
        self.passed()

    def test_leader_paused(self):
        c, topic = self.c, "paused"
        old = self.create(topic)
        others = [i for i in c.nodes if i != old]
        events = []
        lock = threading.Lock()
        t_base = time.monotonic()
        stop_producing, stop_reading = threading.Event(), threading.Event()

        def add(**e):
            with lock:
                e["time"] = round(time.monotonic() - t_base, 4)
                events.append(e)

        def produce_loop(name, nodes, stop):
            p = self.producer(nodes)

            def on_delivery(err, msg):
                v = msg.value().decode()
                if err is None:
                    add(process=name, type="ok", f="produce", topic=topic, partition=0,
                        offset=msg.offset(), value=v)
                else:
                    add(process=name, type="info", f="produce", topic=topic, partition=0,
                        value=v, error=str(err))
            n = 0
            while not stop.is_set():
                v = f"{name}-{n}"
                add(process=name, type="invoke", f="produce", topic=topic, partition=0,
                    value=v, idempotent=True)
                p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
                p.poll(0)
                n += 1
                time.sleep(0.01)
            p.flush(WAIT_S)

        reached = [0]

        def read_loop():
            cons = Consumer({"bootstrap.servers": c.bootstrap_servers,
                             "group.id": "paused-reader", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
            cons.assign([TopicPartition(topic, 0, 0)])
            add(process="r0", type="info", f="assign",
                partitions=[{"topic": topic, "partition": 0, "offset": 0}])
            while not stop_reading.is_set():
                recs = [{"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                         "value": m.value().decode()}
                        for m in cons.consume(100, 0.3) if m.error() is None]
                if recs:
                    add(process="r0", type="ok", f="poll", records=recs)
                    reached[0] = recs[-1]["offset"] + 1
            cons.close()

        # p0 runs throughout; p1 starts on the majority's addresses once the leader is paused
        # (p0, connected to the paused node, may wait for it: FINDING F1's paused variant)
        tp = threading.Thread(target=produce_loop, args=("p0", None, stop_producing))
        tp1 = threading.Thread(target=produce_loop, args=("p1", others, stop_producing))
        tr = threading.Thread(target=read_loop)
        tp.start()
        tr.start()
        try:
            c.wait(lambda: reached[0] > 50, WAIT_S, "the reader reads")
            c.sigstop(old)
            t0 = time.monotonic()
            add(process="nemesis", type="info", f="start", nemesis="stop", op={"nodes": [old]})
            stop_at = t0 - t_base
            tp1.start()
            new = c.wait(lambda: self.agreed_leader(topic, others, exclude=(old,)), WAIT_S,
                         "a new leader while the old one is paused")

            def acked_after_stop():
                with lock:
                    invoked = {e["value"]: e["time"] for e in events
                               if e["f"] == "produce" and e["type"] == "invoke"}
                    return any(e["f"] == "produce" and e["type"] == "ok"
                               and invoked[e["value"]] > stop_at + 0.05 for e in events)
            c.wait(acked_after_stop, WAIT_S, "a write acknowledged while the leader is paused")
            print(f"leader {old} of {topic}-0 paused: node {new} leads, a new write acknowledged "
                  f"{time.monotonic() - t0:.2f} s after SIGSTOP", flush=True)
            time.sleep(1)  # writes go on with the old leader paused
            c.sigcont(old)
            t1 = time.monotonic()
            add(process="nemesis", type="info", f="stop", nemesis="stop", op={"nodes": [old]})
            c.wait(lambda: self.agreed_leader(topic, c.nodes), WAIT_S,
                   "one leader after SIGCONT")
            time.sleep(1)
        finally:
            if c.node(old).stopped:
                c.sigcont(old)
            stop_producing.set()
            tp.join(WAIT_S + 30)
            if tp1.is_alive() or tp1.ident is not None:
                tp1.join(WAIT_S + 30)
        end = self.partition_ends(new, topic)
        c.wait(lambda: reached[0] >= self.partition_ends(new, topic)[1] - 1 or
               reached[0] >= end[1], WAIT_S, "the reader at the end")
        time.sleep(1)
        stop_reading.set()
        tr.join(30)
        self.assert_logs_equal(topic)
        print(f"resumed: node {old} caught up {time.monotonic() - t1:.2f} s after SIGCONT",
              flush=True)
        verdict = checker.check(events, None)
        print(f"checker: {json.dumps(verdict['stats'], sort_keys=True)}", flush=True)
        self.assertTrue(verdict["valid"], json.dumps(verdict["anomalies"], indent=1)[:4000])
        self.assertGreater(verdict["stats"].get("records_read", 0), 50)
        self.passed()


class FiveNodeMetadataTest(unittest.TestCase):
    """Five brokers, a topic with replication factor 3: two brokers hold no replica of its
    partition, and their Metadata must still name its leader (Kafka answers for every partition
    from every broker), or a client that asks them can never produce to it."""

    # Brokers without a replica learn the leader from the controller (leaders report to it;
    # docs/cluster-controller.md): within a bounded wait every broker names it.
    def test_every_node_names_the_leader(self):
        c = Cluster(n=5, mode="loopback")
        try:
            c.start_all()
            c.wait(lambda: c.registered() == 5, WAIT_S, "5 registered brokers")
            admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
            admin.create_topics([NewTopic("five", 1, replication_factor=3)])["five"].result(30)

            def replicas_agree():
                md = admin.list_topics("five", 10).topics["five"].partitions[0]
                return c.agreed_leader("five", 0, md.replicas) and md
            md = c.wait(replicas_agree, WAIT_S, "a leader named by every replica")
            clients = {i: AdminClient({"bootstrap.servers": c.node(i).kafka}) for i in c.nodes}
            answers = {}
            leader = [None]

            # The leader the replicas agree on now (leadership may still move to the preferred
            # replica meanwhile), named by every broker.
            def every_node_names_it():
                leader[0] = c.agreed_leader("five", 0, md.replicas)
                for i, a in clients.items():
                    answers[i] = a.list_topics("five", 10).topics["five"].partitions[0].leader
                return bool(leader[0]) and answers == {i: leader[0] for i in c.nodes}
            t0 = time.monotonic()
            c.wait(every_node_names_it, WAIT_S, "every broker names the leader")
            print(f"replicas {md.replicas}, leader {leader[0]}; every broker names it after "
                  f"{time.monotonic() - t0:.2f} s", flush=True)
            self.assertEqual(answers, {i: leader[0] for i in c.nodes})
        finally:
            c.close()


if __name__ == "__main__":
    unittest.main()
