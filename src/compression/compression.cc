#include "compression/compression.h"

#include <algorithm>

#include "compression/codecs.h"

namespace ordo::compression {

namespace detail {

BoundedOutput::BoundedOutput(size_t max_bytes, size_t first_guess_bytes)
    : max_(max_bytes), first_guess_(std::min(std::max<size_t>(first_guess_bytes, 1), max_bytes)) {}

std::span<uint8_t> BoundedOutput::room() {
  if (used_ == buf_.size()) {
    if (buf_.size() == max_) return {};
    size_t grown = buf_.empty() ? first_guess_ : buf_.size() > max_ / 2 ? max_ : buf_.size() * 2;
    // reserve() allocates exactly what it is asked for; resize() alone may round up past max_.
    buf_.reserve(grown);
    buf_.resize(grown);
  }
  return std::span<uint8_t>(buf_).subspan(used_);
}

void BoundedOutput::commit(size_t n) {
  ORDO_ASSERT(n <= buf_.size() - used_);
  used_ += n;
}

std::vector<uint8_t> BoundedOutput::take() && {
  buf_.resize(used_);
  return std::move(buf_);
}

size_t output_guess(size_t input_bytes, size_t max_output) {
  // Record batches compress about 2-5x; starting at 4x the input (at least 4 KiB) usually needs
  // no growth, and a wrong guess costs a few doublings.
  constexpr size_t kMinGuessBytes = 4096;
  size_t guess = input_bytes > max_output / 4 ? max_output : input_bytes * 4;
  return std::min(max_output, std::max(guess, kMinGuessBytes));
}

Error too_large_error(std::string_view codec, size_t max_output) {
  return make_error(Errc::too_large, "{}: decompressed size exceeds the bound of {} bytes", codec,
                    max_output);
}

}  // namespace detail

Result<Codec> codec_from_attributes(uint16_t attributes) {
  unsigned id = attributes & 0x07;
  if (id > uint8_t(Codec::zstd)) {
    return make_error(Errc::invalid_argument, "unknown compression codec {}", id);
  }
  return Codec(id);
}

std::string_view codec_name(Codec codec) {
  switch (codec) {
    case Codec::none:
      return "none";
    case Codec::gzip:
      return "gzip";
    case Codec::snappy:
      return "snappy";
    case Codec::lz4:
      return "lz4";
    case Codec::zstd:
      return "zstd";
  }
  return "unknown";
}

namespace {

Error bad_level(Codec codec, int level, int lo, int hi) {
  return make_error(Errc::invalid_argument, "{} level {} outside [{}, {}]", codec_name(codec),
                    level, lo, hi);
}

}  // namespace

Result<std::vector<uint8_t>> compress(Codec codec, std::span<const uint8_t> in, int level) {
  // Each library's own default, named here so that the levels below are checked against it.
  constexpr int kGzipDefault = -1;  // Z_DEFAULT_COMPRESSION, which zlib runs as 6
  constexpr int kLz4Default = 0;    // LZ4F: the fast compressor
  constexpr int kZstdDefault = 3;   // ZSTD_CLEVEL_DEFAULT
  constexpr int kLz4MaxLevel = 17;  // Kafka's maximum; LZ4F treats anything above 12 as 12
  switch (codec) {
    case Codec::none:
      return std::vector<uint8_t>(in.begin(), in.end());
    case Codec::gzip: {
      if (level == kDefaultLevel) level = kGzipDefault;
      if (level < -1 || level > 9) return bad_level(codec, level, -1, 9);
      return detail::gzip_compress(in, level);
    }
    case Codec::snappy:
      return detail::snappy_compress(in);
    case Codec::lz4: {
      if (level == kDefaultLevel) level = kLz4Default;
      if (level < 0 || level > kLz4MaxLevel) return bad_level(codec, level, 0, kLz4MaxLevel);
      return detail::lz4_compress(in, level);
    }
    case Codec::zstd: {
      if (level == kDefaultLevel) level = kZstdDefault;
      int lo = detail::zstd_min_level(), hi = detail::zstd_max_level();
      if (level < lo || level > hi) return bad_level(codec, level, lo, hi);
      return detail::zstd_compress(in, level);
    }
  }
  return make_error(Errc::invalid_argument, "unknown compression codec {}", int(codec));
}

Result<std::vector<uint8_t>> decompress(Codec codec, std::span<const uint8_t> in,
                                        size_t max_output) {
  switch (codec) {
    case Codec::none:
      if (in.size() > max_output) return detail::too_large_error("none", max_output);
      return std::vector<uint8_t>(in.begin(), in.end());
    case Codec::gzip:
      return detail::gzip_decompress(in, max_output);
    case Codec::snappy:
      return detail::snappy_decompress(in, max_output);
    case Codec::lz4:
      return detail::lz4_decompress(in, max_output);
    case Codec::zstd:
      return detail::zstd_decompress(in, max_output);
  }
  return make_error(Errc::invalid_argument, "unknown compression codec {}", int(codec));
}

}  // namespace ordo::compression
