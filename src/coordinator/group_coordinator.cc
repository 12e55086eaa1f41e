#include "coordinator/group_coordinator.h"

#include <algorithm>

#include <fmt/core.h>

#include "base/assert.h"

namespace ordo::coordinator {

const char* group_state_name(GroupState state) {
  switch (state) {
    case GroupState::empty:
      return "Empty";
    case GroupState::preparing_rebalance:
      return "PreparingRebalance";
    case GroupState::completing_rebalance:
      return "CompletingRebalance";
    case GroupState::stable:
      return "Stable";
    case GroupState::dead:
      return "Dead";
  }
  return "Unknown";
}

struct GroupCoordinator::Member {
  std::string id;
  std::optional<std::string> instance_id;
  std::string client_id;
  std::string client_host;
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = 0;
  std::vector<Protocol> protocols;
  Bytes assignment;
  JoinCallback join_cb;  // set while the member waits for the rebalance to complete
  SyncCallback sync_cb;  // set while the member waits for the leader's assignments
  int64_t session_deadline_ms = 0;

  const Bytes* metadata_for(const std::string& name) const {
    for (const auto& p : protocols) {
      if (p.name == name) return &p.metadata;
    }
    return nullptr;
  }
  bool same_protocols(const std::vector<Protocol>& other) const {
    if (other.size() != protocols.size()) return false;
    for (size_t i = 0; i < other.size(); ++i) {
      if (other[i].name != protocols[i].name || other[i].metadata != protocols[i].metadata) {
        return false;
      }
    }
    return true;
  }
  // A member that waits on the coordinator is not expected to heartbeat; the rebalance timeout
  // (join) or the leader's own session (sync) bounds the wait instead.
  bool waiting() const { return static_cast<bool>(join_cb) || static_cast<bool>(sync_cb); }
};

struct GroupCoordinator::Group {
  std::string id;
  GroupState state = GroupState::empty;
  int32_t generation = 0;
  std::string protocol_type;
  std::optional<std::string> protocol_name;
  std::string leader_id;  // empty only when there is no member
  std::map<std::string, Member> members;
  std::map<std::string, int64_t> pending;      // MEMBER_ID_REQUIRED ids -> deadline (ms)
  std::map<std::string, std::string> statics;  // group instance id -> member id
  // PreparingRebalance: when the join phase ends (rebalance timeout or initial delay).
  int64_t join_deadline_ms = 0;
  bool initial_delay = false;  // the join phase is group.initial.rebalance.delay.ms-driven
  int64_t initial_remaining_ms = 0;
  bool new_member_added = false;
  int64_t rebalances_completed = 0;

