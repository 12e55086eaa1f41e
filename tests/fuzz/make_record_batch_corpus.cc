// Writes the seed corpus of fuzz_record_batch into a directory:
//
//   make_record_batch_corpus tests/fuzz/corpus/record_batch
//
// Valid batches come from RecordBatchBuilder; a few shapes the builder cannot produce (sparse
// offset deltas, record attributes, non-minimal varints, an empty batch) are encoded by hand;
// the rest are valid batches with one thing broken. The output is deterministic, so rerunning
// the program over the committed corpus changes nothing. Seeds the fuzzer found are stored next
// to these under their SHA-1 names and are not touched.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "model/record_batch.h"

namespace ordo::model {
namespace {

using Bytes = std::vector<uint8_t>;
namespace layout = batch_layout;

bool write_seed(const std::string& dir, const std::string& name, const Bytes& b) {
  std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "make_record_batch_corpus: cannot create %s\n", path.c_str());
    return false;
  }
  bool ok = b.empty() || std::fwrite(b.data(), 1, b.size(), f) == b.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) std::fprintf(stderr, "make_record_batch_corpus: cannot write %s\n", path.c_str());
  return ok;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

void fix_crc(Bytes& b) {
  store_be32(b.data() + layout::kCrc,
             crc32c(0, b.data() + layout::kCrcStart, b.size() - layout::kCrcStart));
}

// A hand-encoded record, for fields RecordBatchBuilder always writes the same way.
struct RawRecord {
  int8_t attributes = 0;
  int64_t timestamp_delta = 0;
  int32_t offset_delta = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;
  // When > 0, the offset delta (which must be below 64) is written with this many extra bytes
  // of continuation: a valid but non-minimal varint, which the decoder accepts.
  int offset_delta_padding = 0;
};

void put_varint(Bytes& out, int64_t v) {
  uint8_t tmp[kMaxVarint64Bytes];
  out.insert(out.end(), tmp, tmp + put_varint64(tmp, v));
}

void put_optional(Bytes& out, const std::optional<std::string>& s) {
  if (!s) {
    put_varint(out, -1);
    return;
  }
  put_varint(out, int64_t(s->size()));
  out.insert(out.end(), s->begin(), s->end());
}

// A batch with the given header fields and records, with a correct CRC.
Bytes raw_batch(const std::vector<RawRecord>& records, int32_t last_offset_delta,
                int64_t base_timestamp, uint16_t attributes = 0) {
  Bytes out(layout::kHeaderSize, 0);
  int64_t max_delta = 0;
  for (const RawRecord& r : records) {
    max_delta = std::max(max_delta, r.timestamp_delta);
    Bytes body;
    body.push_back(uint8_t(r.attributes));
    put_varint(body, r.timestamp_delta);
    if (r.offset_delta_padding > 0) {
      uint8_t zz = uint8_t(zigzag_encode32(r.offset_delta));
      body.push_back(uint8_t(zz | 0x80));
      for (int i = 1; i < r.offset_delta_padding; ++i) body.push_back(0x80);
      body.push_back(0x00);
    } else {
      put_varint(body, r.offset_delta);
    }
    put_optional(body, r.key);
    put_optional(body, r.value);
    put_varint(body, 0);  // no headers
    put_varint(out, int64_t(body.size()));
    out.insert(out.end(), body.begin(), body.end());
  }
  uint8_t* h = out.data();
  store_be64(h + layout::kBaseOffset, 0);
  store_be32(h + layout::kBatchLength, uint32_t(out.size() - layout::kLogOverhead));
  store_be32(h + layout::kLeaderEpoch, uint32_t(-1));
  h[layout::kMagic] = uint8_t(layout::kMagicV2);
  store_be16(h + layout::kAttributes, attributes);
  store_be32(h + layout::kLastOffsetDelta, uint32_t(last_offset_delta));
  store_be64(h + layout::kBaseTimestamp, uint64_t(base_timestamp));
  // Wrapping on purpose: some seeds have timestamps that do not fit in int64.
  store_be64(h + layout::kMaxTimestamp, uint64_t(base_timestamp) + uint64_t(max_delta));
  store_be64(h + layout::kProducerId, uint64_t(-1));
  store_be16(h + layout::kProducerEpoch, uint16_t(-1));
  store_be32(h + layout::kBaseSequence, uint32_t(-1));
  store_be32(h + layout::kRecordCount, uint32_t(records.size()));
  fix_crc(out);
  return out;
}

