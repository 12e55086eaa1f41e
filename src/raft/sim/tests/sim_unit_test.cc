// Unit tests of the simulator's pieces: the event loop, the disk's crash model, the network's
// faults and the checkers (each must catch the violation it exists for).

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "raft/sim/checker.h"
#include "raft/sim/disk.h"
#include "raft/sim/event_loop.h"
#include "raft/sim/network.h"
#include "raft/sim/sim.h"

namespace ordo::raft::sim {
namespace {

Entry make_entry(Term term, Offset base, Offset last, const std::string& bytes) {
  Entry e;
  e.term = term;
  e.base = base;
  e.last = last;
  e.kind = EntryKind::data;
  e.payload = std::make_shared<std::vector<uint8_t>>(bytes.begin(), bytes.end());
  return e;
}

HardState fresh() {
  HardState s;
  s.configs.push_back(ConfigAt{-1, Config{{Member{1, 11}}, {}}});
  return s;
}

TEST(EventLoop, RunsInTimeThenSchedulingOrder) {
  EventLoop loop;
  std::vector<int> order;
  loop.at(20, [&] { order.push_back(3); });
  loop.at(10, [&] { order.push_back(1); });
  loop.at(10, [&] {
    order.push_back(2);
    loop.after(0, [&] { order.push_back(25); });  // same time, scheduled later: runs after
    loop.after(15, [&] { order.push_back(4); });
  });
  while (loop.run_one()) {
  }
  EXPECT_EQ(order, (std::vector<int>{1, 2, 25, 3, 4}));
  EXPECT_EQ(loop.now(), 25);
  EXPECT_EQ(loop.executed(), 5u);
}

TEST(SimDisk, WrittenIsReadableDurableOnlyAfterSync) {
  SimDisk disk(7);
  disk.append(make_entry(1, 0, 0, "a"));
  disk.append(make_entry(1, 1, 2, "bc"));
  EXPECT_EQ(disk.written().end(), 3);
  EXPECT_EQ(disk.durable().end(), 0);
  auto r = disk.read(1, 0);  // at least one entry even past max_bytes
  ASSERT_TRUE(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].base, 1);
  EXPECT_FALSE(disk.read(3, 100));
  EXPECT_EQ(disk.ops_written(), 2u);
  disk.make_durable(1);
  EXPECT_EQ(disk.durable().end(), 1);
  EXPECT_TRUE(disk.has_unsynced());
  disk.make_durable(2);
  EXPECT_EQ(disk.durable().end(), 3);
  EXPECT_FALSE(disk.has_unsynced());
}

TEST(SimDisk, CrashKeepsDurablePlusAPrefixOfTheUnsyncedWrites) {
  // Over many draws: never less than the durable log, never more than the written one, and
  // always a prefix of the written log.
  bool saw_short = false, saw_full = false;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SimDisk disk(7);
    disk.append(make_entry(1, 0, 0, "a"));
    disk.make_durable(disk.ops_written());
    for (Offset o = 1; o < 6; ++o) disk.append(make_entry(2, o, o, std::string(1, char('a' + o))));
    Random rng(seed);
    disk.crash(rng, false);
    auto rec = disk.recover(fresh());
    EXPECT_TRUE(rec.problem.empty());
    EXPECT_GE(rec.restored.log_end, 1);
    EXPECT_LE(rec.restored.log_end, 6);
    saw_short |= rec.restored.log_end == 1;
    saw_full |= rec.restored.log_end == 6;
    for (const auto& s : disk.written().entries) {
      EXPECT_EQ(std::string(s.entry.payload->begin(), s.entry.payload->end()),
                std::string(1, char('a' + s.entry.base)));
    }
  }
  EXPECT_TRUE(saw_short);
  EXPECT_TRUE(saw_full);
}

TEST(SimDisk, RecoveryCutsATornEntry) {
  int torn = 0;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    SimDisk disk(7);
    disk.append(make_entry(1, 0, 0, "a"));
    disk.make_durable(disk.ops_written());
    disk.append(make_entry(1, 1, 1, "b"));
    Random rng(seed);
    disk.crash(rng, true);
    size_t on_disk = disk.durable().entries.size();
    auto rec = disk.recover(fresh());
    // Either the unsynced entry survived whole, or it was lost, or it is torn and cut.
    if (on_disk == 2 && rec.restored.log_end == 1) {
      EXPECT_EQ(rec.torn_entries, 1);
      ++torn;
    }
    EXPECT_EQ(rec.restored.log_end, Offset(disk.written().entries.size()));
  }
  EXPECT_GT(torn, 0);
}

