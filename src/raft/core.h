#pragma once
// raft::Core: the consensus state machine of one replica of one Raft group. Pure: no threads,
// sockets, clocks or files. It takes inputs (tick, step(message), append, on_persisted, ...)
// and accumulates outputs in a Ready that the caller takes and carries out IN ORDER:
//
//   1. state      persist durably (term, vote, configurations) before anything below;
//   2. log        reset / truncate / append the entries (offsets already assigned), then, once
//                 they and every earlier write are durable, call on_persisted(write_seq);
//   3. messages   send them (after 1; they never depend on 2: acknowledgements of entries are
//                 produced only by on_persisted).
//
// A caller must carry out a Ready before giving the core its next input (the core's idea of
// the log end already includes the entries of a Ready it has not seen written).
//
// The log itself (record bytes) lives outside: the core keeps only its shape (log start, log
// end, the leader-epoch cache: where each term's records start) and reads entries to send to
// followers through a LogReader. Follower appends arrive as entries with payloads and leave in
// Ready::entries; the caller writes exactly those bytes, so replicas hold identical bytes.
//
// Rules (docs/replication.md): elections with pre-vote, check-quorum and leader stickiness;
// randomised election timeouts from a seeded generator (deterministic for a seed); log matching
// on (term, offset) with KIP-101 divergence from the leader-epoch cache; commit only of an
// entry of the leader's own term counted on a majority of voters' DURABLE logs (Figure 8); a
// no-op entry at the start of each term; single-voter configuration changes that take effect
// when appended; learners; leadership transfer with TimeoutNow; a preferred leader; a
// follower behind the leader's log start restarts from it; a member whose incarnation is not
// the configuration's (a lost disk) never votes and is never counted.
//
// Assertions (ORDO_ASSERT, on in production) check the invariants after every input.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/random.h"
#include "base/result.h"
#include "raft/types.h"

