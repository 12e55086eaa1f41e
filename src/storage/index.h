#pragma once
// The two sparse indexes of a segment, kept in memory and written as files on seal and close.
//
// .index: entries of 8 bytes, big-endian, sorted by both fields:
//   0  4  relative offset (batch base offset - segment base offset), uint32
//   4  4  position of that batch in the .log file, uint32
// An entry is added for the first batch written after index_interval_bytes of log since the
// previous entry.
//
// .timeindex: entries of 12 bytes, big-endian, timestamps strictly increasing:
//   0  8  timestamp: the largest batch max-timestamp seen so far in the segment, int64
//   8  4  relative offset of the batch that holds that timestamp, uint32
//
// Both are derived data: recovery rebuilds them from the .log whenever they fail a check.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/strong_int.h"

namespace ordo::storage {

constexpr size_t kOffsetIndexEntryBytes = 8;
constexpr size_t kTimeIndexEntryBytes = 12;

struct OffsetIndexEntry {
  Offset offset;     // absolute
  int64_t position;  // in the .log file
};

class OffsetIndex {
 public:
  explicit OffsetIndex(Offset base) : base_(base) {}

  // offset and position must be greater than the last entry's.
  void append(Offset offset, int64_t position);
  // The last entry with offset <= target; {base, 0} when there is none.
  OffsetIndexEntry lookup(Offset target) const;
  // The last entry with position <= pos; {base, 0} when there is none.
  OffsetIndexEntry lookup_position(int64_t pos) const;
  // Drops entries at positions >= pos.
  void truncate_to_position(int64_t pos);
  std::optional<OffsetIndexEntry> last() const;
  size_t entries() const { return rel_.size(); }

  std::vector<uint8_t> serialize() const;
  // Checks: whole entries, both fields strictly increasing, positions below log_size.
  static Result<OffsetIndex> parse(Offset base, std::span<const uint8_t> bytes, int64_t log_size);

 private:
  Offset base_;
  std::vector<uint32_t> rel_;
  std::vector<uint32_t> pos_;
};

struct TimeIndexEntry {
  int64_t timestamp;
  Offset offset;  // absolute
};

class TimeIndex {
 public:
  explicit TimeIndex(Offset base) : base_(base) {}

  // Appends when timestamp is greater than the last entry's; offsets must not decrease.
  void maybe_append(int64_t timestamp, Offset offset);
  // The last entry with timestamp < target: every record before its offset has an earlier
  // timestamp. nullopt when there is none (scan from the segment start).
  std::optional<TimeIndexEntry> lookup_before(int64_t target) const;
  // Drops entries with offset >= o.
  void truncate_to_offset(Offset o);
  std::optional<TimeIndexEntry> last() const;
  size_t entries() const { return entries_.size(); }

  std::vector<uint8_t> serialize() const;
  // Checks: whole entries, timestamps strictly increasing, offsets non-decreasing and within
  // [base, next_offset).
  static Result<TimeIndex> parse(Offset base, std::span<const uint8_t> bytes, Offset next_offset);

 private:
  Offset base_;
  std::vector<TimeIndexEntry> entries_;
};

}  // namespace ordo::storage
