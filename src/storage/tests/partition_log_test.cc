#include "storage/partition_log.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <mutex>

#include "base/coding.h"
#include "base/file.h"
#include "base/log.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {
namespace {

using testing::make_batch;
using testing::read_slice_bytes;
using testing::TempDir;
using testing::values_of;

LogConfig small_config() {
  LogConfig c;
  c.segment_bytes = 4096;
  c.index_interval_bytes = 256;
  c.flush_mode = FlushMode::none;
  c.preallocate = Preallocate::none;
  c.retention_ms = -1;
  return c;
}

std::vector<uint8_t> read_all(PartitionLog& log, Offset from = Offset(0)) {
  std::vector<uint8_t> out;
  auto slices = [&](Offset next) -> Result<FileSlice> {
    auto r = log.read({.start = next, .max_bytes = 1000});
    if (!r) return std::move(r).error();
    return r->slice;
  };
  testing::for_each_batch(slices, std::max(from, log.log_start_offset()),
                          [&](const model::RecordBatchView& v) {
                            out.insert(out.end(), v.bytes().begin(), v.bytes().end());
                          });
  return out;
}

// A one-byte read from o returns exactly the one batch that holds o (min_one_batch).
void expect_one_batch_holding(const PartitionLog& log, Offset o) {
  SCOPED_TRACE(fmt::format("offset {}", o));
  auto r = log.read({.start = o, .max_bytes = 1});
  ASSERT_TRUE(r);
  auto bytes = read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
  auto v = model::RecordBatchView::parse(bytes);
  ASSERT_TRUE(v);
  EXPECT_EQ(size_t(r->slice.size), v->size_bytes());
  EXPECT_LE(v->base(), o);
  EXPECT_GE(v->last(), o);
}

std::vector<std::string> expected_values(int batches, int per_batch, const std::string& tag) {
  std::vector<std::string> v;
  for (int b = 0; b < batches; ++b)
    for (int i = 0; i < per_batch; ++i)
      v.push_back(tag + std::to_string(b) + "-" + std::to_string(i));
  return v;
}

class PartitionLogTest : public ::testing::Test {
 protected:
  std::unique_ptr<PartitionLog> open_log(LogConfig cfg = small_config(), OpenOptions o = {}) {
    auto log = PartitionLog::open(dir_.path() + "/t-0", cfg, clock_, o);
    EXPECT_TRUE(log) << log.error().to_string();
    return log ? std::move(*log) : nullptr;
  }
  void append_n(PartitionLog& log, int batches, int per_batch, const std::string& tag,
                int64_t ts = 1000) {
    for (int b = 0; b < batches; ++b) {
      auto bytes = make_batch(per_batch, tag + std::to_string(b), ts + b * per_batch);
      auto r = log.append(bytes);
      ASSERT_TRUE(r) << r.error().to_string();
    }
  }
  std::string seg_path(Offset base, const char* suffix) {
    return dir_.path() + "/t-0/" + segment_file_name(base, suffix);
  }
  TempDir dir_;
  ManualClock clock_{1'700'000'000'000};
};

TEST_F(PartitionLogTest, AppendAssignsOffsetsAndReadsBack) {
  auto log = open_log();
  auto batch = make_batch(3, "a");
  auto r = log->append(batch, {.leader_epoch = 7});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first_offset, Offset(0));
  EXPECT_EQ(r->last_offset, Offset(2));
  auto second = make_batch(2, "b");
  auto r2 = log->append(second, {.leader_epoch = 7});
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->first_offset, Offset(3));
  EXPECT_EQ(log->log_end_offset(), Offset(5));
  log->set_high_watermark(Offset(5));
  auto bytes = read_all(*log);
  EXPECT_EQ(values_of(bytes), (std::vector<std::string>{"a-0", "a-1", "a-2", "b-0", "b-1"}));
  auto v = model::RecordBatchView::parse(bytes);
  EXPECT_EQ(v->leader_epoch(), 7);
  EXPECT_TRUE(v->verify_crc());
  EXPECT_EQ(log->epochs().latest()->epoch, 7);
}

