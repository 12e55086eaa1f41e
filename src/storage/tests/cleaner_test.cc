// Log compaction (cleaner.h): one test per rule, the swap interrupted at each step, and a
// randomised model test.
//
//   ORDO_CLEANER_SEED=<n>   run only seed n of the model test (failures print the seed)
//   ORDO_CLEANER_SEEDS=<n>  number of seeds (default 20)

#include "storage/cleaner.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>

#include "base/log.h"
#include "base/random.h"
#include "compression/records.h"
#include "storage/partition_log.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {
namespace {

using testing::read_slice_bytes;
using testing::TempDir;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kDayMs = int64_t(24) * 3600 * 1000;

using Headers = std::vector<std::pair<std::string, std::optional<std::string>>>;

struct Rec {
  Offset offset;
  std::optional<std::string> key;
  std::optional<std::string> value;
  int64_t timestamp = 0;
  Headers headers;
  bool operator==(const Rec&) const = default;
};

struct StoredBatch {
  std::vector<uint8_t> bytes;
  std::vector<Rec> records;
};

LogConfig compact_config() {
  LogConfig c;
  c.cleanup_policy = CleanupPolicy::compact;
  c.segment_bytes = 4096;
  c.segment_ms = 1000;
  c.index_interval_bytes = 256;
  c.retention_ms = -1;
  c.flush_mode = FlushMode::none;
  return c;
}

// Every batch from the log start to the end; checks CRCs and strictly increasing offsets.
std::vector<StoredBatch> read_batches(PartitionLog& log) {
  std::vector<StoredBatch> out;
  log.set_high_watermark(log.log_end_offset());
  Offset prev_last{-1};
  auto slices = [&](Offset next) -> Result<FileSlice> {
    auto r = log.read({.start = next, .max_bytes = 1 << 20});
    if (!r) return std::move(r).error();
    return r->slice;
  };
  testing::for_each_batch(slices, log.log_start_offset(), [&](const model::RecordBatchView& v) {
    EXPECT_TRUE(v.verify_crc()) << "batch at " << v.base().value();
    EXPECT_GT(v.base(), prev_last);
    StoredBatch sb;
    sb.bytes.assign(v.bytes().begin(), v.bytes().end());
    auto decoded = compression::decode_batch(v);
    ASSERT_TRUE(decoded) << decoded.error().to_string();
    for (const auto& rec : decoded->records) {
      Rec x;
      x.offset = v.base() + rec.offset_delta;
      EXPECT_GT(x.offset, prev_last);
      prev_last = x.offset;
      if (rec.key) x.key = std::string(*rec.key);
      if (rec.value) x.value = std::string(*rec.value);
      x.timestamp = model::record_timestamp(v.base_timestamp(), rec.timestamp_delta);
      for (const auto& h : rec.headers) {
        x.headers.emplace_back(std::string(h.key),
                               h.value ? std::optional<std::string>(*h.value) : std::nullopt);
      }
      sb.records.push_back(std::move(x));
    }
    prev_last = std::max(prev_last, v.last());
    out.push_back(std::move(sb));
  });
  return out;
}

std::vector<Rec> read_records(PartitionLog& log) {
  std::vector<Rec> out;
  for (auto& b : read_batches(log)) {
    for (auto& r : b.records) out.push_back(std::move(r));
  }
  return out;
}

// key -> value after applying every record in order (tombstones delete).
std::map<std::string, std::string> apply(const std::vector<Rec>& recs) {
  std::map<std::string, std::string> m;
  for (const auto& r : recs) {
    if (!r.key) continue;
    if (r.value) {
      m[*r.key] = *r.value;
    } else {
      m.erase(*r.key);
    }
  }
  return m;
}

class CleanerTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open() {
    log_.reset();
    auto l = PartitionLog::open(dir_.path() + "/t-0", config_, clock_);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
  }

