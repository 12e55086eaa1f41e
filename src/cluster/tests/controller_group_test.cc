// ControllerGroup: three controller replicas in one process, each on its own io_context thread
// over its own directory, joined by an in-memory router (frames decoded with a Batcher per
// destination, as the broker does, and delivered). Elections, proposals applied in the same
// order everywhere, the leader killed and restarted from its directory (replay, then catch
// up). Conditions are awaited, never timed.

#include "cluster/controller_group.h"

#include <gtest/gtest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "storage/tests/test_util.h"

namespace ordo::cluster {
namespace {

using Applied = std::vector<std::pair<std::string, int64_t>>;

bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 2000; i++) {  // 20 s upper bound; normally well under a second
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

template <typename T>
Errc code_of(const Result<T>& r) {
  return r.has_value() ? Errc::ok : r.error().code;
}

class Cluster;

// One node: its io_context thread runs its ControllerGroup.
struct Node {
  Node(NodeId id, std::string dir) : id(id), dir(std::move(dir)) {
    thread = std::thread([this] { ctx.run(); });
  }
  template <typename F>
  auto on_thread(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto answer = task.get_future();
    asio::post(ctx, [&task] { task(); });
    return answer.get();
  }
  ~Node() {
    on_thread([this] {
      if (group) group->stop();
      group.reset();
      return 0;
    });
    guard.reset();
    thread.join();
  }
  Applied applied() {
    std::lock_guard lock(mu);
    return log;
  }
  bool up() {
    std::lock_guard lock(mu);
    return alive;
  }

  NodeId id;
  std::string dir;
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::unique_ptr<ControllerGroup> group;  // touched on the node's thread only
  std::mutex mu;
  Applied log;  // what apply saw, since the last start
  std::vector<std::pair<NodeId, int32_t>> leaders;
  bool alive = false;
  std::thread thread;
};

class Cluster {
 public:
  explicit Cluster(std::string root) : root_(std::move(root)) {
    for (NodeId id : {1, 2, 3}) {
      config_.voters.push_back(raft::Member{id, 1});
      nodes_[id] = std::make_unique<Node>(
          id, root_ + "/node-" + std::to_string(id) + "/__cluster_metadata-0");
    }
  }
  ~Cluster() {
    for (auto& [id, n] : nodes_) kill(id);
  }

  Node& node(NodeId id) { return *nodes_.at(id); }

  Result<void> start(NodeId id, bool check_quorum = true) {
    Node& n = node(id);
    {
      std::lock_guard lock(n.mu);
      n.log.clear();
      n.leaders.clear();
    }
    ControllerGroupOptions o;
    o.self = id;
    o.incarnation = 1;
    o.dir = n.dir;
    o.initial = config_;
    o.core.election_ticks = 10;
    o.core.heartbeat_ticks = 2;
    o.core.check_quorum = check_quorum;
    o.tick_ms = 5;
    o.send = [this, id](std::vector<raft::OutFrame> frames) { route(id, std::move(frames)); };
    auto result = n.on_thread([&]() -> Result<void> {
      n.group = std::make_unique<ControllerGroup>(
          n.ctx.get_executor(), o,
          [&n](std::span<const uint8_t> command, int64_t offset) {
            std::lock_guard lock(n.mu);
            n.log.emplace_back(std::string(command.begin(), command.end()), offset);
          },
          [&n](NodeId leader, int32_t term) {
            std::lock_guard lock(n.mu);
            n.leaders.emplace_back(leader, term);
          });
      return n.group->start();
    });
    if (result) {
      std::lock_guard lock(n.mu);
      n.alive = true;
    }
    return result;
  }

  // The process of the node goes: its group stops, its objects go, its directory stays.
  void kill(NodeId id) {
    Node& n = node(id);
    {
      std::lock_guard lock(n.mu);
      n.alive = false;
    }
    // Frames already routed to it find no group (or, after a restart, a new one: Raft
    // tolerates stale messages).
    n.on_thread([&n] {
      if (n.group) n.group->stop();
      n.group.reset();
      return 0;
    });
  }

  // The one node that is leader and that every live node agrees on.
  NodeId agreed_leader() {
    NodeId leader = raft::kNoNode;
    for (auto& [id, n] : nodes_) {
      if (!n->up()) continue;
      auto [is, l] = n->on_thread([&] {
        return n->group ? std::pair(n->group->is_leader(), n->group->leader())
                        : std::pair(false, raft::kNoNode);
      });
      if (l == raft::kNoNode) return raft::kNoNode;
      if (leader != raft::kNoNode && l != leader) return raft::kNoNode;
      leader = l;
      if (is && l != id) return raft::kNoNode;
    }
    return leader;
  }

  Result<int64_t> propose(NodeId at, const std::string& command) {
    std::promise<Result<int64_t>> p;
    auto f = p.get_future();
    Node& n = node(at);
    n.on_thread([&] {
      n.group->propose(std::vector<uint8_t>(command.begin(), command.end()),
                       [&p](Result<int64_t> r) { p.set_value(std::move(r)); });
      return 0;
    });
    return f.get();
  }

  // Proposes until `count` commands starting with `tag` are applied at the leader; a proposal
  // refused while leadership moves is retried at the new leader.
  std::vector<int64_t> propose_all(const std::string& tag, int count) {
    std::vector<int64_t> offsets;
    for (int i = 0; i < count; i++) {
      std::string command = tag + std::to_string(i);
      for (int attempt = 0;; attempt++) {
        EXPECT_LT(attempt, 1000) << command;
        if (attempt >= 1000) return offsets;
        NodeId l = raft::kNoNode;
        eventually([&] { return (l = agreed_leader()) != raft::kNoNode; });
        auto r = propose(l, command);
        if (r) {
          offsets.push_back(*r);
          break;
        }
        EXPECT_EQ(r.error().code, Errc::not_found) << r.error().to_string();
      }
    }
    return offsets;
  }

 private:
  // On the sender's thread: decode each frame as the destination's network thread would, and
  // deliver its messages.
  void route(NodeId from, std::vector<raft::OutFrame> frames) {
    std::lock_guard lock(route_mu_);
    for (auto& f : frames) {
      auto it = nodes_.find(f.to);
      if (it == nodes_.end() || !it->second->up()) continue;
      auto [rx, inserted] = receivers_.try_emplace(f.to, f.to);
      auto received = rx->second.receive(f.bytes);
      EXPECT_TRUE(received.has_value()) << from << "->" << f.to;
      if (!received || received->messages.empty()) continue;
      Node& n = *it->second;
      asio::post(n.ctx, [&n, messages = std::move(received->messages)]() mutable {
        if (n.group) n.group->deliver(std::move(messages));
      });
    }
  }

  std::string root_;
  raft::Config config_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::mutex route_mu_;
  std::map<NodeId, raft::Batcher> receivers_;
};

class ControllerGroupTest : public ::testing::Test {
 protected:
  storage::testing::TempDir tmp_;
  std::string root_ = tmp_.path();
};

TEST_F(ControllerGroupTest, ThreeNodesElectApplyInOrderSurviveTheLeaderAndReplay) {
  Cluster c(root_);
  for (NodeId id : {1, 2, 3}) ASSERT_TRUE(c.start(id).has_value());
  NodeId leader = raft::kNoNode;
  ASSERT_TRUE(eventually([&] { return (leader = c.agreed_leader()) != raft::kNoNode; }));

  // A follower refuses proposals: the caller asks leader().
  NodeId follower = leader == 1 ? 2 : 1;
  EXPECT_EQ(code_of(c.propose(follower, "nope")), Errc::not_found);

  auto first = c.propose_all("a", 20);
  ASSERT_EQ(first.size(), 20u);
  for (size_t i = 1; i < first.size(); i++) EXPECT_GT(first[i], first[i - 1]);
  // Every node applies the same commands at the same offsets, in order.
  ASSERT_TRUE(eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      if (c.node(id).applied().size() != 20) return false;
    }
    return true;
  }));
  Applied expected = c.node(leader).applied();
  for (size_t i = 0; i < expected.size(); i++) {
    EXPECT_EQ(expected[i].first, "a" + std::to_string(i));
    EXPECT_EQ(expected[i].second, first[i]);
  }
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.node(id).applied(), expected) << id;
  {
    Node& n = c.node(leader);
    std::lock_guard lock(n.mu);
    ASSERT_FALSE(n.leaders.empty());
    EXPECT_EQ(n.leaders.back().first, leader);
    EXPECT_GT(n.leaders.back().second, 0);
  }

  // The leader dies; the other two elect one of them and go on.
  NodeId dead = leader;
  c.kill(dead);
  NodeId next = raft::kNoNode;
  ASSERT_TRUE(eventually([&] {
    next = c.agreed_leader();
    return next != raft::kNoNode && next != dead;
  }));
  auto second = c.propose_all("b", 20);
  ASSERT_EQ(second.size(), 20u);
  EXPECT_GT(second.front(), first.back());

  // Restarted from its directory, the old leader replays what it had applied before anything
  // reaches it (start() is synchronous), then catches up to the same sequence.
  ASSERT_TRUE(c.start(dead).has_value());
  EXPECT_EQ(c.node(dead).applied(), expected);
  EXPECT_EQ(c.node(dead).on_thread([&] { return c.node(dead).group->stats().replayed_entries; }),
            20u);
  ASSERT_TRUE(eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      if (c.node(id).applied().size() != 40) return false;
    }
    return true;
  }));
  Applied all = c.node(next).applied();
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.node(id).applied(), all) << id;
  for (size_t i = 0; i < 20; i++) {
    EXPECT_EQ(all[20 + i].first, "b" + std::to_string(i));
    EXPECT_EQ(all[20 + i].second, second[i]);
  }
  // And the cluster still takes proposals.
  auto third = c.propose_all("c", 5);
  ASSERT_EQ(third.size(), 5u);
  ASSERT_TRUE(eventually([&] { return c.node(dead).applied().size() == 45; }));
}

