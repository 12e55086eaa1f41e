#include "storage/log_manager.h"

#include <sys/resource.h>

#include <gtest/gtest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "compression/records.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {
namespace {

using namespace std::chrono_literals;
using model::TopicPartition;
using testing::make_batch;
using testing::read_slice_bytes;
using testing::TempDir;
using testing::values_of;

// The tests play the partition's owner: a single node's high watermark follows what the
// flush policy makes visible (cluster::LocalPartitions decides the same in the broker).
std::optional<Offset> follow_flush_policy(const LogProgress& p) {
  Offset hw = p.flush_mode == FlushMode::durable ? p.durable : p.appended;
  if (hw == p.high_watermark) return std::nullopt;
  return hw;
}

LogManagerOptions options_for(const std::string& dir, FlushMode mode) {
  LogManagerOptions o;
  o.high_watermark = [](const TopicPartition&, const LogProgress& p) {
    return follow_flush_policy(p);
  };
  o.data_dir = dir;
  o.shards = 2;
  o.default_config.flush_mode = mode;
  o.default_config.segment_bytes = 64 * 1024;
  o.default_config.preallocate_bytes = 64 * 1024;
  return o;
}

testing::SliceReader slices_of(LogManager& mgr, const TopicPartition& tp) {
  return [&mgr, tp](Offset next) -> Result<FileSlice> {
    auto r = mgr.read_sync(tp, {.start = next, .max_bytes = 64 * 1024});
    if (!r) return std::move(r).error();
    return r->slice;
  };
}

std::vector<std::string> consume_all(LogManager& mgr, const TopicPartition& tp) {
  std::vector<std::string> out;
  testing::for_each_batch(slices_of(mgr, tp), Offset(0), [&](const model::RecordBatchView& v) {
    auto vals = values_of(std::vector<uint8_t>(v.bytes().begin(), v.bytes().end()));
    out.insert(out.end(), vals.begin(), vals.end());
  });
  return out;
}

TEST(LogManager, DurableAppendWithoutWaitingIsSyncedRightAfterAndMovesTheHighWatermark) {
  // acks=1 on a durable log: the append completes once written; the sync follows on its own
  // and reports the progress to the owner, whose decision moves the high watermark.
  TempDir dir;
  auto o = options_for(dir.path(), FlushMode::durable);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int64_t> reported;
  o.high_watermark = [&](const TopicPartition&, const LogProgress& p) {
    auto hw = follow_flush_policy(p);
    if (hw) {
      std::lock_guard lock(mu);
      reported.push_back(hw->value());
      cv.notify_all();
    }
    return hw;
  };
  o.reserved_names = {"not-a-partition"};
  std::filesystem::create_directories(dir.path());
  std::ofstream(dir.path() + "/not-a-partition") << "someone else's file";
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  TopicPartition tp{"acks1", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
  AppendOptions no_wait;
  no_wait.wait_for_flush = false;
  for (int i = 0; i < 5; ++i) {
    auto r = (*mgr)->append_sync(tp, make_batch(2, "w" + std::to_string(i)), no_wait);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->first_offset, Offset(2 * i));
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30),
                            [&] { return !reported.empty() && reported.back() == 10; }));
    EXPECT_TRUE(std::is_sorted(reported.begin(), reported.end()));
  }
  auto st = (*mgr)->status();
  ASSERT_EQ(st.size(), 1u);  // the reserved file is not a partition (and not reported)
  EXPECT_EQ(st[0].flushed_offset, Offset(10));
  EXPECT_EQ(st[0].high_watermark, Offset(10));
  EXPECT_EQ(consume_all(**mgr, tp).size(), 10u);
  ASSERT_TRUE((*mgr)->close());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/not-a-partition"));
}

