#include "storage/log_manager.h"

#include <sys/file.h>
#include <unistd.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <map>
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

struct Partition {
  TopicPartition tp;
  std::unique_ptr<PartitionLog> log;  // null when offline
  std::optional<Error> offline;       // why it takes no work
  bool flush_in_flight = false;
  int64_t last_flush_ms = 0;
  std::deque<Waiter> waiters;
};

struct Shard {
  asio::io_context ctx;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::unique_ptr<asio::steady_timer> timer;
  std::thread thread;
  // Touched only on this shard's thread (or before the thread starts / after it stops).
  std::map<TopicPartition, std::shared_ptr<Partition>> partitions;
  int64_t last_retention_ms = 0;
};

}  // namespace

struct LogManager::Impl {
  LogManagerOptions opts;
  File lock_file;
  std::vector<std::unique_ptr<Shard>> shards;
  std::unique_ptr<asio::thread_pool> flush_pool;
  std::atomic<bool> closing{false};
  bool started = false;  // shard threads are running
  bool closed = false;

  Shard& shard_for(const TopicPartition& tp) {
    return *shards[std::hash<TopicPartition>()(tp) % shards.size()];
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

  void set_hw(Partition& p) {
    if (!opts.auto_high_watermark) return;
    PartitionLog& log = *p.log;
    Offset before = log.high_watermark();
    log.set_high_watermark(log.config().flush_mode == FlushMode::durable ? log.flushed_offset()
                                                                         : log.log_end_offset());
    if (log.high_watermark() != before && opts.on_high_watermark) {
      opts.on_high_watermark(p.tp, log.high_watermark());
    }
  }

  void fail_partition(Partition& p, Error e) {
    ORDO_LOG_ERROR("{}: taken offline: {}", p.tp.to_string(), e.to_string());
    p.offline = e;
    while (!p.waiters.empty()) {
      auto w = std::move(p.waiters.front());
      p.waiters.pop_front();
      w.done(e);
    }
  }

  void complete_waiters(Partition& p) {
    Offset flushed = p.log->flushed_offset();
    while (!p.waiters.empty() && p.waiters.front().last_offset < flushed) {
      auto w = std::move(p.waiters.front());
      p.waiters.pop_front();
      w.done(std::move(w.result));
    }
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
      Result<void> r = execute_flush(ticket);
      asio::post(s.ctx, [this, &s, p, ticket = std::move(ticket), r = std::move(r)]() {
        p->flush_in_flight = false;
        if (!p->log) return;  // removed meanwhile
        if (!r) {
          fail_partition(*p, r.error());
          return;
        }
        p->log->complete_flush(ticket);
        set_hw(*p);
        complete_waiters(*p);
        // In durable mode everything written gets synced, waited for (acks=-1) or not (acks=1).
        bool behind = p->log->config().flush_mode == FlushMode::durable &&
                      p->log->flushed_offset() < p->log->log_end_offset();
        if (!p->waiters.empty() || behind || p->log->has_unflushed_sealed_segments()) {
          start_flush(s, p);
        }
      });
    });
  }

  void on_tick(Shard& s) {
    int64_t now = opts.clock->now_ms();
    bool retention = now - s.last_retention_ms >= opts.retention_check_interval_ms;
    if (retention) s.last_retention_ms = now;
    for (auto& [tp, p] : s.partitions) {
      if (p->offline) continue;
      PartitionLog& log = *p->log;
      if (log.config().flush_mode == FlushMode::interval &&
          now - p->last_flush_ms >= log.config().flush_interval_ms) {
        start_flush(s, p);
      }
      if (retention) {
        auto rolled = log.maybe_roll_by_time();
        if (!rolled) fail_partition(*p, rolled.error());
        auto deleted = log.enforce_retention();
        if (!deleted) fail_partition(*p, deleted.error());
        if (p->log && !p->offline && log.has_unflushed_sealed_segments()) start_flush(s, p);
      }
    }
  }

  void schedule_tick(Shard& s) {
    s.timer->expires_after(std::chrono::milliseconds(opts.tick_ms));
    s.timer->async_wait([this, &s](const asio::error_code& ec) {
      if (ec || closing.load()) return;
      on_tick(s);
      schedule_tick(s);
    });
  }

  // Runs fn on the shard thread and waits for its result.
  template <typename T>
  static Result<T> call(Shard& s, std::function<Result<T>()> fn) {
    std::promise<Result<T>> promise;
    auto future = promise.get_future();
    asio::post(s.ctx, [&] { promise.set_value(fn()); });
    return future.get();
  }
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

  for (int i = 0; i < options.shards; ++i) impl.shards.push_back(std::make_unique<Shard>());

  std::vector<fs::path> entries;
  for (auto it = fs::directory_iterator(options.data_dir, ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) return make_error(Errc::io, "list {}: {}", options.data_dir, ec.message());
  std::sort(entries.begin(), entries.end());
  OpenOptions open_options{.create_if_missing = false,
                           .truncate_corrupt = options.truncate_corrupt};
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

  impl.flush_pool = std::make_unique<asio::thread_pool>(size_t(options.flush_threads));
  for (auto& s : impl.shards) {
    Shard& shard = *s;
    shard.guard.emplace(shard.ctx.get_executor());
    shard.timer = std::make_unique<asio::steady_timer>(shard.ctx);
    shard.last_retention_ms = options.clock->now_ms();
    impl.schedule_tick(shard);
    shard.thread = std::thread([&shard] { shard.ctx.run(); });
  }
  impl.started = true;
  return mgr;
}

