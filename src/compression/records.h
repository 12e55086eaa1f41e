#pragma once
// The records of a v2 batch whatever its codec: the one place that decompresses a batch for
// the broker (produce validation) and the storage (timestamp lookups inside a batch).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/result.h"
#include "compression/compression.h"
#include "model/record_batch.h"

namespace ordo::compression {

// The most uncompressed record bytes one batch may hold. Producers size batches by their
// uncompressed bytes (a few MiB at most), so this refuses only decompression bombs.
constexpr size_t kMaxBatchRecordsBytes = size_t(64) << 20;

// The batch's records section, decompressed when the batch is compressed (a copy otherwise).
// Errors: Errc::corrupt (bad compressed bytes), Errc::too_large (more than max_output),
// Errc::invalid_argument (codec 5-7).
Result<std::vector<uint8_t>> records_section(const model::RecordBatchView& batch,
                                             size_t max_output = kMaxBatchRecordsBytes);

// Checks every record of the batch (decompressing it if needed) and summarises them.
Result<model::RecordsSummary> scan_batch(const model::RecordBatchView& batch,
                                         size_t max_output = kMaxBatchRecordsBytes);

// Owns the (decompressed) bytes the decoded records point into.
struct DecodedBatch {
  std::vector<uint8_t> section;
  std::vector<model::RecordView> records;
};
Result<DecodedBatch> decode_batch(const model::RecordBatchView& batch,
                                  size_t max_output = kMaxBatchRecordsBytes);

// The same batch with its records section encoded with another codec (the header's
// attributes, batchLength and CRC follow; every other header field is kept), at `level` (see
// compress()). The compaction cleaner re-encodes batches with it, the broker recompresses
// produced batches to a topic's compression.type; tests build compressed batches with it.
Result<std::vector<uint8_t>> recode_batch(const model::RecordBatchView& batch, uint8_t codec,
                                          int level = kDefaultLevel);

}  // namespace ordo::compression
