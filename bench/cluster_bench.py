"""The cluster benchmark (bench/run-cluster-bench runs it; see that script for the options).

Measures, on this machine and in one run:
  1. produce throughput (100-byte values, acks=-1, 3 partitions) and acks=-1 latency at a fixed
     rate (1 partition) for one `ordo serve` (no cluster mode, flush mode durable), a 3-broker
     cluster with a replication-factor-1 topic and the same cluster with an RF-3 topic, plus
     Redis XADD with `appendfsync always` (latency only); the systems interleaved round by round;
  2. failover: SIGKILL of the leader of partition 0 of an RF-3 topic, timed from the kill to the
     first acknowledgement of a message sent after the kill to that partition (confluent-kafka,
     acks=all, idempotent, sending continuously); the node is restarted between kills;
  3. catch-up: a follower of an RF-3 topic stopped while the topic grows, then started; the
     time until its log end offset equals the leader's, beside the disk's sequential write rate;
  4. metadata: creating one topic of 1,000 partitions with RF 3 until Metadata names a leader
     for every partition.
Every process it starts is stopped (SIGTERM, then SIGKILL) when it ends, however it ends, and
every data dir it made is deleted.
"""

import argparse
import atexit
import json
import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from cluster_harness import Cluster

_procs = []  # every Popen this script started (clusters close their own nodes)
_clusters = []


def _cleanup():
    for c in list(_clusters):
        try:
            c.close()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"cluster_bench: cluster cleanup failed: {e}", file=sys.stderr)
    for p in _procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


