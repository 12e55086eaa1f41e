#include "broker/cluster_node.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <future>
#include <random>

#include <fmt/core.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "base/file.h"
#include "base/log.h"
#include "cluster/controller_group.h"
#include "cluster/controller_logic.h"
#include "cluster/metadata.h"
#include "cluster/peer_rpc.h"
#include "cluster/peer_transport.h"
#include "cluster/placement.h"
#include "cluster/raft_partitions.h"
#include "cluster/raft_storage.h"
#include "cluster/reconciler.h"
#include "raft/batcher.h"
#include "raft/wire.h"
#include "storage/log_manager.h"

namespace ordo::broker {

using cluster::BrokerRecord;
using model::TopicPartition;
using protocol::ErrorCode;

namespace {

// Control RPC types (the u16 of a control frame).
constexpr uint16_t kRpcRegister = 1;     // body: a RegisterBroker command; reply: empty
constexpr uint16_t kRpcAllocateIds = 2;  // body: empty; reply: an AllocateProducerIds
constexpr uint16_t kRpcHeartbeat = 3;    // body: {"epoch": E}; reply: empty
constexpr uint16_t kRpcTopicChange = 4;  // body: a TopicRequest; reply: a TopicAnswer (JSON)
constexpr uint16_t kRpcLeaders = 5;      // body: [[topic, partition, epoch], ...]; reply: empty
constexpr int64_t kRpcTimeoutMs = 3000;
// A forwarded topic change waits for the leader's commit.
constexpr int64_t kForwardTimeoutMs = 15000;
// How long a node waits to apply a change the leader committed before it answers anyway.
constexpr int64_t kApplyWaitMs = 10000;
constexpr int64_t kProducerIdBlock = 1000;
constexpr std::string_view kCheckpointFileName = "metadata.checkpoint";
constexpr size_t kMaxCheckpointBytes = size_t(1) << 30;
constexpr size_t kMaxPidQueue = 1024;
constexpr size_t kMaxLeaderReports = 1000;  // partitions per leader report
// The controller's tick (fencing) and the leader reports.
constexpr auto kTickInterval = std::chrono::milliseconds(200);
// How long a topic change waits for the controller's log before it answers REQUEST_TIMED_OUT.
constexpr auto kChangeTimeout = std::chrono::seconds(30);

// A topic change as it travels to the controller leader (op: create, delete, partitions,
// configs; `partitions` is the new total for "partitions").
struct TopicRequest {
  std::string op;
  std::string name;
  int32_t partitions = -1;
  int32_t rf = -1;
  std::vector<std::vector<int32_t>> assignment;
  std::map<std::string, std::string> configs;
  bool validate_only = false;
};

// The controller leader's answer: the Kafka error, or the offset of the change's last command
// (-1: nothing proposed) and, for a creation, its partition count and replication factor.
struct TopicAnswer {
  ErrorCode error = ErrorCode::none;
  std::string message;
  int64_t offset = -1;
  int32_t partitions = 0;
  int32_t rf = 0;
};

nlohmann::json encode_request(const TopicRequest& r) {
  return {{"op", r.op},
          {"name", r.name},
          {"partitions", r.partitions},
          {"rf", r.rf},
          {"assignment", r.assignment},
          {"configs", r.configs},
          {"validate_only", r.validate_only}};
}

Result<TopicRequest> decode_request(std::span<const uint8_t> bytes) {
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error(Errc::corrupt, "not a topic request");
  try {
    TopicRequest r;
    r.op = j.at("op").get<std::string>();
    r.name = j.at("name").get<std::string>();
    r.partitions = j.at("partitions").get<int32_t>();
    r.rf = j.at("rf").get<int32_t>();
    r.assignment = j.at("assignment").get<std::vector<std::vector<int32_t>>>();
    r.configs = j.at("configs").get<std::map<std::string, std::string>>();
    r.validate_only = j.at("validate_only").get<bool>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::corrupt, "topic request: {}", e.what());
  }
}

std::vector<uint8_t> encode_answer(const TopicAnswer& a) {
  nlohmann::json j = {{"error", int16_t(a.error)},
                      {"message", a.message},
                      {"offset", a.offset},
                      {"partitions", a.partitions},
                      {"rf", a.rf}};
  std::string text = j.dump();
  return {text.begin(), text.end()};
}

Result<TopicAnswer> decode_answer(std::span<const uint8_t> bytes) {
  auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error(Errc::corrupt, "not a topic answer");
  try {
    TopicAnswer a;
    a.error = ErrorCode(j.at("error").get<int16_t>());
    a.message = j.at("message").get<std::string>();
    a.offset = j.at("offset").get<int64_t>();
    a.partitions = j.at("partitions").get<int32_t>();
    a.rf = j.at("rf").get<int32_t>();
    return a;
  } catch (const nlohmann::json::exception& e) {
    return make_error(Errc::corrupt, "topic answer: {}", e.what());
  }
}

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

std::string topic_of(const cluster::Command& c) {
  return std::visit(
      [](const auto& x) -> std::string {
        if constexpr (requires { x.name; }) {
          return x.name;
        } else {
          return x.tp.topic;
        }
      },
      c);
}

bool contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

void FrameSink::send(std::vector<raft::OutFrame> frames) {
  cluster::PeerTransport* t = transport_.load();
  if (t == nullptr) return;
  std::vector<std::pair<raft::NodeId, std::vector<uint8_t>>> out;
  out.reserve(frames.size());
  for (auto& f : frames) out.emplace_back(f.to, std::move(f.bytes));
  t->send(std::move(out));
}

struct ClusterNode::Impl : std::enable_shared_from_this<Impl> {
  Impl(ClusterNodeDeps d)
      : c(d.config),
        meta(std::move(d.meta)),
        transport_ctx(d.transport),
        logs(d.logs),
        table(d.table),
        partitions(d.partitions),
        topics(d.topics),
        advertised(std::move(d.advertised)),
        sink(std::move(d.sink)),
        register_timer(ctl),
        tick_timer(ctl) {}

  const BrokerConfig& c;
  NodeMeta meta;
  asio::io_context& transport_ctx;
  storage::LogManager& logs;
  cluster::PartitionTable& table;
  cluster::RaftPartitions& partitions;
  TopicRegistry& topics;
  std::function<std::pair<std::string, uint16_t>()> advertised;
  std::shared_ptr<FrameSink> sink;
  std::vector<VoterAddress> voters;
  std::string peer_host;
  uint16_t peer_port = 0;

