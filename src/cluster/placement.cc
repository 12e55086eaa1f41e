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

// One replica set over racks. The rf replicas are shared out over the racks as evenly as
// possible (each rack floor(rf / racks) or one more, capped at its size), the extra ones to the
// racks holding least per broker (then the seeded rack order), so a partition spans
// min(rf, racks) racks. Within a rack its share goes to a least-loaded set of its brokers. The
// preferred leader is, among the brokers such sets can contain, the one that leads least; the
// other places prefer brokers that lead more.
std::vector<NodeId> place_over_racks(std::vector<Candidate>& c,
                                     const std::vector<int64_t>& rack_size, int16_t rf) {
  const size_t racks = rack_size.size();
  std::vector<int64_t> total(racks, 0);
  std::vector<std::vector<int64_t>> counts(racks);
  for (const Candidate& x : c) {
    total[size_t(x.rack)] += x.replicas;
    counts[size_t(x.rack)].push_back(x.replicas);
  }
  std::vector<size_t> order(racks);
  for (size_t r = 0; r < racks; ++r) order[r] = r;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int64_t la = total[a] * rack_size[b];
    const int64_t lb = total[b] * rack_size[a];
    return la != lb ? la < lb : a < b;
  });
  std::vector<int64_t> share(racks, 0);
  int64_t left = rf;
  for (size_t k = 0; k < racks; ++k) {
    const size_t r = order[k];
    share[r] = std::min<int64_t>(rack_size[r],
                                 rf / int64_t(racks) + (int64_t(k) < rf % int64_t(racks) ? 1 : 0));
    left -= share[r];
  }
  for (size_t k = 0; left > 0; k = (k + 1) % racks) {  // small racks left some over
    const size_t r = order[k];
    if (share[r] < rack_size[r]) {
      ++share[r];
      --left;
    }
  }
  // The largest replica count a least-loaded set of share[r] brokers of rack r contains.
  std::vector<int64_t> limit(racks, -1);
  for (size_t r = 0; r < racks; ++r) {
    if (share[r] == 0) continue;
    auto& v = counts[r];
    std::nth_element(v.begin(), v.begin() + (share[r] - 1), v.end());
    limit[r] = v[size_t(share[r] - 1)];
  }
  std::vector<bool> taken(c.size());
  std::vector<size_t> chosen;
  auto pick = [&](auto&& eligible, auto&& key) {
    size_t best = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      if (taken[i] || !eligible(c[i])) continue;
      if (best == c.size() || key(c[i]) < key(c[best])) best = i;
    }
    ORDO_ASSERT(best < c.size());
    taken[best] = true;
    chosen.push_back(best);
    --share[size_t(c[best].rack)];
  };
  pick([&](const Candidate& x) { return x.replicas <= limit[size_t(x.rack)]; },
       [](const Candidate& x) { return std::make_tuple(x.leaders, x.replicas, x.rank); });
  for (size_t k = 0; k < racks; ++k) {
    const int rack = int(order[k]);
    while (share[size_t(rack)] > 0) {
      pick([&](const Candidate& x) { return x.rack == rack; },
           [](const Candidate& x) { return std::make_tuple(x.replicas, -x.leaders, x.rank); });
    }
  }
  ORDO_ASSERT(chosen.size() == size_t(rf));
  std::vector<NodeId> set;
  for (size_t i : chosen) {
    ++c[i].replicas;
    set.push_back(c[i].id);
  }
  ++c[chosen[0]].leaders;
  return set;
}

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
  std::vector<int64_t> rack_size(rack_index.size());
  for (const Candidate& x : c) {
    if (racked) ++rack_size[size_t(x.rack)];
  }
  for (int32_t p = 0; p < count; ++p) {
    if (racked) {
      out.push_back(place_over_racks(c, rack_size, rf));
      continue;
    }
    std::fill(taken.begin(), taken.end(), false);
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
    ++c[leader].replicas;
    ++c[leader].leaders;
    // Followers: the fewest replicas, then the most leaderships (brokers that lead less stay
    // free to lead), then the seeded order.
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
        if (std::make_tuple(a.replicas, -a.leaders, a.rank) <
            std::make_tuple(b.replicas, -b.leaders, b.rank)) {
          best = i;
        }
      }
      ORDO_ASSERT(best < c.size());
      set.push_back(c[best].id);
      taken[best] = true;
      ++c[best].replicas;
    }
    out.push_back(std::move(set));
  }
  return out;
}

}  // namespace ordo::cluster
