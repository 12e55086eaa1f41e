// Topic administration (create, delete, partitions, configs), DeleteRecords, DescribeCluster
// and DescribeLogDirs. Changes to topics run on the metadata thread, one at a time, through
// the TopicAdmin (topic_admin.h).

#include <sys/statvfs.h>

#include <filesystem>

#include "broker/cluster_node.h"
#include "broker/groups.h"
#include "broker/handlers.h"
#include "protocol/messages/alter_configs_request.h"
#include "protocol/messages/alter_configs_response.h"
#include "protocol/messages/create_partitions_request.h"
#include "protocol/messages/create_partitions_response.h"
#include "protocol/messages/create_topics_request.h"
#include "protocol/messages/create_topics_response.h"
#include "protocol/messages/delete_records_request.h"
#include "protocol/messages/delete_records_response.h"
#include "protocol/messages/delete_topics_request.h"
#include "protocol/messages/delete_topics_response.h"
#include "protocol/messages/describe_cluster_request.h"
#include "protocol/messages/describe_cluster_response.h"
#include "protocol/messages/describe_configs_request.h"
#include "protocol/messages/describe_configs_response.h"
#include "protocol/messages/describe_log_dirs_request.h"
#include "protocol/messages/describe_log_dirs_response.h"
#include "protocol/messages/incremental_alter_configs_request.h"
#include "protocol/messages/incremental_alter_configs_response.h"