TEST_F(PartitionLogTest, RejectsMalformedAppendsWithoutWriting) {
  auto log = open_log();
  auto good = make_batch(2, "g");
  auto bad_crc = good;
  ASSERT_FALSE(bad_crc.empty());
  bad_crc.back() ^= 1;
  std::vector<uint8_t> both = good;
  both.insert(both.end(), bad_crc.begin(), bad_crc.end());
  auto r = log->append(both);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
  auto truncated = good;
  truncated.resize(truncated.size() - 3);
  EXPECT_EQ(log->append(truncated).error().code, Errc::invalid_argument);
  EXPECT_EQ(log->log_end_offset(), Offset(0));
  EXPECT_EQ(log->size_bytes(), 0);
}

TEST_F(PartitionLogTest, RollsSegmentsAndReadsAcrossThem) {
  auto log = open_log();
  append_n(*log, 60, 5, "v");  // ~60 * 200 bytes, several 4 KiB segments
  EXPECT_GT(log->segment_count(), 2u);
  log->set_high_watermark(log->log_end_offset());
  EXPECT_EQ(values_of(read_all(*log)), expected_values(60, 5, "v"));
  for (int64_t o = 0; o < 300; o += 7) expect_one_batch_holding(*log, Offset(o));
  auto none = log->read({.start = Offset(5), .max_bytes = 1, .min_one_batch = false});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->slice.size, 0);
  auto out = log->read({.start = Offset(301)});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::out_of_range);
}

TEST_F(PartitionLogTest, ReadHonoursMaxBytesAndUpperBound) {
  auto log = open_log();
  append_n(*log, 10, 4, "m");
  log->set_high_watermark(Offset(20));
  auto r = log->read({.start = Offset(0), .max_bytes = 1 << 20});
  ASSERT_TRUE(r);
  auto bytes = read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
  EXPECT_EQ(values_of(bytes).size(), 20u);  // stops at the high watermark
  size_t one = make_batch(4, "m0").size();
  auto r2 = log->read({.start = Offset(0), .max_bytes = int64_t(one * 3 - 1)});
  ASSERT_TRUE(r2);
  EXPECT_EQ(size_t(r2->slice.size), one * 2);  // whole batches only
  auto r3 = log->read({.start = Offset(20), .upper_bound = Offset(40)});
  ASSERT_TRUE(r3);
  EXPECT_EQ(
      values_of(read_slice_bytes(r3->slice.file->fd(), r3->slice.position, r3->slice.size)).size(),
      20u);
  auto at_hw = log->read({.start = Offset(20)});
  ASSERT_TRUE(at_hw);
  EXPECT_EQ(at_hw->slice.size, 0);
}

TEST_F(PartitionLogTest, CleanReopenKeepsEverything) {
  {
    auto log = open_log();
    append_n(*log, 40, 5, "c");
    ASSERT_TRUE(log->close());
  }
  EXPECT_TRUE(file_exists(dir_.path() + "/t-0/clean-shutdown"));
  auto log = open_log();
  EXPECT_FALSE(file_exists(dir_.path() + "/t-0/clean-shutdown"));
  EXPECT_EQ(log->log_end_offset(), Offset(200));
  EXPECT_EQ(values_of(read_all(*log)), expected_values(40, 5, "c"));
  append_n(*log, 1, 5, "d");
  EXPECT_EQ(log->log_end_offset(), Offset(205));
}

TEST_F(PartitionLogTest, UncleanReopenRecoversEverythingWritten) {
  for (auto prealloc : {Preallocate::none, Preallocate::zero_fill}) {
    TempDir d;
    LogConfig cfg = small_config();
    cfg.preallocate = prealloc;
    cfg.preallocate_bytes = 4096;
    cfg.segment_bytes = 8192;
    {
      auto log = PartitionLog::open(d.path() + "/p-0", cfg, clock_);
      ASSERT_TRUE(log);
      append_n(**log, 50, 5, "u");
      // No close: as if the process died. The page cache still holds every write.
    }
    auto log = PartitionLog::open(d.path() + "/p-0", cfg, clock_);
    ASSERT_TRUE(log) << log.error().to_string();
    EXPECT_EQ((*log)->log_end_offset(), Offset(250));
    EXPECT_EQ(values_of(read_all(**log)), expected_values(50, 5, "u"));
    append_n(**log, 1, 5, "more");
    EXPECT_EQ((*log)->log_end_offset(), Offset(255));
  }
}

