#pragma once
// A Raft group of replicas in one process, each over a real partition log in its own directory
// (RaftLogStorage), connected by an in-memory queue that the caller pumps and ticked by the
// caller. Used by raft_replication_test and the replication benchmark. One thread.
//
// A crash drops a replica's objects without closing its log (the next open recovers as after a
// process crash); messages to a crashed replica are lost.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/assert.h"
#include "base/clock.h"
#include "base/file.h"
#include "cluster/raft_storage.h"
#include "raft/replica.h"
#include "storage/partition_log.h"

namespace ordo::cluster::testing {

class LocalCluster {
 public:
  struct Node {
    raft::NodeId id = raft::kNoNode;
    std::string dir;
    std::unique_ptr<storage::PartitionLog> log;
    std::unique_ptr<RaftLogStorage> storage;
    std::unique_ptr<raft::Replica> replica;
    raft::Offset commit = 0;
    int starts = 0;
    bool alive() const { return replica != nullptr; }
    const raft::Core& core() const { return replica->core(); }
  };

  // n replicas with ids 1..n in root/node-<id>; the bootstrap configuration has them all as
  // voters with incarnations 1000 + id.
  // fsync false: RaftLogStorage::set_fsync(false) (tests whose crashes keep the page cache).
  LocalCluster(std::string root, int n, storage::LogConfig log_config, raft::Options options = {},
               bool fsync = true)
      : root_(std::move(root)), log_config_(log_config), options_(options), fsync_(fsync) {
    for (int i = 0; i < n; ++i) {
      auto node = std::make_unique<Node>();
      node->id = i + 1;
      node->dir = root_ + "/node-" + std::to_string(i + 1);
      bootstrap_.voters.push_back({i + 1, uint64_t(1000 + i + 1)});
      nodes_.push_back(std::move(node));
    }
  }
  ~LocalCluster() {
    for (auto& n : nodes_) crash(n->id);
  }

  Node& node(raft::NodeId id) { return *nodes_.at(size_t(id - 1)); }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  const raft::Config& bootstrap_config() const { return bootstrap_; }

  // Opens (recovering) the node's log and storage and starts its replica. A fresh directory
  // takes `initial` (the bootstrap configuration by default) and the bootstrap incarnation
  // unless random_incarnation.
  Result<void> start(raft::NodeId id, std::optional<raft::Config> initial = std::nullopt,
                     bool random_incarnation = false) {
    Node& n = node(id);
    ORDO_ASSERT(!n.alive());
    n.log = ORDO_TRY(storage::PartitionLog::open(n.dir, log_config_, clock_));
    const raft::Member* boot = bootstrap_.find(id);
    uint64_t inc = random_incarnation || boot == nullptr ? 0 : boot->incarnation;
    n.storage =
        ORDO_TRY(RaftLogStorage::open(n.log.get(), initial.value_or(bootstrap_), clock_, inc));
    n.storage->set_fsync(fsync_);
    raft::Options o = options_;
    o.self = {id, n.storage->incarnation()};
    o.seed = uint64_t(id) * 1000 + uint64_t(++n.starts);
    auto transport = std::make_unique<QueueTransport>(this);
    transports_[id] = std::move(transport);
    n.replica = std::make_unique<raft::Replica>(o, n.storage->restored(), n.storage.get(),
                                                transports_[id].get());
    n.commit = n.replica->core().commit();
    Node* np = &n;
    n.replica->on_commit = [np](raft::Offset c) {
      np->commit = c;
      np->log->set_high_watermark(Offset(c));
    };
    return ok();
  }
  Result<void> start_all() {
    for (auto& n : nodes_) ORDO_TRY(start(n->id));
    return ok();
  }

  // The process of the node dies: its objects go without a clean close.
  void crash(raft::NodeId id) {
    Node& n = node(id);
    n.replica.reset();
    n.storage.reset();
    n.log.reset();
  }
  // The node loses its disk.
  void wipe(raft::NodeId id) {
    crash(id);
    std::error_code ec;
    std::filesystem::remove_all(node(id).dir, ec);
  }

