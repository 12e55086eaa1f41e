// Crash test with real processes: a child appends with the durable policy and reports every
// acknowledged append through a pipe; the parent SIGKILLs it at a random moment, reopens the
// log and checks that every acknowledged batch is there byte for byte, that offsets are
// contiguous, that nothing is duplicated, and that everything served is a whole, valid batch.
// The same data dir carries over from round to round, so recovery runs on recovered logs.
//
// ORDO_CRASH_SEED and ORDO_CRASH_ROUNDS override the seed and the number of rounds.

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <set>

#include "base/random.h"
#include "storage/partition_log.h"
#include "storage/tests/test_util.h"
#include "tests/crash/child_process.h"
#include "tests/crash/crash_batch.h"

namespace ordo {
namespace {

using crashtest::Ack;
using crashtest::env_or;

// Reads acks from the pipe until `until` of them have arrived or the pipe reaches EOF.
void drain(int fd, std::vector<Ack>& acks, size_t until = SIZE_MAX) {
  Ack a;
  size_t have = 0;
  auto* p = reinterpret_cast<uint8_t*>(&a);
  while (acks.size() < until) {
    ssize_t n = ::read(fd, p + have, sizeof a - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += size_t(n);
    if (have == sizeof a) {
      acks.push_back(a);
      have = 0;
    }
  }
  // Acks are written atomically; a partial one would be a test bug.
  ASSERT_EQ(have, 0u);
}

struct Stored {
  int64_t round, index;
  Offset first, last;
};

// A batch already compared byte for byte with what its child built, by base offset: later
// rounds check it by its CRC (recomputed over the bytes and equal to the one recorded) instead
// of rebuilding it. A batch that replaced a torn one at the same offset has another CRC and
// is compared in full again.
struct Verified {
  int64_t round, index;
  uint32_t crc;
  Offset last;
};

// Reads the whole log, checking every batch; returns what it holds.
std::vector<Stored> verify_log(storage::PartitionLog& log, std::map<int64_t, Verified>& verified) {
  std::vector<Stored> out;
  Offset next = log.log_start_offset();
  EXPECT_EQ(next, Offset(0));
  log.set_high_watermark(log.log_end_offset());
  for (int guard = 0; guard < 1'000'000 && next < log.log_end_offset(); ++guard) {
    auto r = log.read({.start = next, .max_bytes = 1 << 20});
    EXPECT_TRUE(r) << r.error().to_string();
    if (!r || r->slice.size == 0) {
      ADD_FAILURE() << "no data at " << next.value() << " below the log end "
                    << log.log_end_offset().value();
      break;
    }
    auto bytes =
        storage::testing::read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
    std::span<const uint8_t> rest(bytes);
    while (!rest.empty()) {
      auto v = model::RecordBatchView::parse(rest);
      if (!v) {
        ADD_FAILURE() << "unparseable batch at offset " << next.value() << ": "
                      << v.error().to_string();
        return out;
      }
      const bool crc_ok = bool(v->verify_crc());
      EXPECT_TRUE(crc_ok) << "offset " << next.value();
      EXPECT_EQ(v->base(), next) << "offsets not contiguous";
      if (auto known = verified.find(v->base().value()); crc_ok && known != verified.end() &&
                                                         known->second.crc == v->crc() &&
                                                         known->second.last == v->last()) {
        out.push_back({known->second.round, known->second.index, v->base(), v->last()});
        next = v->last() + 1;
        rest = rest.subspan(v->size_bytes());
        continue;
      }
      auto records = model::decode_records(*v);
      EXPECT_TRUE(records && !records->empty());
      if (!records || records->empty()) return out;
      auto id = crashtest::parse_key(*(*records)[0].key);
      EXPECT_TRUE(id.has_value());
      if (!id) return out;
      auto expected = crashtest::make_batch(id->first, id->second);
      // Everything the CRC covers must be identical to what the child built.
      std::span<const uint8_t> got = v->bytes();
      EXPECT_TRUE(got.size() == expected.size() &&
                  std::equal(got.begin() + 17, got.end(), expected.begin() + 17))
          << "batch r" << id->first << " i" << id->second << " differs";
      out.push_back({id->first, id->second, v->base(), v->last()});
      verified[v->base().value()] = {id->first, id->second, v->crc(), v->last()};
      next = v->last() + 1;
      rest = rest.subspan(v->size_bytes());
    }
  }
  EXPECT_EQ(next, log.log_end_offset());
  return out;
}

TEST(CrashTest, AcknowledgedDurableAppendsSurviveSigkill) {
  const int64_t seed = env_or("ORDO_CRASH_SEED", 20261123);
  const int64_t rounds = env_or("ORDO_CRASH_ROUNDS", 60);
  SCOPED_TRACE(fmt::format("ORDO_CRASH_SEED={}", seed));
  Random rng{uint64_t(seed)};
  storage::testing::TempDir dir;
  std::map<std::pair<int64_t, int64_t>, Ack> acked;
  std::map<int64_t, Verified> verified;
  int64_t rounds_with_acks = 0;

  for (int64_t round = 1; round <= rounds; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    crashtest::Child child =
        crashtest::spawn_child(ORDO_CRASH_APPENDER, {dir.path(), std::to_string(round)});
    // Kill it at a random point of its progress (not of the clock, so that a slow machine
    // does not change what is tested): after a random number of acknowledgements, zero in
    // one round out of eight (then often before it even opened the log), plus a short delay
    // so the kill lands anywhere in the append/sync pipeline.
    std::vector<Ack> acks;
    size_t wait_acks = rng.chance(0.125) ? 0 : size_t(rng.between(1, 400));
    drain(child.read_fd, acks, wait_acks);
    ::usleep(useconds_t(rng.between(0, 3'000)));
    crashtest::kill_and_reap(child);
    if (::testing::Test::HasFatalFailure()) return;
    drain(child.read_fd, acks);
    ::close(child.read_fd);
    if (!acks.empty()) ++rounds_with_acks;
    for (const Ack& a : acks) acked[{a.round, a.index}] = a;

    ManualClock clock(1'700'000'000'000);
    storage::LogConfig cfg;
    cfg.segment_bytes = 512 * 1024;
    cfg.flush_mode = storage::FlushMode::durable;
    cfg.retention_ms = -1;
    auto log = storage::PartitionLog::open(dir.path() + "/crash-0", cfg, clock,
                                           {.create_if_missing = true});
    ASSERT_TRUE(log) << log.error().to_string();
    auto stored = verify_log(**log, verified);
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const auto& s : stored) {
      EXPECT_TRUE(seen.insert({s.round, s.index}).second)
          << "batch r" << s.round << " i" << s.index << " stored twice";
      auto it = acked.find({s.round, s.index});
      if (it != acked.end()) {
        EXPECT_EQ(it->second.first_offset, s.first.value());
        EXPECT_EQ(it->second.last_offset, s.last.value());
      }
    }
    for (const auto& [id, a] : acked) {
      EXPECT_TRUE(seen.count(id)) << "acknowledged batch r" << id.first << " i" << id.second
                                  << " (offsets " << a.first_offset << "-" << a.last_offset
                                  << ") is missing";
    }
    if (::testing::Test::HasFailure()) return;
    // Alternate clean and unclean hand-over to the next child.
    if (round % 2 == 0) {
      ASSERT_TRUE((*log)->close());
    }
  }
  // The test is only meaningful if the children got work acknowledged before dying.
  EXPECT_GT(rounds_with_acks, rounds / 2);
  EXPECT_GT(acked.size(), 100u);
}

}  // namespace
}  // namespace ordo
