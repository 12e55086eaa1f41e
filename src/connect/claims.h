#pragma once
// Invariants through the log: unique claims ("register jane" twice) decided by a single writer
// per partition of a claims topic (docs/connect.md, "Claims").
//
// A claim is a record of the claims topic: key = the claimed value (so all claims of one value
// land in one partition, in one order), value {"request_id", "owner", "op": "claim"|"release"}.
// The processor of a partition (a sink task of type "claims": one consumer per partition by
// the group, so one writer) applies them in offset order: a claim of a free value is accepted
// and the value is held by its owner; a claim of a held value is rejected, unless it is the
// same request again (then the same answer); a release by the holder frees the value. Each
// decision goes to the results topic, keyed by request_id: {"request_id", "value", "owner",
// "accepted", "holder", "offset"}. Decisions depend only on the order of the log, so a replay
// from offset 0 makes the same ones.
//
// Like aggregates: results are published and acknowledged before the holders and the position
// are written (one synced RocksDB WriteBatch); a crash in between publishes the same decisions
// again.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "connect/store.h"

namespace rocksdb {
class DB;
}

namespace ordo::connect {

class ClaimStore : public Store {
 public:
  using Publish =
      std::function<Result<void>(const std::vector<std::pair<std::string, std::string>>&)>;
  static Result<std::unique_ptr<ClaimStore>> open(const std::string& path, Publish publish);
  ~ClaimStore() override;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  // The holder of a value: {"owner", "request_id", "offset"}, or nullopt when free.
  Result<std::optional<nlohmann::json>> holder(const std::string& value) const;

 private:
  ClaimStore(std::unique_ptr<rocksdb::DB> db, Publish publish);
  std::unique_ptr<rocksdb::DB> db_;
  Publish publish_;
};

// Sends a claim (or a release) and waits for its decision on the results topic: what `ordo
// claim` and the worker's POST /claims do. The results topic is read from its ends as they were
// before the claim was sent. Errc::io when the cluster cannot be reached, Errc::busy when no
// decision came within timeout_ms (the claim may still be decided later).
struct ClaimRequest {
  std::string bootstrap;
  std::string topic = "claims";
  std::string results_topic = "claims.results";
  std::string value;
  std::string owner;
  bool release = false;
  std::string request_id;  // empty: a random one
  int64_t timeout_ms = 30'000;
};
Result<nlohmann::json> claim_and_wait(const ClaimRequest& request,
                                      const std::atomic<bool>* stopping = nullptr);

}  // namespace ordo::connect
