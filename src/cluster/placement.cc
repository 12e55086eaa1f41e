#include "cluster/placement.h"

#include <algorithm>
#include <set>
#include <string>

namespace ordo::cluster {

void BrokerLoad::add(const std::vector<NodeId>& replica_set) {
  for (NodeId n : replica_set) ++replicas[n];
  if (!replica_set.empty()) ++leaders[replica_set.front()];
}

BrokerLoad load_of(const TableSnapshot& table) {
  BrokerLoad load;
  for (const auto& [name, t] : table.topics) {
    for (const auto& p : t.partitions) load.add(p.replicas);
  }
  return load;
}

namespace {

// splitmix64: a fixed, portable sequence (std::shuffle's algorithm is not specified).
uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct Candidate {
  NodeId id = -1;
  int rack = -1;  // index into the racks; -1 when placement ignores racks
  int64_t replicas = 0;
  int64_t leaders = 0;
  size_t rank = 0;  // the seeded order of otherwise equal brokers
};

}  // namespace

Result<std::vector<std::vector<NodeId>>> place(int32_t count, int16_t rf,
                                               std::span<const BrokerRecord> brokers,
                                               const BrokerLoad& load, uint64_t seed) {
  if (count < 1 || size_t(count) > kMaxPartitionsPerCommand) {
    return make_error(Errc::invalid_argument, "partition count {} outside [1, {}]", count,
                      kMaxPartitionsPerCommand);
  }
  std::vector<const BrokerRecord*> eligible;
  std::set<NodeId> seen;
  for (const BrokerRecord& b : brokers) {
    if (!seen.insert(b.id).second) {
      return make_error(Errc::invalid_argument, "broker {} listed twice", b.id);
    }
    if (!b.fenced) eligible.push_back(&b);
  }
  if (rf < 1 || size_t(rf) > eligible.size()) {
    return make_error(Errc::invalid_argument,
                      "replication factor {} cannot be met: {} unfenced broker(s)", rf,
                      eligible.size());
  }
  if (size_t(rf) > kMaxReplicas) {
    return make_error(Errc::invalid_argument, "replication factor {} above {}", rf, kMaxReplicas);
  }

  // Seeded ranks: a Fisher-Yates shuffle of the brokers sorted by id.
  std::sort(eligible.begin(), eligible.end(),
            [](const BrokerRecord* a, const BrokerRecord* b) { return a->id < b->id; });
  uint64_t state = seed;
  for (size_t i = eligible.size(); i > 1; --i) {
    std::swap(eligible[i - 1], eligible[next_random(state) % i]);
  }
  const bool all_racked = std::all_of(eligible.begin(), eligible.end(),
                                      [](const BrokerRecord* b) { return b->rack.has_value(); });
  std::map<std::string, int> rack_index;
  if (all_racked) {
    for (const BrokerRecord* b : eligible) rack_index.emplace(*b->rack, int(rack_index.size()));
  }
  const bool racked = rack_index.size() >= 2;
  std::vector<Candidate> c(eligible.size());
  for (size_t i = 0; i < eligible.size(); ++i) {
    c[i].id = eligible[i]->id;
    c[i].rack = racked ? rack_index.at(*eligible[i]->rack) : -1;
    auto r = load.replicas.find(c[i].id);
    c[i].replicas = r == load.replicas.end() ? 0 : r->second;
    auto l = load.leaders.find(c[i].id);
    c[i].leaders = l == load.leaders.end() ? 0 : l->second;
    c[i].rank = i;
  }

  std::vector<std::vector<NodeId>> out;
  out.reserve(size_t(count));
  std::vector<int64_t> sorted(c.size());
  std::vector<bool> taken(c.size());
  std::vector<int> rack_used(rack_index.size());
  for (int32_t p = 0; p < count; ++p) {
    std::fill(taken.begin(), taken.end(), false);
    std::fill(rack_used.begin(), rack_used.end(), 0);
    // The leader: among the brokers a least-loaded replica set can contain (replica count at
    // most the rf-th smallest), the one that leads least, then holds least.
    for (size_t i = 0; i < c.size(); ++i) sorted[i] = c[i].replicas;
    std::nth_element(sorted.begin(), sorted.begin() + (rf - 1), sorted.end());
    const int64_t limit = sorted[size_t(rf - 1)];
    size_t leader = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      if (c[i].replicas > limit) continue;
      if (leader == c.size()) {
        leader = i;
        continue;
      }
      const Candidate& a = c[i];
      const Candidate& b = c[leader];
      if (std::tie(a.leaders, a.replicas, a.rank) < std::tie(b.leaders, b.replicas, b.rank)) {
        leader = i;
      }
    }
    ORDO_ASSERT(leader < c.size());
    std::vector<NodeId> set{c[leader].id};
    taken[leader] = true;
    if (racked) rack_used[size_t(c[leader].rack)] = 1;
    ++c[leader].replicas;
    ++c[leader].leaders;
    // Followers: a rack this partition does not use yet first, then the fewest replicas, then
    // the most leaderships (brokers that lead less stay free to lead), then the seeded order.
    for (int16_t k = 1; k < rf; ++k) {
      size_t best = c.size();
      for (size_t i = 0; i < c.size(); ++i) {
        if (taken[i]) continue;
        if (best == c.size()) {
          best = i;
          continue;
        }
        const Candidate& a = c[i];
        const Candidate& b = c[best];
        const int used_a = racked ? rack_used[size_t(a.rack)] : 0;
        const int used_b = racked ? rack_used[size_t(b.rack)] : 0;
        if (std::make_tuple(used_a, a.replicas, -a.leaders, a.rank) <
            std::make_tuple(used_b, b.replicas, -b.leaders, b.rank)) {
          best = i;
        }
      }
      ORDO_ASSERT(best < c.size());
      set.push_back(c[best].id);
      taken[best] = true;
      if (racked) rack_used[size_t(c[best].rack)] = 1;
      ++c[best].replicas;
    }
    out.push_back(std::move(set));
  }
  return out;
}

}  // namespace ordo::cluster