TEST(LogManager, TheHighWatermarkMovesOnlyWhereThePartitionsOwnerSaysSo) {
  // Storage reports what is written and what is durable; the owner decides. Here an owner
  // that holds the high watermark one offset behind the log end, then one that says nothing.
  TempDir dir;
  auto o = options_for(dir.path(), FlushMode::none);
  std::atomic<bool> decide{true};
  std::vector<std::pair<int64_t, int64_t>> seen;  // (appended, durable), on the shard thread
  std::mutex mu;
  o.high_watermark = [&](const TopicPartition&, const LogProgress& p) -> std::optional<Offset> {
    std::lock_guard lock(mu);
    seen.emplace_back(p.appended.value(), p.durable.value());
    if (!decide.load()) return std::nullopt;
    return Offset(p.appended.value() - 1);
  };
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  TopicPartition tp{"owned", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
  ASSERT_TRUE((*mgr)->append_sync(tp, make_batch(3, "a")));
  auto r = (*mgr)->read_sync(tp, {.start = Offset(0)});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->log_end_offset, Offset(3));
  EXPECT_EQ(r->high_watermark, Offset(2));
  decide = false;
  ASSERT_TRUE((*mgr)->append_sync(tp, make_batch(3, "b")));
  r = (*mgr)->read_sync(tp, {.start = Offset(0)});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->log_end_offset, Offset(6));
  EXPECT_EQ(r->high_watermark, Offset(2));  // reported, not decided: unchanged
  {
    std::lock_guard lock(mu);
    ASSERT_GE(seen.size(), 2u);
    EXPECT_EQ(seen[0].first, 3);
    EXPECT_EQ(seen[1].first, 6);
  }
  ASSERT_TRUE((*mgr)->close());
}

TEST(LogManager, WithoutAnOwnerThatDecidesTheHighWatermarkStaysAtTheStart) {
  TempDir dir;
  auto o = options_for(dir.path(), FlushMode::durable);
  o.high_watermark = nullptr;
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  TopicPartition tp{"unowned", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
  auto a = (*mgr)->append_sync(tp, make_batch(2, "x"));  // waits for its sync
  ASSERT_TRUE(a) << a.error().to_string();
  auto st = (*mgr)->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].flushed_offset, Offset(2));
  EXPECT_EQ(st[0].high_watermark, Offset(0));
  ASSERT_TRUE((*mgr)->close());
}

TEST(LogManager, DurableAppendsFromManyThreadsShareSyncs) {
  TempDir dir;
  auto mgr = LogManager::open(options_for(dir.path(), FlushMode::durable));
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  TopicPartition tp{"orders", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
  EXPECT_EQ((*mgr)->create_sync(tp, (*mgr)->options().default_config).error().code,
            Errc::already_exists);

  constexpr int kThreads = 8, kPerThread = 200;
  std::atomic<int> acked{0};
  std::mutex mu;
  std::vector<Offset> firsts;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = (*mgr)->append_sync(tp, make_batch(2, fmt::format("t{}-{}", t, i)));
        ASSERT_TRUE(r) << r.error().to_string();
        // Acknowledged means durable: the high watermark (= flushed offset) covers it.
        std::lock_guard lock(mu);
        firsts.push_back(r->first_offset);
        ++acked;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(acked.load(), kThreads * kPerThread);
  std::sort(firsts.begin(), firsts.end());
  for (size_t i = 0; i < firsts.size(); ++i) EXPECT_EQ(firsts[i], Offset(int64_t(2 * i)));
  auto st = (*mgr)->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].log_end_offset, Offset(2 * kThreads * kPerThread));
  EXPECT_EQ(st[0].flushed_offset, st[0].log_end_offset);
  EXPECT_EQ(st[0].high_watermark, st[0].log_end_offset);
  EXPECT_EQ(consume_all(**mgr, tp).size(), size_t(2 * kThreads * kPerThread));
  ASSERT_TRUE((*mgr)->close());
}

TEST(LogManager, ReopensPartitionsAndLocksTheDataDir) {
  TempDir dir;
  auto opts = options_for(dir.path(), FlushMode::none);
  {
    auto mgr = LogManager::open(opts);
    ASSERT_TRUE(mgr);
    for (int p = 0; p < 4; ++p) {
      TopicPartition tp{"t", p};
      ASSERT_TRUE((*mgr)->create_sync(tp, opts.default_config));
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE((*mgr)->append_sync(tp, make_batch(3, fmt::format("p{}b{}", p, i))));
      }
    }
    auto second = LogManager::open(opts);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::busy);
    ASSERT_TRUE((*mgr)->close());
  }
  auto mgr = LogManager::open(opts);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  auto st = (*mgr)->status();
  ASSERT_EQ(st.size(), 4u);
  for (int p = 0; p < 4; ++p) {
    EXPECT_EQ(st[size_t(p)].tp, (TopicPartition{"t", p}));
    EXPECT_EQ(st[size_t(p)].log_end_offset, Offset(30));
    auto vals = consume_all(**mgr, {"t", p});
    ASSERT_EQ(vals.size(), 30u);
    EXPECT_EQ(vals.front(), fmt::format("p{}b0-0", p));
  }
  ASSERT_TRUE((*mgr)->remove_sync({"t", 2}));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/t-2"));
  EXPECT_EQ((*mgr)->read_sync({"t", 2}, {.start = Offset(0)}).error().code, Errc::not_found);
  EXPECT_EQ((*mgr)->status().size(), 3u);
}

