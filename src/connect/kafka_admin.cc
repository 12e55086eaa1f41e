#include "connect/kafka_admin.h"

#include <chrono>
#include <thread>

namespace ordo::connect {

namespace {

Result<int32_t> create_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                             bool compacted, const std::atomic<bool>& stopping) {
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, -1, err, sizeof err);
  if (!nt) return make_error(Errc::invalid_argument, "topic {}: {}", topic, err);
  if (compacted) rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = nullptr;
  for (int i = 0; i < 300 && !ev && !stopping; ++i) ev = rd_kafka_queue_poll(q, 100);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  if (stopping) {
    if (ev) rd_kafka_event_destroy(ev);
    return make_error(Errc::closed, "stopping");
  }
  if (!ev) return make_error(Errc::io, "create topic {}: no answer", topic);
  Result<void> r = ok();
  size_t n = 0;
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
  const rd_kafka_topic_result_t** results =
      res ? rd_kafka_CreateTopics_result_topics(res, &n) : nullptr;
  if (!res) r = make_error(Errc::io, "create topic {}: {}", topic, rd_kafka_event_error_string(ev));
  for (size_t i = 0; i < n; ++i) {
    auto e = rd_kafka_topic_result_error(results[i]);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      r = make_error(Errc::io, "create topic {}: {}", topic, rd_kafka_err2str(e));
    }
  }
  rd_kafka_event_destroy(ev);
  ORDO_TRY(std::move(r));
  // Its partitions (an existing topic may have other than asked for).
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  int32_t count = 0;
  for (int i = 0; i < 50 && count == 0 && !stopping; ++i) {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        count = md->topics[0].partition_cnt;
      }
      rd_kafka_metadata_destroy(md);
    }
    if (count == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  rd_kafka_topic_destroy(rkt);
  if (count == 0) return make_error(Errc::io, "topic {}: no partitions in the metadata", topic);
  return count;
}

}  // namespace

Result<int32_t> ensure_compacted_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                                       const std::atomic<bool>& stopping) {
  return create_topic(rk, topic, partitions, true, stopping);
}

Result<int32_t> ensure_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                             const std::atomic<bool>& stopping) {
  return create_topic(rk, topic, partitions, false, stopping);
}

}  // namespace ordo::connect
