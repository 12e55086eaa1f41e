#pragma once
// ProducerStateTable: what one partition knows of its idempotent producers (Kafka's
// ProducerStateManager, KIP-98 / KIP-360, without transactions), and the snapshot files that
// let a restart skip replaying the whole log. Format: docs/producer-state-format.md.
//
// Threading: not thread-safe. The partition's single writer thread (its LogManager shard)
// owns the table: it calls check() before an append, update() after the log assigned offsets,
// and the maintenance calls (expire, truncate_*, snapshots) between appends.
//
// Per producer id the table keeps its epoch, the timestamp of its last batch (for expiry and
// eviction) and the metadata of its last kRetainedBatchesPerProducer (5) batches: the same
// bound a Kafka producer puts on in-flight requests per connection, so every retry it can
// send is one of them. Sequence numbers are int32 and wrap from INT32_MAX to 0.
//
// check(batch) answers, for a batch with producerId >= 0:
//   invalid_record          baseSequence < 0 or producerEpoch < 0 (Kafka: INVALID_RECORD)
//   invalid_producer_epoch  epoch older than the producer's (INVALID_PRODUCER_EPOCH)
//   duplicate               same epoch, and one of the last 5 batches has exactly this first
//                           and last sequence: the caller answers success with that batch's
//                           original offsets and appends nothing
//   append                  same epoch and the first sequence follows the last one; or a newer
//                           epoch starting at sequence 0 (the window restarts); or a producer
//                           id the table does not know, starting at sequence 0
//   out_of_order_sequence   anything else (OUT_OF_ORDER_SEQUENCE_NUMBER): a gap, a newer epoch
//                           not starting at 0, a retry older than the last 5 batches, or an
//                           unknown producer id whose first sequence is not 0.
// Batches with producerId < 0 (-1: not idempotent) and control batches are always `append`
// and never tracked.
//
// Unknown producer ids: Kafka before 2.5 answered UNKNOWN_PRODUCER_ID to an unknown producer
// id whose first sequence was not 0; since 2.5 (KIP-360) it accepts any first sequence from a
// producer it has no state for (its state may have gone with retention). Ordo by default
// refuses it with OUT_OF_ORDER_SEQUENCE_NUMBER (require_seq_zero_for_unknown_producer), which
// also covers a producer this table evicted or expired; set the option to false for Kafka
// 2.5+ behaviour.
//
// Bounds: at most max_producers ids; when a new one arrives at a full table, the producer with
// the oldest last timestamp (ties: the smallest id) is evicted. Its later batches (sequence
// > 0) then get OUT_OF_ORDER_SEQUENCE_NUMBER, as do retries of batches it already wrote,
// except a retry of its very first batch (sequence 0), which is appended again. Expired
// producers (expire()) are in the same position. Memory: about 300 bytes per producer, so
// ~3 MB for a full table of 10,000.
//
// Not tracked yet: transactions (ongoing transaction offsets, markers, the last stable offset);
// transactional data batches are checked like idempotent ones.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/strong_int.h"
#include "model/record_batch.h"

namespace ordo::storage {

// Kafka keeps 5 batches per producer (ProducerStateEntry.NUM_BATCHES_TO_RETAIN).
constexpr int kRetainedBatchesPerProducer = 5;
constexpr size_t kDefaultMaxProducersPerPartition = 10'000;
// Kafka's producer.id.expiration.ms default: one day.
constexpr int64_t kDefaultProducerIdExpirationMs = 86'400'000;
// read_latest_snapshot() refuses larger files (about 370,000 producers with 5 batches each).
constexpr size_t kMaxSnapshotFileBytes = size_t(64) << 20;

// The sequence `increment` after `sequence`, wrapping from INT32_MAX to 0: the last sequence of
// a batch is increment_sequence(baseSequence, lastOffsetDelta). sequence and increment >= 0.
int32_t increment_sequence(int32_t sequence, int32_t increment);
// Whether next_seq directly follows last_seq (INT32_MAX is followed by 0).
bool in_sequence(int32_t last_seq, int32_t next_seq);

// One appended batch of a producer, as the table remembers it.
struct ProducerBatchMetadata {
  int32_t first_seq = 0;
  int32_t last_seq = 0;
  Offset first_offset;
  Offset last_offset;
  int64_t max_timestamp = -1;
  bool operator==(const ProducerBatchMetadata&) const = default;
};
// The memory figure above counts on this.
static_assert(sizeof(ProducerBatchMetadata) == 32);

// One producer id's state. Every batch in the window has the producer's current epoch.
struct ProducerEntry {
  int16_t epoch = 0;
  uint8_t batch_count = 0;  // 1 to 5 while in a table
  // The maxTimestamp of the producer's last batch (what expiry and eviction compare).
  int64_t last_timestamp = -1;
  // Oldest first; [0, batch_count) are in use.
  std::array<ProducerBatchMetadata, kRetainedBatchesPerProducer> batches{};

