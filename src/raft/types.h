#pragma once
// The vocabulary of the Raft core: identities, log entries, configurations and the messages
// replicas exchange. Plain values, no behaviour: the core (core.h) consumes and produces them,
// the wire codec (wire.h) encodes them, the simulator routes them.
//
// Numbers are Kafka's: a term IS the record batch's partition leader epoch (int32), positions
// are Kafka offsets (int64). An "end" is exclusive: a log whose last record has offset 9 has
// end 10. Log matching is on (term, offset): two logs that hold a record at offset o with the
// same term hold identical records up to and including o.

#include <compare>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace ordo::raft {

using NodeId = int32_t;   // a broker id
using Term = int32_t;     // == partition leader epoch
using Offset = int64_t;   // a Kafka offset
using GroupId = int64_t;  // one Raft group (one partition, or the controller's metadata log)

constexpr NodeId kNoNode = -1;
constexpr Term kNoTerm = -1;

// A replica's identity in a configuration: its node and the incarnation of its disk (a random
// number chosen when its data directory for this group was created). A node that lost its disk
// comes back with a new incarnation: it is not the voter it was (its old votes are gone with
// the disk), so it cannot vote until a configuration change adds the new incarnation (KIP-853's
// directory id plays the same role). Votes and acknowledgements count only when the sender's
// incarnation is the one in the configuration.
struct Member {
  NodeId id = kNoNode;
  uint64_t incarnation = 0;
  auto operator<=>(const Member&) const = default;
};

struct Config {
  std::vector<Member> voters;    // sorted by id, distinct ids
  std::vector<Member> learners;  // sorted by id, distinct ids, none a voter's id
  bool operator==(const Config&) const = default;

  bool is_voter(const Member& m) const;
  bool is_voter_id(NodeId id) const;
  bool is_learner_id(NodeId id) const;
  const Member* find(NodeId id) const;  // voter or learner
  size_t quorum() const { return voters.size() / 2 + 1; }
  // Well formed: sorted, distinct, no id both voter and learner, at least one voter.
  bool valid() const;
  std::string to_string() const;
};

// Immutable shared bytes of one entry: the record batch as stored. Opaque to the core.
using Payload = std::shared_ptr<const std::vector<uint8_t>>;

enum class EntryKind : uint8_t {
  data = 0,    // records of the application (a record batch)
  noop = 1,    // written by a new leader in its term (commits earlier terms' entries)
  config = 2,  // a configuration; takes effect on every replica when appended, not committed
};

// One entry of the replicated log: one record batch covering offsets [base, last].
struct Entry {
  Term term = kNoTerm;
  Offset base = 0;
  Offset last = 0;  // >= base
  EntryKind kind = EntryKind::data;
  std::optional<Config> config;  // kind == config only
  Payload payload;               // may be null for noop/config entries created by the core

  Offset end() const { return last + 1; }
  size_t size_bytes() const { return payload ? payload->size() : 0; }
};

// ---- messages -------------------------------------------------------------------------------
// Every message carries the sender's term and identity. A message of an older term is answered
// (so the sender learns the newer term) or dropped; one of a newer term makes the receiver a
// follower of that term first (except pre-vote traffic, which never changes terms).

struct VoteRequest {
  Term last_term = kNoTerm;  // term of the candidate's last record (or of log start - 1)
  Offset log_end = 0;
  bool pre_vote = false;  // a poll: the term in the header is the term it would run in
  bool transfer = false;  // sent after TimeoutNow: overrides leader stickiness
};

struct VoteResponse {
  bool granted = false;
  bool pre_vote = false;
};

struct AppendRequest {
  Offset prev_end = 0;       // entries start here; the record at prev_end - 1 ...
  Term prev_term = kNoTerm;  // ... has this term (kNoTerm when prev_end is 0)
  Offset commit = 0;         // the leader's commit (high watermark)
  Offset log_start = 0;      // the leader's log start
  // The follower's log cannot be matched any more (it is behind the leader's log start): it
  // discards its log and restarts empty at prev_end (== the leader's log start).
  bool reset = false;
  // reset only: the configuration in force at the leader's log start (its config entry may be
  // below the log start, gone with retention).
  std::optional<Config> start_config;
  std::vector<Entry> entries;  // contiguous, entries[0].base == prev_end
};

struct AppendResponse {
  bool success = false;
  // Success: the follower's log matches the leader's up to match_end and is durable to there.
  Offset match_end = 0;
  // Failure: the follower's log end and, for the leader to find the divergence point from its
  // leader-epoch cache, the term of the follower's record at min(prev_end, log_end) - 1 and
  // where that term's records start in the follower's log. The leader resumes at the end of
  // that term in its own log if it has the term, else at hint_start: each answer moves the
  // leader strictly back, one term at a time.
  Offset log_end = 0;
  Term hint_term = kNoTerm;
  Offset hint_start = 0;
};

struct Heartbeat {
  Offset commit = 0;  // min(leader's commit, what the leader knows the follower matches)
};

struct HeartbeatResponse {
  Offset match_end = 0;  // unused by the core today; kept for the wire's symmetry
};

struct TimeoutNow {};

using Body = std::variant<VoteRequest, VoteResponse, AppendRequest, AppendResponse, Heartbeat,
                          HeartbeatResponse, TimeoutNow>;

struct Message {
  GroupId group = 0;
  Term term = 0;
  Member from;
  NodeId to = kNoNode;
  Body body;
};

const char* body_name(const Body& body);

}  // namespace ordo::raft
