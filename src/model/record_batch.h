#pragma once
// Kafka RecordBatch v2 (magic 2): the unit Ordo stores, replicates and serves.
//
//   offset  size  field                  covered by CRC
//   0       8     baseOffset             no   (assigned by the log on append)
//   8       4     batchLength            no   (bytes after this field)
//   12      4     partitionLeaderEpoch   no   (assigned by the log on append)
//   16      1     magic (= 2)            no
//   17      4     crc (CRC-32C, uint32)  no
//   21      2     attributes             yes  bits 0-2 codec, 3 timestamp type, 4 transactional,
//                                             5 control, 6 delete horizon
//   23      4     lastOffsetDelta        yes
//   27      8     baseTimestamp          yes
//   35      8     maxTimestamp           yes
//   43      8     producerId             yes
//   51      2     producerEpoch          yes
//   53      4     baseSequence           yes
//   57      4     recordCount            yes
//   61      ...   records (compressed as a whole when codec != 0)
//
// All integers big-endian. Records (uncompressed form):
//   length varint | attributes int8 | timestampDelta varlong | offsetDelta varint |
//   keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value |
//   headerCount varint | { keyLength varint | key | valueLength varint | value }*

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/coding.h"
#include "base/result.h"
#include "base/strong_int.h"

namespace ordo::model {

namespace batch_layout {
constexpr size_t kBaseOffset = 0;
constexpr size_t kBatchLength = 8;
constexpr size_t kLeaderEpoch = 12;
constexpr size_t kMagic = 16;
constexpr size_t kCrc = 17;
constexpr size_t kAttributes = 21;
constexpr size_t kLastOffsetDelta = 23;
constexpr size_t kBaseTimestamp = 27;
constexpr size_t kMaxTimestamp = 35;
constexpr size_t kProducerId = 43;
constexpr size_t kProducerEpoch = 51;
constexpr size_t kBaseSequence = 53;
constexpr size_t kRecordCount = 57;
constexpr size_t kHeaderSize = 61;
// baseOffset + batchLength: the bytes in front of what batchLength counts.
constexpr size_t kLogOverhead = 12;
constexpr size_t kCrcStart = kAttributes;
constexpr int8_t kMagicV2 = 2;

static_assert(kBatchLength == kBaseOffset + 8);
static_assert(kLeaderEpoch == kBatchLength + 4);
static_assert(kMagic == kLeaderEpoch + 4);
static_assert(kCrc == kMagic + 1);
static_assert(kAttributes == kCrc + 4);
static_assert(kLastOffsetDelta == kAttributes + 2);
static_assert(kBaseTimestamp == kLastOffsetDelta + 4);
static_assert(kMaxTimestamp == kBaseTimestamp + 8);
static_assert(kProducerId == kMaxTimestamp + 8);
static_assert(kProducerEpoch == kProducerId + 8);
static_assert(kBaseSequence == kProducerEpoch + 2);
static_assert(kRecordCount == kBaseSequence + 4);
static_assert(kHeaderSize == kRecordCount + 4);
static_assert(kLogOverhead == kLeaderEpoch);
}  // namespace batch_layout

enum class Compression : uint8_t { none = 0, gzip = 1, snappy = 2, lz4 = 3, zstd = 4 };
enum class TimestampType : uint8_t { create_time = 0, log_append_time = 1 };

namespace batch_attr {
constexpr uint16_t kCompressionMask = 0x07;
constexpr uint16_t kTimestampType = 0x08;
constexpr uint16_t kTransactional = 0x10;
constexpr uint16_t kControl = 0x20;
constexpr uint16_t kDeleteHorizon = 0x40;
}  // namespace batch_attr

// The smallest and (by default) largest batch, counted as total bytes including the 12-byte log
// overhead.
constexpr size_t kMinBatchBytes = batch_layout::kHeaderSize;
constexpr size_t kDefaultMaxBatchBytes = size_t(64) << 20;

// A read-only view of exactly one RecordBatch. Construct with parse(), which checks that the
// bytes are present and the header is plausible; verify_crc() checks the contents.
class RecordBatchView {
 public:
  // Parses the batch at the start of data. Errors:
  //  - Errc::out_of_range: data ends before the 12-byte prefix or before batchLength says the
  //    batch ends (a torn or partial batch);
  //  - Errc::corrupt: batchLength out of [kMinBatchBytes, max_batch_bytes], magic != 2, or
  //    inconsistent counts.
  static Result<RecordBatchView> parse(std::span<const uint8_t> data,
                                       size_t max_batch_bytes = kDefaultMaxBatchBytes);

