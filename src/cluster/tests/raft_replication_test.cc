// Three raft::Replicas over three real partition logs (RaftLogStorage) in temp dirs, an
// in-memory network the test pumps, time the test ticks: elections, replication, crashes and
// restarts (recovery from the directories), a lost disk rejoining through configuration changes.

#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <unistd.h>

#include <map>

#include "base/crc32c.h"
#include "cluster/tests/raft_local_cluster.h"
#include "storage/tests/test_util.h"
#include "tests/crash/child_process.h"

namespace ordo::cluster {
namespace {

using storage::testing::make_batch;
using storage::testing::TempDir;
using testing::LocalCluster;
using testing::read_log;

storage::LogConfig log_config() {
  storage::LogConfig c;
  c.segment_bytes = 64 * 1024;  // several segments per replica
  c.flush_mode = storage::FlushMode::none;
  c.preallocate = storage::Preallocate::none;
  c.retention_ms = -1;
  return c;
}

class RaftReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The crashes here drop objects in this process: the page cache keeps every write, so
    // the fsyncs are skipped (thousands of them). The kill -9 test below keeps them.
    cluster_ = std::make_unique<LocalCluster>(tmp_.path(), 3, log_config(), raft::Options{},
                                              /*fsync=*/false);
    ASSERT_TRUE(cluster_->start_all());
  }

  LocalCluster::Node* elect() {
    auto* l = cluster_->elect();
    EXPECT_NE(l, nullptr) << "no leader elected";
    return l;
  }

  // Appends n batches of 2 records at the current leader, delivering messages after each, and
  // remembers each batch's bytes as the leader wrote them.
  void append(int n, const std::string& tag) {
    for (int i = 0; i < n; ++i) {
      auto* l = cluster_->leader();
      ASSERT_NE(l, nullptr);
      auto payload = std::make_shared<const std::vector<uint8_t>>(
          make_batch(2, tag + std::to_string(i), 1000 + i, 40));
      auto e = l->replica->append(payload, 2);
      ASSERT_TRUE(e) << e.error().to_string();
      appended_[e->base] = *e;
      cluster_->pump();
      if (i % 64 == 63) cluster_->tick();
    }
  }

  void converge() {
    ASSERT_TRUE(cluster_->run_until([&] { return cluster_->converged(); }))
        << "the replicas did not converge";
  }

  // Every live replica holds the same batches, byte for byte, and every batch appended and
  // committed is among them at its offsets.
  void expect_identical_logs() {
    std::optional<std::vector<raft::Entry>> first;
    raft::NodeId first_id = 0;
    for (auto& n : cluster_->nodes()) {
      if (!n->alive()) continue;
      auto log = read_log(*n);
      if (!first) {
        first = std::move(log);
        first_id = n->id;
        continue;
      }
      ASSERT_EQ(log.size(), first->size()) << "node " << n->id << " vs node " << first_id;
      for (size_t i = 0; i < log.size(); ++i) {
        ASSERT_EQ(*log[i].payload, *(*first)[i].payload)
            << "batch " << i << " at " << log[i].base << ": node " << n->id << " vs " << first_id;
      }
    }
    ASSERT_TRUE(first.has_value());
    expect_committed_present(*first);
    // The segment files themselves hold the same batches (every log here starts at 0).
    std::optional<std::vector<uint8_t>> files;
    for (auto& n : cluster_->nodes()) {
      if (!n->alive()) continue;
      ASSERT_EQ(n->log->log_start_offset(), Offset(0));
      auto bytes = testing::segment_file_batches(*n);
      if (!files) {
        files = std::move(bytes);
        EXPECT_FALSE(files->empty());
      } else {
        EXPECT_TRUE(bytes == *files) << "node " << n->id << ": segment files differ";
      }
    }
  }

