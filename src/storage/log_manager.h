#pragma once
// LogManager: owns a data directory and every partition log in it.
//
// Threads. Partitions are spread over `shards` writer threads by hash; each PartitionLog is
// touched only by its shard's thread (the single-writer principle). Every public method may
// be called from any thread: it posts the work to the owning shard and returns; the callback
// runs later on that shard's thread and must not block it (a call refused at once, e.g. after
// close(), calls back on the caller's thread). fdatasync runs on a separate pool
// of `flush_threads`, so a shard keeps appending while a sync is in flight.
//
// Flush policy (LogConfig::flush_mode), applied per partition:
//   none      the callback runs once the batches are in the page cache;
//   interval  the same, plus a flush every flush_interval_ms;
//   durable   the callback runs only after an fdatasync that covers the batches returned.
//             At most one sync per partition is in flight; every append that arrives during
//             it is written at once and acknowledged by the next sync (group commit).
// A failed fdatasync takes the partition offline: pending and later appends fail (the page
// cache state after a failed fsync is unknown, so nothing more is acknowledged from it).
//
// Data dir layout: <data_dir>/.lock (flock, holds the pid), one <topic>-<partition>/ per log.
// Anything else is reported and left alone.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file.h"
#include "base/result.h"
#include "model/topic_partition.h"
#include "storage/partition_log.h"

namespace ordo::storage {

struct LogManagerOptions {
  std::string data_dir;
  int shards = 1;
  int flush_threads = 2;
  LogConfig default_config;
  const Clock* clock = &SystemClock::instance();
  // See OpenOptions::truncate_corrupt.
  bool truncate_corrupt = false;
  // Single node: the high watermark follows the flushed offset (durable) or the log end.
  // Replication turns this off and sets it itself.
  bool auto_high_watermark = true;
  // How often each shard checks interval flushes; retention and segment.ms checks run every
  // retention_check_interval_ms.
  int64_t tick_ms = 20;
  int64_t retention_check_interval_ms = 5 * 60 * 1000;
  // Called on the shard thread whenever a partition's high watermark moves (after appends in
  // page-cache modes, after a sync in durable mode, on truncation). Must not block.
  std::function<void(const model::TopicPartition&, Offset)> on_high_watermark;
  // Entries of the data dir that belong to someone else (e.g. the broker's topic registry):
  // skipped without a warning when the partitions are opened.
  std::vector<std::string> reserved_names;
};

struct PartitionStatus {
  model::TopicPartition tp;
  bool online = true;
  std::string error;  // why it is offline
  Offset log_start_offset;
  Offset log_end_offset;
  Offset high_watermark;
  Offset flushed_offset;
  int64_t size_bytes = 0;
  size_t segments = 0;
};

class LogManager {
 public:
  template <typename T>
  using Callback = std::function<void(Result<T>)>;

  // Locks the data dir (Errc::busy if another process holds it), opens every partition
  // (recovering after a crash) and starts the threads. A partition that fails to open is
  // reported, kept offline, and answers every call with its error.
  static Result<std::unique_ptr<LogManager>> open(LogManagerOptions options);
  ~LogManager();
  LogManager(const LogManager&) = delete;
  LogManager& operator=(const LogManager&) = delete;

  // Creates an empty partition log; Errc::already_exists if there is one.
  void create(const model::TopicPartition& tp, const LogConfig& config, Callback<void> done);
  // Closes the log and deletes its directory. Pending durable appends fail.
  void remove(const model::TopicPartition& tp, Callback<void> done);
  // Appends (see PartitionLog::append); completes according to the partition's flush mode.
  void append(const model::TopicPartition& tp, std::vector<uint8_t> batches, AppendOptions options,
              Callback<AppendResult> done);
  void read(const model::TopicPartition& tp, ReadOptions options, Callback<ReadResult> done);
  void set_config(const model::TopicPartition& tp, const LogConfig& config, Callback<void> done);
  // Runs fn with the log on its thread (for operations without a dedicated method).
  void with_log(const model::TopicPartition& tp, std::function<void(Result<PartitionLog*>)> fn);

  // Blocking forms for tools and tests. Never call them from a shard thread.
  Result<void> create_sync(const model::TopicPartition& tp, const LogConfig& config);
  Result<void> remove_sync(const model::TopicPartition& tp);
  Result<AppendResult> append_sync(const model::TopicPartition& tp, std::vector<uint8_t> batches,
                                   AppendOptions options = {});
  Result<ReadResult> read_sync(const model::TopicPartition& tp, ReadOptions options);
  std::vector<PartitionStatus> status();

  // Stops taking work, waits for in-flight flushes, closes every log cleanly (indexes
  // written, clean-shutdown markers), stops the threads and releases the lock. Idempotent.
  Result<void> close();

  const LogManagerOptions& options() const { return options_; }

 private:
  struct Impl;
  explicit LogManager(LogManagerOptions options);
  LogManagerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ordo::storage