void LogManager::create(const TopicPartition& tp, const LogConfig& config, Callback<void> done) {
  if (impl_->closing) return done(Impl::closed_error());
  if (!model::is_valid_topic_name(tp.topic) || tp.partition < 0) {
    return done(make_error(Errc::invalid_argument, "invalid partition name {}", tp.to_string()));
  }
  if (auto v = config.validate(); !v) return done(v.error());
  Shard& s = impl_->shard_for(tp);
  asio::post(s.ctx, [this, &s, tp, config, done = std::move(done)] {
    if (s.partitions.count(tp)) {
      return done(make_error(Errc::already_exists, "partition {} exists", tp.to_string()));
    }
    auto log =
        PartitionLog::open(options_.data_dir + "/" + tp.to_string(), config, *options_.clock);
    if (!log) return done(log.error());
    auto p = std::make_shared<Partition>();
    p->tp = tp;
    p->log = std::move(*log);
    p->last_flush_ms = options_.clock->now_ms();
    s.partitions.emplace(tp, std::move(p));
    done(ok());
  });
}

void LogManager::remove(const TopicPartition& tp, Callback<void> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  asio::post(s.ctx, [this, &s, tp, done = std::move(done)] {
    auto it = s.partitions.find(tp);
    if (it == s.partitions.end()) {
      return done(make_error(Errc::not_found, "no partition {}", tp.to_string()));
    }
    std::shared_ptr<Partition> p = it->second;
    s.partitions.erase(it);
    Error gone = make_error(Errc::not_found, "partition {} was deleted", tp.to_string());
    while (!p->waiters.empty()) {
      auto w = std::move(p->waiters.front());
      p->waiters.pop_front();
      w.done(gone);
    }
    Result<void> r = ok();
    if (p->log) {
      r = p->log->close_and_remove();
      p->log.reset();
    } else {
      std::error_code ec;
      fs::remove_all(options_.data_dir + "/" + tp.to_string(), ec);
      if (ec) r = make_error(Errc::io, "remove {}: {}", tp.to_string(), ec.message());
    }
    done(std::move(r));
  });
}

