#include "connect/claims.h"

#include <librdkafka/rdkafka.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <map>
#include <random>

#include "base/log.h"
#include "connect/kafka_admin.h"
#include "connect/rocks.h"
#include "connect/table_view.h"

namespace ordo::connect {

using nlohmann::json;
namespace tf = table_format;

namespace {

constexpr char kHolderPrefix = 'c';  // 'c' + value -> {"owner", "request_id", "offset"}

std::string random_id() {
  std::random_device rd;
  std::mt19937_64 g((uint64_t(rd()) << 32) ^ rd());
  return fmt::format("{:016x}{:016x}", g(), g());
}

Result<KafkaPtr> client(rd_kafka_type_t type,
                        const std::vector<std::pair<const char*, std::string>>& kv) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : kv) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return make_error(Errc::invalid_argument, "{}={}: {}", k, v, err);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return make_error(Errc::invalid_argument, "{}", err);
  }
  return KafkaPtr(rk);
}

}  // namespace

ClaimStore::ClaimStore(std::unique_ptr<rocksdb::DB> db, Publish publish)
    : db_(std::move(db)), publish_(std::move(publish)) {}
ClaimStore::~ClaimStore() = default;

Result<std::unique_ptr<ClaimStore>> ClaimStore::open(const std::string& path, Publish publish) {
  auto db = ORDO_TRY(open_rocks(path, "claims store"));  // not inside `new`: it would leak
  return std::unique_ptr<ClaimStore>(new ClaimStore(std::move(db), std::move(publish)));
}

Result<std::optional<int64_t>> ClaimStore::position(const model::TopicPartition& tp) {
  return read_position(*db_, tp);
}

Result<std::optional<json>> ClaimStore::holder(const std::string& value) const {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), std::string(1, kHolderPrefix) + value, &v);
  if (s.IsNotFound()) return std::optional<json>();
  if (!s.ok()) return rocks_error(s, "read holder");
  json j = json::parse(v, nullptr, false);
  if (!j.is_object() || !j.contains("owner") || !j.contains("request_id")) {
    return make_error(Errc::corrupt, "claims: holder of {} is not a holder", value);
  }
  return std::optional<json>(std::move(j));
}

Result<void> ClaimStore::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                               int64_t next_offset) {
  std::map<std::string, std::optional<json>> holders;  // the batch's view of the holders
  auto load = [&](const std::string& value) -> Result<std::optional<json>> {
    if (auto it = holders.find(value); it != holders.end()) return it->second;
    return holder(value);
  };
  std::vector<std::pair<std::string, std::string>> results;
  for (const auto& c : changes) {
    if (c.truncate || !c.value) continue;  // neither is a request
    json req = json::parse(*c.value, nullptr, false);
    auto rid = req.is_object() && req.contains("request_id") && req["request_id"].is_string()
                   ? req["request_id"].get<std::string>()
                   : std::string();
    if (rid.empty()) {
      ORDO_LOG_WARN("claims: {} offset {}: no request_id: nobody to answer", tp.to_string(),
                    c.offset);
      continue;
    }
    std::string owner = req.contains("owner") && req["owner"].is_string()
                            ? req["owner"].get<std::string>()
                            : std::string();
    bool release = req.contains("op") && req["op"] == "release";
    auto current = ORDO_TRY(load(c.key));
    bool accepted = false;
    if (release) {
      accepted = current && (*current)["owner"] == owner;
      if (accepted) current.reset();
    } else if (!current) {
      accepted = true;
      current = json{{"owner", owner}, {"request_id", rid}, {"offset", c.offset}};
    } else {
      accepted = (*current)["request_id"] == rid;  // the same request again: the same answer
    }
    holders[c.key] = current;
    results.emplace_back(rid, json{{"request_id", rid},
                                   {"value", c.key},
                                   {"owner", owner},
                                   {"op", release ? "release" : "claim"},
                                   {"accepted", accepted},
                                   {"holder", current ? (*current)["owner"] : json(nullptr)},
                                   {"partition", tp.partition},
                                   {"offset", c.offset}}
                                  .dump());
  }
  rocksdb::WriteBatch batch;
  for (const auto& [value, h] : holders) {
    const std::string key = std::string(1, kHolderPrefix) + value;
    auto s = h ? batch.Put(key, h->dump()) : batch.Delete(key);
    if (!s.ok()) return rocks_error(s, "build write batch");
  }
  if (auto s = batch.Put(tf::position_key(tp), tf::encode_position(next_offset)); !s.ok()) {
    return rocks_error(s, "build write batch");
  }
  if (!results.empty() && publish_) ORDO_TRY(publish_(results));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto s = db_->Write(wo, &batch); !s.ok()) return rocks_error(s, "write claims store");
  return ok();
}

