// The commands that talk to a running connect worker over HTTP (docs/connect.md):
// `ordo view rebuild NAME` asks it to rebuild a table view (POST /views/NAME/rebuild) and
// follows its progress until the new store is live; `ordo search NAME QUERY` queries a search
// sink.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/client.h"
#include "cli/commands.h"
#include "http/server.h"

namespace ordo::cli {

namespace {

using nlohmann::json;

int64_t num(const json& j, const char* k) {
  return j.contains(k) && j[k].is_number_integer() ? j[k].get<int64_t>() : 0;
}
std::string str(const json& j, const char* k) {
  return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string();
}

std::string duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  auto s = int64_t(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
}

// One line of progress: bar, percent of offsets, records, rate and ETA.
std::string rebuild_progress_line(const json& p, int width) {
  int64_t done = num(p, "offsets_done"), total = num(p, "offsets_total");
  double frac = total > 0 ? std::min(1.0, double(done) / double(total)) : 1.0;
  int filled = int(frac * width);
  double secs = double(num(p, "elapsed_ms")) / 1000.0;
  double rate = secs > 0 ? double(num(p, "records")) / secs : 0;
  double offset_rate = secs > 0 ? double(done) / secs : 0;
  std::string eta = offset_rate > 0 ? duration(double(total - done) / offset_rate) : "?";
  return fmt::format("[{}{}] {:3.0f}% {} records  {:.0f} records/s  ETA {}  ({})",
                     std::string(size_t(filled), '#'), std::string(size_t(width - filled), '.'),
                     frac * 100, num(p, "records"), rate, eta, str(p, "state"));
}

}  // namespace

int view_rebuild(const ViewRebuildArgs& a) {
  auto hp = parse_host_port(a.http);
  if (!hp) {
    std::fprintf(stderr, "ordo view rebuild: --http %s\n", hp.error().message.c_str());
    return 2;
  }
  const std::string path = "/views/" + http::percent_encode(a.name) + "/rebuild";
  auto r = http::request("POST", hp->first, hp->second, path, 10'000);
  if (!r) {
    std::fprintf(stderr, "ordo view rebuild: %s\n", r.error().message.c_str());
    return 1;
  }
  auto body = json::parse(r->body, nullptr, false);
  if (r->status != 202) {
    std::fprintf(stderr, "ordo view rebuild: HTTP %d: %s\n", r->status,
                 body.is_object() ? str(body, "error").c_str() : r->body.c_str());
    return 1;
  }
  std::fprintf(stderr, "rebuilding view %s as generation %lld\n", a.name.c_str(),
               static_cast<long long>(num(body, "generation")));
  if (a.no_wait) return 0;
  const bool tty = isatty(STDERR_FILENO);
  auto last_line = std::chrono::steady_clock::now() - std::chrono::hours(1);
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto g = http::get(hp->first, hp->second, path, 10'000);
    if (!g || g->status != 200) {
      std::fprintf(stderr, "\nordo view rebuild: lost the worker: %s\n",
                   g ? fmt::format("HTTP {}", g->status).c_str() : g.error().message.c_str());
      return 1;
    }
    auto p = json::parse(g->body, nullptr, false);
    if (!p.is_object()) return 1;
    std::string state = str(p, "state");
    bool finished = state == "done" || state == "failed";
    auto now = std::chrono::steady_clock::now();
    if (tty) {
      std::fprintf(stderr, "\r%s\x1b[K", rebuild_progress_line(p, 30).c_str());
    } else if (finished || now - last_line >= std::chrono::seconds(2)) {
      std::fprintf(stderr, "%s\n", rebuild_progress_line(p, 30).c_str());
      last_line = now;
    }
    if (!finished) continue;
    if (tty) std::fputc('\n', stderr);
    if (state == "failed") {
      std::fprintf(stderr, "ordo view rebuild: %s\n", str(p, "error").c_str());
      return 1;
    }
    double secs = double(num(p, "elapsed_ms")) / 1000.0;
    std::printf("view %s rebuilt: generation %lld, %lld records in %.1f s, live\n", a.name.c_str(),
                static_cast<long long>(num(p, "generation")),
                static_cast<long long>(num(p, "records")), secs);
    return 0;
  }
}

int search(const SearchArgs& a) {
  auto hp = parse_host_port(a.http);
  if (!hp) {
    std::fprintf(stderr, "ordo search: --http %s\n", hp.error().message.c_str());
    return 2;
  }
  const std::string target = "/search/" + http::percent_encode(a.name) +
                             "?q=" + http::percent_encode(a.query) +
                             "&limit=" + std::to_string(a.limit);
  auto r = http::get(hp->first, hp->second, target, 30'000);
  if (!r) {
    std::fprintf(stderr, "ordo search: %s\n", r.error().message.c_str());
    return 1;
  }
  auto body = json::parse(r->body, nullptr, false);
  if (r->status != 200 || !body.is_object() || !body.contains("hits")) {
    std::fprintf(stderr, "ordo search: HTTP %d: %s\n", r->status,
                 body.is_object() ? str(body, "error").c_str() : r->body.c_str());
    return 1;
  }
  for (const auto& h : body["hits"]) {
    if (a.json) {
      std::printf("%s\n", h.dump().c_str());
    } else {
      std::printf("%3lld%%  %s\n      %s\n", static_cast<long long>(h.value("percent", 0.0)),
                  str(h, "key").c_str(), str(h, "snippet").c_str());
    }
  }
  std::fprintf(stderr, "%zu hits of %lld documents\n", body["hits"].size(),
               static_cast<long long>(num(body, "documents")));
  return 0;
}

}  // namespace ordo::cli