  // The controller thread.
  asio::io_context ctl{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> ctl_work;
  std::thread ctl_thread;

  std::unique_ptr<cluster::PeerTransport> transport;
  std::unique_ptr<cluster::PeerRpc> rpc;
  std::unique_ptr<raft::Batcher> decoder;  // transport thread only
  std::unique_ptr<cluster::ControllerGroup> controller;

  // Controller thread only.
  cluster::ClusterState state;
  std::unique_ptr<cluster::Reconciler> reconciler;
  std::map<TopicPartition, raft::GroupId> open_groups;
  std::string checkpoint_path;     // <controller dir>/metadata.checkpoint
  int64_t checkpoint_offset = -1;  // the controller log offset the last checkpoint covers
  asio::steady_timer register_timer;
  asio::steady_timer tick_timer;
  bool registering = false;                       // a registration or heartbeat in flight
  bool reporting = false;                         // a leader report in flight
  std::optional<cluster::ControllerLogic> logic;  // on the controller leader only
  std::deque<std::pair<int32_t, std::function<void(Result<std::vector<uint8_t>>)>>> pid_queue;
  uint64_t pid_generation = 0;  // +1 each time the queue is failed (answers of older proposals
                                // then belong to nobody)

  // Any thread.
  mutable std::mutex mu;
  std::vector<BrokerRecord> broker_records;  // by id (a copy of the state's)
  std::mutex pid_mu;
  int64_t pid_next = 0;
  int64_t pid_end = 0;
  std::atomic<bool> stopped{false};

  // ---- frames in and out ----

  void send_frames(std::vector<raft::OutFrame> frames) {
    std::vector<std::pair<raft::NodeId, std::vector<uint8_t>>> out;
    out.reserve(frames.size());
    for (auto& f : frames) out.emplace_back(f.to, std::move(f.bytes));
    transport->send(std::move(out));
  }

  // Transport thread.
  void on_frame(raft::NodeId from, std::span<const uint8_t> frame) {
    auto header = raft::wire::read_header(frame);
    if (!header) return;  // the transport checked it already
    if (header->kind == uint8_t(raft::wire::FrameKind::control)) {
      rpc->on_frame(from, frame);
      return;
    }
    auto received = decoder->receive(frame);
    if (!received) {
      ORDO_LOG_DEBUG("frame from node {} dropped: {}", from, received.error().to_string());
      return;
    }
    if (received->reply) transport->send(from, std::move(*received->reply));
    if (received->peer_error) {
      ORDO_LOG_WARN("node {} refused a frame of ours: {}", from, received->peer_error->message);
    }
    std::vector<raft::Message> to_controller;
    std::vector<raft::Message> to_partitions;
    for (auto& m : received->messages) {
      (m.group == cluster::kControllerGroup ? to_controller : to_partitions)
          .push_back(std::move(m));
    }
    if (!to_controller.empty()) controller->deliver(std::move(to_controller));
    if (!to_partitions.empty()) partitions.deliver(std::move(to_partitions));
  }

  // ---- applying the controller's log (controller thread) ----

  void apply(std::span<const uint8_t> bytes, int64_t offset) {
    if (offset <= checkpoint_offset) return;  // in the restored checkpoint
    auto cmd = cluster::decode_command(bytes);
    if (!cmd) {
      ORDO_LOG_ERROR("controller log offset {}: {}", offset, cmd.error().to_string());
      return;
    }
    auto r = state.apply(*cmd, offset);
    if (!r) {
      ORDO_LOG_WARN("controller log offset {}: {} not applied: {}", offset,
                    cluster::command_name(*cmd), r.error().to_string());
      return;
    }
    std::visit(overloaded{
                   [&](const cluster::Command& tc) {
                     if (std::holds_alternative<cluster::SetLeader>(tc)) {
                       table = state.table();  // a leader report: no log or group changes
                     } else {
                       on_table_change(topic_of(tc));
                     }
                   },
                   [&](const cluster::RegisterBroker&) { on_brokers_change(); },
                   [&](const cluster::FenceBroker&) { on_brokers_change(); },
                   [&](const cluster::UnfenceBroker&) { on_brokers_change(); },
                   [&](const cluster::AllocateProducerIds&) {},
                   [&](const cluster::TopicConfigs& t) { sync_registry(t.name); },
               },
               *cmd);
    maybe_checkpoint();
  }

  // ---- metadata checkpoints (controller thread) ----

  // Every metadata.snapshot.interval.commands applied, the state goes to a file beside the
  // controller's log (atomically, fsynced). It holds only applied, hence committed, commands.
  void maybe_checkpoint() {
    const int64_t every = c.metadata_snapshot_interval_commands;
    if (every <= 0 || state.applied_offset() - std::max<int64_t>(checkpoint_offset, -1) < every)
      return;
    auto bytes = state.checkpoint();
    if (auto r = write_file_atomic(checkpoint_path, bytes); !r) {
      ORDO_LOG_WARN("metadata checkpoint {}: {}", checkpoint_path, r.error().to_string());
      return;
    }
    checkpoint_offset = state.applied_offset();
    ORDO_LOG_DEBUG("metadata checkpoint at controller log offset {} ({} bytes)", checkpoint_offset,
                   bytes.size());
  }

  // At open, before the controller's log is replayed: the checkpoint's state, and the logs,
  // groups and registry it implies; the replay then applies only the commands after it. A
  // damaged checkpoint is ignored (the whole log is replayed).
  void restore_checkpoint() {
    std::error_code ec;
    if (!std::filesystem::exists(checkpoint_path, ec)) return;
    auto text = read_file(checkpoint_path, kMaxCheckpointBytes);
    if (!text) {
      ORDO_LOG_WARN("metadata checkpoint {}: {} (replaying the whole log)", checkpoint_path,
                    text.error().to_string());
      return;
    }
    auto restored = cluster::ClusterState::restore(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text->data()), text->size()));
    if (!restored) {
      ORDO_LOG_WARN("metadata checkpoint {}: {} (replaying the whole log)", checkpoint_path,
                    restored.error().to_string());
      return;
    }
    state = std::move(*restored);
    checkpoint_offset = state.applied_offset();
    table = state.table();
    auto snap = table.snapshot();
    for (const auto& [name, t] : snap->topics) on_table_change(name);
    ORDO_LOG_INFO(
        "restored the metadata checkpoint at controller log offset {} ({} topics, {} "
        "brokers)",
        checkpoint_offset, snap->topics.size(), state.brokers().size());
  }

