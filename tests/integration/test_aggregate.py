"""Aggregates end to end: PostgreSQL 15 `emails` -> change capture -> `ordo connect run` with an
aggregate sink counting unread emails and summing their sizes per mailbox (group_by, where,
sum), kept in RocksDB with its position and published as absolute values to a compacted
topic. A random workload (new mail, mail read and unread again, moved between mailboxes,
resized, deleted, a truncate) with 10 SIGKILLs of the worker at random moments: afterwards
the HTTP groups and the latest value of each key of the output topic both equal GROUP BY over
the table, and a second aggregate replaying from offset 0 equals the first."""

import json
import os
import random
import tempfile
import time
import unittest

import psycopg2
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import kafka_wire as kw
from cdc_workload import TRUNC_SCHEMA, TRUNC_TABLES, trunc_topic, truncate_scenario
from connect_harness import Connect, free_port, kill_rounds, source_toml
from pg_harness import Postgres

CATCH_UP_S = 120
KILL_ROUNDS = 10



def aggregate_sink(name):
    return (f'[[sink]]\nname = "{name}"\ntype = "aggregate"\ntopics = ["mail.public.emails"]\n'
            f'field = "after"\ngroup_by = "mailbox"\nsum = "size"\n'
            f'where = {{ unread = true }}\n\n')


class Mail:
    """Random mail traffic through psycopg2 (one statement per transaction, some of two)."""

    def __init__(self, pg, seed):
        self.pg, self.rng, self.conn, self.next_id = pg, random.Random(seed), None, 1
        self.committed = 0

    def run(self, n, stop=None):
        for _ in range(n):
            if stop and stop.is_set():
                return
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg2.connect(self.pg.dsn)
                with self.conn.cursor() as cur:
                    for _ in range(self.rng.choice([1, 1, 2])):
                        self.step(cur)
                self.conn.commit()
                self.committed += 1
            except psycopg2.Error:
                self.conn = None
                time.sleep(0.05)

    def step(self, cur):
        r, eid = self.rng.random(), self.rng.randrange(1, max(2, self.next_id))
        if r < 0.4:
            cur.execute("INSERT INTO emails VALUES (%s, %s, true, %s)",
                        (self.next_id, self.rng.randrange(1, 8), self.rng.randrange(100, 5000)))
            self.next_id += 1
        elif r < 0.6:
            cur.execute("UPDATE emails SET unread = NOT unread WHERE id = %s", (eid,))
        elif r < 0.7:
            cur.execute("UPDATE emails SET mailbox = %s WHERE id = %s",
                        (self.rng.randrange(1, 8), eid))
        elif r < 0.8:
            cur.execute("UPDATE emails SET size = size + 7 WHERE id = %s", (eid,))
        elif r < 0.995:
            cur.execute("DELETE FROM emails WHERE id = %s", (eid,))
        else:
            cur.execute("TRUNCATE emails")


class AggregateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql("CREATE TABLE emails (id int PRIMARY KEY, mailbox int, unread bool, size int)")
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))

    def expected(self):
        rows = self.pg.sql("SELECT mailbox, count(*), sum(size) FROM emails WHERE unread "
                           "GROUP BY mailbox")
        return {int(m): (int(c), int(s)) for m, c, s in rows}

    def served(self, worker, name):
        status, groups = worker.get(f"/aggregates/{name}/groups")
        assert status == 200, groups
        return {g["group"]: (g["count"], g["sum"]) for g in groups}

    def published(self, topic):
        c = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "agg-reader",
                      "enable.partition.eof": True})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        latest = {}
        deadline = time.monotonic() + kw.WAIT_S
        while time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                break
            v = json.loads(m.value())
            latest[int(m.key())] = (v["count"], v["sum"])
        c.close()
        return {g: v for g, v in latest.items() if v[0] != 0}

    def wait_equal(self, worker, name):
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            want = self.expected()
            try:
                have = self.served(worker, name)
            except OSError:
                have = None
            if have == want:
                return want
            if time.monotonic() > deadline:
                self.fail(f"{name}: {have} != {want}; status {worker.get('/status')[1]}")
            time.sleep(0.3)

    def test_unread_counts_through_kills(self):
        self.pg.sql("INSERT INTO emails SELECT g, g % 5 + 1, g % 3 = 0, g * 10 "
                    "FROM generate_series(1, 300) g")
        root = tempfile.mkdtemp(prefix="ordo-agg-it-")
        source = source_toml("mail", self.pg.dsn, ['public.emails'])
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "agg"\n'
                               f'id = "agg-worker"', source + aggregate_sink("unread"))
        worker.start()
        self.assertEqual(sum(c for c, _ in self.wait_equal(worker, "unread").values()), 100)
        status, one = worker.get("/aggregates/unread/groups/1")
        self.assertEqual((status, one["count"]), (200, self.expected()[1][0]))

        rng = random.Random(int(os.environ.get("ORDO_AGG_SEED", "9")))
        mail = Mail(self.pg, rng.random())
        mail.next_id = 301
        mail.run(300)
        self.wait_equal(worker, "unread")
        kill_rounds(worker, mail.run, KILL_ROUNDS, rng)
        self.assertGreater(mail.committed, 400)
        want = self.wait_equal(worker, "unread")
        self.assertEqual(self.published("unread"), want)

        # Replayed from offset 0 by a second aggregate: the same groups.
        root2 = tempfile.mkdtemp(prefix="ordo-agg-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "agg-replay"',
                         aggregate_sink("unread2"))
        replay.start()
        self.assertEqual(self.wait_equal(replay, "unread2"), want)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)

    def test_truncates_remove_what_their_partition_counted(self):
        """Tables of 1, 2 and 6 partitions counted per `n` (and their ids summed): first ids
        1-40, TRUNCATE, ids 41-80, then random inserts, updates, deletes and truncates through
        SIGKILLs of the worker. Each aggregate equals GROUP BY over its table, live and
        replayed from offset 0."""
        self.pg.sql(TRUNC_SCHEMA)

        def sinks(suffix):
            return "".join(f'[[sink]]\nname = "{t}{suffix}"\ntype = "aggregate"\n'
                           f'topics = ["{trunc_topic(t)}"]\nfield = "after"\n'
                           f'group_by = "n"\nsum = "id"\n\n' for t in TRUNC_TABLES)

        def wait_equal(suffix, worker):
            deadline = time.monotonic() + CATCH_UP_S
            while True:
                want = {t: {int(n): (int(c), int(s)) for n, c, s in self.pg.sql(
                    f"SELECT n, count(*), sum(id) FROM {t} GROUP BY n")} for t in TRUNC_TABLES}
                have = {t: self.served(worker, f"{t}{suffix}") for t in TRUNC_TABLES}
                if have == want:
                    return want
                if time.monotonic() > deadline:
                    self.fail(f"{suffix}: {have} != {want}; status {worker.get('/status')[1]}")
                time.sleep(0.3)

        # The stores "a" and "b" (the replay): aggregates <t>-a and <t>-b.
        truncate_scenario(
            self, self.pg, self.broker.bootstrap, "agg", lambda tag: sinks(f"-{tag}"),
            lambda tag, worker: wait_equal(f"-{tag}", worker),
            int(os.environ.get("ORDO_AGG_SEED", "9")),
            lambda counts: self.assertEqual(
                counts, {t: {0: (40, sum(range(41, 81)))} for t in TRUNC_TABLES}))


if __name__ == "__main__":
    unittest.main()
