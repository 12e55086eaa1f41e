#include "broker/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <limits>

#include <fmt/core.h>
#include <toml++/toml.h>

#include "base/file.h"

extern char** environ;

namespace ordo::broker {
namespace {

// ORDO_* variables that are not settings but are read elsewhere in Ordo, so that exporting
// them never stops the broker: the log threshold (base/log.cc), the client commands' default
// bootstrap (cli), and the knobs of the tests and benchmarks (a test that runs `ordo serve`
// passes the developer's environment on).
constexpr std::string_view kNonSettingEnv[] = {
    "ORDO_LOG_LEVEL",  "ORDO_BOOTSTRAP",    "ORDO_BIN",        "ORDO_BENCH_DIR",
    "ORDO_CRASH_SEED", "ORDO_CRASH_ROUNDS", "ORDO_MODEL_SEED", "ORDO_MODEL_VERBOSE",
};

constexpr std::string_view kEnvPrefix = "ORDO_";
constexpr size_t kConfigFileBytesMax = size_t(1) << 20;

// What a TOML value may be for a setting; a TOML string is always accepted and parsed as the
// environment and --set values are.
enum class Kind { integer, decimal, boolean, text };

// One setting. set() parses text and assigns the field (the error need not name the setting:
// apply() adds it); get() renders the field so that set(get()) is the identity.
struct Setting {
  std::string_view name;
  Kind kind;
  std::string_view description;
  std::function<Result<void>(BrokerConfig&, std::string_view)> set;
  std::function<std::string(const BrokerConfig&)> get;
};

// A field of BrokerConfig, directly or inside its LogConfig.
template <typename T>
struct Field {
  T BrokerConfig::*broker = nullptr;
  T storage::LogConfig::*log = nullptr;

  T& of(BrokerConfig& c) const { return broker ? c.*broker : c.log.*log; }
  const T& of(const BrokerConfig& c) const { return broker ? c.*broker : c.log.*log; }
};

template <typename T>
Field<T> broker_field(T BrokerConfig::*m) {
  return {m, nullptr};
}
template <typename T>
Field<T> log_field(T storage::LogConfig::*m) {
  return {nullptr, m};
}

Result<int64_t> parse_integer(std::string_view s, int64_t lo, int64_t hi) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec == std::errc::result_out_of_range) {
    return make_error(Errc::invalid_argument, "{} is outside [{}, {}]", s, lo, hi);
  }
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    return make_error(Errc::invalid_argument, "'{}' is not an integer", s);
  }
  if (n < lo || n > hi) {
    return make_error(Errc::invalid_argument, "{} is outside [{}, {}]", n, lo, hi);
  }
  return n;
}

Result<bool> parse_bool(std::string_view s) {
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  return make_error(Errc::invalid_argument, "'{}' is not a boolean (true, false, 1, 0)", s);
}

struct Endpoint {
  std::string host;
  uint16_t port = 0;
};

// HOST:PORT, or [IPV6]:PORT; port 0 is allowed (an ephemeral port, or "the bound port").
Result<Endpoint> parse_endpoint(std::string_view s) {
  Endpoint e;
  std::string_view port;
  if (s.starts_with('[')) {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return make_error(Errc::invalid_argument, "'{}' is not [IPV6]:PORT", s);
    }
    e.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) {
      return make_error(Errc::invalid_argument, "'{}' is not HOST:PORT", s);
    }
    e.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
    if (e.host.find(':') != std::string::npos) {
      return make_error(Errc::invalid_argument, "'{}': write an IPv6 host in brackets, [::1]:9092",
                        s);
    }
  }
  if (e.host.empty()) return make_error(Errc::invalid_argument, "'{}' has an empty host", s);
  auto p = parse_integer(port, 0, 65535);
  if (!p) return make_error(Errc::invalid_argument, "'{}': port {}", s, p.error().message);
  e.port = uint16_t(*p);
  return e;
}