TEST(LogManager, ACloseMarksEveryLogCleanAndTheNextOpenConsumesTheMarkers) {
  // The close writes every log's state unsynced and syncs the filesystem twice; what it leaves
  // must still be a clean close: a marker per partition, removed again by the next open.
  TempDir dir;
  auto opts = options_for(dir.path(), FlushMode::durable);
  opts.shards = 3;
  auto marker = [&](int p) {
    return std::filesystem::exists(fmt::format("{}/t-{}/clean-shutdown", dir.path(), p));
  };
  {
    auto mgr = LogManager::open(opts);
    ASSERT_TRUE(mgr);
    for (int p = 0; p < 6; ++p) {
      ASSERT_TRUE((*mgr)->create_sync({"t", p}, opts.default_config));
      ASSERT_TRUE((*mgr)->append_sync({"t", p}, make_batch(2, fmt::format("p{}", p))));
    }
    ASSERT_TRUE((*mgr)->close());
  }
  for (int p = 0; p < 6; ++p) EXPECT_TRUE(marker(p)) << p;
  auto mgr = LogManager::open(opts);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  for (int p = 0; p < 6; ++p) {
    EXPECT_FALSE(marker(p)) << p;
    EXPECT_EQ(consume_all(**mgr, {"t", p}),
              (std::vector<std::string>{fmt::format("p{}-0", p), fmt::format("p{}-1", p)}));
  }
}

TEST(LogManager, MorePartitionsThanTheOpenFileLimitRefusesToStart) {
  // Each partition keeps its active segment open: opening more than the limit allows would
  // fail partition after partition. The open is refused up front with one clear error.
  TempDir dir;
  auto opts = options_for(dir.path(), FlushMode::none);
  {
    auto mgr = LogManager::open(opts);
    ASSERT_TRUE(mgr);
    for (int p = 0; p < 10; ++p) ASSERT_TRUE((*mgr)->create_sync({"t", p}, opts.default_config));
    ASSERT_TRUE((*mgr)->close());
  }
  int64_t open_now = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++open_now;
  }
  ASSERT_LT(open_now, 40);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 10 + 63;  // 10 partitions and a reserve of 64 do not fit
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto refused = LogManager::open(opts);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("ulimit -n"), std::string::npos)
      << refused.error().message;
  auto mgr = LogManager::open(opts);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  EXPECT_EQ((*mgr)->status().size(), 10u);
}

std::vector<std::string>& lines() {
  static std::vector<std::string> l;
  return l;
}
std::mutex g_mu;
void sink(LogLevel, std::string_view s) {
  std::lock_guard lock(g_mu);
  lines().emplace_back(s);
}

