"""kafka-python 2.0.2 (pure Python) against the broker: version detection, topic
administration, compressed produce, consumers with assign() + seek_to_beginning, end offsets
and offsets by time."""

import time
import unittest

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition, codec
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import (InvalidPartitionsError, TopicAlreadyExistsError,
                          UnknownTopicOrPartitionError)

import kafka_wire as kw

BASE_TS = 1_650_000_000_000
CODEC_IDS = {"gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
# What kafka-python compresses a batch's records with.
ENCODERS = {"gzip": codec.gzip_encode, "snappy": codec.snappy_encode, "lz4": codec.lz4_encode,
            "zstd": codec.zstd_encode}


def timestamp(i):
    # Mostly increasing, with some steps back.
    return BASE_TS + 5 * i - (i % 4 == 3) * 12


class KafkaPythonTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker())
        cls.bs = cls.broker.bootstrap

    def admin(self):
        a = KafkaAdminClient(bootstrap_servers=self.bs, request_timeout_ms=kw.WAIT_S * 1000)
        self.addCleanup(a.close)
        return a

    def producer(self, **extra):
        p = KafkaProducer(bootstrap_servers=self.bs, acks="all", linger_ms=5,
                          request_timeout_ms=kw.WAIT_S * 1000, **extra)
        self.addCleanup(p.close)
        return p

    def consumer(self):
        c = KafkaConsumer(bootstrap_servers=self.bs, group_id=None, enable_auto_commit=False,
                          request_timeout_ms=kw.WAIT_S * 1000 + 1000)
        self.addCleanup(c.close)
        return c

    def produce(self, topic, count, **producer_args):
        """count keyed messages with headers and explicit timestamps; returns what was sent,
        (key, value), and each value's (partition, offset) from the producer's metadata."""
        p = self.producer(**producer_args)
        sent, futures = [], []
        for i in range(count):
            key, value = f"k{i % 29}".encode(), f"{topic}-{i:05d}".encode()
            sent.append((key, value))
            futures.append(p.send(topic, key=key, value=value, timestamp_ms=timestamp(i),
                                  headers=[("i", str(i).encode()), ("h", b"")]))
        p.flush(timeout=kw.WAIT_S)
        placed = {}
        for (_, value), f in zip(sent, futures):
            md = f.get(timeout=kw.WAIT_S)
            placed[value] = (md.partition, md.offset)
        return sent, placed

    def read_all(self, topic, partitions, count):
        c = self.consumer()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + kw.WAIT_S
        while len(out) < count and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                out.extend(records)
        self.assertEqual(len(out), count, "messages read back")
        return c, sorted(out, key=lambda r: (r.partition, r.offset))

    def roundtrip(self, codec, topic, count=2000, partitions=3):
        kw.create_topic(self.bs, topic, partitions)
        args = {} if codec is None else {"compression_type": codec}
        sent, placed = self.produce(topic, count, **args)
        c, records = self.read_all(topic, partitions, count)
        kw.check_partitioned_stream(self, sent,
                                    [(r.partition, r.offset, r.key, r.value) for r in records])
        for r in records:
            i = int(r.value.decode().rsplit("-", 1)[1])
            self.assertEqual(placed[r.value], (r.partition, r.offset))
            self.assertEqual(r.headers, [("i", str(i).encode()), ("h", b"")])
            self.assertEqual((r.timestamp_type, r.timestamp), (0, timestamp(i)))
        ends = c.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        counts = {p: sum(1 for r in records if r.partition == p) for p in range(partitions)}
        self.assertEqual({tp.partition: o for tp, o in ends.items()}, counts)
        begins = c.beginning_offsets([TopicPartition(topic, p) for p in range(partitions)])
        self.assertEqual(set(begins.values()), {0})

        # Stored as v2 record batches, compressed as sent: as asked, except that kafka-python
        # sends a batch uncompressed when the codec would not make it smaller (a batch of one
        # or two records, which happens or not depending on timing).
        with kw.Connection(self.bs) as w:
            for p in range(partitions):
                for b in kw.parse_batches(w.fetch_all(topic, p)):
                    self.assertEqual(b["magic"], 2)
                    self.assertTrue(b["crc_ok"])
                    want = CODEC_IDS.get(codec, 0)
                    if want and b["compression"] == 0:
                        self.assertGreaterEqual(len(ENCODERS[codec](b["body"])), len(b["body"]),
                                                f"an uncompressed batch of {b['record_count']} "
                                                f"records that {codec} would have shrunk")
                    else:
                        self.assertEqual(b["compression"], want)
        return c, records

    def check_offsets_for_times(self, c, topic, records, partitions):
        by_partition = {p: [(r.offset, r.timestamp) for r in records if r.partition == p]
                        for p in range(partitions)}
        all_ts = sorted(r.timestamp for r in records)
        targets = [0, all_ts[0], all_ts[-1], all_ts[-1] + 1]
        for k in range(1, 25):
            ts = all_ts[k * len(all_ts) // 25]
            targets += [ts - 1, ts, ts + 1]
        for target in targets:
            got = c.offsets_for_times({TopicPartition(topic, p): target
                                       for p in range(partitions)})
            for tp, found in got.items():
                want = kw.expected_offset_for_time(by_partition[tp.partition], target)
                self.assertEqual(None if found is None else found.offset, want,
                                 f"partition {tp.partition}, timestamp {target}")
                if found is not None:
                    self.assertEqual(found.timestamp,
                                     dict(by_partition[tp.partition])[found.offset])

    # ---- tests ----

    def test_detects_record_batch_support(self):
        # kafka-python guesses the broker's version from ApiVersions; (0, 11) and later mean
        # it sends and expects v2 record batches.
        p = self.producer()
        self.assertGreaterEqual(p.config["api_version"], (0, 11))
        c = self.consumer()
        self.assertGreaterEqual(c.config["api_version"], (0, 11))

    def test_admin_create_describe_partitions_delete(self):
        a = self.admin()
        topic = "kp-admin"
        a.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "7200000",
                                                              "max.message.bytes": "500000"})])
        kw.wait_for_topic(self.bs, topic, 2)
        with self.assertRaises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(topic, 2, 1)])
        self.assertIn(topic, a.list_topics())

        (resp,) = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        (resource,) = resp.resources
        error_code, _, _, name, entries = resource
        self.assertEqual((error_code, name), (0, topic))
        configs = {e[0]: (e[1], e[3]) for e in entries}  # name -> (value, source)
        self.assertEqual(configs["retention.ms"], ("7200000", 1))
        self.assertEqual(configs["max.message.bytes"], ("500000", 1))
        self.assertEqual(configs["cleanup.policy"], ("delete", 5))

        a.create_partitions({topic: NewPartitions(5)})
        kw.wait_for_topic(self.bs, topic, 5)
        c = self.consumer()
        self.assertEqual(c.partitions_for_topic(topic), set(range(5)))
        with self.assertRaises(InvalidPartitionsError):
            a.create_partitions({topic: NewPartitions(2)})

        a.delete_topics([topic])
        self.assertNotIn(topic, a.list_topics())
        with self.assertRaises(UnknownTopicOrPartitionError):
            a.delete_topics([topic])

    def test_uncompressed_roundtrip_and_offsets_for_times(self):
        c, records = self.roundtrip(None, "kp-plain", partitions=2)
        self.check_offsets_for_times(c, "kp-plain", records, 2)

    def test_gzip_roundtrip(self):
        self.roundtrip("gzip", "kp-gzip")

    def test_snappy_roundtrip(self):
        self.roundtrip("snappy", "kp-snappy")

    def test_lz4_roundtrip(self):
        self.roundtrip("lz4", "kp-lz4")

    def test_zstd_roundtrip(self):
        self.roundtrip("zstd", "kp-zstd")

    def test_offsets_for_times_inside_compressed_batches(self):
        # Kafka answers ListOffsets by time with the first *record* whose timestamp is >= the
        # target, decompressing the batch when needed; so must Ordo.
        c, records = self.roundtrip("gzip", "kp-gzip-times", count=600, partitions=1)
        self.check_offsets_for_times(c, "kp-gzip-times", records, 1)


if __name__ == "__main__":
    unittest.main()
