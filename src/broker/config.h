#pragma once
// The broker's settings: defaults, a TOML file, ORDO_* environment variables and command-line
// flags, applied in that order (a later source wins). Names follow Kafka's broker configs
// where Kafka has one (num.partitions, message.max.bytes, log.retention.ms, ...); the same
// dotted name is a TOML key path and, upper-cased with '.' -> '_', an environment variable
// with the ORDO_ prefix (log.retention.ms -> ORDO_LOG_RETENTION_MS). docs/configuration.md
// lists every setting.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "storage/config.h"

namespace ordo::broker {

// Where the partition logs' shards run (storage.shard.mode):
//   network    on the network threads (shards = network.threads): a produce read by the thread
//              that owns its partition is appended there, with no hand-off;
//   dedicated  on `shards` threads of the LogManager's own; every append and read is handed
//              to one of them and back.
enum class ShardMode { network, dedicated };
Result<ShardMode> parse_shard_mode(std::string_view s);
std::string_view shard_mode_name(ShardMode m);

struct BrokerConfig {
  std::string data_dir = "./data";        // data.dir
  std::string listen_host = "127.0.0.1";  // listen = "HOST:PORT"
  uint16_t listen_port = 9092;
  std::string advertised_host;           // advertised.listen; empty: listen's
  uint16_t advertised_port = 0;          // 0: the bound port
  std::string admin_host = "127.0.0.1";  // admin.listen = "HOST:PORT"; empty: off
  uint16_t admin_port = 9644;
  int32_t node_id = 0;                      // node.id
  std::string cluster_id = "ordo-cluster";  // cluster.id
  // Cluster mode (docs/cluster.md): on when cluster_voters is not empty. The voters of the
  // controller quorum, "ID@HOST:PORT,..." (peer addresses); this node's peer listener; whether
  // a fresh data dir may form a new cluster with those voters (first start only).
  std::string cluster_voters;                    // cluster.voters
  std::string cluster_listen_host;               // cluster.listen = "HOST:PORT"
  uint16_t cluster_listen_port = 0;              //
  bool cluster_bootstrap = false;                // cluster.bootstrap
  std::string broker_rack;                       // broker.rack; empty: none
  int32_t default_replication_factor = 3;        // default.replication.factor
  int32_t offsets_topic_replication_factor = 3;  // offsets.topic.replication.factor
  int32_t min_insync_replicas = 1;               // min.insync.replicas
  int64_t raft_tick_ms = 50;                     // raft.tick.ms
  int32_t raft_election_ticks = 10;              // raft.election.ticks
  int32_t raft_heartbeat_ticks = 2;              // raft.heartbeat.ticks
  bool raft_write_caching = false;               // raft.write.caching
  int64_t broker_heartbeat_interval_ms = 500;    // broker.heartbeat.interval.ms
  int64_t broker_session_timeout_ms = 6000;      // broker.session.timeout.ms
  // metadata.snapshot.interval.commands
  int64_t metadata_snapshot_interval_commands = 1000;
  bool cluster_mode() const { return !cluster_voters.empty(); }
  int network_threads = 1;                    // network.threads
  int shards = 1;                             // shards (storage.shard.mode dedicated)
  ShardMode shard_mode = ShardMode::network;  // storage.shard.mode
  int flush_threads = 2;                      // flush.threads
  bool auto_create_topics = true;             // auto.create.topics.enable
  int32_t num_partitions = 1;                 // num.partitions
  // Most partitions this broker holds, all topics together; 0: as many as the open-file limit
  // leaves room for (that check applies whatever the value).
  int32_t max_partitions = 0;                        // max.partitions
  int64_t message_max_bytes = 1048588;               // message.max.bytes
  int64_t socket_request_max_bytes = 104857600;      // socket.request.max.bytes
  int64_t connection_max_inflight_bytes = 64 << 20;  // connection.max.inflight.bytes
  int32_t connection_max_inflight_requests = 1000;   // connection.max.inflight.requests
  int32_t fetch_max_wait_ms = 30000;                 // fetch.max.wait.ms (caps max_wait_ms)
  int64_t connections_max_idle_ms = 600000;          // connections.max.idle.ms
  // Connection caps and the broker-wide bound on request bytes being read (docs/broker.md,
  // "Connections and limits"). Kafka's names; Kafka leaves all three unbounded by default.
  int32_t max_connections = 10000;                        // max.connections
  int32_t connections_max_per_ip = 2147483647;            // connections.max.per.ip
  int64_t queued_max_request_bytes = int64_t(256) << 20;  // queued.max.request.bytes; -1: none
  bool truncate_corrupt = false;                          // log.truncate.corrupt
  // The background cleaner (Kafka's names and defaults, except the I/O cap: 0 = none).
  bool log_cleaner_enable = true;                               // log.cleaner.enable
  int64_t log_cleaner_backoff_ms = 15000;                       // log.cleaner.backoff.ms
  int64_t log_cleaner_dedupe_buffer_size = int64_t(128) << 20;  // log.cleaner.dedupe.buffer.size
  int64_t log_cleaner_io_max_bytes_per_second = 0;  // log.cleaner.io.max.bytes.per.second
  // Consumer groups (Kafka's names and defaults, except group.max.size, which Kafka leaves
  // unbounded).
  int32_t offsets_topic_num_partitions = 50;             // offsets.topic.num.partitions
  int32_t offsets_topic_segment_bytes = 104857600;       // offsets.topic.segment.bytes
  int64_t offsets_retention_minutes = 10080;             // offsets.retention.minutes
  int64_t offsets_retention_check_interval_ms = 600000;  // offsets.retention.check.interval.ms
  int32_t offset_metadata_max_bytes = 4096;              // offset.metadata.max.bytes
  int32_t group_min_session_timeout_ms = 6000;           // group.min.session.timeout.ms
  int32_t group_max_session_timeout_ms = 1800000;        // group.max.session.timeout.ms
  int32_t group_initial_rebalance_delay_ms = 3000;       // group.initial.rebalance.delay.ms
  int32_t group_max_size = 1000;                         // group.max.size
  // log.flush.mode (none|interval|durable), log.flush.interval.ms, log.segment.bytes,
  // log.segment.ms, log.retention.ms, log.retention.bytes, log.index.interval.bytes,
  // log.preallocate.mode (none|zero_fill), log.preallocate.bytes: the defaults of every topic.
  // (Not Kafka's log.preallocate: a TOML key cannot be both a value and the table that holds
  // log.preallocate.bytes.)
  storage::LogConfig log;

