"""Shared helpers of the integration tests.

- CRC-32C and record batches (v2) built and parsed by hand;
- Kafka request frames written byte by byte, and a small blocking connection that speaks a
  few fixed API versions (ApiVersions v0, Metadata v1, CreateTopics v2, Produce v7, Fetch v4,
  ListOffsets v1), independent of any client library;
- waits (topic ready, broker log line) and the checks several tests share.

Only the standard library is used here, so that the byte-level tests do not depend on a client.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ordo_harness import Broker  # noqa: E402,F401  (re-exported for the tests)

# The Python that has confluent-kafka and kafka-python installed (Debian's).
SYSTEM_PYTHON = "/usr/bin/python3"

WAIT_S = 30  # generous bound of every wait; a test never depends on being faster than this

# Kafka error codes the tests look for.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
TOPIC_ALREADY_EXISTS = 36
UNSUPPORTED_VERSION = 35
INVALID_RECORD = 87

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

# ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ----


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value

# ---- primitive encoders ----


def i8(v):
    return struct.pack(">b", v)


def i16(v):
    return struct.pack(">h", v)


def i32(v):
    return struct.pack(">i", v)


def i64(v):
    return struct.pack(">q", v)


def string(s):
    b = s.encode() if isinstance(s, str) else s
    return i16(len(b)) + b


def nullable_string(s):
    return i16(-1) if s is None else string(s)


def nullable_bytes(b):
    return i32(-1) if b is None else i32(len(b)) + b


def array(items, encode):
    items = list(items)
    return i32(len(items)) + b"".join(encode(x) for x in items)


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    """Zig-zag varint (a 64-bit signed value)."""
    return uvarint(((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF)


def compact_string(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    """Big-endian reader over a response body."""

    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def _take(self, fmt):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def i8(self):
        return self._take(">b")

    def i16(self):
        return self._take(">h")

    def i32(self):
        return self._take(">i")

    def u32(self):
        return self._take(">I")

    def i64(self):
        return self._take(">q")

    def raw(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} past the end ({len(self.data)})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self):
        n = self.i16()
        return None if n < 0 else self.raw(n).decode()

    def bytes(self):
        n = self.i32()
        return None if n < 0 else self.raw(n)

    def array(self, decode):
        n = self.i32()
        return None if n < 0 else [decode(self) for _ in range(n)]

    def uvarint(self):
        shift = 0
        v = 0
        while True:
            b = self.raw(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def varint(self):
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def remaining(self):
        return len(self.data) - self.pos


# ---- record batches (magic 2) ----

COMPRESSION_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def encode_record(offset_delta, timestamp_delta, key, value, headers=()):
    body = (i8(0) + varint(timestamp_delta) + varint(offset_delta) +
            (varint(-1) if key is None else varint(len(key)) + key) +
            (varint(-1) if value is None else varint(len(value)) + value) +
            varint(len(headers)))
    for hk, hv in headers:
        hk = hk.encode()
        body += varint(len(hk)) + hk + (varint(-1) if hv is None else varint(len(hv)) + hv)
    return varint(len(body)) + body


def record_batch(records, base_timestamp=None, base_offset=0):
    """An uncompressed v2 batch. records: (key, value, headers) or (key, value, headers, ts)."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    encoded = []
    max_ts = base_timestamp
    for i, r in enumerate(records):
        ts = r[3] if len(r) > 3 else base_timestamp
        max_ts = max(max_ts, ts)
        encoded.append(encode_record(i, ts - base_timestamp, r[0], r[1], r[2]))
    after_crc = (i16(0) + i32(len(records) - 1) + i64(base_timestamp) + i64(max_ts) +
                 i64(-1) + i16(-1) + i32(-1) + i32(len(records)) + b"".join(encoded))
    crc = crc32c(after_crc)
    tail = i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc  # leader epoch .. end
    return i64(base_offset) + i32(len(tail)) + tail


# Byte position of the CRC field in a batch (after base offset, length, epoch, magic).
BATCH_CRC_POSITION = 8 + 4 + 4 + 1
# Byte positions of header fields covered by the CRC.
BATCH_LAST_OFFSET_DELTA_POSITION = BATCH_CRC_POSITION + 4 + 2