  // Delivers queued messages (and those they cause) until none is left; returns how many.
  size_t pump(size_t max_messages = 10'000'000) {
    size_t delivered = 0;
    while (!queue_.empty()) {
      ORDO_ASSERT_MSG(delivered < max_messages, "messages keep coming");
      raft::Message m = std::move(queue_.front());
      queue_.pop_front();
      ++delivered;
      if (m.to < 1 || size_t(m.to) > nodes_.size()) continue;
      if (filter && !filter(m)) continue;
      Node& n = node(m.to);
      if (n.alive() && !n.replica->failed()) n.replica->receive(m);
    }
    return delivered;
  }
  void tick() {
    for (auto& n : nodes_) {
      if (n->alive() && !n->replica->failed()) n->replica->tick();
    }
    pump();
  }
  // Ticks until pred holds; false after max_ticks.
  bool run_until(const std::function<bool()>& pred, int max_ticks = 2000) {
    pump();
    for (int i = 0; i < max_ticks; ++i) {
      if (pred()) return true;
      tick();
    }
    return pred();
  }

  // The one live leader of the highest term, if any.
  Node* leader() {
    Node* best = nullptr;
    for (auto& n : nodes_) {
      if (n->alive() && n->core().is_leader() &&
          (best == nullptr || n->core().term() > best->core().term())) {
        best = n.get();
      }
    }
    return best;
  }
  Node* elect(int max_ticks = 2000) {
    run_until([&] { return leader() != nullptr; }, max_ticks);
    return leader();
  }
  // Every live replica has the leader's log end durable and committed.
  bool converged() {
    Node* l = leader();
    if (l == nullptr) return false;
    const raft::Offset end = l->core().log_end();
    for (auto& n : nodes_) {
      if (!n->alive()) continue;
      if (n->core().log_end() != end || n->core().durable_end() != end || n->commit != end) {
        return false;
      }
    }
    return true;
  }

  uint64_t messages_sent() const { return sent_; }
  // Drops messages for which it answers false (a partition); unset: everything is delivered.
  std::function<bool(const raft::Message&)> filter;

 private:
  class QueueTransport final : public raft::Transport {
   public:
    explicit QueueTransport(LocalCluster* c) : c_(c) {}
    void send(raft::Message message) override {
      ORDO_ASSERT_MSG(c_->queue_.size() < 10'000'000, "message queue unbounded");
      ++c_->sent_;
      c_->queue_.push_back(std::move(message));
    }

   private:
    LocalCluster* c_;
  };

  std::string root_;
  storage::LogConfig log_config_;
  raft::Options options_;
  bool fsync_ = true;
  ManualClock clock_{1'700'000'000'000};
  raft::Config bootstrap_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<raft::NodeId, std::unique_ptr<QueueTransport>> transports_;
  std::deque<raft::Message> queue_;
  uint64_t sent_ = 0;
};

// Every batch of the node's log from its start, as stored (via RaftLogStorage::read, which
// reads the segment files).
inline std::vector<raft::Entry> read_log(LocalCluster::Node& n) {
  std::vector<raft::Entry> out;
  raft::Offset from = n.log->log_start_offset().value();
  const raft::Offset end = n.log->log_end_offset().value();
  while (from < end) {
    auto r = n.storage->read(from, 1 << 20);
    ORDO_ASSERT_MSG(r.has_value() && !r->empty(), "read of a replica's log failed");
    for (auto& e : *r) out.push_back(std::move(e));
    from = out.back().last + 1;
  }
  return out;
}

// The bytes of every batch in the node's segment files (<base>.log, in base order), read from
// the files themselves rather than through the log.
inline std::vector<uint8_t> segment_file_batches(const LocalCluster::Node& n) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(n.dir)) {
    std::string name = e.path().filename().string();
    if (name.size() == 24 && name.ends_with(".log")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<uint8_t> out;
  for (const auto& path : files) {
    auto f = File::open(path, O_RDONLY);
    ORDO_ASSERT_MSG(f.has_value(), "a segment file does not open");
    auto size = f->size();
    ORDO_ASSERT(size.has_value());
    auto r = storage::read_batches(*f, *size, int64_t(1) << 26, size_t(1) << 20,
                                   [&](const storage::BatchInfo&, std::span<const uint8_t> b) {
                                     out.insert(out.end(), b.begin(), b.end());
                                     return Result<bool>(true);
                                   });
    ORDO_ASSERT_MSG(r.has_value(), "a segment file does not parse");
  }
  return out;
}

}  // namespace ordo::cluster::testing
