#include "storage/producer_state.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <limits>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "storage/segment.h"

namespace ordo::storage {

// Snapshot layout (docs/producer-state-format.md), all integers big-endian:
//
//   header    magic u32 "OPST" | version u16 | offset i64 | producer count u32
//   producer  producer id i64 | epoch i16 | last timestamp i64 | batch count u8, then
//   batch     first seq i32 | last seq i32 | first offset i64 | last offset i64 |
//             max timestamp i64   (batch count times)
//   trailer   CRC-32C u32 of every byte before it
namespace snapshot_layout {
constexpr uint32_t kMagic = 0x4F505354;  // "OPST"
constexpr uint16_t kVersion = 1;

constexpr size_t kMagicPos = 0;
constexpr size_t kVersionPos = 4;
constexpr size_t kOffsetPos = 6;
constexpr size_t kCountPos = 14;
constexpr size_t kHeaderBytes = 18;

constexpr size_t kProducerIdPos = 0;
constexpr size_t kEpochPos = 8;
constexpr size_t kLastTimestampPos = 10;
constexpr size_t kBatchCountPos = 18;
constexpr size_t kProducerBytes = 19;

constexpr size_t kFirstSeqPos = 0;
constexpr size_t kLastSeqPos = 4;
constexpr size_t kFirstOffsetPos = 8;
constexpr size_t kLastOffsetPos = 16;
constexpr size_t kMaxTimestampPos = 24;
constexpr size_t kBatchBytes = 32;

constexpr size_t kTrailerBytes = 4;
// A producer holds at least one batch, so each takes at least this many bytes.
constexpr size_t kMinProducerBytes = kProducerBytes + kBatchBytes;

static_assert(kVersionPos == kMagicPos + 4);
static_assert(kOffsetPos == kVersionPos + 2);
static_assert(kCountPos == kOffsetPos + 8);
static_assert(kHeaderBytes == kCountPos + 4);
static_assert(kEpochPos == kProducerIdPos + 8);
static_assert(kLastTimestampPos == kEpochPos + 2);
static_assert(kBatchCountPos == kLastTimestampPos + 8);
static_assert(kProducerBytes == kBatchCountPos + 1);
static_assert(kLastSeqPos == kFirstSeqPos + 4);
static_assert(kFirstOffsetPos == kLastSeqPos + 4);
static_assert(kLastOffsetPos == kFirstOffsetPos + 8);
static_assert(kMaxTimestampPos == kLastOffsetPos + 8);
static_assert(kBatchBytes == kMaxTimestampPos + 8);
static_assert(kRetainedBatchesPerProducer <= 255);  // batch count is a u8
}  // namespace snapshot_layout

int32_t increment_sequence(int32_t sequence, int32_t increment) {
  ORDO_ASSERT(sequence >= 0 && increment >= 0);
  if (sequence > INT32_MAX - increment) return increment - (INT32_MAX - sequence) - 1;
  return sequence + increment;
}

bool in_sequence(int32_t last_seq, int32_t next_seq) {
  return int64_t(next_seq) == int64_t(last_seq) + 1 || (last_seq == INT32_MAX && next_seq == 0);
}

const ProducerBatchMetadata& ProducerEntry::newest() const {
  ORDO_ASSERT(batch_count > 0);
  return batches[batch_count - 1];
}

bool ProducerEntry::operator==(const ProducerEntry& o) const {
  return epoch == o.epoch && last_timestamp == o.last_timestamp &&
         std::ranges::equal(retained(), o.retained());
}

const char* sequence_verdict_name(SequenceVerdict v) {
  switch (v) {
    case SequenceVerdict::append:
      return "append";
    case SequenceVerdict::duplicate:
      return "duplicate";
    case SequenceVerdict::out_of_order_sequence:
      return "out_of_order_sequence";
    case SequenceVerdict::invalid_producer_epoch:
      return "invalid_producer_epoch";
    case SequenceVerdict::invalid_record:
      return "invalid_record";
  }
  return "?";
}

ProducerAppend ProducerAppend::of(const model::RecordBatchView& batch) {
  ProducerAppend a;
  a.producer_id = batch.producer_id();
  a.epoch = batch.producer_epoch();
  a.first_seq = batch.base_sequence();
  a.last_seq = a.first_seq >= 0 ? increment_sequence(a.first_seq, batch.last_offset_delta()) : -1;
  a.first_offset = batch.base();
  a.last_offset = batch.last();
  a.max_timestamp = batch.max_timestamp();
  return a;
}

ProducerStateTable::ProducerStateTable(ProducerStateOptions options) : options_(options) {
  ORDO_ASSERT(options_.max_producers >= 1);
}

SequenceCheck ProducerStateTable::check(const model::RecordBatchView& batch) const {
  if (batch.is_control()) return SequenceCheck{};
  return check(batch.producer_id(), batch.producer_epoch(), batch.base_sequence(),
               batch.last_offset_delta());
}

SequenceCheck ProducerStateTable::check(int64_t producer_id, int16_t epoch, int32_t base_sequence,
                                        int32_t last_offset_delta) const {
  ORDO_ASSERT(last_offset_delta >= 0);
  SequenceCheck r;
  if (producer_id < 0) return r;  // not idempotent
  if (epoch < 0 || base_sequence < 0) {
    r.verdict = SequenceVerdict::invalid_record;
    return r;
  }
  auto it = producers_.find(producer_id);
  if (it == producers_.end()) {
    bool ok = base_sequence == 0 || !options_.require_seq_zero_for_unknown_producer;
    r.verdict = ok ? SequenceVerdict::append : SequenceVerdict::out_of_order_sequence;
    return r;
  }
  const ProducerEntry& e = it->second;
  r.current_epoch = e.epoch;
  r.current_last_seq = e.newest().last_seq;
  if (epoch < e.epoch) {
    r.verdict = SequenceVerdict::invalid_producer_epoch;
  } else if (epoch > e.epoch) {
    r.verdict =
        base_sequence == 0 ? SequenceVerdict::append : SequenceVerdict::out_of_order_sequence;
  } else {
    const int32_t last_seq = increment_sequence(base_sequence, last_offset_delta);
    for (const auto& b : e.retained()) {
      if (b.first_seq == base_sequence && b.last_seq == last_seq) {
        r.verdict = SequenceVerdict::duplicate;
        r.first_offset = b.first_offset;
        r.last_offset = b.last_offset;
        return r;
      }
    }
    r.verdict = in_sequence(e.newest().last_seq, base_sequence)
                    ? SequenceVerdict::append
                    : SequenceVerdict::out_of_order_sequence;
  }
  return r;
}

void ProducerStateTable::update(const ProducerAppend& a) {
  ORDO_ASSERT(a.producer_id >= 0 && a.epoch >= 0 && a.first_seq >= 0 && a.last_seq >= 0);
  ORDO_ASSERT(Offset(0) <= a.first_offset && a.first_offset <= a.last_offset);
  ORDO_ASSERT(a.last_offset - a.first_offset <= INT32_MAX);
  ORDO_ASSERT(a.last_seq ==
              increment_sequence(a.first_seq, int32_t(a.last_offset - a.first_offset)));
  if (auto it = producers_.find(a.producer_id); it != producers_.end()) {
    ORDO_ASSERT_MSG(a.first_offset > it->second.newest().last_offset,
                    "a producer's batches must be recorded in offset order");
  }
  record(a);
}

bool ProducerStateTable::apply_batch(const model::RecordBatchView& batch) {
  if (batch.is_control() || batch.producer_id() < 0 || batch.producer_epoch() < 0 ||
      batch.base_sequence() < 0) {
    return false;
  }
  ProducerAppend a = ProducerAppend::of(batch);
  if (auto it = producers_.find(a.producer_id);
      it != producers_.end() && a.first_offset <= it->second.newest().last_offset) {
    return false;
  }
  record(a);
  return true;
}

void ProducerStateTable::record(const ProducerAppend& a) {
  auto it = producers_.find(a.producer_id);
  if (it == producers_.end()) {
    if (producers_.size() >= options_.max_producers) evict_oldest();
    it = producers_.emplace(a.producer_id, ProducerEntry{.epoch = a.epoch}).first;
  } else {
    by_timestamp_.erase({it->second.last_timestamp, a.producer_id});
  }
  ProducerEntry& e = it->second;
  if (e.epoch != a.epoch) {
    e.epoch = a.epoch;
    e.batch_count = 0;  // a new epoch restarts the window
  }
  if (e.batch_count == kRetainedBatchesPerProducer) {
    std::move(e.batches.begin() + 1, e.batches.end(), e.batches.begin());
    --e.batch_count;
  }
  e.batches[e.batch_count++] = ProducerBatchMetadata{a.first_seq, a.last_seq, a.first_offset,
                                                     a.last_offset, a.max_timestamp};
  e.last_timestamp = a.max_timestamp;
  by_timestamp_.insert({e.last_timestamp, a.producer_id});
  ORDO_ASSERT(by_timestamp_.size() == producers_.size());
  ORDO_ASSERT(producers_.size() <= options_.max_producers);
}

void ProducerStateTable::erase(Map::iterator it) {
  size_t n = by_timestamp_.erase({it->second.last_timestamp, it->first});
  ORDO_ASSERT(n == 1);
  producers_.erase(it);
}

void ProducerStateTable::evict_oldest() {
  ORDO_ASSERT(!by_timestamp_.empty());
  auto it = producers_.find(by_timestamp_.begin()->second);
  ORDO_ASSERT(it != producers_.end());
  erase(it);
}

size_t ProducerStateTable::expire(int64_t now_ms, int64_t producer_id_expiration_ms) {
  ORDO_ASSERT(producer_id_expiration_ms >= 0);
  // Expired: now_ms - last_timestamp >= limit, i.e. last_timestamp <= now_ms - limit.
  int64_t cutoff;
  if (__builtin_sub_overflow(now_ms, producer_id_expiration_ms, &cutoff)) return 0;
  size_t removed = 0;
  while (!by_timestamp_.empty() && by_timestamp_.begin()->first <= cutoff) {
    evict_oldest();
    ++removed;
  }
  return removed;
}

void ProducerStateTable::truncate_after(Offset log_end) {
  for (auto it = producers_.begin(); it != producers_.end();) {
    ProducerEntry& e = it->second;
    const uint8_t before = e.batch_count;
    while (e.batch_count > 0 && e.batches[e.batch_count - 1].last_offset >= log_end) {
      e.batches[--e.batch_count] = ProducerBatchMetadata{};
    }
    if (e.batch_count == before) {
      ++it;
      continue;
    }
    by_timestamp_.erase({e.last_timestamp, it->first});
    if (e.batch_count == 0) {
      it = producers_.erase(it);
      continue;
    }
    e.last_timestamp = e.newest().max_timestamp;
    by_timestamp_.insert({e.last_timestamp, it->first});
    ++it;
  }
  ORDO_ASSERT(by_timestamp_.size() == producers_.size());
}

void ProducerStateTable::truncate_before(Offset log_start) {
  for (auto it = producers_.begin(); it != producers_.end();) {
    if (it->second.newest().last_offset < log_start) {
      auto next = std::next(it);
      erase(it);
      it = next;
    } else {
      ++it;
    }
  }
}

const ProducerEntry* ProducerStateTable::find(int64_t producer_id) const {
  auto it = producers_.find(producer_id);
  return it == producers_.end() ? nullptr : &it->second;
}

std::vector<int64_t> ProducerStateTable::producer_ids() const {
  std::vector<int64_t> ids;
  ids.reserve(producers_.size());
  for (const auto& [id, e] : producers_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<std::vector<uint8_t>> ProducerStateTable::encode_snapshot(Offset up_to) const {
  namespace L = snapshot_layout;
  if (up_to < Offset(0)) return make_error(Errc::invalid_argument, "snapshot offset {}", up_to);
  ORDO_ASSERT(producers_.size() <= UINT32_MAX);
  size_t size = L::kHeaderBytes + L::kTrailerBytes;
  for (const auto& [id, e] : producers_) {
    if (e.newest().last_offset >= up_to) {
      return make_error(Errc::invalid_argument,
                        "producer {} has a batch ending at {}, not below the snapshot offset {}",
                        id, e.newest().last_offset, up_to);
    }
    size += L::kProducerBytes + e.batch_count * L::kBatchBytes;
  }
  std::vector<uint8_t> out(size);
  uint8_t* p = out.data();
  store_be32(p + L::kMagicPos, L::kMagic);
  store_be16(p + L::kVersionPos, L::kVersion);
  store_be64(p + L::kOffsetPos, uint64_t(up_to.value()));
  store_be32(p + L::kCountPos, uint32_t(producers_.size()));
  p += L::kHeaderBytes;
  for (int64_t id : producer_ids()) {  // ascending ids: one encoding per table
    const ProducerEntry& e = producers_.at(id);
    store_be64(p + L::kProducerIdPos, uint64_t(id));
    store_be16(p + L::kEpochPos, uint16_t(e.epoch));
    store_be64(p + L::kLastTimestampPos, uint64_t(e.last_timestamp));
    p[L::kBatchCountPos] = e.batch_count;
    p += L::kProducerBytes;
    for (const auto& b : e.retained()) {
      store_be32(p + L::kFirstSeqPos, uint32_t(b.first_seq));
      store_be32(p + L::kLastSeqPos, uint32_t(b.last_seq));
      store_be64(p + L::kFirstOffsetPos, uint64_t(b.first_offset.value()));
      store_be64(p + L::kLastOffsetPos, uint64_t(b.last_offset.value()));
      store_be64(p + L::kMaxTimestampPos, uint64_t(b.max_timestamp));
      p += L::kBatchBytes;
    }
  }
  ORDO_ASSERT(size_t(p - out.data()) == size - L::kTrailerBytes);
  store_be32(p, crc32c(0, out.data(), size - L::kTrailerBytes));
  return out;
}

Result<ProducerSnapshot> ProducerStateTable::decode_snapshot(std::span<const uint8_t> bytes,
                                                             ProducerStateOptions options) {
  namespace L = snapshot_layout;
  if (bytes.size() < L::kHeaderBytes + L::kTrailerBytes) {
    return make_error(Errc::corrupt, "producer snapshot of {} bytes, at least {} expected",
                      bytes.size(), L::kHeaderBytes + L::kTrailerBytes);
  }
  const size_t body_end = bytes.size() - L::kTrailerBytes;
  const uint8_t* base = bytes.data();
  uint32_t stored_crc = load_be32(base + body_end);
  uint32_t actual_crc = crc32c(0, base, body_end);
  if (stored_crc != actual_crc) {
    return make_error(Errc::corrupt, "producer snapshot CRC {:08x}, computed {:08x}", stored_crc,
                      actual_crc);
  }
  if (load_be32(base + L::kMagicPos) != L::kMagic) {
    return make_error(Errc::corrupt, "producer snapshot magic {:08x}",
                      load_be32(base + L::kMagicPos));
  }
  if (uint16_t v = load_be16(base + L::kVersionPos); v != L::kVersion) {
    return make_error(Errc::corrupt, "producer snapshot version {} (only {} is known)", v,
                      L::kVersion);
  }
  const Offset offset(int64_t(load_be64(base + L::kOffsetPos)));
  if (offset < Offset(0)) {
    return make_error(Errc::corrupt, "producer snapshot offset {}", offset);
  }
  const uint32_t count = load_be32(base + L::kCountPos);
  size_t pos = L::kHeaderBytes;
  if (count > (body_end - pos) / L::kMinProducerBytes) {
    return make_error(Errc::corrupt, "producer snapshot claims {} producers in {} bytes", count,
                      body_end - pos);
  }

  ProducerSnapshot snap{offset, ProducerStateTable(options)};
  ProducerStateTable& t = snap.table;
  t.producers_.reserve(count);
  int64_t prev_id = -1;
  for (uint32_t i = 0; i < count; ++i) {
    if (body_end - pos < L::kProducerBytes) {
      return make_error(Errc::corrupt, "producer snapshot ends inside producer {}", i);
    }
    const uint8_t* p = base + pos;
    const int64_t id = int64_t(load_be64(p + L::kProducerIdPos));
    ProducerEntry e;
    e.epoch = int16_t(load_be16(p + L::kEpochPos));
    e.last_timestamp = int64_t(load_be64(p + L::kLastTimestampPos));
    const uint8_t n = p[L::kBatchCountPos];
    pos += L::kProducerBytes;
    if (id < 0) {
      return make_error(Errc::corrupt, "producer snapshot: producer id {} is negative", id);
    }
    if (id <= prev_id) {
      return make_error(Errc::corrupt, "producer snapshot: producer id {} after {}", id, prev_id);
    }
    if (e.epoch < 0) {
      return make_error(Errc::corrupt, "producer snapshot: producer {} has epoch {}", id, e.epoch);
    }
    if (n == 0 || n > kRetainedBatchesPerProducer) {
      return make_error(Errc::corrupt, "producer snapshot: producer {} has {} batches", id, n);
    }
    if (body_end - pos < n * L::kBatchBytes) {
      return make_error(Errc::corrupt, "producer snapshot ends inside producer {}'s batches", id);
    }
    for (uint8_t j = 0; j < n; ++j) {
      const uint8_t* b = base + pos;
      ProducerBatchMetadata m{
          .first_seq = int32_t(load_be32(b + L::kFirstSeqPos)),
          .last_seq = int32_t(load_be32(b + L::kLastSeqPos)),
          .first_offset = Offset(int64_t(load_be64(b + L::kFirstOffsetPos))),
          .last_offset = Offset(int64_t(load_be64(b + L::kLastOffsetPos))),
          .max_timestamp = int64_t(load_be64(b + L::kMaxTimestampPos)),
      };
      pos += L::kBatchBytes;
      const bool offsets_ok = Offset(0) <= m.first_offset && m.first_offset <= m.last_offset &&
                              m.last_offset < offset &&
                              m.last_offset - m.first_offset <= INT32_MAX &&
                              (j == 0 || e.batches[j - 1].last_offset < m.first_offset);
      if (!offsets_ok) {
        return make_error(Errc::corrupt,
                          "producer snapshot: producer {} batch {} has offsets [{}, {}] (snapshot "
                          "offset {})",
                          id, j, m.first_offset, m.last_offset, offset);
      }
      if (m.first_seq < 0 || m.last_seq < 0 ||
          m.last_seq != increment_sequence(m.first_seq, int32_t(m.last_offset - m.first_offset))) {
        return make_error(Errc::corrupt,
                          "producer snapshot: producer {} batch {} has sequences [{}, {}] for "
                          "offsets [{}, {}]",
                          id, j, m.first_seq, m.last_seq, m.first_offset, m.last_offset);
      }
      e.batches[j] = m;
    }
    e.batch_count = n;
    t.producers_.emplace(id, e);
    t.by_timestamp_.insert({e.last_timestamp, id});
    prev_id = id;
  }
  if (pos != body_end) {
    return make_error(Errc::corrupt, "producer snapshot has {} bytes after its last producer",
                      body_end - pos);
  }
  while (t.producers_.size() > t.options_.max_producers) t.evict_oldest();
  ORDO_ASSERT(t.by_timestamp_.size() == t.producers_.size());
  return snap;
}

// ---- snapshot files ----

namespace {
constexpr std::string_view kSnapshotSuffix = ".snapshot";
}

std::string snapshot_file_name(Offset offset) {
  ORDO_ASSERT(offset >= Offset(0));
  return segment_file_name(offset, kSnapshotSuffix);
}

std::optional<Offset> parse_snapshot_file_name(std::string_view name) {
  if (name.size() != 20 + kSnapshotSuffix.size() || !name.ends_with(kSnapshotSuffix)) {
    return std::nullopt;
  }
  if (!std::all_of(name.begin(), name.begin() + 20, [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int64_t v = -1;
  auto [p, ec] = std::from_chars(name.data(), name.data() + 20, v);
  if (ec != std::errc() || p != name.data() + 20) return std::nullopt;  // beyond INT64_MAX
  return Offset(v);
}

Result<void> write_snapshot_file(const std::string& dir, const ProducerStateTable& table,
                                 Offset offset, bool sync) {
  std::vector<uint8_t> bytes = ORDO_TRY(table.encode_snapshot(offset));
  const std::string path = dir + "/" + snapshot_file_name(offset);
  if (!sync) return write_file_atomic_unsynced(path, std::span<const uint8_t>(bytes));
  return write_file_atomic(path, std::span<const uint8_t>(bytes));
}

Result<std::vector<Offset>> list_snapshot_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<Offset> offsets;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (auto o = parse_snapshot_file_name(it->path().filename().string())) offsets.push_back(*o);
  }
  if (ec) return make_error(Errc::io, "list {}: {}", dir, ec.message());
  std::sort(offsets.begin(), offsets.end());
  return offsets;
}

Result<SnapshotLoad> read_latest_snapshot(const std::string& dir, Offset max_offset,
                                          ProducerStateOptions options) {
  std::vector<Offset> offsets = ORDO_TRY(list_snapshot_files(dir));
  SnapshotLoad load;
  for (auto it = offsets.rbegin(); it != offsets.rend(); ++it) {
    const std::string name = snapshot_file_name(*it);
    if (*it > max_offset) {
      load.skipped.push_back(fmt::format("{}: past the log end {}", name, max_offset));
      continue;
    }
    auto text = read_file(dir + "/" + name, kMaxSnapshotFileBytes);
    if (!text) {
      load.skipped.push_back(fmt::format("{}: {}", name, text.error().to_string()));
      continue;
    }
    auto snap = ProducerStateTable::decode_snapshot(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text->data()), text->size()),
        options);
    if (!snap) {
      load.skipped.push_back(fmt::format("{}: {}", name, snap.error().to_string()));
      continue;
    }
    if (snap->offset != *it) {
      load.skipped.push_back(
          fmt::format("{}: corrupt: holds the snapshot of offset {}", name, snap->offset));
      continue;
    }
    load.snapshot.emplace(std::move(snap).value());
    break;
  }
  return load;
}

namespace {
// Removes the named snapshot files, then (sync) fsyncs dir if any was removed.
Result<size_t> remove_snapshots(const std::string& dir, std::span<const Offset> offsets,
                                bool sync = true) {
  for (Offset o : offsets) ORDO_TRY(remove_file(dir + "/" + snapshot_file_name(o)));
  if (sync && !offsets.empty()) ORDO_TRY(fsync_dir(dir));
  return offsets.size();
}
}  // namespace

Result<size_t> prune_snapshots(const std::string& dir, size_t keep, bool sync) {
  std::vector<Offset> offsets = ORDO_TRY(list_snapshot_files(dir));
  if (offsets.size() <= keep) return size_t(0);
  return remove_snapshots(dir, std::span<const Offset>(offsets).first(offsets.size() - keep), sync);
}

Result<size_t> remove_snapshots_after(const std::string& dir, Offset log_end) {
  std::vector<Offset> offsets = ORDO_TRY(list_snapshot_files(dir));
  auto first = std::upper_bound(offsets.begin(), offsets.end(), log_end);
  return remove_snapshots(dir, std::span<const Offset>(first, offsets.end()));
}

}  // namespace ordo::storage