Result<json> claim_and_wait(const ClaimRequest& r, const std::atomic<bool>* stopping) {
  static const std::atomic<bool> never{false};
  const std::atomic<bool>& stop = stopping ? *stopping : never;
  const std::string rid = r.request_id.empty() ? random_id() : r.request_id;
  auto producer = ORDO_TRY(client(RD_KAFKA_PRODUCER, {{"bootstrap.servers", r.bootstrap},
                                                      {"client.id", "ordo-claim"},
                                                      {"acks", "all"},
                                                      {"enable.idempotence", "true"},
                                                      {"linger.ms", "0"}}));
  auto consumer = ORDO_TRY(client(RD_KAFKA_CONSUMER, {{"bootstrap.servers", r.bootstrap},
                                                      {"client.id", "ordo-claim"},
                                                      {"group.id", "ordo-claim-" + rid},
                                                      {"enable.auto.commit", "false"}}));
  rd_kafka_poll_set_consumer(consumer.get());
  // Read the results from their ends as they are now, before the claim exists.
  ORDO_TRY(ensure_topic(producer.get(), r.topic, 1, stop));
  int32_t parts = ORDO_TRY(ensure_topic(producer.get(), r.results_topic, 1, stop));
  std::unique_ptr<rd_kafka_topic_partition_list_t, void (*)(rd_kafka_topic_partition_list_t*)> list(
      rd_kafka_topic_partition_list_new(parts), rd_kafka_topic_partition_list_destroy);
  for (int32_t p = 0; p < parts; ++p) {
    int64_t lo = 0, hi = 0;
    auto e = rd_kafka_query_watermark_offsets(consumer.get(), r.results_topic.c_str(), p, &lo, &hi,
                                              10'000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return make_error(Errc::io, "results topic {}: {}", r.results_topic, rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_add(list.get(), r.results_topic.c_str(), p)->offset = hi;
  }
  rd_kafka_assign(consumer.get(), list.get());
  json value = {{"request_id", rid}, {"owner", r.owner}, {"op", r.release ? "release" : "claim"}};
  std::string v = value.dump();
  auto e = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC(r.topic.c_str()),
                             RD_KAFKA_V_KEY(r.value.data(), r.value.size()),
                             RD_KAFKA_V_VALUE(v.data(), v.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_flush(producer.get(), int(r.timeout_ms)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return make_error(Errc::io, "claims topic {}: the claim was not acknowledged", r.topic);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(r.timeout_ms);
  Result<json> out = make_error(Errc::busy, "no decision within {} ms", r.timeout_ms);
  while (std::chrono::steady_clock::now() < deadline && !stop) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), 100);
    if (!m) continue;
    bool mine =
        !m->err && m->key && std::string_view(static_cast<const char*>(m->key), m->key_len) == rid;
    if (mine) {
      json d = json::parse(std::string_view(static_cast<const char*>(m->payload), m->len), nullptr,
                           false);
      rd_kafka_message_destroy(m);
      if (d.is_object()) {
        out = std::move(d);
        break;
      }
      continue;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

}  // namespace ordo::connect
