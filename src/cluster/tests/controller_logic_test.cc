#include "cluster/controller_logic.h"

#include <set>

#include <gtest/gtest.h>

#include "cluster/placement.h"

namespace ordo::cluster {
namespace {

BrokerRecord broker(NodeId id, uint64_t incarnation = 7,
                    std::optional<std::string> rack = std::nullopt) {
  BrokerRecord b;
  b.id = id;
  b.incarnation = incarnation;
  b.host = "127.0.0.1";
  b.port = 9000 + id;
  b.peer_host = "127.0.0.1";
  b.peer_port = 19000 + id;
  b.rack = std::move(rack);
  return b;
}

// The controller's state with its log: every command goes through the codec and is applied at
// the next offset, as the controller group would.
struct Log {
  ClusterState state;
  int64_t offset = 0;
  Result<bool> apply(const MetadataCommand& c) {
    auto decoded = decode_command(encode_command(c));
    EXPECT_TRUE(decoded);
    return state.apply(*decoded, offset++);
  }
  void apply_all(const std::vector<MetadataCommand>& commands) {
    for (const auto& c : commands) {
      auto r = apply(c);
      ASSERT_TRUE(r) << r.error().to_string();
    }
  }
};

ControllerOptions options() {
  ControllerOptions o;
  o.session_timeout_ms = 9000;
  o.fence_retry_ms = 1000;
  o.default_replication_factor = 3;
  o.default_partitions = 2;
  return o;
}

void register_brokers(ControllerLogic& logic, Log& log, int n, int64_t now,
                      std::optional<std::string> rack = std::nullopt) {
  for (int i = 1; i <= n; ++i) {
    auto r = logic.on_register(log.state, broker(i, 7, rack), now);
    ASSERT_TRUE(r);
    log.apply_all(*r);
  }
}

TEST(ControllerLogic, SilentBrokersAreFencedAfterTheSessionAndUnfencedByTheirNextHeartbeat) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 3, 0);
  for (const auto& b : log.state.brokers()) {
    EXPECT_EQ(b.epoch, 1);
    EXPECT_FALSE(b.fenced);
  }
  // Brokers 1 and 2 heartbeat every 2 s; broker 3 is silent after registering at 0.
  for (int64_t t = 2000; t <= 8000; t += 2000) {
    for (NodeId id : {1, 2}) EXPECT_TRUE(logic.on_heartbeat(log.state, id, 1, t)->empty());
    EXPECT_TRUE(logic.tick(log.state, t).empty());
  }
  EXPECT_TRUE(logic.tick(log.state, 8999).empty());
  auto fence = logic.tick(log.state, 9000);
  ASSERT_EQ(fence.size(), 1u);
  EXPECT_EQ(std::get<FenceBroker>(fence[0]), (FenceBroker{3, 1}));
  // Not applied yet: proposed again only after fence_retry_ms.
  EXPECT_TRUE(logic.tick(log.state, 9999).empty());
  EXPECT_EQ(logic.tick(log.state, 10000).size(), 1u);
  log.apply_all(fence);
  EXPECT_TRUE(log.state.broker(3)->fenced);
  EXPECT_TRUE(logic.tick(log.state, 11000).empty());  // 1 and 2 heartbeat at 10000 below
  for (NodeId id : {1, 2}) ASSERT_TRUE(logic.on_heartbeat(log.state, id, 1, 10000));
  // Broker 3 comes back.
  auto back = logic.on_heartbeat(log.state, 3, 1, 12000);
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), 1u);
  EXPECT_EQ(std::get<UnfenceBroker>((*back)[0]), (UnfenceBroker{3, 1}));
  log.apply_all(*back);
  EXPECT_FALSE(log.state.broker(3)->fenced);
  // Its session runs from that heartbeat; the others' from 10000.
  auto later = logic.tick(log.state, 19000);
  ASSERT_EQ(later.size(), 2u);
  EXPECT_EQ(std::get<FenceBroker>(later[0]).id, 1);
  EXPECT_EQ(std::get<FenceBroker>(later[1]).id, 2);
  EXPECT_TRUE(logic.tick(log.state, 19500).empty());
  EXPECT_EQ(logic.tick(log.state, 21000).size(), 3u);
}

