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
    if (crc32c_has_hardware()) {
      EXPECT_EQ(crc32c_hardware(0, data.data(), len), sw) << len;
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

}  // namespace
}  // namespace ordo