  Result<raft::Config> group_config(const std::vector<int32_t>& replicas) const {
    raft::Config config;
    for (int32_t id : replicas) {
      auto b = state.broker(id);
      if (!b) return make_error(Errc::not_found, "replica {} is not a registered broker", id);
      config.voters.push_back({id, b->incarnation});
    }
    std::sort(config.voters.begin(), config.voters.end());
    if (!config.valid())
      return make_error(Errc::invalid_argument, "replicas {}", fmt::join(replicas, ","));
    return config;
  }

  void close_group_sync(const TopicPartition& tp) {
    std::promise<Result<void>> done;
    partitions.close_group(tp, [&done](Result<void> r) { done.set_value(std::move(r)); });
    auto r = done.get_future().get();
    if (!r)
      ORDO_LOG_WARN("partition {}: closing its group: {}", tp.to_string(), r.error().to_string());
  }

  void on_table_change(const std::string& topic) {
    table = state.table();  // the broker's copy now shares the state's snapshot
    auto snap = table.snapshot();
    const int32_t self = meta.node_id;
    // Groups of this topic that no longer run here (or run as another group) close before
    // their logs go.
    for (auto it = open_groups.begin(); it != open_groups.end();) {
      if (it->first.topic != topic) {
        ++it;
        continue;
      }
      const cluster::PartitionAssignment* a = snap->find(it->first);
      if (a != nullptr && a->group == it->second && contains(a->replicas, self)) {
        ++it;
        continue;
      }
      close_group_sync(it->first);
      it = open_groups.erase(it);
    }
    cluster::Reconciler::Report report;
    auto r = reconciler->reconcile(*snap, report, topic);
    for (const auto& [tp, e] : report.config_errors) {
      ORDO_LOG_ERROR("partition {}: {}", tp.to_string(), e.to_string());
    }
    if (!r) ORDO_LOG_ERROR("topic {}: reconciling its logs: {}", topic, r.error().to_string());
    if (const cluster::TopicEntry* t = snap->find(topic)) {
      for (size_t i = 0; i < t->partitions.size(); ++i) {
        const auto& a = t->partitions[i];
        TopicPartition tp{topic, int32_t(i)};
        if (!contains(a.replicas, self) || open_groups.contains(tp)) continue;
        if (!reconciler->local().contains(tp)) continue;  // its log failed to be created
        auto config = group_config(a.replicas);
        if (!config) {
          ORDO_LOG_ERROR("partition {}: {}", tp.to_string(), config.error().to_string());
          continue;
        }
        open_groups[tp] = a.group;
        partitions.open_group(tp, a.group, *config, [tp](Result<void> r) {
          if (!r)
            ORDO_LOG_ERROR("partition {}: opening its group: {}", tp.to_string(),
                           r.error().to_string());
        });
      }
    }
    sync_registry(topic);
  }

  void sync_registry(const std::string& name) {
    auto snap = table.snapshot();
    const cluster::TopicEntry* t = snap->find(name);
    auto current = topics.snapshot();
    if (t == nullptr) {
      if (current->contains(name)) {
        auto r = topics.begin_delete(name);
        if (r) r = topics.end_delete(name);
        if (!r) ORDO_LOG_ERROR("topic {}: {}", name, r.error().to_string());
      }
      return;
    }
    TopicInfo info{t->name, t->id, int32_t(t->partitions.size()), {}};
    auto it = state.topic_configs().find(name);
    if (it != state.topic_configs().end()) info.configs = it->second;
    auto r = topics.put(std::move(info));
    if (!r) ORDO_LOG_ERROR("topic {}: {}", name, r.error().to_string());
  }

  void on_brokers_change() {
    auto records = state.brokers();
    std::vector<cluster::PeerAddress> peers;
    for (const auto& v : voters) {
      if (v.id != meta.node_id) peers.push_back({v.id, v.host, v.port});
    }
    for (const auto& b : records) {
      if (b.id == meta.node_id) continue;
      bool voter = std::any_of(voters.begin(), voters.end(),
                               [&](const VoterAddress& v) { return v.id == b.id; });
      if (!voter) peers.push_back({b.id, b.peer_host, uint16_t(b.peer_port)});
    }
    transport->set_peers(std::move(peers));
    std::lock_guard lock(mu);
    broker_records = std::move(records);
  }

  // ---- registration and heartbeats (controller thread) ----

  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  cluster::ControllerOptions controller_options() const {
    cluster::ControllerOptions o;
    o.session_timeout_ms = c.broker_session_timeout_ms;
    o.default_replication_factor = int16_t(c.default_replication_factor);
    o.default_partitions = c.num_partitions;
    o.producer_id_block = kProducerIdBlock;
    return o;
  }

  // The controller's leadership changed (controller thread): the logic starts afresh on a new
  // leader (every broker gets a full session before it can be fenced) and is dropped elsewhere.
  void on_controller_leader(raft::NodeId leader) {
    if (leader == meta.node_id) {
      if (!logic) logic.emplace(controller_options(), now_ms());
      logic->reset(now_ms());
    } else {
      logic.reset();
      pid_queue_fail(make_error(Errc::not_found, "not the controller"));
    }
    if (leader != raft::kNoNode) check_registration();
  }

  BrokerRecord my_record() const {
    BrokerRecord r;
    r.id = meta.node_id;
    r.incarnation = meta.incarnation;
    auto [host, port] = advertised();
    r.host = host;
    r.port = port;
    r.peer_host = peer_host;
    r.peer_port = peer_port;
    if (!c.broker_rack.empty()) r.rack = c.broker_rack;
    r.epoch = 1;  // the controller sets the real one when it registers the record
    return r;
  }

  static bool same_registration(const BrokerRecord& a, const BrokerRecord& b) {
    return a.id == b.id && a.incarnation == b.incarnation && a.host == b.host && a.port == b.port &&
           a.peer_host == b.peer_host && a.peer_port == b.peer_port && a.rack == b.rack;
  }

