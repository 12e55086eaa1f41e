#!/usr/bin/python3
"""A fault-injection run against an Ordo cluster (README.md in this folder).

    tests/jepsen/run.py --seed 7 --time 60 --nemesis kill,partition --nodes 3 --out /tmp/j7

Starts a cluster (tests/integration/cluster_harness.py), creates a topic, and while a seeded
schedule of faults runs (kill, stop, partition, oneway, loss, delay) drives three kinds of
clients, writing every operation to DIR/history.jsonl:
- a confluent-kafka producer with acks=all and enable.idempotence (a new one, as a new
  process, if librdkafka reports a fatal error),
- one assign() reader per partition, reading from the beginning,
- a group consumer that commits what it read after each poll and reads its committed
  offsets back every 2 s.
After the last fault is healed it keeps producing until a write invoked after the heal is
acknowledged (or the recovery budget passes), then stops the producer, reads every partition
to its end and checks the history (checker.py). Files: schedule.json (the seed, the options and
the fault schedule), history.jsonl, verdict.json, cluster/ (each node's data dir and log).
Exit code: 0 valid, 1 invalid (the seed and a replay command are printed), 2 the run could not
be set up. The fault schedule is a function of the seed and the options; client timing is
not, so a replay repeats the faults, not the exact interleaving.

Consumer groups are not in cluster mode yet: --no-group leaves the group consumer out.
"""

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import checker  # noqa: E402
from cluster_harness import Cluster  # noqa: E402

NEMESES = ("kill", "stop", "partition", "oneway", "loss", "delay")
TOPIC = "jepsen"
GROUP = "jepsen-group"


# ---------------------------------------------------------------------------- history
class History:
    def __init__(self, path):
        self.f = open(path, "w")
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.events = []

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def add(self, **e):
        with self.lock:
            e["time"] = self.now()
            self.events.append(e)
            self.f.write(json.dumps(e, sort_keys=True) + "\n")
            self.f.flush()
        return e

    def close(self):
        self.f.close()


# ---------------------------------------------------------------------------- schedule
def make_schedule(rng, kinds, nodes, duration, interval, warmup=3.0):
    """Faults one after another from `warmup` to `duration`: each lasts 1..interval seconds,
    then a gap of 0.5..interval/2 seconds with no fault."""
    ops = []
    t = warmup
    ids = list(range(1, nodes + 1))
    while True:
        length = rng.uniform(1.0, interval)
        if t + length > duration:
            break
        kind = rng.choice(kinds)
        op = {"at": round(t, 3), "heal_at": round(t + length, 3), "kind": kind}
        if kind in ("kill", "stop"):
            op["nodes"] = [rng.choice(ids)]
        elif kind == "partition":
            shuffled = rng.sample(ids, len(ids))
            k = rng.randint(1, (nodes - 1) // 2)
            op["groups"] = [sorted(shuffled[:k]), sorted(shuffled[k:])]
        elif kind == "oneway":
            src, dst = rng.sample(ids, 2)
            op["from"], op["to"] = src, dst
        elif kind == "loss":
            op["nodes"] = [rng.choice(ids)]
            op["pct"] = rng.choice([10, 30, 50])
        elif kind == "delay":
            op["nodes"] = [rng.choice(ids)]
            op["seconds"] = rng.choice([0.05, 0.2, 0.5])
        ops.append(op)
        t += length + rng.uniform(0.5, max(0.5, interval / 2))
    return ops


def apply_fault(c, op):
    k = op["kind"]
    if k == "kill":
        c.kill(op["nodes"][0])
    elif k == "stop":
        c.sigstop(op["nodes"][0])
    elif k == "partition":
        c.partition(*op["groups"])
    elif k == "oneway":
        c.drop(op["from"], op["to"])
    elif k == "loss":
        c.loss(op["nodes"][0], op["pct"])
    elif k == "delay":
        c.delay(op["nodes"][0], op["seconds"])


def heal_all(c):
    """Network healed, stopped nodes continued, dead nodes started again."""
    c.heal()
    for i, nd in c.nodes.items():
        if nd.stopped:
            c.sigcont(i)
    for i, nd in c.nodes.items():
        if not nd.alive():
            c.start(i, wait=False)
    for i in c.nodes:
        c.wait_serving(i)


def nemesis(c, hist, schedule, stop):
    for op in schedule:
        for key, what in (("at", "start"), ("heal_at", "stop")):
            delay = op[key] - hist.now()
            if delay > 0 and stop.wait(delay):
                return
            try:
                if what == "start":
                    apply_fault(c, op)
                else:
                    heal_all(c)
                hist.add(process="nemesis", type="info", f=what, nemesis=op["kind"],
                         op={k: v for k, v in op.items() if k not in ("at", "heal_at")})
            except Exception as e:  # noqa: BLE001 - recorded; the run goes on
                hist.add(process="nemesis", type="info", f=what + "-failed", nemesis=op["kind"],
                         error=repr(e))


# ---------------------------------------------------------------------------- clients
def producer(bootstrap, hist, partitions, rate, stop):
    from confluent_kafka import Producer
    n = 0
    gen = 0
    while not stop.is_set():
        name = f"p{gen}"
        fatal = threading.Event()

        def on_error(err, name=name, fatal=fatal):
            if err.fatal():
                fatal.set()
            hist.add(process=name, type="info", f="client-error", error=str(err),
                     fatal=err.fatal())

        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 5, "message.timeout.ms": 60000, "request.timeout.ms": 5000,
                      "retry.backoff.ms": 100, "error_cb": on_error})

        def on_delivery(err, msg, name=name):
            v = msg.value().decode()
            if err is None:
                hist.add(process=name, type="ok", f="produce", topic=msg.topic(),
                         partition=msg.partition(), offset=msg.offset(), value=v)
            else:  # may or may not be stored
                hist.add(process=name, type="info", f="produce", topic=msg.topic(),
                         partition=msg.partition(), value=v, error=str(err))

        while not stop.is_set() and not fatal.is_set():
            v = f"{name}-{n}"
            part = n % partitions
            hist.add(process=name, type="invoke", f="produce", topic=TOPIC, partition=part,
                     key=f"k{n}", value=v, idempotent=True)
            try:
                p.produce(TOPIC, key=f"k{n}", value=v, partition=part, on_delivery=on_delivery)
            except BufferError as e:  # not queued: definitely not written
                hist.add(process=name, type="fail", f="produce", topic=TOPIC, partition=part,
                         value=v, error=str(e))
            except Exception as e:  # noqa: BLE001 - e.g. the producer is in a fatal state
                hist.add(process=name, type="fail", f="produce", topic=TOPIC, partition=part,
                         value=v, error=repr(e))
            n += 1
            p.poll(0)
            time.sleep(1.0 / rate)
        p.flush(60)
        gen += 1


