#pragma once
// The cluster's metadata as a replicated state machine: the commands the controller's Raft
// group (group 0) carries, their byte encoding, and ClusterState, the state they build
// (partition table, brokers, producer id blocks, the topics' raw configs).
//
// Pure: no threads, sockets or clocks. The same commands at the same offsets give the same
// state on every node. Encoding, checkpoint format and rules: docs/cluster-metadata.md.
//
// Threads: ClusterState from one thread at a time (the broker's metadata thread); its table's
// snapshot() from any thread (PartitionTable).
//
// Decisions beyond the session's contract (issue 19):
// - A command that fails to apply changes nothing, applied_offset() included: every replica
//   refuses it alike, so the apply callback of the controller group logs it and goes on.
// - A topic request may be several commands (CreateTopic then TopicConfigs; SetConfig then
//   TopicConfigs), proposed in order, not atomic (docs/cluster-metadata.md says what a failure
//   between them leaves).
// - No Checkpoint command in the log: checkpoint() is a local file's content, the log is
//   compacted up to its offset (design in docs/cluster-metadata.md).
// - TableSnapshot::find_group answers the partition (optional<TopicPartition>).
// - initial_config() builds a partition's first raft::Config from the broker records.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"
#include "cluster/partition_table.h"
#include "raft/types.h"
#include "storage/config.h"

namespace ordo::cluster {

// ---- records and commands ----

// A broker as the controller knows it. `epoch` counts its registrations (1 after the first):
// FenceBroker/UnfenceBroker and heartbeats name it, so a message about an older registration
// of the same node is refused.
struct BrokerRecord {
  NodeId id = -1;
  uint64_t incarnation = 0;  // the node's (node.meta), != 0
  std::string host;          // the Kafka listener clients are given
  int32_t port = 0;
  std::string peer_host;  // the node-to-node (replication) listener
  int32_t peer_port = 0;
  std::optional<std::string> rack;
  bool fenced = false;
  int64_t epoch = 0;
  bool operator==(const BrokerRecord&) const = default;
};

// Registers a broker, or registers it again: `broker.epoch` must be the current epoch + 1
// (1 for a new one); the record replaces the old one (incarnation and addresses may change).
struct RegisterBroker {
  BrokerRecord broker;
  bool operator==(const RegisterBroker&) const = default;
};
// Fences (no new replicas placed there, not counted as alive) or unfences the broker's
// registration `epoch` (must be its current one).
struct FenceBroker {
  NodeId id = -1;
  int64_t epoch = 0;
  bool operator==(const FenceBroker&) const = default;
};
struct UnfenceBroker {
  NodeId id = -1;
  int64_t epoch = 0;
  bool operator==(const UnfenceBroker&) const = default;
};
// Producer ids [first, first + count) belong to `node`; `first` must be next_producer_id().
struct AllocateProducerIds {
  NodeId node = -1;
  int64_t first = 0;
  int64_t count = 0;
  bool operator==(const AllocateProducerIds&) const = default;
};
// The topic's configs as set by the user (the registry's key=value map, only the explicit
// ones); replaces the previous map. The topic must exist. Its effective LogConfig travels in
// CreateTopic/SetConfig.
struct TopicConfigs {
  std::string name;
  std::map<std::string, std::string> configs;
  bool operator==(const TopicConfigs&) const = default;
};

using MetadataCommand = std::variant<Command, RegisterBroker, FenceBroker, UnfenceBroker,
                                     AllocateProducerIds, TopicConfigs>;

// A short name of the command's kind ("create_topic", "register_broker", ...), as encoded.
std::string_view command_name(const MetadataCommand& command);

// ---- encoding ----

// The bounds decode_command enforces (and ControllerLogic never exceeds).
inline constexpr size_t kMaxCommandBytes = size_t(16) << 20;
inline constexpr size_t kMaxNameBytes = 255;  // topic names, hosts, racks, config keys
inline constexpr size_t kMaxConfigValueBytes = 65536;
inline constexpr size_t kMaxConfigs = 1024;  // per topic
inline constexpr size_t kMaxPartitionsPerCommand = 100000;
inline constexpr size_t kMaxReplicas = 64;  // per partition
inline constexpr int64_t kMaxProducerIdBlock = int64_t(1) << 20;
inline constexpr int kCommandVersion = 1;
inline constexpr int kCheckpointVersion = 1;

// One command as a JSON document (UTF-8 bytes): {"v":1,"type":"...",...}. Canonical: the same
// command always gives the same bytes.
std::vector<uint8_t> encode_command(const MetadataCommand& command);
// Any bytes: a command, or Errc::corrupt (not a command: bad JSON, a missing or mistyped field,
// a value out of range) or Errc::invalid_argument (a version this build does not read). Never
// crashes, never throws.
Result<MetadataCommand> decode_command(std::span<const uint8_t> bytes);

// LogConfig <-> JSON object text, exact both ways (every field; doubles round-trip).
std::string encode_log_config(const storage::LogConfig& log);
Result<storage::LogConfig> decode_log_config(std::string_view json);

// ---- the state ----

class ClusterState {
 public:
  ClusterState() = default;

  // Applies the command found at `offset` of the controller's log. Offsets only grow: a
  // command at or below applied_offset() was applied already (a replay over a state that has
  // seen part of the log) and changes nothing (false). Otherwise true when it changed the
  // state, false when its effect was there already. A command that contradicts the state (a
  // stale broker epoch, a producer id block that does not follow, a topic created again with
  // another id, a config map of a missing topic) is an error (Errc::already_exists,
  // invalid_argument, not_found) and changes nothing, not even applied_offset().
  Result<bool> apply(const MetadataCommand& command, int64_t offset);

  const PartitionTable& table() const { return table_; }
  std::vector<BrokerRecord> brokers() const;  // by id
  std::optional<BrokerRecord> broker(NodeId id) const;
  int64_t next_producer_id() const { return next_producer_id_; }
  int64_t applied_offset() const { return applied_offset_; }  // -1: nothing applied
  const std::map<std::string, std::map<std::string, std::string>>& topic_configs() const {
    return topic_configs_;
  }

  // The whole state as one versioned JSON document (docs/cluster-metadata.md), covering the
  // log up to applied_offset(): restore() of it, then apply() of the commands after that
  // offset, gives the state a full replay gives.
  std::vector<uint8_t> checkpoint() const;
  // Errc::corrupt for anything that is not a checkpoint this build wrote (or a consistent one:
  // duplicate groups, a group at or above next_group, a config map of a missing topic, ...),
  // Errc::invalid_argument for a newer version.
  static Result<ClusterState> restore(std::span<const uint8_t> bytes);

  // Equal state (the table's topics, version and groups; brokers; producer ids; configs; offset).
  bool operator==(const ClusterState& other) const;

 private:
  Result<bool> apply_one(const MetadataCommand& command);

  PartitionTable table_;
  std::map<NodeId, BrokerRecord> brokers_;
  int64_t next_producer_id_ = 0;
  int64_t applied_offset_ = -1;
  std::map<std::string, std::map<std::string, std::string>> topic_configs_;
};

// A partition's initial Raft configuration: its replicas as voters, each with the incarnation
// its broker registered (sorted by id). Errc::not_found when a replica's broker is not
// registered.
Result<raft::Config> initial_config(const ClusterState& state, const PartitionAssignment& a);

}  // namespace ordo::cluster
