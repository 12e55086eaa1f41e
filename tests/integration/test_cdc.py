"""PostgreSQL change capture end to end: a real PostgreSQL 15 (pg_harness.py), an Ordo broker
and `ordo connect run` with a postgres source and one table view per table. Rows written before
the worker starts arrive through the snapshot; then inserts, updates (also of keys), deletes,
truncates and multi-statement transactions over three tables (a composite key, a REPLICA
IDENTITY FULL table) arrive through the slot. After catch-up each view equals SELECT * FROM its
table, and `ordo view rebuild` of each gives the same views. The worker is SIGKILLed at random moments during a write workload (20 rounds), and
PostgreSQL and the broker are restarted: the views still equal the tables. A table without a
key is refused with an error naming it, and a quiet database still moves the slot."""

import json
import os
import random
import subprocess
import tempfile
import time
import unittest


import kafka_wire as kw
from cdc_workload import SCHEMA, TABLES, Workload, table_rows
from connect_harness import Connect, free_port, kill_rounds
from ordo_harness import ORDO_BIN
from pg_harness import Postgres

CATCH_UP_S = 120
KILL_ROUNDS = 20



class CdcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql(SCHEMA + """
            CREATE TABLE nokey (v text);
            CREATE TABLE quiet (v int PRIMARY KEY);
        """)
        # A fixed port: the worker's bootstrap stays right across the broker's restart.
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))

    def pipeline(self, name, source_extra="", sinks=True):
        rest = (f'[[source]]\nname = "{name}"\ntype = "postgres"\nconninfo = "{self.pg.dsn}"\n'
                f'topic_prefix = "{name}"\nheartbeat_ms = 200\n{source_extra}\n')
        if sinks:
            for t in TABLES:
                rest += (f'[[sink]]\nname = "{t}"\ntype = "table"\n'
                         f'topics = ["{name}.public.{t}"]\n\n')
        return rest

    def table(self, name):
        return table_rows(self.pg, name)

    def views(self, connect):
        out = {}
        for t in TABLES:
            out[t] = {k: json.loads(v)["after"] for k, v in connect.scan(t).items()}
        return out

    def assert_caught_up(self, connect):
        """Waits until every view equals its table, then checks the source's status."""
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            tables = {t: self.table(t) for t in TABLES}
            try:
                views = self.views(connect)
            except (OSError, AssertionError):
                views = None
            if views == tables:
                break
            if time.monotonic() > deadline:
                _, st = connect.get("/status")
                for t in TABLES:
                    if views and views[t] != tables[t]:
                        missing = {k: v for k, v in tables[t].items() if views[t].get(k) != v}
                        extra = {k: v for k, v in views[t].items() if tables[t].get(k) != v}
                        self.fail(f"{t}: not in the view: {list(missing.items())[:5]}; "
                                  f"only in the view: {list(extra.items())[:5]}; status {st}")
                self.fail(f"views not caught up: {st}")
            time.sleep(0.3)
        _, st = connect.get("/status")
        src = st["sources"][0]
        self.assertEqual(src["state"], "streaming", st)
        return tables

    def test_views_equal_the_tables_through_kills_and_restarts(self):
        self.pg.sql("""
            INSERT INTO users SELECT g, 'seed ' || g, g * 1.5, g % 2 = 0, ARRAY['s', g::text]
              FROM generate_series(1, 250) g;
            INSERT INTO orders SELECT 'north', g, g / 3.0 FROM generate_series(1, 50) g;
            INSERT INTO audit SELECT 'seed', g % 5, g FROM generate_series(1, 40) g;
        """)
        root = tempfile.mkdtemp(prefix="ordo-cdc-it-")
        connect = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "cdc"\n'
                                f'id = "cdc-worker"',
                          self.pipeline("app", 'tables = ["public.users", "public.orders", '
                                               '"public.audit"]'))
        connect.start()
        tables = self.assert_caught_up(connect)
        self.assertEqual(len(tables["users"]), 250)
        _, st = connect.get("/status")
        self.assertEqual(st["sources"][0]["snapshot_rows"], 340, st)
        # Snapshot records say so, the last one "last".
        snap = [json.loads(v)["source"]["snapshot"] for v in connect.scan("audit").values()]
        self.assertTrue(set(snap) <= {"true", "last"}, snap)

        rng = random.Random(int(os.environ.get("ORDO_CDC_SEED", "11")))
        work = Workload(self.pg, rng.random())
        work.run(300)
        self.assert_caught_up(connect)

        # A truncate empties the view; rows after it come back.
        self.pg.sql("BEGIN; TRUNCATE audit; INSERT INTO audit VALUES ('after', 1, -1); COMMIT")
        self.assertEqual(len(self.assert_caught_up(connect)["audit"]), 1)

        # SIGKILL the worker at random moments while the workload runs.
        def after_kill(i):
            if i == 7:
                self.pg.restart()
            if i == 13:
                self.broker.restart()

        def after_start(i):
            if i == 17:
                self.pg.restart()  # under a running worker

        kill_rounds(connect, work.run, KILL_ROUNDS, rng, after_kill, after_start)
        self.assertGreater(work.committed, 500)
        self.assert_caught_up(connect)
        _, st = connect.get("/status")
        self.assertGreaterEqual(st["sources"][0]["slot_lag_bytes"], 0, st)

        # Rebuilt from offset 0 of the compacted topics, each view equals the incremental one,
        # record for record.
        incremental = {t: connect.scan(t) for t in TABLES}
        for t in TABLES:
            r = subprocess.run([ORDO_BIN, "view", "rebuild", t, "--http",
                                f"127.0.0.1:{connect.port}"],
                               capture_output=True, text=True, timeout=CATCH_UP_S)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"view {t} rebuilt: generation 2", r.stdout)
        self.assertEqual({t: connect.scan(t) for t in TABLES}, incremental)
        self.assertEqual(connect.stop(), 0)

    def test_a_table_without_a_key_is_refused(self):
        root = tempfile.mkdtemp(prefix="ordo-cdc-it-")
        connect = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "nokey"',
                          self.pipeline("nk", 'tables = ["public.nokey"]', sinks=False))
        connect.start()
        deadline = time.monotonic() + kw.WAIT_S
        while True:
            _, st = connect.get("/status")
            if "nokey has no primary key" in st["sources"][0]["error"]:
                break
            self.assertLess(time.monotonic(), deadline, st)
            time.sleep(0.1)
        self.assertEqual(st["sources"][0]["state"], "retrying")
        self.assertEqual(connect.stop(), 0)
        # With a configured key it runs.
        connect = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "nokey"',
                          self.pipeline("nk", 'tables = ["public.nokey"]\n'
                                              'keys = { "public.nokey" = ["v"] }', sinks=False))
        connect.start()
        deadline = time.monotonic() + kw.WAIT_S
        while True:
            _, st = connect.get("/status")
            if st["sources"][0]["state"] == "streaming":
                break
            self.assertLess(time.monotonic(), deadline, st)
            time.sleep(0.1)
        self.assertEqual(connect.stop(), 0)

    def test_a_quiet_publication_still_moves_the_slot(self):
        root = tempfile.mkdtemp(prefix="ordo-cdc-it-")
        connect = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "quiet"',
                          self.pipeline("q", 'tables = ["public.quiet"]', sinks=False))
        connect.start()
        # Writes elsewhere in the database: none reach the publication, yet the slot follows.
        self.pg.sql("CREATE TABLE busy (v int); INSERT INTO busy SELECT generate_series(1, 1000)")
        target = int(self.pg.sql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0][0])
        deadline = time.monotonic() + kw.WAIT_S
        while True:
            confirmed = self.pg.sql("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM "
                                    "pg_replication_slots WHERE slot_name = 'ordo_q'")
            if confirmed and int(confirmed[0][0]) >= target:
                break
            self.assertLess(time.monotonic(), deadline, f"slot at {confirmed}, WAL at {target}")
            time.sleep(0.1)
        self.assertEqual(connect.stop(), 0)


if __name__ == "__main__":
    unittest.main()
