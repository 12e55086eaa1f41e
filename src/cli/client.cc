#include "cli/client.h"

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstring>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace ordo::cli {

namespace {

constexpr const char* kDefaultBootstrap = "127.0.0.1:9092";

Errc errc_for(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return Errc::not_found;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      return Errc::already_exists;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_INVALID_REQUEST:
      return Errc::invalid_argument;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
      return Errc::too_large;
    case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
    case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      return Errc::out_of_range;
    default:
      return Errc::io;
  }
}

// librdkafka's log lines, without its "%LEVEL|time|FAC|client|" prefix.
void log_line(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  std::fprintf(stderr, "ordo: librdkafka %s: %s: %s\n", level <= 3 ? "error" : "log", fac, buf);
}

// Non-fatal errors are also logged by librdkafka (and retried); only say when it gives up or
// when nothing can be reached.
void error_cb(rd_kafka_t* rk, int err, const char* reason, void*) {
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(rk, buf, sizeof(buf));
    std::fprintf(stderr, "ordo: fatal client error: %s (%s)\n", buf, rd_kafka_err2name(fatal));
  } else if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    std::fprintf(stderr, "ordo: %s\n", reason);
  }
}

}  // namespace

Error kafka_error(rd_kafka_resp_err_t err, std::string_view what, std::string_view detail) {
  std::string text = detail.empty() ? std::string(rd_kafka_err2str(err)) : std::string(detail);
  return Error{errc_for(err), fmt::format("{}: {} ({})", what, text, rd_kafka_err2name(err))};
}

void print_error(const Error& e) {
  std::fprintf(stderr, "ordo: %s\n", e.message.c_str());
}

int finish(const Result<void>& r) {
  if (r) return 0;
  print_error(r.error());
  return 1;
}

Result<int64_t> parse_int(std::string_view s, std::string_view what) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    return make_error(Errc::invalid_argument, "{} '{}' is not a number", what, s);
  }
  return v;
}

Result<std::pair<std::string, uint16_t>> parse_host_port(std::string_view s) {
  size_t colon = s.rfind(':');
  int port = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      std::from_chars(s.data() + colon + 1, s.data() + s.size(), port).ec != std::errc() ||
      port <= 0 || port > 65535) {
    return make_error(Errc::invalid_argument, "'{}' is not HOST:PORT", s);
  }
  std::string host(s.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(std::move(host), uint16_t(port));
}

sigset_t block_stop_signals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  // A peer that disconnects mid-response must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  return stop;
}

std::string bootstrap_servers(const ClientArgs& args) {
  if (!args.bootstrap.empty()) return args.bootstrap;
  const char* env = std::getenv("ORDO_BOOTSTRAP");
  if (env && *env) return env;
  return kDefaultBootstrap;
}

Result<std::pair<std::string, std::string>> split_key_value(std::string_view item,
                                                            std::string_view option) {
  size_t eq = item.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return make_error(Errc::invalid_argument, "{} '{}': expected key=value", option, item);
  }
  return std::pair{std::string(item.substr(0, eq)), std::string(item.substr(eq + 1))};
}

Result<ConfPtr> make_conf(const ClientArgs& args,
                          const std::vector<std::pair<std::string, std::string>>& defaults) {
  ConfPtr conf(rd_kafka_conf_new());
  char errstr[512];
  auto set = [&](const std::string& k, const std::string& v, const char* origin) -> Result<void> {
    if (rd_kafka_conf_set(conf.get(), k.c_str(), v.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      return make_error(Errc::invalid_argument, "{} {}={}: {}", origin, k, v, errstr);
    }
    return ok();
  };
  ORDO_TRY(set("bootstrap.servers", bootstrap_servers(args), "-b"));
  ORDO_TRY(set("client.id", "ordo-cli", "client.id"));
  for (const auto& [k, v] : defaults) ORDO_TRY(set(k, v, "default"));
  for (const auto& item : args.properties) {
    auto kv = ORDO_TRY(split_key_value(item, "-X"));
    ORDO_TRY(set(kv.first, kv.second, "-X"));
  }
  rd_kafka_conf_set_log_cb(conf.get(), log_line);
  rd_kafka_conf_set_error_cb(conf.get(), error_cb);
  return conf;
}

Result<KafkaPtr> make_client(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  // rd_kafka_new() owns the configuration only when it succeeds.
  KafkaPtr rk(rd_kafka_new(type, conf.get(), errstr, sizeof(errstr)));
  if (!rk) return make_error(Errc::invalid_argument, "cannot create the client: {}", errstr);
  conf.release();
  return rk;
}

Result<KafkaPtr> admin_client(const ClientArgs& args) {
  auto conf = ORDO_TRY(make_conf(args, {{"allow.auto.create.topics", "false"}}));
  return make_client(RD_KAFKA_PRODUCER, std::move(conf));
}

Result<MetadataPtr> fetch_metadata(rd_kafka_t* rk) {
  const rd_kafka_metadata_t* md = nullptr;
  // all_topics=1: a request naming one topic could auto-create it.
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &md, kMetadataTimeoutMs);
  if (err) {
    char servers[1024] = "?";
    size_t size = sizeof(servers);
    rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", servers, &size);
    return kafka_error(err, fmt::format("metadata from {}", servers));
  }
  return MetadataPtr(md);
}