TEST(SimDisk, AnUnsyncedTruncationCanBeUndoneByACrash) {
  SimDisk disk(7);
  disk.append(make_entry(1, 0, 0, "a"));
  disk.append(make_entry(1, 1, 1, "b"));
  disk.make_durable(disk.ops_written());
  disk.truncate(1);
  disk.append(make_entry(2, 1, 1, "B"));
  EXPECT_EQ(disk.written().entries.back().entry.term, 2);
  SimDisk copy = disk;
  // A crash that keeps no unsynced write brings back the old entry at offset 1.
  bool old_back = false, new_kept = false;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SimDisk d = copy;
    Random rng(seed);
    d.crash(rng, false);
    auto rec = d.recover(fresh());
    ASSERT_TRUE(rec.problem.empty());
    const auto& es = d.written().entries;
    if (es.size() == 2 && es[1].entry.term == 1) old_back = true;
    if (es.size() == 2 && es[1].entry.term == 2) new_kept = true;
  }
  EXPECT_TRUE(old_back);
  EXPECT_TRUE(new_kept);
}

TEST(SimDisk, RecoveryRebuildsTheEpochsAndKeepsTheHardState) {
  SimDisk disk(7);
  auto rec = disk.recover(fresh());
  EXPECT_EQ(rec.restored.state, fresh());
  EXPECT_TRUE(rec.restored.epochs.empty());
  HardState s = fresh();
  s.term = 5;
  s.voted_for = Member{2, 22};
  disk.save_state(s);  // durable at once
  disk.append(make_entry(1, 0, 1, "a"));
  disk.append(make_entry(3, 2, 2, "b"));
  disk.append(make_entry(3, 3, 4, "c"));
  disk.make_durable(disk.ops_written());
  Random rng(1);
  disk.crash(rng, false);
  rec = disk.recover(fresh());
  EXPECT_EQ(rec.restored.state, s);
  EXPECT_EQ(rec.restored.log_end, 5);
  EXPECT_EQ(rec.restored.epochs, (std::vector<EpochStart>{{1, 0}, {3, 2}}));

  SimDisk reset(8);
  reset.reset(10, 4);
  reset.append(make_entry(5, 10, 10, "x"));
  reset.make_durable(reset.ops_written());
  rec = reset.recover(fresh());
  EXPECT_EQ(rec.restored.log_start, 10);
  EXPECT_EQ(rec.restored.log_end, 11);
  EXPECT_EQ(rec.restored.epochs, (std::vector<EpochStart>{{4, 9}, {5, 10}}));
}

TEST(SimDisk, RetentionMovesTheStartAndKeepsTheTermBefore) {
  SimDisk disk(7);
  disk.append(make_entry(1, 0, 1, "a"));
  disk.append(make_entry(2, 2, 2, "b"));
  disk.append(make_entry(3, 3, 3, "c"));
  disk.make_durable(disk.ops_written());
  disk.advance_start(3);
  EXPECT_EQ(disk.written().start, 3);
  EXPECT_EQ(disk.written().term_before, 2);
  EXPECT_EQ(disk.durable().start, 0);  // not synced yet
  disk.make_durable(disk.ops_written());
  auto rec = disk.recover(fresh());
  EXPECT_EQ(rec.restored.log_start, 3);
  EXPECT_EQ(rec.restored.log_end, 4);
  EXPECT_EQ(rec.restored.epochs, (std::vector<EpochStart>{{2, 2}, {3, 3}}));
  EXPECT_FALSE(disk.read(2, 100));
  EXPECT_TRUE(disk.read(3, 100));
}

TEST(SimDisk, SameEntryComparesEveryByte) {
  Entry a = make_entry(1, 0, 0, "abc");
  EXPECT_TRUE(same_entry(a, make_entry(1, 0, 0, "abc")));
  EXPECT_FALSE(same_entry(a, make_entry(1, 0, 0, "abd")));
  EXPECT_FALSE(same_entry(a, make_entry(2, 0, 0, "abc")));
  EXPECT_FALSE(same_entry(a, make_entry(1, 0, 1, "abc")));
  Entry noop;
  noop.term = 1;
  noop.kind = EntryKind::noop;
  Entry empty = noop;
  empty.payload = std::make_shared<std::vector<uint8_t>>();
  EXPECT_TRUE(same_entry(noop, empty));
  EXPECT_NE(entry_checksum(a), entry_checksum(make_entry(1, 0, 0, "abd")));
}

TEST(SimNetwork, PartitionsCutLinks) {
  SimNetwork net(4);
  net.cut(1, 2);
  EXPECT_TRUE(net.is_cut(1, 2));
  EXPECT_FALSE(net.is_cut(2, 1));  // one-way
  net.heal_all();
  net.split({0, 0, 0, 1, 1});
  EXPECT_FALSE(net.is_cut(1, 2));
  EXPECT_TRUE(net.is_cut(1, 3));
  EXPECT_TRUE(net.is_cut(4, 2));
  EXPECT_FALSE(net.is_cut(3, 4));
  net.heal_all();
  net.isolate(2);
  EXPECT_TRUE(net.is_cut(2, 1) && net.is_cut(1, 2) && net.is_cut(4, 2));
  EXPECT_FALSE(net.is_cut(1, 3));
  Random rng(1);
  EXPECT_TRUE(net.plan(2, 1, rng).empty());
  EXPECT_EQ(net.lost(), 1u);
}