  void arm_register(std::chrono::milliseconds after) {
    register_timer.expires_after(after);
    register_timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->stopped) return;
      self->check_registration();
      self->arm_register(std::chrono::milliseconds(self->c.broker_heartbeat_interval_ms));
    });
  }

  // Every broker.heartbeat.interval.ms: registers this node (again) when the controller's state
  // does not hold its current record, else heartbeats its registration's epoch.
  void check_registration() {
    BrokerRecord mine = my_record();
    if (mine.port == 0) return;  // the listener is not bound yet
    if (registering) return;
    raft::NodeId leader = controller->leader();
    if (leader == raft::kNoNode) return;
    auto current = state.broker(mine.id);
    const bool registered = current && same_registration(*current, mine);
    registering = true;
    auto done = [self = shared_from_this()](Result<std::vector<uint8_t>> r) {
      asio::post(self->ctl, [self, r = std::move(r)] {
        self->registering = false;
        if (!r) ORDO_LOG_DEBUG("registration/heartbeat: {}", r.error().to_string());
      });
    };
    if (registered) {
      const int64_t epoch = current->epoch;
      if (leader == meta.node_id) {
        heartbeat(meta.node_id, epoch, std::move(done));
      } else {
        nlohmann::json body = {{"epoch", epoch}};
        std::string text = body.dump();
        rpc->call(leader, kRpcHeartbeat, std::vector<uint8_t>(text.begin(), text.end()),
                  kRpcTimeoutMs, std::move(done));
      }
    } else if (leader == meta.node_id) {
      register_broker(mine, std::move(done));
    } else {
      rpc->call(leader, kRpcRegister, cluster::encode_command(cluster::RegisterBroker{mine}),
                kRpcTimeoutMs, std::move(done));
    }
  }

  // The controller leader registers a broker (controller thread).
  void register_broker(BrokerRecord record,
                       std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader() || !logic) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    auto commands = logic->on_register(state, std::move(record), now_ms());
    if (!commands) {
      reply(commands.error());
      return;
    }
    for (const auto& cmd : *commands) {
      if (auto* r = std::get_if<cluster::RegisterBroker>(&cmd)) {
        ORDO_LOG_INFO("controller: registering broker {} at {}:{} (epoch {})", r->broker.id,
                      r->broker.host, r->broker.port, r->broker.epoch);
      }
    }
    propose_all(std::move(*commands), 0, -1, [reply = std::move(reply)](Result<int64_t> r) {
      if (!r) {
        reply(r.error());
      } else {
        reply(std::vector<uint8_t>{});
      }
    });
  }

  // The controller leader records a heartbeat; a fenced broker is unfenced (controller thread).
  void heartbeat(int32_t id, int64_t epoch,
                 std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader() || !logic) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    auto commands = logic->on_heartbeat(state, id, epoch, now_ms());
    if (!commands) {
      reply(commands.error());
      return;
    }
    if (!commands->empty()) ORDO_LOG_INFO("controller: unfencing broker {} (epoch {})", id, epoch);
    propose_all(std::move(*commands), 0, -1, [reply = std::move(reply)](Result<int64_t> r) {
      if (!r) {
        reply(r.error());
      } else {
        reply(std::vector<uint8_t>{});
      }
    });
  }

  // ---- the controller's tick and this node's leader reports (controller thread) ----

  void arm_tick() {
    tick_timer.expires_after(kTickInterval);
    tick_timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->stopped) return;
      self->controller_tick();
      self->report_leaders();
      self->arm_tick();
    });
  }

  // The controller leader fences the brokers whose session ran out.
  void controller_tick() {
    if (!controller->is_leader() || !logic) return;
    auto commands = logic->tick(state, now_ms());
    for (const auto& cmd : commands) {
      if (auto* f = std::get_if<cluster::FenceBroker>(&cmd)) {
        ORDO_LOG_WARN("controller: fencing broker {} (epoch {}): no heartbeat for {} ms", f->id,
                      f->epoch, c.broker_session_timeout_ms);
      }
    }
    if (!commands.empty()) propose_all(std::move(commands), 0, -1, [](Result<int64_t>) {});
  }

  // The partitions this node leads whose (leader, epoch) the table does not show yet go to the
  // controller leader (one call in flight; SetLeader commands there).
  void report_leaders() {
    if (reporting) return;
    raft::NodeId leader = controller->leader();
    if (leader == raft::kNoNode) return;
    auto snap = table.snapshot();
    nlohmann::json items = nlohmann::json::array();
    for (const auto& [tp, group] : open_groups) {
      auto v = partitions.local_view(tp);
      if (!v || v->leader != meta.node_id) continue;
      const cluster::PartitionAssignment* a = snap->find(tp);
      if (a == nullptr || a->group != group) continue;
      if (a->leader == meta.node_id && a->leader_epoch == v->epoch) continue;
      if (v->epoch <= a->leader_epoch) continue;  // the table knows a newer leader already
      items.push_back({tp.topic, tp.partition, v->epoch});
      if (items.size() >= kMaxLeaderReports) break;
    }
    if (items.empty()) return;
    reporting = true;
    auto done = [self = shared_from_this()](Result<std::vector<uint8_t>> r) {
      asio::post(self->ctl, [self, r = std::move(r)] {
        self->reporting = false;
        if (!r) ORDO_LOG_DEBUG("leader report: {}", r.error().to_string());
      });
    };
    if (leader == meta.node_id) {
      record_leaders(meta.node_id, std::move(items), std::move(done));
    } else {
      std::string text = items.dump();
      rpc->call(leader, kRpcLeaders, std::vector<uint8_t>(text.begin(), text.end()), kRpcTimeoutMs,
                std::move(done));
    }
  }

  // The controller leader records the partitions `from` reports it leads: SetLeader for each
  // that names a replica of the partition at an epoch after the table's.
  void record_leaders(int32_t from, nlohmann::json items,
                      std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader()) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    auto snap = state.table().snapshot();
    std::vector<cluster::MetadataCommand> commands;
    for (const auto& item : items) {
      if (!item.is_array() || item.size() != 3 || !item[0].is_string() ||
          !item[1].is_number_integer() || !item[2].is_number_integer()) {
        continue;
      }
      TopicPartition tp{item[0].get<std::string>(), item[1].get<int32_t>()};
      const int32_t epoch = item[2].get<int32_t>();
      const cluster::PartitionAssignment* a = snap->find(tp);
      if (a == nullptr || !contains(a->replicas, from) || epoch <= a->leader_epoch) continue;
      commands.push_back(cluster::Command(cluster::SetLeader{tp, from, epoch}));
    }
    propose_all(std::move(commands), 0, -1, [reply = std::move(reply)](Result<int64_t> r) {
      if (!r) {
        reply(r.error());
      } else {
        reply(std::vector<uint8_t>{});
      }
    });
  }

  // ---- producer id blocks (controller thread, on the controller leader) ----

  // One block in flight at a time: two blocks decided on the same state would both start at
  // its next id (the second's apply fails, its requester would use ids the first got).
  void allocate_ids(int32_t node, std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader() || !logic) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    if (pid_queue.size() >= kMaxPidQueue) {
      reply(make_error(Errc::busy, "too many producer id requests waiting"));
      return;
    }
    pid_queue.emplace_back(node, std::move(reply));
    if (pid_queue.size() == 1) allocate_next();
  }

  void allocate_next() {
    if (pid_queue.empty()) return;
    if (!controller->is_leader() || !logic) {
      pid_queue_fail(make_error(Errc::not_found, "not the controller"));
      return;
    }
    auto block = logic->allocate_producer_ids(state, pid_queue.front().first, now_ms());
    if (!block) {
      auto reply = std::move(pid_queue.front().second);
      pid_queue.pop_front();
      reply(block.error());
      allocate_next();
      return;
    }
    auto ids = std::get<cluster::AllocateProducerIds>(*block);
    controller->propose(cluster::encode_command(*block),
                        [self = shared_from_this(), ids, gen = pid_generation](Result<int64_t> r) {
                          if (gen != self->pid_generation) return;  // failed meanwhile
                          auto reply = std::move(self->pid_queue.front().second);
                          self->pid_queue.pop_front();
                          if (!r) {
                            reply(r.error());
                          } else if (self->state.next_producer_id() < ids.first + ids.count) {
                            reply(make_error(Errc::busy, "the producer id block was not applied"));
                          } else {
                            reply(cluster::encode_command(ids));
                          }
                          self->allocate_next();
                        });
  }

  void pid_queue_fail(const Error& e) {
    ++pid_generation;
    auto waiting = std::move(pid_queue);
    pid_queue.clear();
    for (auto& [node, reply] : waiting) reply(e);
  }

  // ---- topic changes ----

  // Proposes commands one after the other; answers the last one's offset (`last` when there
  // are none) after the last (or the first failure).
  void propose_all(std::vector<cluster::MetadataCommand> commands, size_t i, int64_t last,
                   std::function<void(Result<int64_t>)> done) {
    if (i == commands.size()) {
      done(last);
      return;
    }
    auto bytes = cluster::encode_command(commands[i]);
    controller->propose(std::move(bytes),
                        [self = shared_from_this(), commands = std::move(commands), i,
                         done = std::move(done)](Result<int64_t> r) mutable {
                          if (!r) {
                            done(r.error());
                            return;
                          }
                          self->propose_all(std::move(commands), i + 1, *r, std::move(done));
                        });
  }

  // Decides a topic request on the controller leader: checked and turned into commands by
  // ControllerLogic, proposed, answered once applied here (with the last command's offset).
  void decide(const TopicRequest& req, std::function<void(TopicAnswer)> done) {
    if (!controller->is_leader() || !logic) {
      done({ErrorCode::not_controller, "not the controller", -1, 0, 0});
      return;
    }
    auto kafka_error = [&](const cluster::TopicError& e) {
      done({ErrorCode(int16_t(e.code)), e.message, -1, 0, 0});
    };
    std::optional<std::vector<std::vector<int32_t>>> assignment;
    if (!req.assignment.empty()) assignment = req.assignment;
    std::optional<cluster::TopicResult> decided;
    TopicId id{};
    if (req.op == "create" || req.op == "configs") {
      for (const auto& [k, v] : req.configs) {
        if (auto r = validate_topic_config(k, v); !r) {
          done({ErrorCode::invalid_config, r.error().message, -1, 0, 0});
          return;
        }
      }
      auto settings = resolve_topic_settings(c, req.configs);
      if (!settings) {
        done({ErrorCode::invalid_config, settings.error().message, -1, 0, 0});
        return;
      }
      if (req.op == "create") {
        id = random_topic_id();
        decided =
            logic->create_topic(state, req.name, req.partitions, int16_t(req.rf), assignment,
                                req.configs, settings->log, id, std::hash<std::string>{}(req.name));
      } else {
        decided = logic->set_topic_configs(state, req.name, req.configs, settings->log);
      }
    } else if (req.op == "partitions") {
      const cluster::TopicEntry* t = state.table().snapshot()->find(req.name);
      uint64_t seed = std::hash<std::string>{}(req.name) + uint64_t(t ? t->partitions.size() : 0);
      decided = logic->create_partitions(state, req.name, req.partitions, assignment, seed);
    } else if (req.op == "delete") {
      decided = logic->delete_topic(state, req.name);
    } else {
      done(
          {ErrorCode::invalid_request, fmt::format("unknown topic change '{}'", req.op), -1, 0, 0});
      return;
    }
    if (!*decided) {
      kafka_error(decided->error());
      return;
    }
    TopicAnswer answer;
    for (const auto& cmd : decided->value()) {
      if (auto* t = std::get_if<cluster::Command>(&cmd)) {
        if (auto* ct = std::get_if<cluster::CreateTopic>(t)) {
          answer.partitions = int32_t(ct->replicas.size());
          answer.rf = ct->replicas.empty() ? 0 : int32_t(ct->replicas[0].size());
        }
      }
    }
    if (req.validate_only) {
      done(answer);
      return;
    }
    ORDO_LOG_INFO("controller: topic {}: {}", req.name, req.op);
    propose_all(decided->value(), 0, -1,
                [self = shared_from_this(), req, id, answer,
                 done = std::move(done)](Result<int64_t> r) mutable {
                  if (!r) {
                    done({ErrorCode::not_controller, r.error().message, -1, 0, 0});
                    return;
                  }
                  answer.offset = *r;
                  if (req.op == "create") {
                    // Two creations decided on one state: the second's apply failed.
                    const cluster::TopicEntry* t = self->state.table().snapshot()->find(req.name);
                    if (t == nullptr || t->id != id) {
                      done({ErrorCode::topic_already_exists,
                            fmt::format("topic '{}' already exists", req.name), -1, 0, 0});
                      return;
                    }
                  }
                  done(answer);
                });
  }

  // Runs a topic request from this node: decided here on the controller leader, else
  // forwarded to it; answered once this node applied the change (controller thread).
  void request(TopicRequest req, std::function<void(TopicChangeResult)> done) {
    auto finish = [self = shared_from_this(), req, done](TopicAnswer a) {
      self->after_applied(a.offset, now_ms() + kApplyWaitMs,
                          [self, req, a, done]() { done(self->result_of(req, a)); });
    };
    if (controller->is_leader()) {
      decide(req, std::move(finish));
      return;
    }
    raft::NodeId leader = controller->leader();
    if (leader == raft::kNoNode) {
      done({ErrorCode::not_controller, "no controller leader is known", {}, 0});
      return;
    }
    std::string text = encode_request(req).dump();
    rpc->call(leader, kRpcTopicChange, std::vector<uint8_t>(text.begin(), text.end()),
              kForwardTimeoutMs,
              [self = shared_from_this(), leader, done, finish](Result<std::vector<uint8_t>> r) {
                asio::post(self->ctl, [self, leader, done, finish, r = std::move(r)] {
                  if (!r) {
                    const bool timed_out = r.error().code == cluster::kCallTimedOut;
                    done({timed_out ? ErrorCode::request_timed_out : ErrorCode::not_controller,
                          fmt::format("forwarded to the controller (node {}): {}", leader,
                                      r.error().to_string()),
                          {},
                          0});
                    return;
                  }
                  auto a = decode_answer(*r);
                  if (!a) {
                    done({ErrorCode::unknown_server_error, a.error().to_string(), {}, 0});
                    return;
                  }
                  finish(*a);
                });
              });
  }

  // Runs fn once this node applied the controller's log past `offset` (at once for -1); after
  // `deadline`, fn runs anyway (the answer then says what the leader decided; this node's
  // view may lag).
  void after_applied(int64_t offset, int64_t deadline, std::function<void()> fn) {
    if (offset < 0 || controller->applied_end() > offset || now_ms() >= deadline || stopped) {
      if (offset >= 0 && controller->applied_end() <= offset) {
        ORDO_LOG_WARN("controller log offset {} not applied here within {} ms", offset,
                      kApplyWaitMs);
      }
      fn();
      return;
    }
    auto timer = std::make_shared<asio::steady_timer>(ctl, std::chrono::milliseconds(5));
    timer->async_wait([self = shared_from_this(), timer, offset, deadline,
                       fn = std::move(fn)](std::error_code) mutable {
      self->after_applied(offset, deadline, std::move(fn));
    });
  }

  TopicChangeResult result_of(const TopicRequest& req, const TopicAnswer& a) const {
    TopicChangeResult out{a.error, a.message, {}, 0};
    if (a.error != ErrorCode::none || req.op != "create") return out;
    out.topic = TopicInfo{req.name, random_topic_id(), a.partitions, req.configs};
    out.replication_factor = a.rf;
    if (!req.validate_only) {
      auto snap = table.snapshot();
      if (const cluster::TopicEntry* t = snap->find(req.name)) out.topic.id = t->id;
    }
    return out;
  }

  // Blocks the caller (not the controller or transport thread) until the request is answered.
  TopicChangeResult run_request(TopicRequest req) {
    auto done = std::make_shared<std::promise<TopicChangeResult>>();
    auto future = done->get_future();
    asio::post(ctl, [self = shared_from_this(), req = std::move(req), done]() mutable {
      self->request(std::move(req), [done](TopicChangeResult r) { done->set_value(std::move(r)); });
    });
    if (future.wait_for(kChangeTimeout) != std::future_status::ready) {
      return {ErrorCode::request_timed_out,
              "the controller's log did not commit the change in time",
              {},
              0};
    }
    return future.get();
  }
};