  void expect_committed_present(const std::vector<raft::Entry>& log) {
    std::map<raft::Offset, const raft::Entry*> by_base;
    for (const auto& e : log) by_base[e.base] = &e;
    for (const auto& [base, e] : appended_) {
      if (base >= committed_before_) continue;
      auto it = by_base.find(base);
      ASSERT_NE(it, by_base.end()) << "committed batch at " << base << " lost";
      EXPECT_EQ(*it->second->payload, *e.payload) << "committed batch at " << base << " changed";
    }
  }

  size_t data_batches(const std::vector<raft::Entry>& log) {
    size_t n = 0;
    for (const auto& e : log) n += e.kind == raft::EntryKind::data;
    return n;
  }

  TempDir tmp_;
  std::unique_ptr<LocalCluster> cluster_;
  std::map<raft::Offset, raft::Entry> appended_;
  raft::Offset committed_before_ = 0;  // batches below this were committed
};

TEST_F(RaftReplicationTest, ThreeLogsHoldTheSameThousandBatches) {
  auto* l = elect();
  ASSERT_NE(l, nullptr);
  append(1000, "a");
  converge();
  committed_before_ = cluster_->leader()->commit;
  expect_identical_logs();
  auto log = read_log(*cluster_->leader());
  EXPECT_EQ(data_batches(log), 1000u);
  // The leader's no-op opened its term as a control batch that consumers skip.
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.front().kind, raft::EntryKind::noop);
  auto view = model::RecordBatchView::parse(*log.front().payload);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->is_control());
  for (auto& n : cluster_->nodes()) {
    EXPECT_GT(n->log->segment_count(), 1u);
    EXPECT_EQ(n->log->high_watermark().value(), n->commit);
  }
}

TEST_F(RaftReplicationTest, ACrashedFollowerRecoversItsDirectoryAndCatchesUp) {
  auto* l = elect();
  ASSERT_NE(l, nullptr);
  append(150, "a");
  converge();
  raft::NodeId follower = l->id % 3 + 1;
  cluster_->crash(follower);
  append(150, "b");  // two of three still commit
  ASSERT_TRUE(cluster_->run_until([&] {
    auto* ld = cluster_->leader();
    return ld && ld->commit == ld->core().log_end();
  }));
  committed_before_ = cluster_->leader()->commit;
  ASSERT_TRUE(cluster_->start(follower));
  EXPECT_LT(cluster_->node(follower).core().log_end(), committed_before_);
  converge();
  expect_identical_logs();
  EXPECT_EQ(data_batches(read_log(cluster_->node(follower))), 300u);
}

TEST_F(RaftReplicationTest, ANewLeaderAfterTheLeaderCrashesLosesNoCommittedBatch) {
  auto* l = elect();
  ASSERT_NE(l, nullptr);
  append(200, "a");
  // Some committed, maybe not all: the appends of the last round may still be in flight.
  committed_before_ = cluster_->leader()->commit;
  ASSERT_GT(committed_before_, 0);
  // What the leader had not seen committed may be lost with it.
  appended_.erase(appended_.lower_bound(committed_before_), appended_.end());
  const raft::NodeId old = l->id;
  const raft::Term old_term = l->core().term();
  cluster_->crash(old);
  auto* nl = elect();
  ASSERT_NE(nl, nullptr);
  EXPECT_NE(nl->id, old);
  EXPECT_GT(nl->core().term(), old_term);
  expect_committed_present(read_log(*nl));
  append(100, "b");
  ASSERT_TRUE(cluster_->start(old));  // the old leader comes back as a follower
  converge();
  EXPECT_NE(cluster_->leader()->id, old);
  committed_before_ = cluster_->leader()->commit;
  expect_identical_logs();
}

