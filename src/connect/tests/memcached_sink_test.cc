// The memcached sink's entry and position formats: version and kind before the value, every
// cut and bad field refused; a position with its epoch. (The sink against a real memcached:
// tests/integration/test_memcached_sink.py.)

#include "connect/memcached_sink.h"

#include <gtest/gtest.h>

namespace ordo::connect {
namespace {

TEST(MemcachedEntry, RoundTripsAndRefusesDamage) {
  std::string e = encode_memcached_entry(0x0102030405060708, "val");
  EXPECT_EQ(e, std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x00val", 12));
  EXPECT_EQ(*decode_memcached_entry(e), (MemcachedEntry{0x0102030405060708, "val"}));
  std::string d = encode_memcached_entry(7, std::nullopt);
  EXPECT_EQ(d, std::string("\0\0\0\0\0\0\0\x07\x01", 9));
  EXPECT_EQ(*decode_memcached_entry(d), (MemcachedEntry{7, std::nullopt}));
  EXPECT_EQ(*decode_memcached_entry(encode_memcached_entry(0, "")), (MemcachedEntry{0, ""}));
  for (size_t cut = 0; cut < 9; ++cut) EXPECT_FALSE(decode_memcached_entry(e.substr(0, cut)));
  std::string bad = e;
  bad[0] = char(0x80);  // a negative version
  EXPECT_FALSE(decode_memcached_entry(bad));
  bad = e;
  bad[8] = 2;  // no such kind
  EXPECT_FALSE(decode_memcached_entry(bad));
  EXPECT_FALSE(decode_memcached_entry(d + "x"));  // a deleted entry has no value
}

TEST(MemcachedRegistry, RoundTripsAndRefusesDamage) {
  std::vector<std::string> keys = {"k:1", std::string(MemcachedSink::kMaxKeyBytes, 'x'), "a"};
  std::string page = encode_memcached_registry(keys);
  EXPECT_EQ(page.substr(0, 5), std::string("\0\x03k:1", 5));
  EXPECT_EQ(*decode_memcached_registry(page), keys);
  // Appends concatenate: two pages' worth read as one.
  auto twice = *decode_memcached_registry(page + page);
  EXPECT_EQ(twice.size(), 6u);
  EXPECT_EQ(decode_memcached_registry("")->size(), 0u);
  for (size_t cut = 1; cut < page.size(); ++cut) {
    if (cut == 5 || cut == 5 + 2 + MemcachedSink::kMaxKeyBytes) continue;  // whole keys
    EXPECT_FALSE(decode_memcached_registry(page.substr(0, cut))) << cut;
  }
  EXPECT_FALSE(decode_memcached_registry(std::string("\0\0", 2)));  // an empty key
  EXPECT_FALSE(decode_memcached_registry(std::string("\x01\0", 2) + std::string(256, 'k')));
}

// A position names the epoch it was written in: "<next offset> <epoch>".
TEST(MemcachedPosition, RoundTripsAndRefusesOthers) {
  EXPECT_EQ(encode_memcached_position(1234, "987"), "1234 987");
  EXPECT_EQ(*decode_memcached_position("1234 987"), (MemcachedPosition{1234, "987"}));
  EXPECT_EQ(*decode_memcached_position("0 18446744073709551615"),
            (MemcachedPosition{0, "18446744073709551615"}));
  for (const char* bad : {"", "1234", "1234 ", " 987", "-1 5", "12x 5", "1 5x", "1 5 6", "1  5",
                          "1 123456789012345678901"}) {
    EXPECT_FALSE(decode_memcached_position(bad)) << bad;  // "1234": the format without epochs
  }
}

}  // namespace
}  // namespace ordo::connect
