"""kcat (librdkafka 2.x) against the broker: metadata, keyed produce and consume with every
codec, headers and timestamps in the consumer's output format."""

import json
import shutil
import subprocess
import time
import unittest

import kafka_wire as kw

KCAT = shutil.which("kcat") or "kcat"
MESSAGES = 10_000
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


class KcatTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = cls.enterClassContext(kw.Broker())
        cls.bs = cls.broker.bootstrap

    def kcat(self, *args, input=None):
        r = subprocess.run([KCAT, "-b", self.bs, *args], input=input, capture_output=True,
                           text=True, timeout=2 * kw.WAIT_S)
        self.assertEqual(r.returncode, 0, f"kcat {' '.join(args)}: {r.stderr}")
        return r.stdout

    def produce(self, topic, lines, *args):
        self.kcat("-P", "-t", topic, "-X", "acks=all", *args, input="".join(lines))

    def consume(self, topic, fmt):
        return self.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-f", fmt)

    def test_consume_from_a_timestamp(self):
        # kcat -o s@TS starts at the first record whose timestamp is >= TS (ListOffsets by
        # time). The records are written with chosen timestamps through the wire helpers,
        # since kcat cannot set them when producing: three batches, 1000 ms apart, of five
        # records 10 ms apart each.
        topic = "kcat-times"
        kw.create_topic(self.bs, topic, 1)
        base = int(time.time() * 1000) - 60_000
        with kw.Connection(self.bs) as conn:
            for b in range(3):
                records = [(None, f"t{b}-{i}".encode(), (), base + b * 1000 + i * 10)
                           for i in range(5)]
                error_code, base_offset, _, _ = conn.produce(
                    topic, 0, kw.record_batch(records, base + b * 1000))
                self.assertEqual((error_code, base_offset), (0, 5 * b))
        def from_ts(ts):
            out = self.kcat("-C", "-t", topic, "-o", f"s@{ts}", "-e", "-f", "%o %T %s\n")
            return [line.split() for line in out.splitlines() if line]
        got = from_ts(base + 1000 + 25)  # inside the second batch: its 4th record
        self.assertEqual(got[0], ["8", str(base + 1000 + 30), "t1-3"])
        self.assertEqual(len(got), 7)
        self.assertEqual(from_ts(base - 1)[0][0], "0")
        self.assertEqual(from_ts(base + 2000)[0], ["10", str(base + 2000), "t2-0"])

    def test_metadata_lists_broker_and_topics(self):
        kw.create_topic(self.bs, "kcat-meta-three", 3)
        kw.create_topic(self.bs, "kcat-meta-one", 1)

        text = self.kcat("-L")
        self.assertIn(f"broker 0 at {self.bs}", text)
        self.assertIn('topic "kcat-meta-three" with 3 partitions', text)
        self.assertIn('topic "kcat-meta-one" with 1 partitions', text)

        meta = json.loads(self.kcat("-L", "-J"))
        self.assertEqual(meta["brokers"], [{"id": 0, "name": self.bs}])
        self.assertEqual(meta["controllerid"], 0)
        topics = {t["topic"]: t for t in meta["topics"]}
        self.assertIn("kcat-meta-one", topics)
        parts = sorted(topics["kcat-meta-three"]["partitions"], key=lambda p: p["partition"])
        self.assertEqual([p["partition"] for p in parts], [0, 1, 2])
        for p in parts:
            self.assertEqual(p["leader"], 0)
            self.assertEqual(p["replicas"], [{"id": 0}])
            self.assertEqual(p["isrs"], [{"id": 0}])
            self.assertNotIn("error", p)

        # One topic only.
        one = json.loads(self.kcat("-L", "-J", "-t", "kcat-meta-one"))
        self.assertEqual([t["topic"] for t in one["topics"]], ["kcat-meta-one"])

    def roundtrip(self, codec, topic=None, messages=MESSAGES):
        """Produces keyed messages with the codec, reads them back and checks them; returns
        the set of compression codecs of the batches the broker stored."""
        topic = topic or f"kcat-keyed-{codec}"
        kw.create_topic(self.bs, topic, 3)
        # 37 keys spread over the 3 partitions; values carry their produce position and vary
        # in size so that batches differ.
        produced = [(f"key-{i % 37}", f"{codec}-{i:05d}-{'x' * (i % 61)}")
                    for i in range(messages)]
        args = ["-K:"] + ([] if codec == "none" else ["-z", codec])
        self.produce(topic, [f"{k}:{v}\n" for k, v in produced], *args)

        consumed = []
        for line in self.consume(topic, "%p\t%o\t%k\t%s\n").splitlines():
            p, o, k, v = line.split("\t")
            consumed.append((int(p), int(o), k, v))
        by_partition = kw.check_partitioned_stream(self, produced, consumed)
        self.assertEqual(len(by_partition), 3, "37 keys should land in all 3 partitions")

        # What the broker stored: v2 batches with valid CRCs holding every message.
        codecs = set()
        with kw.Connection(self.bs) as c:
            for p in range(3):
                batches = kw.parse_batches(c.fetch_all(topic, p))
                self.assertEqual(sum(b["record_count"] for b in batches),
                                 len(by_partition[p]))
                for b in batches:
                    self.assertEqual(b["magic"], 2)
                    self.assertTrue(b["crc_ok"])
                    codecs.add(b["compression"])
        return codecs

    def check_compressed_with(self, codecs, codec):
        # librdkafka sends a batch uncompressed when compressing does not make it smaller, so
        # some batches may be plain; the rest use the codec asked for.
        self.assertIn(CODEC_IDS[codec], codecs, "no batch was compressed with " + codec)
        self.assertLessEqual(codecs, {0, CODEC_IDS[codec]})

    def test_keyed_roundtrip_uncompressed(self):
        self.assertEqual(self.roundtrip("none"), {0})

    def test_keyed_roundtrip_gzip(self):
        self.check_compressed_with(self.roundtrip("gzip"), "gzip")

    def test_keyed_roundtrip_snappy(self):
        self.check_compressed_with(self.roundtrip("snappy"), "snappy")

    def test_keyed_roundtrip_lz4(self):
        # The messages must come back whatever librdkafka did with the codec (see below).
        self.assertLessEqual(self.roundtrip("lz4"), {0, CODEC_IDS["lz4"]})

    def test_lz4_is_really_used(self):
        # librdkafka enables LZ4 only when the broker advertises FindCoordinator v0
        # (rdkafka_feature.c: RD_KAFKA_FEATURE_LZ4 depends on FindCoordinator 0..0, as a
        # marker of Kafka >= 0.8.2); without it kcat sends plain batches.
        self.check_compressed_with(self.roundtrip("lz4", "kcat-lz4-used", 2000), "lz4")

    def test_keyed_roundtrip_zstd(self):
        self.check_compressed_with(self.roundtrip("zstd"), "zstd")

    def test_headers_and_timestamps_in_consumer_format(self):
        topic = "kcat-headers"
        kw.create_topic(self.bs, topic, 1)
        before = int(time.time() * 1000)
        self.produce(topic, [f"k{i}:v{i}\n" for i in range(20)], "-K:", "-H", "trace=abc-123",
                     "-H", "empty=", "-H", "trace=again")
        after = int(time.time() * 1000)

        lines = self.consume(topic, "%o|%k|%s|%T|%h\n").splitlines()
        self.assertEqual(len(lines), 20)
        for i, line in enumerate(lines):
            o, k, v, ts, h = line.split("|")
            self.assertEqual((int(o), k, v), (i, f"k{i}", f"v{i}"))
            self.assertEqual(h, "trace=abc-123,empty=,trace=again")
            self.assertTrue(before - 1 <= int(ts) <= after + 1, f"timestamp {ts}")

        for i, line in enumerate(self.kcat("-C", "-t", topic, "-o", "beginning", "-e",
                                           "-J").splitlines()):
            m = json.loads(line)
            self.assertEqual((m["partition"], m["offset"], m["key"], m["payload"]),
                             (0, i, f"k{i}", f"v{i}"))
            self.assertEqual(m["headers"], ["trace", "abc-123", "empty", "", "trace", "again"])
            self.assertEqual(m["tstype"], "create")
            self.assertTrue(before - 1 <= m["ts"] <= after + 1)

    def test_log_append_time_topic(self):
        topic = "kcat-log-append-time"
        kw.create_topic(self.bs, topic, 1, {"message.timestamp.type": "LogAppendTime"})
        before = int(time.time() * 1000)
        self.produce(topic, [f"v{i}\n" for i in range(5)])
        after = int(time.time() * 1000)
        lines = self.kcat("-C", "-t", topic, "-o", "beginning", "-e", "-J").splitlines()
        self.assertEqual(len(lines), 5)
        for i, line in enumerate(lines):
            m = json.loads(line)
            self.assertEqual((m["offset"], m["payload"]), (i, f"v{i}"))
            self.assertEqual(m["tstype"], "logappend")
            self.assertTrue(before - 1 <= m["ts"] <= after + 1, f"timestamp {m['ts']}")


if __name__ == "__main__":
    unittest.main()
