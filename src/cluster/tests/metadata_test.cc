#include "cluster/metadata.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "base/file.h"

namespace ordo::cluster {
namespace {

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string text_of(const std::vector<uint8_t>& b) {
  return std::string(b.begin(), b.end());
}

TopicId id_of(uint8_t b) {
  TopicId id{};
  id[0] = b;
  id[15] = uint8_t(0xa0 | b);
  return id;
}

// Every field away from its default (and a double that only round-trips exactly when all
// its digits are written).
storage::LogConfig odd_log() {
  storage::LogConfig c;
  c.segment_bytes = 123457;
  c.segment_ms = 3600001;
  c.index_interval_bytes = 8191;
  c.retention_bytes = 987654321;
  c.retention_ms = -1;
  c.flush_mode = storage::FlushMode::interval;
  c.flush_interval_ms = 17;
  c.preallocate = storage::Preallocate::zero_fill;
  c.preallocate_bytes = 8192;
  c.max_batch_bytes = 1048577;
  c.producer_id_expiration_ms = 99;
  c.cleanup_policy = storage::CleanupPolicy::compact_and_delete;
  c.delete_retention_ms = 5;
  c.min_cleanable_dirty_ratio = 0.1 + 0.2;
  c.min_compaction_lag_ms = 7;
  c.max_compaction_lag_ms = INT64_MAX;
  return c;
}

BrokerRecord broker(NodeId id, int64_t epoch = 1, std::optional<std::string> rack = std::nullopt) {
  BrokerRecord b;
  b.id = id;
  b.incarnation = 0xfedcba9876543210ull + uint64_t(id);  // above INT64_MAX
  b.host = "127.0.0.1";
  b.port = 9000 + id;
  b.peer_host = "127.0.0.1";
  b.peer_port = 19000 + id;
  b.rack = std::move(rack);
  b.epoch = epoch;
  return b;
}

std::vector<MetadataCommand> one_of_each() {
  return {
      Command(CreateTopic{"orders", id_of(1), odd_log(), {{1, 2, 3}, {2, 3, 1}}}),
      Command(AddPartitions{"orders", 2, {{3, 1, 2}}}),
      Command(DeletePartitions{"orders", 2}),
      Command(DeleteTopic{"orders"}),
      Command(SetConfig{"orders", odd_log()}),
      Command(SetLeader{{"orders", 1}, 3, 7}),
      RegisterBroker{broker(2, 3, "rack-a")},
      RegisterBroker{broker(4)},
      FenceBroker{2, 3},
      UnfenceBroker{2, 3},
      AllocateProducerIds{2, 1000, 1000},
      TopicConfigs{"orders", {{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}},
      TopicConfigs{"orders", {}},
  };
}

TEST(MetadataCodec, EveryCommandRoundTripsExactly) {
  for (const auto& c : one_of_each()) {
    auto bytes = encode_command(c);
    auto back = decode_command(bytes);
    ASSERT_TRUE(back) << text_of(bytes) << ": " << back.error().to_string();
    EXPECT_EQ(*back, c) << text_of(bytes);
    EXPECT_EQ(encode_command(*back), bytes);  // canonical
  }
  auto log = decode_log_config(encode_log_config(odd_log()));
  ASSERT_TRUE(log);
  EXPECT_EQ(*log, odd_log());
  EXPECT_EQ(log->min_cleanable_dirty_ratio, 0.1 + 0.2);
}

TEST(MetadataCodec, TheEncodingIsTheDocumentedOne) {
  EXPECT_EQ(text_of(encode_command(FenceBroker{2, 5})),
            R"({"epoch":5,"id":2,"type":"fence_broker","v":1})");
  EXPECT_EQ(text_of(encode_command(AllocateProducerIds{1, 0, 1000})),
            R"({"count":1000,"first":0,"node":1,"type":"allocate_producer_ids","v":1})");
  EXPECT_EQ(text_of(encode_command(Command(AddPartitions{"t", 1, {{1, 2}}}))),
            R"({"from":1,"name":"t","replicas":[[1,2]],"type":"add_partitions","v":1})");
  EXPECT_EQ(text_of(encode_command(RegisterBroker{broker(1)})),
            R"({"broker":{"epoch":1,"fenced":false,"host":"127.0.0.1","id":1,)"
            R"("incarnation":18364758544493064721,"peer_host":"127.0.0.1","peer_port":19001,)"
            R"("port":9001,"rack":null},"type":"register_broker","v":1})");
}

Errc decode_error(const std::string& s) {
  auto r = decode_command(bytes_of(s));
  if (r) return Errc::ok;
  return r.error().code;
}

TEST(MetadataCodec, DecodeRefusesWhatIsNotAValidCommand) {
  // Not JSON, or not an object.
  for (std::string s : {"", "{", "nul", "[1]", "\"x\"", "17",
                        "{\"v\":1,\"type\":\"delete_topic\","
                        "\"name\":\"\xff\"}"}) {
    EXPECT_EQ(decode_error(s), Errc::corrupt) << s;
  }
  // A version this build does not read is not corruption.
  EXPECT_EQ(decode_error(R"({"v":2,"type":"delete_topic","name":"t"})"), Errc::invalid_argument);
  EXPECT_EQ(decode_error(R"({"v":1,"type":"delete_topic","name":"t"})"), Errc::ok);
  const char* bad[] = {
      R"({"type":"delete_topic","name":"t"})",                      // no version
      R"({"v":0,"type":"delete_topic","name":"t"})",                // version 0
      R"({"v":"1","type":"delete_topic","name":"t"})",              // a string version
      R"({"v":1,"type":"drop_everything"})",                        // unknown type
      R"({"v":1,"type":"delete_topic"})",                           // missing field
      R"({"v":1,"type":"delete_topic","name":7})",                  // wrong type
      R"({"v":1,"type":"delete_topic","name":""})",                 // not a topic name
      R"({"v":1,"type":"delete_topic","name":"a/b"})",              // not a topic name
      R"({"v":1,"type":"delete_partitions","name":"t","from":0})",  // keeps >= 1
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[[]]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[[1,1]]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[[-1]]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[[2147483648]]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":1,"replicas":[[1.5]]})",
      R"({"v":1,"type":"add_partitions","name":"t","from":-1,"replicas":[[1]]})",
      R"({"v":1,"type":"set_leader","topic":"t","partition":0,"leader":-2,"leader_epoch":1})",
      R"({"v":1,"type":"set_leader","topic":"t","partition":-1,"leader":1,"leader_epoch":1})",
      R"({"v":1,"type":"fence_broker","id":1,"epoch":0})",
      R"({"v":1,"type":"unfence_broker","id":-1,"epoch":1})",
      R"({"v":1,"type":"allocate_producer_ids","node":1,"first":0,"count":0})",
      R"({"v":1,"type":"allocate_producer_ids","node":1,"first":-1,"count":10})",
      R"({"v":1,"type":"allocate_producer_ids","node":1,"first":0,"count":1048577})",
      R"({"v":1,"type":"allocate_producer_ids","node":1,"first":9223372036854775807,"count":1})",
      R"({"v":1,"type":"topic_configs","name":"t","configs":{"a":1}})",
      R"({"v":1,"type":"topic_configs","name":"t","configs":{"":"x"}})",
      R"({"v":1,"type":"topic_configs","name":"t","configs":[]})",
      R"({"v":1,"type":"register_broker","broker":{"id":1,"incarnation":0,"host":"h","port":1,)"
      R"("peer_host":"h","peer_port":1,"rack":null,"fenced":false,"epoch":1}})",
      R"({"v":1,"type":"register_broker","broker":{"id":1,"incarnation":1,"host":"h","port":0,)"
      R"("peer_host":"h","peer_port":1,"rack":null,"fenced":false,"epoch":1}})",
      R"({"v":1,"type":"register_broker","broker":{"id":1,"incarnation":1,"host":"h","port":1,)"
      R"("peer_host":"h","peer_port":1,"rack":"","fenced":false,"epoch":1}})",
      R"({"v":1,"type":"register_broker","broker":{"id":1,"incarnation":1,"host":"h","port":1,)"
      R"("peer_host":"h","peer_port":1,"fenced":false,"epoch":1}})",
      R"({"v":1,"type":"register_broker","broker":{"id":1,"incarnation":-1,"host":"h","port":1,)"
      R"("peer_host":"h","peer_port":1,"rack":null,"fenced":false,"epoch":1}})",
  };
  for (const char* s : bad) EXPECT_EQ(decode_error(s), Errc::corrupt) << s;

  // A LogConfig: every field present and valid.
  std::string good = text_of(encode_command(Command(SetConfig{"t", odd_log()})));
  EXPECT_EQ(decode_error(good), Errc::ok);
  for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"\"segment_bytes\":123457", "\"segment_bytes\":1"},
           {"\"segment_bytes\":123457,", ""},
           {"\"flush_mode\":\"interval\"", "\"flush_mode\":\"sometimes\""},
           {"\"min_cleanable_dirty_ratio\":0.30000000000000004",
            "\"min_cleanable_dirty_ratio\":1.5"},
           {"\"index_interval_bytes\":8191", "\"index_interval_bytes\":2147483648"},
           {"\"cleanup_policy\":\"compact,delete\"", "\"cleanup_policy\":true"}}) {
    std::string s = good;
    auto at = s.find(from);
    ASSERT_NE(at, std::string::npos) << from << " in " << s;
    s.replace(at, from.size(), to);
    EXPECT_EQ(decode_error(s), Errc::corrupt) << s;
  }
}

