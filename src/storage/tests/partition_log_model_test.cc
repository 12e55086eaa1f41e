// A randomised, model-based test of PartitionLog.
//
// Each seed runs a deterministic sequence of random operations (appends, reads, truncations,
// retention, log-start moves, timestamp lookups, rolls, flushes, clean and unclean reopens)
// against a real PartitionLog in a temporary directory and against Model, a few vectors in
// memory that say what the log must hold. After every step the two must agree on the offsets,
// the segment layout, the leader epochs and every byte of every visible batch.
//
//   ORDO_MODEL_SEED=<n>        run only seed n (failures name the seed and the step)
//   ORDO_MODEL_SEEDS=<n>       number of seeds, 1..n (default 30)
//   ORDO_MODEL_ITERATIONS=<n>  operations per seed (default 300)
//   ORDO_MODEL_VERBOSE=1       print what each seed did (operations and their outcomes)
//
// With more than one seed, each runs in a child process: an ORDO_ASSERT in the log aborts the
// process, and one seed's abort must not hide what the others find. ORDO_MODEL_SEED runs the
// seed in the test process itself (for a debugger).
//
// The regression tests at the end are minimal reproductions of bugs this test found.

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "base/random.h"
#include "model/record_batch.h"
#include "storage/partition_log.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {
namespace {

using testing::read_slice_bytes;
using testing::TempDir;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kWeekMs = int64_t(7) * 24 * 3600 * 1000;

int64_t env_int(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  return s && *s ? std::strtoll(s, nullptr, 10) : fallback;
}

std::vector<uint64_t> model_seeds() {
  if (std::getenv("ORDO_MODEL_SEED")) return {uint64_t(env_int("ORDO_MODEL_SEED", 1))};
  std::vector<uint64_t> seeds;
  for (int64_t s = 1; s <= env_int("ORDO_MODEL_SEEDS", 30); ++s) seeds.push_back(uint64_t(s));
  return seeds;
}

std::string describe(const std::optional<TimestampOffset>& t) {
  return t ? fmt::format("(ts {}, offset {})", t->timestamp, t->offset) : "none";
}

std::vector<int64_t> raw(const std::vector<Offset>& offsets) {
  std::vector<int64_t> out;
  for (Offset o : offsets) out.push_back(o.value());
  return out;
}

// An ORDO_ASSERT in the log aborts the process, and gtest's traces die with it: the abort
// handler prints where the run was.
char g_abort_context[256];
void print_abort_context(int) {
  ssize_t n = ::write(STDERR_FILENO, g_abort_context, strnlen(g_abort_context, 256));
  (void)n;
}

// Runs body in a child process, so that an ORDO_ASSERT abort fails the current test instead of
// ending the test binary. The child prints its own failures; the parent reports how it ended.
void run_in_child(const std::function<void()>& body, const std::string& rerun_hint) {
  std::cout.flush();
  std::fflush(stdout);
  pid_t pid = fork();
  ASSERT_GE(pid, 0) << "fork: " << std::strerror(errno);
  if (pid == 0) {
    body();
    std::cout.flush();
    std::fflush(stdout);
    _exit(::testing::Test::HasFailure() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  if (WIFSIGNALED(status)) {
    ADD_FAILURE() << "died with signal " << WTERMSIG(status)
                  << " (an ORDO_ASSERT message is printed above)" << rerun_hint;
  } else if (WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "failed (see above)" << rerun_hint;
  }
}

// The log warns only about damage (torn tails, stale or broken indexes, unknown files); none
// of it may happen here, so every warning fails the step that caused it.
std::vector<std::string> g_warnings;
void collect_warnings(LogLevel level, std::string_view line) {
  if (level >= LogLevel::warn) g_warnings.emplace_back(line);
}

// ---- The model --------------------------------------------------------------------------------

struct ModelBatch {
  Offset base;
  Offset last;
  int32_t epoch = -1;
  int64_t max_timestamp = -1;
  std::vector<int64_t> timestamps;  // of the records base, base + 1, ..., last
  std::vector<uint8_t> bytes;       // exactly as the log must store it
  int64_t size() const { return int64_t(bytes.size()); }
};

struct ModelSegment {
  Offset base;
  int64_t first_append_ms = 0;  // segment.ms counts from here
  std::vector<ModelBatch> batches;

  bool empty() const { return batches.empty(); }
  Offset next() const { return batches.empty() ? base : batches.back().last + 1; }
  int64_t size() const {
    int64_t n = 0;
    for (const auto& b : batches) n += b.size();
    return n;
  }
  int64_t max_timestamp() const {
    int64_t m = -1;
    for (const auto& b : batches) m = std::max(m, b.max_timestamp);
    return m;
  }
};

// What the log must hold: its segments (with the batches below the log start that retention
// has not removed yet) and its offsets. The rules are the documented behaviour of PartitionLog.
struct Model {
  std::vector<ModelSegment> segments;
  Offset log_start{0};
  Offset high_watermark{0};
  Offset flushed{0};

  Offset log_end() const { return segments.back().next(); }
  int64_t size_bytes() const {
    int64_t n = 0;
    for (const auto& s : segments) n += s.size();
    return n;
  }
  std::vector<Offset> bases() const {
    std::vector<Offset> out;
    for (const auto& s : segments) out.push_back(s.base);
    return out;
  }
  // The segment and batch of the first batch with last offset >= o.
  std::optional<std::pair<size_t, size_t>> locate(Offset o) const {
    for (size_t s = 0; s < segments.size(); ++s) {
      const auto& bs = segments[s].batches;
      for (size_t b = 0; b < bs.size(); ++b)
        if (bs[b].last >= o) return std::make_pair(s, b);
    }
    return std::nullopt;
  }
  // Calls fn(offset, timestamp) for every record at or after the log start, in offset order.
  template <typename Fn>
  void for_each_visible_record(Fn fn) const {
    for (const auto& s : segments)
      for (const auto& b : s.batches)
        for (size_t i = 0; i < b.timestamps.size(); ++i)
          if (b.base + int64_t(i) >= log_start) fn(b.base + int64_t(i), b.timestamps[i]);
  }

  void roll(int64_t now) { segments.push_back({log_end(), now, {}}); }

  void append(std::vector<ModelBatch> batches, const LogConfig& config, int64_t now) {
    int64_t total = 0;
    for (const auto& b : batches) total += b.size();
    const ModelSegment& active = segments.back();
    if (!active.empty() && (active.size() + total > config.segment_bytes ||
                            now - active.first_append_ms >= config.segment_ms)) {
      roll(now);
    }
    ModelSegment& seg = segments.back();
    if (seg.empty()) seg.first_append_ms = now;
    for (auto& b : batches) seg.batches.push_back(std::move(b));
  }

  // Every batch holding an offset >= offset goes. Below the log start (or the first segment)
  // nothing visible survives and the log starts again, empty, at offset.
  void truncate_to(Offset offset, int64_t now) {
    if (offset >= log_end()) return;
    if (offset < log_start || offset <= segments.front().base) {
      segments = {ModelSegment{offset, now, {}}};
      log_start = offset;
    } else {
      while (segments.back().base >= offset) segments.pop_back();
      auto& batches = segments.back().batches;
      while (!batches.empty() && batches.back().last >= offset) batches.pop_back();
      // The batch holding the log start may have gone: the log start cannot pass the end.
      log_start = std::min(log_start, log_end());
    }
    high_watermark = std::min(high_watermark, log_end());
    flushed = std::min(flushed, log_end());
  }

  void delete_front_segment() {
    segments.erase(segments.begin());
    log_start = std::max(log_start, segments.front().base);
    high_watermark = std::max(high_watermark, log_start);
  }

  // Kafka's rules: whole segments, oldest first, never the data at or above the high watermark.
  int enforce_retention(const LogConfig& config, int64_t now) {
    int deleted = 0;
    while (segments.size() > 1 && segments.front().next() <= log_start) {
      delete_front_segment();
      ++deleted;
    }
    if (config.retention_bytes >= 0) {
      int64_t total = size_bytes();
      while (segments.size() > 1 && total - segments.front().size() >= config.retention_bytes &&
             segments.front().next() <= high_watermark) {
        total -= segments.front().size();
        delete_front_segment();
        ++deleted;
      }
    }
    if (config.retention_ms >= 0) {
      int64_t cutoff = now - config.retention_ms;
      auto expired = [&](const ModelSegment& s) {
        return !s.empty() && s.max_timestamp() < cutoff && s.next() <= high_watermark;
      };
      while (expired(segments.front())) {
        if (segments.size() == 1) roll(now);  // an expired active segment is rolled away too
        delete_front_segment();
        ++deleted;
      }
    }
    return deleted;
  }

  std::optional<TimestampOffset> offset_for_timestamp(int64_t ts) const {
    std::optional<TimestampOffset> out;
    for_each_visible_record([&](Offset o, int64_t t) {
      if (!out && t >= ts) out = TimestampOffset{t, o};
    });
    return out;
  }

  // The first record with the largest timestamp.
  std::optional<TimestampOffset> max_timestamp_offset() const {
    std::optional<TimestampOffset> out;
    for_each_visible_record([&](Offset o, int64_t t) {
      if (!out || t > out->timestamp) out = TimestampOffset{t, o};
    });
    return out;
  }
};

// ---- The test ---------------------------------------------------------------------------------

class PartitionLogModelTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  PartitionLogModelTest() : seed_(GetParam()), rng_(seed_) {}

  void SetUp() override {
    previous_abort_handler_ = std::signal(SIGABRT, print_abort_context);
    previous_log_threshold_ = log_threshold();
    if (!std::getenv("ORDO_LOG_LEVEL")) set_log_threshold(LogLevel::warn);
    set_log_sink(collect_warnings);
    g_warnings.clear();
  }
  void TearDown() override {
    set_log_sink(nullptr);
    set_log_threshold(previous_log_threshold_);
    std::signal(SIGABRT, previous_abort_handler_);
  }

  struct Op {
    const char* name;
    int weight;
    void (PartitionLogModelTest::*run)();
  };

  void run(int iterations) {
    config_ = random_config();
    note(
        fmt::format("config segment_bytes {} segment_ms {} index_interval {} retention_bytes {} "
                    "retention_ms {} preallocate {} ({} bytes)",
                    config_.segment_bytes, config_.segment_ms, config_.index_interval_bytes,
                    config_.retention_bytes, config_.retention_ms,
                    preallocate_name(config_.preallocate), config_.preallocate_bytes));
    epoch_ = int32_t(rng_.between(0, 3));
    last_timestamp_ = clock_.now_ms();
    open_log();
    if (HasFailure()) return;
    check_agreement();

    static const Op kOps[] = {
        {"append", 30, &PartitionLogModelTest::op_append},
        {"append_malformed", 2, &PartitionLogModelTest::op_append_malformed},
        {"read", 20, &PartitionLogModelTest::op_read},
        {"truncate_to", 4, &PartitionLogModelTest::op_truncate_to},
        {"enforce_retention", 6, &PartitionLogModelTest::op_enforce_retention},
        {"advance_log_start_offset", 4, &PartitionLogModelTest::op_advance_log_start_offset},
        {"set_high_watermark", 8, &PartitionLogModelTest::op_set_high_watermark},
        {"offset_for_timestamp", 8, &PartitionLogModelTest::op_offset_for_timestamp},
        {"max_timestamp_offset", 4, &PartitionLogModelTest::op_max_timestamp_offset},
        {"maybe_roll_by_time", 3, &PartitionLogModelTest::op_maybe_roll_by_time},
        {"advance_clock", 6, &PartitionLogModelTest::op_advance_clock},
        {"flush", 3, &PartitionLogModelTest::op_flush},
        {"flush_across_other_op", 2, &PartitionLogModelTest::op_flush_across_other_op},
        {"reopen_clean", 2, &PartitionLogModelTest::op_reopen_clean},
        {"reopen_after_crash", 2, &PartitionLogModelTest::op_reopen_after_crash},
        {"set_config", 1, &PartitionLogModelTest::op_set_config},
    };
    int total_weight = 0;
    for (const Op& op : kOps) total_weight += op.weight;

    for (step_ = 1; step_ <= iterations; ++step_) {
      int64_t pick = int64_t(rng_.below(uint64_t(total_weight)));
      const Op* op = kOps;
      while (pick >= op->weight) pick -= (op++)->weight;
      std::string where = fmt::format("seed {} step {} ({}); rerun with ORDO_MODEL_SEED={}", seed_,
                                      step_, op->name, seed_);
      SCOPED_TRACE(where);
      std::snprintf(g_abort_context, sizeof g_abort_context, "ordo model test: aborted at %s\n",
                    where.c_str());
      ++ops_run_[op->name];
      (this->*op->run)();
      if (!HasFailure()) check_agreement();
      for (const auto& w : g_warnings) ADD_FAILURE() << "the log warned: " << w;
      g_warnings.clear();
      if (HasFailure()) {
        print_history();
        return;
      }
    }
    if (std::getenv("ORDO_MODEL_VERBOSE")) print_stats();
  }

  // ---- Random inputs ----

  LogConfig random_config() {
    LogConfig c;
    c.segment_bytes = rng_.between(1024, 8192);
    c.index_interval_bytes = rng_.chance(0.2) ? 0 : int32_t(rng_.between(1, 512));
    c.segment_ms = rng_.chance(0.5) ? kWeekMs : rng_.between(1'000, 120'000);
    c.retention_bytes = rng_.chance(0.4) ? -1 : rng_.between(1'024, 16'384);
    c.retention_ms = rng_.chance(0.5) ? -1 : rng_.between(30'000, 900'000);
    c.flush_mode = FlushMode::none;
    c.preallocate = rng_.chance(0.5) ? Preallocate::none : Preallocate::zero_fill;
    c.preallocate_bytes = rng_.between(4096, 16384);
    return c;
  }

  std::string random_string(size_t n) {
    std::string s(n, ' ');
    for (char& c : s) c = char('a' + rng_.below(26));
    return s;
  }

  int64_t next_timestamp() {
    // Mostly near the previous one and sometimes earlier; sometimes jumps near, behind or far
    // behind the clock, so that retention.ms and the time index both have work.
    int64_t now = clock_.now_ms();
    uint64_t r = rng_.below(100);
    if (r < 75) {
      last_timestamp_ += rng_.between(-5, 8);
    } else if (r < 90) {
      last_timestamp_ = now - rng_.between(0, 600'000);
    } else if (r < 96) {
      last_timestamp_ = now + rng_.between(0, 1'000);
    } else {
      last_timestamp_ = now - rng_.between(3'600'000, 36'000'000);
    }
    last_timestamp_ = std::max<int64_t>(last_timestamp_, 0);
    return last_timestamp_;
  }

  // A batch as a producer sends it (base offset and epoch are whatever the client put there)
  // and as the log must store it at base.
  std::pair<std::vector<uint8_t>, ModelBatch> random_batch(Offset base) {
    uint64_t r = rng_.below(100);
    int records = int(r < 60   ? rng_.between(1, 3)
                      : r < 90 ? rng_.between(4, 12)
                               : rng_.between(13, 40));
    model::RecordBatchBuilder builder;
    ModelBatch mb;
    for (int i = 0; i < records; ++i) {
      model::RecordInput rec;
      if (!rng_.chance(0.2)) rec.key = "k" + std::to_string(rng_.below(1000));
      uint64_t v = rng_.below(100);
      size_t value_size = v < 70   ? rng_.below(41)
                          : v < 95 ? rng_.between(40, 300)
                                   : rng_.between(300, 2500);
      if (!rng_.chance(0.05)) rec.value = random_string(value_size);
      if (rng_.chance(0.1)) {
        for (int h = int(rng_.between(1, 2)); h > 0; --h)
          rec.headers.emplace_back(
              "h" + std::to_string(h),
              rng_.chance(0.3) ? std::nullopt : std::optional(random_string(rng_.below(9))));
      }
      rec.timestamp_ms = next_timestamp();
      mb.timestamps.push_back(rec.timestamp_ms);
      mb.max_timestamp = std::max(mb.max_timestamp, rec.timestamp_ms);
      builder.add(std::move(rec));
    }
    std::vector<uint8_t> sent = builder.build();
    model::set_base_offset(sent, Offset(int64_t(rng_.below(1000))));
    mb.base = base;
    mb.last = base + (records - 1);
    mb.epoch = epoch_;
    mb.bytes = sent;
    model::set_base_offset(mb.bytes, base);
    model::set_leader_epoch(mb.bytes, epoch_);
    return {std::move(sent), std::move(mb)};
  }

  // Around the visible log: mostly inside, sometimes just outside either end.
  Offset random_offset_near_log(int64_t outside) {
    return Offset(std::max<int64_t>(
        0, rng_.between(model_.log_start.value() - outside, model_.log_end().value() + outside)));
  }

  // ---- Operations ----

  void op_append() {
    if (rng_.chance(0.1)) ++epoch_;
    int n = rng_.chance(0.7) ? 1 : int(rng_.between(2, 4));
    std::vector<uint8_t> buffer, expected;
    std::vector<ModelBatch> batches;
    Offset next = model_.log_end();
    int64_t max_ts = -1;
    for (int i = 0; i < n; ++i) {
      auto [sent, mb] = random_batch(next);
      next = mb.last + 1;
      max_ts = std::max(max_ts, mb.max_timestamp);
      buffer.insert(buffer.end(), sent.begin(), sent.end());
      expected.insert(expected.end(), mb.bytes.begin(), mb.bytes.end());
      batches.push_back(std::move(mb));
    }
    note(fmt::format("append {} batches, offsets {}-{}, {} bytes, epoch {}", n,
                     batches.front().base, batches.back().last, buffer.size(), epoch_));
    auto r = log_->append(buffer, {.leader_epoch = epoch_});
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->first_offset.value(), batches.front().base.value());
    EXPECT_EQ(r->last_offset.value(), batches.back().last.value());
    EXPECT_EQ(r->max_timestamp, max_ts);
    EXPECT_EQ(r->batches, n);
    EXPECT_EQ(r->log_start_offset.value(), model_.log_start.value());
    EXPECT_TRUE(buffer == expected) << "offsets and epoch not written into the caller's buffer";
    model_.append(std::move(batches), config_, clock_.now_ms());
  }

  void op_append_malformed() {
    int n = int(rng_.between(1, 3));
    std::vector<uint8_t> buffer;
    std::vector<size_t> starts;
    for (int i = 0; i < n; ++i) {
      starts.push_back(buffer.size());
      auto sent = random_batch(model_.log_end()).first;
      buffer.insert(buffer.end(), sent.begin(), sent.end());
    }
    size_t victim = rng_.below(uint64_t(n));
    size_t end = victim + 1 < starts.size() ? starts[victim + 1] : buffer.size();
    std::vector<Errc> allowed;
    if (rng_.chance(0.5)) {
      // A flipped bit in the CRC-covered part. The CRC catches it, unless a header check that
      // runs first does (a record count flipped to 0 is invalid_argument).
      size_t pos = size_t(
          rng_.between(int64_t(starts[victim] + model::batch_layout::kCrcStart), int64_t(end) - 1));
      buffer[pos] ^= uint8_t(1u << rng_.below(8));
      allowed = {Errc::corrupt, Errc::invalid_argument};
      note(fmt::format("append {} batches, byte {} of batch {} flipped", n, pos, victim));
    } else {
      // The last batch cut short.
      buffer.resize(size_t(rng_.between(int64_t(starts.back()) + 1, int64_t(buffer.size()) - 1)));
      allowed = {Errc::invalid_argument};
      note(fmt::format("append {} batches, the last cut to {} bytes", n, buffer.size()));
    }
    std::vector<uint8_t> before = buffer;
    auto r = log_->append(buffer, {.leader_epoch = epoch_});
    ASSERT_FALSE(r) << "a malformed append was accepted";
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), r.error().code), allowed.end())
        << r.error().to_string();
    EXPECT_TRUE(buffer == before) << "a rejected append wrote into the caller's buffer";
  }

