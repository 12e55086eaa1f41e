"""checker.py on synthetic histories: a valid one passes, and each anomaly planted into it is
caught under its kind (and only makes the history invalid through that kind)."""

import copy
import json
import os
import tempfile
import unittest

import checker

TOPIC = "t"


def valid_history(per_partition=6, partitions=2):
    """One idempotent producer writing per_partition values to each partition (a fault from
    t=2 to t=4, writes before and after), one assign() reader per partition reading it all in
    two polls, a group consumer committing the ends, and a committed-offset read."""
    ev = []
    t = [0.0]

    def at(e):
        t[0] += 0.1
        e["time"] = round(t[0], 3)
        ev.append(e)
        return e

    acks = []
    offsets = [0] * partitions
    for i in range(per_partition * partitions):
        part = i % partitions
        v = f"p0-{i}"
        at({"process": "p0", "type": "invoke", "f": "produce", "topic": TOPIC, "partition": part,
            "key": f"k{i}", "value": v, "idempotent": True})
        if i == per_partition:  # halfway: a fault, then its heal
            at({"process": "nemesis", "type": "info", "f": "start", "nemesis": "kill",
                "nodes": [1]})
            at({"process": "nemesis", "type": "info", "f": "stop", "nemesis": "kill",
                "nodes": [1]})
        at({"process": "p0", "type": "ok", "f": "produce", "topic": TOPIC, "partition": part,
            "value": v, "offset": offsets[part]})
        acks.append((part, offsets[part], v))
        offsets[part] += 1
    for part in range(partitions):
        mine = [a for a in acks if a[0] == part]
        half = len(mine) // 2
        at({"process": f"r{part}", "type": "info", "f": "assign",
            "partitions": [{"topic": TOPIC, "partition": part, "offset": 0}]})
        for chunk in (mine[:half], mine[half:]):
            at({"process": f"r{part}", "type": "ok", "f": "poll",
                "records": [{"topic": TOPIC, "partition": p, "offset": o, "value": v}
                            for p, o, v in chunk]})
    # the group consumer reads everything too and commits twice
    at({"process": "g0", "type": "info", "f": "assign", "group": "g",
        "partitions": [{"topic": TOPIC, "partition": p} for p in range(partitions)]})
    at({"process": "g0", "type": "ok", "f": "poll",
        "records": [{"topic": TOPIC, "partition": p, "offset": o, "value": v}
                    for p, o, v in acks]})
    for frac in (2, 1):
        offs = [{"topic": TOPIC, "partition": p, "offset": offsets[p] // frac}
                for p in range(partitions)]
        at({"process": "g0", "type": "invoke", "f": "commit", "group": "g", "offsets": offs})
        at({"process": "g0", "type": "ok", "f": "commit", "group": "g", "offsets": offs})
    at({"process": "g0", "type": "invoke", "f": "committed", "group": "g"})
    at({"process": "g0", "type": "ok", "f": "committed", "group": "g",
        "offsets": [{"topic": TOPIC, "partition": p, "offset": offsets[p]}
                    for p in range(partitions)]})
    return ev


def find(ev, **kw):
    for i, e in enumerate(ev):
        if all(e.get(k) == v for k, v in kw.items()):
            return i
    raise KeyError(kw)


def poll_records(ev, process):
    return [r for e in ev if e.get("process") == process and e.get("f") == "poll"
            for r in e["records"]]


class CheckerTest(unittest.TestCase):
    def assert_only(self, ev, kind, budget=5.0):
        verdict = checker.check(ev, recovery_budget_s=budget)
        self.assertFalse(verdict["valid"], f"{kind} not caught")
        self.assertEqual(set(verdict["anomaly_counts"]), {kind},
                         json.dumps(verdict["anomalies"], indent=1))
        self.assertTrue(verdict["anomalies"][kind])
        return verdict

    def test_valid_history_passes(self):
        verdict = checker.check(valid_history(), recovery_budget_s=5.0)
        self.assertTrue(verdict["valid"], json.dumps(verdict, indent=1))
        self.assertEqual(verdict["anomalies"], {})
        s = verdict["stats"]
        self.assertEqual(s["produce"]["ok"], 12)
        self.assertEqual(s["values_read"], 12)
        self.assertEqual(s["nemesis_ops"], 1)
        self.assertEqual(s["commits"], 4)
        self.assertIsNotNone(s["recovery_s"])

    def test_lost_write(self):
        ev = valid_history()
        # drop the record of p0-3 from every reader
        for e in ev:
            if e.get("f") == "poll":
                e["records"] = [r for r in e["records"] if r["value"] != "p0-3"]
        # the readers' later offsets shift down: keep them contiguous so only the loss shows
        v = self.assert_only_lost_or_offsets(ev)
        self.assertIn("p0-3", [x["value"] for x in v["anomalies"]["lost"]])

    def assert_only_lost_or_offsets(self, ev):
        verdict = checker.check(ev, recovery_budget_s=5.0)
        self.assertFalse(verdict["valid"])
        self.assertEqual(set(verdict["anomaly_counts"]), {"lost"},
                         json.dumps(verdict["anomalies"], indent=1))
        return verdict

    def test_unacknowledged_write_may_be_missing(self):
        ev = valid_history()
        i = find(ev, f="produce", type="ok", value="p0-3")
        ev[i]["type"] = "info"  # indeterminate: may or may not be stored
        for e in ev:
            if e.get("f") == "poll":
                e["records"] = [r for r in e["records"] if r["value"] != "p0-3"]
        self.assertTrue(checker.check(ev)["valid"])

    def test_duplicate(self):
        ev = valid_history()
        for proc in ("r1", "g0"):  # p0-1 stored again at offset 6 of partition 1
            i = max(j for j, e in enumerate(ev) if e.get("process") == proc
                    and e.get("f") == "poll")
            ev[i]["records"].append({"topic": TOPIC, "partition": 1, "offset": 6,
                                     "value": "p0-1"})
        self.assert_only(ev, "duplicate")
        # the same history from a producer that is not idempotent is valid
        for e in ev:
            if e.get("f") == "produce" and e["type"] == "invoke":
                e["idempotent"] = False
        self.assertTrue(checker.check(ev)["valid"])

    def test_reorder(self):
        ev = valid_history()
        # p0-0 and p0-2 (both partition 0, invoked in that order) stored swapped, and
        # acknowledged as stored
        for e in ev:
            if e.get("f") == "produce" and e["type"] == "ok" and e["value"] in ("p0-0", "p0-2"):
                e["offset"] = 1 - e["offset"]
            for r in e.get("records", ()) if e.get("f") == "poll" else ():
                if r["partition"] == 0 and r["offset"] in (0, 1):
                    r["value"] = {0: "p0-2", 1: "p0-0"}[r["offset"]]
        v = self.assert_only(ev, "reorder")
        self.assertEqual(v["anomalies"]["reorder"][0]["invoked_first"]["value"], "p0-0")

    def test_wrong_offset(self):
        ev = valid_history()
        ev[find(ev, f="produce", type="ok", value="p0-4")]["offset"] = 7
        self.assert_only(ev, "wrong-offset")

    def test_phantom(self):
        ev = valid_history()
        for proc in ("r0", "g0"):
            i = max(j for j, e in enumerate(ev) if e.get("process") == proc
                    and e.get("f") == "poll")
            ev[i]["records"].append({"topic": TOPIC, "partition": 0, "offset": 6,
                                     "value": "nobody-wrote-this"})
        self.assert_only(ev, "phantom")

    def test_read_of_a_failed_write(self):
        ev = valid_history()
        ev[find(ev, f="produce", type="ok", value="p0-5")]["type"] = "fail"
        self.assert_only(ev, "failed-read")

    def test_divergence(self):
        ev = valid_history()
        # r1 and g0 read different values at (t, 1, 2); both values were written (p0-5 at
        # offset 2 as acknowledged, and an indeterminate p1-0)
        ev.insert(0, {"process": "p1", "type": "invoke", "f": "produce", "topic": TOPIC,
                      "partition": 1, "value": "p1-0", "idempotent": True, "time": 0.0})
        for e in ev:
            if e.get("process") == "g0" and e.get("f") == "poll":
                for r in e["records"]:
                    if (r["partition"], r["offset"]) == (1, 2):
                        r["value"] = "p1-0"
        v = self.assert_only(ev, "divergence")
        self.assertEqual(v["anomalies"]["divergence"][0]["offset"], 2)

    def test_reader_going_backwards(self):
        ev = valid_history()
        i = max(j for j, e in enumerate(ev) if e.get("process") == "r0" and e.get("f") == "poll")
        ev[i]["records"].append(dict(ev[i]["records"][0]))  # re-reads an offset it had read
        self.assert_only(ev, "nonmonotonic-read")
        # after a seek, reading again from the start is fine
        ev[i]["records"].pop()
        again = copy.deepcopy(poll_records(ev, "r0"))
        ev.append({"process": "r0", "type": "info", "f": "seek", "time": 99.0,
                   "partitions": [{"topic": TOPIC, "partition": 0, "offset": 0}]})
        ev.append({"process": "r0", "type": "ok", "f": "poll", "time": 99.1, "records": again})
        self.assertTrue(checker.check(ev)["valid"])

    def test_commit_going_back(self):
        ev = valid_history()
        i = find(ev, f="committed", type="ok")
        ev[i]["offsets"][0]["offset"] = 1
        self.assert_only(ev, "commit-regressed")

    def test_acknowledged_commit_going_back(self):
        ev = valid_history()
        offs = [{"topic": TOPIC, "partition": 0, "offset": 2}]
        ev.append({"process": "g0", "type": "invoke", "f": "commit", "group": "g",
                   "offsets": offs, "time": 50.0})
        ev.append({"process": "g0", "type": "ok", "f": "commit", "group": "g",
                   "offsets": offs, "time": 50.1})
        self.assert_only(ev, "commit-regressed")

    def test_no_recovery(self):
        ev = valid_history()
        # every produce after the heal is indeterminate
        heal = ev[find(ev, process="nemesis", f="stop")]["time"]
        invoked = {e["value"]: e["time"] for e in ev if e.get("f") == "produce"
                   and e["type"] == "invoke"}
        for e in ev:
            if e.get("f") == "produce" and e["type"] == "ok" and invoked[e["value"]] >= heal:
                e["type"] = "info"
        # (nothing else changes: indeterminate writes may be read)
        self.assert_only(ev, "no-recovery")

    def test_slow_recovery(self):
        ev = valid_history()
        verdict = checker.check(ev, recovery_budget_s=5.0)
        took = verdict["stats"]["recovery_s"]
        self.assertGreater(took, 0)
        v = self.assert_only(ev, "slow-recovery", budget=took / 2)
        self.assertEqual(v["anomalies"]["slow-recovery"][0]["recovery_s"], took)

    def test_load_and_cli(self):
        ev = valid_history()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "history.jsonl")
            with open(path, "w") as f:
                for e in ev:
                    f.write(json.dumps(e) + "\n")
                f.write("\n")
            self.assertEqual(checker.load(path), ev)
            with open(os.devnull, "w") as null:
                import contextlib
                with contextlib.redirect_stdout(null):
                    self.assertEqual(checker.main([path]), 0)
                    ev[find(ev, f="produce", type="ok", value="p0-4")]["offset"] = 9
                    with open(path, "w") as f:
                        f.write("\n".join(json.dumps(e) for e in ev))
                    self.assertEqual(checker.main([path]), 1)


if __name__ == "__main__":
    unittest.main()
