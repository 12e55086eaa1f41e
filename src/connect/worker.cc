#include "connect/worker.h"

#include <librdkafka/rdkafka.h>

#include <charconv>
#include <chrono>
#include <filesystem>
#include <set>

#include "base/file.h"
#include "connect/aggregate.h"
#include "connect/claims.h"
#include "connect/kafka_admin.h"
#include "connect/memcached_sink.h"
#include "connect/pg_sink.h"
#include "connect/rebuild.h"
#include "connect/redis_sink.h"
#include "connect/search_index.h"
#include "http/json.h"

#include "base/log.h"

namespace ordo::connect {

using http::json_response;
using model::TopicPartition;
using nlohmann::json;

namespace {

constexpr int kApplyPollBatch = 500;  // messages gathered before they are applied
// A batch whose store write takes longer is logged (what a lag spike is made of).
constexpr auto kSlowApply = std::chrono::milliseconds(200);
constexpr int kSeekTimeoutMs = 10'000;    // a rewind's seek (local: the partition is assigned)
constexpr int64_t kMaxScanPage = 10'000;  // rows of one GET /views/<name>/scan
// An idle task reads its partitions' positions from the store again this often.
constexpr auto kIdleRecheck = std::chrono::seconds(5);

std::optional<int64_t> int_param(const http::Request& req, const char* name) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc() || p != it->second.data() + it->second.size()) return int64_t(-1);
  return v;
}

}  // namespace

// One sink: its store, its consumer and the thread that moves records from one to the other.
struct Worker::Task {
  Worker* worker = nullptr;
  SinkConfig config;
  // The live store: replaced (under view_mu) when a rebuild swaps in a new one. Readers take
  // a reference and keep the store they got alive while they use it.
  std::mutex view_mu;
  std::shared_ptr<TableView> view_;
  std::string view_dir;  // <data_dir>/views/<name>
  int64_t generation = 0;
  std::shared_ptr<TableView> view() {
    std::lock_guard lk(view_mu);
    return view_;
  }
  std::shared_ptr<Store> other_;               // the store of a sink that is not a table view
  std::shared_ptr<AggregateStore> aggregate_;  // type aggregate: also other_
  std::shared_ptr<ClaimStore> claims_;         // type claims: also other_
  std::shared_ptr<SearchIndex> search_;        // type search: also other_
  bool output_ready = false;                   // its output topic exists (task thread)
  std::shared_ptr<Store> store() {
    if (other_) return other_;
    return view();
  }
  // A rebuild: its thread and progress (under worker->mu_), and the pause handshake with the
  // task thread (under worker->mu_, signalled on worker->applied_).
  std::thread rebuild_thread;
  RebuildProgress rebuild;
  bool pause_requested = false;
  bool paused = false;
  KafkaPtr rk;
  KafkaPtr dlq;  // producer of the dead-letter topic
  // Failed dead-letter deliveries, counted by the delivery callback (a member, not a local:
  // a delivery that outlives a timed-out flush still reports here).
  std::atomic<int64_t> dlq_failed{0};
  std::thread thread;
  TaskStatus status;                     // under worker->mu_
  std::vector<TopicPartition> assigned;  // on the task thread
  // The store's positions as this task last read or wrote them (task thread). Only this task
  // moves them, so each is read from the store once (after an assignment, a failure or a
  // swap of the store) instead of once per batch: for a remote store that is a round trip.
  std::map<TopicPartition, std::optional<int64_t>> positions;
  // The last position the store confirmed for each partition (read, or written by an apply
  // that succeeded), kept across failures: a store that answers with an older one afterwards
  // lost what it held (a cache that restarted empty) and the task reads the partition again
  // from the store's position (rewind) instead of writing the batch in hand over the gap.
  std::map<TopicPartition, std::optional<int64_t>> confirmed;
  std::atomic<bool> positions_stale{false};  // set when a rebuild swaps the store

  Result<std::optional<int64_t>> position(Store& s, const TopicPartition& tp) {
    if (positions_stale.exchange(false)) {
      positions.clear();
      confirmed.clear();
    }
    if (auto it = positions.find(tp); it != positions.end()) return it->second;
    auto pos = ORDO_TRY(s.position(tp));
    positions[tp] = pos;
    return pos;
  }

  RecordFormats formats() const {
    const bool pg = config.type == "postgres";  // keys are the key columns
    const bool rows = pg || config.type == "aggregate" || config.type == "claims";
    RecordFormats f{pg || config.key_format == "json", rows || config.value_format == "json",
                    config.field, pg, rows};
    // The PostgreSQL sink reads the columns out of them, the aggregate its fields.
    f.keep_json = pg || config.type == "aggregate";
    if (config.type == "search") f.max_key_bytes = SearchIndex::kMaxKeyBytes;
    if (config.type == "memcached") {
      f.max_key_bytes = MemcachedSink::kMaxKeyBytes -
                        std::min(config.key_prefix.size(), MemcachedSink::kMaxKeyBytes);
    }
    return f;
  }

  void set_state(std::string state, std::string error = {}) {
    std::lock_guard lk(worker->mu_);
    status.state = std::move(state);
    status.error = std::move(error);
  }

