// Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and OffsetDelete. Each
// handler copies the wire fields into the coordinator's structs and runs the operation on the
// GroupService's thread (groups.h); answers that wait (JoinGroup, SyncGroup, commits) resume
// the connection's coroutine when they come.

#include <set>

#include "broker/cluster_node.h"
#include "broker/groups.h"
#include "broker/handlers.h"
#include "protocol/messages/delete_groups_request.h"
#include "protocol/messages/delete_groups_response.h"
#include "protocol/messages/describe_groups_request.h"
#include "protocol/messages/describe_groups_response.h"
#include "protocol/messages/find_coordinator_request.h"
#include "protocol/messages/find_coordinator_response.h"
#include "protocol/messages/heartbeat_request.h"
#include "protocol/messages/heartbeat_response.h"
#include "protocol/messages/join_group_request.h"
#include "protocol/messages/join_group_response.h"
#include "protocol/messages/leave_group_request.h"
#include "protocol/messages/leave_group_response.h"
#include "protocol/messages/list_groups_request.h"
#include "protocol/messages/list_groups_response.h"
#include "protocol/messages/offset_commit_request.h"
#include "protocol/messages/offset_commit_response.h"
#include "protocol/messages/offset_delete_request.h"
#include "protocol/messages/offset_delete_response.h"
#include "protocol/messages/offset_fetch_request.h"
#include "protocol/messages/offset_fetch_response.h"
#include "protocol/messages/sync_group_request.h"
#include "protocol/messages/sync_group_response.h"