def record(msg):
    return {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
            "value": msg.value().decode() if msg.value() is not None else None}


def polled(hist, name, msgs, **extra):
    records = []
    for m in msgs:
        if m.error():
            hist.add(process=name, type="info", f="client-error", error=str(m.error()))
        else:
            records.append(record(m))
    if records:
        hist.add(process=name, type="ok", f="poll", records=records, **extra)
    return records


def reader(bootstrap, hist, part, targets, done, reached):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    name = f"r{part}"
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"jepsen-reader-{part}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(TOPIC, part, OFFSET_BEGINNING)])
    hist.add(process=name, type="info", f="assign",
             partitions=[{"topic": TOPIC, "partition": part, "offset": 0}])
    next_offset = 0
    while not done.is_set():
        for r in polled(hist, name, c.consume(200, 0.5)):
            next_offset = r["offset"] + 1
        reached[part] = next_offset
        t = targets.get(part)
        if t is not None and next_offset >= t:
            break
    c.close()


def group_consumer(bootstrap, hist, done, reached):
    from confluent_kafka import Consumer, TopicPartition
    name = "g0"

    def on_assign(consumer, parts):
        hist.add(process=name, type="info", f="assign", group=GROUP,
                 partitions=[{"topic": p.topic, "partition": p.partition} for p in parts])

    def on_revoke(consumer, parts):
        hist.add(process=name, type="info", f="revoke", group=GROUP,
                 partitions=[{"topic": p.topic, "partition": p.partition} for p in parts])

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 10000})
    c.subscribe([TOPIC], on_assign=on_assign, on_revoke=on_revoke)
    last_check = time.monotonic()
    while not done.is_set():
        records = polled(hist, name, c.consume(200, 0.5), group=GROUP)
        if records:
            ends = {}
            for r in records:
                ends[r["partition"]] = max(ends.get(r["partition"], -1), r["offset"] + 1)
            for p, o in ends.items():
                reached[p] = max(reached.get(p, 0), o)
            offs = [{"topic": TOPIC, "partition": p, "offset": o} for p, o in sorted(ends.items())]
            hist.add(process=name, type="invoke", f="commit", group=GROUP, offsets=offs)
            try:
                c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in ends.items()],
                         asynchronous=False)
                hist.add(process=name, type="ok", f="commit", group=GROUP, offsets=offs)
            except Exception as e:  # noqa: BLE001 - KafkaException: not acknowledged
                hist.add(process=name, type="info", f="commit", group=GROUP, offsets=offs,
                         error=repr(e))
        if time.monotonic() - last_check > 2:
            last_check = time.monotonic()
            parts = c.assignment()
            if parts:
                hist.add(process=name, type="invoke", f="committed", group=GROUP)
                try:
                    got = c.committed(parts, timeout=5)
                    hist.add(process=name, type="ok", f="committed", group=GROUP,
                             offsets=[{"topic": p.topic, "partition": p.partition,
                                       "offset": p.offset} for p in got])
                except Exception as e:  # noqa: BLE001
                    hist.add(process=name, type="info", f="committed", group=GROUP,
                             error=repr(e))
    c.close()