  // Rebalances, from inside rd_kafka_consumer_poll on the task thread: each partition gets
  // its position from the store (the position rule), or starts at the beginning.
  void rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    positions.clear();
    confirmed.clear();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      assigned.clear();
      for (int i = 0; i < parts->cnt; ++i) {
        auto& p = parts->elems[i];
        TopicPartition tp{p.topic, p.partition};
        auto pos = position(*store(), tp);
        if (!pos) {
          ORDO_LOG_ERROR("sink {}: {}: {}", config.name, tp.to_string(), pos.error().to_string());
        }
        p.offset = pos && *pos ? **pos : RD_KAFKA_OFFSET_BEGINNING;
        assigned.push_back(tp);
      }
      rd_kafka_assign(rk.get(), parts);
      ORDO_LOG_INFO("sink {}: assigned {} partitions", config.name, parts->cnt);
    } else {
      rd_kafka_assign(rk.get(), nullptr);
      assigned.clear();
      ORDO_LOG_INFO("sink {}: partitions revoked", config.name);
    }
    refresh_partitions();
  }

  void refresh_partitions() {
    std::vector<PartitionStatus> parts;
    for (const auto& tp : assigned) {
      PartitionStatus ps{tp};
      if (auto pos = position(*store(), tp); pos && *pos) ps.position = **pos;
      int64_t lo = -1, hi = -1;
      if (rd_kafka_get_watermark_offsets(rk.get(), tp.topic.c_str(), tp.partition, &lo, &hi) ==
              RD_KAFKA_RESP_ERR_NO_ERROR &&
          hi >= 0) {
        ps.high_watermark = hi;  // the cached value: negative until the first fetch
      }
      parts.push_back(std::move(ps));
    }
    std::lock_guard lk(worker->mu_);
    status.partitions = std::move(parts);
  }

  // The store's position of tp went back (from `was` to `pos`): the consumer reads tp again
  // from there (the earliest offset for none); the messages fetched past it are dropped.
  Result<void> rewind(const TopicPartition& tp, std::optional<int64_t> pos, int64_t was) {
    PartitionList l(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition)->offset =
        pos ? *pos : RD_KAFKA_OFFSET_BEGINNING;
    if (auto* e = rd_kafka_seek_partitions(rk.get(), l.get(), kSeekTimeoutMs)) {
      std::string why = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      return make_error(Errc::io, "seek {}: {}", tp.to_string(), why);
    }
    if (l->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::io, "seek {}: {}", tp.to_string(), rd_kafka_err2str(l->elems[0].err));
    }
    ORDO_LOG_WARN(
        "sink {}: {}: the store's position went back from {} to {} (it lost data): "
        "reading the partition again from there",
        config.name, tp.to_string(), was, pos ? std::to_string(*pos) : "the start");
    confirmed[tp] = pos;
    return ok();
  }

  // While nothing arrives, the store's positions are read again now and then: a store that
  // lost data (a cache restarted empty) is refilled without waiting for the next record.
  // Errors are left to the next batch, which retries.
  void recheck_positions() {
    for (const auto& tp : assigned) {
      auto c = confirmed.find(tp);
      if (c == confirmed.end() || !c->second) continue;
      const int64_t was = *c->second;  // copied: position() may clear `confirmed`
      positions.erase(tp);
      auto pos = position(*store(), tp);
      // A rebuild swapped the store meanwhile (position() cleared what the old one confirmed):
      // the new store's position is not comparable with the old one's.
      if (!confirmed.contains(tp)) continue;
      if (!pos || (*pos && **pos >= was)) continue;
      if (auto r = rewind(tp, *pos, was); !r) {
        ORDO_LOG_WARN("sink {}: {}: {}", config.name, tp.to_string(), r.error().to_string());
      }
    }
  }

  // Applies one partition's messages (in offset order), retrying until it succeeds or the
  // worker stops. Messages below the store's position (delivered again after a rebalance)
  // are skipped as already applied. False when they were not applied: the store's position
  // went back and the partition is read again from there.
  bool apply(const TopicPartition& tp, const std::vector<rd_kafka_message_t*>& msgs) {
    int64_t backoff = kRetryMinMs;
    bool rewound = false;
    while (!worker->stopping_) {
      auto r = [&]() -> Result<void> {
        auto v = store();
        auto pos = ORDO_TRY(position(*v, tp));
        if (auto c = confirmed.find(tp);
            c != confirmed.end() && c->second && (!pos || *pos < *c->second)) {
          ORDO_TRY(rewind(tp, pos, *c->second));
          rewound = true;
          return ok();
        }
        confirmed[tp] = pos;
        Rejected rejected;
        auto changes = to_changes(msgs, pos, formats(), &rejected);
        int64_t next = msgs.back()->offset + 1;
        if (pos && next <= *pos) return ok();
        // Dead letters first: once the position passes them they are never read again.
        ORDO_TRY(dead_letter(rejected));
        // Unknown until the store answers again: the write may or may not have landed.
        positions.erase(tp);
        const auto began = std::chrono::steady_clock::now();
        ORDO_TRY(v->apply(tp, changes, next));
        positions[tp] = next;
        confirmed[tp] = next;
        const auto took = std::chrono::steady_clock::now() - began;
        if (took > kSlowApply) {
          ORDO_LOG_WARN("sink {}: {}: {} records took {} ms to apply (offsets {}-{})", config.name,
                        tp.to_string(), changes.size(),
                        std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
                        msgs.front()->offset, msgs.back()->offset);
        }
        std::lock_guard lk(worker->mu_);
        status.records_applied += int64_t(changes.size());
        status.records_dead_lettered += int64_t(rejected.size());
        return ok();
      }();
      if (r) {
        set_state("running");
        worker->applied_.notify_all();
        return !rewound;
      }
      ORDO_LOG_ERROR("sink {}: {}: {} (retrying in {} ms)", config.name, tp.to_string(),
                     r.error().to_string(), backoff);
      set_state("retrying", r.error().to_string());
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff));
      backoff = std::min(backoff * 2, kRetryMaxMs);
    }
    return false;
  }

  // An aggregate's changed groups to its compacted output topic (a claims sink's decisions to
  // its results topic), acknowledged (acks=all)
  // before the store moves past them.
  Result<void> publish(const std::vector<std::pair<std::string, std::string>>& records) {
    if (!output_ready) {
      if (config.type == "claims") {  // results keyed by unique request ids: nothing to compact
        ORDO_TRY(ensure_topic(dlq.get(), config.output_topic, 1, worker->stopping_));
      } else {
        ORDO_TRY(ensure_compacted_topic(dlq.get(), config.output_topic, 1, worker->stopping_));
      }
      output_ready = true;
    }
    const int64_t failed_before = dlq_failed.load();
    for (const auto& [k, v] : records) {
      auto e = rd_kafka_producev(dlq.get(), RD_KAFKA_V_TOPIC(config.output_topic.c_str()),
                                 RD_KAFKA_V_KEY(k.data(), k.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(v.data()), v.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_flush(dlq.get(), 10'000);
        return make_error(Errc::io, "output topic {}: {}", config.output_topic,
                          rd_kafka_err2str(e));
      }
    }
    return await_producer(config.output_topic, failed_before);
  }

  // Waits until everything produced is acknowledged; an error if any delivery failed since
  // failed_before.
  Result<void> await_producer(const std::string& topic, int64_t failed_before) {
    if (rd_kafka_flush(dlq.get(), 60'000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::io, "topic {}: not acknowledged within 60 s", topic);
    }
    if (int64_t failed = dlq_failed.load() - failed_before; failed > 0) {
      return make_error(Errc::io, "topic {}: {} records failed", topic, failed);
    }
    return ok();
  }

  // Sends msgs to the dead-letter topic with their key, value and headers, plus ordo.dlq.*
  // headers (reason, sink, source topic, partition, offset), and waits until every one is
  // acknowledged. At least once: a crash before the position is stored sends them again.
  Result<void> dead_letter(const Rejected& msgs) {
    if (msgs.empty()) return ok();
    const int64_t failed_before = dlq_failed.load();
    for (const auto& [m, why] : msgs) {
      rd_kafka_headers_t* hdrs = nullptr;
      rd_kafka_headers_t* original = nullptr;
      hdrs = rd_kafka_message_headers(m, &original) == RD_KAFKA_RESP_ERR_NO_ERROR
                 ? rd_kafka_headers_copy(original)
                 : rd_kafka_headers_new(6);
      auto add = [&](const char* name, const std::string& v) {
        rd_kafka_header_add(hdrs, name, -1, v.data(), ssize_t(v.size()));
      };
      add("ordo.dlq.reason", why);
      add("ordo.dlq.sink", config.name);
      add("ordo.dlq.topic", rd_kafka_topic_name(m->rkt));
      add("ordo.dlq.partition", std::to_string(m->partition));
      add("ordo.dlq.offset", std::to_string(m->offset));
      auto e = rd_kafka_producev(
          dlq.get(), RD_KAFKA_V_TOPIC(config.dead_letter_topic.c_str()),
          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        rd_kafka_flush(dlq.get(), 10'000);
        return make_error(Errc::io, "dead-letter topic {}: {}", config.dead_letter_topic,
                          rd_kafka_err2str(e));
      }
    }
    return await_producer(config.dead_letter_topic, failed_before);
  }

  // Between batches: while a rebuild finishes, the task waits (the view it writes is about to
  // be replaced), then goes on with whatever view is live.
  void pause_point() {
    std::unique_lock lk(worker->mu_);
    if (!pause_requested) return;
    paused = true;
    worker->applied_.notify_all();
    worker->applied_.wait(lk, [&] { return !pause_requested || worker->stopping_.load(); });
    paused = false;
  }

  // Opens the store of this sink's type under data_dir.
  // <data_dir>/<kind>/<name>, its parent created.
  Result<std::string> store_dir(const std::string& data_dir, const std::string& kind) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir + "/" + kind, ec);
    if (ec) return make_error(Errc::io, "create {}/{}: {}", data_dir, kind, ec.message());
    return data_dir + "/" + kind + "/" + config.name;
  }

  std::function<Result<void>(const std::vector<std::pair<std::string, std::string>>&)> publisher() {
    return [this](const std::vector<std::pair<std::string, std::string>>& records) {
      return publish(records);
    };
  }

  Result<void> open_store(const std::string& data_dir) {
    if (config.type == "table") {
      view_dir = data_dir + "/views/" + config.name;
      ORDO_TRY(open_view());
    } else if (config.type == "aggregate") {
      AggregateOptions ao;
      ao.group_by = config.group_by;
      ao.sum = config.sum;
      for (const auto& [k, v] : config.where) ao.where[k] = json::parse(v);
      ao.publish = publisher();
      aggregate_ = ORDO_TRY(
          AggregateStore::open(ORDO_TRY(store_dir(data_dir, "aggregates")), std::move(ao)));
      other_ = aggregate_;
    } else if (config.type == "claims") {
      claims_ = ORDO_TRY(ClaimStore::open(ORDO_TRY(store_dir(data_dir, "claims")), publisher()));
      other_ = claims_;
    } else if (config.type == "search") {
      search_ = ORDO_TRY(SearchIndex::open(ORDO_TRY(store_dir(data_dir, "search")), config.fields));
      other_ = search_;
    } else if (config.type == "memcached") {
      MemcachedSinkOptions mo;
      mo.host = config.host;
      mo.port = config.port;
      mo.key_prefix = config.key_prefix;
      mo.ttl_s = config.ttl_s;
      mo.tombstone_ttl_s = config.tombstone_ttl_s;
      other_ = std::make_shared<MemcachedSink>(std::move(mo));
    } else if (config.type == "postgres") {
      other_ = std::make_shared<PgSink>(PgSinkOptions{config.name, config.conninfo, config.table});
    } else {
      RedisSinkOptions ro;
      ro.host = config.host;
      ro.port = config.port;
      ro.db = config.db;
      ro.key_prefix = config.key_prefix;
      ro.offsets_key = config.offsets_key;
      ro.ttl_s = config.ttl_s;
      other_ = std::make_shared<RedisSink>(std::move(ro));
    }
    return ok();
  }

  // Opens the live generation of the view (<view_dir>/generation names it; 1 when missing) and
  // removes what an interrupted rebuild left.
  Result<void> open_view() {
    std::error_code ec;
    std::filesystem::create_directories(view_dir, ec);
    if (ec) return make_error(Errc::io, "create {}: {}", view_dir, ec.message());
    const std::string gen_file = view_dir + "/generation";
    generation = 1;
    if (std::filesystem::exists(gen_file)) {
      auto text = ORDO_TRY(read_file(gen_file, 64));
      int64_t g = 0;
      auto [p, e] = std::from_chars(text.data(), text.data() + text.size(), g);
      if (e != std::errc() || g < 1 || (p != text.data() + text.size() && *p != '\n')) {
        return make_error(Errc::corrupt, "{}: not a generation number", gen_file);
      }
      generation = g;
    } else {
      ORDO_TRY(write_file_atomic(gen_file, "1\n"));
    }
    const std::string live = "gen-" + std::to_string(generation);
    for (const auto& entry : std::filesystem::directory_iterator(view_dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name.starts_with("gen-") && name != live) {
        ORDO_LOG_INFO("sink {}: removing {} (an unfinished or replaced rebuild)", config.name,
                      name);
        std::error_code rec;
        std::filesystem::remove_all(entry.path(), rec);
      }
    }
    view_ = ORDO_TRY(TableView::open(view_dir + "/" + live));
    return ok();
  }

  // The rebuild thread: a new generation filled from the log, then swapped in.
  void run_rebuild() {
    const int64_t gen = generation + 1;
    const std::string dir = view_dir + "/gen-" + std::to_string(gen);
    std::error_code ec;
    auto r = [&]() -> Result<void> {
      std::filesystem::remove_all(dir, ec);
      std::unique_ptr<TableView> fresh = ORDO_TRY(TableView::open(dir));
      RebuildOptions o;
      o.bootstrap = worker->config_.bootstrap;
      o.client_id = "ordo-connect-" + config.name + "-rebuild";
      o.topics = config.topics;
      o.formats = formats();
      // What the view holds: the partitions it has positions for and those assigned now.
      std::set<TopicPartition> parts;
      for (const auto& [tp, _] : ORDO_TRY(view()->positions())) parts.insert(tp);
      {
        std::lock_guard lk(worker->mu_);
        for (const auto& p : status.partitions) parts.insert(p.tp);
      }
      o.partitions.assign(parts.begin(), parts.end());
      auto pause_live = [&]() -> Result<std::vector<std::pair<TopicPartition, int64_t>>> {
        std::unique_lock lk(worker->mu_);
        pause_requested = true;
        worker->applied_.wait(
            lk, [&] { return paused || status.state == "stopped" || worker->stopping_.load(); });
        if (worker->stopping_) return make_error(Errc::closed, "stopping");
        lk.unlock();
        return view()->positions();
      };
      auto progress = [&](const RebuildProgress& p) {
        std::lock_guard lk(worker->mu_);
        rebuild = p;
        rebuild.generation = gen;
      };
      ORDO_TRY(rebuild_view(o, *fresh, worker->stopping_, progress, pause_live));
      // The swap: the generation file names the new store, then it goes live.
      ORDO_TRY(write_file_atomic(view_dir + "/generation", std::to_string(gen) + "\n"));
      std::shared_ptr<TableView> old;
      {
        std::lock_guard lk(view_mu);
        old = std::exchange(view_, std::shared_ptr<TableView>(std::move(fresh)));
      }
      positions_stale = true;
      const int64_t old_gen = std::exchange(generation, gen);
      old.reset();  // readers still holding it keep it open until they finish
      std::filesystem::remove_all(view_dir + "/gen-" + std::to_string(old_gen), ec);
      return ok();
    }();
    RebuildProgress final_state;
    {
      std::lock_guard lk(worker->mu_);
      pause_requested = false;
      rebuild.state = r ? "done" : "failed";
      rebuild.error = r ? "" : r.error().to_string();
      final_state = rebuild;
    }
    worker->applied_.notify_all();
    if (r) {
      ORDO_LOG_INFO("sink {}: rebuilt as generation {} ({} records in {} ms)", config.name, gen,
                    final_state.records, final_state.elapsed_ms);
    } else {
      ORDO_LOG_ERROR("sink {}: rebuild failed: {}", config.name, r.error().to_string());
      std::filesystem::remove_all(dir, ec);
    }
  }

  void run() {
    set_state("running");
    std::vector<rd_kafka_message_t*> batch;
    auto last_refresh = std::chrono::steady_clock::now();
    auto last_recheck = last_refresh;
    while (!worker->stopping_) {
      pause_point();
      batch.clear();
      for (int i = 0; i < kApplyPollBatch; ++i) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), i == 0 ? 100 : 0);
        if (!m) break;
        if (m->err) {
          if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            ORDO_LOG_WARN("sink {}: {}", config.name, rd_kafka_message_errstr(m));
          }
          rd_kafka_message_destroy(m);
          continue;
        }
        batch.push_back(m);
      }
      // Per partition, in the order received (librdkafka delivers a partition in order).
      std::map<TopicPartition, std::vector<rd_kafka_message_t*>> by_tp;
      for (auto* m : batch) {
        by_tp[TopicPartition{rd_kafka_topic_name(m->rkt), m->partition}].push_back(m);
      }
      PartitionList commits(rd_kafka_topic_partition_list_new(int(by_tp.size())));
      for (auto& [tp, msgs] : by_tp) {
        if (!apply(tp, msgs)) continue;
        rd_kafka_topic_partition_list_add(commits.get(), tp.topic.c_str(), tp.partition)->offset =
            msgs.back()->offset + 1;
      }
      for (auto* m : batch) rd_kafka_message_destroy(m);
      // For lag in `ordo group describe` only: the store holds the real position.
      if (commits->cnt > 0 && !worker->stopping_) rd_kafka_commit(rk.get(), commits.get(), 1);
      auto now = std::chrono::steady_clock::now();
      if (!by_tp.empty()) {
        last_recheck = now;
      } else if (now - last_recheck > kIdleRecheck) {
        recheck_positions();
        last_recheck = now;
      }
      if (!by_tp.empty() || now - last_refresh > std::chrono::milliseconds(500)) {
        refresh_partitions();
        last_refresh = now;
      }
    }
    rd_kafka_consumer_close(rk.get());
    set_state("stopped");
  }
};