TEST(MetadataCodec, DecodeSurvivesEveryCutAndFlippedByte) {
  std::mt19937_64 rng(7);
  for (const auto& c : one_of_each()) {
    auto bytes = encode_command(c);
    for (size_t n = 0; n < bytes.size(); ++n) {
      auto r = decode_command(std::span<const uint8_t>(bytes.data(), n));
      EXPECT_FALSE(r) << n;  // every proper prefix of an object is cut JSON
    }
    for (int i = 0; i < 300; ++i) {
      auto m = bytes;
      m[rng() % m.size()] ^= uint8_t(1 + rng() % 255);
      auto r = decode_command(m);
      if (r) {  // whatever decodes encodes back to something that decodes the same
        auto again = decode_command(encode_command(*r));
        ASSERT_TRUE(again);
        EXPECT_EQ(*again, *r);
      } else {
        EXPECT_TRUE(r.error().code == Errc::corrupt || r.error().code == Errc::invalid_argument);
      }
    }
  }
}

// ---- ClusterState ----

TEST(ClusterState, BrokersRegisterAgainWithTheNextEpochAndFencingNamesTheEpoch) {
  ClusterState s;
  int64_t at = 0;
  EXPECT_EQ(s.apply(RegisterBroker{broker(1)}, at++).value(), true);
  EXPECT_EQ(s.broker(1)->epoch, 1);
  EXPECT_FALSE(s.broker(1)->fenced);
  // The same registration again (another offset): nothing changes.
  EXPECT_EQ(s.apply(RegisterBroker{broker(1)}, at++).value(), false);
  // A registration that does not follow the current epoch is refused.
  auto skip = s.apply(RegisterBroker{broker(1, 3)}, at);
  ASSERT_FALSE(skip);
  EXPECT_EQ(skip.error().code, Errc::invalid_argument);
  EXPECT_EQ(s.applied_offset(), 1);  // an error changes nothing, the offset included

  EXPECT_EQ(s.apply(FenceBroker{1, 1}, at++).value(), true);
  EXPECT_TRUE(s.broker(1)->fenced);
  EXPECT_EQ(s.apply(FenceBroker{1, 1}, at++).value(), false);
  // Re-registration: a new incarnation and address, epoch 2; the old epoch is stale.
  BrokerRecord again = broker(1, 2);
  again.incarnation = 42;
  again.port = 9999;
  EXPECT_EQ(s.apply(RegisterBroker{again}, at++).value(), true);
  EXPECT_EQ(s.broker(1)->incarnation, 42u);
  EXPECT_EQ(s.broker(1)->port, 9999);
  EXPECT_FALSE(s.broker(1)->fenced);
  auto stale = s.apply(FenceBroker{1, 1}, at);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::invalid_argument);
  EXPECT_FALSE(s.broker(1)->fenced);
  EXPECT_EQ(s.apply(UnfenceBroker{1, 2}, at++).value(), false);  // not fenced
  auto unknown = s.apply(FenceBroker{9, 1}, at);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::not_found);

  EXPECT_EQ(s.apply(RegisterBroker{broker(0)}, at++).value(), true);
  auto all = s.brokers();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, 0);
  EXPECT_EQ(all[1].id, 1);
  EXPECT_EQ(s.broker(5), std::nullopt);
}

