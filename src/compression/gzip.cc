// gzip (codec 1): RFC 1952 streams through zlib.
//
// Decoding uses windowBits 15 + 32, zlib's automatic detection of a gzip or zlib header, as
// librdkafka does; Kafka writers always send gzip. A stream may hold several gzip members one
// after another (RFC 1952 section 2.2); Java's GZIPInputStream reads them all, and so does this.
// zlib checks each member's CRC-32 and length trailer.

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "compression/codecs.h"

namespace ordo::compression::detail {

namespace {

constexpr int kWindowBits = 15;
constexpr int kGzipWrapper = 16;  // deflateInit2/inflateInit2: gzip header and trailer
constexpr int kAutoDetect = 32;   // inflateInit2: gzip or zlib header
constexpr int kMemLevel = 8;      // zlib's default
constexpr uint8_t kGzipMagic[2] = {0x1f, 0x8b};
// zlib counts in uInt (32 bits): larger spans are fed in pieces.
constexpr size_t kMaxZlibChunk = UINT_MAX;

uInt chunk(size_t n) {
  return uInt(std::min(n, kMaxZlibChunk));
}

Error zlib_error(std::string_view what, const z_stream& zs, int rc) {
  return make_error(Errc::corrupt, "gzip: {} ({}, zlib {})", what,
                    zs.msg != nullptr ? zs.msg : "no message", rc);
}

struct InflateEnd {
  z_stream* zs;
  ~InflateEnd() { inflateEnd(zs); }
};
struct DeflateEnd {
  z_stream* zs;
  ~DeflateEnd() { deflateEnd(zs); }
};

}  // namespace

Result<std::vector<uint8_t>> gzip_compress(std::span<const uint8_t> in, int level) {
  z_stream zs{};
  int rc = deflateInit2(&zs, level, Z_DEFLATED, kWindowBits + kGzipWrapper, kMemLevel,
                        Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) {
    return make_error(Errc::invalid_argument, "gzip: deflateInit2 failed (zlib {})", rc);
  }
  DeflateEnd end{&zs};
  // deflateBound() covers the gzip header and trailer once the stream is set up.
  std::vector<uint8_t> out(deflateBound(&zs, uLong(in.size())));
  size_t in_pos = 0;
  size_t out_pos = 0;
  for (;;) {
    if (out_pos == out.size()) out.resize(out.size() * 2);  // not expected: the bound holds
    zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
    zs.avail_in = chunk(in.size() - in_pos);
    zs.next_out = out.data() + out_pos;
    zs.avail_out = chunk(out.size() - out_pos);
    uInt in_before = zs.avail_in, out_before = zs.avail_out;
    bool last = in.size() - in_pos == zs.avail_in;
    rc = deflate(&zs, last ? Z_FINISH : Z_NO_FLUSH);
    in_pos += in_before - zs.avail_in;
    out_pos += out_before - zs.avail_out;
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return make_error(Errc::invalid_argument, "gzip: deflate failed (zlib {})", rc);
    }
  }
  out.resize(out_pos);
  return out;
}

Result<std::vector<uint8_t>> gzip_decompress(std::span<const uint8_t> in, size_t max_output) {
  z_stream zs{};
  int rc = inflateInit2(&zs, kWindowBits + kAutoDetect);
  if (rc != Z_OK) return make_error(Errc::io, "gzip: inflateInit2 failed (zlib {})", rc);
  InflateEnd end{&zs};
  BoundedOutput out(max_output, output_guess(in.size(), max_output));
  uint8_t probe = 0;
  size_t in_pos = 0;
  // Every pass consumes input or produces output, or ends the loop: zlib returns Z_BUF_ERROR
  // when it can do neither, and there is always at least one byte of output space.
  for (;;) {
    std::span<uint8_t> room = out.room();
    bool probing = room.empty();
    zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
    zs.avail_in = chunk(in.size() - in_pos);
    zs.next_out = probing ? &probe : room.data();
    zs.avail_out = probing ? 1 : chunk(room.size());
    uInt in_before = zs.avail_in, out_before = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    in_pos += in_before - zs.avail_in;
    size_t produced = out_before - zs.avail_out;
    if (probing && produced > 0) return too_large_error("gzip", max_output);
    if (!probing) out.commit(produced);

    if (rc == Z_STREAM_END) {
      if (in_pos == in.size()) break;
      size_t rest = in.size() - in_pos;
      if (rest < sizeof(kGzipMagic) || std::memcmp(in.data() + in_pos, kGzipMagic, 2) != 0) {
        return make_error(Errc::corrupt, "gzip: {} trailing bytes after the stream", rest);
      }
      inflateReset(&zs);  // the next member
      continue;
    }
    if (rc == Z_BUF_ERROR || (rc == Z_OK && in_pos == in.size() && produced == 0)) {
      if (in_pos == in.size()) {
        return make_error(Errc::corrupt, "gzip: truncated after {} input bytes", in.size());
      }
      return zlib_error("no progress", zs, rc);
    }
    if (rc != Z_OK) return zlib_error("invalid stream", zs, rc);
  }
  return std::move(out).take();
}

}  // namespace ordo::compression::detail

namespace ordo::compression {

uint32_t crc32_ieee(std::span<const uint8_t> data) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large inputs in pieces.
  while (!data.empty()) {
    auto n = std::min<size_t>(data.size(), 1u << 30);
    crc = ::crc32(crc, data.data(), uInt(n));
    data = data.subspan(n);
  }
  return uint32_t(crc);
}

}  // namespace ordo::compression
