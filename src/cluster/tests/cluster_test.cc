#include <atomic>
#include <future>
#include <set>

#include <gtest/gtest.h>

#include "cluster/reconciler.h"
#include "storage/tests/test_util.h"

namespace ordo::cluster {
namespace {

using model::TopicPartition;
using storage::testing::make_batch;
using storage::testing::TempDir;

constexpr NodeId kSelf = 1;

TopicId id_of(uint8_t b) {
  TopicId id{};
  id[0] = b;
  return id;
}

CreateTopic create(std::string name, int32_t partitions, uint8_t id = 1,
                   std::vector<NodeId> replicas = {kSelf}) {
  CreateTopic c;
  c.name = std::move(name);
  c.id = id_of(id);
  c.replicas.assign(size_t(partitions), replicas);
  return c;
}

// ---- the table ----

TEST(PartitionTable, CommandsChangeItAndApplyingOneAgainChangesNothing) {
  PartitionTable table;
  auto v0 = table.snapshot();
  EXPECT_EQ(v0->version, 0u);
  ASSERT_EQ(table.apply(create("orders", 2)).value(), true);
  auto v1 = table.snapshot();
  EXPECT_EQ(v1->version, 1u);
  EXPECT_TRUE(v0->topics.empty());  // a snapshot never changes
  const PartitionAssignment* p1 = v1->find(TopicPartition{"orders", 1});
  ASSERT_NE(p1, nullptr);
  EXPECT_EQ(p1->replicas, std::vector<NodeId>{kSelf});
  EXPECT_EQ(p1->leader, kSelf);
  EXPECT_EQ(p1->leader_epoch, 0);
  EXPECT_EQ(v1->find(TopicPartition{"orders", 2}), nullptr);

  // The same command again: no change, same version (a replayed log is harmless).
  EXPECT_EQ(table.apply(create("orders", 2)).value(), false);
  EXPECT_EQ(table.snapshot()->version, 1u);
  // The same name with another id contradicts the table.
  auto again = table.apply(create("orders", 2, 9));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::already_exists);

  // Partitions are added from the current count only; the same addition twice is one.
  AddPartitions add{"orders", 2, {{kSelf}, {kSelf}}};
  EXPECT_EQ(table.apply(add).value(), true);
  EXPECT_EQ(table.apply(add).value(), false);
  EXPECT_EQ(table.snapshot()->find("orders")->partitions.size(), 4u);
  auto wrong = table.apply(AddPartitions{"orders", 5, {{kSelf}}});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::invalid_argument);
  EXPECT_EQ(table.apply(DeletePartitions{"orders", 2}).value(), true);
  EXPECT_EQ(table.apply(DeletePartitions{"orders", 2}).value(), false);
  EXPECT_EQ(table.snapshot()->find("orders")->partitions.size(), 2u);

  storage::LogConfig compacted;
  compacted.cleanup_policy = storage::CleanupPolicy::compact;
  EXPECT_EQ(table.apply(SetConfig{"orders", compacted}).value(), true);
  EXPECT_EQ(table.apply(SetConfig{"orders", compacted}).value(), false);
  EXPECT_EQ(table.snapshot()->find("orders")->log.cleanup_policy, storage::CleanupPolicy::compact);

  // Leadership moves forward in epochs only.
  EXPECT_EQ(table.apply(SetLeader{{"orders", 0}, 2, 1}).value(), true);
  EXPECT_EQ(table.apply(SetLeader{{"orders", 0}, 2, 1}).value(), false);
  EXPECT_FALSE(table.apply(SetLeader{{"orders", 0}, kSelf, 1}));
  EXPECT_FALSE(table.apply(SetLeader{{"orders", 5}, kSelf, 2}));

  const uint64_t before = table.snapshot()->version;
  EXPECT_EQ(table.apply(DeleteTopic{"orders"}).value(), true);
  EXPECT_EQ(table.apply(DeleteTopic{"orders"}).value(), false);
  EXPECT_EQ(table.snapshot()->version, before + 1);
  EXPECT_EQ(table.snapshot()->find("orders"), nullptr);
}

