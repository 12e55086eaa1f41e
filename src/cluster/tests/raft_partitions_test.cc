// RaftPartitions in an in-process cluster (cluster_fixture.h): three nodes, each with its own
// data dir, LogManager (2 shards) and RaftPartitions, joined by an in-memory router. Elections,
// acknowledgements (acks=1 at once, acks=all on commit), NOT_LEADER answers, a crashed leader,
// an idempotent retry after failover, and the LogManager's group commit.

#include <gtest/gtest.h>

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include "cluster/tests/cluster_fixture.h"
#include "model/record_batch.h"
#include "storage/tests/test_util.h"

namespace ordo::cluster {
namespace {

using storage::testing::make_batch;
using storage::testing::read_slice_bytes;
using storage::testing::TempDir;
using testing::Answer;
using testing::ClusterFixture;
using testing::wait_for;

const model::TopicPartition kTp{"events", 0};

std::vector<uint8_t> idempotent_batch(int64_t producer_id, int32_t sequence, const std::string& v) {
  model::RecordBatchOptions o;
  o.producer_id = producer_id;
  o.producer_epoch = 0;
  o.base_sequence = sequence;
  model::RecordBatchBuilder b(o);
  b.add("k", v, 1000 + sequence);
  return b.build();
}

Answer<storage::AppendResult> append(RaftPartitions& p, std::vector<uint8_t> batch, Consistency c) {
  Answer<storage::AppendResult> a;
  p.append(kTp, std::move(batch), c, storage::AppendOptions{}, a.callback());
  return a;
}

// The bytes of every batch below the node's high watermark.
std::vector<uint8_t> committed_bytes(storage::LogManager& logs) {
  std::vector<uint8_t> out;
  Offset next{0};
  for (int i = 0; i < 100'000; ++i) {
    auto r = logs.read_sync(kTp, storage::ReadOptions{.start = next, .max_bytes = 1 << 24});
    EXPECT_TRUE(r) << r.error().to_string();
    if (!r || r->slice.size == 0) break;
    auto bytes = read_slice_bytes(r->slice.file->fd(), r->slice.position, r->slice.size);
    std::span<const uint8_t> rest(bytes);
    while (!rest.empty()) {
      auto v = model::RecordBatchView::parse(rest);
      EXPECT_TRUE(v);
      if (!v) return out;
      next = Offset(v->last() + 1);
      rest = rest.subspan(v->size_bytes());
    }
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  return out;
}

class RaftPartitionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(c_.start_all());
    ASSERT_TRUE(c_.create_partition(kTp, 1));
  }
  NodeId leader() {
    auto l = c_.wait_leader(kTp);
    EXPECT_TRUE(l.has_value()) << "no leader elected";
    return l ? l->first : kNoLeader;
  }
  // Every up node has committed everything the leader has and holds the same committed bytes.
  void expect_converged_identical() {
    NodeId l = leader();
    ASSERT_NE(l, kNoLeader);
    ASSERT_TRUE(wait_for([&] {
      const raft::Offset end = c_.log_end_of(l, kTp);
      for (size_t i = 1; i <= c_.size(); ++i) {
        auto& n = c_.node(NodeId(i));
        if (!n.parts) continue;
        if (c_.commit_of(NodeId(i), kTp) != end || c_.log_end_of(NodeId(i), kTp) != end) {
          return false;
        }
        auto st = n.logs->status();
        if (st.empty() || st[0].high_watermark.value() != end) return false;
      }
      return true;
    })) << "the replicas did not converge";
    auto reference = committed_bytes(c_.logs(l));
    EXPECT_FALSE(reference.empty());
    for (size_t i = 1; i <= c_.size(); ++i) {
      if (!c_.node(NodeId(i)).parts) continue;
      EXPECT_EQ(committed_bytes(c_.logs(NodeId(i))), reference) << "node " << i;
    }
  }

  TempDir tmp_;
  ClusterFixture c_{tmp_.path(), 3};
};

TEST_F(RaftPartitionsTest, ElectsALeaderAndFollowersNameIt) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  auto view = c_.parts(l).local_view(kTp);
  ASSERT_TRUE(view);
  const int32_t epoch = view->epoch;
  EXPECT_GT(epoch, 0);
  EXPECT_EQ(view->replicas, (std::vector<NodeId>{1, 2, 3}));
  // The leader's ISR: the voters it hears from.
  EXPECT_TRUE(wait_for([&] { return c_.parts(l).local_view(kTp)->isr.size() == 3; }));