  Offset append(std::vector<model::RecordInput> recs, uint8_t codec = 0,
                model::RecordBatchOptions opts = {}) {
    model::RecordBatchBuilder b(opts);
    for (auto& r : recs) b.add(std::move(r));
    auto bytes = b.build();
    if (codec != 0) {
      auto v = model::RecordBatchView::parse(bytes);
      auto re = compression::recode_batch(*v, codec);
      EXPECT_TRUE(re);
      bytes = std::move(*re);
    }
    auto r = log_->append(bytes);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? r->first_offset : Offset(-1);
  }
  Offset put(std::string key, std::optional<std::string> value) {
    return append({{std::move(key), std::move(value), clock_.now_ms(), {}}});
  }
  void roll() {
    clock_.advance(config_.segment_ms);
    auto r = log_->maybe_roll_by_time();
    ASSERT_TRUE(r) << r.error().to_string();
  }
  CleanResult clean(CleanerOptions o = {.force = true}) {
    auto r = log_->clean(o);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : CleanResult{};
  }

  TempDir dir_;
  ManualClock clock_{kStartMs};
  LogConfig config_ = compact_config();
  std::unique_ptr<PartitionLog> log_;
};

TEST_F(CleanerTest, KeepsTheLatestRecordPerKeyAndKeylessRecords) {
  put("a", "a1");
  put("b", "b1");
  put("a", "a2");
  append({{std::nullopt, "no-key", clock_.now_ms(), {}}});
  put("b", "b2");
  put("c", "c1");
  roll();
  put("a", "a3");  // in the active segment: not cleaned, but it supersedes nothing yet
  auto res = clean();
  EXPECT_TRUE(res.cleaned);
  EXPECT_EQ(res.records_dropped, 2);
  EXPECT_EQ(res.cleaned_end, Offset(6));
  auto recs = read_records(*log_);
  std::vector<std::pair<int64_t, std::string>> got;
  for (const auto& r : recs) got.emplace_back(r.offset.value(), r.value.value_or("null"));
  EXPECT_EQ(got, (std::vector<std::pair<int64_t, std::string>>{
                     {2, "a2"}, {3, "no-key"}, {4, "b2"}, {5, "c1"}, {6, "a3"}}));
  // The next clean (once a3's segment is sealed) drops a2.
  roll();
  res = clean();
  EXPECT_TRUE(res.cleaned);
  recs = read_records(*log_);
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs.back().value, "a3");
  EXPECT_EQ(recs.front().offset, Offset(3));
  EXPECT_EQ(log_->log_start_offset(), Offset(0));
}

TEST_F(CleanerTest, TombstonesStayForDeleteRetentionThenGo) {
  put("a", "a1");
  put("b", "b1");
  put("a", std::nullopt);
  roll();
  auto res = clean();
  EXPECT_EQ(res.tombstones_dropped, 0);
  auto recs = read_records(*log_);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].key, "a");
  EXPECT_FALSE(recs[1].value.has_value());
  clock_.advance(config_.delete_retention_ms - config_.segment_ms - 1);
  res = clean({.force = true, .full = true});
  EXPECT_EQ(res.tombstones_dropped, 0) << "still within delete.retention.ms";
  clock_.advance(2);
  res = clean({.force = true, .full = true});
  EXPECT_EQ(res.tombstones_dropped, 1);
  recs = read_records(*log_);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].key, "b");
}

TEST_F(CleanerTest, ControlAndTransactionalBatchesAreUntouched) {
  put("a", "a1");
  append({{"a", "txn", clock_.now_ms(), {}}, {"b", "txn", clock_.now_ms(), {}}}, 0,
         {.producer_id = 7, .producer_epoch = 0, .base_sequence = 0, .transactional = true});
  append({{"ctl", "commit", clock_.now_ms(), {}}}, 0,
         {.producer_id = 7, .producer_epoch = 0, .transactional = true, .control = true});
  put("a", "a2");
  put("b", "b2");
  roll();
  auto before = read_batches(*log_);
  clean();
  auto after = read_batches(*log_);
  ASSERT_EQ(after.size(), 4u);  // a1 goes; the two transaction batches and a2, b2 stay
  EXPECT_EQ(after[0].bytes, before[1].bytes);
  EXPECT_EQ(after[1].bytes, before[2].bytes);
  EXPECT_EQ(after[2].bytes, before[3].bytes);
}

