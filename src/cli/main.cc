// The `ordo` command.
//
//   ordo serve     run the broker on a data dir until SIGTERM/SIGINT
//   ordo dump-log  print the batches of a segment file, checking each one

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/log.h"
#include "cli/commands.h"

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
      {"--flush-mode", "log.flush.mode", "Default flush policy: none, interval or durable"},
      {"--shards", "shards", "Log writer threads"},
      {"--network-threads", "network.threads", "Network threads"},
      {"--num-partitions", "num.partitions", "Partitions of auto-created topics"},
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

  CLI11_PARSE(app, argc, argv);
  if (*serve_cmd) return ordo::cli::serve(serve);
  if (*dump_cmd) return ordo::cli::dump_log(dump_path, dump_records);
  return 2;
}