  void op_read() {
    ReadOptions o;
    o.start = random_offset_near_log(2);
    uint64_t r = rng_.below(100);
    o.max_bytes = r < 5    ? 0
                  : r < 30 ? rng_.between(1, 100)
                  : r < 80 ? rng_.between(50, 4000)
                           : int64_t(1) << 20;
    o.min_one_batch = rng_.chance(0.7);
    if (rng_.chance(0.5)) o.upper_bound = random_offset_near_log(3);
    note(fmt::format("read start {} max_bytes {} min_one {} upper {}", o.start, o.max_bytes,
                     o.min_one_batch,
                     o.upper_bound ? std::to_string(o.upper_bound->value()) : "hw"));
    check_read(o);
  }

  void op_truncate_to() {
    // Mostly a little off the end (as a follower does), sometimes anywhere, at the log start
    // or below it.
    Offset target;
    int64_t start = model_.log_start.value(), end = model_.log_end().value();
    uint64_t r = rng_.below(100);
    if (r < 50) {
      target = Offset(std::max(start, end - rng_.between(-2, 12)));
    } else if (r < 70) {
      auto batch = random_visible_batch();
      target = batch ? batch->base : model_.log_end();
    } else if (r < 85) {
      target = random_offset_near_log(0);
    } else {
      target = Offset(
          std::max<int64_t>(0, rng_.between(model_.segments.front().base.value() - 3, start)));
    }
    truncate_to(target);
  }

