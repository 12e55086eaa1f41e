"""Consumer groups with real clients: confluent-kafka-python (librdkafka) members in their own
processes (group_member.py) join, share the partitions, commit, are SIGKILLed; committed
offsets survive broker restarts (SIGTERM and SIGKILL); kafka-python members share a topic, and
kafka-python commits and reads back."""

import os
import subprocess
import sys
import threading
import time
import unittest

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import ordo_harness

HERE = os.path.dirname(os.path.abspath(__file__))
PARTITIONS = 6
DEADLINE_S = 60


class Member:
    """A group_member.py process; its stdout is collected by a thread."""

    def __init__(self, bootstrap, group, topic, strategy, instance_id=None):
        args = [sys.executable, "-u", os.path.join(HERE, "group_member.py"), bootstrap, group,
                topic, strategy] + ([instance_id] if instance_id else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.consumed = []    # committed: printed after the commit succeeded
        self.processing = []  # printed before the commit (a SIGKILL may fall in between)
        self.assignments = []  # every assignment seen, in order (lists of partitions)
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            with self.lock:
                if kind == "consumed":
                    self.consumed.append(rest)
                elif kind == "processing":
                    self.processing.append(rest)
                elif kind == "assigned":
                    self.assignments.append([int(p) for p in rest.split(",") if p])

    def current(self):
        with self.lock:
            return self.assignments[-1] if self.assignments else None

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self._done()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        self._done()

    def _done(self):
        self.reader.join()
        self.proc.stdout.close()
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


def wait_for(cond, what, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class GroupTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(ordo_harness.Broker(
            ["--network-threads", "2", "--set", "group.initial.rebalance.delay.ms=200",
             "--set", "group.min.session.timeout.ms=1000"]))
        cls.bs = cls.broker.bootstrap
        cls.admin = AdminClient({"bootstrap.servers": cls.bs})

    def make_topic(self, name, messages):
        self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result()
        p = Producer({"bootstrap.servers": self.bs, "linger.ms": 5})
        self.produce(p, name, 0, messages)

    def produce(self, p, topic, start, end):
        for i in range(start, end):
            p.produce(topic, key=str(i), value=str(i), partition=i % PARTITIONS)
        self.assertEqual(p.flush(30), 0)

    def committed(self, group, topic):
        c = Consumer({"bootstrap.servers": self.bs, "group.id": group})
        try:
            parts = c.committed([TopicPartition(topic, i) for i in range(PARTITIONS)], timeout=10)
            return {tp.partition: tp.offset for tp in parts}
        finally:
            c.close()

    @staticmethod
    def settled(members, killed):
        """Messages whose commit is known: committed and reported, plus the ones the killed
        member was processing when SIGKILL came (its commit may or may not have landed)."""
        return set(v for m in members for v in m.consumed) | set(killed.processing)

    def check_each_once(self, members, killed, total):
        committed = [v for m in members for v in m.consumed]
        # Every message is committed once: no two commits of one message (which would mean two
        # members owned a partition at once, or a member was sent a committed message again).
        self.assertEqual(len(committed), len(set(committed)), "a message was committed twice")
        self.assertEqual(sorted(self.settled(members, killed), key=int),
                         [str(i) for i in range(total)])
        # At most the killed member's last message per partition may lack its report.
        unreported = set(killed.processing) - set(committed)
        self.assertLessEqual(len(unreported), PARTITIONS, sorted(unreported, key=int))

    def run_group(self, group, topic, strategy):
        """Two members share the topic, a third joins and leaves, one is SIGKILLed; every
        message is committed exactly once (check_each_once)."""
        total = 3000
        self.make_topic(topic, total // 3)
        p = Producer({"bootstrap.servers": self.bs, "linger.ms": 5})
        a = Member(self.bs, group, topic, strategy)
        b = Member(self.bs, group, topic, strategy)
        members = [a, b]
        try:
            # Both get a share.
            wait_for(lambda: a.current() and b.current()
                     and sorted(a.current() + b.current()) == list(range(PARTITIONS)),
                     "two members to split the partitions")
            c = Member(self.bs, group, topic, strategy)
            members.append(c)
            wait_for(lambda: all(m.current() for m in members)
                     and sorted(sum((m.current() for m in members), [])) == list(range(PARTITIONS)),
                     "three members to split the partitions")
            self.produce(p, topic, total // 3, 2 * total // 3)
            c.close()  # leaves the group cleanly (LeaveGroup)
            wait_for(lambda: a.current() and b.current()
                     and sorted(a.current() + b.current()) == list(range(PARTITIONS)),
                     "the two remaining members to take over")
            b.kill()  # no LeaveGroup: the broker notices when its session times out
            self.produce(p, topic, 2 * total // 3, total)
            wait_for(lambda: a.current() == list(range(PARTITIONS)),
                     "the survivor to own every partition")
            try:
                wait_for(lambda: len(self.settled(members, b)) == total,
                         "every message to be consumed")
            except AssertionError:
                got = self.settled(members, b)
                missing = sorted((int(v) for v in set(map(str, range(total))) - got))
                raise AssertionError(
                    f"{len(missing)} of {total} never consumed (first: {missing[:10]}, by "
                    f"partition: {sorted(set(i % PARTITIONS for i in missing))}); last "
                    f"assignments: {[m.assignments[-3:] for m in members]}") from None
            a.close()
        finally:
            for m in members:
                if m.proc.poll() is None:
                    m.kill()
        self.check_each_once(members, b, total)
        per_partition = total // PARTITIONS
        self.assertEqual(self.committed(group, topic), {i: per_partition for i in range(PARTITIONS)})

    def test_eager_range_group(self):
        self.run_group("g-range", "groups-range", "range")

    def test_cooperative_sticky_group(self):
        self.run_group("g-coop", "groups-coop", "cooperative-sticky")

    def test_kafka_python_group(self):
        self.run_group("g-kpy", "groups-kpy", "kafka-python")

    def test_committed_offsets_survive_sigterm_and_sigkill(self):
        # A broker of its own (restarts change the port), with the default 50 partitions of
        # __consumer_offsets.
        with ordo_harness.Broker() as broker:
            topic, group = "groups-restart", "g-restart"
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result()

            def committed():
                c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
                try:
                    parts = c.committed([TopicPartition(topic, i) for i in range(PARTITIONS)],
                                        timeout=10)
                    return {tp.partition: tp.offset for tp in parts}
                finally:
                    c.close()

            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
            c.commit(offsets=[TopicPartition(topic, i, 10 + i) for i in range(PARTITIONS)],
                     asynchronous=False)
            c.close()
            want = {i: 10 + i for i in range(PARTITIONS)}
            self.assertEqual(committed(), want)
            broker.restart()
            self.assertEqual(committed(), want)
            broker.kill()
            broker.start()
            self.assertEqual(committed(), want)

    def test_static_member_restarts_without_a_rebalance(self):
        topic, group = "groups-static", "g-static"
        self.make_topic(topic, 60)
        # a joins first and stays the leader (test_static_leader_closes_and_rejoins restarts
        # the leader).
        a = Member(self.bs, group, topic, "range", "static-a")
        wait_for(lambda: a.current() is not None, "the first member's assignment")
        b = Member(self.bs, group, topic, "range", "static-b")
        try:
            wait_for(lambda: a.current() and b.current()
                     and sorted(a.current() + b.current()) == list(range(PARTITIONS)),
                     "two static members to split the partitions")
            before_a = list(a.assignments)
            share_b = b.current()
            b.kill()
            b2 = Member(self.bs, group, topic, "range", "static-b")
            wait_for(lambda: b2.current() is not None, "the restarted member's assignment")
            self.assertEqual(b2.current(), share_b)
            time.sleep(1)  # a rebalance would have revoked a's partitions by now
            self.assertEqual(a.assignments, before_a, "the other member saw a rebalance")
            b2.close()
            a.close()
        finally:
            for m in (a, b):
                if m.proc.poll() is None:
                    m.kill()

    def test_static_leader_closes_and_rejoins_without_a_rebalance(self):
        # librdkafka sends no LeaveGroup when a static member closes, and joins with JoinGroup
        # v5, which cannot tell a restarted leader to skip the assignment: as Kafka, the broker
        # names the old member id as the leader, so the new process syncs as a follower and gets
        # its old assignment while the other member keeps going (an eager member would revoke
        # everything in a rebalance, a cooperative one would be called with an empty assignment).
        for strategy in ("range", "cooperative-sticky"):
            with self.subTest(strategy=strategy):
                self.static_leader_restart(strategy)

    def static_leader_restart(self, strategy):
        topic, group = f"groups-static-close-{strategy}", f"g-static-close-{strategy}"
        self.make_topic(topic, 60)
        a = Member(self.bs, group, topic, strategy, "close-a")
        wait_for(lambda: a.current() is not None, "the first member's assignment")
        b = Member(self.bs, group, topic, strategy, "close-b")
        members = [a, b]
        try:
            wait_for(lambda: a.current() and b.current()
                     and sorted(a.current() + b.current()) == list(range(PARTITIONS)),
                     "two static members to split the partitions")
            wait_for(lambda: len(a.consumed) + len(b.consumed) == 60, "the first messages")
            before_b = list(b.assignments)
            share_a = a.current()
            a.close()  # consumer.close(): no LeaveGroup for a static member
            a2 = Member(self.bs, group, topic, strategy, "close-a")
            members.append(a2)
            wait_for(lambda: a2.current() is not None, "the restarted leader's assignment")
            self.assertEqual(a2.current(), share_a)
            # One more message per partition, consumed by its owner: b's output up to then
            # (a revocation would come before it) has been read.
            self.produce(Producer({"bootstrap.servers": self.bs}), topic, 60, 66)
            later = lambda m: sorted(int(v) for v in m.consumed if int(v) >= 60)
            wait_for(lambda: sorted(later(a2) + later(b)) == list(range(60, 66)),
                     "the later messages")
            self.assertEqual(sorted(a2.consumed, key=int), [str(60 + p) for p in share_a])
            self.assertEqual(b.assignments, before_b, "the other member saw a rebalance")
            a2.close()
            b.close()
        finally:
            for m in members:
                if m.proc.poll() is None:
                    m.kill()

    # A cooperative-sticky member of two topics (test_member_of_a_deleted_topic_leaves):
    # prints "owned topic:partition,..." after every change, closes when stdin closes.
    TWO_TOPIC_MEMBER = """
import select, sys
from confluent_kafka import Consumer
bootstrap, group, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
              "topic.metadata.refresh.interval.ms": 500,
              "partition.assignment.strategy": "cooperative-sticky"})
owned = set()
def show(kind):
    print(kind + " " + ",".join(sorted(f"{t}:{p}" for t, p in owned)), flush=True)
def on_assign(_c, ps):
    owned.update((p.topic, p.partition) for p in ps); show("owned")
def on_revoke(_c, ps):
    owned.difference_update((p.topic, p.partition) for p in ps); show("owned")
def on_lost(_c, ps):
    owned.difference_update((p.topic, p.partition) for p in ps); show("lost")
c.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
while not (select.select([sys.stdin], [], [], 0)[0] and not sys.stdin.readline()):
    c.poll(0.1)
print("closing", flush=True)
c.close()
print("closed", flush=True)
"""

    def test_member_of_a_deleted_topic_leaves(self):
        # The member loses the deleted topic's partitions, keeps the other's, and on close()
        # leaves at once: the broker answers its LeaveGroup and the group is Empty.
        # librdkafka 2.0.2's rd_kafka_destroy(), the rest of close(), then waits on its own
        # references to the deleted partitions (a client bug, docs/broker.md "Deleting a topic
        # under a librdkafka consumer"): the process is killed once the group is seen Empty.
        from kafka import KafkaAdminClient
        keep, gone, group = "groups-kept", "groups-deleted", "g-deleted-topic"
        for t in (keep, gone):
            self.make_topic(t, 12)
        proc = subprocess.Popen([sys.executable, "-u", "-c", self.TWO_TOPIC_MEMBER, self.bs, group,
                                 keep, gone], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        admin = KafkaAdminClient(bootstrap_servers=self.bs, api_version_auto_timeout_ms=10000)

        def owned(kind):
            return [set(l.split(" ", 1)[1].strip().split(",")) - {""} for l in list(lines)
                    if l.startswith(kind + " ")]

        both = {f"{t}:{p}" for t in (keep, gone) for p in range(PARTITIONS)}
        kept = {f"{keep}:{p}" for p in range(PARTITIONS)}
        try:
            wait_for(lambda: both in owned("owned"), "the member to own both topics")
            self.admin.delete_topics([gone])[gone].result()
            wait_for(lambda: kept in owned("lost"), "the deleted topic's partitions to be lost")
            proc.stdin.close()
            wait_for(lambda: "closing\n" in lines, "the member to close")

            def state():
                (info,) = admin.describe_consumer_groups([group])
                return info.state, len(info.members)
            wait_for(lambda: state() == ("Empty", 0), "the group to be left")
            wait_for(lambda: owned("owned")[-1] == set(), "the member to revoke the rest")
        finally:
            admin.close()
            proc.kill()
            proc.wait()
            reader.join()
            proc.stdout.close()

    def test_kafka_python_group_of_two(self):
        from kafka import KafkaConsumer, TopicPartition as KTP
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata
        topic, group, total = "groups-kp-two", "g-kp-two", 1200
        self.make_topic(topic, total)
        consumed = {0: [], 1: []}
        owned = {0: set(), 1: set()}
        stop = threading.Event()

        def member(i):
            c = KafkaConsumer(topic, bootstrap_servers=self.bs, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              session_timeout_ms=6000, heartbeat_interval_ms=300,
                              api_version_auto_timeout_ms=10000)
            try:
                while not stop.is_set():
                    for tp, msgs in c.poll(timeout_ms=200).items():
                        owned[i].add(tp.partition)
                        for m in msgs:
                            try:
                                c.commit({KTP(tp.topic, tp.partition): OffsetAndMetadata(m.offset + 1, "")})
                            except KafkaError:
                                # Not committed: read it again (or its new owner will).
                                c.seek(KTP(tp.topic, tp.partition), m.offset)
                                break
                            consumed[i].append(m.value.decode())
            finally:
                c.close()

        threads = [threading.Thread(target=member, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(consumed[0]) + len(consumed[1]) >= total, "every message")
            time.sleep(0.5)  # anything delivered twice would show up now
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        everything = consumed[0] + consumed[1]
        self.assertEqual(sorted(everything, key=int), [str(i) for i in range(total)])
        self.assertTrue(owned[0] and owned[1], f"both members got partitions: {owned}")
        per_partition = total // PARTITIONS
        self.assertEqual(self.committed(group, topic), {i: per_partition for i in range(PARTITIONS)})

    def test_kafka_python_commits_and_reads_back(self):
        from kafka import KafkaConsumer, TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata
        topic = "groups-kp"
        self.make_topic(topic, 60)
        c = KafkaConsumer(bootstrap_servers=self.bs, group_id="g-kp", enable_auto_commit=False,
                          api_version_auto_timeout_ms=10000)
        c.commit({KTP(topic, 1): OffsetAndMetadata(7, "note")})
        self.assertEqual(c.committed(KTP(topic, 1)), 7)
        c.close()
        self.assertEqual(self.committed("g-kp", topic)[1], 7)


if __name__ == "__main__":
    unittest.main()
