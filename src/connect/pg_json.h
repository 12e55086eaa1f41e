#pragma once
// Change events as JSON, the way Debezium's PostgreSQL connector writes them (facts: its
// documented envelope and type mappings), from pgoutput's text-format values.
//
//   key:   {"<key column>": value, ...}            the relation's replica-identity columns
//   value: {"before": row|null, "after": row|null,
//           "source": {"connector": "postgresql", "name": <prefix>, "db": <database>,
//                      "schema", "table", "lsn", "txId", "ts_ms", "snapshot"},
//           "op": "c"|"u"|"d"|"r"|"t", "ts_ms": <when Ordo wrote it>}
//
// Values by type: bool -> true/false; int2/int4/int8/oid -> numbers; float4/float8 -> numbers
// ("NaN", "Infinity", "-Infinity" as strings, JSON has none); numeric -> string (exact);
// bytea -> base64 string; timestamp -> "YYYY-MM-DDTHH:MM:SS[.ffffff]"; timestamptz (the
// replication session runs in UTC) -> the same with "Z"; arrays of these -> JSON arrays
// (nested for several dimensions); json/jsonb, text, uuid, dates, times and every other type
// -> the text as a string; NULL -> null; an unchanged TOASTed value that PostgreSQL did not
// send -> "__debezium_unavailable_value".

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "connect/pgoutput.h"

namespace ordo::connect::pg {

// PostgreSQL type OIDs (pg_type.oid of the built-in types) the rendering knows.
namespace oid {
inline constexpr uint32_t kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kText = 25,
                          kOid = 26, kJson = 114, kFloat4 = 700, kFloat8 = 701, kVarchar = 1043,
                          kDate = 1082, kTime = 1083, kTimestamp = 1114, kTimestamptz = 1184,
                          kNumeric = 1700, kUuid = 2950, kJsonb = 3802;
// Array types -> element types.
uint32_t element_of(uint32_t array_oid);  // 0 when not an array type Ordo knows
}  // namespace oid

inline constexpr std::string_view kUnavailable = "__debezium_unavailable_value";

// One value. Errc::invalid_argument when the text is not a valid value of its type (a bug in
// the server or a type mismatch: the record goes to the dead-letter topic with the reason).
Result<nlohmann::json> render_value(uint32_t type_oid, const Value& v);
// A row as an object keyed by column name.
Result<nlohmann::json> render_row(const Relation& rel, const Tuple& row);
// The key object of a row: its replica-identity (key) columns. Errc::invalid_argument when
// the relation has none (no primary key and REPLICA IDENTITY not FULL or INDEX).
Result<nlohmann::json> render_key(const Relation& rel, const Tuple& row);

// Where a change comes from: the connector's name (the topic prefix), the database, the
// commit's LSN, xid and time, and whether it is part of the initial snapshot.
struct SourceInfo {
  std::string name;
  std::string db;
  Lsn lsn = 0;
  uint32_t xid = 0;
  int64_t commit_time_us = 0;      // PostgreSQL's epoch (2000-01-01), as in Begin/Commit
  std::string snapshot = "false";  // "true", "last" (the snapshot's last row) or "false"
};
// PostgreSQL's epoch in Unix milliseconds.
inline constexpr int64_t kPostgresEpochUnixMs = 946'684'800'000;

// The value of a change event: before/after (null when absent), source, op, ts_ms = now_ms.
nlohmann::json envelope(const Relation& rel, nlohmann::json before, nlohmann::json after, char op,
                        const SourceInfo& source, int64_t now_ms);

// Helpers exposed for tests.
std::string base64(std::string_view bytes);
Result<std::string> bytea_from_hex(std::string_view text);  // "\x0a0b" -> bytes
Result<std::string> iso_timestamp(std::string_view text, bool with_zone);
Result<nlohmann::json> parse_array(std::string_view text, uint32_t element_oid);

}  // namespace ordo::connect::pg
