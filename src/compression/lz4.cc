// lz4 (codec 3): the LZ4 frame format through liblz4's LZ4F API.
//
// In v2 batches the frame header checksum (HC) is correct; only magic 0 message sets carried
// the broken one, and they are not read here. Kafka's Java writer and librdkafka both write
// FLG 0x60 (version 1, independent blocks, no checksums, no content size) and BD 0x40 (64 KiB
// blocks), and Kafka's Java reader refuses linked blocks, so lz4_compress() writes exactly that.
// lz4_decompress() reads any valid frame (linked blocks, checksums, content size, 4 MiB
// blocks, skippable frames, several frames in a row), as the lz4 command does.

#include <lz4frame.h>

#include "compression/codecs.h"

namespace ordo::compression::detail {

namespace {

Error lz4_error(std::string_view what, size_t code) {
  return make_error(Errc::corrupt, "lz4: {}: {}", what, LZ4F_getErrorName(code));
}

struct Lz4DctxGuard {
  LZ4F_dctx* dctx;
  ~Lz4DctxGuard() { LZ4F_freeDecompressionContext(dctx); }
};

}  // namespace

Result<std::vector<uint8_t>> lz4_compress(std::span<const uint8_t> in, int level) {
  LZ4F_preferences_t prefs{};
  prefs.frameInfo.blockSizeID = LZ4F_max64KB;
  prefs.frameInfo.blockMode = LZ4F_blockIndependent;
  prefs.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;
  prefs.frameInfo.blockChecksumFlag = LZ4F_noBlockChecksum;
  prefs.frameInfo.frameType = LZ4F_frame;
  prefs.frameInfo.contentSize = 0;  // not written
  prefs.compressionLevel = level;
  std::vector<uint8_t> out(LZ4F_compressFrameBound(in.size(), &prefs));
  size_t n = LZ4F_compressFrame(out.data(), out.size(), in.data(), in.size(), &prefs);
  if (LZ4F_isError(n)) {
    return make_error(Errc::invalid_argument, "lz4: compression failed: {}", LZ4F_getErrorName(n));
  }
  out.resize(n);
  return out;
}

Result<std::vector<uint8_t>> lz4_decompress(std::span<const uint8_t> in, size_t max_output) {
  LZ4F_dctx* dctx = nullptr;
  size_t rc = LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION);
  if (LZ4F_isError(rc)) {
    return make_error(Errc::io, "lz4: no decompression context: {}", LZ4F_getErrorName(rc));
  }
  Lz4DctxGuard free_dctx{dctx};

  // The first frame's header: refuse a declared content size over the bound before decoding,
  // and size the first allocation by it.
  LZ4F_frameInfo_t info{};
  size_t in_pos = in.size();
  rc = LZ4F_getFrameInfo(dctx, &info, in.data(), &in_pos);
  if (LZ4F_isError(rc)) return lz4_error("bad frame header", rc);
  size_t guess = output_guess(in.size(), max_output);
  if (info.frameType == LZ4F_frame && info.contentSize != 0) {
    if (info.contentSize > max_output) return too_large_error("lz4", max_output);
    guess = size_t(info.contentSize);
  }

  BoundedOutput out(max_output, guess);
  uint8_t probe = 0;
  // Every pass consumes input or produces output, or ends the loop: with at least one byte of
  // output space, LZ4F makes progress unless the input has run out.
  for (;;) {
    std::span<uint8_t> room = out.room();
    bool probing = room.empty();
    size_t produced = probing ? 1 : room.size();
    size_t consumed = in.size() - in_pos;
    rc = LZ4F_decompress(dctx, probing ? &probe : room.data(), &produced, in.data() + in_pos,
                         &consumed, nullptr);
    if (LZ4F_isError(rc)) return lz4_error("invalid frame", rc);
    in_pos += consumed;
    if (probing && produced > 0) return too_large_error("lz4", max_output);
    if (!probing) out.commit(produced);
    if (rc == 0 && in_pos == in.size()) break;  // rc 0: a frame ended; another may follow
    if (consumed == 0 && produced == 0) {
      if (in_pos == in.size()) {
        return make_error(Errc::corrupt, "lz4: truncated after {} input bytes", in.size());
      }
      return make_error(Errc::corrupt, "lz4: no progress at input offset {}", in_pos);
    }
  }
  return std::move(out).take();
}

}  // namespace ordo::compression::detail
