#include "broker/broker.h"

#include <algorithm>
#include <filesystem>
#include <future>
#include <set>

#include "broker/cluster_node.h"
#include "broker/groups.h"
#include "broker/handlers.h"
#include "broker/node_meta.h"
#include "broker/producer_ids.h"
#include "cluster/raft_partitions.h"
#include "protocol/messages/alter_configs_request.h"
#include "protocol/messages/api_versions_request.h"
#include "protocol/messages/api_versions_response.h"
#include "protocol/messages/create_partitions_request.h"
#include "protocol/messages/create_topics_request.h"
#include "protocol/messages/delete_groups_request.h"
#include "protocol/messages/delete_records_request.h"
#include "protocol/messages/delete_topics_request.h"
#include "protocol/messages/describe_cluster_request.h"
#include "protocol/messages/describe_configs_request.h"
#include "protocol/messages/describe_groups_request.h"
#include "protocol/messages/describe_log_dirs_request.h"
#include "protocol/messages/elect_leaders_request.h"
#include "protocol/messages/fetch_request.h"
#include "protocol/messages/find_coordinator_request.h"
#include "protocol/messages/heartbeat_request.h"
#include "protocol/messages/incremental_alter_configs_request.h"
#include "protocol/messages/init_producer_id_request.h"
#include "protocol/messages/join_group_request.h"
#include "protocol/messages/leave_group_request.h"
#include "protocol/messages/list_groups_request.h"
#include "protocol/messages/list_offsets_request.h"
#include "protocol/messages/metadata_request.h"
#include "protocol/messages/metadata_response.h"
#include "protocol/messages/offset_commit_request.h"
#include "protocol/messages/offset_delete_request.h"
#include "protocol/messages/offset_fetch_request.h"
#include "protocol/messages/offset_for_leader_epoch_request.h"
#include "protocol/messages/produce_request.h"
#include "protocol/messages/sync_group_request.h"