TEST(LogManager, CorruptPartitionIsOfflineOthersServe) {
  TempDir dir;
  auto opts = options_for(dir.path(), FlushMode::none);
  std::vector<int64_t> sizes;
  {
    auto mgr = LogManager::open(opts);
    ASSERT_TRUE(mgr);
    ASSERT_TRUE((*mgr)->create_sync({"good", 0}, opts.default_config));
    ASSERT_TRUE((*mgr)->create_sync({"bad", 0}, opts.default_config));
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE((*mgr)->append_sync({"good", 0}, make_batch(2, "g")));
      ASSERT_TRUE((*mgr)->append_sync({"bad", 0}, make_batch(2, "b")));
    }
    ASSERT_TRUE((*mgr)->close());
  }
  // Corrupt the second batch of bad-0 and make the shutdown look unclean.
  std::string seg = dir.path() + "/bad-0/00000000000000000000.log";
  {
    auto f = File::open(seg, O_RDWR);
    ASSERT_TRUE(f);
    int64_t one = int64_t(make_batch(2, "b").size());
    uint8_t byte = 0xff;
    ASSERT_TRUE(f->pwrite_all({&byte, 1}, one + 65));
  }
  std::filesystem::remove(dir.path() + "/bad-0/clean-shutdown");
  std::filesystem::create_directory(dir.path() + "/lost+found");
  lines().clear();
  set_log_sink(sink);
  auto mgr = LogManager::open(opts);
  set_log_sink(nullptr);
  ASSERT_TRUE(mgr);
  bool warned = false;
  for (const auto& l : lines())
    warned = warned || l.find("ignoring unknown entry lost+found") != std::string::npos;
  EXPECT_TRUE(warned);
  auto r = (*mgr)->read_sync({"bad", 0}, {.start = Offset(0)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
  EXPECT_EQ((*mgr)->append_sync({"bad", 0}, make_batch(1, "x")).error().code, Errc::corrupt);
  EXPECT_EQ(consume_all(**mgr, {"good", 0}).size(), 10u);
  auto st = (*mgr)->status();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_FALSE(st[0].online);
  EXPECT_NE(st[0].error.find("corrupt batch"), std::string::npos);
  EXPECT_TRUE(st[1].online);
  ASSERT_TRUE((*mgr)->close());
  // The bad segment was not modified.
  EXPECT_EQ(std::filesystem::file_size(seg), size_t(5 * make_batch(2, "b").size()));
}

TEST(LogManager, IntervalFlushAndRetentionRunOnTheShardTimer) {
  TempDir dir;
  ManualClock clock(1'700'000'000'000);
  auto opts = options_for(dir.path(), FlushMode::interval);
  opts.clock = &clock;
  opts.tick_ms = 1;
  opts.retention_check_interval_ms = 1000;
  opts.default_config.flush_interval_ms = 500;
  opts.default_config.retention_ms = 60'000;
  opts.default_config.segment_bytes = 4096;
  auto mgr = LogManager::open(opts);
  ASSERT_TRUE(mgr);
  TopicPartition tp{"events", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, opts.default_config));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*mgr)->append_sync(tp, make_batch(3, "e", clock.now_ms() - 120'000)));
  }
  auto wait_for = [&](auto pred) {
    for (int i = 0; i < 20000 && !pred(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pred();
  };
  clock.advance(600);
  EXPECT_TRUE(wait_for([&] {
    auto st = (*mgr)->status();
    return st[0].flushed_offset == st[0].log_end_offset;
  }));
  clock.advance(1000);
  EXPECT_TRUE(wait_for([&] {
    auto st = (*mgr)->status();
    return st[0].log_start_offset == st[0].log_end_offset && st[0].size_bytes == 0;
  }));
  ASSERT_TRUE((*mgr)->close());
}

TEST(LogManager, ClosedManagerRefusesWork) {
  TempDir dir;
  auto mgr = LogManager::open(options_for(dir.path(), FlushMode::none));
  ASSERT_TRUE(mgr);
  ASSERT_TRUE((*mgr)->close());
  ASSERT_TRUE((*mgr)->close());
  EXPECT_EQ((*mgr)->append_sync({"t", 0}, make_batch(1, "x")).error().code, Errc::closed);
  EXPECT_EQ((*mgr)->create_sync({"t", 0}, {}).error().code, Errc::closed);
}

// io_contexts run by threads of the test, the way the broker's network threads run the shards
// (LogManagerOptions::shard_contexts).
class CallerThreads {
 public:
  explicit CallerThreads(int n) {
    for (int i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
    for (auto& c : contexts_) threads_.emplace_back([c = c.get()] { c->run(); });
  }
  ~CallerThreads() { stop(); }
  void stop() {
    guards_.clear();
    for (auto& c : contexts_) c->stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<asio::io_context*> contexts() const {
    std::vector<asio::io_context*> out;
    for (const auto& c : contexts_) out.push_back(c.get());
    return out;
  }
  size_t size() const { return contexts_.size(); }
  // Runs fn on context i and waits until it has returned.
  template <typename Fn>
  void run_on(size_t i, Fn fn) {
    std::promise<void> done;
    asio::post(*contexts_[i], [&] {
      fn();
      done.set_value();
    });
    done.get_future().get();
  }

 private:
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

TEST(LogManagerOnCallerContexts, WorkOnTheOwningShardRunsInlineElsewhereItIsPosted) {
  TempDir dir;
  CallerThreads threads(2);
  auto o = options_for(dir.path(), FlushMode::none);
  o.shards = 7;  // ignored: one shard per context
  o.shard_contexts = threads.contexts();
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  EXPECT_EQ((*mgr)->options().shards, 2);
  EXPECT_FALSE((*mgr)->on_shard_thread());
  TopicPartition tp{"inline", 0};
  ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));

  // From a task on each context: exactly one of them owns the partition, and there the
  // append, the read and with_log complete on the calling thread before they return.
  std::vector<int> inline_append(threads.size()), inline_read(threads.size());
  std::vector<int> inline_with_log(threads.size());
  std::atomic<int> callbacks{0};
  for (size_t i = 0; i < threads.size(); ++i) {
    threads.run_on(i, [&, i] {
      EXPECT_TRUE((*mgr)->on_shard_thread());
      const auto caller = std::this_thread::get_id();
      bool returned = false;  // read by a callback only on this thread
      auto was_inline = [&, caller] { return std::this_thread::get_id() == caller && !returned; };
      (*mgr)->append(tp, make_batch(1, "c" + std::to_string(i)), {},
                     [&, i, was_inline](Result<AppendResult> r) {
                       EXPECT_TRUE(r) << r.error().to_string();
                       inline_append[i] = was_inline();
                       ++callbacks;
                     });
      (*mgr)->read(tp, {.start = Offset(0), .max_bytes = 1 << 20},
                   [&, i, was_inline](Result<ReadResult> r) {
                     EXPECT_TRUE(r);
                     inline_read[i] = was_inline();
                     ++callbacks;
                   });
      (*mgr)->with_log(tp, [&, i, was_inline](Result<PartitionLog*> l) {
        EXPECT_TRUE(l);
        inline_with_log[i] = was_inline();
        ++callbacks;
      });
      returned = true;
    });
  }
  for (int i = 0; i < 1000 && callbacks.load() < 6; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(callbacks.load(), 6);
  EXPECT_EQ(inline_append[0] + inline_append[1], 1);
  EXPECT_EQ(inline_read, inline_append);
  EXPECT_EQ(inline_with_log, inline_append);
  EXPECT_EQ(consume_all(**mgr, tp).size(), 2u);
  ASSERT_TRUE((*mgr)->close());
  // The contexts still run after close(), and nothing of the manager is left on them.
  threads.run_on(0, [] {});
  threads.run_on(1, [] {});
}

TEST(LogManagerOnCallerContexts, ABorrowedAppendIsWrittenBeforeItReturnsOnItsShardElseCopied) {
  for (FlushMode mode : {FlushMode::none, FlushMode::durable}) {
    SCOPED_TRACE(mode == FlushMode::none ? "none" : "durable");
    TempDir dir;
    CallerThreads threads(2);
    auto o = options_for(dir.path(), mode);
    o.shard_contexts = threads.contexts();
    auto mgr = LogManager::open(o);
    ASSERT_TRUE(mgr) << mgr.error().to_string();
    TopicPartition tp{"borrowed", 0};
    ASSERT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
    ASSERT_TRUE((*mgr)->append_sync(tp, make_batch(3, "first")));  // offsets 0-2

    // From each context, a borrowed append of a buffer that is overwritten and freed right
    // after the call. Where the partition lives the log has already assigned the offset into
    // it; elsewhere it took a copy and the buffer is untouched (base offset 0 as built).
    std::vector<int64_t> base_in_buffer(threads.size(), -1);
    std::atomic<int> acknowledged{0};
    for (size_t i = 0; i < threads.size(); ++i) {
      threads.run_on(i, [&, i] {
        auto buffer = make_batch(2, "b" + std::to_string(i));
        (*mgr)->append_borrowed(tp, buffer, {}, [&](Result<AppendResult> r) {
          EXPECT_TRUE(r) << r.error().to_string();
          ++acknowledged;
        });
        auto view = model::RecordBatchView::parse(buffer, buffer.size());
        ASSERT_TRUE(view);
        base_in_buffer[i] = view->base().value();
        std::fill(buffer.begin(), buffer.end(), uint8_t(0xEE));
      });
    }
    for (int i = 0; i < 5000 && acknowledged.load() < 2; ++i) std::this_thread::sleep_for(1ms);
    ASSERT_EQ(acknowledged.load(), 2);
    std::vector<int64_t> sorted = base_in_buffer;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted[0], 0) << "the other thread's buffer was not copied";
    EXPECT_TRUE(sorted[1] == 3 || sorted[1] == 5) << sorted[1];
    auto values = consume_all(**mgr, tp);
    ASSERT_EQ(values.size(), 7u);
    std::sort(values.begin() + 3, values.end());
    EXPECT_EQ(std::vector<std::string>(values.begin() + 3, values.end()),
              (std::vector<std::string>{"b0-0", "b0-1", "b1-0", "b1-1"}));
    ASSERT_TRUE((*mgr)->close());
  }
}

TEST(LogManagerOnCallerContexts, CallbacksMayCallBackInEvenToRemoveTheirPartition) {
  TempDir dir;
  CallerThreads threads(1);
  auto o = options_for(dir.path(), FlushMode::durable);
  o.default_config.segment_bytes = 4096;  // rolls: appends also flush sealed segments
  o.shard_contexts = threads.contexts();
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  LogManager& m = **mgr;
  LogConfig none = o.default_config;
  none.flush_mode = FlushMode::none;
  TopicPartition a{"reenter", 0};
  TopicPartition b{"reenter", 1};
  ASSERT_TRUE(m.create_sync(a, none));
  ASSERT_TRUE(m.create_sync(b, o.default_config));

  std::promise<void> finished;
  std::vector<std::string> events;  // touched only on the shard thread
  threads.run_on(0, [&] {
    // Page-cache append whose callback appends again, then removes the partition while the
    // outer append is still on the stack.
    m.append(a, make_batch(40, "a1"), {}, [&](Result<AppendResult> r) {
      EXPECT_TRUE(r);
      events.push_back("a1");
      m.append(a, make_batch(40, "a2"), {}, [&](Result<AppendResult> r2) {
        EXPECT_TRUE(r2);
        events.push_back("a2");
      });
      m.remove(a, [&](Result<void> gone) {
        EXPECT_TRUE(gone) << gone.error().to_string();
        events.push_back("a removed");
        // And created again, from inside the same callback chain.
        m.create(a, none, [&](Result<void> c) {
          EXPECT_TRUE(c) << c.error().to_string();
          events.push_back("a created");
        });
      });
    });
    // Durable appends: the first waiter's callback removes the partition; the second waiter
    // then hears that it was deleted.
    m.append(b, make_batch(40, "b1"), {}, [&](Result<AppendResult> r) {
      EXPECT_TRUE(r);
      events.push_back("b1");
      m.remove(b, [&](Result<void> gone) {
        EXPECT_TRUE(gone);
        events.push_back("b removed");
      });
    });
    m.append(b, make_batch(40, "b2"), {}, [&](Result<AppendResult> r) {
      EXPECT_FALSE(r);
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::not_found);
      }
      events.push_back("b2 failed");
      finished.set_value();
    });
  });
  ASSERT_EQ(finished.get_future().wait_for(30s), std::future_status::ready);
  threads.run_on(0, [&] {
    EXPECT_EQ(events, (std::vector<std::string>{"a1", "a2", "a removed", "a created", "b1",
                                                "b2 failed", "b removed"}));
  });
  auto st = m.status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].tp, a);
  EXPECT_EQ(st[0].log_end_offset, Offset(0));
  ASSERT_TRUE(m.close());
}