namespace ordo::broker {

using coordinator::GroupState;

namespace {

// Runs fn(GroupService&) -> R on the group thread and resumes with its result.
template <typename R, typename Fn>
asio::awaitable<R> on_groups(GroupService& gs, Fn fn) {
  return run_on<R>(gs.executor(), [&gs, fn = std::move(fn)]() mutable { return fn(gs); });
}

// Starts start(GroupService&, done) on the group thread; resumes when done(R) is called.
template <typename R, typename Start>
asio::awaitable<R> on_groups_async(GroupService& gs, Start start) {
  return on_callback<R>([&gs, start = std::move(start)](auto done) mutable {
    asio::post(gs.executor(), [&gs, start = std::move(start), done = std::move(done)]() mutable {
      start(gs, std::move(done));
    });
  });
}

// Kafka's client_host: "/" and the peer's address.
std::string client_host(const ConnectionState& conn) {
  auto colon = conn.peer.rfind(':');
  return "/" + (colon == std::string::npos ? conn.peer : conn.peer.substr(0, colon));
}

// The topics of a ConsumerProtocolSubscription (version i16, then an array of i16-length
// strings; later fields are not needed). nullopt when the bytes are not one.
std::optional<std::set<std::string>> subscribed_topics(std::span<const uint8_t> md) {
  size_t pos = 0;
  auto need = [&](size_t n) { return md.size() - pos >= n; };
  if (!need(6)) return std::nullopt;
  pos += 2;  // version
  int32_t count = int32_t(load_be32(md.data() + pos));
  pos += 4;
  if (count < 0 || size_t(count) > md.size() / 2) return std::nullopt;
  std::set<std::string> out;
  for (int32_t i = 0; i < count; ++i) {
    if (!need(2)) return std::nullopt;
    int16_t len = int16_t(load_be16(md.data() + pos));
    pos += 2;
    if (len < 0 || !need(size_t(len))) return std::nullopt;
    out.emplace(reinterpret_cast<const char*>(md.data() + pos), size_t(len));
    pos += size_t(len);
  }
  return out;
}

const char* state_name_for_listing(GroupState s) {
  return coordinator::group_state_name(s);
}

}  // namespace

// ---- FindCoordinator ----

namespace {

// Cluster mode: __consumer_offsets is made on first need, as Kafka does (the controller places
// it; until enough brokers are live for offsets.topic.replication.factor it is refused and
// groups wait). Runs on the metadata thread (create_topic blocks); one creation at a time.
void create_offsets_topic(Broker& b, ClusterNode& node, GroupService& gs,
                          asio::any_io_executor metadata) {
  if (!gs.begin_topic_creation()) return;
  asio::post(metadata, [&b, &node, &gs] {
    const BrokerConfig& c = b.config();
    CreateTopicSpec spec;
    spec.name = kOffsetsTopic;
    spec.partitions = c.offsets_topic_num_partitions;
    spec.replication_factor = c.offsets_topic_replication_factor;
    spec.configs = {{"cleanup.policy", "compact"},
                    {"segment.bytes", std::to_string(c.offsets_topic_segment_bytes)}};
    auto r = node.create_topic(spec);
    gs.end_topic_creation(r.error, r.message);
  });
}

}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::find_coordinator(
    Broker& b, Request& req, protocol::FindCoordinatorRequest& body) {
  GroupService& gs = groups(b);
  // Cluster mode: a group's coordinator is the leader of its partition of __consumer_offsets.
  ClusterNode* node = cluster_node(b);
  std::shared_ptr<const cluster::TableSnapshot> table;
  const cluster::TopicEntry* offsets = nullptr;
  std::vector<BrokerEndpoint> brokers;
  if (node != nullptr) {
    table = b.table_->snapshot();
    offsets = table->find(kOffsetsTopic);
    if (offsets == nullptr || offsets->partitions.empty()) {
      offsets = nullptr;
      create_offsets_topic(b, *node, gs, metadata(b));
    }
    brokers = view(b).brokers();
  }
  auto answer = [&](int8_t key_type, const std::string& key) {
    protocol::FindCoordinatorResponse::Coordinator c;
    c.key = key;
    if (key_type != 0) {
      c.error_code = code(ErrorCode::coordinator_not_available);
      c.error_message = "transactions are not supported by this broker yet";
    } else if (node != nullptr) {
      const BrokerEndpoint* leader = nullptr;
      if (offsets == nullptr) {
        c.error_message = "__consumer_offsets is being created";
      } else {
        int32_t p = offsets_partition_for(key, int32_t(offsets->partitions.size()));
        auto state = view(b).partition(*table, model::TopicPartition{kOffsetsTopic, p});
        for (const auto& e : brokers) {
          if (state && state->leader != cluster::kNoLeader && e.id == state->leader) leader = &e;
        }
        if (leader == nullptr) {
          c.error_message = fmt::format("{}-{} has no live leader", kOffsetsTopic, p);
        }
      }
      if (leader != nullptr) {
        c.node_id = leader->id;
        c.host = leader->host;
        c.port = leader->port;
      } else {
        c.error_code = code(ErrorCode::coordinator_not_available);
      }
    } else if (ErrorCode e = gs.availability(key); e != ErrorCode::none) {
      c.error_code = code(e);
      c.error_message = "the group's partition of __consumer_offsets is not available";
    } else {
      c.node_id = b.config().node_id;
      c.host = advertised_host(b);
      c.port = int32_t(advertised_port(b));
    }
    if (c.error_code != 0) c.node_id = -1;
    return c;
  };
  protocol::FindCoordinatorResponse resp;
  if (req.version >= 4) {
    for (const auto& key : body.coordinator_keys) {
      resp.coordinators.push_back(answer(body.key_type, key));
    }
  } else {
    auto c = answer(body.key_type, body.key);
    resp.error_code = c.error_code;
    if (c.error_code != 0) resp.error_message = c.error_message;
    resp.node_id = c.node_id;
    resp.host = c.host;
    resp.port = c.port;
  }
  co_return respond(req, resp);
}

// ---- JoinGroup ----

asio::awaitable<HandlerOutcome> Broker::Handlers::join_group(Broker& b, Request& req,
                                                             protocol::JoinGroupRequest& body) {
  coordinator::JoinRequest jr;
  jr.api_version = req.version;
  jr.group_id = body.group_id;
  jr.member_id = body.member_id;
  jr.group_instance_id = body.group_instance_id;
  jr.client_id = req.header.client_id.value_or("");
  jr.client_host = client_host(req.conn);
  jr.session_timeout_ms = body.session_timeout_ms;
  jr.rebalance_timeout_ms = req.version >= 1 ? body.rebalance_timeout_ms : -1;
  jr.protocol_type = body.protocol_type;
  for (auto& p : body.protocols) jr.protocols.push_back({p.name, std::move(p.metadata)});

  auto op = on_groups_async<coordinator::JoinResponse>(
      groups(b), [jr = std::move(jr)](GroupService& gs, auto done) mutable {
        if (ErrorCode e = gs.availability(jr.group_id); e != ErrorCode::none) {
          coordinator::JoinResponse r;
          r.error = e;
          r.member_id = jr.member_id;
          return done(std::move(r));
        }
        auto& c = gs.coordinator(jr.group_id);
        c.join(std::move(jr), [done](coordinator::JoinResponse r) mutable { done(std::move(r)); });
      });
  coordinator::JoinResponse r = co_await std::move(op);

