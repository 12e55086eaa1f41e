#pragma once
// ClusterView: what the Kafka handlers tell clients about the cluster (Metadata,
// DescribeCluster, FindCoordinator): its brokers, its controller, and each partition's leader,
// epoch and replicas. One node answers for itself (LocalClusterView in broker.cc); a cluster
// node answers from the controller's state and its partitions' Raft groups (ClusterNode).
//
// Threads: every method from any thread (network threads), cheap (no I/O, no waiting).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cluster/partition_table.h"
#include "model/topic_partition.h"

namespace ordo::broker {

struct BrokerEndpoint {
  int32_t id = -1;
  std::string host;
  int32_t port = 0;
  std::optional<std::string> rack;
};

struct PartitionState {
  int32_t leader = cluster::kNoLeader;  // kNoLeader: none known (LEADER_NOT_AVAILABLE)
  int32_t leader_epoch = -1;
  std::vector<int32_t> replicas;
  std::vector<int32_t> isr;
  std::vector<int32_t> offline;  // replicas on brokers that are not live
};

class ClusterView {
 public:
  virtual ~ClusterView() = default;
  // The live brokers, by id (Metadata lists these; a fenced broker is left out).
  virtual std::vector<BrokerEndpoint> brokers() const = 0;
  // The active controller, -1 when none is known.
  virtual int32_t controller() const = 0;
  // A partition of `table` (nullopt when the table has no such partition).
  virtual std::optional<PartitionState> partition(const cluster::TableSnapshot& table,
                                                  const model::TopicPartition& tp) const = 0;
};

}  // namespace ordo::broker
