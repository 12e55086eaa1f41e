#include "storage/index.h"

#include <algorithm>

#include "base/coding.h"

namespace ordo::storage {

// docs/storage-format.md: .index entries are (u32 relative offset, u32 position) and
// .timeindex entries are (i64 timestamp, u32 relative offset).
static_assert(kOffsetIndexEntryBytes == sizeof(uint32_t) + sizeof(uint32_t));
static_assert(kTimeIndexEntryBytes == sizeof(int64_t) + sizeof(uint32_t));

void OffsetIndex::append(Offset offset, int64_t position) {
  int64_t rel = offset - base_;
  ORDO_ASSERT(rel >= 0 && rel <= int64_t(UINT32_MAX));
  ORDO_ASSERT(position >= 0 && position <= int64_t(UINT32_MAX));
  ORDO_ASSERT(rel_.empty() || (uint32_t(rel) > rel_.back() && uint32_t(position) > pos_.back()));
  rel_.push_back(uint32_t(rel));
  pos_.push_back(uint32_t(position));
}

OffsetIndexEntry OffsetIndex::lookup(Offset target) const {
  int64_t rel = target - base_;
  if (rel < 0 || rel_.empty()) return {base_, 0};
  uint32_t key = rel > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(rel);
  auto it = std::upper_bound(rel_.begin(), rel_.end(), key);
  if (it == rel_.begin()) return {base_, 0};
  size_t i = size_t(it - rel_.begin()) - 1;
  return {base_ + int64_t(rel_[i]), int64_t(pos_[i])};
}

OffsetIndexEntry OffsetIndex::lookup_position(int64_t pos) const {
  if (pos < 0 || pos_.empty()) return {base_, 0};
  uint32_t key = pos > int64_t(UINT32_MAX) ? UINT32_MAX : uint32_t(pos);
  auto it = std::upper_bound(pos_.begin(), pos_.end(), key);
  if (it == pos_.begin()) return {base_, 0};
  size_t i = size_t(it - pos_.begin()) - 1;
  return {base_ + int64_t(rel_[i]), int64_t(pos_[i])};
}

void OffsetIndex::truncate_to_position(int64_t pos) {
  auto it = std::lower_bound(pos_.begin(), pos_.end(), uint32_t(std::max<int64_t>(pos, 0)));
  size_t keep = size_t(it - pos_.begin());
  rel_.resize(keep);
  pos_.resize(keep);
}

std::optional<OffsetIndexEntry> OffsetIndex::last() const {
  if (rel_.empty()) return std::nullopt;
  return OffsetIndexEntry{base_ + int64_t(rel_.back()), int64_t(pos_.back())};
}

std::vector<uint8_t> OffsetIndex::serialize() const {
  std::vector<uint8_t> out(rel_.size() * kOffsetIndexEntryBytes);
  for (size_t i = 0; i < rel_.size(); ++i) {
    store_be32(out.data() + i * 8, rel_[i]);
    store_be32(out.data() + i * 8 + 4, pos_[i]);
  }
  return out;
}

Result<OffsetIndex> OffsetIndex::parse(Offset base, std::span<const uint8_t> bytes,
                                       int64_t log_size) {
  if (bytes.size() % kOffsetIndexEntryBytes != 0) {
    return make_error(Errc::corrupt, "offset index of {} bytes is not whole entries", bytes.size());
  }
  OffsetIndex idx(base);
  size_t n = bytes.size() / kOffsetIndexEntryBytes;
  idx.rel_.reserve(n);
  idx.pos_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t rel = load_be32(bytes.data() + i * 8);
    uint32_t pos = load_be32(bytes.data() + i * 8 + 4);
    if (i > 0 && (rel <= idx.rel_.back() || pos <= idx.pos_.back())) {
      return make_error(Errc::corrupt, "offset index entry {} is not increasing", i);
    }
    if (int64_t(pos) >= log_size) {
      return make_error(Errc::corrupt, "offset index entry {} points at {} past the log ({})", i,
                        pos, log_size);
    }
    idx.rel_.push_back(rel);
    idx.pos_.push_back(pos);
  }
  return idx;
}

void TimeIndex::maybe_append(int64_t timestamp, Offset offset) {
  ORDO_ASSERT(offset >= base_ && offset - base_ <= int64_t(UINT32_MAX));
  if (!entries_.empty()) {
    if (timestamp <= entries_.back().timestamp) return;
    ORDO_ASSERT(offset >= entries_.back().offset);
  }
  entries_.push_back({timestamp, offset});
}

std::optional<TimeIndexEntry> TimeIndex::lookup_before(int64_t target) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), target,
                             [](const TimeIndexEntry& e, int64_t t) { return e.timestamp < t; });
  if (it == entries_.begin()) return std::nullopt;
  return *(it - 1);
}

void TimeIndex::truncate_to_offset(Offset o) {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), o,
                             [](const TimeIndexEntry& e, Offset x) { return e.offset < x; });
  entries_.erase(it, entries_.end());
}

std::optional<TimeIndexEntry> TimeIndex::last() const {
  if (entries_.empty()) return std::nullopt;
  return entries_.back();
}

std::vector<uint8_t> TimeIndex::serialize() const {
  std::vector<uint8_t> out(entries_.size() * kTimeIndexEntryBytes);
  for (size_t i = 0; i < entries_.size(); ++i) {
    store_be64(out.data() + i * 12, uint64_t(entries_[i].timestamp));
    store_be32(out.data() + i * 12 + 8, uint32_t(entries_[i].offset - base_));
  }
  return out;
}

Result<TimeIndex> TimeIndex::parse(Offset base, std::span<const uint8_t> bytes,
                                   Offset next_offset) {
  if (bytes.size() % kTimeIndexEntryBytes != 0) {
    return make_error(Errc::corrupt, "time index of {} bytes is not whole entries", bytes.size());
  }
  TimeIndex idx(base);
  size_t n = bytes.size() / kTimeIndexEntryBytes;
  idx.entries_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t ts = int64_t(load_be64(bytes.data() + i * 12));
    Offset off = base + int64_t(load_be32(bytes.data() + i * 12 + 8));
    if (off >= next_offset) {
      return make_error(Errc::corrupt, "time index entry {} offset {} past the log end {}", i, off,
                        next_offset);
    }
    if (i > 0 && (ts <= idx.entries_.back().timestamp || off < idx.entries_.back().offset)) {
      return make_error(Errc::corrupt, "time index entry {} is not increasing", i);
    }
    idx.entries_.push_back({ts, off});
  }
  return idx;
}

}  // namespace ordo::storage