  std::span<const uint8_t> bytes() const { return bytes_; }
  size_t size_bytes() const { return bytes_.size(); }

  int64_t base_offset() const { return int64_t(load_be64(p(batch_layout::kBaseOffset))); }
  int32_t batch_length() const { return int32_t(load_be32(p(batch_layout::kBatchLength))); }
  int32_t leader_epoch() const { return int32_t(load_be32(p(batch_layout::kLeaderEpoch))); }
  int8_t magic() const { return int8_t(bytes_[batch_layout::kMagic]); }
  uint32_t crc() const { return load_be32(p(batch_layout::kCrc)); }
  uint16_t attributes() const { return load_be16(p(batch_layout::kAttributes)); }
  int32_t last_offset_delta() const {
    return int32_t(load_be32(p(batch_layout::kLastOffsetDelta)));
  }
  int64_t base_timestamp() const { return int64_t(load_be64(p(batch_layout::kBaseTimestamp))); }
  int64_t max_timestamp() const { return int64_t(load_be64(p(batch_layout::kMaxTimestamp))); }
  int64_t producer_id() const { return int64_t(load_be64(p(batch_layout::kProducerId))); }
  int16_t producer_epoch() const { return int16_t(load_be16(p(batch_layout::kProducerEpoch))); }
  int32_t base_sequence() const { return int32_t(load_be32(p(batch_layout::kBaseSequence))); }
  int32_t record_count() const { return int32_t(load_be32(p(batch_layout::kRecordCount))); }

  Offset base() const { return Offset(base_offset()); }
  Offset last() const { return Offset(base_offset() + last_offset_delta()); }
  Compression compression() const {
    return Compression(attributes() & batch_attr::kCompressionMask);
  }
  TimestampType timestamp_type() const {
    return (attributes() & batch_attr::kTimestampType) ? TimestampType::log_append_time
                                                       : TimestampType::create_time;
  }
  bool is_transactional() const { return attributes() & batch_attr::kTransactional; }
  bool is_control() const { return attributes() & batch_attr::kControl; }

  // The bytes after the header: records, compressed when compression() != none.
  std::span<const uint8_t> records_section() const {
    return bytes_.subspan(batch_layout::kHeaderSize);
  }

  uint32_t compute_crc() const;
  // Errc::corrupt with both CRCs in the message when the stored CRC does not match.
  Result<void> verify_crc() const;

