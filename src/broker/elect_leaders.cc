// ElectLeaders (API 43, KIP-183/KIP-460). Preferred elections only: the leadership of each
// partition moves to its first assigned replica (PartitionService::elect_preferred: a Raft
// leadership transfer, started by the partition's current leader, so the request must reach
// it). Unclean elections do not exist in a Raft group (only an up-to-date replica can win):
// INVALID_REQUEST. On a single node the only replica leads: ELECTION_NOT_NEEDED.

#include "broker/handlers.h"
#include "protocol/messages/elect_leaders_request.h"
#include "protocol/messages/elect_leaders_response.h"

namespace ordo::broker {

namespace {
constexpr int8_t kPreferred = 0;
}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::elect_leaders(
    Broker& b, Request& req, protocol::ElectLeadersRequest& body) {
  using PartitionResult = protocol::ElectLeadersResponse::PartitionResult;
  protocol::ElectLeadersResponse resp;
  cluster::PartitionService& parts = partitions(b);
  auto topics = b.topics().snapshot();
  // v0 has no election type: preferred.
  const int8_t type = req.version == 0 ? kPreferred : body.election_type;
  // Null: every partition (then, as Kafka, partitions that need no election are left out).
  const bool all = !body.topic_partitions.has_value();
  std::vector<std::pair<std::string, std::vector<int32_t>>> wanted;
  if (all) {
    for (const auto& [name, info] : *topics) {
      std::vector<int32_t> ps;
      for (int32_t p = 0; p < info.partitions; ++p) ps.push_back(p);
      wanted.emplace_back(name, std::move(ps));
    }
  } else {
    for (const auto& t : *body.topic_partitions) wanted.emplace_back(t.topic, t.partitions);
  }
  for (const auto& [topic, ps] : wanted) {
    protocol::ElectLeadersResponse::ReplicaElectionResult tout;
    tout.topic = topic;
    const TopicInfo* info = b.topics().find(*topics, topic);
    for (int32_t p : ps) {
      PartitionResult out;
      out.partition_id = p;
      if (type != kPreferred) {
        out.error_code = code(ErrorCode::invalid_request);
        out.error_message =
            "only preferred elections: a Raft group elects only an up-to-date replica, so there "
            "is no unclean election";
      } else if (!has_partition(info, p)) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        out.error_message = "unknown topic or partition";
      } else {
        model::TopicPartition tp{topic, p};
        auto op = on_callback<Result<cluster::Election>>(
            [&parts, &tp](auto done) { parts.elect_preferred(tp, done); });
        Result<cluster::Election> e = co_await std::move(op);
        if (!e) {
          out.error_code = code(error_code_for(e.error()));
          out.error_message = e.error().message;
        } else {
          out.error_code = static_cast<int16_t>(e->code);
          if (!e->message.empty()) out.error_message = e->message;
        }
      }
      if (all && out.error_code == code(ErrorCode::election_not_needed)) continue;
      tout.partition_result.push_back(std::move(out));
    }
    if (!all || !tout.partition_result.empty()) {
      resp.replica_election_results.push_back(std::move(tout));
    }
  }
  co_return respond(req, resp);
}

}  // namespace ordo::broker
