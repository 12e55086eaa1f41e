#include "broker/topics.h"

#include <limits>
#include <tuple>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/crc32c.h"
#include "base/file.h"
#include "broker/config.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using storage::testing::TempDir;

TopicMap sample() {
  TopicMap m;
  m["orders"] = TopicInfo{"orders", random_topic_id(), 3, {{"retention.ms", "1000"}}};
  m["a.b_c-d"] = TopicInfo{"a.b_c-d", random_topic_id(), 1, {}};
  return m;
}

const std::vector<PendingCreate> kCreating = {{"new", 0, 600}, {"orders", 3, 5}};

TEST(TopicRegistry, EncodeDecodeRoundTrip) {
  TopicMap m = sample();
  std::string text = TopicRegistry::encode(m, {"old"}, kCreating);
  TopicMap back;
  std::vector<std::string> deleting;
  std::vector<PendingCreate> creating;
  ASSERT_TRUE(TopicRegistry::decode(text, back, deleting, creating));
  EXPECT_EQ(back, m);
  EXPECT_EQ(deleting, std::vector<std::string>{"old"});
  EXPECT_EQ(creating, kCreating);
}

TEST(TopicRegistry, EveryFlippedByteOrTruncationIsDetected) {
  std::string text = TopicRegistry::encode(sample(), {"old"}, kCreating);
  for (size_t i = 0; i < text.size(); ++i) {
    std::string bad = text;
    bad[i] ^= 0x20;
    TopicMap m;
    std::vector<std::string> d;
    std::vector<PendingCreate> c;
    EXPECT_FALSE(TopicRegistry::decode(bad, m, d, c)) << "flip at " << i;
  }
  for (size_t n = 0; n < text.size(); ++n) {
    TopicMap m;
    std::vector<std::string> d;
    std::vector<PendingCreate> c;
    EXPECT_FALSE(TopicRegistry::decode(text.substr(0, n), m, d, c)) << "cut at " << n;
  }
}

TEST(TopicRegistry, ACreatingLineWithABadRangeIsRefused) {
  for (const char* line : {"creating t 5 5", "creating t -1 2", "creating t 2 1", "creating .. 0 1",
                           "creating t 0", "creating t 0 x"}) {
    std::string body = fmt::format("ordo-topics 1\n{}\n", line);
    std::string text = body + fmt::format("crc32c {:08x}\n", crc32c(0, body.data(), body.size()));
    TopicMap m;
    std::vector<std::string> d;
    std::vector<PendingCreate> c;
    EXPECT_FALSE(TopicRegistry::decode(text, m, d, c)) << line;
  }
}

TEST(TopicRegistry, PersistsChangesAndRefusesACorruptFile) {
  TempDir tmp;
  {
    auto reg = TopicRegistry::open(tmp.path());
    ASSERT_TRUE(reg);
    EXPECT_TRUE((*reg)->snapshot()->empty());
    ASSERT_TRUE((*reg)->put(TopicInfo{"x", random_topic_id(), 2, {}}));
    ASSERT_TRUE((*reg)->put(TopicInfo{"y", random_topic_id(), 1, {}}));
    ASSERT_TRUE((*reg)->begin_delete("y"));
    ASSERT_TRUE((*reg)->begin_create({"z", 0, 4}));
    ASSERT_TRUE((*reg)->begin_create({"x", 2, 3}));
  }
  {
    auto reg = TopicRegistry::open(tmp.path());
    ASSERT_TRUE(reg);
    EXPECT_EQ((*reg)->snapshot()->size(), 1u);
    EXPECT_EQ((*reg)->pending_deletes(), std::vector<std::string>{"y"});
    ASSERT_TRUE((*reg)->end_delete("y"));
    EXPECT_TRUE((*reg)->pending_deletes().empty());
    EXPECT_EQ((*reg)->pending_creates(), (std::vector<PendingCreate>{{"z", 0, 4}, {"x", 2, 3}}));
    ASSERT_TRUE((*reg)->end_create("z"));
    // Registering the topic ends its creation in the same write.
    ASSERT_TRUE((*reg)->put(TopicInfo{"x", random_topic_id(), 3, {}}));
    EXPECT_TRUE((*reg)->pending_creates().empty());
  }
  std::string path = tmp.path() + "/topics";
  std::string text = read_file(path, 1 << 20).value();
  text[text.size() / 2] ^= 0x01;
  ASSERT_TRUE(write_file_atomic(path, text));
  auto reg = TopicRegistry::open(tmp.path());
  ASSERT_FALSE(reg);
  EXPECT_EQ(reg.error().code, Errc::corrupt);
}

TEST(TopicConfigs, ResolveAndValidate) {
  BrokerConfig b;
  auto s = resolve_topic_settings(b, {{"retention.ms", "-1"},
                                      {"segment.bytes", "1048576"},
                                      {"message.timestamp.type", "LogAppendTime"},
                                      {"cleanup.policy", "compact,delete"}});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->log.retention_ms, -1);
  EXPECT_EQ(s->log.segment_bytes, 1048576);
  EXPECT_EQ(s->timestamp_type, model::TimestampType::log_append_time);
  EXPECT_EQ(s->max_message_bytes, b.message_max_bytes);
  EXPECT_FALSE(validate_topic_config("retention.ms", "-2"));
  EXPECT_FALSE(validate_topic_config("cleanup.policy", "sometimes"));
  EXPECT_FALSE(validate_topic_config("segment.bytes", "10"));
  EXPECT_FALSE(validate_topic_config("retention.ms", "1 000"));
  EXPECT_FALSE(validate_topic_config("unknown.thing", "1"));
  for (const auto& d : topic_config_defs()) {
    EXPECT_TRUE(validate_topic_config(d.name, topic_config_default(b, d.name))) << d.name;
  }
}