TEST_F(CleanerTest, CompressedBatchesAreRecodedInTheirCodec) {
  for (uint8_t codec : {0, 1, 2, 3, 4}) {
    SCOPED_TRACE(int(codec));
    TempDir d;
    auto l = PartitionLog::open(d.path() + "/c-0", config_, clock_);
    ASSERT_TRUE(l);
    log_ = std::move(*l);
    int64_t ts = clock_.now_ms();
    Headers h1{{"h", "1"}, {"n", std::nullopt}};
    append({{"k1", "v1", ts, h1},
            {"k2", "v2", ts + 5, {{"x", "y"}}},
            {"k1", "v1b", ts + 2, {}},
            {std::nullopt, "nokey", ts + 9, {}}},
           codec);
    append({{"k2", "v2b", ts + 1, {}}});  // supersedes the k2 record of the first batch
    roll();
    auto before = read_records(*log_);
    auto res = clean();
    EXPECT_EQ(res.records_dropped, 2);
    auto batches = read_batches(*log_);
    ASSERT_EQ(batches.size(), 2u);
    auto v = model::RecordBatchView::parse(batches[0].bytes);
    ASSERT_TRUE(v);
    EXPECT_EQ(int(v->compression()), int(codec));
    EXPECT_TRUE(v->verify_crc());
    EXPECT_EQ(v->record_count(), 2);
    EXPECT_EQ(v->base(), Offset(0));
    EXPECT_EQ(v->last(), Offset(3));  // the last offset delta is kept
    EXPECT_EQ(v->max_timestamp(), ts + 9);
    ASSERT_EQ(batches[0].records.size(), 2u);
    EXPECT_EQ(batches[0].records[0], before[2]);  // offset, key, value, timestamp, headers
    EXPECT_EQ(batches[0].records[1], before[3]);
    EXPECT_EQ(batches[1].records[0], before[4]);
  }
}

TEST_F(CleanerTest, ReadsAndLookupsWorkAcrossGaps) {
  Random rng(5);
  for (int i = 0; i < 300; ++i) {
    clock_.advance(1);
    put("k" + std::to_string(rng.below(10)), std::string(20, char('a' + i % 26)));
  }
  roll();
  clean();
  auto recs = read_records(*log_);
  ASSERT_EQ(recs.size(), 10u);
  log_->set_high_watermark(log_->log_end_offset());
  for (int64_t o = 0; o < log_->log_end_offset().value(); ++o) {
    auto r = log_->read({.start = Offset(o), .max_bytes = 1});
    ASSERT_TRUE(r) << o;
    ASSERT_GT(r->slice.size, 0) << o;
    auto bytes = read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
    auto v = model::RecordBatchView::parse(bytes);
    ASSERT_TRUE(v);
    auto expected =
        std::find_if(recs.begin(), recs.end(), [&](const Rec& x) { return x.offset >= Offset(o); });
    ASSERT_NE(expected, recs.end());
    EXPECT_EQ(v->base(), expected->offset) << "read at " << o;
  }
  for (int64_t ts = kStartMs; ts < kStartMs + 320; ts += 7) {
    auto t = log_->offset_for_timestamp(ts);
    ASSERT_TRUE(t);
    auto expected =
        std::find_if(recs.begin(), recs.end(), [&](const Rec& x) { return x.timestamp >= ts; });
    if (expected == recs.end()) {
      EXPECT_FALSE(t->has_value());
    } else {
      ASSERT_TRUE(t->has_value()) << ts;
      EXPECT_EQ((*t)->offset, expected->offset) << ts;
    }
  }
  auto mx = log_->max_timestamp_offset();
  ASSERT_TRUE(mx && mx->has_value());
  EXPECT_EQ((*mx)->offset, recs.back().offset);
}

