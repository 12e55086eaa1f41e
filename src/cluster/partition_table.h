#pragma once
// The control plane as data: every topic, its partitions and their replica assignments
// (replicas, leader, leader epoch), in one table that changes only by apply(Command).
//
// Today the commands come from the broker's topic registry (the metadata thread applies one
// for each change it makes); with replication they come from the cluster controller's log.
// Either way the table is a pure state machine: the same commands in the same order give the
// same table, and applying a command whose effect is already there changes nothing (so a
// command log can be replayed over a table that has seen part of it).
//
// Threads: apply() from one thread at a time (the broker's metadata thread); snapshot() from
// any thread (an immutable table, swapped whole on each change).

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"
#include "model/topic_partition.h"
#include "storage/config.h"

namespace ordo::cluster {

using NodeId = int32_t;
using TopicId = std::array<uint8_t, 16>;

inline constexpr NodeId kNoLeader = -1;

// Replication group ids: group 0 is the cluster controller's; each partition gets the next one
// when the command that makes it is applied (never reused, see TableSnapshot::next_group).
using GroupId = int64_t;
inline constexpr GroupId kControllerGroup = 0;
inline constexpr GroupId kNoGroup = -1;

struct PartitionAssignment {
  std::vector<NodeId> replicas;  // the first is the preferred leader
  NodeId leader = kNoLeader;
  int32_t leader_epoch = 0;
  // The partition's replication group, assigned on apply (CreateTopic, AddPartitions) from
  // TableSnapshot::next_group. Single node: assigned the same way and unused.
  GroupId group = kNoGroup;
  bool operator==(const PartitionAssignment&) const = default;
};

struct TopicEntry {
  std::string name;
  TopicId id{};
  storage::LogConfig log;  // the settings every replica's log runs with
  std::vector<PartitionAssignment> partitions;
  bool operator==(const TopicEntry&) const = default;
};

// ---- commands ----

// A new topic: one entry of `replicas` per partition; each partition starts led by its first
// replica at epoch 0.
struct CreateTopic {
  std::string name;
  TopicId id{};
  storage::LogConfig log;
  std::vector<std::vector<NodeId>> replicas;
  bool operator==(const CreateTopic&) const = default;
};
// Partitions [from, from + replicas.size()) added to a topic that has `from` of them.
struct AddPartitions {
  std::string name;
  int32_t from = 0;
  std::vector<std::vector<NodeId>> replicas;
  bool operator==(const AddPartitions&) const = default;
};
// The topic's partitions from `from` on are dropped (undoes an AddPartitions that failed).
struct DeletePartitions {
  std::string name;
  int32_t from = 0;
  bool operator==(const DeletePartitions&) const = default;
};
struct DeleteTopic {
  std::string name;
  bool operator==(const DeleteTopic&) const = default;
};
struct SetConfig {
  std::string name;
  storage::LogConfig log;
  bool operator==(const SetConfig&) const = default;
};
// A partition's new leader (kNoLeader: none) at a new epoch (larger than the current one).
struct SetLeader {
  model::TopicPartition tp;
  NodeId leader = kNoLeader;
  int32_t leader_epoch = 0;
  bool operator==(const SetLeader&) const = default;
};
using Command =
    std::variant<CreateTopic, AddPartitions, DeletePartitions, DeleteTopic, SetConfig, SetLeader>;

using TopicTable = std::map<std::string, TopicEntry, std::less<>>;

struct TableSnapshot {
  TopicTable topics;
  uint64_t version = 0;  // +1 for each command that changed something
  // The group id the next new partition gets (1 first: group 0 is the controller). Advances by
  // one per partition made, never goes back: a deleted partition's group is never reused, so a
  // late message of an old group cannot reach a new partition.
  GroupId next_group = 1;
  // group -> its partition, for every partition of `topics` (kept by apply).
  std::map<GroupId, model::TopicPartition> groups;

  const TopicEntry* find(std::string_view topic) const;
  // Null when the topic does not exist or has no such partition.
  const PartitionAssignment* find(const model::TopicPartition& tp) const;
  // The partition of a replication group; nullopt for an unknown (or deleted) group.
  std::optional<model::TopicPartition> find_group(GroupId group) const;
  bool operator==(const TableSnapshot&) const = default;
};

class PartitionTable {
 public:
  PartitionTable();
  // A table that starts from `start` (a restored checkpoint). `groups` is rebuilt from the
  // topics; the caller checked them (ClusterState::restore).
  explicit PartitionTable(TableSnapshot start);
  // Copies share the current (immutable) snapshot; each goes on on its own.
  PartitionTable(const PartitionTable& other) : current_(other.current_.load()) {}
  PartitionTable& operator=(const PartitionTable& other) {
    current_.store(other.current_.load());
    return *this;
  }

  // Applies a command: true when it changed the table, false when its effect was already
  // there (idempotent). A command that contradicts the table (a topic created again with
  // another id, partitions added from the wrong count, an epoch that goes back) is an error
  // (Errc::already_exists, invalid_argument, not_found) and changes nothing.
  Result<bool> apply(const Command& command);
  // Several commands as one change (one copy of the table; at startup, one per topic would
  // copy it once per topic): all of them or none.
  Result<bool> apply_all(const std::vector<Command>& commands);

  std::shared_ptr<const TableSnapshot> snapshot() const { return current_.load(); }

 private:
  std::atomic<std::shared_ptr<const TableSnapshot>> current_;
};

}  // namespace ordo::cluster