namespace ordo::broker {

using model::TopicPartition;

// ---- the API table ----

namespace {
constexpr SupportedApi kApis[] = {
    {0, 0, 9, &decoded<protocol::ProduceRequest, &Broker::Handlers::produce>},
    {1, 4, 12, &decoded<protocol::FetchRequest, &Broker::Handlers::fetch>},
    {2, 0, 7, &decoded<protocol::ListOffsetsRequest, &Broker::Handlers::list_offsets>},
    {3, 0, 12, &decoded<protocol::MetadataRequest, &Broker::Handlers::metadata>},
    {8, 0, 8, &decoded<protocol::OffsetCommitRequest, &Broker::Handlers::offset_commit>},
    {9, 0, 8, &decoded<protocol::OffsetFetchRequest, &Broker::Handlers::offset_fetch>},
    {10, 0, 4, &decoded<protocol::FindCoordinatorRequest, &Broker::Handlers::find_coordinator>},
    {11, 0, 9, &decoded<protocol::JoinGroupRequest, &Broker::Handlers::join_group>},
    {12, 0, 4, &decoded<protocol::HeartbeatRequest, &Broker::Handlers::heartbeat>},
    {13, 0, 5, &decoded<protocol::LeaveGroupRequest, &Broker::Handlers::leave_group>},
    {14, 0, 5, &decoded<protocol::SyncGroupRequest, &Broker::Handlers::sync_group>},
    {15, 0, 5, &decoded<protocol::DescribeGroupsRequest, &Broker::Handlers::describe_groups>},
    {16, 0, 4, &decoded<protocol::ListGroupsRequest, &Broker::Handlers::list_groups>},
    {18, 0, 3, &Broker::Handlers::api_versions},
    {19, 0, 7, &decoded<protocol::CreateTopicsRequest, &Broker::Handlers::create_topics>},
    {20, 0, 6, &decoded<protocol::DeleteTopicsRequest, &Broker::Handlers::delete_topics>},
    {21, 0, 2, &decoded<protocol::DeleteRecordsRequest, &Broker::Handlers::delete_records>},
    {22, 0, 4, &decoded<protocol::InitProducerIdRequest, &Broker::Handlers::init_producer_id>},
    {23, 0, 4,
     &decoded<protocol::OffsetForLeaderEpochRequest, &Broker::Handlers::offset_for_leader_epoch>},
    {32, 0, 4, &decoded<protocol::DescribeConfigsRequest, &Broker::Handlers::describe_configs>},
    {33, 0, 2, &decoded<protocol::AlterConfigsRequest, &Broker::Handlers::alter_configs>},
    {35, 0, 4, &decoded<protocol::DescribeLogDirsRequest, &Broker::Handlers::describe_log_dirs>},
    {37, 0, 3, &decoded<protocol::CreatePartitionsRequest, &Broker::Handlers::create_partitions>},
    {42, 0, 2, &decoded<protocol::DeleteGroupsRequest, &Broker::Handlers::delete_groups>},
    {43, 0, 2, &decoded<protocol::ElectLeadersRequest, &Broker::Handlers::elect_leaders>},
    {44, 0, 1,
     &decoded<protocol::IncrementalAlterConfigsRequest,
              &Broker::Handlers::incremental_alter_configs>},
    {47, 0, 0, &decoded<protocol::OffsetDeleteRequest, &Broker::Handlers::offset_delete>},
    {60, 0, 0, &decoded<protocol::DescribeClusterRequest, &Broker::Handlers::describe_cluster>},
};

const SupportedApi* find_supported(int16_t key) {
  for (const auto& a : kApis) {
    if (a.key == key) return &a;
  }
  return nullptr;
}

}  // namespace

std::span<const SupportedApi> supported_apis() {
  return kApis;
}

ErrorCode error_code_for(const Error& e) {
  switch (e.code) {
    case Errc::not_found:
      return ErrorCode::unknown_topic_or_partition;
    case Errc::out_of_range:
      return ErrorCode::offset_out_of_range;
    case Errc::corrupt:
      return ErrorCode::corrupt_message;
    case Errc::too_large:
      return ErrorCode::message_too_large;
    case Errc::invalid_argument:
      return ErrorCode::invalid_record;
    case Errc::closed:
      return ErrorCode::not_leader_or_follower;  // shutting down: retriable
    case Errc::out_of_order_sequence:
      return ErrorCode::out_of_order_sequence_number;
    case Errc::invalid_producer_epoch:
      return ErrorCode::invalid_producer_epoch;
    default:
      return ErrorCode::kafka_storage_error;
  }
}

// ---- PartitionWaiters ----

void PartitionWaiters::add(const TopicPartition& tp, const std::shared_ptr<Waiter>& w) {
  std::lock_guard lock(mu_);
  by_tp_[tp].push_back(w);
}

void PartitionWaiters::remove(const TopicPartition& tp, const std::shared_ptr<Waiter>& w) {
  std::lock_guard lock(mu_);
  auto it = by_tp_.find(tp);
  if (it == by_tp_.end()) return;
  std::erase_if(it->second, [&](const std::weak_ptr<Waiter>& x) {
    auto s = x.lock();
    return !s || s == w;
  });
  if (it->second.empty()) by_tp_.erase(it);
}

void PartitionWaiters::notify(const TopicPartition& tp) {
  std::vector<std::weak_ptr<Waiter>> wake;
  {
    std::lock_guard lock(mu_);
    auto it = by_tp_.find(tp);
    if (it == by_tp_.end()) return;
    wake = std::move(it->second);
    by_tp_.erase(it);
  }
  for (auto& weak : wake) {
    auto w = weak.lock();
    if (!w) continue;
    asio::post(w->timer.get_executor(), [w] {
      w->notified = true;
      w->timer.cancel();
    });
  }
}

void PartitionWaiters::notify_all() {
  std::vector<model::TopicPartition> all;
  {
    std::lock_guard lock(mu_);
    for (const auto& [tp, w] : by_tp_) all.push_back(tp);
  }
  for (const auto& tp : all) notify(tp);
}

// ---- open / close ----

// This node alone: the only broker and the controller; every partition led here as the table
// says, every replica in sync.
class LocalClusterView final : public ClusterView {
 public:
  explicit LocalClusterView(const Broker& b) : b_(b) {}
  std::vector<BrokerEndpoint> brokers() const override {
    auto [host, port] = b_.advertised();
    return {{b_.config().node_id, std::move(host), int32_t(port), std::nullopt}};
  }
  int32_t controller() const override { return b_.config().node_id; }
  std::optional<PartitionState> partition(const cluster::TableSnapshot& table,
                                          const TopicPartition& tp) const override {
    const cluster::PartitionAssignment* a = table.find(tp);
    if (a == nullptr) return std::nullopt;
    return PartitionState{a->leader, a->leader_epoch, a->replicas, a->replicas, {}};
  }