def end_offsets(bootstrap, partitions, timeout):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "jepsen-ends"})
    deadline = time.monotonic() + timeout
    ends = {}
    while len(ends) < partitions and time.monotonic() < deadline:
        for p in range(partitions):
            if p not in ends:
                try:
                    ends[p] = c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=5)[1]
                except Exception:  # noqa: BLE001 - retried until the deadline
                    pass
    c.close()
    return ends


# ---------------------------------------------------------------------------- single node
class SingleNode:
    """The part of Cluster's interface run.py uses, over one `ordo serve` without cluster
    mode (ordo_harness.Broker, the Kafka port kept across restarts, durable flushes): a smoke
    test of the clients, the history and the checker before cluster mode exists. Faults: kill
    and stop only."""

    class _Node:
        def __init__(self, broker):
            self.broker = broker
            self.stopped = False

        def alive(self):
            return self.broker.alive()

    def __init__(self, root, bin=None):
        import ordo_harness
        if bin:
            ordo_harness.ORDO_BIN = bin
        port = _free_port()
        self.root = root
        os.makedirs(root, exist_ok=True)
        self.broker = ordo_harness.Broker(["--flush-mode", "durable"],
                                          data_dir=os.path.join(root, "n1"), port=port)
        self.nodes = {1: self._Node(self.broker)}
        self.mode = "single"
        self.fallback_reason = None
        self.bootstrap_servers = f"127.0.0.1:{port}"

    def start_all(self):
        self.broker.start()

    def start(self, i, wait=True):
        self.broker.start()

    def wait_serving(self, i):
        pass  # Broker.start() returns once it listens

    def kill(self, i):
        self.broker.kill()

    def sigstop(self, i):
        self.broker.proc.send_signal(signal.SIGSTOP)
        self.nodes[1].stopped = True

    def sigcont(self, i):
        self.broker.proc.send_signal(signal.SIGCONT)
        self.nodes[1].stopped = False

    def heal(self):
        pass

    def controller(self):
        return 1

    def leader_of(self, topic, partition, via="metadata"):
        from confluent_kafka.admin import AdminClient
        md = AdminClient({"bootstrap.servers": self.bootstrap_servers}).list_topics(topic, 5)
        t = md.topics.get(topic)
        ok = t is not None and t.error is None and partition in t.partitions
        return t.partitions[partition].leader if ok else None

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.1)
        raise TimeoutError(what)

    def close(self, failed=False):
        if self.nodes[1].stopped:
            self.sigcont(1)
        if self.broker.proc is not None:
            self.broker.stop()
        if failed and self.broker.log_path:
            print(self.broker.log()[-4000:], file=sys.stderr)
        # the broker's logs (one per start) next to its data, then its temp dir goes
        for name in sorted(os.listdir(self.broker.root)):
            if name.endswith(".log"):
                shutil.copy(os.path.join(self.broker.root, name), self.root)
        shutil.rmtree(self.broker.root, ignore_errors=True)


