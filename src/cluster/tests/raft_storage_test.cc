#include "cluster/raft_storage.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "base/file.h"
#include "model/record_batch.h"
#include "storage/tests/test_util.h"

namespace ordo::cluster {
namespace {

using storage::testing::make_batch;
using storage::testing::TempDir;

raft::Config three_voters() {
  return raft::Config{{{1, 11}, {2, 22}, {3, 33}}, {}};
}

storage::LogConfig small_config() {
  storage::LogConfig c;
  c.segment_bytes = 4096;
  c.index_interval_bytes = 256;
  c.flush_mode = storage::FlushMode::none;
  c.preallocate = storage::Preallocate::none;
  c.retention_ms = -1;
  return c;
}

RaftStateFile sample_file() {
  RaftStateFile f;
  f.incarnation = 0x0123456789abcdefULL;
  f.state.term = 7;
  f.state.voted_for = {2, 22};
  f.state.configs = {{-1, three_voters()},
                     {40, raft::Config{{{1, 11}, {2, 22}}, {{3, 99}}}},
                     {52, raft::Config{{{1, 11}, {2, 22}, {3, 99}}, {}}}};
  f.term_before = 5;
  f.base_before = 17;
  return f;
}

class RaftStorageTest : public ::testing::Test {
 protected:
  std::string dir() const { return tmp_.path() + "/p-0"; }
  // Opens (or reopens, after dropping the previous objects without a clean close: a crash) the
  // log and the storage.
  void open(raft::Config initial = three_voters()) {
    storage_.reset();
    log_.reset();
    auto log = storage::PartitionLog::open(dir(), small_config(), clock_);
    ASSERT_TRUE(log) << log.error().to_string();
    log_ = std::move(*log);
    auto s = RaftLogStorage::open(log_.get(), std::move(initial), clock_);
    ASSERT_TRUE(s) << s.error().to_string();
    storage_ = std::move(*s);
  }
  Result<void> try_open() {
    storage_.reset();
    log_.reset();
    auto log = storage::PartitionLog::open(dir(), small_config(), clock_);
    if (!log) return std::move(log).error();
    log_ = std::move(*log);
    auto s = RaftLogStorage::open(log_.get(), three_voters(), clock_);
    if (!s) return std::move(s).error();
    storage_ = std::move(*s);
    return ok();
  }
  std::vector<raft::Entry> read_all(raft::Offset from) {
    std::vector<raft::Entry> out;
    while (from < log_->log_end_offset().value()) {
      auto r = storage_->read(from, 1000);
      EXPECT_TRUE(r) << r.error().to_string();
      if (!r || r->empty()) break;
      for (auto& e : *r) {
        if (e.base >= from) out.push_back(e);
      }
      from = r->back().last + 1;
    }
    return out;
  }
  void sync() {
    bool called = false;
    storage_->sync([&](Result<void> r) {
      EXPECT_TRUE(r);
      called = true;
    });
    EXPECT_TRUE(called);
  }

  TempDir tmp_;
  ManualClock clock_{1'700'000'000'000};
  std::unique_ptr<storage::PartitionLog> log_;
  std::unique_ptr<RaftLogStorage> storage_;
};

TEST(RaftStateFileTest, RoundTrips) {
  auto f = sample_file();
  auto bytes = encode_state_file(f);
  auto back = decode_state_file(bytes);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, f);
}

// Every single flipped bit, and every truncation or extension, is detected: a torn or damaged
// state file is never taken for a valid one.
TEST(RaftStateFileTest, EveryFlippedBitAndEveryTornLengthIsCorrupt) {
  const auto bytes = encode_state_file(sample_file());
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto damaged = bytes;
      damaged[i] ^= uint8_t(1 << bit);
      auto r = decode_state_file(damaged);
      ASSERT_FALSE(r) << "byte " << i << " bit " << bit;
      EXPECT_EQ(r.error().code, Errc::corrupt);
    }
  }
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_state_file(std::span(bytes).first(n));
    ASSERT_FALSE(r) << "length " << n;
    EXPECT_EQ(r.error().code, Errc::corrupt);
  }
  auto longer = bytes;
  longer.push_back(0);
  EXPECT_FALSE(decode_state_file(longer));
}