  std::span<const ProducerBatchMetadata> retained() const { return {batches.data(), batch_count}; }
  const ProducerBatchMetadata& newest() const;
  bool operator==(const ProducerEntry& o) const;
};

enum class SequenceVerdict {
  append,
  duplicate,
  out_of_order_sequence,
  invalid_producer_epoch,
  invalid_record,
};
const char* sequence_verdict_name(SequenceVerdict v);

struct SequenceCheck {
  SequenceVerdict verdict = SequenceVerdict::append;
  // duplicate: where the original batch was written.
  Offset first_offset{-1};
  Offset last_offset{-1};
  // For error messages: the producer's current epoch and last sequence, -1 when unknown.
  int16_t current_epoch = -1;
  int32_t current_last_seq = -1;
};

// A batch the log has just appended, with the offsets it was given.
struct ProducerAppend {
  int64_t producer_id = -1;
  int16_t epoch = -1;
  int32_t first_seq = -1;
  int32_t last_seq = -1;
  Offset first_offset{-1};
  Offset last_offset{-1};
  int64_t max_timestamp = -1;

  // From a batch's header (baseOffset as the log assigned it).
  static ProducerAppend of(const model::RecordBatchView& batch);
};

struct ProducerStateOptions {
  size_t max_producers = kDefaultMaxProducersPerPartition;  // >= 1
  // See "Unknown producer ids" above. false: accept any first sequence (Kafka 2.5+).
  bool require_seq_zero_for_unknown_producer = true;
};

struct ProducerSnapshot;

class ProducerStateTable {
 public:
  explicit ProducerStateTable(ProducerStateOptions options = {});

  // The verdict for a batch about to be appended. Changes nothing.
  SequenceCheck check(const model::RecordBatchView& batch) const;
  // The same from header fields (last_offset_delta >= 0, as RecordBatchView::parse ensures).
  SequenceCheck check(int64_t producer_id, int16_t epoch, int32_t base_sequence,
                      int32_t last_offset_delta) const;

  // Records a batch the log appended after check() said `append`. Requires producer_id,
  // epoch and sequences >= 0, first_offset <= last_offset, last_seq ==
  // increment_sequence(first_seq, last_offset - first_offset), and first_offset past the
  // producer's last recorded batch. A new epoch restarts the producer's window; a new producer
  // id in a full table evicts the one with the oldest last timestamp.
  void update(const ProducerAppend& append);

  // Recovery: records a batch read back from the log, without checks (the log already holds
  // it). Skips batches without a producer id, control batches, batches with a negative epoch
  // or sequence, and batches at or below the producer's last recorded offset (already covered
  // by a snapshot), so replaying from any offset at or below the snapshot's is harmless.
  // Returns whether the batch was recorded.
  bool apply_batch(const model::RecordBatchView& batch);

  // Removes producers whose last timestamp is at least producer_id_expiration_ms before
  // now_ms (Kafka's test). Returns how many were removed.
  size_t expire(int64_t now_ms, int64_t producer_id_expiration_ms = kDefaultProducerIdExpirationMs);

