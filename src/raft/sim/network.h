#pragma once
// The simulated network between the nodes of one group: which links are cut (partitions, in
// either direction), and the fate of each message sent: lost, delivered once after a delay,
// or delivered twice (duplicated). Delays are drawn per message, so messages on one link
// overtake each other (reordering); a share of them is delayed much longer. Node ids are
// 1..nodes.

#include <cstdint>
#include <string>
#include <vector>

#include "base/random.h"
#include "raft/sim/event_loop.h"
#include "raft/types.h"

namespace ordo::raft::sim {

struct NetworkFaults {
  double loss = 0;       // probability a message is lost
  double duplicate = 0;  // probability a delivered message is delivered twice
  double slow = 0;       // probability a message takes the slow path (reordering)
  Time min_delay = 100;  // microseconds
  Time max_delay = 2 * kMillis;
  Time slow_delay = 50 * kMillis;  // the slow path: up to this much longer
};

class SimNetwork {
 public:
  explicit SimNetwork(int nodes);

  int nodes() const { return nodes_; }
  NetworkFaults& faults() { return faults_; }

  // ---- partitions ----
  void cut(NodeId from, NodeId to) { cut_[index(from, to)] = true; }
  void cut_both(NodeId a, NodeId b) { cut(a, b), cut(b, a); }
  bool is_cut(NodeId from, NodeId to) const { return cut_[index(from, to)]; }
  void heal_all();
  // Cuts every link between nodes on different sides (side[id], id 1..nodes; side[0] unused).
  void split(const std::vector<int>& side);
  // Node `node` can neither send nor receive.
  void isolate(NodeId node);
  std::string describe_cuts() const;

  // ---- messages ----
  // The delays after which a message sent now from `from` to `to` arrives: none when it is
  // lost (or the link is cut), two when duplicated. The receiver checks the link again on
  // arrival (a partition that starts meanwhile drops messages in flight).
  std::vector<Time> plan(NodeId from, NodeId to, Random& rng);

  uint64_t sent() const { return sent_; }
  uint64_t lost() const { return lost_; }
  uint64_t duplicated() const { return duplicated_; }

 private:
  size_t index(NodeId from, NodeId to) const;
  int nodes_;
  std::vector<bool> cut_;  // (nodes+1)^2, by (from, to)
  NetworkFaults faults_;
  uint64_t sent_ = 0;
  uint64_t lost_ = 0;
  uint64_t duplicated_ = 0;
};

}  // namespace ordo::raft::sim
