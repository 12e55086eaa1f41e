#include "base/crc32c.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/random.h"

namespace ordo {
namespace {

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c_software(0, "123456789", 9), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0);
  EXPECT_EQ(crc32c(0, zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  std::vector<uint8_t> ones(32, 0xff);
  EXPECT_EQ(crc32c(0, ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(0, nullptr, 0), 0u);
}

TEST(Crc32c, HardwareMatchesSoftwareAndIsIncremental) {
  Random rng(7);
  std::vector<uint8_t> data(5000);
  for (auto& b : data) b = uint8_t(rng.next());
  for (size_t len = 0; len < data.size(); len += 1 + rng.below(97)) {
    uint32_t sw = crc32c_software(0, data.data(), len);
    if (crc32c_has_sse42()) {
      EXPECT_EQ(crc32c_sse42(0, data.data(), len), sw) << len;
    }
    size_t cut = rng.below(len + 1);
    uint32_t inc = crc32c(crc32c(0, data.data(), cut), data.data() + cut, len - cut);
    EXPECT_EQ(inc, sw) << len << " " << cut;
  }
}

TEST(Crc32c, LongInputsTakeTheInterleavedPathAndAgree) {
  // Lengths around multiples of the 3 x 8 KiB interleaved round, and split points inside it.
  Random rng(11);
  std::vector<uint8_t> data(200'000);
  for (auto& b : data) b = uint8_t(rng.next());
  for (size_t len : {24575u, 24576u, 24577u, 49152u, 49160u, 100'003u, 200'000u}) {
    uint32_t sw = crc32c_software(0, data.data(), len);
    EXPECT_EQ(crc32c(0, data.data(), len), sw) << len;
    size_t cut = rng.below(len);
    EXPECT_EQ(crc32c(crc32c(0, data.data(), cut), data.data() + cut, len - cut), sw) << len;
  }
}

// The selected implementation and each one this CPU has, against the table, for every length
// up to 1,100 bytes (the carry-less path starts at 256 and folds 256, then 64 bytes per step),
// at unaligned starts, from random states, at lengths around its round sizes up to 64 KiB, and
// continued at a random cut.
TEST(Crc32c, EveryImplementationAgreesWithTheTable) {
  Random rng(13);
  std::vector<uint8_t> data(70'000);
  for (auto& b : data) b = uint8_t(rng.next());
  std::vector<std::pair<const char*, uint32_t (*)(uint32_t, const void*, size_t)>> impls;
  impls.emplace_back("selected", crc32c);
  if (crc32c_has_sse42()) impls.emplace_back("sse42", crc32c_sse42);
  if (crc32c_has_clmul()) impls.emplace_back("clmul", crc32c_clmul);
  std::vector<size_t> lengths;
  for (size_t len = 0; len <= 1100; ++len) lengths.push_back(len);
  for (size_t round : {64u, 256u, 512u, 24576u, 65536u}) {
    for (size_t d = 0; d < 3; ++d) lengths.push_back(round - 1 + d);
  }
  for (auto [name, fn] : impls) {
    for (size_t len : lengths) {
      const size_t start = rng.below(64);
      const auto state = uint32_t(rng.next());
      const uint8_t* p = data.data() + start;
      const uint32_t want = crc32c_software(state, p, len);
      EXPECT_EQ(fn(state, p, len), want) << name << " length " << len << " start " << start;
      const size_t cut = rng.below(len + 1);
      EXPECT_EQ(fn(fn(state, p, cut), p + cut, len - cut), want)
          << name << " length " << len << " cut " << cut;
    }
  }
}

}  // namespace
}  // namespace ordo
