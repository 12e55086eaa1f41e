#include "connect/rebuild.h"

#include <chrono>
#include <memory>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "connect/kafka_admin.h"

namespace ordo::connect {

using model::TopicPartition;
using Clock = std::chrono::steady_clock;

bool is_truncate_marker(const rd_kafka_message_t* m) {
  rd_kafka_headers_t* hdrs = nullptr;
  const void* v = nullptr;
  size_t n = 0;
  return rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
         rd_kafka_header_get_last(hdrs, "ordo.truncate", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

std::vector<TableView::Change> to_changes(const std::vector<rd_kafka_message_t*>& msgs,
                                          std::optional<int64_t> from, const RecordFormats& f,
                                          Rejected* rejected) {
  std::vector<TableView::Change> changes;
  changes.reserve(msgs.size());
  for (auto* m : msgs) {
    if (from && m->offset < *from) continue;
    if (is_truncate_marker(m)) {
      changes.push_back(TableView::Change{{}, std::nullopt, m->offset, true});
      continue;
    }
    std::string_view key(static_cast<const char*>(m->key), m->key ? m->key_len : 0);
    std::string_view value(static_cast<const char*>(m->payload), m->payload ? m->len : 0);
    // Each key and value is read at most once: into a DOM where a check or the store needs
    // one, otherwise by a validating scan that builds nothing.
    nlohmann::json key_json, value_json;
    bool key_ok = true, value_ok = true;
    if (f.json_key && m->key) {
      if (f.object_keys || f.keep_json) {
        key_json = nlohmann::json::parse(key, nullptr, false);
        key_ok = !key_json.is_discarded();
      } else {
        key_ok = nlohmann::json::accept(key);
      }
    }
    if ((f.json_value || !f.field.empty()) && m->payload) {
      if (!f.field.empty() || f.object_values || f.keep_json) {
        value_json = nlohmann::json::parse(value, nullptr, false);
        value_ok = !value_json.is_discarded();
      } else {
        value_ok = nlohmann::json::accept(value);
      }
    }
    const char* why = !m->key ? "no key: a table view keeps records by key"
                      : f.max_key_bytes && key.size() > f.max_key_bytes
                          ? "the key is longer than the store allows"
                      : f.json_key && !key_ok                   ? "the key is not JSON"
                      : f.json_value && m->payload && !value_ok ? "the value is not JSON"
                      : f.object_keys && (!key_json.is_object() || key_json.empty())
                          ? "the key is not a JSON object of key columns"
                          : nullptr;
    if (why) {
      if (rejected) rejected->emplace_back(m, why);
      continue;
    }
    TableView::Change c;
    c.key = std::string(key);
    c.offset = m->offset;
    const nlohmann::json* row = &value_json;  // what becomes the value, when JSON
    if (m->payload && !f.field.empty()) {
      if (!value_json.is_object()) {
        if (rejected) rejected->emplace_back(m, "the value is not a JSON object");
        continue;
      }
      auto it = value_json.find(f.field);
      if (it != value_json.end() && !it->is_null()) {
        c.value = it->dump();
        row = &*it;
      }
    } else if (m->payload) {
      c.value = std::string(value);
    }
    if (f.object_values && c.value && !row->is_object()) {
      if (rejected) rejected->emplace_back(m, "the value is not a JSON object of columns");
      continue;
    }
    if (f.keep_json && f.json_key) {
      c.key_json = std::make_shared<const nlohmann::json>(std::move(key_json));
    }
    if (f.keep_json && f.json_value && c.value) {
      c.value_json = std::make_shared<const nlohmann::json>(std::move(*row));
    }
    changes.push_back(std::move(c));
  }
  return changes;
}

namespace {

struct ConsumerClose {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
};
constexpr int kRebuildPollBatch = 1000;
constexpr int kMetadataTimeoutMs = 10'000;

Result<std::vector<TopicPartition>> all_partitions(rd_kafka_t* rk,
                                                   const std::vector<std::string>& topics) {
  std::vector<TopicPartition> out;
  for (const auto& topic : topics) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    auto err = rd_kafka_metadata(rk, 0, rkt, &md, kMetadataTimeoutMs);
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::io, "metadata of {}: {}", topic, rd_kafka_err2str(err));
    }
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int p = 0; p < md->topics[0].partition_cnt; ++p) out.push_back({topic, p});
    }
    rd_kafka_metadata_destroy(md);
  }
  return out;
}

}  // namespace

void count_offsets(RebuildProgress& p, const std::map<TopicPartition, int64_t>& start,
                   const std::map<TopicPartition, int64_t>& target,
                   const std::map<TopicPartition, int64_t>& pos) {
  p.offsets_done = 0;
  p.offsets_total = 0;
  for (const auto& [tp, t] : target) {
    auto s = start.find(tp);
    const int64_t from = s == start.end() ? 0 : s->second;
    auto at = pos.find(tp);
    const int64_t here = at == pos.end() ? from : at->second;
    p.offsets_total += std::max<int64_t>(0, t - from);
    p.offsets_done += std::clamp<int64_t>(here - from, 0, std::max<int64_t>(0, t - from));
  }
}

