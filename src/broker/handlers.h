#pragma once
// Internal to the broker module: the request handlers and what they share.

#include <chrono>
#include <mutex>
#include <span>
#include <unordered_map>

#include <asio/redirect_error.hpp>
#include <asio/this_coro.hpp>

#include "base/coding.h"
#include "base/log.h"
#include "broker/async.h"
#include "broker/broker.h"
#include "broker/topic_admin.h"
#include "protocol/api.h"
#include "protocol/errors.h"
#include "protocol/header.h"

namespace ordo::protocol {
struct AlterConfigsRequest;
struct CreatePartitionsRequest;
struct CreateTopicsRequest;
struct DeleteGroupsRequest;
struct DeleteRecordsRequest;
struct DeleteTopicsRequest;
struct DescribeClusterRequest;
struct DescribeConfigsRequest;
struct DescribeGroupsRequest;
struct DescribeLogDirsRequest;
struct ElectLeadersRequest;
struct FetchRequest;
struct FindCoordinatorRequest;
struct HeartbeatRequest;
struct IncrementalAlterConfigsRequest;
struct InitProducerIdRequest;
struct JoinGroupRequest;
struct LeaveGroupRequest;
struct ListGroupsRequest;
struct ListOffsetsRequest;
struct MetadataRequest;
struct OffsetCommitRequest;
struct OffsetDeleteRequest;
struct OffsetFetchRequest;
struct OffsetForLeaderEpochRequest;
struct ProduceRequest;
struct SyncGroupRequest;
}  // namespace ordo::protocol

namespace ordo::broker {

using protocol::ErrorCode;

struct Broker::Request {
  protocol::RequestHeader header;
  int16_t version = 0;
  const protocol::ApiInfo* api = nullptr;
  std::span<const uint8_t> body;
  ConnectionState& conn;
  // The whole request frame (body is part of it), owned by Broker::handle for the handler's
  // lifetime. Writable: produce fixes batch header fields in place and appends the batches
  // from here (LogManager::append_borrowed), saving a copy of the records.
  std::span<uint8_t> frame;

  // The writable bytes of `part`, a range of the frame (a decoded field's view).
  std::span<uint8_t> writable(std::span<const uint8_t> part) const;
};

// Encodes a response with its size prefix.
template <typename Resp>
ResponseFrame frame_response(int32_t correlation_id, int16_t version, const Resp& body) {
  protocol::Writer w;
  w.write(int32_t(0));
  protocol::encode_response(w, correlation_id, version, body);
  ResponseFrame f;
  f.size = w.size();
  f.chunks = w.finish();
  auto& first = std::get<std::vector<uint8_t>>(f.chunks.front());
  store_be32(first.data(), uint32_t(f.size - 4));
  return f;
}

template <typename Resp>
HandlerOutcome respond(const Broker::Request& req, const Resp& body) {
  return HandlerOutcome{frame_response(req.header.correlation_id, req.version, body), {}};
}

// Decodes a request body; an error closes the connection.
template <typename Req>
Result<Req> decode_body(const Broker::Request& req, size_t max_length) {
  Req body;
  protocol::Reader r(req.body, max_length);
  if (auto d = body.decode(r, req.version); !d) return std::move(d).error();
  return body;
}

// True when the topic exists (info not null) and has that partition.
inline bool has_partition(const TopicInfo* info, int32_t partition) {
  return info && partition >= 0 && partition < info->partitions;
}

// UNSUPPORTED_VERSION in the API's own response format, when that response carries a
// top-level error code at this version (unsupported.cc); nullopt otherwise.
std::optional<ResponseFrame> unsupported_version_response(int16_t api_key, int16_t version,
                                                          int32_t correlation_id);

// Storage errors as Kafka error codes.
ErrorCode error_code_for(const Error& e);

// A leadership error of the partition seam as its Kafka error code (the numbers are Kafka's).
inline ErrorCode error_code_for(const cluster::LeaderError& e) {
  return ErrorCode(static_cast<int16_t>(e.code));
}

// Copies a leadership error into a partition response: its code, and the current leader into
// the CurrentLeader field where the response has one (encoded from the version that has it).
template <typename Out>
void set_leader_error(Out& out, const cluster::LeaderError& e) {
  out.error_code = code(error_code_for(e));
  if constexpr (requires { out.current_leader.leader_id; }) {
    out.current_leader.leader_id = e.leader_id;
    out.current_leader.leader_epoch = e.leader_epoch;
  }
}

// Wakes long-polling fetches when a partition's high watermark moves. notify() runs on shard
// threads; waiters live on network threads and are woken on their own executor.
class PartitionWaiters {
 public:
  struct Waiter {
    asio::steady_timer timer;
    bool notified = false;  // touched only on the waiter's executor
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
  };

