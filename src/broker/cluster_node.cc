#include "broker/cluster_node.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <random>

#include <fmt/core.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "base/assert.h"
#include "base/log.h"
#include "cluster/controller_group.h"
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
constexpr int64_t kRpcTimeoutMs = 3000;
constexpr int64_t kProducerIdBlock = 1000;
// How long a topic change waits for the controller's log before it answers REQUEST_TIMED_OUT.
constexpr auto kChangeTimeout = std::chrono::seconds(30);

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
        register_timer(ctl) {}

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
  asio::steady_timer register_timer;
  bool registering = false;

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
                   [&](const cluster::Command& tc) { on_table_change(topic_of(tc)); },
                   [&](const cluster::RegisterBroker&) { on_brokers_change(); },
                   [&](const cluster::FenceBroker&) { on_brokers_change(); },
                   [&](const cluster::UnfenceBroker&) { on_brokers_change(); },
                   [&](const cluster::AllocateProducerIds&) {},
                   [&](const cluster::TopicConfigs& t) { sync_registry(t.name); },
               },
               *cmd);
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

  // ---- registration (controller thread) ----

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

  void check_registration() {
    BrokerRecord mine = my_record();
    if (mine.port == 0) return;  // the listener is not bound yet
    auto current = state.broker(mine.id);
    if (current && same_registration(*current, mine) && !current->fenced) return;
    if (registering) return;
    raft::NodeId leader = controller->leader();
    if (leader == raft::kNoNode) return;
    registering = true;
    auto done = [self = shared_from_this()](Result<std::vector<uint8_t>> r) {
      asio::post(self->ctl, [self, r = std::move(r)] {
        self->registering = false;
        if (!r) ORDO_LOG_DEBUG("registration: {}", r.error().to_string());
      });
    };
    if (leader == meta.node_id) {
      register_broker(mine, std::move(done));
    } else {
      rpc->call(leader, kRpcRegister, cluster::encode_command(cluster::RegisterBroker{mine}),
                kRpcTimeoutMs, std::move(done));
    }
  }

  // The controller leader registers a broker (controller thread).
  void register_broker(BrokerRecord record,
                       std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader()) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    auto current = state.broker(record.id);
    if (current && same_registration(*current, record) && !current->fenced) {
      reply(std::vector<uint8_t>{});
      return;
    }
    record.epoch = current ? current->epoch + 1 : 1;
    record.fenced = false;
    ORDO_LOG_INFO("controller: registering broker {} at {}:{} (epoch {})", record.id, record.host,
                  record.port, record.epoch);
    controller->propose(cluster::encode_command(cluster::RegisterBroker{record}),
                        [reply = std::move(reply)](Result<int64_t> r) {
                          if (!r) {
                            reply(r.error());
                          } else {
                            reply(std::vector<uint8_t>{});
                          }
                        });
  }

  // The controller leader hands out a block of producer ids (controller thread).
  void allocate_ids(int32_t node, std::function<void(Result<std::vector<uint8_t>>)> reply) {
    if (!controller->is_leader()) {
      reply(make_error(Errc::not_found, "not the controller"));
      return;
    }
    cluster::AllocateProducerIds block{node, state.next_producer_id(), kProducerIdBlock};
    controller->propose(cluster::encode_command(block),
                        [block, reply = std::move(reply)](Result<int64_t> r) {
                          if (!r) {
                            reply(r.error());
                          } else {
                            reply(cluster::encode_command(block));
                          }
                        });
  }

  // ---- topic changes (proposed on the controller thread, waited for by the caller) ----

  template <typename Fn>
  TopicChangeResult on_controller(Fn fn) {
    auto done = std::make_shared<std::promise<TopicChangeResult>>();
    auto future = done->get_future();
    asio::post(ctl, [self = shared_from_this(), fn = std::move(fn), done]() mutable {
      if (!self->controller->is_leader()) {
        done->set_value({ErrorCode::not_controller,
                         fmt::format("node {} is not the controller (the controller is {})",
                                     self->meta.node_id, self->controller->leader()),
                         {},
                         0});
        return;
      }
      fn(*self, [done](TopicChangeResult r) { done->set_value(std::move(r)); });
    });
    if (future.wait_for(kChangeTimeout) != std::future_status::ready) {
      return {ErrorCode::request_timed_out,
              "the controller's log did not commit the change in time",
              {},
              0};
    }
    return future.get();
  }

  // Proposes commands one after the other; answers after the last (or the first failure).
  void propose_all(std::vector<cluster::MetadataCommand> commands, size_t i,
                   std::function<void(Result<void>)> done) {
    if (i == commands.size()) {
      done(ok());
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
                          self->propose_all(std::move(commands), i + 1, std::move(done));
                        });
  }

  std::vector<BrokerRecord> live_brokers() const {
    std::vector<BrokerRecord> out;
    for (auto& b : state.brokers()) {
      if (!b.fenced) out.push_back(b);
    }
    return out;
  }

  // Checks a manual assignment against the live brokers.
  std::optional<std::string> check_assignment(
      const std::vector<std::vector<int32_t>>& assignment) const {
    auto live = live_brokers();
    size_t rf = assignment.empty() ? 0 : assignment[0].size();
    for (const auto& replicas : assignment) {
      if (replicas.empty() || replicas.size() != rf)
        return "every partition needs the same, non-zero number of replicas";
      std::vector<int32_t> sorted = replicas;
      std::sort(sorted.begin(), sorted.end());
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
        return "a broker is listed twice for one partition";
      for (int32_t id : replicas) {
        if (!std::any_of(live.begin(), live.end(),
                         [&](const BrokerRecord& b) { return b.id == id; })) {
          return fmt::format("broker {} is not a live broker", id);
        }
      }
    }
    return std::nullopt;
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
        if (leader != raft::kNoNode) {
          asio::post(n.ctl, [&n] { n.check_registration(); });
        }
      });
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
  asio::post(n.ctl, [&n] { n.arm_register(std::chrono::milliseconds(0)); });
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
  if (auto v = impl_->partitions.local_view(tp)) {
    out.leader = v->leader;
    out.leader_epoch = v->epoch;
    out.isr = v->isr;
  }
  {
    std::lock_guard lock(impl_->mu);
    for (int32_t id : a->replicas) {
      bool live = std::any_of(impl_->broker_records.begin(), impl_->broker_records.end(),
                              [&](const BrokerRecord& b) { return b.id == id && !b.fenced; });
      if (!live) out.offline.push_back(id);
    }
  }
  if (out.isr.empty()) out.isr = {out.leader};
  if (out.leader == cluster::kNoLeader) out.isr.clear();
  return out;
}

