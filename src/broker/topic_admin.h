#pragma once
// TopicAdmin: this node's topic changes (create, delete, add partitions, configs). Each is
// checked, recorded in the topic registry (persisted before it is visible), applied to the
// partition table as a command, and the reconciler makes the local logs match. Creations are
// all or nothing (docs/broker-metadata.md). With replication the cluster controller takes
// this role (its commands reach the table from its log).
//
// Threads: one change at a time, on the broker's metadata thread (the methods block on the
// LogManager's shards: never from a network thread).

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "base/result.h"
#include "broker/config.h"
#include "broker/topics.h"
#include "cluster/partition_table.h"
#include "cluster/reconciler.h"
#include "protocol/errors.h"

namespace ordo::broker {

class TopicAdmin {
 public:
  using Outcome = std::pair<protocol::ErrorCode, std::string>;
  struct CreateResult {
    protocol::ErrorCode error = protocol::ErrorCode::none;
    std::string message;
    TopicInfo topic;
  };

  // step_hook (Broker::set_create_step_hook, may be empty) is read at each creation.
  TopicAdmin(const BrokerConfig& config, TopicRegistry& topics, cluster::PartitionTable& table,
             cluster::Reconciler& reconciler, const std::function<Result<void>(int)>& step_hook);

  // The partition table's command for a registered topic (every partition on `node`).
  static cluster::CreateTopic create_command(cluster::NodeId node, const TopicInfo& t,
                                             const storage::LogConfig& log);

  CreateResult create_topic(const std::string& name, int32_t partitions,
                            const std::map<std::string, std::string>& configs, bool validate_only);
  Outcome delete_topic(const std::string& name);
  // Grows the topic to `count` partitions.
  Outcome set_partitions(const std::string& name, int32_t count, bool validate_only);
  // Replaces the topic's configs.
  Outcome set_topic_configs(const std::string& name, std::map<std::string, std::string> configs,
                            bool validate_only);

 private:
  // Refuses `adding` partitions beyond max.partitions or the open-file limit (nullopt: fine).
  std::optional<Outcome> check_partition_limits(int64_t adding);
  // Partitions [from, to) of a topic, all or nothing; `done` is the registry entry to publish.
  Outcome create_partitions_atomically(const std::string& name, int32_t from, int32_t to,
                                       const storage::LogConfig& log, TopicInfo done);

  const BrokerConfig& config_;
  TopicRegistry& topics_;
  cluster::PartitionTable& table_;
  cluster::Reconciler& reconciler_;
  const std::function<Result<void>(int)>& step_hook_;
};

}  // namespace ordo::broker
