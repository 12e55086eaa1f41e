#pragma once
// LogManager: owns a data directory and every partition log in it.
//
// Threads. Partitions are spread over `shards` by hash; each PartitionLog is touched only by
// its shard's thread (the single-writer principle). A shard is an asio::io_context run by one
// thread: by default the manager starts one thread per shard (its own io_contexts), or, with
// LogManagerOptions::shard_contexts, the shards run on io_contexts that the caller owns and
// runs (the broker's network threads: a produce handled on the thread that owns its partition
// appends with no hand-off at all).
//
// Every public method may be called from any thread. Called on a thread other than the
// owning shard's, it posts the work there and returns; the callback runs later on the shard's
// thread. Called ON the owning shard's thread, it does the work inline: the callback may then
// run before the method returns (as it always could for a call refused at once, e.g. after
// close(), which calls back on the caller's thread). Callers must therefore not hold a lock
// the callback takes, and must not rely on the method returning before the callback runs.
// A callback may call the manager again (re-entrantly: even remove() the partition whose
// append it completes). Callbacks must not block their thread. fdatasync runs on a separate
// pool of `flush_threads`, so a shard keeps appending while a sync is in flight.
//
// Blocking forms (*_sync, status(), close()) wait for a shard: they must never be called
// from a shard's thread (asserted), i.e. not from the broker's network threads when those
// are the shards.
//
// Shutdown with caller-owned contexts: (1) stop sending new work (stop accepting requests),
// (2) close() from a thread that is not a shard (the contexts must still be running: close()
// waits for in-flight syncs and closes each log on its own shard), (3) stop the contexts and
// join their threads, (4) destroy the manager. A call racing with close() is refused with
// Errc::closed (on the caller's thread, or on the shard if it was already posted); after
// close() the manager holds no handlers or timers on the contexts.
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
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file.h"
#include "base/result.h"
#include "model/topic_partition.h"
#include "storage/partition_log.h"

namespace asio {
class io_context;
}  // namespace asio

namespace ordo::storage {

// The background compaction cleaner: one thread that, each round, asks every shard for the
// clean plans of its compacted partitions (PartitionLog::plan_clean, cheap), builds the
// dirtiest due one on its own thread (build_clean: reads sealed segments, writes .cleaned
// files, at most io_bytes_per_second) and hands the result back to the partition's shard to
// swap in (commit_clean: a few renames and fsyncs; dropped if the log changed meanwhile).
// Appends and fetches never wait for a build. A partition whose build fails (corruption, I/O,
// a key map too small for the keys of one batch) is skipped until it is reopened or created
// again, and the next round follows at once; a failed swap takes the partition offline
// (reopening completes or undoes it).
struct CleanerThreadOptions {
  bool enabled = false;
  int64_t backoff_ms = 15000;  // pause after a round that found nothing due
  int64_t key_map_bytes = int64_t(128) << 20;
  int64_t io_bytes_per_second = 0;  // read plus written; 0: no cap
  // Tests: runs on the cleaner thread after a build, before its commit is posted.
  std::function<void(const model::TopicPartition&)> before_commit;
};

// What storage tells a partition's owner after each append and each completed sync: how far
// the log is written and how far it is durable. The owner answers with the high watermark
// (what readers may see and retention may delete up to), or nullopt to leave it where it is.
// A single node follows its own flush policy (cluster::LocalPartitions); a replicated
// partition follows its quorum. Runs on the partition's shard thread, before the append's
// callback; must not block. The answer is clamped to [log start, log end].
struct LogProgress {
  Offset appended;  // the log end offset: everything below it is written
  Offset durable;   // the flushed offset: everything below it is fsynced
  FlushMode flush_mode = FlushMode::durable;
  Offset high_watermark;  // the current one
};
using HighWatermarkPolicy =
    std::function<std::optional<Offset>(const model::TopicPartition&, const LogProgress&)>;

struct LogManagerOptions {
  std::string data_dir;
  int shards = 1;
  int flush_threads = 2;
  LogConfig default_config;
  const Clock* clock = &SystemClock::instance();
  // See OpenOptions::truncate_corrupt.
  bool truncate_corrupt = false;
  // Who decides the high watermark: the partition's owner, not storage (see
  // HighWatermarkPolicy). Empty: storage never moves it.
  HighWatermarkPolicy high_watermark;
  // How often each shard checks interval flushes; retention and segment.ms checks run every
  // retention_check_interval_ms.
  int64_t tick_ms = 20;
  int64_t retention_check_interval_ms = 5 * 60 * 1000;
  // Entries of the data dir that belong to someone else (e.g. the broker's topic registry):
  // skipped without a warning when the partitions are opened.
  std::vector<std::string> reserved_names;
  // Empty (the default): the manager runs `shards` threads of its own. Not empty: one shard
  // per context (`shards` is ignored and becomes their number), no shard threads are started,
  // and the caller runs each context on exactly one thread (a context run by two threads
  // would break the single-writer rule) from before open() until after close(). Distinct,
  // not null.
  std::vector<asio::io_context*> shard_contexts;
  CleanerThreadOptions cleaner;
};

constexpr int64_t kWriteErrorLogIntervalMs = 10'000;

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
  bool compacted = false;  // cleanup.policy includes compact: `cleaner` is meaningful
  // Appends that failed in a system call (ENOSPC, EIO...) since the broker started; each is
  // logged (at most one line per partition every kWriteErrorLogIntervalMs).
  uint64_t write_errors = 0;
  CleanerStats cleaner;
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

