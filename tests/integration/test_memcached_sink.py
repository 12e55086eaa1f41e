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

import kafka_wire as kw
from cdc_workload import SCHEMA, Workload, table_rows
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


if __name__ == "__main__":
    unittest.main()
