#include "model/record_batch.h"

#include "base/crc32c.h"

namespace ordo::model {

using namespace batch_layout;

Result<RecordBatchView> RecordBatchView::parse(std::span<const uint8_t> data,
                                               size_t max_batch_bytes) {
  if (data.size() < kLogOverhead) {
    return make_error(Errc::out_of_range, "batch prefix needs {} bytes, {} present", kLogOverhead,
                      data.size());
  }
  int64_t batch_length = int32_t(load_be32(data.data() + kBatchLength));
  int64_t total = batch_length + int64_t(kLogOverhead);
  if (batch_length < 0 || size_t(total) < kMinBatchBytes || size_t(total) > max_batch_bytes) {
    return make_error(Errc::corrupt, "batch length {} outside [{}, {}]", batch_length,
                      kMinBatchBytes - kLogOverhead, max_batch_bytes - kLogOverhead);
  }
  if (data.size() < size_t(total)) {
    // Checking the magic first tells a torn batch apart from garbage when the header is there.
    if (data.size() > kMagic && int8_t(data[kMagic]) != kMagicV2) {
      return make_error(Errc::corrupt, "magic {} (expected 2)", int(int8_t(data[kMagic])));
    }
    return make_error(Errc::out_of_range, "batch of {} bytes, only {} present", total, data.size());
  }
  RecordBatchView v(data.first(size_t(total)));
  if (v.magic() != kMagicV2) {
    return make_error(Errc::corrupt, "magic {} (expected 2)", int(v.magic()));
  }
  if (v.last_offset_delta() < 0 || v.record_count() < 0 ||
      int64_t(v.record_count()) > int64_t(v.last_offset_delta()) + 1) {
    return make_error(Errc::corrupt, "record count {} with last offset delta {}", v.record_count(),
                      v.last_offset_delta());
  }
  if (v.base_offset() < 0 || v.base_offset() > INT64_MAX - v.last_offset_delta()) {
    return make_error(Errc::corrupt, "base offset {} out of range", v.base_offset());
  }
  return v;
}

uint32_t RecordBatchView::compute_crc() const {
  return crc32c(0, bytes_.data() + kCrcStart, bytes_.size() - kCrcStart);
}

Result<void> RecordBatchView::verify_crc() const {
  uint32_t actual = compute_crc();
  if (actual != crc()) {
    return make_error(Errc::corrupt, "CRC mismatch: stored {:#010x}, computed {:#010x}", crc(),
                      actual);
  }
  return ok();
}

Result<void> check_produced_batch(const RecordBatchView& b) {
  if (b.record_count() <= 0) {
    return make_error(Errc::invalid_argument, "Invalid reported count for record batch: {}",
                      b.record_count());
  }
  if (int64_t(b.last_offset_delta()) != int64_t(b.record_count()) - 1) {
    return make_error(Errc::invalid_argument,
                      "Inconsistent batch offset range and record count: lastOffsetDelta {} "
                      "with {} records",
                      b.last_offset_delta(), b.record_count());
  }
  if (b.is_control()) {
    return make_error(Errc::invalid_argument, "clients may not write control batches");
  }
  if (b.is_transactional()) {
    // Transactions do not exist yet: storing them would break read_committed.
    return make_error(Errc::invalid_argument, "transactional batches are not supported yet");
  }
  if (b.attributes() & batch_attr::kDeleteHorizon) {
    return make_error(Errc::invalid_argument, "the delete horizon flag is set only by the cleaner");
  }
  const int64_t pid = b.producer_id();
  if (pid >= 0) {
    if (b.producer_epoch() < 0 || b.base_sequence() < 0) {
      return make_error(Errc::invalid_argument,
                        "idempotent batch of producer {} with epoch {} and base sequence {}", pid,
                        b.producer_epoch(), b.base_sequence());
    }
  } else if (pid != -1) {
    return make_error(Errc::invalid_argument, "invalid producer id {}", pid);
  }
  // Without a producer id the epoch and sequence mean nothing and, as in Kafka, are not
  // checked: Sarama sends such batches with base sequence 0.
  return ok();
}

void set_base_offset(std::span<uint8_t> batch, Offset base) {
  ORDO_ASSERT(batch.size() >= kHeaderSize);
  store_be64(batch.data() + kBaseOffset, uint64_t(base.value()));
}

void set_leader_epoch(std::span<uint8_t> batch, int32_t epoch) {
  ORDO_ASSERT(batch.size() >= kHeaderSize);
  store_be32(batch.data() + kLeaderEpoch, uint32_t(epoch));
}

void set_log_append_time(std::span<uint8_t> batch, int64_t now_ms) {
  ORDO_ASSERT(batch.size() >= kHeaderSize);
  uint16_t attrs = load_be16(batch.data() + kAttributes) | batch_attr::kTimestampType;
  store_be16(batch.data() + kAttributes, attrs);
  store_be64(batch.data() + kMaxTimestamp, uint64_t(now_ms));
  store_be32(batch.data() + kCrc, crc32c(0, batch.data() + kCrcStart, batch.size() - kCrcStart));
}

namespace {

// A bounded cursor over a record's bytes.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  size_t remaining() const { return b_.size() - pos_; }
  bool varint32(int32_t& out) {
    auto d = get_varint32(b_.subspan(pos_));
    if (!d) return false;
    out = d->value;
    pos_ += d->size;
    return true;
  }
  bool varint64(int64_t& out) {
    auto d = get_varint64(b_.subspan(pos_));
    if (!d) return false;
    out = d->value;
    pos_ += d->size;
    return true;
  }
  bool int8(int8_t& out) {
    if (remaining() < 1) return false;
    out = int8_t(b_[pos_++]);
    return true;
  }
  // A varint length then that many bytes; -1 is null when nullable.
  bool bytes(std::optional<std::string_view>& out, bool nullable) {
    int32_t len;
    if (!varint32(len)) return false;
    if (len < 0) {
      if (len != -1 || !nullable) return false;
      out.reset();
      return true;
    }
    if (size_t(len) > remaining()) return false;
    out = std::string_view(reinterpret_cast<const char*>(b_.data() + pos_), size_t(len));
    pos_ += size_t(len);
    return true;
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

}  // namespace

namespace {

// Walks the records of an uncompressed records section, checking every length against the
// bytes present; calls fn(const RecordView&) for each (the view is reused between calls).
template <typename Fn>
Result<void> for_each_record(std::span<const uint8_t> section, int32_t count,
                             int32_t last_offset_delta, size_t max_headers_per_record, Fn&& fn) {
  // Each record takes at least 7 bytes, so the count is bounded by the bytes present.
  if (count < 0 || size_t(count) > section.size() / 7 + 1) {
    return make_error(Errc::corrupt, "record count {} impossible in {} bytes", count,
                      section.size());
  }
  size_t pos = 0;
  int64_t prev_delta = -1;
  RecordView rec;
  for (int32_t i = 0; i < count; ++i) {
    auto len = get_varint32(section.subspan(pos));
    if (!len || len->value < 0 || size_t(len->value) > section.size() - pos - len->size) {
      return make_error(Errc::corrupt, "record {}: bad length at byte {}", i, pos);
    }
    pos += len->size;
    Reader r(section.subspan(pos, size_t(len->value)));
    rec.headers.clear();
    int32_t header_count = 0;
    if (!r.int8(rec.attributes) || !r.varint64(rec.timestamp_delta) ||
        !r.varint32(rec.offset_delta) || !r.bytes(rec.key, true) || !r.bytes(rec.value, true) ||
        !r.varint32(header_count) || header_count < 0 ||
        size_t(header_count) > max_headers_per_record || size_t(header_count) > r.remaining() / 2) {
      return make_error(Errc::corrupt, "record {}: malformed fields", i);
    }
    for (int32_t h = 0; h < header_count; ++h) {
      std::optional<std::string_view> hk, hv;
      if (!r.bytes(hk, false) || !r.bytes(hv, true)) {
        return make_error(Errc::corrupt, "record {}: malformed header {}", i, h);
      }
      rec.headers.push_back({*hk, hv});
    }
    if (r.remaining() != 0) {
      return make_error(Errc::corrupt, "record {}: {} bytes past its fields", i, r.remaining());
    }
    if (rec.offset_delta <= prev_delta || rec.offset_delta > last_offset_delta) {
      return make_error(Errc::corrupt, "record {}: offset delta {} out of order", i,
                        rec.offset_delta);
    }
    prev_delta = rec.offset_delta;
    pos += size_t(len->value);
    fn(rec);
  }
  if (pos != section.size()) {
    return make_error(Errc::corrupt, "{} bytes after the last record", section.size() - pos);
  }
  return ok();
}

}  // namespace

Result<std::vector<RecordView>> decode_records(const RecordBatchView& batch,
                                               size_t max_headers_per_record) {
  if (batch.compression() != Compression::none) {
    return make_error(Errc::invalid_argument, "batch is compressed (codec {})",
                      int(batch.compression()));
  }
  std::vector<RecordView> out;
  out.reserve(size_t(std::max(batch.record_count(), 0)));
  ORDO_TRY(for_each_record(batch.records_section(), batch.record_count(), batch.last_offset_delta(),
                           max_headers_per_record, [&](const RecordView& r) { out.push_back(r); }));
  return out;
}

Result<std::vector<RecordView>> decode_records_section(std::span<const uint8_t> section,
                                                       int32_t record_count,
                                                       int32_t last_offset_delta,
                                                       size_t max_headers_per_record) {
  std::vector<RecordView> out;
  ORDO_TRY(for_each_record(section, record_count, last_offset_delta, max_headers_per_record,
                           [&](const RecordView& r) { out.push_back(r); }));
  return out;
}

Result<RecordsSummary> scan_records(std::span<const uint8_t> section, int32_t record_count,
                                    int32_t last_offset_delta, size_t max_headers_per_record) {
  RecordsSummary s;
  ORDO_TRY(for_each_record(
      section, record_count, last_offset_delta, max_headers_per_record, [&](const RecordView& r) {
        ++s.count;
        s.max_timestamp_delta = std::max(s.max_timestamp_delta, r.timestamp_delta);
        if (!r.key) ++s.keyless;
      }));
  return s;
}

void set_max_timestamp(std::span<uint8_t> batch, int64_t max_timestamp) {
  ORDO_ASSERT(batch.size() >= kHeaderSize);
  store_be64(batch.data() + kMaxTimestamp, uint64_t(max_timestamp));
  store_be32(batch.data() + kCrc, crc32c(0, batch.data() + kCrcStart, batch.size() - kCrcStart));
}

RecordBatchBuilder& RecordBatchBuilder::add(RecordInput record) {
  records_.push_back(std::move(record));
  return *this;
}

RecordBatchBuilder& RecordBatchBuilder::add(std::optional<std::string_view> key,
                                            std::optional<std::string_view> value,
                                            int64_t timestamp_ms) {
  RecordInput r;
  if (key) r.key = std::string(*key);
  if (value) r.value = std::string(*value);
  r.timestamp_ms = timestamp_ms;
  return add(std::move(r));
}

namespace {

void put_bytes(std::vector<uint8_t>& out, const std::optional<std::string>& s) {
  uint8_t tmp[kMaxVarint32Bytes];
  if (!s) {
    out.insert(out.end(), tmp, tmp + put_varint32(tmp, -1));
    return;
  }
  out.insert(out.end(), tmp, tmp + put_varint32(tmp, int32_t(s->size())));
  out.insert(out.end(), s->begin(), s->end());
}

}  // namespace

std::vector<uint8_t> RecordBatchBuilder::build() const {
  ORDO_ASSERT_MSG(!records_.empty(), "a batch needs at least one record");
  int64_t base_ts = records_.front().timestamp_ms;
  int64_t max_ts = base_ts;
  for (const auto& r : records_) max_ts = std::max(max_ts, r.timestamp_ms);

  std::vector<uint8_t> out(kHeaderSize, 0);
  std::vector<uint8_t> body;
  uint8_t tmp[kMaxVarint64Bytes];
  for (size_t i = 0; i < records_.size(); ++i) {
    const RecordInput& r = records_[i];
    body.clear();
    body.push_back(0);  // record attributes
    // Relative to the first record's timestamp. Two timestamps can be further apart than int64
    // holds, so the difference wraps (as a long subtraction does in Kafka's Java code); adding
    // it back to baseTimestamp with the same wrap gives the exact timestamp.
    int64_t ts_delta = int64_t(uint64_t(r.timestamp_ms) - uint64_t(base_ts));
    body.insert(body.end(), tmp, tmp + put_varint64(tmp, ts_delta));
    body.insert(body.end(), tmp, tmp + put_varint32(tmp, int32_t(i)));
    put_bytes(body, r.key);
    put_bytes(body, r.value);
    body.insert(body.end(), tmp, tmp + put_varint32(tmp, int32_t(r.headers.size())));
    for (const auto& [hk, hv] : r.headers) {
      put_bytes(body, std::optional<std::string>(hk));
      put_bytes(body, hv);
    }
    out.insert(out.end(), tmp, tmp + put_varint32(tmp, int32_t(body.size())));
    out.insert(out.end(), body.begin(), body.end());
  }

  uint16_t attrs = 0;
  if (options_.timestamp_type == TimestampType::log_append_time)
    attrs |= batch_attr::kTimestampType;
  if (options_.transactional) attrs |= batch_attr::kTransactional;
  if (options_.control) attrs |= batch_attr::kControl;
  uint8_t* h = out.data();
  store_be64(h + kBaseOffset, uint64_t(options_.base_offset.value()));
  store_be32(h + kBatchLength, uint32_t(out.size() - kLogOverhead));
  store_be32(h + kLeaderEpoch, uint32_t(options_.leader_epoch));
  h[kMagic] = uint8_t(kMagicV2);
  store_be16(h + kAttributes, attrs);
  store_be32(h + kLastOffsetDelta, uint32_t(records_.size() - 1));
  store_be64(h + kBaseTimestamp, uint64_t(base_ts));
  store_be64(h + kMaxTimestamp, uint64_t(max_ts));
  store_be64(h + kProducerId, uint64_t(options_.producer_id));
  store_be16(h + kProducerEpoch, uint16_t(options_.producer_epoch));
  store_be32(h + kBaseSequence, uint32_t(options_.base_sequence));
  store_be32(h + kRecordCount, uint32_t(records_.size()));
  store_be32(h + kCrc, crc32c(0, h + kCrcStart, out.size() - kCrcStart));
  return out;
}

}  // namespace ordo::model