TEST_F(PartitionLogTest, PreallocatedFileIsTrimmedOnClose) {
  LogConfig cfg = small_config();
  cfg.preallocate = Preallocate::zero_fill;
  cfg.preallocate_bytes = 1 << 20;
  cfg.segment_bytes = 1 << 24;
  auto log = open_log(cfg);
  append_n(*log, 3, 5, "p");
  std::string path = seg_path(Offset(0), ".log");
  EXPECT_EQ(std::filesystem::file_size(path), size_t(1 << 20));
  int64_t logical = log->size_bytes();
  ASSERT_TRUE(log->close());
  EXPECT_EQ(int64_t(std::filesystem::file_size(path)), logical);
}

TEST_F(PartitionLogTest, TruncateToRemovesWholeBatches) {
  auto log = open_log();
  append_n(*log, 30, 5, "t");
  ASSERT_TRUE(log->truncate_to(Offset(52)));  // inside batch 10 (offsets 50-54)
  EXPECT_EQ(log->log_end_offset(), Offset(50));
  log->set_high_watermark(Offset(50));
  EXPECT_EQ(values_of(read_all(*log)), expected_values(10, 5, "t"));
  append_n(*log, 2, 5, "n");
  EXPECT_EQ(log->log_end_offset(), Offset(60));
  ASSERT_TRUE(log->truncate_to(Offset(0)));
  EXPECT_EQ(log->log_end_offset(), Offset(0));
  EXPECT_EQ(log->segment_count(), 1u);
  ASSERT_TRUE(log->close());
  auto again = open_log();
  EXPECT_EQ(again->log_end_offset(), Offset(0));
}

TEST_F(PartitionLogTest, RetentionByBytesAndLogStart) {
  LogConfig cfg = small_config();
  cfg.retention_bytes = 8192;
  auto log = open_log(cfg);
  append_n(*log, 100, 5, "r");
  log->set_high_watermark(log->log_end_offset());
  int64_t before = log->size_bytes();
  auto deleted = log->enforce_retention();
  ASSERT_TRUE(deleted);
  EXPECT_GT(*deleted, 0);
  EXPECT_LT(log->size_bytes(), before);
  EXPECT_GE(log->size_bytes(), cfg.retention_bytes);
  EXPECT_LT(log->size_bytes() - int64_t(cfg.segment_bytes), cfg.retention_bytes);
  Offset start = log->log_start_offset();
  EXPECT_GT(start, Offset(0));
  EXPECT_EQ(start, log->segment_bases().front());
  EXPECT_EQ(log->read({.start = start - 1}).error().code, Errc::out_of_range);
  auto rest = values_of(read_all(*log, start));
  EXPECT_EQ(rest.back(), "r99-4");
  // DeleteRecords-style advance, persisted across reopen.
  ASSERT_TRUE(log->advance_log_start_offset(Offset(450)));
  EXPECT_EQ(log->log_start_offset(), Offset(450));
  EXPECT_FALSE(log->advance_log_start_offset(Offset(501)));
  ASSERT_TRUE(log->close());
  auto again = open_log(cfg);
  EXPECT_EQ(again->log_start_offset(), Offset(450));
}

TEST_F(PartitionLogTest, RetentionByTime) {
  LogConfig cfg = small_config();
  cfg.retention_ms = 60'000;
  auto log = open_log(cfg);
  int64_t old_ts = clock_.now_ms() - 120'000;
  append_n(*log, 40, 5, "old", old_ts);
  append_n(*log, 5, 5, "new", clock_.now_ms());
  log->set_high_watermark(log->log_end_offset());
  auto deleted = log->enforce_retention();
  ASSERT_TRUE(deleted);
  EXPECT_GT(*deleted, 0);
  auto rest = values_of(read_all(*log, log->log_start_offset()));
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back(), "new4-4");
  // Everything expires once the clock moves on; the active segment is rolled away too.
  clock_.advance(10 * 60'000);
  ASSERT_TRUE(log->enforce_retention());
  EXPECT_EQ(log->log_start_offset(), log->log_end_offset());
  EXPECT_EQ(log->size_bytes(), 0);
}

