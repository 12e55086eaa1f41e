// snappy (codec 2): raw snappy blocks, plain or in snappy-java's stream framing.
//
// Kafka's Java client writes through snappy-java's SnappyOutputStream: the 16-byte header
// below, then blocks of [int32 big-endian compressed length][raw snappy block], each block
// holding at most 32 KiB of input (Kafka's default snappy block size). librdkafka writes one
// raw snappy block with no header. Java's SnappyInputStream and librdkafka both read either
// form, told apart by the 8-byte magic, and so does snappy_decompress().
//
//   offset  size  field (big-endian)
//   0       8     magic 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00
//   8       4     version: 1
//   12      4     minimum compatible version: 1
//   16      ...   { compressed length int32 | raw snappy block }* until the end
//
// A raw snappy block starts with its uncompressed length as a varint, so the whole output size
// is known (and checked against the bound) before anything is allocated.

#include <snappy.h>

#include <algorithm>
#include <cstring>

#include "base/coding.h"
#include "compression/codecs.h"

namespace ordo::compression::detail {

namespace {

constexpr uint8_t kXerialMagic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0x00};
constexpr uint32_t kXerialVersion = 1;
constexpr uint32_t kXerialCompatibleVersion = 1;
constexpr size_t kXerialHeaderBytes = 16;
constexpr size_t kXerialLengthBytes = 4;
constexpr size_t kXerialBlockInputBytes = 32 * 1024;
// A snappy element of n bytes yields at most 64/3 bytes per byte (a 3-byte copy of 64 bytes), so
// a block declaring more than 22 times its own size cannot be valid: refuse it before
// allocating for it.
constexpr uint64_t kMaxExpansion = 22;

bool has_xerial_magic(std::span<const uint8_t> in) {
  return in.size() >= sizeof(kXerialMagic) &&
         std::memcmp(in.data(), kXerialMagic, sizeof(kXerialMagic)) == 0;
}

// The uncompressed length a raw block declares (its leading varint).
Result<size_t> declared_length(std::span<const uint8_t> block) {
  size_t n = 0;
  if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(block.data()), block.size(),
                                     &n)) {
    return make_error(Errc::corrupt, "snappy: bad block length header ({} bytes)", block.size());
  }
  return n;
}

// Calls fn(block) for each raw snappy block of in: the whole input when it does not start with
// the snappy-java magic, else each framed block after the header. Stops at the first error.
template <typename Fn>
Result<void> for_each_block(std::span<const uint8_t> in, Fn&& fn) {
  if (!has_xerial_magic(in)) return fn(in);
  if (in.size() < kXerialHeaderBytes) {
    return make_error(Errc::corrupt, "snappy: framing header cut at {} bytes", in.size());
  }
  // The version fields are not checked: librdkafka ignores them, and snappy-java has only ever
  // written 1 and 1.
  size_t pos = kXerialHeaderBytes;
  while (pos < in.size()) {
    if (in.size() - pos < kXerialLengthBytes) {
      return make_error(Errc::corrupt, "snappy: {} trailing bytes at offset {}", in.size() - pos,
                        pos);
    }
    size_t len = load_be32(in.data() + pos);
    pos += kXerialLengthBytes;
    if (len > in.size() - pos) {
      return make_error(Errc::corrupt, "snappy: block of {} bytes at offset {}, {} present", len,
                        pos, in.size() - pos);
    }
    ORDO_TRY(fn(in.subspan(pos, len)));
    pos += len;
  }
  return ok();
}

}  // namespace

Result<std::vector<uint8_t>> snappy_compress(std::span<const uint8_t> in) {
  size_t blocks = (in.size() + kXerialBlockInputBytes - 1) / kXerialBlockInputBytes;
  size_t bound =
      kXerialHeaderBytes +
      blocks * (kXerialLengthBytes + snappy::MaxCompressedLength(kXerialBlockInputBytes));
  std::vector<uint8_t> out(bound);
  std::memcpy(out.data(), kXerialMagic, sizeof(kXerialMagic));
  store_be32(out.data() + 8, kXerialVersion);
  store_be32(out.data() + 12, kXerialCompatibleVersion);
  size_t pos = kXerialHeaderBytes;
  for (size_t off = 0; off < in.size(); off += kXerialBlockInputBytes) {
    size_t len = std::min(kXerialBlockInputBytes, in.size() - off);
    size_t written = 0;
    snappy::RawCompress(reinterpret_cast<const char*>(in.data() + off), len,
                        reinterpret_cast<char*>(out.data() + pos + kXerialLengthBytes), &written);
    store_be32(out.data() + pos, uint32_t(written));
    pos += kXerialLengthBytes + written;
  }
  out.resize(pos);
  return out;
}

Result<std::vector<uint8_t>> snappy_decompress(std::span<const uint8_t> in, size_t max_output) {
  // Two walks over the blocks, as librdkafka does: the first checks the framing and adds up the
  // declared lengths, so that the output is allocated once at its exact size; the second
  // decompresses. Nothing is kept per block, whatever their number.
  size_t total = 0;
  auto measure = [&](std::span<const uint8_t> block) -> Result<void> {
    size_t n = ORDO_TRY(declared_length(block));
    if (n > max_output - total) return too_large_error("snappy", max_output);
    if (uint64_t(n) > uint64_t(block.size()) * kMaxExpansion) {
      return make_error(Errc::corrupt, "snappy: block of {} bytes declares {} bytes", block.size(),
                        n);
    }
    total += n;
    return ok();
  };
  ORDO_TRY(for_each_block(in, measure));

  std::vector<uint8_t> out(total);
  size_t at = 0;
  auto uncompress = [&](std::span<const uint8_t> block) -> Result<void> {
    size_t n = ORDO_TRY(declared_length(block));
    ORDO_ASSERT(n <= total - at);
    // RawUncompress checks that the block yields exactly the length it declares.
    if (!snappy::RawUncompress(reinterpret_cast<const char*>(block.data()), block.size(),
                               reinterpret_cast<char*>(out.data() + at))) {
      return make_error(Errc::corrupt, "snappy: invalid block of {} bytes at output offset {}",
                        block.size(), at);
    }
    at += n;
    return ok();
  };
  ORDO_TRY(for_each_block(in, uncompress));
  ORDO_ASSERT(at == total);
  return out;
}

}  // namespace ordo::compression::detail
