#pragma once
// Byte coding used by Kafka's formats: big-endian fixed-width integers and zig-zag varints.
// Every decoder takes the bytes actually present and reports how many it consumed; none reads
// past the end of its input.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

namespace ordo {

inline uint16_t load_be16(const uint8_t* p) {
  return uint16_t(p[0] << 8 | p[1]);
}
inline uint32_t load_be32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
inline uint64_t load_be64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = uint8_t(v >> 8);
  p[1] = uint8_t(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}
inline void store_be64(uint8_t* p, uint64_t v) {
  v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}

inline uint32_t zigzag_encode32(int32_t v) {
  return (uint32_t(v) << 1) ^ uint32_t(v >> 31);
}
inline uint64_t zigzag_encode64(int64_t v) {
  return (uint64_t(v) << 1) ^ uint64_t(v >> 63);
}
inline int32_t zigzag_decode32(uint32_t v) {
  return int32_t(v >> 1) ^ -int32_t(v & 1);
}
inline int64_t zigzag_decode64(uint64_t v) {
  return int64_t(v >> 1) ^ -int64_t(v & 1);
}

constexpr size_t kMaxVarint32Bytes = 5;
constexpr size_t kMaxVarint64Bytes = 10;

// Writes an unsigned LEB128 varint into out (which must have room for kMaxVarint64Bytes);
// returns the number of bytes written.
inline size_t put_uvarint(uint8_t* out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = uint8_t(v | 0x80);
    v >>= 7;
  }
  out[n++] = uint8_t(v);
  return n;
}
inline size_t put_varint32(uint8_t* out, int32_t v) {
  return put_uvarint(out, zigzag_encode32(v));
}
inline size_t put_varint64(uint8_t* out, int64_t v) {
  return put_uvarint(out, zigzag_encode64(v));
}
inline size_t uvarint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}
inline size_t varint32_size(int32_t v) {
  return uvarint_size(zigzag_encode32(v));
}
inline size_t varint64_size(int64_t v) {
  return uvarint_size(zigzag_encode64(v));
}

// A decoded varint and the number of bytes it occupied.
template <typename T>
struct Decoded {
  T value;
  size_t size;
};

// Decodes an unsigned varint of at most max_bytes from in; nullopt when the input ends first or
// the encoding is longer than max_bytes (or overflows 64 bits).
inline std::optional<Decoded<uint64_t>> get_uvarint(std::span<const uint8_t> in, size_t max_bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < in.size() && i < max_bytes; ++i) {
    uint64_t b = in[i];
    if (i == 9 && b > 1) return std::nullopt;  // more than 64 bits
    v |= (b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) return Decoded<uint64_t>{v, i + 1};
  }
  return std::nullopt;
}

inline std::optional<Decoded<int32_t>> get_varint32(std::span<const uint8_t> in) {
  auto d = get_uvarint(in, kMaxVarint32Bytes);
  if (!d || d->value > 0xffffffffu) return std::nullopt;
  return Decoded<int32_t>{zigzag_decode32(uint32_t(d->value)), d->size};
}
inline std::optional<Decoded<int64_t>> get_varint64(std::span<const uint8_t> in) {
  auto d = get_uvarint(in, kMaxVarint64Bytes);
  if (!d) return std::nullopt;
  return Decoded<int64_t>{zigzag_decode64(d->value), d->size};
}

}  // namespace ordo
