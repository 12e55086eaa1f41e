#pragma once
// Per-log configuration. Names follow Kafka's topic configs (segment.bytes -> segment_bytes).

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace ordo::storage {

// When an append is acknowledged relative to the disk.
enum class FlushMode {
  none,      // page cache only; the OS writes back (sealed segments are flushed on roll)
  interval,  // a flush every flush_interval_ms
  durable,   // an append completes only after fdatasync covers it (group commit)
};

// How a segment's .log file gets its blocks. fdatasync after appending into never-written
// blocks must commit file-size and allocation metadata to the journal; overwriting blocks that
// were already written and synced is a pure data write (see BENCHMARKS.md for the figures).
enum class Preallocate {
  none,       // append at the end of the file
  zero_fill,  // write zeros ahead of the append position in preallocate_bytes chunks
};

std::string_view flush_mode_name(FlushMode m);
Result<FlushMode> parse_flush_mode(std::string_view s);
std::string_view preallocate_name(Preallocate p);
Result<Preallocate> parse_preallocate(std::string_view s);

struct LogConfig {
  int64_t segment_bytes = int64_t(1) << 30;
  int64_t segment_ms = int64_t(7) * 24 * 3600 * 1000;
  int32_t index_interval_bytes = 4096;
  int64_t retention_bytes = -1;                          // -1: unlimited
  int64_t retention_ms = int64_t(7) * 24 * 3600 * 1000;  // -1: unlimited
  FlushMode flush_mode = FlushMode::durable;
  int64_t flush_interval_ms = 1000;
  // none by measurement (BENCHMARKS.md): zero_fill speeds up small durable appends but writes
  // every byte twice and slows large ones down more than it helps small ones.
  Preallocate preallocate = Preallocate::none;
  int64_t preallocate_bytes = int64_t(16) << 20;
  // The largest single batch the log accepts (the broker's max.message.bytes is smaller).
  int64_t max_batch_bytes = int64_t(64) << 20;
  // Idempotent producers that appended nothing for this long are forgotten (Kafka's
  // producer.id.expiration.ms, 1 day).
  int64_t producer_id_expiration_ms = int64_t(24) * 3600 * 1000;

  Result<void> validate() const;
};

}  // namespace ordo::storage