// A well-formed file (CRC right) that holds an impossible value is refused too.
TEST(RaftStateFileTest, InvalidContentsWithAValidCrcAreCorrupt) {
  auto f = sample_file();
  f.state.configs[1].offset = 60;  // configurations out of order
  EXPECT_FALSE(decode_state_file(encode_state_file(f)));
  f = sample_file();
  f.state.configs[0].config.voters = {{2, 1}, {1, 1}};  // unsorted
  EXPECT_FALSE(decode_state_file(encode_state_file(f)));
  f = sample_file();
  f.state.configs.clear();
  EXPECT_FALSE(decode_state_file(encode_state_file(f)));
}

TEST(RaftControlEntryTest, NoopAndConfigAreControlBatchesThatDecodeBack) {
  raft::Entry noop{.term = 4, .base = 10, .last = 10, .kind = raft::EntryKind::noop};
  auto bytes = encode_control_entry(noop, 123);
  auto view = model::RecordBatchView::parse(bytes);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->is_control());
  EXPECT_TRUE(view->verify_crc());
  EXPECT_EQ(view->leader_epoch(), 4);
  EXPECT_EQ(view->base_offset(), 10);
  EXPECT_EQ(view->producer_id(), -1);
  auto records = model::decode_records(*view);
  ASSERT_TRUE(records);
  ASSERT_EQ(records->size(), 1u);
  ASSERT_TRUE(records->front().key);
  const auto* k = reinterpret_cast<const uint8_t*>(records->front().key->data());
  EXPECT_EQ(load_be16(k), 0);  // control key version
  EXPECT_EQ(int16_t(load_be16(k + 2)), kControlNoop);
  auto e = decode_entry(bytes);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, raft::EntryKind::noop);
  EXPECT_EQ(e->term, 4);
  EXPECT_EQ(e->base, 10);
  EXPECT_EQ(e->last, 10);

  raft::Entry config{.term = 4,
                     .base = 11,
                     .last = 11,
                     .kind = raft::EntryKind::config,
                     .config = raft::Config{{{1, 11}, {2, 22}}, {{3, 99}}}};
  auto e2 = decode_entry(encode_control_entry(config, 123));
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->kind, raft::EntryKind::config);
  EXPECT_EQ(e2->config, config.config);

  // A transaction marker (control type 1) is data to Raft.
  model::RecordBatchBuilder marker({.base_offset = Offset(12), .leader_epoch = 4, .control = true});
  std::string key("\0\0\0\1", 4);
  marker.add(key, std::string("\0\0\0\0\0\0", 6), 123);
  auto e3 = decode_entry(marker.build());
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->kind, raft::EntryKind::data);
}

TEST_F(RaftStorageTest, AFreshReplicaWritesItsIncarnationBeforeOpenReturns) {
  open();
  const uint64_t inc = storage_->incarnation();
  EXPECT_NE(inc, 0u);
  auto bytes = read_file(storage_->state_path(), 1 << 20);
  ASSERT_TRUE(bytes);
  auto f =
      decode_state_file(std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->incarnation, inc);
  const auto& r = storage_->restored();
  EXPECT_EQ(r.state.term, 0);
  EXPECT_EQ(r.state.voted_for.id, raft::kNoNode);
  ASSERT_EQ(r.state.configs.size(), 1u);
  EXPECT_EQ(r.state.configs[0], (raft::ConfigAt{-1, three_voters()}));
  EXPECT_EQ(r.log_start, 0);
  EXPECT_EQ(r.log_end, 0);
  EXPECT_TRUE(r.epochs.empty());

  open();  // the same incarnation after a restart
  EXPECT_EQ(storage_->incarnation(), inc);

  // A wiped directory is a new replica with a new incarnation.
  storage_.reset();
  log_.reset();
  std::filesystem::remove_all(dir());
  open();
  EXPECT_NE(storage_->incarnation(), inc);
}

TEST_F(RaftStorageTest, HardStateSurvivesARestart) {
  open();
  raft::HardState s;
  s.term = 3;
  s.voted_for = {2, 22};
  s.configs = {{-1, three_voters()}, {5, raft::Config{{{1, 11}, {2, 22}}, {}}}};
  ASSERT_TRUE(storage_->save_state(s));
  open();
  EXPECT_EQ(storage_->restored().state, s);
}

