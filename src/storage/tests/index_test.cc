#include "storage/index.h"

#include <gtest/gtest.h>

namespace ordo::storage {
namespace {

TEST(OffsetIndex, LookupFloorByOffsetAndPosition) {
  OffsetIndex idx(Offset(100));
  EXPECT_EQ(idx.lookup(Offset(150)).position, 0);
  idx.append(Offset(110), 4000);
  idx.append(Offset(130), 8200);
  idx.append(Offset(170), 12500);
  EXPECT_EQ(idx.lookup(Offset(99)).offset, Offset(100));
  EXPECT_EQ(idx.lookup(Offset(109)).position, 0);
  EXPECT_EQ(idx.lookup(Offset(110)).position, 4000);
  EXPECT_EQ(idx.lookup(Offset(169)).position, 8200);
  EXPECT_EQ(idx.lookup(Offset(1000000)).position, 12500);
  EXPECT_EQ(idx.lookup_position(8199).offset, Offset(110));
  EXPECT_EQ(idx.lookup_position(8200).offset, Offset(130));
  idx.truncate_to_position(8200);
  EXPECT_EQ(idx.entries(), 1u);
  EXPECT_EQ(idx.last()->offset, Offset(110));
}

TEST(OffsetIndex, SerializeParseAndReject) {
  OffsetIndex idx(Offset(5));
  idx.append(Offset(7), 100);
  idx.append(Offset(9), 200);
  auto bytes = idx.serialize();
  ASSERT_EQ(bytes.size(), 16u);
  auto back = OffsetIndex::parse(Offset(5), bytes, 300);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->lookup(Offset(8)).position, 100);
  // Partial entry, a position past the log, a non-increasing entry.
  EXPECT_FALSE(OffsetIndex::parse(Offset(5), std::span(bytes).first(12), 300));
  EXPECT_FALSE(OffsetIndex::parse(Offset(5), bytes, 200));
  auto swapped = bytes;
  std::swap_ranges(swapped.begin(), swapped.begin() + 8, swapped.begin() + 8);
  EXPECT_FALSE(OffsetIndex::parse(Offset(5), swapped, 300));
}

TEST(TimeIndex, LookupBeforeIsStrict) {
  TimeIndex idx(Offset(0));
  idx.maybe_append(100, Offset(5));
  idx.maybe_append(100, Offset(6));  // not larger: ignored
  idx.maybe_append(200, Offset(9));
  EXPECT_EQ(idx.entries(), 2u);
  EXPECT_FALSE(idx.lookup_before(100).has_value());
  EXPECT_EQ(idx.lookup_before(101)->offset, Offset(5));
  EXPECT_EQ(idx.lookup_before(200)->offset, Offset(5));
  EXPECT_EQ(idx.lookup_before(201)->offset, Offset(9));
  auto back = TimeIndex::parse(Offset(0), idx.serialize(), Offset(10));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->last()->timestamp, 200);
  EXPECT_FALSE(TimeIndex::parse(Offset(0), idx.serialize(), Offset(9)));
  idx.truncate_to_offset(Offset(9));
  EXPECT_EQ(idx.entries(), 1u);
}

}  // namespace
}  // namespace ordo::storage
