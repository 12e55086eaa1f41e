#pragma once
// Replica placement: which brokers hold the replicas of new partitions. Pure and deterministic
// (the same brokers, load and seed give the same answer). Rules: docs/cluster-metadata.md.
//
// - Only unfenced brokers get replicas; each partition's replicas are distinct brokers, the
//   first is its preferred leader.
// - Balance, counting the load already there: every replica set is a least-loaded one (by
//   replica count), so when the brokers' replica counts are within one of each other before,
//   they still are after; the preferred leader is the broker with the fewest preferred
//   leaderships among those that can take a replica, followers prefer brokers that lead more
//   (they keep the brokers that lead less free to lead next). Preferred leaders end within one
//   of each other when they start so and no racks are set (property-tested).
// - Rack-aware when every eligible broker has a rack (and there are two racks or more): a
//   partition's replicas are on min(rf, racks) distinct racks. Brokers without a rack among
//   brokers with one: racks are ignored.
// - rf < 1, rf > the unfenced brokers, count < 1 or > kMaxPartitionsPerCommand, a broker
//   listed twice: Errc::invalid_argument (the Kafka handler answers
//   INVALID_REPLICATION_FACTOR for the rf cases).

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "base/result.h"
#include "cluster/metadata.h"
#include "cluster/partition_table.h"

namespace ordo::cluster {

// Replicas and preferred leaderships (first replicas) per broker.
struct BrokerLoad {
  std::map<NodeId, int64_t> replicas;
  std::map<NodeId, int64_t> leaders;
  void add(const std::vector<NodeId>& replica_set);
};
// The load of every partition of the table.
BrokerLoad load_of(const TableSnapshot& table);

// `count` replica sets of `rf` brokers each, chosen among the unfenced brokers of `brokers`.
// `seed` orders brokers that are otherwise equal.
Result<std::vector<std::vector<NodeId>>> place(int32_t count, int16_t rf,
                                               std::span<const BrokerRecord> brokers,
                                               const BrokerLoad& load, uint64_t seed);

}  // namespace ordo::cluster
