"""Checks a history of Kafka client operations run against an Ordo cluster under faults.

Pure functions over a list of events (the JSONL lines of history.jsonl, README.md in this
folder defines the schema). `check(events, recovery_budget_s)` returns the verdict:

    {"valid": bool,
     "anomalies": {kind: [up to MAX_EXAMPLES example dicts]},
     "anomaly_counts": {kind: total},
     "stats": {...}}

Anomaly kinds (each one makes the history invalid):
  lost              an acknowledged produce (type ok) whose value no reader ever read
  wrong-offset      a value read at another offset or partition than its acknowledgement said
  duplicate         a value of an idempotent producer stored at two offsets
  reorder           one idempotent producer's writes to one partition stored out of the order
                    it invoked them
  phantom           a value read that no produce invoked
  failed-read       a value read whose produce had definitely failed (type fail)
  divergence        two reads of one (topic, partition, offset) with different values
  nonmonotonic-read a reader's offsets on a partition did not increase from one record to the
                    next (without a seek or assignment in between)
  commit-regressed  a group's committed offset observed lower than one acknowledged earlier
  no-recovery       after the last heal, no produce invoked after it succeeded
  slow-recovery     the first produce invoked after the last heal was acknowledged more than
                    recovery_budget_s after the heal
"""

import json
from collections import defaultdict

MAX_EXAMPLES = 10


def load(path):
    """The events of a JSONL history file (blank lines skipped)."""
    events = []
    with open(path, "r") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                events.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from None
    return events


class _Anomalies:
    def __init__(self):
        self.examples = defaultdict(list)
        self.counts = defaultdict(int)

    def add(self, kind, example):
        self.counts[kind] += 1
        if len(self.examples[kind]) < MAX_EXAMPLES:
            self.examples[kind].append(example)


def _tp(e):
    return (e["topic"], int(e["partition"]))


def _produces(events):
    """value -> {"invoke": event, "result": ok/fail/info event or None}; values are unique."""
    ops = {}
    for e in events:
        if e.get("f") != "produce":
            continue
        v = e["value"]
        if e["type"] == "invoke":
            ops[v] = {"invoke": e, "result": None, "seq": len(ops)}
        elif v in ops:
            ops[v]["result"] = e
    return ops


def _reads(events):
    """Every record read, in history order: (event, record) for poll events of type ok."""
    out = []
    for e in events:
        if e.get("f") == "poll" and e.get("type") == "ok":
            for r in e.get("records", ()):
                out.append((e, r))
    return out


def check_writes(events, anomalies, stats):
    ops = _produces(events)
    reads = _reads(events)
    # value -> set of (topic, partition, offset) it was read at
    seen_at = defaultdict(set)
    for _, r in reads:
        seen_at[r["value"]].add((r["topic"], int(r["partition"]), int(r["offset"])))

    counts = defaultdict(int)
    for v, op in ops.items():
        res = op["result"]
        counts[res["type"] if res else "pending"] += 1
    stats["produce"] = dict(counts, invoked=len(ops))
    stats["values_read"] = len(seen_at)

    for v, locations in seen_at.items():
        op = ops.get(v)
        if op is None:
            anomalies.add("phantom", {"value": v, "at": sorted(locations)})
            continue
        res = op["result"]
        if res is not None and res["type"] == "fail":
            anomalies.add("failed-read", {"value": v, "at": sorted(locations),
                                          "fail": res})
        if len(locations) > 1 and op["invoke"].get("idempotent"):
            anomalies.add("duplicate", {"value": v, "producer": op["invoke"].get("process"),
                                        "at": sorted(locations)})

    for v, op in ops.items():
        res = op["result"]
        if res is None or res["type"] != "ok":
            continue
        locations = seen_at.get(v)
        if not locations:
            anomalies.add("lost", {"value": v, "ack": res})
            continue
        if res.get("offset") is not None:
            want = (res["topic"], int(res["partition"]), int(res["offset"]))
            if want not in locations:
                anomalies.add("wrong-offset", {"value": v, "acknowledged": list(want),
                                               "read_at": sorted(locations)})

    # Per idempotent producer and partition: the stored offsets follow the invoke order.
    lanes = defaultdict(list)  # (producer, topic, partition) -> [(seq, offset, value)]
    for v, op in ops.items():
        inv = op["invoke"]
        if not inv.get("idempotent") or v not in seen_at:
            continue
        first = {}  # a duplicate counts at its first offset (the duplicate is reported above)
        for topic, part, off in seen_at[v]:
            first[(topic, part)] = min(off, first.get((topic, part), off))
        for (topic, part), off in first.items():
            lanes[(inv.get("process"), topic, part)].append((op["seq"], off, v))
    for (producer, topic, part), writes in lanes.items():
        writes.sort()
        for prev, cur in zip(writes, writes[1:]):
            if cur[1] <= prev[1] and cur[2] != prev[2]:
                anomalies.add("reorder", {"producer": producer, "topic": topic,
                                          "partition": part,
                                          "invoked_first": {"value": prev[2], "offset": prev[1]},
                                          "invoked_next": {"value": cur[2], "offset": cur[1]}})


