// `ordo connect run PIPELINE.toml` and `ordo connect status` (docs/connect.md).

#include <signal.h>

#include <charconv>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cli/client.h"
#include "cli/commands.h"
#include "connect/worker.h"
#include "http/server.h"

namespace ordo::cli {

int connect_run(const std::string& pipeline_path) {
  sigset_t stop = block_stop_signals();
  auto config = connect::load_pipeline(pipeline_path);
  if (!config) {
    ORDO_LOG_ERROR("{}", config.error().message);
    return 2;
  }
  auto worker = connect::Worker::start(*config);
  if (!worker) {
    ORDO_LOG_ERROR("connect: {}", worker.error().to_string());
    return 1;
  }
  if ((*worker)->http_port() != 0) {
    ORDO_LOG_INFO("connect: http on http://{}:{}", config->http_host, (*worker)->http_port());
  }
  // The line tests and scripts wait for.
  ORDO_LOG_INFO("connect: running {} sources and {} sinks against {}", config->sources.size(),
                config->sinks.size(), config->bootstrap);
  int sig = 0;
  sigwait(&stop, &sig);
  ORDO_LOG_INFO("connect: signal {}: stopping", sig);
  (*worker)->stop();
  ORDO_LOG_INFO("connect: stopped");
  return 0;
}

int connect_status(const std::string& http) {
  auto hp = parse_host_port(http);
  if (!hp) {
    std::fprintf(stderr, "ordo connect status: --http %s\n", hp.error().message.c_str());
    return 2;
  }
  auto r = http::get(hp->first, hp->second, "/status", 10'000);
  if (!r || r->status != 200) {
    std::fprintf(stderr, "ordo connect status: %s\n",
                 r ? fmt::format("HTTP {}", r->status).c_str() : r.error().message.c_str());
    return 1;
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("tasks") || !j["tasks"].is_array()) {
    std::fprintf(stderr, "ordo connect status: the worker sent something else than its status\n");
    return 1;
  }
  std::string out = fmt::format("{:<20} {:<9} {:<30} {:>12} {:>14} {:>10}\n", "SINK", "STATE",
                                "PARTITION", "POSITION", "HIGH-WATERMARK", "LAG");
  auto str = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_string() ? o[k].get<std::string>() : std::string("?");
  };
  auto num = [](const nlohmann::json& o, const char* k) {
    return o.contains(k) && o[k].is_number() ? o[k].dump() : std::string("-");
  };
  for (const auto& t : j["tasks"]) {
    if (!t.is_object()) continue;
    const auto& parts = t.contains("partitions") && t["partitions"].is_array()
                            ? t["partitions"]
                            : nlohmann::json::array();
    if (parts.empty()) {
      out +=
          fmt::format("{:<20} {:<9} {:<30}\n", str(t, "name"), str(t, "state"), "(none assigned)");
    }
    for (const auto& p : parts) {
      out +=
          fmt::format("{:<20} {:<9} {:<30} {:>12} {:>14} {:>10}\n", str(t, "name"), str(t, "state"),
                      fmt::format("{}-{}", str(p, "topic"), num(p, "partition")),
                      num(p, "position"), num(p, "high_watermark"), num(p, "lag"));
    }
    if (!str(t, "error").empty() && str(t, "state") == "retrying") {
      out += fmt::format("  {}: {}\n", str(t, "name"), str(t, "error"));
    }
  }
  if (j.contains("sources") && j["sources"].is_array() && !j["sources"].empty()) {
    out += fmt::format("\n{:<20} {:<10} {:<24} {:>16} {:>14} {:>14} {:>12}\n", "SOURCE", "STATE",
                       "SLOT", "CONFIRMED-LSN", "SLOT-LAG-BYTES", "TRANSACTIONS", "RECORDS");
    for (const auto& s : j["sources"]) {
      if (!s.is_object()) continue;
      out += fmt::format("{:<20} {:<10} {:<24} {:>16} {:>14} {:>14} {:>12}\n", str(s, "name"),
                         str(s, "state"), str(s, "slot"), str(s, "confirmed_lsn"),
                         num(s, "slot_lag_bytes"), num(s, "transactions"), num(s, "records"));
      if (!str(s, "error").empty() && str(s, "state") == "retrying") {
        out += fmt::format("  {}: {}\n", str(s, "name"), str(s, "error"));
      }
    }
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace ordo::cli
