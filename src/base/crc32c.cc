#include "base/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the table CRC assumes little-endian");

namespace ordo {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected Castagnoli polynomial

struct Tables {
  uint32_t t[8][256];
};

constexpr Tables make_tables() {
  Tables tb{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    tb.t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (int s = 1; s < 8; ++s) tb.t[s][i] = (tb.t[s - 1][i] >> 8) ^ tb.t[0][tb.t[s - 1][i] & 0xff];
  }
  return tb;
}

constexpr Tables kTables = make_tables();

#if defined(__x86_64__)
// One dependent chain of crc32 instructions runs at a third of the unit's throughput (3-cycle
// latency, 1 per cycle issue), so long inputs go as three interleaved streams over adjacent
// blocks, combined at the end. The raw CRC (no pre/post inversion) is linear:
//   crc(c, A || B) = shift(crc(c, A), |B|) ^ crc(0, B),
// where shift(x, n) = crc(x, n zero bytes) is a linear map of x, tabulated for n = kBlock.
constexpr size_t kBlock = 8192;

__attribute__((target("sse4.2"))) uint32_t crc_hw_chain(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = uint32_t(c);
  while (n > 0) {
    c32 = _mm_crc32_u8(c32, *p++);
    --n;
  }
  return c32;
}

struct ShiftTable {
  uint32_t t[4][256];
  uint32_t apply(uint32_t x) const {
    return t[0][x & 0xff] ^ t[1][(x >> 8) & 0xff] ^ t[2][(x >> 16) & 0xff] ^ t[3][x >> 24];
  }
};

// Only called when the CPU has SSE4.2.
const ShiftTable& block_shift() {
  static const ShiftTable table = [] {
    static const uint8_t zeros[kBlock] = {};
    uint32_t basis[32];
    for (int i = 0; i < 32; ++i) basis[i] = crc_hw_chain(1u << i, zeros, kBlock);
    ShiftTable tb{};
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = 0;
        for (int bit = 0; bit < 8; ++bit) {
          if (b & (1u << bit)) v ^= basis[8 * k + bit];
        }
        tb.t[k][b] = v;
      }
    }
    return tb;
  }();
  return table;
}

__attribute__((target("sse4.2"))) uint32_t crc_hw(uint32_t crc, const uint8_t* p, size_t n) {
  if (n >= 3 * kBlock) {
    const ShiftTable& shift = block_shift();
    while (n >= 3 * kBlock) {
      uint64_t c0 = crc, c1 = 0, c2 = 0;
      for (size_t i = 0; i < kBlock; i += 8) {
        uint64_t w0, w1, w2;
        std::memcpy(&w0, p + i, 8);
        std::memcpy(&w1, p + kBlock + i, 8);
        std::memcpy(&w2, p + 2 * kBlock + i, 8);
        c0 = _mm_crc32_u64(c0, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
      }
      crc = shift.apply(shift.apply(uint32_t(c0)) ^ uint32_t(c1)) ^ uint32_t(c2);
      p += 3 * kBlock;
      n -= 3 * kBlock;
    }
  }
  return crc_hw_chain(crc, p, n);
}
#endif

bool detect_hw() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

const bool kHasHw = detect_hw();

}  // namespace

uint32_t crc32c_software(uint32_t crc, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = kTables.t[7][lo & 0xff] ^ kTables.t[6][(lo >> 8) & 0xff] ^ kTables.t[5][(lo >> 16) & 0xff] ^
        kTables.t[4][lo >> 24] ^ kTables.t[3][hi & 0xff] ^ kTables.t[2][(hi >> 8) & 0xff] ^
        kTables.t[1][(hi >> 16) & 0xff] ^ kTables.t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    c = kTables.t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    --n;
  }
  return ~c;
}

uint32_t crc32c_hardware(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  return ~crc_hw(~crc, static_cast<const uint8_t*>(data), n);
#else
  return crc32c_software(crc, data, n);
#endif
}

bool crc32c_has_hardware() {
  return kHasHw;
}

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  return kHasHw ? crc32c_hardware(crc, data, n) : crc32c_software(crc, data, n);
}

}  // namespace ordo