  void add(const model::TopicPartition& tp, const std::shared_ptr<Waiter>& w);
  void remove(const model::TopicPartition& tp, const std::shared_ptr<Waiter>& w);
  void notify(const model::TopicPartition& tp);
  // Wakes every waiter (shutdown).
  void notify_all();

 private:
  std::mutex mu_;
  std::unordered_map<model::TopicPartition, std::vector<std::weak_ptr<Waiter>>> by_tp_;
};

struct Broker::Handlers {
  static asio::awaitable<HandlerOutcome> api_versions(Broker& b, Request& req);
  static asio::awaitable<HandlerOutcome> metadata(Broker& b, Request& req,
                                                  protocol::MetadataRequest& body);
  static asio::awaitable<HandlerOutcome> produce(Broker& b, Request& req,
                                                 protocol::ProduceRequest& body);
  static asio::awaitable<HandlerOutcome> init_producer_id(Broker& b, Request& req,
                                                          protocol::InitProducerIdRequest& body);
  static asio::awaitable<HandlerOutcome> fetch(Broker& b, Request& req,
                                               protocol::FetchRequest& body);
  static asio::awaitable<HandlerOutcome> list_offsets(Broker& b, Request& req,
                                                      protocol::ListOffsetsRequest& body);
  static asio::awaitable<HandlerOutcome> create_topics(Broker& b, Request& req,
                                                       protocol::CreateTopicsRequest& body);
  static asio::awaitable<HandlerOutcome> delete_topics(Broker& b, Request& req,
                                                       protocol::DeleteTopicsRequest& body);
  static asio::awaitable<HandlerOutcome> create_partitions(Broker& b, Request& req,
                                                           protocol::CreatePartitionsRequest& body);
  static asio::awaitable<HandlerOutcome> describe_configs(Broker& b, Request& req,
                                                          protocol::DescribeConfigsRequest& body);
  static asio::awaitable<HandlerOutcome> alter_configs(Broker& b, Request& req,
                                                       protocol::AlterConfigsRequest& body);
  static asio::awaitable<HandlerOutcome> incremental_alter_configs(
      Broker& b, Request& req, protocol::IncrementalAlterConfigsRequest& body);
  static asio::awaitable<HandlerOutcome> delete_records(Broker& b, Request& req,
                                                        protocol::DeleteRecordsRequest& body);
  static asio::awaitable<HandlerOutcome> describe_cluster(Broker& b, Request& req,
                                                          protocol::DescribeClusterRequest& body);
  static asio::awaitable<HandlerOutcome> describe_log_dirs(Broker& b, Request& req,
                                                           protocol::DescribeLogDirsRequest& body);
  static asio::awaitable<HandlerOutcome> offset_for_leader_epoch(
      Broker& b, Request& req, protocol::OffsetForLeaderEpochRequest& body);
  static asio::awaitable<HandlerOutcome> elect_leaders(Broker& b, Request& req,
                                                       protocol::ElectLeadersRequest& body);