namespace ordo::raft {

struct Options {
  GroupId group = 0;
  Member self;
  int election_ticks = 10;  // a follower campaigns after [election_ticks, 2*election_ticks)
  int heartbeat_ticks = 2;  // a leader's heartbeat period
  size_t max_append_bytes = 1 << 20;  // per AppendRequest (at least one entry is sent)
  int max_inflight = 8;               // AppendRequests in flight per follower while replicating
  bool pre_vote = true;
  // A leader without a majority for an election timeout steps down, and a replica that hears
  // from a leader refuses (pre-)votes meanwhile (leader stickiness): the two go together.
  bool check_quorum = true;
  std::optional<NodeId> preferred_leader;  // a leader hands over to it once it has caught up
  uint64_t seed = 1;                       // the generator of election timeouts
};

// Where each term's records start (the leader-epoch cache). Sorted by start, strictly
// increasing terms. The first element may start before the log start: it then gives the term
// of the record at log_start - 1.
struct EpochStart {
  Term term = kNoTerm;
  Offset start = 0;
  bool operator==(const EpochStart&) const = default;
};

struct ConfigAt {
  Offset offset = -1;  // the config entry's offset; -1: the group's initial configuration
  Config config;
  bool operator==(const ConfigAt&) const = default;
};

// What must be durable across restarts besides the log.
struct HardState {
  Term term = 0;
  Member voted_for;  // id kNoNode: no vote in `term`
  // Configurations from the newest one at or below the commit point on: the config of the
  // group is the last one. Written before the config entry itself reaches the log.
  std::vector<ConfigAt> configs;
  // The last reset of the log (a follower restarted empty at the leader's log start): the
  // state is saved before the reset reaches the disk, so a log recovered with its start below
  // reset_start missed it, and the core resets it again at start (reset_term: the term of the
  // record before). -1: never reset.
  Offset reset_start = -1;
  Term reset_term = kNoTerm;
  bool operator==(const HardState&) const = default;
};

// The replica's durable state as recovered at start.
struct Restored {
  HardState state;  // a fresh replica: term 0, no vote, configs = {initial config at -1}
  Offset log_start = 0;
  Offset log_end = 0;  // every record below is durable (recovery synced it)
  std::vector<EpochStart> epochs;
};

class LogReader {
 public:
  virtual ~LogReader() = default;
  // Entries of the local log from the one that contains offset `from` on, contiguous, at most
  // `max_bytes` of payload but at least one entry when from < log end. An error (I/O,
  // corruption) makes the core retry later.
  virtual Result<std::vector<Entry>> read(Offset from, size_t max_bytes) = 0;
};

enum class Role : uint8_t { follower, pre_candidate, candidate, leader };
const char* role_name(Role role);

struct Ready {
  std::optional<HardState> state;
  // The follower's log is discarded and restarts empty at *reset_to; the record before it
  // has term reset_term. Applied before truncate_to and entries.
  std::optional<Offset> reset_to;
  Term reset_term = kNoTerm;
  std::optional<Offset> truncate_to;  // remove records at offsets >= this
  std::vector<Entry> entries;         // append, in order, after the above
  // Non-zero: once every write so far (these and the leader's own appends) is durable, call
  // on_persisted(write_seq).
  uint64_t write_seq = 0;
  std::vector<Message> messages;
  bool empty() const {
    return !state && !reset_to && !truncate_to && entries.empty() && write_seq == 0 &&
           messages.empty();
  }
};

struct FollowerProgress {
  Member member;
  bool voter = false;
  Offset match_end = 0;      // durable and matching on the follower
  Offset next = 0;           // the next offset to send
  bool replicating = false;  // false: probing (one request at a time)
  int inflight = 0;
  bool active = false;  // heard from since the last check-quorum round
};

struct Status {
  GroupId group = 0;
  Member self;
  Role role = Role::follower;
  Term term = 0;
  NodeId leader = kNoNode;
  Member voted_for;
  Offset log_start = 0;
  Offset log_end = 0;
  Offset durable_end = 0;
  Offset commit = 0;
  Config config;
  std::vector<FollowerProgress> progress;  // leader only
  std::optional<NodeId> transferring_to;
};

class Core {
 public:
  Core(Options options, Restored restored, LogReader* reader);
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // ---- inputs ----
  void tick();
  // A message addressed to this replica (to == self.id, group == options.group). Messages
  // for another group, or malformed ones (entries not contiguous...), are dropped and counted.
  void step(const Message& message);
  // Leader: the caller has written `entries` at the log end with term() (offsets assigned by
  // its log). Refused (not_found: not leader; busy: transferring leadership) when it may not;
  // then the caller must not have written them: check can_append() first, on the same thread.
  Result<void> append(std::span<const Entry> entries);
  bool can_append() const;
  void on_persisted(uint64_t write_seq);
  // The log start moved (retention, DeleteRecords); asserted <= commit.
  void on_log_start(Offset log_start);
  // Leader: change the configuration by one voter or learner at a time. A learner becomes a
  // voter only once it has caught up to the commit point. Refused while a configuration change
  // is uncommitted.
  Result<void> propose_config(const Config& config);
  // Leader: hand leadership to `target` (a voter) once it has caught up (TimeoutNow); appends
  // are refused meanwhile; abandoned after an election timeout.
  Result<void> transfer_leadership(NodeId target);
  // Start an election now (tests, and a group's bootstrap on its first node).
  void campaign();

  // ---- outputs ----
  bool has_ready() const { return !ready_.empty(); }
  Ready take_ready();

  // ---- queries ----
  Role role() const { return role_; }
  Term term() const { return state_.term; }
  NodeId leader() const { return leader_; }
  bool is_leader() const { return role_ == Role::leader; }
  Offset commit() const { return commit_; }
  // The high watermark a leader may show readers: none until an entry of its own term has
  // committed (before that its commit may be behind the previous leader's).
  std::optional<Offset> high_watermark() const;
  Offset log_start() const { return log_start_; }
  Offset log_end() const { return log_end_; }
  Offset durable_end() const { return durable_end_; }
  const Config& config() const { return state_.configs.back().config; }
  const HardState& hard_state() const { return state_; }
  const std::vector<EpochStart>& epochs() const { return epochs_; }
  // The term of the record at `offset`, for log_start - 1 <= offset < log_end; kNoTerm for
  // offset -1 or when unknown.
  Term term_at(Offset offset) const;
  Status status() const;
  uint64_t dropped_messages() const { return dropped_; }
  // Followers that answered with less than they had acknowledged (a disk that lost data).
  uint64_t lost_acks() const { return lost_acks_; }