def _free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------- main
def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--seed-env", default=None, metavar="VAR",
                    help="when the environment variable VAR is set, its value is the seed "
                         "(overrides --seed; ctest's integration_jepsen_quick: ORDO_JEPSEN_SEED)")
    ap.add_argument("--time", type=float, default=60, help="seconds of faults")
    ap.add_argument("--nemesis", default="kill,partition",
                    help="comma list of " + ",".join(NEMESES))
    ap.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    ap.add_argument("--out", required=True, help="directory for the run's files (created)")
    ap.add_argument("--mode", default="auto", choices=("auto", "loopback", "netns"))
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--interval", type=float, default=6.0, help="longest fault, seconds")
    ap.add_argument("--rate", type=float, default=200.0, help="produce calls per second")
    ap.add_argument("--recovery-budget", type=float, default=30.0,
                    help="seconds from the last heal to the first acknowledged new write "
                         "(<= 0: measured, not judged)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a broker setting for every node (repeatable)")
    ap.add_argument("--bin", default=None, help="the ordo binary (default $ORDO_BIN or build/)")
    ap.add_argument("--no-group", action="store_true",
                    help="no group consumer (consumer groups are not in cluster mode yet: "
                         "they answer COORDINATOR_NOT_AVAILABLE)")
    ap.add_argument("--single", action="store_true",
                    help="smoke test: one broker without cluster mode (--nodes ignored; "
                         "nemesis kill and stop only)")
    a = ap.parse_args(argv)
    a.kinds = [k for k in a.nemesis.split(",") if k]
    bad = [k for k in a.kinds if k not in NEMESES]
    if bad or not a.kinds:
        ap.error(f"unknown nemesis {bad}; choose from {','.join(NEMESES)}")
    if a.seed_env and os.environ.get(a.seed_env):
        a.seed = int(os.environ[a.seed_env])
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    return a


def replay_command(a, mode):
    args = [os.path.relpath(os.path.abspath(__file__)), "--seed", str(a.seed), "--time",
            str(a.time), "--nemesis", ",".join(a.kinds), "--nodes", str(a.nodes), "--mode", mode,
            "--partitions", str(a.partitions), "--interval", str(a.interval), "--rate",
            str(a.rate), "--recovery-budget", str(a.recovery_budget)]
    if a.single:
        args[args.index("--nodes"):args.index("--partitions")] = ["--single"]
    if a.no_group:
        args.append("--no-group")
    for s in a.set:
        args += ["--set", s]
    return " ".join(shlex.quote(x) for x in args + ["--out", a.out.rstrip("/") + "-replay"])


