#include "broker/producer_ids.h"

#include <set>

#include <gtest/gtest.h>

#include "base/file.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using storage::testing::TempDir;

TEST(ProducerIdFile, RoundTripAndEveryDamageIsCorrupt) {
  auto bytes = encode_producer_id_file(123456);
  ASSERT_EQ(bytes.size(), kProducerIdFileBytes);
  auto back = decode_producer_id_file(bytes);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, 123456);
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t mask : {0x01, 0x80}) {
      auto bad = bytes;
      bad[i] ^= mask;
      auto r = decode_producer_id_file(bad);
      ASSERT_FALSE(r) << "byte " << i;
      EXPECT_EQ(r.error().code, Errc::corrupt);
    }
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_producer_id_file(std::span<const uint8_t>(bytes).first(n))) << n;
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_producer_id_file(longer));
}

TEST(ProducerIdAllocator, IdsAreNeverHandedOutTwiceAcrossRestarts) {
  TempDir dir;
  std::set<int64_t> seen;
  for (int run = 0; run < 3; ++run) {
    auto a = ProducerIdAllocator::open(dir.path());
    ASSERT_TRUE(a) << a.error().to_string();
    // A "crash" after a few ids: the rest of the block is skipped, never reused.
    int n = run == 1 ? int(kProducerIdBlockSize) + 5 : 3;
    for (int i = 0; i < n; ++i) {
      auto id = a->next();
      ASSERT_TRUE(id) << id.error().to_string();
      EXPECT_TRUE(seen.insert(*id).second) << "id " << *id << " handed out twice";
    }
  }
  EXPECT_EQ(*seen.begin(), 0);
}

TEST(ProducerIdAllocator, ADamagedFileStopsTheBroker) {
  TempDir dir;
  {
    auto a = ProducerIdAllocator::open(dir.path());
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->next());
  }
  std::string path = dir.path() + "/" + std::string(ProducerIdAllocator::kFileName);
  ASSERT_TRUE(write_file_atomic(path, std::string_view("not the file")));
  auto a = ProducerIdAllocator::open(dir.path());
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, Errc::corrupt);
}

}  // namespace
}  // namespace ordo::broker
