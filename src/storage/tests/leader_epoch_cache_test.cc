#include "storage/leader_epoch_cache.h"

#include <gtest/gtest.h>

#include "base/file.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {
namespace {

TEST(LeaderEpochCache, AssignPersistTruncate) {
  testing::TempDir dir;
  std::string path = dir.path() + "/leader-epoch-checkpoint";
  {
    auto c = LeaderEpochCache::load(path);
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->latest());
    ASSERT_TRUE(c->assign(1, Offset(0)));
    ASSERT_TRUE(c->assign(1, Offset(5)));  // same epoch: ignored
    ASSERT_TRUE(c->assign(3, Offset(10)));
    ASSERT_TRUE(c->assign(4, Offset(20)));
  }
  auto text = read_file(path, 1000);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, "0\n3\n1 0\n3 10\n4 20\n");
  auto c = LeaderEpochCache::load(path);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->entries().size(), 3u);
  EXPECT_EQ(*c->epoch_for(Offset(9)), 1);
  EXPECT_EQ(*c->epoch_for(Offset(10)), 3);
  EXPECT_EQ(c->end_offset_for(2, Offset(30))->second, Offset(10));
  EXPECT_EQ(c->end_offset_for(2, Offset(30))->first, 1);
  EXPECT_EQ(c->end_offset_for(9, Offset(30))->second, Offset(30));
  EXPECT_FALSE(c->end_offset_for(0, Offset(30)));
  ASSERT_TRUE(c->truncate_from_end(Offset(15)));
  EXPECT_EQ(c->latest()->epoch, 3);
  ASSERT_TRUE(c->truncate_from_start(Offset(12)));
  ASSERT_EQ(c->entries().size(), 1u);
  EXPECT_EQ(c->entries()[0], (EpochEntry{3, Offset(12)}));
}

TEST(LeaderEpochCache, MalformedFileIsCorrupt) {
  testing::TempDir dir;
  std::string path = dir.path() + "/leader-epoch-checkpoint";
  ASSERT_TRUE(write_file_atomic(path, std::string_view("0\n2\n3 10\n1 20\n")));
  auto c = LeaderEpochCache::load(path);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::corrupt);
}

}  // namespace
}  // namespace ordo::storage