TEST(LogManagerOnCallerContexts, CloseWhileTheContextsRunAndAppendsAreInFlight) {
  TempDir dir;
  auto o = options_for(dir.path(), FlushMode::durable);
  std::vector<TopicPartition> tps;
  for (int i = 0; i < 4; ++i) tps.push_back({"busy", i});
  std::mutex mu;
  std::map<TopicPartition, int64_t> acked_end;  // end offset of the last acknowledged append
  std::atomic<int> callbacks{0}, issued{0};
  {
    CallerThreads threads(2);
    o.shard_contexts = threads.contexts();
    auto mgr = LogManager::open(o);
    ASSERT_TRUE(mgr) << mgr.error().to_string();
    LogManager& m = **mgr;
    for (const auto& tp : tps) ASSERT_TRUE(m.create_sync(tp, o.default_config));
    // On each context, appenders that keep one durable append in flight per partition until
    // an append fails (the manager closes).
    std::function<void(TopicPartition)> next = [&](TopicPartition tp) {
      ++issued;
      m.append(tp, make_batch(1, "v"), {}, [&, tp](Result<AppendResult> r) {
        ++callbacks;
        if (!r) {
          EXPECT_EQ(r.error().code, Errc::closed) << r.error().to_string();
          return;
        }
        {
          std::lock_guard lock(mu);
          acked_end[tp] = std::max(acked_end[tp], r->last_offset.value() + 1);
        }
        next(tp);
      });
    };
    for (size_t i = 0; i < tps.size(); ++i) {
      asio::post(*threads.contexts()[i % 2], [&, tp = tps[i]] { next(tp); });
    }
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(m.close());
    // Every append got its answer, the contexts still run, and nothing more is accepted.
    EXPECT_EQ(callbacks.load(), issued.load());
    threads.run_on(0, [&] {
      m.append(tps[0], make_batch(1, "late"), {},
               [](Result<AppendResult> r) { EXPECT_EQ(r.error().code, Errc::closed); });
    });
    threads.stop();
  }
  // Everything acknowledged is there after a reopen, and the logs were closed cleanly.
  o.shard_contexts.clear();
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  for (const auto& st : (*mgr)->status()) {
    EXPECT_TRUE(st.online) << st.error;
    EXPECT_GE(st.log_end_offset.value(), acked_end[st.tp]) << st.tp.to_string();
    EXPECT_GT(acked_end[st.tp], 0) << st.tp.to_string();
  }
  ASSERT_TRUE((*mgr)->close());
}