// ---- open / stop ----

Result<std::unique_ptr<ClusterNode>> ClusterNode::open(ClusterNodeDeps deps) {
  const BrokerConfig& c = deps.config;
  auto on_disk = std::move(deps.on_disk);
  auto impl = std::make_shared<Impl>(std::move(deps));
  Impl& n = *impl;
  n.voters = ORDO_TRY(parse_voters(c.cluster_voters));
  const int32_t self = n.meta.node_id;
  bool voter = false;
  for (const auto& v : n.voters) {
    if (v.id == self) {
      voter = true;
      n.peer_host = v.host;
      n.peer_port = v.port;
    }
  }
  if (c.cluster_listen_port != 0) {
    n.peer_host = c.cluster_listen_host;
    n.peer_port = c.cluster_listen_port;
  }
  if (!voter) {
    return make_error(Errc::invalid_argument,
                      "node {} is not one of cluster.voters: joining a running cluster as a "
                      "broker that is not a voter is not supported yet",
                      self);
  }

  // The controller's group: its log in <data>/__cluster_metadata-0.
  std::string controller_dir = c.data_dir + "/" + std::string(kControllerDirName);
  std::error_code ec;
  bool fresh =
      !std::filesystem::exists(controller_dir + "/" + std::string(cluster::kRaftStateFileName), ec);
  if (fresh && !c.cluster_bootstrap) {
    return make_error(Errc::invalid_argument,
                      "{} holds no controller log: give --bootstrap (cluster.bootstrap) on each "
                      "voter's first start; a voter that lost its disk must not bootstrap again",
                      c.data_dir);
  }
  cluster::ControllerGroupOptions go;
  go.self = self;
  go.incarnation = 1;  // bootstrapped voters agree on incarnation 1 without talking
  go.dir = controller_dir;
  for (const auto& v : n.voters) go.initial.voters.push_back({v.id, 1});
  go.core.election_ticks = c.raft_election_ticks;
  go.core.heartbeat_ticks = c.raft_heartbeat_ticks;
  go.tick_ms = c.raft_tick_ms;
  go.send = [&n](std::vector<raft::OutFrame> frames) { n.send_frames(std::move(frames)); };

  // The transport (not started yet: nothing arrives before the controller replayed).
  cluster::PeerTransportOptions to;
  to.self.id = self;
  to.self.incarnation = n.meta.incarnation;
  to.self.cluster_id = c.cluster_id;
  to.self.peer_host = n.peer_host;
  to.self.peer_port = n.peer_port;
  to.listen_host = c.cluster_listen_port != 0 ? c.cluster_listen_host : n.peer_host;
  to.listen_port = n.peer_port;
  n.transport = std::make_unique<cluster::PeerTransport>(n.transport_ctx, std::move(to));
  n.rpc = std::make_unique<cluster::PeerRpc>(n.transport_ctx, self,
                                             [&n](raft::NodeId to, std::vector<uint8_t> frame) {
                                               n.transport->send(to, std::move(frame));
                                             });
  n.decoder = std::make_unique<raft::Batcher>(self);
  n.reconciler = std::make_unique<cluster::Reconciler>(self, n.logs, on_disk);

  std::weak_ptr<Impl> weak = impl;
  n.controller = std::make_unique<cluster::ControllerGroup>(
      n.ctl.get_executor(), std::move(go),
      [&n](std::span<const uint8_t> command, int64_t offset) { n.apply(command, offset); },
      [&n](raft::NodeId leader, int32_t term) {
        ORDO_LOG_INFO("controller: leader is node {} (term {})", leader, term);
        n.on_controller_leader(leader);
      });
  n.checkpoint_path = controller_dir + "/" + std::string(kCheckpointFileName);
  if (!fresh) n.restore_checkpoint();
  ORDO_TRY(n.controller->start());

  n.rpc->handle(kRpcRegister, [weak](raft::NodeId from, std::vector<uint8_t> body,
                                     cluster::PeerRpc::Reply reply) {
    auto self = weak.lock();
    if (!self) return;
    auto cmd = cluster::decode_command(body);
    if (!cmd) {
      reply(make_error(Errc::invalid_argument, "registration: {}", cmd.error().to_string()));
      return;
    }
    if (!std::holds_alternative<cluster::RegisterBroker>(*cmd)) {
      reply(make_error(Errc::invalid_argument, "not a registration"));
      return;
    }
    auto record = std::get<cluster::RegisterBroker>(*cmd).broker;
    if (record.id != from) {
      reply(make_error(Errc::invalid_argument, "node {} registers as {}", from, record.id));
      return;
    }
    asio::post(self->ctl, [self, record = std::move(record), reply = std::move(reply)]() mutable {
      self->register_broker(std::move(record), std::move(reply));
    });
  });
  n.rpc->handle(kRpcHeartbeat, [weak](raft::NodeId from, std::vector<uint8_t> body,
                                      cluster::PeerRpc::Reply reply) {
    auto self = weak.lock();
    if (!self) return;
    auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("epoch") ||
        !j["epoch"].is_number_integer()) {
      reply(make_error(Errc::invalid_argument, "not a heartbeat"));
      return;
    }
    const int64_t epoch = j["epoch"].get<int64_t>();
    asio::post(self->ctl, [self, from, epoch, reply = std::move(reply)]() mutable {
      self->heartbeat(from, epoch, std::move(reply));
    });
  });
  n.rpc->handle(kRpcTopicChange, [weak](raft::NodeId, std::vector<uint8_t> body,
                                        cluster::PeerRpc::Reply reply) {
    auto self = weak.lock();
    if (!self) return;
    auto req = decode_request(body);
    if (!req) {
      reply(req.error());
      return;
    }
    asio::post(self->ctl, [self, req = std::move(*req), reply = std::move(reply)]() mutable {
      if (!self->controller->is_leader()) {
        reply(make_error(Errc::not_found, "not the controller"));
        return;
      }
      self->decide(req, [reply](TopicAnswer a) { reply(encode_answer(a)); });
    });
  });
  n.rpc->handle(kRpcLeaders, [weak](raft::NodeId from, std::vector<uint8_t> body,
                                    cluster::PeerRpc::Reply reply) {
    auto self = weak.lock();
    if (!self) return;
    auto items = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (items.is_discarded() || !items.is_array() || items.size() > kMaxLeaderReports) {
      reply(make_error(Errc::invalid_argument, "not a leader report"));
      return;
    }
    asio::post(self->ctl,
               [self, from, items = std::move(items), reply = std::move(reply)]() mutable {
                 self->record_leaders(from, std::move(items), std::move(reply));
               });
  });
  n.rpc->handle(kRpcAllocateIds,
                [weak](raft::NodeId from, std::vector<uint8_t>, cluster::PeerRpc::Reply reply) {
                  auto self = weak.lock();
                  if (!self) return;
                  asio::post(self->ctl, [self, from, reply = std::move(reply)]() mutable {
                    self->allocate_ids(from, std::move(reply));
                  });
                });
  n.transport->on_frame = [&n](raft::NodeId from, std::span<const uint8_t> frame) {
    n.on_frame(from, frame);
  };
  n.transport->on_peer = [](const cluster::Hello& peer, bool up) {
    ORDO_LOG_INFO("peer node {} at {}:{} is {}", peer.id, peer.peer_host, peer.peer_port,
                  up ? "up" : "down");
  };
  n.on_brokers_change();
  if (n.sink) n.sink->attach(n.transport.get());
  auto port = n.transport->start();
  if (!port) {
    n.controller->stop();
    return make_error(port.error().code, "cluster.listen {}:{}: {}", n.peer_host, n.peer_port,
                      port.error().message);
  }
  n.ctl_work.emplace(n.ctl.get_executor());
  n.ctl_thread = std::thread([&n] { n.ctl.run(); });
  asio::post(n.ctl, [&n] {
    n.arm_register(std::chrono::milliseconds(0));
    n.arm_tick();
  });
  ORDO_LOG_INFO("node {} of cluster {}: peers on {}:{}, controller voters {}", self, c.cluster_id,
                n.peer_host, n.peer_port, c.cluster_voters);
  return std::unique_ptr<ClusterNode>(new ClusterNode(std::move(impl)));
}