  protocol::JoinGroupResponse resp;
  resp.error_code = code(r.error);
  resp.generation_id = r.generation_id;
  if (!r.protocol_type.empty()) resp.protocol_type = r.protocol_type;
  if (r.protocol_name) {
    resp.protocol_name = r.protocol_name;
  } else if (req.version < 7) {
    resp.protocol_name = "";  // not nullable before v7
  }
  resp.leader = r.leader_id;
  resp.skip_assignment = r.skip_assignment;
  resp.member_id = r.member_id;
  for (auto& m : r.members) {
    resp.members.push_back({m.member_id, m.group_instance_id, std::move(m.metadata), {}});
  }
  co_return respond(req, resp);
}

// ---- SyncGroup ----

asio::awaitable<HandlerOutcome> Broker::Handlers::sync_group(Broker& b, Request& req,
                                                             protocol::SyncGroupRequest& body) {
  coordinator::SyncRequest sr;
  sr.group_id = body.group_id;
  sr.generation_id = body.generation_id;
  sr.member_id = body.member_id;
  sr.group_instance_id = body.group_instance_id;
  sr.protocol_type = body.protocol_type;
  sr.protocol_name = body.protocol_name;
  for (auto& a : body.assignments)
    sr.assignments.emplace_back(a.member_id, std::move(a.assignment));

  auto op = on_groups_async<coordinator::SyncResponse>(
      groups(b), [sr = std::move(sr)](GroupService& gs, auto done) mutable {
        if (ErrorCode e = gs.availability(sr.group_id); e != ErrorCode::none) {
          return done(coordinator::SyncResponse{.error = e});
        }
        auto& c = gs.coordinator(sr.group_id);
        c.sync(std::move(sr), [done](coordinator::SyncResponse r) mutable { done(std::move(r)); });
      });
  coordinator::SyncResponse r = co_await std::move(op);
  protocol::SyncGroupResponse resp;
  resp.error_code = code(r.error);
  resp.protocol_type = r.protocol_type;
  resp.protocol_name = r.protocol_name;
  resp.assignment = std::move(r.assignment);
  co_return respond(req, resp);
}

// ---- Heartbeat ----

asio::awaitable<HandlerOutcome> Broker::Handlers::heartbeat(Broker& b, Request& req,
                                                            protocol::HeartbeatRequest& body) {
  coordinator::HeartbeatRequest hr{body.group_id, body.generation_id, body.member_id,
                                   body.group_instance_id};
  auto op = on_groups<ErrorCode>(groups(b), [hr = std::move(hr)](GroupService& gs) {
    ErrorCode e = gs.availability(hr.group_id);
    // While the partition loads the member is told all is well (as Kafka does): it keeps its
    // session and finds out about its group once it is loaded.
    if (e == ErrorCode::coordinator_load_in_progress) return ErrorCode::none;
    if (e != ErrorCode::none) return e;
    return gs.coordinator(hr.group_id).heartbeat(hr);
  });
  ErrorCode e = co_await std::move(op);
  protocol::HeartbeatResponse resp;
  resp.error_code = code(e);
  co_return respond(req, resp);
}

// ---- LeaveGroup ----

asio::awaitable<HandlerOutcome> Broker::Handlers::leave_group(Broker& b, Request& req,
                                                              protocol::LeaveGroupRequest& body) {
  coordinator::LeaveRequest lr;
  lr.group_id = body.group_id;
  if (req.version < 3) {
    lr.members.push_back({body.member_id, std::nullopt});
  } else {
    for (const auto& m : body.members) lr.members.push_back({m.member_id, m.group_instance_id});
  }
  auto op = on_groups<coordinator::LeaveResponse>(groups(b), [lr](GroupService& gs) {
    if (ErrorCode e = gs.availability(lr.group_id); e != ErrorCode::none) {
      return coordinator::LeaveResponse{e, {}};
    }
    return gs.coordinator(lr.group_id).leave(lr);
  });
  coordinator::LeaveResponse r = co_await std::move(op);
  protocol::LeaveGroupResponse resp;
  resp.error_code = code(r.error);
  if (req.version < 3) {
    if (r.error == ErrorCode::none && !r.member_errors.empty()) {
      resp.error_code = code(r.member_errors.front());
    }
  } else if (r.error == ErrorCode::none) {
    for (size_t i = 0; i < lr.members.size() && i < r.member_errors.size(); ++i) {
      resp.members.push_back(
          {lr.members[i].member_id, lr.members[i].group_instance_id, code(r.member_errors[i]), {}});
    }
  }
  co_return respond(req, resp);
}

// ---- OffsetCommit ----

asio::awaitable<HandlerOutcome> Broker::Handlers::offset_commit(
    Broker& b, Request& req, protocol::OffsetCommitRequest& body) {
  const int16_t v = req.version;
  GroupService& gs = groups(b);
  int64_t now = gs.options().clock->now_ms();
  auto topics = b.topics().snapshot();

  protocol::OffsetCommitResponse resp;
  std::vector<GroupService::Commit> commits;
  // Where each commit's error goes in the response.
  std::vector<protocol::OffsetCommitResponse::OffsetCommitResponsePartition*> slots;
  for (auto& t : body.topics) resp.topics.push_back({t.name, {}, {}});
  for (size_t ti = 0; ti < body.topics.size(); ++ti) {
    auto& t = body.topics[ti];
    const TopicInfo* info = b.topics().find(*topics, t.name);
    for (auto& p : t.partitions) {
      resp.topics[ti].partitions.push_back({p.partition_index, 0, {}});
    }
    for (size_t pi = 0; pi < t.partitions.size(); ++pi) {
      auto& p = t.partitions[pi];
      auto& out = resp.topics[ti].partitions[pi];
      if (!has_partition(info, p.partition_index)) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        continue;
      }
      if (p.committed_metadata &&
          p.committed_metadata->size() > size_t(gs.options().metadata_max_bytes)) {
        out.error_code = code(ErrorCode::offset_metadata_too_large);
        continue;
      }
      coordinator::OffsetCommitValue value;
      value.offset = p.committed_offset;
      value.leader_epoch = v >= 6 ? p.committed_leader_epoch : -1;
      value.metadata = p.committed_metadata.value_or("");
      // v1 carries a commit time per partition (-1: now); v2-v4 a retention time (-1: the
      // broker's rule).
      value.commit_timestamp_ms = (v == 1 && p.commit_timestamp >= 0) ? p.commit_timestamp : now;
      if (v >= 2 && v <= 4 && body.retention_time_ms >= 0) {
        value.expire_timestamp_ms = value.commit_timestamp_ms + body.retention_time_ms;
      }
      commits.push_back({t.name, p.partition_index, std::move(value)});
      slots.push_back(&out);
    }
  }