// ---- The background cleaner ---------------------------------------------------------------------

std::vector<uint8_t> keyed_batch(const std::string& key, const std::string& value) {
  model::RecordBatchBuilder b;
  b.add({key, value, 1000, {}});
  return b.build();
}

// key -> latest value from a read of the whole partition (the table the topic describes), and
// the number of records read.
std::pair<std::map<std::string, std::string>, size_t> table_of(LogManager& mgr,
                                                               const TopicPartition& tp) {
  std::map<std::string, std::string> table;
  size_t records = 0;
  testing::for_each_batch(slices_of(mgr, tp), Offset(0), [&](const model::RecordBatchView& v) {
    EXPECT_TRUE(v.verify_crc());
    auto decoded = compression::decode_batch(v);
    ASSERT_TRUE(decoded);
    for (const auto& rec : decoded->records) {
      ++records;
      table[std::string(*rec.key)] = std::string(*rec.value);
    }
  });
  return {table, records};
}

// The cleaner thread stops in before_commit until the test lets it go.
struct CommitGate {
  std::mutex mu;
  std::condition_variable cv;
  bool waiting = false;
  bool open = false;
  void hook() {
    std::unique_lock lk(mu);
    waiting = true;
    cv.notify_all();
    cv.wait(lk, [&] { return open; });
  }
  bool wait_until_held() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 120s, [&] { return waiting; });
  }
  void release() {
    std::lock_guard lk(mu);
    open = true;
    cv.notify_all();
  }
};

