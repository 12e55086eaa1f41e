// The RocksDB table view: latest value per key, tombstones, positions in the same batch,
// reopen, refusals that leave the data untouched, and the byte formats of docs/connect.md.

#include "connect/table_view.h"

#include <map>

#include <gtest/gtest.h>

#include "connect/rebuild.h"
#include "storage/tests/test_util.h"

namespace ordo::connect {
namespace {

using storage::testing::TempDir;
using Change = TableView::Change;
using Entry = TableView::Entry;
namespace tf = table_format;

const model::TopicPartition kTp{"users", 0};

TEST(TableView, KeepsTheLatestValueAndTheNextOffset) {
  TempDir dir;
  auto view = TableView::open(dir.path() + "/v");
  ASSERT_TRUE(view) << view.error().to_string();
  TableView& v = **view;
  EXPECT_EQ(*v.position(kTp), std::nullopt);
  std::vector<Change> first = {{"a", "1", 0}, {"b", "2", 1}, {"a", "3", 2}};
  ASSERT_TRUE(v.apply(kTp, first, 3));
  EXPECT_EQ(**v.get("a"), (Entry{"3", 2, kTp}));
  EXPECT_EQ(**v.get("b"), (Entry{"2", 1, kTp}));
  EXPECT_EQ(*v.position(kTp), 3);
  // A tombstone deletes; offsets may have gaps (a compacted topic); the position may pass
  // the last change (records the view ignores still count as applied).
  std::vector<Change> second = {{"b", std::nullopt, 5}, {"c", "", 9}};
  ASSERT_TRUE(v.apply(kTp, second, 12));
  EXPECT_EQ(*v.get("b"), std::nullopt);
  EXPECT_EQ(**v.get("c"), (Entry{"", 9, kTp}));
  EXPECT_EQ(*v.position(kTp), 12);
  // Another partition has its own position.
  model::TopicPartition other{"users", 3};
  ASSERT_TRUE(v.apply(other, std::vector<Change>{{"z", "26", 0}}, 1));
  auto all = v.positions();
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, (std::vector<std::pair<model::TopicPartition, int64_t>>{{kTp, 12}, {other, 1}}));
}

TEST(TableView, SurvivesReopen) {
  TempDir dir;
  {
    auto v = TableView::open(dir.path() + "/v");
    ASSERT_TRUE(v);
    ASSERT_TRUE((*v)->apply(kTp, std::vector<Change>{{"k", "v", 4}}, 5));
  }
  auto v = TableView::open(dir.path() + "/v");
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(**(*v)->get("k"), (Entry{"v", 4, kTp}));
  EXPECT_EQ(*(*v)->position(kTp), 5);
  // A second process cannot open it while this one has it.
  auto again = TableView::open(dir.path() + "/v");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::io);
}

TEST(TableView, RefusesChangesBehindThePositionAndWritesNothing) {
  TempDir dir;
  auto view = TableView::open(dir.path() + "/v");
  ASSERT_TRUE(view);
  TableView& v = **view;
  ASSERT_TRUE(v.apply(kTp, std::vector<Change>{{"a", "1", 0}, {"b", "1", 1}}, 2));
  for (const auto& [changes, next] : std::vector<std::pair<std::vector<Change>, int64_t>>{
           {{{"a", "old", 1}}, 3},               // below the position
           {{{"a", "x", 5}, {"b", "y", 4}}, 6},  // not increasing
           {{{"a", "x", 5}}, 5},                 // position not past the change
           {{}, 1},                              // position going back
       }) {
    auto r = v.apply(kTp, changes, next);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
  EXPECT_EQ(**v.get("a"), (Entry{"1", 0, kTp}));
  EXPECT_EQ(*v.position(kTp), 2);
}

TEST(TableView, ScansByPrefixInKeyOrder) {
  TempDir dir;
  auto view = TableView::open(dir.path() + "/v");
  ASSERT_TRUE(view);
  std::vector<Change> changes = {
      {"user/2", "b", 0}, {"user/1", "a", 1}, {"order/1", "o", 2}, {"user/3", "c", 3}};
  ASSERT_TRUE((*view)->apply(kTp, changes, 4));
  auto users = (*view)->scan("user/", 10);
  ASSERT_TRUE(users);
  ASSERT_EQ(users->size(), 3u);
  EXPECT_EQ((*users)[0].first, "user/1");
  EXPECT_EQ((*users)[2].second, (Entry{"c", 3, kTp}));
  EXPECT_EQ((*view)->scan("user/", 2)->size(), 2u);
  EXPECT_EQ((*view)->scan("", 100)->size(), 4u);  // data only, no positions
  // Pages: keys after the last one of the previous page.
  auto next = (*view)->scan("user/", 2, std::string_view("user/2"));
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 1u);
  EXPECT_EQ((*next)[0].first, "user/3");
  EXPECT_EQ((*view)->scan("user/", 2, std::string_view("user/3"))->size(), 0u);
  EXPECT_EQ((*view)->scan("user/", 9, std::string_view("user/10"))->size(), 2u);  // not a key
  EXPECT_EQ((*view)->scan("user/", 9, std::string_view("a"))->size(), 3u);  // before the prefix
  EXPECT_EQ((*view)->scan("user/", 9, std::string_view("z"))->size(), 0u);  // past it
}