def main(argv=None):
    a = parse(argv)
    if os.path.isdir(a.out) and os.listdir(a.out):
        if not os.path.exists(os.path.join(a.out, "schedule.json")):
            print(f"jepsen: {a.out} is not empty and not a previous run's", file=sys.stderr)
            return 2
        shutil.rmtree(a.out)  # a previous run's files
    os.makedirs(a.out)
    nodes = "1 node (--single)" if a.single else f"{a.nodes} nodes"
    print(f"jepsen: seed {a.seed}, {nodes}, nemesis {','.join(a.kinds)}, "
          f"{a.time:g} s, out {a.out}", flush=True)
    settings = dict(s.split("=", 1) for s in a.set)
    root = os.path.join(os.path.abspath(a.out), "cluster")
    kinds = list(a.kinds)
    notes = []
    if a.single:
        c = SingleNode(root, a.bin)
        a.nodes = 1
        kinds = [k for k in kinds if k in ("kill", "stop")]
        notes.append("single node: only kill and stop faults")
    else:
        c = Cluster(a.nodes, mode=a.mode, extra_settings=settings, root=root, keep_dir=True,
                    seed=a.seed, bin=a.bin)
    if c.mode == "netns" and "delay" in kinds:
        kinds.remove("delay")
        notes.append("delay dropped: netns mode has no delay (no netem); use --mode loopback")
    if a.no_group:
        notes.append("no group consumer (--no-group)")
    if c.fallback_reason:
        notes.append(f"loopback mode: {c.fallback_reason}")
    rng = random.Random(a.seed)
    schedule = make_schedule(rng, kinds, a.nodes, a.time, a.interval) if kinds else []
    with open(os.path.join(a.out, "schedule.json"), "w") as f:
        json.dump({"seed": a.seed, "mode": c.mode, "options": {k: v for k, v in vars(a).items()},
                   "notes": notes, "faults": schedule}, f, indent=1, sort_keys=True)
    for n in notes:
        print(f"jepsen: {n}", flush=True)

    hist = History(os.path.join(a.out, "history.jsonl"))
    stop_nemesis, stop_produce, done = threading.Event(), threading.Event(), threading.Event()
    targets = {}
    reached = {}
    group_reached = {}
    threads = []
    ends = {}
    try:
        try:
            from confluent_kafka.admin import AdminClient, NewTopic
            c.start_all()
            c.wait(lambda: c.controller() is not None, 60, "a controller leader")
            admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
            rf = min(3, a.nodes)  # 1 with --single
            admin.create_topics([NewTopic(TOPIC, a.partitions, rf)])[TOPIC].result(60)
            for p in range(a.partitions):
                c.wait(lambda p=p: c.leader_of(TOPIC, p, via="metadata") is not None, 60,
                       f"a leader of {TOPIC}/{p}")
        except Exception as e:  # noqa: BLE001
            print(f"jepsen: the cluster could not be set up: {e!r}", file=sys.stderr)
            c.close(failed=True)
            return 2
        hist.t0 = time.monotonic()
        boot = c.bootstrap_servers
        threads = [threading.Thread(target=producer, daemon=True,
                                    args=(boot, hist, a.partitions, a.rate, stop_produce)),
                   threading.Thread(target=group_consumer, daemon=True,
                                    args=(boot, hist, done, group_reached))]
        if a.no_group:
            threads[1] = threading.Thread(target=lambda: None, daemon=True)
        threads += [threading.Thread(target=reader, daemon=True,
                                     args=(boot, hist, p, targets, done, reached))
                    for p in range(a.partitions)]
        for t in threads:
            t.start()
        nem = threading.Thread(target=nemesis, args=(c, hist, schedule, stop_nemesis), daemon=True)
        nem.start()
        nem.join(a.time + 120)
        while hist.now() < a.time:  # the schedule may end before --time
            time.sleep(0.1)
        stop_nemesis.set()
        heal_all(c)
        heal = hist.add(process="nemesis", type="info", f="stop", nemesis="final", op={})["time"]
        # keep producing until a write invoked after the heal is acknowledged (or the budget)
        budget = a.recovery_budget if a.recovery_budget > 0 else None
        deadline = time.monotonic() + (budget + 5 if budget else 60)
        while time.monotonic() < deadline:
            with hist.lock:
                invoked = {e["value"]: e["time"] for e in hist.events
                           if e.get("f") == "produce" and e["type"] == "invoke"}
                ok = any(e.get("f") == "produce" and e["type"] == "ok"
                         and invoked.get(e["value"], -1) >= heal for e in hist.events)
            if ok:
                break
            time.sleep(0.2)
        time.sleep(2)
        stop_produce.set()
        threads[0].join(90)
        ends = end_offsets(boot, a.partitions, 60)
        targets.update(ends)
        deadline = time.monotonic() + 90  # one bound for all readers (a stuck partition)
        for t in threads[2:]:
            t.join(max(0.0, deadline - time.monotonic()))
        deadline = time.monotonic() + 60  # the group consumer reads to the ends too
        while not a.no_group and time.monotonic() < deadline and \
                any(group_reached.get(p, 0) < e for p, e in ends.items()):
            time.sleep(0.2)
        done.set()
        threads[1].join(30)
    finally:
        stop_nemesis.set()
        stop_produce.set()
        done.set()
        hist.close()
        c.close()
    events = checker.load(os.path.join(a.out, "history.jsonl"))
    verdict = checker.check(events, a.recovery_budget if a.recovery_budget > 0 else None)
    verdict["stats"]["end_offsets"] = {str(k): v for k, v in ends.items()}
    # "lost" means something only if the readers read to the end
    short = [{"partition": p, "end_offset": ends.get(p), "read_to": reached.get(p, 0)}
             for p in range(a.partitions) if ends.get(p) is None or reached.get(p, 0) < ends[p]]
    if short:
        verdict["valid"] = False
        verdict["anomalies"]["incomplete-read"] = short
        verdict["anomaly_counts"]["incomplete-read"] = len(short)
    # liveness: the group consumer reads to the ends within 60 s of the producer's stop
    behind = [{"partition": p, "end_offset": e, "group_read_to": group_reached.get(p, 0)}
              for p, e in sorted(ends.items())
              if not a.no_group and group_reached.get(p, 0) < e]
    if behind:
        verdict["valid"] = False
        verdict["anomalies"]["group-incomplete"] = behind
        verdict["anomaly_counts"]["group-incomplete"] = len(behind)
    with open(os.path.join(a.out, "verdict.json"), "w") as f:
        json.dump(verdict, f, indent=1, sort_keys=True)
    s = verdict["stats"]
    print(f"jepsen: {'VALID' if verdict['valid'] else 'INVALID'}: produce {s.get('produce')}, "
          f"records read {s.get('records_read')}, commits {s.get('commits')}, "
          f"faults {s.get('nemesis_ops')}, recovery {s.get('recovery_s')} s", flush=True)
    if not verdict["valid"]:
        print(f"jepsen: anomalies {verdict['anomaly_counts']} (examples in "
              f"{os.path.join(a.out, 'verdict.json')})")
        print(f"jepsen: seed {a.seed}; replay: {replay_command(a, c.mode)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
