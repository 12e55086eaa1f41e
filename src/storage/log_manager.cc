#include "storage/log_manager.h"

#include <pthread.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "base/log.h"

namespace ordo::storage {

namespace fs = std::filesystem;
using model::TopicPartition;

namespace {

// A durable append waiting for the sync that covers it.
struct Waiter {
  Offset last_offset;
  AppendResult result;
  LogManager::Callback<AppendResult> done;
};

// A LogManager::flush() caller: answered once the log is durable up to target (its log end
// when it asked; clamped to the log end, which a truncation may have moved below it).
struct SyncWaiter {
  Offset target;
  LogManager::Callback<void> done;
};

struct Partition {
  TopicPartition tp;
  std::unique_ptr<PartitionLog> log;  // null when offline
  std::optional<Error> offline;       // why it takes no work
  bool flush_in_flight = false;
  int64_t last_flush_ms = 0;
  std::deque<Waiter> waiters;
  std::vector<SyncWaiter> sync_waiters;
  uint64_t write_errors = 0;  // appends that failed in a system call
  LogLimiter write_error_log{kWriteErrorLogIntervalMs};
};

struct Shard {
  // Own-thread mode: the context this shard's thread runs (declared first: destroyed last).
  // Null when the shard runs on a caller's context.
  std::unique_ptr<asio::io_context> own_ctx;
  asio::io_context* ctx = nullptr;  // where the shard runs: own_ctx or the caller's
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread thread;  // own-thread mode only
  // Touched only on this shard's thread (or before it starts / after it stops).
  std::unique_ptr<asio::steady_timer> timer;
  std::map<TopicPartition, std::shared_ptr<Partition>> partitions;
  int64_t last_retention_ms = 0;
  bool closed = false;  // close() has closed this shard's logs: work that arrives is refused

  // True on the thread that runs this shard: work for it runs inline.
  bool here() const { return ctx->get_executor().running_in_this_thread(); }
};

// A copy of a shard's partitions, for loops that call back into user code (a callback may
// create or remove partitions re-entrantly, which would invalidate a map iterator).
std::vector<std::shared_ptr<Partition>> snapshot(const Shard& s) {
  std::vector<std::shared_ptr<Partition>> out;
  out.reserve(s.partitions.size());
  for (const auto& [tp, p] : s.partitions) out.push_back(p);
  return out;
}

}  // namespace

struct LogManager::Impl {
  LogManagerOptions opts;
  File lock_file;
  std::vector<std::unique_ptr<Shard>> shards;
  std::unique_ptr<asio::thread_pool> flush_pool;
  std::atomic<bool> closing{false};
  std::atomic<uint64_t> flushes{0};  // fdatasyncs executed by the flush pool
  bool started = false;              // shards are running
  bool closed = false;
  bool external = false;  // shards run on the caller's contexts

  // The cleaner thread (CleanerThreadOptions).
  std::thread cleaner;
  std::mutex cleaner_mu;
  std::condition_variable cleaner_cv;
  bool cleaner_wake = false;              // under cleaner_mu
  std::atomic<bool> cleaner_stop{false};  // also cancels a build
  std::set<TopicPartition> cleaner_skip;  // under cleaner_mu; builds failed: skipped
                                          // until the partition is removed or reopened

  Shard& shard_for(const TopicPartition& tp) {
    return *shards[std::hash<TopicPartition>()(tp) % shards.size()];
  }

  bool on_any_shard() const {
    for (const auto& s : shards) {
      if (s->here()) return true;
    }
    return false;
  }

  static Error closed_error() { return make_error(Errc::closed, "log manager is closed"); }

  // Finds an online partition; the error explains why not.
  static Result<Partition*> find(Shard& s, const TopicPartition& tp) {
    auto it = s.partitions.find(tp);
    if (it == s.partitions.end()) {
      return make_error(Errc::not_found, "no partition {}", tp.to_string());
    }
    if (it->second->offline) return *it->second->offline;
    return it->second.get();
  }

  // Reports the partition's progress to its owner, which decides the high watermark.
  void set_hw(Partition& p) {
    if (!opts.high_watermark) return;
    PartitionLog& log = *p.log;
    LogProgress progress{log.log_end_offset(), log.flushed_offset(), log.config().flush_mode,
                         log.high_watermark()};
    if (auto hw = opts.high_watermark(p.tp, progress)) log.set_high_watermark(*hw);
  }

  // An append that failed in a system call (a full disk, an I/O error): the client gets
  // KAFKA_STORAGE_ERROR; the operator gets a counter and a rate-limited line.
  void note_write_error(Partition& p, const Error& e) {
    ++p.write_errors;
    if (!p.write_error_log.allow(opts.clock->now_ms())) return;
    const char* name = strerrorname_np(e.sys_errno);
    ORDO_LOG_ERROR("{}: write failed: errno {} ({}): {} ({} write errors in all, {} not logged)",
                   p.tp.to_string(), e.sys_errno, name ? name : "?", e.message, p.write_errors,
                   p.write_error_log.take_suppressed());
  }