const rd_kafka_metadata_topic_t* find_topic(const rd_kafka_metadata_t& md, std::string_view name) {
  for (int i = 0; i < md.topic_cnt; ++i) {
    if (name == md.topics[i].topic) return &md.topics[i];
  }
  return nullptr;
}

Result<const rd_kafka_metadata_topic_t*> require_topic(const rd_kafka_metadata_t& md,
                                                       std::string_view name) {
  const rd_kafka_metadata_topic_t* t = find_topic(md, name);
  if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return make_error(Errc::not_found, "topic '{}' does not exist", name);
  }
  if (t->err) return kafka_error(t->err, fmt::format("topic '{}'", name));
  return t;
}

std::vector<int32_t> partition_ids(const rd_kafka_metadata_topic_t& t) {
  std::vector<int32_t> out;
  for (int i = 0; i < t.partition_cnt; ++i) out.push_back(t.partitions[i].id);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::map<int32_t, int64_t>> list_offsets(rd_kafka_t* rk, const std::string& topic,
                                                const std::vector<int32_t>& partitions,
                                                int64_t timestamp) {
  PartitionListPtr list(rd_kafka_topic_partition_list_new(int(partitions.size())));
  for (int32_t p : partitions) {
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = timestamp;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list.get(), kMetadataTimeoutMs)) {
    return kafka_error(err, fmt::format("list offsets of '{}'", topic));
  }
  std::map<int32_t, int64_t> out;
  for (int i = 0; i < list->cnt; ++i) {
    const auto& e = list->elems[i];
    if (e.err)
      return kafka_error(e.err, fmt::format("list offsets of {} [{}]", topic, e.partition));
    out[e.partition] = e.offset;
  }
  return out;
}

Result<AdminOptionsPtr> admin_options(rd_kafka_t* rk, rd_kafka_admin_op_t op) {
  AdminOptionsPtr opts(rd_kafka_AdminOptions_new(rk, op));
  char errstr[512];
  if (rd_kafka_AdminOptions_set_request_timeout(opts.get(), kAdminTimeoutMs, errstr,
                                                sizeof(errstr))) {
    return make_error(Errc::invalid_argument, "admin options: {}", errstr);
  }
  // CreateTopics, DeleteTopics and CreatePartitions wait up to this long for the change to be
  // complete on the cluster (0 would return as soon as the controller accepted it).
  if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_DELETETOPICS ||
      op == RD_KAFKA_ADMIN_OP_CREATEPARTITIONS) {
    if (rd_kafka_AdminOptions_set_operation_timeout(opts.get(), kAdminTimeoutMs, errstr,
                                                    sizeof(errstr))) {
      return make_error(Errc::invalid_argument, "admin options: {}", errstr);
    }
  }
  return opts;
}

Result<EventPtr> wait_admin_result(rd_kafka_queue_t* q, rd_kafka_event_type_t type,
                                   std::string_view what) {
  // The request times out inside librdkafka after kAdminTimeoutMs; the margin covers the
  // lookup of the controller before it.
  constexpr int kWaitMs = kAdminTimeoutMs + kMetadataTimeoutMs;
  EventPtr ev(rd_kafka_queue_poll(q, kWaitMs));
  if (!ev) return make_error(Errc::io, "{}: no answer within {} ms", what, kWaitMs);
  if (rd_kafka_event_type(ev.get()) != type) {
    return make_error(Errc::io, "{}: unexpected event {}", what, rd_kafka_event_name(ev.get()));
  }
  if (rd_kafka_resp_err_t err = rd_kafka_event_error(ev.get())) {
    const char* s = rd_kafka_event_error_string(ev.get());
    return kafka_error(err, what, s ? s : "");
  }
  return ev;
}

namespace {
volatile sig_atomic_t g_stop = 0;
void on_stop_signal(int) {
  g_stop = 1;
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() {
  return g_stop != 0;
}

}  // namespace ordo::cli
