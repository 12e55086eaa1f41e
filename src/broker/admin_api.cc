#include "broker/admin_api.h"

#include "http/json.h"

#include <fmt/format.h>

namespace ordo::broker {

using http::json_response;
using nlohmann::json;

namespace {

json partition_json(const storage::PartitionStatus& p) {
  json j = {{"topic", p.tp.topic},
            {"partition", p.tp.partition},
            {"online", p.online},
            {"write_errors", p.write_errors}};
  if (!p.online) {
    j["error"] = p.error;
    return j;
  }
  j["log_start_offset"] = p.log_start_offset.value();
  j["log_end_offset"] = p.log_end_offset.value();
  j["high_watermark"] = p.high_watermark.value();
  j["size_bytes"] = p.size_bytes;
  j["segments"] = p.segments;
  j["compacted"] = p.compacted;
  if (p.compacted) {
    const storage::CleanerStats& c = p.cleaner;
    j["cleaner"] = {{"dirty_ratio", c.dirty_ratio},
                    {"cleanable_bytes", c.cleanable_bytes},
                    {"dirty_bytes", c.dirty_bytes},
                    {"first_dirty_offset", c.first_dirty.value()},
                    {"lag_ms", c.lag_ms},
                    {"cleans", c.cleans},
                    {"aborted", c.aborted},
                    {"bytes_read", c.bytes_read},
                    {"bytes_written", c.bytes_written},
                    {"records_dropped", c.records_dropped},
                    {"last_clean_ms", c.last_clean_ms}};
  }
  return j;
}

// One Prometheus family: # HELP, # TYPE, then a sample per partition that has a value.
template <typename F>
void family(std::string& out, const std::vector<storage::PartitionStatus>& status,
            std::string_view name, std::string_view type, std::string_view help, F value) {
  std::string samples;
  for (const auto& p : status) {
    auto v = value(p);
    if (!v) continue;
    samples += fmt::format("{}{{topic=\"{}\",partition=\"{}\"}} {}\n", name, p.tp.topic,
                           p.tp.partition, *v);
  }
  if (samples.empty()) return;
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  out += samples;
}

std::string metrics_text(const std::vector<storage::PartitionStatus>& status) {
  using P = storage::PartitionStatus;
  using Opt = std::optional<double>;
  auto online = [](auto f) {
    return [f](const P& p) -> Opt { return p.online ? Opt(f(p)) : std::nullopt; };
  };
  auto cleaner = [](auto f) {
    return [f](const P& p) -> Opt {
      return p.online && p.compacted ? Opt(f(p.cleaner)) : std::nullopt;
    };
  };
  std::string out;
  family(out, status, "ordo_partition_online", "gauge", "1 when the partition serves, 0 offline",
         [](const P& p) -> Opt { return p.online ? 1 : 0; });
  family(out, status, "ordo_partition_log_start_offset", "gauge", "First offset in the log",
         online([](const P& p) { return double(p.log_start_offset.value()); }));
  family(out, status, "ordo_partition_log_end_offset", "gauge", "Offset the next record gets",
         online([](const P& p) { return double(p.log_end_offset.value()); }));
  family(out, status, "ordo_partition_write_errors_total", "counter",
         "Appends that failed in a system call (a full disk: ENOSPC) since start",
         [](const P& p) -> Opt { return double(p.write_errors); });
  family(out, status, "ordo_partition_size_bytes", "gauge", "Bytes of the partition's segments",
         online([](const P& p) { return double(p.size_bytes); }));
  family(out, status, "ordo_cleaner_dirty_ratio", "gauge",
         "Share of the cleanable bytes not cleaned yet",
         cleaner([](const storage::CleanerStats& c) { return c.dirty_ratio; }));
  family(out, status, "ordo_cleaner_dirty_bytes", "gauge", "Cleanable bytes not cleaned yet",
         cleaner([](const storage::CleanerStats& c) { return double(c.dirty_bytes); }));
  family(out, status, "ordo_cleaner_lag_ms", "gauge",
         "How long the oldest uncleaned sealed segment has waited",
         cleaner([](const storage::CleanerStats& c) { return double(c.lag_ms); }));
  family(out, status, "ordo_cleaner_cleans_total", "counter", "Cleans completed since start",
         cleaner([](const storage::CleanerStats& c) { return double(c.cleans); }));
  family(out, status, "ordo_cleaner_bytes_read_total", "counter", "Bytes the cleaner read",
         cleaner([](const storage::CleanerStats& c) { return double(c.bytes_read); }));
  family(out, status, "ordo_cleaner_bytes_written_total", "counter", "Bytes the cleaner wrote",
         cleaner([](const storage::CleanerStats& c) { return double(c.bytes_written); }));
  family(out, status, "ordo_cleaner_records_dropped_total", "counter",
         "Records the cleaner removed (superseded or expired tombstones)",
         cleaner([](const storage::CleanerStats& c) { return double(c.records_dropped); }));
  return out;
}

}  // namespace

http::Response admin_route(const http::Request& req,
                           const std::vector<storage::PartitionStatus>& status) {
  const std::string& path = req.path;
  if (path == "/metrics") return {200, "text/plain; version=0.0.4", metrics_text(status)};
  if (path == "/v1/partitions") {
    json a = json::array();
    for (const auto& p : status) a.push_back(partition_json(p));
    return json_response(200, a);
  }
  constexpr std::string_view kTopics = "/v1/topics/";
  constexpr std::string_view kParts = "/partitions";
  if (path.starts_with(kTopics) && path.ends_with(kParts) &&
      path.size() > kTopics.size() + kParts.size()) {
    std::string topic = path.substr(kTopics.size(), path.size() - kTopics.size() - kParts.size());
    json a = json::array();
    for (const auto& p : status) {
      if (p.tp.topic == topic) a.push_back(partition_json(p));
    }
    if (a.empty()) return json_response(404, {{"error", "no partitions of topic " + topic}});
    return json_response(200, a);
  }
  return json_response(404, {{"error", "no such resource: " + path}});
}

Result<std::unique_ptr<AdminApi>> AdminApi::start(storage::LogManager& logs,
                                                  const std::string& host, uint16_t port,
                                                  std::function<std::string()> cluster_status) {
  http::ServerOptions o;
  o.host = host;
  o.port = port;
  auto server = ORDO_TRY(http::Server::start(
      o, [&logs, cluster_status = std::move(cluster_status)](const http::Request& req) {
        if (req.path == "/v1/cluster" && cluster_status) {
          return http::Response{200, "application/json", cluster_status()};
        }
        return admin_route(req, logs.status());
      }));
  return std::unique_ptr<AdminApi>(new AdminApi(std::move(server)));
}

}  // namespace ordo::broker
