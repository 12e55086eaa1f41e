#pragma once
// An in-process cluster of N nodes for RaftPartitions tests. Each node has its own temp data
// dir, its own LogManager (2 shards, its own threads) and its own RaftPartitions; the nodes
// share one PartitionTable. They are joined by an in-memory router: a node's OutFrames are
// decoded by the destination's raft::Batcher::receive (as the broker's transport thread does)
// and given to its deliver(). A filter drops chosen messages (a network partition, a one-way
// link, one message kind); crash() drops a node's objects without a clean close (its logs are
// not closed: the next start recovers as after a process crash) and start() reopens it from its
// directory.
//
// Waits are on conditions (wait_for polls with a generous bound), never fixed sleeps.

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/raft_partitions.h"
#include "raft/batcher.h"
#include "storage/log_manager.h"

namespace ordo::cluster::testing {

// Polls pred until it holds; false after timeout_ms (a bound for a broken build, not a timing
// expectation).
inline bool wait_for(const std::function<bool()>& pred, int64_t timeout_ms = 30'000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// A callback's answer, awaitable from the test thread.
template <typename T>
struct Answer {
  std::shared_ptr<std::promise<Result<T>>> promise = std::make_shared<std::promise<Result<T>>>();
  std::shared_future<Result<T>> future = promise->get_future().share();
  std::function<void(Result<T>)> callback() {
    return [p = promise](Result<T> r) { p->set_value(std::move(r)); };
  }
  bool ready() const {
    return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  }
  // Waits (bounded); the answer, or nullopt on timeout.
  std::optional<Result<T>> get(int64_t timeout_ms = 30'000) const {
    if (future.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready) {
      return std::nullopt;
    }
    return future.get();
  }
};

class ClusterFixture {
 public:
  struct Node {
    NodeId id = kNoLeader;
    std::string dir;
    std::unique_ptr<storage::LogManager> logs;
    std::unique_ptr<RaftPartitions> parts;
    std::unique_ptr<raft::Batcher> receiver;  // decode only; under the router's mutex
    std::atomic<uint64_t> hw_events{0};
    // Added to the node's monotonic clock (RaftPartitionsOptions::now_ms): a jump forward is
    // what the node sees after a SIGSTOP, without stopping it.
    std::atomic<int64_t> clock_offset_ms{0};
    bool up = false;  // under the router's mutex
  };
  struct PartitionSpec {
    model::TopicPartition tp;
    raft::GroupId group = 0;
  };

  // Nodes 1..n in root/node-<id>. tick_ms small so that elections take a few hundred
  // milliseconds at most (election timeouts of 10 to 20 ticks), large enough that a loaded
  // machine (sanitizers, parallel tests) does not stall a shard for a whole election timeout.
  ClusterFixture(std::string root, int n, int64_t tick_ms = 10) : root_(std::move(root)) {
    tick_ms_ = tick_ms;
    for (int i = 1; i <= n; ++i) {
      auto node = std::make_unique<Node>();
      node->id = i;
      node->dir = root_ + "/node-" + std::to_string(i);
      config_.voters.push_back({i, incarnation(i)});
      nodes_.push_back(std::move(node));
    }
  }
  ~ClusterFixture() {
    for (auto& n : nodes_) stop(n->id);
  }

  static uint64_t incarnation(NodeId id) { return 7000 + uint64_t(id); }
  Node& node(NodeId id) { return *nodes_.at(size_t(id - 1)); }
  RaftPartitions& parts(NodeId id) { return *node(id).parts; }
  storage::LogManager& logs(NodeId id) { return *node(id).logs; }
  size_t size() const { return nodes_.size(); }
  const raft::Config& config() const { return config_; }
  PartitionTable& table() { return table_; }
  // Before start(): groups prefer their first assigned replica (RaftPartitionsOptions).
  void set_preferred_leaders(bool on) { preferred_leaders_ = on; }

  storage::LogConfig log_config() const {
    storage::LogConfig c;
    c.segment_bytes = 1 << 20;
    c.flush_mode = storage::FlushMode::none;  // Raft syncs (LogManager::flush)
    c.preallocate = storage::Preallocate::none;
    c.retention_ms = -1;
    return c;
  }

  // Drops the message when it answers false (from, to, message); any thread, under a mutex.
  void set_filter(std::function<bool(const raft::Message&)> f) {
    std::lock_guard lk(mu_);
    filter_ = std::move(f);
  }

  // Opens the node's LogManager and RaftPartitions and the groups of every partition created
  // so far (recovering them from its directory).
  Result<void> start(NodeId id) {
    Node& n = node(id);
    ORDO_ASSERT(!n.logs);
    RaftPartitionsOptions o;
    o.self = id;
    o.incarnation = incarnation(id);
    o.core.election_ticks = 10;
    o.core.heartbeat_ticks = 2;
    o.tick_ms = tick_ms_;
    o.preferred_leaders = preferred_leaders_;
    o.now_ms = [np = &n] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count() +
             np->clock_offset_ms.load();
    };
    o.send = [this, id](std::vector<raft::OutFrame> frames) { route(id, std::move(frames)); };
    Node* np = &n;
    o.on_high_watermark = [np](const model::TopicPartition&) { ++np->hw_events; };
    n.parts = std::make_unique<RaftPartitions>(std::move(o), table_);
    storage::LogManagerOptions lo;
    lo.data_dir = n.dir;
    lo.shards = 2;
    lo.flush_threads = 1;
    lo.default_config = log_config();
    lo.high_watermark = n.parts->high_watermark_policy();
    n.logs = ORDO_TRY(storage::LogManager::open(std::move(lo)));
    n.parts->attach(*n.logs);
    n.receiver = std::make_unique<raft::Batcher>(id);
    {
      std::lock_guard lk(mu_);
      n.up = true;
    }
    for (const auto& p : partitions_) ORDO_TRY(open_on(n, p));
    return ok();
  }
  Result<void> start_all() {
    for (auto& n : nodes_) ORDO_TRY(start(n->id));
    return ok();
  }

  // The process dies: no clean stop of anything (the RaftPartitions' replicas are dropped on
  // their threads, the logs are not closed).
  void crash(NodeId id) { down(id, /*clean=*/false); }
  void stop(NodeId id) { down(id, /*clean=*/true); }

  // A partition replicated on every node (created on the nodes that are up; opened by the
  // others when they start); `replicas` in assignment order (the first is preferred), every
  // node by default.
  Result<void> create_partition(const model::TopicPartition& tp, raft::GroupId group,
                                std::vector<NodeId> replicas = {}) {
    CreateTopic create;
    create.name = tp.topic;
    create.id[0] = uint8_t(group);
    create.log = log_config();
    std::vector<NodeId> all = std::move(replicas);
    if (all.empty()) {
      for (auto& n : nodes_) all.push_back(n->id);
    }
    create.replicas.push_back(all);
    ORDO_TRY(table_.apply(create));
    partitions_.push_back({tp, group});
    for (auto& n : nodes_) {
      if (n->logs) ORDO_TRY(open_on(*n, partitions_.back()));
    }
    return ok();
  }

  // The leader every up node agrees on (same leader and epoch in every local view), if any.
  std::optional<std::pair<NodeId, int32_t>> agreed_leader(const model::TopicPartition& tp) {
    std::optional<std::pair<NodeId, int32_t>> agreed;
    for (auto& n : nodes_) {
      if (!n->parts) continue;
      auto v = n->parts->local_view(tp);
      if (!v || v->leader == kNoLeader) return std::nullopt;
      std::pair<NodeId, int32_t> mine{v->leader, v->epoch};
      if (agreed && *agreed != mine) return std::nullopt;
      agreed = mine;
    }
    return agreed;
  }
  // Waits until the up nodes agree on a leader that is up.
  std::optional<std::pair<NodeId, int32_t>> wait_leader(const model::TopicPartition& tp) {
    std::optional<std::pair<NodeId, int32_t>> out;
    wait_for([&] {
      out = agreed_leader(tp);
      return out && node(out->first).parts != nullptr;
    });
    return out;
  }

  // Runs fn on tp's shard of the node with its replica and waits for it.
  template <typename T>
  T on_replica(NodeId id, const model::TopicPartition& tp,
               const std::function<T(raft::Replica*)>& fn) {
    std::promise<T> p;
    parts(id).with_replica(tp, [&](raft::Replica* r) { p.set_value(fn(r)); });
    return p.get_future().get();
  }
  raft::Offset commit_of(NodeId id, const model::TopicPartition& tp) {
    return on_replica<raft::Offset>(id, tp,
                                    [](raft::Replica* r) { return r ? r->core().commit() : -1; });
  }
  raft::Offset log_end_of(NodeId id, const model::TopicPartition& tp) {
    return on_replica<raft::Offset>(id, tp,
                                    [](raft::Replica* r) { return r ? r->core().log_end() : -1; });
  }

 private:
  Result<void> open_on(Node& n, const PartitionSpec& p) {
    auto created = n.logs->create_sync(p.tp, log_config());
    if (!created && created.error().code != Errc::already_exists) return created.error();
    std::promise<Result<void>> opened;
    n.parts->open_group(p.tp, p.group, config_,
                        [&opened](Result<void> r) { opened.set_value(std::move(r)); });
    return opened.get_future().get();
  }

  void down(NodeId id, bool clean) {
    Node& n = node(id);
    if (!n.logs) return;
    {
      std::lock_guard lk(mu_);
      n.up = false;  // nothing more is delivered to it
    }
    n.parts->stop();
    if (clean) {
      (void)n.logs->close();
    } else {
      n.logs->crash_for_testing();
    }
    n.parts.reset();
    n.logs.reset();
    n.receiver.reset();
  }

  // On a shard thread of `from`.
  void route(NodeId from, std::vector<raft::OutFrame> frames) {
    std::lock_guard lk(mu_);
    for (auto& f : frames) {
      if (f.to < 1 || size_t(f.to) > nodes_.size()) continue;
      Node& to = node(f.to);
      if (!to.up) continue;
      auto received = to.receiver->receive(f.bytes);
      if (!received) continue;
      std::vector<raft::Message> messages;
      for (auto& m : received->messages) {
        if (filter_ && !filter_(m)) continue;
        messages.push_back(std::move(m));
      }
      (void)from;
      // deliver() only posts: cheap under the lock, and `to` cannot go away meanwhile.
      if (!messages.empty()) to.parts->deliver(std::move(messages));
    }
  }

  std::string root_;
  int64_t tick_ms_ = 10;
  bool preferred_leaders_ = false;
  raft::Config config_;
  PartitionTable table_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<PartitionSpec> partitions_;
  std::mutex mu_;  // the router: up flags, receivers, filter
  std::function<bool(const raft::Message&)> filter_;
};

}  // namespace ordo::cluster::testing