TEST(ControllerLogic, ANewLeaderGivesEveryBrokerAFullSession) {
  Log log;
  {
    ControllerLogic old(options(), 0);
    register_brokers(old, log, 3, 0);
  }
  // The next leader takes over at 50000: none of the brokers has heartbeaten to it.
  ControllerLogic logic(options(), 50000);
  EXPECT_TRUE(logic.tick(log.state, 50000).empty());
  ASSERT_TRUE(logic.on_heartbeat(log.state, 2, 1, 55000));
  EXPECT_TRUE(logic.tick(log.state, 58999).empty());
  auto fence = logic.tick(log.state, 59000);
  ASSERT_EQ(fence.size(), 2u);
  EXPECT_EQ(std::get<FenceBroker>(fence[0]).id, 1);
  EXPECT_EQ(std::get<FenceBroker>(fence[1]).id, 3);
  // reset(): leadership lost and won again later.
  logic.reset(70000);
  EXPECT_EQ(logic.last_heartbeat(2), std::nullopt);
  EXPECT_TRUE(logic.tick(log.state, 78999).empty());
  EXPECT_EQ(logic.tick(log.state, 79000).size(), 3u);
}

TEST(ControllerLogic, RegistrationsRetriesAndEpochs) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 1, 0);
  // The same process registering again (a lost answer): nothing to propose, epoch stays.
  auto retry = logic.on_register(log.state, broker(1), 100);
  ASSERT_TRUE(retry);
  EXPECT_TRUE(retry->empty());
  // A restart (new incarnation) registers again at the next epoch.
  auto again = logic.on_register(log.state, broker(1, 8), 200);
  ASSERT_TRUE(again);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ(std::get<RegisterBroker>((*again)[0]).broker.epoch, 2);
  log.apply_all(*again);
  EXPECT_EQ(log.state.broker(1)->incarnation, 8u);
  // Heartbeats of the old registration, or of an unknown broker, are refused.
  auto stale = logic.on_heartbeat(log.state, 1, 1, 300);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::invalid_argument);
  auto unknown = logic.on_heartbeat(log.state, 9, 1, 300);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::not_found);
  // Records that cannot be registrations.
  for (auto bad : {broker(-1), broker(2, 0)}) EXPECT_FALSE(logic.on_register(log.state, bad, 0));
  BrokerRecord no_port = broker(2);
  no_port.port = 0;
  EXPECT_FALSE(logic.on_register(log.state, no_port, 0));
  BrokerRecord empty_rack = broker(2, 7, "");
  EXPECT_FALSE(logic.on_register(log.state, empty_rack, 0));

  // Kafka's way: fenced until the first heartbeat.
  ControllerOptions o = options();
  o.fence_on_register = true;
  ControllerLogic kafka(o, 0);
  auto reg = kafka.on_register(log.state, broker(5), 0);
  ASSERT_TRUE(reg);
  log.apply_all(*reg);
  EXPECT_TRUE(log.state.broker(5)->fenced);
  auto hb = kafka.on_heartbeat(log.state, 5, 1, 10);
  ASSERT_TRUE(hb);
  log.apply_all(*hb);
  EXPECT_FALSE(log.state.broker(5)->fenced);
}

TEST(ControllerLogic, ProducerIdBlocksFollowEachOther) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 2, 0);
  auto a = logic.allocate_producer_ids(log.state, 1, 0);
  ASSERT_TRUE(a);
  EXPECT_EQ(std::get<AllocateProducerIds>(*a), (AllocateProducerIds{1, 0, 1000}));
  // A second decision on the same state contradicts the first once that one is applied.
  auto b = logic.allocate_producer_ids(log.state, 2, 0);
  ASSERT_TRUE(log.apply(*a));
  EXPECT_FALSE(log.apply(*b));
  auto c = logic.allocate_producer_ids(log.state, 2, 0);
  EXPECT_EQ(std::get<AllocateProducerIds>(*c), (AllocateProducerIds{2, 1000, 1000}));
  ASSERT_TRUE(log.apply(*c));
  EXPECT_EQ(log.state.next_producer_id(), 2000);
  auto unknown = logic.allocate_producer_ids(log.state, 9, 0);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::not_found);
}

TopicId id_of(uint8_t b) {
  TopicId id{};
  id[0] = b;
  return id;
}

