"""The Redis sink end to end: PostgreSQL 15 -> change capture -> topics -> `ordo connect run`
with one Redis sink per table (key prefix, the envelope's "after" field as the value). Rows of
the snapshot, then a random workload of transactions (inserts, updates, key changes, deletes,
truncates) with 10 SIGKILLs of the worker at random moments and a Redis restart: afterwards the
keys under each prefix equal the table, row for row. A second worker replaying the topics from
offset 0 into another database ends equal to the first (rebuild equals incremental)."""

import json
import os
import random
import tempfile
import time
import unittest

from confluent_kafka import Producer

import kafka_wire as kw
from cdc_workload import (SCHEMA, TABLES, TRUNC_SCHEMA, TRUNC_TABLES,
                          Workload, table_rows, trunc_topic, truncate_scenario)
from connect_harness import Connect, free_port, kill_rounds, source_toml
from pg_harness import Postgres
from redis_harness import RedisServer

CATCH_UP_S = 120
KILL_ROUNDS = 10
PREFIX = {"users": "user:", "orders": "order:", "audit": "audit:"}



def sinks(redis_port, db, source=True, dsn=None):
    text = ""
    if source:
        text += source_toml("app", dsn, ['public.users', 'public.orders', 'public.audit'])
    for t in TABLES:
        text += (f'[[sink]]\nname = "{t}-cache"\ntype = "redis"\ntopics = ["app.public.{t}"]\n'
                 f'address = "127.0.0.1:{redis_port}"\ndb = {db}\nkey_prefix = "{PREFIX[t]}"\n'
                 f'field = "after"\nvalue_format = "json"\n\n')
    return text


def rows_under(r, prefix):
    """{key without the prefix: the JSON value} of the keys under prefix, the sink's own keys
    (positions, key sets: __ordo_) left out. A key deleted between the scan and the read is
    gone (None) and left out too: the callers poll until the rows settle."""
    keys = [k for k in r.scan_iter(match=prefix + "*", count=1000) if b"__ordo_" not in k]
    values = r.mget(keys) if keys else []
    return {k.decode()[len(prefix):]: json.loads(v) for k, v in zip(keys, values)
            if v is not None}


class RedisSinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql(SCHEMA)
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))
        cls.redis = cls.enterClassContext(RedisServer())

    def cached(self, db):
        """{table: {key JSON: row}} from the keys under each prefix."""
        r = self.redis.client(db)
        out = {}
        for t, prefix in PREFIX.items():
            out[t] = rows_under(r, prefix)
        return out

    def wait_equal(self, db, expect=None, worker=None):
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            want = expect() if expect else {t: table_rows(self.pg, t) for t in TABLES}
            try:
                have = self.cached(db)
            except Exception:  # noqa: BLE001  (Redis restarting)
                have = None
            if have == want:
                return want
            if time.monotonic() > deadline:
                st = worker.get("/status")[1] if worker else None
                diff = {t: (len(want[t]), len((have or {}).get(t, {}))) for t in TABLES}
                self.fail(f"db {db} not equal to its source after {CATCH_UP_S} s: sizes {diff}; "
                          f"status {st}")
            time.sleep(0.3)

    def test_redis_equals_the_tables_through_kills(self):
        self.pg.sql("""
            INSERT INTO users SELECT g, 'seed ' || g, g * 1.5, g % 2 = 0, ARRAY['s', g::text]
              FROM generate_series(1, 200) g;
            INSERT INTO orders SELECT 'north', g, g / 3.0 FROM generate_series(1, 30) g;
            INSERT INTO audit SELECT 'seed', g % 5, g FROM generate_series(1, 20) g;
        """)
        root = tempfile.mkdtemp(prefix="ordo-redis-it-")
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "cache"\n'
                               f'id = "cache-worker"',
                         sinks(self.redis.port, 0, dsn=self.pg.dsn))
        worker.start()
        self.assertEqual(len(self.wait_equal(0, worker=worker)["users"]), 200)

        rng = random.Random(int(os.environ.get("ORDO_REDIS_SEED", "5")))
        work = Workload(self.pg, rng.random())
        work.run(200)
        self.pg.sql("BEGIN; TRUNCATE audit; INSERT INTO audit VALUES ('after', 1, -1); COMMIT")
        self.assertEqual(len(self.wait_equal(0, worker=worker)["audit"]), 1)

        def after_kill(i):
            if i == 4:
                self.redis.restart()  # the sink retries until it is back

        kill_rounds(worker, work.run, KILL_ROUNDS, rng, after_kill)
        self.assertGreater(work.committed, 300)
        tables = self.wait_equal(0, worker=worker)
        # The positions are in the same MULTI/EXEC as the data.
        offsets = self.redis.client(0).hgetall("user:__ordo_offsets")
        self.assertEqual(list(offsets), [b"app.public.users:0"])

        # Replaying the topics from offset 0 into database 1 gives the same keys and values.
        root2 = tempfile.mkdtemp(prefix="ordo-redis-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "replay"',
                         sinks(self.redis.port, 1, source=False))
        replay.start()
        self.wait_equal(1, expect=lambda: self.cached(0), worker=replay)
        self.assertEqual(self.cached(1), tables)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)

    def test_truncates_remove_what_their_partition_wrote(self):
        """Tables of 1, 2 and 6 partitions, each with a Redis sink and a table view: first
        ids 1-40, TRUNCATE, ids 41-80 (a late marker on one partition used to delete the rows
        41-80 of another), then random inserts, updates, deletes and truncates through
        SIGKILLs of the worker. Redis equals each table and its view, live and replayed from
        offset 0."""
        self.pg.sql(TRUNC_SCHEMA)

        def pipeline(db, views):
            text = ""
            for t in TRUNC_TABLES:
                text += (f'[[sink]]\nname = "{t}-cache"\ntype = "redis"\n'
                         f'topics = ["{trunc_topic(t)}"]\naddress = "127.0.0.1:{self.redis.port}"\n'
                         f'db = {db}\nkey_prefix = "{t}:"\nfield = "after"\n'
                         f'value_format = "json"\n\n')
                if views:
                    text += (f'[[sink]]\nname = "{t}-view"\ntype = "table"\n'
                             f'topics = ["{trunc_topic(t)}"]\nfield = "after"\n'
                             f'value_format = "json"\n\n')
            return text

        def cached(db):
            r = self.redis.client(db)
            out = {}
            for t in TRUNC_TABLES:
                out[t] = rows_under(r, t + ":")
            return out

        def wait_equal(db, worker):
            deadline = time.monotonic() + CATCH_UP_S
            while True:
                want = {t: table_rows(self.pg, t) for t in TRUNC_TABLES}
                have = cached(db)
                views = {t: {k: json.loads(v) for k, v in worker.scan(f"{t}-view").items()}
                         for t in TRUNC_TABLES} if db == 0 else want
                if have == want and views == want:
                    return want
                if time.monotonic() > deadline:
                    sizes = {t: (len(want[t]), len(have[t]), len(views[t])) for t in want}
                    self.fail(f"db {db}: (table, redis, view) rows {sizes}; "
                              f"status {worker.get('/status')[1]}")
                time.sleep(0.3)

        # Store "a": database 0 beside table views; "b", the replay: database 1.
        truncate_scenario(
            self, self.pg, self.broker.bootstrap, "redis",
            lambda tag: pipeline(0, views=True) if tag == "a" else pipeline(1, views=False),
            lambda tag, worker: wait_equal(0 if tag == "a" else 1, worker),
            int(os.environ.get("ORDO_REDIS_SEED", "5")),
            lambda tables: self.assertEqual({t: len(rows) for t, rows in tables.items()},
                                            {t: 40 for t in TRUNC_TABLES}))

    def test_ttl_sets_and_deletes(self):
        """With ttl_s every key is written with its expiry (SET ... EX, not the batched MSET),
        overwrites keep the last value, and a tombstone deletes the key."""
        p = Producer({"bootstrap.servers": self.broker.bootstrap, "acks": "all"})
        for key, value in (("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("b", None)):
            p.produce("ttl-rows", key=key.encode(), value=value.encode() if value else None)
        self.assertEqual(p.flush(30), 0)
        root = tempfile.mkdtemp(prefix="ordo-redis-ttl-")
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "ttl"',
                         f'[[sink]]\nname = "ttl-cache"\ntype = "redis"\n'
                         f'topics = ["ttl-rows"]\naddress = "127.0.0.1:{self.redis.port}"\n'
                         f'db = 3\nkey_prefix = "t:"\nttl_s = 300\n')
        worker.start()
        r = self.redis.client(3)
        deadline = time.monotonic() + CATCH_UP_S
        want = {b"t:a": b"3", b"t:c": b"4"}
        def cached():  # the keys under the prefix but the sink's offsets hash
            return {k: r.get(k) for k in r.scan_iter(match="t:*")
                    if b"__ordo_" not in k}
        while cached() != want:
            if time.monotonic() > deadline:
                self.fail(f"keys {cached()}; status {worker.get('/status')[1]}")
            time.sleep(0.2)
        for k in want:
            self.assertTrue(0 < r.ttl(k) <= 300, (k, r.ttl(k)))
        self.assertEqual(worker.stop(), 0)


if __name__ == "__main__":
    unittest.main()
