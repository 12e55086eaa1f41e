#pragma once
// node.meta: a cluster-mode data dir's identity (docs/cluster.md, "node.meta"). Written once,
// when the directory first starts in cluster mode, and never changed:
//
//   0      4       6        10             18      20          20+n      24+n
//   +------+-------+--------+--------------+-------+-----------+---------+
//   |"ORDN"| ver=1 | node id| incarnation  | n     | cluster id| CRC-32C |
//   |      | u16   | i32    | u64          | u16   | n bytes   | u32     |
//   +------+-------+--------+--------------+-------+-----------+---------+
//   big-endian; the CRC covers every byte before it; n <= 255.
//
// The incarnation is a random non-zero number chosen with the file: it names this disk's
// replicas in every Raft configuration, so a node that lost its disk comes back as a new
// member that cannot vote until it is added again (docs/replication.md, "Identity").
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace ordo::broker {

struct NodeMeta {
  int32_t node_id = 0;
  uint64_t incarnation = 0;
  std::string cluster_id;
  // True when load_or_create made the file now (a fresh data dir).
  bool created = false;
  bool operator==(const NodeMeta& o) const {
    return node_id == o.node_id && incarnation == o.incarnation && cluster_id == o.cluster_id;
  }
};

constexpr std::string_view kNodeMetaFileName = "node.meta";

std::vector<uint8_t> encode_node_meta(const NodeMeta& meta);
// Errc::corrupt for anything but a whole, well-formed file.
Result<NodeMeta> decode_node_meta(std::span<const uint8_t> bytes);

// Reads <data_dir>/node.meta, or (absent) creates it with a new random incarnation, durably.
// An existing file whose node id or cluster id differs from the configured ones is an error
// (Errc::invalid_argument): the data dir belongs to another node or cluster.
Result<NodeMeta> load_or_create_node_meta(const std::string& data_dir, int32_t node_id,
                                          const std::string& cluster_id);

}  // namespace ordo::broker
