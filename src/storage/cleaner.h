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
//      groups of consecutive segments merged into one: a group takes the next segment while
//      its output is below segment.bytes and the offsets and positions stay within 2^31 of
//      its base (the indexes' 32-bit fields). A first clean of a log thus merges the small
//      outputs of many segments into one; an output may pass segment.bytes by one input's
//      survivors.
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
// The three phases. clean() runs all of them on the writer thread (tests, tools). The
// background cleaner (log_cleaner.h) splits them so that the long part never runs there:
//   plan_clean()    writer thread: picks the range and snapshots what the build needs (the
//                   sealed segments' shared File handles and sizes, the config, the
//                   producers' last batches). Cheap: no I/O.
//   build_clean()   any thread: passes 1 and 2 over the snapshot (sealed segments are
//                   immutable; the File handles keep them readable even if retention deletes
//                   them meanwhile), writes and fsyncs the .cleaned files, at a bounded I/O
//                   rate, cancellable between batches. Touches no state of the PartitionLog.
//   commit_clean()  writer thread: checks that every segment the build replaces is still in
//                   the log, unchanged (same file, same size, still sealed) and that no other
//                   clean moved the first dirty offset; if not (retention, truncation, a
//                   policy change), the output is discarded and the log is untouched.
//                   Otherwise step 4 runs. Reads in flight keep their FileSlice: the old
//                   files stay readable until the last handle goes.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/file.h"
#include "base/result.h"
#include "base/strong_int.h"
#include "compression/records.h"
#include "model/record_batch.h"
#include "storage/config.h"

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
  bool aborted = false;            // built, but the log changed meanwhile: nothing swapped
  // The replaced files, renamed to <file>.deleted by the swap: for the caller to unlink with
  // remove_garbage, off the partition's thread (freeing a large file's blocks takes time).
  std::vector<std::string> garbage;
};

// One new segment and the old ones it replaces (its base is the first old one's).
struct SwapGroup {
  Offset base;
  std::vector<Offset> replaced;
};

// Cumulative cleaner figures of one log since it was opened, and its dirty state now.
struct CleanerStats {
  double dirty_ratio = 0;       // dirty bytes / cleanable bytes
  int64_t cleanable_bytes = 0;  // sealed segments old enough to clean
  int64_t dirty_bytes = 0;      // of which not yet covered by a clean
  Offset first_dirty{0};
  // How long the oldest uncleaned sealed segment has waited since its newest record (0 when
  // none waits): the cleaner's lag.
  int64_t lag_ms = 0;
  bool due = false;  // the cleaner would clean it now (dirty enough or overdue)
  int64_t cleans = 0;
  int64_t aborted = 0;
  int64_t bytes_read = 0;
  int64_t bytes_written = 0;
  int64_t records_dropped = 0;
  int64_t last_clean_ms = -1;  // wall-clock time of the last completed clean
};

// What build_clean needs, snapshotted by PartitionLog::plan_clean on the writer thread.
struct CleanPlan {
  struct Input {
    Offset base;
    Offset next;
    int64_t size = 0;
    int64_t retention_timestamp = -1;
    std::shared_ptr<File> log;
  };
  std::string dir;
  LogConfig config;
  CleanerOptions options;
  int64_t now_ms = 0;
  Offset first_dirty{0};
  uint64_t truncations = 0;  // the log's truncation count: a truncation since voids the plan
  bool due = false;          // force, overdue, or dirty enough: a scheduler cleans only due plans
  std::vector<Input> segments;  // the cleanable segments, in order
  // Producer id -> last offset of its newest batch (an emptied batch there stays as a header).
  std::unordered_map<int64_t, int64_t> producer_last;
  CleanResult result;  // dirty_ratio and first_dirty filled in
};

// The .cleaned files a build wrote and synced, and what they replace.
struct CleanOutput {
  CleanResult result;
  std::vector<SwapGroup> groups;
  bool empty() const { return groups.empty(); }
};

// Caps a stream of I/O at bytes_per_second (0: no cap) by sleeping in charge().
class IoThrottle {
 public:
  explicit IoThrottle(int64_t bytes_per_second) : rate_(bytes_per_second) {}
  // Accounts bytes; sleeps until the average since the first charge is within the rate, in
  // steps of at most 100 ms, returning early when cancel becomes true.
  void charge(int64_t bytes, const std::atomic<bool>* cancel = nullptr);
  int64_t rate() const { return rate_; }

