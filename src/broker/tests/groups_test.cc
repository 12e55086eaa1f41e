// GroupService with a manual clock: offset expiry and replay of __consumer_offsets; in cluster
// mode (replicated), partitions that load and unload with their leadership.

#include "broker/groups.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <asio/post.hpp>

#include "cluster/partitions.h"
#include "model/record_batch.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using coordinator::OffsetCommitValue;
using protocol::ErrorCode;

// The partitions as one replica of a cluster sees them (over the test's single-node logs):
// appends fail with Errc::closed once it no longer leads, and reads may report a high watermark
// that lags the log end (a new Raft leader's before its term's first entry commits).
class ReplicaPartitions final : public cluster::PartitionService {
 public:
  explicit ReplicaPartitions(cluster::PartitionService& inner) : inner_(inner) {}
  std::atomic<bool> leading{true};
  std::atomic<int64_t> hw_cap{-1};  // -1: none

  std::optional<cluster::LeaderError> check_leader(const model::TopicPartition& tp,
                                                   int32_t epoch) const override {
    return inner_.check_leader(tp, epoch);
  }
  void append(const model::TopicPartition& tp, std::span<uint8_t> batches, cluster::Consistency c,
              storage::AppendOptions o, Callback<storage::AppendResult> done) override {
    append(tp, std::vector<uint8_t>(batches.begin(), batches.end()), c, o, std::move(done));
  }
  void append(const model::TopicPartition& tp, std::vector<uint8_t> batches, cluster::Consistency c,
              storage::AppendOptions o, Callback<storage::AppendResult> done) override {
    if (!leading) return done(make_error(Errc::closed, "{}: not the leader", tp.to_string()));
    inner_.append(tp, std::move(batches), c, o, std::move(done));
  }
  void read(const model::TopicPartition& tp, storage::ReadOptions o,
            Callback<storage::ReadResult> done) override {
    int64_t cap = hw_cap;
    if (cap >= 0 && (!o.upper_bound || o.upper_bound->value() > cap)) o.upper_bound = Offset(cap);
    inner_.read(tp, o, [cap, done = std::move(done)](Result<storage::ReadResult> r) {
      if (r && cap >= 0 && r->high_watermark.value() > cap) r->high_watermark = Offset(cap);
      done(std::move(r));
    });
  }
  void list_offset(const model::TopicPartition& tp, int64_t which,
                   Callback<cluster::OffsetAnswer> done) override {
    inner_.list_offset(tp, which, std::move(done));
  }
  void delete_records(const model::TopicPartition& tp, int64_t before,
                      Callback<cluster::Truncation> done) override {
    inner_.delete_records(tp, before, std::move(done));
  }
  int32_t in_sync_replicas(const model::TopicPartition& tp) const override {
    return inner_.in_sync_replicas(tp);
  }
  void elect_preferred(const model::TopicPartition& tp, Callback<cluster::Election> done) override {
    inner_.elect_preferred(tp, std::move(done));
  }
  std::vector<storage::PartitionStatus> status() override { return inner_.status(); }
  void offset_for_leader_epoch(const model::TopicPartition& tp, int32_t current, int32_t epoch,
                               Callback<cluster::EpochEnd> done) override {
    inner_.offset_for_leader_epoch(tp, current, epoch, std::move(done));
  }

 private:
  cluster::PartitionService& inner_;
};

class GroupServiceTest : public ::testing::Test {
 protected:
  static constexpr int32_t kPartitions = 3;
  static constexpr int64_t kRetentionMs = 60'000;

  void SetUp() override {
    storage::LogManagerOptions o;
    o.data_dir = dir_.path();
    o.default_config.flush_mode = storage::FlushMode::durable;
    // The group service reaches its partitions through the seam: this node leads them.
    cluster::CreateTopic offsets;
    offsets.name = kOffsetsTopic;
    offsets.log = o.default_config;
    offsets.replicas.assign(kPartitions, {0});
    ASSERT_TRUE(table_.apply(offsets));
    o.high_watermark = partitions_.high_watermark_policy();
    auto logs = storage::LogManager::open(o);
    ASSERT_TRUE(logs) << logs.error().to_string();
    logs_ = std::move(*logs);
    partitions_.attach(*logs_);
    for (int32_t p = 0; p < kPartitions; ++p) {
      ASSERT_TRUE(logs_->create_sync({kOffsetsTopic, p}, o.default_config));
    }
    open_service();
  }