  void fail_partition(Partition& p, Error e) {
    ORDO_LOG_ERROR("{}: taken offline: {}", p.tp.to_string(), e.to_string());
    p.offline = e;
    while (!p.waiters.empty()) {
      auto w = std::move(p.waiters.front());
      p.waiters.pop_front();
      w.done(e);
    }
    fail_sync_waiters(p, e);
  }

  // Fails every flush() caller of p (callbacks may add new ones: they are failed too).
  static void fail_sync_waiters(Partition& p, const Error& e) {
    while (!p.sync_waiters.empty()) {
      auto taken = std::move(p.sync_waiters);
      p.sync_waiters.clear();
      for (auto& w : taken) w.done(e);
    }
  }

  // Answers the flush() callers whose writes are durable. Taken out first: a callback may call
  // flush() again (re-entrantly) or remove the partition.
  static void complete_sync_waiters(Partition& p) {
    if (p.sync_waiters.empty() || !p.log) return;
    const Offset flushed = p.log->flushed_offset();
    const Offset end = p.log->log_end_offset();
    std::vector<Callback<void>> ready;
    std::erase_if(p.sync_waiters, [&](SyncWaiter& w) {
      if (std::min(w.target, end) > flushed) return false;
      ready.push_back(std::move(w.done));
      return true;
    });
    for (auto& done : ready) done(ok());
  }

  void complete_waiters(Partition& p) {
    Offset flushed = p.log->flushed_offset();
    while (!p.waiters.empty() && p.waiters.front().last_offset < flushed) {
      auto w = std::move(p.waiters.front());
      p.waiters.pop_front();
      w.done(std::move(w.result));
    }
    complete_sync_waiters(p);
  }

  // Starts a sync of p on the flush pool unless one is running or nothing needs it.
  void start_flush(Shard& s, const std::shared_ptr<Partition>& p) {
    if (p->flush_in_flight || p->offline) return;
    PartitionLog& log = *p->log;
    if (log.flushed_offset() == log.log_end_offset() && !log.has_unflushed_sealed_segments()) {
      complete_waiters(*p);
      return;
    }
    p->flush_in_flight = true;
    p->last_flush_ms = opts.clock->now_ms();
    FlushTicket ticket = log.prepare_flush();
    asio::post(*flush_pool, [this, &s, p, ticket = std::move(ticket)]() mutable {
      // Once close() has begun, a sync still queued is skipped: the close syncs the whole
      // filesystem once instead (and then acknowledges the waiters), rather than wait for a
      // backlog of one fdatasync per partition.
      const bool skipped = closing.load();
      Result<void> r = ok();
      if (!skipped) {
        r = execute_flush(ticket);
        flushes.fetch_add(1, std::memory_order_relaxed);
      }
      asio::post(*s.ctx, [this, &s, p, skipped, ticket = std::move(ticket), r = std::move(r)]() {
        p->flush_in_flight = false;
        if (skipped) return;
        // Removed meanwhile, or close() has closed the logs (with caller-owned contexts this
        // runs after close() when a sync outlived its wait).
        if (!p->log || s.closed) return;
        if (!r) {
          fail_partition(*p, r.error());
          return;
        }
        p->log->complete_flush(ticket);
        set_hw(*p);
        complete_waiters(*p);
        // A waiter's callback may have removed the partition (re-entrant call).
        if (!p->log || p->offline) return;
        // In durable mode everything written gets synced, waited for (acks=-1) or not (acks=1).
        bool behind = p->log->config().flush_mode == FlushMode::durable &&
                      p->log->flushed_offset() < p->log->log_end_offset();
        if (!p->waiters.empty() || !p->sync_waiters.empty() || behind ||
            p->log->has_unflushed_sealed_segments()) {
          start_flush(s, p);
        }
      });
    });
  }

  void on_tick(Shard& s) {
    int64_t now = opts.clock->now_ms();
    bool retention = now - s.last_retention_ms >= opts.retention_check_interval_ms;
    if (retention) s.last_retention_ms = now;
    for (auto& p : snapshot(s)) {
      if (p->offline || !p->log) continue;
      PartitionLog& log = *p->log;
      if (log.config().flush_mode == FlushMode::interval &&
          now - p->last_flush_ms >= log.config().flush_interval_ms) {
        start_flush(s, p);
      }
      // start_flush may have completed waiters whose callbacks removed the partition.
      if (retention && p->log && !p->offline) {
        auto rolled = log.maybe_roll_by_time();
        if (!rolled) fail_partition(*p, rolled.error());
        if (!p->offline) {
          auto deleted = log.enforce_retention();
          if (!deleted) fail_partition(*p, deleted.error());
        }
        if (p->log && !p->offline && log.has_unflushed_sealed_segments()) start_flush(s, p);
      }
    }
  }

  // On the shard's thread. The handler touches the manager only when the wait succeeded and
  // the manager is not closing; close() destroys the timer on the shard's thread and then
  // waits until its cancelled handler has run (see call()).
  void schedule_tick(Shard& s) {
    s.timer->expires_after(std::chrono::milliseconds(opts.tick_ms));
    s.timer->async_wait([this, &s](const asio::error_code& ec) {
      if (ec || closing.load() || !s.timer) return;
      on_tick(s);
      schedule_tick(s);
    });
  }

