"""Full-text search end to end: PostgreSQL 15 `emails` -> change capture -> `ordo connect run`
with a Xapian search sink indexing subject and body. After the snapshot and a random workload
(new mail, rewritten bodies, deletes, a truncate) with 10 SIGKILLs of the worker at random
moments, the hits of every word of the vocabulary are exactly the rows that contain it;
`ordo search` prints ranked hits with highlighted snippets; a second index replaying from
offset 0 gives the same hits."""

import json
import os
import random
import subprocess
import tempfile
import time
import unittest

import psycopg2

import kafka_wire as kw
from cdc_workload import (TRUNC_SCHEMA, TRUNC_TABLES, table_rows,
                          trunc_topic, truncate_scenario)
from connect_harness import Connect, free_port, kill_rounds, source_toml
from ordo_harness import ORDO_BIN
from pg_harness import Postgres

CATCH_UP_S = 120
KILL_ROUNDS = 10
VOCAB = [f"w{i}" for i in range(40)]



def search_sink(name):
    return (f'[[sink]]\nname = "{name}"\ntype = "search"\ntopics = ["mail.public.emails"]\n'
            f'field = "after"\nfields = ["subject", "body"]\n\n')


def text(rng, n):
    return " ".join(rng.choice(VOCAB) for _ in range(n))


class Mail:
    def __init__(self, pg, seed):
        self.pg, self.rng, self.conn, self.next_id, self.committed = pg, random.Random(seed), None, 1000, 0

    def run(self, n, stop=None):
        for _ in range(n):
            if stop and stop.is_set():
                return
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg2.connect(self.pg.dsn)
                with self.conn.cursor() as cur:
                    r, eid = self.rng.random(), self.rng.randrange(1, self.next_id)
                    if r < 0.5:
                        cur.execute("INSERT INTO emails VALUES (%s, %s, %s)",
                                    (self.next_id, text(self.rng, 2), text(self.rng, 8)))
                        self.next_id += 1
                    elif r < 0.8:
                        cur.execute("UPDATE emails SET body = %s WHERE id = %s",
                                    (text(self.rng, 6), eid))
                    elif r < 0.997:
                        cur.execute("DELETE FROM emails WHERE id = %s", (eid,))
                    else:
                        cur.execute("TRUNCATE emails")
                self.conn.commit()
                self.committed += 1
            except psycopg2.Error:
                self.conn = None
                time.sleep(0.05)


class SearchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql("CREATE TABLE emails (id int PRIMARY KEY, subject text, body text)")
        cls.broker = cls.enterClassContext(kw.Broker(port=free_port()))

    def expected(self):
        rows = self.pg.sql("SELECT id, subject, body FROM emails")
        out = {w: set() for w in VOCAB}
        for i, subject, body in rows:
            for w in set((subject + " " + body).split()):
                out[w].add(json.dumps({"id": int(i)}, separators=(",", ":")))
        return out

    def hits(self, worker, name):
        out = {}
        for w in VOCAB:
            status, body = worker.get(f"/search/{name}?q={w}&limit=1000")
            assert status == 200, body
            out[w] = {h["key"] for h in body["hits"]}
        return out

    def wait_equal(self, worker, name):
        deadline = time.monotonic() + CATCH_UP_S
        while True:
            want = self.expected()
            have = self.hits(worker, name)
            if have == want:
                return want
            if time.monotonic() > deadline:
                bad = [w for w in VOCAB if have[w] != want[w]]
                self.fail(f"{name}: words {bad[:5]} differ; status {worker.get('/status')[1]}")
            time.sleep(0.3)

    def test_hits_equal_the_rows_with_the_word(self):
        rng = random.Random(int(os.environ.get("ORDO_SEARCH_SEED", "21")))
        conn = psycopg2.connect(self.pg.dsn)
        with conn.cursor() as cur:
            for i in range(1, 200):
                cur.execute("INSERT INTO emails VALUES (%s, %s, %s)",
                            (i, text(rng, 2), text(rng, 8)))
        conn.commit()
        conn.close()
        root = tempfile.mkdtemp(prefix="ordo-search-it-")
        source = source_toml("mail", self.pg.dsn, ['public.emails'])
        worker = Connect(root, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "search"\n'
                               f'id = "search-worker"', source + search_sink("mail-search"))
        worker.start()
        self.wait_equal(worker, "mail-search")

        mail = Mail(self.pg, rng.random())
        mail.next_id = 200
        kill_rounds(worker, mail.run, KILL_ROUNDS, rng)
        self.assertGreater(mail.committed, 200)
        # The workload may end just after a TRUNCATE: fresh mail so the CLI has 3 hits to show.
        conn = psycopg2.connect(self.pg.dsn)
        with conn.cursor() as cur:
            for i in range(mail.next_id, mail.next_id + 50):
                cur.execute("INSERT INTO emails VALUES (%s, %s, %s)",
                            (i, text(rng, 2), text(rng, 8)))
        conn.commit()
        conn.close()
        want = self.wait_equal(worker, "mail-search")

        # The CLI: ranked hits, the word highlighted in the snippet.
        word = max(VOCAB, key=lambda w: len(want[w]))
        r = subprocess.run([ORDO_BIN, "search", "mail-search", word, "--http",
                            f"127.0.0.1:{worker.port}", "-n", "3"],
                           capture_output=True, text=True, timeout=kw.WAIT_S)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"<b>{word}</b>", r.stdout)
        self.assertRegex(r.stderr, r"3 hits of \d+ documents")
        status, body = worker.get("/search/mail-search?q=%22unbalanced")
        self.assertIn(status, (200, 400))  # a lone quote is a phrase to the end, not a crash

        root2 = tempfile.mkdtemp(prefix="ordo-search-it-")
        replay = Connect(root2, f'bootstrap = "{self.broker.bootstrap}"\ngroup = "search2"',
                         search_sink("mail-search2"))
        replay.start()
        self.assertEqual(self.wait_equal(replay, "mail-search2"), want)
        self.assertEqual(replay.stop(), 0)
        self.assertEqual(worker.stop(), 0)


    def test_truncates_remove_what_their_partition_indexed(self):
        """Tables of 1, 2 and 6 partitions indexed by search sinks: first ids 1-40, TRUNCATE,
        ids 41-80, then random inserts, updates, deletes and truncates through SIGKILLs of the
        worker. The documents of each index are the rows of its table, live and replayed from
        offset 0."""
        self.pg.sql(TRUNC_SCHEMA)

        def sinks(suffix):
            return "".join(f'[[sink]]\nname = "{t}{suffix}"\ntype = "search"\n'
                           f'topics = ["{trunc_topic(t)}"]\nfield = "after"\n'
                           f'fields = ["v"]\n\n' for t in TRUNC_TABLES)

        def documents(worker, name):  # every row's v has one of the three words
            status, body = worker.get(f"/search/{name}?q=first+OR+after+OR+row&limit=1000")
            assert status == 200, body
            assert len(body["hits"]) < 1000, "more rows than a search returns"
            return {h["key"]: json.loads(h["value"]) for h in body["hits"]}

        def wait_equal(suffix, worker):
            deadline = time.monotonic() + CATCH_UP_S
            while True:
                want = {t: table_rows(self.pg, t) for t in TRUNC_TABLES}
                have = {t: documents(worker, f"{t}{suffix}") for t in TRUNC_TABLES}
                if have == want:
                    return want
                if time.monotonic() > deadline:
                    sizes = {t: (len(want[t]), len(have[t])) for t in want}
                    self.fail(f"{suffix}: (table, index) rows {sizes}; "
                              f"status {worker.get('/status')[1]}")
                time.sleep(0.3)

        # The stores "a" and "b" (the replay): indexes <t>-a and <t>-b.
        truncate_scenario(
            self, self.pg, self.broker.bootstrap, "search", lambda tag: sinks(f"-{tag}"),
            lambda tag, worker: wait_equal(f"-{tag}", worker),
            int(os.environ.get("ORDO_SEARCH_SEED", "21")),
            lambda tables: self.assertEqual({t: len(r) for t, r in tables.items()},
                                            {t: 40 for t in TRUNC_TABLES}))


if __name__ == "__main__":
    unittest.main()
