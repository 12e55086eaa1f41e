#pragma once
// PartitionLog: one partition's append-only log of RecordBatches, as a sorted run of segments.
//
// Threading: a PartitionLog is not thread-safe. Exactly one thread (its LogManager shard)
// calls every method; other threads reach it by posting to that thread. The only work that
// may run elsewhere is execute_flush(ticket), which touches nothing but the ticket's files.
//
// Offsets:  log_start_offset <= high_watermark <= log_end_offset, and
//           flushed_offset <= log_end_offset, checked on every update.
// "Appended" means the batch is in the page cache and readable; "flushed" means an fdatasync
// covering it returned. append() only appends; the flush policy (LogConfig::flush_mode) is
// applied by the caller (LogManager) with prepare_flush / execute_flush / complete_flush, so
// that one fdatasync serves every append that arrived while the previous one ran.
//
// Files in the partition dir (docs/storage-format.md):
//   <base>.log / .index / .timeindex   segments
//   partition.state                    recovery point and log start offset
//   leader-epoch-checkpoint            epoch -> start offset
//   clean-shutdown                     present only between a clean close and the next open
//   cleaner.checkpoint, cleaner.swap   compaction progress and an unfinished swap (cleaner.h)
//   <base>.log.cleaned etc.            a clean's new segments before the swap

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/strong_int.h"
#include "storage/cleaner.h"
#include "storage/config.h"
#include "storage/leader_epoch_cache.h"
#include "storage/producer_state.h"
#include "storage/segment.h"

namespace ordo::storage {

struct OpenOptions {
  // Create the directory and an empty log when it does not exist.
  bool create_if_missing = true;
  // After a crash, cut a segment at a corrupt batch even when valid batches follow it (they
  // are dropped with a warning). Off: such a partition fails to open with Errc::corrupt.
  bool truncate_corrupt = false;
  // The caller syncs the filesystem (syncfs) after opening and before the first append, so the
  // open does not fsync its bookkeeping (a new directory and segment, the clean-shutdown
  // marker's removal, a changed partition.state) file by file. Segments recovered after a
  // crash are still synced here.
  bool defer_sync = false;
};

struct AppendOptions {
  // Leader: the log assigns consecutive offsets and writes leader_epoch into each batch.
  // Follower: batches keep their offsets and epochs; each must start at or after the log end.
  bool assign_offsets = true;
  int32_t leader_epoch = -1;
  // Verify each batch's CRC (a caller that already did may skip it).
  bool verify_crc = true;
  // LogManager, flush mode durable: false completes the append once it is written (a Kafka
  // acks=1 producer); the sync that makes it durable still follows at once (group commit).
  bool wait_for_flush = true;
};

struct AppendResult {
  Offset first_offset;
  Offset last_offset;
  // An idempotent producer's retry of a batch the log already holds: nothing was written and
  // first/last_offset are where the original went.
  bool duplicate = false;
  int64_t max_timestamp = -1;
  int32_t batches = 0;
  Offset log_start_offset;
};

struct ReadOptions {
  Offset start;
  int64_t max_bytes = 1 << 20;
  // Exclusive upper bound on the offsets returned; the high watermark when unset.
  std::optional<Offset> upper_bound;
  // Return the first batch even when it is larger than max_bytes (Kafka's KIP-74).
  bool min_one_batch = true;
};

struct ReadResult {
  FileSlice slice;  // size 0 when no batch qualifies
  Offset log_start_offset;
  Offset high_watermark;
  Offset log_end_offset;
};

struct TimestampOffset {
  int64_t timestamp;
  Offset offset;
  bool operator==(const TimestampOffset&) const = default;
};

// The files an fdatasync must cover to make everything below target durable. Runs anywhere.
struct FlushTicket {
  Offset target;
  Offset active_base;        // segments below this one are sealed and covered by the ticket
  uint64_t truncations = 0;  // the log's truncation count when prepared
  std::vector<std::shared_ptr<File>> data_files;
  std::vector<std::string> metadata_paths;  // index files of sealed segments
};
Result<void> execute_flush(const FlushTicket& ticket);

class PartitionLog {
 public:
  static Result<std::unique_ptr<PartitionLog>> open(std::string dir, const LogConfig& config,
                                                    const Clock& clock, OpenOptions options = {});
  ~PartitionLog();
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;

  // Appends one or more concatenated batches (the caller's buffer: assigned offsets and epochs
  // are written into it). All-or-nothing: any malformed batch rejects the whole call.
  // Idempotent batches (producer id >= 0) are checked against the producer state (leader
  // appends only; such a batch must be alone in its call, as Kafka requires): a retry of one of
  // the producer's last 5 batches returns the original offsets with `duplicate` and writes
  // nothing; a gap is Errc::out_of_order_sequence, an older epoch Errc::invalid_producer_epoch.
  Result<AppendResult> append(std::span<uint8_t> batches, const AppendOptions& options = {});
  Result<ReadResult> read(const ReadOptions& options) const;

  Offset log_start_offset() const { return log_start_; }
  Offset log_end_offset() const { return segments_.rbegin()->second->next_offset(); }
  Offset high_watermark() const { return high_watermark_; }
  Offset flushed_offset() const { return flushed_; }
  // Set by the caller (the replication layer); clamped to [log_start, log_end].
  void set_high_watermark(Offset hw);

  // ListOffsets by timestamp: the first record with timestamp >= ts, nullopt if none.
  Result<std::optional<TimestampOffset>> offset_for_timestamp(int64_t ts) const;
  // ListOffsets MAX_TIMESTAMP: the record with the largest timestamp, nullopt if empty.
  Result<std::optional<TimestampOffset>> max_timestamp_offset() const;