TEST_F(CleanerTest, AppendsContinueAndReopenKeepsTheCleanedLog) {
  for (int i = 0; i < 200; ++i) put("k" + std::to_string(i % 7), std::to_string(i));
  roll();
  clean();
  auto before = read_records(*log_);
  Offset end = log_->log_end_offset();
  EXPECT_EQ(put("k1", "after"), end);
  before.push_back(read_records(*log_).back());
  Offset first_dirty = log_->first_dirty_offset();
  ASSERT_TRUE(log_->close());
  open();
  EXPECT_EQ(read_records(*log_), before);
  EXPECT_EQ(log_->first_dirty_offset(), first_dirty);
  // Unclean reopen too.
  put("k2", "x");
  before.push_back(read_records(*log_).back());
  open();
  EXPECT_EQ(read_records(*log_), before);
}

TEST_F(CleanerTest, TheKeyMapBudgetLimitsOnePass) {
  for (int i = 0; i < 100; ++i) put("key-" + std::to_string(i), "v");
  for (int i = 0; i < 100; ++i) put("key-" + std::to_string(i), "w");
  roll();
  // Room for 30 keys: the first pass maps offsets [0, 30).
  int64_t budget = 30 * (6 + KeyMap::kEntryOverheadBytes);
  auto res = clean({.key_map_bytes = budget, .force = true});
  EXPECT_TRUE(res.cleaned);
  EXPECT_TRUE(res.map_full);
  EXPECT_EQ(res.cleaned_end, Offset(30));
  EXPECT_EQ(res.records_dropped, 0);
  EXPECT_EQ(log_->first_dirty_offset(), Offset(30));
  for (int pass = 0; pass < 20 && log_->first_dirty_offset() < Offset(200); ++pass) {
    clean({.key_map_bytes = budget, .force = true});
  }
  EXPECT_EQ(log_->first_dirty_offset(), Offset(200));
  auto recs = read_records(*log_);
  // Each pass only removes what its map superseded; the values of the second round survive.
  auto m = apply(recs);
  ASSERT_EQ(m.size(), 100u);
  for (const auto& [k, v] : m) EXPECT_EQ(v, "w");
  EXPECT_EQ(clean({.key_map_bytes = 10, .force = true, .full = true}).cleaned, false);
}

TEST_F(CleanerTest, AProducersEmptiedLastBatchStaysAsAHeader) {
  append({{"a", "p0", clock_.now_ms(), {}}}, 0,
         {.producer_id = 3, .producer_epoch = 1, .base_sequence = 0});
  append({{"a", "p1", clock_.now_ms(), {}}, {"b", "p1", clock_.now_ms(), {}}}, 0,
         {.producer_id = 3, .producer_epoch = 1, .base_sequence = 1});
  put("a", "x");
  put("b", "y");
  roll();
  auto res = clean();
  EXPECT_EQ(res.empty_batches_kept, 1);
  EXPECT_EQ(res.batches_dropped, 1);
  auto batches = read_batches(*log_);
  ASSERT_EQ(batches.size(), 3u);
  auto v = model::RecordBatchView::parse(batches[0].bytes);
  EXPECT_EQ(v->record_count(), 0);
  EXPECT_EQ(v->base(), Offset(1));
  EXPECT_EQ(v->last(), Offset(2));
  EXPECT_EQ(v->producer_id(), 3);
  EXPECT_EQ(v->base_sequence(), 1);
  EXPECT_TRUE(v->verify_crc());
  // The producer state survives a reopen that has to replay the log.
  open();
  const ProducerEntry* p = log_->producers().find(3);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->newest().last_seq, 2);
}

