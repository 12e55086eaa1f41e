#pragma once

#include <signal.h>
// What the client commands (`ordo topic`, `ordo group`, `ordo produce`, `ordo consume`) share: a
// librdkafka configuration built from -b/-X, owning handles for librdkafka objects, and errors.
//
// The commands use only librdkafka's C API, so they work against Ordo or any Kafka cluster.
// They run on the main thread; librdkafka runs its own threads, and its callbacks (delivery
// reports, logs) are served from the main thread through rd_kafka_poll() except the log
// callback, which librdkafka may call from its threads (it only writes one line to stderr).

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "cli/commands.h"

namespace ordo::cli {

// Bounds for requests that must not hang a command when the cluster does not answer.
constexpr int kMetadataTimeoutMs = 10'000;
constexpr int kAdminTimeoutMs = 30'000;

// Owning handles: each destroys its object with the matching librdkafka function.
template <auto Destroy>
struct Destroyer {
  template <typename T>
  void operator()(T* p) const {
    if (p) Destroy(p);
  }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, Destroyer<rd_kafka_destroy>>;
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, Destroyer<rd_kafka_conf_destroy>>;
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, Destroyer<rd_kafka_queue_destroy>>;
using TopicPtr = std::unique_ptr<rd_kafka_topic_t, Destroyer<rd_kafka_topic_destroy>>;
using EventPtr = std::unique_ptr<rd_kafka_event_t, Destroyer<rd_kafka_event_destroy>>;
using MessagePtr = std::unique_ptr<rd_kafka_message_t, Destroyer<rd_kafka_message_destroy>>;
using ErrorPtr = std::unique_ptr<rd_kafka_error_t, Destroyer<rd_kafka_error_destroy>>;
using MetadataPtr =
    std::unique_ptr<const rd_kafka_metadata_t, Destroyer<rd_kafka_metadata_destroy>>;
using PartitionListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t,
                                         Destroyer<rd_kafka_topic_partition_list_destroy>>;
using AdminOptionsPtr =
    std::unique_ptr<rd_kafka_AdminOptions_t, Destroyer<rd_kafka_AdminOptions_destroy>>;
using ConfigResourcePtr =
    std::unique_ptr<rd_kafka_ConfigResource_t, Destroyer<rd_kafka_ConfigResource_destroy>>;
using NewTopicPtr = std::unique_ptr<rd_kafka_NewTopic_t, Destroyer<rd_kafka_NewTopic_destroy>>;
using NewPartitionsPtr =
    std::unique_ptr<rd_kafka_NewPartitions_t, Destroyer<rd_kafka_NewPartitions_destroy>>;
using DeleteTopicPtr =
    std::unique_ptr<rd_kafka_DeleteTopic_t, Destroyer<rd_kafka_DeleteTopic_destroy>>;
using DeleteGroupPtr =
    std::unique_ptr<rd_kafka_DeleteGroup_t, Destroyer<rd_kafka_DeleteGroup_destroy>>;
using ListGroupOffsetsPtr = std::unique_ptr<rd_kafka_ListConsumerGroupOffsets_t,
                                            Destroyer<rd_kafka_ListConsumerGroupOffsets_destroy>>;
using AlterGroupOffsetsPtr = std::unique_ptr<rd_kafka_AlterConsumerGroupOffsets_t,
                                             Destroyer<rd_kafka_AlterConsumerGroupOffsets_destroy>>;

// An Error for a librdkafka error code: "<what>: <librdkafka's text> (<code name>)".
Error kafka_error(rd_kafka_resp_err_t err, std::string_view what, std::string_view detail = {});

// Prints "ordo: <message>" to stderr.
void print_error(const Error& e);
// The exit code of a command: 0, or 1 after printing the error.
int finish(const Result<void>& r);

// A decimal integer, all of s; invalid_argument naming `what` otherwise.
Result<int64_t> parse_int(std::string_view s, std::string_view what);

// HOST:PORT with a port in 1-65535 (an IPv6 host in brackets); invalid_argument otherwise.
Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view s);

// Blocks SIGTERM and SIGINT in this thread and the ones it starts (a long-running command
// waits for them with sigwait on the returned set) and ignores SIGPIPE.
sigset_t block_stop_signals();

// The bootstrap servers: -b, else $ORDO_BOOTSTRAP, else 127.0.0.1:9092.
std::string bootstrap_servers(const ClientArgs& args);

// A configuration with bootstrap.servers, the command's defaults, then every -X key=value (so
// the user's properties win), and the log callback.
Result<ConfPtr> make_conf(const ClientArgs& args,
                          const std::vector<std::pair<std::string, std::string>>& defaults);

// A client of the given type from conf (which it takes over).
Result<KafkaPtr> make_client(rd_kafka_type_t type, ConfPtr conf);
// A client for admin requests and offset lookups: a producer handle that never sends a
// message and never auto-creates topics.
Result<KafkaPtr> admin_client(const ClientArgs& args);

// Metadata for every topic (never auto-creates one).
Result<MetadataPtr> fetch_metadata(rd_kafka_t* rk);
// The named topic in md, or nullptr.
const rd_kafka_metadata_topic_t* find_topic(const rd_kafka_metadata_t& md, std::string_view name);
// Metadata of one existing topic: not_found when the cluster does not have it.
Result<const rd_kafka_metadata_topic_t*> require_topic(const rd_kafka_metadata_t& md,
                                                       std::string_view name);
// The partition ids of t, sorted.
std::vector<int32_t> partition_ids(const rd_kafka_metadata_topic_t& t);

// ListOffsets for partitions of one topic through rd_kafka_offsets_for_times() (one request per
// leader): a timestamp in ms gives the first offset at or after it (-1 when there is none), and
// the special timestamps -2 and -1 give the log start and the end (high watermark).
Result<std::map<int32_t, int64_t>> list_offsets(rd_kafka_t* rk, const std::string& topic,
                                                const std::vector<int32_t>& partitions,
                                                int64_t timestamp);

// Admin requests: options with the request timeout, and the wait for a result event of the
// expected type (a request-level error becomes the Error).
Result<AdminOptionsPtr> admin_options(rd_kafka_t* rk, rd_kafka_admin_op_t op);
Result<EventPtr> wait_admin_result(rd_kafka_queue_t* q, rd_kafka_event_type_t type,
                                   std::string_view what);

// Splits "key=value" at the first '='; invalid_argument without one or with an empty key.
Result<std::pair<std::string, std::string>> split_key_value(std::string_view item,
                                                            std::string_view option);

// SIGINT/SIGTERM set a flag that the produce and consume loops check (the handlers are
// installed without SA_RESTART, so a blocking read returns EINTR and the loop sees the flag).
void install_stop_handlers();
bool stop_requested();

}  // namespace ordo::cli
