#pragma once
// The compression codecs of Kafka record batches: the records section of a v2 RecordBatch
// (everything after recordCount) is compressed as a whole with the codec named by bits 0-2 of
// the batch attributes.
//
//   id  codec   bytes on the wire (what real clients send and accept)
//   0   none    the records as they are
//   1   gzip    an RFC 1952 gzip stream (Java: GZIPOutputStream; librdkafka: zlib)
//   2   snappy  Java client: snappy-java's stream framing, see below; librdkafka: one raw
//               snappy block without any framing. Readers of both accept both.
//   3   lz4     an LZ4 frame (magic 04 22 4D 18) with a correct header checksum (the broken
//               checksum of magic 0 message sets does not occur in v2 batches)
//   4   zstd    a standard zstd frame; the content size may be absent
//
// snappy-java framing ("xerial"), all integers big-endian:
//   0   8  magic 0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00
//   8   4  version (1)
//   12  4  minimum compatible version (1)
//   16     blocks until the end: { int32 compressed length | raw snappy block }*
// A raw snappy block starts with the varint of its uncompressed length. No raw block can
// start with the magic (0x82 0x53 would declare a length whose first element is a copy, which
// is invalid), so the two forms are told apart by the first 8 bytes.
//
// Decompression never holds more than max_output bytes of output: a result that would exceed
// it fails with Errc::too_large as soon as that is known (a small input that inflates hugely
// is refused without allocating the full output).
//
// Pure functions: no shared state, callable from any thread.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace ordo::compression {

enum class Codec : uint8_t { none = 0, gzip = 1, snappy = 2, lz4 = 3, zstd = 4 };

// The codec in bits 0-2 of a v2 batch's attributes; Errc::invalid_argument for 5, 6 and 7.
Result<Codec> codec_from_attributes(uint16_t attributes);

// "none", "gzip", "snappy", "lz4", "zstd", or "unknown".
std::string_view codec_name(Codec codec);

// Asks compress() for the codec's own default level: gzip 6 (zlib's default), lz4 0 (the fast
// compressor, as the Java client's default level 9 and librdkafka use), zstd 3.
constexpr int kDefaultLevel = std::numeric_limits<int>::min();

// Accepted levels (Errc::invalid_argument otherwise):
//   gzip -1 (zlib default) or 0..9; lz4 0..17 (Kafka's range; 0-2 fast, 3-12 high
//   compression, above 12 the same as 12); zstd ZSTD_minCLevel()..ZSTD_maxCLevel() (-131072..22
//   with libzstd 1.5); none and snappy have no levels and ignore the argument.
//
// What compress() writes is what the Java client writes, so that every Kafka reader accepts it:
//   gzip: a single gzip member, mtime 0;
//   snappy: snappy-java framing with 32 KiB blocks (the Java client's default block size); an
//     empty input gives the 16-byte header alone;
//   lz4: one frame, 64 KiB independent blocks, no content size, no block or content checksum
//     (Kafka's Java reader refuses linked blocks);
//   zstd: one frame with the content size, no checksum (the batch CRC covers the bytes).
// Errc::invalid_argument for an unknown codec or level.
Result<std::vector<uint8_t>> compress(Codec codec, std::span<const uint8_t> in,
                                      int level = kDefaultLevel);

// Decompresses a whole input. Errors:
//  - Errc::too_large: the output would exceed max_output;
//  - Errc::corrupt: the input is not valid for the codec, is truncated, or has trailing bytes
//    (gzip members and zstd or lz4 frames may follow one another, as RFC 1952 and both frame
//    formats allow);
//  - Errc::invalid_argument: an unknown codec.
// Bit flips are detected only where the format checks: gzip's CRC-32 covers the content, and
// raw snappy, lz4 and zstd as Kafka clients write them have no content checksum (a v2 batch's
// CRC-32C covers the compressed bytes instead).
Result<std::vector<uint8_t>> decompress(Codec codec, std::span<const uint8_t> in,
                                        size_t max_output);

// CRC-32 (IEEE 802.3, zlib's crc32): the checksum of legacy (magic 0/1) Kafka messages.
uint32_t crc32_ieee(std::span<const uint8_t> data);

}  // namespace ordo::compression