  // Checks every invariant (asserts); run after each input, public for tests.
  void check_invariants() const;

 private:
  struct Progress {
    Member member;                  // as in the configuration
    bool incarnation_ok = false;    // the last answer came from that incarnation
    uint64_t seen_incarnation = 0;  // the incarnation match_end was acknowledged by
    Offset match_end = 0;
    Offset next = 0;
    bool replicating = false;
    int inflight = 0;
    bool active = false;
    int probe_wait = 0;            // ticks until a probe may be resent
    Offset last_round_match = -1;  // match_end at the previous heartbeat round
    int stalled_rounds = 0;        // heartbeat rounds without progress while behind
  };
  struct PendingWrite {
    uint64_t seq;
    Offset end;
  };

  // transitions
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate(bool transfer);
  void become_leader();
  void reset_election_timer();
  void set_term(Term term);

  // handlers
  void on_vote_request(const Message& m, const VoteRequest& r);
  void on_vote_response(const Message& m, const VoteResponse& r);
  void on_append(const Message& m, const AppendRequest& r);
  void on_append_response(const Message& m, const AppendResponse& r);
  void on_heartbeat(const Message& m, const Heartbeat& r);
  void on_heartbeat_response(const Message& m);
  void on_timeout_now(const Message& m);

  // leader
  void broadcast_heartbeat();
  void send_append(Progress& p);
  void maybe_commit();
  void maybe_send_appends();
  void check_transfer();
  void append_local(Entry entry);  // leader-created entries (noop, config)
  void log_append(const Entry& entry, bool to_ready);
  void note_write();
  Result<std::vector<Entry>> read_entries(Offset from, size_t max_bytes);
  void trim_configs();
  Progress* progress_of(NodeId id);
  void note_incarnation(Progress& p, const Member& from);
  void rebuild_progress();

  // log shape
  void truncate_log(Offset to);
  void reset_log(Offset start, Term term_before);
  void append_epoch(Term term, Offset start);
  // Where `term`'s records end / start in this log; nullopt when the log has no such term.
  std::optional<Offset> end_of_term(Term term) const;
  std::optional<Offset> start_of_term(Term term) const;
  bool log_up_to_date(Term last_term, Offset log_end) const;
  Term last_term() const { return term_at(log_end_ - 1); }
  void send(NodeId to, Body body);
  void send_ack(bool force);
  void set_commit(Offset commit);
  void persist_state() { ready_.state = state_; }
  bool self_is_voter() const;
  bool pending_config_change() const;

  Options options_;
  LogReader* reader_;
  Random random_;
  HardState state_;
  Role role_ = Role::follower;
  NodeId leader_ = kNoNode;
  Offset log_start_ = 0;
  Offset log_end_ = 0;
  Offset durable_end_ = 0;
  Offset storage_end_ = 0;  // the log end as written by Readys already taken
  Offset commit_ = 0;
  Offset term_start_ = -1;  // leader: offset of its no-op entry
  std::vector<EpochStart> epochs_;
  std::vector<Progress> progress_;
  std::vector<PendingWrite> pending_writes_;
  uint64_t next_write_seq_ = 1;
  // follower: the end of the prefix verified to match the current leader's log in this term
  Offset verified_end_ = 0;
  Offset acked_end_ = -1;
  int election_elapsed_ = 0;
  int election_timeout_ = 0;
  int heartbeat_elapsed_ = 0;
  int ticks_since_leader_contact_ = 0;  // stickiness
  std::vector<Member> votes_;           // granted votes in the current (pre-)election
  std::optional<NodeId> transfer_to_;
  int transfer_elapsed_ = 0;
  uint64_t dropped_ = 0;
  uint64_t lost_acks_ = 0;
  Ready ready_;
};

}  // namespace ordo::raft