TEST_F(RaftReplicationTest, AWipedReplicaRejoinsAsALearnerThenAVoter) {
  auto* l = elect();
  ASSERT_NE(l, nullptr);
  append(150, "a");
  converge();
  const raft::NodeId lost = l->id % 3 + 1;
  const uint64_t old_incarnation = cluster_->node(lost).storage->incarnation();
  cluster_->wipe(lost);
  // It comes back empty with the configuration it is told of and a new incarnation: not the
  // voter the configuration names, so it neither votes nor counts.
  ASSERT_TRUE(cluster_->start(lost, cluster_->leader()->core().config(), true));
  const raft::Member fresh{lost, cluster_->node(lost).storage->incarnation()};
  EXPECT_NE(fresh.incarnation, old_incarnation);

  auto propose = [&](const raft::Config& target) {
    ASSERT_TRUE(cluster_->run_until([&] {
      auto* ld = cluster_->leader();
      return ld && ld->replica->propose_config(target).has_value();
    })) << "refused: "
        << target.to_string();
    ASSERT_TRUE(cluster_->run_until([&] {
      auto* ld = cluster_->leader();
      return ld && ld->core().config() == target && ld->commit == ld->core().log_end();
    })) << "not committed: "
        << target.to_string();
  };
  raft::Config c = cluster_->leader()->core().config();
  raft::Config without;
  for (const auto& v : c.voters) {
    if (v.id != lost) without.voters.push_back(v);
  }
  propose(without);
  raft::Config learner = without;
  learner.learners.push_back(fresh);
  propose(learner);
  append(50, "b");
  ASSERT_TRUE(cluster_->run_until([&] {
    return cluster_->node(lost).core().log_end() == cluster_->leader()->core().log_end();
  }));
  raft::Config promoted = without;
  promoted.voters.push_back(fresh);
  std::sort(promoted.voters.begin(), promoted.voters.end());
  propose(promoted);
  EXPECT_TRUE(cluster_->node(lost).core().config().is_voter(fresh));
  append(50, "c");
  converge();
  committed_before_ = cluster_->leader()->commit;
  expect_identical_logs();
  EXPECT_EQ(data_batches(read_log(cluster_->node(lost))), 250u);
}

// Retention moved the leader's log start past a crashed follower's log end: when it comes back
// the leader resets its log to start there (RaftLogStorage::reset), it catches up, and both
// remember the term before their log start across restarts.
TEST_F(RaftReplicationTest, AFollowerBehindTheLeadersLogStartIsResetAndCatchesUp) {
  auto* l = elect();
  ASSERT_NE(l, nullptr);
  append(100, "a");
  converge();
  const raft::NodeId behind = l->id % 3 + 1;
  cluster_->crash(behind);
  append(200, "b");
  ASSERT_TRUE(cluster_->run_until([&] {
    auto* ld = cluster_->leader();
    return ld && ld->commit == ld->core().log_end();
  }));
  l = cluster_->leader();
  // The log start: a batch boundary well past the crashed follower's log end.
  auto it = appended_.lower_bound(l->commit - 40);
  ASSERT_NE(it, appended_.end());
  const raft::Offset start = it->first;
  l->replica->on_log_start(start);  // the storage's advance_log_start, then the core
  ASSERT_FALSE(l->replica->failed());
  EXPECT_EQ(l->log->log_start_offset().value(), start);

  ASSERT_TRUE(cluster_->start(behind));
  ASSERT_LT(cluster_->node(behind).core().log_end(), start);
  converge();
  auto& f = cluster_->node(behind);
  EXPECT_EQ(f.log->log_start_offset().value(), start);
  auto leader_log = read_log(*cluster_->leader());
  auto follower_log = read_log(f);
  ASSERT_EQ(follower_log.size(), leader_log.size());
  for (size_t i = 0; i < leader_log.size(); ++i) {
    ASSERT_EQ(*follower_log[i].payload, *leader_log[i].payload) << i;
  }
  const raft::Term term_before = cluster_->leader()->core().term_at(start - 1);
  ASSERT_NE(term_before, raft::kNoTerm);

  // Both know the term of the record before their log start after a restart.
  const raft::NodeId leader_id = cluster_->leader()->id;
  for (raft::NodeId id : {behind, leader_id}) {
    cluster_->crash(id);
    ASSERT_TRUE(cluster_->start(id));
    const auto& epochs = cluster_->node(id).storage->restored().epochs;
    ASSERT_FALSE(epochs.empty()) << "node " << id;
    EXPECT_EQ(epochs.front(), (raft::EpochStart{term_before, start - 1})) << "node " << id;
    EXPECT_EQ(cluster_->node(id).core().term_at(start - 1), term_before);
  }
  ASSERT_NE(elect(), nullptr);
  append(20, "c");
  converge();
}

