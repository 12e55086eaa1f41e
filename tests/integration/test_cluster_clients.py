"""Every client of the integration tests produces and consumes through a leader SIGKILL on a
three-broker cluster (cluster_harness.py, loopback mode: a kill needs no network faults).

For each client a topic of one partition with replication factor 3 is created; the client
produces to it (acks=all; with idempotence where the client has it) and, once the leader's high
watermark passed a third of the messages, a thread SIGKILLs the partition's leader. When the
client is done, it (or, for producers only, the same tool's consumer) reads the partition from
offset 0 with a partition-based consumer (assign() or a partition consumer: consumer groups are
not in cluster mode yet) while the killed broker is still down. Checked: every acknowledged
value is read, at its acknowledged offset when the client reports offsets; nothing is read that
was not sent; offsets only go up; an idempotent producer's values are read once each and in the
order sent. Then the killed broker is started again for the next client.

Clients: confluent-kafka (librdkafka), kafka-python (no idempotence: duplicates allowed, losses
not), kcat and `ordo produce`/`ordo consume` (librdkafka; lines on stdin, delivery failures on
stderr), KafkaJS (tests/kafkajs/cluster_failover.js, installed with the KafkaJS test's npm ci)
and Sarama (tests/sarama/cluster/main.go, built like tests/sarama in GOPATH mode). The time from
the kill to the next acknowledgement is printed where the client reports acknowledgements as
they come.
"""

import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster_harness import ClusterTestCase, _ordo_bin

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
WAIT_S = 60
COUNT = 600
KILL_AT = COUNT // 3


def build_dir():
    """The CMake build dir of the ordo binary (ORDO_BIN is <build>/src/cli/ordo)."""
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(_ordo_bin())),
                                         "..", ".."))


