#include "storage/config.h"

namespace ordo::storage {

std::string_view cleanup_policy_name(CleanupPolicy p) {
  switch (p) {
    case CleanupPolicy::del:
      return "delete";
    case CleanupPolicy::compact:
      return "compact";
    case CleanupPolicy::compact_and_delete:
      return "compact,delete";
  }
  return "?";
}

Result<CleanupPolicy> parse_cleanup_policy(std::string_view s) {
  auto trim = [](std::string_view v) {
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    return v;
  };
  bool del = false, compact = false;
  for (size_t guard = 0; guard < 3; ++guard) {
    size_t comma = s.find(',');
    std::string_view part = trim(s.substr(0, comma));
    if (part == "delete" && !del) {
      del = true;
    } else if (part == "compact" && !compact) {
      compact = true;
    } else {
      return make_error(Errc::invalid_argument,
                        "cleanup.policy '{}' (delete, compact or compact,delete)", s);
    }
    if (comma == std::string_view::npos) break;
    s = s.substr(comma + 1);
  }
  if (del && compact) return CleanupPolicy::compact_and_delete;
  return compact ? CleanupPolicy::compact : CleanupPolicy::del;
}

std::string_view flush_mode_name(FlushMode m) {
  switch (m) {
    case FlushMode::none:
      return "none";
    case FlushMode::interval:
      return "interval";
    case FlushMode::durable:
      return "durable";
  }
  return "?";
}

Result<FlushMode> parse_flush_mode(std::string_view s) {
  if (s == "none") return FlushMode::none;
  if (s == "interval") return FlushMode::interval;
  if (s == "durable") return FlushMode::durable;
  return make_error(Errc::invalid_argument, "flush mode '{}' (none, interval, durable)", s);
}

std::string_view preallocate_name(Preallocate p) {
  return p == Preallocate::none ? "none" : "zero_fill";
}

Result<Preallocate> parse_preallocate(std::string_view s) {
  if (s == "none") return Preallocate::none;
  if (s == "zero_fill") return Preallocate::zero_fill;
  return make_error(Errc::invalid_argument, "preallocate '{}' (none, zero_fill)", s);
}

Result<void> LogConfig::validate() const {
  // Positions inside a segment are stored as uint32 in the offset index.
  if (segment_bytes < 14 || segment_bytes > int64_t(INT32_MAX)) {
    return make_error(Errc::invalid_argument, "segment.bytes {} outside [14, {}]", segment_bytes,
                      INT32_MAX);
  }
  if (segment_ms < 1) return make_error(Errc::invalid_argument, "segment.ms must be >= 1");
  if (index_interval_bytes < 0) {
    return make_error(Errc::invalid_argument, "index.interval.bytes must be >= 0");
  }
  if (retention_bytes < -1 || retention_ms < -1) {
    return make_error(Errc::invalid_argument, "retention must be >= -1");
  }
  if (flush_interval_ms < 1) {
    return make_error(Errc::invalid_argument, "flush interval must be >= 1 ms");
  }
  if (preallocate_bytes < 4096 || preallocate_bytes > (int64_t(1) << 30)) {
    return make_error(Errc::invalid_argument, "preallocate bytes {} outside [4096, 1 GiB]",
                      preallocate_bytes);
  }
  if (producer_id_expiration_ms < 1) {
    return make_error(Errc::invalid_argument, "producer id expiration must be >= 1 ms");
  }
  if (max_batch_bytes < 61 || max_batch_bytes > int64_t(INT32_MAX)) {
    return make_error(Errc::invalid_argument, "max batch bytes {} out of range", max_batch_bytes);
  }
  if (delete_retention_ms < 0 || min_compaction_lag_ms < 0 || max_compaction_lag_ms < 1) {
    return make_error(Errc::invalid_argument, "compaction times out of range");
  }
  if (!(min_cleanable_dirty_ratio >= 0 && min_cleanable_dirty_ratio <= 1)) {
    return make_error(Errc::invalid_argument, "min.cleanable.dirty.ratio {} outside [0, 1]",
                      min_cleanable_dirty_ratio);
  }
  return ok();
}

}  // namespace ordo::storage
