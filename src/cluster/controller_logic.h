#pragma once
// ControllerLogic: the decisions of the cluster controller's leader, as commands to propose.
// Pure: it is handed the current ClusterState and the time (ms, any monotonic clock) on each
// call and keeps only what a leader learns by itself (the brokers' last heartbeats). A new
// leader starts a new ControllerLogic (or calls reset()): with no heartbeat history, it gives
// every broker a full session before fencing it.
//
// The commands it returns are checked against the state it was given; the caller proposes
// them in order (ControllerGroup::propose) and applies them through ClusterState::apply. Two
// decisions taken on the same state before either is applied can contradict each other (two
// creations of one topic, two producer id blocks from the same id): the second one's apply
// then fails and changes nothing; the caller answers that request with an error or retries it
// on the new state (for producer ids: retry).
//
// Threads: one thread (the broker's metadata thread). Rules: docs/cluster-metadata.md.
//
// Decisions beyond the session's contract (issue 19): every call takes the current state (and
// the time where it matters); create_topic takes the topic id and a placement seed (pure: the
// caller draws them); topic requests answer a TopicResult (Kafka's error codes, which Errc
// cannot carry); a registration is unfenced at once unless fence_on_register; the broker's
// epoch to answer a registration with is state.broker(id)->epoch once the command is applied
// (or at once for a retry, which proposes nothing).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"
#include "cluster/metadata.h"

namespace ordo::cluster {

struct ControllerOptions {
  // A broker that has not heartbeaten for this long is fenced (Kafka's
  // broker.session.timeout.ms).
  int64_t session_timeout_ms = 9000;
  // How long tick() waits before proposing the same fence again (the first proposal may have
  // been lost; applying it twice is harmless).
  int64_t fence_retry_ms = 1000;
  int16_t default_replication_factor = 1;  // default.replication.factor
  int32_t default_partitions = 1;          // num.partitions
  int32_t max_partitions_per_topic = 100000;
  int64_t producer_id_block = 1000;
  // A registration is fenced until the broker's first heartbeat (Kafka's behaviour) when
  // true; unfenced at once when false.
  bool fence_on_register = false;
};

// The Kafka errors of topic requests (the handler maps each to its protocol error code).
enum class TopicErrc : int16_t {
  none = 0,
  unknown_topic = 3,                // UNKNOWN_TOPIC_OR_PARTITION
  invalid_topic = 17,               // INVALID_TOPIC_EXCEPTION
  topic_already_exists = 36,        // TOPIC_ALREADY_EXISTS
  invalid_partitions = 37,          // INVALID_PARTITIONS
  invalid_replication_factor = 38,  // INVALID_REPLICATION_FACTOR
  invalid_replica_assignment = 39,  // INVALID_REPLICA_ASSIGNMENT
  invalid_config = 40,              // INVALID_CONFIG
  invalid_request = 42,             // INVALID_REQUEST
};
struct TopicError {
  TopicErrc code = TopicErrc::none;
  std::string message;
};
// The commands of a topic request, or its Kafka error (shaped like Result).
class TopicResult {
 public:
  TopicResult(std::vector<MetadataCommand> commands)  // NOLINT: implicit by design
      : v_(std::move(commands)) {}
  TopicResult(TopicError error) : v_(std::move(error)) {}  // NOLINT
  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  const std::vector<MetadataCommand>& value() const {
    ORDO_ASSERT(has_value());
    return std::get<0>(v_);
  }
  const std::vector<MetadataCommand>& operator*() const { return value(); }
  const std::vector<MetadataCommand>* operator->() const { return &value(); }
  const TopicError& error() const {
    ORDO_ASSERT(!has_value());
    return std::get<1>(v_);
  }

