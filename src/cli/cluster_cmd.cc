// `ordo cluster status`: a cluster's brokers, its controller and the partitions that need an
// operator's eye (no leader, or fewer in-sync replicas than replicas), from a broker's admin
// HTTP API (GET /v1/cluster, docs/cluster.md).
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/commands.h"
#include "http/server.h"

namespace ordo::cli {
namespace {

std::string id_list(const nlohmann::json& a) {
  if (!a.is_array()) return "?";
  std::string out;
  for (const auto& x : a) {
    if (!out.empty()) out += ",";
    out += x.is_number() ? x.dump() : "?";
  }
  return out.empty() ? "-" : out;
}

int64_t cluster_int(const nlohmann::json& o, const char* k, int64_t fallback = -1) {
  return o.contains(k) && o[k].is_number_integer() ? o[k].get<int64_t>() : fallback;
}

}  // namespace

int cluster_status(const std::string& admin) {
  auto hp = parse_host_port(admin);
  if (!hp) {
    std::fprintf(stderr, "ordo cluster status: --admin %s\n", hp.error().message.c_str());
    return 2;
  }
  auto r = http::get(hp->first, hp->second, "/v1/cluster", 10'000);
  if (!r) {
    std::fprintf(stderr, "ordo cluster status: %s\n", r.error().message.c_str());
    return 1;
  }
  if (r->status == 404) {
    std::fprintf(stderr, "ordo cluster status: %s is not in cluster mode (a single node)\n",
                 admin.c_str());
    return 1;
  }
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (r->status != 200 || j.is_discarded() || !j.is_object() || !j.contains("brokers") ||
      !j["brokers"].is_array() || !j.contains("partitions") || !j["partitions"].is_array()) {
    std::fprintf(stderr, "ordo cluster status: HTTP %d, not a cluster status\n", r->status);
    return 1;
  }
  std::string out;
  const auto& ctl = j.contains("controller") ? j["controller"] : nlohmann::json::object();
  int64_t leader = cluster_int(ctl, "leader");
  out += fmt::format("cluster {}, asked node {}, controller: {} (term {})\n",
                     j.value("cluster_id", std::string("?")), cluster_int(j, "node_id"),
                     leader < 0 ? std::string("none") : fmt::format("node {}", leader),
                     cluster_int(ctl, "term"));
  out += fmt::format("\n{:<6} {:<30} {:<12} {}\n", "BROKER", "ADDRESS", "RACK", "STATE");
  for (const auto& b : j["brokers"]) {
    if (!b.is_object()) continue;
    std::string rack = b.contains("rack") && b["rack"].is_string() ? b["rack"].get<std::string>()
                                                                   : std::string("-");
    bool fenced = b.contains("fenced") && b["fenced"].is_boolean() && b["fenced"].get<bool>();
    out +=
        fmt::format("{:<6} {:<30} {:<12} {}\n", cluster_int(b, "id"),
                    fmt::format("{}:{}", b.value("host", std::string("?")), cluster_int(b, "port")),
                    rack, fenced ? "fenced" : "live");
  }
  size_t total = 0, leaderless = 0, under = 0;
  std::string rows;
  for (const auto& p : j["partitions"]) {
    if (!p.is_object()) continue;
    ++total;
    size_t replicas = p.contains("replicas") && p["replicas"].is_array() ? p["replicas"].size() : 0;
    size_t isr = p.contains("isr") && p["isr"].is_array() ? p["isr"].size() : 0;
    bool no_leader = cluster_int(p, "leader") < 0;
    bool lagging = isr < replicas;
    if (!no_leader && !lagging) continue;
    leaderless += no_leader ? 1 : 0;
    under += lagging ? 1 : 0;
    rows += fmt::format(
        "{:<40} {:<7} {:<12} {:<12} {}\n",
        fmt::format("{}-{}", p.value("topic", std::string("?")), cluster_int(p, "partition")),
        no_leader ? std::string("none") : std::to_string(cluster_int(p, "leader")),
        id_list(p.value("replicas", nlohmann::json())), id_list(p.value("isr", nlohmann::json())),
        no_leader ? "NO LEADER" : "UNDER-REPLICATED");
  }
  out += fmt::format("\n{} partitions: {} without a leader, {} under-replicated\n", total,
                     leaderless, under);
  if (!rows.empty()) {
    out += fmt::format("{:<40} {:<7} {:<12} {:<12} {}\n", "PARTITION", "LEADER", "REPLICAS", "ISR",
                       "PROBLEM");
    out += rows;
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace ordo::cli