  // Consumer groups (group_handlers.cc).
  static asio::awaitable<HandlerOutcome> find_coordinator(Broker& b, Request& req,
                                                          protocol::FindCoordinatorRequest& body);
  static asio::awaitable<HandlerOutcome> join_group(Broker& b, Request& req,
                                                    protocol::JoinGroupRequest& body);
  static asio::awaitable<HandlerOutcome> sync_group(Broker& b, Request& req,
                                                    protocol::SyncGroupRequest& body);
  static asio::awaitable<HandlerOutcome> heartbeat(Broker& b, Request& req,
                                                   protocol::HeartbeatRequest& body);
  static asio::awaitable<HandlerOutcome> leave_group(Broker& b, Request& req,
                                                     protocol::LeaveGroupRequest& body);
  static asio::awaitable<HandlerOutcome> offset_commit(Broker& b, Request& req,
                                                       protocol::OffsetCommitRequest& body);
  static asio::awaitable<HandlerOutcome> offset_fetch(Broker& b, Request& req,
                                                      protocol::OffsetFetchRequest& body);
  static asio::awaitable<HandlerOutcome> list_groups(Broker& b, Request& req,
                                                     protocol::ListGroupsRequest& body);
  static asio::awaitable<HandlerOutcome> describe_groups(Broker& b, Request& req,
                                                         protocol::DescribeGroupsRequest& body);
  static asio::awaitable<HandlerOutcome> delete_groups(Broker& b, Request& req,
                                                       protocol::DeleteGroupsRequest& body);
  static asio::awaitable<HandlerOutcome> offset_delete(Broker& b, Request& req,
                                                       protocol::OffsetDeleteRequest& body);

  // Ensures the named topics exist (auto-creation from Metadata); on the metadata thread.
  static asio::awaitable<void> auto_create(Broker& b, std::vector<std::string> names);

  // What the handlers may use of the Broker besides its public interface (config(),
  // topics()): the one place outside broker.cc that reaches its members. Partitions only
  // through the seam; topic changes only through the TopicAdmin, on the metadata thread
  // (blocking: run them through run_on(metadata(b), ...)).
  static cluster::PartitionService& partitions(Broker& b) { return *b.partitions_; }
  static TopicAdmin& topic_admin(Broker& b) { return *b.admin_; }
  static const ClusterView& view(Broker& b) { return *b.view_; }
  // Cluster mode: the node (topic changes go to it); null on a single node.
  static ClusterNode* cluster_node(Broker& b) { return b.cluster_.get(); }
  // InitProducerId: a producer id no one else hands out (blocking: the metadata thread).
  static Result<int64_t> next_producer_id(Broker& b);
  static asio::any_io_executor metadata(Broker& b) { return b.metadata_.get_executor(); }
  static PartitionWaiters& waiters(Broker& b) { return *b.waiters_; }
  static GroupService& groups(Broker& b) { return *b.groups_; }
  static ProducerIdAllocator& producer_ids(Broker& b) { return *b.producer_ids_; }
  static const std::string& advertised_host(Broker& b) { return b.advertised_host_; }
  static uint16_t advertised_port(Broker& b) { return b.advertised_port_; }
};

// Adapts a handler that takes its decoded request body to the table's signature: a body that
// does not decode closes the connection (with the decoder's message, which names the field).
template <typename Req, asio::awaitable<HandlerOutcome> (*Fn)(Broker&, Broker::Request&, Req&)>
asio::awaitable<HandlerOutcome> decoded(Broker& b, Broker::Request& req) {
  auto body = decode_body<Req>(req, size_t(b.config().socket_request_max_bytes));
  if (!body) co_return HandlerOutcome{{}, std::move(body).error()};
  co_return co_await Fn(b, req, *body);
}

// The APIs this broker answers, with the version ranges it advertises in ApiVersions.
struct SupportedApi {
  int16_t key;
  int16_t min_version;
  int16_t max_version;
  asio::awaitable<HandlerOutcome> (*handler)(Broker&, Broker::Request&);
};
std::span<const SupportedApi> supported_apis();

}  // namespace ordo::broker
