// The `ordo` command.
//
//   ordo serve     open the data dir (recovering after a crash) and run until SIGTERM/SIGINT
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
      "serve", "Run the node on a data directory until SIGTERM or SIGINT (then close cleanly)");
  serve_cmd->add_option("--data-dir", serve.data_dir, "Data directory")->capture_default_str();
  serve_cmd
      ->add_option("--flush-mode", serve.flush_mode,
                   "Default flush policy of logs: none, interval or durable")
      ->capture_default_str();
  serve_cmd->add_option("--shards", serve.shards, "Log writer threads")->capture_default_str();
  serve_cmd->add_flag("--truncate-corrupt", serve.truncate_corrupt,
                      "After a crash, cut logs at corrupt batches even when valid data follows "
                      "(that data is dropped) instead of keeping those partitions offline");

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