  // Runs fn on the shard's thread and waits for its result; never from a shard thread. The
  // result is handed over by a second handler posted from the first, so that everything fn
  // queued on that context (a cancelled timer's handler, say) and everything queued there
  // before the call has run when call() returns.
  template <typename T>
  static Result<T> call(Shard& s, std::function<Result<T>()> fn) {
    ORDO_ASSERT_MSG(!s.ctx->stopped(), "a shard's context was stopped before LogManager::close()");
    std::promise<Result<T>> promise;
    auto future = promise.get_future();
    asio::post(*s.ctx, [&] {
      Result<T> r = fn();
      asio::post(*s.ctx,
                 [&promise, r = std::move(r)]() mutable { promise.set_value(std::move(r)); });
    });
    return future.get();
  }

  void cleaner_main();
  bool cleaner_round();
  void stop_cleaner() {
    if (!cleaner.joinable()) return;
    {
      std::lock_guard lk(cleaner_mu);
      cleaner_stop = true;
    }
    cleaner_cv.notify_all();
    cleaner.join();
  }

  // The work of the public methods, on the shard's thread (inline or posted).
  void do_create(Shard& s, const TopicPartition& tp, const LogConfig& config, bool defer_sync,
                 Callback<void> done);
  void do_remove(Shard& s, const TopicPartition& tp, Callback<void> done);
  void do_append(Shard& s, const TopicPartition& tp, std::span<uint8_t> batches,
                 const AppendOptions& options, Callback<AppendResult> done);
  void do_read(Shard& s, const TopicPartition& tp, const ReadOptions& options,
               Callback<ReadResult> done);
  void do_with_log(Shard& s, const TopicPartition& tp,
                   std::function<void(Result<PartitionLog*>)>& fn);
  void do_flush(Shard& s, const TopicPartition& tp, Callback<void> done);
};

LogManager::LogManager(LogManagerOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->opts = options_;
}

LogManager::~LogManager() {
  auto r = close();
  if (!r) ORDO_LOG_ERROR("log manager close: {}", r.error().to_string());
}

Result<std::unique_ptr<LogManager>> LogManager::open(LogManagerOptions options) {
  const bool external = !options.shard_contexts.empty();
  if (external) {
    std::vector<asio::io_context*> seen = options.shard_contexts;
    std::sort(seen.begin(), seen.end());
    if (seen.front() == nullptr || std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
      return make_error(Errc::invalid_argument, "shard contexts must be distinct and not null");
    }
    options.shards = int(options.shard_contexts.size());
  }
  if (options.shards < 1 || options.shards > 256 || options.flush_threads < 1 ||
      options.flush_threads > 256 || options.tick_ms < 1) {
    return make_error(Errc::invalid_argument, "shards and flush threads must be in [1, 256]");
  }
  ORDO_TRY(options.default_config.validate());
  std::error_code ec;
  fs::create_directories(options.data_dir, ec);
  if (ec) return make_error(Errc::io, "create {}: {}", options.data_dir, ec.message());

  auto mgr = std::unique_ptr<LogManager>(new LogManager(options));
  Impl& impl = *mgr->impl_;
  impl.external = external;
  std::string lock_path = options.data_dir + "/.lock";
  impl.lock_file = ORDO_TRY(File::open(lock_path, O_RDWR | O_CREAT));
  if (::flock(impl.lock_file.fd(), LOCK_EX | LOCK_NB) != 0) {
    auto holder = read_file(lock_path, 64);
    return make_error(Errc::busy, "data dir {} is in use by another process (pid {})",
                      options.data_dir, holder ? *holder : std::string("?"));
  }
  std::string pid = std::to_string(::getpid());
  ORDO_TRY(impl.lock_file.truncate(0));
  ORDO_TRY(impl.lock_file.pwrite_all(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(pid.data()), pid.size()), 0));

  for (int i = 0; i < options.shards; ++i) {
    auto shard = std::make_unique<Shard>();
    if (external) {
      shard->ctx = options.shard_contexts[size_t(i)];
    } else {
      shard->own_ctx = std::make_unique<asio::io_context>(1);
      shard->ctx = shard->own_ctx.get();
    }
    impl.shards.push_back(std::move(shard));
  }