  EXPECT_EQ(c_.parts(l).check_leader(kTp), std::nullopt);
  EXPECT_EQ(c_.parts(l).check_leader(kTp, epoch), std::nullopt);
  EXPECT_EQ(c_.parts(l).check_leader(kTp, epoch + 1),
            (LeaderError{LeaderError::Code::unknown_leader_epoch, l, epoch}));
  EXPECT_EQ(c_.parts(l).check_leader(kTp, epoch - 1),
            (LeaderError{LeaderError::Code::fenced_leader_epoch, l, epoch}));
  for (NodeId f = 1; f <= 3; ++f) {
    if (f == l) continue;
    EXPECT_EQ(c_.parts(f).check_leader(kTp),
              (LeaderError{LeaderError::Code::not_leader_or_follower, l, epoch}));
    // A follower refuses appends: leadership is elsewhere (retriable).
    auto a = append(c_.parts(f), make_batch(1, "f"), Consistency::leader).get();
    ASSERT_TRUE(a);
    ASSERT_FALSE(*a);
    EXPECT_EQ(a->error().code, Errc::closed);
  }
  EXPECT_EQ(c_.parts(l).check_leader({"nope", 0})->code,
            LeaderError::Code::unknown_topic_or_partition);
}

TEST_F(RaftPartitionsTest, QuorumAcksWaitForAMajorityLeaderAcksDoNot) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  const NodeId f1 = l % 3 + 1, f2 = f1 % 3 + 1;
  // One follower cut off: a majority (leader + f1) still commits.
  c_.set_filter([&](const raft::Message& m) { return m.from.id != f2 && m.to != f2; });
  for (int i = 0; i < 5; ++i) {
    auto a = append(c_.parts(l), make_batch(2, "q" + std::to_string(i)), Consistency::quorum);
    auto r = a.get();
    ASSERT_TRUE(r && *r) << (r ? r->error().to_string() : "no answer");
    EXPECT_GT(c_.commit_of(l, kTp), (*r)->last_offset.value());
  }
  // The leader cut off from both: acks=1 answers once written, acks=all never succeeds: it
  // fails with closed when the leader steps down (check-quorum).
  c_.set_filter([&](const raft::Message& m) { return m.from.id != l && m.to != l; });
  auto one = append(c_.parts(l), make_batch(1, "one"), Consistency::leader).get();
  ASSERT_TRUE(one);
  // (Unless l already stepped down: a stalled test thread. Then it is refused, retriably.)
  if (!*one) {
    EXPECT_EQ(one->error().code, Errc::closed);
  }
  auto all = append(c_.parts(l), make_batch(1, "all"), Consistency::quorum);
  auto r = all.get();
  ASSERT_TRUE(r) << "the pending ack was never answered";
  ASSERT_FALSE(*r) << "acknowledged without a majority";
  EXPECT_EQ(r->error().code, Errc::closed);
  // The other two elect a leader; the old one rejoins, loses its unacknowledged suffix.
  c_.set_filter(nullptr);
  NodeId l2 = leader();
  auto after = append(c_.parts(l2), make_batch(1, "after"), Consistency::quorum).get();
  ASSERT_TRUE(after && *after);
  expect_converged_identical();
  EXPECT_GT(c_.node(l2).hw_events.load(), 0u);
}

TEST_F(RaftPartitionsTest, LeaderCrashNewLeaderPendingFailClosedCommittedIdentical) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  std::vector<Answer<storage::AppendResult>> acks;
  for (int i = 0; i < 40; ++i) {  // concurrent: many in flight, group-committed
    acks.push_back(append(c_.parts(l), make_batch(3, "a" + std::to_string(i), 1000, 100),
                          Consistency::quorum));
  }
  for (auto& a : acks) {
    auto r = a.get();
    ASSERT_TRUE(r && *r) << (r ? r->error().to_string() : "no answer");
  }
  // Appends that cannot commit (nothing reaches the followers) are pending when it crashes.
  c_.set_filter([&](const raft::Message& m) { return m.from.id != l; });
  auto pending = append(c_.parts(l), make_batch(1, "lost"), Consistency::quorum);
  c_.crash(l);
  auto p = pending.get();
  ASSERT_TRUE(p);
  ASSERT_FALSE(*p);
  EXPECT_EQ(p->error().code, Errc::closed);
  c_.set_filter(nullptr);

  NodeId l2 = leader();
  ASSERT_NE(l2, l);
  for (int i = 0; i < 10; ++i) {
    auto r =
        append(c_.parts(l2), make_batch(2, "b" + std::to_string(i)), Consistency::quorum).get();
    ASSERT_TRUE(r && *r) << (r ? r->error().to_string() : "no answer");
  }
  ASSERT_TRUE(c_.start(l));  // recovers its directory, catches up
  expect_converged_identical();
}

