#pragma once
// The leader-epoch checkpoint: for each leader epoch, the first offset written in it. A new
// leader's followers use it to find where their logs diverge (replication, later issues).
//
// File "leader-epoch-checkpoint" in the partition dir, text, replaced atomically:
//   0                      format version
//   <N>                    number of entries
//   <epoch> <start offset> N lines, epochs and start offsets strictly increasing

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/strong_int.h"

namespace ordo::storage {

struct EpochEntry {
  int32_t epoch;
  Offset start_offset;
  bool operator==(const EpochEntry&) const = default;
};

class LeaderEpochCache {
 public:
  // Loads path; a missing file is an empty cache, a malformed one is Errc::corrupt.
  static Result<LeaderEpochCache> load(std::string path);

  // Records that epoch starts at start_offset. Ignored unless epoch is newer than the latest;
  // entries at or past start_offset are replaced. Persists on change.
  Result<void> assign(int32_t epoch, Offset start_offset);
  // Removes entries starting at or after end (log truncation).
  Result<void> truncate_from_end(Offset end);
  // Entries before start collapse into one starting at start (log start advanced).
  Result<void> truncate_from_start(Offset start);

  std::optional<EpochEntry> latest() const;
  // The epoch of the record at offset: the last entry starting at or before it.
  std::optional<int32_t> epoch_for(Offset offset) const;
  // Kafka's OffsetForLeaderEpoch: the largest epoch <= requested and the start of the next
  // epoch (or log_end for the latest). nullopt when requested precedes every entry.
  std::optional<std::pair<int32_t, Offset>> end_offset_for(int32_t epoch, Offset log_end) const;
  const std::vector<EpochEntry>& entries() const { return entries_; }

 private:
  explicit LeaderEpochCache(std::string path) : path_(std::move(path)) {}
  Result<void> persist() const;
  std::string path_;
  std::vector<EpochEntry> entries_;
};

}  // namespace ordo::storage