  // Returns whether anything was removed.
  bool truncate_to(Offset target) {
    note(fmt::format("truncate_to {} (log start {}, end {})", target, model_.log_start,
                     model_.log_end()));
    bool removes = target < model_.log_end();
    if (removes) ++outcomes_["truncations that removed data"];
    auto r = log_->truncate_to(target);
    EXPECT_TRUE(r) << r.error().to_string();
    model_.truncate_to(target, clock_.now_ms());
    return removes;
  }

  void op_enforce_retention() {
    note(fmt::format("enforce_retention at {} (bases {})", clock_.now_ms(),
                     fmt::join(raw(model_.bases()), ",")));
    // A slice being sent while its segment is deleted must stay readable.
    std::optional<FileSlice> in_flight;
    std::vector<uint8_t> in_flight_bytes;
    if (model_.log_start < model_.log_end()) {
      ReadOptions o{.start = model_.log_start, .upper_bound = model_.log_end()};
      auto read = log_->read(o);
      ASSERT_TRUE(read) << read.error().to_string();
      in_flight = read->slice;
      for (const ModelBatch* b : expected_read(o))
        in_flight_bytes.insert(in_flight_bytes.end(), b->bytes.begin(), b->bytes.end());
    }
    auto r = log_->enforce_retention();
    int want = model_.enforce_retention(config_, clock_.now_ms());
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(*r, want) << "segments deleted";
    outcomes_["segments deleted by retention"] += want;
    if (in_flight && in_flight->size > 0) {
      EXPECT_TRUE(read_slice_bytes(in_flight->file->fd(), in_flight->position, in_flight->size) ==
                  in_flight_bytes)
          << "a slice read before retention changed";
    }
  }

