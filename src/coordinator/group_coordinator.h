#pragma once
// GroupCoordinator: the classic Kafka consumer-group membership state machine (JoinGroup 0-9,
// SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups) as a pure library.
//
// No sockets, no threads, no storage, no clock of its own: the caller decodes requests into the
// plain structs below, calls one operation at a time from one thread, and calls tick() when time
// passes (the Clock is read on every operation). Answers that must wait for other members
// (JoinGroup until the rebalance completes, SyncGroup until the leader sends the assignments)
// are delivered through callbacks.
//
// Callback contract: every callback passed to join() or sync() is called exactly once, with a
// result or with an error (UNKNOWN_MEMBER_ID when the member is removed, FENCED_INSTANCE_ID when
// a static member is replaced, REBALANCE_IN_PROGRESS when a rebalance restarts under a waiting
// sync, NOT_COORDINATOR on unload()). Callbacks never run in the middle of a state change: they
// are queued and run just before the public operation returns, so a callback may call back into
// the coordinator.
//
// Group states (Kafka's names):
//
//   Empty --join--> PreparingRebalance --all rejoined / timeout--> CompletingRebalance
//     ^                 ^          |                                      |
//     |                 |          +--(no member left)--> Empty           | leader syncs
//     |                 +--- join / leave / session expiry ---------------+--> Stable
//   Dead: delete_group() or unload(); a dead group is forgotten at once.
//
// Sizes: the coordinator bounds members per group (group_max_size, pending members included) and
// protocols per member. It does not bound the bytes of protocol metadata or assignments: the
// caller already bounds them by the request frame size (the broker's max request size).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/random.h"
#include "coordinator/group_records.h"
#include "protocol/errors.h"

namespace ordo::coordinator {

using protocol::ErrorCode;
using Bytes = std::vector<uint8_t>;

enum class GroupState { empty, preparing_rebalance, completing_rebalance, stable, dead };

// "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead" (the wire names).
const char* group_state_name(GroupState state);

struct GroupConfig {
  int32_t min_session_timeout_ms = 6'000;      // group.min.session.timeout.ms
  int32_t max_session_timeout_ms = 1'800'000;  // group.max.session.timeout.ms
  int32_t initial_rebalance_delay_ms = 3'000;  // group.initial.rebalance.delay.ms
  int32_t group_max_size = 1'000;              // group.max.size (Kafka: unbounded)
  int32_t protocols_per_member_max = 64;       // more gets INCONSISTENT_GROUP_PROTOCOL
};

struct Protocol {
  std::string name;
  Bytes metadata;
};

struct JoinRequest {
  int16_t api_version = 9;  // v4+: an empty member id gets MEMBER_ID_REQUIRED; v9+: skip_assignment
  std::string group_id;
  std::string member_id;                         // empty on the first join
  std::optional<std::string> group_instance_id;  // static membership (v5+)
  std::string client_id;
  std::string client_host;
  int32_t session_timeout_ms = 10'000;
  // -1 (v0): the session timeout. Capped at max_session_timeout_ms (Kafka does not cap it; a
  // bound keeps a join from waiting longer than the broker's own limit).
  int32_t rebalance_timeout_ms = -1;
  std::string protocol_type;
  std::vector<Protocol> protocols;  // in the member's order of preference
};

struct JoinMember {
  std::string member_id;
  std::optional<std::string> group_instance_id;
  Bytes metadata;  // for the selected protocol
};

struct JoinResponse {
  ErrorCode error = ErrorCode::none;
  int32_t generation_id = -1;
  std::string protocol_type;
  std::optional<std::string> protocol_name;
  std::string leader_id;
  std::string member_id;  // also set with MEMBER_ID_REQUIRED: the id to rejoin with
  bool skip_assignment = false;
  std::vector<JoinMember> members;  // the leader's response only
};

struct SyncRequest {
  std::string group_id;
  int32_t generation_id = -1;
  std::string member_id;
  std::optional<std::string> group_instance_id;
  std::optional<std::string> protocol_type;  // v5+: checked when present
  std::optional<std::string> protocol_name;
  std::vector<std::pair<std::string, Bytes>> assignments;  // leader only: member id -> bytes
};

struct SyncResponse {
  ErrorCode error = ErrorCode::none;
  std::optional<std::string> protocol_type;
  std::optional<std::string> protocol_name;
  Bytes assignment;
};

struct HeartbeatRequest {
  std::string group_id;
  int32_t generation_id = -1;
  std::string member_id;
  std::optional<std::string> group_instance_id;
};

struct MemberIdentity {
  std::string member_id;  // may be empty when group_instance_id is set
  std::optional<std::string> group_instance_id;
};

// LeaveGroup v3+ (a list of members). For v0-2 the caller passes its one member id and answers
// with the first member's error as the top-level error.
struct LeaveRequest {
  std::string group_id;
  std::vector<MemberIdentity> members;
};

struct LeaveResponse {
  ErrorCode error = ErrorCode::none;
  std::vector<ErrorCode> member_errors;  // one per LeaveRequest::members, same order
};

struct MemberDescription {
  std::string member_id;
  std::optional<std::string> group_instance_id;
  std::string client_id;
  std::string client_host;
  Bytes metadata;    // for the selected protocol (empty while none is selected)
  Bytes assignment;  // empty unless Stable
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = 0;
  bool awaiting_join = false;
  bool awaiting_sync = false;
};

struct GroupDescription {
  ErrorCode error = ErrorCode::none;
  std::string group_id;
  GroupState state = GroupState::dead;  // an unknown group is described as Dead (as Kafka)
  std::string protocol_type;
  std::string protocol_name;  // empty unless CompletingRebalance or Stable
  int32_t generation_id = 0;
  std::string leader_id;
  std::vector<MemberDescription> members;
  int64_t rebalances_completed = 0;
};

struct GroupListing {
  std::string group_id;
  std::string protocol_type;
  GroupState state = GroupState::empty;
};

using JoinCallback = std::function<void(JoinResponse)>;
using SyncCallback = std::function<void(SyncResponse)>;

class GroupCoordinator {
 public:
  // `seed` makes generated member ids reproducible in tests.
  GroupCoordinator(GroupConfig config, const Clock& clock, uint64_t seed);
  ~GroupCoordinator();
  GroupCoordinator(const GroupCoordinator&) = delete;
  GroupCoordinator& operator=(const GroupCoordinator&) = delete;

