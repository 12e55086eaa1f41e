#include "cluster/controller_logic.h"

#include <algorithm>
#include <limits>
#include <set>

#include "cluster/placement.h"
#include "model/topic_partition.h"

namespace ordo::cluster {

namespace {

template <typename... Args>
TopicError topic_error(TopicErrc code, fmt::format_string<Args...> f, Args&&... args) {
  return TopicError{code, fmt::format(f, std::forward<Args>(args)...)};
}

size_t unfenced_count(const ClusterState& state) {
  size_t n = 0;
  for (const auto& b : state.brokers()) n += b.fenced ? 0 : 1;
  return n;
}

std::optional<TopicError> check_configs(const std::map<std::string, std::string>& configs,
                                        const storage::LogConfig& log) {
  if (configs.size() > kMaxConfigs) {
    return topic_error(TopicErrc::invalid_config, "more than {} configs", kMaxConfigs);
  }
  for (const auto& [k, v] : configs) {
    if (k.empty() || k.size() > kMaxNameBytes || v.size() > kMaxConfigValueBytes) {
      return topic_error(TopicErrc::invalid_config, "config '{}': name or value too long",
                         k.substr(0, 64));
    }
  }
  if (auto r = log.validate(); !r) return TopicError{TopicErrc::invalid_config, r.error().message};
  return std::nullopt;
}

bool same_registration(const BrokerRecord& a, const BrokerRecord& b) {
  return a.incarnation == b.incarnation && a.host == b.host && a.port == b.port &&
         a.peer_host == b.peer_host && a.peer_port == b.peer_port && a.rack == b.rack;
}

}  // namespace

std::variant<std::vector<std::vector<NodeId>>, TopicError> assignment_in_order(
    const std::vector<std::pair<int32_t, std::vector<NodeId>>>& indexed) {
  std::vector<std::vector<NodeId>> out(indexed.size());
  std::vector<bool> seen(indexed.size());
  for (const auto& [index, brokers] : indexed) {
    if (index < 0 || size_t(index) >= indexed.size() || seen[size_t(index)]) {
      return topic_error(TopicErrc::invalid_replica_assignment,
                         "partition indexes must be 0 to {}, each once (got {})",
                         int64_t(indexed.size()) - 1, index);
    }
    seen[size_t(index)] = true;
    out[size_t(index)] = brokers;
  }
  return out;
}

ControllerLogic::ControllerLogic(ControllerOptions options, int64_t now)
    : options_(options), leader_since_(now) {}

void ControllerLogic::reset(int64_t now) {
  leader_since_ = now;
  heartbeats_.clear();
  fence_proposed_.clear();
}

std::optional<int64_t> ControllerLogic::last_heartbeat(NodeId id) const {
  auto it = heartbeats_.find(id);
  if (it == heartbeats_.end()) return std::nullopt;
  return it->second;
}

Result<std::vector<MetadataCommand>> ControllerLogic::on_register(const ClusterState& state,
                                                                  BrokerRecord broker,
                                                                  int64_t now) {
  auto name_ok = [](const std::string& s) { return !s.empty() && s.size() <= kMaxNameBytes; };
  if (broker.id < 0 || broker.incarnation == 0 || !name_ok(broker.host) ||
      !name_ok(broker.peer_host) || broker.port < 1 || broker.port > 65535 ||
      broker.peer_port < 1 || broker.peer_port > 65535 || (broker.rack && !name_ok(*broker.rack))) {
    return make_error(Errc::invalid_argument,
                      "broker {}: not a valid registration (id >= 0, incarnation != 0, hosts of "
                      "1-{} bytes, ports 1-65535, a non-empty rack)",
                      broker.id, kMaxNameBytes);
  }
  auto current = state.broker(broker.id);
  heartbeats_[broker.id] = now;
  if (current && same_registration(*current, broker)) return std::vector<MetadataCommand>{};
  broker.epoch = (current ? current->epoch : 0) + 1;
  broker.fenced = options_.fence_on_register;
  return std::vector<MetadataCommand>{RegisterBroker{std::move(broker)}};
}

Result<std::vector<MetadataCommand>> ControllerLogic::on_heartbeat(const ClusterState& state,
                                                                   NodeId id, int64_t epoch,
                                                                   int64_t now) {
  auto b = state.broker(id);
  if (!b) return make_error(Errc::not_found, "broker {} is not registered", id);
  if (b->epoch != epoch) {
    return make_error(Errc::invalid_argument, "broker {}: epoch {} is not its current {}", id,
                      epoch, b->epoch);
  }
  heartbeats_[id] = now;
  fence_proposed_.erase({id, epoch});
  if (b->fenced) return std::vector<MetadataCommand>{UnfenceBroker{id, epoch}};
  return std::vector<MetadataCommand>{};
}

std::vector<MetadataCommand> ControllerLogic::tick(const ClusterState& state, int64_t now) {
  std::vector<MetadataCommand> out;
  const auto brokers = state.brokers();
  // Proposals the state has overtaken (fenced, registered again, gone) are forgotten.
  std::erase_if(fence_proposed_, [&](const auto& entry) {
    auto b = std::find_if(brokers.begin(), brokers.end(),
                          [&](const BrokerRecord& r) { return r.id == entry.first.first; });
    return b == brokers.end() || b->fenced || b->epoch != entry.first.second;
  });
  for (const BrokerRecord& b : brokers) {
    if (b.fenced) continue;
    auto hb = heartbeats_.find(b.id);
    const int64_t last = hb == heartbeats_.end() ? leader_since_ : hb->second;
    if (now - last < options_.session_timeout_ms) continue;
    auto sent = fence_proposed_.find({b.id, b.epoch});
    if (sent != fence_proposed_.end() && now - sent->second < options_.fence_retry_ms) continue;
    fence_proposed_[{b.id, b.epoch}] = now;
    out.push_back(FenceBroker{b.id, b.epoch});
  }
  return out;
}

Result<MetadataCommand> ControllerLogic::allocate_producer_ids(const ClusterState& state,
                                                               NodeId node, int64_t now) {
  (void)now;
  if (!state.broker(node)) return make_error(Errc::not_found, "broker {} is not registered", node);
  const int64_t count = std::clamp<int64_t>(options_.producer_id_block, 1, kMaxProducerIdBlock);
  const int64_t first = state.next_producer_id();
  if (first > std::numeric_limits<int64_t>::max() - count) {
    return make_error(Errc::too_large, "producer ids are used up");
  }
  return MetadataCommand(AllocateProducerIds{node, first, count});
}

std::optional<TopicError> ControllerLogic::check_assignment(
    const ClusterState& state, const std::vector<std::vector<NodeId>>& sets, size_t rf) const {
  for (size_t p = 0; p < sets.size(); ++p) {
    const auto& s = sets[p];
    if (s.empty() || s.size() > kMaxReplicas) {
      return topic_error(TopicErrc::invalid_replica_assignment,
                         "partition {}: {} replicas (1 to {})", p, s.size(), kMaxReplicas);
    }
    if (s.size() != rf) {
      return topic_error(TopicErrc::invalid_replica_assignment,
                         "partition {} has {} replicas, the topic's partitions have {}", p,
                         s.size(), rf);
    }
    std::set<NodeId> seen;
    for (NodeId n : s) {
      if (!seen.insert(n).second) {
        return topic_error(TopicErrc::invalid_replica_assignment,
                           "partition {} lists broker {} twice", p, n);
      }
      auto b = state.broker(n);
      if (!b || b->fenced) {
        return topic_error(TopicErrc::invalid_replica_assignment,
                           "partition {}: broker {} is not registered and unfenced", p, n);
      }
    }
  }
  return std::nullopt;
}

TopicResult ControllerLogic::create_topic(
    const ClusterState& state, const std::string& name, int32_t partitions,
    int16_t replication_factor, const std::optional<std::vector<std::vector<NodeId>>>& assignment,
    const std::map<std::string, std::string>& configs, const storage::LogConfig& log,
    const TopicId& id, uint64_t seed) const {
  if (!model::is_valid_topic_name(name)) {
    return topic_error(TopicErrc::invalid_topic,
                       "'{}' is not a valid topic name (1-249 characters of [a-zA-Z0-9._-])",
                       name.substr(0, 300));
  }
  auto table = state.table().snapshot();
  if (table->find(name)) {
    return topic_error(TopicErrc::topic_already_exists, "topic '{}' already exists", name);
  }
  if (auto e = check_configs(configs, log)) return *e;
  std::vector<std::vector<NodeId>> sets;
  if (assignment) {
    if (partitions != -1 || replication_factor != -1) {
      return topic_error(TopicErrc::invalid_request,
                         "with a manual assignment, the partition count and replication factor "
                         "must be -1");
    }
    if (assignment->empty()) {
      return topic_error(TopicErrc::invalid_replica_assignment, "an assignment of no partitions");
    }
    if (assignment->size() > size_t(options_.max_partitions_per_topic)) {
      return topic_error(TopicErrc::invalid_partitions, "more than {} partitions",
                         options_.max_partitions_per_topic);
    }
    if (auto e = check_assignment(state, *assignment, assignment->front().size())) return *e;
    sets = *assignment;
  } else {
    const int32_t count = partitions == -1 ? options_.default_partitions : partitions;
    if (count < 1 || count > options_.max_partitions_per_topic) {
      return topic_error(TopicErrc::invalid_partitions, "number of partitions must be in [1, {}]",
                         options_.max_partitions_per_topic);
    }
    const int16_t rf =
        replication_factor == -1 ? options_.default_replication_factor : replication_factor;
    if (rf < 1) {
      return topic_error(TopicErrc::invalid_replication_factor,
                         "replication factor must be larger than 0");
    }
    const size_t alive = unfenced_count(state);
    if (size_t(rf) > alive) {
      return topic_error(TopicErrc::invalid_replication_factor,
                         "unable to replicate the partition {} time(s): the target replication "
                         "factor of {} cannot be reached because only {} broker(s) are "
                         "registered and unfenced",
                         rf, rf, alive);
    }
    auto brokers = state.brokers();
    auto placed = place(count, rf, brokers, load_of(*table), seed);
    if (!placed) return TopicError{TopicErrc::invalid_replication_factor, placed.error().message};
    sets = std::move(*placed);
  }
  std::vector<MetadataCommand> out;
  out.push_back(Command(CreateTopic{name, id, log, std::move(sets)}));
  if (!configs.empty()) out.push_back(TopicConfigs{name, configs});
  return out;
}

TopicResult ControllerLogic::create_partitions(
    const ClusterState& state, const std::string& name, int32_t total,
    const std::optional<std::vector<std::vector<NodeId>>>& assignment, uint64_t seed) const {
  auto table = state.table().snapshot();
  const TopicEntry* t = table->find(name);
  if (!t) return topic_error(TopicErrc::unknown_topic, "no topic '{}'", name);
  const int32_t current = int32_t(t->partitions.size());
  if (total <= current) {
    return topic_error(TopicErrc::invalid_partitions,
                       "topic has {} partitions; the count can only grow (asked for {})", current,
                       total);
  }
  if (total > options_.max_partitions_per_topic) {
    return topic_error(TopicErrc::invalid_partitions, "at most {} partitions",
                       options_.max_partitions_per_topic);
  }
  const size_t adding = size_t(total - current);
  const size_t rf = t->partitions.empty() ? 1 : t->partitions.front().replicas.size();
  std::vector<std::vector<NodeId>> sets;
  if (assignment) {
    if (assignment->size() != adding) {
      return topic_error(TopicErrc::invalid_replica_assignment,
                         "{} new partitions but an assignment of {}", adding, assignment->size());
    }
    if (auto e = check_assignment(state, *assignment, rf)) return *e;
    sets = *assignment;
  } else {
    const size_t alive = unfenced_count(state);
    if (rf > alive) {
      return topic_error(TopicErrc::invalid_replication_factor,
                         "the topic's replication factor {} cannot be reached: only {} broker(s) "
                         "are registered and unfenced",
                         rf, alive);
    }
    auto brokers = state.brokers();
    auto placed = place(int32_t(adding), int16_t(rf), brokers, load_of(*table), seed);
    if (!placed) return TopicError{TopicErrc::invalid_replication_factor, placed.error().message};
    sets = std::move(*placed);
  }
  return std::vector<MetadataCommand>{Command(AddPartitions{name, current, std::move(sets)})};
}

TopicResult ControllerLogic::delete_topic(const ClusterState& state,
                                          const std::string& name) const {
  if (!state.table().snapshot()->find(name)) {
    return topic_error(TopicErrc::unknown_topic, "no topic '{}'", name);
  }
  return std::vector<MetadataCommand>{Command(DeleteTopic{name})};
}

TopicResult ControllerLogic::set_topic_configs(const ClusterState& state, const std::string& name,
                                               const std::map<std::string, std::string>& configs,
                                               const storage::LogConfig& log) const {
  if (!state.table().snapshot()->find(name)) {
    return topic_error(TopicErrc::unknown_topic, "no topic '{}'", name);
  }
  if (auto e = check_configs(configs, log)) return *e;
  return std::vector<MetadataCommand>{Command(SetConfig{name, log}), TopicConfigs{name, configs}};
}

}  // namespace ordo::cluster
