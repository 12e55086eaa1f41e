"""Restarts: a clean stop (SIGTERM) keeps everything; SIGKILL in the middle of acks=all
produce loses nothing that was acknowledged and stores nothing twice.

The SIGKILL rounds are random (when the kill lands); the seed is printed and can be fixed with
ORDO_CRASH_SEED=<n> (a test knob the broker lets through)."""

import os
import random
import threading
import time
import unittest

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

import kafka_wire as kw

KILL_ROUNDS = 5
# Small segments: recovery after SIGKILL has several segments per partition to go through.
BROKER_ARGS = ["--set", "log.segment.bytes=100000"]


def read_topic(bootstrap, topic, partitions, expected=None):
    """Every message of the topic from offset 0 to the end offsets, per partition in offset
    order: {partition: [(offset, key, value, headers, timestamp)]}."""
    c = Consumer(kw.assign_only_consumer_conf(bootstrap, **{"enable.partition.eof": True}))
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=kw.WAIT_S)[1]
                for p in range(partitions)}
        out = {p: [] for p in range(partitions)}
        waiting = {p for p in range(partitions) if ends[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        deadline = time.monotonic() + kw.WAIT_S
        while waiting and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.1):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            waiting.discard(m.partition())
                        continue
                    raise AssertionError(f"consumer error: {m.error()}")
                out[m.partition()].append((m.offset(), m.key(), m.value(), m.headers(),
                                           m.timestamp()[1]))
        if waiting:
            raise AssertionError(f"partitions {sorted(waiting)} not read to their end {ends}")
        return out
    finally:
        c.close()


class RestartTest(unittest.TestCase):
    def test_sigterm_then_restart_keeps_everything(self):
        topic, partitions, count = "restart-clean", 3, 3000
        with kw.Broker(BROKER_ARGS) as b:
            kw.create_topic(b.bootstrap, topic, partitions, {"retention.ms": "86400000"})
            p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                          "enable.idempotence": False, "linger.ms": 5})
            failures = []
            for i in range(count):
                p.produce(topic, key=f"k{i % 17}".encode(), value=f"v{i:05d}".encode(),
                          headers=[("i", str(i).encode())], timestamp=1_700_000_000_000 + i,
                          on_delivery=lambda err, msg: err and failures.append(err))
                p.poll(0)
            self.assertEqual(p.flush(kw.WAIT_S), 0)
            self.assertEqual(failures, [])
            before = read_topic(b.bootstrap, topic, partitions)
            self.assertEqual(sum(len(v) for v in before.values()), count)

            self.assertEqual(b.stop(), 0, "exit code after SIGTERM")
            b.start()
            after = read_topic(b.bootstrap, topic, partitions)
            self.assertEqual(after, before)
            # The topic's configs survive too.
            a = AdminClient({"bootstrap.servers": b.bootstrap})
            res = ConfigResource("topic", topic)
            configs = a.describe_configs([res])[res].result()
            self.assertEqual(configs["retention.ms"].value, "86400000")
            # And the restarted broker takes new writes after the old ones.
            p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                          "enable.idempotence": False})
            p.produce(topic, value=b"after restart", partition=0)
            self.assertEqual(p.flush(kw.WAIT_S), 0)
            again = read_topic(b.bootstrap, topic, partitions)
            self.assertEqual(again[0][:-1], before[0])
            self.assertEqual(again[0][-1][0], len(before[0]))
            self.assertEqual(again[0][-1][2], b"after restart")

    def test_sigkill_during_acks_all_produce(self):
        seed = int(os.environ.get("ORDO_CRASH_SEED", time.time_ns() % 1_000_000_007))
        print(f"\ntest_sigkill_during_acks_all_produce: ORDO_CRASH_SEED={seed}", flush=True)
        rng = random.Random(seed)
        topic, partitions = "restart-kill", 2
        produced = {}  # payload id -> (round, partition, key, value) of every message sent
        acked = {}  # payload id -> (partition, offset) from successful delivery reports
        with kw.Broker(BROKER_ARGS) as b:
            kw.create_topic(b.bootstrap, topic, partitions)
            for rnd in range(KILL_ROUNDS):
                delay = rng.uniform(0.0, 0.4)
                with self.subTest(round=rnd, kill_after_first_ack_s=round(delay, 3)):
                    self.kill_round(b, topic, partitions, rnd, delay, produced, acked)
                    b.start()
                    self.check_log(b, topic, partitions, produced, acked, rnd)

    def kill_round(self, b, topic, partitions, rnd, delay, produced, acked):
        # No retries: without idempotence a retry after a lost response could store a message
        # twice, legitimately. With none, a duplicate can only come from the broker.
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                      "enable.idempotence": False, "max.in.flight": 1,
                      "message.send.max.retries": 0, "linger.ms": 2,
                      "message.timeout.ms": kw.WAIT_S * 1000})
        first_ack = threading.Event()
        killed = threading.Event()

        def on_delivery(err, msg):
            if err is None:
                pid = msg.value().split(b"|")[0].decode()
                acked[pid] = (msg.partition(), msg.offset())
                first_ack.set()

        def killer():
            first_ack.wait(kw.WAIT_S)
            time.sleep(delay)
            b.kill()
            killed.set()

        t = threading.Thread(target=killer)
        t.start()
        i = 0
        deadline = time.monotonic() + kw.WAIT_S
        while not killed.is_set() and time.monotonic() < deadline:
            pid = f"r{rnd}-{i:07d}"
            key = f"key-{i % 11}".encode()
            value = f"{pid}|payload-{'x' * (i % 50)}".encode()
            part = i % partitions
            produced[pid] = (rnd, part, key, value)
            p.produce(topic, key=key, value=value, partition=part, on_delivery=on_delivery)
            i += 1
            # Keep the queue short so that the kill lands while requests are in flight.
            p.poll(0.001 if len(p) > 200 else 0)
        t.join()
        self.assertTrue(killed.is_set(), "the producer never got an acknowledgement")
        # Nothing more can be acknowledged: the broker is gone. Drop what is left.
        p.purge(in_queue=True, in_flight=True, blocking=True)
        p.flush(kw.WAIT_S)
        print(f"round {rnd}: produced {i}, acknowledged so far {len(acked)}", flush=True)

    def check_log(self, b, topic, partitions, produced, acked, rnd):
        stored = read_topic(b.bootstrap, topic, partitions)
        seen = {}
        for part, records in stored.items():
            self.assertEqual([r[0] for r in records], list(range(len(records))),
                             f"partition {part}: offsets not contiguous from 0")
            for offset, key, value, _, _ in records:
                pid = value.split(b"|")[0].decode()
                self.assertNotIn(pid, seen, f"{pid} stored twice: at {seen.get(pid)} and "
                                            f"{(part, offset)}")
                seen[pid] = (part, offset)
                self.assertIn(pid, produced, f"unknown message {value!r}")
                _, want_part, want_key, want_value = produced[pid]
                self.assertEqual((part, key, value), (want_part, want_key, want_value))
        for pid, where in acked.items():
            self.assertEqual(seen.get(pid), where, f"acknowledged {pid} lost or moved")
        # Per round and partition, what was stored is a prefix of what was sent (one request
        # in flight, no retries: nothing after a lost message can have been stored).
        for r in range(rnd + 1):
            for part in range(partitions):
                sent = sorted(pid for pid, (pr, pp, _, _) in produced.items()
                              if pr == r and pp == part)
                kept = [pid for pid in sent if pid in seen]
                self.assertEqual(kept, sent[:len(kept)],
                                 f"round {r} partition {part}: stored messages with gaps")


if __name__ == "__main__":
    unittest.main()