TEST(ControllerLogic, CreateTopicPlacesOverUnfencedBrokersOrChecksTheGivenAssignment) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 4, 0);
  log.apply_all({FenceBroker{4, 1}});
  const std::optional<std::vector<std::vector<NodeId>>> none;
  storage::LogConfig settings;
  settings.retention_ms = 1234;

  // Defaults: 2 partitions, rf 3, over brokers 1-3 (4 is fenced).
  auto made = logic.create_topic(log.state, "orders", -1, -1, none, {{"retention.ms", "1234"}},
                                 settings, id_of(1), 1);
  ASSERT_TRUE(made) << made.error().message;
  ASSERT_EQ(made->size(), 2u);
  const auto& create = std::get<CreateTopic>(std::get<Command>((*made)[0]));
  EXPECT_EQ(create.name, "orders");
  EXPECT_EQ(create.id, id_of(1));
  EXPECT_EQ(create.log, settings);
  ASSERT_EQ(create.replicas.size(), 2u);
  for (const auto& r : create.replicas) {
    EXPECT_EQ(std::set<NodeId>(r.begin(), r.end()), (std::set<NodeId>{1, 2, 3}));
  }
  EXPECT_NE(create.replicas[0][0], create.replicas[1][0]);  // leaders spread
  EXPECT_EQ(std::get<TopicConfigs>((*made)[1]),
            (TopicConfigs{"orders", {{"retention.ms", "1234"}}}));
  log.apply_all(*made);
  auto snap = log.state.table().snapshot();
  EXPECT_EQ(snap->find(model::TopicPartition{"orders", 1})->group, 2);
  EXPECT_EQ(log.state.topic_configs().at("orders").at("retention.ms"), "1234");

  auto code = [&](const TopicResult& r) { return r ? TopicErrc::none : r.error().code; };
  EXPECT_EQ(code(logic.create_topic(log.state, "orders", 1, 1, none, {}, settings, id_of(2), 1)),
            TopicErrc::topic_already_exists);
  EXPECT_EQ(code(logic.create_topic(log.state, "a/b", 1, 1, none, {}, settings, id_of(2), 1)),
            TopicErrc::invalid_topic);
  EXPECT_EQ(code(logic.create_topic(log.state, "t", 0, 1, none, {}, settings, id_of(2), 1)),
            TopicErrc::invalid_partitions);
  EXPECT_EQ(code(logic.create_topic(log.state, "t", 1, 0, none, {}, settings, id_of(2), 1)),
            TopicErrc::invalid_replication_factor);
  // Four brokers are registered but one is fenced: rf 4 cannot be met.
  auto rf4 = logic.create_topic(log.state, "t", 1, 4, none, {}, settings, id_of(2), 1);
  EXPECT_EQ(code(rf4), TopicErrc::invalid_replication_factor);
  EXPECT_NE(rf4.error().message.find("only 3 broker(s)"), std::string::npos);
  storage::LogConfig broken;
  broken.segment_bytes = 1;
  EXPECT_EQ(code(logic.create_topic(log.state, "t", 1, 1, none, {}, broken, id_of(2), 1)),
            TopicErrc::invalid_config);

  // Manual assignments.
  using Sets = std::vector<std::vector<NodeId>>;
  auto manual = [&](Sets sets, int32_t partitions = -1, int16_t rf = -1) {
    return code(
        logic.create_topic(log.state, "m", partitions, rf, sets, {}, settings, id_of(3), 1));
  };
  EXPECT_EQ(manual({{1, 2}, {2, 3}}), TopicErrc::none);
  EXPECT_EQ(manual({{1, 2}, {2, 3}}, 2), TopicErrc::invalid_request);
  EXPECT_EQ(manual({{1, 2}, {2, 3}}, -1, 2), TopicErrc::invalid_request);
  EXPECT_EQ(manual({}), TopicErrc::invalid_replica_assignment);
  EXPECT_EQ(manual({{1, 2}, {3}}), TopicErrc::invalid_replica_assignment);  // uneven rf
  EXPECT_EQ(manual({{1, 1}}), TopicErrc::invalid_replica_assignment);       // twice
  EXPECT_EQ(manual({{1, 9}}), TopicErrc::invalid_replica_assignment);       // unknown
  EXPECT_EQ(manual({{1, 4}}), TopicErrc::invalid_replica_assignment);       // fenced
  EXPECT_EQ(manual({{}}), TopicErrc::invalid_replica_assignment);
  auto m = logic.create_topic(log.state, "m", -1, -1, Sets{{3, 1}}, {}, settings, id_of(3), 1);
  ASSERT_TRUE(m);
  ASSERT_EQ(m->size(), 1u);  // no configs, no TopicConfigs
  EXPECT_EQ(std::get<CreateTopic>(std::get<Command>((*m)[0])).replicas, (Sets{{3, 1}}));

  // Two creations decided on the same state: the second one's apply fails, changes nothing.
  auto x = logic.create_topic(log.state, "x", 1, 1, none, {}, settings, id_of(4), 1);
  auto y = logic.create_topic(log.state, "x", 1, 1, none, {}, settings, id_of(5), 1);
  log.apply_all(*x);
  auto second = log.apply((*y)[0]);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::already_exists);
}

