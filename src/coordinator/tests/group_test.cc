#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/random.h"
#include "coordinator/group_coordinator.h"

namespace ordo::coordinator {
namespace {

constexpr const char* kGroup = "g";

Bytes bytes(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// A join or sync answer that may arrive later; counts deliveries.
template <typename R>
struct Slot {
  std::optional<R> value;
  int calls = 0;
};

class GroupTest : public ::testing::Test {
 protected:
  GroupTest() { make({.initial_rebalance_delay_ms = 0}); }

  void make(GroupConfig config) {
    coord_.reset();
    coord_ = std::make_unique<GroupCoordinator>(config, clock_, 42);
  }

  JoinRequest request(const std::string& member_id, std::vector<Protocol> protocols = {}) {
    JoinRequest r;
    r.group_id = kGroup;
    r.member_id = member_id;
    r.client_id = "client";
    r.client_host = "/127.0.0.1";
    r.session_timeout_ms = 10'000;
    r.rebalance_timeout_ms = 20'000;
    r.protocol_type = "consumer";
    r.protocols = protocols.empty() ? std::vector<Protocol>{{"range", bytes("md-" + member_id)}}
                                    : std::move(protocols);
    return r;
  }

  std::shared_ptr<Slot<JoinResponse>> join(JoinRequest r) {
    auto slot = std::make_shared<Slot<JoinResponse>>();
    coord_->join(std::move(r), [slot](JoinResponse resp) {
      slot->calls += 1;
      slot->value = std::move(resp);
    });
    return slot;
  }

  // The v4+ dance: empty id -> MEMBER_ID_REQUIRED -> rejoin with the id. Returns the second
  // join's slot (pending until the rebalance completes).
  std::shared_ptr<Slot<JoinResponse>> join_new(const std::string& client_id,
                                               std::vector<Protocol> protocols = {}) {
    JoinRequest r = request("", protocols);
    r.client_id = client_id;
    auto first = join(r);
    EXPECT_EQ(first->calls, 1);
    EXPECT_EQ(first->value->error, ErrorCode::member_id_required);
    const std::string& id = first->value->member_id;
    EXPECT_EQ(id.rfind(client_id + "-", 0), 0u) << id;
    JoinRequest again = request(id, protocols);
    again.client_id = client_id;
    return join(again);
  }

  std::shared_ptr<Slot<SyncResponse>> sync(
      const std::string& member_id, int32_t generation,
      std::vector<std::pair<std::string, Bytes>> assignments = {}) {
    auto slot = std::make_shared<Slot<SyncResponse>>();
    SyncRequest r;
    r.group_id = kGroup;
    r.generation_id = generation;
    r.member_id = member_id;
    r.assignments = std::move(assignments);
    coord_->sync(std::move(r), [slot](SyncResponse resp) {
      slot->calls += 1;
      slot->value = std::move(resp);
    });
    return slot;
  }

  ErrorCode heartbeat(const std::string& member_id, int32_t generation) {
    return coord_->heartbeat(HeartbeatRequest{kGroup, generation, member_id, std::nullopt});
  }

  GroupState state() { return coord_->describe(kGroup).state; }

  void advance(int64_t ms) {
    clock_.advance(ms);
    coord_->tick();
  }

  // Brings up a Stable group of `n` members (first is the leader); returns their ids.
  std::vector<std::string> stable_group(int n) {
    make({.initial_rebalance_delay_ms = 3'000});
    std::vector<std::shared_ptr<Slot<JoinResponse>>> joins;
    for (int i = 0; i < n; ++i) joins.push_back(join_new("c" + std::to_string(i)));
    advance(3'000);  // members arrived during the delay: it is extended once
    advance(3'000);
    std::vector<std::string> ids;
    for (auto& j : joins) {
      EXPECT_EQ(j->calls, 1);
      EXPECT_EQ(j->value->error, ErrorCode::none);
      EXPECT_EQ(j->value->generation_id, 1);
      ids.push_back(j->value->member_id);
    }
    std::vector<std::pair<std::string, Bytes>> assignments;
    for (const auto& id : ids) assignments.emplace_back(id, bytes("as-" + id));
    std::vector<std::shared_ptr<Slot<SyncResponse>>> syncs;
    for (size_t i = 1; i < ids.size(); ++i) syncs.push_back(sync(ids[i], 1));
    syncs.push_back(sync(ids[0], 1, assignments));
    for (auto& s : syncs) EXPECT_EQ(s->calls, 1);
    EXPECT_EQ(state(), GroupState::stable);
    return ids;
  }

  ManualClock clock_{1'000'000};
  std::unique_ptr<GroupCoordinator> coord_;
};

TEST_F(GroupTest, SingleMemberJoinSyncHeartbeat) {
  auto j = join_new("solo");
  ASSERT_EQ(j->calls, 1);
  const JoinResponse& r = *j->value;
  EXPECT_EQ(r.error, ErrorCode::none);
  EXPECT_EQ(r.generation_id, 1);
  EXPECT_EQ(r.leader_id, r.member_id);
  EXPECT_EQ(r.protocol_type, "consumer");
  EXPECT_EQ(r.protocol_name, "range");
  ASSERT_EQ(r.members.size(), 1u);
  EXPECT_EQ(r.members[0].metadata, bytes("md-" + r.member_id));
  EXPECT_EQ(state(), GroupState::completing_rebalance);
  EXPECT_EQ(heartbeat(r.member_id, 1), ErrorCode::none);

  auto s = sync(r.member_id, 1, {{r.member_id, bytes("p0,p1")}});
  ASSERT_EQ(s->calls, 1);
  EXPECT_EQ(s->value->error, ErrorCode::none);
  EXPECT_EQ(s->value->assignment, bytes("p0,p1"));
  EXPECT_EQ(s->value->protocol_name, "range");
  EXPECT_EQ(state(), GroupState::stable);
  EXPECT_EQ(heartbeat(r.member_id, 1), ErrorCode::none);
  EXPECT_EQ(heartbeat("nobody", 1), ErrorCode::unknown_member_id);

  GroupDescription d = coord_->describe(kGroup);
  EXPECT_EQ(d.protocol_name, "range");
  ASSERT_EQ(d.members.size(), 1u);
  EXPECT_EQ(d.members[0].assignment, bytes("p0,p1"));
  EXPECT_EQ(d.members[0].client_id, "solo");
  auto listed = coord_->list();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].group_id, kGroup);
  EXPECT_EQ(listed[0].protocol_type, "consumer");
  EXPECT_EQ(listed[0].state, GroupState::stable);
  EXPECT_TRUE(coord_->list({GroupState::empty}).empty());
  EXPECT_EQ(coord_->describe("other").state, GroupState::dead);
}

TEST_F(GroupTest, ThreeMembersOneGenerationLeaderGetsMetadata) {
  make({.initial_rebalance_delay_ms = 3'000});
  auto a = join_new("a");
  auto b = join_new("b");
  auto c = join_new("c");
  advance(2'999);
  EXPECT_EQ(a->calls + b->calls + c->calls, 0);  // the initial delay holds the first generation
  advance(1);
  EXPECT_EQ(a->calls, 0);  // b and c arrived during the delay: one more delay (Kafka's rule)
  advance(3'000);
  ASSERT_EQ(a->calls, 1);
  ASSERT_EQ(b->calls, 1);
  ASSERT_EQ(c->calls, 1);
  for (auto* j : {&a, &b, &c}) {
    EXPECT_EQ((*j)->value->generation_id, 1);
    EXPECT_EQ((*j)->value->leader_id, a->value->member_id);
  }
  ASSERT_EQ(a->value->members.size(), 3u);
  for (const auto& m : a->value->members) EXPECT_EQ(m.metadata, bytes("md-" + m.member_id));
  EXPECT_TRUE(b->value->members.empty());
  EXPECT_TRUE(c->value->members.empty());

  std::string ia = a->value->member_id, ib = b->value->member_id, ic = c->value->member_id;
  auto sb = sync(ib, 1);
  auto sc = sync(ic, 1);
  EXPECT_EQ(sb->calls + sc->calls, 0);  // followers wait for the leader
  EXPECT_TRUE(coord_->describe(kGroup).members[0].awaiting_sync ||
              coord_->describe(kGroup).members[1].awaiting_sync);
  auto sa = sync(ia, 1, {{ia, bytes("A")}, {ib, bytes("B")}, {ic, bytes("C")}});
  ASSERT_EQ(sa->calls, 1);
  ASSERT_EQ(sb->calls, 1);
  ASSERT_EQ(sc->calls, 1);
  EXPECT_EQ(sa->value->assignment, bytes("A"));
  EXPECT_EQ(sb->value->assignment, bytes("B"));
  EXPECT_EQ(sc->value->assignment, bytes("C"));
  EXPECT_EQ(state(), GroupState::stable);
  EXPECT_EQ(coord_->describe(kGroup).rebalances_completed, 1);
}

TEST_F(GroupTest, JoinIntoStableGroupRebalances) {
  auto ids = stable_group(2);
  auto c = join_new("late");
  EXPECT_EQ(c->calls, 0);
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
  EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::rebalance_in_progress);
  EXPECT_EQ(heartbeat(ids[1], 1), ErrorCode::rebalance_in_progress);
  auto s = sync(ids[1], 1);
  EXPECT_EQ(s->value->error, ErrorCode::rebalance_in_progress);
  auto a = join(request(ids[0]));
  EXPECT_EQ(a->calls, 0);
  auto b = join(request(ids[1]));
  ASSERT_EQ(a->calls, 1);
  ASSERT_EQ(b->calls, 1);
  ASSERT_EQ(c->calls, 1);
  EXPECT_EQ(a->value->generation_id, 2);
  EXPECT_EQ(c->value->generation_id, 2);
  EXPECT_EQ(a->value->leader_id, ids[0]);  // the leader is kept
  EXPECT_EQ(a->value->members.size(), 3u);
  EXPECT_EQ(state(), GroupState::completing_rebalance);
}

TEST_F(GroupTest, SessionTimeoutRemovesMemberAndRebalances) {
  auto ids = stable_group(2);
  for (int i = 0; i < 3; ++i) {
    advance(3'000);
    EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::none);
  }
  EXPECT_EQ(state(), GroupState::stable);
  advance(1'000);  // ids[1] was last heard of 10 s ago
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
  EXPECT_EQ(heartbeat(ids[1], 1), ErrorCode::unknown_member_id);
  EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::rebalance_in_progress);
  auto a = join(request(ids[0]));
  ASSERT_EQ(a->calls, 1);
  EXPECT_EQ(a->value->generation_id, 2);
  EXPECT_EQ(a->value->members.size(), 1u);
}

TEST_F(GroupTest, RebalanceTimeoutDropsMembersThatDidNotRejoin) {
  auto ids = stable_group(3);
  JoinRequest r = request(ids[0]);
  r.session_timeout_ms = 30'000;
  auto a = join(r);  // the leader rejoins: a rebalance starts
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
  // ids[1] rejoins, ids[2] only heartbeats (and is told to rejoin).
  auto b = join(request(ids[1]));
  for (int i = 0; i < 3; ++i) {
    advance(5'000);  // sessions are 10 s: ids[2] stays alive by heartbeating
    EXPECT_EQ(heartbeat(ids[2], 1), ErrorCode::rebalance_in_progress);
  }
  advance(4'999);
  EXPECT_EQ(a->calls, 0);
  advance(1);  // 20 s rebalance timeout
  ASSERT_EQ(a->calls, 1);
  ASSERT_EQ(b->calls, 1);
  EXPECT_EQ(a->value->generation_id, 2);
  EXPECT_EQ(a->value->members.size(), 2u);
  EXPECT_EQ(heartbeat(ids[2], 2), ErrorCode::unknown_member_id);
  EXPECT_EQ(coord_->describe(kGroup).members.size(), 2u);
}

TEST_F(GroupTest, MemberIdRequiredAndPendingExpiry) {
  auto ids = stable_group(1);
  JoinRequest r = request("");
  r.client_id = "newbie";
  auto first = join(r);
  ASSERT_EQ(first->value->error, ErrorCode::member_id_required);
  EXPECT_EQ(state(), GroupState::stable);  // a pending member does not start a rebalance
  advance(5'000);
  EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::none);
  advance(5'000);  // the pending member's session timeout passes
  EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::none);
  auto late = join(request(first->value->member_id));
  EXPECT_EQ(late->value->error, ErrorCode::unknown_member_id);

  // v3 clients are admitted directly.
  JoinRequest old = request("");
  old.api_version = 3;
  auto direct = join(old);
  EXPECT_EQ(direct->calls, 0);
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
}

TEST_F(GroupTest, StaticMemberRestartKeepsAssignmentWithoutRebalance) {
  make({.initial_rebalance_delay_ms = 0});
  JoinRequest lead = request("");
  lead.api_version = 3;
  auto l = join(lead);  // a dynamic leader, generation 1
  std::string leader = l->value->member_id;
  JoinRequest st = request("");
  st.group_instance_id = "instance-1";
  auto s1 = join(st);  // static members skip MEMBER_ID_REQUIRED; generation 2
  EXPECT_EQ(s1->calls, 0);
  auto l2 = join(request(leader));
  ASSERT_EQ(s1->calls, 1);
  std::string old_id = s1->value->member_id;
  EXPECT_EQ(old_id.rfind("instance-1-", 0), 0u);
  sync(old_id, 2);
  sync(leader, 2, {{leader, bytes("L")}, {old_id, bytes("S")}});
  ASSERT_EQ(state(), GroupState::stable);

  auto s2 = join(st);  // the restarted process: same instance id, no member id
  ASSERT_EQ(s2->calls, 1);
  EXPECT_EQ(s2->value->error, ErrorCode::none);
  EXPECT_EQ(s2->value->generation_id, 2);
  EXPECT_NE(s2->value->member_id, old_id);
  EXPECT_EQ(state(), GroupState::stable);
  auto again = sync(s2->value->member_id, 2);
  EXPECT_EQ(again->value->assignment, bytes("S"));
  EXPECT_EQ(heartbeat(leader, 2), ErrorCode::none);  // nobody rebalanced
  EXPECT_EQ(coord_->heartbeat({kGroup, 2, old_id, "instance-1"}), ErrorCode::fenced_instance_id);
  EXPECT_EQ(coord_->describe(kGroup).rebalances_completed, 2);
}

TEST_F(GroupTest, StaticLeaderRestartSkipsAssignmentOnV9) {
  JoinRequest st = request("");
  st.group_instance_id = "i0";
  auto s1 = join(st);
  ASSERT_EQ(s1->calls, 1);
  std::string id = s1->value->member_id;
  sync(id, 1, {{id, bytes("X")}});
  auto s2 = join(st);
  ASSERT_EQ(s2->calls, 1);
  EXPECT_TRUE(s2->value->skip_assignment);
  EXPECT_EQ(s2->value->leader_id, s2->value->member_id);
  EXPECT_EQ(s2->value->members.size(), 1u);
  EXPECT_EQ(state(), GroupState::stable);
}

TEST_F(GroupTest, StaticLeaderRestartBeforeV9KeepsAssignmentWithoutRebalance) {
  // librdkafka 2.0 joins with v5: a restarted static leader cannot be told to skip the
  // assignment, so (as Kafka) the answer names its old id as the leader and it syncs as a
  // follower; the other members see no rebalance.
  JoinRequest lead = request("");
  lead.api_version = 5;
  lead.group_instance_id = "lead";
  auto l1 = join(lead);
  ASSERT_EQ(l1->calls, 1);
  std::string old_leader = l1->value->member_id;
  JoinRequest other = request("");
  other.api_version = 5;
  other.group_instance_id = "other";
  auto o1 = join(other);  // generation 2 starts; the leader rejoins
  auto l2 = join(request(old_leader));
  ASSERT_EQ(o1->calls, 1);
  ASSERT_EQ(l2->calls, 1);
  std::string other_id = o1->value->member_id;
  EXPECT_EQ(o1->value->generation_id, 2);
  sync(other_id, 2);
  sync(old_leader, 2, {{old_leader, bytes("L")}, {other_id, bytes("O")}});
  ASSERT_EQ(state(), GroupState::stable);

  auto l3 = join(lead);  // the restarted leader: same instance id, no member id, v5
  ASSERT_EQ(l3->calls, 1);
  EXPECT_EQ(l3->value->error, ErrorCode::none);
  EXPECT_EQ(l3->value->generation_id, 2);
  EXPECT_NE(l3->value->member_id, old_leader);
  EXPECT_EQ(l3->value->leader_id, old_leader);  // not its own id: it acts as a follower
  EXPECT_TRUE(l3->value->members.empty());
  EXPECT_FALSE(l3->value->skip_assignment);
  EXPECT_EQ(state(), GroupState::stable);
  auto s = sync(l3->value->member_id, 2);
  ASSERT_EQ(s->calls, 1);
  EXPECT_EQ(s->value->error, ErrorCode::none);
  EXPECT_EQ(s->value->assignment, bytes("L"));
  EXPECT_EQ(heartbeat(other_id, 2), ErrorCode::none);  // nobody rebalanced
  EXPECT_EQ(heartbeat(l3->value->member_id, 2), ErrorCode::none);
  EXPECT_EQ(coord_->heartbeat({kGroup, 2, old_leader, "lead"}), ErrorCode::fenced_instance_id);
  EXPECT_EQ(coord_->describe(kGroup).leader_id, l3->value->member_id);
  EXPECT_EQ(coord_->describe(kGroup).rebalances_completed, 2);
}

TEST_F(GroupTest, LeaveTriggersRebalance) {
  auto ids = stable_group(3);
  LeaveResponse out = coord_->leave({kGroup, {{ids[1], std::nullopt}, {"ghost", std::nullopt}}});
  ASSERT_EQ(out.member_errors.size(), 2u);
  EXPECT_EQ(out.member_errors[0], ErrorCode::none);
  EXPECT_EQ(out.member_errors[1], ErrorCode::unknown_member_id);
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
  EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::rebalance_in_progress);
  auto a = join(request(ids[0]));
  auto c = join(request(ids[2]));
  ASSERT_EQ(a->calls, 1);
  EXPECT_EQ(a->value->members.size(), 2u);
  // The leader leaving hands leadership to a remaining member.
  sync(ids[2], 2);
  sync(ids[0], 2, {});
  coord_->leave({kGroup, {{ids[0], std::nullopt}}});
  auto c2 = join(request(ids[2]));
  ASSERT_EQ(c2->calls, 1);
  EXPECT_EQ(c2->value->leader_id, ids[2]);
  // The last member leaving empties the group.
  coord_->leave({kGroup, {{ids[2], std::nullopt}}});
  EXPECT_EQ(state(), GroupState::empty);
  EXPECT_EQ(coord_->delete_group(kGroup), ErrorCode::none);
  EXPECT_EQ(coord_->delete_group(kGroup), ErrorCode::group_id_not_found);
}

TEST_F(GroupTest, LeaveWhileWaitingCompletesTheCallback) {
  auto ids = stable_group(2);
  auto a = join(request(ids[0]));
  EXPECT_EQ(a->calls, 0);
  coord_->leave({kGroup, {{ids[0], std::nullopt}}});
  ASSERT_EQ(a->calls, 1);
  EXPECT_EQ(a->value->error, ErrorCode::unknown_member_id);
}

TEST_F(GroupTest, InconsistentProtocol) {
  auto ids = stable_group(1);
  auto other = join(request("", {{"roundrobin", {}}}));
  EXPECT_EQ(other->value->error, ErrorCode::inconsistent_group_protocol);
  JoinRequest connect = request("");
  connect.protocol_type = "connect";
  EXPECT_EQ(join(connect)->value->error, ErrorCode::inconsistent_group_protocol);
  EXPECT_EQ(join(request("", {}))->value->error, ErrorCode::member_id_required);
  JoinRequest none = request("");
  none.protocols.clear();
  EXPECT_EQ(join(none)->value->error, ErrorCode::inconsistent_group_protocol);
  JoinRequest bad_timeout = request("");
  bad_timeout.session_timeout_ms = 1;
  EXPECT_EQ(join(bad_timeout)->value->error, ErrorCode::invalid_session_timeout);
  JoinRequest no_group = request("");
  no_group.group_id = "";
  EXPECT_EQ(join(no_group)->value->error, ErrorCode::invalid_group_id);
}

TEST_F(GroupTest, ProtocolChosenByVotes) {
  make({.initial_rebalance_delay_ms = 1'000});
  auto a = join_new("a", {{"range", {}}, {"roundrobin", {}}, {"sticky", {}}});
  auto b = join_new("b", {{"roundrobin", {}}, {"range", {}}});
  auto c = join_new("c", {{"roundrobin", {}}, {"range", {}}});
  advance(1'000);
  advance(1'000);
  ASSERT_EQ(a->calls, 1);
  EXPECT_EQ(a->value->protocol_name, "roundrobin");
  EXPECT_EQ(c->value->protocol_name, "roundrobin");
}

TEST_F(GroupTest, WrongGeneration) {
  auto ids = stable_group(2);
  EXPECT_EQ(sync(ids[0], 7)->value->error, ErrorCode::illegal_generation);
  EXPECT_EQ(heartbeat(ids[0], 0), ErrorCode::illegal_generation);
  EXPECT_EQ(sync("nobody", 1)->value->error, ErrorCode::unknown_member_id);
  SyncRequest r{kGroup, 1, ids[1], std::nullopt, "consumer", "roundrobin", {}};
  auto slot = std::make_shared<Slot<SyncResponse>>();
  coord_->sync(r, [slot](SyncResponse s) { slot->value = s; });
  EXPECT_EQ(slot->value->error, ErrorCode::inconsistent_group_protocol);
}

TEST_F(GroupTest, RebalanceRestartFailsWaitingSync) {
  make({.initial_rebalance_delay_ms = 1'000});
  auto a = join_new("a");
  auto b = join_new("b");
  advance(1'000);
  advance(1'000);
  auto sb = sync(b->value->member_id, 1);
  EXPECT_EQ(sb->calls, 0);
  auto c = join_new("c");  // a new member before the leader synced
  ASSERT_EQ(sb->calls, 1);
  EXPECT_EQ(sb->value->error, ErrorCode::rebalance_in_progress);
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
}

TEST_F(GroupTest, GroupMaxSize) {
  make({.initial_rebalance_delay_ms = 0, .group_max_size = 2});
  auto a = join_new("a");
  JoinRequest r = request("");
  auto b = join(r);  // pending members hold a slot
  EXPECT_EQ(b->value->error, ErrorCode::member_id_required);
  EXPECT_EQ(join(r)->value->error, ErrorCode::group_max_size_reached);
}

TEST_F(GroupTest, UnloadFailsEveryWaitingCallback) {
  auto ids = stable_group(2);
  auto a = join(request(ids[0]));
  coord_->unload();
  ASSERT_EQ(a->calls, 1);
  EXPECT_EQ(a->value->error, ErrorCode::not_coordinator);
  EXPECT_EQ(coord_->group_count(), 0u);
}

// ---- Randomized: clients join, sync, heartbeat, leave, restart; time moves. ----

struct SimClient {
  std::string name;
  std::optional<std::string> instance_id;
  std::string member_id;
  int32_t generation = -1;
  bool busy = false;  // a join or sync is outstanding
  bool is_leader = false;
  std::vector<JoinMember> to_assign;  // the leader's members list
  bool need_sync = false;
  int incarnation = 0;  // bumped on a crash: answers to the old process are ignored
};

TEST(GroupRandomTest, InvariantsHoldUnderRandomTraffic) {
  int64_t stable_steps = 0;  // coverage: the traffic must reach Stable and many generations
  int32_t generations = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE(seed);
    Random rnd(seed);
    ManualClock clock(5'000'000);
    GroupConfig cfg{.initial_rebalance_delay_ms = int32_t(rnd.below(3)) * 500, .group_max_size = 4};
    auto coord = std::make_unique<GroupCoordinator>(cfg, clock, seed);
    std::vector<SimClient> clients(6);
    for (size_t i = 0; i < clients.size(); ++i) {
      clients[i].name = "c" + std::to_string(i);
      if (i % 3 == 0) clients[i].instance_id = "static-" + std::to_string(i);
    }
    std::vector<int> completions;  // per issued callback
    // (generation, instance id or member id) -> assignment sent by the leader
    std::map<std::pair<int32_t, std::string>, Bytes> expected;
    std::map<int32_t, std::set<std::string>> leaders_by_gen;
    std::map<int32_t, std::set<std::string>> successors_by_gen;
    int32_t last_generation = 0;

    std::function<void(size_t)> send_sync;
    auto send_join = [&](size_t i, int16_t version) {
      SimClient& c = clients[i];
      JoinRequest r;
      r.api_version = version;
      r.group_id = "g";
      r.member_id = c.member_id;
      r.group_instance_id = c.instance_id;
      r.client_id = c.name;
      r.session_timeout_ms = 6'000 + int32_t(rnd.below(3)) * 2'000;
      r.rebalance_timeout_ms = 8'000;
      r.protocol_type = "consumer";
      r.protocols = {{"range", bytes(c.name)}};
      if (rnd.chance(0.3)) r.protocols.insert(r.protocols.begin(), {"sticky", {}});
      size_t cb = completions.size();
      completions.push_back(0);
      c.busy = true;
      int inc = c.incarnation;
      coord->join(std::move(r), [&, i, cb, inc](JoinResponse resp) {
        completions[cb] += 1;
        ASSERT_EQ(completions[cb], 1);
        // A restarted static leader (skip_assignment) takes over its generation under a new id;
        // apart from such successors, every answer of a generation names the same leader.
        if (resp.error == ErrorCode::none) {
          leaders_by_gen[resp.generation_id].insert(resp.leader_id);
          if (resp.skip_assignment) successors_by_gen[resp.generation_id].insert(resp.leader_id);
          EXPECT_EQ(resp.members.empty() && !resp.skip_assignment,
                    resp.leader_id != resp.member_id);
        }
        SimClient& me = clients[i];
        if (inc != me.incarnation) return;
        me.busy = false;
        switch (resp.error) {
          case ErrorCode::none:
            me.member_id = resp.member_id;
            me.generation = resp.generation_id;
            me.is_leader = resp.leader_id == resp.member_id && !resp.skip_assignment;
            me.to_assign.clear();
            me.to_assign = resp.members;
            me.need_sync = true;
            if (rnd.chance(0.5)) send_sync(i);  // re-entrant call from a callback
            break;
          case ErrorCode::member_id_required:
            me.member_id = resp.member_id;
            break;
          case ErrorCode::rebalance_in_progress:
            break;
          default:
            me.member_id.clear();
            me.generation = -1;
            break;
        }
      });
    };
    send_sync = [&](size_t i) {
      SimClient& c = clients[i];
      SyncRequest r;
      r.group_id = "g";
      r.generation_id = c.generation;
      r.member_id = c.member_id;
      r.group_instance_id = c.instance_id;
      if (c.is_leader) {
        for (const auto& m : c.to_assign) {
          Bytes b = bytes(m.member_id + "@" + std::to_string(c.generation));
          expected[{c.generation, m.group_instance_id.value_or(m.member_id)}] = b;
          r.assignments.emplace_back(m.member_id, b);
        }
      }
      size_t cb = completions.size();
      completions.push_back(0);
      c.busy = true;
      c.need_sync = false;
      int inc = c.incarnation;
      int32_t gen = c.generation;
      // A restarted static member keeps its assignment under a new member id: key by instance.
      std::string id = c.instance_id.value_or(c.member_id);
      coord->sync(std::move(r), [&, i, cb, inc, gen, id](SyncResponse resp) {
        completions[cb] += 1;
        ASSERT_EQ(completions[cb], 1);
        if (resp.error == ErrorCode::none) {
          auto it = expected.find({gen, id});
          Bytes want = it == expected.end() ? Bytes{} : it->second;
          EXPECT_EQ(resp.assignment, want);
        }
        SimClient& me = clients[i];
        if (inc != me.incarnation) return;
        me.busy = false;
        if (resp.error == ErrorCode::unknown_member_id ||
            resp.error == ErrorCode::fenced_instance_id) {
          me.member_id.clear();
          me.generation = -1;
        }
      });
    };

    for (int step = 0; step < 400; ++step) {
      size_t i = rnd.below(clients.size());
      SimClient& c = clients[i];
      uint64_t action = rnd.below(10);
      if (action < 2) {
        clock.advance(int64_t(rnd.below(4'000)));
        coord->tick();
      } else if (action == 2 && !c.member_id.empty()) {
        coord->leave({"g", {{c.member_id, std::nullopt}}});
        c.member_id.clear();
        c.generation = -1;
      } else if (action == 3 && c.instance_id) {
        c.incarnation += 1;  // crash and restart: the old process's requests are forgotten
        c.member_id.clear();
        c.busy = false;
        send_join(i, 9);
      } else if (!c.busy) {
        if (c.need_sync && c.generation >= 0) {
          send_sync(i);
        } else if (c.generation >= 0 && !c.member_id.empty()) {
          ErrorCode e = coord->heartbeat({"g", c.generation, c.member_id, c.instance_id});
          if (e == ErrorCode::rebalance_in_progress || e == ErrorCode::illegal_generation) {
            send_join(i, 9);
          } else if (e != ErrorCode::none) {
            c.member_id.clear();
            c.generation = -1;
          }
        } else {
          send_join(i, rnd.chance(0.8) ? 9 : 3);
        }
      }

      GroupDescription d = coord->describe("g");
      if (d.state == GroupState::dead) continue;
      ASSERT_GE(d.generation_id, last_generation);
      last_generation = d.generation_id;
      EXPECT_EQ(d.generation_id, d.rebalances_completed);
      ASSERT_LE(d.members.size(), 4u);
      int leaders = 0;
      for (const auto& m : d.members) leaders += m.member_id == d.leader_id;
      EXPECT_EQ(leaders, d.members.empty() ? 0 : 1);
      if (d.state == GroupState::stable) {
        stable_steps += 1;
        for (const auto& m : d.members) {
          EXPECT_FALSE(m.awaiting_join);
          EXPECT_FALSE(m.awaiting_sync);  // the leader's sync delivered every waiting answer
          auto it = expected.find({d.generation_id, m.group_instance_id.value_or(m.member_id)});
          EXPECT_EQ(m.assignment, it == expected.end() ? Bytes{} : it->second);
        }
      }
    }
    for (const auto& [gen, leaders] : leaders_by_gen) {
      size_t original = 0;
      for (const auto& l : leaders) original += successors_by_gen[gen].count(l) == 0;
      EXPECT_LE(original, 1u) << "generation " << gen;
    }
    generations += last_generation;
    coord->unload();
    for (size_t k = 0; k < completions.size(); ++k) {
      EXPECT_EQ(completions[k], 1) << "callback " << k;
    }
  }
  EXPECT_GT(stable_steps, 1'000);
  EXPECT_GT(generations, 200);
  std::printf("random traffic: %lld steps in Stable, %d generations\n",
              static_cast<long long>(stable_steps), generations);
}

// ---- offset-commit rules, restore, state observer ----

TEST_F(GroupTest, CommitRulesFollowMembershipAndGeneration) {
  // Unknown group: only a "simple" commit (negative generation).
  EXPECT_EQ(coord_->check_commit("other", -1, "", std::nullopt), ErrorCode::none);
  EXPECT_EQ(coord_->check_commit("other", 1, "m", std::nullopt), ErrorCode::illegal_generation);

  auto ids = stable_group(2);
  EXPECT_EQ(coord_->check_commit(kGroup, 1, ids[1], std::nullopt), ErrorCode::none);
  EXPECT_EQ(coord_->check_commit(kGroup, 0, ids[1], std::nullopt), ErrorCode::illegal_generation);
  EXPECT_EQ(coord_->check_commit(kGroup, 1, "stranger", std::nullopt),
            ErrorCode::unknown_member_id);
  EXPECT_EQ(coord_->check_commit(kGroup, -1, "", std::nullopt), ErrorCode::unknown_member_id);

  // A commit keeps a member alive like a heartbeat: ids[1] commits, ids[0] heartbeats.
  for (int i = 0; i < 4; ++i) {
    advance(4'000);
    EXPECT_EQ(coord_->check_commit(kGroup, 1, ids[1], std::nullopt), ErrorCode::none);
    EXPECT_EQ(heartbeat(ids[0], 1), ErrorCode::none);
  }
  EXPECT_EQ(state(), GroupState::stable);

  // During the join phase members of the generation may still commit (eager clients do so
  // while revoking); while the leader's assignment is awaited nobody may.
  auto rejoin = join(request(ids[0]));
  EXPECT_EQ(state(), GroupState::preparing_rebalance);
  EXPECT_EQ(coord_->check_commit(kGroup, 1, ids[1], std::nullopt), ErrorCode::none);
  auto rejoin2 = join(request(ids[1]));
  EXPECT_EQ(state(), GroupState::completing_rebalance);
  EXPECT_EQ(coord_->check_commit(kGroup, 2, ids[1], std::nullopt),
            ErrorCode::rebalance_in_progress);

  // Everybody leaves: an Empty group takes simple commits again.
  coord_->leave(LeaveRequest{kGroup, {{ids[0], std::nullopt}, {ids[1], std::nullopt}}});
  EXPECT_EQ(state(), GroupState::empty);
  EXPECT_EQ(coord_->check_commit(kGroup, -1, "", std::nullopt), ErrorCode::none);
}

TEST_F(GroupTest, RebalanceTimeoutsAreCappedAtTheMaximumSessionTimeout) {
  make({.max_session_timeout_ms = 30'000, .initial_rebalance_delay_ms = 0});
  JoinRequest r = request("");
  r.api_version = 3;  // no MEMBER_ID_REQUIRED
  r.rebalance_timeout_ms = 600'000;
  auto j = join(r);
  ASSERT_EQ(j->calls, 1);
  ASSERT_EQ(j->value->error, ErrorCode::none);
  auto d = coord_->describe(kGroup);
  ASSERT_EQ(d.members.size(), 1u);
  EXPECT_EQ(d.members[0].rebalance_timeout_ms, 30'000);
  EXPECT_EQ(d.members[0].session_timeout_ms, 10'000);
}

TEST_F(GroupTest, StateObserverSeesStableEmptyAndDead) {
  std::vector<std::pair<GroupState, int32_t>> seen;
  auto ids = stable_group(1);
  coord_->set_state_observer([&](const std::string& id, GroupState s, int32_t generation) {
    EXPECT_EQ(id, kGroup);
    seen.emplace_back(s, generation);
  });
  coord_->leave(LeaveRequest{kGroup, {{ids[0], std::nullopt}}});
  EXPECT_EQ(coord_->delete_group(kGroup), ErrorCode::none);
  std::vector<std::pair<GroupState, int32_t>> want = {
      {GroupState::preparing_rebalance, 1}, {GroupState::empty, 2}, {GroupState::dead, 2}};
  EXPECT_EQ(seen, want);
}

TEST_F(GroupTest, ARestoredGroupContinuesItsGenerations) {
  GroupMetadataValue empty;
  empty.protocol_type = "consumer";
  empty.generation = 7;
  coord_->restore(kGroup, empty);
  EXPECT_EQ(state(), GroupState::empty);
  EXPECT_EQ(coord_->describe(kGroup).generation_id, 7);
  coord_->restore(kGroup, GroupMetadataValue{});  // no-op: the group exists
  auto j = join_new("c");
  ASSERT_EQ(j->calls, 1);
  EXPECT_EQ(j->value->generation_id, 8);
  // A member of the old generation (from before the restart) must rejoin.
  EXPECT_EQ(heartbeat("old-member", 7), ErrorCode::unknown_member_id);
}

TEST_F(GroupTest, ARestoredStableGroupKeepsItsMembersWithoutARebalance) {
  GroupMetadataValue md;
  md.protocol_type = "consumer";
  md.generation = 4;
  md.protocol_name = "range";
  md.leader_id = "m1";
  // (member id, instance id, client id, host, rebalance timeout, session timeout, ...)
  md.members.push_back({"m1", std::nullopt, "c1", "/h", 10'000, 20'000, bytes("s1"), bytes("a1")});
  md.members.push_back({"m2", "static-2", "c2", "/h", 12'000, 20'000, bytes("s2"), bytes("a2")});
  coord_->restore(kGroup, md);
  auto d = coord_->describe(kGroup);
  EXPECT_EQ(d.state, GroupState::stable);
  EXPECT_EQ(d.generation_id, 4);
  EXPECT_EQ(d.leader_id, "m1");
  ASSERT_EQ(d.members.size(), 2u);
  EXPECT_EQ(d.members[1].assignment, bytes("a2"));
  EXPECT_EQ(d.members[1].rebalance_timeout_ms, 12'000);
  // Members go on with their generation: heartbeats, commits, a sync returns the assignment.
  EXPECT_EQ(heartbeat("m1", 4), ErrorCode::none);
  EXPECT_EQ(coord_->check_commit(kGroup, 4, "m2", "static-2"), ErrorCode::none);
  auto s = sync("m2", 4);
  ASSERT_EQ(s->calls, 1);
  EXPECT_EQ(s->value->assignment, bytes("a2"));
  // Sessions run from the restore (20 s): m1 heartbeats, m2 does not and expires at 20 s.
  for (int i = 1; i <= 4; ++i) {
    advance(5'000);
    EXPECT_EQ(heartbeat("m1", 4), i < 4 ? ErrorCode::none : ErrorCode::rebalance_in_progress) << i;
  }
  EXPECT_EQ(state(), GroupState::preparing_rebalance);

  // Records that do not make a consistent group come back Empty with their generation.
  GroupMetadataValue bad = md;
  bad.leader_id = "nobody";
  coord_->restore("other", bad);
  EXPECT_EQ(coord_->describe("other").state, GroupState::empty);
  EXPECT_EQ(coord_->describe("other").generation_id, 4);
  GroupMetadataValue zero = md;
  zero.members[0].session_timeout_ms = 0;
  coord_->restore("third", zero);
  EXPECT_EQ(coord_->describe("third").state, GroupState::empty);
}

}  // namespace
}  // namespace ordo::coordinator
