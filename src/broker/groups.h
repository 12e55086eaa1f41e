#pragma once
// GroupService: the broker's group coordinator. It runs the coordinator library's membership
// state machine (src/coordinator) on a thread of its own and keeps committed offsets, and it
// makes both durable in the internal topic `__consumer_offsets` (records of
// coordinator/group_records.h, one partition per group: java_string_hash(group) mod
// partitions, as Kafka places them). Each partition of the topic has a GroupCoordinator of its
// own while it is loaded here, so that one partition's groups can come and go alone.
//
// The log is the source of truth. An offset is visible to OffsetFetch only after its record
// was appended (Consistency::quorum: on one node durable under the partition's flush policy,
// in a cluster committed by a majority of its replicas), and the OffsetCommit response waits
// for that append. Group metadata (protocol, generation, members) is written when a group
// becomes Stable or Empty, without holding responses back: if it is lost in a crash the group
// comes back with an older generation, and its members rejoin.
//
// Where partitions load:
//  - one node (open()): every partition is replayed before the broker serves.
//  - a cluster (options.replicated): as Kafka, a group's coordinator is the leader of its
//    partition. Nothing is loaded at open; on_partition_leader() (from RaftPartitions'
//    on_leader hook) loads a partition when this node becomes its leader and unloads it when
//    it stops leading. A load first waits until the partition's high watermark reaches the
//    log end it saw after the election (a new Raft leader learns the commit point only once
//    its term's first entry commits, so a smaller high watermark may miss committed records),
//    then replays up to the high watermark; meanwhile the groups answer
//    COORDINATOR_LOAD_IN_PROGRESS. An unloaded partition's groups answer NOT_COORDINATOR (their
//    waiting JoinGroup/SyncGroup too), and so does a write that fails because this node lost
//    the partition's leadership (the client asks FindCoordinator again).
//
// Threads: every method below except open(), executor(), partition_for(), availability(),
// on_partition_leader(), begin_shutdown() and stop() must run on executor(). Partition
// callbacks come back on shard threads and are posted here. It reads and appends through the
// partition seam, as leader (cluster::PartitionService).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "base/clock.h"
#include "base/result.h"
#include "cluster/partition_table.h"
#include "cluster/partitions.h"
#include "coordinator/group_coordinator.h"
#include "coordinator/group_records.h"

namespace ordo::broker {

inline constexpr const char* kOffsetsTopic = "__consumer_offsets";
// The most partitions of __consumer_offsets a cluster-mode service loads (the largest
// offsets.topic.num.partitions); groups of partitions beyond are unavailable.
inline constexpr int32_t kMaxOffsetsPartitions = 1000;

struct GroupServiceOptions {
  coordinator::GroupConfig group;
  int32_t partitions = 50;                        // offsets.topic.num.partitions
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;  // offsets.retention.minutes
  int64_t retention_check_interval_ms = 600'000;  // offsets.retention.check.interval.ms
  int32_t metadata_max_bytes = 4096;              // offset.metadata.max.bytes
  int64_t tick_ms = 100;                          // how often session deadlines are checked
  const Clock* clock = &SystemClock::instance();
  // Cluster mode: partitions are loaded while this node leads them (on_partition_leader).
  bool replicated = false;
  cluster::NodeId self = cluster::kNoLeader;
  // Cluster mode: the partition count of __consumer_offsets comes from this table once the
  // topic exists (`partitions` until then). Must outlive the service.
  const cluster::PartitionTable* table = nullptr;
  // Cluster mode: how often a load checks whether the high watermark reached its barrier.
  int64_t load_retry_ms = 10;
};

// Kafka's String.hashCode over the group id's UTF-16 code units, which decides the partition
// (and, with more than one broker, the coordinator). Here for the same placement as Kafka.
int32_t java_string_hash(const std::string& utf8);
// Kafka's placement: abs(hash) % partitions, where abs(INT32_MIN) is 0.
int32_t offsets_partition_for(const std::string& group_id, int32_t partitions);

class GroupService {
 public:
  using TopicPartition = coordinator::GroupStateSnapshot::TopicPartition;
  using GroupOffsets = coordinator::GroupStateSnapshot::GroupOffsets;

  // One node: loads the state from `__consumer_offsets` (whose partitions must exist) and
  // starts the thread. A partition whose records do not decode is reported and its groups
  // are answered with COORDINATOR_NOT_AVAILABLE (nothing is guessed).
  // Cluster mode (options.replicated): starts the thread with nothing loaded.
  static Result<std::unique_ptr<GroupService>> open(GroupServiceOptions options,
                                                    cluster::PartitionService& partitions);
  ~GroupService();
  GroupService(const GroupService&) = delete;
  GroupService& operator=(const GroupService&) = delete;

  asio::any_io_executor executor() { return ctx_.get_executor(); }
  int32_t partition_for(const std::string& group_id) const;
  const GroupServiceOptions& options() const { return options_; }
  // Whether this node serves the group now: NONE; NOT_COORDINATOR (cluster mode: another node
  // leads its partition); COORDINATOR_LOAD_IN_PROGRESS; COORDINATOR_NOT_AVAILABLE (its
  // partition failed to load, or the service stops). Any thread (FindCoordinator asks from
  // the network threads).
  protocol::ErrorCode availability(const std::string& group_id) const;