// A rebuild's progress: the live view was ahead when the rebuild paused it, so the targets
// grew; done still ends equal to the total (100%), never above it.
TEST(RebuildProgress, OffsetsDoneNeverPassTheTotal) {
  const model::TopicPartition a{"t", 0}, b{"t", 1};
  RebuildProgress p;
  std::map<model::TopicPartition, int64_t> start{{a, 10}, {b, 0}}, target{{a, 110}, {b, 50}};
  std::map<model::TopicPartition, int64_t> pos{{a, 60}, {b, 0}};
  count_offsets(p, start, target, pos);
  EXPECT_EQ(p.offsets_total, 150);
  EXPECT_EQ(p.offsets_done, 50);
  target[a] = 130;  // the live view's position at the pause
  target[b] = 70;
  pos = {{a, 130}, {b, 70}};
  count_offsets(p, start, target, pos);
  EXPECT_EQ(p.offsets_total, 190);
  EXPECT_EQ(p.offsets_done, 190);
  pos[a] = 200;  // a position past the target (offsets compaction removed) counts as there
  count_offsets(p, start, target, pos);
  EXPECT_EQ(p.offsets_done, p.offsets_total);
}

TEST(TableView, ATruncateMarkerDeletesWhatItsPartitionWroteBeforeIt) {
  TempDir dir;
  auto view = TableView::open(dir.path() + "/v");
  ASSERT_TRUE(view);
  TableView& v = **view;
  const model::TopicPartition p1{"users", 1}, orders{"orders", 0};
  ASSERT_TRUE(v.apply(kTp, std::vector<Change>{{"a", "1", 0}, {"b", "1", 1}}, 2));
  ASSERT_TRUE(v.apply(p1, std::vector<Change>{{"c", "1", 0}}, 1));
  ASSERT_TRUE(v.apply(orders, std::vector<Change>{{"o", "1", 0}, {"b", "from orders", 1}}, 2));
  // In one batch: a put before the marker goes, a put after it stays; "b" now belongs to
  // orders and other partitions' keys are not touched.
  Change marker{"{}", "t", 4, true};
  ASSERT_TRUE(v.apply(kTp, std::vector<Change>{{"d", "1", 3}, marker, {"e", "1", 5}}, 6));
  EXPECT_EQ(*v.get("a"), std::nullopt);
  EXPECT_EQ(*v.get("d"), std::nullopt);
  EXPECT_EQ(*v.get("{}"), std::nullopt);
  EXPECT_EQ(**v.get("e"), (Entry{"1", 5, kTp}));
  EXPECT_EQ(**v.get("b"), (Entry{"from orders", 1, orders}));
  EXPECT_EQ(**v.get("c"), (Entry{"1", 0, p1}));
  EXPECT_EQ(**v.get("o"), (Entry{"1", 0, orders}));
  EXPECT_EQ(*v.position(kTp), 6);
}

TEST(TableViewFormat, EncodingsRoundTripAndBadBytesAreRefused) {
  // Entry: offset, partition and topic length big-endian, the topic, then the value.
  const model::TopicPartition tp{"t", 258};
  std::string e = tf::encode_entry(tp, 0x0102030405060708, "val");
  EXPECT_EQ(e, std::string("\x01\x02\x03\x04\x05\x06\x07\x08\0\0\x01\x02\0\x01tval", 18));
  EXPECT_EQ(*tf::decode_entry(e), (Entry{"val", 0x0102030405060708, tp}));
  for (size_t cut = 0; cut < tf::kEntryHeaderBytes + 1; ++cut) {
    EXPECT_FALSE(tf::decode_entry(e.substr(0, cut))) << cut;
  }
  for (size_t at : {size_t(0), size_t(8)}) {  // a negative offset, a negative partition
    std::string bad = e;
    bad[at] = char(0x80);
    EXPECT_FALSE(tf::decode_entry(bad)) << at;
  }
  std::string no_topic = e;
  no_topic[13] = 0;  // a topic of 0 bytes
  EXPECT_FALSE(tf::decode_entry(no_topic));
  std::string long_topic = e;
  long_topic[13] = 5;  // longer than the bytes after it
  EXPECT_FALSE(tf::decode_entry(long_topic));
  // Position: exactly 8 bytes.
  EXPECT_EQ(*tf::decode_position(tf::encode_position(42)), 42);
  EXPECT_FALSE(tf::decode_position(tf::encode_position(42) + "x"));
  EXPECT_FALSE(tf::decode_position("1234567"));
  // Keys: 'd' + key; 'p' + topic + NUL + big-endian partition.
  EXPECT_EQ(tf::data_key("k"), "dk");
  std::string pk = tf::position_key({"t.x", 258});
  EXPECT_EQ(pk, std::string("pt.x\0\x00\x00\x01\x02", 9));
  EXPECT_EQ(*tf::decode_position_key(pk), (model::TopicPartition{"t.x", 258}));
  for (size_t cut = 0; cut < pk.size(); ++cut) {
    EXPECT_FALSE(tf::decode_position_key(pk.substr(0, cut))) << cut;
  }
}

}  // namespace
}  // namespace ordo::connect
