"""Malformed and unsupported input on raw sockets. Requests are written byte by byte
(kafka_wire.py). After every test the broker must still be running, serve a new connection
normally and hold exactly the data stored at the start (tearDown)."""

import os
import random
import re
import resource
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import kafka_wire as kw
from kafka_wire import i16, i32, string

DATA_TOPIC = "bad-input-data"
DATA_RECORDS = [(f"key-{i}".encode(), f"value-{i}".encode(), [("n", str(i).encode())],
                 1_700_000_000_000 + i) for i in range(50)]
MAX_REQUEST = 100 * 1024 * 1024  # socket.request.max.bytes default

INVALID_TOPIC_NAMES = ["bad/name", "..", ".", "a" * 300, "", "with space", "tab\tname",
                       "caf\u00e9"]


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker())
        cls.bs = cls.broker.bootstrap
        kw.create_topic(cls.bs, DATA_TOPIC, 1)
        with kw.Connection(cls.bs) as c:
            error, base, _, _ = c.produce(DATA_TOPIC, 0,
                                          kw.record_batch(DATA_RECORDS[:30],
                                                          DATA_RECORDS[0][3]))
            assert (error, base) == (kw.NONE, 0), (error, base)
            error, base, _, _ = c.produce(DATA_TOPIC, 0,
                                          kw.record_batch(DATA_RECORDS[30:],
                                                          DATA_RECORDS[30][3]))
            assert (error, base) == (kw.NONE, 30), (error, base)
            cls.stored = c.fetch_all(DATA_TOPIC, 0)  # the bytes every later fetch must return

    def tearDown(self):
        self.assert_healthy()

    # ---- helpers ----

    def assert_healthy(self):
        self.assertTrue(self.broker.alive(), "the broker exited:\n" + self.broker.log())
        with kw.Connection(self.bs) as c:
            error, apis = c.api_versions()
            self.assertEqual(error, kw.NONE)
            self.assertIn(kw.API_PRODUCE, apis)
            t = c.metadata([DATA_TOPIC])["topics"][DATA_TOPIC]
            self.assertEqual((t["error"], len(t["partitions"])), (kw.NONE, 1))
            self.assertEqual(c.list_offsets(DATA_TOPIC, 0, -1), (kw.NONE, -1, len(DATA_RECORDS)))
            self.assertEqual(c.fetch_all(DATA_TOPIC, 0), self.stored, "stored data changed")

    def send_bad(self, data, *expected_words):
        """Sends data on a new connection and checks that the broker closes it and logs one
        line about it (containing expected_words)."""
        with kw.Connection(self.bs) as c:
            c.send(data)
            self.assertTrue(c.wait_closed(), "the broker kept the connection open")
            self.assert_one_log_line(c.local_port, *expected_words)

    def assert_one_log_line(self, port, *expected_words):
        kw.wait_for_log(self.broker, lambda text: f"127.0.0.1:{port} " in text)
        self.assert_healthy()  # (also gives a second line, if any, time to show up)
        lines = kw.connection_log_lines(self.broker, port)
        self.assertEqual(len(lines), 1, f"log lines about the connection: {lines}")
        for w in ("closed",) + expected_words:
            self.assertIn(w, lines[0])

    def request(self, api_key, version, body, flexible=False, correlation_id=7):
        return kw.request_frame(api_key, version, correlation_id, body, flexible)

    # ---- framing ----

    def test_garbage_http_request(self):
        # "GET " read as a frame size is 1195725856: far above the limit.
        self.send_bad(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")

    def test_garbage_after_a_valid_header(self):
        # A Metadata v1 request whose topic array claims 2^31-1 entries, then random bytes.
        rng = random.Random(20240611)
        garbage = bytes(rng.randrange(256) for _ in range(200))
        self.send_bad(self.request(kw.API_METADATA, 1, b"\x7f\xff\xff\xff" + garbage))

    def test_random_bytes(self):
        # Random bytes after a frame size that covers them exactly: the header is nonsense.
        rng = random.Random(7)
        payload = bytes([0x7F, 0x00]) + bytes(rng.randrange(256) for _ in range(510))
        self.send_bad(kw.frame(payload))

    def test_frame_larger_than_limit(self):
        # Only the size prefix is sent: the broker must not wait for 100 MiB to refuse it.
        self.send_bad(i32(MAX_REQUEST + 1))

    def test_huge_frame_size(self):
        self.send_bad(i32(0x7FFFFFFF))

    def test_negative_frame_size(self):
        self.send_bad(i32(-1))

    def test_most_negative_frame_size(self):
        self.send_bad(i32(-0x80000000))

    def test_truncated_frame_then_close(self):
        # Half a frame, then the client goes away: nothing to answer; at most one log line.
        frame = self.request(kw.API_METADATA, 1, kw.metadata_v1_body([DATA_TOPIC]))
        with kw.Connection(self.bs) as c:
            c.send(frame[:len(frame) // 2])
            port = c.local_port
        self.assert_healthy()
        self.assertLessEqual(len(kw.connection_log_lines(self.broker, port)), 1)

    def test_truncated_size_prefix_then_close(self):
        with kw.Connection(self.bs) as c:
            c.send(b"\x00\x00")
            port = c.local_port
        self.assert_healthy()
        self.assertLessEqual(len(kw.connection_log_lines(self.broker, port)), 1)

    def test_frame_shorter_than_a_header(self):
        self.send_bad(kw.frame(i16(kw.API_METADATA)))

    # ---- API keys and versions ----

    def test_unknown_api_key(self):
        self.send_bad(self.request(1000, 0, b""), "1000")

    def test_negative_api_key(self):
        self.send_bad(self.request(-1, 0, b""))

    def test_api_the_broker_does_not_implement(self):
        # DescribeAcls v0 (key 29): a Kafka API this broker does not offer. Its response has a
        # top-level error code (after the throttle time), so the answer is UNSUPPORTED_VERSION
        # (35) in that response, and the connection stays usable.
        with kw.Connection(self.bs) as c:
            body = bytes([1]) + i16(-1) + i16(-1) + i16(-1) + bytes([1, 1])
            resp = c.request(29, 0, body)
            r = kw.Reader(resp)
            r.i32()  # throttle_time_ms
            self.assertEqual(r.i16(), kw.UNSUPPORTED_VERSION)
            error, _ = c.api_versions()
            self.assertEqual(error, kw.NONE)
        self.assert_healthy()

    def test_produce_v100(self):
        body = kw.produce_v7_body(DATA_TOPIC, 0, kw.record_batch([(b"k", b"v", [])]))
        self.send_bad(self.request(kw.API_PRODUCE, 100, body, flexible=True), "Produce", "100")

    def test_fetch_v3_below_minimum(self):
        # Fetch v3 layout: replica, max wait, min bytes, max bytes, topics.
        body = (i32(-1) + i32(0) + i32(0) + i32(1 << 20) +
                kw.array([DATA_TOPIC], lambda t: string(t) + kw.array(
                    [0], lambda p: i32(p) + kw.i64(0) + i32(1 << 20))))
        self.send_bad(self.request(kw.API_FETCH, 3, body), "Fetch", "3")

    def test_negative_api_version(self):
        self.send_bad(self.request(kw.API_METADATA, -1, b""))

    def test_api_versions_v99_gets_v0_answer(self):
        # A client newer than the broker: the answer is in v0 format with UNSUPPORTED_VERSION
        # and the supported ranges, and the connection stays usable.
        body = kw.compact_string("future-client") + kw.compact_string("99.0") + b"\x00"
        with kw.Connection(self.bs) as c:
            resp = c.request(kw.API_API_VERSIONS, 99, body, flexible=True)
            error, apis, left = kw.parse_api_versions_v0(resp)
            self.assertEqual(error, kw.UNSUPPORTED_VERSION)
            self.assertEqual(left, 0, "a v0 body has nothing after the api list")
            self.assertEqual(apis[kw.API_API_VERSIONS], (0, 3))
            self.assertEqual(apis[kw.API_PRODUCE][0], 0)
            self.assertIn(kw.API_FETCH, apis)
            self.assertIn(kw.API_METADATA, apis)
            # The same list as a v0 request gets, on the same connection.
            error0, apis0 = c.api_versions()
            self.assertEqual(error0, kw.NONE)
            self.assertEqual(apis0, apis)
            port = c.local_port
        self.assertEqual(kw.connection_log_lines(self.broker, port), [])

    # ---- record batches ----

    def produce_and_check(self, topic, batch, want_error):
        """Produces batch on one connection; returns the error code; the partition's end
        offset must not move on an error."""
        with kw.Connection(self.bs) as c:
            before = c.list_offsets(topic, 0, -1)[2]
            error, base, _, _ = c.produce(topic, 0, bytes(batch))
            self.assertEqual(error, want_error)
            if want_error != kw.NONE:
                self.assertEqual(base, -1)
                self.assertEqual(c.list_offsets(topic, 0, -1)[2], before)
            return error

    def test_corrupt_crc_is_refused_and_nothing_stored(self):
        topic = "bad-input-crc"
        kw.create_topic(self.bs, topic, 1)
        records = [(b"k%d" % i, b"v%d" % i, [("h", b"x")]) for i in range(5)]
        good = kw.record_batch(records, 1_700_000_000_000)

        flipped_crc = bytearray(good)
        flipped_crc[kw.BATCH_CRC_POSITION + 2] ^= 0x10
        self.produce_and_check(topic, flipped_crc, kw.CORRUPT_MESSAGE)

        flipped_value = bytearray(good)
        flipped_value[-4] ^= 0x01  # a byte of the last record's value
        self.produce_and_check(topic, flipped_value, kw.CORRUPT_MESSAGE)

        truncated = bytearray(good[:-3])  # shorter than its length field says
        self.produce_and_check(topic, truncated, kw.CORRUPT_MESSAGE)

        # A good batch followed by a corrupt one: all or nothing.
        self.produce_and_check(topic, good + bytes(flipped_crc), kw.CORRUPT_MESSAGE)

        # Checked by a real client too: nothing stored.
        c = Consumer(kw.assign_only_consumer_conf(self.bs))
        try:
            self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 0),
                                                     timeout=kw.WAIT_S), (0, 0))
            # The intact batch is accepted and reads back through librdkafka.
            self.produce_and_check(topic, good, kw.NONE)
            self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 0),
                                                     timeout=kw.WAIT_S), (0, 5))
            c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            got = []
            while len(got) < 5:
                m = c.poll(kw.WAIT_S)
                self.assertIsNotNone(m, "no message within the wait")
                self.assertIsNone(m.error())
                got.append((m.offset(), m.key(), m.value(), m.headers()))
            self.assertEqual(got, [(i, k, v, h) for i, (k, v, h) in enumerate(records)])
        finally:
            c.close()

    def test_last_offset_delta_disagreeing_with_the_record_count_is_refused(self):
        # Two records claiming an offset range of 1,001 (valid CRC): accepting it would move
        # the log end offset by 1,001. Refused, nothing stored; the honest batch goes in.
        topic = "bad-input-offset-range"
        kw.create_topic(self.bs, topic, 1)
        good = kw.record_batch([(b"k0", b"v0", []), (b"k1", b"v1", [])], 1_700_000_000_000)
        lying = kw.with_header_field(good, kw.BATCH_LAST_OFFSET_DELTA_POSITION, i32(1000))
        self.produce_and_check(topic, lying, kw.INVALID_RECORD)
        self.produce_and_check(topic, good, kw.NONE)
        with kw.Connection(self.bs) as c:
            self.assertEqual(c.list_offsets(topic, 0, -1)[2], 2)

    def test_hand_built_batches_read_by_confluent_kafka(self):
        # The data every test checks, through librdkafka: CRC-32C and varints by hand agree.
        c = Consumer(kw.assign_only_consumer_conf(self.bs, **{"check.crcs": True}))
        try:
            c.assign([TopicPartition(DATA_TOPIC, 0, OFFSET_BEGINNING)])
            got = []
            while len(got) < len(DATA_RECORDS):
                m = c.poll(kw.WAIT_S)
                self.assertIsNotNone(m, "no message within the wait")
                self.assertIsNone(m.error())
                got.append((m.key(), m.value(), m.headers(), m.timestamp()[1]))
            self.assertEqual(got, [(k, v, h, ts) for k, v, h, ts in DATA_RECORDS])
        finally:
            c.close()

    # ---- topic names ----

    def test_invalid_topic_names(self):
        with kw.Connection(self.bs) as c:
            created = c.create_topics([(n, 1, {}) for n in INVALID_TOPIC_NAMES])
            for name in INVALID_TOPIC_NAMES:
                self.assertEqual(created[name][0], kw.INVALID_TOPIC_EXCEPTION, repr(name))
            meta = c.metadata(INVALID_TOPIC_NAMES)["topics"]
            for name in INVALID_TOPIC_NAMES:
                self.assertEqual(meta[name]["error"], kw.INVALID_TOPIC_EXCEPTION, repr(name))
                self.assertEqual(meta[name]["partitions"], [])
            error, _, _, _ = c.produce("bad/name", 0, kw.record_batch([(b"k", b"v", [])]))
            self.assertEqual(error, kw.INVALID_TOPIC_EXCEPTION)
            # None of them was created (Metadata for every topic).
            everything = c.metadata(None)["topics"]
            for name in INVALID_TOPIC_NAMES:
                self.assertNotIn(name, everything)
            # The longest valid name (249 characters) works.
            longest = "b" * 249
            self.assertEqual(c.create_topics([(longest, 1, {})])[longest][0], kw.NONE)
            kw.wait_for_topic(self.bs, longest, 1)