TEST_F(ControllerGroupTest, AFollowerRestartedReplaysWithoutAnyPeer) {
  Cluster c(root_);
  for (NodeId id : {1, 2, 3}) ASSERT_TRUE(c.start(id).has_value());
  ASSERT_EQ(c.propose_all("x", 10).size(), 10u);
  ASSERT_TRUE(eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      if (c.node(id).applied().size() != 10) return false;
    }
    return true;
  }));
  Applied before = c.node(1).applied();
  for (NodeId id : {1, 2, 3}) c.kill(id);
  // Alone (no quorum, no leader), a node still rebuilds its state from its own log.
  ASSERT_TRUE(c.start(2).has_value());
  EXPECT_EQ(c.node(2).applied(), before);
  EXPECT_FALSE(c.node(2).on_thread([&] { return c.node(2).group->is_leader(); }));
  EXPECT_EQ(code_of(c.propose(2, "alone")), Errc::not_found);
  // The others come back: a leader again, and the log goes on from where it was.
  ASSERT_TRUE(c.start(1).has_value());
  ASSERT_TRUE(c.start(3).has_value());
  auto more = c.propose_all("y", 3);
  ASSERT_EQ(more.size(), 3u);
  EXPECT_GT(more.front(), before.back().second);
  ASSERT_TRUE(eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      if (c.node(id).applied().size() != 13) return false;
    }
    return true;
  }));
  for (NodeId id : {1, 2, 3}) EXPECT_EQ(c.node(id).applied(), c.node(2).applied()) << id;
}

