"""What the change-capture tests share: three tables, a random workload of transactions over
them through psycopg2 that survives PostgreSQL restarts, and the tables' rows keyed and
rendered the way the source renders them."""

import json
import random
import tempfile
import time
from decimal import Decimal

import psycopg2

from connect_harness import Connect, kill_rounds, source_toml

SCHEMA = """
    CREATE TABLE users (id int PRIMARY KEY, name text, balance numeric(12,2),
                        active bool, tags text[]);
    CREATE TABLE orders (shop text, n int, total numeric, PRIMARY KEY (shop, n));
    CREATE TABLE audit (line text, at int, seq int);
    ALTER TABLE audit REPLICA IDENTITY FULL;
"""
TABLES = {  # table -> key columns
    "users": ["id"],
    "orders": ["shop", "n"],
    "audit": ["at", "line", "seq"],  # REPLICA IDENTITY FULL: every column is the key
}


def canonical(v):
    """A PostgreSQL value as the source renders it in JSON (numeric as a string)."""
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, list):
        return [canonical(x) for x in v]
    return v


def key_json(row, cols):
    return json.dumps({c: row[c] for c in sorted(cols)}, separators=(",", ":"),
                      ensure_ascii=False)


class Workload:
    """Random transactions over the three tables through psycopg2, surviving restarts of
    PostgreSQL (a failed transaction is just not counted: the comparison is with the tables)."""

    def __init__(self, pg, seed):
        self.pg = pg
        self.rng = random.Random(seed)
        self.conn = None
        self.seq = 0
        self.committed = 0

    def connect(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(self.pg.dsn)

    def statement(self, cur):
        r = self.rng.random()
        uid = self.rng.randrange(300)
        self.seq += 1
        if r < 0.35:
            cur.execute("INSERT INTO users VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE "
                        "SET name = excluded.name, balance = excluded.balance",
                        (uid, f"user {self.seq} ü", Decimal(self.rng.randrange(-10**6, 10**6)) / 100,
                         self.rng.random() < 0.5, ["a", f"t{self.seq}", None]))
        elif r < 0.5:
            cur.execute("UPDATE users SET balance = balance + 1.25, tags = NULL WHERE id = %s",
                        (uid,))
        elif r < 0.55:
            # A key change: the old key's row goes (delete + tombstone), the new one comes.
            cur.execute("UPDATE users SET id = id + 1000 WHERE id = %s AND NOT EXISTS "
                        "(SELECT 1 FROM users WHERE id = %s)", (uid, uid + 1000))
        elif r < 0.65:
            cur.execute("DELETE FROM users WHERE id = %s", (uid,))
        elif r < 0.8:
            cur.execute("INSERT INTO orders VALUES (%s, %s, %s) ON CONFLICT (shop, n) DO UPDATE "
                        "SET total = excluded.total",
                        (self.rng.choice(["north", "south", "east"]), self.rng.randrange(100),
                         Decimal(self.seq) / 7))
        elif r < 0.85:
            cur.execute("DELETE FROM orders WHERE n = %s", (self.rng.randrange(100),))
        elif r < 0.95:
            cur.execute("INSERT INTO audit VALUES (%s, %s, %s)",
                        (f"line {self.seq}", self.rng.randrange(10), self.seq))
        elif r < 0.99:
            cur.execute("UPDATE audit SET at = at + 1 WHERE seq %% 7 = %s",
                        (self.rng.randrange(7),))
        else:
            cur.execute("TRUNCATE audit")

    pause_s = 0  # between two transactions

    def transaction(self, cur):
        for _ in range(self.rng.choice([1, 1, 2, 5])):
            self.statement(cur)

    def run(self, transactions, stop=None):
        done = 0
        while done < transactions and not (stop and stop.is_set()):
            try:
                self.connect()
                with self.conn.cursor() as cur:
                    self.transaction(cur)
                self.conn.commit()
                self.committed += 1
            except psycopg2.Error:
                if self.conn is not None:
                    try:
                        self.conn.close()
                    except psycopg2.Error:
                        pass
                self.conn = None
                time.sleep(0.05)
            done += 1
            if self.pause_s:
                time.sleep(self.pause_s)


# Truncates across partitions: one table per partition count, each captured by a source of its
# own ("tr<n>", topic "tr<n>.public.trunc<n>", n partitions). A truncate marker reaches every
# partition and must remove exactly what its partition wrote before it.
TRUNC_PARTITIONS = (1, 2, 6)
TRUNC_TABLES = {f"trunc{n}": ["id"] for n in TRUNC_PARTITIONS}
TRUNC_SCHEMA = "".join(f"CREATE TABLE trunc{n} (id int PRIMARY KEY, v text, n int);"
                       for n in TRUNC_PARTITIONS)


def trunc_sources(dsn):
    """The [[source]]s of the truncate tables (snapshots off: the tables start empty)."""
    return "".join(source_toml(f"tr{n}", dsn, [f"public.trunc{n}"], partitions=n)
                   for n in TRUNC_PARTITIONS)


def trunc_topic(table):
    return f"tr{table[len('trunc'):]}.public.{table}"


class TruncateWorkload(Workload):
    """Transactions over the truncate tables: first the case that lost rows (insert ids 1-40,
    TRUNCATE, insert ids 41-80, three transactions, in every table), then random inserts,
    updates, deletes and truncates (some followed by inserts in the same transaction)."""

    pause_s = 0.01

    def __init__(self, pg, seed):
        super().__init__(pg, seed)
        self.next_id = 81

    def first(self):
        for t in TRUNC_TABLES:
            self.pg.sql(f"INSERT INTO {t} SELECT g, 'first ' || g, 0 FROM generate_series(1, 40) g")
            self.pg.sql(f"TRUNCATE {t}")
            self.pg.sql(f"INSERT INTO {t} SELECT g, 'after ' || g, 0 FROM generate_series(41, 80) g")

    def statement(self, cur, table):
        r = self.rng.random()
        if r < 0.1:
            cur.execute(f"TRUNCATE {table}")
        elif r < 0.6:
            first = self.next_id
            self.next_id += self.rng.randrange(1, 20)
            cur.execute(f"INSERT INTO {table} SELECT g, 'row ' || g, 0 FROM "
                        f"generate_series(%s, %s) g", (first, self.next_id - 1))
        elif r < 0.85:
            cur.execute(f"UPDATE {table} SET n = n + 1 WHERE id %% 5 = %s",
                        (self.rng.randrange(5),))
        else:
            cur.execute(f"DELETE FROM {table} WHERE id %% 11 = %s", (self.rng.randrange(11),))

    def transaction(self, cur):
        table = self.rng.choice(list(TRUNC_TABLES))
        for _ in range(self.rng.choice([1, 1, 2, 3])):
            self.statement(cur, table)


def table_rows(pg, name):
    """{key JSON: row} of a table, values rendered as the source renders them."""
    conn = psycopg2.connect(pg.dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {name}")
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, map(canonical, r))) for r in cur.fetchall()]
    finally:
        conn.close()
    return {key_json(r, TABLES.get(name) or TRUNC_TABLES[name]): r for r in rows}


