#include "model/record_batch.h"

#include <gtest/gtest.h>

#include "base/random.h"

namespace ordo::model {
namespace {

std::vector<uint8_t> sample_batch() {
  RecordBatchOptions o;
  o.producer_id = 7;
  o.producer_epoch = 2;
  o.base_sequence = 10;
  RecordBatchBuilder b(o);
  RecordInput r1;
  r1.key = "k1";
  r1.value = "v1";
  r1.timestamp_ms = 1000;
  r1.headers = {{"h", std::string("x")}, {"n", std::nullopt}};
  b.add(std::move(r1));
  b.add(std::nullopt, "second", 1500);
  b.add("k3", std::nullopt, 1200);
  return b.build();
}

TEST(RecordBatch, BuildParseRoundTrip) {
  auto bytes = sample_batch();
  auto v = RecordBatchView::parse(bytes);
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->size_bytes(), bytes.size());
  EXPECT_EQ(v->magic(), 2);
  EXPECT_EQ(v->record_count(), 3);
  EXPECT_EQ(v->last_offset_delta(), 2);
  EXPECT_EQ(v->base_timestamp(), 1000);
  EXPECT_EQ(v->max_timestamp(), 1500);
  EXPECT_EQ(v->producer_id(), 7);
  EXPECT_EQ(v->producer_epoch(), 2);
  EXPECT_EQ(v->base_sequence(), 10);
  EXPECT_EQ(v->compression(), Compression::none);
  EXPECT_TRUE(v->verify_crc());

  auto recs = decode_records(*v);
  ASSERT_TRUE(recs) << recs.error().to_string();
  ASSERT_EQ(recs->size(), 3u);
  EXPECT_EQ(*(*recs)[0].key, "k1");
  EXPECT_EQ(*(*recs)[0].value, "v1");
  ASSERT_EQ((*recs)[0].headers.size(), 2u);
  EXPECT_EQ((*recs)[0].headers[0].key, "h");
  EXPECT_EQ(*(*recs)[0].headers[0].value, "x");
  EXPECT_FALSE((*recs)[0].headers[1].value.has_value());
  EXPECT_FALSE((*recs)[1].key.has_value());
  EXPECT_EQ((*recs)[1].timestamp_delta, 500);
  EXPECT_EQ((*recs)[2].offset_delta, 2);
  EXPECT_FALSE((*recs)[2].value.has_value());
}

TEST(RecordBatch, AssignedFieldsKeepCrcValid) {
  auto bytes = sample_batch();
  set_base_offset(bytes, Offset(123456789));
  set_leader_epoch(bytes, 42);
  auto v = RecordBatchView::parse(bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->base_offset(), 123456789);
  EXPECT_EQ(v->last(), Offset(123456791));
  EXPECT_EQ(v->leader_epoch(), 42);
  EXPECT_TRUE(v->verify_crc());
}

TEST(RecordBatch, LogAppendTimeRewritesCrc) {
  auto bytes = sample_batch();
  set_log_append_time(bytes, 99999);
  auto v = RecordBatchView::parse(bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->timestamp_type(), TimestampType::log_append_time);
  EXPECT_EQ(v->max_timestamp(), 99999);
  EXPECT_TRUE(v->verify_crc());
}

TEST(RecordBatch, EveryCoveredByteFlipIsDetected) {
  auto bytes = sample_batch();
  for (size_t i = batch_layout::kCrcStart; i < bytes.size(); ++i) {
    auto copy = bytes;
    copy[i] ^= 0x01;
    auto v = RecordBatchView::parse(copy);
    // Either the header no longer parses or the CRC check fails; never silently valid.
    if (v) {
      EXPECT_FALSE(v->verify_crc()) << "byte " << i;
    }
  }
  // A flipped CRC byte is detected too.
  auto copy = bytes;
  copy[batch_layout::kCrc] ^= 0x80;
  ASSERT_TRUE(RecordBatchView::parse(copy));
  EXPECT_FALSE(RecordBatchView::parse(copy)->verify_crc());
}

TEST(RecordBatch, TruncationIsOutOfRange) {
  auto bytes = sample_batch();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto v = RecordBatchView::parse(std::span<const uint8_t>(bytes.data(), n));
    ASSERT_FALSE(v) << n;
    EXPECT_EQ(v.error().code, Errc::out_of_range) << n;
  }
}