Worker::~Worker() {
  stop();
}

Result<std::unique_ptr<Worker>> Worker::start(PipelineConfig config) {
  auto w = std::unique_ptr<Worker>(new Worker());
  w->config_ = std::move(config);
  std::error_code ec;
  std::filesystem::create_directories(w->config_.data_dir + "/views", ec);
  if (ec) return make_error(Errc::io, "create {}/views: {}", w->config_.data_dir, ec.message());
  for (const auto& sc : w->config_.sinks) {
    auto t = std::make_unique<Task>();
    t->worker = w.get();
    t->config = sc;
    t->status.name = sc.name;
    t->status.type = sc.type;
    t->status.state = "starting";
    ORDO_TRY(t->open_store(w->config_.data_dir));
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const char* k, const std::string& v) -> Result<void> {
      if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return make_error(Errc::invalid_argument, "{}={}: {}", k, v, err);
      }
      return ok();
    };
    ORDO_TRY(set("bootstrap.servers", w->config_.bootstrap));
    ORDO_TRY(set("group.id", w->config_.group + "." + sc.name));
    ORDO_TRY(set("client.id", "ordo-connect-" + sc.name));
    ORDO_TRY(set("enable.auto.commit", "false"));
    ORDO_TRY(set("enable.auto.offset.store", "false"));
    ORDO_TRY(set("auto.offset.reset", "earliest"));
    if (!w->config_.id.empty()) ORDO_TRY(set("group.instance.id", w->config_.id + "." + sc.name));
    rd_kafka_conf_set_opaque(conf, t.get());
    rd_kafka_conf_set_rebalance_cb(
        conf, [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                 void* opaque) { static_cast<Task*>(opaque)->rebalance(err, parts); });
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
      rd_kafka_conf_destroy(conf);
      return make_error(Errc::invalid_argument, "sink {}: {}", sc.name, err);
    }
    t->rk.reset(rk);
    rd_kafka_poll_set_consumer(rk);
    {
      rd_kafka_conf_t* pconf = rd_kafka_conf_new();
      for (const auto& [k, v] : std::vector<std::pair<const char*, std::string>>{
               {"bootstrap.servers", w->config_.bootstrap},
               {"client.id", "ordo-connect-" + sc.name + "-dlq"},
               {"acks", "all"},
               {"enable.idempotence", "true"},
               {"linger.ms", "0"}}) {
        if (rd_kafka_conf_set(pconf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
          rd_kafka_conf_destroy(pconf);
          return make_error(Errc::invalid_argument, "{}={}: {}", k, v, err);
        }
      }
      // A failed delivery is counted on the task (the producer's opaque).
      rd_kafka_conf_set_opaque(pconf, t.get());
      rd_kafka_conf_set_dr_msg_cb(pconf,
                                  [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                                    if (m->err) static_cast<Task*>(opaque)->dlq_failed.fetch_add(1);
                                  });
      rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
      if (!p) {
        rd_kafka_conf_destroy(pconf);
        return make_error(Errc::invalid_argument, "sink {}: {}", sc.name, err);
      }
      t->dlq.reset(p);
    }
    PartitionList topics(rd_kafka_topic_partition_list_new(int(sc.topics.size())));
    for (const auto& topic : sc.topics) {
      rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
    }
    if (auto e = rd_kafka_subscribe(rk, topics.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::invalid_argument, "sink {}: subscribe: {}", sc.name,
                        rd_kafka_err2str(e));
    }
    w->tasks_.push_back(std::move(t));
  }
  if (!w->config_.http_host.empty()) {
    http::ServerOptions ho;
    ho.host = w->config_.http_host;
    ho.port = w->config_.http_port;
    ho.threads = 4;        // a read-your-writes GET may wait for its offset
    ho.allow_post = true;  // POST /views/<name>/rebuild
    Worker* self = w.get();
    w->http_ = ORDO_TRY(
        http::Server::start(ho, [self](const http::Request& r) { return self->route(r); }));
  }
  for (const auto& sc : w->config_.sources) {
    w->sources_.push_back(ORDO_TRY(PgSource::start(sc, w->config_.bootstrap, w->config_.data_dir)));
  }
  for (auto& t : w->tasks_) {
    Task* task = t.get();
    task->thread = std::thread([task] { task->run(); });
  }
  return w;
}