Bytes single(std::optional<std::string_view> key, std::optional<std::string_view> value) {
  return RecordBatchBuilder().add(key, value, 1700000000000).build();
}

Bytes with_headers() {
  RecordInput r;
  r.key = "order-17";
  r.value = "{\"total\":42}";
  r.timestamp_ms = 1700000000000;
  r.headers = {{"trace-id", std::string("abc123")},
               {"empty", std::string()},
               {"null", std::nullopt},
               {"", std::string("no key")}};
  return RecordBatchBuilder().add(std::move(r)).build();
}

Bytes several(RecordBatchOptions o = {}) {
  RecordBatchBuilder b(o);
  b.add("a", "1", 1700000000000);
  b.add("b", std::nullopt, 1700000000500);
  b.add(std::nullopt, "3", 1699999999000);  // earlier than the first: a negative delta
  b.add("", "", 1700000000500);
  b.add("e", std::string(300, 'x'), 1700000001000);  // two-byte length varints
  return b.build();
}

Bytes producer_batch() {
  RecordBatchOptions o;
  o.producer_id = 4242;
  o.producer_epoch = 3;
  o.base_sequence = 100;
  o.transactional = true;
  o.leader_epoch = 9;
  return several(o);
}

Bytes control_batch() {
  RecordBatchOptions o;
  o.producer_id = 4242;
  o.producer_epoch = 3;
  o.transactional = true;
  o.control = true;
  // A COMMIT marker: key = version 0, type 1; value = version 0, coordinator epoch 5.
  std::string key("\x00\x00\x00\x01", 4);
  std::string value("\x00\x00\x00\x00\x00\x05", 6);
  return RecordBatchBuilder(o).add(key, value, 1700000000000).build();
}

Bytes two_records() {
  return RecordBatchBuilder().add("k0", "v0", 1700000000000).add("k1", "v1", 1700000000001).build();
}

// A valid batch placed at base_offset, as it would sit in a segment.
Bytes at_offset(Bytes b, int64_t base) {
  set_base_offset(b, Offset(base));
  set_leader_epoch(b, 3);
  return b;
}