TEST(RecordBatch, BadMagicAndLengthAreCorrupt) {
  auto bytes = sample_batch();
  auto bad_magic = bytes;
  bad_magic[batch_layout::kMagic] = 1;
  EXPECT_EQ(RecordBatchView::parse(bad_magic).error().code, Errc::corrupt);
  auto bad_len = bytes;
  store_be32(bad_len.data() + batch_layout::kBatchLength, 10);
  EXPECT_EQ(RecordBatchView::parse(bad_len).error().code, Errc::corrupt);
  store_be32(bad_len.data() + batch_layout::kBatchLength, 0xffffffffu);
  EXPECT_EQ(RecordBatchView::parse(bad_len).error().code, Errc::corrupt);
  // Larger than the caller's bound.
  EXPECT_EQ(RecordBatchView::parse(bytes, 64).error().code, Errc::corrupt);
  auto bad_count = bytes;
  store_be32(bad_count.data() + batch_layout::kRecordCount, 9);
  EXPECT_EQ(RecordBatchView::parse(bad_count).error().code, Errc::corrupt);
}

TEST(RecordBatch, ParsesFirstOfConcatenatedBatches) {
  auto a = sample_batch();
  auto b = sample_batch();
  std::vector<uint8_t> both = a;
  both.insert(both.end(), b.begin(), b.end());
  auto v = RecordBatchView::parse(both);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->size_bytes(), a.size());
}

TEST(RecordBatch, DecodeRejectsGarbledRecordsWithoutCrashing) {
  auto bytes = sample_batch();
  Random rng(1);
  int rejected = 0;
  for (int i = 0; i < 5000; ++i) {
    auto copy = bytes;
    size_t pos = batch_layout::kHeaderSize + rng.below(copy.size() - batch_layout::kHeaderSize);
    copy[pos] = uint8_t(rng.next());
    auto v = RecordBatchView::parse(copy);
    ASSERT_TRUE(v);
    auto recs = decode_records(*v);
    if (!recs) ++rejected;
  }
  EXPECT_GT(rejected, 0);
}

TEST(RecordBatch, BuilderKeepsTimestampsFurtherApartThanInt64) {
  // The builder used to subtract the first timestamp from each record's as int64, which
  // overflowed (undefined behaviour, reported by UBSan) for these; replayed by ctest as
  // tests/fuzz/corpus/record_batch/valid_timestamps_far_apart.
  const int64_t ts[] = {INT64_MAX, INT64_MIN, -1, 0};
  RecordBatchBuilder b;
  for (int64_t t : ts) b.add("k", "v", t);
  auto bytes = b.build();
  auto v = RecordBatchView::parse(bytes);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->verify_crc());
  EXPECT_EQ(v->base_timestamp(), INT64_MAX);
  EXPECT_EQ(v->max_timestamp(), INT64_MAX);
  auto recs = decode_records(*v);
  ASSERT_TRUE(recs) << recs.error().to_string();
  ASSERT_EQ(recs->size(), 4u);
  EXPECT_EQ((*recs)[0].timestamp_delta, 0);
  EXPECT_EQ((*recs)[1].timestamp_delta, 1);  // INT64_MIN - INT64_MAX, wrapped
  for (size_t i = 0; i < recs->size(); ++i) {
    uint64_t back = uint64_t(v->base_timestamp()) + uint64_t((*recs)[i].timestamp_delta);
    EXPECT_EQ(int64_t(back), ts[i]) << i;
  }
}

TEST(RecordBatch, DecodeRefusesCompressed) {
  auto bytes = sample_batch();
  store_be16(bytes.data() + batch_layout::kAttributes, 1);
  auto v = RecordBatchView::parse(bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->compression(), Compression::gzip);
  EXPECT_EQ(decode_records(*v).error().code, Errc::invalid_argument);
}

TEST(RecordBatch, ScanRecordsAgreesWithDecodeAndSetMaxTimestampKeepsTheCrcValid) {
  RecordBatchBuilder b;
  b.add("k1", "v1", 100).add(std::nullopt, "v2", 90).add("k3", std::nullopt, 130);
  auto bytes = b.build();
  auto view = RecordBatchView::parse(bytes).value();
  auto decoded = decode_records(view).value();
  auto summary =
      scan_records(view.records_section(), view.record_count(), view.last_offset_delta()).value();
  EXPECT_EQ(summary.count, int32_t(decoded.size()));
  EXPECT_EQ(record_timestamp(view.base_timestamp(), summary.max_timestamp_delta), 130);
  set_max_timestamp(bytes, -1);
  auto again = RecordBatchView::parse(bytes).value();
  EXPECT_EQ(again.max_timestamp(), -1);
  EXPECT_TRUE(again.verify_crc());
  // Truncated record sections fail the same way in both.
  auto cut = view.records_section().first(view.records_section().size() - 1);
  EXPECT_FALSE(scan_records(cut, view.record_count(), view.last_offset_delta()));
  EXPECT_EQ(record_timestamp(std::numeric_limits<int64_t>::max(), 1),
            std::numeric_limits<int64_t>::min());
}

}  // namespace
}  // namespace ordo::model
