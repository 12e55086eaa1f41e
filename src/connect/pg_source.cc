#include "connect/pg_source.h"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "connect/kafka_admin.h"
#include "connect/pg_json.h"
#include "connect/pg_replication.h"

namespace ordo::connect {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kStoreIntervalMs = 200;  // the state file is written at most this often
constexpr int kSnapshotFetchRows = 2000;
constexpr const char* kTruncateHeader = "ordo.truncate";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool topic_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

using State = PgSourceState;

Result<std::optional<State>> load_state(const std::string& path) {
  if (!std::filesystem::exists(path)) return std::optional<State>();
  auto text = ORDO_TRY(read_file(path, 1 << 16));
  return std::optional<State>(ORDO_TRY(decode_source_state(text, path)));
}

Result<void> store_state(const std::string& path, const State& s) {
  return write_file_atomic(path, encode_source_state(s));
}

}  // namespace

std::string encode_source_state(const PgSourceState& s) {
  json j = {{"slot", s.slot}, {"snapshot_done", s.snapshot_done}, {"lsn", pg::format_lsn(s.lsn)}};
  return j.dump() + "\n";
}

Result<PgSourceState> decode_source_state(std::string_view text, std::string_view path) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.size() != 3 || !j.contains("slot") ||
      !j["slot"].is_string() || j["slot"].get<std::string>().empty() ||
      !j.contains("snapshot_done") || !j["snapshot_done"].is_boolean() || !j.contains("lsn") ||
      !j["lsn"].is_string()) {
    return make_error(Errc::corrupt, "{}: not a source state file", path);
  }
  auto lsn = pg::parse_lsn(j["lsn"].get<std::string>());
  if (!lsn) return make_error(Errc::corrupt, "{}: {}", path, lsn.error().message);
  return PgSourceState{j["slot"].get<std::string>(), j["snapshot_done"].get<bool>(), *lsn};
}

std::string table_topic(std::string_view prefix, std::string_view schema, std::string_view table) {
  std::string out = fmt::format("{}.{}.{}", prefix, schema, table);
  for (char& c : out) {
    if (!topic_char(c)) c = '_';
  }
  return out.substr(0, 249);
}

// One connection's worth of work: from connecting to the first failure (or stop).
struct PgSource::Session {
  PgSource& src;
  const PgSourceConfig& cfg;
  State state;
  std::unique_ptr<pg::Connection> sql;
  std::unique_ptr<pg::ReplicationStream> repl;
  std::unique_ptr<rd_kafka_t, KafkaPurgeDestroy> producer;
  std::string db;
  std::unordered_map<std::string, int32_t> topics;  // created: topic -> partitions
  std::unordered_map<uint32_t, pg::Relation> relations;

  // Transactions produced and not yet acknowledged, oldest first.
  struct Pending {
    uint64_t seq = 0;
    pg::Lsn end_lsn = 0;
    int64_t remaining = 0;  // records without a delivery report yet
    int64_t records = 0;
    bool committed = false;
    bool snapshot = false;
  };
  std::deque<Pending> pending;
  uint64_t next_seq = 1;
  std::string failure;     // a failed delivery: ends the session
  pg::Lsn acked_lsn = 0;   // every transaction up to here is acknowledged
  pg::Lsn stored_lsn = 0;  // in the state file and confirmed to the slot
  pg::Lsn resume_lsn = 0;  // transactions committed below this were stored before
  bool in_txn = false;
  bool skipping = false;
  pg::SourceInfo source;
  Clock::time_point last_store = Clock::now();
  Clock::time_point last_heartbeat = Clock::now();

  Session(PgSource& s) : src(s), cfg(s.config_) {}

  void set(auto&& f) {
    std::lock_guard lk(src.mu_);
    f(src.status_);
  }

  Result<void> check() {
    if (src.stopping_) return make_error(Errc::closed, "stopping");
    if (!failure.empty()) return make_error(Errc::io, "delivery failed: {}", failure);
    return ok();
  }

