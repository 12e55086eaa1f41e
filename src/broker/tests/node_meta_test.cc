#include "broker/node_meta.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "base/file.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

TEST(NodeMeta, RoundTripsAndRefusesEveryFlipAndTruncation) {
  NodeMeta m{7, 0x0123456789abcdefULL, "prod-east", false};
  auto bytes = encode_node_meta(m);
  ASSERT_EQ(bytes.size(), 20 + m.cluster_id.size() + 4);
  auto back = decode_node_meta(bytes);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, m);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t bit : {uint8_t(1), uint8_t(0x80)}) {
      auto flipped = bytes;
      flipped[i] ^= bit;
      auto r = decode_node_meta(flipped);
      ASSERT_FALSE(r) << "flip at " << i;
      EXPECT_EQ(r.error().code, Errc::corrupt);
    }
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_node_meta(std::span(bytes.data(), n))) << n;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_node_meta(longer));
}

TEST(NodeMeta, CreatedOnceThenKeptAndCheckedAgainstTheConfig) {
  storage::testing::TempDir dir;
  auto first = load_or_create_node_meta(dir.path(), 3, "c1");
  ASSERT_TRUE(first) << first.error().to_string();
  EXPECT_TRUE(first->created);
  EXPECT_NE(first->incarnation, 0u);
  auto again = load_or_create_node_meta(dir.path(), 3, "c1");
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->incarnation, first->incarnation);
  // Another node id or cluster: the directory is not this node's.
  EXPECT_EQ(load_or_create_node_meta(dir.path(), 4, "c1").error().code, Errc::invalid_argument);
  EXPECT_EQ(load_or_create_node_meta(dir.path(), 3, "c2").error().code, Errc::invalid_argument);
  // A damaged file is refused, never replaced by a new identity.
  std::string path = dir.path() + "/node.meta";
  auto text = read_file(path, 4096);
  ASSERT_TRUE(text);
  std::string bad = *text;
  bad[12] ^= 1;
  ASSERT_TRUE(write_file_atomic(path, bad));
  EXPECT_EQ(load_or_create_node_meta(dir.path(), 3, "c1").error().code, Errc::corrupt);
}

}  // namespace
}  // namespace ordo::broker
