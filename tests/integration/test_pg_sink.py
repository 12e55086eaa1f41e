"""The PostgreSQL sink end to end: PostgreSQL 15 -> change capture -> topics -> `ordo connect
run` with one PostgreSQL sink per table, writing copies of the tables (one SQL transaction per
batch with the upserts, deletes and the sink's offset row). After the snapshot, a random
workload with truncates, 10 SIGKILLs of the worker at random moments and a PostgreSQL restart,
each copy equals its table (EXCEPT both ways). A second worker replaying the topics from
offset 0 into a second set of copies ends equal (rebuild equals incremental)."""

import os
import random
import tempfile
import time
import unittest

import kafka_wire as kw
from cdc_workload import SCHEMA, TABLES, Workload
from connect_harness import Connect, free_port, kill_rounds, source_toml
from pg_harness import Postgres

CATCH_UP_S = 120
KILL_ROUNDS = 10



def pipeline(dsn, suffix, source=True):
    text = ""
    if source:
        text += source_toml("app", dsn, ['public.users', 'public.orders', 'public.audit'])
    for t in TABLES:
        text += (f'[[sink]]\nname = "{t}{suffix}"\ntype = "postgres"\n'
                 f'topics = ["app.public.{t}"]\nconninfo = "{dsn}"\n'
                 f'table = "public.{t}{suffix}"\nfield = "after"\n\n')
    return text


class PgSinkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql(SCHEMA)
        for suffix in ("_copy", "_copy2"):
            cls.pg.sql(f"""
                CREATE TABLE users{suffix} (LIKE users INCLUDING ALL);
                CREATE TABLE orders{suffix} (LIKE orders INCLUDING ALL);
                CREATE TABLE audit{suffix} (line text, at int, seq int,
                                            PRIMARY KEY (at, line, seq));
            """)
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))

    def differences(self, a, b):
        """Rows of a not in b plus rows of b not in a, for each table."""
        out = {}
        for t in TABLES:
            n = self.pg.sql(f"SELECT (SELECT count(*) FROM (SELECT * FROM {t}{a} EXCEPT "
                            f"SELECT * FROM {t}{b}) x) + (SELECT count(*) FROM (SELECT * FROM "
                            f"{t}{b} EXCEPT SELECT * FROM {t}{a}) y)")[0][0]
            out[t] = int(n)
        return out

    def wait_equal(self, a, b, worker):
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            try:
                diff = self.differences(a, b)
            except RuntimeError:  # PostgreSQL restarting
                diff = None
            if diff and not any(diff.values()):
                return
            if time.monotonic() > deadline:
                self.fail(f"{a} and {b} differ: {diff}; status {worker.get('/status')[1]}")
            time.sleep(0.3)

    def test_copies_equal_the_tables_through_kills(self):
        self.pg.sql("""
            INSERT INTO users SELECT g, 'seed ' || g, g * 1.5, g % 2 = 0, ARRAY['s', g::text]
              FROM generate_series(1, 200) g;
            INSERT INTO orders SELECT 'north', g, g / 3.0 FROM generate_series(1, 30) g;
            INSERT INTO audit SELECT 'seed', g % 5, g FROM generate_series(1, 20) g;
        """)
        root = tempfile.mkdtemp(prefix="ordo-pgsink-it-")
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "copy"\n'
                               f'id = "copy-worker"', pipeline(self.pg.dsn, "_copy"))
        worker.start()
        self.wait_equal("", "_copy", worker)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM users_copy")[0][0], "200")

        rng = random.Random(int(os.environ.get("ORDO_PGSINK_SEED", "3")))
        work = Workload(self.pg, rng.random())
        work.run(200)
        self.pg.sql("BEGIN; TRUNCATE audit; INSERT INTO audit VALUES ('after', 1, -1); COMMIT")
        self.wait_equal("", "_copy", worker)
        self.assertEqual(self.pg.sql("SELECT count(*) FROM audit_copy")[0][0], "1")

        def after_kill(i):
            if i == 4:
                self.pg.restart()

        kill_rounds(worker, work.run, KILL_ROUNDS, rng, after_kill)
        self.assertGreater(work.committed, 300)
        self.wait_equal("", "_copy", worker)
        offsets = self.pg.sql("SELECT sink, topic, partition FROM ordo_sink_offsets "
                              "WHERE sink = 'users_copy'")
        self.assertEqual(offsets, [["users_copy", "app.public.users", "0"]])

        # A replay from offset 0 into the second copies.
        root2 = tempfile.mkdtemp(prefix="ordo-pgsink-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "replay"',
                         pipeline(self.pg.dsn, "_copy2", source=False))
        replay.start()
        self.wait_equal("_copy", "_copy2", replay)
        self.wait_equal("", "_copy2", replay)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)


if __name__ == "__main__":
    unittest.main()