  std::string group_id = body.group_id;
  int32_t generation = v >= 1 ? body.generation_id_or_member_epoch : -1;
  std::string member_id = v >= 1 ? body.member_id : "";
  std::optional<std::string> instance_id = body.group_instance_id;
  auto op = on_groups_async<ErrorCode>(
      gs, [group_id, generation, member_id, instance_id, commits = std::move(commits)](
              GroupService& s, auto done) mutable {
        ErrorCode e = s.availability(group_id);
        if (e == ErrorCode::none && group_id.empty()) e = ErrorCode::invalid_group_id;
        if (e == ErrorCode::none) {
          e = s.coordinator(group_id).check_commit(group_id, generation, member_id, instance_id);
        }
        if (e != ErrorCode::none || commits.empty()) return done(e);
        s.commit(group_id, std::move(commits), [done](ErrorCode r) mutable { done(r); });
      });
  ErrorCode e = co_await std::move(op);
  for (auto* out : slots) out->error_code = code(e);
  co_return respond(req, resp);
}

// ---- OffsetFetch ----

namespace {

// One group's committed offsets for the requested partitions (all when topics is null).
template <typename TopicOut, typename Requested>
std::vector<TopicOut> fetched_offsets(const GroupService::GroupOffsets* offsets,
                                      const std::optional<std::vector<Requested>>& topics) {
  std::vector<TopicOut> out;
  auto fill = [](auto& p, const coordinator::OffsetCommitValue* v) {
    p.committed_offset = v ? v->offset : -1;
    p.committed_leader_epoch = v ? v->leader_epoch : -1;
    p.metadata = v ? v->metadata.value_or("") : "";
  };
  if (!topics) {
    if (offsets == nullptr) return out;
    for (const auto& [tp, value] : *offsets) {
      if (out.empty() || out.back().name != tp.first) out.push_back(TopicOut{tp.first, {}, {}});
      auto& p = out.back().partitions.emplace_back();
      p.partition_index = tp.second;
      fill(p, &value);
    }
    return out;
  }
  for (const auto& t : *topics) {
    TopicOut to{t.name, {}, {}};
    for (int32_t index : t.partition_indexes) {
      auto& p = to.partitions.emplace_back();
      p.partition_index = index;
      const coordinator::OffsetCommitValue* v = nullptr;
      if (offsets) {
        auto it = offsets->find({t.name, index});
        if (it != offsets->end()) v = &it->second;
      }
      fill(p, v);
    }
    out.push_back(std::move(to));
  }
  return out;
}

}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::offset_fetch(Broker& b, Request& req,
                                                               protocol::OffsetFetchRequest& body) {
  using Resp = protocol::OffsetFetchResponse;
  const int16_t v = req.version;
  auto op = on_groups<Resp>(groups(b), [v, body = std::move(body)](GroupService& gs) {
    Resp resp;
    if (v >= 8) {
      for (const auto& g : body.groups) {
        Resp::OffsetFetchResponseGroup out;
        out.group_id = g.group_id;
        out.error_code = code(gs.availability(g.group_id));
        if (out.error_code == 0) {
          out.topics =
              fetched_offsets<Resp::OffsetFetchResponseTopics>(gs.offsets(g.group_id), g.topics);
        }
        resp.groups.push_back(std::move(out));
      }
      return resp;
    }
    ErrorCode e = gs.availability(body.group_id);
    if (e == ErrorCode::none) {
      resp.topics =
          fetched_offsets<Resp::OffsetFetchResponseTopic>(gs.offsets(body.group_id), body.topics);
    } else if (v < 2 && body.topics) {
      // No top-level error before v2: every partition carries it.
      resp.topics = fetched_offsets<Resp::OffsetFetchResponseTopic>(nullptr, body.topics);
      for (auto& t : resp.topics) {
        for (auto& p : t.partitions) p.error_code = code(e);
      }
    }
    resp.error_code = code(e);
    return resp;
  });
  Resp resp = co_await std::move(op);
  co_return respond(req, resp);
}

