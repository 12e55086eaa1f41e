#pragma once
// Rebuilding a table view from the log (`ordo view rebuild`, docs/connect.md): a fresh store is
// filled from the earliest offset of each partition by a consumer of its own while the live
// view keeps serving; once it has reached the partitions' ends as they were at the start, the
// live task pauses, the new store catches up with the old one's positions, and the caller
// swaps them.
//
// Also the one place where Kafka records become TableView changes, for the live task and the
// rebuild alike.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "connect/table_view.h"
#include "model/topic_partition.h"

namespace ordo::connect {

// Change capture's TRUNCATE marker (pg_source.h): a record with the header ordo.truncate.
bool is_truncate_marker(const rd_kafka_message_t* m);

// How a sink reads keys and values: "bytes" (anything) or "json" (must parse).
// With `field`, the value must be a JSON object: the change carries that field's JSON (null
// or absent: a delete).
// With `object_keys` (a PostgreSQL sink's key columns) keys must be JSON objects, with
// `object_values` (rows, requests) values.
struct RecordFormats {
  bool json_key = false;
  bool json_value = false;
  std::string field;
  bool object_keys = false;
  bool object_values = false;
  size_t max_key_bytes = 0;  // 0: no limit (memcached: 250 with the prefix)
  bool keep_json = false;    // hand the parsed key and value to the store (Change::key_json)
};
using Rejected = std::vector<std::pair<rd_kafka_message_t*, std::string>>;  // and why

// The changes of one partition's messages (offset order) at or past `from`: values,
// tombstones, truncate markers. Messages a table cannot take (no key; a key or value that
// does not decode in its format) are not changes: they go to `rejected` with the reason.
std::vector<TableView::Change> to_changes(const std::vector<rd_kafka_message_t*>& msgs,
                                          std::optional<int64_t> from, const RecordFormats& f,
                                          Rejected* rejected);

struct RebuildProgress {
  std::string state = "none";  // none, building, catching-up, done, failed
  int64_t generation = 0;      // of the store being built
  int64_t records = 0;         // records read
  int64_t offsets_done = 0;    // sum over partitions of (position - start)
  int64_t offsets_total = 0;   // sum over partitions of (end at the start - start)
  int64_t elapsed_ms = 0;
  std::string error;
};

// Fills p.offsets_done and p.offsets_total: over the partitions, (position - start), the
// position capped at the partition's target, and (target - start). Targets grow when the live
// view is ahead at the catch-up, so the total is counted from them every time: done never
// passes it and a finished rebuild is at 100%.
void count_offsets(RebuildProgress& p, const std::map<model::TopicPartition, int64_t>& start,
                   const std::map<model::TopicPartition, int64_t>& target,
                   const std::map<model::TopicPartition, int64_t>& pos);

struct RebuildOptions {
  std::string bootstrap;
  std::string client_id;
  std::vector<std::string> topics;
  RecordFormats formats;
  // Partitions the view holds (its positions and assignment); empty: every partition of the
  // topics.
  std::vector<model::TopicPartition> partitions;
};

// Fills `into` (an empty store) and returns when it holds at least what the live view holds.
// `pause_live` is called once the first pass is done: it returns the live view's positions
// after its task has paused (and stays paused until the caller resumes it). `progress` is
// called from this thread as the work goes on. Errc::closed when `stopping` became true.
Result<void> rebuild_view(
    const RebuildOptions& options, TableView& into, const std::atomic<bool>& stopping,
    const std::function<void(const RebuildProgress&)>& progress,
    const std::function<Result<std::vector<std::pair<model::TopicPartition, int64_t>>>()>&
        pause_live);

}  // namespace ordo::connect
