// OffsetForLeaderEpoch (API 23, KIP-101/KIP-320): the end offset of a leader epoch, so that a
// consumer that saw records of an epoch can tell whether the log it reads was truncated below
// what it consumed (after an unclean change of leader). Answered by the partition's leader from
// its log's leader-epoch cache (PartitionService::offset_for_leader_epoch).

#include "broker/handlers.h"
#include "protocol/messages/offset_for_leader_epoch_request.h"
#include "protocol/messages/offset_for_leader_epoch_response.h"

namespace ordo::broker {

asio::awaitable<HandlerOutcome> Broker::Handlers::offset_for_leader_epoch(
    Broker& b, Request& req, protocol::OffsetForLeaderEpochRequest& body) {
  using EpochEndOffset = protocol::OffsetForLeaderEpochResponse::EpochEndOffset;
  protocol::OffsetForLeaderEpochResponse resp;
  cluster::PartitionService& parts = partitions(b);
  auto topics = b.topics().snapshot();
  for (const auto& t : body.topics) {
    auto& tout = resp.topics.emplace_back();
    tout.topic = t.topic;
    const TopicInfo* info = b.topics().find(*topics, t.topic);
    for (const auto& p : t.partitions) {
      EpochEndOffset& out = tout.partitions.emplace_back();
      out.partition = p.partition;
      if (!has_partition(info, p.partition)) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        continue;
      }
      model::TopicPartition tp{t.topic, p.partition};
      // current_leader_epoch (v2+, -1 when absent): FENCED / UNKNOWN_LEADER_EPOCH.
      if (auto le = parts.check_leader(tp, p.current_leader_epoch)) {
        out.error_code = code(error_code_for(*le));
        continue;
      }
      const int32_t current = p.current_leader_epoch, epoch = p.leader_epoch;
      auto op = on_callback<Result<cluster::EpochEnd>>([&parts, &tp, current, epoch](auto done) {
        parts.offset_for_leader_epoch(tp, current, epoch, done);
      });
      Result<cluster::EpochEnd> found = co_await std::move(op);
      if (!found) {
        // The leadership moved meanwhile (check_leader says how), or a storage error.
        auto le = parts.check_leader(tp, current);
        out.error_code = code(le ? error_code_for(*le) : error_code_for(found.error()));
        continue;
      }
      out.leader_epoch = found->epoch;
      out.end_offset = found->end_offset;
    }
  }
  co_return respond(req, resp);
}

}  // namespace ordo::broker
