#include "connect/pg_sink.h"

#include <libpq-fe.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "connect/pg_replication.h"

namespace ordo::connect {

using nlohmann::json;

namespace {

constexpr const char* kStage = "pg_temp.ordo_sink_stage";
constexpr int kMaxArrayDepth = 6;               // PostgreSQL's MAXDIM
constexpr size_t kCopyChunk = size_t(1) << 20;  // bytes per PQputCopyData

std::string trimmed(std::string msg) {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

void escape_copy(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
    }
  }
}

// A JSON array as PostgreSQL's array literal: {"a","b"}, {{"1","2"},{"3","4"}}, NULL items.
// Every item is quoted; the element type's input function reads the quoted text.
bool append_array_literal(std::string& lit, const json& a, int depth) {
  if (depth > kMaxArrayDepth) return false;
  lit += '{';
  bool first = true;
  for (const auto& e : a) {
    if (!first) lit += ',';
    first = false;
    if (e.is_null()) {
      lit += "NULL";
    } else if (e.is_array()) {
      if (!append_array_literal(lit, e, depth + 1)) return false;
    } else {
      const std::string text = e.is_string() ? e.get<std::string>() : e.dump();
      lit += '"';
      for (char c : text) {
        if (c == '"' || c == '\\') lit += '\\';
        lit += c;
      }
      lit += '"';
    }
  }
  lit += '}';
  return true;
}

int base64_digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding -> lowercase hex, or nullopt when `s` is not that.
std::optional<std::string> base64_to_hex(std::string_view s) {
  if (s.size() % 4 != 0) return std::nullopt;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(s.size() / 4 * 6);
  for (size_t i = 0; i < s.size(); i += 4) {
    const bool last = i + 4 == s.size();
    const int pad = last ? (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=') : 0;
    uint32_t bits = 0;
    for (int j = 0; j < 4; ++j) {
      int d = j >= 4 - pad ? 0 : base64_digit(s[i + j]);
      if (d < 0) return std::nullopt;
      bits = bits << 6 | uint32_t(d);
    }
    for (int j = 0; j < 3 - pad; ++j) {
      uint8_t b = uint8_t(bits >> (16 - 8 * j));
      hex += kHex[b >> 4];
      hex += kHex[b & 15];
    }
  }
  return hex;
}

}  // namespace

void append_copy_field(std::string& out, const json& v, PgColumnKind kind) {
  if (v.is_null()) {
    out += "\\N";
    return;
  }
  switch (kind) {
    case PgColumnKind::array:
      if (v.is_array()) {
        std::string lit;
        if (append_array_literal(lit, v, 1)) {
          escape_copy(out, lit);
          return;
        }
      }
      break;
    case PgColumnKind::bytea:
      if (v.is_string()) {
        if (auto hex = base64_to_hex(v.get_ref<const std::string&>())) {
          out += "\\\\x";  // \x in the field: bytea's hex input
          out += *hex;
          return;
        }
      }
      break;
    case PgColumnKind::plain:
      break;
  }
  if (v.is_string()) {
    escape_copy(out, v.get_ref<const std::string&>());
  } else {
    escape_copy(out, v.dump());
  }
}

PgSink::PgSink(PgSinkOptions options) : options_(std::move(options)) {
  size_t dot = options_.table.find('.');
  qualified_ = dot == std::string::npos ? pg::quote_ident(options_.table)
                                        : pg::quote_ident(options_.table.substr(0, dot)) + "." +
                                              pg::quote_ident(options_.table.substr(dot + 1));
  side_name_ = pg_sink_keys_table(options_.sink);
  side_ = pg::quote_ident(side_name_);
}

std::string pg_sink_keys_table(std::string_view sink) {
  // PostgreSQL cuts names at 63 bytes: a long sink name keeps its first 26 bytes and a hash
  // of all of it (FNV-1a), so two long names that start alike still differ. Room is left for
  // the index's "_key".
  std::string name = "ordo_sink_keys_" + std::string(sink);
  if (name.size() <= 59) return name;
  uint64_t h = 14695981039346656037ull;
  for (char c : sink) h = (h ^ uint8_t(c)) * 1099511628211ull;
  static constexpr char kHex[] = "0123456789abcdef";
  name.resize(15 + 26);
  name += '_';
  for (int i = 60; i >= 0; i -= 4) name += kHex[(h >> i) & 15];
  return name;
}

PgSink::~PgSink() {
  disconnect();
}

void PgSink::disconnect() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Result<void> PgSink::fail(std::string_view what) {
  return make_error(Errc::io, "postgres sink {}: {}: {}", options_.sink, what,
                    trimmed(PQerrorMessage(conn_)));
}

Result<void> PgSink::exec(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* r = params.empty() ? PQexec(conn_, sql.c_str())
                               : PQexecParams(conn_, sql.c_str(), int(values.size()), nullptr,
                                              values.data(), nullptr, nullptr, 0);
  auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = trimmed(PQresultErrorMessage(r));
    PQclear(r);
    return make_error(Errc::io, "postgres sink {}: {}", options_.sink, msg);
  }
  PQclear(r);
  return ok();
}

