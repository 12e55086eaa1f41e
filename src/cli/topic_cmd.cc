// `ordo topic create|list|describe|alter|delete`: the Admin API of librdkafka, plus Metadata
// and ListOffsets (watermarks) for `describe`.

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/commands.h"
#include "http/server.h"

namespace ordo::cli {

namespace {

Result<std::map<std::string, std::string>> parse_configs(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    auto kv = ORDO_TRY(split_key_value(item, "--config"));
    out[kv.first] = kv.second;
  }
  return out;
}

const char* source_name(rd_kafka_ConfigSource_t s) {
  switch (s) {
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG:
      return "topic";
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_BROKER_CONFIG:
      return "broker";
    case RD_KAFKA_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG:
      return "cluster default";
    case RD_KAFKA_CONFIG_SOURCE_STATIC_BROKER_CONFIG:
      return "broker file";
    case RD_KAFKA_CONFIG_SOURCE_DEFAULT_CONFIG:
      return "default";
    default:
      return "unknown";
  }
}

struct ConfigValue {
  std::string name;
  std::optional<std::string> value;  // nullopt: sensitive (the broker does not return it)
  rd_kafka_ConfigSource_t source;
  bool read_only;
};

// DescribeConfigs for one topic, in the broker's order.
Result<std::vector<ConfigValue>> describe_topic_configs(rd_kafka_t* rk, const std::string& name) {
  std::string what = fmt::format("describe configs of topic '{}'", name);
  ConfigResourcePtr res(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, name.c_str()));
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  QueuePtr q(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* arr[] = {res.get()};
  rd_kafka_DescribeConfigs(rk, arr, 1, opts.get(), q.get());
  auto ev = ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_DESCRIBECONFIGS_RESULT, what));
  size_t n = 0;
  const rd_kafka_ConfigResource_t** results = rd_kafka_DescribeConfigs_result_resources(
      rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
  if (n != 1) return make_error(Errc::io, "{}: {} results for 1 resource", what, n);
  if (rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(results[0])) {
    const char* s = rd_kafka_ConfigResource_error_string(results[0]);
    return kafka_error(err, what, s ? s : "");
  }
  size_t cnt = 0;
  const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(results[0], &cnt);
  std::vector<ConfigValue> out;
  for (size_t i = 0; i < cnt; ++i) {
    const rd_kafka_ConfigEntry_t* e = entries[i];
    const char* v = rd_kafka_ConfigEntry_value(e);
    ConfigValue c{rd_kafka_ConfigEntry_name(e), v ? std::optional<std::string>(v) : std::nullopt,
                  rd_kafka_ConfigEntry_source(e), rd_kafka_ConfigEntry_is_read_only(e) != 0};
    // A null value is a sensitive one, or a config without a value.
    if (!v && !rd_kafka_ConfigEntry_is_sensitive(e)) c.value = "";
    out.push_back(std::move(c));
  }
  return out;
}

Result<void> create(const TopicArgs& a) {
  auto configs = ORDO_TRY(parse_configs(a.configs));
  auto rk = ORDO_TRY(admin_client(a.client));
  std::string what = fmt::format("create topic '{}'", a.name);
  char errstr[512];
  NewTopicPtr nt(rd_kafka_NewTopic_new(a.name.c_str(), a.partitions, a.replication_factor, errstr,
                                       sizeof(errstr)));
  if (!nt) return make_error(Errc::invalid_argument, "{}: {}", what, errstr);
  for (const auto& [k, v] : configs) {
    if (rd_kafka_resp_err_t err = rd_kafka_NewTopic_set_config(nt.get(), k.c_str(), v.c_str())) {
      return kafka_error(err, fmt::format("{}: config {}", what, k));
    }
  }
  auto opts = ORDO_TRY(admin_options(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_NewTopic_t* arr[] = {nt.get()};
  rd_kafka_CreateTopics(rk.get(), arr, 1, opts.get(), q.get());
  auto ev = ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_CREATETOPICS_RESULT, what));
  size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  for (size_t i = 0; i < n; ++i) {
    if (rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i])) {
      const char* s = rd_kafka_topic_result_error_string(results[i]);
      return kafka_error(err, what, s ? s : "");
    }
  }
  std::printf("created topic %s\n", a.name.c_str());
  return ok();
}

Result<void> list(const TopicArgs& a) {
  auto rk = ORDO_TRY(admin_client(a.client));
  auto md = ORDO_TRY(fetch_metadata(rk.get()));
  std::vector<std::string> names;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) names.emplace_back(md->topics[i].topic);
  }
  std::sort(names.begin(), names.end());
  for (const auto& n : names) std::printf("%s\n", n.c_str());
  return ok();
}

std::string join_ids(const int32_t* ids, int cnt) {
  std::string out;
  for (int i = 0; i < cnt; ++i) out += fmt::format("{}{}", i ? "," : "", ids[i]);
  return out.empty() ? "-" : out;
}

