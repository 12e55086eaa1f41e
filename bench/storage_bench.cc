// Storage benchmark: appends and reads through LogManager, the path the broker takes (a shard
// writer thread, fdatasync on the flush pool, group commit for durable appends).
//
// Every append benchmark starts a LogManager on a fresh directory, creates one partition,
// appends a fixed number of copies of one pre-built RecordBatch and deletes everything
// afterwards. One benchmark iteration is one append (one batch); the iteration count is fixed so
// that each benchmark writes a known amount, which the fio runs in bench/run-storage-bench
// match. Time is wall-clock time (the work happens on the log's threads, not the caller's).
//
// Appenders: an appender keeps one append in flight and issues the next when it is
// acknowledged, like a producer with one request in flight. N appenders are modelled as a
// window of N appends in flight from the benchmark thread; for the log this is the same as N
// producers, and it is what lets group commit put several appends under one fdatasync.
//
// Two threadings:
//  - append/...           the LogManager runs its own shard thread and the appends come from
//                         the benchmark thread: every append is handed to the shard thread and
//                         its acknowledgement handed back (the storage.shard.mode = dedicated
//                         broker, or any caller that is not the shard);
//  - append/.../on:shard (and read/.../on:shard, the same for reads)
//                         the shard runs on an io_context of the benchmark's (as the broker's
//                         network thread is in storage.shard.mode = network) and the appends
//                         are issued by a task on that same context, so a page-cache append is
//                         a direct call that returns acknowledged. Durable acknowledgements
//                         still come back from the flush pool. One benchmark iteration is the
//                         whole run here (the work happens in that task); bytes/s are the same.
//                         These appends borrow one buffer (LogManager::append_borrowed, what
//                         the broker does with a produce request's frame); the handed-over
//                         ones give the log a fresh copy of the batch each.
//
// Flags (before the Google Benchmark ones):
//   --quick        smaller sizes, for a smoke run
//   --print-sizes  print the byte counts as shell assignments and exit (the fio runs use them)
// Environment: ORDO_BENCH_DIR, the data directory (default: bench-data in the build tree).
// It must not be tmpfs: page-cache-only "disk" figures would be meaningless.

#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "base/clock.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "base/log.h"
#include "base/random.h"
#include "cluster/partitions.h"
#include "model/record_batch.h"
#include "storage/log_manager.h"

#ifndef ORDO_BENCH_DEFAULT_DIR
#define ORDO_BENCH_DEFAULT_DIR "bench-data"
#endif