  std::vector<fs::path> entries;
  for (auto it = fs::directory_iterator(options.data_dir, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) return make_error(Errc::io, "list {}: {}", options.data_dir, ec.message());
  std::sort(entries.begin(), entries.end());
  // Each partition keeps at least one descriptor (its active segment): a data dir with more
  // partitions than the open-file limit allows would fail part-way, partition after partition.
  {
    int64_t partition_dirs = 0;
    for (const auto& path : entries) {
      if (model::parse_partition_dir(path.filename().string())) ++partition_dirs;
    }
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        partition_dirs + 64 > int64_t(lim.rlim_cur)) {
      return make_error(Errc::invalid_argument,
                        "data dir {} holds {} partitions, but the open-file limit is {} "
                        "(RLIMIT_NOFILE): each partition keeps a file open; raise it (ulimit -n)",
                        options.data_dir, partition_dirs, lim.rlim_cur);
    }
  }
  // One syncfs below makes the partitions' start-up bookkeeping durable (defer_sync).
  OpenOptions open_options{
      .create_if_missing = false, .truncate_corrupt = options.truncate_corrupt, .defer_sync = true};
  for (const auto& path : entries) {
    std::string name = path.filename().string();
    if (name == ".lock") continue;
    if (std::find(options.reserved_names.begin(), options.reserved_names.end(), name) !=
        options.reserved_names.end()) {
      continue;
    }
    if (name.ends_with(".delete") && fs::is_directory(path, ec)) {
      ORDO_LOG_INFO("removing {} left by an unfinished delete", name);
      fs::remove_all(path, ec);
      continue;
    }
    auto tp = model::parse_partition_dir(name);
    if (!tp || !fs::is_directory(path, ec)) {
      ORDO_LOG_WARN("data dir {}: ignoring unknown entry {}", options.data_dir, name);
      continue;
    }
    auto p = std::make_shared<Partition>();
    p->tp = *tp;
    auto log =
        PartitionLog::open(path.string(), options.default_config, *options.clock, open_options);
    if (log) {
      p->log = std::move(*log);
    } else {
      ORDO_LOG_ERROR("partition {} is offline: {}", name, log.error().to_string());
      p->offline = log.error();
    }
    impl.shard_for(*tp).partitions.emplace(*tp, std::move(p));
  }
  ORDO_TRY(syncfs_of(impl.lock_file.fd()));

  impl.flush_pool = std::make_unique<asio::thread_pool>(size_t(options.flush_threads));
  for (auto& s : impl.shards) {
    Shard& shard = *s;
    shard.last_retention_ms = options.clock->now_ms();
    // The timer is created and armed on the shard's thread (a caller's context is running
    // already, and the posted setup also publishes the partitions opened above to it).
    asio::post(*shard.ctx, [&impl, &shard] {
      shard.timer = std::make_unique<asio::steady_timer>(*shard.ctx);
      impl.schedule_tick(shard);
    });
    if (!external) {
      shard.guard.emplace(shard.ctx->get_executor());
      shard.thread = std::thread([&shard] { shard.ctx->run(); });
    }
  }
  impl.started = true;
  if (options.cleaner.enabled) impl.cleaner = std::thread([&impl] { impl.cleaner_main(); });
  return mgr;
}

void LogManager::Impl::cleaner_main() {
  // Named for top -H, perf and the benchmark (which reads this thread's CPU time).
  ::pthread_setname_np(::pthread_self(), "ordo-cleaner");
  // Background work yields to the partition writers: the lowest best-effort I/O priority and
  // a lower CPU priority for this thread only (lowering needs no privilege).
  const pid_t tid = pid_t(::syscall(SYS_gettid));
  constexpr int kIoprioClassBestEffort = 2, kIoprioClassShift = 13, kIoprioWhoProcess = 1;
  if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, tid,
                (kIoprioClassBestEffort << kIoprioClassShift) | 7) != 0) {
    ORDO_LOG_WARN("cleaner thread: ioprio_set: {}", std::strerror(errno));
  }
  if (::setpriority(PRIO_PROCESS, id_t(tid), 10) != 0) {
    ORDO_LOG_WARN("cleaner thread: setpriority: {}", std::strerror(errno));
  }
  std::unique_lock lk(cleaner_mu);
  while (!cleaner_stop) {
    lk.unlock();
    bool again = cleaner_round();
    lk.lock();
    if (again) continue;  // more may be due
    cleaner_cv.wait_for(lk, std::chrono::milliseconds(opts.cleaner.backoff_ms),
                        [&] { return cleaner_stop || cleaner_wake; });
    cleaner_wake = false;
  }
}

