// Crash test of the compaction swap with real processes: the parent builds a keyed log; each
// round a forked child opens it and cleans it again and again (full cleans, so that every pass
// writes .cleaned files and swaps them in); the parent SIGKILLs the child at a random moment,
// reopens the log and checks that it validates (whole batches, CRCs, increasing offsets), that
// no staging file is left, that every record is one that was produced at its offset, and that
// the logical content (key -> latest value, tombstones applied) is what it was before cleaning.
//
// ORDO_CRASH_SEED and ORDO_CRASH_ROUNDS override the seed and the number of rounds.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <tuple>

#include "base/log.h"
#include "base/random.h"
#include "compression/records.h"
#include "storage/partition_log.h"
#include "storage/tests/test_util.h"
#include "tests/crash/child_process.h"

namespace ordo {
namespace {

using crashtest::env_or;

// offset -> (key, value, timestamp, headers joined)
using Content = std::map<int64_t, std::tuple<std::optional<std::string>, std::optional<std::string>,
                                             int64_t, std::string>>;

storage::LogConfig config() {
  storage::LogConfig c;
  c.cleanup_policy = storage::CleanupPolicy::compact;
  c.segment_bytes = 16 * 1024;
  c.index_interval_bytes = 512;
  c.retention_ms = -1;
  c.flush_mode = storage::FlushMode::durable;
  return c;
}

// Reads and validates the whole log.
Content read_all(storage::PartitionLog& log) {
  Content out;
  log.set_high_watermark(log.log_end_offset());
  Offset next = log.log_start_offset();
  int64_t prev = -1;
  for (int guard = 0; guard < 100000 && next < log.log_end_offset(); ++guard) {
    auto r = log.read({.start = next, .max_bytes = 1 << 20});
    EXPECT_TRUE(r) << r.error().to_string();
    if (!r || r->slice.size == 0) break;
    auto bytes =
        storage::testing::read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
    std::span<const uint8_t> rest(bytes);
    while (!rest.empty()) {
      auto v = model::RecordBatchView::parse(rest);
      EXPECT_TRUE(v) << v.error().to_string();
      if (!v) return out;
      EXPECT_TRUE(v->verify_crc());
      EXPECT_GT(v->base().value(), prev);
      auto d = compression::decode_batch(*v);
      EXPECT_TRUE(d);
      if (!d) return out;
      for (const auto& rec : d->records) {
        int64_t off = v->base().value() + rec.offset_delta;
        std::string h;
        for (const auto& x : rec.headers)
          h += std::string(x.key) + "=" + std::string(x.value.value_or("-")) + ";";
        out[off] = {rec.key ? std::optional<std::string>(*rec.key) : std::nullopt,
                    rec.value ? std::optional<std::string>(*rec.value) : std::nullopt,
                    model::record_timestamp(v->base_timestamp(), rec.timestamp_delta), h};
      }
      prev = v->last().value();
      next = v->last() + 1;
      rest = rest.subspan(v->size_bytes());
    }
  }
  EXPECT_EQ(next, log.log_end_offset());
  return out;
}

std::map<std::string, std::string> logical(const Content& c) {
  std::map<std::string, std::string> m;
  for (const auto& [o, rec] : c) {
    const auto& [k, v, ts, h] = rec;
    if (!k) continue;
    if (v) {
      m[*k] = *v;
    } else {
      m.erase(*k);
    }
  }
  return m;
}

TEST(CleanerCrashTest, SigkillDuringCleaningKeepsTheLogicalContent) {
  const int64_t seed = env_or("ORDO_CRASH_SEED", 20261124);
  const int64_t rounds = env_or("ORDO_CRASH_ROUNDS", 40);
  SCOPED_TRACE(fmt::format("ORDO_CRASH_SEED={}", seed));
  set_log_threshold(LogLevel::warn);
  Random rng{uint64_t(seed)};
  storage::testing::TempDir dir;
  const std::string path = dir.path() + "/compact-0";
  ManualClock clock(1'700'000'000'000);

  // The log: keyed updates, tombstones, keyless records, every codec, some headers.
  {
    auto log = storage::PartitionLog::open(path, config(), clock);
    ASSERT_TRUE(log) << log.error().to_string();
    for (int i = 0; i < 600; ++i) {
      model::RecordBatchBuilder b;
      int n = int(rng.between(1, 5));
      for (int j = 0; j < n; ++j) {
        model::RecordInput r;
        if (!rng.chance(0.03)) r.key = "key-" + std::to_string(rng.below(80));
        if (!rng.chance(0.1))
          r.value = fmt::format("{}-{}-{}", i, j, std::string(rng.below(40), 'v'));
        r.timestamp_ms = clock.now_ms() + i;
        if (rng.chance(0.2)) r.headers.emplace_back("h", std::to_string(i));
        b.add(std::move(r));
      }
      auto bytes = b.build();
      uint8_t codec = uint8_t(rng.below(5));
      if (codec != 0) {
        bytes = *compression::recode_batch(*model::RecordBatchView::parse(bytes), codec);
      }
      ASSERT_TRUE((*log)->append(bytes));
    }
    ASSERT_TRUE((*log)->close());
  }
  Content produced;
  {
    auto log = storage::PartitionLog::open(path, config(), clock);
    ASSERT_TRUE(log);
    produced = read_all(**log);
    ASSERT_GT((*log)->segment_count(), 4u);
    ASSERT_TRUE((*log)->close());
  }
  const auto expected = logical(produced);

  int64_t cleans_seen = 0;
  for (int64_t round = 1; round <= rounds; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    crashtest::Child child = crashtest::fork_child([&](int write_fd) {
      auto log = storage::PartitionLog::open(path, config(), clock);
      if (!log) ::_exit(1);
      for (uint32_t pass = 0;; ++pass) {
        auto r = (*log)->clean({.force = true, .full = true});
        if (!r) ::_exit(2);
        // Each finished pass is reported, so that the parent kills at varied points.
        if (::write(write_fd, &pass, sizeof pass) != sizeof pass) ::_exit(3);
      }
    });
    // Wait for 0..3 finished passes, then a random delay within the next one.
    int64_t passes = rng.between(0, 3);
    for (int64_t p = 0; p < passes; ++p) {
      uint32_t x;
      if (::read(child.read_fd, &x, sizeof x) == sizeof x) ++cleans_seen;
    }
    ::usleep(useconds_t(rng.between(0, 20'000)));
    crashtest::kill_and_reap(child);
    ::close(child.read_fd);
    if (::testing::Test::HasFatalFailure()) return;

    auto log = storage::PartitionLog::open(path, config(), clock);
    ASSERT_TRUE(log) << log.error().to_string();
    for (const auto& e : std::filesystem::directory_iterator(path)) {
      std::string name = e.path().filename().string();
      EXPECT_FALSE(name.ends_with(".cleaned") || name == "cleaner.swap") << name;
    }
    Content now = read_all(**log);
    for (const auto& [o, rec] : now) {
      auto it = produced.find(o);
      ASSERT_NE(it, produced.end()) << "offset " << o << " was never produced";
      EXPECT_EQ(rec, it->second) << "offset " << o;
    }
    EXPECT_EQ(logical(now), expected);
    if (::testing::Test::HasFailure()) return;
    if (round % 2 == 0) {
      ASSERT_TRUE((*log)->close());
    }
  }
  EXPECT_GT(cleans_seen, rounds / 2);
}

}  // namespace
}  // namespace ordo
