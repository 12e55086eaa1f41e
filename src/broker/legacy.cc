#include "broker/legacy.h"

#include <optional>
#include <string>

#include "base/coding.h"
#include "compression/compression.h"
#include "compression/records.h"
#include "model/record_batch.h"

namespace ordo::broker {

namespace {

// A length-prefixed (int32, -1 = null) byte string.
Result<std::optional<std::string>> read_bytes(std::span<const uint8_t>& in) {
  if (in.size() < 4) return make_error(Errc::corrupt, "legacy message: truncated length");
  int32_t n = int32_t(load_be32(in.data()));
  in = in.subspan(4);
  if (n < 0) return std::optional<std::string>();
  if (size_t(n) > in.size())
    return make_error(Errc::corrupt, "legacy message: length {} too large", n);
  std::string s(reinterpret_cast<const char*>(in.data()), size_t(n));
  in = in.subspan(size_t(n));
  return std::optional<std::string>(std::move(s));
}

// Adds the records of a legacy message set to the builder. A compressed (wrapper) message
// holds a message set of uncompressed messages in its value: depth 1 at most.
Result<void> add_messages(std::span<const uint8_t> data, int64_t now_ms, int depth,
                          model::RecordBatchBuilder& builder) {
  constexpr size_t kLogOverhead = 12;  // offset + message size
  while (!data.empty()) {
    if (data.size() < kLogOverhead) {
      // A partial trailing message is allowed by the old protocol (fetch truncation); a
      // produce request should not have one, but it carries no data either.
      break;
    }
    int32_t size = int32_t(load_be32(data.data() + 8));
    if (size < 14 || size_t(size) > data.size() - kLogOverhead) {
      return make_error(Errc::corrupt, "legacy message: size {} out of range", size);
    }
    std::span<const uint8_t> msg = data.subspan(kLogOverhead, size_t(size));
    data = data.subspan(kLogOverhead + size_t(size));
    uint32_t crc = load_be32(msg.data());
    if (compression::crc32_ieee(msg.subspan(4)) != crc) {
      return make_error(Errc::corrupt, "legacy message: CRC mismatch");
    }
    int8_t magic = int8_t(msg[4]);
    uint8_t attributes = msg[5];
    if (magic != 0 && magic != 1)
      return make_error(Errc::corrupt, "legacy message: magic {}", magic);
    std::span<const uint8_t> rest = msg.subspan(6);
    int64_t ts = -1;
    if (magic == 1) {
      if (rest.size() < 8) return make_error(Errc::corrupt, "legacy message: truncated timestamp");
      ts = int64_t(load_be64(rest.data()));
      rest = rest.subspan(8);
      if (attributes & 0x08) ts = now_ms;
    }
    auto key = read_bytes(rest);
    if (!key) return std::move(key).error();
    auto value = read_bytes(rest);
    if (!value) return std::move(value).error();
    if (!rest.empty()) return make_error(Errc::corrupt, "legacy message: trailing bytes");
    if (uint8_t codec = attributes & 0x07; codec != 0) {
      if (depth > 0) return make_error(Errc::corrupt, "legacy message: nested compression");
      if (!*value) return make_error(Errc::corrupt, "legacy wrapper message without a value");
      std::span<const uint8_t> packed(reinterpret_cast<const uint8_t*>((*value)->data()),
                                      (*value)->size());
      auto inner = compression::decompress(compression::Codec(codec), packed,
                                           compression::kMaxBatchRecordsBytes);
      if (!inner) return std::move(inner).error();
      ORDO_TRY(add_messages(*inner, now_ms, depth + 1, builder));
      continue;
    }
    builder.add(model::RecordInput{std::move(*key), std::move(*value), ts, {}});
  }
  return ok();
}

}  // namespace

Result<std::vector<uint8_t>> upconvert_legacy_message_set(std::span<const uint8_t> data,
                                                          int64_t now_ms) {
  model::RecordBatchBuilder builder;
  ORDO_TRY(add_messages(data, now_ms, 0, builder));
  if (builder.record_count() == 0) return make_error(Errc::corrupt, "legacy message set is empty");
  return builder.build();
}

}  // namespace ordo::broker
