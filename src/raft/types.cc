#include "raft/types.h"

#include <algorithm>

#include <fmt/format.h>

#include "raft/broken.h"
#include "raft/core.h"

namespace ordo::raft {

#ifdef ORDO_RAFT_BROKEN
Broken g_broken = Broken::none;
#endif

const char* broken_name(Broken b) {
  switch (b) {
    case Broken::none:
      return "none";
    case Broken::vote_before_durable:
      return "vote_before_durable";
    case Broken::ack_before_fsync:
      return "ack_before_fsync";
    case Broken::commit_by_counting:
      return "commit_by_counting";
    case Broken::skip_log_matching:
      return "skip_log_matching";
    case Broken::vote_twice:
      return "vote_twice";
    case Broken::commit_without_durable:
      return "commit_without_durable";
  }
  return "?";
}

namespace {
const Member* find_in(const std::vector<Member>& members, NodeId id) {
  auto it = std::lower_bound(members.begin(), members.end(), id,
                             [](const Member& m, NodeId v) { return m.id < v; });
  return it != members.end() && it->id == id ? &*it : nullptr;
}
bool sorted_distinct(const std::vector<Member>& members) {
  for (size_t i = 1; i < members.size(); ++i) {
    if (members[i - 1].id >= members[i].id) return false;
  }
  for (const auto& m : members) {
    if (m.id < 0) return false;
  }
  return true;
}
}  // namespace

bool Config::is_voter(const Member& m) const {
  const Member* v = find_in(voters, m.id);
  return v != nullptr && *v == m;
}
bool Config::is_voter_id(NodeId id) const {
  return find_in(voters, id) != nullptr;
}
bool Config::is_learner_id(NodeId id) const {
  return find_in(learners, id) != nullptr;
}
const Member* Config::find(NodeId id) const {
  const Member* v = find_in(voters, id);
  return v != nullptr ? v : find_in(learners, id);
}
bool Config::valid() const {
  if (voters.empty() || !sorted_distinct(voters) || !sorted_distinct(learners)) return false;
  for (const auto& l : learners) {
    if (is_voter_id(l.id)) return false;
  }
  return true;
}
std::string Config::to_string() const {
  std::string out = "voters[";
  for (size_t i = 0; i < voters.size(); ++i) {
    out += fmt::format("{}{}/{:x}", i ? " " : "", voters[i].id, voters[i].incarnation & 0xffff);
  }
  out += "] learners[";
  for (size_t i = 0; i < learners.size(); ++i) {
    out += fmt::format("{}{}/{:x}", i ? " " : "", learners[i].id, learners[i].incarnation & 0xffff);
  }
  return out + "]";
}

const char* body_name(const Body& body) {
  switch (body.index()) {
    case 0:
      return "VoteRequest";
    case 1:
      return "VoteResponse";
    case 2:
      return "AppendRequest";
    case 3:
      return "AppendResponse";
    case 4:
      return "Heartbeat";
    case 5:
      return "HeartbeatResponse";
    case 6:
      return "TimeoutNow";
  }
  return "?";
}

const char* role_name(Role role) {
  switch (role) {
    case Role::follower:
      return "follower";
    case Role::pre_candidate:
      return "pre_candidate";
    case Role::candidate:
      return "candidate";
    case Role::leader:
      return "leader";
  }
  return "?";
}

}  // namespace ordo::raft