TEST_F(CleanerTest, PolicyAndDirtyRatio) {
  config_.cleanup_policy = CleanupPolicy::del;
  log_->set_config(config_);
  put("a", "1");
  put("a", "2");
  roll();
  EXPECT_FALSE(clean().cleaned);
  config_.cleanup_policy = CleanupPolicy::compact_and_delete;
  log_->set_config(config_);
  for (const char* k : {"b", "c", "d", "e"}) put(k, "1");
  roll();
  EXPECT_TRUE(clean({}).cleaned);  // all dirty: ratio 1
  put("a", "3");
  roll();
  auto res = clean({});
  EXPECT_FALSE(res.cleaned);  // one small dirty segment beside a clean one
  EXPECT_GT(res.dirty_ratio, 0);
  EXPECT_LT(res.dirty_ratio, 0.5);
  config_.min_cleanable_dirty_ratio = 0.1;
  log_->set_config(config_);
  EXPECT_TRUE(clean({}).cleaned);
  EXPECT_EQ(read_records(*log_).size(), 5u);

  // min.compaction.lag.ms keeps young segments; max.compaction.lag.ms forces old ones.
  config_.min_compaction_lag_ms = 10 * config_.segment_ms;
  config_.min_cleanable_dirty_ratio = 0.99;
  log_->set_config(config_);
  put("a", "4");
  roll();
  EXPECT_FALSE(clean().cleaned);
  clock_.advance(10 * config_.segment_ms);
  EXPECT_FALSE(clean({}).cleaned);
  config_.max_compaction_lag_ms = 5 * config_.segment_ms;
  log_->set_config(config_);
  EXPECT_TRUE(clean({}).cleaned);

  // compact alone: retention does not delete.
  config_.cleanup_policy = CleanupPolicy::compact;
  config_.retention_ms = 1;
  log_->set_config(config_);
  auto deleted = log_->enforce_retention();
  ASSERT_TRUE(deleted);
  EXPECT_EQ(*deleted, 0);
}

TEST(CleanupPolicyTest, Parse) {
  EXPECT_EQ(*parse_cleanup_policy("delete"), CleanupPolicy::del);
  EXPECT_EQ(*parse_cleanup_policy("compact"), CleanupPolicy::compact);
  EXPECT_EQ(*parse_cleanup_policy("compact,delete"), CleanupPolicy::compact_and_delete);
  EXPECT_EQ(*parse_cleanup_policy("delete, compact"), CleanupPolicy::compact_and_delete);
  EXPECT_FALSE(parse_cleanup_policy("compact,compact"));
  EXPECT_FALSE(parse_cleanup_policy(""));
  EXPECT_FALSE(parse_cleanup_policy("purge"));
}

// The swap interrupted at each step, as a crash there would leave it: the reopened log holds
// the same logical content, no staging file is left, and cleaning goes on.
TEST_F(CleanerTest, AnInterruptedSwapIsCompletedOrRolledBackOnOpen) {
  for (auto point : {CleanFailPoint::after_cleaned_files, CleanFailPoint::after_marker,
                     CleanFailPoint::after_first_group, CleanFailPoint::before_marker_removal}) {
    SCOPED_TRACE(int(point));
    TempDir d;
    auto l = PartitionLog::open(d.path() + "/s-0", config_, clock_);
    ASSERT_TRUE(l);
    log_ = std::move(*l);
    for (int i = 0; i < 400; ++i) {
      put("k" + std::to_string(i % 13), std::string(40, char('a' + i % 26)));
      if (i % 150 == 0) roll();
    }
    roll();
    ASSERT_GE(log_->segment_count(), 4u);
    auto before = read_records(*log_);
    auto r = log_->clean({.force = true, .fail_at = point});
    ASSERT_FALSE(r);
    log_.reset();  // no close: as after a crash
    l = PartitionLog::open(d.path() + "/s-0", config_, clock_);
    ASSERT_TRUE(l) << l.error().to_string();
    log_ = std::move(*l);
    auto after = read_records(*log_);
    EXPECT_EQ(apply(after), apply(before));
    bool rolled_forward = point != CleanFailPoint::after_cleaned_files;
    EXPECT_EQ(after.size() < before.size(), rolled_forward);
    for (const auto& e : std::filesystem::directory_iterator(d.path() + "/s-0")) {
      std::string name = e.path().filename().string();
      EXPECT_FALSE(name.ends_with(".cleaned") || name.ends_with(".deleted") ||
                   name.ends_with(".tmp") || name == "cleaner.swap")
          << name;
    }
    auto res = clean({.force = true, .full = true});
    EXPECT_TRUE(res.cleaned);
    EXPECT_EQ(apply(read_records(*log_)), apply(before));
    EXPECT_EQ(read_records(*log_).size(), 13u);
  }
}