LogManagerOptions cleaner_options(const std::string& dir, CommitGate& gate) {
  auto o = options_for(dir, FlushMode::none);
  o.default_config.segment_bytes = 4096;
  o.default_config.cleanup_policy = CleanupPolicy::compact;
  o.cleaner.enabled = true;
  o.cleaner.backoff_ms = 5;
  o.cleaner.before_commit = [&gate](const TopicPartition&) { gate.hook(); };
  return o;
}

// Waits (at most `limit`) until tp's cleaner has completed `cleans` cleans since it opened.
bool wait_for_cleans(LogManager& m, const TopicPartition& tp, int64_t cleans,
                     std::chrono::seconds limit = 120s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& st : m.status()) {
      if (st.tp == tp && st.cleaner.cleans >= cleans) return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// A manager with the cleaner on, stopped at every commit by gate, and one empty compacted
// partition tp.
std::unique_ptr<LogManager> open_with_partition(const std::string& dir, CommitGate& gate,
                                                const TopicPartition& tp) {
  auto mgr = LogManager::open(cleaner_options(dir, gate));
  EXPECT_TRUE(mgr) << mgr.error().to_string();
  if (!mgr) return nullptr;
  EXPECT_TRUE((*mgr)->create_sync(tp, (*mgr)->options().default_config));
  return std::move(*mgr);
}

TEST(LogManagerCleaner, CompactsInTheBackgroundWhileTheShardKeepsServing) {
  TempDir dir;
  CommitGate gate;
  TopicPartition tp{"table", 0};
  auto mgr = open_with_partition(dir.path(), gate, tp);
  ASSERT_TRUE(mgr);
  LogManager& m = *mgr;
  std::map<std::string, std::string> model;
  auto put = [&](const std::string& k, const std::string& v) {
    ASSERT_TRUE(m.append_sync(tp, keyed_batch(k, v)));
    model[k] = v;
  };
  for (int i = 0; i < 500; ++i) put("k" + std::to_string(i % 10), "v" + std::to_string(i));
  m.wake_cleaner();
  // The cleaner has built its output and holds it: appends and reads go on meanwhile.
  ASSERT_TRUE(gate.wait_until_held());
  for (int i = 0; i < 20; ++i) put("k" + std::to_string(i % 3), "during-" + std::to_string(i));
  EXPECT_EQ(table_of(m, tp).first, model);
  EXPECT_EQ(table_of(m, tp).second, 520u);
  gate.release();
  // The swap lands on the shard; the table is unchanged, the records fewer.
  ASSERT_TRUE(wait_for_cleans(m, tp, 1));
  auto [table, records] = table_of(m, tp);
  EXPECT_EQ(table, model);
  EXPECT_LT(records, 520u);
  auto st = m.status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_TRUE(st[0].compacted);
  EXPECT_GT(st[0].cleaner.bytes_read, 0);
  EXPECT_GT(st[0].cleaner.first_dirty, Offset(0));
  ASSERT_TRUE(m.close());
  // Reopened, the cleaned log reads the same.
  CommitGate unused;
  unused.release();
  auto again = LogManager::open(cleaner_options(dir.path(), unused));
  ASSERT_TRUE(again);
  EXPECT_EQ(table_of(**again, tp).first, model);
}

TEST(LogManagerCleaner, APartitionRemovedDuringABuildIsLeftAlone) {
  TempDir dir;
  CommitGate gate;
  TopicPartition tp{"gone", 0};
  auto mgr = open_with_partition(dir.path(), gate, tp);
  ASSERT_TRUE(mgr);
  LogManager& m = *mgr;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(m.append_sync(tp, keyed_batch("k" + std::to_string(i % 5), std::to_string(i))));
  }
  m.wake_cleaner();
  ASSERT_TRUE(gate.wait_until_held());
  // Removed and created again under the same name: the old build must not touch the new log.
  ASSERT_TRUE(m.remove_sync(tp));
  ASSERT_TRUE(m.create_sync(tp, m.options().default_config));
  ASSERT_TRUE(m.append_sync(tp, keyed_batch("new", "log")));
  gate.release();
  // Close waits for the cleaner thread, so its commit has been refused by then.
  ASSERT_TRUE(m.close());
  auto again = LogManager::open(cleaner_options(dir.path(), gate));
  ASSERT_TRUE(again);
  auto [table, records] = table_of(**again, tp);
  EXPECT_EQ(table, (std::map<std::string, std::string>{{"new", "log"}}));
  EXPECT_EQ(records, 1u);
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/gone-0")) {
    EXPECT_FALSE(e.path().filename().string().ends_with(".cleaned")) << e.path();
  }
}

