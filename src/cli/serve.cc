#include <signal.h>
#include <sys/resource.h>

#include <chrono>

#include <fmt/format.h>

#include "base/log.h"
#include "broker/admin_api.h"
#include "broker/broker.h"
#include "broker/config.h"
#include "broker/server.h"
#include "cli/client.h"
#include "cli/commands.h"

namespace ordo::cli {

std::string serve_settings_help() {
  std::string out =
      "Settings (TOML key / --set NAME=VALUE; environment: ORDO_ + NAME upper-cased with '.' -> "
      "'_'; later sources win: defaults < file < environment < flags). docs/configuration.md "
      "has the details.\n";
  for (const auto& s : broker::describe_config(broker::BrokerConfig{})) {
    out += fmt::format("  {:<34} {:<14} {}\n", s.name, s.value.empty() ? "\"\"" : s.value,
                       s.description);
  }
  return out;
}

int serve(const ServeArgs& args) {
  // Block the stop signals in every thread; this one waits for them below.
  sigset_t stop = block_stop_signals();

  auto config = broker::load_config(args.config_file, broker::ordo_environment(), args.overrides);
  if (!config) {
    ORDO_LOG_ERROR("configuration: {}", config.error().message);
    return 2;
  }
  if (args.print_config) {
    for (const auto& s : broker::describe_config(*config)) fmt::print("{} = {}\n", s.name, s.value);
    return 0;
  }
  // Every partition keeps its active segment open: take the whole open-file limit the process
  // may have (the soft limit is often 1024 while the hard one is far higher).
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    rlim_t soft = files.rlim_cur;
    files.rlim_cur = files.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) files.rlim_cur = soft;
  }
  const auto opening = std::chrono::steady_clock::now();
  auto b = broker::Broker::open(*config);
  if (!b) {
    ORDO_LOG_ERROR("cannot open {}: {}", config->data_dir, b.error().to_string());
    return 1;
  }
  broker::Broker& brk = **b;
  const double open_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - opening).count();
  // One summary line; a line per partition only for those in trouble.
  size_t offline = 0;
  int64_t bytes = 0, segments = 0;
  auto status = brk.logs().status();
  for (const auto& p : status) {
    if (!p.online) {
      ++offline;
      ORDO_LOG_ERROR("partition {} offline: {}", p.tp.to_string(), p.error);
    } else {
      bytes += p.size_bytes;
      segments += int64_t(p.segments);
    }
  }
  broker::Server server(brk);
  auto port = server.start();
  if (!port) {
    ORDO_LOG_ERROR("{}", port.error().to_string());
    return 1;
  }
  if (config->advertised_port == 0) {
    brk.set_advertised(
        config->advertised_host.empty() ? config->listen_host : config->advertised_host, *port);
  }
  ORDO_LOG_INFO(
      "ordo: data dir {}: {} topics, {} partitions ({} offline, {} bytes in {} segments) opened "
      "in {:.2f} s, open-file limit {}, flush mode {}, {} network threads, partition writers: {}",
      config->data_dir, brk.topics().snapshot()->size(), status.size(), offline, bytes, segments,
      open_seconds, files.rlim_cur, storage::flush_mode_name(config->log.flush_mode),
      config->network_threads,
      config->shard_mode == broker::ShardMode::network
          ? std::string("on the network threads")
          : fmt::format("{} dedicated shard threads", config->shards));
  std::unique_ptr<broker::AdminApi> admin;
  if (!config->admin_host.empty()) {
    auto a = broker::AdminApi::start(brk.logs(), config->admin_host, config->admin_port,
                                     brk.cluster_status());
    if (!a) {
      ORDO_LOG_ERROR("{}", a.error().to_string());
      server.stop();
      (void)brk.close();
      return 1;
    }
    admin = std::move(*a);
    ORDO_LOG_INFO("ordo: admin API on http://{}:{}", config->admin_host, admin->port());
  }
  // The line tests and scripts wait for.
  ORDO_LOG_INFO("ordo: listening on {}:{}", config->listen_host, *port);
  int sig = 0;
  sigwait(&stop, &sig);
  ORDO_LOG_INFO("ordo: signal {}: stopping", sig);
  // Stop accepting and finish the requests in flight; then the logs close while the network
  // threads still run (they may be the logs' shards); then those threads stop (Broker::close).
  if (admin) admin->stop();  // its requests wait for the storage shards
  server.stop();
  const auto closing = std::chrono::steady_clock::now();
  auto closed = brk.close();
  if (!closed) {
    ORDO_LOG_ERROR("close: {}", closed.error().to_string());
    return 1;
  }
  ORDO_LOG_INFO("ordo: closed cleanly ({} partitions in {:.2f} s)", status.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - closing).count());
  return 0;
}

}  // namespace ordo::cli
