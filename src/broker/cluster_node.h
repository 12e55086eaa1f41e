#pragma once
// ClusterNode: what makes a broker one node of a cluster (cluster mode, docs/cluster.md).
//
// It owns the node-to-node side: the peer transport (on the broker's transport
// thread), the RPC over it, the controller's Raft group (group 0) and the cluster state it
// applies, all on the node's controller thread. The broker owns the partitions' side
// (RaftPartitions over the LogManager) and hands it in; the node opens and closes the
// partitions' Raft groups as the controller's log assigns them here.
//
// Flows:
//   received frame (transport thread) -> kind 4: PeerRpc; else raft::Batcher::receive ->
//     group 0 to the controller group, the rest to RaftPartitions::deliver.
//   committed controller entry (controller thread) -> ClusterState::apply -> the broker's
//     partition table (a copy of the state's), the Reconciler (this node's logs, blocking
//     LogManager forms), RaftPartitions::open_group/close_group, the topic registry (in
//     memory: the handlers' view of topics and their configs).
//   topic changes (CreateTopics, ...: the metadata thread, blocking) -> the controller thread:
//     on the controller leader, checked and placed by cluster::ControllerLogic, proposed,
//     answered once applied here; elsewhere forwarded to the leader (RPC) and answered once
//     the leader committed it and this node applied it. NOT_CONTROLLER only without a leader.
//   registration and heartbeats (controller thread, every broker.heartbeat.interval.ms) ->
//     the controller leader (an RPC, or directly when this node leads); its tick (200 ms)
//     fences brokers silent for broker.session.timeout.ms, a heartbeat unfences them.
//   leader reports (controller thread, 200 ms): the partitions this node leads at an epoch
//     the table does not show -> the controller leader -> SetLeader, so a node that does not
//     host a partition answers Metadata with its leader (partition()).
//   (docs/cluster-controller.md, "The controller in the broker")
//
// Shutdown: stop() (from a thread that is neither the controller thread nor the transport
// thread, while the network threads still run): RPC, transport, controller thread.
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>

#include "base/result.h"
#include "broker/cluster_view.h"
#include "broker/config.h"
#include "broker/node_meta.h"
#include "broker/topics.h"
#include "cluster/partition_table.h"
#include "protocol/errors.h"
#include "raft/batcher.h"

namespace ordo::storage {
class LogManager;
}
namespace ordo::cluster {
class RaftPartitions;
}

namespace ordo::cluster {
class PeerTransport;
}

namespace ordo::broker {

// The controller's log directory in the data dir (reserved: not a topic's partition).
constexpr std::string_view kControllerDirName = "__cluster_metadata-0";

// Where the partitions' Raft groups send their frames: the transport once the node has one
// (frames sent before, or after stop(), are dropped; Raft resends). Any thread.
class FrameSink {
 public:
  void send(std::vector<raft::OutFrame> frames);
  void attach(cluster::PeerTransport* transport) { transport_.store(transport); }

 private:
  std::atomic<cluster::PeerTransport*> transport_{nullptr};
};

struct ClusterNodeDeps {
  const BrokerConfig& config;
  NodeMeta meta;
  asio::io_context& transport;  // the transport thread's context (run by the broker)
  storage::LogManager& logs;
  cluster::PartitionTable& table;  // the broker's (handlers, RaftPartitions read it)
  cluster::RaftPartitions& partitions;
  TopicRegistry& topics;  // in memory
  // The Kafka address this broker tells clients (set once the listener is bound).
  std::function<std::pair<std::string, uint16_t>()> advertised;
  // Logs found on disk (the reconciler may remove those the controller's log drops).
  std::vector<model::TopicPartition> on_disk;
  std::shared_ptr<FrameSink> sink;  // the partitions' frames (attached to the transport here)
};

// A topic creation as CreateTopics asks for it.
struct CreateTopicSpec {
  std::string name;
  int32_t partitions = -1;                       // -1: num.partitions (unless assignment is given)
  int32_t replication_factor = -1;               // -1: default.replication.factor
  std::vector<std::vector<int32_t>> assignment;  // manual: replicas of each partition
  std::map<std::string, std::string> configs;
  bool validate_only = false;
};

struct TopicChangeResult {
  protocol::ErrorCode error = protocol::ErrorCode::none;
  std::string message;
  TopicInfo topic;  // created topics
  int32_t replication_factor = 0;
};

class ClusterNode final : public ClusterView {
 public:
  static Result<std::unique_ptr<ClusterNode>> open(ClusterNodeDeps deps);
  ~ClusterNode() override;
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // ClusterView
  std::vector<BrokerEndpoint> brokers() const override;
  int32_t controller() const override;
  std::optional<PartitionState> partition(const cluster::TableSnapshot& table,
                                          const model::TopicPartition& tp) const override;

  // Topic changes: blocking (they wait for the controller's log), from any thread but the
  // controller and transport threads.
  TopicChangeResult create_topic(const CreateTopicSpec& spec);
  TopicChangeResult delete_topic(const std::string& name);
  TopicChangeResult set_partitions(const std::string& name, int32_t count,
                                   const std::vector<std::vector<int32_t>>& assignment,
                                   bool validate_only);
  TopicChangeResult set_topic_configs(const std::string& name,
                                      std::map<std::string, std::string> configs,
                                      bool validate_only);
  // A producer id no other node hands out (blocks from the controller when this node's
  // block is used up). Blocking, like the above.
  Result<int64_t> next_producer_id();

  // GET /v1/cluster (JSON text; any thread).
  std::string status_json() const;

  void stop();

  struct Impl;

 private:
  explicit ClusterNode(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace ordo::broker