TEST(LogManagerCleaner, APartitionThatCannotBeCleanedDoesNotStarveTheOthers) {
  // "huge" has keys larger than the whole key map: no clean of it can progress. It is the
  // dirtiest (never cleaned), so it is picked first; it must be set aside so that "small",
  // due but less dirty, is cleaned in the same wake-up.
  TempDir dir;
  CommitGate gate;
  gate.release();
  auto o = cleaner_options(dir.path(), gate);
  o.cleaner.backoff_ms = 3'600'000;  // rounds only at start and on wake_cleaner()
  o.cleaner.key_map_bytes = 4096;
  o.default_config.min_cleanable_dirty_ratio = 0.01;
  auto mgr = LogManager::open(o);
  ASSERT_TRUE(mgr) << mgr.error().to_string();
  LogManager& m = **mgr;
  TopicPartition small{"small", 0}, huge{"huge", 0};
  ASSERT_TRUE(m.create_sync(small, m.options().default_config));
  ASSERT_TRUE(m.create_sync(huge, m.options().default_config));
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(m.append_sync(small, keyed_batch("k" + std::to_string(i % 5), std::to_string(i))));
  }
  // A first clean of "small" by hand, then more writes: its dirty ratio is below 1.
  std::promise<Result<CleanResult>> first;
  m.with_log(small, [&](Result<PartitionLog*> log) {
    first.set_value(log ? (*log)->clean({.force = true}) : Result<CleanResult>(log.error()));
  });
  auto r = first.get_future().get();
  ASSERT_TRUE(r && r->cleaned);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(m.append_sync(small, keyed_batch("k" + std::to_string(i % 5), "again")));
  }
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(m.append_sync(huge, keyed_batch(std::string(5000, char('a' + i % 26)), "v")));
  }
  m.wake_cleaner();
  EXPECT_TRUE(wait_for_cleans(m, small, 2, 30s));  // the clean by hand counts as one
  for (const auto& st : m.status()) {
    if (st.tp == huge) {
      EXPECT_EQ(st.cleaner.cleans, 0);
    }
  }
  ASSERT_TRUE(m.close());
}

TEST(LogManagerOnCallerContextsDeathTest, BlockingCallsOnAShardThreadAreBugs) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto blocking_on_shard = [](bool close) {
    TempDir dir;
    CallerThreads threads(1);
    auto o = options_for(dir.path(), FlushMode::none);
    o.shard_contexts = threads.contexts();
    auto mgr = LogManager::open(o);
    threads.run_on(0, [&] {
      if (close) {
        (void)(*mgr)->close();
      } else {
        (void)(*mgr)->status();
      }
    });
  };
  EXPECT_DEATH(blocking_on_shard(false), "blocking LogManager call on a shard thread");
  EXPECT_DEATH(blocking_on_shard(true), "close\\(\\) on a shard thread");
}

}  // namespace
}  // namespace ordo::storage