  void open_service() {
    service_.reset();
    GroupServiceOptions o;
    o.partitions = kPartitions;
    o.retention_ms = kRetentionMs;
    o.retention_check_interval_ms = int64_t(1) << 40;  // only when the test asks
    o.group.initial_rebalance_delay_ms = 0;
    o.clock = &clock_;
    auto s = GroupService::open(o, partitions_);
    ASSERT_TRUE(s) << s.error().to_string();
    service_ = std::move(*s);
  }

  // Runs fn on the service's thread and waits for it.
  template <typename Fn>
  auto on_service(Fn fn) {
    return on(*service_, std::move(fn));
  }
  template <typename Fn>
  static auto on(GroupService& s, Fn fn) {
    std::promise<decltype(fn(s))> p;
    asio::post(s.executor(), [&] { p.set_value(fn(s)); });
    return p.get_future().get();
  }

  ErrorCode commit(const std::string& group, int32_t partition, int64_t offset) {
    return commit(*service_, group, partition, offset);
  }
  ErrorCode commit(GroupService& s, const std::string& group, int32_t partition, int64_t offset,
                   int32_t generation = -1, const std::string& member = "") {
    std::promise<ErrorCode> p;
    asio::post(s.executor(), [&] {
      // As the OffsetCommit handler: where the group is served, then (a member's commit) the
      // membership rules.
      ErrorCode e = s.availability(group);
      if (e == ErrorCode::none && !member.empty()) {
        e = s.coordinator(group).check_commit(group, generation, member, std::nullopt);
      }
      if (e != ErrorCode::none) return p.set_value(e);
      OffsetCommitValue v;
      v.offset = offset;
      v.commit_timestamp_ms = clock_.now_ms();
      s.commit(group, {{"t", partition, v}}, [&](ErrorCode e) { p.set_value(e); });
    });
    return p.get_future().get();
  }

  std::optional<int64_t> committed(const std::string& group, int32_t partition) {
    return committed(*service_, group, partition);
  }
  std::optional<int64_t> committed(GroupService& service, const std::string& group,
                                   int32_t partition) {
    return on(service, [&](GroupService& s) -> std::optional<int64_t> {
      const auto* o = s.offsets(group);
      if (o == nullptr) return std::nullopt;
      auto it = o->find({"t", partition});
      if (it == o->end()) return std::nullopt;
      return it->second.offset;
    });
  }

  // One expiry pass, waited for until its tombstones are in the log.
  void expire() {
    std::promise<void> p;
    asio::post(service_->executor(), [&] { service_->expire_offsets([&] { p.set_value(); }); });
    p.get_future().get();
  }

  // A cluster-mode service over `partitions` (node `self`): nothing loaded until it leads.
  std::unique_ptr<GroupService> open_replicated(cluster::PartitionService& partitions,
                                                cluster::NodeId self) {
    GroupServiceOptions o;
    o.partitions = 50;  // the table's count (kPartitions) is the one used
    o.retention_check_interval_ms = int64_t(1) << 40;
    o.group.initial_rebalance_delay_ms = 0;
    o.clock = &clock_;
    o.replicated = true;
    o.self = self;
    o.table = &table_;
    o.load_retry_ms = 1;
    auto s = GroupService::open(o, partitions);
    EXPECT_TRUE(s) << s.error().to_string();
    return s ? std::move(*s) : nullptr;
  }

  // Waits until every task posted to the service before ran (leader hooks are posted).
  static void settle(GroupService& s) {
    on(s, [](GroupService&) { return 0; });
  }