TEST_F(RaftStorageTest, ADamagedStateFileFailsTheOpen) {
  open();
  const std::string path = storage_->state_path();
  auto bytes = read_file(path, 1 << 20);
  ASSERT_TRUE(bytes);
  std::string damaged = *bytes;
  damaged[20] = char(damaged[20] ^ 0x10);
  ASSERT_TRUE(write_file_atomic(path, std::string_view(damaged)));
  auto r = try_open();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
  ASSERT_TRUE(write_file_atomic(path, std::string_view(*bytes).substr(0, bytes->size() - 3)));
  r = try_open();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
}

TEST_F(RaftStorageTest, LeaderAppendsReadBackAndRecoverWithTheirEpochs) {
  open();
  std::vector<raft::Entry> written;
  for (int i = 0; i < 30; ++i) {
    auto batch = std::make_shared<const std::vector<uint8_t>>(
        make_batch(3, "v" + std::to_string(i), 1000, 200));
    const raft::Term term = i < 10 ? 1 : 2;
    auto e = storage_->append_leader(term, batch, 3);
    ASSERT_TRUE(e) << e.error().to_string();
    EXPECT_EQ(e->base, i * 3);
    EXPECT_EQ(e->last, i * 3 + 2);
    EXPECT_EQ(e->term, term);
    EXPECT_EQ(e->kind, raft::EntryKind::data);
    auto view = model::RecordBatchView::parse(*e->payload);
    ASSERT_TRUE(view);
    EXPECT_EQ(view->base_offset(), e->base);
    EXPECT_EQ(view->leader_epoch(), term);
    written.push_back(*e);
  }
  sync();
  EXPECT_EQ(storage_->syncs(), 1u);
  ASSERT_GT(log_->segment_count(), 1u);
  auto check = [&] {
    auto all = read_all(0);
    ASSERT_EQ(all.size(), written.size());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(all[i].base, written[i].base);
      EXPECT_EQ(all[i].last, written[i].last);
      EXPECT_EQ(all[i].term, written[i].term);
      EXPECT_EQ(*all[i].payload, *written[i].payload);
    }
    // A read from inside a batch starts with the batch holding the offset.
    auto mid = storage_->read(31, 1);
    ASSERT_TRUE(mid);
    ASSERT_EQ(mid->size(), 1u);
    EXPECT_EQ(mid->front().base, 30);
    auto past = storage_->read(90, 1000);
    ASSERT_TRUE(past);
    EXPECT_TRUE(past->empty());
  };
  check();
  open();  // a crash: the objects are dropped without close
  const auto& r = storage_->restored();
  EXPECT_EQ(r.log_start, 0);
  EXPECT_EQ(r.log_end, 90);
  EXPECT_EQ(r.epochs, (std::vector<raft::EpochStart>{{1, 0}, {2, 30}}));
  check();
  // A leader append of anything but exactly one batch of the stated records is refused.
  auto two = make_batch(1, "a");
  auto b = make_batch(1, "b");
  two.insert(two.end(), b.begin(), b.end());
  EXPECT_FALSE(storage_->append_leader(2, std::make_shared<const std::vector<uint8_t>>(two), 2));
  EXPECT_FALSE(storage_->append_leader(
      2, std::make_shared<const std::vector<uint8_t>>(make_batch(2, "c")), 3));
  EXPECT_EQ(log_->log_end_offset(), Offset(90));
}