TEST(ClusterState, ProducerIdBlocksFollowEachOther) {
  ClusterState s;
  EXPECT_EQ(s.next_producer_id(), 0);
  EXPECT_EQ(s.apply(AllocateProducerIds{1, 0, 1000}, 0).value(), true);
  EXPECT_EQ(s.next_producer_id(), 1000);
  for (int64_t first : {0, 999, 1001}) {
    auto r = s.apply(AllocateProducerIds{2, first, 1000}, 1);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
  EXPECT_EQ(s.apply(AllocateProducerIds{2, 1000, 10}, 1).value(), true);
  EXPECT_EQ(s.next_producer_id(), 1010);
  // A replay of offset 1 (already applied) changes nothing even though it no longer follows.
  EXPECT_EQ(s.apply(AllocateProducerIds{2, 1000, 10}, 1).value(), false);
  EXPECT_EQ(s.next_producer_id(), 1010);
}

TEST(ClusterState, TopicConfigsBelongToAnExistingTopicAndGoWithIt) {
  ClusterState s;
  auto missing = s.apply(TopicConfigs{"t", {{"retention.ms", "1"}}}, 0);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  ASSERT_TRUE(s.apply(Command(CreateTopic{"t", id_of(1), odd_log(), {{1}, {1}}}), 1));
  EXPECT_EQ(s.table().snapshot()->find("t")->partitions[1].group, 2);
  EXPECT_EQ(s.apply(TopicConfigs{"t", {{"retention.ms", "1"}}}, 2).value(), true);
  EXPECT_EQ(s.apply(TopicConfigs{"t", {{"retention.ms", "1"}}}, 3).value(), false);
  EXPECT_EQ(s.topic_configs().at("t").at("retention.ms"), "1");
  EXPECT_EQ(s.apply(TopicConfigs{"t", {}}, 4).value(), true);
  EXPECT_TRUE(s.topic_configs().empty());
  EXPECT_EQ(s.apply(TopicConfigs{"t", {{"a", "b"}}}, 5).value(), true);
  EXPECT_EQ(s.apply(Command(DeleteTopic{"t"}), 6).value(), true);
  EXPECT_TRUE(s.topic_configs().empty());
  EXPECT_EQ(s.table().snapshot()->find("t"), nullptr);
  EXPECT_EQ(s.applied_offset(), 6);
  EXPECT_FALSE(s.apply(Command(DeleteTopic{"t"}), -1));
}

TEST(ClusterState, APartitionsInitialConfigNamesItsReplicasRegisteredIncarnations) {
  ClusterState s;
  ASSERT_TRUE(s.apply(RegisterBroker{broker(3)}, 0));
  ASSERT_TRUE(s.apply(RegisterBroker{broker(1)}, 1));
  PartitionAssignment a;
  a.replicas = {3, 1};
  auto c = initial_config(s, a);
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->voters,
            (std::vector<raft::Member>{{1, broker(1).incarnation}, {3, broker(3).incarnation}}));
  EXPECT_TRUE(c->learners.empty());
  a.replicas = {3, 2};
  auto missing = initial_config(s, a);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

// ---- a model-based test: random logs, replays, checkpoints ----

// A random command: mostly ones that apply, some that contradict the state.
MetadataCommand random_command(std::mt19937_64& rng, const ClusterState& s) {
  auto pick = [&](int n) { return int(rng() % uint64_t(n)); };
  auto snap = s.table().snapshot();
  std::vector<std::string> topics;
  for (const auto& [n, t] : snap->topics) topics.push_back(n);
  std::string any_topic = "t" + std::to_string(pick(6));
  std::string existing = topics.empty() ? any_topic : topics[size_t(pick(int(topics.size())))];
  auto replicas = [&](int count) {
    std::vector<std::vector<NodeId>> r;
    for (int i = 0; i < count; ++i) {
      NodeId a = pick(5);
      r.push_back({a, (a + 1) % 5});
    }
    return r;
  };
  const NodeId node = pick(5);
  auto b = s.broker(node);
  const int64_t epoch = b ? b->epoch : 1;
  switch (pick(12)) {
    case 0:
    case 1: {
      storage::LogConfig log;
      log.retention_ms = pick(3) * 1000 - 1;
      return Command(CreateTopic{any_topic, id_of(uint8_t(pick(2))), log, replicas(1 + pick(3))});
    }
    case 2: {
      const TopicEntry* t = snap->find(existing);
      int32_t from = t ? int32_t(t->partitions.size()) : 0;
      if (pick(4) == 0) from += 1;  // a contradiction
      return Command(AddPartitions{existing, from, replicas(1 + pick(2))});
    }
    case 3:
      return Command(DeletePartitions{existing, 1 + pick(2)});
    case 4:
      return Command(DeleteTopic{existing});
    case 5: {
      storage::LogConfig log = odd_log();
      log.segment_ms = 1 + pick(3);
      return Command(SetConfig{existing, log});
    }
    case 6: {
      const TopicEntry* t = snap->find(existing);
      int32_t epoch_now = t ? t->partitions[0].leader_epoch : 0;
      return Command(SetLeader{{existing, 0}, pick(5), epoch_now + pick(2)});
    }
    case 7: {
      BrokerRecord r = broker(
          node, b ? b->epoch + (pick(5) == 0 ? 0 : 1) : 1,
          pick(2) ? std::optional<std::string>("r" + std::to_string(pick(2))) : std::nullopt);
      r.incarnation = 1 + uint64_t(pick(3));
      return RegisterBroker{r};
    }
    case 8:
      return FenceBroker{node, std::max<int64_t>(1, epoch - pick(2))};
    case 9:
      return UnfenceBroker{node, epoch};
    case 10:
      return AllocateProducerIds{
          node, std::max<int64_t>(0, s.next_producer_id() - (pick(5) == 0 ? 1 : 0)),
          1 + pick(1000)};
    default: {
      std::map<std::string, std::string> c;
      for (int i = pick(3); i > 0; --i) c["k" + std::to_string(pick(3))] = std::to_string(pick(9));
      return TopicConfigs{existing, c};
    }
  }
}

TEST(ClusterState, ReplaysAndCheckpointsGiveTheStateOfAFullReplay) {
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    std::mt19937_64 rng(seed);
    // The log: commands at growing offsets with gaps (Raft's own entries take offsets too),
    // each through the codec as the controller's log keeps it.
    std::vector<std::pair<MetadataCommand, int64_t>> log;
    std::vector<ClusterState> states;  // states[i]: after log[0..i)
    ClusterState full;
    states.push_back(full);
    int64_t offset = 0;
    int applied = 0, refused = 0;
    for (int i = 0; i < 150; ++i) {
      MetadataCommand c = random_command(rng, full);
      offset += 1 + int64_t(rng() % 3);
      auto bytes = encode_command(c);
      auto decoded = decode_command(bytes);
      ASSERT_TRUE(decoded) << text_of(bytes);
      ASSERT_EQ(*decoded, c);
      log.emplace_back(*decoded, offset);
      ClusterState before = full;
      auto r = full.apply(*decoded, offset);
      if (r) {
        ++applied;
        EXPECT_EQ(full.applied_offset(), offset);
      } else {
        ++refused;
        EXPECT_EQ(full, before) << "a refused command changed the state";
      }
      states.push_back(full);
    }
    EXPECT_GT(applied, 75);
    EXPECT_GT(refused, 3);

    auto replay_from = [&](ClusterState s, size_t from) {
      for (size_t i = from; i < log.size(); ++i) {
        (void)s.apply(log[i].first, log[i].second);
      }
      return s;
    };
    for (size_t k = 0; k < states.size(); k += 9) {
      // Restored from a checkpoint at k, then the rest of the log.
      auto restored = ClusterState::restore(states[k].checkpoint());
      ASSERT_TRUE(restored) << restored.error().to_string();
      EXPECT_EQ(*restored, states[k]);
      EXPECT_EQ(restored->checkpoint(), states[k].checkpoint());
      EXPECT_EQ(replay_from(*restored, k), full) << "seed " << seed << " k " << k;
      // The whole log replayed over a state that has seen part of it.
      EXPECT_EQ(replay_from(states[k], 0), full) << "seed " << seed << " k " << k;
    }
    // Every group of the table maps back to its partition.
    auto snap = full.table().snapshot();
    size_t partitions = 0;
    for (const auto& [name, t] : snap->topics) {
      for (size_t p = 0; p < t.partitions.size(); ++p, ++partitions) {
        EXPECT_EQ(snap->find_group(t.partitions[p].group),
                  (model::TopicPartition{name, int32_t(p)}));
        EXPECT_LT(t.partitions[p].group, snap->next_group);
      }
    }
    EXPECT_EQ(snap->groups.size(), partitions);
  }
}

