#pragma once
// The PostgreSQL sink: keeps a table equal to its topic, one SQL transaction per batch of a
// partition: the batch's rows go into a temporary staging table with COPY, then one DELETE
// (tombstones) and one INSERT ... ON CONFLICT (key columns) DO UPDATE move them into the
// table, then the sink's row in ordo_sink_offsets, then COMMIT (docs/connect.md, "The
// PostgreSQL sink").
//
// A record's key is a JSON object of the key columns (what change capture writes); its value
// a JSON object of the row (the change event's "after", with `field`). Each field becomes the
// text PostgreSQL's input function for the column's type reads (COPY's text format): a JSON
// string its contents (so json/jsonb columns, which change capture writes as strings of JSON
// text, get that text), an array its PostgreSQL array literal for an array column, a base64
// string hex bytes for a bytea column (change capture writes bytea as base64), any other
// value its JSON text. Within a batch the
// last change of each key wins (the transaction makes the batch atomic, so only its end state
// is visible). A truncate marker deletes the rows its partition wrote: the side table
// ordo_sink_keys_<sink> (pg_sink_keys_table) holds the key columns of every row the sink
// holds with the topic and partition that wrote it, kept in the same transaction. Connects
// lazily and again after a failure. One thread at a time.

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "connect/store.h"

struct pg_conn;

namespace ordo::connect {

struct PgSinkOptions {
  std::string sink;      // the sink's name: its rows in ordo_sink_offsets
  std::string conninfo;  // libpq connection string
  std::string table;     // "schema.table"; it needs a unique index on the key columns
};

// How a JSON value becomes a column's text.
enum class PgColumnKind { plain, array, bytea };

// Appends `v` as one field of COPY's text format (tab-separated, backslash escapes, \N for
// NULL) for a column of the given kind.
void append_copy_field(std::string& out, const nlohmann::json& v, PgColumnKind kind);

// The side table of a sink: "ordo_sink_keys_<sink>", a long name cut and hashed to fit
// PostgreSQL's 63 bytes.
std::string pg_sink_keys_table(std::string_view sink);

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
  struct Column {
    std::string name;
    PgColumnKind kind = PgColumnKind::plain;
  };

  Result<void> connect();
  void disconnect();
  Result<void> exec(const std::string& sql, const std::vector<std::string>& params = {});
  // Sends `sql` (ending in COPY ... FROM STDIN), then `data`, then the end of the copy.
  Result<void> copy_in(const std::string& sql, const std::string& data);
  Result<std::string> literal(std::string_view text);  // quoted for SQL text
  Result<void> fail(std::string_view what);  // Errc::io with the connection's last message

  PgSinkOptions options_;
  std::string qualified_;               // "schema"."table"
  std::vector<Column> columns_;         // of the table, in order (generated columns left out)
  std::string side_name_, side_;        // the side table of keys, plain and quoted
  std::vector<std::string> side_keys_;  // its key columns (empty: it does not exist yet)
  pg_conn* conn_ = nullptr;
};

}  // namespace ordo::connect