TEST(PartitionTable, ACommandThatFailsInABatchChangesNothing) {
  PartitionTable table;
  auto r = table.apply_all({create("a", 1), AddPartitions{"missing", 0, {{kSelf}}}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);
  EXPECT_EQ(table.snapshot()->find("a"), nullptr);
  EXPECT_EQ(table.snapshot()->version, 0u);
}

// ---- the reconciler ----

storage::LogManagerOptions options_for(const std::string& dir, storage::FlushMode mode) {
  storage::LogManagerOptions o;
  o.data_dir = dir;
  o.shards = 2;
  o.default_config.flush_mode = mode;
  o.default_config.segment_bytes = 64 * 1024;
  o.default_config.preallocate_bytes = 64 * 1024;
  o.default_config.retention_ms = -1;  // the test batches' timestamps are from 1970
  return o;
}

std::set<TopicPartition> on_disk(storage::LogManager& logs) {
  std::set<TopicPartition> out;
  for (const auto& s : logs.status()) out.insert(s.tp);
  return out;
}

TEST(Reconciler, PlansOnlyWhatDiffers) {
  PartitionTable table;
  ASSERT_TRUE(table.apply(create("mine", 2)));
  ASSERT_TRUE(table.apply(create("elsewhere", 1, 2, {7})));
  LocalLogs local;
  local[{"mine", 0}] = storage::LogConfig{};
  local[{"gone", 0}] = std::nullopt;
  auto plan = plan_reconcile(*table.snapshot(), kSelf, local);
  ASSERT_EQ(plan.create.size(), 1u);
  EXPECT_EQ(plan.create[0].first, (TopicPartition{"mine", 1}));
  EXPECT_TRUE(plan.configure.empty());
  EXPECT_EQ(plan.remove, std::vector<TopicPartition>{(TopicPartition{"gone", 0})});
  // Limited to one topic.
  auto one = plan_reconcile(*table.snapshot(), kSelf, local, "gone");
  EXPECT_TRUE(one.create.empty());
  EXPECT_EQ(one.remove.size(), 1u);
}

TEST(Reconciler, CreatesAndRemovesLocalLogsToMatchTheTable) {
  TempDir dir;
  auto logs = storage::LogManager::open(options_for(dir.path(), storage::FlushMode::none));
  ASSERT_TRUE(logs) << logs.error().to_string();
  // A log the table does not know and that is not handed to the reconciler stays alone.
  ASSERT_TRUE((*logs)->create_sync({"foreign", 0}, {}));
  PartitionTable table;
  Reconciler rec(kSelf, **logs, {});

  ASSERT_TRUE(table.apply(create("orders", 3)));
  ASSERT_TRUE(table.apply(create("elsewhere", 2, 2, {7})));  // not this node's
  Reconciler::Report report;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), report));
  EXPECT_EQ(report.created.size(), 3u);
  EXPECT_EQ(on_disk(**logs), (std::set<TopicPartition>{
                                 {"foreign", 0}, {"orders", 0}, {"orders", 1}, {"orders", 2}}));

  // Nothing to do twice.
  Reconciler::Report again;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), again));
  EXPECT_TRUE(again.created.empty() && again.removed.empty());

  // Fewer partitions, then a new config, then no topic.
  ASSERT_TRUE(table.apply(DeletePartitions{"orders", 1}));
  Reconciler::Report shrunk;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), shrunk, "orders"));
  EXPECT_EQ(shrunk.removed.size(), 2u);
  EXPECT_EQ(on_disk(**logs), (std::set<TopicPartition>{{"foreign", 0}, {"orders", 0}}));

  storage::LogConfig c;
  c.retention_ms = 1234;
  ASSERT_TRUE(table.apply(SetConfig{"orders", c}));
  Reconciler::Report configured;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), configured));
  EXPECT_TRUE(configured.config_errors.empty());
  EXPECT_EQ(rec.local().at({"orders", 0}), c);

  ASSERT_TRUE(table.apply(DeleteTopic{"orders"}));
  Reconciler::Report deleted;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), deleted));
  EXPECT_EQ(on_disk(**logs), (std::set<TopicPartition>{{"foreign", 0}}));
  ASSERT_TRUE((*logs)->close());
}

TEST(Reconciler, ACreationThatFailsStopsThereAndSaysWhere) {
  TempDir dir;
  auto logs = storage::LogManager::open(options_for(dir.path(), storage::FlushMode::none));
  ASSERT_TRUE(logs) << logs.error().to_string();
  PartitionTable table;
  Reconciler rec(kSelf, **logs, {});
  ASSERT_TRUE(table.apply(create("t", 3)));
  Reconciler::Options o;
  o.before_create = [](const TopicPartition& tp) -> Result<void> {
    if (tp.partition == 2) return make_error(Errc::io, "injected");
    return ok();
  };
  Reconciler::Report report;
  auto r = rec.reconcile(*table.snapshot(), report, "t", o);
  ASSERT_FALSE(r);
  ASSERT_TRUE(report.failed_at);
  EXPECT_EQ(*report.failed_at, (TopicPartition{"t", 2}));
  EXPECT_EQ(report.created.size(), 2u);
  // Undo: the table drops the topic, the reconciler the logs it made.
  ASSERT_TRUE(table.apply(DeleteTopic{"t"}));
  Reconciler::Report undo;
  ASSERT_TRUE(rec.reconcile(*table.snapshot(), undo, "t"));
  EXPECT_EQ(undo.removed.size(), 2u);
  EXPECT_TRUE(on_disk(**logs).empty());
  ASSERT_TRUE((*logs)->close());
}

}  // namespace
}  // namespace ordo::cluster