std::string format_endpoint(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

// Row builders: the only code per kind of setting.

template <typename T>
Setting integer(std::string_view name, Field<T> f, int64_t lo, int64_t hi,
                std::string_view description) {
  ORDO_ASSERT(lo <= hi && lo >= int64_t(std::numeric_limits<T>::min()) &&
              hi <= int64_t(std::numeric_limits<T>::max()));
  return {name, Kind::integer, description,
          [f, lo, hi](BrokerConfig& c, std::string_view v) -> Result<void> {
            f.of(c) = T(ORDO_TRY(parse_integer(v, lo, hi)));
            return ok();
          },
          [f](const BrokerConfig& c) { return std::to_string(f.of(c)); }};
}

Setting decimal(std::string_view name, Field<double> f, double lo, double hi,
                std::string_view description) {
  return {name, Kind::decimal, description,
          [f, lo, hi](BrokerConfig& c, std::string_view v) -> Result<void> {
            double d = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
            if (ec != std::errc() || end != v.data() + v.size() || v.empty()) {
              return make_error(Errc::invalid_argument, "'{}' is not a number", v);
            }
            if (!(d >= lo && d <= hi)) {
              return make_error(Errc::invalid_argument, "{} is outside [{}, {}]", v, lo, hi);
            }
            f.of(c) = d;
            return ok();
          },
          [f](const BrokerConfig& c) { return fmt::format("{}", f.of(c)); }};
}

Setting boolean(std::string_view name, Field<bool> f, std::string_view description) {
  return {name, Kind::boolean, description,
          [f](BrokerConfig& c, std::string_view v) -> Result<void> {
            f.of(c) = ORDO_TRY(parse_bool(v));
            return ok();
          },
          [f](const BrokerConfig& c) { return std::string(f.of(c) ? "true" : "false"); }};
}

Setting text(std::string_view name, Field<std::string> f, std::string_view description) {
  return {name, Kind::text, description,
          [f](BrokerConfig& c, std::string_view v) -> Result<void> {
            if (v.empty()) return make_error(Errc::invalid_argument, "must not be empty");
            f.of(c) = std::string(v);
            return ok();
          },
          [f](const BrokerConfig& c) { return f.of(c); }};
}

template <typename E>
Setting choice(std::string_view name, Field<E> f, Result<E> (*parse)(std::string_view),
               std::string_view (*render)(E), std::string_view description) {
  return {name, Kind::text, description,
          [f, parse](BrokerConfig& c, std::string_view v) -> Result<void> {
            f.of(c) = ORDO_TRY(parse(v));
            return ok();
          },
          [f, render](const BrokerConfig& c) { return std::string(render(f.of(c))); }};
}

// HOST:PORT into two fields. With optional, "" clears the pair (empty host, port 0).
Setting endpoint(std::string_view name, Field<std::string> host, Field<uint16_t> port,
                 bool optional, std::string_view description) {
  return {name, Kind::text, description,
          [host, port, optional](BrokerConfig& c, std::string_view v) -> Result<void> {
            Endpoint e;
            if (!(optional && v.empty())) e = ORDO_TRY(parse_endpoint(v));
            host.of(c) = std::move(e.host);
            port.of(c) = e.port;
            return ok();
          },
          [host, port, optional](const BrokerConfig& c) {
            if (optional && host.of(c).empty() && port.of(c) == 0) return std::string();
            return format_endpoint(host.of(c), port.of(c));
          }};
}

// Text that may be empty; `check` (may be null) validates a non-empty value.
Setting optional_text(std::string_view name, Field<std::string> f,
                      Result<void> (*check)(std::string_view), std::string_view description) {
  return {name, Kind::text, description,
          [f, check](BrokerConfig& c, std::string_view v) -> Result<void> {
            if (!v.empty() && check != nullptr) ORDO_TRY(check(v));
            f.of(c) = std::string(v);
            return ok();
          },
          [f](const BrokerConfig& c) { return f.of(c); }};
}

Result<void> check_voters(std::string_view v) {
  ORDO_TRY(parse_voters(v));
  return ok();
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

const std::vector<Setting>& settings() {
  using B = BrokerConfig;
  using L = storage::LogConfig;
  static const std::vector<Setting> table = {
      text("data.dir", broker_field(&B::data_dir),
           "Directory holding every partition's log (one process per directory)"),
      endpoint("listen", broker_field(&B::listen_host), broker_field(&B::listen_port), false,
               "HOST:PORT the Kafka listener binds; port 0 picks a free port"),
      endpoint("advertised.listen", broker_field(&B::advertised_host),
               broker_field(&B::advertised_port), true,
               "HOST:PORT given to clients in metadata; empty: the listen address, port 0: the "
               "bound port"),
      endpoint("admin.listen", broker_field(&B::admin_host), broker_field(&B::admin_port), true,
               "HOST:PORT of the admin HTTP API (partition status, cleaner state, Prometheus "
               "metrics); empty: no admin API; port 0 picks a free port"),
      integer("node.id", broker_field(&B::node_id), 0, kInt32Max,
              "This broker's id in metadata responses"),
      text("cluster.id", broker_field(&B::cluster_id),
           "Cluster id reported to clients; in cluster mode every node's must match"),
      optional_text("cluster.voters", broker_field(&B::cluster_voters), &check_voters,
                    "Cluster mode: the controller quorum's voters, ID@HOST:PORT,... (their peer "
                    "addresses); empty: a single node"),
      endpoint("cluster.listen", broker_field(&B::cluster_listen_host),
               broker_field(&B::cluster_listen_port), true,
               "Cluster mode: HOST:PORT of this node's peer listener (replication and control "
               "traffic); empty: its address in cluster.voters"),
      boolean("cluster.bootstrap", broker_field(&B::cluster_bootstrap),
              "Cluster mode: an empty data dir forms a new cluster with cluster.voters (give it "
              "on each voter's first start only)"),
      optional_text("broker.rack", broker_field(&B::broker_rack), nullptr,
                    "Rack of this broker; replicas of a partition are spread over racks"),
      integer("default.replication.factor", broker_field(&B::default_replication_factor), 1, 32767,
              "Cluster mode: replicas of a partition when a create does not say"),
      integer("offsets.topic.replication.factor",
              broker_field(&B::offsets_topic_replication_factor), 1, 32767,
              "Cluster mode: replicas of each __consumer_offsets partition"),
      integer("min.insync.replicas", broker_field(&B::min_insync_replicas), 1, 32767,
              "Default min.insync.replicas: replicas that must be in sync for an acks=all "
              "produce to be taken"),
      integer("raft.tick.ms", broker_field(&B::raft_tick_ms), 1, 60000,
              "Cluster mode: the Raft clock's period"),
      integer("raft.election.ticks", broker_field(&B::raft_election_ticks), 2, 100000,
              "Cluster mode: ticks without a leader before a follower campaigns (randomised up "
              "to twice as many)"),
      integer("raft.heartbeat.ticks", broker_field(&B::raft_heartbeat_ticks), 1, 100000,
              "Cluster mode: ticks between a leader's heartbeats; less than raft.election.ticks"),
      boolean("raft.write.caching", broker_field(&B::raft_write_caching),
              "Cluster mode: count a replica's writes as durable once in the page cache (an "
              "acknowledged write is lost if a majority loses power before its sync)"),
      integer("broker.heartbeat.interval.ms", broker_field(&B::broker_heartbeat_interval_ms), 1,
              kInt32Max, "Cluster mode: how often a broker heartbeats to the controller"),
      integer("broker.session.timeout.ms", broker_field(&B::broker_session_timeout_ms), 1,
              kInt32Max, "Cluster mode: a broker silent for this long is fenced"),
      integer("metadata.snapshot.interval.commands",
              broker_field(&B::metadata_snapshot_interval_commands), 0, kInt32Max,
              "Cluster mode: controller log commands between two checkpoints of the metadata "
              "(0: none)"),
      integer("network.threads", broker_field(&B::network_threads), 1, 64,
              "Threads that run client connections"),
      integer("shards", broker_field(&B::shards), 1, 256,
              "Storage writer threads with storage.shard.mode = dedicated; each partition "
              "belongs to one"),
      choice("storage.shard.mode", broker_field(&B::shard_mode), &parse_shard_mode,
             &shard_mode_name,
             "network (partition writers run on the network threads, one per thread) or "
             "dedicated (on `shards` threads of their own)"),
      integer("flush.threads", broker_field(&B::flush_threads), 1, 64,
              "Threads that run fdatasync for the durable and interval flush modes"),
      boolean("auto.create.topics.enable", broker_field(&B::auto_create_topics),
              "Create a topic when a client asks for metadata of or produces to an unknown one"),
      integer("num.partitions", broker_field(&B::num_partitions), 1, 100000,
              "Partitions of an automatically created topic"),
      integer("max.partitions", broker_field(&B::max_partitions), 0, kInt32Max,
              "Most partitions this broker holds, all topics together (a create that would "
              "pass it is refused); 0: as many as the open-file limit leaves room for"),
      integer("message.max.bytes", broker_field(&B::message_max_bytes), 1, kInt32Max,
              "Largest record batch a producer may send; at most socket.request.max.bytes"),
      integer("socket.request.max.bytes", broker_field(&B::socket_request_max_bytes), 1024,
              kInt32Max, "Largest request frame; a larger one closes the connection"),
      integer("connection.max.inflight.bytes", broker_field(&B::connection_max_inflight_bytes),
              1024, kInt64Max,
              "Bytes of requests one connection may have in progress before reads pause"),
      integer("connection.max.inflight.requests",
              broker_field(&B::connection_max_inflight_requests), 1, kInt32Max,
              "Requests one connection may have in progress before reads pause"),
      integer("connections.max.idle.ms", broker_field(&B::connections_max_idle_ms), 1000, kInt64Max,
              "A connection with nothing in flight and nothing read for this long is closed"),
      integer("max.connections", broker_field(&B::max_connections), 1, kInt32Max,
              "Client connections the Kafka listener keeps at once; one more is closed at once"),
      integer("connections.max.per.ip", broker_field(&B::connections_max_per_ip), 1, kInt32Max,
              "Client connections from one IP address at once; one more is closed at once (Kafka's "
              "max.connections.per.ip)"),
      integer("queued.max.request.bytes", broker_field(&B::queued_max_request_bytes), -1, kInt64Max,
              "Bytes of request frames over 64 KiB being read or handled, over all "
              "connections; past it such frames wait to be read; -1: no bound"),
      integer("fetch.max.wait.ms", broker_field(&B::fetch_max_wait_ms), 0, 3600000,
              "Upper bound on a fetch's max_wait_ms (long poll)"),
      integer("offsets.topic.num.partitions", broker_field(&B::offsets_topic_num_partitions), 1,
              1000, "Partitions of __consumer_offsets (fixed once the topic exists)"),
      integer("offsets.topic.segment.bytes", broker_field(&B::offsets_topic_segment_bytes), 14,
              kInt32Max,
              "segment.bytes of __consumer_offsets when it is created (small segments let the "
              "cleaner compact it sooner)"),
      integer("offsets.retention.minutes", broker_field(&B::offsets_retention_minutes), 1,
              kInt32Max, "Committed offsets of a group without members expire after this long"),
      integer("offsets.retention.check.interval.ms",
              broker_field(&B::offsets_retention_check_interval_ms), 1, kInt64Max,
              "How often expired committed offsets are looked for"),
      integer("offset.metadata.max.bytes", broker_field(&B::offset_metadata_max_bytes), 0, 32767,
              "Largest metadata string of a committed offset"),
      integer("group.min.session.timeout.ms", broker_field(&B::group_min_session_timeout_ms), 1,
              kInt32Max, "Smallest session timeout a group member may ask for"),
      integer("group.max.session.timeout.ms", broker_field(&B::group_max_session_timeout_ms), 1,
              kInt32Max, "Largest session timeout a group member may ask for"),
      integer("group.initial.rebalance.delay.ms",
              broker_field(&B::group_initial_rebalance_delay_ms), 0, kInt32Max,
              "How long a new group waits for more members before its first rebalance"),
      integer("group.max.size", broker_field(&B::group_max_size), 1, kInt32Max,
              "Most members one group may have"),
      choice("log.flush.mode", log_field(&L::flush_mode), &storage::parse_flush_mode,
             &storage::flush_mode_name,
             "When a produce is acknowledged: none (page cache), interval (flushed every "
             "log.flush.interval.ms), durable (after fdatasync)"),
      integer("log.flush.interval.ms", log_field(&L::flush_interval_ms), 1, kInt64Max,
              "Flush period of the interval mode"),
      integer("log.segment.bytes", log_field(&L::segment_bytes), 14, kInt32Max,
              "Size at which a new segment is started"),
      integer("log.segment.ms", log_field(&L::segment_ms), 1, kInt64Max,
              "Age at which a new segment is started"),
      integer("log.retention.ms", log_field(&L::retention_ms), -1, kInt64Max,
              "Sealed segments older than this are deleted; -1: kept forever"),
      integer("log.retention.bytes", log_field(&L::retention_bytes), -1, kInt64Max,
              "Oldest segments are deleted while a partition is larger; -1: no limit"),
      integer("log.index.interval.bytes", log_field(&L::index_interval_bytes), 0, kInt32Max,
              "Log bytes between two offset-index entries"),
      choice("log.preallocate.mode", log_field(&L::preallocate), &storage::parse_preallocate,
             &storage::preallocate_name,
             "none (append at the end of the file) or zero_fill (write zeros ahead of appends)"),
      integer("log.preallocate.bytes", log_field(&L::preallocate_bytes), 4096, int64_t(1) << 30,
              "Chunk written ahead by zero_fill"),
      choice("log.cleanup.policy", log_field(&L::cleanup_policy), &storage::parse_cleanup_policy,
             &storage::cleanup_policy_name,
             "Default cleanup.policy of a topic: delete, compact or compact,delete"),
      boolean("log.cleaner.enable", broker_field(&B::log_cleaner_enable),
              "Run the background cleaner that compacts topics whose policy includes compact"),
      integer("log.cleaner.backoff.ms", broker_field(&B::log_cleaner_backoff_ms), 1, kInt64Max,
              "How long the cleaner sleeps when no partition is due for cleaning"),
      integer("log.cleaner.dedupe.buffer.size", broker_field(&B::log_cleaner_dedupe_buffer_size),
              int64_t(1) << 20, int64_t(1) << 40,
              "Memory for the cleaner's key map (key bytes plus 64 per key): what one clean "
              "can cover"),
      integer("log.cleaner.io.max.bytes.per.second",
              broker_field(&B::log_cleaner_io_max_bytes_per_second), 0, kInt64Max,
              "Cap on the cleaner's reads plus writes, bytes per second; 0: no cap"),
      integer("log.cleaner.delete.retention.ms", log_field(&L::delete_retention_ms), 0, kInt64Max,
              "Default delete.retention.ms: how long a tombstone stays after its record's time"),
      decimal("log.cleaner.min.cleanable.ratio", log_field(&L::min_cleanable_dirty_ratio), 0, 1,
              "Default min.cleanable.dirty.ratio: the dirty share of a log's cleanable bytes "
              "that makes a clean due"),
      integer("log.cleaner.min.compaction.lag.ms", log_field(&L::min_compaction_lag_ms), 0,
              kInt64Max,
              "Default min.compaction.lag.ms: records younger than this are not cleaned"),
      integer("log.cleaner.max.compaction.lag.ms", log_field(&L::max_compaction_lag_ms), 1,
              kInt64Max,
              "Default max.compaction.lag.ms: a dirty segment older than this is cleaned "
              "whatever the dirty ratio"),
      integer("producer.id.expiration.ms", log_field(&L::producer_id_expiration_ms), 1, kInt64Max,
              "An idempotent producer that wrote nothing to a partition for this long is "
              "forgotten there"),
      boolean("log.truncate.corrupt", broker_field(&B::truncate_corrupt),
              "At start-up, cut a log at its first corrupt batch instead of keeping the "
              "partition offline"),
  };
  return table;
}

const Setting* find_setting(std::string_view name) {
  for (const auto& s : settings()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string env_name(std::string_view name) {
  std::string out(kEnvPrefix);
  for (char ch : name) {
    out += ch == '.' ? '_' : char(std::toupper(static_cast<unsigned char>(ch)));
  }
  return out;
}

const Setting* find_setting_by_env(std::string_view var) {
  for (const auto& s : settings()) {
    if (env_name(s.name) == var) return &s;
  }
  return nullptr;
}

// Sets s from text; an error names the setting.
Result<void> apply(const Setting& s, BrokerConfig& c, std::string_view value) {
  auto r = s.set(c, value);
  if (!r) return make_error(r.error().code, "{}: {}", s.name, r.error().message);
  return ok();
}

Error with_source(std::string_view source, const Error& e) {
  return make_error(e.code, "{}: {}", source, e.message);
}

std::string_view toml_type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::array:
      return "array";
    case toml::node_type::table:
      return "table";
    case toml::node_type::date:
    case toml::node_type::time:
    case toml::node_type::date_time:
      return "date/time";
    case toml::node_type::none:
      break;
  }
  return "value";
}

// The text a TOML leaf gives to its setting, or why it cannot.
Result<std::string> toml_value_text(const Setting& s, const toml::node& n) {
  if (const auto* v = n.as_string()) return v->get();
  if (const auto* v = n.as_integer(); v && s.kind == Kind::integer) return std::to_string(v->get());
  if (s.kind == Kind::decimal) {
    if (const auto* v = n.as_floating_point()) return fmt::format("{}", v->get());
    if (const auto* v = n.as_integer()) return std::to_string(v->get());
  }
  if (const auto* v = n.as_boolean(); v && s.kind == Kind::boolean) {
    return std::string(v->get() ? "true" : "false");
  }
  std::string_view want = s.kind == Kind::integer   ? "an integer"
                          : s.kind == Kind::decimal ? "a number"
                          : s.kind == Kind::boolean ? "a boolean"
                                                    : "a string";
  return make_error(Errc::invalid_argument, "{}: expected {}, got a TOML {}", s.name, want,
                    toml_type_name(n.type()));
}

bool is_setting_prefix(std::string_view prefix) {
  return std::any_of(settings().begin(), settings().end(), [&](const Setting& s) {
    return s.name.size() > prefix.size() && s.name.starts_with(prefix) &&
           s.name[prefix.size()] == '.';
  });
}

// Applies every leaf of t (whose dotted path is prefix) to c.
Result<void> apply_table(BrokerConfig& c, const toml::table& t, const std::string& prefix,
                         std::string_view path) {
  for (const auto& [key, node] : t) {
    std::string name =
        prefix.empty() ? std::string(key.str()) : fmt::format("{}.{}", prefix, key.str());
    const auto line = node.source().begin.line;
    if (const auto* sub = node.as_table()) {
      // Keys inside are reported by their full name; an empty table by its own.
      if (sub->empty() && !is_setting_prefix(name)) {
        return make_error(Errc::invalid_argument, "{}:{}: unknown setting '{}'", path, line, name);
      }
      ORDO_TRY(apply_table(c, *sub, name, path));
      continue;
    }
    const Setting* s = find_setting(name);
    if (s == nullptr) {
      return make_error(Errc::invalid_argument, "{}:{}: unknown setting '{}'", path, line, name);
    }
    auto source = fmt::format("{}:{}", path, line);
    auto value = toml_value_text(*s, node);
    if (!value) return with_source(source, value.error());
    if (auto r = apply(*s, c, *value); !r) return with_source(source, r.error());
  }
  return ok();
}

Result<void> apply_file(BrokerConfig& c, std::string_view path) {
  std::string p(path);
  auto text = read_file(p, kConfigFileBytesMax);
  if (!text) return make_error(text.error().code, "config file: {}", text.error().message);
  toml::table root;
  try {
    root = toml::parse(*text, p);
  } catch (const toml::parse_error& e) {
    return make_error(Errc::invalid_argument, "{}:{}:{}: {}", p, e.source().begin.line,
                      e.source().begin.column, e.description());
  }
  return apply_table(c, root, "", p);
}

Result<void> apply_env(BrokerConfig& c, const std::map<std::string, std::string>& env) {
  for (const auto& [var, value] : env) {
    if (!std::string_view(var).starts_with(kEnvPrefix)) continue;
    if (std::find(std::begin(kNonSettingEnv), std::end(kNonSettingEnv), var) !=
        std::end(kNonSettingEnv)) {
      continue;
    }
    const Setting* s = find_setting_by_env(var);
    if (s == nullptr) {
      return make_error(Errc::invalid_argument,
                        "environment variable {} names no setting (see docs/configuration.md)",
                        var);
    }
    if (auto r = apply(*s, c, value); !r) {
      return with_source(fmt::format("environment variable {}", var), r.error());
    }
  }
  return ok();
}

}  // namespace

Result<ShardMode> parse_shard_mode(std::string_view s) {
  if (s == "network") return ShardMode::network;
  if (s == "dedicated") return ShardMode::dedicated;
  return make_error(Errc::invalid_argument, "'{}' is not network or dedicated", s);
}

std::string_view shard_mode_name(ShardMode m) {
  return m == ShardMode::network ? "network" : "dedicated";
}

Result<void> BrokerConfig::validate() const {
  // Each value in its setting's range: rendering and parsing it back checks what set() checks,
  // also for a config built in code rather than loaded.
  BrokerConfig scratch;
  for (const auto& s : settings()) {
    if (auto r = apply(s, scratch, s.get(*this)); !r) return r.error();
  }
  if (message_max_bytes > socket_request_max_bytes) {
    return make_error(Errc::invalid_argument,
                      "message.max.bytes ({}) exceeds socket.request.max.bytes ({})",
                      message_max_bytes, socket_request_max_bytes);
  }
  if (message_max_bytes > log.max_batch_bytes) {
    return make_error(Errc::invalid_argument,
                      "message.max.bytes ({}) exceeds the largest batch the log accepts ({})",
                      message_max_bytes, log.max_batch_bytes);
  }
  if (queued_max_request_bytes >= 0 && queued_max_request_bytes < (int64_t(1) << 20)) {
    return make_error(Errc::invalid_argument,
                      "queued.max.request.bytes ({}) must be -1 (no bound) or at least 1048576",
                      queued_max_request_bytes);
  }
  if (group_min_session_timeout_ms > group_max_session_timeout_ms) {
    return make_error(Errc::invalid_argument,
                      "group.min.session.timeout.ms ({}) exceeds group.max.session.timeout.ms ({})",
                      group_min_session_timeout_ms, group_max_session_timeout_ms);
  }
  if (auto r = log.validate(); !r) return with_source("log", r.error());
  if (raft_heartbeat_ticks >= raft_election_ticks) {
    return make_error(Errc::invalid_argument,
                      "raft.heartbeat.ticks ({}) must be less than raft.election.ticks ({})",
                      raft_heartbeat_ticks, raft_election_ticks);
  }
  if (cluster_mode()) {
    auto voters = ORDO_TRY(parse_voters(cluster_voters));
    bool listed = false;
    for (const auto& v : voters) listed = listed || v.id == node_id;
    if (!listed && cluster_bootstrap) {
      return make_error(Errc::invalid_argument,
                        "cluster.bootstrap: node.id {} is not one of cluster.voters ({})", node_id,
                        cluster_voters);
    }
    if (!listed && cluster_listen_port == 0) {
      return make_error(Errc::invalid_argument,
                        "cluster.listen: required for a node that is not in cluster.voters");
    }
  }
  return ok();
}

Result<std::vector<VoterAddress>> parse_voters(std::string_view s) {
  std::vector<VoterAddress> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string_view item = s.substr(pos, comma == std::string_view::npos ? s.npos : comma - pos);
    size_t at = item.find('@');
    if (at == std::string_view::npos || at == 0) {
      return make_error(Errc::invalid_argument, "'{}' is not ID@HOST:PORT", item);
    }
    int64_t id = -1;
    std::string_view id_text = item.substr(0, at);
    auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc{} || end != id_text.data() + id_text.size() || id < 0 ||
        id > std::numeric_limits<int32_t>::max()) {
      return make_error(Errc::invalid_argument, "'{}' is not a node id", id_text);
    }
    Endpoint e = ORDO_TRY(parse_endpoint(item.substr(at + 1)));
    if (e.port == 0) return make_error(Errc::invalid_argument, "voter {}: port 0", id);
    out.push_back({int32_t(id), std::move(e.host), e.port});
    if (out.size() > 64) return make_error(Errc::invalid_argument, "more than 64 voters");
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end(),
            [](const VoterAddress& a, const VoterAddress& b) { return a.id < b.id; });
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].id == out[i - 1].id) {
      return make_error(Errc::invalid_argument, "voter {} is listed twice", out[i].id);
    }
  }
  return out;
}