  // Removes every batch with offsets >= offset (whole batches: the batch holding offset goes).
  Result<void> truncate_to(Offset offset);
  // Discards every batch and restarts the log empty at start (log start = log end = start),
  // before or past the current log end: a Raft follower too far behind its leader's log start
  // (Kafka's truncateFullyAndStartAt). The leader-epoch cache and the producer state are
  // emptied. Durable when it returns.
  Result<void> truncate_fully_and_start_at(Offset start);
  // DeleteRecords: moves the log start forward (not past the high watermark) and deletes
  // segments wholly below it.
  Result<void> advance_log_start_offset(Offset offset);
  // Applies retention.bytes and retention.ms (and the log start) by deleting whole segments.
  // Returns the number deleted.
  Result<int> enforce_retention();
  // Rolls to a new segment if segment.ms has passed since the active one got its first batch.
  Result<bool> maybe_roll_by_time();

  // Compaction of the sealed segments (cleaner.h; implemented in cleaner.cc). Runs on the
  // writer thread; a no-op unless cleanup.policy includes compact. clean() = plan_clean +
  // build_clean + commit_clean, all here; the background cleaner runs build_clean elsewhere.
  Result<CleanResult> clean(const CleanerOptions& options = {});
  // nullopt when the policy does not compact or nothing is cleanable; a plan that is not
  // `due` only reports the dirty ratio.
  Result<std::optional<CleanPlan>> plan_clean(const CleanerOptions& options = {});
  // Swaps a built output in, or drops it (result.aborted) when the log changed since the plan.
  Result<CleanResult> commit_clean(const CleanPlan& plan, CleanOutput output);
  CleanerStats cleaner_stats() const;
  // Offsets below this were covered by a clean's key map (persisted in cleaner.checkpoint).
  Offset first_dirty_offset() const { return first_dirty_; }

  FlushTicket prepare_flush() const;
  void complete_flush(const FlushTicket& ticket);
  // prepare + execute + complete on this thread.
  Result<void> flush();
  // True after a roll, until the next completed flush: sealed segments await their sync.
  bool has_unflushed_sealed_segments() const;

  // Flushes everything, writes the indexes and the clean-shutdown marker. Nothing may be
  // called afterwards.
  Result<void> close();
  // close() in two halves, for a caller that closes many logs with one filesystem sync
  // (syncfs) after each half instead of a dozen fsyncs per log. close_begin() seals the active
  // segment (indexes written) and snapshots the producers, without syncing; after the caller's
  // sync has made that and every appended byte durable, close_end() records the recovery point
  // and writes the clean-shutdown marker, unsynced too: the caller syncs again. Nothing may be
  // called after close_begin() but close_end() (or nothing, when the sync failed: the next
  // open then recovers as after a crash).
  Result<void> close_begin();
  Result<void> close_end();
  // Closes and deletes the directory.
  Result<void> close_and_remove();

  const LogConfig& config() const { return config_; }
  void set_config(const LogConfig& config);
  const LeaderEpochCache& epochs() const { return epochs_; }
  const ProducerStateTable& producers() const { return producers_; }
  const std::string& dir() const { return dir_; }
  size_t segment_count() const { return segments_.size(); }
  int64_t size_bytes() const;
  std::vector<Offset> segment_bases() const;

 private:
  PartitionLog(std::string dir, const LogConfig& config, const Clock& clock,
               LeaderEpochCache epochs);
  Result<void> load(const OpenOptions& options);
  Result<void> roll(Offset new_base);
  Result<void> delete_front_segment();
  Result<void> persist_state(bool sync = true);
  // Producer state: the newest snapshot, then the batch headers after it.
  Result<void> load_producers();
  Result<void> snapshot_producers(bool sync = true);
  Segment& active() const { return *segments_.rbegin()->second; }
  // The cleanable segments and how dirty they are (cleaner.cc): what plan_clean plans from and
  // cleaner_stats reports.
  struct CleanableRange {
    std::vector<Segment*> segments;  // sealed, below cleanable_end, past min.compaction.lag.ms
    Offset first_dirty{0};
    int64_t clean_bytes = 0;
    int64_t dirty_bytes = 0;
    double dirty_ratio = 0;
    bool overdue = false;  // the first dirty segment is older than max.compaction.lag.ms
    int64_t lag_ms = 0;    // how long that segment has waited since its newest record
    bool due = false;      // something is dirty, and forced, overdue or dirty enough
  };
  CleanableRange cleanable_range(const CleanerOptions& options, int64_t now) const;
  Result<std::optional<TimestampOffset>> refine(const Segment& seg, const BatchInfo& b, int64_t ts,
                                                bool exact) const;
  void check_invariants() const;

  std::string dir_;
  LogConfig config_;
  const Clock& clock_;
  LeaderEpochCache epochs_;
  ProducerStateTable producers_;
  std::map<Offset, std::unique_ptr<Segment>> segments_;
  Offset log_start_{0};
  Offset high_watermark_{0};
  Offset flushed_{0};
  Offset recovery_point_{0};  // persisted: segments from this base on are scanned after a crash
  uint64_t truncations_ = 0;  // a flush prepared before a truncation proves nothing after it
  Offset first_dirty_{0};     // the cleaner's progress (cleaner.checkpoint)
  CleanerStats cleaner_stats_;
  bool closed_ = false;
  // What partition.state holds (as read or last written), and the offset of the producer
  // snapshot last written or loaded: rewriting identical files is skipped (a rename over an
  // existing file is a flush on ext4, and a stop closes every partition).
  std::optional<std::pair<Offset, Offset>> persisted_state_;
  std::optional<Offset> snapshot_at_;
};

}  // namespace ordo::storage