def check_reads(events, anomalies, stats):
    values = {}  # (topic, partition, offset) -> (value, process)
    last = {}    # (process, topic, partition) -> last offset read
    records = 0
    for e in events:
        f = e.get("f")
        proc = e.get("process")
        if f in ("seek", "assign") and e.get("type") in ("ok", "info"):
            # A new position or assignment: the next offset may be anything.
            for p in e.get("partitions", ()):
                last.pop((proc, p["topic"], int(p["partition"])), None)
            continue
        if f != "poll" or e.get("type") != "ok":
            continue
        for r in e.get("records", ()):
            records += 1
            tp = (r["topic"], int(r["partition"]))
            off = int(r["offset"])
            key = tp + (off,)
            if key in values and values[key][0] != r["value"]:
                anomalies.add("divergence", {"topic": tp[0], "partition": tp[1], "offset": off,
                                             "values": {values[key][1]: values[key][0],
                                                        proc: r["value"]}})
            else:
                values.setdefault(key, (r["value"], proc))
            lk = (proc,) + tp
            if lk in last and off <= last[lk]:
                anomalies.add("nonmonotonic-read", {"process": proc, "topic": tp[0],
                                                    "partition": tp[1], "previous": last[lk],
                                                    "next": off, "time": e.get("time")})
            last[lk] = off
    stats["records_read"] = records
    stats["offsets_read"] = len(values)


def check_commits(events, anomalies, stats):
    """Acknowledged commits (f=commit, ok) and observed committed offsets (f=committed, ok)
    per (group, topic, partition): an observation invoked after a commit of X was acknowledged
    must be >= X, and acknowledged commits of one group never go backwards in time."""
    acked = {}  # (group, topic, partition) -> (offset, time) of the highest acknowledged commit
    invoked_at = {}  # (process, f) -> time of its pending invoke
    n = 0
    for e in events:
        f = e.get("f")
        if f not in ("commit", "committed"):
            continue
        if e["type"] == "invoke":
            invoked_at[(e.get("process"), f)] = e.get("time")
            continue
        if e["type"] != "ok":
            continue
        start = invoked_at.pop((e.get("process"), f), e.get("time"))
        for o in e.get("offsets", ()):
            off = o.get("offset")
            if off is None or off < 0:
                continue  # nothing committed yet
            k = (e["group"], o["topic"], int(o["partition"]))
            best = acked.get(k)
            if f == "commit":
                n += 1
                if best is not None and off < best[0] and best[1] <= start:
                    anomalies.add("commit-regressed", {"group": k[0], "topic": k[1],
                                                       "partition": k[2], "earlier": best[0],
                                                       "committed": off,
                                                       "process": e.get("process"),
                                                       "time": e.get("time")})
                if best is None or off > best[0]:
                    acked[k] = (off, e.get("time"))
            elif best is not None and best[1] is not None and start is not None \
                    and best[1] <= start and off < best[0]:
                anomalies.add("commit-regressed", {"group": k[0], "topic": k[1],
                                                   "partition": k[2], "acknowledged": best[0],
                                                   "observed": off, "process": e.get("process"),
                                                   "time": e.get("time")})
    stats["commits"] = n


def check_recovery(events, anomalies, stats, recovery_budget_s):
    """Recovery time: from the last nemesis stop (heal) to the acknowledgement of the first
    produce invoked at or after it."""
    nemesis = [e for e in events if e.get("process") == "nemesis"]
    stats["nemesis_ops"] = sum(1 for e in nemesis if e.get("f") == "start")
    heals = [e["time"] for e in nemesis if e.get("f") == "stop"]
    if not heals:
        stats["recovery_s"] = None
        return
    heal = max(heals)
    ops = _produces(events)
    first = None
    for op in ops.values():
        res = op["result"]
        if res is None or res["type"] != "ok" or op["invoke"]["time"] < heal:
            continue
        if first is None or res["time"] < first:
            first = res["time"]
    stats["last_heal_s"] = heal
    stats["recovery_budget_s"] = recovery_budget_s
    if first is None:
        stats["recovery_s"] = None
        anomalies.add("no-recovery", {"last_heal": heal})
        return
    stats["recovery_s"] = round(first - heal, 3)
    if recovery_budget_s is not None and first - heal > recovery_budget_s:
        anomalies.add("slow-recovery", {"last_heal": heal, "first_ok": first,
                                        "recovery_s": round(first - heal, 3),
                                        "budget_s": recovery_budget_s})


def check(events, recovery_budget_s=None):
    """The verdict over a whole history (events in the order they were written)."""
    anomalies = _Anomalies()
    stats = {"events": len(events)}
    times = [e["time"] for e in events if "time" in e]
    if times:
        stats["duration_s"] = round(max(times) - min(times), 3)
    check_writes(events, anomalies, stats)
    check_reads(events, anomalies, stats)
    check_commits(events, anomalies, stats)
    check_recovery(events, anomalies, stats, recovery_budget_s)
    return {"valid": not anomalies.counts,
            "anomalies": dict(anomalies.examples),
            "anomaly_counts": dict(anomalies.counts),
            "stats": stats}


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Check a history.jsonl; prints the verdict JSON, "
                                 "exits 1 when it is invalid")
    ap.add_argument("history")
    ap.add_argument("--recovery-budget", type=float, default=None,
                    help="seconds allowed from the last heal to the first acknowledged produce")
    a = ap.parse_args(argv)
    verdict = check(load(a.history), a.recovery_budget)
    print(json.dumps(verdict, indent=2, sort_keys=True))
    return 0 if verdict["valid"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
