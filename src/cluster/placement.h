#pragma once
// Replica placement: which brokers hold the replicas of new partitions. Pure and deterministic
// (the same brokers, load and seed give the same answer). Rules: docs/cluster-metadata.md.
//
// - Only unfenced brokers get replicas; each partition's replicas are distinct brokers, the
//   first is its preferred leader.
// - Balance, counting the load already there (BrokerLoad): every replica set is a
//   least-loaded one by replica count, so brokers whose replica counts are within one of each
//   other before still are after. The preferred leader is, among the brokers such a set can
//   contain, the one that leads least; followers prefer brokers that lead more (that keeps the
//   brokers that lead less free to lead next). Topics of one replication factor keep preferred
//   leaders within one per broker too; mixing replication factors can make that impossible
//   (replicas and leaderships then grow together on rf 1), they stay within two
//   (property-tested, placement_test.cc).
// - Rack-aware when every eligible broker has a rack (and there are two racks or more): a
//   partition's rf replicas are shared out over the racks as evenly as possible (so they span
//   min(rf, racks) racks), the extra ones to the racks holding least per broker; within a rack
//   they go to a least-loaded set of its brokers. With as many brokers on every rack, replicas
//   stay within one per broker, preferred leaders within two (three with mixed replication
//   factors; property-tested). Brokers without a rack among brokers with one: racks ignored.
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