// ---- topic changes ----

TopicChangeResult ClusterNode::create_topic(const CreateTopicSpec& spec) {
  return impl_->on_controller([spec](Impl& n, std::function<void(TopicChangeResult)> done) {
    const BrokerConfig& c = n.c;
    if (!model::is_valid_topic_name(spec.name)) {
      done({ErrorCode::invalid_topic_exception,
            fmt::format("'{}' is not a valid topic name", spec.name),
            {},
            0});
      return;
    }
    if (n.state.table().snapshot()->find(spec.name) != nullptr) {
      done({ErrorCode::topic_already_exists,
            fmt::format("topic '{}' already exists", spec.name),
            {},
            0});
      return;
    }
    for (const auto& [k, v] : spec.configs) {
      if (auto r = validate_topic_config(k, v); !r) {
        done({ErrorCode::invalid_config, r.error().message, {}, 0});
        return;
      }
    }
    auto settings = resolve_topic_settings(c, spec.configs);
    if (!settings) {
      done({ErrorCode::invalid_config, settings.error().message, {}, 0});
      return;
    }
    std::vector<std::vector<int32_t>> replicas;
    if (!spec.assignment.empty()) {
      if (auto bad = n.check_assignment(spec.assignment)) {
        done({ErrorCode::invalid_replica_assignment, *bad, {}, 0});
        return;
      }
      replicas = spec.assignment;
    } else {
      int32_t count = spec.partitions == -1 ? c.num_partitions : spec.partitions;
      if (count <= 0) {
        done({ErrorCode::invalid_partitions, fmt::format("{} partitions", count), {}, 0});
        return;
      }
      int32_t rf =
          spec.replication_factor == -1 ? c.default_replication_factor : spec.replication_factor;
      auto live = n.live_brokers();
      if (rf <= 0 || size_t(rf) > live.size()) {
        done({ErrorCode::invalid_replication_factor,
              fmt::format("replication factor {} with {} live brokers", rf, live.size()),
              {},
              0});
        return;
      }
      auto placed =
          cluster::place(count, int16_t(rf), live, cluster::load_of(*n.state.table().snapshot()),
                         std::hash<std::string>{}(spec.name));
      if (!placed) {
        done({ErrorCode::invalid_replication_factor, placed.error().message, {}, 0});
        return;
      }
      replicas = std::move(*placed);
    }
    TopicInfo info{spec.name, random_topic_id(), int32_t(replicas.size()), spec.configs};
    int32_t rf = int32_t(replicas[0].size());
    if (spec.validate_only) {
      done({ErrorCode::none, {}, std::move(info), rf});
      return;
    }
    std::vector<cluster::MetadataCommand> commands;
    commands.push_back(
        cluster::Command(cluster::CreateTopic{spec.name, info.id, settings->log, replicas}));
    if (!spec.configs.empty()) commands.push_back(cluster::TopicConfigs{spec.name, spec.configs});
    ORDO_LOG_INFO("controller: creating topic {} ({} partitions, replication factor {})", spec.name,
                  replicas.size(), rf);
    n.propose_all(std::move(commands), 0, [info, rf, done = std::move(done)](Result<void> r) {
      if (!r) {
        done({ErrorCode::not_controller, r.error().message, {}, 0});
      } else {
        done({ErrorCode::none, {}, info, rf});
      }
    });
  });
}

