"""Invariants through the log: unique claims decided by a single writer per partition of the
claims topic (`ordo connect run` with a claims sink). Twenty concurrent `ordo claim jane`
processes: exactly one is accepted and every rejection names its holder; again with SIGKILLs
and restarts of the worker while claims are in flight: exactly one accepted; a release by the
holder frees the value for a new claim; the HTTP endpoint claims and tells the holder; and a
second claims sink replaying the topic from offset 0 makes exactly the same decisions."""

import json
import random
import subprocess
import tempfile
import threading
import time
import unittest

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import kafka_wire as kw
from connect_harness import Connect
from ordo_harness import ORDO_BIN

CLAIMANTS = 20


def sink(name, results):
    return (f'[[sink]]\nname = "{name}"\ntype = "claims"\ntopics = ["claims"]\n'
            f'output_topic = "{results}"\n')


class ClaimsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker())
        kw.create_topic(cls.broker.bootstrap, "claims", 3)

    def claim(self, value, owner, *extra):
        r = subprocess.run([ORDO_BIN, "claim", value, "--owner", owner, "-b",
                            self.broker.bootstrap, "--results", "claims.results",
                            "--timeout-ms", "90000", *extra],
                           capture_output=True, text=True, timeout=120)
        self.assertIn(r.returncode, (0, 3), r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["accepted"], r.returncode == 0)
        return d

    def race(self, value, during=None):
        """CLAIMANTS concurrent claims of value; `during` runs meanwhile. The decisions."""
        out = [None] * CLAIMANTS
        def one(i):
            out[i] = self.claim(value, f"user-{i}")
        threads = [threading.Thread(target=one, args=(i,)) for i in range(CLAIMANTS)]
        for t in threads:
            t.start()
        if during:
            during()
        for t in threads:
            t.join()
        return out

    def check_one_winner(self, decisions):
        winners = [d for d in decisions if d["accepted"]]
        self.assertEqual(len(winners), 1, decisions)
        for d in decisions:
            self.assertEqual(d["holder"], winners[0]["owner"], d)
        return winners[0]["owner"]

    def results(self, topic):
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "claims-reader",
                      "enable.partition.eof": True})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = {}
        idle = time.monotonic() + kw.WAIT_S
        while time.monotonic() < idle:
            m = c.poll(1.0)
            if m is None or m.error():
                if m is not None:
                    break
                continue
            d = json.loads(m.value())
            out.setdefault(d["request_id"], []).append((d["accepted"], d["holder"], d["offset"]))
        c.close()
        return out

    def test_first_claim_wins(self):
        root = tempfile.mkdtemp(prefix="ordo-claims-it-")
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "claims"\n'
                               f'id = "claims-worker"', sink("usernames", "claims.results"))
        worker.start()
        jane = self.check_one_winner(self.race("jane"))

        # With the worker killed and restarted while the claims are in flight.
        rng = random.Random(17)
        def kills():
            for _ in range(3):
                time.sleep(rng.uniform(0.05, 0.4))
                worker.kill()
                worker.start()
        self.check_one_winner(self.race("bob", during=kills))

        # Only the holder can release; then the value is free again.
        self.assertFalse(self.claim("jane", "mallory", "--release")["accepted"])
        self.assertTrue(self.claim("jane", jane, "--release")["accepted"])
        d = self.claim("jane", "user-new")
        self.assertEqual((d["accepted"], d["holder"]), (True, "user-new"))

        # Over HTTP.
        status, d = worker.post("/claims/usernames?value=carol&owner=c1&timeout_ms=60000")
        self.assertEqual((status, d["accepted"]), (200, True), d)
        status, d = worker.post("/claims/usernames?value=carol&owner=c2&timeout_ms=60000")
        self.assertEqual((status, d["accepted"], d["holder"]), (200, False, "c1"), d)
        status, h = worker.get("/claims/usernames/holders/carol")
        self.assertEqual((status, h["holder"]["owner"]), (200, "c1"))
        self.assertEqual(worker.get("/claims/usernames/holders/nobody")[0], 404)
        self.assertEqual(worker.post("/claims/usernames?owner=x")[0], 400)

        # A replay from offset 0 decides every request the same way.
        first = self.results("claims.results")
        root2 = tempfile.mkdtemp(prefix="ordo-claims-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "claims2"',
                         sink("usernames2", "claims.results2"))
        replay.start()
        deadline = time.monotonic() + 2 * kw.WAIT_S
        while True:
            second = self.results("claims.results2")
            if len(second) >= len(first) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(len(first), 2 * CLAIMANTS + 5)
        # The first run may have decided a request twice (a batch replayed after a kill), the
        # same way each time; the replay decides each once, the same way.
        for rid, decisions in first.items():
            self.assertEqual(len(set(decisions)), 1, decisions)
            self.assertEqual(second[rid], decisions[:1], rid)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)


if __name__ == "__main__":
    unittest.main()
