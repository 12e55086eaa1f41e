#pragma once
// The legacy message format (magic 0 and 1, Produce v0-v2) converted to one v2 record batch,
// which is the only format the log stores.

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace ordo::broker {

// Converts a legacy message set; compressed (wrapper) messages are unpacked (gzip, snappy, lz4;
// the magic-0 lz4 framing with its broken header checksum is refused as corrupt). Errors:
// Errc::corrupt for a malformed message, a CRC mismatch or bad compressed bytes,
// Errc::invalid_argument for an unknown codec, Errc::too_large for a decompression bomb.
Result<std::vector<uint8_t>> upconvert_legacy_message_set(std::span<const uint8_t> data,
                                                          int64_t now_ms);

}  // namespace ordo::broker