void LogManager::append(const TopicPartition& tp, std::vector<uint8_t> batches,
                        AppendOptions options, Callback<AppendResult> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  asio::post(s.ctx, [this, &s, tp, batches = std::move(batches), options,
                     done = std::move(done)]() mutable {
    auto found = Impl::find(s, tp);
    if (!found) return done(found.error());
    std::shared_ptr<Partition> p = s.partitions.at(tp);
    auto r = p->log->append(batches, options);
    if (!r) return done(std::move(r).error());
    if (p->log->config().flush_mode == FlushMode::durable) {
      if (!options.wait_for_flush) {
        impl_->start_flush(s, p);
        return done(std::move(r));
      }
      p->waiters.push_back({r->last_offset, std::move(*r), std::move(done)});
      impl_->start_flush(s, p);
      return;
    }
    impl_->set_hw(*p);
    done(std::move(r));
    if (p->log->has_unflushed_sealed_segments()) impl_->start_flush(s, p);
  });
}

void LogManager::read(const TopicPartition& tp, ReadOptions options, Callback<ReadResult> done) {
  if (impl_->closing) return done(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  asio::post(s.ctx, [&s, tp, options, done = std::move(done)] {
    auto found = Impl::find(s, tp);
    if (!found) return done(found.error());
    done((*found)->log->read(options));
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

void LogManager::with_log(const TopicPartition& tp, std::function<void(Result<PartitionLog*>)> fn) {
  if (impl_->closing) return fn(Impl::closed_error());
  Shard& s = impl_->shard_for(tp);
  asio::post(s.ctx, [&s, tp, fn = std::move(fn)] {
    auto found = Impl::find(s, tp);
    if (!found) return fn(found.error());
    fn((*found)->log.get());
  });
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
}  // namespace

Result<void> LogManager::create_sync(const TopicPartition& tp, const LogConfig& config) {
  SyncCall<void> c;
  create(tp, config, c.callback());
  return c.wait();
}

Result<void> LogManager::remove_sync(const TopicPartition& tp) {
  SyncCall<void> c;
  remove(tp, c.callback());
  return c.wait();
}

Result<AppendResult> LogManager::append_sync(const TopicPartition& tp, std::vector<uint8_t> batches,
                                             AppendOptions options) {
  SyncCall<AppendResult> c;
  append(tp, std::move(batches), options, c.callback());
  return c.wait();
}

Result<ReadResult> LogManager::read_sync(const TopicPartition& tp, ReadOptions options) {
  SyncCall<ReadResult> c;
  read(tp, options, c.callback());
  return c.wait();
}

std::vector<PartitionStatus> LogManager::status() {
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
  impl.closing = true;
  if (!impl.started) {  // open() failed part-way: nothing runs, nothing was written
    impl.closed = true;
    impl.lock_file.close();
    return ok();
  }
  // Let in-flight syncs finish and acknowledge their waiters. Each shard checks on its own
  // thread; the bound keeps a wedged disk from hanging shutdown forever.
  for (int spin = 0; spin < 60'000; ++spin) {
    bool busy = false;
    for (auto& s : impl.shards) {
      auto b = Impl::call<bool>(*s, [&]() -> Result<bool> {
        for (auto& [tp, p] : s->partitions) {
          if (p->flush_in_flight) return true;
          if (!p->waiters.empty() && !p->offline) {
            impl.start_flush(*s, p);
            return true;
          }
        }
        return false;
      });
      busy = busy || *b;
    }
    if (!busy) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  Result<void> first_error = ok();
  for (auto& s : impl.shards) {
    auto r = Impl::call<bool>(*s, [&]() -> Result<bool> {
      s->timer->cancel();
      for (auto& [tp, p] : s->partitions) {
        if (p->offline || !p->log) continue;
        auto c = p->log->close();
        if (!c && first_error) first_error = c.error();
      }
      return true;
    });
    (void)r;
    s->guard.reset();
    s->ctx.stop();
    if (s->thread.joinable()) s->thread.join();
  }
  impl.flush_pool->join();
  impl.closed = true;
  ::flock(impl.lock_file.fd(), LOCK_UN);
  impl.lock_file.close();
  return first_error;
}

}  // namespace ordo::storage