// ---- The phases apart (the background cleaner's way) -------------------------------------------

std::vector<std::string> cleaner_files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.ends_with(".cleaned") || name.ends_with(".deleted") || name == "cleaner.swap" ||
        name.ends_with(".tmp")) {
      out.push_back(name);
    }
  }
  return out;
}

class CleanerPhasesTest : public CleanerTest {
 protected:
  // Keys k0..k6 overwritten over several sealed segments.
  void fill() {
    for (int i = 0; i < 300; ++i) {
      put("k" + std::to_string(i % 7), std::string(30, char('a' + i % 26)));
      if (i % 100 == 99) roll();
    }
    roll();
    ASSERT_GE(log_->segment_count(), 4u);
  }
  CleanPlan plan(CleanerOptions o = {.force = true}) {
    auto p = log_->plan_clean(o);
    EXPECT_TRUE(p) << p.error().to_string();
    EXPECT_TRUE(p && *p);
    return p && *p ? std::move(**p) : CleanPlan{};
  }
  CleanOutput build(const CleanPlan& p) {
    auto out = build_clean(p);
    EXPECT_TRUE(out) << out.error().to_string();
    return out ? std::move(*out) : CleanOutput{};
  }
};

TEST_F(CleanerPhasesTest, AppendsAndReadsGoOnBetweenPlanAndCommit) {
  fill();
  auto p = plan();
  EXPECT_TRUE(p.due);
  // A read started before the swap keeps its bytes after it.
  log_->set_high_watermark(log_->log_end_offset());
  auto early = log_->read({.start = Offset(0), .max_bytes = 1 << 20});
  ASSERT_TRUE(early);
  auto early_bytes =
      read_slice_bytes(early->slice.file->fd(), early->slice.position, early->slice.size);
  auto out = build(p);
  // Meanwhile the writer thread appends and rolls: the planned segments are untouched.
  put("k1", "while-cleaning");
  roll();
  put("k2", "after-roll");
  auto before = read_records(*log_);
  auto res = log_->commit_clean(p, std::move(out));
  ASSERT_TRUE(res) << res.error().to_string();
  EXPECT_TRUE(res->cleaned);
  EXPECT_FALSE(res->aborted);
  // The small survivors of every planned segment went into one; the replaced files are set
  // aside for the caller to unlink (off the writer thread).
  EXPECT_GT(res->segments_before, 1);
  EXPECT_EQ(res->segments_after, 1);
  ASSERT_FALSE(res->garbage.empty());
  for (const auto& g : res->garbage) {
    EXPECT_TRUE(g.ends_with(".deleted")) << g;
    EXPECT_TRUE(std::filesystem::exists(g)) << g;
  }
  remove_garbage(res->garbage);
  auto after = read_records(*log_);
  EXPECT_EQ(apply(after), apply(before));
  EXPECT_LT(after.size(), before.size());
  EXPECT_EQ(after.back().value, std::optional<std::string>("after-roll"));
  EXPECT_EQ(read_slice_bytes(early->slice.file->fd(), early->slice.position, early->slice.size),
            early_bytes);
  EXPECT_TRUE(cleaner_files(log_->dir()).empty());
  auto st = log_->cleaner_stats();
  EXPECT_EQ(st.cleans, 1);
  EXPECT_EQ(st.bytes_read, res->bytes_read);
  EXPECT_EQ(st.first_dirty, res->cleaned_end);
}