// The cleaner's state of each partition, from the broker's admin API (Ordo only: another
// Kafka cluster has no such API, which the section then says).
std::string cleaner_section(const TopicArgs& a) {
  std::string host = "127.0.0.1";
  uint16_t port = 9644;
  std::string where = a.admin;
  if (where.empty()) {
    std::string first = bootstrap_servers(a.client);
    first = first.substr(0, first.find(','));
    auto hp = parse_host_port(first);
    if (hp) host = hp->first;
  } else {
    auto hp = parse_host_port(where);
    if (!hp) return fmt::format("Cleaner: --admin {}\n", hp.error().message);
    std::tie(host, port) = *hp;
  }
  auto resp =
      http::get(host, port, "/v1/topics/" + http::percent_encode(a.name) + "/partitions", 5000);
  if (!resp || resp->status != 200) {
    return fmt::format("Cleaner: no admin API answer at {}:{} ({})\n", host, port,
                       resp ? fmt::format("HTTP {}", resp->status) : resp.error().message);
  }
  auto j = nlohmann::json::parse(resp->body, nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    return fmt::format("Cleaner: the admin API at {}:{} sent something else than JSON\n", host,
                       port);
  }
  std::string out = "Cleaner:\n";
  for (const auto& p : j) {
    if (!p.is_object() || !p.contains("cleaner") || !p["cleaner"].is_object()) continue;
    const auto& c = p["cleaner"];
    auto num = [&](const char* k) -> std::string {
      return c.contains(k) && c[k].is_number() ? c[k].dump() : std::string("?");
    };
    double ratio = c.contains("dirty_ratio") && c["dirty_ratio"].is_number()
                       ? c["dirty_ratio"].get<double>()
                       : 0;
    out += fmt::format(
        "\tPartition: {}\tDirtyRatio: {:.3f}\tDirtyBytes: {}\tFirstDirtyOffset: {}\tLagMs: {}"
        "\tCleans: {}\tBytesRead: {}\tBytesWritten: {}\tRecordsDropped: {}\n",
        p.contains("partition") ? p["partition"].dump() : "?", ratio, num("dirty_bytes"),
        num("first_dirty_offset"), num("lag_ms"), num("cleans"), num("bytes_read"),
        num("bytes_written"), num("records_dropped"));
  }
  return out;
}

Result<void> describe(const TopicArgs& a) {
  auto rk = ORDO_TRY(admin_client(a.client));
  auto md = ORDO_TRY(fetch_metadata(rk.get()));
  const rd_kafka_metadata_topic_t* t = ORDO_TRY(require_topic(*md, a.name));
  std::vector<const rd_kafka_metadata_partition_t*> parts;
  for (int i = 0; i < t->partition_cnt; ++i) parts.push_back(&t->partitions[i]);
  std::sort(parts.begin(), parts.end(), [](auto* x, auto* y) { return x->id < y->id; });
  int rf = parts.empty() ? 0 : parts.front()->replica_cnt;
  std::string out =
      fmt::format("Topic: {}\tPartitions: {}\tReplicationFactor: {}\n", t->topic, parts.size(), rf);
  for (const auto* p : parts) {
    out += fmt::format("\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}", p->id, p->leader,
                       join_ids(p->replicas, p->replica_cnt), join_ids(p->isrs, p->isr_cnt));
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t err = p->err;
    if (!err) {
      err =
          rd_kafka_query_watermark_offsets(rk.get(), t->topic, p->id, &lo, &hi, kMetadataTimeoutMs);
    }
    if (err) {
      out += fmt::format("\tError: {} ({})\n", rd_kafka_err2str(err), rd_kafka_err2name(err));
    } else {
      out += fmt::format("\tStartOffset: {}\tEndOffset: {}\n", lo, hi);
    }
  }
  auto configs = ORDO_TRY(describe_topic_configs(rk.get(), a.name));
  bool compacted = false;
  for (const auto& c : configs) {
    if (c.name == "cleanup.policy" && c.value && c.value->find("compact") != std::string::npos) {
      compacted = true;
    }
  }
  if (compacted && a.admin != "off") out += cleaner_section(a);
  out += "Configs:\n";
  for (const auto& c : configs) {
    out += fmt::format("\t{}={}\t({}{})\n", c.name, c.value ? *c.value : "<sensitive>",
                       source_name(c.source), c.read_only ? ", read-only" : "");
  }
  std::fputs(out.c_str(), stdout);
  return ok();
}

