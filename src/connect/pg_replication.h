#pragma once
// A logical replication connection to PostgreSQL over libpq: create a slot for the pgoutput
// plugin, start streaming from an LSN, read the walsender's CopyData messages (decoded by
// pgoutput.h) and send standby status updates, which move the slot's confirmed flush LSN.
// The connection runs with TimeZone=UTC and bytea_output=hex, which pg_json.h relies on.
// One thread at a time.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "connect/pgoutput.h"

struct pg_conn;

namespace ordo::connect::pg {

std::string format_lsn(Lsn lsn);  // "16/B374D848"
Result<Lsn> parse_lsn(std::string_view text);

// An ordinary SQL connection with the same session settings as the replication one (so a
// snapshot's text values match the stream's): the catalog queries, publications, the initial
// snapshot and slot lag. One thread at a time.
class Connection {
 public:
  static Result<std::unique_ptr<Connection>> connect(const std::string& conninfo);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  struct Rows {
    std::vector<std::string> names;
    std::vector<uint32_t> types;                                // column type OIDs
    std::vector<std::vector<std::optional<std::string>>> rows;  // text values; nullopt = NULL
  };
  // Runs one statement with text parameters ($1, $2, ...). Errc::io when it fails; the error
  // carries PostgreSQL's message.
  Result<Rows> query(const std::string& sql, const std::vector<std::string>& params = {});

 private:
  explicit Connection(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
};

// "schema"."name" with quotes doubled, for SQL text.
std::string quote_ident(std::string_view name);

class ReplicationStream {
 public:
  // conninfo: a libpq connection string (host, port, dbname, user, ...); replication=database
  // and the session options are added. Errc::io when the server cannot be reached or refuses.
  static Result<std::unique_ptr<ReplicationStream>> connect(const std::string& conninfo);
  ~ReplicationStream();
  ReplicationStream(const ReplicationStream&) = delete;
  ReplicationStream& operator=(const ReplicationStream&) = delete;

  struct Slot {
    std::string name;
    Lsn consistent_point = 0;
    std::string snapshot;  // exported snapshot name; empty without EXPORT_SNAPSHOT
  };
  // CREATE_REPLICATION_SLOT name LOGICAL pgoutput; Errc::already_exists when it exists.
  Result<Slot> create_slot(const std::string& name, bool export_snapshot);
  // START_REPLICATION SLOT name LOGICAL from (0: where the slot's confirmed flush LSN is),
  // protocol version 1, the given publication.
  Result<void> start(const std::string& slot, const std::string& publication, Lsn from);
  // The next CopyData message, or nullopt when none came within timeout_ms. Errc::closed
  // when the server ended the stream, Errc::io when the connection broke, Errc::corrupt when a
  // message does not decode.
  Result<std::optional<CopyMessage>> next(int timeout_ms);
  Result<void> send_status(Lsn written, Lsn flushed, Lsn applied, bool reply_requested);

 private:
  explicit ReplicationStream(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
};

}  // namespace ordo::connect::pg
