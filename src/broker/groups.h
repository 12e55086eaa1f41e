#pragma once
// GroupService: the broker's group coordinator. It runs the coordinator library's membership
// state machine (src/coordinator) on a thread of its own and keeps committed offsets, and it
// makes both durable in the internal topic `__consumer_offsets` (records of
// coordinator/group_records.h, one partition per group: java_string_hash(group) mod
// partitions, as Kafka places them).
//
// The log is the source of truth. open() replays every partition of the topic before the
// broker serves; an offset is visible to OffsetFetch only after its record was appended with
// the partition's flush policy (durable by default: fsynced), and the OffsetCommit response
// waits for that append. Group metadata (protocol, generation, members) is written when a
// group becomes Stable or Empty, without holding responses back: if it is lost in a crash the
// group comes back with an older generation, and its members rejoin.
//
// Threads: every method below except open(), executor(), partition_for(), availability(),
// begin_shutdown() and stop() must run on executor(). Partition callbacks come back on shard
// threads and are posted here. It reads and appends through the partition seam, as leader
// (cluster::PartitionService: the appends wait for the quorum, one node's durable sync).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "base/clock.h"
#include "base/result.h"
#include "cluster/partitions.h"
#include "coordinator/group_coordinator.h"
#include "coordinator/group_records.h"

namespace ordo::broker {

inline constexpr const char* kOffsetsTopic = "__consumer_offsets";

struct GroupServiceOptions {
  coordinator::GroupConfig group;
  int32_t partitions = 50;                        // offsets.topic.num.partitions
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;  // offsets.retention.minutes
  int64_t retention_check_interval_ms = 600'000;  // offsets.retention.check.interval.ms
  int32_t metadata_max_bytes = 4096;              // offset.metadata.max.bytes
  int64_t tick_ms = 100;                          // how often session deadlines are checked
  const Clock* clock = &SystemClock::instance();
};

// Kafka's String.hashCode over the group id's UTF-16 code units, which decides the partition
// (and, with more than one broker, the coordinator). Here for the same placement as Kafka.
int32_t java_string_hash(const std::string& utf8);

class GroupService {
 public:
  using TopicPartition = coordinator::GroupStateSnapshot::TopicPartition;
  using GroupOffsets = coordinator::GroupStateSnapshot::GroupOffsets;

  // Loads the state from `__consumer_offsets` (whose partitions must exist) and starts the
  // thread. A partition whose records do not decode is reported and its groups are answered
  // with COORDINATOR_NOT_AVAILABLE (nothing is guessed).
  static Result<std::unique_ptr<GroupService>> open(GroupServiceOptions options,
                                                    cluster::PartitionService& partitions);
  ~GroupService();
  GroupService(const GroupService&) = delete;
  GroupService& operator=(const GroupService&) = delete;

  asio::any_io_executor executor() { return ctx_.get_executor(); }
  int32_t partition_for(const std::string& group_id) const;
  const GroupServiceOptions& options() const { return options_; }
  // COORDINATOR_NOT_AVAILABLE when the group's partition failed to load or the service stops.
  // Any thread (FindCoordinator asks from the network threads).
  protocol::ErrorCode availability(const std::string& group_id) const;

  // ---- on executor() ----
  coordinator::GroupCoordinator& coordinator() { return coordinator_; }

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
  explicit GroupService(GroupServiceOptions options, cluster::PartitionService& partitions);
  Result<void> load_partition(int32_t partition, coordinator::GroupStateSnapshot& snapshot);
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
  coordinator::GroupCoordinator coordinator_;
  std::map<std::string, GroupOffsets> offsets_;
  std::map<std::string, int64_t> empty_since_ms_;  // groups that became Empty (for expiry)
  std::vector<bool> failed_partitions_;
  int64_t last_expiry_ms_ = 0;
  std::atomic<bool> stopping_{false};  // set on executor(); availability() reads it anywhere
  std::atomic<bool> stopped_{false};
};

}  // namespace ordo::broker