TEST_F(RaftPartitionsTest, IdempotentRetryAfterFailoverAnsweredOnlyOnceCommitted) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  const NodeId f = l % 3 + 1, g = f % 3 + 1;
  auto batch = idempotent_batch(42, 0, "once");
  // The batch reaches f but never commits: g hears nothing from l, l hears no acknowledgement
  // from f (append or heartbeat answers, which carry what f holds).
  c_.set_filter([&](const raft::Message& m) {
    if (m.from.id == l && m.to == g) return false;
    // Nor may f be elected meanwhile (l may step down: it hears nothing from anyone).
    if (m.from.id == f && std::holds_alternative<raft::VoteRequest>(m.body)) return false;
    if (m.from.id == f && m.to == l &&
        (std::holds_alternative<raft::AppendResponse>(m.body) ||
         std::holds_alternative<raft::HeartbeatResponse>(m.body))) {
      return false;
    }
    return true;
  });
  auto original = append(c_.parts(l), batch, Consistency::quorum);
  const raft::Offset end = c_.log_end_of(l, kTp);
  ASSERT_TRUE(wait_for([&] { return c_.log_end_of(f, kTp) >= end; }));
  // l is cut off; f leads (g lacks the batch, so only f can win) but cannot commit: g's
  // answers to it are lost. l's pending ack fails when it steps down.
  c_.set_filter([&](const raft::Message& m) {
    if (m.from.id == l || m.to == l) return false;
    if (m.from.id == g && m.to == f &&
        (std::holds_alternative<raft::AppendResponse>(m.body) ||
         std::holds_alternative<raft::HeartbeatResponse>(m.body))) {
      return false;
    }
    return true;
  });
  auto o = original.get();
  ASSERT_TRUE(o);
  ASSERT_FALSE(*o);
  EXPECT_EQ(o->error().code, Errc::closed);
  ASSERT_TRUE(wait_for([&] {
    auto v = c_.parts(f).local_view(kTp);
    return v && v->leader == f;
  }));
  // The producer retries at f: a duplicate of an uncommitted batch. acks=1 answers with the
  // original offsets at once; acks=all must wait for the commit (here: it fails when f steps
  // down, or succeeds only after the heal below).
  auto one = append(c_.parts(f), batch, Consistency::leader).get();
  std::optional<storage::AppendResult> first;
  if (one && *one) {  // f may have stepped down already (check-quorum): then it is closed
    EXPECT_TRUE((*one)->duplicate);
    first = **one;
  }
  struct Seen {
    Result<storage::AppendResult> result = make_error(Errc::closed, "none");
    raft::Offset commit = -1;
  };
  auto retry_at = [&](NodeId n) {
    auto seen = std::make_shared<std::promise<Seen>>();
    RaftPartitions* p = &c_.parts(n);
    p->append(kTp, batch, Consistency::quorum, {}, [p, seen](Result<storage::AppendResult> r) {
      Seen s{std::move(r), -1};
      // On the shard thread: with_replica runs inline, the commit point at the answer.
      p->with_replica(kTp, [&](raft::Replica* rep) { s.commit = rep ? rep->core().commit() : -1; });
      seen->set_value(std::move(s));
    });
    return seen->get_future();
  };
  // Before the heal it cannot succeed: it waits for a commit that cannot happen until f steps
  // down (check-quorum: it hears nothing from g), and then fails.
  auto during = retry_at(f);
  ASSERT_EQ(during.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  auto s = during.get();
  EXPECT_FALSE(s.result) << "a duplicate of an uncommitted batch acknowledged";
  if (!s.result) {
    EXPECT_EQ(s.result.error().code, Errc::closed);
  }
  c_.set_filter(nullptr);
  // Retry at whoever leads until it succeeds: every success is the duplicate, committed.
  std::optional<storage::AppendResult> done;
  for (int attempt = 0; attempt < 200 && !done; ++attempt) {
    NodeId now = leader();
    ASSERT_NE(now, kNoLeader);
    auto s = retry_at(now).get();
    if (!s.result) {
      EXPECT_EQ(s.result.error().code, Errc::closed) << s.result.error().to_string();
      continue;
    }
    EXPECT_TRUE(s.result->duplicate);
    EXPECT_GT(s.commit, s.result->last_offset.value()) << "answered before it committed";
    done = *s.result;
  }
  ASSERT_TRUE(done);
  if (first) {
    EXPECT_EQ(done->first_offset, first->first_offset);
  }
  // The batch is in the log once.
  expect_converged_identical();
  int copies = 0;
  auto bytes = committed_bytes(c_.logs(leader()));
  std::span<const uint8_t> rest(bytes);
  while (!rest.empty()) {
    auto v = model::RecordBatchView::parse(rest);
    ASSERT_TRUE(v);
    if (v->producer_id() == 42) {
      ++copies;
      EXPECT_EQ(v->base(), done->first_offset);
    }
    rest = rest.subspan(v->size_bytes());
  }
  EXPECT_EQ(copies, 1);
}

