#include "raft/sim/network.h"

#include <fmt/format.h>

#include "base/assert.h"

namespace ordo::raft::sim {

SimNetwork::SimNetwork(int nodes) : nodes_(nodes), cut_(size_t(nodes + 1) * (nodes + 1), false) {
  ORDO_ASSERT(nodes >= 1 && nodes <= 64);
}

size_t SimNetwork::index(NodeId from, NodeId to) const {
  ORDO_ASSERT(from >= 1 && from <= nodes_ && to >= 1 && to <= nodes_);
  return size_t(from) * (nodes_ + 1) + size_t(to);
}

void SimNetwork::heal_all() {
  std::fill(cut_.begin(), cut_.end(), false);
}

void SimNetwork::split(const std::vector<int>& side) {
  ORDO_ASSERT(side.size() == size_t(nodes_ + 1));
  for (NodeId a = 1; a <= nodes_; ++a) {
    for (NodeId b = 1; b <= nodes_; ++b) {
      if (side[a] != side[b]) cut(a, b);
    }
  }
}

void SimNetwork::isolate(NodeId node) {
  for (NodeId other = 1; other <= nodes_; ++other) {
    if (other != node) cut_both(node, other);
  }
}

std::string SimNetwork::describe_cuts() const {
  std::string out;
  for (NodeId a = 1; a <= nodes_; ++a) {
    for (NodeId b = 1; b <= nodes_; ++b) {
      if (a != b && is_cut(a, b)) out += fmt::format("{}{}->{}", out.empty() ? "" : " ", a, b);
    }
  }
  return out.empty() ? "none" : out;
}

std::vector<Time> SimNetwork::plan(NodeId from, NodeId to, Random& rng) {
  ++sent_;
  std::vector<Time> delays;
  if (is_cut(from, to) || rng.chance(faults_.loss)) {
    ++lost_;
    return delays;
  }
  int copies = rng.chance(faults_.duplicate) ? 2 : 1;
  if (copies == 2) ++duplicated_;
  for (int i = 0; i < copies; ++i) {
    Time d = rng.between(faults_.min_delay, std::max(faults_.min_delay, faults_.max_delay));
    if (rng.chance(faults_.slow)) d += rng.between(0, faults_.slow_delay);
    delays.push_back(d);
  }
  return delays;
}

}  // namespace ordo::raft::sim