TEST(TopicConfigs, EveryKafkaTopicConfigIsAccepted) {
  // Kafka 3.9's topic configs: each one is known, its default validates, and a value of the
  // wrong type is refused.
  const std::vector<std::string> kafka = {
      "cleanup.policy",
      "compression.gzip.level",
      "compression.lz4.level",
      "compression.type",
      "compression.zstd.level",
      "delete.retention.ms",
      "file.delete.delay.ms",
      "flush.messages",
      "flush.ms",
      "follower.replication.throttled.replicas",
      "index.interval.bytes",
      "leader.replication.throttled.replicas",
      "local.retention.bytes",
      "local.retention.ms",
      "max.compaction.lag.ms",
      "max.message.bytes",
      "message.downconversion.enable",
      "message.format.version",
      "message.timestamp.after.max.ms",
      "message.timestamp.before.max.ms",
      "message.timestamp.difference.max.ms",
      "message.timestamp.type",
      "min.cleanable.dirty.ratio",
      "min.compaction.lag.ms",
      "min.insync.replicas",
      "preallocate",
      "remote.log.copy.disable",
      "remote.log.delete.on.disable",
      "remote.storage.enable",
      "retention.bytes",
      "retention.ms",
      "segment.bytes",
      "segment.index.bytes",
      "segment.jitter.ms",
      "segment.ms",
      "unclean.leader.election.enable",
  };
  std::vector<std::string> defined;
  for (const auto& d : topic_config_defs()) defined.emplace_back(d.name);
  EXPECT_EQ(defined, kafka);  // all of them, in name order
  BrokerConfig b;
  EXPECT_EQ(topic_config_default(b, "compression.type"), "producer");
  EXPECT_EQ(topic_config_default(b, "segment.index.bytes"), "10485760");
  EXPECT_EQ(topic_config_default(b, "leader.replication.throttled.replicas"), "");
  for (const auto& [name, good, bad] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"compression.type", "zstd", "brotli"},
           {"compression.gzip.level", "9", "0"},
           {"compression.lz4.level", "17", "18"},
           {"compression.zstd.level", "-5", "23"},
           {"file.delete.delay.ms", "0", "-1"},
           {"flush.messages", "1", "0"},
           {"flush.ms", "100", "x"},
           {"follower.replication.throttled.replicas", "0:1,2:1", "0:1,x"},
           {"leader.replication.throttled.replicas", "*", "**"},
           {"local.retention.bytes", "-2", "-3"},
           {"local.retention.ms", "1000", "soon"},
           {"message.downconversion.enable", "false", "no"},
           {"message.format.version", "0.10.2-IV0", "3.0-X"},
           {"message.timestamp.after.max.ms", "0", "-1"},
           {"message.timestamp.before.max.ms", "1000", "1e3"},
           {"message.timestamp.difference.max.ms", "1000", "-5"},
           {"preallocate", "true", "TRUE!"},
           {"remote.log.copy.disable", "true", "1"},
           {"remote.log.delete.on.disable", "false", ""},
           {"remote.storage.enable", "false", "true"},
           {"segment.index.bytes", "4", "3"},
           {"segment.jitter.ms", "5", "-5"},
           {"unclean.leader.election.enable", "true", "yes"},
       }) {
    EXPECT_TRUE(validate_topic_config(name, good)) << name << "=" << good;
    EXPECT_FALSE(validate_topic_config(name, bad)) << name << "=" << bad;
  }
}

TEST(TopicConfigs, CompressionAndTimestampSettings) {
  BrokerConfig b;
  auto plain = resolve_topic_settings(b, {});
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->compression_codec);  // producer: stored as sent
  EXPECT_EQ(plain->timestamp_before_max_ms, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(plain->timestamp_after_max_ms, std::numeric_limits<int64_t>::max());

  auto zstd = resolve_topic_settings(b, {{"compression.type", "zstd"},
                                         {"compression.zstd.level", "9"},
                                         {"compression.gzip.level", "2"}});
  ASSERT_TRUE(zstd);
  EXPECT_EQ(zstd->compression_codec, uint8_t(4));
  EXPECT_EQ(zstd->compression_level, 9);  // the zstd level, not gzip's
  auto none = resolve_topic_settings(b, {{"compression.type", "uncompressed"}});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->compression_codec, uint8_t(0));
  EXPECT_FALSE(none->compression_level);
  auto lz4 = resolve_topic_settings(b, {{"compression.type", "lz4"}});
  ASSERT_TRUE(lz4);
  EXPECT_EQ(lz4->compression_codec, uint8_t(3));
  EXPECT_FALSE(lz4->compression_level);  // Kafka's default 9: the fast compressor

  // The deprecated difference limit fills in the side that is not set.
  auto ts = resolve_topic_settings(b, {{"message.timestamp.difference.max.ms", "5000"},
                                       {"message.timestamp.after.max.ms", "100"}});
  ASSERT_TRUE(ts);
  EXPECT_EQ(ts->timestamp_before_max_ms, 5000);
  EXPECT_EQ(ts->timestamp_after_max_ms, 100);
}

}  // namespace
}  // namespace ordo::broker
