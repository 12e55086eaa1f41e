// The child of the crash test: appends batches to one partition with the durable flush policy
// and reports each acknowledged append on a pipe, until it is killed.
//
//   crash_appender <data_dir> <round> <ack_fd>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "cluster/partitions.h"
#include "storage/log_manager.h"
#include "tests/crash/crash_batch.h"

using namespace ordo;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: crash_appender <data_dir> <round> <ack_fd>\n");
    return 2;
  }
  std::string dir = argv[1];
  int64_t round = std::atoll(argv[2]);
  int ack_fd = std::atoi(argv[3]);

  storage::LogManagerOptions o;
  o.data_dir = dir;
  o.shards = 1;
  o.flush_threads = 2;
  o.high_watermark = [](const ordo::model::TopicPartition&, const ordo::storage::LogProgress& p) {
    return ordo::cluster::LocalPartitions::decide_high_watermark(p);
  };
  o.default_config.flush_mode = storage::FlushMode::durable;
  o.default_config.segment_bytes = 512 * 1024;  // many rolls
  o.default_config.index_interval_bytes = 1024;
  o.default_config.preallocate =
      (round % 2 == 0) ? storage::Preallocate::zero_fill : storage::Preallocate::none;
  o.default_config.preallocate_bytes = 64 * 1024;
  o.default_config.retention_ms = -1;
  auto mgr = storage::LogManager::open(o);
  if (!mgr) {
    std::fprintf(stderr, "crash_appender: %s\n", mgr.error().to_string().c_str());
    return 1;
  }
  model::TopicPartition tp{"crash", 0};
  auto created = (*mgr)->create_sync(tp, o.default_config);
  if (!created && created.error().code != Errc::already_exists) {
    std::fprintf(stderr, "crash_appender: %s\n", created.error().to_string().c_str());
    return 1;
  }

  // Up to kInFlight appends outstanding, so that group commit and pipelined writes happen.
  constexpr int kInFlight = 8;
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::atomic<bool> failed{false};
  for (int64_t index = 0; index < 1'000'000 && !failed; ++index) {
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return in_flight < kInFlight; });
      ++in_flight;
    }
    (*mgr)->append(
        tp, crashtest::make_batch(round, index), {.leader_epoch = int32_t(round)},
        [&, index](Result<storage::AppendResult> r) {
          if (!r) {
            std::fprintf(stderr, "crash_appender: append: %s\n", r.error().to_string().c_str());
            failed = true;
          } else {
            crashtest::Ack ack{round, index, r->first_offset.value(), r->last_offset.value()};
            // <= PIPE_BUF: the write is atomic.
            ssize_t n;
            do {
              n = ::write(ack_fd, &ack, sizeof ack);
            } while (n < 0 && errno == EINTR);
            if (n != sizeof ack) failed = true;
          }
          std::lock_guard lock(mu);
          --in_flight;
          cv.notify_one();
        });
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  return failed ? 1 : 0;
}