int run(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  std::vector<std::pair<std::string, Bytes>> seeds;
  auto add = [&](std::string name, Bytes b) { seeds.emplace_back(std::move(name), std::move(b)); };

  // Valid batches.
  add("valid_key_value", single("key", "value"));
  add("valid_null_key", single(std::nullopt, "value"));
  add("valid_tombstone", single("key", std::nullopt));
  add("valid_empty_key_value", single("", ""));
  add("valid_headers", with_headers());
  add("valid_several_records", several());
  add("valid_producer_transactional", producer_batch());
  add("valid_control", control_batch());
  Bytes append_time = several();
  set_log_append_time(append_time, 1700000009999);
  add("valid_log_append_time", append_time);
  add("valid_base_offset", at_offset(several(), 1000000));

  // Shapes only a hand encoder makes.
  add("valid_sparse_offsets",  // a compacted batch: deltas 0, 3, 7 of 0..9
      raw_batch({{.offset_delta = 0, .key = "a", .value = "1"},
                 {.timestamp_delta = 5, .offset_delta = 3, .key = "b", .value = "2"},
                 {.timestamp_delta = 9, .offset_delta = 7, .key = "c", .value = std::nullopt}},
                9, 1700000000000));
  add("valid_record_attributes",
      raw_batch({{.attributes = 0x7f, .timestamp_delta = -3, .offset_delta = 0, .key = "k"}}, 0,
                1700000000000));
  add("valid_nonminimal_varint",
      raw_batch({{.offset_delta = 0, .key = "k", .value = "v", .offset_delta_padding = 2}}, 0,
                1700000000000));
  add("valid_no_records", raw_batch({}, 0, 1700000000000));
  // Decodable, but base + delta leaves int64, or two timestamps are further apart than int64.
  add("valid_timestamp_past_max",
      raw_batch({{.offset_delta = 0, .key = "a"}, {.timestamp_delta = 5, .offset_delta = 1}}, 1,
                INT64_MAX - 1));
  add("valid_timestamps_far_apart", raw_batch({{.timestamp_delta = INT64_MAX, .offset_delta = 0},
                                               {.timestamp_delta = INT64_MIN, .offset_delta = 1}},
                                              1, 0));
  add("valid_max_base_offset", at_offset(several(), INT64_MAX - 4));  // last offset INT64_MAX

  // Several batches one after the other, as in a segment.
  Bytes first = at_offset(single("k1", "v1"), 0);
  Bytes second = at_offset(several(), 1);
  Bytes third = at_offset(with_headers(), 6);
  add("log_two_batches", concat({first, second}));
  add("log_three_batches", concat({first, second, third}));
  Bytes torn(third.begin(), third.begin() + long(third.size() / 2));
  add("log_torn_tail", concat({first, second, torn}));
  add("log_zero_padding", concat({first, second, Bytes(128, 0)}));

  // Broken batches.
  Bytes bad_crc = several();
  bad_crc[layout::kCrc + 3] ^= 0x01;
  add("bad_crc", bad_crc);
  Bytes flipped = several();
  flipped[flipped.size() - 2] ^= 0x20;
  add("bad_payload_byte", flipped);
  Bytes truncated = several();
  truncated.resize(truncated.size() / 2);
  add("bad_truncated", truncated);
  add("bad_prefix_only", Bytes(first.begin(), first.begin() + long(layout::kLogOverhead)));
  Bytes bad_magic = single("key", "value");
  bad_magic[layout::kMagic] = 1;
  add("bad_magic", bad_magic);
  Bytes huge = single("key", "value");
  store_be32(huge.data() + layout::kBatchLength, 0x7fffffff);
  add("bad_huge_length", huge);
  Bytes negative = single("key", "value");
  store_be32(negative.data() + layout::kBatchLength, 0xffffffff);
  add("bad_negative_length", negative);
  Bytes count = several();
  store_be32(count.data() + layout::kRecordCount, 6);
  fix_crc(count);
  add("bad_record_count", count);
  add("bad_base_offset_overflow", at_offset(several(), INT64_MAX - 3));
  add("bad_negative_base_offset", at_offset(single("key", "value"), -1));
  Bytes compressed = several();
  store_be16(compressed.data() + layout::kAttributes, uint16_t(Compression::zstd));
  fix_crc(compressed);
  add("bad_compressed_codec", compressed);
  Bytes bad_len = single("key", "value");
  bad_len[layout::kHeaderSize] = 0x7e;  // first record's length varint: 63, past the end
  fix_crc(bad_len);
  add("bad_record_length", bad_len);
  add("empty", Bytes());

  // Batches that parse (a batch in the log may look like this) but no producer may send
  // (model::check_produced_batch).
  Bytes wide = two_records();
  store_be32(wide.data() + layout::kLastOffsetDelta, 1000);  // 2 records, 1,001 offsets
  fix_crc(wide);
  add("bad_produced_offset_range", wide);
  Bytes idem_no_epoch = two_records();
  store_be64(idem_no_epoch.data() + layout::kProducerId, 7);
  store_be32(idem_no_epoch.data() + layout::kBaseSequence, 0);  // epoch stays -1
  fix_crc(idem_no_epoch);
  add("bad_produced_idempotent_epoch", idem_no_epoch);
  Bytes stray_sequence = two_records();
  store_be32(stray_sequence.data() + layout::kBaseSequence, 5);  // no producer id: accepted
  fix_crc(stray_sequence);
  add("produced_sequence_without_producer", stray_sequence);
  Bytes horizon = two_records();
  store_be16(horizon.data() + layout::kAttributes, batch_attr::kDeleteHorizon);
  fix_crc(horizon);
  add("bad_produced_delete_horizon", horizon);
  add("bad_produced_offset_gap",  // count 2, lastOffsetDelta 1, deltas 0 and 2
      raw_batch({{.offset_delta = 0, .key = "a"}, {.offset_delta = 2, .key = "b"}}, 1,
                1700000000000));

  for (const auto& [name, bytes] : seeds) {
    if (!write_seed(dir, name, bytes)) return 1;
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace
}  // namespace ordo::model

int main(int argc, char** argv) {
  return ordo::model::run(argc, argv);
}
