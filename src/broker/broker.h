#pragma once
// The broker: Kafka requests in, responses out. It knows nothing of sockets (server.h owns
// those): handle() takes one request frame and produces the response frame's chunks.
//
// Threads. The broker owns the network threads: network.threads io_contexts, each run by one
// thread from open() until close(). The Server runs its listener and connections on them;
// handle() runs on the calling connection's executor. Partition reads and writes go through
// the partition seam (cluster::PartitionService; single node: cluster::LocalPartitions, which
// also decides the high watermarks) to the LogManager's shards (the single writer of each
// partition): with storage.shard.mode =
// network the shards ARE the network threads (a partition's work runs inline when the
// request is on its thread, and is posted to the owning network thread otherwise); with
// dedicated they are the LogManager's own threads. Topic changes (create, delete,
// partitions, configs) run one at a time on the broker's metadata thread (TopicAdmin), which
// persists them in the TopicRegistry before they are seen and applies them to the partition
// table, whose reconciler makes the local logs match.
//
// Shutdown order: Server::stop() (stop accepting and reading, finish in-flight requests),
// then close(): the metadata thread, then the logs (while the network threads still run:
// they may be the shards), then the network threads.

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

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>

#include "base/result.h"
#include "broker/async.h"
#include "broker/cluster_view.h"
#include "broker/config.h"
#include "broker/topics.h"
#include "cluster/partition_table.h"
#include "cluster/partitions.h"
#include "cluster/reconciler.h"
#include "protocol/codec.h"
#include "storage/log_manager.h"

namespace ordo::broker {

// One response frame: the size prefix and the encoded header and body, with file ranges
// (fetched log bytes) as separate chunks for sendfile.
struct ResponseFrame {
  std::vector<protocol::Chunk> chunks;
  size_t size = 0;  // total bytes, prefix included
};

// What a handler returns: a response, no response (Produce with acks=0), or an error that
// closes the connection (a malformed request).
struct HandlerOutcome {
  std::optional<ResponseFrame> response;
  std::optional<Error> close;  // set: log it, close the connection
};

// Per-connection state the handlers need.
struct ConnectionState {
  std::string peer;  // "host:port", for log lines
  // Produce requests of one connection reach the partition writers in arrival order: each
  // takes a ticket when it arrives and submits its appends when it is its turn.
  uint64_t produce_tickets = 0;
  uint64_t produce_turn = 0;
  std::unique_ptr<Wakeup> produce_wakeup;  // notified when the turn moves
};

class PartitionWaiters;
class ClusterNode;
class GroupService;
class ProducerIdAllocator;
class TopicAdmin;

class Broker {
 public:
  // Opens the data dir (logs and topic registry), finishes unfinished topic deletions and
  // registers partition dirs that the registry does not know as topics.
  static Result<std::unique_ptr<Broker>> open(BrokerConfig config);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Where clients are told to connect (Metadata, DescribeCluster); set by the server once it
  // has bound its port.
  void set_advertised(std::string host, uint16_t port);
  // The address set last (any thread).
  std::pair<std::string, uint16_t> advertised() const;

  asio::awaitable<HandlerOutcome> handle(std::vector<uint8_t> frame, ConnectionState& conn);

  // Ends long polls at once (their responses go out with what is there) and makes new ones
  // return without waiting: the server calls it when it stops.
  void begin_shutdown();
  bool stopping() const { return stopping_.load(); }

  // Stops the metadata thread and the group coordinator's thread, closes every log cleanly
  // and stops the network threads (after the server has finished its in-flight requests).
  // Idempotent; not from a network thread.
  Result<void> close();

  const BrokerConfig& config() const { return config_; }
  // The network threads' contexts (network.threads of them), running from open() to close().
  std::vector<asio::io_context*> network_contexts() const;
  storage::LogManager& logs() { return *logs_; }
  cluster::PartitionService& partitions() { return *partitions_; }
  const cluster::PartitionTable& partition_table() const { return *table_; }
  TopicRegistry& topics() { return *topics_; }
  // Cluster mode: GET /v1/cluster's JSON (brokers, controller, partitions); empty function on a
  // single node.
  std::function<std::string()> cluster_status();

  // Tests (fault injection, crash tests): called with 0, 1, ... before each step of a topic or
  // partition creation (0: before the registry records it; 1..n: before partition from+k-1;
  // n+1: before the registry publishes it). An error fails the creation at that step as a real
  // failure would. Set before requests arrive; runs on the metadata thread.
  void set_create_step_hook(std::function<Result<void>(int step)> hook) {
    create_step_hook_ = std::move(hook);
  }

  // Internal to the module (handlers.h).
  struct Request;
  struct Handlers;

 private:
  explicit Broker(BrokerConfig config);
  friend struct Handlers;

  BrokerConfig config_;
  mutable std::mutex advertised_mu_;
  std::string advertised_host_;
  uint16_t advertised_port_ = 0;
  std::unique_ptr<TopicRegistry> topics_;
  std::unique_ptr<PartitionWaiters> waiters_;
  std::atomic<bool> stopping_{false};
  // The control plane: the partition table (mirrors the topic registry; changed only by the
  // metadata thread, always before the registry publishes a change), the partition seam the
  // handlers use (it decides the high watermark: declared before the logs, which call it)
  // and the reconciler that makes the local logs match the table (metadata thread).
  std::unique_ptr<cluster::PartitionTable> table_;
  std::unique_ptr<cluster::PartitionService> partitions_;
  // What Metadata and DescribeCluster say of the cluster: this node alone (local_view_) or
  // the cluster (cluster_).
  std::unique_ptr<ClusterView> local_view_;
  const ClusterView* view_ = nullptr;
  std::unique_ptr<storage::LogManager> logs_;
  std::unique_ptr<cluster::Reconciler> reconciler_;
  std::unique_ptr<TopicAdmin> admin_;  // topic changes, on the metadata thread (one node)
  // Cluster mode (config_.cluster_mode()): the node's cluster side; topic changes go to it
  // instead of admin_. Destroyed after the logs are closed (its transport carries the
  // partitions' frames).
  // Cluster mode: the peer transport's own thread (not a network thread: a shard busy with
  // many groups' fsyncs must not stall the keep-alives and routing of every peer link).
  std::unique_ptr<asio::io_context> transport_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> transport_work_;
  std::thread transport_thread_;
  std::unique_ptr<ClusterNode> cluster_;
  // Opens the cluster-mode side of open() (after the network threads).
  static Result<void> open_cluster(Broker& b);
  std::unique_ptr<GroupService> groups_;
  std::unique_ptr<ProducerIdAllocator> producer_ids_;
  std::function<Result<void>(int)> create_step_hook_;
  asio::io_context metadata_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> metadata_work_;
  std::thread metadata_thread_;
  // Declared last, so destroyed first: handlers still queued on them (coroutine frames) are
  // destroyed while everything they refer to exists.
  std::vector<std::unique_ptr<asio::io_context>> network_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> network_work_;
  std::vector<std::thread> network_threads_;
};

}  // namespace ordo::broker