TEST_F(PartitionLogTest, RetentionByTimeUsesTheFileTimeWhenRecordsHaveNoTimestamp) {
  LogConfig cfg = small_config();
  cfg.retention_ms = 60'000;
  auto log = open_log(cfg);
  for (int i = 0; i < 40; ++i) {  // one record each, timestamp -1: max timestamp -1
    auto bytes = make_batch(1, "nots" + std::to_string(i), -1, 200);
    ASSERT_TRUE(log->append(bytes));
  }
  ASSERT_GT(log->segment_count(), 1u);
  log->set_high_watermark(log->log_end_offset());
  // The files were just written (their mtime is now, after this clock's cutoff): kept.
  auto deleted = log->enforce_retention();
  ASSERT_TRUE(deleted);
  EXPECT_EQ(*deleted, 0);
  EXPECT_EQ(log->log_start_offset(), Offset(0));
  // Ten years on, the file times are past retention.ms too.
  clock_.advance(int64_t(10) * 365 * 24 * 3600 * 1000);
  ASSERT_TRUE(log->enforce_retention());
  EXPECT_EQ(log->log_start_offset(), log->log_end_offset());
}

TEST_F(PartitionLogTest, SegmentMsRollsByTime) {
  LogConfig cfg = small_config();
  cfg.segment_bytes = 1 << 20;
  cfg.segment_ms = 1000;
  auto log = open_log(cfg);
  append_n(*log, 2, 5, "s");
  EXPECT_EQ(log->segment_count(), 1u);
  clock_.advance(1000);
  append_n(*log, 1, 5, "s");
  EXPECT_EQ(log->segment_count(), 2u);
  clock_.advance(1000);
  auto rolled = log->maybe_roll_by_time();
  ASSERT_TRUE(rolled);
  EXPECT_TRUE(*rolled);
  EXPECT_EQ(log->segment_count(), 3u);
}

TEST_F(PartitionLogTest, OffsetForTimestamp) {
  auto log = open_log();
  // Batch b holds timestamps 1000 + 10b .. 1000 + 10b + 4 (offsets 5b .. 5b + 4).
  for (int b = 0; b < 50; ++b) {
    auto bytes = make_batch(5, "ts" + std::to_string(b), 1000 + 10 * b);
    ASSERT_TRUE(log->append(bytes));
  }
  auto at = [&](int64_t ts) { return log->offset_for_timestamp(ts).value(); };
  EXPECT_EQ(at(0), (TimestampOffset{1000, Offset(0)}));
  EXPECT_EQ(at(1000), (TimestampOffset{1000, Offset(0)}));
  EXPECT_EQ(at(1003), (TimestampOffset{1003, Offset(3)}));
  EXPECT_EQ(at(1005), (TimestampOffset{1010, Offset(5)}));
  EXPECT_EQ(at(1252), (TimestampOffset{1252, Offset(127)}));
  EXPECT_EQ(at(1494), (TimestampOffset{1494, Offset(249)}));
  EXPECT_FALSE(at(1495).has_value());
  auto max = log->max_timestamp_offset();
  ASSERT_TRUE(max && *max);
  EXPECT_EQ(**max, (TimestampOffset{1494, Offset(249)}));
  // The same answers after a clean reopen (indexes from files) and a crash (rebuilt).
  ASSERT_TRUE(log->close());
  log = open_log();
  EXPECT_EQ(at(1252), (TimestampOffset{1252, Offset(127)}));
  log.reset();
  log = open_log();
  EXPECT_EQ(at(1333), (TimestampOffset{1333, Offset(168)}));
  EXPECT_EQ(log->max_timestamp_offset().value()->offset, Offset(249));
}

TEST_F(PartitionLogTest, FollowerAppendKeepsOffsetsAndEpochs) {
  auto log = open_log();
  auto b1 = make_batch(3, "f");
  model::set_base_offset(b1, Offset(100));
  model::set_leader_epoch(b1, 4);
  // The log is empty at 0; a follower may only append at or after its end.
  auto r = log->append(b1, {.assign_offsets = false});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->first_offset, Offset(100));
  EXPECT_EQ(log->log_end_offset(), Offset(103));
  EXPECT_EQ(log->epochs().latest()->epoch, 4);
  EXPECT_EQ(log->epochs().latest()->start_offset, Offset(100));
  auto b2 = make_batch(1, "g");
  model::set_base_offset(b2, Offset(50));
  EXPECT_EQ(log->append(b2, {.assign_offsets = false}).error().code, Errc::invalid_argument);
}