def with_header_field(batch, position, packed):
    """The batch with the bytes at position replaced by packed and its CRC recomputed."""
    b = bytearray(batch)
    b[position:position + len(packed)] = packed
    b[BATCH_CRC_POSITION:BATCH_CRC_POSITION + 4] = struct.pack(
        ">I", crc32c(bytes(b[BATCH_CRC_POSITION + 4:])))
    return bytes(b)


def parse_batches(data):
    """Splits fetched bytes into batches (a partial batch at the end is dropped).

    Each batch: dict with base_offset, last_offset, magic, attributes, compression,
    timestamp_type, base_timestamp, max_timestamp, record_count, crc_ok, body (the records
    section as stored, compressed or not), and records (a list of dicts with offset, timestamp,
    key, value, headers) when the batch is uncompressed.
    """
    out = []
    pos = 0
    while len(data) - pos >= 12:
        base_offset, length = struct.unpack_from(">qi", data, pos)
        if len(data) - pos - 12 < length:
            break
        r = Reader(data[pos:pos + 12 + length], 12)
        r.i32()  # partition leader epoch
        magic = r.i8()
        crc = r.u32()
        crc_ok = crc32c(r.data[r.pos:]) == crc
        attributes = r.i16()
        last_delta = r.i32()
        base_ts = r.i64()
        max_ts = r.i64()
        r.i64(), r.i16(), r.i32()  # producer id, epoch, base sequence
        count = r.i32()
        batch = dict(base_offset=base_offset, last_offset=base_offset + last_delta, magic=magic,
                     attributes=attributes, compression=attributes & 0x7,
                     timestamp_type=(attributes >> 3) & 1, base_timestamp=base_ts,
                     max_timestamp=max_ts, record_count=count, crc_ok=crc_ok, records=None,
                     body=bytes(r.data[r.pos:]))
        if attributes & 0x7 == 0:
            records = []
            for _ in range(count):
                r.varint()  # length
                r.i8()  # attributes
                ts_delta = r.varint()
                off_delta = r.varint()
                klen = r.varint()
                key = None if klen < 0 else r.raw(klen)
                vlen = r.varint()
                value = None if vlen < 0 else r.raw(vlen)
                headers = []
                for _ in range(r.varint()):
                    hk = r.raw(r.varint()).decode()
                    hlen = r.varint()
                    headers.append((hk, None if hlen < 0 else r.raw(hlen)))
                records.append(dict(offset=base_offset + off_delta, timestamp=base_ts + ts_delta,
                                    key=key, value=value, headers=headers))
            batch["records"] = records
        out.append(batch)
        pos += 12 + length
    return out


# ---- request frames ----


def request_header(api_key, version, correlation_id, client_id="ordo-it", flexible=False):
    """Request header v1 (v2 when flexible: the same plus an empty tagged-field section)."""
    h = i16(api_key) + i16(version) + i32(correlation_id) + nullable_string(client_id)
    return h + (b"\x00" if flexible else b"")


def frame(payload):
    return i32(len(payload)) + payload


def request_frame(api_key, version, correlation_id, body, flexible=False):
    return frame(request_header(api_key, version, correlation_id, flexible=flexible) + body)


def metadata_v1_body(topics):
    """topics: a list of names, or None for every topic."""
    return i32(-1) if topics is None else array(topics, string)


def create_topics_v2_body(topics, timeout_ms=30000, validate_only=False):
    """topics: (name, partitions, {config: value})."""
    def topic(t):
        name, partitions, configs = t
        return (string(name) + i32(partitions) + i16(1) + array([], None) +
                array(sorted(configs.items()), lambda kv: string(kv[0]) + nullable_string(kv[1])))
    return array(topics, topic) + i32(timeout_ms) + i8(1 if validate_only else 0)


def produce_v7_body(topic, partition, records_bytes, acks=-1, timeout_ms=30000):
    return (nullable_string(None) + i16(acks) + i32(timeout_ms) +
            array([topic], lambda t: string(t) + array(
                [partition], lambda p: i32(p) + nullable_bytes(records_bytes))))


def fetch_v4_body(topic, partition, offset, max_bytes=1 << 20, max_wait_ms=0):
    return (i32(-1) + i32(max_wait_ms) + i32(0) + i32(max_bytes) + i8(0) +
            array([topic], lambda t: string(t) + array(
                [partition], lambda p: i32(p) + i64(offset) + i32(max_bytes))))


def list_offsets_v1_body(topic, partition, timestamp):
    return i32(-1) + array([topic], lambda t: string(t) + array(
        [partition], lambda p: i32(p) + i64(timestamp)))