 private:
  explicit RecordBatchView(std::span<const uint8_t> b) : bytes_(b) {}
  const uint8_t* p(size_t off) const { return bytes_.data() + off; }
  std::span<const uint8_t> bytes_;
};

// The header checks Kafka's log validator makes on a batch a client produces, beyond what
// parse() (magic 2, lengths, base offset) and verify_crc() check. A batch in the log may
// legitimately differ (compaction leaves gaps; only the coordinator writes control batches), so
// these apply to produce requests only. Errc::invalid_argument (INVALID_RECORD) naming the
// field:
//  - recordCount > 0, and lastOffsetDelta == recordCount - 1 (the batch's offset range is
//    its records': the log end offset moves by exactly the records it stores);
//  - no control batch, no transactional batch (not supported), no delete-horizon flag (the
//    log cleaner's);
//  - producerId >= 0 (idempotent) needs producerEpoch >= 0 and baseSequence >= 0;
//    producerId -1 needs producerEpoch -1 and baseSequence -1; producerId < -1 is invalid.
// With lastOffsetDelta == recordCount - 1, scan_records() then holds the records' offset
// deltas to exactly 0..recordCount-1 in order.
Result<void> check_produced_batch(const RecordBatchView& batch);

// Writes the fields the log assigns on append. Neither is covered by the CRC.
void set_base_offset(std::span<uint8_t> batch, Offset base);
void set_leader_epoch(std::span<uint8_t> batch, int32_t epoch);

// Sets the timestamp type to LogAppendTime with maxTimestamp = now_ms and recomputes the CRC.
void set_log_append_time(std::span<uint8_t> batch, int64_t now_ms);

// One record of an uncompressed batch, with spans into the batch's bytes.
struct RecordHeaderView {
  std::string_view key;
  std::optional<std::string_view> value;
};
struct RecordView {
  int8_t attributes = 0;
  int64_t timestamp_delta = 0;
  int32_t offset_delta = 0;
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
  std::vector<RecordHeaderView> headers;
};

// Decodes every record of the records section of an uncompressed batch, checking each length
// against the bytes present, that exactly record_count records fill the section, and that
// offset deltas are increasing and within lastOffsetDelta. Errc::invalid_argument for a
// compressed batch (decompression belongs to the caller), Errc::corrupt for bad records.
Result<std::vector<RecordView>> decode_records(const RecordBatchView& batch,
                                               size_t max_headers_per_record = 1 << 16);

// A record's timestamp: the batch's base timestamp plus the record's delta, wrapping on
// overflow as Kafka's Java arithmetic does (a hostile delta must not be undefined behaviour).
inline int64_t record_timestamp(int64_t base_timestamp, int64_t delta) {
  return int64_t(uint64_t(base_timestamp) + uint64_t(delta));
}

// decode_records() over a records section given apart from its batch (e.g. decompressed).
Result<std::vector<RecordView>> decode_records_section(std::span<const uint8_t> section,
                                                       int32_t record_count,
                                                       int32_t last_offset_delta,
                                                       size_t max_headers_per_record = 1 << 16);

// What scan_records() learns about a records section without keeping the records.
struct RecordsSummary {
  int32_t count = 0;
  int64_t max_timestamp_delta = std::numeric_limits<int64_t>::min();  // min when no record
  int32_t keyless = 0;  // records with a null key (a compacted topic refuses them)
};
// Validates an uncompressed records section exactly as decode_records() does (the section of
// an uncompressed batch, or a compressed batch's section after decompression) without
// allocating per record.
Result<RecordsSummary> scan_records(std::span<const uint8_t> section, int32_t record_count,
                                    int32_t last_offset_delta,
                                    size_t max_headers_per_record = 1 << 16);

// Sets maxTimestamp and recomputes the CRC (a producer's header value is not trusted).
void set_max_timestamp(std::span<uint8_t> batch, int64_t max_timestamp);

// Builds uncompressed v2 batches, for tests, tools and the log's own control records.
struct RecordBatchOptions {
  Offset base_offset{0};
  int32_t leader_epoch = -1;
  int64_t producer_id = -1;
  int16_t producer_epoch = -1;
  int32_t base_sequence = -1;
  TimestampType timestamp_type = TimestampType::create_time;
  bool transactional = false;
  bool control = false;
};

struct RecordInput {
  std::optional<std::string> key;
  std::optional<std::string> value;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
};

class RecordBatchBuilder {
 public:
  explicit RecordBatchBuilder(RecordBatchOptions options = {}) : options_(options) {}
  RecordBatchBuilder& add(RecordInput record);
  RecordBatchBuilder& add(std::optional<std::string_view> key,
                          std::optional<std::string_view> value, int64_t timestamp_ms);
  size_t record_count() const { return records_.size(); }
  // The batch's bytes with a correct CRC. At least one record must have been added.
  std::vector<uint8_t> build() const;

 private:
  RecordBatchOptions options_;
  std::vector<RecordInput> records_;
};

}  // namespace ordo::model