TEST_F(PartitionLogTest, TruncateIntoTheBatchHoldingTheLogStart) {
  auto log = open_log();
  append_n(*log, 6, 5, "a");  // batches of offsets 0-4, 5-9, ..., 25-29
  log->set_high_watermark(Offset(30));
  ASSERT_TRUE(log->advance_log_start_offset(Offset(22)));
  ASSERT_TRUE(log->truncate_to(Offset(24)));  // removes the batch 20-24 that holds the start
  EXPECT_EQ(log->log_end_offset(), Offset(20));
  EXPECT_EQ(log->log_start_offset(), Offset(20));
  EXPECT_EQ(log->high_watermark(), Offset(20));
  append_n(*log, 1, 5, "b");
  EXPECT_EQ(log->log_end_offset(), Offset(25));
}

TEST_F(PartitionLogTest, FlushPreparedBeforeATruncationDoesNotCoverNewData) {
  auto log = open_log();
  append_n(*log, 10, 5, "a");
  FlushTicket stale = log->prepare_flush();  // covers offsets < 50
  ASSERT_TRUE(execute_flush(stale));
  ASSERT_TRUE(log->truncate_to(Offset(20)));
  append_n(*log, 10, 5, "b");  // offsets 20..69, none synced
  log->complete_flush(stale);
  EXPECT_LE(log->flushed_offset(), Offset(20));
  ASSERT_TRUE(log->flush());
  EXPECT_EQ(log->flushed_offset(), Offset(70));
}

// ---- Corruption ----------------------------------------------------------------------------

std::vector<std::pair<LogLevel, std::string>>& captured() {
  static std::vector<std::pair<LogLevel, std::string>> lines;
  return lines;
}
std::mutex g_capture_mu;
void capture_sink(LogLevel level, std::string_view line) {
  std::lock_guard lock(g_capture_mu);
  captured().emplace_back(level, std::string(line));
}

class CorruptionTest : public PartitionLogTest {
 protected:
  void SetUp() override {
    captured().clear();
    set_log_sink(capture_sink);
  }
  void TearDown() override { set_log_sink(nullptr); }
  bool logged(LogLevel level, const std::string& needle) {
    std::lock_guard lock(g_capture_mu);
    for (const auto& [l, s] : captured())
      if (l == level && s.find(needle) != std::string::npos) return true;
    return false;
  }
  // Writes 20 batches of 5 records into one segment and "crashes" (no close).
  std::vector<int64_t> write_and_crash() {
    LogConfig cfg = small_config();
    cfg.segment_bytes = 1 << 20;
    auto log = open_log(cfg);
    std::vector<int64_t> positions;
    for (int b = 0; b < 20; ++b) {
      positions.push_back(log->size_bytes());
      auto bytes = make_batch(5, "x" + std::to_string(b));
      EXPECT_TRUE(log->append(bytes));
    }
    positions.push_back(log->size_bytes());
    return positions;
  }
  void flip(const std::string& path, int64_t pos) {
    auto f = File::open(path, O_RDWR);
    ASSERT_TRUE(f);
    uint8_t b;
    ASSERT_TRUE(f->pread_exact({&b, 1}, pos));
    b ^= 0x10;
    ASSERT_TRUE(f->pwrite_all({&b, 1}, pos));
  }
};

TEST_F(CorruptionTest, FlippedByteInLastBatchIsTruncated) {
  auto pos = write_and_crash();
  flip(seg_path(Offset(0), ".log"), pos[19] + 40);
  LogConfig cfg = small_config();
  cfg.segment_bytes = 1 << 20;
  auto log = open_log(cfg);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->log_end_offset(), Offset(95));
  EXPECT_EQ(log->size_bytes(), pos[19]);
  EXPECT_TRUE(logged(LogLevel::warn, fmt::format("truncating {} bytes at position {}",
                                                 pos[20] - pos[19], pos[19])));
  EXPECT_EQ(values_of(read_all(*log)), expected_values(19, 5, "x"));
}

TEST_F(CorruptionTest, TornTailIsTruncated) {
  auto pos = write_and_crash();
  auto f = File::open(seg_path(Offset(0), ".log"), O_RDWR);
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->truncate(pos[20] - 7));  // the last batch lost its end
  LogConfig cfg = small_config();
  cfg.segment_bytes = 1 << 20;
  auto log = open_log(cfg);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->log_end_offset(), Offset(95));
  EXPECT_TRUE(logged(LogLevel::warn, "truncating"));
}