# ---- response parsers (the versions above) ----


def parse_api_versions_v0(body):
    r = Reader(body)
    error = r.i16()
    apis = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
    return error, {k: (lo, hi) for k, lo, hi in apis}, r.remaining()


def parse_metadata_v1(body):
    r = Reader(body)
    brokers = r.array(lambda r: dict(node_id=r.i32(), host=r.string(), port=r.i32(),
                                     rack=r.string()))
    controller = r.i32()

    def partition(r):
        return dict(error=r.i16(), index=r.i32(), leader=r.i32(),
                    replicas=r.array(lambda r: r.i32()), isr=r.array(lambda r: r.i32()))

    topics = r.array(lambda r: dict(error=r.i16(), name=r.string(), internal=r.i8(),
                                    partitions=r.array(partition)))
    return dict(brokers=brokers, controller=controller, topics={t["name"]: t for t in topics})


def parse_create_topics_v2(body):
    r = Reader(body)
    r.i32()  # throttle
    return {t[0]: (t[1], t[2]) for t in r.array(lambda r: (r.string(), r.i16(), r.string()))}


def parse_produce_v7(body):
    """The single partition's (error_code, base_offset, log_append_time, log_start_offset)."""
    r = Reader(body)
    topics = r.array(lambda r: (r.string(), r.array(
        lambda r: (r.i32(), r.i16(), r.i64(), r.i64(), r.i64()))))
    _, partitions = topics[0]
    return partitions[0][1:]


def parse_fetch_v4(body):
    """The single partition's (error_code, high_watermark, records bytes)."""
    r = Reader(body)
    r.i32()  # throttle
    topics = r.array(lambda r: (r.string(), r.array(
        lambda r: (r.i32(), r.i16(), r.i64(), r.i64(),
                   r.array(lambda r: (r.i64(), r.i64())), r.bytes()))))
    p = topics[0][1][0]
    return p[1], p[2], p[5] or b""


