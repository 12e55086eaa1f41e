#pragma once
// PostgreSQL change capture: a source task that turns every committed change of the tables in
// a publication into records of one compacted topic per table, `<prefix>.<schema>.<table>`,
// in commit order (docs/connect.md, "PostgreSQL change capture").
//
// A session: connect; make sure the publication exists (created when missing and configured
// to); create the topics (cleanup.policy=compact) of the publication's tables; create the
// slot when missing, exporting its snapshot; on the first start, read every table inside that
// snapshot (REPEATABLE READ) as "r" events; then stream from the slot. The key of a record is
// the row's replica-identity columns as JSON (pg_json.h), the value Debezium's envelope, and a
// delete is followed by a tombstone. A TRUNCATE writes a marker record (key "{}", header
// `ordo.truncate`) to every partition of the table's topic.
//
// Durability: records go out with acks=all through an idempotent producer; a transaction's
// commit LSN counts as done only when every record of it and of every earlier transaction is
// acknowledged. Then the LSN is written to the source's state file (fsynced) and confirmed to
// the slot. A restart streams from the last LSN the state file holds, so a crash loses
// nothing and re-sends at most the transactions after it (at least once; the re-sent records
// carry the same keys and values, so keyed views converge). Transactions whose commit LSN is
// below the stored one, which PostgreSQL may send again after its own restart, are skipped.
//
// Any failure (PostgreSQL or the broker unreachable, a delivery failing, a table without a
// key) ends the session; the task retries with backoff (100 ms doubling to 5 s) from the state
// file, and status shows the error meanwhile.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"

namespace ordo::connect {

struct PgSourceConfig {
  std::string name;                 // [a-zA-Z0-9._-]
  std::string conninfo;             // libpq connection string
  std::string topic_prefix;         // default: name
  std::string slot;                 // default: "ordo_" + name, other characters as '_'
  std::string publication;          // default: the slot's name
  std::vector<std::string> tables;  // "schema.table" for a created publication; empty: all
  bool create_publication = true;   // false: the publication must exist
  bool snapshot = true;             // read the tables once when the slot is created
  int32_t partitions = 1;           // of the topics the source creates
  int64_t heartbeat_ms = 10'000;    // confirm the slot and measure its lag this often
  // Key columns for tables whose replica identity is not enough ("schema.table" -> columns).
  std::map<std::string, std::vector<std::string>> keys;
};

struct PgSourceStatus {
  std::string name;
  std::string state = "starting";  // starting, snapshot, streaming, retrying, stopped
  std::string error;
  std::string slot;
  std::string confirmed_lsn;    // the last LSN stored and confirmed to the slot
  int64_t slot_lag_bytes = -1;  // pg_current_wal_lsn() - the slot's confirmed flush LSN
  int64_t snapshot_rows = 0;
  int64_t transactions = 0;          // committed and acknowledged
  int64_t records = 0;               // produced and acknowledged (snapshot rows included)
  int64_t skipped_transactions = 0;  // sent again by PostgreSQL, already stored
};

class PgSource {
 public:
  // data_dir: where the state file lives (<data_dir>/sources/<name>/state.json).
  static Result<std::unique_ptr<PgSource>> start(PgSourceConfig config, std::string bootstrap,
                                                 std::string data_dir);
  ~PgSource();  // stop()
  PgSource(const PgSource&) = delete;
  PgSource& operator=(const PgSource&) = delete;
  void stop();
  PgSourceStatus status() const;

  struct Session;

 private:
  PgSource() = default;
  void run();

  PgSourceConfig config_;
  std::string bootstrap_;
  std::string state_path_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  PgSourceStatus status_;
  std::thread thread_;
  friend struct Session;
};

// The state file (<data_dir>/sources/<name>/state.json, replaced atomically): the slot, whether
// the snapshot finished, and the LSN up to which every transaction is acknowledged. Exposed for
// the format tests.
struct PgSourceState {
  std::string slot;
  bool snapshot_done = false;
  uint64_t lsn = 0;
  bool operator==(const PgSourceState&) const = default;
};
std::string encode_source_state(const PgSourceState& s);
// Errc::corrupt naming the file when the text is not a state.
Result<PgSourceState> decode_source_state(std::string_view text, std::string_view path);

// The topic of a table: "<prefix>.<schema>.<table>", characters a topic name cannot hold as
// '_' (exposed for tests).
std::string table_topic(std::string_view prefix, std::string_view schema, std::string_view table);

}  // namespace ordo::connect
