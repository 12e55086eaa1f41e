// GroupService with a manual clock: offset expiry and replay of __consumer_offsets.

#include "broker/groups.h"

#include <future>

#include <gtest/gtest.h>
#include <asio/post.hpp>

#include "cluster/partitions.h"
#include "model/record_batch.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using coordinator::OffsetCommitValue;
using protocol::ErrorCode;

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
    std::promise<decltype(fn(*service_))> p;
    asio::post(service_->executor(), [&] { p.set_value(fn(*service_)); });
    return p.get_future().get();
  }

  ErrorCode commit(const std::string& group, int32_t partition, int64_t offset) {
    std::promise<ErrorCode> p;
    asio::post(service_->executor(), [&] {
      OffsetCommitValue v;
      v.offset = offset;
      v.commit_timestamp_ms = clock_.now_ms();
      service_->commit(group, {{"t", partition, v}}, [&](ErrorCode e) { p.set_value(e); });
    });
    return p.get_future().get();
  }

  std::optional<int64_t> committed(const std::string& group, int32_t partition) {
    return on_service([&](GroupService& s) -> std::optional<int64_t> {
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

  storage::testing::TempDir dir_;
  ManualClock clock_{1'700'000'000'000};
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
    s.coordinator().join(j, [&](coordinator::JoinResponse r) { id = r.member_id; });
    coordinator::SyncRequest sr;
    sr.group_id = "live";
    sr.generation_id = 1;
    sr.member_id = id;
    s.coordinator().sync(sr, [](coordinator::SyncResponse) {});
    return id;
  });
  ASSERT_FALSE(member.empty());
  ASSERT_EQ(commit("live", 0, 4), ErrorCode::none);
  clock_.advance(2 * kRetentionMs);
  expire();
  EXPECT_EQ(committed("live", 0), 4);
}

}  // namespace
}  // namespace ordo::broker