 private:
  const Broker& b_;
};

namespace {
// The group service's settings from the broker's (both modes).
GroupServiceOptions group_service_options(const BrokerConfig& c) {
  GroupServiceOptions go;
  go.group.min_session_timeout_ms = c.group_min_session_timeout_ms;
  go.group.max_session_timeout_ms = c.group_max_session_timeout_ms;
  go.group.initial_rebalance_delay_ms = c.group_initial_rebalance_delay_ms;
  go.group.group_max_size = c.group_max_size;
  go.partitions = c.offsets_topic_num_partitions;
  go.retention_ms = c.offsets_retention_minutes * 60'000;
  go.retention_check_interval_ms = c.offsets_retention_check_interval_ms;
  go.metadata_max_bytes = c.offset_metadata_max_bytes;
  return go;
}
}  // namespace

Broker::Broker(BrokerConfig config) : config_(std::move(config)) {}

Broker::~Broker() {
  auto r = close();
  if (!r) ORDO_LOG_ERROR("broker close: {}", r.error().to_string());
}

Result<std::unique_ptr<Broker>> Broker::open(BrokerConfig config) {
  ORDO_TRY(config.validate());
  auto b = std::unique_ptr<Broker>(new Broker(std::move(config)));
  const BrokerConfig& c = b->config_;
  b->advertised_host_ = c.advertised_host.empty() ? c.listen_host : c.advertised_host;
  b->advertised_port_ = c.advertised_port ? c.advertised_port : c.listen_port;
  b->waiters_ = std::make_unique<PartitionWaiters>();

  // The network threads first: with storage.shard.mode = network the logs run on them, and
  // the recovery below already needs them.
  for (int i = 0; i < c.network_threads; ++i) {
    b->network_.push_back(std::make_unique<asio::io_context>(1));
    b->network_work_.emplace_back(b->network_.back()->get_executor());
  }
  for (auto& ctx : b->network_) {
    b->network_threads_.emplace_back([ctx = ctx.get()] { ctx->run(); });
  }

  if (c.cluster_mode()) {
    ORDO_TRY(open_cluster(*b));
    return b;
  }

  storage::LogManagerOptions o;
  o.data_dir = c.data_dir;
  o.shards = c.shards;
  if (c.shard_mode == ShardMode::network) o.shard_contexts = b->network_contexts();
  o.flush_threads = c.flush_threads;
  o.default_config = c.log;
  o.truncate_corrupt = c.truncate_corrupt;
  o.cleaner.enabled = c.log_cleaner_enable;
  o.cleaner.backoff_ms = c.log_cleaner_backoff_ms;
  o.cleaner.key_map_bytes = c.log_cleaner_dedupe_buffer_size;
  o.cleaner.io_bytes_per_second = c.log_cleaner_io_max_bytes_per_second;
  std::string registry_name(TopicRegistry::kFileName);
  std::string ids_name(ProducerIdAllocator::kFileName);
  o.reserved_names = {registry_name, registry_name + ".tmp", ids_name, ids_name + ".tmp"};
  PartitionWaiters* waiters = b->waiters_.get();
  b->table_ = std::make_unique<cluster::PartitionTable>();
  // The partitions' owner (one node) decides their high watermarks and wakes long polls.
  auto local_partitions = std::make_unique<cluster::LocalPartitions>(
      c.node_id, *b->table_, [waiters](const TopicPartition& tp) { waiters->notify(tp); });
  o.high_watermark = local_partitions->high_watermark_policy();
  b->logs_ = ORDO_TRY(storage::LogManager::open(o));
  local_partitions->attach(*b->logs_);
  b->partitions_ = std::move(local_partitions);
  b->local_view_ = std::make_unique<LocalClusterView>(*b);
  b->view_ = b->local_view_.get();
  b->topics_ = ORDO_TRY(TopicRegistry::open(c.data_dir));
  b->producer_ids_ =
      std::make_unique<ProducerIdAllocator>(ORDO_TRY(ProducerIdAllocator::open(c.data_dir)));
  storage::LogManager& logs = *b->logs_;

  // Deletions that a crash interrupted.
  auto on_disk = logs.status();
  for (const auto& name : b->topics_->pending_deletes()) {
    for (const auto& p : on_disk) {
      if (p.tp.topic == name) ORDO_TRY(logs.remove_sync(p.tp));
    }
    ORDO_TRY(b->topics_->end_delete(name));
    ORDO_LOG_INFO("topic {}: finished an interrupted delete", name);
  }
  // Creations that a crash interrupted are undone: the partitions they made go (a topic is
  // created whole or not at all).
  for (const auto& pc : b->topics_->pending_creates()) {
    int32_t removed = 0;
    for (const auto& p : on_disk) {
      if (p.tp.topic == pc.topic && p.tp.partition >= pc.from && p.tp.partition < pc.to) {
        ORDO_TRY(logs.remove_sync(p.tp));
        ++removed;
      }
    }
    ORDO_TRY(b->topics_->end_create(pc.topic));
    ORDO_LOG_WARN("topic {}: undid an interrupted creation of partitions [{}, {}) ({} made)",
                  pc.topic, pc.from, pc.to, removed);
  }
  on_disk = logs.status();

  // Partition dirs of topics the registry does not know (data from before the registry, or a
  // copied directory): registered with default configs rather than ignored.
  std::map<std::string, int32_t> orphans;
  auto snapshot = b->topics_->snapshot();
  for (const auto& p : on_disk) {
    if (snapshot->contains(p.tp.topic)) continue;
    int32_t& n = orphans[p.tp.topic];
    n = std::max(n, p.tp.partition + 1);
  }
  for (const auto& [name, n] : orphans) {
    if (!model::is_valid_topic_name(name)) {
      ORDO_LOG_WARN("data dir: partition dirs of '{}' are not a valid topic; ignored", name);
      continue;
    }
    ORDO_LOG_WARN(
        "topic {}: partition dirs without a registry entry; registered with {} partitions", name,
        n);
    ORDO_TRY(b->topics_->put(TopicInfo{name, random_topic_id(), n, {}}));
  }

  // The partition table from the registry; then the reconciler makes every registered
  // partition exist and run with its topic's settings. It is given the logs on disk that the
  // table has: others (partitions beyond a topic's count, invalid names) are left alone.
  std::vector<cluster::Command> commands;
  for (const auto& [name, t] : *b->topics_->snapshot()) {
    auto settings = resolve_topic_settings(c, t.configs);
    if (!settings) {
      return make_error(Errc::corrupt, "topic {}: {}", name, settings.error().message);
    }
    commands.push_back(TopicAdmin::create_command(c.node_id, t, settings->log));
  }
  ORDO_TRY(b->table_->apply_all(commands));
  std::vector<TopicPartition> local;
  {
    auto table = b->table_->snapshot();
    for (const auto& p : on_disk) {
      if (table->find(p.tp)) local.push_back(p.tp);
    }
  }
  b->reconciler_ = std::make_unique<cluster::Reconciler>(c.node_id, logs, local);
  {
    cluster::Reconciler::Report report;
    auto r = b->reconciler_->reconcile(*b->table_->snapshot(), report);
    for (const auto& tp : report.created) {
      ORDO_LOG_WARN("partition {} was missing; created empty", tp.to_string());
    }
    for (const auto& [tp, e] : report.config_errors) {
      ORDO_LOG_ERROR("partition {}: {}", tp.to_string(), e.to_string());
    }
    ORDO_TRY(r);
  }
  b->admin_ = std::make_unique<TopicAdmin>(c, *b->topics_, *b->table_, *b->reconciler_,
                                           b->create_step_hook_);

  // Consumer groups: __consumer_offsets exists (compacted), then its records are replayed.
  {
    auto topics = b->topics_->snapshot();
    const TopicInfo* offsets = b->topics_->find(*topics, kOffsetsTopic);
    int32_t partitions = c.offsets_topic_num_partitions;
    if (offsets == nullptr) {
      auto r = b->admin_->create_topic(
          kOffsetsTopic, partitions,
          {{"cleanup.policy", "compact"},
           {"segment.bytes", std::to_string(c.offsets_topic_segment_bytes)}},
          false);
      if (r.error != ErrorCode::none) {
        return make_error(Errc::io, "creating {}: {}", kOffsetsTopic, r.message);
      }
    } else if (offsets->partitions != partitions) {
      ORDO_LOG_WARN("{} has {} partitions; offsets.topic.num.partitions={} is ignored",
                    kOffsetsTopic, offsets->partitions, partitions);
      partitions = offsets->partitions;
    }
    GroupServiceOptions go = group_service_options(c);
    go.partitions = partitions;
    b->groups_ = ORDO_TRY(GroupService::open(go, *b->partitions_));
  }

  b->metadata_work_.emplace(b->metadata_.get_executor());
  b->metadata_thread_ = std::thread([ctx = &b->metadata_] { ctx->run(); });
  return b;
}

// Cluster mode: the partitions are Raft groups (RaftPartitions), topics come from the
// controller's log (ClusterNode), the registry is its in-memory view.
Result<void> Broker::open_cluster(Broker& b) {
  const BrokerConfig& c = b.config_;
  std::error_code ec;
  std::filesystem::create_directories(c.data_dir, ec);
  if (ec) return make_error(Errc::io, "data.dir {}: {}", c.data_dir, ec.message());
  auto meta = ORDO_TRY(load_or_create_node_meta(c.data_dir, c.node_id, c.cluster_id));
  if (meta.created) {
    ORDO_LOG_INFO("node {}: new data dir {} (incarnation {:016x})", c.node_id, c.data_dir,
                  meta.incarnation);
  }

  storage::LogManagerOptions o;
  o.data_dir = c.data_dir;
  o.shards = c.shards;
  if (c.shard_mode == ShardMode::network) o.shard_contexts = b.network_contexts();
  o.flush_threads = c.flush_threads;
  o.default_config = c.log;
  o.truncate_corrupt = c.truncate_corrupt;
  // Compaction leaves offset gaps, which a Raft log cannot have: no cleaner in cluster mode
  // yet (docs/cluster.md, "Not yet").
  o.cleaner.enabled = false;
  std::string meta_name(kNodeMetaFileName);
  o.reserved_names = {meta_name, meta_name + ".tmp", std::string(kControllerDirName)};
  PartitionWaiters* waiters = b.waiters_.get();
  b.table_ = std::make_unique<cluster::PartitionTable>();
  auto sink = std::make_shared<FrameSink>();
  cluster::RaftPartitionsOptions ro;
  ro.self = c.node_id;
  ro.incarnation = meta.incarnation;
  ro.core.election_ticks = c.raft_election_ticks;
  ro.core.heartbeat_ticks = c.raft_heartbeat_ticks;
  ro.tick_ms = c.raft_tick_ms;
  ro.write_caching = c.raft_write_caching;
  ro.preferred_leaders = true;  // leadership returns to the first assigned replica
  ro.send = [sink](std::vector<raft::OutFrame> frames) { sink->send(std::move(frames)); };
  ro.on_high_watermark = [waiters](const TopicPartition& tp) { waiters->notify(tp); };
  // The group service loads a partition of __consumer_offsets while this node leads it. It is
  // made before the node opens the partitions' groups, so that no leadership goes unseen.
  auto group_hook = std::make_shared<std::atomic<GroupService*>>(nullptr);
  ro.on_leader = [group_hook](const TopicPartition& tp, cluster::NodeId leader, int32_t term) {
    ORDO_LOG_DEBUG("partition {}: leader {} (epoch {})", tp.to_string(), leader, term);
    if (tp.topic != kOffsetsTopic) return;
    if (GroupService* groups = group_hook->load()) {
      groups->on_partition_leader(tp.partition, leader, term);
    }
  };
  auto raft = std::make_unique<cluster::RaftPartitions>(std::move(ro), *b.table_);
  o.high_watermark = raft->high_watermark_policy();
  b.logs_ = ORDO_TRY(storage::LogManager::open(o));
  raft->attach(*b.logs_);
  b.topics_ = TopicRegistry::in_memory();
  std::vector<TopicPartition> on_disk;
  for (const auto& p : b.logs_->status()) on_disk.push_back(p.tp);
  b.transport_ = std::make_unique<asio::io_context>(1);
  b.transport_work_.emplace(b.transport_->get_executor());
  b.transport_thread_ = std::thread([ctx = b.transport_.get()] { ctx->run(); });
  // Consumer groups: the coordinator of a group is the leader of its partition of
  // __consumer_offsets (created on the first FindCoordinator); docs/broker.md.
  GroupServiceOptions go = group_service_options(c);
  go.replicated = true;
  go.self = c.node_id;
  go.table = b.table_.get();
  b.groups_ = ORDO_TRY(GroupService::open(go, *raft));
  group_hook->store(b.groups_.get());
  Broker* self = &b;
  b.cluster_ = ORDO_TRY(ClusterNode::open(
      ClusterNodeDeps{c, meta, *b.transport_, *b.logs_, *b.table_, *raft, *b.topics_,
                      [self] { return self->advertised(); }, std::move(on_disk), sink}));
  b.partitions_ = std::move(raft);
  b.view_ = b.cluster_.get();

  b.metadata_work_.emplace(b.metadata_.get_executor());
  b.metadata_thread_ = std::thread([ctx = &b.metadata_] { ctx->run(); });
  return ok();
}

std::function<std::string()> Broker::cluster_status() {
  if (!cluster_) return {};
  return [node = cluster_.get()] { return node->status_json(); };
}

Result<int64_t> Broker::Handlers::next_producer_id(Broker& b) {
  if (b.cluster_) return b.cluster_->next_producer_id();
  return b.producer_ids_->next();
}

void Broker::begin_shutdown() {
  stopping_.store(true);
  waiters_->notify_all();
  if (groups_) groups_->begin_shutdown();
}

void Broker::set_advertised(std::string host, uint16_t port) {
  std::lock_guard lock(advertised_mu_);
  advertised_host_ = std::move(host);
  advertised_port_ = port;
}

std::pair<std::string, uint16_t> Broker::advertised() const {
  std::lock_guard lock(advertised_mu_);
  return {advertised_host_, advertised_port_};
}

std::vector<asio::io_context*> Broker::network_contexts() const {
  std::vector<asio::io_context*> out;
  for (const auto& ctx : network_) out.push_back(ctx.get());
  return out;
}

Result<void> Broker::close() {
  for (const auto& ctx : network_) {
    ORDO_ASSERT_MSG(!ctx->get_executor().running_in_this_thread(),
                    "Broker::close() on a network thread would wait for itself");
  }
  if (metadata_work_) {
    metadata_work_.reset();
    metadata_thread_.join();
  }
  // Group appends in flight finish first (the group thread posts their answers); then the
  // logs close while the network threads run (they may be the shards), then those stop.
  if (groups_) groups_->stop();
  // Cluster mode: the controller and the transport stop, then the partitions' groups (their
  // pending acknowledgements fail), then the logs close.
  if (cluster_) cluster_->stop();
  if (auto* raft = dynamic_cast<cluster::RaftPartitions*>(partitions_.get())) raft->stop();
  Result<void> closed = ok();
  if (logs_) closed = logs_->close();
  if (transport_) {
    transport_work_.reset();
    transport_->stop();
    if (transport_thread_.joinable()) transport_thread_.join();
  }
  network_work_.clear();
  for (auto& ctx : network_) ctx->stop();
  for (auto& t : network_threads_) {
    if (t.joinable()) t.join();
  }
  return closed;
}

// ---- dispatch ----

std::span<uint8_t> Broker::Request::writable(std::span<const uint8_t> part) const {
  const auto begin = reinterpret_cast<uintptr_t>(frame.data());
  const auto at = reinterpret_cast<uintptr_t>(part.data());
  ORDO_ASSERT(part.empty() || (at >= begin && at - begin <= frame.size() &&
                               part.size() <= frame.size() - (at - begin)));
  if (part.empty()) return {};
  return frame.subspan(at - begin, part.size());
}

asio::awaitable<HandlerOutcome> Broker::handle(std::vector<uint8_t> frame, ConnectionState& conn) {
  size_t max_len = size_t(config_.socket_request_max_bytes);
  auto parsed = protocol::parse_request_header(frame, max_len);
  if (!parsed) co_return HandlerOutcome{{}, std::move(parsed).error()};
  Request req{parsed->header, parsed->header.request_api_version, parsed->api, parsed->body, conn,
              frame};
  const SupportedApi* api = find_supported(req.header.request_api_key);
  if (api && req.version >= api->min_version && req.version <= api->max_version) {
    co_return co_await api->handler(*this, req);
  }
  if (req.header.request_api_key == protocol::kApiKeyApiVersions) {
    // A version this broker does not speak: answer in v0 with UNSUPPORTED_VERSION and the
    // ranges, so the client can pick one (KIP-511).
    req.version = 0;
    co_return co_await Handlers::api_versions(*this, req);
  }
  // Another API or version: UNSUPPORTED_VERSION where the response can carry it (the
  // connection stays open, with one log line), else the connection is closed.
  if (auto r = unsupported_version_response(req.header.request_api_key, req.version,
                                            req.header.correlation_id)) {
    ORDO_LOG_WARN("connection {}: {} v{} is not supported: answered UNSUPPORTED_VERSION", conn.peer,
                  req.api->name, req.version);
    co_return HandlerOutcome{std::move(*r), {}};
  }
  co_return HandlerOutcome{
      {},
      make_error(Errc::invalid_argument, "{} v{} is not supported (correlation id {})",
                 req.api->name, req.version, req.header.correlation_id)};
}

// ---- ApiVersions ----

asio::awaitable<HandlerOutcome> Broker::Handlers::api_versions(Broker&, Request& req) {
  protocol::ApiVersionsResponse resp;
  const SupportedApi* self = find_supported(protocol::kApiKeyApiVersions);
  if (req.header.request_api_version > self->max_version) {
    resp.error_code = code(ErrorCode::unsupported_version);
  }
  for (const auto& a : kApis) resp.api_keys.push_back({a.key, a.min_version, a.max_version, {}});
  co_return respond(req, resp);
}

// ---- Metadata ----

asio::awaitable<void> Broker::Handlers::auto_create(Broker& b, std::vector<std::string> names) {
  auto op0 = run_on<int>(metadata(b), [&b, names] {
    for (const auto& name : names) {
      if (ClusterNode* node = cluster_node(b)) {
        // Only the controller creates (elsewhere: NOT_CONTROLLER, and the client retries).
        auto r = node->create_topic(CreateTopicSpec{.name = name});
        if (r.error == ErrorCode::none) {
          ORDO_LOG_INFO("topic {}: auto-created with {} partitions", name, r.topic.partitions);
        }
        continue;
      }
      auto r = topic_admin(b).create_topic(name, b.config_.num_partitions, {}, false);
      if (r.error == ErrorCode::none) {
        ORDO_LOG_INFO("topic {}: auto-created with {} partitions", name, r.topic.partitions);
      }
    }
    return 0;
  });
  co_await std::move(op0);
}

asio::awaitable<HandlerOutcome> Broker::Handlers::metadata(Broker& b, Request& req,
                                                           protocol::MetadataRequest& body) {
  const int16_t v = req.version;
  // v0: an empty list means every topic; v1+: null means every topic.
  bool all = !body.topics || (v == 0 && body.topics->empty());
  bool may_create = b.config_.auto_create_topics && (v < 4 || body.allow_auto_topic_creation);