Result<void> PgSink::copy_in(const std::string& sql, const std::string& data) {
  if (!PQsendQuery(conn_, sql.c_str())) return fail("send");
  for (;;) {  // the statements before the COPY, then the COPY itself
    PGresult* r = PQgetResult(conn_);
    if (!r) return fail("COPY did not start");
    auto st = PQresultStatus(r);
    if (st == PGRES_COPY_IN) {
      PQclear(r);
      break;
    }
    if (st != PGRES_COMMAND_OK) {
      std::string msg = trimmed(PQresultErrorMessage(r));
      PQclear(r);
      return make_error(Errc::io, "postgres sink {}: {}", options_.sink, msg);
    }
    PQclear(r);
  }
  for (size_t at = 0; at < data.size(); at += kCopyChunk) {
    size_t n = std::min(kCopyChunk, data.size() - at);
    if (PQputCopyData(conn_, data.data() + at, int(n)) != 1) return fail("COPY data");
  }
  if (PQputCopyEnd(conn_, nullptr) != 1) return fail("COPY end");
  Result<void> out = ok();
  while (PGresult* r = PQgetResult(conn_)) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && out) {
      out = make_error(Errc::io, "postgres sink {}: {}", options_.sink,
                       trimmed(PQresultErrorMessage(r)));
    }
    PQclear(r);
  }
  return out;
}

Result<std::string> PgSink::literal(std::string_view text) {
  char* q = PQescapeLiteral(conn_, text.data(), text.size());
  if (!q)
    return make_error(Errc::invalid_argument, "postgres sink {}: {}", options_.sink,
                      trimmed(PQerrorMessage(conn_)));
  std::string out(q);
  PQfreemem(q);
  return out;
}

Result<void> PgSink::connect() {
  if (conn_ && PQstatus(conn_) == CONNECTION_OK) return ok();
  disconnect();
  conn_ = PQconnectdb((options_.conninfo + " application_name=ordo-connect-sink").c_str());
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = trimmed(PQerrorMessage(conn_));
    disconnect();
    return make_error(Errc::io, "postgres sink {}: connect: {}", options_.sink, msg);
  }
  auto r = [&]() -> Result<void> {
    ORDO_TRY(
        exec("CREATE TABLE IF NOT EXISTS ordo_sink_offsets (sink text NOT NULL, "
             "topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL, "
             "PRIMARY KEY (sink, topic, partition))"));
    // Each column and how its text is written: arrays, bytea (17), the rest; a domain by its
    // base type.
    std::string sql =
        "SELECT a.attname, CASE WHEN t.typcategory = 'A' THEN 'a' WHEN base = 17 THEN 'b' "
        "ELSE 'p' END FROM pg_attribute a JOIN pg_type t ON "
        "t.oid = a.atttypid, LATERAL (SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype "
        "ELSE a.atttypid END AS base) b WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND "
        "NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum";
    const char* param = qualified_.c_str();
    PGresult* res = PQexecParams(conn_, sql.c_str(), 1, nullptr, &param, nullptr, nullptr, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
      std::string msg = trimmed(PQresultErrorMessage(res));
      PQclear(res);
      return make_error(Errc::io, "postgres sink {}: table {}: {}", options_.sink, options_.table,
                        msg.empty() ? "no columns" : msg);
    }
    columns_.clear();
    for (int i = 0; i < PQntuples(res); ++i) {
      const char k = PQgetvalue(res, i, 1)[0];
      columns_.push_back({PQgetvalue(res, i, 0), k == 'a'   ? PgColumnKind::array
                                                 : k == 'b' ? PgColumnKind::bytea
                                                            : PgColumnKind::plain});
    }
    PQclear(res);
    // The key columns of the side table of the keys each partition wrote, when it exists.
    const char* side_param = side_.c_str();
    res = PQexecParams(conn_,
                       "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND "
                       "attnum > 0 AND NOT attisdropped AND attname NOT IN ('ordo_topic', "
                       "'ordo_partition') ORDER BY attnum",
                       1, nullptr, &side_param, nullptr, nullptr, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      std::string msg = trimmed(PQresultErrorMessage(res));
      PQclear(res);
      return make_error(Errc::io, "postgres sink {}: {}: {}", options_.sink, side_name_, msg);
    }
    side_keys_.clear();
    for (int i = 0; i < PQntuples(res); ++i) side_keys_.push_back(PQgetvalue(res, i, 0));
    PQclear(res);
    // The staging table: the table's columns and types without its constraints, emptied at
    // every commit, private to this session.
    std::string cols;
    for (const auto& c : columns_) cols += pg::quote_ident(c.name) + ", ";
    return exec("CREATE TEMP TABLE ordo_sink_stage ON COMMIT DELETE ROWS AS SELECT " + cols +
                "0 AS ordo_sink_segment, false AS ordo_sink_delete FROM " + qualified_ +
                " WITH NO DATA");
  }();
  if (!r) disconnect();
  return r;
}