void Worker::stop() {
  if (stopping_.exchange(true)) return;
  applied_.notify_all();
  if (http_) http_->stop();
  for (auto& s : sources_) s->stop();
  for (auto& t : tasks_) {
    if (t->thread.joinable()) t->thread.join();
    if (t->rebuild_thread.joinable()) t->rebuild_thread.join();
  }
}

std::vector<TaskStatus> Worker::status() const {
  std::lock_guard lk(mu_);
  std::vector<TaskStatus> out;
  for (const auto& t : tasks_) {
    out.push_back(t->status);
    out.back().rebuild = t->rebuild;
  }
  return out;
}

std::vector<PgSourceStatus> Worker::source_status() const {
  std::vector<PgSourceStatus> out;
  for (const auto& s : sources_) out.push_back(s->status());
  return out;
}

Worker::Task* Worker::find_task(std::string_view name, std::string_view type) {
  for (auto& t : tasks_) {
    if (t->config.name == name && t->config.type == type) return t.get();
  }
  return nullptr;
}

Worker::Task* Worker::find(std::string_view name) {
  return find_task(name, "table");
}

std::optional<int64_t> Worker::wait_applied(Task& t, const TopicPartition& tp, int64_t offset,
                                            int64_t timeout_ms) {
  auto current = [&]() -> std::optional<int64_t> {
    auto p = t.view()->position(tp);
    return p ? *p : std::nullopt;
  };
  std::unique_lock lk(mu_);
  applied_.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] {
    auto p = current();
    return stopping_ || (p && *p > offset);
  });
  return current();
}