ClusterNode::~ClusterNode() {
  stop();
}

void ClusterNode::stop() {
  Impl& n = *impl_;
  if (n.stopped.exchange(true)) return;
  if (n.sink) n.sink->attach(nullptr);
  n.rpc->stop();
  // The controller group stops on its own thread; then the thread ends.
  std::promise<void> stopped;
  asio::post(n.ctl, [&n, &stopped] {
    n.register_timer.cancel();
    n.tick_timer.cancel();
    n.pid_queue_fail(make_error(Errc::closed, "stopping"));
    n.controller->stop();
    stopped.set_value();
  });
  stopped.get_future().wait();
  n.transport->stop();
  n.ctl_work.reset();
  if (n.ctl_thread.joinable()) n.ctl_thread.join();
}

// ---- ClusterView ----

std::vector<BrokerEndpoint> ClusterNode::brokers() const {
  std::lock_guard lock(impl_->mu);
  std::vector<BrokerEndpoint> out;
  for (const auto& b : impl_->broker_records) {
    if (!b.fenced) out.push_back({b.id, b.host, b.port, b.rack});
  }
  return out;
}

int32_t ClusterNode::controller() const {
  return impl_->controller->leader();
}

std::optional<PartitionState> ClusterNode::partition(const cluster::TableSnapshot& table,
                                                     const TopicPartition& tp) const {
  const cluster::PartitionAssignment* a = table.find(tp);
  if (a == nullptr) return std::nullopt;
  PartitionState out;
  out.replicas = a->replicas;
  {
    std::lock_guard lock(impl_->mu);
    for (int32_t id : a->replicas) {
      bool live = std::any_of(impl_->broker_records.begin(), impl_->broker_records.end(),
                              [&](const BrokerRecord& b) { return b.id == id && !b.fenced; });
      if (!live) out.offline.push_back(id);
    }
  }
  if (auto v = impl_->partitions.local_view(tp)) {
    out.leader = v->leader;
    out.leader_epoch = v->epoch;
    out.isr = v->isr;
  } else if (a->leader_epoch > 0 && !contains(out.offline, a->leader)) {
    // Not hosted here: the leader its replica last reported to the controller (SetLeader; epoch
    // 0 is the creation's guess, not a report). Its ISR is not reported: the live replicas.
    out.leader = a->leader;
    out.leader_epoch = a->leader_epoch;
    for (int32_t id : a->replicas) {
      if (!contains(out.offline, id)) out.isr.push_back(id);
    }
  }
  if (out.isr.empty()) out.isr = {out.leader};
  if (out.leader == cluster::kNoLeader) out.isr.clear();
  return out;
}