// A follower writes the leader's entries byte for byte, and the core's own no-op and config
// entries (no payload) as control batches that read back as the same kinds.
TEST_F(RaftStorageTest, FollowerAppendsKeepTheLeadersBytesAndEncodeCoreEntries) {
  open();
  std::vector<raft::Entry> leader_entries;
  {
    TempDir other;
    auto log = storage::PartitionLog::open(other.path() + "/p-0", small_config(), clock_);
    ASSERT_TRUE(log);
    auto leader = RaftLogStorage::open(log->get(), three_voters(), clock_);
    ASSERT_TRUE(leader);
    raft::Entry noop{.term = 1, .base = 0, .last = 0, .kind = raft::EntryKind::noop};
    ASSERT_TRUE((*leader)->append(std::span(&noop, 1)));
    for (int i = 0; i < 5; ++i) {
      auto batch =
          std::make_shared<const std::vector<uint8_t>>(make_batch(2, "f" + std::to_string(i)));
      ASSERT_TRUE((*leader)->append_leader(1, batch, 2));
    }
    raft::Entry config{.term = 1,
                       .base = 11,
                       .last = 11,
                       .kind = raft::EntryKind::config,
                       .config = raft::Config{{{1, 11}, {2, 22}, {3, 33}}, {{4, 44}}}};
    ASSERT_TRUE((*leader)->append(std::span(&config, 1)));
    auto all = (*leader)->read(0, 1 << 20);
    ASSERT_TRUE(all);
    leader_entries = *all;
  }
  ASSERT_EQ(leader_entries.size(), 7u);
  EXPECT_EQ(leader_entries.front().kind, raft::EntryKind::noop);
  EXPECT_EQ(leader_entries.back().kind, raft::EntryKind::config);
  // Entries must continue the log: a gap is refused.
  EXPECT_FALSE(storage_->append(std::span(leader_entries).subspan(1, 2)));
  ASSERT_TRUE(storage_->append(std::span(leader_entries).first(3)));
  ASSERT_TRUE(storage_->append(std::span(leader_entries).subspan(3)));
  sync();
  auto mine = read_all(0);
  ASSERT_EQ(mine.size(), leader_entries.size());
  for (size_t i = 0; i < mine.size(); ++i) {
    EXPECT_EQ(*mine[i].payload, *leader_entries[i].payload) << i;
    EXPECT_EQ(mine[i].kind, leader_entries[i].kind);
    EXPECT_EQ(mine[i].config, leader_entries[i].config);
  }
  // A payload that disagrees with its entry is refused.
  raft::Entry wrong = leader_entries[1];
  wrong.base = 12;
  wrong.last = 13;
  EXPECT_FALSE(storage_->append(std::span(&wrong, 1)));
}

TEST_F(RaftStorageTest, TruncateAndResetRecover) {
  open();
  for (int i = 0; i < 20; ++i) {
    auto batch =
        std::make_shared<const std::vector<uint8_t>>(make_batch(2, "t" + std::to_string(i)));
    ASSERT_TRUE(storage_->append_leader(i < 10 ? 1 : 3, batch, 2));
  }
  ASSERT_TRUE(storage_->truncate(24));
  sync();
  open();
  EXPECT_EQ(storage_->restored().log_end, 24);
  EXPECT_EQ(storage_->restored().epochs, (std::vector<raft::EpochStart>{{1, 0}, {3, 20}}));
  EXPECT_EQ(read_all(0).size(), 12u);

  // Behind the leader's log start: the log restarts empty at 500; the term before it is kept.
  ASSERT_TRUE(storage_->reset(500, 4));
  EXPECT_EQ(log_->log_start_offset(), Offset(500));
  EXPECT_EQ(log_->log_end_offset(), Offset(500));
  open();
  EXPECT_EQ(storage_->restored().log_start, 500);
  EXPECT_EQ(storage_->restored().log_end, 500);
  EXPECT_EQ(storage_->restored().epochs, (std::vector<raft::EpochStart>{{4, 499}}));
  // Appends continue from there; the term before the start stays known.
  auto batch = model::RecordBatchBuilder({.base_offset = Offset(500), .leader_epoch = 6})
                   .add("k", "v", 1)
                   .build();
  raft::Entry e{.term = 6,
                .base = 500,
                .last = 500,
                .kind = raft::EntryKind::data,
                .payload = std::make_shared<const std::vector<uint8_t>>(batch)};
  ASSERT_TRUE(storage_->append(std::span(&e, 1)));
  sync();
  open();
  EXPECT_EQ(storage_->restored().epochs, (std::vector<raft::EpochStart>{{4, 499}, {6, 500}}));
  EXPECT_EQ(storage_->restored().log_end, 501);
}

}  // namespace
}  // namespace ordo::cluster