TEST_F(RaftPartitionsTest, OffsetForLeaderEpochAndListOffsets) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  for (int i = 0; i < 3; ++i) {
    auto r = append(c_.parts(l), make_batch(2, "x"), Consistency::quorum).get();
    ASSERT_TRUE(r && *r);
  }
  const int32_t e1 = c_.parts(l).local_view(kTp)->epoch;
  const raft::Offset end1 = c_.log_end_of(l, kTp);
  c_.crash(l);
  NodeId l2 = leader();
  ASSERT_NE(l2, l);
  auto r = append(c_.parts(l2), make_batch(2, "y"), Consistency::quorum).get();
  ASSERT_TRUE(r && *r);
  const int32_t e2 = c_.parts(l2).local_view(kTp)->epoch;
  ASSERT_GT(e2, e1);
  auto ask = [&](int32_t current, int32_t epoch) {
    Answer<EpochEnd> a;
    c_.parts(l2).offset_for_leader_epoch(kTp, current, epoch, a.callback());
    return *a.get();
  };
  const raft::Offset end2 = c_.log_end_of(l2, kTp);
  EXPECT_EQ(*ask(-1, e2), (EpochEnd{e2, end2}));
  EXPECT_EQ(*ask(e2, e2 + 5), (EpochEnd{e2, end2}));  // the largest epoch <= asked
  // The old leader's epoch ends where the new leader's records (its no-op) start.
  auto old = ask(-1, e1);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->epoch, e1);
  EXPECT_EQ(old->end_offset, end1);
  EXPECT_EQ(*ask(-1, 0), (EpochEnd{-1, -1}));  // before every epoch of the log
  EXPECT_FALSE(ask(e2 - 1, e2));               // a stale current epoch
  Answer<OffsetAnswer> latest;
  c_.parts(l2).list_offset(kTp, kLatestOffset, latest.callback());
  auto la = latest.get();
  ASSERT_TRUE(la && *la);
  EXPECT_EQ((*la)->offset, end2);
  EXPECT_EQ((*la)->leader_epoch, e2);
  // DeleteRecords moves the log start on the leader (through the replica).
  Answer<Truncation> del;
  c_.parts(l2).delete_records(kTp, 2, del.callback());
  auto d = del.get();
  ASSERT_TRUE(d && *d);
  EXPECT_FALSE((*d)->error);
  EXPECT_EQ((*d)->low_watermark, 2);
  EXPECT_EQ(c_.on_replica<raft::Offset>(l2, kTp,
                                        [](raft::Replica* rep) { return rep->core().log_start(); }),
            2);
}

TEST_F(RaftPartitionsTest, CloseGroupFailsPendingAcksAndForgetsTheView) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  c_.set_filter([&](const raft::Message& m) { return m.from.id != l; });
  auto pending = append(c_.parts(l), make_batch(1, "p"), Consistency::quorum);
  Answer<void> closed;
  c_.parts(l).close_group(kTp, closed.callback());
  auto cl = closed.get();
  ASSERT_TRUE(cl && *cl);
  auto p = pending.get();
  ASSERT_TRUE(p);
  ASSERT_FALSE(*p);
  EXPECT_EQ(p->error().code, Errc::closed);
  EXPECT_FALSE(c_.parts(l).local_view(kTp));
  // No replica here any more: the table answers (the partition exists, led elsewhere).
  auto e = c_.parts(l).check_leader(kTp);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, LeaderError::Code::not_leader_or_follower);
  auto refused = append(c_.parts(l), make_batch(1, "r"), Consistency::leader).get();
  ASSERT_TRUE(refused);
  ASSERT_FALSE(*refused);
  EXPECT_EQ(refused->error().code, Errc::closed);
}