namespace ordo::broker {

namespace {

constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;

// DescribeConfigs config_source values.
constexpr int8_t kSourceDynamicTopic = 1;
constexpr int8_t kSourceStaticBroker = 4;
constexpr int8_t kSourceDefault = 5;

using Outcome = std::pair<ErrorCode, std::string>;

// Copies an outcome into a per-resource result (error_code, and error_message on error).
template <typename Out>
void set_outcome(Out& out, const Outcome& r) {
  out.error_code = code(r.first);
  if (r.first != ErrorCode::none) out.error_message = r.second;
}

}  // namespace

// ---- CreateTopics ----

asio::awaitable<HandlerOutcome> Broker::Handlers::create_topics(
    Broker& b, Request& req, protocol::CreateTopicsRequest& body) {
  protocol::CreateTopicsResponse resp;
  for (const auto& t : body.topics) {
    protocol::CreateTopicsResponse::CreatableTopicResult out;
    out.name = t.name;
    std::map<std::string, std::string> configs;
    std::optional<Outcome> bad;
    for (const auto& c : t.configs) {
      if (!c.value) {
        bad = Outcome{ErrorCode::invalid_config, fmt::format("{}: null value", c.name)};
        break;
      }
      configs[c.name] = *c.value;
    }
    if (ClusterNode* node = cluster_node(b); node != nullptr && !bad) {
      // Cluster mode: the controller checks, places and records it.
      CreateTopicSpec spec;
      spec.name = t.name;
      spec.partitions = t.num_partitions;
      spec.replication_factor = t.replication_factor;
      if (!t.assignments.empty() && (t.num_partitions != -1 || t.replication_factor != -1)) {
        bad = Outcome{ErrorCode::invalid_request,
                      "assignments need num_partitions and replication_factor of -1"};
      }
      for (size_t i = 0; i < t.assignments.size() && !bad; ++i) {
        if (t.assignments[i].partition_index != int32_t(i)) {
          bad = Outcome{ErrorCode::invalid_replica_assignment,
                        "assignments must name partitions 0..n-1 in order"};
        }
        spec.assignment.push_back(t.assignments[i].broker_ids);
      }
      spec.configs = configs;
      spec.validate_only = body.validate_only;
      if (!bad) {
        auto op = run_on<TopicChangeResult>(metadata(b),
                                            [node, spec] { return node->create_topic(spec); });
        auto r = co_await std::move(op);
        out.error_code = code(r.error);
        if (r.error != ErrorCode::none) {
          out.error_message = r.message;
        } else {
          out.topic_id = r.topic.id;
          out.num_partitions = r.topic.partitions;
          out.replication_factor = int16_t(r.replication_factor);
        }
        resp.topics.push_back(std::move(out));
        continue;
      }
    }
    int32_t partitions = t.num_partitions == -1 ? b.config().num_partitions : t.num_partitions;
    if (bad) {
    } else if (!t.assignments.empty()) {
      if (t.num_partitions != -1 || t.replication_factor != -1) {
        bad = Outcome{ErrorCode::invalid_request,
                      "assignments need num_partitions and replication_factor of -1"};
      }
      partitions = int32_t(t.assignments.size());
      for (size_t i = 0; i < t.assignments.size() && !bad; ++i) {
        const auto& a = t.assignments[i];
        if (a.partition_index != int32_t(i) || a.broker_ids != std::vector{b.config().node_id}) {
          bad =
              Outcome{ErrorCode::invalid_replica_assignment,
                      fmt::format("partitions 0..n-1 each on broker {} only", b.config().node_id)};
        }
      }
    } else if (t.replication_factor != -1 && t.replication_factor != 1) {
      bad = Outcome{ErrorCode::invalid_replication_factor,
                    fmt::format("replication factor {} is larger than the 1 available broker",
                                t.replication_factor)};
    }
    if (bad) {
      out.error_code = code(bad->first);
      out.error_message = bad->second;
      resp.topics.push_back(std::move(out));
      continue;
    }
    std::string name = t.name;
    bool validate_only = body.validate_only;
    auto op0 = run_on<TopicAdmin::CreateResult>(
        metadata(b), [&b, name, partitions, configs, validate_only] {
          return topic_admin(b).create_topic(name, partitions, configs, validate_only);
        });
    auto r = co_await std::move(op0);
    out.error_code = code(r.error);
    if (r.error != ErrorCode::none) {
      out.error_message = r.message;
    } else {
      out.topic_id = r.topic.id;
      out.num_partitions = r.topic.partitions;
      out.replication_factor = 1;
      std::vector<protocol::CreateTopicsResponse::CreatableTopicConfigs> cs;
      for (const auto& d : topic_config_defs()) {
        auto it = configs.find(std::string(d.name));
        bool set = it != configs.end();
        cs.push_back({std::string(d.name),
                      set ? it->second : topic_config_default(b.config(), d.name),
                      false,
                      set ? kSourceDynamicTopic : kSourceDefault,
                      false,
                      {}});
      }
      out.configs = std::move(cs);
    }
    resp.topics.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- DeleteTopics ----

asio::awaitable<HandlerOutcome> Broker::Handlers::delete_topics(
    Broker& b, Request& req, protocol::DeleteTopicsRequest& body) {
  // v0-5 name topics; v6 names or ids.
  std::vector<protocol::DeleteTopicsRequest::DeleteTopicState> wanted = body.topics;
  for (const auto& n : body.topic_names) wanted.push_back({n, {}, {}});
  protocol::DeleteTopicsResponse resp;
  for (const auto& w : wanted) {
    protocol::DeleteTopicsResponse::DeletableTopicResult out;
    out.name = w.name;
    out.topic_id = w.topic_id;
    std::optional<std::string> name = w.name;
    if (!name) {
      auto snap = b.topics().snapshot();
      for (const auto& [n, t] : *snap) {
        if (t.id == w.topic_id) name = n;
      }
      if (!name) {
        out.error_code = code(ErrorCode::unknown_topic_id);
        resp.responses.push_back(std::move(out));
        continue;
      }
      out.name = name;
    }
    auto op1 = run_on<Outcome>(metadata(b), [&b, n = *name]() -> Outcome {
      if (ClusterNode* node = cluster_node(b)) {
        auto r = node->delete_topic(n);
        return {r.error, r.message};
      }
      return topic_admin(b).delete_topic(n);
    });
    auto r = co_await std::move(op1);
    set_outcome(out, r);
    resp.responses.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- CreatePartitions ----

asio::awaitable<HandlerOutcome> Broker::Handlers::create_partitions(
    Broker& b, Request& req, protocol::CreatePartitionsRequest& body) {
  protocol::CreatePartitionsResponse resp;
  for (const auto& t : body.topics) {
    protocol::CreatePartitionsResponse::CreatePartitionsTopicResult out;
    out.name = t.name;
    if (ClusterNode* node = cluster_node(b)) {
      std::vector<std::vector<int32_t>> assignment;
      if (t.assignments) {
        for (const auto& a : *t.assignments) assignment.push_back(a.broker_ids);
      }
      auto op = run_on<TopicChangeResult>(
          metadata(b),
          [node, name = t.name, count = t.count, assignment, validate_only = body.validate_only] {
            return node->set_partitions(name, count, assignment, validate_only);
          });
      auto r = co_await std::move(op);
      set_outcome(out, Outcome{r.error, r.message});
      resp.results.push_back(std::move(out));
      continue;
    }
    bool bad_assignment = false;
    if (t.assignments) {
      for (const auto& a : *t.assignments) {
        if (a.broker_ids != std::vector{b.config().node_id}) bad_assignment = true;
      }
    }
    Outcome r;
    if (bad_assignment) {
      r = {ErrorCode::invalid_replica_assignment,
           fmt::format("new partitions can only be on broker {}", b.config().node_id)};
    } else {
      bool validate_only = body.validate_only;
      auto op2 = run_on<Outcome>(metadata(b), [&b, name = t.name, count = t.count, validate_only] {
        return topic_admin(b).set_partitions(name, count, validate_only);
      });
      r = co_await std::move(op2);
    }
    set_outcome(out, r);
    resp.results.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- DescribeConfigs ----

asio::awaitable<HandlerOutcome> Broker::Handlers::describe_configs(
    Broker& b, Request& req, protocol::DescribeConfigsRequest& body) {
  using Entry = protocol::DescribeConfigsResponse::DescribeConfigsResourceResult;
  protocol::DescribeConfigsResponse resp;
  auto snap = b.topics().snapshot();
  auto wanted = [](const auto& keys, std::string_view name) {
    return !keys || keys->empty() || std::find(keys->begin(), keys->end(), name) != keys->end();
  };
  for (const auto& r : body.resources) {
    protocol::DescribeConfigsResponse::DescribeConfigsResult out;
    out.resource_type = r.resource_type;
    out.resource_name = r.resource_name;
    if (r.resource_type == kResourceTopic) {
      const TopicInfo* t = b.topics().find(*snap, r.resource_name);
      if (!t) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        out.error_message = fmt::format("no topic '{}'", r.resource_name);
      } else {
        for (const auto& d : topic_config_defs()) {
          if (!wanted(r.configuration_keys, d.name)) continue;
          Entry e;
          e.name = std::string(d.name);
          auto it = t->configs.find(e.name);
          bool set = it != t->configs.end();
          std::string def = topic_config_default(b.config(), d.name);
          e.value = set ? it->second : def;
          e.is_default = !set;
          e.config_source = set ? kSourceDynamicTopic : kSourceDefault;
          e.config_type = int8_t(d.type);
          if (body.include_documentation) e.documentation = std::string(d.doc);
          if (body.include_synonyms) {
            if (set) e.synonyms.push_back({e.name, it->second, kSourceDynamicTopic, {}});
            e.synonyms.push_back({e.name, def, kSourceDefault, {}});
          }
          out.configs.push_back(std::move(e));
        }
      }
    } else if (r.resource_type == kResourceBroker) {
      if (!r.resource_name.empty() && r.resource_name != std::to_string(b.config().node_id)) {
        out.error_code = code(ErrorCode::invalid_request);
        out.error_message =
            fmt::format("broker {} is not this broker ({})", r.resource_name, b.config().node_id);
      } else {
        for (const auto& s : describe_config(b.config())) {
          if (!wanted(r.configuration_keys, s.name)) continue;
          Entry e;
          e.name = s.name;
          e.value = s.value;
          e.read_only = true;
          e.config_source = kSourceStaticBroker;
          e.config_type = int8_t(ConfigType::string);
          if (body.include_documentation) e.documentation = s.description;
          out.configs.push_back(std::move(e));
        }
      }
    } else {
      out.error_code = code(ErrorCode::invalid_request);
      out.error_message = fmt::format("resource type {} is not supported", r.resource_type);
    }
    resp.results.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- AlterConfigs (replaces the whole set) and IncrementalAlterConfigs ----

namespace {
template <typename Resp, typename Res>
void reject_non_topic(const Res& r, Resp& out) {
  out.error_code = code(r.resource_type == kResourceBroker ? ErrorCode::invalid_request
                                                           : ErrorCode::invalid_request);
  out.error_message = r.resource_type == kResourceBroker
                          ? std::string("broker settings are static (set them in the config file)")
                          : fmt::format("resource type {} is not supported", r.resource_type);
}
}  // namespace

asio::awaitable<HandlerOutcome> Broker::Handlers::alter_configs(
    Broker& b, Request& req, protocol::AlterConfigsRequest& body) {
  protocol::AlterConfigsResponse resp;
  for (const auto& r : body.resources) {
    protocol::AlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = r.resource_type;
    out.resource_name = r.resource_name;
    if (r.resource_type != kResourceTopic) {
      reject_non_topic(r, out);
      resp.responses.push_back(std::move(out));
      continue;
    }
    std::map<std::string, std::string> configs;
    for (const auto& c : r.configs) {
      if (c.value) configs[c.name] = *c.value;
    }
    bool validate_only = body.validate_only;
    auto op3 = run_on<Outcome>(
        metadata(b), [&b, name = r.resource_name, configs, validate_only]() -> Outcome {
          if (ClusterNode* node = cluster_node(b)) {
            auto r = node->set_topic_configs(name, configs, validate_only);
            return {r.error, r.message};
          }
          return topic_admin(b).set_topic_configs(name, configs, validate_only);
        });
    auto res = co_await std::move(op3);
    set_outcome(out, res);
    resp.responses.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

asio::awaitable<HandlerOutcome> Broker::Handlers::incremental_alter_configs(
    Broker& b, Request& req, protocol::IncrementalAlterConfigsRequest& body) {
  protocol::IncrementalAlterConfigsResponse resp;
  for (const auto& r : body.resources) {
    protocol::IncrementalAlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = r.resource_type;
    out.resource_name = r.resource_name;
    if (r.resource_type != kResourceTopic) {
      reject_non_topic(r, out);
      resp.responses.push_back(std::move(out));
      continue;
    }
    bool validate_only = body.validate_only;
    auto ops = r.configs;
    auto op4 =
        run_on<Outcome>(metadata(b), [&b, name = r.resource_name, ops, validate_only]() -> Outcome {
          const TopicInfo* t = b.topics().find(*b.topics().snapshot(), name);
          if (!t)
            return {ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name)};
          auto configs = t->configs;
          for (const auto& op : ops) {
            const TopicConfigDef* def = find_topic_config(op.name);
            if (!def)
              return {ErrorCode::invalid_config, fmt::format("unknown topic config '{}'", op.name)};
            std::string current = configs.contains(op.name)
                                      ? configs[op.name]
                                      : topic_config_default(b.config(), op.name);
            switch (op.config_operation) {
              case 0:  // SET
                if (!op.value)
                  return {ErrorCode::invalid_config, fmt::format("{}: null value", op.name)};
                configs[op.name] = *op.value;
                break;
              case 1:  // DELETE (back to the default)
                configs.erase(op.name);
                break;
              case 2:    // APPEND
              case 3: {  // SUBTRACT
                if (def->type != ConfigType::list || !op.value) {
                  return {ErrorCode::invalid_config,
                          fmt::format("{}: APPEND and SUBTRACT need a list config and a value",
                                      op.name)};
                }
                std::vector<std::string> items;
                for (size_t at = 0; at <= current.size();) {
                  size_t comma = current.find(',', at);
                  if (comma == std::string::npos) comma = current.size();
                  if (comma > at) items.push_back(current.substr(at, comma - at));
                  at = comma + 1;
                }
                auto found = std::find(items.begin(), items.end(), *op.value);
                if (op.config_operation == 2 && found == items.end()) items.push_back(*op.value);
                if (op.config_operation == 3 && found != items.end()) items.erase(found);
                std::string joined;
                for (const auto& i : items) joined += (joined.empty() ? "" : ",") + i;
                configs[op.name] = joined;
                break;
              }
              default:
                return {ErrorCode::invalid_request,
                        fmt::format("unknown config operation {}", op.config_operation)};
            }
          }
          if (ClusterNode* node = cluster_node(b)) {
            auto r = node->set_topic_configs(name, configs, validate_only);
            return {r.error, r.message};
          }
          return topic_admin(b).set_topic_configs(name, configs, validate_only);
        });
    auto res = co_await std::move(op4);
    set_outcome(out, res);
    resp.responses.push_back(std::move(out));
  }
  co_return respond(req, resp);
}

// ---- DeleteRecords ----

asio::awaitable<HandlerOutcome> Broker::Handlers::delete_records(
    Broker& b, Request& req, protocol::DeleteRecordsRequest& body) {
  using PartResult = protocol::DeleteRecordsResponse::DeleteRecordsPartitionResult;
  protocol::DeleteRecordsResponse resp;
  auto snap = b.topics().snapshot();
  for (const auto& t : body.topics) {
    auto& tout = resp.topics.emplace_back();
    tout.name = t.name;
    const TopicInfo* info = b.topics().find(*snap, t.name);
    for (const auto& p : t.partitions) {
      PartResult out;
      out.partition_index = p.partition_index;
      out.low_watermark = -1;
      if (!has_partition(info, p.partition_index)) {
        out.error_code = code(ErrorCode::unknown_topic_or_partition);
        tout.partitions.push_back(out);
        continue;
      }
      model::TopicPartition tp{t.name, p.partition_index};
      cluster::PartitionService& parts = partitions(b);
      if (auto le = parts.check_leader(tp)) {
        out.error_code = code(error_code_for(*le));
        tout.partitions.push_back(out);
        continue;
      }
      const int64_t before = p.offset;
      auto op = on_callback<Result<cluster::Truncation>>(
          [&parts, &tp, before](auto done) { parts.delete_records(tp, before, done); });
      Result<cluster::Truncation> r = co_await std::move(op);
      if (!r) {
        out.error_code = code(error_code_for(r.error()));
      } else {
        if (r->error) out.error_code = code(error_code_for(*r->error));
        out.low_watermark = r->low_watermark;
      }
      tout.partitions.push_back(out);
    }
  }
  co_return respond(req, resp);
}

// ---- DescribeCluster and DescribeLogDirs ----

asio::awaitable<HandlerOutcome> Broker::Handlers::describe_cluster(
    Broker& b, Request& req, protocol::DescribeClusterRequest& /*body: nothing in it matters*/) {
  protocol::DescribeClusterResponse resp;
  resp.cluster_id = b.config().cluster_id;
  const ClusterView& cluster = view(b);
  resp.controller_id = cluster.controller();
  for (auto& e : cluster.brokers()) {
    resp.brokers.push_back({e.id, std::move(e.host), e.port, std::move(e.rack), {}});
  }
  co_return respond(req, resp);
}

asio::awaitable<HandlerOutcome> Broker::Handlers::describe_log_dirs(
    Broker& b, Request& req, protocol::DescribeLogDirsRequest& body) {
  // status() blocks on the shards: run it on the metadata thread, not a network thread.
  auto op5 = run_on<std::vector<storage::PartitionStatus>>(metadata(b),
                                                           [&b] { return partitions(b).status(); });
  auto status = co_await std::move(op5);
  protocol::DescribeLogDirsResponse resp;
  auto& dir = resp.results.emplace_back();
  std::error_code ec;
  auto abs = std::filesystem::absolute(b.config().data_dir, ec);
  dir.log_dir = ec ? b.config().data_dir : abs.lexically_normal().string();
  struct statvfs fs;
  if (::statvfs(b.config().data_dir.c_str(), &fs) == 0) {
    dir.total_bytes = int64_t(fs.f_blocks) * int64_t(fs.f_frsize);
    dir.usable_bytes = int64_t(fs.f_bavail) * int64_t(fs.f_frsize);
  }
  auto wanted = [&](const model::TopicPartition& tp) {
    if (!body.topics) return true;
    for (const auto& t : *body.topics) {
      if (t.topic == tp.topic &&
          std::find(t.partitions.begin(), t.partitions.end(), tp.partition) != t.partitions.end()) {
        return true;
      }
    }
    return false;
  };
  std::map<std::string, protocol::DescribeLogDirsResponse::DescribeLogDirsTopic> topics;
  for (const auto& p : status) {
    if (!wanted(p.tp)) continue;
    auto& t = topics[p.tp.topic];
    t.name = p.tp.topic;
    t.partitions.push_back({p.tp.partition, p.size_bytes, 0, false, {}});
  }
  for (auto& [name, t] : topics) dir.topics.push_back(std::move(t));
  co_return respond(req, resp);
}

}  // namespace ordo::broker
