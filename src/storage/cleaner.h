#pragma once
// Log compaction: keeps the latest record of every key in a partition's sealed segments.
//
// PartitionLog::clean(options) (implemented in cleaner.cc) cleans one log on the calling
// thread, which must be the log's writer thread (the single-writer rule of partition_log.h):
//
//   1. Cleanable range. Sealed segments only (never the active one), from the log's first
//      segment up to the first segment that is not cleanable: not wholly below
//      options.cleanable_end, or holding a record younger than min.compaction.lag.ms. The
//      dirty part starts at the persisted first-dirty offset (cleaner.checkpoint). The clean
//      runs when dirty bytes / all cleanable bytes >= min.cleanable.dirty.ratio, when the
//      first dirty segment's newest record is older than max.compaction.lag.ms, or when
//      options.force.
//   2. Pass 1, the key map: key -> offset of its latest record over the dirty range, within
//      options.key_map_bytes. Full keys are stored (KeyMap), so two keys never share an entry
//      and a collision can never drop a record that is the latest for its key. When the next
//      batch's keys do not fit, the map stops before that batch and the clean covers only what
//      the map covers (CleanResult::map_full; the next clean goes on from there), as Kafka's
//      cleaner does. Records of transactional and control batches never enter the map.
//   3. Pass 2, the rewrite. Every segment that starts below the map's end is rewritten, in
//      groups of consecutive segments merged into one (at most segment.bytes of input and
//      offsets within 2^31 of the group's base, which keeps the indexes' 32-bit fields valid).
//      Per batch (filter_batch):
//      - control and transactional batches are copied untouched (transactions come later);
//      - a record is dropped when the map holds a later offset for its key;
//      - a record without a key is kept (Kafka refuses them in compacted topics; a log that
//        switched to compact may still hold some);
//      - a tombstone (null value) that is the latest for its key is dropped when its batch's
//        max timestamp (the segment's mtime when the batch has none) is older than
//        delete.retention.ms, otherwise kept;
//      - a batch that keeps every record is copied byte for byte; one that keeps some is
//        rebuilt with the same header fields (base offset, last offset delta, base timestamp,
//        producer id, epoch, base sequence, leader epoch, attributes), the surviving records'
//        bytes unchanged, recordCount and maxTimestamp recomputed (LogAppendTime batches keep
//        theirs), compressed again with its original codec, with a new CRC; Kafka's
//        MemoryRecords.filterTo does the same for v2 batches;
//      - a batch that keeps no record is removed, except the last batch of a producer the
//        log still tracks, which stays as an empty batch (header only, recordCount 0, no
//        codec) so that the producer's sequence survives a restart (Kafka's RETAIN_EMPTY).
//      Offsets are never changed, so a cleaned log has gaps; reads, index lookups and
//      timestamp lookups step over them.
//   4. The swap (crash-safe; docs/storage-format.md "Compaction"): the new segments are
//      written as <base>.log.cleaned / .index.cleaned / .timeindex.cleaned and fsynced; the
//      marker cleaner.swap naming each new segment and the segments it replaces is written
//      atomically (this is the commit point); the replaced segments are removed and the
//      .cleaned files renamed into place; cleaner.checkpoint gets the new first dirty offset;
//      the marker is removed. PartitionLog::open completes a swap whose marker exists and
//      removes .cleaned files without one (recover_cleaner_swap).
//
// Next slice: a background cleaner thread runs passes 1 and 2 (reading sealed segments,
// which are immutable, through their shared File handles; bounded I/O rate) and writes the
// .cleaned files; then it posts the swap (marker, renames, replacing the Segment objects) to
// the partition's shard thread, which first checks that the replaced segments still exist
// (retention or truncation may have removed them meanwhile; then the cleaned files are
// dropped). Reads already in flight keep their FileSlice: the old files stay readable until
// the last handle goes.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "base/strong_int.h"
#include "model/record_batch.h"