TEST_F(CleanerPhasesTest, ACommitAfterTheLogChangedIsDropped) {
  // Each way the writer thread can change the planned segments voids the build.
  enum class Change { retention, truncation, policy, another_clean };
  for (Change change :
       {Change::retention, Change::truncation, Change::policy, Change::another_clean}) {
    SCOPED_TRACE(int(change));
    TempDir d;
    auto l = PartitionLog::open(d.path() + "/c-0", config_, clock_);
    ASSERT_TRUE(l);
    log_ = std::move(*l);
    fill();
    auto p = plan();
    auto out = build(p);
    ASSERT_FALSE(out.empty());
    EXPECT_FALSE(cleaner_files(log_->dir()).empty());
    switch (change) {
      case Change::retention:
        log_->set_high_watermark(log_->log_end_offset());
        ASSERT_TRUE(log_->advance_log_start_offset(Offset(150)));
        break;
      case Change::truncation:
        ASSERT_TRUE(log_->truncate_to(Offset(250)));
        break;
      case Change::policy: {
        LogConfig c = config_;
        c.cleanup_policy = CleanupPolicy::del;
        log_->set_config(c);
        break;
      }
      case Change::another_clean:
        ASSERT_TRUE(clean().cleaned);
        break;
    }
    auto before = read_records(*log_);
    auto res = log_->commit_clean(p, std::move(out));
    ASSERT_TRUE(res) << res.error().to_string();
    EXPECT_TRUE(res->aborted);
    EXPECT_FALSE(res->cleaned);
    EXPECT_EQ(read_records(*log_), before);
    EXPECT_TRUE(cleaner_files(log_->dir()).empty());
    EXPECT_EQ(log_->cleaner_stats().aborted, 1);
  }
}

TEST_F(CleanerPhasesTest, ACancelledBuildLeavesNothing) {
  fill();
  auto p = plan();
  std::atomic<bool> cancel{true};
  auto out = build_clean(p, {.cancel = &cancel});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::closed);
  EXPECT_TRUE(cleaner_files(log_->dir()).empty());
}

TEST_F(CleanerPhasesTest, APlanThatIsNotDueReportsTheRatio) {
  config_.min_cleanable_dirty_ratio = 0.99;
  log_->set_config(config_);
  fill();
  auto first = plan({});
  EXPECT_TRUE(first.due);  // everything is dirty before the first clean
  EXPECT_TRUE(log_->cleaner_stats().due);
  ASSERT_TRUE(log_->commit_clean(first, build(first)));
  put("k3", "x");
  roll();
  auto second = plan({});
  EXPECT_FALSE(second.due);
  EXPECT_GT(second.result.dirty_ratio, 0);
  EXPECT_LT(second.result.dirty_ratio, 0.99);
  auto st = log_->cleaner_stats();
  EXPECT_DOUBLE_EQ(st.dirty_ratio, second.result.dirty_ratio);
  EXPECT_FALSE(st.due);
  EXPECT_GT(st.dirty_bytes, 0);
  EXPECT_GE(st.lag_ms, 0);
}

// ---- The model test ----------------------------------------------------------------------------

int64_t env_int(const char* name, int64_t fallback) {
  const char* s = std::getenv(name);
  return s && *s ? std::strtoll(s, nullptr, 10) : fallback;
}