 private:
  std::variant<std::vector<MetadataCommand>, TopicError> v_;
};

// A manual assignment (CreateTopics' Assignments: partition index -> brokers) as replica sets
// in partition order; INVALID_REPLICA_ASSIGNMENT unless the indexes are 0..n-1, each once.
std::variant<std::vector<std::vector<NodeId>>, TopicError> assignment_in_order(
    const std::vector<std::pair<int32_t, std::vector<NodeId>>>& indexed);

class ControllerLogic {
 public:
  // `now`: the time this node became the controller's leader.
  ControllerLogic(ControllerOptions options, int64_t now);

  // Became leader again: forgets the heartbeats, every broker gets a full session from `now`.
  void reset(int64_t now);

  // A broker (re-)registers. Unknown id: RegisterBroker at epoch 1. Known id: the same
  // incarnation and addresses as registered is a retry (no command; the broker's epoch is the
  // current one); anything else registers it again at epoch + 1. The registration counts as a
  // heartbeat. Errc::invalid_argument for a record that cannot be one (id < 0, incarnation 0,
  // empty host, port outside 1-65535, names too long).
  Result<std::vector<MetadataCommand>> on_register(const ClusterState& state, BrokerRecord broker,
                                                   int64_t now);
  // A heartbeat of registration `epoch`: recorded; UnfenceBroker when the broker is fenced.
  // Errc::not_found for an unknown broker (it registers again), Errc::invalid_argument for an
  // epoch that is not its current one (an old registration: Kafka's STALE_BROKER_EPOCH).
  Result<std::vector<MetadataCommand>> on_heartbeat(const ClusterState& state, NodeId id,
                                                    int64_t epoch, int64_t now);
  // FenceBroker for each unfenced broker without a heartbeat for session_timeout_ms (proposed
  // again after fence_retry_ms while the state still shows it unfenced).
  std::vector<MetadataCommand> tick(const ClusterState& state, int64_t now);

  // The next block of producer ids for `node` (a registered broker; Errc::not_found if not).
  Result<MetadataCommand> allocate_producer_ids(const ClusterState& state, NodeId node,
                                                int64_t now);

  // CreateTopics: partitions (-1: default_partitions) of rf replicas (-1:
  // default_replication_factor), placed over the unfenced brokers unless `assignment` gives
  // the replica sets (then partitions and rf must be -1 or match it). `configs` are the
  // topic's explicit configs, `log` their resolved LogConfig (the caller validated both).
  // Commands: CreateTopic, then TopicConfigs when `configs` is not empty.
  TopicResult create_topic(const ClusterState& state, const std::string& name, int32_t partitions,
                           int16_t replication_factor,
                           const std::optional<std::vector<std::vector<NodeId>>>& assignment,
                           const std::map<std::string, std::string>& configs,
                           const storage::LogConfig& log, const TopicId& id, uint64_t seed) const;
  // CreatePartitions: grows the topic to `total` partitions, with the replica count of its
  // partition 0, placed or given (`assignment`: one replica set per new partition).
  TopicResult create_partitions(const ClusterState& state, const std::string& name, int32_t total,
                                const std::optional<std::vector<std::vector<NodeId>>>& assignment,
                                uint64_t seed) const;
  TopicResult delete_topic(const ClusterState& state, const std::string& name) const;
  // AlterConfigs/IncrementalAlterConfigs: SetConfig (the resolved settings), then TopicConfigs.
  TopicResult set_topic_configs(const ClusterState& state, const std::string& name,
                                const std::map<std::string, std::string>& configs,
                                const storage::LogConfig& log) const;

  const ControllerOptions& options() const { return options_; }
  // When the broker was last heard of (nullopt: not since this leader started).
  std::optional<int64_t> last_heartbeat(NodeId id) const;

 private:
  std::optional<TopicError> check_assignment(const ClusterState& state,
                                             const std::vector<std::vector<NodeId>>& sets,
                                             size_t rf) const;

  ControllerOptions options_;
  int64_t leader_since_ = 0;
  std::map<NodeId, int64_t> heartbeats_;
  std::map<std::pair<NodeId, int64_t>, int64_t> fence_proposed_;  // (id, epoch) -> when
};

}  // namespace ordo::cluster
