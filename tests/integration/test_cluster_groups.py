"""A consumer group across the SIGKILL of its coordinator's broker (cluster mode).

Three `ordo serve` processes (cluster_harness.py, loopback). FindCoordinator creates
__consumer_offsets on first need (3 partitions here, replication factor 3); every broker then
names the same coordinator for the group: the leader of the group's partition. Two
confluent-kafka consumers in one group read a topic of replication factor 3 and commit
synchronously; then the coordinator's broker is SIGKILLed while more messages are produced
(acks=all, idempotent). The group must go on with the new coordinator (the new leader of that
partition, which loads the group from the replicated log): every acknowledged message is
consumed, no acknowledged commit is lost, and the committed offsets read after the kill are
never below those read before it.
"""

import struct
import time
import unittest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_harness import Cluster
from kafka_wire import Connection, Reader, string

TOPIC = "grouped"
PARTITIONS = 4
GROUP = "cg"
OFFSETS_PARTITIONS = 3
BEFORE = 400  # messages produced and consumed before the kill
AFTER = 400   # produced after it
COMMIT_EVERY = 25
API_FIND_COORDINATOR = 10


def java_hash(s):
    h = 0
    for unit in struct.unpack(f">{len(s.encode('utf-16-be')) // 2}H", s.encode("utf-16-be")):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group, n):
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % n


def find_coordinator(address, group):
    """FindCoordinator v0 to one broker: (error code, node id)."""
    with Connection(address, timeout=10) as conn:
        r = Reader(conn.request(API_FIND_COORDINATOR, 0, string(group)))
        error, node = r.i16(), r.i32()
        return error, node


class ClusterGroupsTest(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster(n=3, mode="loopback", extra_settings={
            "offsets.topic.num.partitions": OFFSETS_PARTITIONS,
            "group.initial.rebalance.delay.ms": 0})
        self.failed = True
        self.consumers = []

    def tearDown(self):
        for c in self.consumers:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - the broker may be gone
                pass
        self.cluster.close(failed=self.failed)

    def coordinator_everywhere(self, nodes):
        """The coordinator every listed broker names for GROUP (None while they disagree or
        one answers an error)."""
        answers = {find_coordinator(self.cluster.node(i).kafka, GROUP) for i in nodes}
        if len(answers) != 1:
            return None
        error, node = answers.pop()
        return node if error == 0 else None

    def committed(self):
        """The group's committed offsets, by partition (a consumer that does not join)."""
        probe = Consumer({"bootstrap.servers": self.cluster.bootstrap_servers, "group.id": GROUP,
                          "enable.auto.commit": False})
        try:
            tps = probe.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)],
                                  timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            probe.close()

    def test_group_survives_the_kill_of_its_coordinator(self):
        c = self.cluster
        c.start_all()
        c.wait(lambda: (s := c.any_status()) is not None and s["controller"]["leader"] > 0 and
               sum(1 for b in s["brokers"] if not b["fenced"]) == 3, 60, "3 registered brokers")

        # FindCoordinator makes __consumer_offsets; then every broker names the leader of the
        # group's partition.
        p = offsets_partition(GROUP, OFFSETS_PARTITIONS)
        coordinator = c.wait(lambda: self.coordinator_everywhere((1, 2, 3)), 60,
                             "one coordinator named by every broker")
        self.assertEqual(coordinator, c.leader_of("__consumer_offsets", p))

        admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, replication_factor=3)])[TOPIC].result(30)
        c.wait(lambda: all(c.leader_of(TOPIC, q) for q in range(PARTITIONS)), 60,
               "a leader per partition")

        producer = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 2,
                             "message.timeout.ms": 60000})
        acked = {}  # value -> (partition, offset)
        errors = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                acked[msg.value().decode()] = (msg.partition(), msg.offset())

        def produce(first, count):
            for i in range(first, first + count):
                producer.produce(TOPIC, value=str(i), partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
                producer.poll(0)

        consumed = {}  # value -> (partition, offset)
        last = {}      # partition -> largest offset consumed
        acked_commits = {}  # partition -> largest offset a commit was acknowledged for
        since_commit = [0, 0]
        for _ in range(2):
            consumer = Consumer({"bootstrap.servers": c.bootstrap_servers, "group.id": GROUP,
                                 "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                 "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
            consumer.subscribe([TOPIC])
            self.consumers.append(consumer)

        def commit(k):
            try:
                result = self.consumers[k].commit(asynchronous=False)
            except KafkaException as e:
                # Nothing newer than what is committed (librdkafka skips those): done. Else,
                # e.g. NOT_COORDINATOR while the coordinator moves: not acknowledged.
                return e.args[0].code() == KafkaError._NO_OFFSET
            for tp in result or ():
                if tp.error is None and tp.offset >= 0:
                    acked_commits[tp.partition] = max(acked_commits.get(tp.partition, -1),
                                                      tp.offset)
            return True

        def consume_until(values, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if values <= consumed.keys():
                    return
                for k, consumer in enumerate(self.consumers):
                    m = consumer.poll(0.05)
                    if m is None or m.error() is not None:
                        continue
                    consumed[m.value().decode()] = (m.partition(), m.offset())
                    last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
                    since_commit[k] += 1
                    if since_commit[k] >= COMMIT_EVERY and commit(k):
                        since_commit[k] = 0
            missing = sorted(values - consumed.keys(), key=int)
            self.fail(f"{len(missing)} acknowledged messages not consumed, e.g. {missing[:10]}")

        def commit_all(timeout):
            deadline = time.monotonic() + timeout
            pending = {0, 1}
            while pending and time.monotonic() < deadline:
                for k in list(pending):
                    self.consumers[k].poll(0.05)
                    if commit(k):
                        pending.discard(k)
            self.assertEqual(pending, set(), "consumers whose final commit failed")

        produce(0, BEFORE)
        self.assertEqual(producer.flush(60), 0)
        consume_until(set(acked), 60)
        commit_all(30)
        before = self.committed()
        for q in range(PARTITIONS):
            self.assertGreaterEqual(before[q], acked_commits.get(q, -1), f"partition {q}")

        # The coordinator's broker dies; production and consumption go on meanwhile.
        c.kill(coordinator)
        killed_at = time.monotonic()
        produce(BEFORE, AFTER)
        self.assertEqual(producer.flush(120), 0, "messages left unacknowledged")
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), BEFORE + AFTER)
        consume_until(set(acked), 90)
        commit_all(60)
        print(f"coordinator {coordinator} killed; every message consumed and committed "
              f"{time.monotonic() - killed_at:.1f} s later")

        live = [i for i in (1, 2, 3) if i != coordinator]
        new = c.wait(lambda: self.coordinator_everywhere(live), 30, "a new coordinator")
        self.assertNotEqual(new, coordinator)
        self.assertEqual(new, c.leader_of("__consumer_offsets", p))

        after = self.committed()
        for q in range(PARTITIONS):
            self.assertGreaterEqual(after[q], before[q], f"partition {q}: commit went back")
            self.assertGreaterEqual(after[q], acked_commits.get(q, -1),
                                    f"partition {q}: an acknowledged commit was lost")
            self.assertGreaterEqual(after[q], last[q] + 1, f"partition {q}: not all committed")
        self.assertEqual({v: at for v, at in consumed.items() if v in acked}, acked,
                         "messages consumed at other offsets than acknowledged")
        self.failed = False


if __name__ == "__main__":
    unittest.main()