void run_model_seed(uint64_t seed) {
  SCOPED_TRACE(fmt::format("ORDO_CLEANER_SEED={}", seed));
  Random rng(seed);
  TempDir dir;
  ManualClock clock(kStartMs);
  LogConfig cfg = compact_config();
  cfg.segment_bytes = int64_t(rng.between(600, 6000));
  cfg.delete_retention_ms = rng.chance(0.5) ? 50'000 : kDayMs;
  std::string path = dir.path() + "/m-0";
  auto opened = PartitionLog::open(path, cfg, clock);
  ASSERT_TRUE(opened);
  auto log = std::move(*opened);
  std::map<int64_t, Rec> produced;        // offset -> record as produced
  std::map<std::string, int64_t> latest;  // key -> offset of its latest record
  const int keys = int(rng.between(3, 40));
  const int steps = int(env_int("ORDO_CLEANER_STEPS", 200));
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE(fmt::format("step {}", step));
    uint64_t op = rng.below(100);
    if (op < 70) {
      int n = int(rng.between(1, 6));
      std::vector<model::RecordInput> in;
      model::RecordBatchBuilder b;
      for (int i = 0; i < n; ++i) {
        model::RecordInput r;
        if (!rng.chance(0.05)) r.key = "key-" + std::to_string(rng.below(uint64_t(keys)));
        if (!rng.chance(0.15))
          r.value = fmt::format("v{}-{}", step, std::string(rng.below(60), 'x'));
        r.timestamp_ms = clock.now_ms() + int64_t(rng.below(5));
        if (rng.chance(0.3)) r.headers.emplace_back("h", std::to_string(step));
        b.add(r);
        in.push_back(std::move(r));
      }
      auto bytes = b.build();
      uint8_t codec = uint8_t(rng.below(5));
      if (codec != 0)
        bytes = *compression::recode_batch(*model::RecordBatchView::parse(bytes), codec);
      auto res = log->append(bytes);
      ASSERT_TRUE(res) << res.error().to_string();
      for (int i = 0; i < n; ++i) {
        int64_t off = res->first_offset.value() + i;
        produced[off] = Rec{Offset(off), in[size_t(i)].key, in[size_t(i)].value,
                            in[size_t(i)].timestamp_ms, in[size_t(i)].headers};
        if (in[size_t(i)].key) latest[*in[size_t(i)].key] = off;
      }
    } else if (op < 80) {
      clock.advance(cfg.segment_ms);
      ASSERT_TRUE(log->maybe_roll_by_time());
    } else if (op < 90) {
      CleanerOptions o;
      o.force = rng.chance(0.7);
      o.full = rng.chance(0.2);
      o.key_map_bytes = rng.chance(0.3) ? int64_t(rng.between(200, 2000)) : int64_t(1) << 20;
      auto res = log->clean(o);
      ASSERT_TRUE(res) << res.error().to_string();
    } else if (op < 95) {
      clock.advance(int64_t(rng.between(1, 40'000)));
    } else {
      if (rng.chance(0.5)) {
        ASSERT_TRUE(log->close());
      }
      log.reset();
      opened = PartitionLog::open(path, cfg, clock);
      ASSERT_TRUE(opened) << opened.error().to_string();
      log = std::move(*opened);
    }
    if (op < 70) continue;
    // Every surviving record is the one produced at its offset; below the first dirty offset
    // every keyed record is the latest of its key; applying the log gives the model's map.
    auto recs = read_records(*log);
    std::set<std::string> clean_keys;
    for (const auto& r : recs) {
      auto it = produced.find(r.offset.value());
      ASSERT_NE(it, produced.end()) << "offset " << r.offset.value();
      ASSERT_EQ(r, it->second) << "offset " << r.offset.value();
      if (r.key && r.offset < log->first_dirty_offset()) {
        ASSERT_TRUE(clean_keys.insert(*r.key).second)
            << "two records of key " << *r.key << " below the first dirty offset";
      }
    }
    std::vector<Rec> all;
    for (const auto& [o, r] : produced) all.push_back(r);
    ASSERT_EQ(apply(recs), apply(all));
    // Keyless records and latest non-tombstone records are never removed.
    size_t must = 0;
    for (const auto& [o, r] : produced) {
      if (!r.key || (r.value && latest[*r.key] == o)) ++must;
    }
    size_t have = 0;
    for (const auto& r : recs) {
      if (!r.key || (r.value && latest[*r.key] == r.offset.value())) ++have;
    }
    ASSERT_EQ(have, must);
  }
}

TEST(CleanerModelTest, RandomKeyedAppendsAndDeletes) {
  std::vector<uint64_t> seeds;
  if (std::getenv("ORDO_CLEANER_SEED")) {
    seeds.push_back(uint64_t(env_int("ORDO_CLEANER_SEED", 1)));
  } else {
    for (int64_t s = 1; s <= env_int("ORDO_CLEANER_SEEDS", 20); ++s) seeds.push_back(uint64_t(s));
  }
  set_log_threshold(LogLevel::warn);
  for (uint64_t seed : seeds) {
    run_model_seed(seed);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

}  // namespace
}  // namespace ordo::storage
