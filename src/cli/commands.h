#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ordo::cli {

struct ServeArgs {
  std::string config_file;  // empty: none
  // name=value settings from the command line, in the order given (they win over the file
  // and the environment).
  std::vector<std::pair<std::string, std::string>> overrides;
  bool print_config = false;
};

// Where and how the client commands connect (client.h).
struct ClientArgs {
  std::string bootstrap;                // -b HOST:PORT[,...]; empty: $ORDO_BOOTSTRAP or default
  std::vector<std::string> properties;  // -X key=value, librdkafka properties, in order
};

// `ordo topic create|list|describe|alter|delete`.
struct TopicArgs {
  ClientArgs client;
  std::string name;
  int32_t partitions = -1;           // create: -1 is the broker's default; alter: -1 is unchanged
  int32_t replication_factor = -1;   // -1: the broker's default
  std::vector<std::string> configs;  // --config key=value
  std::vector<std::string> delete_configs;  // alter --delete-config key
  // describe: the broker's admin HTTP API for the cleaner's state (Ordo only); empty: the
  // first bootstrap host, port 9644; "off": not asked.
  std::string admin;
};

// `ordo group list|describe|delete|reset-offsets`.
struct GroupArgs {
  ClientArgs client;
  std::vector<std::string> groups;  // describe and reset-offsets: one; delete: one or more
  // reset-offsets: which partitions (TOPIC or TOPIC:P,P,...), or every topic the group has
  // committed offsets for; then exactly one target.
  std::vector<std::string> topics;
  bool all_topics = false;
  bool to_earliest = false;
  bool to_latest = false;
  std::optional<int64_t> to_offset;
  std::optional<std::string> to_datetime;  // ISO 8601
  std::optional<int64_t> shift_by;
  bool execute = false;  // false: print the plan only
};

// `ordo produce`: one message per line of stdin.
struct ProduceArgs {
  ClientArgs client;
  std::string topic;
  int32_t partition = -1;  // -1: librdkafka's partitioner
  std::optional<std::string> key_separator;
  std::vector<std::string> headers;  // key=value, on every message
  std::string acks;                  // empty: librdkafka's default
  std::string compression;           // empty: librdkafka's default
};

// `ordo consume`: prints messages without a consumer group.
struct ConsumeArgs {
  ClientArgs client;
  std::string topic;
  std::vector<int32_t> partitions;  // empty: all
  std::string from = "beginning";   // beginning, end, OFFSET, -N (N before the end), @TIMESTAMP_MS
  int64_t count = -1;               // -1: no limit
  bool exit_at_end = false;
  std::string format = "%s\\n";
};

// `ordo connect pg-stream`: print a PostgreSQL logical replication stream as JSON lines.
struct PgStreamArgs {
  std::string conninfo;
  std::string slot = "ordo";
  std::string publication = "ordo";
  bool create_slot = false;
  int64_t count = -1;            // stop after this many transactions; -1: no limit
  int idle_timeout_ms = 10'000;  // stop when nothing arrives for this long
};

// `ordo view rebuild`: rebuild a table view in a running worker, with a progress bar.
struct ViewRebuildArgs {
  std::string name;
  std::string http = "127.0.0.1:9645";
  bool no_wait = false;
};

// `ordo claim VALUE`: claim (or release) a unique value through a claims topic and wait for the
// decision (docs/connect.md, "Claims").
struct ClaimArgs {
  ClientArgs client;
  std::string value;
  std::string owner;
  std::string topic = "claims";
  std::string results;  // empty: "<topic>.results"
  bool release = false;
  int64_t timeout_ms = 30'000;
};

// `ordo search NAME QUERY`: query a running worker's search index.
struct SearchArgs {
  std::string name;
  std::string query;
  std::string http = "127.0.0.1:9645";
  int limit = 10;
  bool json = false;  // print the hits as JSON lines
};

// Each returns the process exit code.
int serve(const ServeArgs& args);
int connect_run(const std::string& pipeline_path);
int connect_status(const std::string& http);
// `ordo cluster status --admin HOST:PORT`: brokers, controller, partitions without a leader or
// under-replicated (from GET /v1/cluster).
int cluster_status(const std::string& admin);
int connect_pg_stream(const PgStreamArgs& args);
int view_rebuild(const ViewRebuildArgs& args);
int claim(const ClaimArgs& args);
int search(const SearchArgs& args);  // 0 accepted, 3 rejected, 1 no decision or an error
int dump_log(const std::string& path, bool records);
int topic_create(const TopicArgs& args);
int topic_list(const TopicArgs& args);
int topic_describe(const TopicArgs& args);
int topic_alter(const TopicArgs& args);
int topic_delete(const TopicArgs& args);
int group_list(const GroupArgs& args);
int group_describe(const GroupArgs& args);
int group_delete(const GroupArgs& args);
int group_reset_offsets(const GroupArgs& args);
int produce(const ProduceArgs& args);
int consume(const ConsumeArgs& args);
// The settings table for `ordo serve --help`.
std::string serve_settings_help();

}  // namespace ordo::cli