  // Creates an empty partition log; Errc::already_exists if there is one. A creation that
  // fails leaves no directory behind. defer_sync: the new files are not fsynced; the caller
  // calls sync_data_dir() before anything is appended (one sync for many partitions).
  void create(const model::TopicPartition& tp, const LogConfig& config, Callback<void> done,
              bool defer_sync = false);
  // Closes the log and deletes its directory. Pending durable appends fail.
  void remove(const model::TopicPartition& tp, Callback<void> done);
  // Appends (see PartitionLog::append); completes according to the partition's flush mode.
  void append(const model::TopicPartition& tp, std::vector<uint8_t> batches, AppendOptions options,
              Callback<AppendResult> done);
  // The same, borrowing the bytes instead of taking them. On the partition's shard thread they
  // are checked and written (offsets assigned into them) before this returns, so the caller may
  // reuse or free them as soon as it does, even while a durable append waits for its sync;
  // from any other thread they are copied first. This saves a copy for a caller that already
  // holds the batches in a buffer of its own (a request frame on the shard's network thread).
  void append_borrowed(const model::TopicPartition& tp, std::span<uint8_t> batches,
                       AppendOptions options, Callback<AppendResult> done);
  void read(const model::TopicPartition& tp, ReadOptions options, Callback<ReadResult> done);
  void set_config(const model::TopicPartition& tp, const LogConfig& config, Callback<void> done);
  // Runs fn with the log on its thread (for operations without a dedicated method).
  void with_log(const model::TopicPartition& tp, std::function<void(Result<PartitionLog*>)> fn);

  // Blocking forms for tools and tests. Never call them from a shard thread (asserted).
  Result<void> create_sync(const model::TopicPartition& tp, const LogConfig& config,
                           bool defer_sync = false);
  // syncfs(2) of the data dir's filesystem: everything written so far is durable.
  Result<void> sync_data_dir();
  Result<void> remove_sync(const model::TopicPartition& tp);
  Result<AppendResult> append_sync(const model::TopicPartition& tp, std::vector<uint8_t> batches,
                                   AppendOptions options = {});
  Result<ReadResult> read_sync(const model::TopicPartition& tp, ReadOptions options);
  std::vector<PartitionStatus> status();  // blocking too
  // Starts a cleaner round now instead of after the backoff (no-op without the cleaner).
  void wake_cleaner();

  // Stops taking work, waits for in-flight flushes, closes every log cleanly (indexes
  // written, clean-shutdown markers), stops its own threads (caller-owned contexts keep
  // running; see the shutdown order above) and releases the lock. Idempotent. Not from a
  // shard thread (asserted).
  Result<void> close();

  // True when the calling thread runs one of the shards (where calls run inline and the
  // blocking forms are forbidden).
  bool on_shard_thread() const;

  // ---- for a replication layer that runs its own work on the shards (cluster::RaftPartitions)
  // The number of shards, the shard of a partition (stable for the manager's life), and the
  // context a shard runs on: work posted there runs on the thread that owns the shard's logs
  // (a timer per shard, a Raft replica per partition beside its log). The context outlives
  // every use until close(); handlers posted there must not outlive the manager.
  size_t shard_count() const;
  size_t shard_of(const model::TopicPartition& tp) const;
  asio::io_context& shard_context(size_t shard) const;

  // Makes every write to tp's log so far durable (fdatasync of its segments on the flush pool,
  // whatever the partition's flush mode), then calls done on tp's shard thread (inline when
  // the log is already synced up to its end). Group commit: while one sync of the partition
  // runs, every request that arrives waits for the next one, which starts when it completes
  // and answers all of them (N concurrent requests cost at most two fdatasyncs). A failed
  // fdatasync takes the partition offline (as for appends) and fails every waiter; remove()
  // fails them with Errc::not_found, close() answers them after its final filesystem sync.
  // Writes made directly on the PartitionLog (with_log) are covered like appends.
  void flush(const model::TopicPartition& tp, Callback<void> done);
  // fdatasyncs run by the flush pool since open (appends' syncs and flush()'s): for tests and
  // metrics.
  uint64_t flushes_executed() const;

  // Tests: the process crashes. Stops the manager's own shard threads and the flush pool and
  // drops every log WITHOUT closing it (no index writes, no clean-shutdown marker, nothing
  // synced), then releases the data dir lock: the next open() recovers as after a crash (the
  // page cache keeps what was written, as after a process crash). Pending callbacks are
  // dropped uncalled. Only for a manager running its own shard threads; not from a shard.
  void crash_for_testing();

  const LogManagerOptions& options() const { return options_; }

 private:
  struct Impl;
  explicit LogManager(LogManagerOptions options);
  LogManagerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ordo::storage
