#include <atomic>
#include <future>
#include <set>

#include <gtest/gtest.h>

#include "cluster/partitions.h"
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

TEST(PartitionTable, EachNewPartitionGetsTheNextGroupIdAndAGroupIsNeverReused) {
  PartitionTable table;
  EXPECT_EQ(table.snapshot()->next_group, 1);  // group 0 is the controller's
  ASSERT_TRUE(table.apply(create("a", 2)));
  ASSERT_TRUE(table.apply(create("b", 1, 2)));
  auto s = table.snapshot();
  EXPECT_EQ(s->find(TopicPartition{"a", 0})->group, 1);
  EXPECT_EQ(s->find(TopicPartition{"a", 1})->group, 2);
  EXPECT_EQ(s->find(TopicPartition{"b", 0})->group, 3);
  EXPECT_EQ(s->find_group(2), (TopicPartition{"a", 1}));
  EXPECT_EQ(s->find_group(0), std::nullopt);
  // A command applied again assigns nothing.
  EXPECT_EQ(table.apply(create("a", 2)).value(), false);
  EXPECT_EQ(table.snapshot()->next_group, 4);

  ASSERT_TRUE(table.apply(AddPartitions{"a", 2, {{kSelf}}}));
  EXPECT_EQ(table.snapshot()->find(TopicPartition{"a", 2})->group, 4);
  ASSERT_TRUE(table.apply(DeletePartitions{"a", 2}));
  EXPECT_EQ(table.snapshot()->find_group(4), std::nullopt);
  ASSERT_TRUE(table.apply(AddPartitions{"a", 2, {{kSelf}}}));
  EXPECT_EQ(table.snapshot()->find(TopicPartition{"a", 2})->group, 5);
  ASSERT_TRUE(table.apply(DeleteTopic{"a"}));
  ASSERT_TRUE(table.apply(create("a", 1, 3)));
  s = table.snapshot();
  EXPECT_EQ(s->find(TopicPartition{"a", 0})->group, 6);
  EXPECT_EQ(s->find_group(1), std::nullopt);
  EXPECT_EQ(s->find_group(6), (TopicPartition{"a", 0}));
  EXPECT_EQ(s->groups.size(), 2u);  // b-0 and a-0

  // A failed batch advances nothing.
  ASSERT_FALSE(table.apply_all({create("c", 3, 4), AddPartitions{"missing", 0, {{kSelf}}}}));
  EXPECT_EQ(table.snapshot()->next_group, 7);

  // A table started from a snapshot rebuilds the group index; copies share the snapshot.
  TableSnapshot start = *table.snapshot();
  start.groups.clear();
  PartitionTable restored(start);
  EXPECT_EQ(*restored.snapshot(), *table.snapshot());
  PartitionTable copy = table;
  EXPECT_EQ(copy.snapshot(), table.snapshot());
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

// ---- the partition seam ----

struct Seam {
  TempDir dir;
  PartitionTable table;
  std::atomic<int> wakeups{0};
  LocalPartitions parts{kSelf, table, [this](const TopicPartition&) { ++wakeups; }};
  std::unique_ptr<storage::LogManager> logs;

  explicit Seam(storage::FlushMode mode) {
    auto o = options_for(dir.path(), mode);
    o.high_watermark = parts.high_watermark_policy();
    logs = std::move(storage::LogManager::open(o).value());
    parts.attach(*logs);
    CreateTopic t = create("t", 2);
    t.log = o.default_config;  // the topic's flush mode is the test's
    EXPECT_TRUE(table.apply(t));
    Reconciler rec(kSelf, *logs, {});
    Reconciler::Report report;
    EXPECT_TRUE(rec.reconcile(*table.snapshot(), report));
  }
  ~Seam() { EXPECT_TRUE(logs->close()); }

  Result<storage::AppendResult> append(const TopicPartition& tp, Consistency c,
                                       std::vector<uint8_t> batch) {
    std::promise<Result<storage::AppendResult>> p;
    auto f = p.get_future();
    parts.append(tp, std::span<uint8_t>(batch), c, storage::AppendOptions{},
                 [&p](Result<storage::AppendResult> r) { p.set_value(std::move(r)); });
    return f.get();
  }
  Result<OffsetAnswer> list(const TopicPartition& tp, int64_t which) {
    std::promise<Result<OffsetAnswer>> p;
    auto f = p.get_future();
    parts.list_offset(tp, which, [&p](Result<OffsetAnswer> r) { p.set_value(std::move(r)); });
    return f.get();
  }
};

TEST(LocalPartitions, LeadershipErrorsNameTheCurrentLeaderAndEpoch) {
  Seam s(storage::FlushMode::none);
  EXPECT_EQ(s.parts.check_leader({"t", 0}), std::nullopt);
  EXPECT_EQ(s.parts.check_leader({"t", 0}, 0), std::nullopt);
  EXPECT_EQ(s.parts.check_leader({"t", 9}),
            (LeaderError{LeaderError::Code::unknown_topic_or_partition, kNoLeader, -1}));
  EXPECT_EQ(s.parts.check_leader({"nope", 0}),
            (LeaderError{LeaderError::Code::unknown_topic_or_partition, kNoLeader, -1}));
  EXPECT_EQ(s.parts.check_leader({"t", 0}, 3),
            (LeaderError{LeaderError::Code::unknown_leader_epoch, kSelf, 0}));

  // Leadership of t-1 moves to node 2 at epoch 4.
  ASSERT_TRUE(s.table.apply(SetLeader{{"t", 1}, 2, 4}));
  EXPECT_EQ(s.parts.check_leader({"t", 1}),
            (LeaderError{LeaderError::Code::not_leader_or_follower, 2, 4}));
  ASSERT_TRUE(s.table.apply(SetLeader{{"t", 1}, kSelf, 5}));
  EXPECT_EQ(s.parts.check_leader({"t", 1}, 4),
            (LeaderError{LeaderError::Code::fenced_leader_epoch, kSelf, 5}));
  EXPECT_EQ(s.parts.check_leader({"t", 1}, 5), std::nullopt);
  ASSERT_TRUE(s.table.apply(SetLeader{{"t", 1}, 2, 6}));
  // An append that reaches a partition this node does not lead is refused, retriably, and
  // writes nothing.
  auto r = s.append({"t", 1}, Consistency::leader, make_batch(2, "x"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::closed);
  auto st = s.logs->status();
  for (const auto& p : st) EXPECT_EQ(p.log_end_offset, Offset(0)) << p.tp.to_string();
}

TEST(LocalPartitions, TheHighWatermarkFollowsTheFlushPolicyAndWakesWaiters) {
  Seam s(storage::FlushMode::none);
  TopicPartition tp{"t", 0};
  auto r = s.append(tp, Consistency::leader, make_batch(3, "a"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->first_offset, Offset(0));
  // Page cache: written is visible, and the waiters were woken once for it.
  EXPECT_EQ(s.list(tp, kLatestOffset).value().offset, 3);
  EXPECT_EQ(s.list(tp, kEarliestOffset).value().offset, 0);
  EXPECT_EQ(s.list(tp, kLatestOffset).value().leader_epoch, 0);
  EXPECT_EQ(s.wakeups.load(), 1);
  auto bad = s.list(tp, -7);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::invalid_argument);
  // The appended batch carries the leader's epoch (0).
  std::promise<Result<storage::ReadResult>> p;
  s.parts.read(tp, {.start = Offset(0)}, [&p](auto res) { p.set_value(std::move(res)); });
  auto read = p.get_future().get();
  ASSERT_TRUE(read) << read.error().to_string();
  EXPECT_EQ(read->high_watermark, Offset(3));
  EXPECT_GT(read->slice.size, 0);
}

TEST(LocalPartitions, AQuorumAppendInDurableModeIsAcknowledgedOnlyOnceFsynced) {
  Seam s(storage::FlushMode::durable);
  TopicPartition tp{"t", 1};
  for (int i = 0; i < 3; ++i) {
    auto r = s.append(tp, Consistency::quorum, make_batch(2, "q" + std::to_string(i)));
    ASSERT_TRUE(r) << r.error().to_string();
    // The callback ran after the sync: what it acknowledges is durable and committed.
    for (const auto& st : s.logs->status()) {
      if (st.tp != tp) continue;
      EXPECT_GE(st.flushed_offset, Offset(r->last_offset.value() + 1));
      EXPECT_GE(st.high_watermark, Offset(r->last_offset.value() + 1));
    }
  }
  EXPECT_EQ(s.list(tp, kLatestOffset).value().offset, 6);
}

TEST(LocalPartitions, DeleteRecordsMovesTheLogStartUpToTheHighWatermarkOnly) {
  Seam s(storage::FlushMode::none);
  TopicPartition tp{"t", 0};
  ASSERT_TRUE(s.append(tp, Consistency::leader, make_batch(2, "d")));
  ASSERT_TRUE(s.append(tp, Consistency::leader, make_batch(2, "e")));
  auto run = [&](int64_t before) {
    std::promise<Result<Truncation>> p;
    auto f = p.get_future();
    s.parts.delete_records(tp, before, [&p](Result<Truncation> r) { p.set_value(std::move(r)); });
    return f.get().value();
  };
  Truncation beyond = run(9);
  ASSERT_TRUE(beyond.error);
  EXPECT_EQ(beyond.error->code, Errc::out_of_range);
  EXPECT_EQ(beyond.low_watermark, 0);
  Truncation to2 = run(2);
  EXPECT_FALSE(to2.error);
  EXPECT_EQ(to2.low_watermark, 2);
  Truncation all = run(-1);
  EXPECT_FALSE(all.error);
  EXPECT_EQ(all.low_watermark, 4);
  EXPECT_EQ(s.list(tp, kEarliestOffset).value().offset, 4);
}

}  // namespace
}  // namespace ordo::cluster
