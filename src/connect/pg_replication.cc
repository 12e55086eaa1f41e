#include "connect/pg_replication.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace ordo::connect::pg {

namespace {

Error conn_error(pg_conn* c, std::string_view what) {
  std::string msg = PQerrorMessage(c);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return make_error(Errc::io, "postgres: {}: {}", what, msg);
}

// Quotes a libpq connection-string value.
std::string conn_value(std::string_view v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

const char* kSessionOptions = "-c TimeZone=UTC -c bytea_output=hex -c DateStyle=ISO";

int64_t now_pg_us() {
  int64_t unix_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  return unix_us - int64_t(946'684'800) * 1'000'000;
}

}  // namespace

// Identifiers in SQL and replication commands are quoted (a slot, publication or table name is
// user input).
std::string quote_ident(std::string_view v) {
  std::string out = "\"";
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

namespace {

// A connection with the session settings the rendering relies on; `extra` adds parameters.
Result<pg_conn*> open_session(const std::string& conninfo, std::string_view extra) {
  std::string full = fmt::format("{} {} application_name=ordo-connect options={}", conninfo, extra,
                                 conn_value(kSessionOptions));
  pg_conn* c = PQconnectdb(full.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    Error e = conn_error(c, "connect");
    PQfinish(c);
    return e;
  }
  return c;
}

}  // namespace

Result<std::unique_ptr<Connection>> Connection::connect(const std::string& conninfo) {
  pg_conn* c = ORDO_TRY(open_session(conninfo, ""));  // not inside `new`: it would leak
  return std::unique_ptr<Connection>(new Connection(c));
}

Connection::~Connection() {
  PQfinish(conn_);
}

Result<Connection::Rows> Connection::query(const std::string& sql,
                                           const std::vector<std::string>& params) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* r = PQexecParams(conn_, sql.c_str(), int(values.size()), nullptr, values.data(),
                             nullptr, nullptr, 0);
  auto st = PQresultStatus(r);
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
    std::string msg = PQresultErrorMessage(r);
    PQclear(r);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return make_error(Errc::io, "postgres: {}", msg);
  }
  Rows out;
  int cols = PQnfields(r), n = PQntuples(r);
  for (int c = 0; c < cols; ++c) {
    out.names.emplace_back(PQfname(r, c));
    out.types.push_back(PQftype(r, c));
  }
  out.rows.reserve(size_t(n));
  for (int i = 0; i < n; ++i) {
    auto& row = out.rows.emplace_back();
    row.reserve(size_t(cols));
    for (int c = 0; c < cols; ++c) {
      if (PQgetisnull(r, i, c)) {
        row.emplace_back();
      } else {
        row.emplace_back(std::string(PQgetvalue(r, i, c), size_t(PQgetlength(r, i, c))));
      }
    }
  }
  PQclear(r);
  return out;
}

std::string format_lsn(Lsn lsn) {
  return fmt::format("{:X}/{:X}", uint32_t(lsn >> 32), uint32_t(lsn));
}

Result<Lsn> parse_lsn(std::string_view text) {
  uint32_t hi = 0, lo = 0;
  size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size() || slash > 8 ||
      text.size() - slash - 1 > 8) {
    return make_error(Errc::invalid_argument, "'{}' is not an LSN", text);
  }
  for (size_t i = 0; i < text.size(); ++i) {
    if (i == slash) continue;
    char c = text[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                   : -1;
    if (d < 0) return make_error(Errc::invalid_argument, "'{}' is not an LSN", text);
    uint32_t& part = i < slash ? hi : lo;
    part = part << 4 | uint32_t(d);
  }
  return Lsn(hi) << 32 | lo;
}

Result<std::unique_ptr<ReplicationStream>> ReplicationStream::connect(const std::string& conninfo) {
  pg_conn* c = ORDO_TRY(open_session(conninfo, "replication=database"));  // not inside `new`
  return std::unique_ptr<ReplicationStream>(new ReplicationStream(c));
}

ReplicationStream::~ReplicationStream() {
  PQfinish(conn_);
}

Result<ReplicationStream::Slot> ReplicationStream::create_slot(const std::string& name,
                                                               bool export_snapshot) {
  std::string cmd = fmt::format("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {}", quote_ident(name),
                                export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
  PGresult* r = PQexec(conn_, cmd.c_str());
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) < 3) {
    std::string state =
        PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : "";
    Error e = conn_error(conn_, "create slot " + name);
    if (state == "42710") e.code = Errc::already_exists;  // duplicate_object
    PQclear(r);
    return e;
  }
  Slot s;
  s.name = PQgetvalue(r, 0, 0);
  auto lsn = parse_lsn(PQgetvalue(r, 0, 1));
  if (!PQgetisnull(r, 0, 2)) s.snapshot = PQgetvalue(r, 0, 2);
  PQclear(r);
  s.consistent_point = ORDO_TRY(std::move(lsn));
  return s;
}

Result<void> ReplicationStream::start(const std::string& slot, const std::string& publication,
                                      Lsn from) {
  // The publication list is a string literal of comma-separated names.
  std::string pubs;
  for (char c : publication) {
    if (c == '\'') pubs += '\'';
    pubs += c;
  }
  std::string cmd = fmt::format(
      "START_REPLICATION SLOT {} LOGICAL {} (proto_version '1', publication_names '{}')",
      quote_ident(slot), format_lsn(from), pubs);
  PGresult* r = PQexec(conn_, cmd.c_str());
  bool ok_copy = PQresultStatus(r) == PGRES_COPY_BOTH;
  PQclear(r);
  if (!ok_copy) return conn_error(conn_, "start replication from slot " + slot);
  return ok();
}

Result<std::optional<CopyMessage>> ReplicationStream::next(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    char* buf = nullptr;
    int n = PQgetCopyData(conn_, &buf, 1);
    if (n > 0) {
      auto m =
          decode_copy_data(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(buf), size_t(n)));
      PQfreemem(buf);
      if (!m) return std::move(m).error();
      return std::optional<CopyMessage>(std::move(*m));
    }
    if (n == -1) {
      PGresult* r = PQgetResult(conn_);
      PQclear(r);
      return make_error(Errc::closed, "postgres ended the replication stream");
    }
    if (n == -2) return conn_error(conn_, "read replication stream");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return std::optional<CopyMessage>();
    pollfd p{PQsocket(conn_), POLLIN, 0};
    int pr = ::poll(&p, 1, int(left));
    if (pr < 0 && errno != EINTR) return make_error(Errc::io, "poll: {}", std::strerror(errno));
    if (PQconsumeInput(conn_) == 0) return conn_error(conn_, "read replication stream");
  }
}

Result<void> ReplicationStream::send_status(Lsn written, Lsn flushed, Lsn applied,
                                            bool reply_requested) {
  auto bytes = encode_status_update(written, flushed, applied, now_pg_us(), reply_requested);
  if (PQputCopyData(conn_, reinterpret_cast<const char*>(bytes.data()), int(bytes.size())) != 1 ||
      PQflush(conn_) != 0) {
    return conn_error(conn_, "send standby status");
  }
  return ok();
}

}  // namespace ordo::connect::pg