namespace {

json rebuild_json(const RebuildProgress& p) {
  return {{"state", p.state},
          {"generation", p.generation},
          {"records", p.records},
          {"offsets_done", p.offsets_done},
          {"offsets_total", p.offsets_total},
          {"elapsed_ms", p.elapsed_ms},
          {"error", p.error}};
}

}  // namespace

// GET /search/<name>?q=QUERY[&limit=N]: ranked hits with snippets.
http::Response Worker::route_search(const http::Request& req) {
  std::string name = req.path.substr(std::string_view("/search/").size());
  Task* t = find_task(name, "search");
  if (!t) return json_response(404, {{"error", "no search index named '" + name + "'"}});
  auto q = req.query.find("q");
  auto limit = int_param(req, "limit").value_or(10);
  if (q == req.query.end() || q->second.empty() || limit < 1 || limit > 1000) {
    return json_response(400, {{"error", "q is required; limit is 1-1000"}});
  }
  auto hits = t->search_->search(q->second, size_t(limit));
  if (!hits) {
    return json_response(hits.error().code == Errc::invalid_argument ? 400 : 500,
                         {{"error", hits.error().to_string()}});
  }
  json a = json::array();
  for (const auto& h : *hits) {
    a.push_back({{"key", h.key},
                 {"rank", h.rank},
                 {"percent", h.percent},
                 {"snippet", h.snippet},
                 {"value", h.value}});
  }
  auto total = t->search_->documents();
  return json_response(200,
                       {{"query", q->second}, {"documents", total ? *total : -1}, {"hits", a}});
}