  void op_advance_log_start_offset() {
    Offset target = Offset(std::max<int64_t>(
        0, rng_.between(model_.log_start.value() - 2, model_.high_watermark.value() + 2)));
    note(fmt::format("advance_log_start_offset {} (log start {}, hw {})", target, model_.log_start,
                     model_.high_watermark));
    auto r = log_->advance_log_start_offset(target);
    if (target > model_.high_watermark) {
      ASSERT_FALSE(r) << "moved the log start past the high watermark";
      EXPECT_EQ(r.error().code, Errc::out_of_range);
      return;
    }
    ASSERT_TRUE(r) << r.error().to_string();
    if (target > model_.log_start) {
      model_.log_start = target;
      model_.enforce_retention(config_, clock_.now_ms());
    }
  }

  void op_set_high_watermark() {
    Offset target = rng_.chance(0.5) ? model_.log_end() : random_offset_near_log(3);
    note(fmt::format("set_high_watermark {}", target));
    log_->set_high_watermark(target);
    model_.high_watermark = std::clamp(target, model_.log_start, model_.log_end());
  }

  void op_offset_for_timestamp() {
    int64_t ts;
    uint64_t r = rng_.below(100);
    std::vector<int64_t> present;
    model_.for_each_visible_record([&](Offset, int64_t t) { present.push_back(t); });
    if (r < 60 && !present.empty()) {
      ts = present[rng_.below(present.size())] + rng_.between(-2, 2);
    } else if (r < 90) {
      ts = clock_.now_ms() - rng_.between(-1'000, 1'000'000);
    } else {
      ts = rng_.chance(0.5) ? 0 : INT64_MAX;
    }
    note(fmt::format("offset_for_timestamp {}", ts));
    auto got = log_->offset_for_timestamp(ts);
    ASSERT_TRUE(got) << got.error().to_string();
    EXPECT_EQ(describe(*got), describe(model_.offset_for_timestamp(ts)));
    if (*got) ++outcomes_["timestamps found"];
  }

  void op_max_timestamp_offset() {
    note("max_timestamp_offset");
    auto got = log_->max_timestamp_offset();
    ASSERT_TRUE(got) << got.error().to_string();
    EXPECT_EQ(describe(*got), describe(model_.max_timestamp_offset()));
  }

  void op_maybe_roll_by_time() {
    note(fmt::format("maybe_roll_by_time at {}", clock_.now_ms()));
    auto r = log_->maybe_roll_by_time();
    ASSERT_TRUE(r) << r.error().to_string();
    const ModelSegment& active = model_.segments.back();
    bool want = !active.empty() && clock_.now_ms() - active.first_append_ms >= config_.segment_ms;
    EXPECT_EQ(*r, want);
    if (want) model_.roll(clock_.now_ms());
  }

  void op_advance_clock() {
    uint64_t r = rng_.below(100);
    int64_t ms = r < 60   ? rng_.between(0, 2'000)
                 : r < 90 ? rng_.between(0, 60'000)
                          : rng_.between(0, 900'000);
    note(fmt::format("advance_clock {} ms", ms));
    clock_.advance(ms);
  }

  void op_flush() {
    note("flush");
    auto r = log_->flush();
    ASSERT_TRUE(r) << r.error().to_string();
    model_.flushed = model_.log_end();
  }

  // prepare_flush, then an append or a truncation, then execute and complete: a ticket
  // prepared before a truncation must not mark anything flushed.
  void op_flush_across_other_op() {
    note("prepare_flush");
    FlushTicket ticket = log_->prepare_flush();
    Offset target = model_.log_end();
    bool truncated = false;
    if (rng_.chance(0.5)) {
      op_append();
    } else {
      truncated = truncate_to(random_offset_near_log(1));
    }
    if (HasFailure()) return;
    note("execute_flush + complete_flush");
    auto r = execute_flush(ticket);
    ASSERT_TRUE(r) << r.error().to_string();
    log_->complete_flush(ticket);
    if (!truncated) {
      model_.flushed = std::max(model_.flushed, std::min(target, model_.log_end()));
    }
  }

  void op_reopen_clean() {
    note("close + open");
    auto r = log_->close();
    ASSERT_TRUE(r) << r.error().to_string();
    log_.reset();
    open_log();
  }

  void op_reopen_after_crash() {
    // The object goes without close(): the page cache keeps every write, so nothing may be lost.
    note("crash + open");
    log_.reset();
    open_log();
  }

  void op_set_config() {
    LogConfig c = random_config();
    note(
        fmt::format("set_config segment_bytes {} segment_ms {} index_interval {} "
                    "retention_bytes {} retention_ms {} preallocate {} ({} bytes)",
                    c.segment_bytes, c.segment_ms, c.index_interval_bytes, c.retention_bytes,
                    c.retention_ms, preallocate_name(c.preallocate), c.preallocate_bytes));
    config_ = c;
    log_->set_config(c);
  }

  void open_log() {
    auto r = PartitionLog::open(tmp_.path() + "/p-0", config_, clock_);
    ASSERT_TRUE(r) << r.error().to_string();
    log_ = std::move(*r);
    // Opening makes everything durable and readable; segment.ms restarts for every segment.
    if (model_.segments.empty()) model_.segments.push_back({Offset(0), clock_.now_ms(), {}});
    for (auto& s : model_.segments) s.first_append_ms = clock_.now_ms();
    model_.high_watermark = model_.log_end();
    model_.flushed = model_.log_end();
  }

  // ---- Checks ----

  void check_agreement() {
    EXPECT_EQ(log_->log_start_offset().value(), model_.log_start.value()) << "log start";
    EXPECT_EQ(log_->log_end_offset().value(), model_.log_end().value()) << "log end";
    EXPECT_EQ(log_->high_watermark().value(), model_.high_watermark.value()) << "high watermark";
    EXPECT_EQ(log_->flushed_offset().value(), model_.flushed.value()) << "flushed offset";
    EXPECT_EQ(raw(log_->segment_bases()), raw(model_.bases())) << "segment bases";
    EXPECT_EQ(log_->segment_count(), model_.segments.size());
    EXPECT_EQ(log_->size_bytes(), model_.size_bytes()) << "size in bytes";
    if (HasFailure()) return;
    check_contents();
    check_epochs();
  }

  // Reads the whole visible log, one segment per read, and compares every byte.
  void check_contents() {
    Offset next = model_.log_start;
    while (next < model_.log_end() && !HasFailure()) {
      auto last =
          check_read({.start = next, .max_bytes = 1 << 20, .upper_bound = model_.log_end()});
      if (!last) {
        ADD_FAILURE() << "reading the whole log stopped at offset " << next.value();
        return;
      }
      next = *last + 1;
    }
  }

  // Every visible batch was written in the epoch the cache gives for its first visible offset.
  void check_epochs() {
    for (const auto& s : model_.segments)
      for (const auto& b : s.batches) {
        if (b.last < model_.log_start) continue;
        Offset first = std::max(b.base, model_.log_start);
        auto e = log_->epochs().epoch_for(first);
        EXPECT_EQ(e.value_or(-1), b.epoch) << "leader epoch for offset " << first.value();
      }
  }

  // What a read must return: whole batches of one segment (a FileSlice is one file), from the
  // one holding start, none holding an offset at or past the bound, at most max_bytes unless
  // min_one_batch lets the first one through alone.
  std::vector<const ModelBatch*> expected_read(const ReadOptions& o) const {
    std::vector<const ModelBatch*> out;
    Offset upper = std::min(o.upper_bound.value_or(model_.high_watermark), model_.log_end());
    if (o.start >= upper || o.max_bytes <= 0) return out;
    auto at = model_.locate(o.start);
    if (!at) return out;
    const auto& batches = model_.segments[at->first].batches;
    int64_t total = 0;
    for (size_t i = at->second; i < batches.size() && batches[i].last < upper; ++i) {
      if (total + batches[i].size() > o.max_bytes) {
        if (out.empty() && o.min_one_batch) out.push_back(&batches[i]);
        break;
      }
      total += batches[i].size();
      out.push_back(&batches[i]);
    }
    return out;
  }

  // Runs a read and checks it against the model. Returns the last offset returned.
  std::optional<Offset> check_read(const ReadOptions& o) {
    auto r = log_->read(o);
    if (o.start < model_.log_start || o.start > model_.log_end()) {
      EXPECT_FALSE(r) << "read outside the log succeeded";
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::out_of_range) << r.error().to_string();
      }
      return std::nullopt;
    }
    if (!r) {
      ADD_FAILURE() << "read failed: " << r.error().to_string();
      return std::nullopt;
    }
    EXPECT_EQ(r->log_start_offset.value(), model_.log_start.value());
    EXPECT_EQ(r->high_watermark.value(), model_.high_watermark.value());
    EXPECT_EQ(r->log_end_offset.value(), model_.log_end().value());

    std::vector<uint8_t> got;
    if (r->slice.size > 0) {
      got = read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
    }
    std::vector<BatchInfo> got_batches = check_batch_structure(o, got);

    std::vector<uint8_t> want;
    std::string want_desc;
    for (const ModelBatch* b : expected_read(o)) {
      want.insert(want.end(), b->bytes.begin(), b->bytes.end());
      want_desc += fmt::format(" {}-{} ({} B)", b->base, b->last, b->size());
    }
    std::string got_desc;
    for (const auto& b : got_batches)
      got_desc += fmt::format(" {}-{} ({} B)", b.base, b.last, b.size);
    EXPECT_EQ(got.size(), want.size()) << "expected batches:" << want_desc << "\n got:" << got_desc;
    if (got.size() == want.size() && got != want) {
      size_t i = size_t(std::mismatch(got.begin(), got.end(), want.begin()).first - got.begin());
      ADD_FAILURE() << "read bytes differ from what was appended, first at byte " << i
                    << " of the slice; batches:" << want_desc;
    }
    outcomes_["batches read"] += int(got_batches.size());
    if (got_batches.empty()) return std::nullopt;
    return got_batches.back().last;
  }

  // The checks a reader makes without a model: whole, valid batches with consecutive offsets,
  // the first holding start, none reaching the bound, within max_bytes.
  std::vector<BatchInfo> check_batch_structure(const ReadOptions& o,
                                               const std::vector<uint8_t>& bytes) {
    std::vector<BatchInfo> out;
    std::span<const uint8_t> rest(bytes);
    while (!rest.empty()) {
      auto v = model::RecordBatchView::parse(rest);
      if (!v) {
        ADD_FAILURE() << "slice does not hold whole batches at byte " << bytes.size() - rest.size()
                      << ": " << v.error().to_string();
        return out;
      }
      EXPECT_TRUE(v->verify_crc()) << "CRC of the batch at offset " << v->base_offset();
      if (!out.empty()) {
        EXPECT_EQ(v->base().value(), out.back().last.value() + 1) << "offsets not contiguous";
      }
      out.push_back(BatchInfo{int64_t(bytes.size() - rest.size()), int64_t(v->size_bytes()),
                              v->base(), v->last(), v->max_timestamp()});
      rest = rest.subspan(v->size_bytes());
    }
    if (out.empty()) return out;
    Offset upper = std::min(o.upper_bound.value_or(model_.high_watermark), model_.log_end());
    EXPECT_LE(out.front().base.value(), o.start.value()) << "first batch starts after the start";
    EXPECT_GE(out.front().last.value(), o.start.value()) << "first batch ends before the start";
    EXPECT_LT(out.back().last.value(), upper.value()) << "an offset at or past the bound";
    if (out.size() > 1 || !o.min_one_batch) {
      EXPECT_LE(int64_t(bytes.size()), o.max_bytes) << "more than max_bytes";
    }
    return out;
  }

  std::optional<ModelBatch> random_visible_batch() {
    std::vector<const ModelBatch*> all;
    for (const auto& s : model_.segments)
      for (const auto& b : s.batches)
        if (b.last >= model_.log_start) all.push_back(&b);
    if (all.empty()) return std::nullopt;
    return *all[rng_.below(all.size())];
  }

  void note(std::string what) { history_.push_back(fmt::format("step {}: {}", step_, what)); }

  void print_stats() {
    std::cerr << "seed " << seed_ << " ran:";
    for (const auto& [name, n] : ops_run_) std::cerr << " " << name << " " << n;
    std::cerr << "\n  outcomes:";
    for (const auto& [name, n] : outcomes_) std::cerr << " " << name << " " << n << ";";
    std::cerr << fmt::format(" at the end: offsets {}-{}, {} segments, {} bytes\n",
                             model_.log_start, model_.log_end(), model_.segments.size(),
                             model_.size_bytes());
  }

  void print_history() {
    size_t from = history_.size() > 40 ? history_.size() - 40 : 0;
    std::cerr << "seed " << seed_ << ": the last " << history_.size() - from << " operations\n";
    for (size_t i = from; i < history_.size(); ++i) std::cerr << "  " << history_[i] << "\n";
  }

  uint64_t seed_;
  Random rng_;
  ManualClock clock_{kStartMs};
  TempDir tmp_;
  LogConfig config_;
  std::unique_ptr<PartitionLog> log_;
  Model model_;
  int32_t epoch_ = 0;
  int64_t last_timestamp_ = 0;
  int step_ = 0;
  std::vector<std::string> history_;
  std::map<std::string, int> ops_run_, outcomes_;  // printed with ORDO_MODEL_VERBOSE
  void (*previous_abort_handler_)(int) = SIG_DFL;
  LogLevel previous_log_threshold_ = LogLevel::info;
};

TEST_P(PartitionLogModelTest, AgreesWithModel) {
  int iterations = int(env_int("ORDO_MODEL_ITERATIONS", 300));
  if (std::getenv("ORDO_MODEL_SEED")) {
    run(iterations);
  } else {
    run_in_child([&] { run(iterations); },
                 fmt::format("; rerun with ORDO_MODEL_SEED={}", GetParam()));
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, PartitionLogModelTest, ::testing::ValuesIn(model_seeds()),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return "seed_" + std::to_string(info.param);
                         });

// ---- Minimal reproductions of what the model test found -------------------------------------
// The seeds and steps named are where the default run first fails because of each bug (with
// the generator as it is now; changing the operation mix moves them).

class PartitionLogModelRegressionTest : public ::testing::Test {
 protected:
  std::unique_ptr<PartitionLog> open_log(int64_t segment_bytes = 1 << 20) {
    LogConfig c;
    c.segment_bytes = segment_bytes;
    c.index_interval_bytes = 0;
    c.retention_ms = -1;
    c.flush_mode = FlushMode::none;
    c.preallocate = Preallocate::none;
    auto log = PartitionLog::open(dir_.path() + "/p-0", c, clock_);
    EXPECT_TRUE(log) << log.error().to_string();
    return log ? std::move(*log) : nullptr;
  }
  // Appends one batch with these record timestamps (values of value_bytes bytes) and moves the
  // high watermark to the log end.
  static void append(PartitionLog& log, std::vector<int64_t> timestamps, size_t value_bytes = 1) {
    model::RecordBatchBuilder b;
    for (int64_t ts : timestamps) b.add(std::nullopt, std::string(value_bytes, 'v'), ts);
    auto bytes = b.build();
    auto r = log.append(bytes);
    ASSERT_TRUE(r) << r.error().to_string();
    log.set_high_watermark(log.log_end_offset());
  }
  TempDir dir_;
  ManualClock clock_{kStartMs};
};

// A read whose first batch is larger than max_bytes with min_one_batch = false must return
// nothing; it returns the first batch of the next segment instead, which does not hold the
// requested offset (it skipped offsets 0-4): PartitionLog::read moves on to the next segment
// whenever a segment gave nothing. Model test: seed 25 step 33, seed 8 step 68.
TEST_F(PartitionLogModelRegressionTest, ReadWithoutMinOneBatchDoesNotSkipToTheNextSegment) {
  auto log = open_log(/*segment_bytes=*/300);
  append(*log, {1000, 1000, 1000, 1000, 1000}, 40);  // offsets 0-4, 296 bytes, segment 0
  append(*log, {1000}, 1);                           // offset 5, 69 bytes, segment 5
  ASSERT_EQ(log->segment_count(), 2u);
  auto r = log->read({.start = Offset(0), .max_bytes = 100, .min_one_batch = false});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->slice.size, 0) << "returned " << r->slice.size << " bytes from file "
                              << r->slice.file->path();
}

// offset_for_timestamp looks in each segment only at the first batch whose max timestamp is
// large enough; when that batch lies wholly below the log start it gives up on the whole
// segment, missing later batches of it. Here offset 6 (ts 2000) is the answer. Model test:
// seed 28 step 28, seed 17 step 34.
TEST_F(PartitionLogModelRegressionTest, OffsetForTimestampLooksPastBatchesBelowTheLogStart) {
  auto log = open_log();
  append(*log, {1000, 1001, 1002});  // offsets 0-2
  append(*log, {500, 501, 502});     // offsets 3-5
  append(*log, {2000, 2001, 2002});  // offsets 6-8
  ASSERT_TRUE(log->advance_log_start_offset(Offset(3)));
  auto r = log->offset_for_timestamp(1000);
  ASSERT_TRUE(r) << r.error().to_string();
  ASSERT_TRUE(r->has_value()) << "nothing found";
  EXPECT_EQ((*r)->offset.value(), 6);
  EXPECT_EQ((*r)->timestamp, 2000);
}

// When the batch found for a timestamp holds the log start and only its records below the log
// start are late enough, offset_for_timestamp answers with the batch's max timestamp and the log
// start, a pair that is no record (offset 2 has timestamp 50), instead of looking further.
// Model test: seed 20 step 104.
TEST_F(PartitionLogModelRegressionTest, OffsetForTimestampInsideTheBatchHoldingTheLogStart) {
  auto log = open_log();
  append(*log, {100, 200, 50, 50, 50});  // offsets 0-4
  append(*log, {300, 300});              // offsets 5-6
  ASSERT_TRUE(log->advance_log_start_offset(Offset(2)));
  auto r = log->offset_for_timestamp(150);
  ASSERT_TRUE(r && r->has_value());
  EXPECT_EQ((*r)->offset.value(), 5);
  EXPECT_EQ((*r)->timestamp, 300);
}

// max_timestamp_offset counts records below the log start: the segment's max timestamp is
// that of offset 1, which is gone, and the answer (900 at offset 2) is no record at all.
// Model test: seed 10 step 24, seed 1 step 71.
TEST_F(PartitionLogModelRegressionTest, MaxTimestampIgnoresRecordsBelowTheLogStart) {
  auto log = open_log();
  append(*log, {100, 900, 50, 50, 50});  // offsets 0-4
  append(*log, {300});                   // offset 5
  ASSERT_TRUE(log->advance_log_start_offset(Offset(2)));
  auto r = log->max_timestamp_offset();
  ASSERT_TRUE(r && r->has_value());
  EXPECT_EQ((*r)->offset.value(), 5);
  EXPECT_EQ((*r)->timestamp, 300);
}

}  // namespace
}  // namespace ordo::storage
