"""The Kafka protocol of a three-broker cluster (cluster_harness.py, loopback), in raw requests
(kafka_wire.py) so that each error code is seen as the broker sends it:

- Produce acks=-1 commits while min.insync.replicas (3, the topic's) replicas are in sync, and
  is refused with NOT_ENOUGH_REPLICAS (19) once a follower is down; a quorum acknowledgement
  that cannot come within the request's timeout (0 ms) answers REQUEST_TIMED_OUT (7).
- OffsetForLeaderEpoch (23) answers the leader's epoch and its end offset, FENCED_LEADER_EPOCH
  (74) / UNKNOWN_LEADER_EPOCH (75) for an older / newer current epoch, as ListOffsets v4 does.
- ElectLeaders (43): the preferred replica (the first assigned) leads once it has caught up,
  so a preferred election is ELECTION_NOT_NEEDED (84); an unclean one is INVALID_REQUEST (42).
- A leader SIGSTOPped until another leads and the high watermark moved on, then resumed,
  never answers ListOffsets with an offset below what the new leader answered (the leader
  lease: it answers NOT_LEADER_OR_FOLLOWER until it has heard a majority again or steps down).
"""

import time
import unittest

from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire as kw
from cluster_harness import Cluster

TOPIC = "api"


def offset_for_leader_epoch_v3(conn, topic, partition, current_epoch, epoch):
    body = kw.i32(-1) + kw.array([topic], lambda t: kw.string(t) + kw.array(
        [partition], lambda p: kw.i32(p) + kw.i32(current_epoch) + kw.i32(epoch)))
    r = kw.Reader(conn.request(23, 3, body))
    r.i32()  # throttle
    topics = r.array(lambda r: (r.string(), r.array(
        lambda r: (r.i16(), r.i32(), r.i32(), r.i64()))))
    error, _, leader_epoch, end_offset = topics[0][1][0]
    return error, leader_epoch, end_offset


def list_offsets_v4(conn, topic, partition, current_epoch, timestamp=-1):
    body = kw.i32(-1) + kw.i8(0) + kw.array([topic], lambda t: kw.string(t) + kw.array(
        [partition], lambda p: kw.i32(p) + kw.i32(current_epoch) + kw.i64(timestamp)))
    r = kw.Reader(conn.request(2, 4, body))
    r.i32()
    topics = r.array(lambda r: (r.string(), r.array(
        lambda r: (r.i32(), r.i16(), r.i64(), r.i64(), r.i32()))))
    _, error, _, offset, leader_epoch = topics[0][1][0]
    return error, offset, leader_epoch


def elect_leaders_v1(conn, election_type, topic, partition):
    body = kw.i8(election_type) + kw.array([topic], lambda t: kw.string(t) + kw.array(
        [partition], kw.i32)) + kw.i32(10000)
    r = kw.Reader(conn.request(43, 1, body))
    r.i32()
    top_error = r.i16()
    results = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.string()))))
    return top_error, results[0][1][0][1], results[0][1][0][2]


def produce(conn, value, acks=-1, timeout_ms=30000):
    batch = kw.record_batch([(b"k", value.encode(), ())])
    body = kw.produce_v7_body(TOPIC, 0, batch, acks=acks, timeout_ms=timeout_ms)
    return kw.parse_produce_v7(conn.request(0, 7, body))