def truncate_scenario(test, pg, bootstrap, name, sinks, wait_equal, seed, check_first,
                      work=None):
    """The truncate test of every sink module, one driver for all. `sinks(tag)` is the pipeline
    text of the sinks writing into the stores `tag` names ("a": live, "b": replayed);
    `wait_equal(tag, worker)` waits until those stores equal the tables and returns what it
    compared (it fails the test after its deadline). A worker runs the truncate sources and
    sinks "a" through the first transactions (ids 1-40, TRUNCATE, ids 41-80: `check_first`
    gets what wait_equal returned), then 4 rounds of random transactions, each ended by a
    SIGKILL of the worker; a second worker replays sinks "b" from offset 0, which must end
    equal to "a"."""
    rng = random.Random(seed)
    work = work or TruncateWorkload(pg, 0)
    work.rng = random.Random(rng.random())
    worker = Connect(tempfile.mkdtemp(prefix=f"ordo-{name}-trunc-"),
                     f'bootstrap = "{bootstrap}"\ngroup = "{name}-trunc"\n'
                     f'id = "{name}-trunc-worker"', trunc_sources(pg.dsn) + sinks("a"))
    worker.start()
    work.first()
    check_first(wait_equal("a", worker))
    kill_rounds(worker, work.run, 4, rng)
    test.assertGreater(work.committed, 20)
    want = wait_equal("a", worker)
    replay = Connect(tempfile.mkdtemp(prefix=f"ordo-{name}-trunc-"),
                     f'bootstrap = "{bootstrap}"\ngroup = "{name}-trunc-replay"', sinks("b"))
    replay.start()
    test.assertEqual(wait_equal("b", replay), want)
    test.assertEqual(replay.stop(), 0)
    test.assertEqual(worker.stop(), 0)
