#pragma once
// Decoding of PostgreSQL's logical replication stream: the walsender's CopyData payloads
// (XLogData 'w', primary keepalive 'k') and, inside XLogData, the messages of the pgoutput
// plugin, protocol version 1 (Begin, Commit, Origin, Relation, Type, Insert, Update, Delete,
// Truncate, Message). Facts from PostgreSQL's "Streaming Replication Protocol" and "Logical
// Replication Message Formats" documentation; docs/connect.md summarises them.
//
// The bytes come from a server over the network: every length is checked against the bytes
// present, counts are bounded, and anything malformed is Errc::corrupt naming what (fuzzed:
// tests/fuzz/fuzz_pgoutput.cc). Decoded values are copies: they outlive the buffer.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "base/result.h"

namespace ordo::connect::pg {

using Lsn = uint64_t;

// ---- the replication wrapper ----

struct XLogData {
  Lsn wal_start = 0;
  Lsn wal_end = 0;
  int64_t send_time_us = 0;      // microseconds since 2000-01-01
  std::vector<uint8_t> payload;  // one pgoutput message
};
struct Keepalive {
  Lsn wal_end = 0;
  int64_t send_time_us = 0;
  bool reply_requested = false;
};
using CopyMessage = std::variant<XLogData, Keepalive>;
Result<CopyMessage> decode_copy_data(std::span<const uint8_t> data);

// The standby status update the client sends back ('r'): what it has written, flushed
// (the slot's confirmed flush LSN moves to this) and applied.
std::vector<uint8_t> encode_status_update(Lsn written, Lsn flushed, Lsn applied, int64_t now_us,
                                          bool reply_requested);

// ---- pgoutput messages ----

struct Begin {
  Lsn final_lsn = 0;
  int64_t commit_time_us = 0;
  uint32_t xid = 0;
};
struct Commit {
  uint8_t flags = 0;
  Lsn commit_lsn = 0;
  Lsn end_lsn = 0;
  int64_t commit_time_us = 0;
};
struct Origin {
  Lsn lsn = 0;
  std::string name;
};
struct Column {
  bool key = false;  // part of the replica identity
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
};
struct Relation {
  uint32_t id = 0;
  std::string schema;  // empty for pg_catalog
  std::string name;
  char replica_identity = 'd';  // d default, n nothing, f full, i index
  std::vector<Column> columns;
};
struct Type {
  uint32_t oid = 0;
  std::string schema;
  std::string name;
};
// One column of a row: null, an unchanged TOASTed value (not sent), or its text form.
struct Value {
  enum class Kind : uint8_t { null, unchanged_toast, text };
  Kind kind = Kind::null;
  std::string text;
  bool operator==(const Value&) const = default;
};
using Tuple = std::vector<Value>;
struct Insert {
  uint32_t relation_id = 0;
  Tuple row;
};
struct Update {
  uint32_t relation_id = 0;
  // 'K': the old key columns (the others null), 'O': the whole old row (REPLICA IDENTITY FULL),
  // 0: none was sent (the key did not change).
  char old_kind = 0;
  Tuple old_row;
  Tuple row;
};
struct Delete {
  uint32_t relation_id = 0;
  char old_kind = 'K';  // 'K' or 'O'
  Tuple old_row;
};
struct Truncate {
  bool cascade = false;
  bool restart_identity = false;
  std::vector<uint32_t> relation_ids;
};
struct LogicalMessage {
  bool transactional = false;
  Lsn lsn = 0;
  std::string prefix;
  std::string content;
};
using Message = std::variant<Begin, Commit, Origin, Relation, Type, Insert, Update, Delete,
                             Truncate, LogicalMessage>;

// Bounds on what one message may declare.
inline constexpr size_t kMaxColumns = 1664;  // PostgreSQL's own limit on a row
inline constexpr size_t kMaxTruncateRelations = 65536;

Result<Message> decode_message(std::span<const uint8_t> payload);

// ---- building messages (tests, fuzz seeds) ----

// Big-endian appenders in the stream's own encoding.
struct Writer {
  std::vector<uint8_t> out;
  Writer& u8(uint8_t v);
  Writer& u16(uint16_t v);
  Writer& u32(uint32_t v);
  Writer& u64(uint64_t v);
  Writer& str(std::string_view s);  // NUL-terminated
  Writer& bytes(std::string_view s);
  Writer& tuple(const Tuple& t);
};
std::vector<uint8_t> encode_message(const Message& m);

}  // namespace ordo::connect::pg