  Result<void> validate() const;
};

// One voter of cluster.voters: its node id and peer address.
struct VoterAddress {
  int32_t id = 0;
  std::string host;
  uint16_t port = 0;
  bool operator==(const VoterAddress&) const = default;
};
// "ID@HOST:PORT,..." -> voters sorted by id; ids distinct, at least one.
Result<std::vector<VoterAddress>> parse_voters(std::string_view s);

// name=value pairs from the command line (--set name=value), applied last.
using ConfigOverrides = std::vector<std::pair<std::string, std::string>>;

// Builds the configuration: defaults, then the TOML file (when path is not empty; unknown keys
// are an error naming the key), then env (ORDO_* entries only; others ignored; an ORDO_ name
// that matches no setting is an error, except the few read elsewhere such as ORDO_LOG_LEVEL),
// then overrides. Values are validated (ranges, enum names, HOST:PORT), then validate() runs;
// the error names the setting and the source (file:line, env, flag).
Result<BrokerConfig> load_config(std::string_view path,
                                 const std::map<std::string, std::string>& env,
                                 const ConfigOverrides& overrides);

// Sets one setting by its dotted name from a string value (what env and --set use).
Result<void> set_config_value(BrokerConfig& c, std::string_view name, std::string_view value);

// The current environment's ORDO_* variables.
std::map<std::string, std::string> ordo_environment();

// Every setting: name, current value as text, one-line description (for --help and docs).
struct ConfigSettingInfo {
  std::string name;
  std::string value;
  std::string description;
};
std::vector<ConfigSettingInfo> describe_config(const BrokerConfig& c);

}  // namespace ordo::broker