// POST /claims/<name>?value=V&owner=O[&op=release][&timeout_ms=T]: claim and wait for the
// decision; GET /claims/<name>/holders/<value>: who holds a value.
http::Response Worker::route_claims(const http::Request& req) {
  std::string_view rest = std::string_view(req.path).substr(std::string_view("/claims/").size());
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  Task* t = find_task(name, "claims");
  if (!t) return json_response(404, {{"error", "no claims sink named '" + name + "'"}});
  if (req.method == "POST") {
    if (slash != std::string_view::npos)
      return json_response(404, {{"error", "POST /claims/<name>"}});
    auto value = req.query.find("value");
    auto owner = req.query.find("owner");
    auto op = req.query.find("op");
    auto timeout = int_param(req, "timeout_ms").value_or(10'000);
    if (value == req.query.end() || value->second.empty() || owner == req.query.end() ||
        (op != req.query.end() && op->second != "claim" && op->second != "release") ||
        timeout < 1 || timeout > 60'000) {
      return json_response(400, {{"error",
                                  "value and owner are required; op is claim or "
                                  "release; timeout_ms 1-60000"}});
    }
    ClaimRequest cr;
    cr.bootstrap = config_.bootstrap;
    cr.topic = t->config.topics.front();
    cr.results_topic = t->config.output_topic;
    cr.value = value->second;
    cr.owner = owner->second;
    cr.release = op != req.query.end() && op->second == "release";
    cr.timeout_ms = timeout;
    auto d = claim_and_wait(cr, &stopping_);
    if (!d) {
      return json_response(d.error().code == Errc::busy ? 504 : 502,
                           {{"error", d.error().to_string()}});
    }
    return json_response(200, *d);
  }
  constexpr std::string_view kHolders = "holders/";
  std::string_view what = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (!what.starts_with(kHolders)) return json_response(404, {{"error", "no such resource"}});
  std::string value(what.substr(kHolders.size()));
  auto h = t->claims_->holder(value);
  if (!h) return json_response(500, {{"error", h.error().to_string()}});
  if (!*h) return json_response(404, {{"error", "nobody holds it"}});
  return json_response(200, {{"value", value}, {"holder", **h}});
}

// GET /aggregates/<name>/groups[?limit=N] and /aggregates/<name>/groups/<group JSON>.
http::Response Worker::route_aggregate(const http::Request& req) {
  std::string_view rest =
      std::string_view(req.path).substr(std::string_view("/aggregates/").size());
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  Task* t = find_task(name, "aggregate");
  if (!t || slash == std::string_view::npos) {
    return json_response(404, {{"error", "no aggregate named '" + name + "'"}});
  }
  std::string_view what = rest.substr(slash + 1);
  auto to_json = [](const std::string& g, const AggregateStore::Group& v) {
    return json{{"group", json::parse(g, nullptr, false)}, {"count", v.count}, {"sum", v.sum}};
  };
  if (what == "groups") {
    auto limit = int_param(req, "limit").value_or(1000);
    if (limit < 1 || limit > 100000) return json_response(400, {{"error", "limit is 1-100000"}});
    auto all = t->aggregate_->groups(size_t(limit));
    if (!all) return json_response(500, {{"error", all.error().to_string()}});
    json a = json::array();
    for (const auto& [g, v] : *all) a.push_back(to_json(g, v));
    return json_response(200, a);
  }
  constexpr std::string_view kGroups = "groups/";
  if (!what.starts_with(kGroups)) return json_response(404, {{"error", "no such resource"}});
  std::string g(what.substr(kGroups.size()));
  auto v = t->aggregate_->group(g);
  if (!v) return json_response(500, {{"error", v.error().to_string()}});
  if (!*v) return json_response(200, to_json(g, AggregateStore::Group{}));  // nothing counted
  return json_response(200, to_json(g, **v));
}

http::Response Worker::start_rebuild(Task& t) {
  {
    std::lock_guard lk(mu_);
    if (t.rebuild.state == "building" || t.rebuild.state == "catching-up") {
      return json_response(409, {{"error", "a rebuild of this view is running"},
                                 {"rebuild", rebuild_json(t.rebuild)}});
    }
    if (stopping_) return json_response(503, {{"error", "the worker is stopping"}});
    t.rebuild = RebuildProgress{};
    t.rebuild.state = "building";
    t.rebuild.generation = t.generation + 1;
  }
  if (t.rebuild_thread.joinable()) t.rebuild_thread.join();  // the last one, finished
  Task* task = &t;
  t.rebuild_thread = std::thread([task] { task->run_rebuild(); });
  std::lock_guard lk(mu_);
  return json_response(202, rebuild_json(t.rebuild));
}

http::Response Worker::route(const http::Request& req) {
  const std::string& path = req.path;
  const bool post = req.method == "POST";
  constexpr std::string_view kSearch = "/search/";
  if (path.starts_with(kSearch) && !post) return route_search(req);
  constexpr std::string_view kClaims = "/claims/";
  if (path.starts_with(kClaims)) return route_claims(req);
  if (post && !path.ends_with("/rebuild")) {
    return json_response(405, {{"error",
                                "only /views/<name>/rebuild and /claims/<name> take "
                                "POST"}});
  }
  if (path == "/status") {
    json tasks = json::array();
    for (const auto& s : status()) {
      json parts = json::array();
      for (const auto& p : s.partitions) {
        json jp = {{"topic", p.tp.topic},
                   {"partition", p.tp.partition},
                   {"position", p.position},
                   {"high_watermark", p.high_watermark}};
        if (p.high_watermark >= 0) {
          jp["lag"] = std::max<int64_t>(0, p.high_watermark - std::max<int64_t>(p.position, 0));
        }
        parts.push_back(std::move(jp));
      }
      tasks.push_back({{"name", s.name},
                       {"type", s.type},
                       {"state", s.state},
                       {"error", s.error},
                       {"records_applied", s.records_applied},
                       {"records_dead_lettered", s.records_dead_lettered},
                       {"partitions", parts},
                       {"rebuild", rebuild_json(s.rebuild)}});
    }
    json sources = json::array();
    for (const auto& s : source_status()) {
      sources.push_back({{"name", s.name},
                         {"type", "postgres"},
                         {"state", s.state},
                         {"error", s.error},
                         {"slot", s.slot},
                         {"confirmed_lsn", s.confirmed_lsn},
                         {"slot_lag_bytes", s.slot_lag_bytes},
                         {"snapshot_rows", s.snapshot_rows},
                         {"transactions", s.transactions},
                         {"records", s.records},
                         {"skipped_transactions", s.skipped_transactions}});
    }
    return json_response(200, {{"tasks", tasks}, {"sources", sources}});
  }
  constexpr std::string_view kAggregates = "/aggregates/";
  if (path.starts_with(kAggregates)) return route_aggregate(req);
  constexpr std::string_view kViews = "/views/";
  if (!path.starts_with(kViews)) return json_response(404, {{"error", "no such resource"}});
  std::string_view rest = std::string_view(path).substr(kViews.size());
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  Task* t = slash == std::string_view::npos ? nullptr : find(name);
  if (!t) return json_response(404, {{"error", "no view named '" + name + "'"}});
  std::string_view what = rest.substr(slash + 1);
  if (what == "rebuild") {
    if (post) return start_rebuild(*t);
    std::lock_guard lk(mu_);
    return json_response(200, rebuild_json(t->rebuild));
  }
  if (what == "scan") {
    // One page: `next` is the cursor of the following one (the page's last key,
    // percent-encoded, so keys that are not UTF-8 survive), null after the last page.
    auto limit = int_param(req, "limit").value_or(100);
    if (limit < 1 || limit > kMaxScanPage) {
      return json_response(400, {{"error", fmt::format("limit is 1-{}", kMaxScanPage)}});
    }
    auto it = req.query.find("prefix");
    std::optional<std::string_view> after;
    if (auto a = req.query.find("after"); a != req.query.end()) after = a->second;
    auto rows = t->view()->scan(it == req.query.end() ? "" : it->second, size_t(limit) + 1, after);
    if (!rows) return json_response(500, {{"error", rows.error().to_string()}});
    json next = nullptr;
    if (rows->size() > size_t(limit)) {
      rows->pop_back();
      next = http::percent_encode(rows->back().first);
    }
    json a = json::array();
    for (const auto& [k, e] : *rows)
      a.push_back({{"key", k}, {"value", e.value}, {"offset", e.offset}});
    return json_response(200, {{"rows", std::move(a)}, {"next", std::move(next)}});
  }
  constexpr std::string_view kKeys = "keys/";
  if (!what.starts_with(kKeys)) return json_response(404, {{"error", "no such resource"}});
  std::string key(what.substr(kKeys.size()));
  // Read your writes: wait until the view has applied the offset the writer was given.
  if (auto min_offset = int_param(req, "min_offset")) {
    auto partition = int_param(req, "partition").value_or(0);
    auto timeout = int_param(req, "timeout_ms").value_or(5000);
    if (*min_offset < 0 || partition < 0 || partition > INT32_MAX || timeout < 0 ||
        timeout > 60000 || t->config.topics.size() != 1) {
      return json_response(400, {{"error",
                                  "min_offset, partition (default 0) and timeout_ms (0-60000) "
                                  "are numbers; the view must have one topic"}});
    }
    TopicPartition tp{t->config.topics.front(), int32_t(partition)};
    auto pos = wait_applied(*t, tp, *min_offset, timeout);
    if (!pos || *pos <= *min_offset) {
      return json_response(504, {{"error", "the view has not applied the offset yet"},
                                 {"position", pos ? *pos : -1}});
    }
  }
  auto e = t->view()->get(key);
  if (!e) return json_response(500, {{"error", e.error().to_string()}});
  if (!*e) return json_response(404, {{"error", "no such key"}});
  return json_response(200, {{"key", key}, {"value", (*e)->value}, {"offset", (*e)->offset}});
}

}  // namespace ordo::connect