  // Cluster mode: partition `partition` of __consumer_offsets has leader `leader` in `term`
  // (RaftPartitions' on_leader; any thread, does not block). Loads or unloads it.
  void on_partition_leader(int32_t partition, cluster::NodeId leader, int32_t term);

  // FindCoordinator in cluster mode creates __consumer_offsets on first need: one creation at
  // a time (true: the caller runs it, then calls end_topic_creation with its outcome).
  bool begin_topic_creation();
  void end_topic_creation(protocol::ErrorCode error, const std::string& message);

  // ---- on executor() ----
  // The coordinator of the group's partition; only after availability() said NONE.
  coordinator::GroupCoordinator& coordinator(const std::string& group_id);
  // The groups of every loaded partition.
  std::vector<coordinator::GroupListing> list_groups() const;

  struct Commit {
    std::string topic;
    int32_t partition = 0;
    coordinator::OffsetCommitValue value;
  };
  // Appends the commits as one batch; on success they become the group's offsets. done runs
  // on executor() with none or the error for every entry.
  void commit(const std::string& group_id, std::vector<Commit> commits,
              std::function<void(protocol::ErrorCode)> done);
  // Tombstones for the given offsets (OffsetDelete, DeleteGroups, expiry).
  void delete_offsets(const std::string& group_id, std::vector<TopicPartition> partitions,
                      std::function<void(protocol::ErrorCode)> done);
  // Deletes an Empty (or memberless) group: its offsets and its metadata.
  void delete_group(const std::string& group_id, std::function<void(protocol::ErrorCode)> done);

  const GroupOffsets* offsets(const std::string& group_id) const;
  // Groups that have offsets but no state in the coordinator (standalone consumers' groups).
  std::vector<std::string> offset_only_groups() const;

  // The offset-expiry pass (run by the timer every retention_check_interval_ms). `done` runs on
  // executor() once the tombstones it wrote are appended.
  void expire_offsets(std::function<void()> done = [] {});

  // ---- any thread ----
  // Answers every waiting JoinGroup/SyncGroup with NOT_COORDINATOR and stops taking new work;
  // appends in flight still complete. Then stop() ends the thread (after the server finished
  // its requests, before the logs close).
  void begin_shutdown();
  void stop();

 private:
  // Where a partition of __consumer_offsets is (status_, readable anywhere).
  enum class Load : uint8_t { unloaded, loading, loaded, failed };
  struct Slot {
    std::unique_ptr<coordinator::GroupCoordinator> coordinator;
    int32_t term = -1;   // cluster mode: the leader term it was loaded for
    uint64_t epoch = 0;  // +1 on every load and unload: older callbacks are stale
    std::unique_ptr<asio::steady_timer> retry;  // a load waiting for its high watermark
  };
  struct Loader;

  explicit GroupService(GroupServiceOptions options, cluster::PartitionService& partitions);
  Result<void> load_partition(int32_t partition, coordinator::GroupStateSnapshot& snapshot);
  // Installs a replayed partition: its coordinator with the restored groups, its offsets.
  void install(int32_t partition, const coordinator::GroupStateSnapshot& snapshot);
  void handle_leader(int32_t partition, cluster::NodeId leader, int32_t term);
  void start_load(int32_t partition, int32_t term);
  void load_step(std::shared_ptr<Loader> load);
  void load_read(std::shared_ptr<Loader> load, storage::ReadOptions options);
  void find_log_start(std::shared_ptr<Loader> load);
  void unload(int32_t partition, const char* why);
  void refresh_partition_count();
  Load status(int32_t partition) const;
  void set_status(int32_t partition, Load s);
  // The group's state; Dead when its partition is not loaded.
  coordinator::GroupState state(const std::string& group_id) const;
  using RecordList =
      std::vector<std::pair<coordinator::RecordBytes, std::optional<coordinator::RecordBytes>>>;
  void append(const std::string& group_id, RecordList records,
              std::function<void(protocol::ErrorCode)> done);
  void on_state_change(const std::string& group_id, coordinator::GroupState state,
                       int32_t generation);
  void schedule_tick();

  GroupServiceOptions options_;
  cluster::PartitionService& partitions_;
  asio::io_context ctx_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  asio::steady_timer tick_timer_;
  std::vector<Slot> slots_;                         // one per partition (at most this many)
  std::unique_ptr<std::atomic<uint8_t>[]> status_;  // Load of each slot
  std::atomic<int32_t> partition_count_;            // what partition_for divides by
  uint64_t seed_;
  std::map<std::string, GroupOffsets> offsets_;    // groups of loaded partitions
  std::map<std::string, int64_t> empty_since_ms_;  // groups that became Empty (for expiry)
  int64_t last_expiry_ms_ = 0;
  std::atomic<bool> stopping_{false};  // set on executor(); availability() reads it anywhere
  std::atomic<bool> stopped_{false};
  // Appends answer from the partition's thread, possibly after this service is gone (a log
  // closed later): they post to its executor only while `self` is set, under `mu`; the
  // destructor clears it first.
  struct Liveness {
    std::mutex mu;
    GroupService* self = nullptr;
  };
  std::shared_ptr<Liveness> live_ = std::make_shared<Liveness>();
  std::atomic<bool> creating_topic_{false};
  std::atomic<int64_t> creation_logged_ms_{0};
};

}  // namespace ordo::broker