Result<void> rebuild_view(
    const RebuildOptions& options, TableView& into, const std::atomic<bool>& stopping,
    const std::function<void(const RebuildProgress&)>& progress,
    const std::function<Result<std::vector<std::pair<TopicPartition, int64_t>>>()>& pause_live) {
  const auto started = Clock::now();
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::vector<std::pair<const char*, std::string>>{
           {"bootstrap.servers", options.bootstrap},
           {"client.id", options.client_id},
           {"group.id", options.client_id},  // never joined nor committed: assign() only
           {"enable.auto.commit", "false"},
           {"enable.auto.offset.store", "false"},
           {"enable.partition.eof", "true"},
           {"auto.offset.reset", "earliest"}}) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return make_error(Errc::invalid_argument, "{}={}: {}", k, v, err);
    }
  }
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!raw) {
    rd_kafka_conf_destroy(conf);
    return make_error(Errc::invalid_argument, "rebuild consumer: {}", err);
  }
  std::unique_ptr<rd_kafka_t, ConsumerClose> rk(raw);
  rd_kafka_poll_set_consumer(raw);

  std::vector<TopicPartition> parts = options.partitions;
  if (parts.empty()) parts = ORDO_TRY(all_partitions(raw, options.topics));

  RebuildProgress prog;
  prog.state = "building";
  std::map<TopicPartition, int64_t> start, target, pos;
  auto add = [&](const TopicPartition& tp) -> Result<void> {
    int64_t lo = 0, hi = 0;
    auto e = rd_kafka_query_watermark_offsets(raw, tp.topic.c_str(), tp.partition, &lo, &hi,
                                              kMetadataTimeoutMs);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::io, "watermarks of {}: {}", tp.to_string(), rd_kafka_err2str(e));
    }
    start[tp] = pos[tp] = lo;
    target[tp] = hi;
    PartitionList l(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(l.get(), tp.topic.c_str(), tp.partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    if (auto* e2 = rd_kafka_incremental_assign(raw, l.get())) {
      std::string why = rd_kafka_error_string(e2);
      rd_kafka_error_destroy(e2);
      return make_error(Errc::io, "assign {}: {}", tp.to_string(), why);
    }
    return ok();
  };
  for (const auto& tp : parts) ORDO_TRY(add(tp));

  auto last_report = Clock::now();
  auto report = [&](bool force) {
    auto now = Clock::now();
    if (!force && now - last_report < std::chrono::milliseconds(200)) return;
    last_report = now;
    count_offsets(prog, start, target, pos);
    prog.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
    progress(prog);
  };
  auto reached = [&] {
    for (const auto& [tp, t] : target) {
      if (pos[tp] < t) return false;
    }
    return true;
  };
  // Reads until every partition is at its target.
  auto catch_up = [&]() -> Result<void> {
    std::vector<rd_kafka_message_t*> batch;
    while (!reached()) {
      if (stopping) return make_error(Errc::closed, "stopping");
      batch.clear();
      std::map<TopicPartition, std::vector<rd_kafka_message_t*>> by_tp;
      std::map<TopicPartition, int64_t> eof;  // the end of a partition, reached
      Result<void> r = ok();
      for (int i = 0; i < kRebuildPollBatch; ++i) {
        rd_kafka_message_t* m = rd_kafka_consumer_poll(raw, i == 0 ? 100 : 0);
        if (!m) break;
        batch.push_back(m);
        TopicPartition tp{m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->partition};
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          if (pos.contains(tp)) eof[tp] = m->offset;
          continue;
        }
        if (m->err) {
          ORDO_LOG_WARN("rebuild: {}", rd_kafka_message_errstr(m));
          continue;
        }
        if (pos.contains(tp)) by_tp[tp].push_back(m);
      }
      for (auto& [tp, msgs] : by_tp) {
        if (!r || msgs.empty()) continue;
        auto current = into.position(tp);
        if (!current) {
          r = std::move(current).error();
          continue;
        }
        auto changes = to_changes(msgs, *current, options.formats, nullptr);
        int64_t next = std::max(msgs.back()->offset + 1, current->value_or(0));
        r = into.apply(tp, changes, next);
        if (r) {
          pos[tp] = next;
          prog.records += int64_t(msgs.size());
        }
      }
      // At the end, the position may pass offsets compaction removed.
      for (const auto& [tp, end] : eof) {
        if (r && end > pos[tp]) {
          r = into.apply(tp, {}, end);
          if (r) pos[tp] = end;
        }
      }
      for (auto* m : batch) rd_kafka_message_destroy(m);
      ORDO_TRY(std::move(r));
      report(false);
    }
    return ok();
  };

  ORDO_TRY(catch_up());
  // The live view's task pauses; catch up with what it has applied.
  prog.state = "catching-up";
  report(true);
  auto live = ORDO_TRY(pause_live());
  for (const auto& [tp, p] : live) {
    if (!target.contains(tp)) ORDO_TRY(add(tp));
    target[tp] = std::max(target[tp], p);
  }
  ORDO_TRY(catch_up());
  report(true);
  return ok();
}

}  // namespace ordo::connect