namespace ordo::storage {

// Steps of the swap at which tests make a clean fail, as a crash there would.
enum class CleanFailPoint {
  none,
  after_cleaned_files,    // .cleaned files written and synced, no marker yet
  after_marker,           // marker durable, nothing renamed
  after_first_group,      // the first group swapped, the others not
  before_marker_removal,  // every group swapped and the checkpoint written
};

struct CleanerOptions {
  // Memory for the key map (keys and offsets, KeyMap::kEntryOverheadBytes per entry).
  int64_t key_map_bytes = int64_t(64) << 20;
  // Only segments wholly below this offset are cleaned (e.g. a replication bound).
  std::optional<Offset> cleanable_end;
  // Clean whatever min.cleanable.dirty.ratio says (tests, administrators).
  bool force = false;
  // Treat the whole log as dirty (rebuild the map from the first segment).
  bool full = false;
  CleanFailPoint fail_at = CleanFailPoint::none;
};

struct CleanResult {
  bool cleaned = false;    // false: nothing cleanable, or the dirty ratio was too low
  double dirty_ratio = 0;  // of the cleanable segments, before the clean
  Offset first_dirty{0};   // where the map started
  Offset cleaned_end{0};   // the map covers [first_dirty, cleaned_end): the new first dirty
  bool map_full = false;   // the key map filled before the end of the dirty range
  int64_t map_keys = 0;
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
  int64_t records_kept = 0;
  int64_t records_dropped = 0;
  int64_t tombstones_dropped = 0;
  int64_t batches_dropped = 0;
  int64_t empty_batches_kept = 0;  // producers' last batches kept as headers
  int64_t segments_before = 0;     // segments replaced
  int64_t segments_after = 0;      // segments that replaced them
};

// Key -> latest offset with a memory budget. Full keys are stored: an entry can never be
// shared by two keys, so no collision can make the cleaner drop the latest record of a key.
class KeyMap {
 public:
  // Bytes charged per entry besides the key (hash node, string header, offset).
  static constexpr int64_t kEntryOverheadBytes = 64;

  explicit KeyMap(int64_t budget_bytes) : budget_(budget_bytes) {}
  // What adding these keys would charge (keys already present cost nothing).
  int64_t cost_of_new(std::string_view key) const;
  bool fits(int64_t more_bytes) const { return used_ + more_bytes <= budget_; }
  // Records offset as key's latest (offsets only grow). Charges the budget for new keys.
  void put(std::string_view key, Offset offset);
  std::optional<Offset> get(std::string_view key) const;
  int64_t bytes() const { return used_; }
  size_t size() const { return map_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  int64_t budget_;
  int64_t used_ = 0;
  std::unordered_map<std::string, int64_t, Hash, std::equal_to<>> map_;
};

// What became of one batch.
struct FilteredBatch {
  enum class Kind { unchanged, rewritten, emptied, dropped };
  Kind kind = Kind::unchanged;
  std::vector<uint8_t> bytes;  // rewritten or emptied: the new batch; otherwise empty
  int32_t kept = 0;
  int32_t dropped = 0;
  int32_t tombstones_dropped = 0;
};

// keep(record, offset) decides per record of a data batch. retain_empty: keep an emptied batch
// as a header (the producer's last batch). Control and transactional batches are never passed
// to keep(); they are unchanged. The batch's CRC must have been checked by the caller.
struct RecordDecision {
  bool keep = true;
  bool tombstone_dropped = false;
};
Result<FilteredBatch> filter_batch(
    const model::RecordBatchView& batch,
    const std::function<RecordDecision(const model::RecordView&, Offset)>& keep, bool retain_empty);

// The files of the swap protocol (docs/storage-format.md).
inline constexpr std::string_view kCleanedSuffix = ".cleaned";
inline constexpr std::string_view kCleanerSwapFile = "cleaner.swap";
inline constexpr std::string_view kCleanerCheckpointFile = "cleaner.checkpoint";

// One new segment and the old ones it replaces (its base is the first old one's).
struct SwapGroup {
  Offset base;
  std::vector<Offset> replaced;
};

// Completes a swap whose marker exists (every step is idempotent) or, without a marker,
// removes leftover .cleaned files. Run by PartitionLog::open before it lists the segments.
// Returns the first dirty offset the completed swap recorded, if it completed one.
Result<std::optional<Offset>> recover_cleaner_swap(const std::string& dir);

// cleaner.checkpoint: the first dirty offset (0 when the file does not exist).
Result<Offset> read_cleaner_checkpoint(const std::string& dir);
Result<void> write_cleaner_checkpoint(const std::string& dir, Offset first_dirty);

}  // namespace ordo::storage
