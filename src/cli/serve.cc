#include <signal.h>

#include "base/log.h"
#include "cli/commands.h"
#include "storage/log_manager.h"

namespace ordo::cli {

int serve(const ServeArgs& args) {
  // Block the stop signals in every thread; this one waits for them below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto mode = storage::parse_flush_mode(args.flush_mode);
  if (!mode) {
    ORDO_LOG_ERROR("{}", mode.error().to_string());
    return 2;
  }
  storage::LogManagerOptions o;
  o.data_dir = args.data_dir;
  o.shards = args.shards;
  o.truncate_corrupt = args.truncate_corrupt;
  o.default_config.flush_mode = *mode;
  auto mgr = storage::LogManager::open(o);
  if (!mgr) {
    ORDO_LOG_ERROR("cannot open {}: {}", args.data_dir, mgr.error().to_string());
    return 1;
  }
  size_t offline = 0;
  auto status = (*mgr)->status();
  for (const auto& p : status) {
    if (!p.online) {
      ++offline;
      ORDO_LOG_ERROR("partition {} offline: {}", p.tp.to_string(), p.error);
    } else {
      ORDO_LOG_INFO("partition {}: offsets [{}, {}), {} bytes in {} segments", p.tp.to_string(),
                    p.log_start_offset, p.log_end_offset, p.size_bytes, p.segments);
    }
  }
  ORDO_LOG_INFO("ordo: data dir {} open: {} partitions ({} offline), flush mode {}", args.data_dir,
                status.size(), offline, args.flush_mode);
  ORDO_LOG_INFO(
      "ordo: the Kafka listener is not built yet (see the broker issue); "
      "SIGTERM or Ctrl-C closes the logs cleanly");
  int sig = 0;
  sigwait(&stop, &sig);
  ORDO_LOG_INFO("ordo: signal {}: closing", sig);
  auto closed = (*mgr)->close();
  if (!closed) {
    ORDO_LOG_ERROR("close: {}", closed.error().to_string());
    return 1;
  }
  ORDO_LOG_INFO("ordo: closed cleanly");
  return 0;
}

}  // namespace ordo::cli
