#pragma once
// Internal to ordo_compression: one pair of functions per codec (gzip.cc, snappy.cc, lz4.cc,
// zstd.cc) and the bounded output buffer the streaming decoders write into. compression.cc
// checks codecs and levels before calling these.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace ordo::compression::detail {

// Output of a streaming decoder that never holds more than max_bytes: the guard against
// decompression bombs. It grows by doubling from a first guess, and each growth allocates
// exactly the new size (reserve, then resize), so no allocation exceeds max_bytes.
//
// Decoders ask room() for space, write into it and commit() what they wrote. When the bound is
// reached room() is empty: the decoder then offers its library a one-byte probe instead, and
// if even one more byte comes out the output would exceed the bound (Errc::too_large).
class BoundedOutput {
 public:
  BoundedOutput(size_t max_bytes, size_t first_guess_bytes);

  // Writable space after what was committed: at least one byte, or empty at the bound.
  std::span<uint8_t> room();
  void commit(size_t n);
  size_t size() const { return used_; }
  size_t max_bytes() const { return max_; }
  // The output, sized to what was committed.
  std::vector<uint8_t> take() &&;

 private:
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  size_t max_;
  size_t first_guess_;
};

// A first guess at the output size of a stream whose content size is not declared.
size_t output_guess(size_t input_bytes, size_t max_output);

Error too_large_error(std::string_view codec, size_t max_output);

Result<std::vector<uint8_t>> gzip_compress(std::span<const uint8_t> in, int level);
Result<std::vector<uint8_t>> gzip_decompress(std::span<const uint8_t> in, size_t max_output);

Result<std::vector<uint8_t>> snappy_compress(std::span<const uint8_t> in);
Result<std::vector<uint8_t>> snappy_decompress(std::span<const uint8_t> in, size_t max_output);

Result<std::vector<uint8_t>> lz4_compress(std::span<const uint8_t> in, int level);
Result<std::vector<uint8_t>> lz4_decompress(std::span<const uint8_t> in, size_t max_output);

int zstd_min_level();
int zstd_max_level();
Result<std::vector<uint8_t>> zstd_compress(std::span<const uint8_t> in, int level);
Result<std::vector<uint8_t>> zstd_decompress(std::span<const uint8_t> in, size_t max_output);

}  // namespace ordo::compression::detail
