#pragma once
// cluster::RaftPartitions: the partition seam (PartitionService) of a cluster-mode broker. Every
// local partition replica is one raft::Replica over its PartitionLog (RaftLogStorage), living on
// the partition's LogManager shard thread beside its log (single writer). Design and threads:
// docs/replication.md, "Partitions in the broker".
//
// Per shard: one tick timer (every tick_ms it ticks every group of the shard), one
// raft::Batcher (the messages all the shard's groups output in one round leave as one frame per
// destination node, handed to the thread-safe `send` once per round: a round is a tick, or the
// inputs the shard handled in one go: delivered messages, appends, completed syncs).
//
// Acknowledgements. A leader's append writes the batch to its log (Replica::append); a
// Consistency::leader append is answered then, a Consistency::quorum append once the batch is
// committed (durable on a majority of voters). Pending quorum answers are kept by offset and
// fail with Errc::closed (retriable) when this replica stops leading or its group closes. An
// idempotent producer's retry of a batch the log holds (the PartitionLog's producer state
// decides, as on a single node) is answered with the original offsets: at once for acks=1,
// once the original is committed for acks=all.
//
// The high watermark is the Raft commit point: on a leader Core::high_watermark() (known only
// once its term's no-op committed), on a follower the commit point it learned. It is set on the
// PartitionLog (reads, ListOffsets and retention see it) and on_high_watermark is called.
// Syncs run on the LogManager's flush pool with group commit (LogManager::flush).
//
// Threads: every public method from any thread (stop() never from a shard thread); callbacks
// as the LogManager's (on the partition's shard thread, possibly inline). local_view() and
// check_leader() read a snapshot the shard threads publish under a mutex.
//
// Decisions beyond the contract (docs/replication.md lists them too):
//  - A produce request's partition data may hold several batches: each becomes one Raft entry
//    (Replica::append takes one batch). The append is then not atomic if a later batch fails
//    (only storage errors can, after validation); idempotent batches are alone, as Kafka requires.
//  - offset_for_leader_epoch answers on the leader only (Errc::closed otherwise, as for a
//    current_epoch that is not the leader's: the handler asks check_leader for the Kafka code).
//  - check_leader for a partition without a local replica answers from the PartitionTable:
//    UNKNOWN_TOPIC_OR_PARTITION when it is absent, NOT_LEADER_OR_FOLLOWER with the table's
//    leader otherwise.
//  - Retention (the LogManager's tick) may move a log start below the high watermark on its
//    own; the group's tick tells the replica (Replica::on_log_start) so its core follows.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "cluster/partitions.h"
#include "raft/batcher.h"
#include "raft/core.h"
#include "raft/replica.h"

namespace ordo::cluster {

struct RaftPartitionsOptions {
  NodeId self = kNoLeader;
  uint64_t incarnation = 0;  // the node's (node.meta); a fresh replica takes it
  raft::Options core;        // ticks, pre_vote, check_quorum (group, self and seed are set here)
  int64_t tick_ms = 50;
  bool write_caching = false;  // raft::ReplicaOptions
  // Each group's raft::Options::preferred_leader is its assignment's first replica (the
  // PartitionTable's): leadership moves back to it once it has caught up (after a restart).
  bool preferred_leaders = false;
  // Monotonic milliseconds (the leader lease); steady_clock when empty. Tests move time by hand.
  std::function<int64_t()> now_ms;
  std::function<void(std::vector<raft::OutFrame>)> send;                // thread-safe
  std::function<void(const model::TopicPartition&)> on_high_watermark;  // shard thread
  // A partition's leader or term changed here (shard thread; must not block).
  std::function<void(const model::TopicPartition&, NodeId leader, int32_t term)> on_leader;
};

// What this node knows of a partition it holds a replica of.
struct PartitionView {
  NodeId leader = kNoLeader;
  int32_t epoch = -1;            // the Raft term
  std::vector<NodeId> replicas;  // the configuration's voters and learners
  // Leader: the voters that answered it in its term within an election timeout (itself
  // included). Follower: every voter, as far as it knows.
  std::vector<NodeId> isr;
  std::vector<NodeId> offline;
  bool operator==(const PartitionView&) const = default;
};

class RaftPartitions final : public PartitionService {
 public:
  RaftPartitions(RaftPartitionsOptions o, const PartitionTable& table);
  ~RaftPartitions() override;  // stop()
  RaftPartitions(const RaftPartitions&) = delete;
  RaftPartitions& operator=(const RaftPartitions&) = delete;