TEST_F(CorruptionTest, FlippedByteInMiddleBatchIsAClearError) {
  auto pos = write_and_crash();
  flip(seg_path(Offset(0), ".log"), pos[7] + 70);
  LogConfig cfg = small_config();
  cfg.segment_bytes = 1 << 20;
  auto log = PartitionLog::open(dir_.path() + "/t-0", cfg, clock_);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, Errc::corrupt);
  const std::string& msg = log.error().message;
  EXPECT_NE(msg.find("00000000000000000000.log"), std::string::npos) << msg;
  EXPECT_NE(msg.find(fmt::format("position {}", pos[7])), std::string::npos) << msg;
  EXPECT_NE(msg.find("CRC mismatch"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a torn write"), std::string::npos) << msg;
  // The file is untouched, and asking for truncation opens it without the bad part.
  EXPECT_EQ(int64_t(std::filesystem::file_size(seg_path(Offset(0), ".log"))), pos[20]);
  auto cut = open_log(cfg, {.truncate_corrupt = true});
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->log_end_offset(), Offset(35));
  EXPECT_EQ(values_of(read_all(*cut)), expected_values(7, 5, "x"));
}

TEST_F(CorruptionTest, FlippedLengthInMiddleBatchIsAClearError) {
  auto pos = write_and_crash();
  flip(seg_path(Offset(0), ".log"), pos[5] + 10);  // inside batchLength
  LogConfig cfg = small_config();
  cfg.segment_bytes = 1 << 20;
  auto log = PartitionLog::open(dir_.path() + "/t-0", cfg, clock_);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, Errc::corrupt);
}

TEST_F(CorruptionTest, MissingOrTruncatedIndexIsRebuilt) {
  {
    auto log = open_log();
    append_n(*log, 60, 5, "i");
    ASSERT_TRUE(log->close());
  }
  // Segment 0's index loses its file; the next one's is cut mid-entry; another one's time
  // index is garbage.
  auto bases = [&] {
    auto log = open_log();
    auto b = log->segment_bases();
    EXPECT_TRUE(log->close());
    return b;
  }();
  ASSERT_GE(bases.size(), 3u);
  std::filesystem::remove(seg_path(bases[0], ".index"));
  std::filesystem::resize_file(seg_path(bases[1], ".index"),
                               std::filesystem::file_size(seg_path(bases[1], ".index")) - 3);
  ASSERT_TRUE(
      write_file_atomic(seg_path(bases[2], ".timeindex"), std::string_view("garbage!garb")));
  captured().clear();
  auto log = open_log();
  EXPECT_TRUE(logged(LogLevel::warn, "rebuilding indexes"));
  EXPECT_EQ(values_of(read_all(*log)), expected_values(60, 5, "i"));
  for (int64_t o = 0; o < 300; o += 13) expect_one_batch_holding(*log, Offset(o));
  EXPECT_EQ(std::filesystem::file_size(seg_path(bases[1], ".index")) % 8, 0u);
  ASSERT_TRUE(log->offset_for_timestamp(1000).value().has_value());
}

TEST_F(CorruptionTest, ForeignFilesAreIgnoredWithAWarning) {
  {
    auto log = open_log();
    append_n(*log, 3, 5, "f");
    ASSERT_TRUE(log->close());
  }
  ASSERT_TRUE(write_file_atomic(dir_.path() + "/t-0/notes.txt", std::string_view("hello")));
  ASSERT_TRUE(write_file_atomic(dir_.path() + "/t-0/123.log", std::string_view("not a segment")));
  captured().clear();
  auto log = open_log();
  ASSERT_TRUE(log);
  EXPECT_TRUE(logged(LogLevel::warn, "ignoring unknown file notes.txt"));
  EXPECT_TRUE(logged(LogLevel::warn, "ignoring unknown file 123.log"));
  EXPECT_EQ(log->log_end_offset(), Offset(15));
  EXPECT_TRUE(file_exists(dir_.path() + "/t-0/notes.txt"));
}