Result<std::optional<int64_t>> PgSink::position(const model::TopicPartition& tp) {
  ORDO_TRY(connect());
  std::string part = std::to_string(tp.partition);
  const char* params[] = {options_.sink.c_str(), tp.topic.c_str(), part.c_str()};
  PGresult* r = PQexecParams(conn_,
                             "SELECT next_offset FROM ordo_sink_offsets WHERE sink = $1 AND "
                             "topic = $2 AND partition = $3",
                             3, nullptr, params, nullptr, nullptr, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::string msg = trimmed(PQresultErrorMessage(r));
    PQclear(r);
    disconnect();
    return make_error(Errc::io, "postgres sink {}: {}", options_.sink, msg);
  }
  std::optional<int64_t> out;
  if (PQntuples(r) == 1) {
    int64_t v = -1;
    std::string_view s = PQgetvalue(r, 0, 0);
    std::from_chars(s.data(), s.data() + s.size(), v);
    out = v;
  }
  PQclear(r);
  return out;
}

Result<void> PgSink::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                           int64_t next_offset) {
  ORDO_TRY(connect());
  // Segments between truncate markers; in each, the last change of every key.
  struct Latest {
    std::shared_ptr<const json> key;
    std::shared_ptr<const json> row;  // null: delete
  };
  struct Segment {
    bool truncate_first = false;
    std::map<std::string, Latest> last;  // canonical key JSON -> its last change
  };
  std::vector<Segment> segments(1);
  std::vector<std::string> key_columns;
  for (const auto& c : changes) {
    if (c.truncate) {
      segments.push_back(Segment{true, {}});
      continue;
    }
    auto key =
        c.key_json ? c.key_json : std::make_shared<const json>(json::parse(c.key, nullptr, false));
    if (!key->is_object() || key->empty()) {
      return make_error(Errc::invalid_argument,
                        "postgres sink {}: key at offset {} is not a "
                        "JSON object of key columns",
                        options_.sink, c.offset);
    }
    if (key_columns.empty()) {
      for (const auto& [k, _] : key->items()) key_columns.push_back(k);
    }
    std::shared_ptr<const json> row;
    if (c.value) {
      row = c.value_json ? c.value_json
                         : std::make_shared<const json>(json::parse(*c.value, nullptr, false));
      if (!row->is_object()) {
        return make_error(Errc::invalid_argument,
                          "postgres sink {}: value at offset {} is not a JSON object",
                          options_.sink, c.offset);
      }
    }
    std::string id = key->dump();
    segments.back().last.insert_or_assign(std::move(id), Latest{std::move(key), std::move(row)});
  }
  for (const auto& k : key_columns) {
    if (std::none_of(columns_.begin(), columns_.end(),
                     [&](const Column& c) { return c.name == k; })) {
      return make_error(Errc::invalid_argument, "postgres sink {}: key column {} is not in {}",
                        options_.sink, k, options_.table);
    }
  }

  // The staging rows: the table's columns (a row's key columns from its key), then the
  // segment and whether the row is a delete.
  static const json kNull;
  std::string data;
  for (size_t s = 0; s < segments.size(); ++s) {
    for (const auto& [_, latest] : segments[s].last) {
      for (const auto& col : columns_) {
        const json* v = &kNull;
        if (auto it = latest.key->find(col.name); it != latest.key->end()) {
          v = &*it;
        } else if (latest.row) {
          if (auto rt = latest.row->find(col.name); rt != latest.row->end()) v = &*rt;
        }
        append_copy_field(data, *v, col.kind);
        data += '\t';
      }
      data += std::to_string(s);
      data += latest.row ? "\tf\n" : "\tt\n";
    }
  }

  // The side table must hold the same key columns as the keys.
  if (!key_columns.empty() && !side_keys_.empty()) {
    auto a = key_columns, b = side_keys_;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) {
      return make_error(Errc::invalid_argument,
                        "postgres sink {}: the keys' columns differ from those of {}",
                        options_.sink, side_name_);
    }
  }
  auto sink_literal = literal(options_.sink);
  auto topic_literal = literal(tp.topic);
  if (!sink_literal) return std::move(sink_literal).error();
  if (!topic_literal) return std::move(topic_literal).error();
  const std::string partition = std::to_string(tp.partition);

  std::string cols, keys, updates, match;
  for (const auto& c : columns_) {
    const std::string q = pg::quote_ident(c.name);
    cols += (cols.empty() ? "" : ", ") + q;
    if (std::find(key_columns.begin(), key_columns.end(), c.name) == key_columns.end()) {
      updates += (updates.empty() ? "" : ", ") + q + " = EXCLUDED." + q;
    }
  }
  for (const auto& k : key_columns) {
    const std::string q = pg::quote_ident(k);
    keys += (keys.empty() ? "" : ", ") + q;
    match += " AND t." + q + " = d." + q;
  }
  // After the copy, one round trip: per segment the deletes then the upserts, then the
  // position, then COMMIT. A failing statement stops the rest; the transaction is rolled back
  // when the connection closes. The side table follows the table: its rows are the keys this
  // sink holds with the partition that wrote each, so a truncate marker deletes exactly the
  // rows of its partition. It is created with the first keys the sink sees.
  std::string rest;
  const bool creates_side = side_keys_.empty() && !key_columns.empty();
  if (creates_side) {
    rest += "CREATE TABLE IF NOT EXISTS " + side_ + " AS SELECT " + keys +
            ", ''::text AS ordo_topic, 0 AS ordo_partition FROM " + qualified_ +
            " WITH NO DATA;\nCREATE UNIQUE INDEX IF NOT EXISTS " +
            pg::quote_ident(side_name_ + "_key") + " ON " + side_ + " (" + keys + ");\n";
  }
  const std::vector<std::string>& side_keys = creates_side ? key_columns : side_keys_;
  const std::string of_partition =
      "d.ordo_topic = " + *topic_literal + " AND d.ordo_partition = " + partition;
  for (size_t s = 0; s < segments.size(); ++s) {
    const std::string seg = std::to_string(s);
    if (segments[s].truncate_first && !side_keys.empty()) {
      std::string side_match;
      for (const auto& k : side_keys) {
        const std::string q = pg::quote_ident(k);
        side_match += " AND t." + q + " = d." + q;
      }
      rest += "DELETE FROM " + qualified_ + " AS t USING " + side_ + " AS d WHERE " + of_partition +
              side_match + ";\nDELETE FROM " + side_ + " AS d WHERE " + of_partition + ";\n";
    }
    if (segments[s].last.empty()) continue;
    const std::string of_segment = " AS d WHERE d.ordo_sink_segment = " + seg;
    rest += "DELETE FROM " + qualified_ + " AS t USING " + kStage + of_segment +
            " AND d.ordo_sink_delete" + match + ";\nDELETE FROM " + side_ + " AS t USING " +
            kStage + of_segment + " AND d.ordo_sink_delete" + match + ";\nINSERT INTO " +
            qualified_ + " (" + cols + ") SELECT " + cols + " FROM " + kStage +
            " WHERE ordo_sink_segment = " + seg + " AND NOT ordo_sink_delete ON CONFLICT (" + keys +
            ") DO " + (updates.empty() ? "NOTHING" : "UPDATE SET " + updates) + ";\nINSERT INTO " +
            side_ + " AS t (" + keys + ", ordo_topic, ordo_partition) SELECT " + keys + ", " +
            *topic_literal + ", " + partition + " FROM " + kStage +
            " WHERE ordo_sink_segment = " + seg + " AND NOT ordo_sink_delete ON CONFLICT (" + keys +
            ") DO UPDATE SET ordo_topic = EXCLUDED.ordo_topic, ordo_partition = " +
            "EXCLUDED.ordo_partition WHERE (t.ordo_topic, t.ordo_partition) IS DISTINCT FROM " +
            "(EXCLUDED.ordo_topic, EXCLUDED.ordo_partition);\n";
  }
  rest += "INSERT INTO ordo_sink_offsets VALUES (" + *sink_literal + ", " + *topic_literal + ", " +
          partition + ", " + std::to_string(next_offset) +
          ") ON CONFLICT (sink, topic, partition) DO UPDATE SET next_offset = "
          "EXCLUDED.next_offset;\nCOMMIT";
  auto r = [&]() -> Result<void> {
    if (data.empty()) {
      ORDO_TRY(exec("BEGIN"));
    } else {
      ORDO_TRY(copy_in("BEGIN; COPY " + std::string(kStage) + " (" + cols +
                           ", ordo_sink_segment, ordo_sink_delete) FROM STDIN",
                       data));
    }
    return exec(rest);
  }();
  if (!r) {
    disconnect();  // the server rolls the open transaction back
    return r;
  }
  if (creates_side) side_keys_ = key_columns;
  return r;
}

}  // namespace ordo::connect
