// The Replica driver: it carries out each Ready in order (state before messages, log writes
// before the sync that reports them), stops on a storage error, and supports write caching.

#include "raft/replica.h"

#include <deque>
#include <string>

#include <gtest/gtest.h>

namespace ordo::raft {
namespace {

// Storage that records every call in one journal shared with the transport, so the test sees
// the order in which the driver did things. Syncs complete when the test says so.
struct Journal {
  std::vector<std::string> events;
};

class FakeStorage : public Storage {
 public:
  explicit FakeStorage(Journal* j) : journal_(j) {}
  std::vector<Entry> log;
  std::deque<std::function<void(Result<void>)>> syncs;
  HardState state;
  bool fail_state = false;
  std::optional<Errc> leader_append_error;

  Result<std::vector<Entry>> read(Offset from, size_t) override {
    std::vector<Entry> out;
    for (const auto& e : log) {
      if (e.end() > from) out.push_back(e);
    }
    return out;
  }
  Result<void> save_state(const HardState& s) override {
    if (fail_state) return make_error(Errc::io, "disk full");
    journal_->events.push_back("state t" + std::to_string(s.term) + " v" +
                               std::to_string(s.voted_for.id));
    state = s;
    return ok();
  }
  Result<void> reset(Offset start, Term) override {
    journal_->events.push_back("reset " + std::to_string(start));
    log.clear();
    return ok();
  }
  Result<void> truncate(Offset end) override {
    journal_->events.push_back("truncate " + std::to_string(end));
    while (!log.empty() && log.back().base >= end) log.pop_back();
    return ok();
  }
  Result<void> append(std::span<const Entry> entries) override {
    for (const auto& e : entries) {
      journal_->events.push_back("append " + std::to_string(e.base));
      log.push_back(e);
    }
    return ok();
  }
  Result<Entry> append_leader(Term term, Payload payload, int32_t records) override {
    if (leader_append_error) return make_error(*leader_append_error, "refused");
    Entry e;
    e.term = term;
    e.base = log.empty() ? 0 : log.back().end();
    e.last = e.base + records - 1;
    e.payload = std::move(payload);
    journal_->events.push_back("append_leader " + std::to_string(e.base));
    log.push_back(e);
    return e;
  }
  void sync(std::function<void(Result<void>)> done) override {
    journal_->events.push_back("sync");
    syncs.push_back(std::move(done));
  }
  void complete_syncs() {
    while (!syncs.empty()) {
      auto f = std::move(syncs.front());
      syncs.pop_front();
      f(ok());
    }
  }

 private:
  Journal* journal_;
};

class FakeTransport : public Transport {
 public:
  explicit FakeTransport(Journal* j) : journal_(j) {}
  std::vector<Message> sent;
  void send(Message m) override {
    journal_->events.push_back(std::string("send ") + body_name(m.body) + " to " +
                               std::to_string(m.to));
    sent.push_back(std::move(m));
  }

 private:
  Journal* journal_;
};

Restored three_voters() {
  Restored r;
  Config c;
  for (NodeId id : {1, 2, 3}) c.voters.push_back(Member{id, 1});
  r.state.configs = {ConfigAt{-1, c}};
  return r;
}

Options options_for(NodeId id) {
  Options o;
  o.self = Member{id, 1};
  o.pre_vote = false;
  return o;
}

size_t index_of(const Journal& j, const std::string& prefix) {
  for (size_t i = 0; i < j.events.size(); ++i) {
    if (j.events[i].rfind(prefix, 0) == 0) return i;
  }
  return SIZE_MAX;
}

TEST(RaftReplica, TheVoteIsDurableBeforeTheAnswerLeaves) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Replica r(options_for(2), three_voters(), &storage, &transport);
  Message m;
  m.term = 1;
  m.from = Member{1, 1};
  m.to = 2;
  m.body = VoteRequest{.last_term = kNoTerm, .log_end = 0};
  r.receive(m);
  const size_t state = index_of(j, "state t1 v1");
  const size_t answer = index_of(j, "send VoteResponse");
  ASSERT_NE(state, SIZE_MAX);
  ASSERT_NE(answer, SIZE_MAX);
  EXPECT_LT(state, answer);
  EXPECT_TRUE(std::get<VoteResponse>(transport.sent.back().body).granted);
}

TEST(RaftReplica, AFollowerAcknowledgesAfterTheSyncCompletes) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Replica r(options_for(2), three_voters(), &storage, &transport);
  Message m;
  m.term = 1;
  m.from = Member{1, 1};
  m.to = 2;
  AppendRequest a;
  a.prev_end = 0;
  a.prev_term = kNoTerm;
  Entry e;
  e.term = 1;
  e.base = 0;
  e.last = 0;
  e.kind = EntryKind::noop;
  a.entries.push_back(e);
  m.body = a;
  r.receive(m);
  // Written, sync requested, and an answer sent: but the answer does not claim the entry.
  ASSERT_NE(index_of(j, "append 0"), SIZE_MAX);
  ASSERT_NE(index_of(j, "sync"), SIZE_MAX);
  for (const auto& s : transport.sent) {
    if (auto* resp = std::get_if<AppendResponse>(&s.body)) {
      EXPECT_EQ(resp->match_end, 0);
    }
  }
  transport.sent.clear();
  storage.complete_syncs();
  ASSERT_FALSE(transport.sent.empty());
  const auto& resp = std::get<AppendResponse>(transport.sent.back().body);
  EXPECT_TRUE(resp.success);
  EXPECT_EQ(resp.match_end, 1);
}

