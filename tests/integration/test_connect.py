"""The connect runtime's table view against a real broker: `ordo connect run` materialises a
keyed topic (values and tombstones, 3 partitions) in RocksDB; over HTTP the view equals the
latest value of each live key; a read with min_offset waits for the writer's own offset; and
after SIGKILLs of the worker at random moments while a producer writes, the view still equals
the topic (each partition's position is stored in the same write as its data)."""

import os
import random
import subprocess
import tempfile
import threading
import time
import unittest

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

import connect_harness
import kafka_wire as kw
from ordo_harness import ORDO_BIN

TOPIC = "users"
PARTITIONS = 3
KEYS = 200


class Connect(connect_harness.Connect):
    """The worker with one table view of TOPIC."""

    def __init__(self, root, bootstrap):
        # Static membership: a restarted worker gets its partitions back at once instead of
        # after the killed one's session timeout.
        super().__init__(root, f'bootstrap = "{bootstrap}"\ngroup = "it"\nid = "it-worker"',
                         f'[[sink]]\nname = "users"\ntype = "table"\ntopics = ["{TOPIC}"]\n\n'
                         f'[[sink]]\nname = "docs"\ntype = "table"\ntopics = ["docs"]\n'
                         f'key_format = "json"\nvalue_format = "json"\n')

    def view(self):
        return self.scan("users")

    def wait_caught_up(self, ends):
        """Waits until every partition's position reached its end offset."""
        deadline = time.monotonic() + 4 * kw.WAIT_S
        while time.monotonic() < deadline:
            _, st = self.get("/status")
            pos = {p["partition"]: p["position"] for p in st["tasks"][0]["partitions"]}
            if all(pos.get(p, -1) >= end for p, end in ends.items()):
                return st
            time.sleep(0.05)
        raise AssertionError(f"not caught up with {ends}: {st}")


class Writer:
    """A producer that keeps, per key, the latest acknowledged value (None: deleted) and
    per partition the end offset."""

    def __init__(self, bootstrap):
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 2})
        self.latest = {}  # key -> (partition, offset, value)
        self.ends = {p: 0 for p in range(PARTITIONS)}
        self.lock = threading.Lock()
        self.last = None  # (key, partition, offset, value) of the latest acknowledged write

    def _report(self, err, msg):
        assert err is None, err
        key = msg.key().decode()
        value = None if msg.value() is None else msg.value().decode()
        with self.lock:
            self.last = (key, msg.partition(), msg.offset(), value)
            old = self.latest.get(key)
            if old is None or old[1] < msg.offset():
                self.latest[key] = (msg.partition(), msg.offset(), value)
            self.ends[msg.partition()] = max(self.ends[msg.partition()], msg.offset() + 1)

    def write(self, n, rng, tombstones=0.1):
        for _ in range(n):
            key = f"k{rng.randrange(KEYS)}"
            value = None if rng.random() < tombstones else f"v{rng.randrange(10**9)}"
            self.producer.produce(TOPIC, key=key, value=value, on_delivery=self._report)
            self.producer.poll(0)
        assert self.producer.flush(2 * kw.WAIT_S) == 0

    def table(self):
        with self.lock:
            return {k: v for k, (_, _, v) in self.latest.items() if v is not None}


class ConnectTableViewTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker())
        cls.bs = cls.broker.bootstrap
        kw.create_topic(cls.bs, TOPIC, PARTITIONS)
        kw.create_topic(cls.bs, "docs", 1)

    def test_view_follows_the_topic_through_kills(self):
        rng = random.Random(int(os.environ.get("ORDO_CONNECT_SEED", "7")))
        root = tempfile.mkdtemp(prefix="ordo-connect-it-")
        writer = Writer(self.bs)
        writer.write(3000, rng)
        connect = Connect(root, self.bs)
        connect.start()
        st = connect.wait_caught_up(writer.ends)
        self.assertEqual(connect.view(), writer.table())
        self.assertEqual(st["tasks"][0]["state"], "running")

        # Read your writes: the GET waits until the view has applied the write's offset.
        writer.write(1, rng, tombstones=0)
        key, part, off, value = writer.last
        status, body = connect.get(f"/views/users/keys/{key}?min_offset={off}&partition={part}"
                                   f"&timeout_ms=30000")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["value"], body["offset"]), (value, off))

        # Records without a key go to the dead-letter topic, with their headers and ordo.dlq.*
        # headers; the view is untouched and the position moves past them.
        keyless = []
        def on_keyless(err, msg):
            self.assertIsNone(err)
            keyless.append((msg.partition(), msg.offset()))
        p = Producer({"bootstrap.servers": self.bs, "acks": "all"})
        for i in range(3):
            p.produce(TOPIC, value=f"orphan-{i}", partition=1, headers=[("trace", b"t1")],
                      on_delivery=on_keyless)
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        with writer.lock:
            writer.ends[1] = max(writer.ends[1], max(o for _, o in keyless) + 1)
        st = connect.wait_caught_up(writer.ends)
        self.assertEqual(st["tasks"][0]["records_dead_lettered"], 3)
        self.assertEqual(connect.view(), writer.table())
        c = Consumer({"bootstrap.servers": self.bs, "group.id": "dlq-reader",
                      "enable.partition.eof": True})
        c.assign([TopicPartition("users.dlq", 0, OFFSET_BEGINNING)])
        dead = []
        deadline = time.monotonic() + kw.WAIT_S
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                break
            dead.append((m.value().decode(), dict((k, v.decode()) for k, v in m.headers())))
        c.close()
        self.assertEqual([v for v, _ in dead], ["orphan-0", "orphan-1", "orphan-2"])
        for (_, h), (part, off) in zip(dead, keyless):
            self.assertEqual(h["trace"], "t1")
            self.assertEqual(h["ordo.dlq.sink"], "users")
            self.assertEqual(h["ordo.dlq.topic"], TOPIC)
            self.assertEqual((int(h["ordo.dlq.partition"]), int(h["ordo.dlq.offset"])), (part, off))
            self.assertIn("no key", h["ordo.dlq.reason"])

        # A sink with JSON keys and values: what does not parse goes to its dead-letter topic
        # with the reason; tombstones pass.
        p = Producer({"bootstrap.servers": self.bs, "acks": "all"})
        for key, value in [('{"id":1}', '{"a":1}'), ('{"id":2}', 'not json'), ('nope', '{}'),
                           ('{"id":3}', '[1,2]'), ('{"id":3}', None)]:
            p.produce("docs", key=key, value=value)
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        deadline = time.monotonic() + kw.WAIT_S
        while True:
            _, st = connect.get("/status")
            docs = [t for t in st["tasks"] if t["name"] == "docs"][0]
            if docs["partitions"] and docs["partitions"][0]["position"] == 5:
                break
            self.assertLess(time.monotonic(), deadline, st)
            time.sleep(0.05)
        self.assertEqual(docs["records_dead_lettered"], 2)
        self.assertEqual(connect.scan("docs"), {'{"id":1}': '{"a":1}'})
        c = Consumer({"bootstrap.servers": self.bs, "group.id": "docs-dlq-reader",
                      "enable.partition.eof": True})
        c.assign([TopicPartition("docs.dlq", 0, OFFSET_BEGINNING)])
        reasons = []
        deadline = time.monotonic() + kw.WAIT_S
        while len(reasons) < 2 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and not m.error():
                reasons.append((m.key().decode(), dict(m.headers())["ordo.dlq.reason"].decode()))
        c.close()
        self.assertEqual(reasons, [('{"id":2}', "the value is not JSON"),
                                   ("nope", "the key is not JSON")])

        # SIGKILL at random moments while a producer writes; each restart resumes from the
        # stored positions.
        for _ in range(5):
            t = threading.Thread(target=writer.write, args=(2000, random.Random(rng.random())))
            t.start()
            time.sleep(rng.uniform(0.05, 0.8))
            connect.kill()
            t.join()
            connect.start()
        connect.wait_caught_up(writer.ends)
        self.assertEqual(connect.view(), writer.table())
        status, body = connect.get("/views/users/keys/no-such-key")
        self.assertEqual((status, body), (404, {"error": "no such key"}))

        # `ordo view rebuild` while a producer writes: the old store serves until the new one,
        # read from offset 0, has caught up; then the new one is live and equals the topic.
        before = connect.view()
        t = threading.Thread(target=writer.write, args=(3000, random.Random(rng.random())))
        t.start()
        r = subprocess.run([ORDO_BIN, "view", "rebuild", "users", "--http",
                            f"127.0.0.1:{connect.port}"],
                           capture_output=True, text=True, timeout=4 * kw.WAIT_S)
        t.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("view users rebuilt: generation 2", r.stdout)
        self.assertRegex(r.stderr, r"\] 100% \d+ records  \d+ records/s  ETA \S+  \(done\)")
        status, prog = connect.get("/views/users/rebuild")
        self.assertEqual((status, prog["state"], prog["generation"]), (200, "done", 2), prog)
        # Writes went on during the rebuild (the targets grew at the catch-up): still 100%.
        self.assertEqual(prog["offsets_done"], prog["offsets_total"], prog)
        self.assertGreaterEqual(prog["records"], len(before))
        views_dir = os.path.join(root, "data", "views", "users")
        self.assertEqual(sorted(os.listdir(views_dir)), ["gen-2", "generation"])
        connect.wait_caught_up(writer.ends)
        self.assertEqual(connect.view(), writer.table())
        # A second request while none runs starts generation 3; the view still answers.
        status, body = connect.post("/views/users/rebuild")
        self.assertEqual((status, body["generation"]), (202, 3), body)
        self.assertEqual(connect.get("/views/nope/rebuild")[0], 404)
        self.assertEqual(connect.post("/views/users/scan")[0], 405)
        deadline = time.monotonic() + 2 * kw.WAIT_S
        while connect.get("/views/users/rebuild")[1]["state"] != "done":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(connect.view(), writer.table())

        # `ordo connect status` prints each partition at its end.
        r = subprocess.run([ORDO_BIN, "connect", "status", "--http", f"127.0.0.1:{connect.port}"],
                           capture_output=True, text=True, timeout=kw.WAIT_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        for p in range(PARTITIONS):
            self.assertRegex(r.stdout, rf"users\s+running\s+users-{p}\s+{writer.ends[p]}\s")
        self.assertEqual(connect.stop(), 0)


if __name__ == "__main__":
    unittest.main()
