#include "storage/config.h"

namespace ordo::storage {

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
  return ok();
}

}  // namespace ordo::storage
