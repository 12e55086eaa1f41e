#include "connect/pg_sink.h"

#include <libpq-fe.h>

#include <charconv>
#include <map>

#include <nlohmann/json.hpp>

#include "connect/pg_replication.h"

namespace ordo::connect {

using nlohmann::json;

namespace {

std::string trimmed(std::string msg) {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

}  // namespace

PgSink::PgSink(PgSinkOptions options) : options_(std::move(options)) {
  size_t dot = options_.table.find('.');
  qualified_ = dot == std::string::npos
                   ? pg::quote_ident(options_.table)
                   : pg::quote_ident(options_.table.substr(0, dot)) + "." +
                         pg::quote_ident(options_.table.substr(dot + 1));
}

PgSink::~PgSink() {
  disconnect();
}

void PgSink::disconnect() {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Result<void> PgSink::exec(const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* r = PQexecParams(conn_, sql.c_str(), int(values.size()), nullptr, values.data(),
                             nullptr, nullptr, 0);
  auto st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    std::string msg = trimmed(PQresultErrorMessage(r));
    PQclear(r);
    return make_error(Errc::io, "postgres sink {}: {}", options_.sink, msg);
  }
  PQclear(r);
  return ok();
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
    ORDO_TRY(exec("CREATE TABLE IF NOT EXISTS ordo_sink_offsets (sink text NOT NULL, "
                  "topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL, "
                  "PRIMARY KEY (sink, topic, partition))"));
    std::string sql =
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND "
        "NOT attisdropped AND attgenerated = '' ORDER BY attnum";
    const char* param = qualified_.c_str();
    PGresult* res = PQexecParams(conn_, sql.c_str(), 1, nullptr, &param, nullptr, nullptr, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) == 0) {
      std::string msg = trimmed(PQresultErrorMessage(res));
      PQclear(res);
      return make_error(Errc::io, "postgres sink {}: table {}: {}", options_.sink, options_.table,
                        msg.empty() ? "no columns" : msg);
    }
    columns_.clear();
    for (int i = 0; i < PQntuples(res); ++i) columns_.emplace_back(PQgetvalue(res, i, 0));
    PQclear(res);
    return ok();
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
  struct Segment {
    bool truncate_first = false;
    std::map<std::string, std::optional<std::string>> last;  // key JSON -> row JSON or delete
  };
  std::vector<Segment> segments(1);
  std::vector<std::string> key_columns;
  for (const auto& c : changes) {
    if (c.truncate) {
      segments.push_back(Segment{true, {}});
      continue;
    }
    json key = json::parse(c.key, nullptr, false);
    if (!key.is_object() || key.empty()) {
      return make_error(Errc::invalid_argument, "postgres sink {}: key at offset {} is not a "
                        "JSON object of key columns", options_.sink, c.offset);
    }
    if (key_columns.empty()) {
      for (const auto& [k, _] : key.items()) key_columns.push_back(k);
    }
    std::optional<std::string> row;
    if (c.value) {
      json v = json::parse(*c.value, nullptr, false);
      if (!v.is_object()) {
        return make_error(Errc::invalid_argument,
                          "postgres sink {}: value at offset {} is not a JSON object",
                          options_.sink, c.offset);
      }
      for (const auto& [k, kv] : key.items()) v[k] = kv;  // the key columns come from the key
      row = v.dump();
    }
    segments.back().last[key.dump()] = std::move(row);
  }
  for (const auto& k : key_columns) {
    if (std::find(columns_.begin(), columns_.end(), k) == columns_.end()) {
      return make_error(Errc::invalid_argument, "postgres sink {}: key column {} is not in {}",
                        options_.sink, k, options_.table);
    }
  }
  std::string cols, keys, d_keys, updates;
  for (const auto& c : columns_) {
    cols += (cols.empty() ? "" : ", ") + pg::quote_ident(c);
    if (std::find(key_columns.begin(), key_columns.end(), c) == key_columns.end()) {
      updates += (updates.empty() ? "" : ", ") + pg::quote_ident(c) + " = EXCLUDED." +
                 pg::quote_ident(c);
    }
  }
  for (const auto& k : key_columns) {
    keys += (keys.empty() ? "" : ", ") + pg::quote_ident(k);
    d_keys += (d_keys.empty() ? "" : ", ") + std::string("d.") + pg::quote_ident(k);
  }
  std::string t_keys;
  for (const auto& k : key_columns) {
    t_keys += (t_keys.empty() ? "" : ", ") + std::string("t.") + pg::quote_ident(k);
  }
  auto r = [&]() -> Result<void> {
    ORDO_TRY(exec("BEGIN"));
    for (const auto& seg : segments) {
      if (seg.truncate_first) ORDO_TRY(exec("DELETE FROM " + qualified_));
      json dels = json::array(), ups = json::array();
      for (const auto& [k, row] : seg.last) {
        if (row) {
          ups.push_back(json::parse(*row));
        } else {
          dels.push_back(json::parse(k));
        }
      }
      if (!dels.empty()) {
        ORDO_TRY(exec("DELETE FROM " + qualified_ + " AS t USING json_populate_recordset(NULL::" +
                          qualified_ + ", $1::json) AS d WHERE (" + t_keys + ") = (" + d_keys +
                          ")",
                      {dels.dump()}));
      }
      if (!ups.empty()) {
        ORDO_TRY(exec("INSERT INTO " + qualified_ + " (" + cols + ") SELECT " + cols +
                          " FROM json_populate_recordset(NULL::" + qualified_ +
                          ", $1::json) ON CONFLICT (" + keys + ") DO " +
                          (updates.empty() ? "NOTHING" : "UPDATE SET " + updates),
                      {ups.dump()}));
      }
    }
    ORDO_TRY(exec("INSERT INTO ordo_sink_offsets VALUES ($1, $2, $3, $4) ON CONFLICT (sink, "
                  "topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                  {options_.sink, tp.topic, std::to_string(tp.partition),
                   std::to_string(next_offset)}));
    return exec("COMMIT");
  }();
  if (!r) disconnect();  // the server rolls the open transaction back
  return r;
}

}  // namespace ordo::connect
