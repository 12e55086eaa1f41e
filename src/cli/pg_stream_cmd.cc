// `ordo connect pg-stream`: a PostgreSQL logical replication stream (pgoutput), decoded and
// printed as one JSON object per line, each transaction confirmed to the slot after its commit
// is printed. A diagnostic for change capture (docs/connect.md), like pg_recvlogical.

#include <signal.h>

#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/commands.h"
#include "connect/pg_json.h"
#include "connect/pg_replication.h"

namespace ordo::cli {

using nlohmann::json;
namespace pg = connect::pg;

namespace {

void print(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

Result<json> row_or_null(const pg::Relation& rel, const pg::Tuple& row) {
  if (row.empty()) return json(nullptr);
  return pg::render_row(rel, row);
}

}  // namespace

int connect_pg_stream(const PgStreamArgs& a) {
  auto fail = [](const Error& e) {
    std::fprintf(stderr, "ordo connect pg-stream: %s\n", e.to_string().c_str());
    return 1;
  };
  auto stream = pg::ReplicationStream::connect(a.conninfo);
  if (!stream) return fail(stream.error());
  pg::ReplicationStream& s = **stream;
  if (a.create_slot) {
    auto slot = s.create_slot(a.slot, false);
    if (!slot) return fail(slot.error());
    print({{"type", "slot"},
           {"name", slot->name},
           {"consistent_point", pg::format_lsn(slot->consistent_point)}});
  }
  if (auto r = s.start(a.slot, a.publication, 0); !r) return fail(r.error());
  std::map<uint32_t, pg::Relation> relations;
  pg::Lsn confirmed = 0;
  int64_t commits = 0;
  while (a.count < 0 || commits < a.count) {
    auto m = s.next(a.idle_timeout_ms);
    if (!m) return fail(m.error());
    if (!*m) break;  // idle for the timeout: done
    if (auto* k = std::get_if<pg::Keepalive>(&**m)) {
      if (k->reply_requested) {
        if (auto r = s.send_status(confirmed, confirmed, confirmed, false); !r)
          return fail(r.error());
      }
      continue;
    }
    const auto& x = std::get<pg::XLogData>(**m);
    auto msg = pg::decode_message(x.payload);
    if (!msg) return fail(msg.error());
    Result<void> printed = std::visit(
        [&](const auto& v) -> Result<void> {
          using T = std::decay_t<decltype(v)>;
          auto rel_of = [&](uint32_t id) -> Result<const pg::Relation*> {
            auto it = relations.find(id);
            if (it == relations.end()) {
              return make_error(Errc::corrupt, "a change of relation {} before its Relation", id);
            }
            return &it->second;
          };
          if constexpr (std::is_same_v<T, pg::Begin>) {
            print({{"type", "begin"}, {"xid", v.xid}, {"final_lsn", pg::format_lsn(v.final_lsn)}});
          } else if constexpr (std::is_same_v<T, pg::Commit>) {
            print({{"type", "commit"},
                   {"lsn", pg::format_lsn(v.commit_lsn)},
                   {"end_lsn", pg::format_lsn(v.end_lsn)}});
            confirmed = v.end_lsn;
            ORDO_TRY(s.send_status(confirmed, confirmed, confirmed, false));
            ++commits;
          } else if constexpr (std::is_same_v<T, pg::Relation>) {
            json cols = json::array();
            for (const auto& c : v.columns) {
              cols.push_back({{"name", c.name}, {"type_oid", c.type_oid}, {"key", c.key}});
            }
            print({{"type", "relation"},
                   {"schema", v.schema},
                   {"table", v.name},
                   {"replica_identity", std::string(1, v.replica_identity)},
                   {"columns", cols}});
            relations[v.id] = v;
          } else if constexpr (std::is_same_v<T, pg::Insert>) {
            const pg::Relation* rel = ORDO_TRY(rel_of(v.relation_id));
            print({{"type", "insert"},
                   {"schema", rel->schema},
                   {"table", rel->name},
                   {"key", ORDO_TRY(pg::render_key(*rel, v.row))},
                   {"after", ORDO_TRY(pg::render_row(*rel, v.row))}});
          } else if constexpr (std::is_same_v<T, pg::Update>) {
            const pg::Relation* rel = ORDO_TRY(rel_of(v.relation_id));
            print({{"type", "update"},
                   {"schema", rel->schema},
                   {"table", rel->name},
                   {"key", ORDO_TRY(pg::render_key(*rel, v.row))},
                   {"before", ORDO_TRY(row_or_null(*rel, v.old_row))},
                   {"after", ORDO_TRY(pg::render_row(*rel, v.row))}});
          } else if constexpr (std::is_same_v<T, pg::Delete>) {
            const pg::Relation* rel = ORDO_TRY(rel_of(v.relation_id));
            print({{"type", "delete"},
                   {"schema", rel->schema},
                   {"table", rel->name},
                   {"key", ORDO_TRY(pg::render_key(*rel, v.old_row))},
                   {"before", ORDO_TRY(pg::render_row(*rel, v.old_row))}});
          } else if constexpr (std::is_same_v<T, pg::Truncate>) {
            json tables = json::array();
            for (uint32_t id : v.relation_ids) {
              const pg::Relation* rel = ORDO_TRY(rel_of(id));
              tables.push_back(rel->schema + "." + rel->name);
            }
            print({{"type", "truncate"}, {"tables", tables}, {"cascade", v.cascade}});
          } else {
            print({{"type", "other"}});
          }
          return ok();
        },
        *msg);
    if (!printed) return fail(printed.error());
  }
  return 0;
}

}  // namespace ordo::cli