def log(msg):
    print(msg, flush=True)


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def proc_cpu(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def http_json(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait(cond, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polled conditions may fail until ready
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s" + (f" ({last!r})" if last else ""))
        time.sleep(interval)


def pct(values, q):
    """The q-th percentile (0..100), nearest rank."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


class Bench:
    def __init__(self, a):
        self.a = a
        self.build = a.build_dir
        self.ordo = os.path.join(self.build, "src", "cli", "ordo")
        self.bb = os.path.join(self.build, "bench", "broker_bench")
        self.results = a.results
        self.data = a.data_dir
        self.failures = []
        self.runs = {}  # name -> JSON doc

    # ---------------------------------------------------------------- bookkeeping
    def save(self, name, doc):
        doc = dict(doc, load1=load1())
        self.runs[name] = doc
        with open(os.path.join(self.results, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
        return doc

    def fail(self, name, why):
        self.failures.append({"run": name, "error": str(why)})
        log(f"  {name:34s} FAILED: {str(why).splitlines()[0] if str(why) else why!r}")
        with open(os.path.join(self.results, name + ".err"), "a") as f:
            f.write(str(why) + "\n")

    def broker_bench(self, name, args, pids, timeout):
        """Runs broker_bench; its last stdout line is the JSON kept under name."""
        cpu0 = sum(proc_cpu(p) for p in pids)
        try:
            p = subprocess.run([self.bb] + args, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(name, f"broker_bench timed out after {timeout} s")
            return None
        cpu1 = sum(proc_cpu(p) for p in pids)
        if p.returncode != 0 or not p.stdout.strip():
            self.fail(name, f"status {p.returncode}: {p.stderr.strip()[-600:]}")
            return None
        doc = json.loads(p.stdout.strip().splitlines()[-1])
        doc["server_cpu_s"] = cpu1 - cpu0
        doc = self.save(name, doc)
        if "msgs_per_s" in doc:
            log(f"  {name:34s} {doc['msgs_per_s'] / 1e3:8.1f}k msgs/s {doc['mb_per_s']:7.1f} MB/s"
                f"  server CPU {doc['server_cpu_s']:.1f} s ({doc['seconds']:.1f} s)")
        else:
            log(f"  {name:34s} p50 {doc['p50_us']:7.0f} us  p99 {doc['p99_us']:7.0f} us"
                f"  max {doc['max_us']:7.0f} us  late sends {doc['late_sends']}")
        return doc

    def produce_args(self, bootstrap, topic, partitions):
        return ["produce", "--bootstrap", bootstrap, "--topic", topic, "--partitions",
                str(partitions), "--acks", "-1", "--messages", str(self.a.messages)]

    def latency_args(self, bootstrap, topic):
        return ["latency", "--bootstrap", bootstrap, "--topic", topic, "--acks", "-1",
                "--rate", str(self.a.rate), "--duration", str(self.a.duration), "--warmup", "1"]

    # ---------------------------------------------------------------- servers
    def start_single(self, r):
        d = os.path.join(self.data, f"single-r{r}")
        os.makedirs(d)
        logp = os.path.join(self.results, f"single-r{r}.log")
        with open(logp, "wb") as lf:
            p = subprocess.Popen([self.ordo, "serve", "--data-dir", d, "--listen", "127.0.0.1:0",
                                  "--admin-listen", "127.0.0.1:0", "--flush-mode", "durable"],
                                 stdout=lf, stderr=lf, start_new_session=True)
        _procs.append(p)

        def port():
            if p.poll() is not None:
                raise RuntimeError(f"ordo exited with {p.returncode}")
            with open(logp, errors="replace") as f:
                m = re.search(r"listening on 127\.0\.0\.1:(\d+)", f.read())
            return m and int(m.group(1))
        return p, d, wait(port, 60, "ordo listening")

    def stop_proc(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def start_cluster(self, tag, settings=None):
        root = os.path.join(self.data, tag)
        c = Cluster(n=3, mode="loopback", root=root, bin=self.ordo, extra_settings=settings)
        # No proxies: the peers dial each other directly (the harness's Python proxies exist
        # for fault injection and would be the bottleneck of every replicated byte).
        c.mesh.close()
        c.mesh = None
        _clusters.append(c)
        try:
            c.start_all()
            self.wait_whole(c)
        except BaseException:
            self.close_cluster(c, tag)
            raise
        return c

    def close_cluster(self, c, tag):
        for i, nd in c.nodes.items():
            if os.path.exists(nd.log_path):
                shutil.copy(nd.log_path, os.path.join(self.results, f"{tag}-n{i}.log"))
        c.close()
        _clusters.remove(c)
        shutil.rmtree(c.root, ignore_errors=True)

    def cluster_pids(self, c):
        return [nd.proc.pid for nd in c.nodes.values() if nd.proc is not None]

    def wait_whole(self, c, topic=None, timeout=120):
        """All 3 brokers registered and unfenced (and, given a topic, every partition of it with
        a leader and 3 replicas in sync)."""
        def whole():
            s = c.any_status()
            if not s or s["controller"]["leader"] in (None, -1, 0) or len(c.alive()) != 3:
                return False
            if sum(1 for b in s["brokers"] if not b["fenced"]) != 3:
                return False
            if topic is None:
                return True
            parts = [p for p in s["partitions"] if p["topic"] == topic]
            return parts and all(p["leader"] not in (None, -1) and not p.get("offline") and
                                 len(p.get("isr") or ()) == 3 for p in parts)
        wait(whole, timeout, "the cluster whole again" + (f" (topic {topic})" if topic else ""))

    def create_topic(self, c, name, partitions, rf, timeout=60):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
        admin.create_topics([NewTopic(name, partitions, replication_factor=rf)])[name].result(
            timeout=timeout)
        self.wait_leaders(admin, name, partitions, timeout)
        return admin

    @staticmethod
    def leader_views(c, topic):
        """{node: {partition: leader}} as each node's GET /v1/cluster reports them."""
        out = {}
        for i in c.alive():
            try:
                out[i] = {p["partition"]: p["leader"] for p in c.status(i)["partitions"]
                          if p["topic"] == topic}
            except (OSError, ValueError) as e:
                out[i] = repr(e)
        return out

    @staticmethod
    def wait_leaders(admin, name, partitions, timeout):
        def ready():
            t = admin.list_topics(name, timeout=10).topics.get(name)
            return (t is not None and t.error is None and len(t.partitions) == partitions and
                    all(p.leader >= 0 for p in t.partitions.values()))
        wait(ready, timeout, f"a leader for each of {partitions} partitions of {name}", 0.02)

    # ---------------------------------------------------------------- 1. rounds
    def round(self, r):
        a = self.a
        log(f"round {r} (load {load1():.1f})")
        # one broker, no cluster mode
        p, d, port = self.start_single(r)
        try:
            bs = f"127.0.0.1:{port}"
            self.broker_bench(f"single-produce-r{r}", self.produce_args(bs, "p3", 3), [p.pid],
                              a.timeout)
            self.broker_bench(f"single-latency-r{r}", self.latency_args(bs, "lat"), [p.pid],
                              a.timeout)
        except Exception as e:  # noqa: BLE001 - a failed run is reported, the bench goes on
            self.fail(f"single-r{r}", e)
        finally:
            self.stop_proc(p)
            shutil.rmtree(d, ignore_errors=True)
        # three brokers: an RF-1 topic, then an RF-3 topic, on the same cluster
        tag = f"cluster-r{r}"
        c = None
        try:
            c = self.start_cluster(tag)
            for rf in (1, 3):
                try:
                    self.create_topic(c, f"p3-rf{rf}", 3, rf, a.leader_timeout)
                    self.create_topic(c, f"lat-rf{rf}", 1, rf, a.leader_timeout)
                except TimeoutError as e:
                    # Seen with RF 1 (issue 19): a broker that holds no replica of a partition
                    # reports no leader for it, so Metadata from it never shows every leader.
                    self.fail(f"rf{rf}-r{r}", f"{e}; leaders as each node reports them: "
                              f"{self.leader_views(c, f'p3-rf{rf}')}")
                    continue
                if rf == 3:
                    self.wait_whole(c, "p3-rf3")
                    self.wait_whole(c, "lat-rf3")
                pids = self.cluster_pids(c)
                self.broker_bench(f"rf{rf}-produce-r{r}",
                                  self.produce_args(c.bootstrap_servers, f"p3-rf{rf}", 3), pids,
                                  a.timeout)
                self.broker_bench(f"rf{rf}-latency-r{r}",
                                  self.latency_args(c.bootstrap_servers, f"lat-rf{rf}"), pids,
                                  a.timeout)
        except Exception as e:  # noqa: BLE001
            self.fail(tag, e)
        finally:
            if c is not None:
                self.close_cluster(c, tag)
        # Redis, appendfsync always (as run-broker-bench starts it)
        d = os.path.join(self.data, f"redis-r{r}")
        os.makedirs(d)
        rport = free_port()
        rp = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                               "--dir", d, "--appendonly", "yes", "--appendfsync", "always",
                               "--save", "", "--auto-aof-rewrite-percentage", "0",
                               "--daemonize", "no", "--logfile",
                               os.path.join(self.results, f"redis-r{r}.log")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
        _procs.append(rp)
        try:
            wait(lambda: socket.create_connection(("127.0.0.1", rport), 1).close() or True, 30,
                 "redis-server listening")
            self.broker_bench(f"redis-always-latency-r{r}",
                              ["redis-latency", "--port", str(rport), "--topic", "stream",
                               "--rate", str(a.rate), "--duration", str(a.duration),
                               "--warmup", "1"], [rp.pid], a.timeout)
        except Exception as e:  # noqa: BLE001
            self.fail(f"redis-r{r}", e)
        finally:
            self.stop_proc(rp)
            shutil.rmtree(d, ignore_errors=True)

    # ---------------------------------------------------------------- 2. failover
    def failover(self, c):
        from confluent_kafka import Producer
        topic = "failover"
        self.create_topic(c, topic, 3, 3)
        self.wait_whole(c, topic)
        client_log = logging.getLogger("failover-client")
        client_log.propagate = False
        client_log.addHandler(logging.FileHandler(os.path.join(self.results,
                                                               "failover-client.log")))
        prod = Producer({"bootstrap.servers": c.bootstrap_servers, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 0,
                         "message.timeout.ms": 120000}, logger=client_log)
        lock = threading.Lock()
        acks = []  # (send time, ack time) of partition-0 messages, in ack order
        errors = []
        sent = [0]
        stop = threading.Event()

        def sender():
            interval = 1.0 / self.a.failover_rate
            nxt = time.monotonic()
            while not stop.is_set():
                t = time.monotonic()
                if t >= nxt:
                    def cb(err, _msg, t=t):
                        now = time.monotonic()
                        with lock:
                            (errors.append((t, str(err))) if err is not None
                             else acks.append((t, now)))
                    try:
                        prod.produce(topic, b"x" * 100, partition=0, on_delivery=cb)
                        sent[0] += 1
                    except BufferError:
                        pass
                    nxt += interval
                    if nxt < t:
                        nxt = t + interval
                prod.poll(0.0005)
            prod.flush(30)

        th = threading.Thread(target=sender, daemon=True)
        th.start()
        times, kills = [], []
        try:
            wait(lambda: acks, 60, "a first acknowledgement")
            for k in range(1, self.a.kills + 1):
                leader = wait(lambda: c.leader_of(topic, 0), 60, "a leader of partition 0")
                t_kill = time.monotonic()
                c.kill(leader)

                def first_after():
                    with lock:
                        after = [ack for s, ack in acks if s > t_kill]
                    return min(after) if after else None
                try:
                    t_ack = wait(first_after, self.a.failover_timeout, "an acknowledgement after "
                                 "the kill", 0.005)
                    took = t_ack - t_kill
                except TimeoutError as e:
                    took = None
                    self.fail(f"failover-kill{k}", e)
                new_leader = c.leader_of(topic, 0)
                kills.append({"kill": k, "killed_node": leader, "seconds": took,
                              "new_leader": new_leader, "load1": load1()})
                if took is not None:
                    times.append(took)
                log(f"  kill {k:2d}: node {leader} -> {new_leader}: "
                    f"{'-' if took is None else f'{took * 1000:.0f} ms'}")
                c.start(leader)
                self.wait_whole(c, topic)
                # a message sent after the node is back must be acknowledged before the next kill
                t_back = time.monotonic()
                wait(lambda: any(s > t_back for s, _ in acks[-50:]), 60, "acks flowing again")
        finally:
            stop.set()
            th.join(60)
        doc = {"kills": kills, "seconds": times, "count": len(times),
               "p50_s": pct(times, 50), "p99_s": pct(times, 99),
               "max_s": max(times) if times else None, "messages_sent": sent[0],
               "messages_acked": len(acks), "delivery_errors": len(errors),
               "first_errors": [e for _, e in errors[:5]], "rate": self.a.failover_rate}
        self.save("failover", doc)
        log(f"  failover: p50 {fmt_s(doc['p50_s'])}  p99 {fmt_s(doc['p99_s'])}  max "
            f"{fmt_s(doc['max_s'])} over {len(times)} kills; delivery errors {len(errors)}")

    # ---------------------------------------------------------------- 3. catch-up
    def disk_rate(self):
        path = os.path.join(self.data, "dd.tmp")
        mb = 256
        t0 = time.monotonic()
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mb}",
                        "conv=fdatasync"], check=True, capture_output=True)
        secs = time.monotonic() - t0
        os.remove(path)
        doc = self.save("disk-dd", {"mb": mb, "seconds": secs, "mb_per_s": mb * 1.048576 / secs})
        log(f"  disk: dd {mb} MiB conv=fdatasync: {doc['mb_per_s']:.0f} MB/s")
        return doc

    def node_partition(self, c, i, topic, p):
        for row in http_json(c.node(i).admin_url + "/v1/partitions"):
            if row["topic"] == topic and row["partition"] == p:
                return row
        return None

    def catchup(self, c):
        topic = "catchup"
        self.create_topic(c, topic, 1, 3)
        self.wait_whole(c, topic)
        leader = wait(lambda: c.leader_of(topic, 0), 60, "a leader")
        follower = next(i for i in (1, 2, 3) if i != leader)
        before = wait(lambda: self.node_partition(c, follower, topic, 0), 30,
                      "the follower's /v1/partitions row")
        code = c.stop(follower)
        log(f"  follower node {follower} stopped (exit {code}); leader node {leader}")
        msgs = self.a.catchup_mb * 1000  # 1,000-byte values
        self.broker_bench("catchup-produce",
                          ["produce", "--bootstrap", c.bootstrap_servers, "--topic", topic,
                           "--partitions", "1", "--acks", "-1", "--value-size", "1000",
                           "--messages", str(msgs)], self.cluster_pids(c), self.a.timeout)
        leader = c.leader_of(topic, 0) or leader
        lead = wait(lambda: self.node_partition(c, leader, topic, 0), 30, "the leader's row")
        t0 = time.monotonic()
        c.start(follower, wait=False)
        c.wait_serving(follower)
        t_listen = time.monotonic() - t0

        def caught_up():
            row = self.node_partition(c, follower, topic, 0)
            return row if row and row["log_end_offset"] >= lead["log_end_offset"] else None
        row = wait(caught_up, self.a.timeout, "the follower's log end = the leader's", 0.02)
        secs = time.monotonic() - t0
        nbytes = lead["size_bytes"] - before["size_bytes"]
        doc = self.save("catchup", {"follower": follower, "leader": leader, "seconds": secs,
                                    "seconds_to_listen": t_listen, "bytes": nbytes,
                                    "mb_per_s": nbytes / 1e6 / secs,
                                    "leader_log_end": lead["log_end_offset"],
                                    "follower_log_end_before": before["log_end_offset"],
                                    "follower_row_after": row})
        log(f"  catch-up of {nbytes / 1e6:.0f} MB: {secs:.2f} s ({doc['mb_per_s']:.0f} MB/s; "
            f"listening after {t_listen:.2f} s)")

    # ---------------------------------------------------------------- 4. metadata
    def metadata(self, c):
        from confluent_kafka.admin import AdminClient, NewTopic
        n = self.a.meta_partitions
        admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
        t0 = time.monotonic()
        fut = admin.create_topics([NewTopic("meta", n, replication_factor=3)],
                                  operation_timeout=120, request_timeout=300)["meta"]
        fut.result(timeout=300)
        t_created = time.monotonic() - t0
        try:
            self.wait_leaders(admin, "meta", n, self.a.meta_timeout)
        except TimeoutError as e:
            md = admin.list_topics("meta", timeout=10).topics.get("meta")
            led = 0 if md is None else sum(1 for p in md.partitions.values() if p.leader >= 0)
            raise TimeoutError(f"{e}; {led} of {n} partitions with a leader in Metadata; "
                               f"controller leader: {c.controller()}") from None
        secs = time.monotonic() - t0
        self.save("metadata", {"partitions": n, "replication_factor": 3, "seconds": secs,
                               "seconds_create_topics_answer": t_created})
        log(f"  create {n} partitions RF 3: answer after {t_created:.2f} s, a leader for every "
            f"partition after {secs:.2f} s")

    def once(self):
        tag = "cluster-once"
        c = None
        log(f"failover, catch-up, metadata (load {load1():.1f})")
        steps = [("disk", lambda: self.disk_rate()), ("failover", lambda: self.failover(c)),
                 ("catchup", lambda: self.catchup(c)), ("metadata", lambda: self.metadata(c))]
        try:
            c = self.start_cluster(tag)
            for name, fn in steps:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001
                    self.fail(name, e)
                    if len(c.alive()) != 3:  # leave the cluster whole for the next step
                        for i in (1, 2, 3):
                            if not c.node(i).alive():
                                c.start(i)
        except Exception as e:  # noqa: BLE001
            self.fail(tag, e)
        finally:
            if c is not None:
                self.close_cluster(c, tag)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fmt_s(v):
    return "-" if v is None else f"{v * 1000:,.0f} ms"


