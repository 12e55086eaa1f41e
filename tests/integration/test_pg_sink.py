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

import psycopg2

import kafka_wire as kw
from cdc_workload import (SCHEMA, TABLES, TRUNC_SCHEMA, TRUNC_TABLES, Workload,
                          trunc_topic, truncate_scenario)
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

    def test_truncates_remove_what_their_partition_wrote(self):
        """Tables of 1, 2 and 6 partitions copied by PostgreSQL sinks: first ids 1-40,
        TRUNCATE, ids 41-80 (a late marker on one partition used to delete the rows 41-80 of
        another), then random inserts, updates, deletes and truncates through SIGKILLs of the
        worker. Each copy equals its table, live and replayed from offset 0."""
        self.pg.sql(TRUNC_SCHEMA)
        for t in TRUNC_TABLES:
            for suffix in ("_copy", "_copy2"):
                self.pg.sql(f"CREATE TABLE {t}{suffix} (LIKE {t} INCLUDING ALL)")

        def sinks(suffix):
            return "".join(f'[[sink]]\nname = "{t}{suffix}"\ntype = "postgres"\n'
                           f'topics = ["{trunc_topic(t)}"]\nconninfo = "{self.pg.dsn}"\n'
                           f'table = "public.{t}{suffix}"\nfield = "after"\n\n'
                           for t in TRUNC_TABLES)

        def wait_equal(suffix, worker):
            deadline = time.monotonic() + CATCH_UP_S
            while True:
                diff = {t: int(self.pg.sql(
                    f"SELECT (SELECT count(*) FROM (SELECT * FROM {t} EXCEPT SELECT * FROM "
                    f"{t}{suffix}) x) + (SELECT count(*) FROM (SELECT * FROM {t}{suffix} EXCEPT "
                    f"SELECT * FROM {t}) y)")[0][0]) for t in TRUNC_TABLES}
                if not any(diff.values()):
                    return diff
                if time.monotonic() > deadline:
                    self.fail(f"{suffix} differs from the tables: {diff}; "
                              f"status {worker.get('/status')[1]}")
                time.sleep(0.3)

        def check_first(_):
            for t in TRUNC_TABLES:
                self.assertEqual(self.pg.sql(f"SELECT count(*) FROM {t}_copy")[0][0], "40")

        # Store "a": the tables <t>_copy; "b", the replay: <t>_copy2.
        suffix = {"a": "_copy", "b": "_copy2"}
        truncate_scenario(self, self.pg, self.broker.bootstrap, "pgsink",
                          lambda tag: sinks(suffix[tag]),
                          lambda tag, worker: wait_equal(suffix[tag], worker),
                          int(os.environ.get("ORDO_PGSINK_SEED", "3")), check_first)

    def test_types_round_trip(self):
        """Values of many types, written by change capture as Debezium does (bytea base64,
        numeric and json as strings, arrays as JSON arrays, NaN as a string) and read back
        by the sink's COPY: the copy equals the table, value for value."""
        self.pg.sql("""
            CREATE DOMAIN posint AS int CHECK (VALUE > 0);
            CREATE TABLE kinds (id int PRIMARY KEY, b bytea, j jsonb, js json, ia int[],
                                tm text[], t2 text[][], ts timestamptz, t timestamp,
                                n numeric, f float8, txt text, u uuid, d date, p posint,
                                v varchar(20));
            CREATE TABLE kinds_copy (LIKE kinds INCLUDING ALL);
            INSERT INTO kinds VALUES
              (1, '\\x00ff10', '{"a": [1, "x\\ty"], "b": null}', '{"k":  1}', '{1,NULL,3}',
               '{"a b","c\\"d","e\\\\f",NULL,"NULL",""}', '{{"1","2"},{"3",NULL}}',
               '2026-12-06 12:00:00.123456+00', '2026-01-02 03:04:05',
               12345678901234567890.123456789, 'NaN', E'tab\\there\\nnew line \\\\ back \\\\N',
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2026-12-06', 5, 'vc'),
              (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL),
              (3, (SELECT string_agg(set_byte('\\x00'::bytea, 0, g), ''::bytea)
                   FROM generate_series(0, 255) g),
               '"str"', 'null', '{}', '{}', '{}', '-infinity', 'infinity', -0.5, '-Infinity',
               '\\N', NULL, '1999-12-31', 1, '');
            UPDATE kinds SET b = '\\x', j = '[]', txt = '' WHERE id = 1;
            DELETE FROM kinds WHERE id = 2;
            INSERT INTO kinds (id, txt, f) VALUES (4, 'late', 1e-300);
        """)
        worker = self.copy_worker("kinds")
        query = ("SELECT (SELECT count(*) FROM (SELECT to_jsonb(k) FROM kinds k EXCEPT SELECT "
                 "to_jsonb(c) FROM kinds_copy c) x) + (SELECT count(*) FROM (SELECT "
                 "to_jsonb(c) FROM kinds_copy c EXCEPT SELECT to_jsonb(k) FROM kinds k) y), "
                 "(SELECT count(*) FROM kinds_copy)")
        deadline = time.monotonic() + CATCH_UP_S
        while self.pg.sql(query)[0] != ["0", "3"]:
            if time.monotonic() > deadline:
                rows = self.pg.sql("SELECT to_jsonb(c)::text FROM kinds_copy c ORDER BY id")
                self.fail(f"copy differs: {rows}; status {worker.get('/status')[1]}")
            time.sleep(0.3)
        # The bytes themselves, not only their JSON rendering.
        self.assertEqual(self.pg.sql("SELECT count(*) FROM kinds k JOIN kinds_copy c USING (id) "
                                     "WHERE k.b IS NOT DISTINCT FROM c.b AND k.txt IS NOT "
                                     "DISTINCT FROM c.txt AND k.js::text = c.js::text")[0][0],
                         "2")
        self.assertEqual(worker.stop(), 0)

    def test_slow_batch_is_logged(self):
        """A batch the store takes longer than 200 ms to write is logged with its sink,
        partition, size and offsets: held here by a lock on the copy, released once the
        sink's write is seen waiting for it (pg_locks), not after a fixed sleep."""
        self.pg.sql("CREATE TABLE slow (id int PRIMARY KEY, note text); "
                    "CREATE TABLE slow_copy (LIKE slow INCLUDING ALL); "
                    "INSERT INTO slow VALUES (1, 'first')")
        worker = self.copy_worker("slow")
        self.wait_rows("slow_copy", 1, worker)
        self.assertNotIn("to apply", worker.log())
        locker = psycopg2.connect(self.pg.dsn)
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE slow_copy IN ACCESS EXCLUSIVE MODE")
            self.pg.sql("INSERT INTO slow VALUES (2, 'second')")
            deadline = time.monotonic() + CATCH_UP_S
            while self.pg.sql("SELECT count(*) FROM pg_locks WHERE NOT granted AND "
                              "relation = 'slow_copy'::regclass")[0][0] == "0":
                if time.monotonic() > deadline:
                    self.fail(f"the sink never waited for the lock: {worker.get('/status')[1]}")
                time.sleep(0.05)
            time.sleep(0.3)  # the write has waited at least this long once the lock goes
        locker.commit()
        locker.close()
        self.wait_rows("slow_copy", 2, worker)
        self.assertRegex(worker.log(), r"WARN +sink slow_copy: slow\.public\.slow-0: 1 records "
                                       r"took \d+ ms to apply \(offsets \d+-\d+\)")
        self.assertEqual(worker.stop(), 0)

    def copy_worker(self, table):
        """A started worker capturing public.<table> into topic <table>.public.<table> and
        copying it into public.<table>_copy."""
        root = tempfile.mkdtemp(prefix=f"ordo-pgsink-{table}-")
        text = source_toml(table, self.pg.dsn, [f"public.{table}"])
        text += (f'[[sink]]\nname = "{table}_copy"\ntype = "postgres"\n'
                 f'topics = ["{table}.public.{table}"]\nconninfo = "{self.pg.dsn}"\n'
                 f'table = "public.{table}_copy"\nfield = "after"\n')
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "{table}"', text)
        worker.start()
        return worker

    def wait_rows(self, table, n, worker):
        deadline = time.monotonic() + CATCH_UP_S
        while self.pg.sql(f"SELECT count(*) FROM {table}")[0][0] != str(n):
            if time.monotonic() > deadline:
                self.fail(f"{table} never had {n} rows; status {worker.get('/status')[1]}")
            time.sleep(0.1)


if __name__ == "__main__":
    unittest.main()