TEST(ControllerLogic, CreatePartitionsKeepsTheTopicsReplicationFactor) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 3, 0);
  const std::optional<std::vector<std::vector<NodeId>>> none;
  auto made = logic.create_topic(log.state, "t", 1, 2, none, {}, {}, id_of(1), 1);
  ASSERT_TRUE(made);
  log.apply_all(*made);
  auto code = [&](const TopicResult& r) { return r ? TopicErrc::none : r.error().code; };
  EXPECT_EQ(code(logic.create_partitions(log.state, "nope", 3, none, 1)), TopicErrc::unknown_topic);
  EXPECT_EQ(code(logic.create_partitions(log.state, "t", 1, none, 1)),
            TopicErrc::invalid_partitions);
  EXPECT_EQ(code(logic.create_partitions(log.state, "t", 0, none, 1)),
            TopicErrc::invalid_partitions);
  using Sets = std::vector<std::vector<NodeId>>;
  EXPECT_EQ(code(logic.create_partitions(log.state, "t", 3, Sets{{1, 2}}, 1)),
            TopicErrc::invalid_replica_assignment);  // two new partitions, one set
  EXPECT_EQ(code(logic.create_partitions(log.state, "t", 2, Sets{{1}}, 1)),
            TopicErrc::invalid_replica_assignment);  // rf 1 in a topic of rf 2
  auto grown = logic.create_partitions(log.state, "t", 4, none, 1);
  ASSERT_TRUE(grown);
  const auto& add = std::get<AddPartitions>(std::get<Command>((*grown)[0]));
  EXPECT_EQ(add.from, 1);
  ASSERT_EQ(add.replicas.size(), 3u);
  for (const auto& r : add.replicas) EXPECT_EQ(r.size(), 2u);
  log.apply_all(*grown);
  EXPECT_EQ(log.state.table().snapshot()->find("t")->partitions.size(), 4u);
  // Replicas over the whole topic: 8 over 3 brokers, within one of each other.
  auto load = load_of(*log.state.table().snapshot());
  for (NodeId b : {1, 2, 3}) {
    EXPECT_GE(load.replicas[b], 2);
    EXPECT_LE(load.replicas[b], 3);
  }
  // Fewer unfenced brokers than the topic's rf.
  log.apply_all({FenceBroker{1, 1}, FenceBroker{2, 1}});
  EXPECT_EQ(code(logic.create_partitions(log.state, "t", 5, none, 1)),
            TopicErrc::invalid_replication_factor);
}

TEST(ControllerLogic, DeleteAndConfigureTopics) {
  Log log;
  ControllerLogic logic(options(), 0);
  register_brokers(logic, log, 1, 0);
  const std::optional<std::vector<std::vector<NodeId>>> none;
  auto made = logic.create_topic(log.state, "t", 1, 1, none, {{"a", "1"}}, {}, id_of(1), 1);
  ASSERT_TRUE(made);
  log.apply_all(*made);
  storage::LogConfig compacted;
  compacted.cleanup_policy = storage::CleanupPolicy::compact;
  auto set = logic.set_topic_configs(log.state, "t", {{"cleanup.policy", "compact"}}, compacted);
  ASSERT_TRUE(set);
  log.apply_all(*set);
  EXPECT_EQ(log.state.table().snapshot()->find("t")->log, compacted);
  EXPECT_EQ(log.state.topic_configs().at("t"),
            (std::map<std::string, std::string>{{"cleanup.policy", "compact"}}));
  EXPECT_FALSE(logic.set_topic_configs(log.state, "u", {}, {}));
  EXPECT_FALSE(logic.delete_topic(log.state, "u"));
  EXPECT_EQ(logic.delete_topic(log.state, "u").error().code, TopicErrc::unknown_topic);
  auto del = logic.delete_topic(log.state, "t");
  ASSERT_TRUE(del);
  log.apply_all(*del);
  EXPECT_EQ(log.state.table().snapshot()->find("t"), nullptr);
  EXPECT_TRUE(log.state.topic_configs().empty());
}

TEST(ControllerLogic, IndexedAssignmentsMustCoverEveryPartitionOnce) {
  using Sets = std::vector<std::vector<NodeId>>;
  auto ok = assignment_in_order({{1, {2}}, {0, {1}}});
  ASSERT_EQ(ok.index(), 0u);
  EXPECT_EQ(std::get<0>(ok), (Sets{{1}, {2}}));
  for (auto bad : std::vector<std::vector<std::pair<int32_t, std::vector<NodeId>>>>{
           {{0, {1}}, {0, {2}}}, {{1, {1}}}, {{-1, {1}}}, {{0, {1}}, {2, {1}}}}) {
    auto r = assignment_in_order(bad);
    ASSERT_EQ(r.index(), 1u);
    EXPECT_EQ(std::get<1>(r).code, TopicErrc::invalid_replica_assignment);
  }
}

}  // namespace
}  // namespace ordo::cluster