class ClusterApiTest(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster(n=3, mode="loopback")
        self.failed = True

    def tearDown(self):
        self.cluster.close(failed=self.failed)

    def partition0(self, skip=()):
        """(leader, replicas) of TOPIC-0 as node 1..3's metadata says, or None."""
        for i in range(1, 4):
            if i in skip or not self.cluster.node(i).alive():
                continue
            try:
                with kw.Connection(self.cluster.node(i).kafka) as conn:
                    md = conn.metadata([TOPIC])
            except OSError:
                continue
            t = md["topics"].get(TOPIC)
            if t and t["error"] == 0 and t["partitions"]:
                p = t["partitions"][0]
                return p["leader"], p["replicas"]
        return None

    def test_cluster_protocol(self):
        c = self.cluster
        c.start_all()

        def registered():
            s = c.any_status()
            return s is not None and s["controller"]["leader"] > 0 and \
                sum(1 for b in s["brokers"] if not b["fenced"]) == 3
        c.wait(registered, timeout=60, what="3 registered brokers")
        admin = AdminClient({"bootstrap.servers": c.bootstrap_servers})
        admin.create_topics([NewTopic(TOPIC, 1, replication_factor=3,
                                      config={"min.insync.replicas": "3"})])[TOPIC].result(30)
        # The preferred replica (the first assigned) leads once it has caught up.
        c.wait(lambda: (lambda p: p is not None and p[0] > 0 and p[0] == p[1][0])(
            self.partition0()), timeout=60, what="the preferred replica leading")
        leader, replicas = self.partition0()
        conn = kw.Connection(c.node(leader).kafka)

        # All three in sync: acks=-1 commits (min.insync.replicas 3).
        def committed():
            error, base, _, _ = produce(conn, "first")
            return error == 0 and base >= 0
        c.wait(committed, timeout=30, what="an acks=-1 produce with 3 replicas in sync")

        # OffsetForLeaderEpoch: the latest epoch ends at the log end.
        error, epoch, end = offset_for_leader_epoch_v3(conn, TOPIC, 0, -1, 1 << 30)
        self.assertEqual(error, 0)
        self.assertGreater(epoch, 0)
        error, latest, le = list_offsets_v4(conn, TOPIC, 0, epoch)
        self.assertEqual((error, le), (0, epoch))
        self.assertEqual(end, latest)
        self.assertEqual(offset_for_leader_epoch_v3(conn, TOPIC, 0, epoch, epoch),
                         (0, epoch, end))
        self.assertEqual(offset_for_leader_epoch_v3(conn, TOPIC, 0, epoch - 1, epoch)[0], 74)
        self.assertEqual(offset_for_leader_epoch_v3(conn, TOPIC, 0, epoch + 1, epoch)[0], 75)
        self.assertEqual(list_offsets_v4(conn, TOPIC, 0, epoch - 1)[0], 74)
        self.assertEqual(list_offsets_v4(conn, TOPIC, 0, epoch + 1)[0], 75)
        follower = next(r for r in replicas if r != leader)
        with kw.Connection(c.node(follower).kafka) as fc:
            self.assertEqual(offset_for_leader_epoch_v3(fc, TOPIC, 0, -1, epoch)[0], 6)

        # ElectLeaders: the preferred replica leads already; unclean elections do not exist.
        self.assertEqual(elect_leaders_v1(conn, 0, TOPIC, 0)[:2], (0, 84))
        top, error, message = elect_leaders_v1(conn, 1, TOPIC, 0)
        self.assertEqual((top, error), (0, 42))
        self.assertIn("unclean", message)

        # SIGSTOP the leader until another leads and has committed more, then resume it.
        error, hw0, _ = list_offsets_v4(conn, TOPIC, 0, -1)
        self.assertEqual(error, 0)
        c.sigstop(leader)
        c.wait(lambda: (lambda p: p is not None and p[0] > 0 and p[0] != leader)(
            self.partition0(skip=(leader,))), timeout=30, what="a new leader")
        successor = self.partition0(skip=(leader,))[0]
        with kw.Connection(c.node(successor).kafka) as sc:
            def moved_on():
                produce(sc, "while stopped", acks=1)
                error, hw, _ = list_offsets_v4(sc, TOPIC, 0, -1)
                return error == 0 and hw > hw0
            c.wait(moved_on, timeout=30, what="the new leader's high watermark moving on")
            hw1 = list_offsets_v4(sc, TOPIC, 0, -1)[1]
        c.sigcont(leader)
        for _ in range(20):
            error, hw, _ = list_offsets_v4(conn, TOPIC, 0, -1)
            self.assertTrue(error != 0 or hw >= hw1,
                            f"the resumed leader answered {hw} after its successor's {hw1}")
        # Leadership returns to the preferred replica once it has caught up.
        c.wait(lambda: (lambda p: p is not None and p[0] == leader)(self.partition0()),
               timeout=60, what="the preferred replica leading again")
        c.wait(lambda: list_offsets_v4(conn, TOPIC, 0, -1)[0] == 0, timeout=30,
               what="the preferred replica serving again")

        # A quorum acknowledgement that cannot come within 0 ms.
        self.assertEqual(produce(conn, "hurry", timeout_ms=0)[0], 7)

        # A follower down: 2 in sync < min.insync.replicas 3.
        c.kill(follower)
        c.wait(lambda: produce(conn, "two")[0] == 19, timeout=30,
               what="NOT_ENOUGH_REPLICAS with a follower down")
        error, base, _, _ = produce(conn, "acks1", acks=1)  # acks=1 is not refused
        self.assertEqual(error, 0)
        conn.close()
        self.failed = False


if __name__ == "__main__":
    unittest.main()
