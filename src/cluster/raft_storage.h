#pragma once
// cluster::RaftLogStorage: raft::Storage over a real partition log (storage::PartitionLog) and a
// small durable hard-state file in the partition's directory. Layout and recovery:
// docs/replication-storage.md.
//
// Entries are record batches, one entry per batch, offsets and partition leader epochs (= Raft
// terms) as stored. The core's no-op and configuration entries are stored as Kafka CONTROL
// batches (consumers skip them) holding one record whose key has a control type of Ordo's own
// (kControlNoop, kControlConfig; Kafka's transaction markers use 0 and 1, KRaft 2 to 6).
//
// The hard-state file "raft.state" holds the term, the vote, the configurations, the disk
// incarnation of this replica and the term of the record before the log start after a reset.
// It is replaced atomically (temp file, fsync, rename, directory fsync) and carries a CRC-32C:
// a torn or flipped file fails recovery with Errc::corrupt instead of being trusted.
//
// sync() fdatasyncs the log (PartitionLog::flush) on the calling thread and calls done before
// it returns, unless a sync runner is set (set_sync_runner): then the runner does it, e.g. the
// LogManager's flush pool with group commit (LogManager::flush), and done runs later on the
// replica's thread.
//
// Thread: the replica's, like the PartitionLog it wraps.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "raft/replica.h"
#include "storage/partition_log.h"

namespace ordo::cluster {

// Control record types (the int16 "type" of a control record's key) of Raft's own entries.
constexpr int16_t kControlNoop = 200;
constexpr int16_t kControlConfig = 201;

constexpr std::string_view kRaftStateFileName = "raft.state";

// The timestamp of every control entry (-1, Kafka's NO_TIMESTAMP): each replica writes them from
// the entry alone, so the same bytes on every replica need a timestamp that no clock gives.
constexpr int64_t kControlEntryTimestamp = -1;

// The decoded hard-state file.
struct RaftStateFile {
  uint64_t incarnation = 0;
  raft::HardState state;
  // The term of the record at offset base_before (the one before the log start) after a
  // follower's log was reset; kNoTerm when not known.
  raft::Term term_before = raft::kNoTerm;
  raft::Offset base_before = -1;
  bool operator==(const RaftStateFile&) const = default;
};
std::vector<uint8_t> encode_state_file(const RaftStateFile& file);
// Errc::corrupt for anything but a whole, well-formed file of the current version.
Result<RaftStateFile> decode_state_file(std::span<const uint8_t> bytes);

// The control batch of a core-created entry (kind noop or config) at entry.base with partition
// leader epoch entry.term.
std::vector<uint8_t> encode_control_entry(const raft::Entry& entry, int64_t timestamp_ms);
// The entry of one stored batch (its bytes become the payload): kind data unless it is a
// control batch of one of the types above, whose config is then decoded.
Result<raft::Entry> decode_entry(std::vector<uint8_t> batch);

class RaftLogStorage final : public raft::Storage {
 public:
  // Opens the storage of an opened partition log and recovers the replica's durable state. A
  // directory without a state file is a fresh replica: a new random incarnation is chosen and
  // written durably, with `initial` as its configuration, before this returns (the replica
  // must not answer anything before its identity is on disk). A non-zero `incarnation` is the
  // one a fresh replica takes instead of a random one: a group bootstrapped with known members
  // (tests; a cluster formatted with its voters' ids). `log` outlives the storage.
  static Result<std::unique_ptr<RaftLogStorage>> open(storage::PartitionLog* log,
                                                      raft::Config initial,
                                                      const Clock& clock = SystemClock::instance(),
                                                      uint64_t incarnation = 0);

  // What recovery found; the replica's constructor takes it.
  const raft::Restored& restored() const { return restored_; }
  uint64_t incarnation() const { return file_.incarnation; }
  storage::PartitionLog* log() const { return log_; }
  std::string state_path() const;

  // raft::LogReader
  Result<std::vector<raft::Entry>> read(raft::Offset from, size_t max_bytes) override;
  // raft::Storage
  Result<void> save_state(const raft::HardState& state) override;
  Result<void> reset(raft::Offset start, raft::Term term_before) override;
  Result<void> truncate(raft::Offset end) override;
  Result<void> append(std::span<const raft::Entry> entries) override;
  Result<raft::Entry> append_leader(raft::Term term, raft::Payload payload,
                                    int32_t records) override;
  void sync(std::function<void(Result<void>)> done) override;

  // Moves the log start forward (retention, DeleteRecords: at most the commit point, which the
  // caller has made the log's high watermark), remembering durably the term of the record
  // before it, which the log's epoch cache forgets and the leader needs to match a follower's
  // log at the new start after a restart. Replica::on_log_start calls it.
  Result<void> advance_log_start(raft::Offset start) override;

  // Off: sync() and the state file skip their fsyncs (the writes still happen, in order). Only
  // for tests whose crashes are process crashes, which keep the page cache: it saves them the
  // disk's sync latency, thousands of times. On by default.
  void set_fsync(bool on) { fsync_ = on; }
  bool fsync() const { return fsync_; }

  // Who makes the log durable for sync(): called with sync's `done`, which it must call once
  // every write made before the call is durable (or with the error), on the replica's thread.
  // Unset: sync() runs PartitionLog::flush inline. Ignored when fsync is off.
  using SyncRunner = std::function<void(std::function<void(Result<void>)> done)>;
  void set_sync_runner(SyncRunner runner) { sync_runner_ = std::move(runner); }

  // The last append_leader refused as an idempotent producer's duplicate (Errc::already_exists):
  // where the original batch is (first/last offset, duplicate = true).
  const std::optional<storage::AppendResult>& last_duplicate() const { return last_duplicate_; }

  // Counters for tests and benchmarks.
  uint64_t syncs() const { return syncs_; }
  uint64_t state_writes() const { return state_writes_; }

 private:
  RaftLogStorage(storage::PartitionLog* log, const Clock& clock) : log_(log), clock_(clock) {}
  Result<void> write_state_file();
  Result<void> recover(raft::Config initial, uint64_t incarnation);

  storage::PartitionLog* log_;
  const Clock& clock_;
  RaftStateFile file_;
  raft::Restored restored_;
  std::vector<uint8_t> append_buf_;
  uint64_t syncs_ = 0;
  uint64_t state_writes_ = 0;
  bool fsync_ = true;
  SyncRunner sync_runner_;
  std::optional<storage::AppendResult> last_duplicate_;
};

}  // namespace ordo::cluster