  // ---- Kafka ----

  Result<void> open_producer() {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    for (const auto& [k, v] : std::vector<std::pair<const char*, std::string>>{
             {"bootstrap.servers", src.bootstrap_},
             {"client.id", "ordo-connect-" + cfg.name},
             {"acks", "all"},
             {"enable.idempotence", "true"},
             {"linger.ms", "1"},
             {"compression.codec", "lz4"},
             {"message.timeout.ms", "0"},  // wait for the broker as long as it takes
             {"queue.buffering.max.kbytes", "65536"}}) {
      if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return make_error(Errc::invalid_argument, "{}={}: {}", k, v, err);
      }
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      static_cast<Session*>(opaque)->delivered(uint64_t(reinterpret_cast<uintptr_t>(m->_private)),
                                               m->err);
    });
    rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!p) {
      rd_kafka_conf_destroy(conf);
      return make_error(Errc::invalid_argument, "source {}: {}", cfg.name, err);
    }
    producer.reset(p);
    return ok();
  }

  // A delivery report (from rd_kafka_poll, on this thread).
  void delivered(uint64_t seq, rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (failure.empty()) failure = rd_kafka_err2str(err);
      return;
    }
    ORDO_ASSERT(!pending.empty() && seq >= pending.front().seq &&
                seq - pending.front().seq < pending.size());
    Pending& p = pending[size_t(seq - pending.front().seq)];
    ORDO_ASSERT(p.seq == seq && p.remaining > 0);
    --p.remaining;
  }

  // Moves acked_lsn past every finished transaction at the front.
  void advance() {
    int64_t txns = 0, records = 0, snapshot_rows = 0;
    while (!pending.empty() && pending.front().committed && pending.front().remaining == 0) {
      const Pending& p = pending.front();
      acked_lsn = std::max(acked_lsn, p.end_lsn);
      records += p.records;
      if (p.snapshot) {
        snapshot_rows += p.records;
      } else {
        ++txns;
      }
      pending.pop_front();
    }
    if (txns || records) {
      set([&](PgSourceStatus& s) {
        s.transactions += txns;
        s.records += records;
        s.snapshot_rows += snapshot_rows;
      });
    }
  }

  Result<void> create_topic(const std::string& topic) {
    if (topics.contains(topic)) return ok();
    topics[topic] =
        ORDO_TRY(ensure_compacted_topic(producer.get(), topic, cfg.partitions, src.stopping_));
    ORDO_LOG_INFO("source {}: topic {} ({} partitions, compacted)", cfg.name, topic, topics[topic]);
    return ok();
  }

  // Queues one record of the newest pending transaction; waits while librdkafka's queue is full.
  Result<void> produce(const std::string& topic, int32_t partition, const std::string& key,
                       const std::optional<std::string>& value, bool truncate_marker) {
    ORDO_ASSERT(!pending.empty());
    Pending& p = pending.back();
    while (true) {
      ORDO_TRY(check());
      rd_kafka_headers_t* hdrs = nullptr;
      if (truncate_marker) {
        hdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(hdrs, kTruncateHeader, -1, "1", 1);
      }
      void* vdata = value ? const_cast<char*>(value->data()) : nullptr;
      size_t vlen = value ? value->size() : 0;
      auto e =
          rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                            RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(vdata, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(uintptr_t(p.seq))),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        ++p.remaining;
        ++p.records;
        return ok();
      }
      if (hdrs) rd_kafka_headers_destroy(hdrs);
      if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return make_error(Errc::io, "produce to {}: {}", topic, rd_kafka_err2str(e));
      }
      // Back-pressure: serve delivery reports (and keep the replication connection alive).
      rd_kafka_poll(producer.get(), 50);
      ORDO_TRY(service(false));
    }
  }

  // Delivery reports, the state file, slot confirmation and the heartbeat.
  Result<void> service(bool poll_kafka = true) {
    if (poll_kafka) rd_kafka_poll(producer.get(), 0);
    ORDO_TRY(check());
    advance();
    auto now = Clock::now();
    bool heartbeat = now - last_heartbeat >= std::chrono::milliseconds(cfg.heartbeat_ms);
    if (acked_lsn > stored_lsn &&
        (heartbeat || now - last_store >= std::chrono::milliseconds(kStoreIntervalMs))) {
      ORDO_TRY(store(acked_lsn));
      if (repl_started) ORDO_TRY(repl->send_status(stored_lsn, stored_lsn, stored_lsn, false));
    }
    if (heartbeat && repl_started) {
      last_heartbeat = now;
      // Asks for a keepalive: its WAL position moves the slot on a quiet database.
      ORDO_TRY(repl->send_status(stored_lsn, stored_lsn, stored_lsn, true));
      measure_lag();
    }
    return ok();
  }
  bool repl_started = false;

  Result<void> store(pg::Lsn lsn) {
    state.lsn = lsn;
    ORDO_TRY(store_state(src.state_path_, state));
    stored_lsn = lsn;
    last_store = Clock::now();
    set([&](PgSourceStatus& s) { s.confirmed_lsn = pg::format_lsn(lsn); });
    return ok();
  }

  void measure_lag() {
    auto r = sql->query(
        "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 FROM pg_replication_slots "
        "WHERE slot_name = $1",
        {cfg.slot});
    if (r && r->rows.size() == 1 && r->rows[0][0]) {
      int64_t lag = std::stoll(*r->rows[0][0]);
      set([&](PgSourceStatus& s) { s.slot_lag_bytes = lag; });
    }
  }

  // On stop: waits a little for outstanding deliveries, then stores and confirms what is
  // acknowledged, so a clean restart sends nothing again.
  void drain() {
    if (!producer) return;
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!pending.empty() && failure.empty() && Clock::now() < deadline) {
      rd_kafka_poll(producer.get(), 100);
      advance();
    }
    advance();
    if (acked_lsn > stored_lsn && store(acked_lsn) && repl_started) {
      (void)repl->send_status(stored_lsn, stored_lsn, stored_lsn, false);
    }
  }

  // ---- the catalog ----

  // A relation as pgoutput would describe it: the published columns (no dropped or generated
  // ones) in order, with the replica-identity flags, then the configured key applied.
  Result<pg::Relation> catalog_relation(const std::string& schema, const std::string& table) {
    auto r = ORDO_TRY(sql->query(
        "SELECT a.attname, a.atttypid::int8, a.atttypmod, "
        "  COALESCE((SELECT true FROM pg_index i WHERE i.indrelid = c.oid AND "
        "     ((c.relreplident = 'd' AND i.indisprimary) OR "
        "      (c.relreplident = 'i' AND i.indisreplident)) AND a.attnum = ANY(i.indkey)), "
        "    c.relreplident = 'f'), c.relreplident "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
        "  AND a.attgenerated = '' ORDER BY a.attnum",
        {schema, table}));
    if (r.rows.empty()) return make_error(Errc::not_found, "table {}.{} not found", schema, table);
    pg::Relation rel;
    rel.schema = schema;
    rel.name = table;
    for (const auto& row : r.rows) {
      pg::Column c;
      c.name = row[0].value_or("");
      c.type_oid = uint32_t(std::stoul(row[1].value_or("0")));
      c.type_modifier = int32_t(std::stol(row[2].value_or("-1")));
      c.key = row[3] == "t";
      rel.replica_identity = row[4].value_or("d").empty() ? 'd' : (*row[4])[0];
      rel.columns.push_back(std::move(c));
    }
    ORDO_TRY(apply_configured_key(rel));
    return rel;
  }

  Result<void> apply_configured_key(pg::Relation& rel) {
    auto it = cfg.keys.find(rel.schema + "." + rel.name);
    if (it != cfg.keys.end()) {
      for (auto& c : rel.columns) c.key = false;
      for (const auto& k : it->second) {
        bool found = false;
        for (auto& c : rel.columns) {
          if (c.name == k) c.key = found = true;
        }
        if (!found) {
          return make_error(Errc::invalid_argument, "source {}: key column {} not in {}.{}",
                            cfg.name, k, rel.schema, rel.name);
        }
      }
    }
    for (const auto& c : rel.columns) {
      if (c.key) return ok();
    }
    return make_error(Errc::invalid_argument,
                      "source {}: table {}.{} has no primary key: give it one, set REPLICA "
                      "IDENTITY FULL, or configure its key columns",
                      cfg.name, rel.schema, rel.name);
  }

  std::string topic_of(const pg::Relation& rel) const {
    return table_topic(cfg.topic_prefix, rel.schema, rel.name);
  }

  Result<void> ensure_publication() {
    auto have =
        ORDO_TRY(sql->query("SELECT 1 FROM pg_publication WHERE pubname = $1", {cfg.publication}));
    if (!have.rows.empty()) return ok();
    if (!cfg.create_publication) {
      return make_error(Errc::not_found, "publication {} does not exist", cfg.publication);
    }
    std::string what = "FOR ALL TABLES";
    if (!cfg.tables.empty()) {
      what = "FOR TABLE ";
      for (size_t i = 0; i < cfg.tables.size(); ++i) {
        const std::string& t = cfg.tables[i];
        size_t dot = t.find('.');
        what += (i ? ", " : "") + pg::quote_ident(t.substr(0, dot)) + "." +
                pg::quote_ident(t.substr(dot + 1));
      }
    }
    ORDO_TRY(sql->query("CREATE PUBLICATION " + pg::quote_ident(cfg.publication) + " " + what));
    ORDO_LOG_INFO("source {}: created publication {} {}", cfg.name, cfg.publication, what);
    return ok();
  }

  // ---- the snapshot ----

  Result<void> take_snapshot(const std::string& snapshot_name, pg::Lsn consistent_point) {
    set([](PgSourceStatus& s) { s.state = "snapshot"; });
    auto conn = ORDO_TRY(pg::Connection::connect(cfg.conninfo));
    ORDO_TRY(conn->query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    if (!snapshot_name.empty()) {
      for (char c : snapshot_name) {
        if (!std::isxdigit(static_cast<unsigned char>(c)) && c != '-') {
          return make_error(Errc::corrupt, "snapshot name '{}'", snapshot_name);
        }
      }
      ORDO_TRY(conn->query("SET TRANSACTION SNAPSHOT '" + snapshot_name + "'"));
    }
    auto tables = ORDO_TRY(
        conn->query("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 "
                    "ORDER BY 1, 2",
                    {cfg.publication}));
    pending.push_back(Pending{next_seq++, consistent_point, 0, 0, false, true});
    source.lsn = consistent_point;
    source.xid = 0;
    source.commit_time_us = (now_ms() - pg::kPostgresEpochUnixMs) * 1000;
    // Each row is sent when the next one is read, so the last can say snapshot "last".
    struct Row {
      std::string topic;
      std::string key;
      json value;
    };
    std::optional<Row> held;
    auto send = [&](Row& r, const char* snapshot) -> Result<void> {
      r.value["source"]["snapshot"] = snapshot;
      return produce(r.topic, RD_KAFKA_PARTITION_UA, r.key, r.value.dump(), false);
    };
    for (const auto& t : tables.rows) {
      pg::Relation rel = ORDO_TRY(catalog_relation(*t[0], *t[1]));
      std::string topic = topic_of(rel);
      ORDO_TRY(create_topic(topic));
      std::string cols;
      for (const auto& c : rel.columns)
        cols += (cols.empty() ? "" : ", ") + pg::quote_ident(c.name);
      ORDO_TRY(conn->query("DECLARE ordo_snapshot NO SCROLL CURSOR FOR SELECT " + cols + " FROM " +
                           pg::quote_ident(rel.schema) + "." + pg::quote_ident(rel.name)));
      while (true) {
        auto rows = ORDO_TRY(
            conn->query(fmt::format("FETCH FORWARD {} FROM ordo_snapshot", kSnapshotFetchRows)));
        if (rows.rows.empty()) break;
        for (const auto& row : rows.rows) {
          pg::Tuple tuple;
          for (const auto& v : row) {
            tuple.push_back(v ? pg::Value{pg::Value::Kind::text, *v} : pg::Value{});
          }
          auto key = ORDO_TRY(pg::render_key(rel, tuple));
          auto after = ORDO_TRY(pg::render_row(rel, tuple));
          if (held) ORDO_TRY(send(*held, "true"));
          held = Row{topic, key.dump(),
                     pg::envelope(rel, nullptr, std::move(after), 'r', source, now_ms())};
        }
        ORDO_TRY(service());
      }
      ORDO_TRY(conn->query("CLOSE ordo_snapshot"));
    }
    if (held) ORDO_TRY(send(*held, "last"));
    ORDO_TRY(conn->query("COMMIT"));
    pending.back().committed = true;
    // Every snapshot record acknowledged before the stream starts.
    while (!pending.empty()) {
      rd_kafka_poll(producer.get(), 100);
      ORDO_TRY(check());
      advance();
    }
    state.snapshot_done = true;
    ORDO_TRY(store(consistent_point));
    ORDO_LOG_INFO("source {}: snapshot of {} tables done at {}", cfg.name, tables.rows.size(),
                  pg::format_lsn(consistent_point));
    return ok();
  }

  // ---- the stream ----

  Result<const pg::Relation*> relation(uint32_t id) {
    auto it = relations.find(id);
    if (it == relations.end()) {
      return make_error(Errc::corrupt, "a change of relation {} before its Relation message", id);
    }
    return &it->second;
  }

  Result<void> emit(const pg::Relation& rel, const json& key, json before, json after, char op) {
    std::string k = key.dump();
    bool del = op == 'd';
    ORDO_TRY(
        produce(topic_of(rel), RD_KAFKA_PARTITION_UA, k,
                pg::envelope(rel, std::move(before), std::move(after), op, source, now_ms()).dump(),
                false));
    if (del) ORDO_TRY(produce(topic_of(rel), RD_KAFKA_PARTITION_UA, k, std::nullopt, false));
    return ok();
  }

  Result<void> handle(const pg::XLogData& x) {
    auto msg = ORDO_TRY(pg::decode_message(x.payload));
    source.lsn = x.wal_start;
    if (auto* b = std::get_if<pg::Begin>(&msg)) {
      in_txn = true;
      skipping = b->final_lsn < resume_lsn;
      source.xid = b->xid;
      source.commit_time_us = b->commit_time_us;
      if (!skipping) pending.push_back(Pending{next_seq++, 0, 0, 0, false, false});
      return ok();
    }
    if (auto* c = std::get_if<pg::Commit>(&msg)) {
      if (skipping) {
        set([](PgSourceStatus& s) { ++s.skipped_transactions; });
      } else if (in_txn) {
        pending.back().end_lsn = c->end_lsn;
        pending.back().committed = true;
      }
      in_txn = skipping = false;
      return ok();
    }
    if (auto* r = std::get_if<pg::Relation>(&msg)) {
      pg::Relation rel = std::move(*r);
      ORDO_TRY(apply_configured_key(rel));
      ORDO_TRY(create_topic(topic_of(rel)));
      relations[rel.id] = std::move(rel);
      return ok();
    }
    if (!in_txn) return ok();  // Type, Origin, Message outside of a transaction
    if (skipping) return ok();
    if (auto* i = std::get_if<pg::Insert>(&msg)) {
      const pg::Relation& rel = *ORDO_TRY(relation(i->relation_id));
      return emit(rel, ORDO_TRY(pg::render_key(rel, i->row)), nullptr,
                  ORDO_TRY(pg::render_row(rel, i->row)), 'c');
    }
    if (auto* u = std::get_if<pg::Update>(&msg)) {
      const pg::Relation& rel = *ORDO_TRY(relation(u->relation_id));
      json key = ORDO_TRY(pg::render_key(rel, u->row));
      json after = ORDO_TRY(pg::render_row(rel, u->row));
      json before = nullptr;
      if (u->old_kind != 0) {
        before = ORDO_TRY(pg::render_row(rel, u->old_row));
        json old_key = ORDO_TRY(pg::render_key(rel, u->old_row));
        if (old_key != key) {
          // The key changed: a delete (and tombstone) of the old key, a create of the new.
          ORDO_TRY(emit(rel, old_key, std::move(before), nullptr, 'd'));
          return emit(rel, key, nullptr, std::move(after), 'c');
        }
        if (u->old_kind == 'K') before = nullptr;  // only the key: Debezium sends no before
      }
      return emit(rel, key, std::move(before), std::move(after), 'u');
    }
    if (auto* d = std::get_if<pg::Delete>(&msg)) {
      const pg::Relation& rel = *ORDO_TRY(relation(d->relation_id));
      return emit(rel, ORDO_TRY(pg::render_key(rel, d->old_row)),
                  ORDO_TRY(pg::render_row(rel, d->old_row)), nullptr, 'd');
    }
    if (auto* t = std::get_if<pg::Truncate>(&msg)) {
      for (uint32_t id : t->relation_ids) {
        const pg::Relation& rel = *ORDO_TRY(relation(id));
        std::string topic = topic_of(rel);
        ORDO_TRY(create_topic(topic));
        std::string value = pg::envelope(rel, nullptr, nullptr, 't', source, now_ms()).dump();
        for (int32_t p = 0; p < topics[topic]; ++p) ORDO_TRY(produce(topic, p, "{}", value, true));
      }
      return ok();
    }
    return ok();
  }

  Result<void> run() {
    auto loaded = ORDO_TRY(load_state(src.state_path_));
    if (loaded && loaded->slot == cfg.slot) {
      state = *loaded;
    } else {
      if (loaded) {
        ORDO_LOG_WARN("source {}: the state file is for slot {}, not {}: starting afresh", cfg.name,
                      loaded->slot, cfg.slot);
      }
      state = State{cfg.slot, false, 0};
    }
    stored_lsn = acked_lsn = resume_lsn = state.lsn;
    set([&](PgSourceStatus& s) {
      s.slot = cfg.slot;
      s.confirmed_lsn = pg::format_lsn(state.lsn);
    });
    ORDO_TRY(open_producer());
    sql = ORDO_TRY(pg::Connection::connect(cfg.conninfo));
    auto dbrow = ORDO_TRY(sql->query("SELECT current_database()"));
    db = dbrow.rows.at(0).at(0).value_or("");
    source.name = cfg.topic_prefix;
    source.db = db;
    ORDO_TRY(ensure_publication());
    // Every table of the publication: refused early when it has no key; its topic created.
    auto tables = ORDO_TRY(
        sql->query("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1",
                   {cfg.publication}));
    for (const auto& t : tables.rows) {
      pg::Relation rel = ORDO_TRY(catalog_relation(*t[0], *t[1]));
      ORDO_TRY(create_topic(topic_of(rel)));
    }
    repl = ORDO_TRY(pg::ReplicationStream::connect(cfg.conninfo));
    auto slot = ORDO_TRY(sql->query(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
        {cfg.slot}));
    bool want_snapshot = cfg.snapshot && !state.snapshot_done;
    if (slot.rows.empty()) {
      if (state.snapshot_done) {
        ORDO_LOG_WARN("source {}: slot {} is gone: creating it again and taking a new snapshot",
                      cfg.name, cfg.slot);
        state.snapshot_done = false;
        want_snapshot = cfg.snapshot;
      }
      auto created = ORDO_TRY(repl->create_slot(cfg.slot, want_snapshot));
      ORDO_LOG_INFO("source {}: created slot {} at {}", cfg.name, cfg.slot,
                    pg::format_lsn(created.consistent_point));
      state.lsn = stored_lsn = acked_lsn = resume_lsn = 0;
      if (want_snapshot) {
        ORDO_TRY(take_snapshot(created.snapshot, created.consistent_point));
      } else {
        state.snapshot_done = true;
        ORDO_TRY(store(created.consistent_point));
      }
    } else if (want_snapshot) {
      // The slot exists (an earlier snapshot did not finish, or it was made elsewhere): a new
      // snapshot of now, then the stream from where the slot is. Changes between the two are
      // applied again on top, which leaves every key at its latest value.
      ORDO_TRY(take_snapshot("", 0));
    }
    resume_lsn = state.lsn;
    ORDO_TRY(repl->start(cfg.slot, cfg.publication, state.lsn));
    repl_started = true;
    set([&](PgSourceStatus& s) {
      s.state = "streaming";
      s.error.clear();
    });
    ORDO_LOG_INFO("source {}: streaming from slot {} at {}", cfg.name, cfg.slot,
                  pg::format_lsn(state.lsn));
    measure_lag();
    while (true) {
      ORDO_TRY(check());
      auto m = ORDO_TRY(repl->next(100));
      if (m) {
        if (auto* x = std::get_if<pg::XLogData>(&*m)) {
          ORDO_TRY(handle(*x));
        } else {
          const auto& k = std::get<pg::Keepalive>(*m);
          // Nothing in flight and nothing open: every commit below the server's position has
          // been seen, so the slot may move there.
          if (!in_txn && pending.empty() && k.wal_end > acked_lsn) acked_lsn = k.wal_end;
          if (k.reply_requested) {
            ORDO_TRY(repl->send_status(stored_lsn, stored_lsn, stored_lsn, false));
          }
        }
      }
      ORDO_TRY(service());
    }
  }
};