  void join(JoinRequest request, JoinCallback done);
  void sync(SyncRequest request, SyncCallback done);
  ErrorCode heartbeat(const HeartbeatRequest& request);
  LeaveResponse leave(const LeaveRequest& request);

  // Fires every deadline that is due: session expiry, pending (MEMBER_ID_REQUIRED) members that
  // did not come back, the initial rebalance delay and the rebalance timeout.
  void tick();

  GroupDescription describe(const std::string& group_id) const;
  // states_filter: empty means all states.
  std::vector<GroupListing> list(const std::vector<GroupState>& states_filter = {}) const;

  // DeleteGroups: only an Empty group can go (NON_EMPTY_GROUP otherwise, GROUP_ID_NOT_FOUND
  // when unknown).
  ErrorCode delete_group(const std::string& group_id);

  // The coordinator stops owning every group (partition moved, shutdown): each waiting callback
  // gets NOT_COORDINATOR and all state is dropped.
  void unload();

  size_t group_count() const;

  // Called (like the other callbacks, at the end of the public operation) whenever a group
  // changes state: Stable after the leader's SyncGroup, Empty when the last member left,
  // Dead after delete_group(); and, with the state unchanged (Stable), when a restarted static
  // member replaces its old member id. Not called by unload(). The broker persists group metadata
  // from it.
  using StateObserver =
      std::function<void(const std::string& group_id, GroupState state, int32_t generation)>;
  void set_state_observer(StateObserver observer);

  // Recreates a group loaded from __consumer_offsets (its latest metadata record). A record of
  // a Stable group (protocol, leader and members with their subscriptions, assignments and
  // timeouts) comes back Stable with those members, whose sessions start now: after a broker
  // restart they keep heartbeating and committing with their generation, without a rebalance.
  // Any other record (Empty, or members that do not make a consistent group) comes back Empty
  // with its protocol type and generation, so that the numbering continues. No-op if the group
  // exists.
  void restore(const std::string& group_id, const GroupMetadataValue& metadata);

  // The group's state; Dead when unknown.
  GroupState state(const std::string& group_id) const;

  // OffsetCommit's membership rules (as Kafka's): a group unknown here takes commits with a
  // negative generation only (ILLEGAL_GENERATION otherwise); an Empty group takes them with a
  // negative generation; otherwise the member must be known (UNKNOWN_MEMBER_ID), not fenced, and
  // commit for the current generation (ILLEGAL_GENERATION), and not while the group waits for
  // its leader's assignment (REBALANCE_IN_PROGRESS). Commits during PreparingRebalance are
  // allowed (eager clients commit while revoking). An accepted commit refreshes the session.
  ErrorCode check_commit(const std::string& group_id, int32_t generation_id,
                         const std::string& member_id,
                         const std::optional<std::string>& group_instance_id);

 private:
  struct Member;
  struct Group;

  Group* find(const std::string& group_id);
  const Group* find(const std::string& group_id) const;
  std::string new_member_id(const std::string& prefix);

  void join_unknown_member(Group& g, JoinRequest& req, JoinCallback& done);
  void join_known_member(Group& g, JoinRequest& req, JoinCallback& done);
  // old_id by value: the caller's string lives in g.statics, which this rewrites.
  void replace_static_member(Group& g, JoinRequest& req, JoinCallback& done, std::string old_id);
  void add_member_and_rebalance(Group& g, JoinRequest& req, JoinCallback& done,
                                const std::string& member_id);
  void update_member_and_rebalance(Group& g, Member& m, JoinRequest& req, JoinCallback& done);
  void maybe_prepare_rebalance(Group& g);
  void prepare_rebalance(Group& g);
  void try_complete_join(Group& g);
  void complete_join(Group& g);
  // Answers whatever join or sync the member still waits for with error.
  void fail_waiting(Member& m, const std::string& member_id, ErrorCode error);
  void remove_member(Group& g, const std::string& member_id, ErrorCode reason);
  void on_member_left(Group& g);
  void expire_group(Group& g, int64_t now_ms);
  JoinResponse join_result(const Group& g, const Member& m, bool with_members) const;
  std::optional<std::string> select_protocol(const Group& g) const;
  bool supports_protocols(const Group& g, const JoinRequest& req) const;
  void respond(JoinCallback& done, JoinResponse r);
  void respond(SyncCallback& done, SyncResponse r);
  void drain();
  void set_state(Group& g, GroupState state);
  // Queues the state observer's call with the group's current state.
  void notify_state(Group& g);

  GroupConfig config_;
  const Clock& clock_;
  Random random_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
  std::vector<std::function<void()>> outbox_;  // callbacks to run when the operation ends
  bool draining_ = false;
  StateObserver state_observer_;
};

}  // namespace ordo::coordinator
