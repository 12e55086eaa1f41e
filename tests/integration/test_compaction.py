"""Log compaction seen by real clients: kcat and confluent-kafka-python write keyed records and
tombstones to a compacted topic; after the broker's background cleaner has run, both read the
topic from the beginning and get exactly the latest value of each live key. Committed offsets
live in the compacted __consumer_offsets, which the cleaner compacts too; they survive it and a
restart."""

import json
import shutil
import subprocess
import time
import unittest
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire as kw
from ordo_harness import ORDO_BIN

KCAT = shutil.which("kcat") or "kcat"
KEYS = 40          # live keys k0..k39
DELETED = 10       # k40..k49 written once, then deleted with a tombstone
FILLER = 20        # f0..f19 written once each, last: more than a segment


class CompactionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker([
            # The cleaner looks for work every 50 ms; __consumer_offsets gets small segments
            # so that commits roll it and the cleaner has something to compact there.
            "--set", "log.cleaner.backoff.ms=50",
            "--set", "offsets.topic.segment.bytes=2048",
            "--set", "offsets.topic.num.partitions=3",
            "--set", "group.initial.rebalance.delay.ms=0",
        ]))
        cls.bs = cls.broker.bootstrap

    def admin_partitions(self, topic):
        url = f"http://127.0.0.1:{self.broker.admin_port}/v1/topics/{topic}/partitions"
        with urllib.request.urlopen(url, timeout=kw.WAIT_S) as r:
            return json.load(r)

    def wait_until_clean(self, topic, partition=0):
        """Waits until every sealed segment of the partition has been cleaned."""
        deadline = time.monotonic() + 4 * kw.WAIT_S
        while True:
            p = [x for x in self.admin_partitions(topic) if x["partition"] == partition][0]
            c = p["cleaner"]
            if c["cleans"] > 0 and c["dirty_bytes"] == 0:
                return p
            self.assertLess(time.monotonic(), deadline, f"never cleaned: {p}")
            time.sleep(0.05)

    def kcat(self, *args, input=None):
        r = subprocess.run([KCAT, "-b", self.bs, *args], input=input, capture_output=True,
                           text=True, timeout=2 * kw.WAIT_S)
        self.assertEqual(r.returncode, 0, f"kcat {' '.join(args)}: {r.stderr}")
        return r.stdout

    def test_clients_read_the_latest_value_of_each_live_key(self):
        topic = "compacted-table"
        admin = AdminClient({"bootstrap.servers": self.bs})
        futures = admin.create_topics([NewTopic(topic, 1, 1, config={
            "cleanup.policy": "compact",
            "segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "0",
        })])
        futures[topic].result(kw.WAIT_S)

        # Round 1 (kcat): every key, k40..k49 included. Round 2 (kcat, -Z): tombstones for
        # k40..k49. Rounds 3-5 (confluent-kafka): new values of k0..k39. Round 6: FILLER keys
        # written once each. The cleaner compacts sealed segments only; round 6 is larger than
        # a segment, so everything before it is sealed, and the active segment holds nothing
        # but round-6 records (each the only one of its key).
        one_per_batch = ["-X", "batch.num.messages=1", "-X", "acks=all"]
        self.kcat("-P", "-t", topic, "-K", ":", *one_per_batch,
                  input="".join(f"k{i}:r1-k{i}\n" for i in range(KEYS + DELETED)))
        self.kcat("-P", "-t", topic, "-K", ":", "-Z", *one_per_batch,
                  input="".join(f"k{i}:\n" for i in range(KEYS, KEYS + DELETED)))
        producer = Producer({"bootstrap.servers": self.bs, "acks": "all", "linger.ms": 0})
        rounds = [[(f"k{i}", f"r{r}-k{i}") for i in range(KEYS)] for r in (3, 4, 5)]
        rounds.append([(f"f{i}", f"filler-{i}") for i in range(FILLER)])
        for records in rounds:
            for k, v in records:
                producer.produce(topic, key=k, value=v)
                # Flushed one by one: one record per batch.
                self.assertEqual(producer.flush(kw.WAIT_S), 0)
        total = (KEYS + DELETED) + DELETED + 3 * KEYS + FILLER
        expected = rounds[2] + rounds[3]

        p = self.wait_until_clean(topic)
        self.assertEqual(p["log_end_offset"], total)
        self.assertGreater(p["cleaner"]["records_dropped"], 0)

        # kcat from the beginning: exactly the latest values, in offset order, with gaps.
        out = self.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-Z", "-f", "%o %k %s\n")
        rows = [line.split(" ") for line in out.splitlines() if line]
        self.assertEqual([(k, v) for _, k, v in rows], expected)
        offsets = [int(o) for o, _, _ in rows]
        self.assertEqual(offsets, sorted(set(offsets)))
        self.assertEqual(offsets[-1], total - 1)
        self.assertEqual(offsets[0], total - FILLER - KEYS)  # round 5 and the filler are left

        # confluent-kafka from the beginning: the same.
        consumer = Consumer({"bootstrap.servers": self.bs, "group.id": "compaction-reader",
                             "enable.auto.commit": False, "enable.partition.eof": True})
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + kw.WAIT_S
        while time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None:
                continue
            if m.error():
                self.assertTrue(m.error().code() == -191, m.error())  # _PARTITION_EOF
                break
            got.append((m.offset(), m.key().decode(), m.value().decode()))
        consumer.close()
        self.assertEqual([(k, v) for _, k, v in got], expected)
        self.assertEqual([o for o, _, _ in got], offsets)

        # ordo topic describe shows the cleaner's state from the admin API.
        r = subprocess.run([ORDO_BIN, "topic", "describe", "-b", self.bs, "--admin",
                            f"127.0.0.1:{self.broker.admin_port}", topic],
                           capture_output=True, text=True, timeout=kw.WAIT_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Cleaner:", r.stdout)
        self.assertRegex(r.stdout, r"Partition: 0\tDirtyRatio: 0\.000\tDirtyBytes: 0\t")

    def test_committed_offsets_survive_the_cleaning_of_consumer_offsets(self):
        topic = "compaction-commits"
        kw.create_topic(self.bs, topic, 1)
        group = "compaction-committer"
        consumer = Consumer({"bootstrap.servers": self.bs, "group.id": group,
                             "enable.auto.commit": False})
        # 400 commits of one group: its __consumer_offsets partition rolls many 2 KiB
        # segments, each commit superseding the one before.
        for i in range(1, 401):
            consumer.commit(offsets=[TopicPartition(topic, 0, i)], asynchronous=False)
        consumer.close()
        cleaned = []
        deadline = time.monotonic() + 4 * kw.WAIT_S
        while not cleaned:
            cleaned = [p for p in self.admin_partitions("__consumer_offsets")
                       if p["cleaner"]["cleans"] > 0 and p["cleaner"]["records_dropped"] > 0]
            self.assertLess(time.monotonic(), deadline, "__consumer_offsets never cleaned")
            time.sleep(0.05)

        def committed():
            c = Consumer({"bootstrap.servers": self.bs, "group.id": group})
            try:
                return c.committed([TopicPartition(topic, 0)], timeout=kw.WAIT_S)[0].offset
            finally:
                c.close()

        self.assertEqual(committed(), 400)
        # The broker replays the compacted log on start.
        self.broker.restart()
        self.bs = self.broker.bootstrap
        self.assertEqual(committed(), 400)


if __name__ == "__main__":
    unittest.main()
