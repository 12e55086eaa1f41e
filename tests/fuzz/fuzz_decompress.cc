// Fuzz target for the record-batch codecs (src/compression).
//
// Byte 0 picks the codec (mod 5), byte 1 the output bound (64 << (byte1 mod 16) bytes); the
// rest is the compressed input. decompress() must return an error or at most the bound, never
// crash; what it returns must survive compress() + decompress() unchanged.

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/assert.h"
#include "compression/compression.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ordo::compression;
  if (size < 2) return 0;
  auto codec = Codec(data[0] % 5);
  size_t bound = size_t(64) << (data[1] % 16);
  std::span<const uint8_t> in(data + 2, size - 2);
  auto out = decompress(codec, in, bound);
  if (!out) {
    ORDO_ASSERT(out.error().code == ordo::Errc::corrupt ||
                out.error().code == ordo::Errc::too_large);
    return 0;
  }
  ORDO_ASSERT(out->size() <= bound);
  auto again = compress(codec, *out);
  ORDO_ASSERT(again.has_value());
  auto back = decompress(codec, *again, out->size());
  ORDO_ASSERT(back.has_value() && *back == *out);
  return 0;
}
