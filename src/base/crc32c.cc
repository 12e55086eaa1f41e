#include "base/crc32c.h"

#include "base/assert.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
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

// Carry-less multiplication (VPCLMULQDQ on 512-bit registers, four 128-bit lanes each): the
// raw CRC is the remainder of the message polynomial, so a 128-bit block B followed by F bits
// contributes B * x^F mod P, and B * x^F can be replaced by anything congruent to it modulo P.
// With B = L * x^64 + H (reflected bit order: the first eight bytes L are the higher-degree
// half), L * (x^(F+32) mod P) ^ H * (x^(F-32) mod P) is such a value of at most 96 bits, and
// XORed into the block F bits later it carries B's contribution forward ("folding"; the
// +-32 account for the 32-bit shift of the CRC, the constants are stored reflected and
// shifted left by one because a carry-less product of two reflected values comes out one bit
// short). Four 512-bit accumulators fold 256 bytes per round; at the end they are folded into
// one 128-bit value, which is then ordinary data for the crc32 instruction (state 0), followed
// by the last bytes.

// x^n mod P, reflected, shifted left by one (a fold constant).
constexpr uint64_t fold_constant(uint64_t n) {
  uint32_t v = 0x80000000u;  // x^0, reflected
  for (uint64_t i = 0; i < n; ++i) v = (v & 1) ? (v >> 1) ^ kPoly : v >> 1;
  return uint64_t(v) << 1;
}

#define ORDO_CRC_CLMUL_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))

ORDO_CRC_CLMUL_TARGET inline __m512i fold512(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                   _mm512_clmulepi64_epi128(x, k, 0x11), next, 0x96);
}

// The pair of constants that folds a 128-bit block forward by `bits` (low half: the block's
// first eight bytes), and the same in each lane of a 512-bit register.
template <uint64_t bits>
ORDO_CRC_CLMUL_TARGET inline __m128i fold_constants() {
  static constexpr uint64_t lo = fold_constant(bits + 32), hi = fold_constant(bits - 32);
  return _mm_set_epi64x(int64_t(hi), int64_t(lo));
}

template <uint64_t bits>
ORDO_CRC_CLMUL_TARGET inline __m512i fold_constants512() {
  static constexpr uint64_t lo = fold_constant(bits + 32), hi = fold_constant(bits - 32);
  return _mm512_set4_epi64(int64_t(hi), int64_t(lo), int64_t(hi), int64_t(lo));
}

// Requires n >= 256.
ORDO_CRC_CLMUL_TARGET uint32_t crc_clmul_fold(uint32_t crc, const uint8_t* p, size_t n) {
  ORDO_ASSERT(n >= 256);
  const __m512i k2048 = fold_constants512<2048>();
  const __m512i k512 = fold_constants512<512>();
  __m512i x0 = _mm512_loadu_si512(p);
  __m512i x1 = _mm512_loadu_si512(p + 64);
  __m512i x2 = _mm512_loadu_si512(p + 128);
  __m512i x3 = _mm512_loadu_si512(p + 192);
  x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128(int(crc))));
  p += 256;
  n -= 256;
  while (n >= 256) {
    x0 = fold512(x0, k2048, _mm512_loadu_si512(p));
    x1 = fold512(x1, k2048, _mm512_loadu_si512(p + 64));
    x2 = fold512(x2, k2048, _mm512_loadu_si512(p + 128));
    x3 = fold512(x3, k2048, _mm512_loadu_si512(p + 192));
    p += 256;
    n -= 256;
  }
  x1 = fold512(x0, k512, x1);
  x2 = fold512(x1, k512, x2);
  x3 = fold512(x2, k512, x3);
  while (n >= 64) {
    x3 = fold512(x3, k512, _mm512_loadu_si512(p));
    p += 64;
    n -= 64;
  }
  alignas(64) __m128i lanes[4];
  _mm512_store_si512(lanes, x3);
  const __m128i k128 = fold_constants<128>();
  __m128i a = lanes[0];
  for (int i = 1; i < 4; ++i) {
    a = _mm_xor_si128(
        _mm_xor_si128(_mm_clmulepi64_si128(a, k128, 0x00), _mm_clmulepi64_si128(a, k128, 0x11)),
        lanes[i]);
  }
  uint64_t c = _mm_crc32_u64(0, uint64_t(_mm_cvtsi128_si64(a)));
  c = _mm_crc32_u64(c, uint64_t(_mm_extract_epi64(a, 1)));
  return crc_hw_chain(uint32_t(c), p, n);
}

ORDO_CRC_CLMUL_TARGET uint32_t crc_clmul(uint32_t crc, const uint8_t* p, size_t n) {
  return n >= 256 ? crc_clmul_fold(crc, p, n) : crc_hw_chain(crc, p, n);
}
#undef ORDO_CRC_CLMUL_TARGET
#endif

bool detect_hw() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

const bool kHasHw = detect_hw();

bool detect_clmul() {
#if defined(__x86_64__)
  return kHasHw && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
         __builtin_cpu_supports("pclmul");
#else
  return false;
#endif
}

const bool kHasClmul = detect_clmul();

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

uint32_t crc32c_sse42(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  ORDO_ASSERT(kHasHw);
  return ~crc_hw(~crc, static_cast<const uint8_t*>(data), n);
#else
  return crc32c_software(crc, data, n);
#endif
}

uint32_t crc32c_clmul(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  ORDO_ASSERT(kHasClmul);
  return ~crc_clmul(~crc, static_cast<const uint8_t*>(data), n);
#else
  return crc32c_software(crc, data, n);
#endif
}

bool crc32c_has_sse42() {
  return kHasHw;
}

bool crc32c_has_clmul() {
  return kHasClmul;
}

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  return kHasClmul ? crc32c_clmul(crc, data, n)
         : kHasHw  ? crc32c_sse42(crc, data, n)
                   : crc32c_software(crc, data, n);
}

}  // namespace ordo