// ---- ListGroups ----

asio::awaitable<HandlerOutcome> Broker::Handlers::list_groups(Broker& b, Request& req,
                                                              protocol::ListGroupsRequest& body) {
  using Resp = protocol::ListGroupsResponse;
  auto op = on_groups<Resp>(groups(b), [filter = body.states_filter](GroupService& gs) {
    Resp resp;
    auto wanted = [&](const std::string& state) {
      if (filter.empty()) return true;
      for (const auto& f : filter) {
        if (f == state) return true;
      }
      return false;
    };
    for (const auto& g : gs.list_groups()) {
      std::string state = state_name_for_listing(g.state);
      if (wanted(state)) resp.groups.push_back({g.group_id, g.protocol_type, state, "classic", {}});
    }
    for (const auto& id : gs.offset_only_groups()) {
      if (wanted("Empty")) resp.groups.push_back({id, "", "Empty", "classic", {}});
    }
    return resp;
  });
  Resp resp = co_await std::move(op);
  co_return respond(req, resp);
}

// ---- DescribeGroups ----

asio::awaitable<HandlerOutcome> Broker::Handlers::describe_groups(
    Broker& b, Request& req, protocol::DescribeGroupsRequest& body) {
  using Resp = protocol::DescribeGroupsResponse;
  bool ops = req.version >= 3 && body.include_authorized_operations;
  auto op = on_groups<Resp>(groups(b), [ops, groups = body.groups](GroupService& gs) {
    Resp resp;
    for (const auto& id : groups) {
      Resp::DescribedGroup out;
      out.group_id = id;
      if (ErrorCode e = gs.availability(id); e != ErrorCode::none) {
        out.error_code = code(e);
        resp.groups.push_back(std::move(out));
        continue;
      }
      auto d = gs.coordinator(id).describe(id);
      GroupState state = d.state;
      // A group known only by its offsets is Empty, as Kafka shows it.
      if (state == GroupState::dead && gs.offsets(id) != nullptr) state = GroupState::empty;
      out.group_state = coordinator::group_state_name(state);
      out.protocol_type = d.protocol_type;
      out.protocol_data = d.protocol_name;
      for (auto& m : d.members) {
        out.members.push_back({m.member_id,
                               m.group_instance_id,
                               m.client_id,
                               m.client_host,
                               std::move(m.metadata),
                               std::move(m.assignment),
                               {}});
      }
      // No ACLs here: every group operation (READ, DELETE, DESCRIBE) is allowed.
      if (ops) out.authorized_operations = (1 << 3) | (1 << 6) | (1 << 8);
      resp.groups.push_back(std::move(out));
    }
    return resp;
  });
  Resp resp = co_await std::move(op);
  co_return respond(req, resp);
}