KAFKA_STORAGE_ERROR = 56


class DiskFullTest(unittest.TestCase):
    """A broker whose data dir is a 4 MiB tmpfs, filled by produce requests: every failed
    write answers KAFKA_STORAGE_ERROR, is counted by a metric and logged (rate-limited, with
    the partition and errno); reads go on; once space is freed, writes succeed again."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("mounting a small tmpfs as the data dir needs root")
        cls.mount_point = tempfile.mkdtemp(prefix="ordo-it-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", cls.mount_point],
                           capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(cls.mount_point)
            raise unittest.SkipTest(f"cannot mount a tmpfs: {r.stderr.strip()}")
        cls.addClassCleanup(cls.unmount)
        cls.broker = cls.enterClassContext(kw.Broker(
            ["--set", "offsets.topic.num.partitions=1"],
            data_dir=os.path.join(cls.mount_point, "data")))

    @classmethod
    def unmount(cls):
        subprocess.run(["umount", cls.mount_point], check=True)
        os.rmdir(cls.mount_point)

    def write_errors_metric(self, topic):
        url = f"http://127.0.0.1:{self.broker.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=kw.WAIT_S) as r:
            text = r.read().decode()
        m = re.search(r'^ordo_partition_write_errors_total\{topic="%s",partition="0"\} (\S+)$'
                      % re.escape(topic), text, re.M)
        self.assertIsNotNone(m, text)
        return int(float(m.group(1)))

    def test_full_disk(self):
        topic = "disk-full"
        kw.create_topic(self.broker.bootstrap, topic, 1)
        self.assertEqual(self.write_errors_metric(topic), 0)
        batch = kw.record_batch([(b"k", os.urandom(64 * 1024), [])])
        stored = 0
        started = time.monotonic()
        with kw.Connection(self.broker.bootstrap) as c:
            for _ in range(100):  # 6.4 MiB: more than the 4 MiB the file system has
                error, base, _, _ = c.produce(topic, 0, batch)
                if error != kw.NONE:
                    break
                self.assertEqual(base, stored)
                stored += 1
            self.assertEqual(error, KAFKA_STORAGE_ERROR)
            self.assertGreater(stored, 0)
            failures = 1
            for _ in range(20):  # more failures, rate-limited in the log
                self.assertEqual(c.produce(topic, 0, batch)[0], KAFKA_STORAGE_ERROR)
                failures += 1
            elapsed = time.monotonic() - started
            # Counted, every one.
            self.assertEqual(self.write_errors_metric(topic), failures)
            # Logged with the partition and errno, at most one line per 10 s.
            lines = [line for line in self.broker.log().splitlines()
                     if f"{topic}-0: write failed" in line]
            self.assertGreaterEqual(len(lines), 1, self.broker.log())
            self.assertLessEqual(len(lines), 1 + int(elapsed // 10) + 1, lines)
            self.assertIn("errno 28 (ENOSPC)", lines[0])
            # Reads go on: everything stored reads back, the end offset is where it was.
            self.assertEqual(c.list_offsets(topic, 0, -1), (kw.NONE, -1, stored))
            self.assertEqual(len(kw.parse_batches(c.fetch_all(topic, 0))), stored)
            # Space freed (the file system grows): writes succeed again, after the others.
            subprocess.run(["mount", "-o", "remount,size=64m", self.mount_point], check=True)
            error, base, _, _ = c.produce(topic, 0, batch)
            self.assertEqual((error, base), (kw.NONE, stored))
            self.assertEqual(len(kw.parse_batches(c.fetch_all(topic, 0))), stored + 1)


DESCRIPTOR_LIMIT = 128  # RLIMIT_NOFILE of the broker below (soft and hard)


def _limit_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


class DescriptorLimitTest(unittest.TestCase):
    """A broker started with few descriptors and sent more connections than it can hold: it
    refuses the excess (closes them), logs a bounded number of accept warnings instead of one
    per retry, and serves new clients once descriptors are free again."""

    def test_more_connections_than_descriptors(self):
        with kw.Broker(preexec_fn=_limit_descriptors) as broker:
            conns = []
            try:
                for _ in range(DESCRIPTOR_LIMIT + 100):
                    conns.append(socket.create_connection(("127.0.0.1", broker.port),
                                                          timeout=kw.WAIT_S))
                kw.wait_for_log(broker, lambda text: "accept: " in text)
                # Some of them were closed by the broker (the ones it had no descriptor for).
                refused = 0
                for s in conns:
                    s.settimeout(0.05)
                    try:
                        if s.recv(1) == b"":
                            refused += 1
                    except (socket.timeout, ConnectionResetError):
                        pass
                self.assertGreater(refused, 0)
            finally:
                for s in conns:
                    s.close()
            self.assertTrue(broker.alive(), broker.log())
            # Once the clients are gone, a new one is served (a connection may still be refused
            # while the broker is closing the old ones: retried, bounded).
            error = None
            for _ in range(100):
                try:
                    with kw.Connection(broker.bootstrap) as c:
                        error, _ = c.api_versions()
                        break
                except (kw.ConnectionClosed, ConnectionError):
                    time.sleep(0.1)
            self.assertEqual(error, kw.NONE, broker.log()[-2000:])
            # A handful of warning lines, not one per failed accept (the broker retried at once
            # and logged millions of lines before).
            warnings = [line for line in broker.log().splitlines() if "accept: " in line]
            self.assertGreaterEqual(len(warnings), 1)
            self.assertLessEqual(len(warnings), 10, warnings[:20])
            self.assertIn("pending connections closed", warnings[0])


if __name__ == "__main__":
    unittest.main()
