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

// Kafka's cleanup.policy: what happens to old data. Retention by time and size applies only
// when the policy includes delete; the compaction cleaner (cleaner.h) only when it includes
// compact.
enum class CleanupPolicy {
  del,                 // "delete"
  compact,             // "compact"
  compact_and_delete,  // "compact,delete" (either order)
};
inline bool policy_deletes(CleanupPolicy p) {
  return p != CleanupPolicy::compact;
}
inline bool policy_compacts(CleanupPolicy p) {
  return p != CleanupPolicy::del;
}
std::string_view cleanup_policy_name(CleanupPolicy p);
// Accepts what the broker's topic config accepts (src/broker/topics.cc): "delete", "compact",
// "compact,delete" or "delete,compact", spaces around the comma allowed.
Result<CleanupPolicy> parse_cleanup_policy(std::string_view s);

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

  // Compaction (Kafka's topic configs of the same names; see cleaner.h).
  CleanupPolicy cleanup_policy = CleanupPolicy::del;
  // A tombstone (null value) is removed by the cleaner once its batch's max timestamp is this
  // much older than now (1 day).
  int64_t delete_retention_ms = int64_t(24) * 3600 * 1000;
  // A clean runs when dirty bytes / (clean + dirty bytes) of the cleanable segments reaches this.
  double min_cleanable_dirty_ratio = 0.5;
  // Segments whose newest record is younger than this are not cleaned yet.
  int64_t min_compaction_lag_ms = 0;
  // A dirty segment whose newest record is older than this is cleaned whatever the ratio.
  int64_t max_compaction_lag_ms = INT64_MAX;

  Result<void> validate() const;
  bool operator==(const LogConfig&) const = default;
};

}  // namespace ordo::storage