TopicChangeResult ClusterNode::delete_topic(const std::string& name) {
  return impl_->on_controller([name](Impl& n, std::function<void(TopicChangeResult)> done) {
    if (n.state.table().snapshot()->find(name) == nullptr) {
      done({ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name), {}, 0});
      return;
    }
    n.propose_all(
        {cluster::Command(cluster::DeleteTopic{name})}, 0,
        [done = std::move(done)](Result<void> r) {
          done(r ? TopicChangeResult{}
                 : TopicChangeResult{ErrorCode::not_controller, r.error().message, {}, 0});
        });
  });
}

TopicChangeResult ClusterNode::set_partitions(const std::string& name, int32_t count,
                                              const std::vector<std::vector<int32_t>>& assignment,
                                              bool validate_only) {
  return impl_->on_controller([name, count, assignment, validate_only](
                                  Impl& n, std::function<void(TopicChangeResult)> done) {
    auto snap = n.state.table().snapshot();
    const cluster::TopicEntry* t = snap->find(name);
    if (t == nullptr) {
      done({ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name), {}, 0});
      return;
    }
    int32_t from = int32_t(t->partitions.size());
    if (count <= from) {
      done({ErrorCode::invalid_partitions,
            fmt::format("topic {} has {} partitions; {} does not add any", name, from, count),
            {},
            0});
      return;
    }
    std::vector<std::vector<int32_t>> replicas;
    if (!assignment.empty()) {
      if (int32_t(assignment.size()) != count - from) {
        done({ErrorCode::invalid_replica_assignment, "one assignment per new partition", {}, 0});
        return;
      }
      if (auto bad = n.check_assignment(assignment)) {
        done({ErrorCode::invalid_replica_assignment, *bad, {}, 0});
        return;
      }
      replicas = assignment;
    } else {
      auto live = n.live_brokers();
      int16_t rf = int16_t(t->partitions.empty() ? 1 : t->partitions[0].replicas.size());
      auto placed = cluster::place(count - from, rf, live, cluster::load_of(*snap),
                                   std::hash<std::string>{}(name) + uint64_t(from));
      if (!placed) {
        done({ErrorCode::invalid_replication_factor, placed.error().message, {}, 0});
        return;
      }
      replicas = std::move(*placed);
    }
    if (validate_only) {
      done({});
      return;
    }
    n.propose_all(
        {cluster::Command(cluster::AddPartitions{name, from, replicas})}, 0,
        [done = std::move(done)](Result<void> r) {
          done(r ? TopicChangeResult{}
                 : TopicChangeResult{ErrorCode::not_controller, r.error().message, {}, 0});
        });
  });
}

TopicChangeResult ClusterNode::set_topic_configs(const std::string& name,
                                                 std::map<std::string, std::string> configs,
                                                 bool validate_only) {
  return impl_->on_controller([name, configs = std::move(configs), validate_only](
                                  Impl& n, std::function<void(TopicChangeResult)> done) {
    if (n.state.table().snapshot()->find(name) == nullptr) {
      done({ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name), {}, 0});
      return;
    }
    for (const auto& [k, v] : configs) {
      if (auto r = validate_topic_config(k, v); !r) {
        done({ErrorCode::invalid_config, r.error().message, {}, 0});
        return;
      }
    }
    auto settings = resolve_topic_settings(n.c, configs);
    if (!settings) {
      done({ErrorCode::invalid_config, settings.error().message, {}, 0});
      return;
    }
    if (validate_only) {
      done({});
      return;
    }
    n.propose_all(
        {cluster::Command(cluster::SetConfig{name, settings->log}),
         cluster::TopicConfigs{name, configs}},
        0, [done = std::move(done)](Result<void> r) {
          done(r ? TopicChangeResult{}
                 : TopicChangeResult{ErrorCode::not_controller, r.error().message, {}, 0});
        });
  });
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
