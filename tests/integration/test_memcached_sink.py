"""The memcached sink end to end: PostgreSQL 15 `users` -> change capture -> `ordo connect run`
with a memcached sink (versioned compare-and-swap writes, the position in memcached). After the
snapshot and a random workload with 10 SIGKILLs of the worker at random moments, every id the
workload can touch is in the cache exactly when it is in the table, with the row as its value;
after a memcached restart under the running worker (an empty cache, the
position forgotten with it) and one insert, the sink fills it again from the earliest offset; a second sink
replaying into another prefix ends equal."""

import json
import os
import random
import struct
import tempfile
import time
import unittest

from confluent_kafka import Producer

import kafka_wire as kw
from cdc_workload import (SCHEMA, TRUNC_SCHEMA, TRUNC_TABLES, TruncateWorkload, Workload,
                          table_rows, trunc_topic, truncate_scenario)
from connect_harness import Connect, free_port, kill_rounds, source_toml
from memcached_harness import Memcached
from pg_harness import Postgres

CATCH_UP_S = 120
KILL_ROUNDS = 10
IDS = range(0, 1400)  # users the workload can touch: 0-299, moved by +1000



def sink(name, port, prefix):
    return (f'[[sink]]\nname = "{name}"\ntype = "memcached"\ntopics = ["app.public.users"]\n'
            f'address = "127.0.0.1:{port}"\nkey_prefix = "{prefix}"\nfield = "after"\n\n')


class MemcachedSinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql(SCHEMA)
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))
        cls.mc = cls.enterClassContext(Memcached())

    def cached(self, prefix):
        """{key JSON: row} of the live entries under prefix, for every id the workload uses."""
        c = self.mc.client()
        keys = [f'{prefix}{{"id":{i}}}' for i in IDS]
        out = {}
        for start in range(0, len(keys), 100):
            for k, v in c.get_many(keys[start:start + 100]).items():
                version, kind = struct.unpack(">qB", v[:9])
                self.assertGreaterEqual(version, 0)
                if kind == 0:
                    out[k[len(prefix):]] = json.loads(v[9:])
        c.close()
        return out

    def wait_equal(self, prefix, worker):
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            want = table_rows(self.pg, "users")
            try:
                have = self.cached(prefix)
            except OSError:
                have = None
            if have == want:
                return want
            if time.monotonic() > deadline:
                self.fail(f"{prefix}: {len(have or {})} cached, {len(want)} rows; "
                          f"status {worker.get('/status')[1]}")
            time.sleep(0.3)

    def test_cache_follows_the_table(self):
        self.pg.sql("INSERT INTO users SELECT g, 'seed ' || g, g * 1.5, g % 2 = 0, "
                    "ARRAY['s', g::text] FROM generate_series(1, 200) g")
        root = tempfile.mkdtemp(prefix="ordo-mc-it-")
        source = source_toml("app", self.pg.dsn, ['public.users'])
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "mc"\n'
                               f'id = "mc-worker"', source + sink("cache", self.mc.port, "user:"))
        worker.start()
        self.assertEqual(len(self.wait_equal("user:", worker)), 200)

        rng = random.Random(int(os.environ.get("ORDO_MC_SEED", "4")))
        work = Workload(self.pg, rng.random())
        kill_rounds(worker, work.run, KILL_ROUNDS, rng)
        self.assertGreater(work.committed, 200)
        want = self.wait_equal("user:", worker)

        # memcached restarts empty while the worker keeps running. The next batch (one
        # insert) finds the sink's epoch key gone: the task writes nothing, reads the position
        # again (none) and replays from the earliest offset, so every row is cached again,
        # not just the new one.
        self.mc.restart()
        self.pg.sql("INSERT INTO users VALUES (1350, 'after the restart', 1, true, '{}')")
        refilled = self.wait_equal("user:", worker)
        self.assertEqual(len(refilled), len(want) + 1)
        want = refilled
        # Again with no record arriving: an idle task checks its positions every few seconds.
        self.mc.restart()
        self.assertEqual(self.wait_equal("user:", worker), want)

        # Another prefix, replayed from offset 0 by a second worker.
        root2 = tempfile.mkdtemp(prefix="ordo-mc-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "mc-replay"',
                         sink("cache2", self.mc.port, "user2:"))
        replay.start()
        self.assertEqual(self.wait_equal("user2:", replay), want)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)

    def test_truncates_remove_what_their_partition_wrote(self):
        """Tables of 1, 2 and 6 partitions cached by memcached sinks: first ids 1-40,
        TRUNCATE, ids 41-80 (a marker used to flush the whole server, whatever its partition),
        then random inserts, updates, deletes and truncates through SIGKILLs of the worker.
        Each cache equals its table, live and replayed from offset 0 under other prefixes."""
        self.pg.sql(TRUNC_SCHEMA)

        def sinks(prefix):
            return "".join(f'[[sink]]\nname = "{prefix}{t}"\ntype = "memcached"\n'
                           f'topics = ["{trunc_topic(t)}"]\naddress = "127.0.0.1:{self.mc.port}"\n'
                           f'key_prefix = "{prefix}{t}:"\nfield = "after"\n\n'
                           for t in TRUNC_TABLES)

        work = TruncateWorkload(self.pg, 0)

        def cached(prefix):
            c = self.mc.client()
            out = {}
            for t in TRUNC_TABLES:
                keys = [f'{prefix}{t}:{{"id":{i}}}' for i in range(1, work.next_id)]
                out[t] = {}
                for start in range(0, len(keys), 100):
                    for k, v in c.get_many(keys[start:start + 100]).items():
                        version, kind = struct.unpack(">qB", v[:9])
                        if kind == 0:
                            out[t][k[len(prefix) + len(t) + 1:]] = json.loads(v[9:])
            c.close()
            return out

        def wait_equal(prefix, worker):
            deadline = time.monotonic() + CATCH_UP_S
            while True:
                want = {t: table_rows(self.pg, t) for t in TRUNC_TABLES}
                have = cached(prefix)
                if have == want:
                    return want
                if time.monotonic() > deadline:
                    sizes = {t: (len(want[t]), len(have[t])) for t in want}
                    self.fail(f"{prefix}: (table, cache) rows {sizes}; "
                              f"status {worker.get('/status')[1]}")
                time.sleep(0.3)

        # The stores "a" and "b" (the replay) are key prefixes.
        truncate_scenario(
            self, self.pg, self.broker.bootstrap, "mc", sinks, wait_equal,
            int(os.environ.get("ORDO_MC_SEED", "4")),
            lambda tables: self.assertEqual({t: len(rows) for t, rows in tables.items()},
                                            {t: 40 for t in TRUNC_TABLES}),
            work=work)

    def test_truncate_replayed_after_a_crash_keeps_later_keys_registered(self):
        """A crash after a batch's writes but before its position leaves keys written after a
        marker live; the replay of the marker must keep them registered, or the next marker
        misses them. The crash is made exact by setting the stored position back."""
        topic = "mc-replayed-truncate"
        p = Producer({"bootstrap.servers": self.broker.bootstrap, "acks": "all"})
        marker = [("ordo.truncate", b"1")]
        p.produce(topic, key=b"old", value=b"1")
        p.produce(topic, key=b"{}", value=b"t", headers=marker)
        p.produce(topic, key=b"new", value=b"2")
        self.assertEqual(p.flush(30), 0)
        root = tempfile.mkdtemp(prefix="ordo-mc-replay-")
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "mc-replayed"\n'
                               f'id = "mc-replayed-worker"',
                         f'[[sink]]\nname = "replayed"\ntype = "memcached"\n'
                         f'topics = ["{topic}"]\naddress = "127.0.0.1:{self.mc.port}"\n'
                         f'key_prefix = "rt:"\n')
        c = self.mc.client()
        position = f"rt:__ordo_offsets:{topic}:0".encode()

        def live():
            out = {}
            for k, v in c.get_many([b"rt:old", b"rt:new"]).items():
                if v[8] == 0:
                    out[k.decode()] = v[9:].decode()
            return out

        def stored_next():  # the position is "<next offset> <epoch>"
            value = c.get(position)
            return value.split(b" ")[0] if value else None

        def wait(next_offset, want):
            deadline = time.monotonic() + CATCH_UP_S
            while stored_next() != str(next_offset).encode() or live() != want:
                if time.monotonic() > deadline:
                    self.fail(f"position {c.get(position)}, keys {live()}; "
                              f"status {worker.get('/status')[1]}")
                time.sleep(0.1)

        worker.start()
        wait(3, {"rt:new": "2"})
        worker.kill()
        # As if the worker died before storing the position: offset 0 in the current epoch.
        epoch = c.get(position).split(b" ")[1]
        c.set(position, b"0 " + epoch)
        worker.start()
        wait(3, {"rt:new": "2"})
        p.produce(topic, key=b"{}", value=b"t", headers=marker)
        self.assertEqual(p.flush(30), 0)
        wait(4, {})
        c.close()
        self.assertEqual(worker.stop(), 0)


if __name__ == "__main__":
    unittest.main()