// ---- DeleteGroups ----

asio::awaitable<HandlerOutcome> Broker::Handlers::delete_groups(
    Broker& b, Request& req, protocol::DeleteGroupsRequest& body) {
  protocol::DeleteGroupsResponse resp;
  for (const auto& id : body.groups_names) {
    auto op = on_groups_async<ErrorCode>(groups(b), [id](GroupService& gs, auto done) mutable {
      if (ErrorCode e = gs.availability(id); e != ErrorCode::none) return done(e);
      gs.delete_group(id, [done](ErrorCode e) mutable { done(e); });
    });
    ErrorCode e = co_await std::move(op);
    resp.results.push_back({id, code(e), {}});
  }
  co_return respond(req, resp);
}

// ---- OffsetDelete ----

asio::awaitable<HandlerOutcome> Broker::Handlers::offset_delete(
    Broker& b, Request& req, protocol::OffsetDeleteRequest& body) {
  using Resp = protocol::OffsetDeleteResponse;
  auto topics = b.topics().snapshot();
  Resp resp;
  for (const auto& t : body.topics) {
    Resp::OffsetDeleteResponseTopic out{t.name, {}, {}};
    for (const auto& p : t.partitions) out.partitions.push_back({p.partition_index, 0, {}});
    resp.topics.push_back(std::move(out));
  }
  struct Plan {
    ErrorCode group_error = ErrorCode::none;
    std::set<std::string> subscribed;  // topics a member of a non-empty consumer group reads
  };
  std::string group_id = body.group_id;
  auto plan_op = on_groups<Plan>(groups(b), [group_id](GroupService& gs) {
    Plan plan;
    plan.group_error = gs.availability(group_id);
    if (plan.group_error != ErrorCode::none) return plan;
    auto d = gs.coordinator(group_id).describe(group_id);
    if (d.state == GroupState::dead) {
      if (gs.offsets(group_id) == nullptr) plan.group_error = ErrorCode::group_id_not_found;
      return plan;
    }
    if (d.state == GroupState::empty) return plan;
    if (d.protocol_type != "consumer") {
      plan.group_error = ErrorCode::non_empty_group;
      return plan;
    }
    for (const auto& m : d.members) {
      auto topics = subscribed_topics(m.metadata);
      if (!topics) {
        plan.group_error = ErrorCode::non_empty_group;  // cannot tell: refuse
        return plan;
      }
      plan.subscribed.insert(topics->begin(), topics->end());
    }
    return plan;
  });
  Plan plan = co_await std::move(plan_op);
  resp.error_code = code(plan.group_error);
  if (plan.group_error != ErrorCode::none) {
    resp.topics.clear();
    co_return respond(req, resp);
  }
  std::vector<GroupService::TopicPartition> doomed;
  std::vector<Resp::OffsetDeleteResponsePartition*> slots;
  for (auto& t : resp.topics) {
    const TopicInfo* info = b.topics().find(*topics, t.name);
    for (auto& p : t.partitions) {
      if (!has_partition(info, p.partition_index)) {
        p.error_code = code(ErrorCode::unknown_topic_or_partition);
      } else if (plan.subscribed.contains(t.name)) {
        p.error_code = code(ErrorCode::group_subscribed_to_topic);
      } else {
        doomed.emplace_back(t.name, p.partition_index);
        slots.push_back(&p);
      }
    }
  }
  if (!doomed.empty()) {
    auto op = on_groups_async<ErrorCode>(
        groups(b), [group_id, doomed = std::move(doomed)](GroupService& gs, auto done) mutable {
          gs.delete_offsets(group_id, std::move(doomed), [done](ErrorCode e) mutable { done(e); });
        });
    ErrorCode e = co_await std::move(op);
    for (auto* p : slots) p->error_code = code(e);
  }
  co_return respond(req, resp);
}

}  // namespace ordo::broker