TEST(SimNetwork, LossDuplicationAndDelays) {
  SimNetwork net(2);
  Random rng(3);
  net.faults().min_delay = 100;
  net.faults().max_delay = 200;
  for (int i = 0; i < 100; ++i) {
    auto d = net.plan(1, 2, rng);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_GE(d[0], 100);
    EXPECT_LE(d[0], 200);
  }
  net.faults().duplicate = 1;
  EXPECT_EQ(net.plan(1, 2, rng).size(), 2u);
  net.faults().loss = 1;
  EXPECT_TRUE(net.plan(1, 2, rng).empty());
  // The same seed plans the same fates.
  SimNetwork a(2), b(2);
  a.faults().loss = b.faults().loss = 0.3;
  a.faults().slow = b.faults().slow = 0.3;
  Random ra(9), rb(9);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.plan(1, 2, ra), b.plan(1, 2, rb));
}

TEST(Checker, AtMostOneLeaderPerTerm) {
  Checker c;
  c.leader_seen(3, Member{1, 11});
  c.leader_seen(3, Member{1, 11});
  c.leader_seen(4, Member{2, 22});
  EXPECT_FALSE(c.failed());
  c.leader_seen(4, Member{2, 23});  // the same node with another disk is another member
  EXPECT_TRUE(c.failed());
  EXPECT_NE(c.failure().find("two leaders in term 4"), std::string::npos);
}

TEST(Checker, CommittedPrefixesMustMatchByteForByte) {
  Checker c;
  c.committed(1, make_entry(1, 0, 0, "a"));
  c.committed(1, make_entry(1, 1, 2, "bc"));
  c.committed(2, make_entry(1, 0, 0, "a"));
  c.committed(2, make_entry(1, 1, 2, "bc"));
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(c.reference_end(), 3);
  c.committed(3, make_entry(1, 1, 2, "bC"));
  EXPECT_TRUE(c.failed());
  EXPECT_NE(c.failure().find("disagree at offset 1"), std::string::npos);

  Checker misaligned;
  misaligned.committed(1, make_entry(1, 0, 2, "abc"));
  misaligned.committed(2, make_entry(1, 1, 1, "b"));
  EXPECT_TRUE(misaligned.failed());
}

TEST(Checker, AnAcknowledgedAppendMustBeInTheCommittedLog) {
  Checker c;
  c.committed(1, make_entry(1, 0, 0, "a"));
  c.acknowledged(1, make_entry(1, 0, 0, "a"));
  EXPECT_FALSE(c.failed());
  c.final_check();
  EXPECT_FALSE(c.failed());
  c.acknowledged(1, make_entry(2, 0, 0, "x"));
  EXPECT_TRUE(c.failed());
  Checker missing;
  missing.acknowledged(1, make_entry(1, 0, 0, "a"));
  EXPECT_TRUE(missing.failed());
}

TEST(Checker, WatermarksAndCommitsNeverMoveBack) {
  Checker c;
  c.high_watermark(1, 1, 3, 5);
  c.high_watermark(1, 1, 3, 7);
  c.high_watermark(1, 1, 4, 8);  // a new term: its own watermark
  c.high_watermark(1, 2, 5, 9);  // a new process life
  EXPECT_FALSE(c.failed());
  c.high_watermark(1, 2, 5, 8);
  EXPECT_TRUE(c.failed());
  EXPECT_NE(c.failure().find("moved back in term 5"), std::string::npos);

  Checker across;
  across.high_watermark(1, 1, 3, 10);
  across.high_watermark(2, 1, 5, 12);
  across.high_watermark(3, 1, 4, 11);  // term 4 shown after term 5: behind it, allowed
  EXPECT_FALSE(across.failed());
  across.high_watermark(3, 1, 6, 11);  // a leader of term 6 below term 5's 12
  EXPECT_TRUE(across.failed());

  Checker k;
  k.commit_reported(2, 1, 4);
  k.commit_reported(2, 1, 9);
  k.commit_reported(2, 2, 0);  // restarted: commit starts over
  EXPECT_FALSE(k.failed());
  k.commit_reported(3, 1, 5);
  k.commit_reported(3, 1, 4);
  EXPECT_TRUE(k.failed());
}

TEST(Simulation, ASeedReplaysExactly) {
  for (uint64_t seed : {1, 2, 3}) {
    SimOptions o;
    o.seed = seed;
    SimResult a = run_simulation(o);
    SimResult b = run_simulation(o);
    EXPECT_EQ(a.ok, b.ok);
    EXPECT_EQ(a.failure, b.failure);
    EXPECT_EQ(a.stats.to_string(), b.stats.to_string());
    EXPECT_GT(a.stats.events, 1000u);
    EXPECT_GT(a.stats.acknowledged, 0u);
  }
}

}  // namespace
}  // namespace ordo::raft::sim
