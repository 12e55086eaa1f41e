"""PostgreSQL logical replication read by Ordo's own client (`ordo connect pg-stream`: libpq
replication connection, pgoutput decoder, Debezium-style value rendering) against a real
PostgreSQL 15 started by the test on 127.0.0.1: inserts, a multi-statement transaction over two
tables, updates with REPLICA IDENTITY FULL, deletes and a truncate come out in commit order with
faithfully rendered values; each printed transaction is confirmed to the slot, so a second run,
after a PostgreSQL restart, starts right after the last one and prints nothing twice."""

import json
import subprocess
import time
import unittest

from ordo_harness import ORDO_BIN
from pg_harness import Postgres

WAIT_S = 60


class PgStreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = cls.enterClassContext(Postgres())
        cls.pg.sql("""
            CREATE TABLE users (id int PRIMARY KEY, name text, balance numeric(12,2),
                                tags text[], born timestamptz, seen timestamp, pic bytea,
                                score float8, active bool, big int8);
            CREATE TABLE orders (shop text, n int, total numeric, PRIMARY KEY (shop, n));
            CREATE TABLE audit (line text, at int);
            ALTER TABLE audit REPLICA IDENTITY FULL;
            CREATE PUBLICATION ordo FOR ALL TABLES;
        """)

    def stream(self, *args, count, idle_ms=WAIT_S * 1000):
        return subprocess.Popen(
            [ORDO_BIN, "connect", "pg-stream", "--conninfo", self.pg.dsn, "--count", str(count),
             "--idle-timeout-ms", str(idle_ms), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, proc):
        out, err = proc.communicate(timeout=2 * WAIT_S)
        self.assertEqual(proc.returncode, 0, err)
        return [json.loads(line) for line in out.splitlines()]

    def test_changes_in_commit_order_and_resume_after_restart(self):
        p = self.stream("--create-slot", count=5)
        time.sleep(0.5)  # the slot exists once the process has printed it; changes before are not streamed
        deadline = time.monotonic() + WAIT_S
        while not self.pg.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'ordo'"):
            self.assertLess(time.monotonic(), deadline, "slot not created")
            time.sleep(0.1)
        self.pg.sql("""INSERT INTO users VALUES (1, 'jane', 1234567890.25, '{a,"b c",NULL}',
                       '2024-02-29 23:59:59.5+00', '2024-02-29 12:00:00', '\\x00ff10', 1.5,
                       true, 9223372036854775807)""")
        self.pg.sql("""BEGIN;
                       UPDATE users SET name = 'Jane', balance = -0.01 WHERE id = 1;
                       INSERT INTO orders VALUES ('north', 7, 10.5);
                       INSERT INTO audit VALUES ('first', 1);
                       COMMIT""")
        self.pg.sql("UPDATE audit SET at = 2 WHERE line = 'first'")
        self.pg.sql("DELETE FROM users WHERE id = 1")
        self.pg.sql("TRUNCATE orders")
        events = self.finish(p)
        self.assertEqual(events[0]["type"], "slot")
        txns, current = [], None
        for e in events[1:]:
            if e["type"] == "begin":
                current = []
            elif e["type"] == "commit":
                txns.append(current)
                current = None
            elif e["type"] != "relation":
                current.append(e)
        self.assertEqual(len(txns), 5)
        ins = txns[0][0]
        self.assertEqual((ins["type"], ins["table"], ins["key"]), ("insert", "users", {"id": 1}))
        self.assertEqual(ins["after"], {
            "id": 1, "name": "jane", "balance": "1234567890.25", "tags": ["a", "b c", None],
            "born": "2024-02-29T23:59:59.5Z", "seen": "2024-02-29T12:00:00", "pic": "AP8Q",
            "score": 1.5, "active": True, "big": 9223372036854775807})
        self.assertEqual([(e["type"], e["table"]) for e in txns[1]],
                         [("update", "users"), ("insert", "orders"), ("insert", "audit")])
        self.assertEqual(txns[1][0]["after"]["balance"], "-0.01")
        self.assertIsNone(txns[1][0]["before"])  # default replica identity: no old row
        self.assertEqual(txns[1][1]["key"], {"shop": "north", "n": 7})
        upd = txns[2][0]
        self.assertEqual((upd["before"], upd["after"]),
                         ({"line": "first", "at": 1}, {"line": "first", "at": 2}))
        self.assertEqual(upd["key"], {"line": "first", "at": 2})  # FULL: every column
        dele = txns[3][0]
        self.assertEqual((dele["type"], dele["key"]), ("delete", {"id": 1}))
        self.assertEqual(txns[4], [{"type": "truncate", "tables": ["public.orders"],
                                    "cascade": False}])

        # Every transaction was confirmed: the next run starts right after them.
        p = self.stream(count=1)
        self.pg.sql("INSERT INTO users (id, name) VALUES (2, 'second run')")
        events = self.finish(p)
        changes = [e for e in events if e["type"] not in ("begin", "commit", "relation")]
        self.assertEqual(len(changes), 1, events)
        self.assertEqual((changes[0]["key"], changes[0]["after"]["name"]),
                         ({"id": 2}, "second run"))
        (flushed,) = self.pg.sql("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                                 "WHERE slot_name = 'ordo'")[0]
        commit = [e for e in events if e["type"] == "commit"][-1]
        self.assertEqual(flushed, commit["end_lsn"])

        # After a PostgreSQL restart the slot survives and nothing is lost. PostgreSQL 15 writes
        # a logical slot's confirmed position to disk only when something else dirties the
        # slot, so a restart may send confirmed transactions again: they come first, in order,
        # and a consumer skips them by their commit LSN (the change-capture source stores it).
        self.pg.restart()
        p = self.stream(count=100, idle_ms=3000)  # until idle: how many come again varies
        self.pg.sql("INSERT INTO users (id, name) VALUES (3, 'after restart')")
        events = self.finish(p)
        commits = [e["end_lsn"] for e in events if e["type"] == "commit"]
        changes = [e for e in events if e["type"] not in ("begin", "commit", "relation")]
        self.assertEqual((changes[-1]["key"], changes[-1]["after"]["name"]),
                         ({"id": 3}, "after restart"))
        lsn = lambda t: tuple(int(x, 16) for x in t.split("/"))
        self.assertEqual(commits, sorted(commits, key=lsn))


if __name__ == "__main__":
    unittest.main()