// AlterConfigs replaces the topic's whole set of configs (librdkafka 2.0.2 has no
// IncrementalAlterConfigs), so the set sent is the topic's current one with the changes applied.
Result<void> alter_configs(rd_kafka_t* rk, const TopicArgs& a) {
  std::string what = fmt::format("alter configs of topic '{}'", a.name);
  auto changes = ORDO_TRY(parse_configs(a.configs));
  auto current = ORDO_TRY(describe_topic_configs(rk, a.name));
  std::map<std::string, std::string> wanted;
  for (const auto& c : current) {
    if (c.source != RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG) continue;
    bool replaced = changes.contains(c.name) ||
                    std::find(a.delete_configs.begin(), a.delete_configs.end(), c.name) !=
                        a.delete_configs.end();
    if (!c.value && !replaced) {
      return make_error(Errc::invalid_argument,
                        "{}: {} is sensitive and cannot be read back, so a full replace would "
                        "drop it; give its value with --config too",
                        what, c.name);
    }
    if (c.value) wanted[c.name] = *c.value;
  }
  for (const auto& k : a.delete_configs) wanted.erase(k);
  for (const auto& [k, v] : changes) wanted[k] = v;

  ConfigResourcePtr res(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, a.name.c_str()));
  for (const auto& [k, v] : wanted) {
    if (rd_kafka_resp_err_t err =
            rd_kafka_ConfigResource_set_config(res.get(), k.c_str(), v.c_str())) {
      return kafka_error(err, fmt::format("{}: config {}", what, k));
    }
  }
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS));
  QueuePtr q(rd_kafka_queue_new(rk));
  rd_kafka_ConfigResource_t* arr[] = {res.get()};
  rd_kafka_AlterConfigs(rk, arr, 1, opts.get(), q.get());
  auto ev = ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_ALTERCONFIGS_RESULT, what));
  size_t n = 0;
  const rd_kafka_ConfigResource_t** results =
      rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev.get()), &n);
  for (size_t i = 0; i < n; ++i) {
    if (rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(results[i])) {
      const char* s = rd_kafka_ConfigResource_error_string(results[i]);
      return kafka_error(err, what, s ? s : "");
    }
  }
  return ok();
}

Result<void> add_partitions(rd_kafka_t* rk, const TopicArgs& a) {
  std::string what = fmt::format("set partitions of topic '{}' to {}", a.name, a.partitions);
  char errstr[512];
  NewPartitionsPtr np(
      rd_kafka_NewPartitions_new(a.name.c_str(), size_t(a.partitions), errstr, sizeof(errstr)));
  if (!np) return make_error(Errc::invalid_argument, "{}: {}", what, errstr);
  auto opts = ORDO_TRY(admin_options(rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS));
  QueuePtr q(rd_kafka_queue_new(rk));
  rd_kafka_NewPartitions_t* arr[] = {np.get()};
  rd_kafka_CreatePartitions(rk, arr, 1, opts.get(), q.get());
  auto ev = ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_CREATEPARTITIONS_RESULT, what));
  size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev.get()), &n);
  for (size_t i = 0; i < n; ++i) {
    if (rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i])) {
      const char* s = rd_kafka_topic_result_error_string(results[i]);
      return kafka_error(err, what, s ? s : "");
    }
  }
  return ok();
}

Result<void> alter(const TopicArgs& a) {
  if (a.configs.empty() && a.delete_configs.empty() && a.partitions < 0) {
    return make_error(Errc::invalid_argument,
                      "topic alter: nothing to change (give --config, --delete-config or "
                      "--partitions)");
  }
  auto rk = ORDO_TRY(admin_client(a.client));
  if (!a.configs.empty() || !a.delete_configs.empty()) ORDO_TRY(alter_configs(rk.get(), a));
  if (a.partitions >= 0) ORDO_TRY(add_partitions(rk.get(), a));
  std::printf("altered topic %s\n", a.name.c_str());
  return ok();
}

Result<void> remove(const TopicArgs& a) {
  auto rk = ORDO_TRY(admin_client(a.client));
  std::string what = fmt::format("delete topic '{}'", a.name);
  DeleteTopicPtr dt(rd_kafka_DeleteTopic_new(a.name.c_str()));
  auto opts = ORDO_TRY(admin_options(rk.get(), RD_KAFKA_ADMIN_OP_DELETETOPICS));
  QueuePtr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_DeleteTopic_t* arr[] = {dt.get()};
  rd_kafka_DeleteTopics(rk.get(), arr, 1, opts.get(), q.get());
  auto ev = ORDO_TRY(wait_admin_result(q.get(), RD_KAFKA_EVENT_DELETETOPICS_RESULT, what));
  size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev.get()), &n);
  for (size_t i = 0; i < n; ++i) {
    if (rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i])) {
      const char* s = rd_kafka_topic_result_error_string(results[i]);
      return kafka_error(err, what, s ? s : "");
    }
  }
  std::printf("deleted topic %s\n", a.name.c_str());
  return ok();
}

}  // namespace

int topic_create(const TopicArgs& args) {
  return finish(create(args));
}
int topic_list(const TopicArgs& args) {
  return finish(list(args));
}
int topic_describe(const TopicArgs& args) {
  return finish(describe(args));
}
int topic_alter(const TopicArgs& args) {
  return finish(alter(args));
}
int topic_delete(const TopicArgs& args) {
  return finish(remove(args));
}

}  // namespace ordo::cli