// kill -9: a child process runs the three replicas and reports each batch once the leader has
// committed it; it is killed in the middle of appending. Every replica directory then recovers,
// a leader is elected, and every batch reported committed is there, byte for byte (by CRC), on
// all three replicas.
TEST(RaftKillTest, CommittedBatchesSurviveAKill9OfTheProcess) {
  TempDir tmp;
  const std::string root = tmp.path() + "/cluster";
  struct Report {
    int64_t base;
    uint64_t crc;
  };
  auto child = crashtest::fork_child([&](int fd) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that died first
    LocalCluster c(root, 3, log_config());
    if (!c.start_all()) ::_exit(2);
    std::deque<Report> pending;
    // Bounded: the parent kills it after a few hundred appends; exiting on its own fails the
    // test (kill_and_reap).
    for (int i = 0; i < 200'000; ++i) {
      auto* l = c.leader();
      if (l == nullptr) {
        c.tick();
        continue;
      }
      auto payload = std::make_shared<const std::vector<uint8_t>>(
          make_batch(2, "k" + std::to_string(i), 1000 + i, 40));
      auto e = l->replica->append(payload, 2);
      if (!e) {
        c.tick();
        continue;
      }
      pending.push_back({e->base, crc32c(0, e->payload->data(), e->payload->size())});
      c.pump();
      if (i % 16 == 15) c.tick();
      while (!pending.empty() && pending.front().base < l->commit) {
        Report r = pending.front();
        pending.pop_front();
        if (::write(fd, &r, sizeof r) != ssize_t(sizeof r)) ::_exit(3);
      }
    }
    ::_exit(4);
  });
  std::vector<Report> reports;
  auto read_report = [&] {
    Report r;
    size_t got = 0;
    while (got < sizeof r) {
      ssize_t n = ::read(child.read_fd, reinterpret_cast<char*>(&r) + got, sizeof r - got);
      if (n <= 0) return false;
      got += size_t(n);
    }
    reports.push_back(r);
    return true;
  };
  bool reporting = true;
  while (reports.size() < 100 && reporting) reporting = read_report();
  crashtest::kill_and_reap(child);  // on every path: the child must not outlive the test
  ASSERT_TRUE(reporting) << "the child stopped reporting";
  while (read_report()) {
  }
  ::close(child.read_fd);

  LocalCluster c(root, 3, log_config());
  ASSERT_TRUE(c.start_all());
  ASSERT_NE(c.elect(), nullptr);
  ASSERT_TRUE(c.run_until([&] { return c.converged(); }));
  std::optional<std::vector<raft::Entry>> first;
  for (auto& n : c.nodes()) {
    auto log = read_log(*n);
    std::map<raft::Offset, uint64_t> crcs;
    for (const auto& e : log) crcs[e.base] = crc32c(0, e.payload->data(), e.payload->size());
    for (const auto& r : reports) {
      auto it = crcs.find(r.base);
      ASSERT_NE(it, crcs.end()) << "node " << n->id << " lost committed batch " << r.base;
      EXPECT_EQ(it->second, r.crc) << "node " << n->id << " batch " << r.base;
    }
    if (!first) {
      first = std::move(log);
    } else {
      ASSERT_EQ(log.size(), first->size());
      for (size_t i = 0; i < log.size(); ++i) ASSERT_EQ(*log[i].payload, *(*first)[i].payload);
    }
  }
}

}  // namespace
}  // namespace ordo::cluster
