#pragma once
// Topic administration the connect runtime needs from any Kafka-compatible cluster: make sure a
// compacted topic exists and learn its partition count.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"

namespace ordo::connect {

// Owners of librdkafka handles.
struct KafkaDestroy {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDestroy>;
// A producer whose queued and in-flight messages are dropped, not waited for, when it goes.
struct KafkaPurgeDestroy {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(rk);
  }
};
struct PartitionListDestroy {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDestroy>;

// A failed write to a store or the cluster is retried after this long, doubling up to the max.
inline constexpr int64_t kRetryMinMs = 100;
inline constexpr int64_t kRetryMaxMs = 5000;

// Creates `topic` with cleanup.policy=compact and `partitions` partitions unless it exists,
// then returns its partition count (an existing topic keeps its own). Gives up with Errc::io
// after about 30 s without an answer, or Errc::closed when `stopping` becomes true.
Result<int32_t> ensure_compacted_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                                       const std::atomic<bool>& stopping);
// The same with the cluster's default cleanup policy.
Result<int32_t> ensure_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                             const std::atomic<bool>& stopping);

}  // namespace ordo::connect