// min.insync.replicas compares with this: the leader and the voters that answer it.
TEST_F(RaftPartitionsTest, InSyncReplicasAreTheVotersThatAnswerTheLeader) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  const NodeId f1 = l % 3 + 1, f2 = f1 % 3 + 1;
  EXPECT_TRUE(wait_for([&] { return c_.parts(l).in_sync_replicas(kTp) == 3; }));
  EXPECT_EQ(c_.parts(f1).in_sync_replicas(kTp), 0);  // not the leader
  c_.set_filter([&](const raft::Message& m) { return m.from.id != f2 && m.to != f2; });
  EXPECT_TRUE(wait_for([&] { return c_.parts(l).in_sync_replicas(kTp) == 2; }));
  EXPECT_EQ(c_.parts(l).local_view(kTp)->isr.size(), 2u);
  c_.set_filter(nullptr);
  EXPECT_TRUE(wait_for([&] { return c_.parts(l).in_sync_replicas(kTp) == 3; }));
}

// A leader that has heard no majority for a lease (here: its clock jumps as after a SIGSTOP,
// and nothing reaches it) refuses reads, ListOffsets, OffsetForLeaderEpoch and appends at
// once, before its core notices (check-quorum counts ticks, which did not run): another leader
// may already serve a higher high watermark.
TEST_F(RaftPartitionsTest, LeaderWithoutQuorumContactForALeaseStopsServing) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  ASSERT_TRUE(wait_for([&] { return !c_.parts(l).check_leader(kTp); }));
  auto r = append(c_.parts(l), make_batch(2, "x"), Consistency::quorum).get();
  ASSERT_TRUE(r && *r);
  c_.set_filter([&](const raft::Message& m) { return m.to != l && m.from.id != l; });
  c_.node(l).clock_offset_ms += 10 * 10 * 10;  // ten leases (10 ticks of 10 ms)
  EXPECT_EQ(c_.parts(l).check_leader(kTp),
            (LeaderError{LeaderError::Code::not_leader_or_follower, kNoLeader, -1}));
  EXPECT_EQ(c_.parts(l).in_sync_replicas(kTp), 0);
  auto a = append(c_.parts(l), make_batch(1, "stale"), Consistency::leader).get();
  ASSERT_TRUE(a);
  ASSERT_FALSE(*a) << "a leader without a quorum accepted a write";
  EXPECT_EQ(a->error().code, Errc::closed);
  Answer<storage::ReadResult> read;
  c_.parts(l).read(kTp, storage::ReadOptions{.start = Offset(0), .max_bytes = 1 << 20},
                   read.callback());
  auto rr = read.get();
  ASSERT_TRUE(rr);
  ASSERT_FALSE(*rr) << "a leader without a quorum served a read";
  EXPECT_EQ(rr->error().code, Errc::closed);
  Answer<OffsetAnswer> latest;
  c_.parts(l).list_offset(kTp, kLatestOffset, latest.callback());
  auto la = latest.get();
  ASSERT_TRUE(la);
  EXPECT_FALSE(*la) << "a leader without a quorum answered ListOffsets";
  Answer<EpochEnd> epoch;
  c_.parts(l).offset_for_leader_epoch(kTp, -1, 1, epoch.callback());
  auto ep = epoch.get();
  ASSERT_TRUE(ep);
  EXPECT_FALSE(*ep);
  // Healed: some leader serves again (l after a lease of fresh answers, or another).
  c_.set_filter(nullptr);
  ASSERT_TRUE(wait_for([&] {
    NodeId now = leader();
    if (now == kNoLeader || c_.parts(now).check_leader(kTp)) return false;
    auto w = append(c_.parts(now), make_batch(1, "after"), Consistency::quorum).get();
    return w && *w;
  }));
}