Result<std::unique_ptr<PgSource>> PgSource::start(PgSourceConfig config, std::string bootstrap,
                                                  std::string data_dir) {
  auto s = std::unique_ptr<PgSource>(new PgSource());
  std::string dir = data_dir + "/sources/" + config.name;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "create {}: {}", dir, ec.message());
  s->state_path_ = dir + "/state.json";
  s->config_ = std::move(config);
  s->bootstrap_ = std::move(bootstrap);
  s->status_.name = s->config_.name;
  s->status_.slot = s->config_.slot;
  PgSource* self = s.get();
  s->thread_ = std::thread([self] { self->run(); });
  return s;
}

PgSource::~PgSource() {
  stop();
}

void PgSource::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

PgSourceStatus PgSource::status() const {
  std::lock_guard lk(mu_);
  return status_;
}

void PgSource::run() {
  int64_t backoff = kRetryMinMs;
  while (!stopping_) {
    auto began = Clock::now();
    Result<void> r = ok();
    {
      Session session(*this);
      r = session.run();
      if (stopping_) session.drain();
    }
    if (stopping_) break;
    if (Clock::now() - began > std::chrono::seconds(10)) backoff = kRetryMinMs;
    std::string why = r ? std::string("session ended") : r.error().to_string();
    ORDO_LOG_ERROR("source {}: {} (retrying in {} ms)", config_.name, why, backoff);
    {
      std::lock_guard lk(mu_);
      status_.state = "retrying";
      status_.error = why;
    }
    for (int64_t waited = 0; waited < backoff && !stopping_; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    backoff = std::min(backoff * 2, kRetryMaxMs);
  }
  std::lock_guard lk(mu_);
  status_.state = "stopped";
}

}  // namespace ordo::connect
