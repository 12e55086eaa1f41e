#pragma once
// Topic administration the connect runtime needs from any Kafka-compatible cluster: make sure a
// compacted topic exists and learn its partition count.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "base/result.h"

namespace ordo::connect {

// Creates `topic` with cleanup.policy=compact and `partitions` partitions unless it exists,
// then returns its partition count (an existing topic keeps its own). Gives up with Errc::io
// after about 30 s without an answer, or Errc::closed when `stopping` becomes true.
Result<int32_t> ensure_compacted_topic(rd_kafka_t* rk, const std::string& topic,
                                       int32_t partitions, const std::atomic<bool>& stopping);
// The same with the cluster's default cleanup policy.
Result<int32_t> ensure_topic(rd_kafka_t* rk, const std::string& topic, int32_t partitions,
                             const std::atomic<bool>& stopping);

}  // namespace ordo::connect