// ElectLeaders: the preferred replica is the first assigned (here 1, in {1, 2, 3}).
TEST_F(RaftPartitionsTest, ElectPreferredMovesTheLeadershipToTheFirstReplica) {
  NodeId l = leader();
  ASSERT_NE(l, kNoLeader);
  auto elect = [&](NodeId at) {
    Answer<Election> a;
    c_.parts(at).elect_preferred(kTp, a.callback());
    auto r = a.get();
    EXPECT_TRUE(r && *r);
    return r && *r ? **r : Election{};
  };
  if (l == 1) {  // move it away first
    ASSERT_TRUE(c_.on_replica<bool>(
        1, kTp, [](raft::Replica* rep) { return bool(rep->transfer_leadership(2)); }));
    ASSERT_TRUE(wait_for([&] {
      auto v = c_.agreed_leader(kTp);
      return v && v->first != 1;
    }));
    l = leader();
  }
  ASSERT_TRUE(wait_for([&] { return c_.parts(l).in_sync_replicas(kTp) == 3; }));
  const NodeId other = l == 2 ? 3 : 2;
  EXPECT_EQ(elect(other).code, Election::Code::not_leader_or_follower);
  EXPECT_EQ(elect(l).code, Election::Code::none);
  ASSERT_TRUE(wait_for([&] {
    auto v = c_.agreed_leader(kTp);
    return v && v->first == 1;
  }));
  EXPECT_EQ(elect(1).code, Election::Code::election_not_needed);
  EXPECT_EQ(elect(l).code, Election::Code::election_not_needed);
  // The preferred replica down: not available.
  c_.crash(1);
  NodeId l2 = leader();
  ASSERT_NE(l2, 1);
  ASSERT_TRUE(wait_for([&] { return c_.parts(l2).in_sync_replicas(kTp) == 2; }));
  EXPECT_EQ(elect(l2).code, Election::Code::preferred_leader_not_available);
}

// With preferred leaders on (the broker's setting), leadership returns to the first assigned
// replica on its own once it is back and caught up.
TEST(RaftPartitionsPreferredTest, LeadershipReturnsToThePreferredReplica) {
  TempDir tmp;
  ClusterFixture c(tmp.path(), 3);
  c.set_preferred_leaders(true);
  ASSERT_TRUE(c.start_all());
  ASSERT_TRUE(c.create_partition(kTp, 1, {2, 1, 3}));
  ASSERT_TRUE(wait_for([&] {
    auto v = c.agreed_leader(kTp);
    return v && v->first == 2;
  }));
  c.crash(2);
  auto other = c.wait_leader(kTp);
  ASSERT_TRUE(other);
  ASSERT_NE(other->first, 2);
  Answer<storage::AppendResult> a;
  c.parts(other->first)
      .append(kTp, make_batch(2, "while away"), Consistency::quorum, {}, a.callback());
  auto r = a.get();
  ASSERT_TRUE(r && *r);
  ASSERT_TRUE(c.start(2));
  ASSERT_TRUE(wait_for([&] {
    auto v = c.agreed_leader(kTp);
    return v && v->first == 2;
  }));
}

// A follower cuts a divergent suffix holding a producer's last 5 batches: the batches of that
// producer it keeps must still be known once it leads (the next sequence is accepted, a retry
// of a kept batch is a duplicate).
TEST(ProducerStateTruncationTest, CutOfAProducersLastBatchesKeepsTheOlderOnes) {
  TempDir tmp;
  storage::LogConfig config;
  config.preallocate = storage::Preallocate::none;
  auto log = storage::PartitionLog::open(tmp.path() + "/p-0", config, SystemClock::instance());
  ASSERT_TRUE(log);
  // As a follower: the leader's batches with their offsets, sequences 0..6 at offsets 0..6.
  for (int32_t seq = 0; seq < 7; ++seq) {
    model::RecordBatchOptions o;
    o.base_offset = Offset(seq);
    o.leader_epoch = 1;
    o.producer_id = 9;
    o.producer_epoch = 0;
    o.base_sequence = seq;
    model::RecordBatchBuilder b(o);
    b.add("k", "v" + std::to_string(seq), 1000 + seq);
    auto bytes = b.build();
    storage::AppendOptions follower;
    follower.assign_offsets = false;
    ASSERT_TRUE((*log)->append(bytes, follower));
  }
  ASSERT_TRUE((*log)->truncate_to(Offset(2)));  // keeps sequences 0 and 1
  // As the new leader: a retry of sequence 1 is a duplicate, sequence 2 follows.
  storage::AppendOptions leader;
  leader.leader_epoch = 2;
  auto retry = idempotent_batch(9, 1, "v1");
  auto dup = (*log)->append(retry, leader);
  ASSERT_TRUE(dup) << dup.error().to_string();
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->first_offset, Offset(1));
  auto next = idempotent_batch(9, 2, "v2");
  auto r = (*log)->append(next, leader);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_FALSE(r->duplicate);
  EXPECT_EQ(r->first_offset, Offset(2));
}