  bool all_joined() const {
    if (!pending.empty()) return false;
    return std::all_of(members.begin(), members.end(),
                       [](const auto& kv) { return static_cast<bool>(kv.second.join_cb); });
  }
  int32_t rebalance_timeout_ms() const {
    int32_t t = 0;
    for (const auto& [id, m] : members) t = std::max(t, m.rebalance_timeout_ms);
    return t;
  }
  // Fenced: the instance id is known and bound to another member id.
  bool fenced(const std::optional<std::string>& instance_id, const std::string& member_id) const {
    if (!instance_id) return false;
    auto it = statics.find(*instance_id);
    return it != statics.end() && it->second != member_id;
  }
  void check_invariants() const {
    ORDO_ASSERT(members.empty() == leader_id.empty());
    ORDO_ASSERT(leader_id.empty() || members.count(leader_id) == 1);
    ORDO_ASSERT(state != GroupState::empty || members.empty());
    ORDO_ASSERT(state == GroupState::empty || state == GroupState::preparing_rebalance ||
                !members.empty());
    for (const auto& [instance, member_id] : statics) {
      auto it = members.find(member_id);
      ORDO_ASSERT(it != members.end() && it->second.instance_id == instance);
    }
    for (const auto& [id, m] : members) {
      ORDO_ASSERT(!m.join_cb || state == GroupState::preparing_rebalance);
      ORDO_ASSERT(!m.sync_cb || state == GroupState::completing_rebalance);
    }
  }
};

GroupCoordinator::GroupCoordinator(GroupConfig config, const Clock& clock, uint64_t seed)
    : config_(config), clock_(clock), random_(seed) {
  ORDO_ASSERT(config_.min_session_timeout_ms <= config_.max_session_timeout_ms);
  ORDO_ASSERT(config_.group_max_size > 0);
  ORDO_ASSERT(config_.initial_rebalance_delay_ms >= 0);
}

GroupCoordinator::~GroupCoordinator() {
  unload();
}

GroupCoordinator::Group* GroupCoordinator::find(const std::string& group_id) {
  auto it = groups_.find(group_id);
  return it == groups_.end() ? nullptr : it->second.get();
}

const GroupCoordinator::Group* GroupCoordinator::find(const std::string& group_id) const {
  auto it = groups_.find(group_id);
  return it == groups_.end() ? nullptr : it->second.get();
}

std::string GroupCoordinator::new_member_id(const std::string& prefix) {
  // "<prefix>-<uuid v4>", as Kafka's member ids.
  uint64_t hi = random_.next();
  uint64_t lo = random_.next();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;
  lo = (lo & ~(0xC000ULL << 48)) | (0x8000ULL << 48);
  return fmt::format("{}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", prefix, hi >> 32,
                     (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48, lo & 0xFFFFFFFFFFFFULL);
}

void GroupCoordinator::respond(JoinCallback& done, JoinResponse r) {
  ORDO_ASSERT(done);
  outbox_.push_back([cb = std::move(done), r = std::move(r)]() mutable { cb(std::move(r)); });
  done = nullptr;
}

void GroupCoordinator::respond(SyncCallback& done, SyncResponse r) {
  ORDO_ASSERT(done);
  outbox_.push_back([cb = std::move(done), r = std::move(r)]() mutable { cb(std::move(r)); });
  done = nullptr;
}

void GroupCoordinator::set_state(Group& g, GroupState state) {
  if (g.state == state) return;
  g.state = state;
  notify_state(g);
}

void GroupCoordinator::notify_state(Group& g) {
  if (state_observer_) {
    outbox_.push_back([this, id = g.id, state = g.state, generation = g.generation] {
      state_observer_(id, state, generation);
    });
  }
}

void GroupCoordinator::drain() {
  if (draining_) return;  // a callback called back in: the outer loop runs what it queued
  draining_ = true;
  for (size_t i = 0; i < outbox_.size(); ++i) {
    auto f = std::move(outbox_[i]);
    f();
  }
  outbox_.clear();
  draining_ = false;
}

// ---- JoinGroup ----

void GroupCoordinator::join(JoinRequest req, JoinCallback done) {
  ORDO_ASSERT(done);
  auto fail = [&](ErrorCode e) {
    JoinResponse r;
    r.error = e;
    r.member_id = req.member_id;
    respond(done, std::move(r));
  };
  if (req.rebalance_timeout_ms < 0) req.rebalance_timeout_ms = req.session_timeout_ms;
  // Bounded like the session timeout, so that no join waits longer than the broker allows.
  req.rebalance_timeout_ms = std::min(req.rebalance_timeout_ms, config_.max_session_timeout_ms);
  if (req.group_id.empty()) {
    fail(ErrorCode::invalid_group_id);
  } else if (req.session_timeout_ms < config_.min_session_timeout_ms ||
             req.session_timeout_ms > config_.max_session_timeout_ms) {
    fail(ErrorCode::invalid_session_timeout);
  } else if (req.protocol_type.empty() || req.protocols.empty() ||
             req.protocols.size() > size_t(config_.protocols_per_member_max)) {
    fail(ErrorCode::inconsistent_group_protocol);
  } else {
    Group* g = find(req.group_id);
    if (g == nullptr && !req.member_id.empty()) {
      fail(ErrorCode::unknown_member_id);
    } else {
      if (g == nullptr) {
        auto fresh = std::make_unique<Group>();
        fresh->id = req.group_id;
        g = fresh.get();
        groups_.emplace(req.group_id, std::move(fresh));
      }
      if (req.member_id.empty()) {
        join_unknown_member(*g, req, done);
      } else {
        join_known_member(*g, req, done);
      }
      g->check_invariants();
    }
  }
  drain();
}

bool GroupCoordinator::supports_protocols(const Group& g, const JoinRequest& req) const {
  if (g.members.empty()) return true;
  if (req.protocol_type != g.protocol_type) return false;
  // At least one of the member's protocols must be supported by every current member.
  for (const auto& p : req.protocols) {
    bool all = std::all_of(g.members.begin(), g.members.end(), [&](const auto& kv) {
      return kv.second.metadata_for(p.name) != nullptr;
    });
    if (all) return true;
  }
  return false;
}

void GroupCoordinator::join_unknown_member(Group& g, JoinRequest& req, JoinCallback& done) {
  auto fail = [&](ErrorCode e) {
    JoinResponse r;
    r.error = e;
    respond(done, std::move(r));
  };
  if (!supports_protocols(g, req)) return fail(ErrorCode::inconsistent_group_protocol);
  if (req.group_instance_id) {
    auto it = g.statics.find(*req.group_instance_id);
    if (it != g.statics.end()) return replace_static_member(g, req, done, it->second);
  }
  if (g.members.size() + g.pending.size() >= size_t(config_.group_max_size)) {
    return fail(ErrorCode::group_max_size_reached);
  }
  std::string id = new_member_id(req.group_instance_id ? *req.group_instance_id : req.client_id);
  if (!req.group_instance_id && req.api_version >= 4) {
    // KIP-394: the member must come back with this id; until then it only holds a slot.
    g.pending[id] = clock_.now_ms() + req.session_timeout_ms;
    JoinResponse r;
    r.error = ErrorCode::member_id_required;
    r.member_id = id;
    return respond(done, std::move(r));
  }
  add_member_and_rebalance(g, req, done, id);
}

void GroupCoordinator::join_known_member(Group& g, JoinRequest& req, JoinCallback& done) {
  auto fail = [&](ErrorCode e) {
    JoinResponse r;
    r.error = e;
    r.member_id = req.member_id;
    respond(done, std::move(r));
  };
  const std::string& id = req.member_id;
  if (g.pending.count(id) == 1) {
    if (!supports_protocols(g, req)) return fail(ErrorCode::inconsistent_group_protocol);
    g.pending.erase(id);
    return add_member_and_rebalance(g, req, done, id);
  }
  if (g.fenced(req.group_instance_id, id)) return fail(ErrorCode::fenced_instance_id);
  auto it = g.members.find(id);
  if (it == g.members.end()) return fail(ErrorCode::unknown_member_id);
  if (!supports_protocols(g, req)) return fail(ErrorCode::inconsistent_group_protocol);
  Member& m = it->second;
  m.session_deadline_ms = clock_.now_ms() + req.session_timeout_ms;
  switch (g.state) {
    case GroupState::preparing_rebalance:
      return update_member_and_rebalance(g, m, req, done);
    case GroupState::completing_rebalance:
      // A retried join of this generation gets the same answer again.
      if (m.same_protocols(req.protocols)) {
        return respond(done, join_result(g, m, m.id == g.leader_id));
      }
      return update_member_and_rebalance(g, m, req, done);
    case GroupState::stable:
      // The leader rejoining, or a member changing its subscription, starts a rebalance.
      if (m.id == g.leader_id || !m.same_protocols(req.protocols)) {
        return update_member_and_rebalance(g, m, req, done);
      }
      return respond(done, join_result(g, m, false));
    case GroupState::empty:
    case GroupState::dead:
      return fail(ErrorCode::unknown_member_id);
  }
}

void GroupCoordinator::replace_static_member(Group& g, JoinRequest& req, JoinCallback& done,
                                             std::string old_id) {
  auto node = g.members.extract(old_id);
  ORDO_ASSERT(!node.empty());
  Member m = std::move(node.mapped());
  // The old incarnation is fenced: whatever it still waits for fails.
  fail_waiting(m, old_id, ErrorCode::fenced_instance_id);
  std::string new_id = new_member_id(*req.group_instance_id);
  bool leader = g.leader_id == old_id;
  if (leader) g.leader_id = new_id;
  g.statics[*req.group_instance_id] = new_id;
  m.id = new_id;
  m.client_id = req.client_id;
  m.client_host = req.client_host;
  m.session_timeout_ms = req.session_timeout_ms;
  m.rebalance_timeout_ms = req.rebalance_timeout_ms;
  m.session_deadline_ms = clock_.now_ms() + req.session_timeout_ms;
  m.protocols = req.protocols;  // a copy: update_member_and_rebalance may take req's
  Member& placed = g.members.emplace(new_id, std::move(m)).first->second;
  if (g.state == GroupState::stable && select_protocol(g) == g.protocol_name) {
    // KIP-345: a restarted static member keeps its assignment without a rebalance, unless the
    // group's protocol would change. A leader is told so with skip_assignment (v9+, KIP-814:
    // it gets the members to watch their subscriptions but sends no assignment). Older clients
    // cannot be told: as Kafka does, the answer names the old member id as the leader, so the
    // client takes itself for a follower and fetches its assignment with SyncGroup (it then
    // does not watch metadata for new partitions until the next rebalance, KAFKA-13435).
    bool skip = leader && req.api_version >= 9;
    JoinResponse r = join_result(g, placed, skip);
    r.skip_assignment = skip;
    if (leader && !skip) r.leader_id = old_id;
    // The group's record names members by id: rewrite it (as Kafka stores the group here), so
    // that a broker restart restores the new id rather than the fenced one.
    notify_state(g);
    return respond(done, std::move(r));
  }
  update_member_and_rebalance(g, placed, req, done);
}

void GroupCoordinator::add_member_and_rebalance(Group& g, JoinRequest& req, JoinCallback& done,
                                                const std::string& member_id) {
  Member m;
  m.id = member_id;
  m.instance_id = req.group_instance_id;
  m.session_deadline_ms = clock_.now_ms() + req.session_timeout_ms;
  if (g.members.empty()) g.protocol_type = req.protocol_type;
  if (g.leader_id.empty()) g.leader_id = member_id;  // the first joiner leads
  if (m.instance_id) g.statics[*m.instance_id] = member_id;
  Member& added = g.members.emplace(member_id, std::move(m)).first->second;
  if (g.state == GroupState::preparing_rebalance && g.initial_delay) g.new_member_added = true;
  // The rest (client, timeouts, protocols, the waiting join) as for a member that rejoins.
  update_member_and_rebalance(g, added, req, done);
}

void GroupCoordinator::update_member_and_rebalance(Group& g, Member& m, JoinRequest& req,
                                                   JoinCallback& done) {
  if (m.join_cb) {
    // A second join while the first still waits (the client gave up on the first one).
    JoinResponse r;
    r.error = ErrorCode::rebalance_in_progress;
    r.member_id = m.id;
    respond(m.join_cb, std::move(r));
  }
  m.client_id = req.client_id;
  m.client_host = req.client_host;
  m.session_timeout_ms = req.session_timeout_ms;
  m.rebalance_timeout_ms = req.rebalance_timeout_ms;
  m.protocols = std::move(req.protocols);
  m.join_cb = std::move(done);
  done = nullptr;
  maybe_prepare_rebalance(g);
  try_complete_join(g);
}

void GroupCoordinator::maybe_prepare_rebalance(Group& g) {
  if (g.state == GroupState::stable || g.state == GroupState::completing_rebalance ||
      g.state == GroupState::empty) {
    prepare_rebalance(g);
  }
}

void GroupCoordinator::prepare_rebalance(Group& g) {
  if (g.state == GroupState::completing_rebalance) {
    // The assignments of this generation will never come: followers waiting on them rejoin.
    for (auto& [id, m] : g.members) {
      m.assignment.clear();
      if (m.sync_cb) respond(m.sync_cb, SyncResponse{.error = ErrorCode::rebalance_in_progress});
    }
  }
  int64_t now = clock_.now_ms();
  int64_t rebalance_timeout_ms = g.rebalance_timeout_ms();
  if (g.state == GroupState::empty && config_.initial_rebalance_delay_ms > 0) {
    // Wait a little for more members before the first generation, so that a group starting up
    // does not rebalance once per arriving member.
    g.initial_delay = true;
    g.new_member_added = false;
    int64_t delay = std::min<int64_t>(config_.initial_rebalance_delay_ms, rebalance_timeout_ms);
    g.initial_remaining_ms = std::max<int64_t>(rebalance_timeout_ms - delay, 0);
    g.join_deadline_ms = now + delay;
  } else {
    g.initial_delay = false;
    g.join_deadline_ms = now + rebalance_timeout_ms;
  }
  set_state(g, GroupState::preparing_rebalance);
}

void GroupCoordinator::try_complete_join(Group& g) {
  if (g.state != GroupState::preparing_rebalance || g.initial_delay) return;
  if (g.all_joined()) complete_join(g);
}

void GroupCoordinator::complete_join(Group& g) {
  ORDO_ASSERT(g.state == GroupState::preparing_rebalance);
  // Members that did not rejoin in time are out of the new generation.
  std::vector<std::string> gone;
  for (const auto& [id, m] : g.members) {
    if (!m.join_cb) gone.push_back(id);
  }
  for (const auto& id : gone) {
    Member& m = g.members.at(id);
    ORDO_ASSERT(!m.sync_cb);
    if (m.instance_id) g.statics.erase(*m.instance_id);
    g.members.erase(id);
  }
  if (!g.members.empty() && g.members.count(g.leader_id) == 0) {
    g.leader_id = g.members.begin()->first;
  }
  if (g.members.empty()) g.leader_id.clear();
  g.initial_delay = false;
  g.new_member_added = false;
  g.generation += 1;
  g.rebalances_completed += 1;
  if (g.members.empty()) {
    g.protocol_name.reset();
    set_state(g, GroupState::empty);
    return;
  }
  g.protocol_name = select_protocol(g);
  ORDO_ASSERT(g.protocol_name.has_value());
  set_state(g, GroupState::completing_rebalance);
  int64_t now = clock_.now_ms();
  for (auto& [id, m] : g.members) {
    m.session_deadline_ms = now + m.session_timeout_ms;
    respond(m.join_cb, join_result(g, m, id == g.leader_id));
  }
}

std::optional<std::string> GroupCoordinator::select_protocol(const Group& g) const {
  if (g.members.empty()) return std::nullopt;
  // Candidates: protocols every member supports, in the leader's order of preference (which
  // also breaks ties). Each member votes for its most preferred candidate.
  auto leader = g.members.find(g.leader_id);
  const Member& first = leader != g.members.end() ? leader->second : g.members.begin()->second;
  std::vector<std::string> candidates;
  for (const auto& p : first.protocols) {
    bool all = std::all_of(g.members.begin(), g.members.end(), [&](const auto& kv) {
      return kv.second.metadata_for(p.name) != nullptr;
    });
    if (all) candidates.push_back(p.name);
  }
  if (candidates.empty()) return std::nullopt;
  std::vector<int> votes(candidates.size(), 0);
  for (const auto& [id, m] : g.members) {
    for (const auto& p : m.protocols) {
      auto c = std::find(candidates.begin(), candidates.end(), p.name);
      if (c != candidates.end()) {
        votes[size_t(c - candidates.begin())] += 1;
        break;
      }
    }
  }
  size_t best = 0;
  for (size_t i = 1; i < votes.size(); ++i) {
    if (votes[i] > votes[best]) best = i;
  }
  return candidates[best];
}

JoinResponse GroupCoordinator::join_result(const Group& g, const Member& m,
                                           bool with_members) const {
  JoinResponse r;
  r.generation_id = g.generation;
  r.protocol_type = g.protocol_type;
  r.protocol_name = g.protocol_name;
  r.leader_id = g.leader_id;
  r.member_id = m.id;
  if (with_members) {
    for (const auto& [id, other] : g.members) {
      const Bytes* md = g.protocol_name ? other.metadata_for(*g.protocol_name) : nullptr;
      r.members.push_back(JoinMember{id, other.instance_id, md ? *md : Bytes{}});
    }
  }
  return r;
}

// ---- SyncGroup ----

void GroupCoordinator::sync(SyncRequest req, SyncCallback done) {
  ORDO_ASSERT(done);
  auto fail = [&](ErrorCode e) { respond(done, SyncResponse{.error = e}); };
  Group* g = find(req.group_id);
  if (g == nullptr) {
    fail(ErrorCode::unknown_member_id);
  } else if (g->fenced(req.group_instance_id, req.member_id)) {
    fail(ErrorCode::fenced_instance_id);
  } else if (g->members.count(req.member_id) == 0) {
    fail(ErrorCode::unknown_member_id);
  } else if (req.generation_id != g->generation) {
    fail(ErrorCode::illegal_generation);
  } else if ((req.protocol_type && *req.protocol_type != g->protocol_type) ||
             (req.protocol_name && req.protocol_name != g->protocol_name)) {
    fail(ErrorCode::inconsistent_group_protocol);
  } else {
    Member& m = g->members.at(req.member_id);
    switch (g->state) {
      case GroupState::empty:
      case GroupState::dead:
        fail(ErrorCode::unknown_member_id);
        break;
      case GroupState::preparing_rebalance:
        fail(ErrorCode::rebalance_in_progress);
        break;
      case GroupState::completing_rebalance:
        m.session_deadline_ms = clock_.now_ms() + m.session_timeout_ms;
        if (m.sync_cb) {
          respond(m.sync_cb, SyncResponse{.error = ErrorCode::rebalance_in_progress});
        }
        m.sync_cb = std::move(done);
        done = nullptr;
        if (m.id == g->leader_id) {
          // Members the leader left out get an empty assignment; unknown ids are ignored.
          for (auto& [id, member] : g->members) member.assignment.clear();
          for (auto& [id, bytes] : req.assignments) {
            auto it = g->members.find(id);
            if (it != g->members.end()) it->second.assignment = std::move(bytes);
          }
          set_state(*g, GroupState::stable);
          for (auto& [id, member] : g->members) {
            if (member.sync_cb) {
              respond(member.sync_cb, SyncResponse{.protocol_type = g->protocol_type,
                                                   .protocol_name = g->protocol_name,
                                                   .assignment = member.assignment});
            }
          }
        }
        break;
      case GroupState::stable:
        m.session_deadline_ms = clock_.now_ms() + m.session_timeout_ms;
        respond(done, SyncResponse{.protocol_type = g->protocol_type,
                                   .protocol_name = g->protocol_name,
                                   .assignment = m.assignment});
        break;
    }
    g->check_invariants();
  }
  drain();
}

// ---- Heartbeat ----

ErrorCode GroupCoordinator::heartbeat(const HeartbeatRequest& req) {
  Group* g = find(req.group_id);
  if (g == nullptr) return ErrorCode::unknown_member_id;
  if (g->fenced(req.group_instance_id, req.member_id)) return ErrorCode::fenced_instance_id;
  auto it = g->members.find(req.member_id);
  if (it == g->members.end() || g->state == GroupState::empty) {
    return ErrorCode::unknown_member_id;
  }
  if (req.generation_id != g->generation) return ErrorCode::illegal_generation;
  it->second.session_deadline_ms = clock_.now_ms() + it->second.session_timeout_ms;
  if (g->state == GroupState::preparing_rebalance) return ErrorCode::rebalance_in_progress;
  return ErrorCode::none;
}

// ---- LeaveGroup and removal ----

LeaveResponse GroupCoordinator::leave(const LeaveRequest& req) {
  LeaveResponse out;
  Group* g = find(req.group_id);
  for (const auto& who : req.members) {
    ErrorCode e = ErrorCode::none;
    if (g == nullptr) {
      e = ErrorCode::unknown_member_id;
    } else if (who.group_instance_id) {
      auto it = g->statics.find(*who.group_instance_id);
      if (it == g->statics.end()) {
        e = ErrorCode::unknown_member_id;
      } else if (!who.member_id.empty() && who.member_id != it->second) {
        e = ErrorCode::fenced_instance_id;
      } else {
        remove_member(*g, std::string(it->second), ErrorCode::unknown_member_id);
      }
    } else if (g->pending.erase(who.member_id) == 1) {
      try_complete_join(*g);
    } else if (g->members.count(who.member_id) == 1) {
      remove_member(*g, who.member_id, ErrorCode::unknown_member_id);
    } else {
      e = ErrorCode::unknown_member_id;
    }
    out.member_errors.push_back(e);
  }
  if (g != nullptr) g->check_invariants();
  drain();
  return out;
}

void GroupCoordinator::fail_waiting(Member& m, const std::string& member_id, ErrorCode error) {
  if (m.join_cb) {
    JoinResponse r;
    r.error = error;
    r.member_id = member_id;
    respond(m.join_cb, std::move(r));
  }
  if (m.sync_cb) respond(m.sync_cb, SyncResponse{.error = error});
}

void GroupCoordinator::remove_member(Group& g, const std::string& member_id, ErrorCode reason) {
  auto it = g.members.find(member_id);
  ORDO_ASSERT(it != g.members.end());
  Member& m = it->second;
  fail_waiting(m, member_id, reason);
  if (m.instance_id) g.statics.erase(*m.instance_id);
  bool was_leader = g.leader_id == member_id;
  g.members.erase(it);
  if (was_leader) {
    // Prefer a member that already rejoined: it will receive the members list.
    g.leader_id.clear();
    for (const auto& [id, other] : g.members) {
      if (other.join_cb) {
        g.leader_id = id;
        break;
      }
    }
    if (g.leader_id.empty() && !g.members.empty()) g.leader_id = g.members.begin()->first;
  }
  on_member_left(g);
}

void GroupCoordinator::on_member_left(Group& g) {
  switch (g.state) {
    case GroupState::stable:
    case GroupState::completing_rebalance:
      prepare_rebalance(g);
      try_complete_join(g);
      break;
    case GroupState::preparing_rebalance:
      try_complete_join(g);
      break;
    case GroupState::empty:
    case GroupState::dead:
      break;
  }
}

// ---- Time ----

void GroupCoordinator::tick() {
  int64_t now = clock_.now_ms();
  for (auto& [id, g] : groups_) {
    expire_group(*g, now);
    g->check_invariants();
  }
  drain();
}

void GroupCoordinator::expire_group(Group& g, int64_t now_ms) {
  bool pending_expired = false;
  for (auto it = g.pending.begin(); it != g.pending.end();) {
    if (it->second <= now_ms) {
      it = g.pending.erase(it);
      pending_expired = true;
    } else {
      ++it;
    }
  }
  if (pending_expired) try_complete_join(g);
  std::vector<std::string> expired;
  for (const auto& [id, m] : g.members) {
    if (!m.waiting() && m.session_deadline_ms <= now_ms) expired.push_back(id);
  }
  for (const auto& id : expired) {
    // An earlier removal may have completed a join that refreshed this member's session.
    auto it = g.members.find(id);
    if (it != g.members.end() && !it->second.waiting() &&
        it->second.session_deadline_ms <= now_ms) {
      remove_member(g, id, ErrorCode::unknown_member_id);
    }
  }
  if (g.state == GroupState::preparing_rebalance && g.join_deadline_ms <= now_ms) {
    if (g.initial_delay && g.new_member_added && g.initial_remaining_ms > 0) {
      int64_t delay = std::min<int64_t>(config_.initial_rebalance_delay_ms, g.initial_remaining_ms);
      g.initial_remaining_ms -= delay;
      g.new_member_added = false;
      g.join_deadline_ms = now_ms + delay;
    } else {
      complete_join(g);
    }
  }
}

// ---- Describe, list, delete, unload ----

GroupDescription GroupCoordinator::describe(const std::string& group_id) const {
  GroupDescription d;
  d.group_id = group_id;
  const Group* g = find(group_id);
  if (g == nullptr) return d;
  d.state = g->state;
  d.protocol_type = g->protocol_type;
  d.generation_id = g->generation;
  d.leader_id = g->leader_id;
  d.rebalances_completed = g->rebalances_completed;
  bool selected = g->state == GroupState::completing_rebalance || g->state == GroupState::stable;
  if (selected && g->protocol_name) d.protocol_name = *g->protocol_name;
  for (const auto& [id, m] : g->members) {
    MemberDescription md;
    md.member_id = id;
    md.group_instance_id = m.instance_id;
    md.client_id = m.client_id;
    md.client_host = m.client_host;
    if (selected && g->protocol_name) {
      const Bytes* b = m.metadata_for(*g->protocol_name);
      if (b) md.metadata = *b;
    }
    if (g->state == GroupState::stable) md.assignment = m.assignment;
    md.session_timeout_ms = m.session_timeout_ms;
    md.rebalance_timeout_ms = m.rebalance_timeout_ms;
    md.awaiting_join = static_cast<bool>(m.join_cb);
    md.awaiting_sync = static_cast<bool>(m.sync_cb);
    d.members.push_back(std::move(md));
  }
  return d;
}

std::vector<GroupListing> GroupCoordinator::list(const std::vector<GroupState>& states) const {
  std::vector<GroupListing> out;
  for (const auto& [id, g] : groups_) {
    if (!states.empty() && std::find(states.begin(), states.end(), g->state) == states.end()) {
      continue;
    }
    out.push_back(GroupListing{id, g->protocol_type, g->state});
  }
  return out;
}

ErrorCode GroupCoordinator::delete_group(const std::string& group_id) {
  auto it = groups_.find(group_id);
  if (it == groups_.end()) return ErrorCode::group_id_not_found;
  if (it->second->state != GroupState::empty) return ErrorCode::non_empty_group;
  set_state(*it->second, GroupState::dead);
  groups_.erase(it);
  drain();
  return ErrorCode::none;
}

void GroupCoordinator::unload() {
  for (auto& [gid, g] : groups_) {
    for (auto& [id, m] : g->members) {
      fail_waiting(m, id, ErrorCode::not_coordinator);
    }
    g->state = GroupState::dead;
  }
  groups_.clear();
  drain();
}

void GroupCoordinator::set_state_observer(StateObserver observer) {
  state_observer_ = std::move(observer);
}

void GroupCoordinator::restore(const std::string& group_id, const GroupMetadataValue& md) {
  if (groups_.count(group_id) == 1) return;
  auto g = std::make_unique<Group>();
  g->id = group_id;
  g->protocol_type = md.protocol_type;
  g->generation = std::max(md.generation, 0);
  // Members only when they make a Stable group this coordinator could have written.
  bool members_ok = !md.members.empty() && md.protocol_name && md.leader_id &&
                    md.members.size() <= size_t(config_.group_max_size) && g->generation > 0;
  std::map<std::string, Member> members;
  std::map<std::string, std::string> statics;
  int64_t now = clock_.now_ms();
  for (const auto& r : md.members) {
    if (!members_ok) break;
    if (r.member_id.empty() || r.session_timeout_ms < config_.min_session_timeout_ms ||
        r.session_timeout_ms > config_.max_session_timeout_ms || r.rebalance_timeout_ms <= 0 ||
        members.count(r.member_id) == 1 ||
        (r.group_instance_id && statics.count(*r.group_instance_id) == 1)) {
      members_ok = false;
      break;
    }
    Member m;
    m.id = r.member_id;
    m.instance_id = r.group_instance_id;
    m.client_id = r.client_id;
    m.client_host = r.client_host;
    m.session_timeout_ms = r.session_timeout_ms;
    m.rebalance_timeout_ms = std::min(r.rebalance_timeout_ms, config_.max_session_timeout_ms);
    m.protocols = {Protocol{*md.protocol_name, r.subscription}};
    m.assignment = r.assignment;
    m.session_deadline_ms = now + m.session_timeout_ms;
    if (m.instance_id) statics[*m.instance_id] = m.id;
    members.emplace(m.id, std::move(m));
  }
  if (members_ok && members.count(*md.leader_id) == 1) {
    g->members = std::move(members);
    g->statics = std::move(statics);
    g->leader_id = *md.leader_id;
    g->protocol_name = md.protocol_name;
    g->state = GroupState::stable;
  }
  g->check_invariants();
  groups_.emplace(group_id, std::move(g));
}

GroupState GroupCoordinator::state(const std::string& group_id) const {
  const Group* g = find(group_id);
  return g == nullptr ? GroupState::dead : g->state;
}

ErrorCode GroupCoordinator::check_commit(const std::string& group_id, int32_t generation_id,
                                         const std::string& member_id,
                                         const std::optional<std::string>& group_instance_id) {
  Group* g = find(group_id);
  if (g == nullptr) {
    // Offsets of a group that has no members here (a standalone consumer, an admin tool).
    return generation_id < 0 ? ErrorCode::none : ErrorCode::illegal_generation;
  }
  if (g->fenced(group_instance_id, member_id)) return ErrorCode::fenced_instance_id;
  if (generation_id < 0 && g->state == GroupState::empty) return ErrorCode::none;
  if (g->state == GroupState::completing_rebalance) return ErrorCode::rebalance_in_progress;
  auto it = g->members.find(member_id);
  if (it == g->members.end()) return ErrorCode::unknown_member_id;
  if (generation_id != g->generation) return ErrorCode::illegal_generation;
  // A commit shows the member is alive, as a heartbeat does.
  it->second.session_deadline_ms = clock_.now_ms() + it->second.session_timeout_ms;
  return ErrorCode::none;
}

size_t GroupCoordinator::group_count() const {
  return groups_.size();
}

}  // namespace ordo::coordinator
