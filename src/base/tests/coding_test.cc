#include "base/coding.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/random.h"

namespace ordo {
namespace {

TEST(Coding, BigEndianRoundTrip) {
  uint8_t b[8];
  store_be16(b, 0x1234);
  EXPECT_EQ(b[0], 0x12);
  EXPECT_EQ(load_be16(b), 0x1234);
  store_be32(b, 0xdeadbeef);
  EXPECT_EQ(b[0], 0xde);
  EXPECT_EQ(b[3], 0xef);
  EXPECT_EQ(load_be32(b), 0xdeadbeefu);
  store_be64(b, 0x0102030405060708ULL);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[7], 8);
  EXPECT_EQ(load_be64(b), 0x0102030405060708ULL);
}

TEST(Coding, ZigZagKnownValues) {
  EXPECT_EQ(zigzag_encode32(0), 0u);
  EXPECT_EQ(zigzag_encode32(-1), 1u);
  EXPECT_EQ(zigzag_encode32(1), 2u);
  EXPECT_EQ(zigzag_encode32(-2), 3u);
  EXPECT_EQ(zigzag_encode32(INT32_MAX), 0xfffffffeu);
  EXPECT_EQ(zigzag_encode32(INT32_MIN), 0xffffffffu);
  EXPECT_EQ(zigzag_decode64(zigzag_encode64(INT64_MIN)), INT64_MIN);
}

TEST(Coding, VarintRoundTripRandom) {
  Random rng(42);
  for (int i = 0; i < 100000; ++i) {
    int64_t v = int64_t(rng.next()) >> rng.below(64);
    uint8_t buf[kMaxVarint64Bytes];
    size_t n = put_varint64(buf, v);
    ASSERT_EQ(n, varint64_size(v));
    auto d = get_varint64({buf, n});
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->value, v);
    EXPECT_EQ(d->size, n);
    // Every strict prefix is incomplete.
    for (size_t k = 0; k < n; ++k) ASSERT_FALSE(get_varint64({buf, k}).has_value());
  }
}

TEST(Coding, Varint32RejectsOverlongAndOverflow) {
  // Six bytes of continuation: longer than any int32 varint.
  std::vector<uint8_t> overlong = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01};
  EXPECT_FALSE(get_varint32(overlong).has_value());
  // Five bytes whose value exceeds 32 bits.
  std::vector<uint8_t> big = {0xff, 0xff, 0xff, 0xff, 0x7f};
  EXPECT_FALSE(get_varint32(big).has_value());
  std::vector<uint8_t> max = {0xfe, 0xff, 0xff, 0xff, 0x0f};
  auto d = get_varint32(max);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->value, INT32_MAX);
}

TEST(Coding, Varint64RejectsMoreThan64Bits) {
  std::vector<uint8_t> v(10, 0xff);
  v[9] = 0x02;
  EXPECT_FALSE(get_varint64(v).has_value());
  v[9] = 0x01;
  EXPECT_TRUE(get_varint64(v).has_value());
}

}  // namespace
}  // namespace ordo
