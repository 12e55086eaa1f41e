#pragma once
// The partition seam: what the Kafka handlers and the group service do with a partition
// (append, read, offsets, prefix truncation, status), whoever owns it. Today the owner is this
// node alone (LocalPartitions, over the LogManager); with replication it is the partition's
// Raft group. Every operation is answered for the leader only: a partition this node does not
// lead answers with a LeaderError that names the current leader and epoch, which the handlers
// copy into Kafka's CurrentLeader fields where the response has them.
//
// Threads: every method may be called from any thread; callbacks run as the LogManager's do
// (on the partition's shard thread, possibly inline: see storage/log_manager.h). The
// blocking status() never from a shard thread.

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cluster/partition_table.h"
#include "storage/log_manager.h"

namespace ordo::cluster {

// How far an append must have gone before it is acknowledged.
enum class Consistency {
  leader,  // written on the leader (Kafka acks=1)
  quorum,  // on every in-sync replica (acks=all); one node: durable under its flush policy
};

// Why this node does not serve a partition, in Kafka's terms.
struct LeaderError {
  enum class Code : int16_t {
    unknown_topic_or_partition = 3,
    not_leader_or_follower = 6,
    fenced_leader_epoch = 74,   // the client's leader epoch is older than the current one
    unknown_leader_epoch = 75,  // ... or newer
  };
  Code code = Code::not_leader_or_follower;
  NodeId leader_id = kNoLeader;  // the current leader, kNoLeader when unknown
  int32_t leader_epoch = -1;     // its epoch, -1 when unknown
  bool operator==(const LeaderError&) const = default;
};

// ListOffsets: the offset asked for, with the timestamp of its record for time lookups.
inline constexpr int64_t kLatestOffset = -1;        // the high watermark
inline constexpr int64_t kEarliestOffset = -2;      // the log start
inline constexpr int64_t kMaxTimestampOffset = -3;  // the record with the largest timestamp
struct OffsetAnswer {
  int64_t offset = -1;     // -1: no such record
  int64_t timestamp = -1;  // time lookups only
  int32_t leader_epoch = -1;
};

// DeleteRecords: the log start after the truncation (also when it failed: what it is now).
struct Truncation {
  int64_t low_watermark = -1;
  std::optional<Error> error;  // out_of_range: beyond the high watermark
};

// OffsetForLeaderEpoch (KIP-101, KIP-320): the largest leader epoch <= the one asked for that
// the log holds, and its end offset (the start offset of the next larger epoch, or the log end
// for the latest). {-1, -1} when the log holds no such epoch.
struct EpochEnd {
  int32_t epoch = -1;
  int64_t end_offset = -1;
  bool operator==(const EpochEnd&) const = default;
};

// ElectLeaders (preferred election) for one partition, in Kafka's terms.
struct Election {
  enum class Code : int16_t {
    none = 0,  // started: leadership moves to the preferred replica (the first assigned)
    unknown_topic_or_partition = 3,
    not_leader_or_follower = 6,           // this node cannot tell (the partition's leader can)
    preferred_leader_not_available = 80,  // the preferred replica is not in sync
    election_not_needed = 84,             // the preferred replica leads already
  };
  Code code = Code::none;
  std::string message;
  bool operator==(const Election&) const = default;
};

// The answer to ListOffsets from a partition's log (on its thread): the high watermark for
// kLatestOffset, time lookups below it. `epoch` is the leader epoch answered.
Result<OffsetAnswer> answer_list_offset(const storage::PartitionLog& log, int64_t which,
                                        int32_t epoch);
// OffsetForLeaderEpoch from a log's leader-epoch cache (on its thread).
EpochEnd answer_epoch_end(const storage::PartitionLog& log, int32_t epoch);

class PartitionService {
 public:
  template <typename T>
  using Callback = storage::LogManager::Callback<T>;

  virtual ~PartitionService() = default;

  // nullopt when this node leads tp (and `current_leader_epoch`, when not -1, is the leader's
  // epoch); the error to answer otherwise. Cheap (a table lookup): per partition per request.
  virtual std::optional<LeaderError> check_leader(const model::TopicPartition& tp,
                                                  int32_t current_leader_epoch = -1) const = 0;

