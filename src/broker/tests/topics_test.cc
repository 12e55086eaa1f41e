#include "broker/topics.h"

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

}  // namespace
}  // namespace ordo::broker
