#include "compression/records.h"

#include <algorithm>

#include "base/coding.h"
#include "base/crc32c.h"
#include "compression/compression.h"

namespace ordo::compression {

Result<std::vector<uint8_t>> records_section(const model::RecordBatchView& batch,
                                             size_t max_output) {
  std::span<const uint8_t> section = batch.records_section();
  Codec codec = ORDO_TRY(codec_from_attributes(batch.attributes()));
  if (codec == Codec::none) return std::vector<uint8_t>(section.begin(), section.end());
  return decompress(codec, section, max_output);
}

Result<model::RecordsSummary> scan_batch(const model::RecordBatchView& batch, size_t max_output) {
  if (batch.compression() == model::Compression::none) {
    return model::scan_records(batch.records_section(), batch.record_count(),
                               batch.last_offset_delta());
  }
  auto section = ORDO_TRY(records_section(batch, max_output));
  return model::scan_records(section, batch.record_count(), batch.last_offset_delta());
}

Result<DecodedBatch> decode_batch(const model::RecordBatchView& batch, size_t max_output) {
  DecodedBatch out;
  out.section = ORDO_TRY(records_section(batch, max_output));
  out.records = ORDO_TRY(
      model::decode_records_section(out.section, batch.record_count(), batch.last_offset_delta()));
  return out;
}

Result<std::vector<uint8_t>> recode_batch(const model::RecordBatchView& batch, uint8_t codec,
                                          int level) {
  using namespace model::batch_layout;
  auto section = ORDO_TRY(records_section(batch));
  Codec target = ORDO_TRY(codec_from_attributes(codec));
  std::vector<uint8_t> body =
      target == Codec::none ? std::move(section) : ORDO_TRY(compress(target, section, level));
  std::vector<uint8_t> out(kHeaderSize + body.size());
  std::copy_n(batch.bytes().begin(), kHeaderSize, out.begin());
  std::copy(body.begin(), body.end(), out.begin() + kHeaderSize);
  uint16_t attrs = uint16_t((batch.attributes() & ~model::batch_attr::kCompressionMask) | codec);
  store_be16(out.data() + kAttributes, attrs);
  store_be32(out.data() + kBatchLength, uint32_t(out.size() - kLogOverhead));
  store_be32(out.data() + kCrc, crc32c(0, out.data() + kCrcStart, out.size() - kCrcStart));
  return out;
}

}  // namespace ordo::compression