TEST(RaftReplica, WriteCachingAcknowledgesBeforeTheSync) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Replica r(options_for(2), three_voters(), &storage, &transport,
            ReplicaOptions{.write_caching = true});
  Message m;
  m.term = 1;
  m.from = Member{1, 1};
  m.to = 2;
  AppendRequest a;
  Entry e;
  e.term = 1;
  e.kind = EntryKind::noop;
  a.entries.push_back(e);
  m.body = a;
  r.receive(m);
  ASSERT_FALSE(storage.syncs.empty()) << "the sync still follows";
  bool acked = false;
  for (const auto& s : transport.sent) {
    if (auto* resp = std::get_if<AppendResponse>(&s.body)) {
      acked |= resp->match_end == 1;
    }
  }
  EXPECT_TRUE(acked);
}

TEST(RaftReplica, ASingleVoterLeaderCommitsAfterItsOwnSync) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Restored rs;
  rs.state.configs = {ConfigAt{-1, Config{{Member{1, 1}}, {}}}};
  Replica r(options_for(1), rs, &storage, &transport);
  std::vector<Offset> commits;
  r.on_commit = [&](Offset c) { commits.push_back(c); };
  r.campaign();
  storage.complete_syncs();
  ASSERT_TRUE(r.core().is_leader());
  auto e = r.append(std::make_shared<std::vector<uint8_t>>(3, uint8_t(7)), 3);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->base, 1);
  EXPECT_EQ(e->last, 3);
  EXPECT_EQ(r.core().commit(), 1);
  storage.complete_syncs();
  EXPECT_EQ(r.core().commit(), 4);
  EXPECT_EQ(commits.back(), 4);
}

TEST(RaftReplica, AStorageErrorStopsTheReplica) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Replica r(options_for(2), three_voters(), &storage, &transport);
  storage.fail_state = true;
  Message m;
  m.term = 1;
  m.from = Member{1, 1};
  m.to = 2;
  m.body = VoteRequest{.last_term = kNoTerm, .log_end = 0};
  r.receive(m);
  EXPECT_TRUE(r.failed());
  EXPECT_TRUE(transport.sent.empty()) << "nothing leaves once the state could not be saved";
  r.tick();
  EXPECT_TRUE(transport.sent.empty());
  EXPECT_FALSE(r.append(nullptr, 1).has_value());
}

TEST(RaftReplica, ABatchTheLogRefusesIsAnsweredWithoutStoppingTheReplica) {
  Journal j;
  FakeStorage storage(&j);
  FakeTransport transport(&j);
  Restored rs;
  rs.state.configs = {ConfigAt{-1, Config{{Member{1, 1}}, {}}}};
  Replica r(options_for(1), rs, &storage, &transport);
  r.campaign();
  storage.complete_syncs();
  ASSERT_TRUE(r.core().is_leader());
  storage.leader_append_error = Errc::out_of_order_sequence;
  auto refused = r.append(std::make_shared<std::vector<uint8_t>>(1, uint8_t(1)), 1);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, Errc::out_of_order_sequence);
  EXPECT_FALSE(r.failed());
  storage.leader_append_error = Errc::io;
  EXPECT_FALSE(r.append(std::make_shared<std::vector<uint8_t>>(1, uint8_t(1)), 1).has_value());
  EXPECT_TRUE(r.failed()) << "an I/O error stops it";
}

}  // namespace
}  // namespace ordo::raft
