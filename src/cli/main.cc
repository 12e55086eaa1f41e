// The `ordo` command.
//
//   ordo serve     run the broker on a data dir until SIGTERM/SIGINT
//   ordo dump-log  print the batches of a segment file, checking each one
//   ordo topic     create, list, describe, alter and delete topics (any Kafka cluster)
//   ordo group     list, describe and delete consumer groups, reset their offsets
//   ordo produce   stdin lines to a topic
//   ordo consume   a topic's messages to stdout (no consumer group)
//   ordo connect   run a pipeline's sinks (table views), print their status

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/log.h"
#include "cli/commands.h"

namespace {

// -b and -X, on every client command.
void add_client_options(CLI::App* cmd, ordo::cli::ClientArgs& client) {
  cmd->add_option("-b,--bootstrap", client.bootstrap,
                  "HOST:PORT[,HOST:PORT...] to bootstrap from (default: $ORDO_BOOTSTRAP, else "
                  "127.0.0.1:9092)");
  cmd->add_option("-X", client.properties,
                  "key=value: a librdkafka property (repeatable; wins over the command's own)")
      ->allow_extra_args(false);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Ordo: a log-centric data platform (Kafka wire protocol, one binary)"};
  app.require_subcommand(1);

  ordo::cli::ServeArgs serve;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Run the Kafka-compatible broker on a data directory until SIGTERM or SIGINT (then it "
      "stops accepting, finishes in-flight requests, flushes and exits 0)");
  serve_cmd->footer(ordo::cli::serve_settings_help());
  serve_cmd->add_option("-c,--config", serve.config_file, "TOML configuration file");
  // Each flag is a shorthand for one setting; all of them, like --set, win over the file and
  // the ORDO_* environment.
  struct Shorthand {
    const char* flag;
    const char* setting;
    const char* help;
  };
  static const Shorthand shorthands[] = {
      {"--data-dir", "data.dir", "Data directory (data.dir, default ./data)"},
      {"--listen", "listen", "HOST:PORT to listen on (listen, default 127.0.0.1:9092)"},
      {"--advertised-listen", "advertised.listen", "HOST:PORT told to clients"},
      {"--admin-listen", "admin.listen",
       "HOST:PORT of the admin HTTP API (admin.listen, default 127.0.0.1:9644; empty: off)"},
      {"--flush-mode", "log.flush.mode", "Default flush policy: none, interval or durable"},
      {"--shards", "shards", "Log writer threads"},
      {"--network-threads", "network.threads", "Network threads"},
      {"--num-partitions", "num.partitions", "Partitions of auto-created topics"},
      {"--node-id", "node.id", "This broker's id (node.id)"},
      {"--cluster", "cluster.voters",
       "Cluster mode: the controller voters, ID@HOST:PORT,... (cluster.voters)"},
      {"--cluster-listen", "cluster.listen", "HOST:PORT of the peer listener (cluster.listen)"},
      {"--rack", "broker.rack", "This broker's rack (broker.rack)"},
  };
  for (const auto& sh : shorthands) {
    serve_cmd->add_option_function<std::string>(
        sh.flag,
        [&serve, sh](const std::string& v) { serve.overrides.emplace_back(sh.setting, v); },
        sh.help);
  }
  serve_cmd->add_flag_function(
      "--truncate-corrupt",
      [&serve](int64_t) { serve.overrides.emplace_back("log.truncate.corrupt", "true"); },
      "After a crash, cut logs at corrupt batches even when valid data follows (that data is "
      "dropped) instead of keeping those partitions offline");
  serve_cmd->add_flag_function(
      "--bootstrap",
      [&serve](int64_t) { serve.overrides.emplace_back("cluster.bootstrap", "true"); },
      "Cluster mode: a fresh data dir forms a new cluster with the voters of --cluster (on "
      "each voter's first start only; cluster.bootstrap)");
  serve_cmd->add_option_function<std::vector<std::string>>(
      "--set",
      [&serve](const std::vector<std::string>& items) {
        for (const auto& item : items) {
          auto eq = item.find('=');
          serve.overrides.emplace_back(item.substr(0, eq),
                                       eq == std::string::npos ? "" : item.substr(eq + 1));
        }
      },
      "NAME=VALUE: any setting below (repeatable)");
  serve_cmd->add_flag("--print-config", serve.print_config,
                      "Print the effective settings and exit");

  std::string dump_path;
  bool dump_records = false;
  auto* dump_cmd = app.add_subcommand("dump-log", "Print and check the batches of a .log segment");
  dump_cmd->add_option("file", dump_path, "Segment file (<base offset>.log)")->required();
  dump_cmd->add_flag("--records", dump_records, "Also print each record of uncompressed batches");

  // ---- client commands ----
  // -b and -X go before the command (`ordo -b HOST:PORT topic list`, like kcat) or after it.
  ordo::cli::ClientArgs global_client;
  add_client_options(&app, global_client);
  ordo::cli::TopicArgs topic;
  auto* topic_cmd = app.add_subcommand("topic", "Create, list, describe, alter and delete topics");
  topic_cmd->require_subcommand(1);
  auto* create_cmd = topic_cmd->add_subcommand("create", "Create a topic");
  create_cmd->add_option("name", topic.name, "Topic name")->required();
  create_cmd->add_option("--partitions", topic.partitions,
                         "Number of partitions (default: the broker's num.partitions)");
  create_cmd->add_option("--replication-factor", topic.replication_factor,
                         "Replicas per partition (default: the broker's)");
  create_cmd->add_option("--config", topic.configs, "key=value topic config (repeatable)")
      ->allow_extra_args(false);
  auto* list_cmd = topic_cmd->add_subcommand("list", "Print the name of every topic");
  auto* describe_cmd = topic_cmd->add_subcommand(
      "describe", "Print a topic's partitions (leader, replicas, offsets) and configs");
  describe_cmd->add_option("name", topic.name, "Topic name")->required();
  describe_cmd->add_option(
      "--admin", topic.admin,
      "HOST:PORT of an Ordo broker's admin API, for the cleaner state of compacted topics "
      "(default: the first bootstrap host, port 9644; 'off': none)");
  auto* alter_cmd = topic_cmd->add_subcommand(
      "alter", "Change a topic's configs (others are kept) or grow its partitions");
  alter_cmd->add_option("name", topic.name, "Topic name")->required();
  alter_cmd->add_option("--config", topic.configs, "key=value to set (repeatable)")
      ->allow_extra_args(false);
  alter_cmd
      ->add_option("--delete-config", topic.delete_configs,
                   "key to return to its default (repeatable)")
      ->allow_extra_args(false);
  alter_cmd->add_option("--partitions", topic.partitions, "New total number of partitions");
  auto* delete_cmd = topic_cmd->add_subcommand("delete", "Delete a topic and its data");
  delete_cmd->add_option("name", topic.name, "Topic name")->required();
  for (auto* c : {create_cmd, list_cmd, describe_cmd, alter_cmd, delete_cmd}) {
    add_client_options(c, topic.client);
  }

  ordo::cli::GroupArgs group;
  auto* group_cmd = app.add_subcommand(
      "group", "List, describe and delete consumer groups; reset their committed offsets");
  group_cmd->require_subcommand(1);
  auto* group_list_cmd =
      group_cmd->add_subcommand("list", "Print every consumer group with its state");
  auto* group_describe_cmd = group_cmd->add_subcommand(
      "describe",
      "Print a group's state, members and assignments, and per partition the committed "
      "offset, the log end offset and the lag");
  group_describe_cmd->add_option("group", group.groups, "Group id")->required()->expected(1);
  auto* group_delete_cmd = group_cmd->add_subcommand(
      "delete", "Delete groups that have no active members, with their committed offsets");
  group_delete_cmd->add_option("group", group.groups, "Group id (one or more)")->required();
  auto* reset_cmd = group_cmd->add_subcommand(
      "reset-offsets",
      "Compute new committed offsets for a group and, with --execute, commit them (only while "
      "the group has no active members)");
  reset_cmd->add_option("group", group.groups, "Group id")->required()->expected(1);
  reset_cmd
      ->add_option("--topic", group.topics, "TOPIC (every partition) or TOPIC:P,P,... (repeatable)")
      ->allow_extra_args(false);
  reset_cmd->add_flag("--all-topics", group.all_topics,
                      "Every partition the group has a committed offset for");
  auto* to_earliest =
      reset_cmd->add_flag("--to-earliest", group.to_earliest, "To the log start offset");
  auto* to_latest = reset_cmd->add_flag("--to-latest", group.to_latest,
                                        "To the log end offset (skip everything there is)");
  auto* to_offset = reset_cmd->add_option("--to-offset", group.to_offset,
                                          "To OFFSET (kept within the log's start and end)");
  auto* to_datetime = reset_cmd->add_option(
      "--to-datetime", group.to_datetime,
      "To the first message at or after YYYY-MM-DDTHH:MM[:SS[.sss]][Z|+HH:MM] (local time "
      "without a zone); the end when there is none");
  auto* shift_by = reset_cmd->add_option(
      "--shift-by", group.shift_by,
      "Move the committed offset by N (negative: back), kept within the log's start and end");
  std::vector<CLI::Option*> targets = {to_earliest, to_latest, to_offset, to_datetime, shift_by};
  for (auto* t : targets) {
    for (auto* other : targets) {
      if (other != t) t->excludes(other);
    }
  }
  reset_cmd->add_flag("--execute", group.execute,
                      "Commit the new offsets (without it, only print them)");
  for (auto* c : {group_list_cmd, group_describe_cmd, group_delete_cmd, reset_cmd}) {
    add_client_options(c, group.client);
  }

  ordo::cli::ProduceArgs prod;
  auto* produce_cmd = app.add_subcommand(
      "produce", "Send each line of stdin as one message; prints the count to stderr");
  add_client_options(produce_cmd, prod.client);
  produce_cmd->add_option("-t,--topic", prod.topic, "Topic")->required();
  produce_cmd->add_option("-p,--partition", prod.partition,
                          "Partition (default: by key, or spread when there is no key)");
  produce_cmd->add_option("-K,--key-separator", prod.key_separator,
                          "The text before the first SEP of a line is the key (lines without "
                          "SEP have no key)");
  produce_cmd->add_option("-H,--header", prod.headers, "key=value header on every message")
      ->allow_extra_args(false);
  produce_cmd->add_option("--acks", prod.acks, "0, 1 or all")
      ->check(CLI::IsMember({"0", "1", "all", "-1"}));
  produce_cmd->add_option("--compression", prod.compression, "none, gzip, snappy, lz4 or zstd")
      ->check(CLI::IsMember({"none", "gzip", "snappy", "lz4", "zstd"}));

  ordo::cli::ConsumeArgs cons;
  auto* consume_cmd = app.add_subcommand(
      "consume", "Print messages of a topic (no consumer group; nothing is committed)");
  add_client_options(consume_cmd, cons.client);
  consume_cmd->add_option("-t,--topic", cons.topic, "Topic")->required();
  consume_cmd->add_option("-p,--partition", cons.partitions, "Partition (repeatable; default all)")
      ->allow_extra_args(false);
  consume_cmd->add_option("-o,--from", cons.from,
                          "beginning, end, OFFSET, -N (N before the end) or @TIMESTAMP_MS "
                          "(default beginning)");
  consume_cmd->add_option("-c,--count", cons.count, "Stop after COUNT messages")
      ->check(CLI::NonNegativeNumber);
  consume_cmd->add_flag("-e,--exit-at-end", cons.exit_at_end,
                        "Stop when every partition has reached its end");
  consume_cmd->add_option("-f,--format", cons.format,
                          "Output per message: %t topic, %p partition, %o offset, %k key, %s "
                          "value, %T timestamp (ms), %h headers (k=v,...), %K key length, %S "
                          "value length (-1: null), %% a percent sign; \\n \\t escapes "
                          "(default \"%s\\n\")");

  std::string cluster_admin = "127.0.0.1:9644";
  auto* cluster_cmd = app.add_subcommand("cluster", "A cluster's state (docs/cluster.md)");
  cluster_cmd->require_subcommand(1);
  auto* cluster_status_cmd = cluster_cmd->add_subcommand(
      "status",
      "Print the brokers, the controller and the partitions without a leader or under-replicated");
  cluster_status_cmd->add_option("--admin", cluster_admin,
                                 "HOST:PORT of any broker's admin API (default 127.0.0.1:9644)");

  std::string pipeline_path, connect_http = "127.0.0.1:9645";
  auto* connect_cmd = app.add_subcommand(
      "connect", "Run sinks that keep other stores in step with topics (docs/connect.md)");
  connect_cmd->require_subcommand(1);
  auto* connect_run_cmd = connect_cmd->add_subcommand(
      "run", "Run the sinks of a pipeline file until SIGTERM or SIGINT");
  connect_run_cmd->add_option("pipeline", pipeline_path, "Pipeline file (TOML)")->required();
  auto* connect_status_cmd = connect_cmd->add_subcommand(
      "status", "Print each sink's state and, per partition, its position and lag");
  connect_status_cmd->add_option("--http", connect_http,
                                 "HOST:PORT of the worker's HTTP (default 127.0.0.1:9645)");
  ordo::cli::PgStreamArgs pgs;
  auto* pg_stream_cmd = connect_cmd->add_subcommand(
      "pg-stream",
      "Print a PostgreSQL logical replication stream (pgoutput) as JSON lines, confirming each "
      "transaction to the slot");
  pg_stream_cmd->add_option("--conninfo", pgs.conninfo, "libpq connection string")->required();
  pg_stream_cmd->add_option("--slot", pgs.slot, "Replication slot (default ordo)");
  pg_stream_cmd->add_option("--publication", pgs.publication, "Publication (default ordo)");
  pg_stream_cmd->add_flag("--create-slot", pgs.create_slot, "Create the slot first");
  pg_stream_cmd->add_option("--count", pgs.count, "Stop after this many transactions");
  pg_stream_cmd->add_option("--idle-timeout-ms", pgs.idle_timeout_ms,
                            "Stop when nothing arrives for this long (default 10000)");

  ordo::cli::ViewRebuildArgs vr;
  auto* view_cmd = app.add_subcommand("view", "Table views of a running connect worker");
  view_cmd->require_subcommand(1);
  auto* view_rebuild_cmd = view_cmd->add_subcommand(
      "rebuild",
      "Build a view afresh from the earliest offsets while the old one serves, then swap them; "
      "shows progress with rate and ETA");
  view_rebuild_cmd->add_option("name", vr.name, "The view (its sink's name)")->required();
  view_rebuild_cmd->add_option("--http", vr.http,
                               "HOST:PORT of the worker's HTTP (default 127.0.0.1:9645)");
  view_rebuild_cmd->add_flag("--no-wait", vr.no_wait, "Start it and return");

  ordo::cli::SearchArgs se;
  auto* search_cmd = app.add_subcommand(
      "search", "Query a full-text search sink of a running worker: ranked hits with snippets");
  search_cmd->add_option("name", se.name, "The search sink's name")->required();
  search_cmd->add_option("query", se.query, "Words, \"phrases\", AND/OR/NOT, prefix*")->required();
  search_cmd->add_option("--http", se.http,
                         "HOST:PORT of the worker's HTTP (default 127.0.0.1:9645)");
  search_cmd->add_option("-n,--limit", se.limit, "At most this many hits (default 10)")
      ->check(CLI::Range(1, 1000));
  search_cmd->add_flag("--json", se.json, "Print each hit as a JSON line");

  ordo::cli::ClaimArgs cl;
  auto* claim_cmd = app.add_subcommand(
      "claim",
      "Claim a unique value (first claim wins, decided by a claims sink) and wait for the "
      "decision; exit 0 accepted, 3 rejected");
  claim_cmd->add_option("-b,--bootstrap", cl.client.bootstrap,
                        "Bootstrap servers HOST:PORT[,...] (default $ORDO_BOOTSTRAP or "
                        "127.0.0.1:9092)");
  claim_cmd->add_option("value", cl.value, "The value to claim, e.g. a user name")->required();
  claim_cmd->add_option("--owner", cl.owner, "Who claims it")->required();
  claim_cmd->add_option("--topic", cl.topic, "Claims topic (default claims)");
  claim_cmd->add_option("--results", cl.results, "Results topic (default <topic>.results)");
  claim_cmd->add_flag("--release", cl.release, "Release the value instead (by its owner)");
  claim_cmd->add_option("--timeout-ms", cl.timeout_ms, "Wait at most this long (default 30000)")
      ->check(CLI::PositiveNumber);

  CLI11_PARSE(app, argc, argv);
  for (auto* c : {&topic.client, &group.client, &prod.client, &cons.client, &cl.client}) {
    if (c->bootstrap.empty()) c->bootstrap = global_client.bootstrap;
    c->properties.insert(c->properties.begin(), global_client.properties.begin(),
                         global_client.properties.end());
  }
  if (*serve_cmd) return ordo::cli::serve(serve);
  if (*dump_cmd) return ordo::cli::dump_log(dump_path, dump_records);
  if (*connect_run_cmd) return ordo::cli::connect_run(pipeline_path);
  if (*connect_status_cmd) return ordo::cli::connect_status(connect_http);
  if (*cluster_status_cmd) return ordo::cli::cluster_status(cluster_admin);
  if (*pg_stream_cmd) return ordo::cli::connect_pg_stream(pgs);
  if (*view_rebuild_cmd) return ordo::cli::view_rebuild(vr);
  if (*claim_cmd) return ordo::cli::claim(cl);
  if (*search_cmd) return ordo::cli::search(se);
  if (*create_cmd) return ordo::cli::topic_create(topic);
  if (*list_cmd) return ordo::cli::topic_list(topic);
  if (*describe_cmd) return ordo::cli::topic_describe(topic);
  if (*alter_cmd) return ordo::cli::topic_alter(topic);
  if (*delete_cmd) return ordo::cli::topic_delete(topic);
  if (*group_list_cmd) return ordo::cli::group_list(group);
  if (*group_describe_cmd) return ordo::cli::group_describe(group);
  if (*group_delete_cmd) return ordo::cli::group_delete(group);
  if (*reset_cmd) return ordo::cli::group_reset_offsets(group);
  if (*produce_cmd) return ordo::cli::produce(prod);
  if (*consume_cmd) return ordo::cli::consume(cons);
  return 2;
}