def parse_list_offsets_v1(body):
    """The single partition's (error_code, timestamp, offset)."""
    r = Reader(body)
    topics = r.array(lambda r: (r.string(), r.array(
        lambda r: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return topics[0][1][0][1:]


# ---- a blocking connection ----


class ConnectionClosed(Exception):
    pass


class Connection:
    """One TCP connection to the broker; request() sends a frame and reads its response."""

    def __init__(self, bootstrap, timeout=WAIT_S):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.local_port = self.sock.getsockname()[1]
        self.next_correlation = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, data):
        self.sock.sendall(data)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionResetError as e:
                raise ConnectionClosed("reset by the broker") from e
            if not chunk:
                raise ConnectionClosed(f"closed by the broker after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self):
        (size,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(size)

    def request(self, api_key, version, body, flexible=False, response_flexible=None):
        """Sends one request; returns the response body (after the response header)."""
        cid = self.next_correlation
        self.next_correlation += 1
        self.send(request_frame(api_key, version, cid, body, flexible=flexible))
        resp = self.recv_frame()
        (got,) = struct.unpack_from(">i", resp, 0)
        if got != cid:
            raise AssertionError(f"correlation id {got}, expected {cid}")
        if response_flexible is None:
            response_flexible = flexible and api_key != API_API_VERSIONS
        return resp[5:] if response_flexible else resp[4:]  # tagged fields: empty (one byte)

    def wait_closed(self, timeout=WAIT_S):
        """True when the broker closes the connection (EOF or reset) within timeout; data it
        sends first is skipped."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False

    # The few requests the tests need, at fixed versions.

    def api_versions(self):
        error, apis, _ = parse_api_versions_v0(self.request(API_API_VERSIONS, 0, b""))
        return error, apis

    def metadata(self, topics=None):
        return parse_metadata_v1(self.request(API_METADATA, 1, metadata_v1_body(topics)))

    def create_topics(self, topics):
        return parse_create_topics_v2(self.request(API_CREATE_TOPICS, 2,
                                                   create_topics_v2_body(topics)))

    def produce(self, topic, partition, records_bytes, acks=-1):
        return parse_produce_v7(self.request(API_PRODUCE, 7,
                                             produce_v7_body(topic, partition, records_bytes,
                                                             acks)))

    def fetch(self, topic, partition, offset, max_bytes=1 << 20):
        return parse_fetch_v4(self.request(API_FETCH, 4,
                                           fetch_v4_body(topic, partition, offset, max_bytes)))

    def list_offsets(self, topic, partition, timestamp):
        return parse_list_offsets_v1(self.request(API_LIST_OFFSETS, 1,
                                                  list_offsets_v1_body(topic, partition,
                                                                       timestamp)))

    def fetch_all(self, topic, partition):
        """Every batch of a partition from offset 0 to its high watermark, as raw bytes."""
        out = b""
        offset = 0
        while True:
            error, hw, data = self.fetch(topic, partition, offset)
            if error != NONE:
                raise AssertionError(f"fetch {topic}/{partition}@{offset}: error {error}")
            batches = parse_batches(data)
            if not batches:
                return out
            used = 0
            for b in batches:
                used += 12 + struct.unpack_from(">i", data, used + 8)[0]
            out += data[:used]
            offset = batches[-1]["last_offset"] + 1
            if offset >= hw:
                return out


# ---- helpers on a running broker ----


def create_topic(bootstrap, name, partitions, configs=None):
    """Creates a topic over the wire and waits until Metadata shows every partition led."""
    with Connection(bootstrap) as c:
        result = c.create_topics([(name, partitions, configs or {})])
        error, message = result[name]
        if error != NONE:
            raise AssertionError(f"CreateTopics {name}: error {error}: {message}")
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap, name, partitions, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with Connection(bootstrap) as c:
            t = c.metadata([name])["topics"].get(name)
        last = t
        if (t and t["error"] == NONE and len(t["partitions"]) == partitions and
                all(p["error"] == NONE and p["leader"] >= 0 for p in t["partitions"])):
            return t
        time.sleep(0.05)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last}")


def end_offset(bootstrap, topic, partition):
    with Connection(bootstrap) as c:
        error, _, offset = c.list_offsets(topic, partition, -1)
        if error != NONE:
            raise AssertionError(f"ListOffsets {topic}/{partition}: error {error}")
        return offset


def wait_for_log(broker, predicate, timeout=WAIT_S):
    """Waits until predicate(log text) is true; returns the log text."""
    deadline = time.monotonic() + timeout
    while True:
        text = broker.log()
        if predicate(text) or time.monotonic() >= deadline:
            return text
        time.sleep(0.02)


def connection_log_lines(broker, local_port):
    """Lines of the broker log about the client connection from 127.0.0.1:local_port."""
    needle = f"127.0.0.1:{local_port} "
    return [line for line in broker.log().splitlines() if needle in line]


# ---- client settings and checks shared by the client tests ----


def assign_only_consumer_conf(bootstrap, **extra):
    """confluent-kafka Consumer settings for reading with assign(): the client insists on a
    group.id, but with offset commits off it never needs a group coordinator (the broker has no
    group APIs yet; with auto commit on, close() would wait ~45 s for one)."""
    conf = {"bootstrap.servers": bootstrap, "group.id": "ordo-it-assign-only",
            "enable.auto.commit": False, "enable.auto.offset.store": False}
    conf.update(extra)
    return conf



def check_partitioned_stream(test, produced, consumed):
    """produced: (key, value) in produce order (one producer, keys picked the partition).
    consumed: (partition, offset, key, value) as read back.

    Checks: the same messages came back; each partition's offsets run 0, 1, 2, ... and come in
    that order; a key lives in one partition; and each partition holds its messages in the
    order they were produced.
    """
    test.assertEqual(len(consumed), len(produced), "message count")
    test.assertCountEqual([(k, v) for _, _, k, v in consumed], produced, "messages")
    by_partition = {}
    key_partition = {}
    for p, o, k, v in consumed:
        by_partition.setdefault(p, []).append((o, k, v))
        test.assertEqual(key_partition.setdefault(k, p), p, f"key {k!r} in two partitions")
    for p, items in by_partition.items():
        test.assertEqual([o for o, _, _ in items], list(range(len(items))),
                         f"partition {p}: offsets not contiguous from 0 in order")
        want = [(k, v) for k, v in produced if key_partition[k] == p]
        test.assertEqual([(k, v) for _, k, v in items], want,
                         f"partition {p}: not in produce order")
    return by_partition


def expected_offset_for_time(records, target):
    """records: (offset, timestamp) of one partition in offset order. Kafka's answer to
    ListOffsets(target): the first offset whose timestamp is >= target, or None."""
    for offset, ts in records:
        if ts >= target:
            return offset
    return None