// ---- topic changes ----

TopicChangeResult ClusterNode::create_topic(const CreateTopicSpec& spec) {
  TopicRequest req;
  req.op = "create";
  req.name = spec.name;
  req.partitions = spec.partitions;
  req.rf = spec.replication_factor;
  req.assignment = spec.assignment;
  req.configs = spec.configs;
  req.validate_only = spec.validate_only;
  return impl_->run_request(std::move(req));
}

TopicChangeResult ClusterNode::delete_topic(const std::string& name) {
  TopicRequest req;
  req.op = "delete";
  req.name = name;
  return impl_->run_request(std::move(req));
}

TopicChangeResult ClusterNode::set_partitions(const std::string& name, int32_t count,
                                              const std::vector<std::vector<int32_t>>& assignment,
                                              bool validate_only) {
  TopicRequest req;
  req.op = "partitions";
  req.name = name;
  req.partitions = count;
  req.assignment = assignment;
  req.validate_only = validate_only;
  return impl_->run_request(std::move(req));
}

TopicChangeResult ClusterNode::set_topic_configs(const std::string& name,
                                                 std::map<std::string, std::string> configs,
                                                 bool validate_only) {
  TopicRequest req;
  req.op = "configs";
  req.name = name;
  req.configs = std::move(configs);
  req.validate_only = validate_only;
  return impl_->run_request(std::move(req));
}

