#include "model/topic_partition.h"

#include <gtest/gtest.h>

namespace ordo::model {
namespace {

TEST(TopicPartition, NameRules) {
  EXPECT_TRUE(is_valid_topic_name("orders"));
  EXPECT_TRUE(is_valid_topic_name("a.b_c-D9"));
  EXPECT_TRUE(is_valid_topic_name(std::string(249, 'x')));
  EXPECT_FALSE(is_valid_topic_name(std::string(250, 'x')));
  EXPECT_FALSE(is_valid_topic_name(""));
  EXPECT_FALSE(is_valid_topic_name("."));
  EXPECT_FALSE(is_valid_topic_name(".."));
  EXPECT_FALSE(is_valid_topic_name("a/b"));
  EXPECT_FALSE(is_valid_topic_name("a b"));
}

TEST(TopicPartition, DirNames) {
  TopicPartition tp{"my-topic", 12};
  EXPECT_EQ(tp.to_string(), "my-topic-12");
  auto p = parse_partition_dir("my-topic-12");
  ASSERT_TRUE(p);
  EXPECT_EQ(*p, tp);
  EXPECT_FALSE(parse_partition_dir("nopartition"));
  EXPECT_FALSE(parse_partition_dir("t-"));
  EXPECT_FALSE(parse_partition_dir("-1"));
  EXPECT_FALSE(parse_partition_dir("t-01"));
  EXPECT_FALSE(parse_partition_dir("t-+1"));
  EXPECT_EQ(parse_partition_dir("t--1")->topic, "t-");  // topic "t-", partition 1
  EXPECT_FALSE(parse_partition_dir("t-x"));
  EXPECT_FALSE(parse_partition_dir("bad name-0"));
}

}  // namespace
}  // namespace ordo::model