  // Appends as leader. The bytes are borrowed as by LogManager::append_borrowed (written
  // before the call returns on the partition's thread, copied otherwise). `options` says how
  // the batches were checked (verify_crc); the leader epoch and the wait are the seam's.
  // An operation that fails because this node lost the leadership meanwhile fails with
  // Errc::closed (retriable); check_leader() then says who leads.
  virtual void append(const model::TopicPartition& tp, std::span<uint8_t> batches,
                      Consistency consistency, storage::AppendOptions options,
                      Callback<storage::AppendResult> done) = 0;
  // The same with bytes the seam takes (for writers that build their batches: groups).
  virtual void append(const model::TopicPartition& tp, std::vector<uint8_t> batches,
                      Consistency consistency, storage::AppendOptions options,
                      Callback<storage::AppendResult> done) = 0;
  // Reads committed batches (up to the high watermark unless options.upper_bound says more).
  virtual void read(const model::TopicPartition& tp, storage::ReadOptions options,
                    Callback<storage::ReadResult> done) = 0;
  // kLatestOffset, kEarliestOffset, kMaxTimestampOffset or a timestamp (>= 0): only records
  // below the high watermark are found. Other negative values: Errc::invalid_argument.
  virtual void list_offset(const model::TopicPartition& tp, int64_t which,
                           Callback<OffsetAnswer> done) = 0;
  // Removes every record before `before` (-1: the high watermark), Kafka's DeleteRecords.
  virtual void delete_records(const model::TopicPartition& tp, int64_t before,
                              Callback<Truncation> done) = 0;
  // Every local partition's state (blocking: never from a shard thread).
  virtual std::vector<storage::PartitionStatus> status() = 0;
  // OffsetForLeaderEpoch as the leader: `current_epoch` (-1: not given) is checked as by
  // check_leader (a mismatch or a lost leadership fails with Errc::closed: the handler asks
  // check_leader for the code), `epoch` is looked up in the log's leader-epoch cache.
  virtual void offset_for_leader_epoch(const model::TopicPartition& tp, int32_t current_epoch,
                                       int32_t epoch, Callback<EpochEnd> done) = 0;
  // The replicas in sync as the leader sees them (itself included; a Raft leader: the voters
  // that answered it within an election timeout), 0 when this node does not lead tp. Cheap;
  // produce with acks=-1 compares it with min.insync.replicas.
  virtual int32_t in_sync_replicas(const model::TopicPartition& tp) const = 0;
  // ElectLeaders, preferred election: hand the leadership of tp to its first assigned replica.
  virtual void elect_preferred(const model::TopicPartition& tp, Callback<Election> done) = 0;
};

// The single-node owner: this node is the only replica and leader of every partition in the
// table; the high watermark follows what the flush policy makes visible (the log end, or in
// flush mode durable what is fsynced), and waiters are woken when it moves.
class LocalPartitions final : public PartitionService {
 public:
  // on_high_watermark: called on the shard thread each time a partition's high watermark
  // moves (wakes long polls). Must not block.
  LocalPartitions(NodeId self, const PartitionTable& table,
                  std::function<void(const model::TopicPartition&)> on_high_watermark);

  // The decision storage asks for after each write or sync (LogManagerOptions::
  // high_watermark): the high watermark a single node may expose, nullopt to leave it.
  static std::optional<Offset> decide_high_watermark(const storage::LogProgress& progress);
  // decide_high_watermark, and the wake-up when it moves: for LogManagerOptions.
  storage::HighWatermarkPolicy high_watermark_policy();

  // The logs, opened with high_watermark_policy() (before any call below).
  void attach(storage::LogManager& logs) { logs_ = &logs; }

  std::optional<LeaderError> check_leader(const model::TopicPartition& tp,
                                          int32_t current_leader_epoch = -1) const override;
  void append(const model::TopicPartition& tp, std::span<uint8_t> batches, Consistency consistency,
              storage::AppendOptions options, Callback<storage::AppendResult> done) override;
  void append(const model::TopicPartition& tp, std::vector<uint8_t> batches,
              Consistency consistency, storage::AppendOptions options,
              Callback<storage::AppendResult> done) override;
  void read(const model::TopicPartition& tp, storage::ReadOptions options,
            Callback<storage::ReadResult> done) override;
  void list_offset(const model::TopicPartition& tp, int64_t which,
                   Callback<OffsetAnswer> done) override;
  void delete_records(const model::TopicPartition& tp, int64_t before,
                      Callback<Truncation> done) override;
  std::vector<storage::PartitionStatus> status() override;
  // Every record of a single node's log is of its epoch or an older one: the cache answers,
  // and an epoch the cache predates (a log written before epochs) is the current one.
  void offset_for_leader_epoch(const model::TopicPartition& tp, int32_t current_epoch,
                               int32_t epoch, Callback<EpochEnd> done) override;
  // 1 when this node leads tp (it is its only replica), else 0.
  int32_t in_sync_replicas(const model::TopicPartition& tp) const override;
  // The only replica leads already: ELECTION_NOT_NEEDED.
  void elect_preferred(const model::TopicPartition& tp, Callback<Election> done) override;

 private:
  // The options of an append to `tp` as its leader, or why it cannot be appended here.
  Result<storage::AppendOptions> leader_options(const model::TopicPartition& tp,
                                                Consistency consistency,
                                                storage::AppendOptions options) const;

  NodeId self_;
  const PartitionTable& table_;
  std::function<void(const model::TopicPartition&)> on_high_watermark_;
  storage::LogManager* logs_ = nullptr;
};

}  // namespace ordo::cluster