  // For LogManagerOptions::high_watermark: storage never moves a replicated partition's high
  // watermark (the commit point does, set by this class).
  storage::HighWatermarkPolicy high_watermark_policy();
  // The logs (opened with high_watermark_policy()); starts one tick timer per shard. Once,
  // before any call below. The manager's shards must run until stop() returns.
  void attach(storage::LogManager& logs);

  // The log of tp exists (the Reconciler created it). Creates or recovers its replica on the
  // partition's shard: RaftLogStorage::open(log, initial, clock, o.incarnation). Opening a
  // group that is open with the same id succeeds; another id is Errc::already_exists.
  void open_group(const model::TopicPartition& tp, raft::GroupId group, raft::Config initial,
                  Callback<void> done);
  // Before the log is removed: pending acknowledgements fail with Errc::closed, the replica goes.
  void close_group(const model::TopicPartition& tp, Callback<void> done);
  // Any thread: messages split by group and posted to their shards (unknown groups: dropped).
  void deliver(std::vector<raft::Message> messages);
  std::optional<PartitionView> local_view(const model::TopicPartition& tp) const;
  // Pending acks fail Errc::closed, replicas are dropped, ticks stop; later calls are refused
  // with Errc::closed. Blocking (waits for each shard): not from a shard thread, and before
  // LogManager::close(). Idempotent.
  void stop();

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
  void offset_for_leader_epoch(const model::TopicPartition& tp, int32_t current_epoch,
                               int32_t epoch, Callback<EpochEnd> done) override;
  int32_t in_sync_replicas(const model::TopicPartition& tp) const override;
  void elect_preferred(const model::TopicPartition& tp, Callback<Election> done) override;

  // Tests and tools: runs fn on tp's shard thread with its replica (nullptr when tp has no
  // open group here, or after stop()).
  void with_replica(const model::TopicPartition& tp, std::function<void(raft::Replica*)> fn);
  // Messages dropped because their group is not open here.
  uint64_t dropped_messages() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct Group;
  struct Shard;
  using ShardPtr = std::shared_ptr<Shard>;

  ShardPtr shard_for(const model::TopicPartition& tp) const;
  // Runs fn on the shard's thread (inline when already there); fn gets false when stopped.
  void on_shard(const ShardPtr& shard, std::function<void(bool running)> fn);
  void arm_tick(const ShardPtr& shard);
  void on_tick(Shard& shard);
  int64_t note_stall(Shard& shard);  // now
  void schedule_flush(Shard& shard);
  void receive(Shard& shard, std::vector<raft::Message> messages);
  void do_open(Shard& shard, const model::TopicPartition& tp, raft::GroupId id,
               raft::Config initial, Callback<void> done);
  void do_close(Shard& shard, const model::TopicPartition& tp);
  void do_append(Shard& shard, const model::TopicPartition& tp, std::vector<uint8_t> batches,
                 Consistency consistency, Callback<storage::AppendResult> done);
  // After every input of a group: leadership changes (on_leader, pending acks failed), the high
  // watermark, answers for committed appends, the published view. Re-entrant safe.
  void after(Group& g);
  void after_once(Group& g);
  void publish(Group& g, const PartitionView& view);
  Group* find(Shard& shard, const model::TopicPartition& tp);
  int64_t now_ms() const;
  int64_t lease_ms() const { return int64_t(o_.core.election_ticks) * o_.tick_ms; }
  // When a majority of the voters last answered g as leader in its term (the leader's own
  // "answer" is now; INT64_MAX when it is the only voter), INT64_MIN when not leading.
  int64_t quorum_contact(const Group& g, int64_t now) const;
  // g leads and has heard from a majority within the lease (on the shard).
  bool serves(const Group& g) const;
  // An answer heard that may count as contact: not one that may have waited in a buffer while
  // the shard was stalled (heard within a lease of the stall, in a term that existed then).
  bool fresh(const Group& g, raft::Term term, int64_t at_ms) const;

  RaftPartitionsOptions o_;
  const PartitionTable& table_;
  storage::LogManager* logs_ = nullptr;
  uint64_t seed_base_ = 0;
  std::vector<ShardPtr> shards_;
  std::atomic<bool> stopped_{false};
  std::atomic<uint64_t> dropped_{0};

  struct Published {
    PartitionView view;
    // quorum_contact() as of the last input of the group (read by check_leader on any thread).
    std::shared_ptr<std::atomic<int64_t>> contact;
  };

  mutable std::mutex mu_;  // guards the two maps below
  std::unordered_map<raft::GroupId, size_t> group_shard_;
  std::map<model::TopicPartition, Published> views_;
};

}  // namespace ordo::cluster