class ClusterClientsTest(ClusterTestCase):
    def setUp(self):
        self.ok = False
        self.killed = None

    def tearDown(self):
        if not self.ok:
            type(self).failed = True
        if self.killed is not None:  # back to three brokers for the next client
            self.c.start(self.killed)
            self.c.wait(lambda: self.c.registered() == 3, WAIT_S, "3 brokers again")

    # ------------------------------------------------------------------ helpers
    def create(self, topic):
        def created():
            # a new AdminClient each time, and again on NOT_CONTROLLER: librdkafka 2.0's admin
            # client does not follow a controller that moved (after the previous client's kill)
            admin = AdminClient({"bootstrap.servers": self.c.bootstrap_servers})
            try:
                admin.create_topics([NewTopic(topic, 1, replication_factor=3)])[topic].result(30)
            except KafkaException as e:
                if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    return True
                if e.args[0].code() == KafkaError.NOT_CONTROLLER:
                    return False
                raise
            return True
        self.c.wait(created, WAIT_S, f"{topic} created", interval=0.5)
        return self.c.wait(lambda: self.c.agreed_leader(topic, 0), WAIT_S,
                           f"a leader of {topic}-0")

    def killer(self, topic, leader, at=KILL_AT):
        """A thread that SIGKILLs `leader` once its high watermark of topic-0 reaches `at`;
        self.kill_time is then set."""
        self.kill_time = None

        def run():
            try:
                self.c.wait(lambda: self.c.partition_ends(leader, topic, 0)[1] >= at, WAIT_S,
                            f"{at} records in {topic}-0", interval=0.01)
            except TimeoutError:
                return
            self.c.kill(leader)
            self.kill_time = time.monotonic()
            self.killed = leader
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def check(self, name, sent, acked, read, idempotent, acked_at=None):
        """sent: values in send order; acked: {value: offset or None}; read: [(offset, value)]
        in read order."""
        self.assertIsNotNone(self.killed, f"{name}: the leader was not killed during the run")
        offsets = [o for o, _ in read]
        self.assertEqual(offsets, sorted(set(offsets)), f"{name}: offsets repeat or go back")
        by_value = {}
        for o, v in read:
            by_value.setdefault(v, []).append(o)
        self.assertEqual(set(by_value) - set(sent), set(), f"{name}: values never sent were read")
        missing = [v for v in acked if v not in by_value]
        self.assertEqual(missing, [], f"{name}: acknowledged values not read (read from offset "
                         f"{read[0][0] if read else None}, acknowledged from "
                         f"{min((o for o in acked.values() if o is not None), default=None)})")
        moved = {v: (o, by_value[v]) for v, o in acked.items() if o is not None and
                 o not in by_value[v]}
        self.assertEqual(moved, {}, f"{name}: read at other offsets than acknowledged")
        if idempotent:
            twice = {v: os_ for v, os_ in by_value.items() if len(os_) > 1}
            self.assertEqual(twice, {}, f"{name}: an idempotent producer's value read twice")
            order = {v: i for i, v in enumerate(sent)}
            seq = [order[v] for _, v in read]
            self.assertEqual(seq, sorted(seq), f"{name}: read out of send order")
        if acked_at:
            after = [t for t in acked_at if t > self.kill_time]
            wait = f"{after[0] - self.kill_time:.2f} s" if after else "n/a"
            extra = f", first acknowledgement after the kill: {wait}"
        else:
            extra = ""
        print(f"{name}: {len(sent)} sent, {len(acked)} acknowledged, {len(read)} read, leader "
              f"{self.killed} killed{extra}", flush=True)

    def read_confluent(self, topic, until):
        """(offset, value) of topic-0 from 0 until offset `until` was read."""
        c = Consumer({"bootstrap.servers": self.c.bootstrap_servers, "group.id": "cl-reader",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, 0)])
        out = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and (not out or out[-1][0] < until):
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append((m.offset(), m.value().decode()))
        c.close()
        return out

    def parse_lines(self, text):
        """Lines "ack <offset> <value>", "fail <value> ...", "read <offset> <value>"."""
        acked, failed, read = {}, [], []
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if parts[0] == "ack":
                acked[parts[2]] = int(parts[1])
            elif parts[0] == "fail":
                failed.append(line)
            elif parts[0] == "read":
                read.append((int(parts[1]), parts[2]))
        return acked, failed, read

    def run_lines_client(self, name, topic, args, env, cwd=None, timeout=240):
        """Runs a client that prints ack/fail/read lines, with the killer armed; returns its
        (acked, failed, read, ack times)."""
        leader = self.create(topic)
        k = self.killer(topic, leader)
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines, ack_times = [], []

        def pump():
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("ack "):
                    ack_times.append(time.monotonic())
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail(f"{name} did not finish within {timeout} s")
        t.join(10)
        k.join(WAIT_S)
        err = proc.stderr.read()
        self.assertEqual(proc.returncode, 0, f"{name} exited {proc.returncode}: {err[-3000:]}")
        self.assertIn("done", lines, f"{name} did not finish: {err[-3000:]}")
        acked, failed, read = self.parse_lines("\n".join(lines))
        if failed:
            print(f"{name}: {len(failed)} sends failed (not acknowledged), e.g. {failed[:3]}",
                  flush=True)
        return acked, read, ack_times

    # ------------------------------------------------------------------ clients
    def test_confluent_kafka(self):
        topic = "cl-confluent"
        leader = self.create(topic)
        k = self.killer(topic, leader)
        p = Producer({"bootstrap.servers": self.c.bootstrap_servers, "acks": "all",
                      "enable.idempotence": True, "linger.ms": 1, "message.timeout.ms": 60000,
                      "request.timeout.ms": 5000})
        acked, errors, times = {}, [], []

        def on_delivery(err, msg):
            if err is None:
                acked[msg.value().decode()] = msg.offset()
                times.append(time.monotonic())
            else:
                errors.append(str(err))
        sent = [f"ck-{n}" for n in range(COUNT)]
        for v in sent:
            p.produce(topic, value=v, partition=0, on_delivery=on_delivery)
            p.poll(0.002)
        self.assertEqual(p.flush(WAIT_S + 30), 0)
        k.join(WAIT_S)
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), COUNT)
        read = self.read_confluent(topic, max(acked.values()))
        self.check("confluent-kafka", sent, acked, read, idempotent=True, acked_at=times)
        self.ok = True

    # A new leader's Raft no-op is a control batch in the partition's log; kafka-python 2.0.2
    # does not drop control batches (it returned it as a record, value b"\\x00\\x00"), so a
    # cluster leaves them out of Fetch responses (broker/fetch.cc).
    def test_kafka_python(self):
        from kafka import KafkaConsumer, KafkaProducer
        from kafka import TopicPartition as KTP
        topic = "cl-kafka-python"
        leader = self.create(topic)
        k = self.killer(topic, leader)
        boot = self.c.bootstrap_servers.split(",")
        p = KafkaProducer(bootstrap_servers=boot, acks="all", retries=50, linger_ms=1,
                          max_in_flight_requests_per_connection=1, request_timeout_ms=5000,
                          retry_backoff_ms=100, reconnect_backoff_max_ms=1000)
        sent = [f"kp-{n}" for n in range(COUNT)]
        futures = []
        for v in sent:
            futures.append((v, p.send(topic, value=v.encode(), partition=0)))
            time.sleep(0.002)
        p.flush(WAIT_S + 30)
        acked, errors = {}, []
        for v, f in futures:
            try:
                acked[v] = f.get(timeout=WAIT_S).offset
            except Exception as e:  # noqa: BLE001 - a send that failed: not acknowledged
                errors.append(f"{v}: {e!r}")
        p.close(10)
        k.join(WAIT_S)
        if errors:
            print(f"kafka-python: {len(errors)} sends failed, e.g. {errors[:3]}", flush=True)
        cons = KafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, group_id=None,
                             request_timeout_ms=11000, session_timeout_ms=10000)
        cons.assign([KTP(topic, 0)])
        cons.seek_to_beginning()
        read, until = [], max(acked.values())
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and (not read or read[-1][0] < until):
            for recs in cons.poll(500).values():
                read += [(r.offset, r.value.decode()) for r in recs]
        cons.close()
        self.check("kafka-python", sent, acked, read, idempotent=False)
        self.ok = True

    def stdin_producer(self, name, topic, args, read_args, parse_read, env=None):
        """A producer that sends each stdin line (kcat -P, ordo produce): half the lines, the
        leader killed once a third are stored, the rest; exit 0 and no delivery failure on
        stderr means every line was acknowledged. Read back with read_args."""
        leader = self.create(topic)
        k = self.killer(topic, leader)
        sent = [f"{name}-{n}" for n in range(COUNT)]
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        for v in sent:
            proc.stdin.write(v + "\n")
            proc.stdin.flush()
            time.sleep(0.002)
        proc.stdin.close()
        try:
            proc.wait(WAIT_S + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail(f"{name} produce did not finish")
        k.join(WAIT_S)
        err = proc.stderr.read()
        self.assertEqual(proc.returncode, 0, f"{name}: {err[-3000:]}")
        self.assertNotIn("elivery failed", err, f"{name}: {err[-3000:]}")
        r = subprocess.run(read_args, capture_output=True, text=True, timeout=WAIT_S + 30,
                           env=env)
        self.assertEqual(r.returncode, 0, f"{name} read: {r.stderr[-3000:]}")
        read = parse_read(r.stdout)
        self.check(name, sent, {v: None for v in sent}, read, idempotent=True)

    def test_kcat(self):
        topic = "cl-kcat"
        boot = self.c.bootstrap_servers
        conf = ["-X", "acks=all", "-X", "enable.idempotence=true", "-X",
                "message.timeout.ms=60000", "-X", "linger.ms=1"]

        def parse(out):
            rows = []
            for line in out.splitlines():
                if line.strip():
                    o, v = line.split(" ", 1)
                    rows.append((int(o), v))
            return rows
        self.stdin_producer("kcat", topic,
                            ["kcat", "-P", "-b", boot, "-t", topic, "-p", "0"] + conf,
                            ["kcat", "-C", "-b", boot, "-t", topic, "-p", "0", "-o", "beginning",
                             "-e", "-q", "-f", "%o %s\n"], parse)
        self.ok = True

    def test_ordo_cli(self):
        topic = "cl-ordo"
        boot = self.c.bootstrap_servers
        ordo = _ordo_bin()
        env_ok = {k: v for k, v in os.environ.items() if not k.startswith("ORDO_")}

        def parse(out):
            rows = []
            for line in out.splitlines():
                if line.strip():
                    o, v = line.split(" ", 1)
                    rows.append((int(o), v))
            return rows
        # the CLI, like the broker, refuses ORDO_* variables it does not know (ORDO_BIN)
        self.stdin_producer("ordo", topic,
                            [ordo, "produce", "-b", boot, "-t", topic, "-p", "0", "--acks",
                             "all", "-X", "enable.idempotence=true", "-X",
                             "message.timeout.ms=60000"],
                            [ordo, "consume", "-b", boot, "-t", topic, "-p", "0", "-e", "-f",
                             "%o %s\\n"], parse, env=env_ok)
        self.ok = True

    def test_kafkajs(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed")
        sys.path.insert(0, os.path.join(TESTS, "kafkajs"))
        import run_test as kjs  # tests/kafkajs/run_test.py: npm ci into the work dir
        sys.path.pop(0)
        sys.modules.pop("run_test", None)
        work = os.path.join(build_dir(), "tests", "kafkajs", "node")
        kjs.prepare(work)
        shutil.copyfile(os.path.join(TESTS, "kafkajs", "cluster_failover.js"),
                        os.path.join(work, "cluster_failover.js"))
        topic = "cl-kafkajs"
        env = dict(os.environ, ORDO_BOOTSTRAP=self.c.bootstrap_servers, ORDO_TOPIC=topic,
                   ORDO_COUNT=str(COUNT), KAFKAJS_NO_PARTITIONER_WARNING="1")
        acked, read, times = self.run_lines_client("kafkajs", topic,
                                                   [node, "cluster_failover.js"], env, cwd=work)
        sent = [f"kjs-{n}" for n in range(COUNT)]
        self.check("kafkajs", sent, acked, read, idempotent=True, acked_at=times)
        self.ok = True

    # Sarama 1.22's partition consumer, from OffsetOldest on a partition whose log held two Raft
    # no-ops (control batches), started after the second one and skipped every record before
    # it; Fetch responses of a cluster leave those batches out (broker/fetch.cc).
    def test_sarama(self):
        go = shutil.which("go")
        self.assertIsNotNone(go, "go is not installed")
        sys.path.insert(0, os.path.join(TESTS, "sarama"))
        import run_test as sar  # tests/sarama/run_test.py: Debian's GOPATH
        sys.path.pop(0)
        sys.modules.pop("run_test", None)
        work = os.path.join(build_dir(), "tests", "sarama", "go")
        os.makedirs(work, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
        env.update(GO111MODULE="off", GOPATH=f"{os.path.join(work, 'gopath')}:{sar.DEBIAN_GOPATH}",
                   GOCACHE=os.path.join(work, "gocache"), GOFLAGS="", GOPROXY="off",
                   GOTOOLCHAIN="local", CGO_ENABLED="0")
        exe = os.path.join(work, "sarama_cluster")
        t0 = time.monotonic()
        subprocess.run([go, "build", "-o", exe, os.path.join(TESTS, "sarama", "cluster",
                                                             "main.go")],
                       cwd=work, env=env, check=True, timeout=sar.BUILD_TIMEOUT_S)
        print(f"go build took {time.monotonic() - t0:.1f} s", flush=True)
        topic = "cl-sarama"
        env = dict(os.environ, ORDO_BOOTSTRAP=self.c.bootstrap_servers, ORDO_TOPIC=topic,
                   ORDO_COUNT=str(COUNT))
        acked, read, times = self.run_lines_client("sarama", topic, [exe], env)
        sent = [f"sarama-{n}" for n in range(COUNT)]
        self.check("sarama", sent, acked, read, idempotent=True, acked_at=times)
        self.ok = True


if __name__ == "__main__":
    unittest.main()