TEST_F(CorruptionTest, TornTailInEarlierSegmentDropsLaterSegments) {
  LogConfig cfg = small_config();
  std::vector<Offset> bases;
  {
    auto log = open_log(cfg);
    append_n(*log, 100, 5, "s");
    bases = log->segment_bases();
  }
  ASSERT_GE(bases.size(), 3u);
  // Power loss lost the tail of segment 1 (never synced) while later ones reached the disk.
  std::string p = seg_path(bases[1], ".log");
  std::filesystem::resize_file(p, std::filesystem::file_size(p) - 5);
  std::filesystem::remove(dir_.path() + "/t-0/partition.state");
  auto log = open_log(cfg);
  ASSERT_TRUE(log);
  EXPECT_EQ(log->segment_count(), 2u);
  EXPECT_LT(log->log_end_offset(), bases[2]);
  EXPECT_TRUE(logged(LogLevel::warn, "after the torn tail"));
}

// ---- idempotent producers ----

std::vector<uint8_t> idempotent_batch(int64_t pid, int16_t epoch, int32_t seq, int n,
                                      const std::string& tag, int64_t ts = 1000) {
  model::RecordBatchBuilder b({.producer_id = pid, .producer_epoch = epoch, .base_sequence = seq});
  for (int i = 0; i < n; ++i) b.add("k", tag + "-" + std::to_string(i), ts + i);
  return b.build();
}

// A Raft follower behind its leader's log start discards its log and restarts empty there,
// past its old log end or inside it; the new start survives a crash and a clean restart.
TEST_F(PartitionLogTest, TruncateFullyAndStartAtRestartsTheLogEmpty) {
  for (int64_t start : {500, 7}) {
    SCOPED_TRACE(fmt::format("start {}", start));
    std::filesystem::remove_all(dir_.path() + "/t-0");
    {
      auto log = open_log();
      ASSERT_TRUE(log);
      for (int b = 0; b < 20; ++b) {
        auto bytes = make_batch(3, "r" + std::to_string(b), 1000, 200);
        ASSERT_TRUE(log->append(bytes, {.leader_epoch = b < 10 ? 1 : 2}));
      }
      ASSERT_GT(log->segment_count(), 1u);
      log->set_high_watermark(Offset(30));
      ASSERT_TRUE(log->truncate_fully_and_start_at(Offset(start)));
      EXPECT_EQ(log->log_start_offset(), Offset(start));
      EXPECT_EQ(log->log_end_offset(), Offset(start));
      EXPECT_EQ(log->high_watermark(), Offset(start));
      EXPECT_TRUE(log->epochs().entries().empty());
      EXPECT_EQ(log->segment_count(), 1u);
      auto bytes = make_batch(2, "after", 1000);
      model::set_base_offset(bytes, Offset(start));
      model::set_leader_epoch(bytes, 3);
      auto r = log->append(bytes, {.assign_offsets = false});
      ASSERT_TRUE(r) << r.error().to_string();
      EXPECT_EQ(r->first_offset, Offset(start));
      // Dropped without close(): the next open recovers as after a crash.
    }
    for (int round = 0; round < 2; ++round) {
      auto log = open_log();
      ASSERT_TRUE(log);
      EXPECT_EQ(log->log_start_offset(), Offset(start));
      EXPECT_EQ(log->log_end_offset(), Offset(start + 2));
      ASSERT_EQ(log->epochs().entries().size(), 1u);
      EXPECT_EQ(log->epochs().entries()[0], (EpochEntry{3, Offset(start)}));
      log->set_high_watermark(Offset(start + 2));
      EXPECT_EQ(values_of(read_all(*log)), (std::vector<std::string>{"after-0", "after-1"}));
      ASSERT_TRUE(log->close());
    }
  }
}