namespace {

namespace fs = std::filesystem;
using ordo::Offset;
using ordo::Result;
using ordo::storage::AppendResult;
using ordo::storage::FlushMode;
using ordo::storage::LogConfig;
using ordo::storage::LogManager;
using ordo::storage::Preallocate;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;
constexpr int64_t kGiB = 1024 * kMiB;
constexpr int kValueBytes = 100;
constexpr int64_t kReadMaxBytes = kMiB;

// How much each benchmark writes. The fio jobs use the same numbers (--print-sizes).
struct Sizes {
  int64_t buffered_bytes;       // flush none / interval appends
  int64_t durable_small_bytes;  // durable appends of 16 KiB batches
  int64_t durable_large_bytes;  // durable appends of 1 MiB batches
  int64_t read_bytes;           // the log read back front to back
};
constexpr Sizes kFullSizes{1 * kGiB, 256 * kMiB, 1 * kGiB, 1 * kGiB};
constexpr Sizes kQuickSizes{64 * kMiB, 16 * kMiB, 64 * kMiB, 64 * kMiB};

Sizes g_sizes = kFullSizes;
std::string g_root;  // every benchmark works in a fresh directory under this one
std::atomic<int> g_dir_seq{0};

const ordo::model::TopicPartition kTp{"bench", 0};

std::string size_name(int64_t bytes) {
  if (bytes % kMiB == 0) return std::to_string(bytes / kMiB) + "MiB";
  return std::to_string(bytes / kKiB) + "KiB";
}

// A RecordBatch of exactly target bytes: as many records with 100-byte values as fit, and one
// shorter record that fills the rest (so that "16 KiB" is 16,384 bytes and appends stay
// page-aligned, as fio's bs=16K writes are). Falls back to at most target bytes if no last
// record fits exactly (varint lengths can skip a byte).
struct Batch {
  std::vector<uint8_t> bytes;
  int64_t records = 0;
};

Batch make_batch(int64_t target) {
  ordo::Random rnd(42);
  const int64_t now = ordo::SystemClock::instance().now_ms();
  auto random_value = [&rnd](int64_t n) {
    std::string v(size_t(n), 'x');
    for (auto& c : v) c = char('a' + rnd.below(26));
    return v;
  };
  std::vector<std::string> values;
  auto build = [&](const std::vector<std::string>& vs) {
    ordo::model::RecordBatchBuilder builder;
    for (const auto& v : vs) builder.add(std::nullopt, v, now);
    return builder.build();
  };
  // Whole 100-byte records: the count from the size overshoots (each record takes a little
  // more than its value), so shrink until the batch fits.
  int64_t n = std::max<int64_t>(
      1, (target - int64_t(ordo::model::batch_layout::kHeaderSize)) / kValueBytes);
  std::vector<uint8_t> bytes;
  for (;;) {
    values.clear();
    for (int64_t i = 0; i < n; ++i) values.push_back(random_value(kValueBytes));
    bytes = build(values);
    if (int64_t(bytes.size()) <= target || n == 1) break;
    n -= (int64_t(bytes.size()) - target) / kValueBytes + 1;
    n = std::max<int64_t>(n, 1);
  }
  // One record for the rest, its value shrinking until the batch is exactly target. If the
  // rest is too small for a record, one whole record makes room first.
  for (int attempt = 0; attempt < 2 && int64_t(bytes.size()) < target; ++attempt) {
    if (attempt == 1) {
      if (values.size() < 2) break;
      values.pop_back();
    }
    int64_t room = target - int64_t(build(values).size());
    for (int64_t len = room; len >= 0; --len) {
      values.push_back(random_value(len));
      std::vector<uint8_t> padded = build(values);
      values.pop_back();
      if (int64_t(padded.size()) == target) {
        return Batch{std::move(padded), int64_t(values.size()) + 1};
      }
      if (int64_t(padded.size()) < target) break;
    }
  }
  return Batch{std::move(bytes), n};
}

// Refuses a data directory on tmpfs or ramfs.
bool on_memory_filesystem(const std::string& path) {
  struct statfs st;
  if (::statfs(path.c_str(), &st) != 0) return false;
  constexpr long kTmpfsMagic = 0x01021994;
  constexpr long kRamfsMagic = 0x858458f6;
  return long(st.f_type) == kTmpfsMagic || long(st.f_type) == kRamfsMagic;
}

// This machine is a VM whose idle guest memory goes back to the host: the first write into
// such pages costs several times more than into pages in use (~0.5 vs ~5 GB/s measured with
// fio). A broker's page cache is in steady use, so before each append benchmark `bytes` of
// memory are touched by writing and deleting a scratch file (deleted dirty pages are dropped,
// never written). bench/run-storage-bench does the same before its fio page-cache jobs.
void warm_page_cache_memory(int64_t bytes) {
  std::string path = g_root + "/warmup-" + std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::vector<uint8_t> zeros(static_cast<size_t>(kMiB));
  for (int64_t done = 0; done < bytes; done += kMiB) {
    if (::pwrite(fd, zeros.data(), zeros.size(), done) < 0) break;
  }
  ::close(fd);
  ::unlink(path.c_str());
}

// A fresh directory for one benchmark, deleted (and the deletion synced, so that the next
// benchmark starts on a quiet disk) when it goes out of scope.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& what)
      : path_(g_root + "/" + what + "-" + std::to_string(::getpid()) + "-" +
              std::to_string(g_dir_seq++)) {
    std::error_code ec;
    fs::remove_all(path_, ec);
    fs::create_directories(path_, ec);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
    int fd = ::open(g_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      ::syncfs(fd);
      ::close(fd);
    }
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A LogManager with one partition; the partition is deleted (without a final flush) and the
// manager closed at the end.
class BenchLog {
 public:
  // shard_context: run the one shard on it (its thread must run it until the BenchLog is
  // gone) instead of a thread of the manager's own.
  static std::optional<BenchLog> open(const ScratchDir& dir, const LogConfig& config,
                                      std::string* error,
                                      asio::io_context* shard_context = nullptr) {
    ordo::storage::LogManagerOptions opts;
    opts.data_dir = dir.path();
    opts.shards = 1;
    opts.flush_threads = 2;
    opts.high_watermark = [](const ordo::model::TopicPartition&,
                             const ordo::storage::LogProgress& p) {
      return ordo::cluster::LocalPartitions::decide_high_watermark(p);
    };
    opts.default_config = config;
    if (shard_context) opts.shard_contexts = {shard_context};
    auto mgr = LogManager::open(opts);
    if (!mgr) {
      *error = mgr.error().to_string();
      return std::nullopt;
    }
    if (auto c = (*mgr)->create_sync(kTp, config); !c) {
      *error = c.error().to_string();
      return std::nullopt;
    }
    return BenchLog(std::move(*mgr));
  }
  BenchLog(BenchLog&&) = default;
  ~BenchLog() {
    if (!mgr_) return;
    (void)mgr_->remove_sync(kTp);
    (void)mgr_->close();
  }
  LogManager& operator*() { return *mgr_; }
  LogManager* operator->() { return mgr_.get(); }

 private:
  explicit BenchLog(std::unique_ptr<LogManager> mgr) : mgr_(std::move(mgr)) {}
  std::unique_ptr<LogManager> mgr_;
};

// Bounds the appends in flight; the callbacks (on the shard thread) release their slot.
class Window {
 public:
  explicit Window(int limit) : limit_(limit) {}
  void acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ < limit_; });
    ++in_flight_;
  }
  void release(const Result<AppendResult>& r) {
    std::lock_guard lock(mu_);
    if (!r && !error_) error_ = r.error().to_string();
    --in_flight_;
    cv_.notify_all();
  }
  void drain() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
  }
  std::optional<std::string> error() {
    std::lock_guard lock(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int limit_;
  int in_flight_ = 0;
  std::optional<std::string> error_;
};

// Appends `count` copies of batch with `appenders` in flight, waiting for the last one.
// Returns an error message on failure.
std::optional<std::string> append_copies(LogManager& mgr, const Batch& batch, int64_t count,
                                         int appenders) {
  Window window(appenders);
  for (int64_t i = 0; i < count; ++i) {
    window.acquire();
    mgr.append(kTp, batch.bytes, {}, [&window](Result<AppendResult> r) { window.release(r); });
  }
  window.drain();
  return window.error();
}

struct AppendCase {
  FlushMode mode;
  int64_t batch_bytes;
  int appenders;
  Preallocate prealloc;
  int64_t total_bytes;
  bool on_shard = false;  // the append/.../on:shard threading (see the top of the file)
};

// A thread of the benchmark's that runs an io_context, as a broker network thread does.
class CallerThread {
 public:
  CallerThread() : guard_(ctx_.get_executor()), thread_([this] { ctx_.run(); }) {}
  ~CallerThread() {
    guard_.reset();
    ctx_.stop();
    thread_.join();
  }
  CallerThread(const CallerThread&) = delete;
  CallerThread& operator=(const CallerThread&) = delete;
  asio::io_context& context() { return ctx_; }

 private:
  asio::io_context ctx_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;
};

// Appends `total` copies of a batch with `appenders` in flight, entirely on the shard's
// thread: pump() runs in a task on the shard's context. A page-cache append completes inline
// (its callback runs before append() returns), so the callback only counts and the loop in
// pump() issues the next one; a durable acknowledgement arrives later from the flush pool, and
// its callback calls pump() again.
class ShardAppender {
 public:
  ShardAppender(LogManager& mgr, const Batch& batch, int64_t total, int appenders)
      : mgr_(mgr), buffer_(batch.bytes), total_(total), appenders_(appenders) {}

  void pump() {
    if (pumping_) return;  // called from an inline callback: the loop below goes on
    pumping_ = true;
    while (issued_ < total_ && in_flight_ < appenders_ && !error_) {
      ++issued_;
      ++in_flight_;
      // On the shard's thread a borrowed append is written before the call returns, so one
      // buffer serves every append (the log rewrites its offset fields each time), as fio
      // writes from one buffer; the broker appends a produce request's frame the same way.
      mgr_.append_borrowed(kTp, buffer_, {}, [this](Result<AppendResult> r) {
        --in_flight_;
        if (!r && !error_) error_ = r.error().to_string();
        pump();
      });
    }
    pumping_ = false;
    if (in_flight_ == 0 && (issued_ == total_ || error_) && !finished_) {
      finished_ = true;
      done_.set_value();
    }
  }
  // On the benchmark thread: waits until every append has been acknowledged.
  void wait() { done_.get_future().wait(); }
  int64_t issued() const { return issued_; }
  const std::optional<std::string>& error() const { return error_; }

 private:
  LogManager& mgr_;
  std::vector<uint8_t> buffer_;
  const int64_t total_;
  const int appenders_;
  int64_t issued_ = 0;
  int in_flight_ = 0;
  bool pumping_ = false;
  bool finished_ = false;
  std::optional<std::string> error_;
  std::promise<void> done_;
};

// The log settings of an append case (1 GiB segments: no roll during a run).
LogConfig append_config(const AppendCase& c) {
  LogConfig config;
  config.flush_mode = c.mode;
  config.flush_interval_ms = 1000;
  config.preallocate = c.prealloc;
  config.preallocate_bytes = 16 * kMiB;
  config.segment_bytes = 1 * kGiB;
  return config;
}

// append/.../on:shard: the whole run is one benchmark iteration (see the top of the file).
void BM_AppendOnShard(benchmark::State& state, AppendCase c, int64_t count) {
  const Batch batch = make_batch(c.batch_bytes);
  const LogConfig config = append_config(c);
  warm_page_cache_memory(c.total_bytes);
  ScratchDir dir("append");
  CallerThread shard;  // outlives the log: the manager closes while it still runs
  std::string error;
  auto log = BenchLog::open(dir, config, &error, &shard.context());
  if (!log) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::optional<ShardAppender> appender;
  for (auto _ : state) {
    appender.emplace(**log, batch, count, c.appenders);
    asio::post(shard.context(), [&] { appender->pump(); });
    appender->wait();
  }
  // Read on this thread after wait(): the promise orders the shard thread's writes before.
  if (appender->error()) {
    state.SkipWithError(appender->error()->c_str());
    return;
  }
  const int64_t appended = appender->issued() * int64_t(state.iterations());
  state.SetBytesProcessed(appended * int64_t(batch.bytes.size()));
  state.counters["records_per_second"] =
      benchmark::Counter(double(appended * batch.records), benchmark::Counter::kIsRate);
  state.counters["batch_bytes"] = double(batch.bytes.size());
  state.counters["records_per_batch"] = double(batch.records);
  state.counters["appends"] = double(appended);
}

void BM_Append(benchmark::State& state, AppendCase c) {
  const Batch batch = make_batch(c.batch_bytes);
  const LogConfig config = append_config(c);
  warm_page_cache_memory(c.total_bytes);
  ScratchDir dir("append");
  std::string error;
  auto log = BenchLog::open(dir, config, &error);
  if (!log) {
    state.SkipWithError(error.c_str());
    return;
  }

  Window window(c.appenders);
  const int64_t last = state.max_iterations;
  int64_t issued = 0;
  for (auto _ : state) {
    window.acquire();
    // The log writes offsets into the buffer it is given, so every append gets its own copy
    // (as a broker gets a fresh buffer per produce request).
    std::vector<uint8_t> copy(batch.bytes);
    (*log)->append(kTp, std::move(copy), {},
                   [&window](Result<AppendResult> r) { window.release(r); });
    // The last iteration waits for every acknowledgement, so the timed span covers them.
    if (++issued == last) window.drain();
  }
  window.drain();
  if (auto e = window.error()) {
    state.SkipWithError(e->c_str());
    return;
  }
  state.SetBytesProcessed(issued * int64_t(batch.bytes.size()));
  state.counters["records_per_second"] =
      benchmark::Counter(double(issued * batch.records), benchmark::Counter::kIsRate);
  state.counters["batch_bytes"] = double(batch.bytes.size());
  state.counters["records_per_batch"] = double(batch.records);
}

struct ReadCase {
  int64_t batch_bytes;
  bool cold;  // drop the log from the page cache before reading
  int64_t total_bytes;
  bool on_shard = false;  // read/.../on:shard: the reads run on the shard's own thread
};

// Writes the log (flush none, not timed), then reads it front to back in 1 MiB fetches: each
// LogManager::read returns a FileSlice, which is pread into a buffer (what a fetch served
// without sendfile does).
void BM_Read(benchmark::State& state, ReadCase c) {
  const Batch batch = make_batch(c.batch_bytes);
  const int64_t batch_count = c.total_bytes / c.batch_bytes;
  LogConfig config;
  config.flush_mode = FlushMode::none;
  config.preallocate = Preallocate::none;
  config.segment_bytes = 1 * kGiB;
  ScratchDir dir("read");
  std::string error;
  CallerThread shard;  // outlives the log; runs the shard in the on:shard case
  auto log = BenchLog::open(dir, config, &error, c.on_shard ? &shard.context() : nullptr);
  if (!log) {
    state.SkipWithError(error.c_str());
    return;
  }
  if (auto e = append_copies(**log, batch, batch_count, 4)) {
    state.SkipWithError(e->c_str());
    return;
  }
  if (c.cold) {
    std::promise<Result<void>> flushed;
    (*log)->with_log(kTp, [&](Result<ordo::storage::PartitionLog*> l) {
      flushed.set_value(l ? (*l)->flush() : Result<void>(l.error()));
    });
    if (auto r = flushed.get_future().get(); !r) {
      state.SkipWithError(r.error().to_string().c_str());
      return;
    }
    std::error_code ec;
    for (const auto& entry : fs::recursive_directory_iterator(dir.path(), ec)) {
      if (entry.path().extension() != ".log") continue;
      int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
      ::close(fd);
    }
  }

  const int64_t log_bytes = batch_count * int64_t(batch.bytes.size());
  std::vector<uint8_t> buf(size_t(std::max<int64_t>(kReadMaxBytes, int64_t(batch.bytes.size()))));
  Offset next{0};
  const Offset end{batch_count * batch.records};
  int64_t bytes = 0;
  int64_t records = 0;
  // One fetch and what a consumer does with it: pread the slice into a buffer and walk the
  // batch headers for the next offset. Returns an error message, or nothing.
  auto consume = [&](const Result<ordo::storage::ReadResult>& r) -> std::optional<std::string> {
    if (!r) return r.error().to_string();
    if (r->slice.size == 0) return std::string("read returned nothing before the log end");
    std::span<uint8_t> data(buf.data(), size_t(r->slice.size));
    if (auto p = r->slice.file->pread_exact(data, r->slice.position); !p) {
      return p.error().to_string();
    }
    size_t pos = 0;
    while (pos + ordo::model::batch_layout::kHeaderSize <= data.size()) {
      const uint8_t* h = data.data() + pos;
      namespace L = ordo::model::batch_layout;
      int64_t base = int64_t(ordo::load_be64(h + L::kBaseOffset));
      int32_t delta = int32_t(ordo::load_be32(h + L::kLastOffsetDelta));
      records += int32_t(ordo::load_be32(h + L::kRecordCount));
      next = Offset(base + delta + 1);
      pos += size_t(int32_t(ordo::load_be32(h + L::kBatchLength))) + L::kLogOverhead;
    }
    bytes += r->slice.size;
    if (next >= end) next = Offset(0);  // wrap (only if more iterations than one pass)
    return std::nullopt;
  };
  const ordo::storage::ReadOptions first{.start = Offset(0), .max_bytes = kReadMaxBytes};
  if (!c.on_shard) {
    // Each fetch is handed to the shard thread and waited for.
    for (auto _ : state) {
      ordo::storage::ReadOptions o = first;
      o.start = next;
      if (auto e = consume((*log)->read_sync(kTp, o))) {
        state.SkipWithError(e->c_str());
        break;
      }
    }
  } else {
    // read/.../on:shard: one iteration is the whole pass, run by a task on the shard's own
    // thread, where each read() is a direct call whose callback runs before it returns (as a
    // fetch on the partition's network thread is).
    for (auto _ : state) {
      std::promise<std::optional<std::string>> done;
      asio::post(shard.context(), [&] {
        int64_t start_bytes = bytes;
        while (bytes - start_bytes < log_bytes) {
          ordo::storage::ReadOptions o = first;
          o.start = next;
          std::optional<Result<ordo::storage::ReadResult>> got;
          (*log)->read(kTp, o,
                       [&](Result<ordo::storage::ReadResult> r) { got.emplace(std::move(r)); });
          if (!got)
            return done.set_value(
                std::string("a read on the shard's thread did not complete inline"));
          if (auto e = consume(*got)) return done.set_value(e);
        }
        done.set_value(std::nullopt);
      });
      if (auto e = done.get_future().get()) {
        state.SkipWithError(e->c_str());
        break;
      }
    }
  }
  if (state.error_occurred()) return;
  if (bytes < log_bytes) {
    state.SkipWithError("the reads did not cover the whole log");
    return;
  }
  state.SetBytesProcessed(bytes);
  state.counters["records_per_second"] =
      benchmark::Counter(double(records), benchmark::Counter::kIsRate);
  state.counters["batch_bytes"] = double(batch.bytes.size());
}

// Fetches needed to read batch_count batches of batch_bytes once, 1 MiB at a time (a fetch
// returns the whole batches that fit, at least one).
int64_t reads_per_pass(int64_t batch_bytes_exact, int64_t batch_count) {
  int64_t per_read = std::max<int64_t>(1, kReadMaxBytes / batch_bytes_exact);
  return (batch_count + per_read - 1) / per_read;
}

// crc32c/<size>[/impl:sse42]: the checksum every append verifies, with the implementation the
// CPU selects (carry-less multiplication where it has VPCLMULQDQ), or forced onto SSE4.2.
void BM_Crc32c(benchmark::State& state, int64_t bytes, bool sse42) {
  if (sse42 && !ordo::crc32c_has_sse42()) {
    state.SkipWithError("no SSE4.2");
    return;
  }
  std::vector<uint8_t> data(static_cast<size_t>(bytes));
  ordo::Random rnd(7);
  for (auto& b : data) b = uint8_t(rnd.next());
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = sse42 ? ordo::crc32c_sse42(0, data.data(), data.size())
                : ordo::crc32c(0, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(state.iterations() * int64_t(data.size()));
  // Records of ~110 bytes (a 100-byte value plus framing) checked per second, for scale.
  state.counters["records_per_second"] = benchmark::Counter(
      double(state.iterations()) * double(kMiB) / 110.0, benchmark::Counter::kIsRate);
}

std::string mode_name(FlushMode m) {
  return std::string(ordo::storage::flush_mode_name(m));
}
std::string prealloc_name(Preallocate p) {
  return std::string(ordo::storage::preallocate_name(p));
}

void register_append(const AppendCase& c) {
  // The batch actually built is a little under the target; the iteration count makes the
  // total come close to total_bytes.
  int64_t exact = int64_t(make_batch(c.batch_bytes).bytes.size());
  int64_t iterations = std::max<int64_t>(1, c.total_bytes / exact);
  std::string name = "append/flush:" + mode_name(c.mode) + "/batch:" + size_name(c.batch_bytes) +
                     "/appenders:" + std::to_string(c.appenders) +
                     "/prealloc:" + prealloc_name(c.prealloc);
  if (c.on_shard) {
    name += "/on:shard";
    benchmark::RegisterBenchmark(name.c_str(), BM_AppendOnShard, c, iterations)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    return;
  }
  benchmark::RegisterBenchmark(name.c_str(), BM_Append, c)
      ->Iterations(iterations)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_read(const ReadCase& c) {
  int64_t exact = int64_t(make_batch(c.batch_bytes).bytes.size());
  int64_t iterations = c.on_shard ? 1 : reads_per_pass(exact, c.total_bytes / c.batch_bytes);
  std::string name =
      std::string("read/cache:") + (c.cold ? "cold" : "hot") + "/batch:" + size_name(c.batch_bytes);
  if (c.on_shard) name += "/on:shard";
  benchmark::RegisterBenchmark(name.c_str(), BM_Read, c)
      ->Iterations(iterations)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

void register_all() {
  const Preallocate kDefaultPrealloc = LogConfig{}.preallocate;
  // Buffered: the page-cache path. flush none with both preallocation modes; interval with
  // the shipped default only.
  for (int64_t batch : {16 * kKiB, kMiB}) {
    for (Preallocate p : {Preallocate::none, Preallocate::zero_fill}) {
      for (int appenders : {1, 4, 16}) {
        register_append({FlushMode::none, batch, appenders, p, g_sizes.buffered_bytes});
      }
    }
  }
  // The same page-cache appends issued on the shard's own thread (default preallocation).
  for (int64_t batch : {16 * kKiB, kMiB}) {
    for (int appenders : {1, 4}) {
      register_append(
          {FlushMode::none, batch, appenders, kDefaultPrealloc, g_sizes.buffered_bytes, true});
    }
  }
  for (int64_t batch : {16 * kKiB, kMiB}) {
    for (int appenders : {1, 4}) {
      register_append(
          {FlushMode::interval, batch, appenders, kDefaultPrealloc, g_sizes.buffered_bytes});
    }
  }
  // Durable: group commit with 1, 4 and 16 appenders, both preallocation modes.
  for (int64_t batch : {16 * kKiB, kMiB}) {
    int64_t total = batch == kMiB ? g_sizes.durable_large_bytes : g_sizes.durable_small_bytes;
    for (Preallocate p : {Preallocate::none, Preallocate::zero_fill}) {
      for (int appenders : {1, 4, 16}) {
        register_append({FlushMode::durable, batch, appenders, p, total});
      }
    }
    for (int appenders : {1, 16}) {
      register_append({FlushMode::durable, batch, appenders, kDefaultPrealloc, total, true});
    }
  }
  for (bool cold : {false, true}) {
    for (int64_t batch : {16 * kKiB, kMiB}) register_read({batch, cold, g_sizes.read_bytes});
  }
  // The same reads on the shard's own thread (a fetch served by the partition's network thread).
  for (bool cold : {false, true}) {
    for (int64_t batch : {16 * kKiB, kMiB}) {
      register_read({batch, cold, g_sizes.read_bytes, true});
    }
  }
  for (int64_t bytes : {16 * kKiB, kMiB}) {
    for (bool sse42 : {false, true}) {
      const std::string name = std::string("crc32c/") + (bytes == kMiB ? "1MiB" : "16KiB") +
                               (sse42 ? "/impl:sse42" : "");
      benchmark::RegisterBenchmark(name.c_str(), BM_Crc32c, bytes, sse42)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool print_sizes = false;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--print-sizes") == 0) {
      print_sizes = true;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  g_sizes = quick ? kQuickSizes : kFullSizes;
  if (print_sizes) {
    // small_batch_bytes: the exact size of the "16KiB" batch (a little under 16 KiB, so
    // its appends are not page-aligned), for a fio job that writes the same sizes.
    std::printf(
        "buffered_bytes=%lld\ndurable_small_bytes=%lld\ndurable_large_bytes=%lld\n"
        "read_bytes=%lld\nsmall_batch_bytes=%lld\n",
        (long long)g_sizes.buffered_bytes, (long long)g_sizes.durable_small_bytes,
        (long long)g_sizes.durable_large_bytes, (long long)g_sizes.read_bytes,
        (long long)make_batch(16 * kKiB).bytes.size());
    return 0;
  }

  if (std::getenv("ORDO_LOG_LEVEL") == nullptr) ordo::set_log_threshold(ordo::LogLevel::warn);
  const char* env_dir = std::getenv("ORDO_BENCH_DIR");
  g_root = (env_dir && *env_dir) ? env_dir : ORDO_BENCH_DEFAULT_DIR;
  std::error_code ec;
  bool created_root = !fs::exists(g_root, ec);
  fs::create_directories(g_root, ec);
  if (ec) {
    std::fprintf(stderr, "storage_bench: cannot create %s: %s\n", g_root.c_str(),
                 ec.message().c_str());
    return 2;
  }
  g_root = fs::canonical(g_root, ec).string();
  if (on_memory_filesystem(g_root)) {
    std::fprintf(stderr,
                 "storage_bench: %s is on tmpfs/ramfs; set ORDO_BENCH_DIR to a directory on "
                 "the disk to measure\n",
                 g_root.c_str());
    return 2;
  }

  benchmark::AddCustomContext("ordo_data_dir", g_root);
  benchmark::AddCustomContext("ordo_quick", quick ? "true" : "false");
  benchmark::AddCustomContext("ordo_default_preallocate", prealloc_name(LogConfig{}.preallocate));
  benchmark::AddCustomContext("ordo_buffered_bytes", std::to_string(g_sizes.buffered_bytes));
  benchmark::AddCustomContext("ordo_durable_small_bytes",
                              std::to_string(g_sizes.durable_small_bytes));
  benchmark::AddCustomContext("ordo_durable_large_bytes",
                              std::to_string(g_sizes.durable_large_bytes));
  benchmark::AddCustomContext("ordo_read_bytes", std::to_string(g_sizes.read_bytes));
  register_all();

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  size_t ran = benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (created_root) fs::remove(g_root, ec);  // only if empty
  return ran > 0 ? 0 : 1;
}
