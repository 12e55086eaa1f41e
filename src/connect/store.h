#pragma once
// What a sink task writes to: a store that applies one partition's changes in offset order and
// keeps that partition's next offset in the same atomic write (the position rule). The table
// view (table_view.h) and the Redis sink (redis_sink.h) are stores.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "base/result.h"
#include "model/topic_partition.h"

namespace ordo::connect {

// One record of a partition, in offset order. A null value is a tombstone. A truncate marker
// (change capture's TRUNCATE, pg_source.h) removes what the partition wrote before it; its key
// is ignored.
struct Change {
  std::string key;
  std::optional<std::string> value;
  int64_t offset = 0;
  bool truncate = false;
  // The key and value already parsed, for a sink whose formats ask for them
  // (RecordFormats::keep_json: to_changes parsed them, the store need not again); else null.
  std::shared_ptr<const nlohmann::json> key_json, value_json;
};

class Store {
 public:
  virtual ~Store() = default;
  // The next offset to apply from tp (nullopt: nothing applied yet: start at the earliest).
  // A store that can lose what it held (a cache that restarts empty) answers with the older
  // position (or none) it is left with; the task then reads tp again from there.
  virtual Result<std::optional<int64_t>> position(const model::TopicPartition& tp) = 0;
  // Applies changes of tp (offsets increasing, each at least tp's position) and moves tp's
  // position to next_offset, atomically: after a failure or a crash either all of it is
  // there or none.
  virtual Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                             int64_t next_offset) = 0;
};

}  // namespace ordo::connect