TEST(ClusterState, RestoreRefusesADamagedCheckpoint) {
  ClusterState s;
  ASSERT_TRUE(s.apply(RegisterBroker{broker(1)}, 0));
  ASSERT_TRUE(s.apply(Command(CreateTopic{"t", id_of(1), odd_log(), {{1}, {1}}}), 1));
  ASSERT_TRUE(s.apply(TopicConfigs{"t", {{"a", "b"}}}, 2));
  ASSERT_TRUE(s.apply(AllocateProducerIds{1, 0, 1000}, 3));
  const std::string good = text_of(s.checkpoint());
  ASSERT_TRUE(ClusterState::restore(bytes_of(good)));
  auto expect_refused = [&](const std::string& from, const std::string& to, Errc code) {
    std::string t = good;
    auto at = t.find(from);
    ASSERT_NE(at, std::string::npos) << from << " in " << good;
    t.replace(at, from.size(), to);
    auto r = ClusterState::restore(bytes_of(t));
    ASSERT_FALSE(r) << t;
    EXPECT_EQ(r.error().code, code) << t;
  };
  expect_refused("\"group\":2", "\"group\":1", Errc::corrupt);            // a group twice
  expect_refused("\"next_group\":3", "\"next_group\":2", Errc::corrupt);  // group >= next
  expect_refused("\"topic_configs\":{\"t\"", "\"topic_configs\":{\"u\"", Errc::corrupt);
  expect_refused("\"applied_offset\":3", "\"applied_offset\":-2", Errc::corrupt);
  expect_refused("\"epoch\":1", "\"epoch\":0", Errc::corrupt);
  expect_refused("\"type\":\"checkpoint\"", "\"type\":\"create_topic\"", Errc::corrupt);
  expect_refused("\"v\":1", "\"v\":2", Errc::invalid_argument);
  for (size_t n = 0; n < good.size(); n += 3) {
    EXPECT_FALSE(ClusterState::restore(bytes_of(good.substr(0, n))));
  }
}