 private:
  int64_t rate_;
  int64_t charged_ = 0;
  int64_t start_ns_ = -1;
};

struct BuildControl {
  IoThrottle* throttle = nullptr;             // null: no cap
  const std::atomic<bool>* cancel = nullptr;  // true: stop with Errc::closed
};

// Passes 1 and 2 of a plan: writes and syncs the .cleaned files. Any thread; see above.
// A plan whose map cannot hold one batch yields an empty output (nothing written). On error
// or cancellation nothing is left behind.
Result<CleanOutput> build_clean(const CleanPlan& plan, const BuildControl& control = {});
// Removes an output's .cleaned files (a build that will not be committed).
void discard_clean(const std::string& dir, const CleanOutput& output);
// Unlinks a committed clean's replaced files (CleanResult::garbage); failures are logged.
void remove_garbage(const std::vector<std::string>& paths);

// Key -> latest offset with a memory budget. Full keys are stored: an entry can never be
// shared by two keys, so no collision can make the cleaner drop the latest record of a key.
// A flat open-addressing table (linear probing, at most half full) of 24-byte slots holding
// the key's hash, its offset and where the key's bytes are in an arena: a lookup touches one
// slot and compares keys only when the full 64-bit hashes match.
class KeyMap {
 public:
  // Bytes charged per entry besides the key: two slots (the table is at most half full) and
  // the transient copy while the table doubles, rounded up.
  static constexpr int64_t kEntryOverheadBytes = 64;

  explicit KeyMap(int64_t budget_bytes) : budget_(budget_bytes) {}
  // What adding this key would charge (a key already present costs nothing).
  int64_t cost_of_new(std::string_view key) const;
  bool fits(int64_t more_bytes) const { return used_ + more_bytes <= budget_; }
  // Records offset as key's latest (offsets only grow). Charges the budget for new keys.
  void put(std::string_view key, Offset offset) { put(hash_of(key), key, offset); }
  std::optional<Offset> get(std::string_view key) const { return get(hash_of(key), key); }
  // The same with the key's hash computed beforehand, so that a caller can prefetch the
  // slots of a whole batch of keys first (the table is larger than the caches).
  static uint64_t hash_of(std::string_view key);
  void prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[size_t(hash) & (slots_.size() - 1)]);
  }
  void put(uint64_t hash, std::string_view key, Offset offset);
  std::optional<Offset> get(uint64_t hash, std::string_view key) const;
  int64_t bytes() const { return used_; }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    int64_t offset = -1;  // -1: empty
    uint32_t chunk = 0;   // the key's bytes: arena_[chunk][pos, pos + len)
    uint32_t pos = 0;
    uint32_t len = 0;
  };
  // The slot holding key, or the empty slot where it would go. The table is never full.
  size_t find(uint64_t h, std::string_view key) const;
  std::string_view key_of(const Slot& s) const {
    return std::string_view(arena_[s.chunk].data() + s.pos, s.len);
  }
  void grow();

  int64_t budget_;
  int64_t used_ = 0;
  size_t size_ = 0;
  std::vector<Slot> slots_;               // power-of-two size, or empty
  std::vector<std::vector<char>> arena_;  // chunks of key bytes, never reallocated once used
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
// The same over records the caller decoded already (compression::decode_batch of batch).
Result<FilteredBatch> filter_batch(
    const model::RecordBatchView& batch, const compression::DecodedBatch& decoded,
    const std::function<RecordDecision(const model::RecordView&, Offset)>& keep, bool retain_empty);

// The files of the swap protocol (docs/storage-format.md).
inline constexpr std::string_view kCleanedSuffix = ".cleaned";
inline constexpr std::string_view kDeletedSuffix = ".deleted";
inline constexpr std::string_view kCleanerSwapFile = "cleaner.swap";
inline constexpr std::string_view kCleanerCheckpointFile = "cleaner.checkpoint";

// Completes a swap whose marker exists (every step is idempotent) or, without a marker,
// removes leftover .cleaned files. Run by PartitionLog::open before it lists the segments.
// Returns the first dirty offset the completed swap recorded, if it completed one.
Result<std::optional<Offset>> recover_cleaner_swap(const std::string& dir);

// cleaner.checkpoint: the first dirty offset (0 when the file does not exist).
Result<Offset> read_cleaner_checkpoint(const std::string& dir);
Result<void> write_cleaner_checkpoint(const std::string& dir, Offset first_dirty);

}  // namespace ordo::storage