// One round: every shard reports its due partitions' dirty ratios (cheap: sizes and times);
// only the dirtiest is planned (file handles, producers), built here and committed on its shard.
// Returns whether another round should follow at once: a clean was committed (more may be
// due), or the partition was set aside (the others may be due).
bool LogManager::Impl::cleaner_round() {
  const CleanerThreadOptions& co = opts.cleaner;
  CleanerOptions plan_options{.key_map_bytes = co.key_map_bytes};
  std::optional<std::pair<TopicPartition, double>> best;  // partition, dirty ratio
  std::set<TopicPartition> skip;
  {
    std::lock_guard lk(cleaner_mu);
    skip = cleaner_skip;
  }
  for (auto& s : shards) {
    if (cleaner_stop) return false;
    auto due = call<std::vector<std::pair<TopicPartition, double>>>(
        *s, [&]() -> Result<std::vector<std::pair<TopicPartition, double>>> {
          std::vector<std::pair<TopicPartition, double>> v;
          for (const auto& [tp, p] : s->partitions) {
            if (p->offline || !p->log || skip.contains(tp)) continue;
            if (!policy_compacts(p->log->config().cleanup_policy)) continue;
            CleanerStats st = p->log->cleaner_stats();
            if (st.due) v.emplace_back(tp, st.dirty_ratio);
          }
          return v;
        });
    for (auto& c : *due) {
      if (!best || c.second > best->second) best = std::move(c);
    }
  }
  if (!best || cleaner_stop) return false;
  const TopicPartition tp = best->first;
  Shard& s = shard_for(tp);
  auto planned = call<std::optional<CleanPlan>>(s, [&]() -> Result<std::optional<CleanPlan>> {
    auto p = find(s, tp);
    if (!p) return std::optional<CleanPlan>();
    return (*p)->log->plan_clean(plan_options);
  });
  if (!planned) {
    ORDO_LOG_ERROR("{}: cleaner: {}", tp.to_string(), planned.error().to_string());
    return false;
  }
  // Gone, or no longer due since the round began (e.g. another clean).
  if (!*planned || !(*planned)->due) return false;
  const CleanPlan& plan = **planned;
  IoThrottle throttle(co.io_bytes_per_second);
  auto built = build_clean(plan, {.throttle = &throttle, .cancel = &cleaner_stop});
  if (!built) {
    if (built.error().code != Errc::closed) {
      ORDO_LOG_ERROR("{}: cleaning failed, not cleaned again until reopened: {}", tp.to_string(),
                     built.error().to_string());
      std::lock_guard lk(cleaner_mu);
      cleaner_skip.insert(tp);
      return true;
    }
    return false;
  }
  if (built->empty()) {
    // The key map cannot hold the keys of one batch (build_clean logged it): this partition
    // would be picked again every round and starve the others.
    ORDO_LOG_ERROR("{}: not cleaned again until reopened (raise log.cleaner.dedupe.buffer.size)",
                   tp.to_string());
    std::lock_guard lk(cleaner_mu);
    cleaner_skip.insert(tp);
    return true;
  }
  if (co.before_commit) co.before_commit(tp);
  std::vector<std::string> garbage;
  auto committed = call<bool>(s, [&]() -> Result<bool> {
    auto p = find(s, tp);
    if (!p || (*p)->log->dir() != plan.dir) {
      discard_clean(plan.dir, *built);
      return false;
    }
    auto r = (*p)->log->commit_clean(plan, std::move(*built));
    if (!r) {
      // The swap stopped half-way: the files no longer match the log in memory. Reopening
      // completes it from the marker (or drops the output).
      fail_partition(**p, r.error());
      return false;
    }
    garbage = std::move(r->garbage);
    return r->cleaned;
  });
  // The replaced segments' blocks are freed here, not on the partition's thread.
  remove_garbage(garbage);
  return *committed;
}

void LogManager::wake_cleaner() {
  Impl& impl = *impl_;
  {
    std::lock_guard lk(impl.cleaner_mu);
    impl.cleaner_wake = true;
  }
  impl.cleaner_cv.notify_all();
}

bool LogManager::on_shard_thread() const {
  return impl_->on_any_shard();
}

void LogManager::Impl::do_create(Shard& s, const TopicPartition& tp, const LogConfig& config,
                                 bool defer_sync, Callback<void> done) {
  if (s.closed) return done(closed_error());
  if (s.partitions.count(tp)) {
    return done(make_error(Errc::already_exists, "partition {} exists", tp.to_string()));
  }
  const std::string dir = opts.data_dir + "/" + tp.to_string();
  std::error_code ec;
  const bool existed = fs::exists(dir, ec);
  auto log = PartitionLog::open(dir, config, *opts.clock, OpenOptions{.defer_sync = defer_sync});
  if (!log) {
    // A partition that failed half-way (e.g. out of descriptors) leaves nothing behind.
    if (!existed) fs::remove_all(dir, ec);
    return done(log.error());
  }
  auto p = std::make_shared<Partition>();
  p->tp = tp;
  p->log = std::move(*log);
  p->last_flush_ms = opts.clock->now_ms();
  s.partitions.emplace(tp, std::move(p));
  done(ok());
}

