// zstd (codec 4): standard zstd frames through libzstd.
//
// The content size is optional in a frame (librdkafka and Kafka's Java client stream without
// it), so decoding is streaming (ZSTD_decompressStream) into the bounded output. Several frames
// in a row, and skippable frames, are read as the zstd command reads them. The decoder keeps
// libzstd's default window limit (1 << ZSTD_WINDOWLOG_LIMIT_DEFAULT = 128 MiB), the one Kafka's
// Java client (zstd-jni) and librdkafka decode with: a frame needs a window buffer of that size
// only when its header asks for it, and only the pages its output reaches are touched.

#include <zstd.h>

#include "compression/codecs.h"

namespace ordo::compression::detail {

namespace {

struct ZstdDctxGuard {
  ZSTD_DCtx* dctx;
  ~ZstdDctxGuard() { ZSTD_freeDCtx(dctx); }
};
struct ZstdCctxGuard {
  ZSTD_CCtx* cctx;
  ~ZstdCctxGuard() { ZSTD_freeCCtx(cctx); }
};

}  // namespace

int zstd_min_level() {
  return ZSTD_minCLevel();
}
int zstd_max_level() {
  return ZSTD_maxCLevel();
}

Result<std::vector<uint8_t>> zstd_compress(std::span<const uint8_t> in, int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) return make_error(Errc::io, "zstd: no compression context");
  ZstdCctxGuard free_cctx{cctx};
  size_t rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (ZSTD_isError(rc)) {
    return make_error(Errc::invalid_argument, "zstd: level {}: {}", level, ZSTD_getErrorName(rc));
  }
  std::vector<uint8_t> out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n)) {
    return make_error(Errc::invalid_argument, "zstd: compression failed: {}", ZSTD_getErrorName(n));
  }
  out.resize(n);
  return out;
}

Result<std::vector<uint8_t>> zstd_decompress(std::span<const uint8_t> in, size_t max_output) {
  // The first frame's header: not a frame at all, or a declared size over the bound, is refused
  // before decoding; a declared size also sizes the first allocation.
  unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return make_error(Errc::corrupt, "zstd: no valid frame header in {} bytes", in.size());
  }
  size_t guess = output_guess(in.size(), max_output);
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) {
    if (declared > max_output) return too_large_error("zstd", max_output);
    guess = size_t(declared);
  }

  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return make_error(Errc::io, "zstd: no decompression context");
  ZstdDctxGuard free_dctx{dctx};
  BoundedOutput out(max_output, guess);
  uint8_t probe = 0;
  ZSTD_inBuffer src{in.data(), in.size(), 0};
  // Every pass consumes input or produces output, or ends the loop.
  for (;;) {
    std::span<uint8_t> room = out.room();
    bool probing = room.empty();
    ZSTD_outBuffer dst{probing ? &probe : room.data(), probing ? 1 : room.size(), 0};
    size_t in_before = src.pos;
    size_t rc = ZSTD_decompressStream(dctx, &dst, &src);
    if (ZSTD_isError(rc)) {
      return make_error(Errc::corrupt, "zstd: invalid frame: {}", ZSTD_getErrorName(rc));
    }
    if (probing && dst.pos > 0) return too_large_error("zstd", max_output);
    if (!probing) out.commit(dst.pos);
    // rc 0: a frame is complete and flushed; another may follow.
    if (rc == 0 && src.pos == src.size) break;
    if (src.pos == in_before && dst.pos == 0) {
      if (src.pos == src.size) {
        return make_error(Errc::corrupt, "zstd: truncated after {} input bytes", in.size());
      }
      return make_error(Errc::corrupt, "zstd: no progress at input offset {}", src.pos);
    }
  }
  return std::move(out).take();
}

}  // namespace ordo::compression::detail