  // Polls until the group is served (a load is asynchronous); false after 20 s.
  static bool wait_served(GroupService& s, const std::string& group) {
    for (int i = 0; i < 20'000; ++i) {
      if (s.availability(group) == ErrorCode::none) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  // One member (JoinGroup v3: no MEMBER_ID_REQUIRED) of a new group; async: `done` gets the
  // answer on the service's thread.
  static void join(GroupService& s, const std::string& group, const std::string& member_id,
                   std::function<void(coordinator::JoinResponse)> done) {
    asio::post(s.executor(), [&s, group, member_id, done = std::move(done)] {
      if (ErrorCode e = s.availability(group); e != ErrorCode::none) {
        coordinator::JoinResponse r;
        r.error = e;
        return done(r);
      }
      coordinator::JoinRequest j;
      j.api_version = 3;
      j.group_id = group;
      j.member_id = member_id;
      j.session_timeout_ms = 60'000;
      j.rebalance_timeout_ms = 60'000;
      j.protocol_type = "consumer";
      j.protocols = {{"range", {1}}};
      s.coordinator(group).join(j, done);
    });
  }

  // A group of one member, Stable: its member id (generation 1).
  std::string stable_group(GroupService& s, const std::string& group) {
    std::promise<coordinator::JoinResponse> joined;
    join(s, group, "", [&](coordinator::JoinResponse r) { joined.set_value(r); });
    auto j = joined.get_future().get();
    EXPECT_EQ(j.error, ErrorCode::none);
    EXPECT_EQ(j.generation_id, 1);
    std::promise<ErrorCode> synced;
    asio::post(s.executor(), [&] {
      coordinator::SyncRequest sr;
      sr.group_id = group;
      sr.generation_id = j.generation_id;
      sr.member_id = j.member_id;
      sr.assignments = {{j.member_id, {7}}};
      s.coordinator(group).sync(sr,
                                [&](coordinator::SyncResponse r) { synced.set_value(r.error); });
    });
    EXPECT_EQ(synced.get_future().get(), ErrorCode::none);
    return j.member_id;
  }

  static ErrorCode heartbeat(GroupService& s, const std::string& group, const std::string& member,
                             int32_t generation) {
    return on(s, [&](GroupService& gs) {
      if (ErrorCode e = gs.availability(group); e != ErrorCode::none) return e;
      return gs.coordinator(group).heartbeat({group, generation, member, std::nullopt});
    });
  }

  storage::testing::TempDir dir_;
  // Starts at the real time: the records' timestamps come from it, and the logs' time-based
  // segment rolling and retention (on the system clock) must not see them as days old.
  ManualClock clock_{SystemClock::instance().now_ms()};
  cluster::PartitionTable table_;
  cluster::LocalPartitions partitions_{0, table_, nullptr};
  std::unique_ptr<storage::LogManager> logs_;
  std::unique_ptr<GroupService> service_;
};

TEST_F(GroupServiceTest, GroupsArePlacedLikeKafka) {
  // Java's "".hashCode() is 0 and "a".hashCode() is 97; a surrogate pair counts as two units.
  EXPECT_EQ(java_string_hash(""), 0);
  EXPECT_EQ(java_string_hash("a"), 97);
  EXPECT_EQ(java_string_hash("consumer-group"), int32_t(0x98623DE8));
  EXPECT_EQ(java_string_hash("\xF0\x9F\x98\x80"), 0xD83D * 31 + 0xDE00);  // U+1F600
  EXPECT_EQ(service_->partition_for("a"), 97 % kPartitions);
}

TEST_F(GroupServiceTest, OffsetsReplayFromTheLogAfterARestart) {
  ASSERT_EQ(commit("g", 0, 5), ErrorCode::none);
  ASSERT_EQ(commit("g", 0, 9), ErrorCode::none);  // the later commit wins
  ASSERT_EQ(commit("h", 1, 3), ErrorCode::none);
  open_service();
  EXPECT_EQ(committed("g", 0), 9);
  EXPECT_EQ(committed("h", 1), 3);
  EXPECT_EQ(committed("g", 1), std::nullopt);
}

TEST_F(GroupServiceTest, APartitionThatDoesNotDecodeMakesItsGroupsUnavailable) {
  // A record whose key is no __consumer_offsets key, in the partition of group "a".
  int32_t p = service_->partition_for("a");
  auto bad = model::RecordBatchBuilder().add("\x7f-not-a-key", "v", 1000).build();
  ASSERT_TRUE(logs_->append_sync({kOffsetsTopic, p}, bad));
  open_service();
  EXPECT_EQ(service_->availability("a"), ErrorCode::coordinator_not_available);
  // Groups of the other partitions are served.
  std::string other = "b";
  while (service_->partition_for(other) == p) other += "b";
  EXPECT_EQ(service_->availability(other), ErrorCode::none);
  ASSERT_EQ(commit(other, 0, 1), ErrorCode::none);
}

TEST_F(GroupServiceTest, OffsetsOfGroupsWithoutMembersExpire) {
  ASSERT_EQ(commit("old", 0, 1), ErrorCode::none);
  clock_.advance(kRetentionMs / 2);
  ASSERT_EQ(commit("young", 0, 2), ErrorCode::none);
  clock_.advance(kRetentionMs / 2 + 1);
  expire();
  EXPECT_EQ(committed("old", 0), std::nullopt);
  EXPECT_EQ(committed("young", 0), 2);
  // The expiry was written to the log: a restart does not bring the offset back.
  open_service();
  EXPECT_EQ(committed("old", 0), std::nullopt);
  EXPECT_EQ(committed("young", 0), 2);
}

TEST_F(GroupServiceTest, OffsetsOfAGroupWithMembersDoNotExpire) {
  // A member joins (v0: no MEMBER_ID_REQUIRED) and the group becomes Stable.
  std::string member = on_service([&](GroupService& s) {
    coordinator::JoinRequest j;
    j.api_version = 0;
    j.group_id = "live";
    j.session_timeout_ms = 10 * kRetentionMs;
    j.rebalance_timeout_ms = 10 * kRetentionMs;
    j.protocol_type = "consumer";
    j.protocols = {{"range", {1}}};
    std::string id;
    s.coordinator("live").join(j, [&](coordinator::JoinResponse r) { id = r.member_id; });
    coordinator::SyncRequest sr;
    sr.group_id = "live";
    sr.generation_id = 1;
    sr.member_id = id;
    s.coordinator("live").sync(sr, [](coordinator::SyncResponse) {});
    return id;
  });
  ASSERT_FALSE(member.empty());
  ASSERT_EQ(commit("live", 0, 4), ErrorCode::none);
  clock_.advance(2 * kRetentionMs);
  expire();
  EXPECT_EQ(committed("live", 0), 4);
}

TEST_F(GroupServiceTest, APartitionWhoseLogStartsLaterLoads) {
  ASSERT_EQ(commit("g", 0, 5), ErrorCode::none);
  ASSERT_EQ(commit("g", 0, 7), ErrorCode::none);
  ASSERT_EQ(commit("g", 0, 9), ErrorCode::none);
  model::TopicPartition tp{kOffsetsTopic, service_->partition_for("g")};
  std::promise<cluster::Truncation> cut;
  partitions_.delete_records(tp, 1, [&](Result<cluster::Truncation> r) {
    ASSERT_TRUE(r);
    cut.set_value(*r);
  });
  int64_t start = cut.get_future().get().low_watermark;
  ASSERT_GT(start, 0);
  ASSERT_LT(start, 3);  // the last commit is kept
  // One node: replayed at open from the log start.
  open_service();
  EXPECT_EQ(service_->availability("g"), ErrorCode::none);
  EXPECT_EQ(committed("g", 0), 9);
  // Cluster mode: the same when the partition is led here.
  service_.reset();
  ReplicaPartitions replica(partitions_);
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  node->on_partition_leader(tp.partition, 1, 1);
  ASSERT_TRUE(wait_served(*node, "g"));
  EXPECT_EQ(committed(*node, "g", 0), 9);
}

// ---- cluster mode: a partition is served where it is led ----

TEST_F(GroupServiceTest, ReplicatedPartitionIsServedWhileThisNodeLeadsIt) {
  ASSERT_EQ(commit("g", 0, 9), ErrorCode::none);  // written by an earlier leader
  service_.reset();
  ReplicaPartitions replica(partitions_);
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  int32_t p = offsets_partition_for("g", kPartitions);
  EXPECT_EQ(node->availability("g"), ErrorCode::not_coordinator);
  node->on_partition_leader(p, 2, 1);  // another node leads
  settle(*node);
  EXPECT_EQ(node->availability("g"), ErrorCode::not_coordinator);
  node->on_partition_leader(p, 1, 2);
  ASSERT_TRUE(wait_served(*node, "g"));
  EXPECT_EQ(node->partition_for("g"), p);  // the topic's count, not options.partitions
  EXPECT_EQ(committed(*node, "g", 0), 9);
  // Groups of the other partitions are not served here.
  std::string other = "h";
  while (offsets_partition_for(other, kPartitions) == p) other += "h";
  EXPECT_EQ(node->availability(other), ErrorCode::not_coordinator);
  // The leadership moves away: unloaded.
  node->on_partition_leader(p, 3, 3);
  settle(*node);
  EXPECT_EQ(node->availability("g"), ErrorCode::not_coordinator);
  EXPECT_EQ(committed(*node, "g", 0), std::nullopt);
}

TEST_F(GroupServiceTest, ALoadWaitsUntilTheHighWatermarkReachesTheLogEnd) {
  ASSERT_EQ(commit("g", 0, 5), ErrorCode::none);  // offset 0
  ASSERT_EQ(commit("g", 0, 9), ErrorCode::none);  // offset 1: committed, the new leader's
  service_.reset();                               // high watermark does not know it yet
  ReplicaPartitions replica(partitions_);
  replica.hw_cap = 1;
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  node->on_partition_leader(offsets_partition_for("g", kPartitions), 1, 4);
  settle(*node);
  // Whatever the load does meanwhile, it does not serve the group from a short replay.
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(node->availability("g"), ErrorCode::coordinator_load_in_progress);
    settle(*node);
  }
  replica.hw_cap = -1;  // the term's first entry committed: the high watermark is the log end
  ASSERT_TRUE(wait_served(*node, "g"));
  EXPECT_EQ(committed(*node, "g", 0), 9);
}

TEST_F(GroupServiceTest, AServiceStopsWhileALoadWaits) {
  ASSERT_EQ(commit("g", 0, 5), ErrorCode::none);
  service_.reset();
  ReplicaPartitions replica(partitions_);
  replica.hw_cap = 0;  // never reaches the log end
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  node->on_partition_leader(offsets_partition_for("g", kPartitions), 1, 1);
  settle(*node);
  settle(*node);
  EXPECT_EQ(node->availability("g"), ErrorCode::coordinator_load_in_progress);
  node.reset();  // its retry timer pending: stops without waiting for it (ASan: nothing leaks)
}

TEST_F(GroupServiceTest, WritesThatLoseTheLeadershipAnswerNotCoordinator) {
  service_.reset();
  ReplicaPartitions replica(partitions_);
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  node->on_partition_leader(offsets_partition_for("g", kPartitions), 1, 1);
  ASSERT_TRUE(wait_served(*node, "g"));
  ASSERT_EQ(commit(*node, "g", 0, 3), ErrorCode::none);
  replica.leading = false;  // lost before the leader hook says so
  EXPECT_EQ(commit(*node, "g", 0, 4), ErrorCode::not_coordinator);
  EXPECT_EQ(committed(*node, "g", 0), 3);
}

TEST_F(GroupServiceTest, UnloadingAnswersWaitingJoinsNotCoordinator) {
  service_.reset();
  ReplicaPartitions replica(partitions_);
  auto node = open_replicated(replica, 1);
  ASSERT_TRUE(node);
  int32_t p = offsets_partition_for("g", kPartitions);
  node->on_partition_leader(p, 1, 1);
  ASSERT_TRUE(wait_served(*node, "g"));
  stable_group(*node, "g");
  // A second member's join waits for the first to rejoin (a rebalance).
  std::promise<coordinator::JoinResponse> waiting;
  join(*node, "g", "", [&](coordinator::JoinResponse r) { waiting.set_value(r); });
  settle(*node);
  auto answer = waiting.get_future();
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  node->on_partition_leader(p, 2, 2);
  EXPECT_EQ(answer.get().error, ErrorCode::not_coordinator);
  EXPECT_EQ(node->availability("g"), ErrorCode::not_coordinator);
}

TEST_F(GroupServiceTest, AGroupMovesWithItsPartitionsLeadership) {
  service_.reset();
  // Two nodes' replicas of the same log: node 1 leads first, then node 2.
  ReplicaPartitions r1(partitions_);
  ReplicaPartitions r2(partitions_);
  r2.leading = false;
  auto n1 = open_replicated(r1, 1);
  auto n2 = open_replicated(r2, 2);
  ASSERT_TRUE(n1 && n2);
  int32_t p = offsets_partition_for("g", kPartitions);
  n1->on_partition_leader(p, 1, 1);
  n2->on_partition_leader(p, 1, 1);
  ASSERT_TRUE(wait_served(*n1, "g"));
  std::string member = stable_group(*n1, "g");
  ASSERT_EQ(commit(*n1, "g", 0, 11, 1, member), ErrorCode::none);

  r1.leading = false;
  r2.leading = true;
  n1->on_partition_leader(p, 2, 2);
  n2->on_partition_leader(p, 2, 2);
  ASSERT_TRUE(wait_served(*n2, "g"));
  settle(*n1);
  EXPECT_EQ(heartbeat(*n1, "g", member, 1), ErrorCode::not_coordinator);
  // The new coordinator has the group Stable with its member and generation, and its offsets.
  EXPECT_EQ(heartbeat(*n2, "g", member, 1), ErrorCode::none);
  EXPECT_EQ(committed(*n2, "g", 0), 11);
  ASSERT_EQ(commit(*n2, "g", 0, 12, 1, member), ErrorCode::none);
  EXPECT_EQ(committed(*n2, "g", 0), 12);
}

}  // namespace
}  // namespace ordo::broker