# -------------------------------------------------------------------- summary
def summarize(results):
    with open(os.path.join(results, "run.json")) as f:
        meta = json.load(f)
    runs = {}
    for name in os.listdir(results):
        if name.endswith(".json") and name not in ("run.json", "summary.json"):
            with open(os.path.join(results, name)) as f:
                runs[name[:-5]] = json.load(f)
    rounds = meta["rounds"]

    def series(kind, field):
        return [runs[f"{kind}-r{r}"][field] for r in range(1, rounds + 1)
                if f"{kind}-r{r}" in runs and runs[f"{kind}-r{r}"].get(field) is not None]

    def med(v):
        return statistics.median(v) if v else None

    def spread(v, f):
        return "" if len(v) < 2 else f" ({f(min(v))}-{f(max(v))})"

    lines, rows, goals = [], [], []

    def goal(text, ok):
        verdict = "not run" if ok is None else ("MET" if ok else "MISSED")
        goals.append({"goal": text, "verdict": verdict})
        return verdict

    k = lambda v: "-" if v is None else f"{v / 1e3:,.1f}k"  # noqa: E731
    mb = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
    us = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731

    lines.append(f"produce, acks=-1, 100-byte values, 3 partitions, {meta['messages']:,} messages "
                 f"per run; latency at {meta['rate']:,} msgs/s, 1 partition, acks=-1, "
                 f"{meta['duration']} s; median of {rounds} round(s) (min-max)")
    hdr = ["system", "msgs/s", "MB/s", "server CPU/s", "p50 us", "p99 us", "p99.9 us"]
    body = []
    for key, label in [("single", "Ordo, one broker (no cluster mode)"),
                       ("rf1", "Ordo, 3 brokers, RF 1"), ("rf3", "Ordo, 3 brokers, RF 3"),
                       ("redis-always", "Redis XADD, appendfsync always")]:
        m, b = series(f"{key}-produce", "msgs_per_s"), series(f"{key}-produce", "mb_per_s")
        cpu = [d["server_cpu_s"] / d["seconds"] for d in
               (runs.get(f"{key}-produce-r{r}") for r in range(1, rounds + 1)) if d]
        p50, p99 = series(f"{key}-latency", "p50_us"), series(f"{key}-latency", "p99_us")
        p999 = series(f"{key}-latency", "p999_us")
        body.append([label, k(med(m)) + spread(m, k), mb(med(b)),
                     "-" if not cpu else f"{med(cpu) * 100:.0f}%",
                     us(med(p50)) + spread(p50, us), us(med(p99)) + spread(p99, us),
                     us(med(p999))])
        rows.append({"system": key, "msgs_per_s": m, "mb_per_s": b, "p50_us": p50, "p99_us": p99,
                     "p999_us": p999, "median_msgs_per_s": med(m), "median_p50_us": med(p50),
                     "median_p99_us": med(p99)})
    widths = [max(len(str(r[i])) for r in [hdr] + body) for i in range(len(hdr))]
    for j, r in enumerate([hdr] + body):
        lines.append("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                               for i, c in enumerate(r)))
        if j == 0:
            lines.append("-" * len(lines[-1]))

    lines.append("")
    # ratios, per round and of the medians
    rf1, rf3 = series("rf1-produce", "msgs_per_s"), series("rf3-produce", "msgs_per_s")
    per_round = [runs[f"rf3-produce-r{r}"]["msgs_per_s"] / runs[f"rf1-produce-r{r}"]["msgs_per_s"]
                 for r in range(1, rounds + 1)
                 if f"rf3-produce-r{r}" in runs and f"rf1-produce-r{r}" in runs]
    ratio = med(rf3) / med(rf1) if rf1 and rf3 else None
    v = goal("RF 3 / RF 1 acks=-1 throughput >= 0.5", None if ratio is None else ratio >= 0.5)
    lines.append(f"RF 3 / RF 1 throughput: {'-' if ratio is None else f'{ratio:.2f}'} "
                 f"(per round: {', '.join(f'{x:.2f}' for x in per_round) or '-'}); "
                 f"goal >= 0.5: {v}")
    o50, r50 = series("single-latency", "p50_us"), series("redis-always-latency", "p50_us")
    pr = [runs[f"single-latency-r{r}"]["p50_us"] / runs[f"redis-always-latency-r{r}"]["p50_us"]
          for r in range(1, rounds + 1)
          if f"single-latency-r{r}" in runs and f"redis-always-latency-r{r}" in runs]
    lat_ratio = med(o50) / med(r50) if o50 and r50 else None
    v = goal("one broker acks=-1 p50 <= Redis appendfsync always p50",
             None if lat_ratio is None else lat_ratio <= 1.0)
    lines.append(f"Ordo one broker acks=-1 p50 / Redis always p50: "
                 f"{'-' if lat_ratio is None else f'{lat_ratio:.2f}'} (per round: "
                 f"{', '.join(f'{x:.2f}' for x in pr) or '-'}); goal <= 1: {v}")
    o3 = series("rf3-latency", "p50_us")
    if o3 and r50:
        lines.append(f"Ordo RF 3 acks=-1 p50 / Redis always p50: {med(o3) / med(r50):.2f} "
                     "(no goal)")

    fo = runs.get("failover")
    lines.append("")
    if fo:
        v = goal("failover p99 < 3 s", None if fo["p99_s"] is None else fo["p99_s"] < 3)
        lines.append(f"failover (SIGKILL of partition 0's leader -> first ack of a message sent "
                     f"after the kill), {fo['count']} of {len(fo['kills'])} kills: p50 "
                     f"{fmt_s(fo['p50_s'])}, p99 {fmt_s(fo['p99_s'])}, max {fmt_s(fo['max_s'])}; "
                     f"goal p99 < 3 s: {v}")
        lines.append(f"  producer: {fo['messages_sent']:,} sent, {fo['messages_acked']:,} "
                     f"acknowledged, {fo['delivery_errors']} delivery errors")
    else:
        goal("failover p99 < 3 s", None)
        lines.append("failover: not run (see the errors)")
    cu, dd = runs.get("catchup"), runs.get("disk-dd")
    if cu:
        lines.append(f"catch-up of a restarted follower: {cu['bytes'] / 1e6:,.0f} MB in "
                     f"{cu['seconds']:.2f} s = {cu['mb_per_s']:,.0f} MB/s (listening after "
                     f"{cu['seconds_to_listen']:.2f} s); disk, dd 256 MiB conv=fdatasync: "
                     f"{'-' if not dd else format(dd['mb_per_s'], ',.0f')} MB/s"
                     + (f"; ratio {cu['mb_per_s'] / dd['mb_per_s']:.2f}" if dd else ""))
    else:
        lines.append("catch-up: not run (see the errors)")
    md = runs.get("metadata")
    if md:
        lines.append(f"metadata: CreateTopics of {md['partitions']:,} partitions RF 3 answered "
                     f"after {md['seconds_create_topics_answer']:.2f} s; a leader for every "
                     f"partition in Metadata after {md['seconds']:.2f} s")
    else:
        lines.append("metadata: not run (see the errors)")
    lines.append("")
    load_end = " ".join(meta.get("load_end") or ["-"])
    lines.append(f"load average {' '.join(meta['load_start'])} at the start, {load_end} at the "
                 f"end; {os.cpu_count()} CPUs; server CPU/s: CPU seconds of the server "
                 "process(es) per second of the run (100% = one core)")
    missed = [g["goal"] for g in goals if g["verdict"] == "MISSED"]
    lines.append("goals: " + ("; ".join(f"{g['goal']}: {g['verdict']}" for g in goals)))
    if meta.get("failures"):
        lines.append(f"FAILED runs ({len(meta['failures'])}):")
        lines += [f"  {f['run']}: {f['error'].splitlines()[0] if f['error'] else ''}"
                  for f in meta["failures"]]
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(results, "summary.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(results, "summary.json"), "w") as f:
        json.dump({**meta, "rows": rows, "goals": goals, "missed": missed}, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--summary-only", action="store_true")
    a = ap.parse_args()
    if a.summary_only:
        summarize(a.results)
        return 0
    a.messages = 200000 if a.quick else 2000000
    a.duration = 3 if a.quick else 10
    a.rate = 10000
    a.kills = 5 if a.quick else 20
    a.catchup_mb = 20 if a.quick else 200
    a.meta_partitions = 1000
    a.failover_rate = 500
    a.failover_timeout = 60
    a.timeout = 600
    a.leader_timeout = 30 if a.quick else 60  # after CreateTopics, until Metadata shows leaders
    a.meta_timeout = 180 if a.quick else 600
    meta = {"time": os.path.basename(a.results), "rounds": a.rounds, "quick": a.quick,
            "messages": a.messages, "duration": a.duration, "rate": a.rate, "kills": a.kills,
            "catchup_mb": a.catchup_mb, "load_start": open("/proc/loadavg").read().split()[:3]}
    b = Bench(a)
    t0 = time.monotonic()
    try:
        for r in range(1, a.rounds + 1):
            b.round(r)
        b.once()
    finally:
        meta.update(load_end=open("/proc/loadavg").read().split()[:3], failures=b.failures,
                    seconds=time.monotonic() - t0)
        with open(os.path.join(a.results, "run.json"), "w") as f:
            json.dump(meta, f, indent=1)
    log(f"measured in {time.monotonic() - t0:.0f} s\n")
    summarize(a.results)
    return 1 if b.failures else 0


if __name__ == "__main__":
    sys.exit(main())
