"""Three `ordo serve` processes in cluster mode (cluster_harness.py) lose nothing acknowledged
when the leader of a partition is killed.

A confluent-kafka producer with acks=all and idempotence sends keyed messages to a topic of
three partitions with replication factor 3; after a third of them are acknowledged the leader
of partition 0 is SIGKILLed. Every message must still be acknowledged, and afterwards (the
killed node restarted) readers that assign the partitions find exactly the acknowledged values,
once each, at their acknowledged offsets, in the order they were sent. Metadata names every
broker and a leader for each partition, and once the cluster is quiet every replica holds the
same log bytes.
"""

import glob
import hashlib
import json
import os
import subprocess
import time
import unittest
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_harness import Cluster

TOPIC = "failover"
PARTITIONS = 3
MESSAGES = 3000
KILL_AFTER = 1000


def log_digest(data_dir, tp):
    """The bytes of a partition's segments, in offset order."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(data_dir, tp, "*.log"))):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


class ClusterFailoverTest(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster(n=3, mode="loopback")
        self.failed = True

    def tearDown(self):
        self.cluster.close(failed=self.failed)

    def wait_brokers(self, count):
        def ready():
            s = self.cluster.any_status()
            return s is not None and s["controller"]["leader"] > 0 and \
                sum(1 for b in s["brokers"] if not b["fenced"]) == count
        self.cluster.wait(ready, timeout=60, what=f"{count} registered brokers")

    def leaders(self, admin):
        md = admin.list_topics(TOPIC, timeout=10)
        return {p.id: p.leader for p in md.topics[TOPIC].partitions.values()}

    def test_leader_kill_loses_nothing_acknowledged(self):
        c = self.cluster
        c.start_all()
        self.wait_brokers(3)
        admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
        futures = admin.create_topics([NewTopic(TOPIC, PARTITIONS, replication_factor=3)])
        futures[TOPIC].result(timeout=30)
        c.wait(lambda: all(l > 0 for l in self.leaders(admin).values()) and
               len(self.leaders(admin)) == PARTITIONS, timeout=60, what="a leader per partition")

        producer = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 2,
                             "message.timeout.ms": 60000})
        acked = {}  # value -> (partition, offset)
        errors = []
        ack_times = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
                return
            acked[msg.value().decode()] = (msg.partition(), msg.offset())
            ack_times.append((time.monotonic(), msg.partition()))

        sent_partition = {}
        killed = None
        kill_time = None
        for i in range(MESSAGES):
            p = i % PARTITIONS
            producer.produce(TOPIC, key=str(i), value=str(i), partition=p, on_delivery=on_delivery)
            sent_partition[str(i)] = p
            producer.poll(0)
            if i == KILL_AFTER:
                producer.flush(60)
                killed = self.leaders(admin)[0]
                c.kill(killed)
                kill_time = time.monotonic()
        self.assertEqual(producer.flush(120), 0, "messages left unacknowledged")
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), MESSAGES)
        first = [t for t, p in ack_times if t > kill_time and p == 0]
        print(f"leader {killed} of {TOPIC}-0 killed; next acknowledgement of partition 0 after "
              f"{(first[0] - kill_time) if first else float('nan'):.3f} s")

        c.restart(killed)
        self.wait_brokers(3)
        # The restarted broker answers Metadata from the controller's log as far as it has
        # applied it: wait until every broker knows the topic and its leaders again.
        def known_everywhere():
            for i in (1, 2, 3):
                try:
                    s = c.status(i)
                except OSError:
                    return False
                parts = [p for p in (s or {}).get("partitions", []) if p["topic"] == TOPIC]
                if len(parts) != PARTITIONS or any(p["leader"] < 1 for p in parts):
                    return False
            return True
        c.wait(known_everywhere, timeout=60, what="every broker knows the topic's leaders")
        c.wait(lambda: all(l > 0 for l in self.leaders(admin).values()), timeout=60,
               what="a leader per partition after the restart")
        md = admin.list_topics(timeout=10)
        self.assertEqual(sorted(b.id for b in md.brokers.values()), [1, 2, 3])
        # What an operator sees: three live brokers, a controller, every partition led.
        n1 = c.node(1)
        status = subprocess.run([c.bin, "cluster", "status", "--admin",
                                 f"{n1.host}:{n1.admin_port}"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertRegex(status.stdout, r"controller: node [123] \(term \d+\)")
        self.assertEqual(status.stdout.count(" live\n"), 3, status.stdout)
        self.assertIn(f"{PARTITIONS} partitions: 0 without a leader", status.stdout)

        # Readers that assign each partition read exactly what was acknowledged.
        consumer = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": "failover",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        ends = {}
        for p in range(PARTITIONS):
            ends[p] = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
        consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        read = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 60
        done = lambda: all(read[p] and read[p][-1][0] >= ends[p] - 1 or ends[p] == 0
                           for p in range(PARTITIONS))
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                read[m.partition()].append((m.offset(), m.value().decode()))
            # Raft's own entries (control batches) take offsets clients never see: read until
            # nothing more comes once every acknowledged offset is passed.
            if all(not read[p] or read[p][-1][0] >= max(
                    (o for v, (pp, o) in acked.items() if pp == p), default=-1)
                    for p in range(PARTITIONS)) and m is None:
                break
        consumer.close()
        for p in range(PARTITIONS):
            offsets = [o for o, _ in read[p]]
            self.assertEqual(offsets, sorted(set(offsets)), f"partition {p}: offsets repeat")
            values = [v for _, v in read[p]]
            self.assertEqual(len(values), len(set(values)), f"partition {p}: a value twice")
            self.assertEqual(values, sorted(values, key=int), f"partition {p}: out of order")
        by_value = {v: (p, o) for p in read for o, v in read[p]}
        missing = [v for v in acked if v not in by_value]
        self.assertEqual(missing, [], "acknowledged values not read")
        moved = [v for v, at in acked.items() if by_value[v] != at]
        self.assertEqual(moved, [], "values read at other offsets than acknowledged")
        self.assertEqual(set(by_value), set(acked), "values read that were never acknowledged")

        # Quiet cluster: once every replica has every entry committed, their logs hold the
        # same bytes.
        def partition_ends(i):
            with urllib.request.urlopen(c.node(i).admin_url + "/v1/partitions", timeout=5) as r:
                rows = json.load(r)
            return {row["partition"]: (row["log_end_offset"], row["high_watermark"])
                    for row in rows if row["topic"] == TOPIC}

        def caught_up():
            ends = [partition_ends(i) for i in (1, 2, 3)]
            return all(e == ends[0] for e in ends) and len(ends[0]) == PARTITIONS and \
                all(leo == hw for leo, hw in ends[0].values())
        c.wait(caught_up, timeout=60, what="every replica caught up")
        for p in range(PARTITIONS):
            digests = {i: log_digest(c.node(i).data_dir, f"{TOPIC}-{p}") for i in (1, 2, 3)}
            self.assertEqual(len(set(digests.values())), 1, f"partition {p}: {digests}")
        self.failed = False


if __name__ == "__main__":
    unittest.main()
