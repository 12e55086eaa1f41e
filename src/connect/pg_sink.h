#pragma once
// The PostgreSQL sink: keeps a table equal to its topic, one SQL transaction per batch of a
// partition: the batch's upserts (INSERT ... ON CONFLICT (key columns) DO UPDATE) and deletes,
// then the sink's row in ordo_sink_offsets, then COMMIT (docs/connect.md, "The PostgreSQL
// sink").
//
// A record's key is a JSON object of the key columns (what change capture writes); its value
// a JSON object of the row (the change event's "after", with `field`), turned into the table's
// row type by PostgreSQL itself (json_populate_recordset). Within a batch the last change of
// each key wins (the transaction makes the batch atomic, so only its end state is visible). A
// truncate marker deletes every row of the table. Connects lazily and again after a failure.
// One thread at a time.

#include <memory>
#include <string>
#include <vector>

#include "connect/store.h"

struct pg_conn;

namespace ordo::connect {

struct PgSinkOptions {
  std::string sink;      // the sink's name: its rows in ordo_sink_offsets
  std::string conninfo;  // libpq connection string
  std::string table;     // "schema.table"; it needs a unique index on the key columns
};

class PgSink : public Store {
 public:
  explicit PgSink(PgSinkOptions options);
  ~PgSink() override;
  PgSink(const PgSink&) = delete;
  PgSink& operator=(const PgSink&) = delete;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  // Errc::invalid_argument when a key or value is not a JSON object (the caller's formats
  // make sure they are).
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

 private:
  Result<void> connect();
  void disconnect();
  Result<void> exec(const std::string& sql, const std::vector<std::string>& params = {});

  PgSinkOptions options_;
  std::string qualified_;             // "schema"."table"
  std::vector<std::string> columns_;  // of the table, in order
  pg_conn* conn_ = nullptr;
};

}  // namespace ordo::connect