// The seeds of tests/fuzz/corpus/metadata_command are also the format's golden files: today's
// encoder must produce exactly the committed bytes, so the log's format cannot change by
// accident. After an intended change, regenerate them with
//   ORDO_WRITE_METADATA_COMMAND_CORPUS=tests/fuzz/corpus/metadata_command
//       build/src/cluster/metadata_test --gtest_filter='*FuzzSeeds*'
// (and bump the version).
TEST(MetadataCodec, FuzzSeedsAreTheCommittedGoldenFiles) {
  const char* out = std::getenv("ORDO_WRITE_METADATA_COMMAND_CORPUS");
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    if (out != nullptr) {
      ASSERT_TRUE(
          write_file_atomic(std::string(out) + "/" + name, std::span<const uint8_t>(bytes)));
    }
    auto committed = read_file(std::string(ORDO_METADATA_COMMAND_CORPUS) + "/" + name, 1 << 20);
    ASSERT_TRUE(committed) << name << ": " << committed.error().to_string();
    EXPECT_EQ(*committed, text_of(bytes)) << name << " differs from what the encoder writes today";
  };
  int i = 0;
  for (const auto& c : one_of_each()) {
    write(fmt::format("{:02}_{}.json", i++, command_name(c)), encode_command(c));
  }
  ClusterState s;
  ASSERT_TRUE(s.apply(RegisterBroker{broker(1, 1, "rack-a")}, 0));
  ASSERT_TRUE(s.apply(RegisterBroker{broker(2)}, 1));
  ASSERT_TRUE(s.apply(Command(CreateTopic{"orders", id_of(1), odd_log(), {{1, 2}, {2, 1}}}), 2));
  ASSERT_TRUE(s.apply(TopicConfigs{"orders", {{"retention.ms", "-1"}}}, 3));
  ASSERT_TRUE(s.apply(AllocateProducerIds{1, 0, 1000}, 5));
  ASSERT_TRUE(s.apply(FenceBroker{2, 1}, 6));
  write("checkpoint.json", s.checkpoint());
}

}  // namespace
}  // namespace ordo::cluster