Result<int64_t> ClusterNode::next_producer_id() {
  Impl& n = *impl_;
  std::lock_guard lock(n.pid_mu);
  if (n.pid_next < n.pid_end) return n.pid_next++;
  auto block = std::make_shared<std::promise<Result<std::vector<uint8_t>>>>();
  auto future = block->get_future();
  asio::post(n.ctl, [self = n.shared_from_this(), block] {
    auto reply = [block](Result<std::vector<uint8_t>> r) { block->set_value(std::move(r)); };
    raft::NodeId leader = self->controller->leader();
    if (leader == self->meta.node_id) {
      self->allocate_ids(self->meta.node_id, std::move(reply));
    } else if (leader == raft::kNoNode) {
      reply(make_error(Errc::busy, "no controller leader"));
    } else {
      self->rpc->call(leader, kRpcAllocateIds, {}, kRpcTimeoutMs, std::move(reply));
    }
  });
  if (future.wait_for(std::chrono::milliseconds(2 * kRpcTimeoutMs)) != std::future_status::ready) {
    return make_error(Errc::busy, "the controller did not answer");
  }
  auto bytes = ORDO_TRY(future.get());
  auto cmd = ORDO_TRY(cluster::decode_command(bytes));
  auto* ids = std::get_if<cluster::AllocateProducerIds>(&cmd);
  if (ids == nullptr || ids->count <= 0)
    return make_error(Errc::corrupt, "not a producer id block");
  n.pid_next = ids->first;
  n.pid_end = ids->first + ids->count;
  return n.pid_next++;
}

std::string ClusterNode::status_json() const {
  Impl& n = *impl_;
  nlohmann::json j;
  j["node_id"] = n.meta.node_id;
  j["cluster_id"] = n.c.cluster_id;
  j["controller"] = {{"leader", n.controller->leader()}, {"term", n.controller->term()}};
  nlohmann::json brokers = nlohmann::json::array();
  {
    std::lock_guard lock(n.mu);
    for (const auto& b : n.broker_records) {
      brokers.push_back({{"id", b.id},
                         {"host", b.host},
                         {"port", b.port},
                         {"rack", b.rack ? nlohmann::json(*b.rack) : nlohmann::json()},
                         {"fenced", b.fenced},
                         {"epoch", b.epoch}});
    }
  }
  j["brokers"] = std::move(brokers);
  nlohmann::json parts = nlohmann::json::array();
  auto snap = n.table.snapshot();
  for (const auto& [name, t] : snap->topics) {
    for (size_t i = 0; i < t.partitions.size(); ++i) {
      TopicPartition tp{name, int32_t(i)};
      auto state = partition(*snap, tp);
      if (!state) continue;
      parts.push_back({{"topic", name},
                       {"partition", int32_t(i)},
                       {"leader", state->leader},
                       {"epoch", state->leader_epoch},
                       {"replicas", state->replicas},
                       {"isr", state->isr},
                       {"offline", state->offline}});
    }
  }
  j["partitions"] = std::move(parts);
  return j.dump();
}

}  // namespace ordo::broker