  auto topics = b.topics_->snapshot();
  if (!all && may_create) {
    std::vector<std::string> missing;
    for (const auto& t : *body.topics) {
      if (t.name && !topics->contains(*t.name) && model::is_valid_topic_name(*t.name)) {
        missing.push_back(*t.name);
      }
    }
    if (!missing.empty()) {
      co_await auto_create(b, std::move(missing));
      topics = b.topics_->snapshot();
    }
  }

  protocol::MetadataResponse resp;
  const ClusterView& cluster = view(b);
  for (auto& e : cluster.brokers()) {
    resp.brokers.push_back({e.id, std::move(e.host), e.port, std::move(e.rack), {}});
  }
  resp.cluster_id = b.config_.cluster_id;
  resp.controller_id = cluster.controller();
  // Leaders, epochs and replicas: the partition table's as the cluster view sees them. The
  // table changes before the registry publishes a topic and after the registry drops one, so
  // it holds every registered partition, except that a topic deleted between the two
  // snapshots has no leader.
  auto table = b.table_->snapshot();
  auto describe = [&](const TopicInfo& t) {
    protocol::MetadataResponse::MetadataResponseTopic out;
    out.name = t.name;
    out.topic_id = t.id;
    for (int32_t i = 0; i < t.partitions; ++i) {
      protocol::MetadataResponse::MetadataResponsePartition p;
      p.partition_index = i;
      auto state = cluster.partition(*table, TopicPartition{t.name, i});
      if (state && state->leader != cluster::kNoLeader) {
        p.leader_id = state->leader;
        p.leader_epoch = state->leader_epoch;
        p.replica_nodes = std::move(state->replicas);
        p.isr_nodes = std::move(state->isr);
        p.offline_replicas = std::move(state->offline);
      } else if (state) {  // a partition without a leader right now (an election)
        p.error_code = code(ErrorCode::leader_not_available);
        p.leader_id = cluster::kNoLeader;
        p.leader_epoch = state->leader_epoch;
        p.replica_nodes = std::move(state->replicas);
        p.isr_nodes = std::move(state->isr);
        p.offline_replicas = std::move(state->offline);
      } else {
        p.error_code = code(ErrorCode::leader_not_available);
        p.leader_id = cluster::kNoLeader;
        p.leader_epoch = -1;
      }
      out.partitions.push_back(std::move(p));
    }
    out.is_internal = t.name == kOffsetsTopic;
    return out;
  };
  if (all) {
    for (const auto& [name, t] : *topics) resp.topics.push_back(describe(t));
  } else {
    for (const auto& want : *body.topics) {
      const TopicInfo* found = nullptr;
      if (want.name) {
        found = b.topics_->find(*topics, *want.name);
      } else {
        for (const auto& [name, t] : *topics) {
          if (t.id == want.topic_id) found = &t;
        }
      }
      if (found) {
        resp.topics.push_back(describe(*found));
        continue;
      }
      protocol::MetadataResponse::MetadataResponseTopic out;
      out.name = want.name;
      out.topic_id = want.topic_id;
      if (!want.name) {
        out.error_code = code(ErrorCode::unknown_topic_id);
      } else if (!model::is_valid_topic_name(*want.name)) {
        out.error_code = code(ErrorCode::invalid_topic_exception);
      } else {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
      }
      resp.topics.push_back(std::move(out));
    }
  }
  co_return respond(req, resp);
}

}  // namespace ordo::broker
