#pragma once
// Aggregates: a count and a sum per group of a keyed topic's rows (the unread count per
// mailbox), kept in RocksDB together with the position, and published as absolute values to a
// compacted output topic (docs/connect.md, "Aggregates").
//
// The input is a table as a topic: each key's latest value is a row (a JSON object; with
// `field`, e.g. a change event's "after"), a tombstone or null deletes the row. A row counts in
// the group named by its `group_by` field when it matches `where` (field = value equalities);
// `sum` names a numeric field to add up. Since an update carries only the new row, the store
// remembers each key's contribution (group, sum, partition) and moves it when the row changes.
//
// One batch: compute the new group values, publish every changed group to the output topic
// (key = the group's JSON, value {"group", "count", "sum"}) and wait for the acknowledgements,
// then write the key states, group values and position in one synced WriteBatch. A crash
// between the two publishes the same values again on replay (they are absolute, so a reader
// sees no double counting). Thread safety: apply() from the task's thread; group() and
// groups() from any thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "connect/store.h"

namespace rocksdb {
class DB;
}

namespace ordo::connect {

struct AggregateOptions {
  std::string group_by;                         // a field of the row
  std::string sum;                              // optional: a numeric field to sum
  std::map<std::string, nlohmann::json> where;  // field -> value the row must have
  // Publishes changed groups (key, value) and returns when all are acknowledged.
  std::function<Result<void>(const std::vector<std::pair<std::string, std::string>>&)> publish;
};

class AggregateStore : public Store {
 public:
  static Result<std::unique_ptr<AggregateStore>> open(const std::string& path,
                                                      AggregateOptions options);
  ~AggregateStore() override;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  // Errc::invalid_argument for a row that is not a JSON object (the sink's formats send such
  // records to the dead letters first).
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  struct Group {
    int64_t count = 0;
    nlohmann::json sum = 0;  // an integer while every summed value is one
  };
  // The group whose group_by value has this JSON text ("7", "\"inbox\"").
  Result<std::optional<Group>> group(const std::string& group_json) const;
  Result<std::vector<std::pair<std::string, Group>>> groups(size_t limit) const;

 private:
  AggregateStore(std::unique_ptr<rocksdb::DB> db, AggregateOptions options);
  AggregateOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace ordo::connect