TEST_F(ControllerGroupTest, WithoutAQuorumProposalsWaitAndStopAnswersThemClosed) {
  Cluster c(root_);
  // Two of three voters; without check-quorum the leader keeps leading when it is left alone.
  ASSERT_TRUE(c.start(1, false).has_value());
  ASSERT_TRUE(c.start(2, false).has_value());
  NodeId leader = raft::kNoNode;
  ASSERT_TRUE(eventually([&] { return (leader = c.agreed_leader()) != raft::kNoNode; }));
  ASSERT_EQ(c.propose_all("q", 3).size(), 3u);
  c.kill(leader == 1 ? 2 : 1);
  Node& n = c.node(leader);
  std::promise<Result<int64_t>> waiting, after;
  n.on_thread([&] {
    n.group->propose({'w'}, [&](Result<int64_t> r) { waiting.set_value(std::move(r)); });
    return 0;
  });
  // It is appended and cannot commit: nothing answers it while the group runs.
  auto answer = waiting.get_future();
  EXPECT_EQ(answer.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  n.on_thread([&] {
    n.group->stop();
    n.group->propose({'x'}, [&](Result<int64_t> r) { after.set_value(std::move(r)); });
    return 0;
  });
  EXPECT_EQ(code_of(answer.get()), Errc::closed);
  EXPECT_EQ(code_of(after.get_future().get()), Errc::closed);
  EXPECT_EQ(n.applied().size(), 3u);
}

TEST_F(ControllerGroupTest, ALeaderThatLosesItsQuorumAnswersItsProposalsNotFound) {
  Cluster c(root_);
  for (NodeId id : {1, 2, 3}) ASSERT_TRUE(c.start(id).has_value());
  NodeId leader = raft::kNoNode;
  ASSERT_TRUE(eventually([&] { return (leader = c.agreed_leader()) != raft::kNoNode; }));
  ASSERT_EQ(c.propose_all("k", 2).size(), 2u);
  leader = c.agreed_leader();
  ASSERT_NE(leader, raft::kNoNode);
  for (NodeId id : {1, 2, 3}) {
    if (id != leader) c.kill(id);
  }
  // Appended, never committed: with check-quorum the leader steps down after an election
  // timeout without its followers, and the proposal's outcome is then unknown to it (a leader
  // that stepped down already refuses it with the same answer).
  auto r = c.propose(leader, "orphan");
  EXPECT_EQ(code_of(r), Errc::not_found);
  EXPECT_FALSE(c.node(leader).on_thread([&] { return c.node(leader).group->is_leader(); }));
  {
    Node& n = c.node(leader);
    std::lock_guard lock(n.mu);
    ASSERT_FALSE(n.leaders.empty());
    EXPECT_EQ(n.leaders.back().first, raft::kNoNode);  // on_leader saw it step down
  }
  EXPECT_EQ(c.node(leader).applied().size(), 2u);
}

}  // namespace
}  // namespace ordo::cluster