Result<BrokerConfig> load_config(std::string_view path,
                                 const std::map<std::string, std::string>& env,
                                 const ConfigOverrides& overrides) {
  BrokerConfig c;
  if (!path.empty()) ORDO_TRY(apply_file(c, path));
  ORDO_TRY(apply_env(c, env));
  for (const auto& [name, value] : overrides) {
    if (auto r = set_config_value(c, name, value); !r) {
      return with_source(fmt::format("--set {}={}", name, value), r.error());
    }
  }
  if (auto r = c.validate(); !r) return with_source("configuration", r.error());
  return c;
}

Result<void> set_config_value(BrokerConfig& c, std::string_view name, std::string_view value) {
  const Setting* s = find_setting(name);
  if (s == nullptr) return make_error(Errc::invalid_argument, "unknown setting '{}'", name);
  return apply(*s, c, value);
}

std::map<std::string, std::string> ordo_environment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    size_t eq = entry.find('=');
    if (!entry.starts_with(kEnvPrefix) || eq == std::string_view::npos) continue;
    out.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return out;
}

std::vector<ConfigSettingInfo> describe_config(const BrokerConfig& c) {
  std::vector<ConfigSettingInfo> out;
  out.reserve(settings().size());
  for (const auto& s : settings()) {
    out.push_back({std::string(s.name), s.get(c), std::string(s.description)});
  }
  return out;
}

}  // namespace ordo::broker