  // The log was cut to end at log_end: drops every batch with last_offset >= log_end, and the
  // producers left with none. A producer's last timestamp becomes its newest remaining batch's.
  // Exact for every producer that keeps a batch; a producer whose last 5 batches were all cut
  // is forgotten even if older batches of it remain (rebuild from a snapshot at or below
  // log_end and replay for an exact table, as Kafka does).
  void truncate_after(Offset log_end);

  // The log start moved to log_start (retention, DeleteRecords): removes the producers whose
  // newest batch ends before it. Producers with a batch at or after log_start keep all their
  // entries, so a retry of a batch that retention already deleted is still a duplicate.
  void truncate_before(Offset log_start);

  // The snapshot of this table as covering the log below up_to (the offset to replay from).
  // Errc::invalid_argument if up_to < 0 or a recorded batch ends at or after up_to.
  Result<std::vector<uint8_t>> encode_snapshot(Offset up_to) const;
  // Errc::corrupt for anything but an exact, well-formed snapshot. A snapshot with more
  // producers than options.max_producers keeps the ones with the newest timestamps.
  static Result<ProducerSnapshot> decode_snapshot(std::span<const uint8_t> bytes,
                                                  ProducerStateOptions options = {});

  size_t size() const { return producers_.size(); }
  bool empty() const { return producers_.empty(); }
  const ProducerStateOptions& options() const { return options_; }
  // nullptr when the table has no state for producer_id.
  const ProducerEntry* find(int64_t producer_id) const;
  // Every tracked producer id, ascending.
  std::vector<int64_t> producer_ids() const;

  // Same producers with the same entries (options are not compared).
  friend bool operator==(const ProducerStateTable& a, const ProducerStateTable& b) {
    return a.producers_ == b.producers_;
  }

 private:
  using Map = std::unordered_map<int64_t, ProducerEntry>;
  void record(const ProducerAppend& a);
  void erase(Map::iterator it);
  void evict_oldest();

  ProducerStateOptions options_;
  Map producers_;
  // (last_timestamp, producer_id) of every producer: the eviction and expiry order.
  std::set<std::pair<int64_t, int64_t>> by_timestamp_;
};

struct ProducerSnapshot {
  // The table reflects every batch below this offset; replay the log from here.
  Offset offset;
  ProducerStateTable table;
};

// Snapshot files in a partition directory: "<offset, 20 digits>.snapshot", like Kafka's.
std::string snapshot_file_name(Offset offset);
// The offset a snapshot file name stands for; nullopt for any other name (e.g. ".tmp" files).
std::optional<Offset> parse_snapshot_file_name(std::string_view name);

// Writes dir/snapshot_file_name(offset) atomically (temporary file, fsync, rename, fsync of
// the directory). Errors as encode_snapshot, or Errc::io.
// sync = false: no fsync (the caller syncs the filesystem afterwards).
Result<void> write_snapshot_file(const std::string& dir, const ProducerStateTable& table,
                                 Offset offset, bool sync = true);

// The offsets of the snapshot files in dir, ascending.
Result<std::vector<Offset>> list_snapshot_files(const std::string& dir);

struct SnapshotLoad {
  // The newest snapshot that decoded, nullopt when there is none.
  std::optional<ProducerSnapshot> snapshot;
  // One line per newer file passed over: its name and why (unreadable, corrupt, past max_offset).
  std::vector<std::string> skipped;
};
// Loads the newest valid snapshot with offset <= max_offset (pass the log end: a snapshot
// past it describes data the log no longer has). Only listing dir can fail.
Result<SnapshotLoad> read_latest_snapshot(const std::string& dir, Offset max_offset = Offset::max(),
                                          ProducerStateOptions options = {});

// Removes all but the newest `keep` snapshot files. Returns how many were removed. sync =
// false: the directory is not fsynced (a removal lost in a crash leaves an old snapshot, which
// is only ever read when no newer one is valid).
Result<size_t> prune_snapshots(const std::string& dir, size_t keep, bool sync = true);
// Removes snapshot files with offset > log_end (after the log was truncated), durably: a stale
// snapshot that came back after a crash would be trusted once the log grew past it again.
Result<size_t> remove_snapshots_after(const std::string& dir, Offset log_end);

}  // namespace ordo::storage