TEST_F(PartitionLogTest, IdempotentRetriesAreAnsweredWithTheOriginalOffsets) {
  auto log = open_log();
  append_n(*log, 1, 2, "plain");  // offsets 0-1, not idempotent
  auto first = idempotent_batch(7, 0, 0, 3, "a");
  auto r = log->append(first);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->first_offset, Offset(2));
  EXPECT_FALSE(r->duplicate);
  auto second = idempotent_batch(7, 0, 3, 2, "b");
  ASSERT_TRUE(log->append(second));  // offsets 5-6
  int64_t size = log->size_bytes();

  // A retry of either batch: the original offsets, nothing written.
  auto retry = idempotent_batch(7, 0, 0, 3, "a");
  auto d = log->append(retry);
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_TRUE(d->duplicate);
  EXPECT_EQ(d->first_offset, Offset(2));
  EXPECT_EQ(d->last_offset, Offset(4));
  EXPECT_EQ(log->size_bytes(), size);
  EXPECT_EQ(log->log_end_offset(), Offset(7));

  // A gap, an old epoch, a second batch in one call: refused, nothing written.
  auto gap = idempotent_batch(7, 0, 9, 1, "gap");
  auto g = log->append(gap);
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Errc::out_of_order_sequence);
  auto epoch1 = idempotent_batch(7, 1, 0, 1, "epoch1");
  ASSERT_TRUE(log->append(epoch1));  // a new epoch starts at 0
  auto old = idempotent_batch(7, 0, 5, 1, "old");
  auto o = log->append(old);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, Errc::invalid_producer_epoch);
  auto two = idempotent_batch(8, 0, 0, 1, "x");
  auto more = idempotent_batch(8, 0, 1, 1, "y");
  two.insert(two.end(), more.begin(), more.end());
  auto t = log->append(two);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, Errc::invalid_argument);
  EXPECT_EQ(log->log_end_offset(), Offset(8));
}

TEST_F(PartitionLogTest, ProducerStateSurvivesCleanAndCrashRestarts) {
  LogConfig cfg = small_config();
  cfg.segment_bytes = 600;  // a roll every few batches: snapshots on the way
  auto write = [&](PartitionLog& log, int from, int to) {
    for (int s = from; s < to; ++s) {
      auto b = idempotent_batch(42, 3, s, 1, "v" + std::to_string(s));
      auto r = log.append(b);
      ASSERT_TRUE(r) << r.error().to_string();
      ASSERT_FALSE(r->duplicate);
    }
  };
  auto expect_known = [&](PartitionLog& log, int next_seq, const char* when) {
    SCOPED_TRACE(when);
    // The last batch is a duplicate; the next sequence appends.
    auto dup = idempotent_batch(42, 3, next_seq - 1, 1, "v" + std::to_string(next_seq - 1));
    auto d = log.append(dup);
    ASSERT_TRUE(d) << d.error().to_string();
    EXPECT_TRUE(d->duplicate);
    EXPECT_EQ(d->first_offset, Offset(next_seq - 1));
    auto gap = idempotent_batch(42, 3, next_seq + 1, 1, "gap");
    auto g = log.append(gap);
    ASSERT_FALSE(g);
    EXPECT_EQ(g.error().code, Errc::out_of_order_sequence);
  };
  {
    auto log = open_log(cfg);
    write(*log, 0, 30);
    ASSERT_GT(log->segment_count(), 3u);
    ASSERT_TRUE(log->close());
  }
  {
    auto log = open_log(cfg);  // clean: from the snapshot written at close
    expect_known(*log, 30, "after a clean close");
    write(*log, 30, 45);
    // crash: no close (the state comes from the last roll's snapshot plus the replayed tail)
  }
  {
    auto log = open_log(cfg);
    expect_known(*log, 45, "after a crash");
    // Truncation forgets what it removes: sequence 40 may be written again.
    ASSERT_TRUE(log->truncate_to(Offset(40)));
    write(*log, 40, 41);
  }
}

TEST_F(PartitionLogTest, IdleProducersAreForgottenAfterTheExpiration) {
  LogConfig cfg = small_config();
  cfg.producer_id_expiration_ms = 60'000;
  auto log = open_log(cfg);
  // As in Kafka, a producer's last activity is its last batch's (CreateTime) max timestamp.
  auto first = idempotent_batch(5, 0, 0, 1, "a", clock_.now_ms());
  ASSERT_TRUE(log->append(first));
  auto gap = idempotent_batch(5, 0, 7, 1, "gap", clock_.now_ms());
  EXPECT_FALSE(log->append(gap));  // known producer: a gap
  EXPECT_EQ(log->producers().size(), 1u);
  clock_.advance(30'000);
  ASSERT_TRUE(log->enforce_retention());
  EXPECT_EQ(log->producers().size(), 1u);  // not idle long enough
  clock_.advance(31'000);
  ASSERT_TRUE(log->enforce_retention());
  EXPECT_EQ(log->producers().size(), 0u);
  // Forgotten: its next batch is taken at whatever sequence it carries (Kafka 2.5+).
  auto later = idempotent_batch(5, 0, 7, 1, "later");
  EXPECT_TRUE(log->append(later));
}

}  // namespace
}  // namespace ordo::storage
