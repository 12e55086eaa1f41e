// The Batcher with real cores: 1,000 groups on 3 nodes, every message between the nodes goes
// through Batcher frames (encoded, decoded). Once the groups are idle, each ordered node pair
// carries exactly one frame per round, a heartbeats frame, whatever the number of groups.

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "raft/batcher.h"
#include "raft/core.h"
#include "raft/tests/mem_log.h"

namespace ordo::raft {
namespace {

using testing::MemLog;

struct Replica {
  MemLog log;
  std::unique_ptr<Core> core;
};

constexpr int kNodes = 3;
constexpr int kGroups = 1000;

class Cluster {
 public:
  Cluster() {
    Config config;
    for (NodeId n = 0; n < kNodes; ++n) config.voters.push_back(Member{n, 100 + uint64_t(n)});
    for (NodeId n = 0; n < kNodes; ++n) {
      batchers_.emplace_back(n);
      replicas_.emplace_back(kGroups);
      for (GroupId g = 0; g < kGroups; ++g) {
        Options o{.group = g,
                  .self = config.voters[size_t(n)],
                  .heartbeat_ticks = 1,  // a heartbeat every round: the busiest idle traffic
                  .seed = uint64_t(g * kNodes + n + 1)};
        Restored r;
        r.state.configs = {ConfigAt{-1, config}};
        Replica& rep = replica(n, g);
        rep.core = std::make_unique<Core>(o, r, &rep.log);
      }
    }
  }

  Replica& replica(NodeId n, GroupId g) { return replicas_[size_t(n)][size_t(g)]; }
  Core& core(NodeId n, GroupId g) { return *replica(n, g).core; }

  // Carries out a replica's Ready (synced at once); its messages go to the node's Batcher.
  void drain(NodeId n, GroupId g) {
    Replica& rep = replica(n, g);
    while (rep.core->has_ready()) {
      Ready r = rep.core->take_ready();
      if (r.reset_to) {
        rep.log.entries.clear();
        rep.log.start = *r.reset_to;
      }
      if (r.truncate_to) {
        while (!rep.log.entries.empty() && rep.log.entries.back().base >= *r.truncate_to) {
          rep.log.entries.pop_back();
        }
      }
      for (const Entry& e : r.entries) rep.log.entries.push_back(e);
      batchers_[size_t(n)].add(std::move(r.messages));
      if (r.write_seq != 0) rep.core->on_persisted(r.write_seq);
    }
  }

  // One round: every replica ticks; every node flushes its Batcher; every frame is received
  // and its messages stepped (their answers leave in the next round). Returns the frames per
  // (from, to) and whether all of them were heartbeats frames.
  std::map<std::pair<NodeId, NodeId>, int> round(bool& only_heartbeats) {
    for (NodeId n = 0; n < kNodes; ++n) {
      for (GroupId g = 0; g < kGroups; ++g) {
        core(n, g).tick();
        drain(n, g);
      }
    }
    std::vector<std::pair<NodeId, OutFrame>> frames;
    for (NodeId n = 0; n < kNodes; ++n) {
      for (OutFrame& f : batchers_[size_t(n)].flush()) frames.emplace_back(n, std::move(f));
    }
    std::map<std::pair<NodeId, NodeId>, int> count;
    only_heartbeats = true;
    for (auto& [from, f] : frames) {
      ++count[{from, f.to}];
      only_heartbeats &= f.bytes[wire::kKindAt] == uint8_t(wire::FrameKind::heartbeats);
      auto got = batchers_[size_t(f.to)].receive(f.bytes);
      EXPECT_TRUE(got.has_value()) << got.error().to_string();
      if (!got) continue;
      for (const Message& m : got->messages) {
        core(f.to, m.group).step(m);
        drain(f.to, m.group);
      }
    }
    return count;
  }

  const Batcher& batcher(NodeId n) const { return batchers_[size_t(n)]; }

 private:
  std::vector<Batcher> batchers_;
  std::vector<std::vector<Replica>> replicas_;
};

TEST(BatcherCoreTest, IdleGroupsOnThreeNodesSendOneFramePerNodePairPerRound) {
  Cluster c;
  // Each group's leader is node g % 3.
  for (GroupId g = 0; g < kGroups; ++g) {
    c.core(NodeId(g % kNodes), g).campaign();
    c.drain(NodeId(g % kNodes), g);
  }
  bool only_heartbeats = false;
  for (int i = 0; i < 10; ++i) c.round(only_heartbeats);
  for (GroupId g = 0; g < kGroups; ++g) {
    NodeId leader = NodeId(g % kNodes);
    ASSERT_TRUE(c.core(leader, g).is_leader()) << "group " << g;
    for (NodeId n = 0; n < kNodes; ++n) {
      // The leader's no-op is replicated and committed everywhere: nothing left to send.
      ASSERT_EQ(c.core(n, g).log_end(), c.core(leader, g).log_end()) << "group " << g;
      ASSERT_EQ(c.core(n, g).commit(), c.core(leader, g).log_end()) << "group " << g;
    }
  }

  for (int i = 0; i < 5; ++i) {
    auto frames = c.round(only_heartbeats);
    EXPECT_TRUE(only_heartbeats) << "round " << i;
    ASSERT_EQ(frames.size(), size_t(kNodes * (kNodes - 1))) << "round " << i;
    for (const auto& [pair, n] : frames) {
      EXPECT_EQ(n, 1) << pair.first << " -> " << pair.second << " in round " << i;
    }
  }
  for (GroupId g = 0; g < kGroups; ++g) {
    EXPECT_TRUE(c.core(NodeId(g % kNodes), g).is_leader()) << "group " << g;
  }
  for (NodeId n = 0; n < kNodes; ++n) {
    EXPECT_EQ(c.batcher(n).stats().dropped, 0u);
    EXPECT_EQ(c.batcher(n).stats().rejected, 0u);
  }
}

}  // namespace
}  // namespace ordo::raft