// The single-node seam answers OffsetForLeaderEpoch from its log's epoch cache too.
TEST(LocalPartitionsEpochTest, OffsetForLeaderEpoch) {
  TempDir tmp;
  PartitionTable table;
  CreateTopic create;
  create.name = kTp.topic;
  create.log.preallocate = storage::Preallocate::none;
  create.replicas = {{1}};
  ASSERT_TRUE(table.apply(create));
  LocalPartitions parts(1, table, nullptr);
  storage::LogManagerOptions lo;
  lo.data_dir = tmp.path();
  lo.default_config = create.log;
  lo.high_watermark = parts.high_watermark_policy();
  auto logs = storage::LogManager::open(lo);
  ASSERT_TRUE(logs);
  parts.attach(**logs);
  ASSERT_TRUE((*logs)->create_sync(kTp, create.log));
  for (int i = 0; i < 2; ++i) {
    Answer<storage::AppendResult> a;
    parts.append(kTp, make_batch(3, "l"), Consistency::quorum, {}, a.callback());
    auto r = a.get();
    ASSERT_TRUE(r && *r);
  }
  auto ask = [&](int32_t current, int32_t epoch) {
    Answer<EpochEnd> a;
    parts.offset_for_leader_epoch(kTp, current, epoch, a.callback());
    return *a.get();
  };
  EXPECT_EQ(*ask(-1, 0), (EpochEnd{0, 6}));
  EXPECT_EQ(*ask(0, 7), (EpochEnd{0, 6}));
  EXPECT_FALSE(ask(3, 0));  // not the leader's epoch
}

// LogManager::flush: N requests while one sync runs cost one more sync, and all are answered.
TEST(LogManagerFlushTest, ConcurrentRequestsShareSyncs) {
  TempDir tmp;
  storage::LogManagerOptions lo;
  lo.data_dir = tmp.path();
  lo.shards = 2;
  lo.default_config.flush_mode = storage::FlushMode::none;
  lo.default_config.preallocate = storage::Preallocate::none;
  auto logs = storage::LogManager::open(lo);
  ASSERT_TRUE(logs);
  ASSERT_TRUE((*logs)->create_sync(kTp, lo.default_config));
  const uint64_t before = (*logs)->flushes_executed();
  constexpr int kAppends = 100;
  std::atomic<int> answered{0};
  std::promise<void> posted;
  storage::LogManager* lm = logs->get();
  // One handler on the partition's shard appends and asks for a sync 100 times: the first sync
  // runs on the flush pool, the 99 others wait for it and share the next.
  asio::post(lm->shard_context(lm->shard_of(kTp)), [&] {
    for (int i = 0; i < kAppends; ++i) {
      lm->with_log(kTp, [&](Result<storage::PartitionLog*> l) {
        ASSERT_TRUE(l);
        auto b = make_batch(1, "s" + std::to_string(i));
        ASSERT_TRUE((*l)->append(b));
      });
      lm->flush(kTp, [&](Result<void> r) {
        EXPECT_TRUE(r);
        ++answered;
      });
    }
    posted.set_value();
  });
  posted.get_future().wait();
  ASSERT_TRUE(wait_for([&] { return answered.load() == kAppends; }));
  const uint64_t syncs = (*logs)->flushes_executed() - before;
  EXPECT_GE(syncs, 1u);
  EXPECT_LE(syncs, 2u) << "flush requests were not coalesced";
  auto st = (*logs)->status();
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].flushed_offset, st[0].log_end_offset);
  // Already durable: answered at once, no sync.
  std::promise<Result<void>> again;
  (*logs)->flush(kTp, [&](Result<void> r) { again.set_value(r); });
  EXPECT_TRUE(again.get_future().get());
  EXPECT_EQ((*logs)->flushes_executed() - before, syncs);
}

}  // namespace
}  // namespace ordo::cluster