void LogManager::create(const TopicPartition& tp, const LogConfig& config, Callback<void> done,
                        bool defer_sync) {
  if (impl_->closing) return done(Impl::closed_error());
  if (!model::is_valid_topic_name(tp.topic) || tp.partition < 0) {
    return done(make_error(Errc::invalid_argument, "invalid partition name {}", tp.to_string()));
  }
  if (auto v = config.validate(); !v) return done(v.error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_create(s, tp, config, defer_sync, std::move(done));
  asio::post(*s.ctx,
             [impl = impl_.get(), &s, tp, config, defer_sync, done = std::move(done)]() mutable {
               impl->do_create(s, tp, config, defer_sync, std::move(done));
             });
}

void LogManager::Impl::do_remove(Shard& s, const TopicPartition& tp, Callback<void> done) {
  if (s.closed) return done(closed_error());
  auto it = s.partitions.find(tp);
  if (it == s.partitions.end()) {
    return done(make_error(Errc::not_found, "no partition {}", tp.to_string()));
  }
  std::shared_ptr<Partition> p = it->second;
  s.partitions.erase(it);
  {
    std::lock_guard lk(cleaner_mu);
    cleaner_skip.erase(tp);
  }
  // Closed before the waiters hear of it: one of them may create the partition again.
  Result<void> r = ok();
  if (p->log) {
    r = p->log->close_and_remove();
    p->log.reset();
  } else {
    std::error_code ec;
    fs::remove_all(opts.data_dir + "/" + tp.to_string(), ec);
    if (ec) r = make_error(Errc::io, "remove {}: {}", tp.to_string(), ec.message());
  }
  Error gone = make_error(Errc::not_found, "partition {} was deleted", tp.to_string());
  while (!p->waiters.empty()) {
    auto w = std::move(p->waiters.front());
    p->waiters.pop_front();
    w.done(gone);
  }
  Impl::fail_sync_waiters(*p, gone);
  done(std::move(r));
}

void LogManager::remove(const TopicPartition& tp, Callback<void> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_remove(s, tp, std::move(done));
  asio::post(*s.ctx, [impl = impl_.get(), &s, tp, done = std::move(done)]() mutable {
    impl->do_remove(s, tp, std::move(done));
  });
}

void LogManager::Impl::do_append(Shard& s, const TopicPartition& tp, std::span<uint8_t> batches,
                                 const AppendOptions& options, Callback<AppendResult> done) {
  if (s.closed) return done(closed_error());
  auto it = s.partitions.find(tp);
  if (it == s.partitions.end()) {
    return done(make_error(Errc::not_found, "no partition {}", tp.to_string()));
  }
  std::shared_ptr<Partition> p = it->second;
  if (p->offline) return done(*p->offline);
  auto r = p->log->append(batches, options);
  if (!r) {
    if (r.error().sys_errno != 0) note_write_error(*p, r.error());
    return done(std::move(r).error());
  }
  if (p->log->config().flush_mode == FlushMode::durable) {
    if (!options.wait_for_flush) {
      start_flush(s, p);
      return done(std::move(r));
    }
    p->waiters.push_back({r->last_offset, std::move(*r), std::move(done)});
    start_flush(s, p);
    return;
  }
  set_hw(*p);
  done(std::move(r));
  // The callback may have removed the partition (a re-entrant call).
  if (p->log && !p->offline && p->log->has_unflushed_sealed_segments()) start_flush(s, p);
}

void LogManager::append(const TopicPartition& tp, std::vector<uint8_t> batches,
                        AppendOptions options, Callback<AppendResult> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_append(s, tp, batches, options, std::move(done));
  asio::post(*s.ctx, [impl = impl_.get(), &s, tp, batches = std::move(batches), options,
                      done = std::move(done)]() mutable {
    impl->do_append(s, tp, batches, options, std::move(done));
  });
}

void LogManager::append_borrowed(const TopicPartition& tp, std::span<uint8_t> batches,
                                 AppendOptions options, Callback<AppendResult> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  // do_append writes the bytes before it returns (PartitionLog::append is synchronous; a
  // durable waiter keeps only the result), so nothing refers to them afterwards.
  if (s.here()) return impl_->do_append(s, tp, batches, options, std::move(done));
  append(tp, std::vector<uint8_t>(batches.begin(), batches.end()), options, std::move(done));
}

void LogManager::Impl::do_read(Shard& s, const TopicPartition& tp, const ReadOptions& options,
                               Callback<ReadResult> done) {
  if (s.closed) return done(closed_error());
  auto found = find(s, tp);
  if (!found) return done(found.error());
  done((*found)->log->read(options));
}

void LogManager::read(const TopicPartition& tp, ReadOptions options, Callback<ReadResult> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_read(s, tp, options, std::move(done));
  asio::post(*s.ctx, [impl = impl_.get(), &s, tp, options, done = std::move(done)]() mutable {
    impl->do_read(s, tp, options, std::move(done));
  });
}

void LogManager::set_config(const TopicPartition& tp, const LogConfig& config,
                            Callback<void> done) {
  if (auto v = config.validate(); !v) return done(v.error());
  with_log(tp, [config, done = std::move(done)](Result<PartitionLog*> log) {
    if (!log) return done(log.error());
    (*log)->set_config(config);
    done(ok());
  });
}

void LogManager::Impl::do_with_log(Shard& s, const TopicPartition& tp,
                                   std::function<void(Result<PartitionLog*>)>& fn) {
  if (s.closed) return fn(closed_error());
  auto found = find(s, tp);
  if (!found) return fn(found.error());
  fn((*found)->log.get());
}

void LogManager::with_log(const TopicPartition& tp, std::function<void(Result<PartitionLog*>)> fn) {
  if (impl_->closing) return fn(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_with_log(s, tp, fn);
  asio::post(*s.ctx, [impl = impl_.get(), &s, tp, fn = std::move(fn)]() mutable {
    impl->do_with_log(s, tp, fn);
  });
}

void LogManager::Impl::do_flush(Shard& s, const TopicPartition& tp, Callback<void> done) {
  if (s.closed) return done(closed_error());
  auto it = s.partitions.find(tp);
  if (it == s.partitions.end()) {
    return done(make_error(Errc::not_found, "no partition {}", tp.to_string()));
  }
  std::shared_ptr<Partition> p = it->second;
  if (p->offline) return done(*p->offline);
  p->sync_waiters.push_back({p->log->log_end_offset(), std::move(done)});
  // Runs one now unless one is in flight (its completion starts the next for the waiters it
  // does not cover), or answers at once when everything is synced already.
  start_flush(s, p);
}

void LogManager::flush(const TopicPartition& tp, Callback<void> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  if (s.here()) return impl_->do_flush(s, tp, std::move(done));
  asio::post(*s.ctx, [impl = impl_.get(), &s, tp, done = std::move(done)]() mutable {
    impl->do_flush(s, tp, std::move(done));
  });
}

uint64_t LogManager::flushes_executed() const {
  return impl_->flushes.load(std::memory_order_relaxed);
}

size_t LogManager::shard_count() const {
  return impl_->shards.size();
}

size_t LogManager::shard_of(const TopicPartition& tp) const {
  return std::hash<TopicPartition>()(tp) % impl_->shards.size();
}

asio::io_context& LogManager::shard_context(size_t shard) const {
  ORDO_ASSERT(shard < impl_->shards.size());
  return *impl_->shards[shard]->ctx;
}

void LogManager::crash_for_testing() {
  Impl& impl = *impl_;
  if (impl.closed) return;
  ORDO_ASSERT_MSG(!impl.external, "crash_for_testing needs the manager's own shard threads");
  ORDO_ASSERT(!impl.on_any_shard());
  impl.stop_cleaner();
  impl.closing = true;  // queued syncs are skipped, new calls refused
  if (impl.started) {
    for (auto& s : impl.shards) {
      (void)Impl::call<bool>(*s, [&]() -> Result<bool> {
        s->closed = true;
        s->timer.reset();
        return true;
      });
    }
    impl.flush_pool->join();  // a sync that is running finishes; its completion is refused
    for (auto& s : impl.shards) {
      s->guard.reset();
      s->ctx->stop();
      if (s->thread.joinable()) s->thread.join();
    }
    // The logs go without close(): nothing more is written or synced.
    for (auto& s : impl.shards) s->partitions.clear();
  }
  impl.closed = true;
  ::flock(impl.lock_file.fd(), LOCK_UN);
  impl.lock_file.close();
}

namespace {
template <typename T>
struct SyncCall {
  std::promise<Result<T>> promise;
  LogManager::Callback<T> callback() {
    return [this](Result<T> r) { promise.set_value(std::move(r)); };
  }
  Result<T> wait() { return promise.get_future().get(); }
};

constexpr const char* kBlockingOnShard =
    "a blocking LogManager call on a shard thread would wait for itself";
}  // namespace

Result<void> LogManager::create_sync(const TopicPartition& tp, const LogConfig& config,
                                     bool defer_sync) {
  ORDO_ASSERT_MSG(!on_shard_thread(), kBlockingOnShard);
  SyncCall<void> c;
  create(tp, config, c.callback(), defer_sync);
  return c.wait();
}

Result<void> LogManager::sync_data_dir() {
  if (impl_->closing) return Impl::closed_error();
  return syncfs_of(impl_->lock_file.fd());
}

Result<void> LogManager::remove_sync(const TopicPartition& tp) {
  ORDO_ASSERT_MSG(!on_shard_thread(), kBlockingOnShard);
  SyncCall<void> c;
  remove(tp, c.callback());
  return c.wait();
}

Result<AppendResult> LogManager::append_sync(const TopicPartition& tp, std::vector<uint8_t> batches,
                                             AppendOptions options) {
  ORDO_ASSERT_MSG(!on_shard_thread(), kBlockingOnShard);
  SyncCall<AppendResult> c;
  append(tp, std::move(batches), options, c.callback());
  return c.wait();
}

Result<ReadResult> LogManager::read_sync(const TopicPartition& tp, ReadOptions options) {
  ORDO_ASSERT_MSG(!on_shard_thread(), kBlockingOnShard);
  SyncCall<ReadResult> c;
  read(tp, options, c.callback());
  return c.wait();
}

std::vector<PartitionStatus> LogManager::status() {
  ORDO_ASSERT_MSG(!on_shard_thread(), kBlockingOnShard);
  std::vector<PartitionStatus> out;
  if (impl_->closed) return out;
  for (auto& s : impl_->shards) {
    auto part = Impl::call<std::vector<PartitionStatus>>(
        *s, [&s]() -> Result<std::vector<PartitionStatus>> {
          std::vector<PartitionStatus> v;
          for (const auto& [tp, p] : s->partitions) {
            PartitionStatus st;
            st.tp = tp;
            st.online = !p->offline;
            st.write_errors = p->write_errors;
            if (p->offline) {
              st.error = p->offline->to_string();
            } else {
              const PartitionLog& log = *p->log;
              st.log_start_offset = log.log_start_offset();
              st.log_end_offset = log.log_end_offset();
              st.high_watermark = log.high_watermark();
              st.flushed_offset = log.flushed_offset();
              st.size_bytes = log.size_bytes();
              st.segments = log.segment_count();
              st.compacted = policy_compacts(log.config().cleanup_policy);
              if (st.compacted) st.cleaner = log.cleaner_stats();
            }
            v.push_back(std::move(st));
          }
          return v;
        });
    out.insert(out.end(), part->begin(), part->end());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.tp < b.tp; });
  return out;
}

Result<void> LogManager::close() {
  Impl& impl = *impl_;
  if (impl.closed) return ok();
  ORDO_ASSERT_MSG(!impl.on_any_shard(),
                  "LogManager::close() on a shard thread would wait for itself");
  impl.stop_cleaner();  // before the logs close: a build in progress is cancelled
  impl.closing = true;
  if (!impl.started) {  // open() failed part-way: nothing runs, nothing was written
    impl.closed = true;
    impl.lock_file.close();
    return ok();
  }
  // Let the syncs that are running finish (queued ones are skipped now that `closing` is set;
  // the syncfs below covers what they would have). Each shard checks on its own thread; the
  // bound keeps a wedged disk from hanging shutdown forever.
  for (int spin = 0; spin < 60'000; ++spin) {
    bool busy = false;
    for (auto& s : impl.shards) {
      auto b = Impl::call<bool>(*s, [&]() -> Result<bool> {
        bool any = false;
        for (auto& p : snapshot(*s)) any = any || p->flush_in_flight;
        return any;
      });
      busy = busy || *b;
    }
    if (!busy) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Each shard closes its logs on its own thread and drops its timer there; work that reaches
  // it afterwards (posted before `closing` was seen) is refused. The logs close in two halves
  // (PartitionLog::close_begin/close_end), each followed by one syncfs of the data dir: two
  // journal commits for the whole stop instead of a dozen fsyncs per partition, which made a
  // stop of 10,000 partitions take half a minute.
  Result<void> first_error = ok();
  std::vector<std::vector<std::shared_ptr<Partition>>> begun(impl.shards.size());
  for (size_t i = 0; i < impl.shards.size(); ++i) {
    auto& s = impl.shards[i];
    auto r = Impl::call<bool>(*s, [&]() -> Result<bool> {
      s->closed = true;
      s->timer.reset();  // cancels the tick; its handler runs before call() returns
      for (auto& [tp, p] : s->partitions) {
        if (p->offline || !p->log) continue;
        auto c = p->log->close_begin();
        if (c) {
          begun[i].push_back(p);
        } else {
          ORDO_LOG_ERROR("{}: close: {}", tp.to_string(), c.error().to_string());
          if (first_error) first_error = c.error();
        }
      }
      return true;
    });
    (void)r;
  }
  // Both syncs run here, on the closing thread: the shards may be the network threads.
  auto synced = syncfs_of(impl.lock_file.fd());
  if (synced) {
    for (size_t i = 0; i < impl.shards.size(); ++i) {
      (void)Impl::call<bool>(*impl.shards[i], [&]() -> Result<bool> {
        for (auto& p : begun[i]) {
          auto c = p->log->close_end();
          if (!c && first_error) first_error = c.error();
          // Everything appended is durable since the first syncfs: appends waiting for a
          // sync are acknowledged (close_end moved the flushed offset to the log end).
          impl.complete_waiters(*p);
        }
        return true;
      });
    }
    synced = syncfs_of(impl.lock_file.fd());
  }
  if (!synced) {
    // Without the markers' sync the next start recovers every log, as after a crash.
    ORDO_LOG_ERROR("close: {}", synced.error().to_string());
    if (first_error) first_error = synced.error();
  }
  // Appends still waiting (the first sync failed, or their log failed to close) fail.
  for (auto& s : impl.shards) {
    (void)Impl::call<bool>(*s, [&]() -> Result<bool> {
      Error e = synced ? impl.closed_error() : synced.error();
      for (auto& p : snapshot(*s)) {
        while (!p->waiters.empty()) {
          auto w = std::move(p->waiters.front());
          p->waiters.pop_front();
          w.done(e);
        }
        Impl::fail_sync_waiters(*p, e);
      }
      return true;
    });
  }
  for (auto& s : impl.shards) {
    if (!impl.external) {
      s->guard.reset();
      s->ctx->stop();
      if (s->thread.joinable()) s->thread.join();
    }
  }
  impl.flush_pool->join();
  if (impl.external) {
    // A sync that outlived the wait above has posted its completion to the shard: let it run
    // (it sees `closed` and returns) so that nothing queued there refers to this manager.
    for (auto& s : impl.shards) (void)Impl::call<bool>(*s, [] { return Result<bool>(true); });
  }
  impl.closed = true;
  ::flock(impl.lock_file.fd(), LOCK_UN);
  impl.lock_file.close();
  return first_error;
}

}  // namespace ordo::storage
