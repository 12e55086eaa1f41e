"""confluent-kafka-python (librdkafka) against the broker: topic administration, a producer
with keys, headers and explicit timestamps (acks=all, not idempotent), consumers with assign()
(no consumer groups: the broker has no group APIs yet), watermarks, offsets by time, the
read_committed isolation level and a LogAppendTime topic."""

import time
import unittest

from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME,
                             Consumer, KafkaError, KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource, NewPartitions,
                                   NewTopic)

import kafka_wire as kw

DATA_TOPIC = "ck-data"
DATA_PARTITIONS = 3
DATA_MESSAGES = 3000
BASE_TS = 1_600_000_000_000


def data_timestamp(i):
    # Increasing overall, with small steps back now and then (CreateTime is the producer's
    # choice and need not be monotonic).
    return BASE_TS + 10 * i + ((i * 7919) % 5 - 2) * 7


def data_headers(i):
    return [("seq", str(i).encode()), ("dup", b"first"), ("dup", b"second"), ("empty", b"")]


class ConfluentKafkaTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Several shards and network threads, and small segments, so that partitions live on
        # different writer threads and the data (and offsets by time) spans segments.
        cls.broker = cls.enterClassContext(kw.Broker(
            ["--shards", "3", "--network-threads", "2", "--set", "log.segment.bytes=65536"]))
        cls.bs = cls.broker.bootstrap
        cls.errors = []  # error_cb reports of every client
        kw.create_topic(cls.bs, DATA_TOPIC, DATA_PARTITIONS)
        cls.produced, cls.delivered = cls.produce_data()

    # ---- clients ----

    @classmethod
    def client_conf(cls, **extra):
        conf = {"bootstrap.servers": cls.bs, "error_cb": cls.errors.append}
        conf.update(extra)
        return conf

    @classmethod
    def producer(cls, **extra):
        return Producer(cls.client_conf(**{"acks": "all", "enable.idempotence": False,
                                           "linger.ms": 5, **extra}))

    @classmethod
    def consumer(cls, **extra):
        return Consumer(kw.assign_only_consumer_conf(cls.bs, error_cb=cls.errors.append,
                                                     **extra))

    @classmethod
    def admin(cls):
        return AdminClient(cls.client_conf())

    @classmethod
    def produce_data(cls):
        """DATA_MESSAGES keyed messages with headers and explicit timestamps."""
        p = cls.producer()
        delivered = {}  # value -> (partition, offset, timestamp) from the delivery report
        failures = []

        def on_delivery(err, msg):
            if err is not None:
                failures.append(err)
            else:
                delivered[msg.value()] = (msg.partition(), msg.offset(), msg.timestamp())

        produced = []
        for i in range(DATA_MESSAGES):
            key, value = f"key-{i % 23}".encode(), f"value-{i:05d}".encode()
            produced.append((key, value))
            p.produce(DATA_TOPIC, key=key, value=value, headers=data_headers(i),
                      timestamp=data_timestamp(i), on_delivery=on_delivery)
            p.poll(0)
        remaining = p.flush(kw.WAIT_S)
        assert remaining == 0, f"{remaining} messages not delivered"
        assert not failures, f"delivery failures: {failures[:5]}"
        return produced, delivered

    def consume(self, consumer, count, timeout=kw.WAIT_S):
        """Polls until count messages arrived; fails on a consumer error."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=1000, timeout=0.1):
                if m.error():
                    self.fail(f"consumer error: {m.error()}")
                out.append(m)
        self.assertEqual(len(out), count, "messages read back")
        return out

    def read_data(self, **extra):
        c = self.consumer(**extra)
        try:
            c.assign([TopicPartition(DATA_TOPIC, p, OFFSET_BEGINNING)
                      for p in range(DATA_PARTITIONS)])
            return self.consume(c, DATA_MESSAGES)
        finally:
            c.close()

    def assert_kafka_error(self, future, code):
        with self.assertRaises(KafkaException) as cm:
            future.result()
        self.assertEqual(cm.exception.args[0].code(), code, cm.exception)

    # ---- tests ----

    def test_admin_topic_lifecycle(self):
        a = self.admin()
        topic = "ck-admin"
        configs = {"retention.ms": "3600000", "segment.bytes": "1048576",
                   "cleanup.policy": "delete"}
        a.create_topics([NewTopic(topic, 2, 1, config=configs)])[topic].result()
        kw.wait_for_topic(self.bs, topic, 2)

        # Invalid requests are refused with the Kafka error codes.
        self.assert_kafka_error(a.create_topics([NewTopic(topic, 1, 1)])[topic],
                                KafkaError.TOPIC_ALREADY_EXISTS)
        self.assert_kafka_error(a.create_topics([NewTopic("ck-rf3", 1, 3)])["ck-rf3"],
                                KafkaError.INVALID_REPLICATION_FACTOR)
        self.assert_kafka_error(
            a.create_topics([NewTopic("ck-badcfg", 1, 1, config={"retention.ms": "soon"})])[
                "ck-badcfg"], KafkaError.INVALID_CONFIG)
        a.create_topics([NewTopic("ck-validate-only", 1, 1)],
                        validate_only=True)["ck-validate-only"].result()
        topics = a.list_topics(timeout=kw.WAIT_S).topics
        self.assertNotIn("ck-rf3", topics)
        self.assertNotIn("ck-badcfg", topics)
        self.assertNotIn("ck-validate-only", topics)

        # Describe: the explicit configs as dynamic topic configs, the rest as defaults.
        resource = ConfigResource("topic", topic)
        described = a.describe_configs([resource])[resource].result()
        for name, value in configs.items():
            self.assertEqual(described[name].value, value, name)
            self.assertEqual(described[name].source, ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                             name)
            self.assertFalse(described[name].is_default, name)
        self.assertEqual(described["message.timestamp.type"].value, "CreateTime")
        self.assertEqual(described["message.timestamp.type"].source,
                         ConfigSource.DEFAULT_CONFIG.value)
        self.assertTrue(described["message.timestamp.type"].is_default)

        # More partitions; fewer are refused.
        a.create_partitions([NewPartitions(topic, 4)])[topic].result()
        kw.wait_for_topic(self.bs, topic, 4)
        self.assertEqual(len(a.list_topics(topic, timeout=kw.WAIT_S).topics[topic].partitions),
                         4)
        self.assert_kafka_error(a.create_partitions([NewPartitions(topic, 3)])[topic],
                                KafkaError.INVALID_PARTITIONS)
        p = self.producer()
        p.produce(topic, value=b"in the new partition", partition=3)
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        c = self.consumer()
        self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 3), timeout=kw.WAIT_S),
                         (0, 1))

        # Delete; a second delete does not find it; the name can be used again, empty.
        a.delete_topics([topic])[topic].result()
        deadline = time.monotonic() + kw.WAIT_S
        while topic in a.list_topics(timeout=kw.WAIT_S).topics and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertNotIn(topic, a.list_topics(timeout=kw.WAIT_S).topics)
        self.assert_kafka_error(a.delete_topics([topic])[topic],
                                KafkaError.UNKNOWN_TOPIC_OR_PART)
        a.create_topics([NewTopic(topic, 1, 1)])[topic].result()
        kw.wait_for_topic(self.bs, topic, 1)
        self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 0), timeout=kw.WAIT_S),
                         (0, 0))
        described = a.describe_configs([resource])[resource].result()
        self.assertTrue(described["retention.ms"].is_default, "configs of the deleted topic")
        c.close()

    def test_consumer_reads_everything_back(self):
        messages = self.read_data()
        consumed = [(m.partition(), m.offset(), m.key(), m.value()) for m in messages]
        kw.check_partitioned_stream(self, self.produced, consumed)
        for m in messages:
            i = int(m.value().decode().split("-")[1])
            self.assertEqual(m.headers(), data_headers(i), f"headers of message {i}")
            self.assertEqual(m.timestamp(), (TIMESTAMP_CREATE_TIME, data_timestamp(i)))
            # Where the delivery report said it went.
            self.assertEqual(self.delivered[m.value()],
                             (m.partition(), m.offset(), m.timestamp()))

    def test_read_committed_consumer(self):
        messages = self.read_data(**{"isolation.level": "read_committed"})
        consumed = [(m.partition(), m.offset(), m.key(), m.value()) for m in messages]
        kw.check_partitioned_stream(self, self.produced, consumed)

    def test_watermarks(self):
        per_partition = {}
        for p, _, _ in self.delivered.values():
            per_partition[p] = per_partition.get(p, 0) + 1
        c = self.consumer()
        try:
            for p in range(DATA_PARTITIONS):
                self.assertEqual(c.get_watermark_offsets(TopicPartition(DATA_TOPIC, p),
                                                         timeout=kw.WAIT_S),
                                 (0, per_partition.get(p, 0)))
        finally:
            c.close()

    def test_offsets_for_times(self):
        # Per partition, (offset, timestamp) in offset order, from the delivery reports.
        records = {p: [] for p in range(DATA_PARTITIONS)}
        for p, o, (_, ts) in sorted(self.delivered.values()):
            records[p].append((o, ts))
        all_ts = sorted(ts for rs in records.values() for _, ts in rs)
        targets = [0, all_ts[0] - 1, all_ts[0], all_ts[-1], all_ts[-1] + 1]
        for k in range(1, 40):
            ts = all_ts[k * len(all_ts) // 40]
            targets += [ts - 1, ts, ts + 1]
        c = self.consumer()
        try:
            for target in targets:
                got = c.offsets_for_times(
                    [TopicPartition(DATA_TOPIC, p, target) for p in range(DATA_PARTITIONS)],
                    timeout=kw.WAIT_S)
                for tp in got:
                    self.assertIsNone(tp.error)
                    want = kw.expected_offset_for_time(records[tp.partition], target)
                    self.assertEqual(tp.offset, -1 if want is None else want,
                                     f"partition {tp.partition}, timestamp {target}")
        finally:
            c.close()

    def test_log_append_time_topic(self):
        topic = "ck-log-append-time"
        a = self.admin()
        a.create_topics([NewTopic(topic, 1, 1,
                                  config={"message.timestamp.type": "LogAppendTime"})])[
            topic].result()
        kw.wait_for_topic(self.bs, topic, 1)
        reports = []
        p = self.producer()
        before = int(time.time() * 1000)
        for i in range(50):
            p.produce(topic, value=b"%d" % i, timestamp=1000 + i,
                      on_delivery=lambda err, msg: reports.append((err, msg.timestamp())))
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        after = int(time.time() * 1000)
        for err, (ts_type, ts) in reports:
            self.assertIsNone(err)
            self.assertEqual(ts_type, TIMESTAMP_LOG_APPEND_TIME)
            self.assertTrue(before <= ts <= after, f"delivery timestamp {ts}")

        c = self.consumer()
        try:
            c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            messages = self.consume(c, 50)
            self.assertEqual([m.value() for m in messages], [b"%d" % i for i in range(50)])
            for m in messages:
                ts_type, ts = m.timestamp()
                self.assertEqual(ts_type, TIMESTAMP_LOG_APPEND_TIME)
                self.assertTrue(before <= ts <= after, f"broker timestamp {ts}")
            # Offsets by time use the broker's timestamps, not the producer's.
            first = c.offsets_for_times([TopicPartition(topic, 0, 1000)], timeout=kw.WAIT_S)[0]
            self.assertEqual(first.offset, 0)
            none = c.offsets_for_times([TopicPartition(topic, 0, after + 1)],
                                       timeout=kw.WAIT_S)[0]
            self.assertEqual(none.offset, -1)
        finally:
            c.close()

    def test_batch_larger_than_max_message_bytes(self):
        topic = "ck-small-messages"
        a = self.admin()
        a.create_topics([NewTopic(topic, 1, 1, config={"max.message.bytes": "1000"})])[
            topic].result()
        kw.wait_for_topic(self.bs, topic, 1)
        results = {}
        p = self.producer(**{"linger.ms": 0})
        for size in (100, 1500, 5000):  # one batch each: value plus ~70 bytes of framing
            p.produce(topic, value=b"x" * size,
                      on_delivery=lambda err, msg, size=size: results.__setitem__(size, err))
            self.assertEqual(p.flush(kw.WAIT_S), 0)
        self.assertIsNone(results[100])
        # Kafka answers MESSAGE_TOO_LARGE (10) however far over the limit a batch is.
        for size in (1500, 5000):
            self.assertIsNotNone(results[size], f"{size} bytes accepted")
            self.assertEqual(results[size].code(), KafkaError.MSG_SIZE_TOO_LARGE,
                             f"{size} bytes: {results[size]}")
        c = self.consumer()
        try:
            self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 0),
                                                     timeout=kw.WAIT_S), (0, 1))
        finally:
            c.close()

    def test_fetch_max_bytes_bounds_the_response(self):
        # librdkafka refuses a response larger than receive.message.max.bytes: with
        # max.partition.fetch.bytes far above fetch.max.bytes, a response holding a whole
        # partition's ~900 KiB messages stalled the consumer for good. The broker keeps the
        # response within fetch.max.bytes (the first batch excepted) and the consumer reads all.
        topic = "ck-large-messages"
        partitions, per_partition, size = 3, 3, 900 * 1024
        a = self.admin()
        # One segment per partition: this module's brokers roll at 64 KiB, and a read never
        # spans segments.
        a.create_topics([NewTopic(topic, partitions, 1,
                                  config={"segment.bytes": str(64 << 20)})])[topic].result()
        kw.wait_for_topic(self.bs, topic, partitions)
        p = self.producer(**{"linger.ms": 0})
        for part in range(partitions):
            for i in range(per_partition):
                p.produce(topic, partition=part, key=b"%d-%d" % (part, i),
                          value=bytes([part * per_partition + i]) * size)
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        c = self.consumer(**{"fetch.max.bytes": 1000000,
                             "max.partition.fetch.bytes": 20000000,
                             "receive.message.max.bytes": 1000512})
        try:
            c.assign([TopicPartition(topic, part, OFFSET_BEGINNING)
                      for part in range(partitions)])
            messages = self.consume(c, partitions * per_partition)
            got = sorted((m.partition(), m.offset(), m.key(), m.value()) for m in messages)
            self.assertEqual(got, [(part, i, b"%d-%d" % (part, i),
                                    bytes([part * per_partition + i]) * size)
                                   for part in range(partitions) for i in range(per_partition)])
        finally:
            c.close()

    # Every topic config of Kafka 3.9, each set to a valid value other than its default (the
    # ones Ordo acts on, to values that leave a test topic usable).
    ALL_TOPIC_CONFIGS = {
        "cleanup.policy": "delete",
        "compression.gzip.level": "5",
        "compression.lz4.level": "10",
        "compression.type": "gzip",
        "compression.zstd.level": "7",
        "delete.retention.ms": "3600000",
        "file.delete.delay.ms": "1000",
        "flush.messages": "1000",
        "flush.ms": "2000",
        "follower.replication.throttled.replicas": "0:0,1:0",
        "index.interval.bytes": "8192",
        "leader.replication.throttled.replicas": "*",
        "local.retention.bytes": "-1",
        "local.retention.ms": "-1",
        "max.compaction.lag.ms": "86400000",
        "max.message.bytes": "2000000",
        "message.downconversion.enable": "false",
        "message.format.version": "2.8-IV1",
        "message.timestamp.after.max.ms": "3600000",
        "message.timestamp.before.max.ms": "86400000000",
        "message.timestamp.difference.max.ms": "86400000000",
        "message.timestamp.type": "CreateTime",
        "min.cleanable.dirty.ratio": "0.3",
        "min.compaction.lag.ms": "1000",
        "min.insync.replicas": "1",
        "preallocate": "true",
        "remote.log.copy.disable": "true",
        "remote.log.delete.on.disable": "true",
        "remote.storage.enable": "false",
        "retention.bytes": "1073741824",
        "retention.ms": "86400000",
        "segment.bytes": "1048576",
        "segment.index.bytes": "1048576",
        "segment.jitter.ms": "100",
        "segment.ms": "3600000",
        "unclean.leader.election.enable": "true",
    }

    def test_every_kafka_topic_config_is_accepted_and_described(self):
        a = self.admin()
        topic = "ck-all-configs"
        a.create_topics([NewTopic(topic, 1, 1, config=self.ALL_TOPIC_CONFIGS)])[topic].result()
        kw.wait_for_topic(self.bs, topic, 1)
        resource = ConfigResource("topic", topic)
        described = a.describe_configs([resource])[resource].result()
        for name, value in self.ALL_TOPIC_CONFIGS.items():
            self.assertIn(name, described)
            self.assertEqual(described[name].value, value, name)
            self.assertEqual(described[name].source, ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
                             name)
        # A topic without them reports Kafka's defaults.
        plain = "ck-default-configs"
        a.create_topics([NewTopic(plain, 1, 1)])[plain].result()
        resource = ConfigResource("topic", plain)
        described = a.describe_configs([resource])[resource].result()
        for name in self.ALL_TOPIC_CONFIGS:
            self.assertTrue(described[name].is_default, name)
        self.assertEqual(described["compression.type"].value, "producer")
        self.assertEqual(described["segment.index.bytes"].value, "10485760")
        self.assertEqual(described["unclean.leader.election.enable"].value, "false")
        # The topic works: a message goes in and comes back (stored with gzip).
        p = self.producer()
        p.produce(topic, value=b"configured")
        self.assertEqual(p.flush(kw.WAIT_S), 0)
        with kw.Connection(self.bs) as conn:
            batches = kw.parse_batches(conn.fetch_all(topic, 0))
        self.assertEqual([b["compression"] for b in batches], [1])

        # A bad value of each type is refused with INVALID_CONFIG; nothing is created.
        bad = {"compression.type": "brotli", "compression.gzip.level": "0",
               "compression.zstd.level": "23", "flush.messages": "0",
               "leader.replication.throttled.replicas": "0:x", "local.retention.ms": "-3",
               "message.downconversion.enable": "yes", "message.format.version": "latest",
               "message.timestamp.after.max.ms": "-1", "preallocate": "1",
               "remote.storage.enable": "true", "segment.index.bytes": "2",
               "segment.jitter.ms": "soon"}
        for i, (name, value) in enumerate(sorted(bad.items())):
            t = f"ck-bad-config-{i}"
            self.assert_kafka_error(a.create_topics([NewTopic(t, 1, 1, config={name: value})])[t],
                                    KafkaError.INVALID_CONFIG)
            self.assertNotIn(t, a.list_topics(timeout=kw.WAIT_S).topics)

    def stored_codecs(self, topic, partition=0):
        with kw.Connection(self.bs) as conn:
            batches = kw.parse_batches(conn.fetch_all(topic, partition))
        self.assertTrue(all(b["crc_ok"] for b in batches))
        return [b["compression"] for b in batches], sum(b["record_count"] for b in batches)

    def test_compression_type_recompresses_produced_batches(self):
        a = self.admin()
        values = [b"value %d " % i + b"x" * (i % 50) for i in range(400)]
        # (topic's compression.type, producer's codec, codec of every stored batch)
        cases = [("zstd", "none", 4), ("uncompressed", "gzip", 0), ("lz4", "snappy", 3),
                 ("producer", "gzip", 1)]
        for topic_codec, producer_codec, stored in cases:
            topic = f"ck-compression-{topic_codec}"
            a.create_topics([NewTopic(topic, 1, 1,
                                      config={"compression.type": topic_codec})])[topic].result()
            kw.wait_for_topic(self.bs, topic, 1)
            p = self.producer(**{"compression.codec": producer_codec, "linger.ms": 20})
            for v in values:
                p.produce(topic, key=v[:9], value=v, timestamp=BASE_TS)
            self.assertEqual(p.flush(kw.WAIT_S), 0)
            codecs, records = self.stored_codecs(topic)
            self.assertEqual(records, len(values), topic)
            if topic_codec == "producer":
                # As sent: librdkafka sends a batch plain when compressing does not shrink it.
                self.assertIn(stored, codecs, topic)
                self.assertLessEqual(set(codecs), {0, stored}, topic)
            else:
                self.assertEqual(set(codecs), {stored}, f"{topic}: stored codecs {codecs}")
            c = self.consumer()
            try:
                c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
                messages = self.consume(c, len(values))
                self.assertEqual([m.value() for m in messages], values, topic)
                self.assertEqual([m.key() for m in messages], [v[:9] for v in values], topic)
                self.assertEqual([m.offset() for m in messages], list(range(len(values))))
                self.assertEqual({m.timestamp() for m in messages},
                                 {(TIMESTAMP_CREATE_TIME, BASE_TS)})
            finally:
                c.close()

    def test_timestamp_limits_refuse_records_out_of_range(self):
        topic = "ck-timestamp-limits"
        a = self.admin()
        a.create_topics([NewTopic(topic, 1, 1, config={
            "message.timestamp.before.max.ms": "3600000",
            "message.timestamp.after.max.ms": "60000"})])[topic].result()
        kw.wait_for_topic(self.bs, topic, 1)
        now = int(time.time() * 1000)
        results = {}
        p = self.producer(**{"linger.ms": 0})
        for name, ts in (("now", now), ("old", now - 7200_000), ("future", now + 600_000),
                         ("recent", now - 60_000)):
            p.produce(topic, value=name.encode(), timestamp=ts,
                      on_delivery=lambda err, msg, name=name: results.__setitem__(name, err))
            self.assertEqual(p.flush(kw.WAIT_S), 0)
        self.assertIsNone(results["now"])
        self.assertIsNone(results["recent"])
        for name in ("old", "future"):
            self.assertIsNotNone(results[name], name)
            self.assertEqual(results[name].code(), KafkaError.INVALID_TIMESTAMP, name)
        c = self.consumer()
        try:
            self.assertEqual(c.get_watermark_offsets(TopicPartition(topic, 0),
                                                     timeout=kw.WAIT_S), (0, 2))
        finally:
            c.close()

    def tearDown(self):
        # What librdkafka reported through error_cb during the test (connection failures and
        # the like): nothing is expected.
        errors, self.errors[:] = list(self.errors), []
        self.assertEqual(errors, [], "client errors")


if __name__ == "__main__":
    unittest.main()
