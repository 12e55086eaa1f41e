#include "broker/topic_admin.h"

#include <sys/resource.h>

#include <filesystem>

#include "base/log.h"
#include "broker/groups.h"

namespace ordo::broker {

using protocol::ErrorCode;

namespace {

constexpr int32_t kMaxPartitions = 100000;

std::string topic_error_name(const std::string& name) {
  return fmt::format("'{}' is not a valid topic name (1-249 characters of [a-zA-Z0-9._-])", name);
}

// Descriptors this process has open (bounded by the open-file limit).
int64_t open_descriptors() {
  std::error_code ec;
  int64_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

TopicAdmin::TopicAdmin(const BrokerConfig& config, TopicRegistry& topics,
                       cluster::PartitionTable& table, cluster::Reconciler& reconciler,
                       const std::function<Result<void>(int)>& step_hook)
    : config_(config),
      topics_(topics),
      table_(table),
      reconciler_(reconciler),
      step_hook_(step_hook) {}

// Refuses `adding` more partitions when this broker cannot hold them, before anything is made:
// max.partitions (all topics together), and the open-file limit (each partition keeps at least
// its active segment open; a reserve stays free for connections and new segments).
std::optional<TopicAdmin::Outcome> TopicAdmin::check_partition_limits(int64_t adding) {
  int64_t total = 0;
  for (const auto& [n, t] : *topics_.snapshot()) total += t.partitions;
  const int64_t max = config_.max_partitions;
  if (max > 0 && total + adding > max) {
    return Outcome{ErrorCode::policy_violation,
                   fmt::format("{} more partitions would bring this broker to {}, above "
                               "max.partitions={} (it holds {})",
                               adding, total + adding, max, total)};
  }
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const int64_t limit = int64_t(lim.rlim_cur);
    const int64_t reserve = std::max<int64_t>(64, limit / 8);
    const int64_t open = open_descriptors();
    if (open + adding + reserve > limit) {
      return Outcome{
          ErrorCode::policy_violation,
          fmt::format("{} more partitions need {} more open files: the broker has {} of its "
                      "limit of {} open (RLIMIT_NOFILE) and keeps {} for connections and new "
                      "segments, room for {} partitions; raise the limit (ulimit -n)",
                      adding, adding, open, limit, reserve,
                      std::max<int64_t>(0, limit - reserve - open))};
    }
  }
  return std::nullopt;
}

cluster::CreateTopic TopicAdmin::create_command(cluster::NodeId node, const TopicInfo& t,
                                                const storage::LogConfig& log) {
  cluster::CreateTopic c;
  c.name = t.name;
  c.id = t.id;
  c.log = log;
  c.replicas.assign(size_t(t.partitions), {node});
  return c;
}

// Makes partitions [from, to) of `name` all or nothing (docs/broker-metadata.md): the registry
// records the creation first; the partition table gets them and the reconciler makes their
// logs; the registry entry `done` publishes the result and drops the record in one write. A
// failure takes them out of the table again (the reconciler removes what was made) and drops
// the record; a crash leaves the record, and the next start removes what was made.
TopicAdmin::Outcome TopicAdmin::create_partitions_atomically(const std::string& name, int32_t from,
                                                             int32_t to,
                                                             const storage::LogConfig& log,
                                                             TopicInfo done) {
  int step = 0;
  auto next_step = [&]() -> Result<void> { return step_hook_ ? step_hook_(step++) : ok(); };
  if (auto r = next_step(); !r) return {ErrorCode::kafka_storage_error, r.error().message};
  if (auto r = topics_.begin_create({name, from, to}); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  cluster::Command add;
  if (from == 0) {
    add = create_command(config_.node_id, done, log);
  } else {
    add = cluster::AddPartitions{
        name, from,
        std::vector<std::vector<cluster::NodeId>>(size_t(to - from), {config_.node_id})};
  }
  cluster::Reconciler::Options made_options;
  made_options.defer_sync = true;  // one sync of the data dir below covers every partition made
  made_options.before_create = [&](const model::TopicPartition&) { return next_step(); };
  cluster::Reconciler::Report made;
  Result<void> failed = ok();
  if (auto r = table_.apply(add); !r) failed = std::move(r).error();
  if (failed) failed = reconciler_.reconcile(*table_.snapshot(), made, name, made_options);
  if (failed) failed = reconciler_.sync_created();
  if (failed) {
    failed = next_step();
    if (failed) failed = topics_.put(std::move(done));
    if (failed) return {ErrorCode::none, {}};
  }
  // Undo: out of the table, and the partitions made are closed and removed (the one that
  // failed left nothing).
  cluster::Command undo;
  if (from == 0) {
    undo = cluster::DeleteTopic{name};
  } else {
    undo = cluster::DeletePartitions{name, from};
  }
  bool undone = true;
  cluster::Reconciler::Report removed;
  if (auto r = table_.apply(undo); !r) {
    ORDO_LOG_ERROR("topic {}: undoing a failed creation: {}", name, r.error().to_string());
    undone = false;
  } else if (auto rr = reconciler_.reconcile(*table_.snapshot(), removed, name); !rr) {
    ORDO_LOG_ERROR("topic {}: undoing a failed creation: {}", name, rr.error().to_string());
    undone = false;
  }
  const int32_t made_to =
      made.failed_at ? made.failed_at->partition : from + int32_t(made.created.size());
  if (undone) {
    if (auto r = topics_.end_create(name); !r) {
      ORDO_LOG_ERROR("topic {}: undoing a failed creation: {}", name, r.error().to_string());
    }
  }
  std::string what = from == 0 ? fmt::format("creating topic '{}'", name)
                               : fmt::format("adding partitions to '{}'", name);
  std::string where = made_to < to ? fmt::format("partition {}", made_to) : std::string("sync");
  ORDO_LOG_WARN("{}: failed at {} of [{}, {}) and undone: {}", what, where, from, to,
                failed.error().to_string());
  return {ErrorCode::kafka_storage_error,
          fmt::format("{}: {}: {}; nothing was created", what, where, failed.error().message)};
}

TopicAdmin::CreateResult TopicAdmin::create_topic(const std::string& name, int32_t partitions,
                                                  const std::map<std::string, std::string>& configs,
                                                  bool validate_only) {
  CreateResult r;
  if (!model::is_valid_topic_name(name)) {
    return {ErrorCode::invalid_topic_exception, topic_error_name(name), {}};
  }
  if (topics_.find(*topics_.snapshot(), name)) {
    return {ErrorCode::topic_already_exists, fmt::format("topic '{}' already exists", name), {}};
  }
  if (partitions < 1 || partitions > kMaxPartitions) {
    return {ErrorCode::invalid_partitions,
            fmt::format("number of partitions must be in [1, {}]", kMaxPartitions),
            {}};
  }
  auto settings = resolve_topic_settings(config_, configs);
  if (!settings) return {ErrorCode::invalid_config, settings.error().message, {}};
  for (const auto& [k, v] : configs) {
    if (auto c = validate_topic_config(k, v); !c) {
      return {ErrorCode::invalid_config, c.error().message, {}};
    }
  }
  if (auto limit = check_partition_limits(partitions)) {
    return {limit->first, std::move(limit->second), {}};
  }
  r.topic = TopicInfo{name, random_topic_id(), partitions, configs};
  if (validate_only) return r;
  auto made = create_partitions_atomically(name, 0, partitions, settings->log, r.topic);
  if (made.first != ErrorCode::none) return {made.first, std::move(made.second), {}};
  return r;
}

TopicAdmin::Outcome TopicAdmin::delete_topic(const std::string& name) {
  const TopicInfo* t = topics_.find(*topics_.snapshot(), name);
  if (!t) return {ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name)};
  if (name == kOffsetsTopic) {
    return {ErrorCode::invalid_request, "__consumer_offsets is internal and cannot be deleted"};
  }
  // The registry first (with a pending-delete mark), then the files, then the mark: a crash in
  // between is finished by the next start.
  if (auto r = topics_.begin_delete(name); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  // Out of the partition table; the reconciler removes the logs.
  if (auto r = table_.apply(cluster::DeleteTopic{name}); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  cluster::Reconciler::Report removed;
  if (auto r = reconciler_.reconcile(*table_.snapshot(), removed, name); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  if (auto r = topics_.end_delete(name); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  return {ErrorCode::none, {}};
}

TopicAdmin::Outcome TopicAdmin::set_partitions(const std::string& name, int32_t count,
                                               bool validate_only) {
  const TopicInfo* found = topics_.find(*topics_.snapshot(), name);
  if (!found) return {ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name)};
  TopicInfo t = *found;
  if (count <= t.partitions) {
    return {ErrorCode::invalid_partitions,
            fmt::format("topic has {} partitions; the count can only grow", t.partitions)};
  }
  if (count > kMaxPartitions) {
    return {ErrorCode::invalid_partitions, fmt::format("at most {} partitions", kMaxPartitions)};
  }
  if (auto limit = check_partition_limits(count - t.partitions)) return *limit;
  if (validate_only) return {ErrorCode::none, {}};
  auto settings = resolve_topic_settings(config_, t.configs);
  if (!settings) return {ErrorCode::invalid_config, settings.error().message};
  const int32_t from = t.partitions;
  t.partitions = count;
  return create_partitions_atomically(name, from, count, settings->log, std::move(t));
}

TopicAdmin::Outcome TopicAdmin::set_topic_configs(const std::string& name,
                                                  std::map<std::string, std::string> configs,
                                                  bool validate_only) {
  const TopicInfo* found = topics_.find(*topics_.snapshot(), name);
  if (!found) return {ErrorCode::unknown_topic_or_partition, fmt::format("no topic '{}'", name)};
  for (const auto& [k, v] : configs) {
    if (auto c = validate_topic_config(k, v); !c)
      return {ErrorCode::invalid_config, c.error().message};
  }
  auto settings = resolve_topic_settings(config_, configs);
  if (!settings) return {ErrorCode::invalid_config, settings.error().message};
  if (validate_only) return {ErrorCode::none, {}};
  TopicInfo t = *found;
  t.configs = std::move(configs);
  if (auto p = topics_.put(t); !p) return {ErrorCode::kafka_storage_error, p.error().message};
  // The table's settings, and the reconciler applies them to the logs.
  if (auto r = table_.apply(cluster::SetConfig{name, settings->log}); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  cluster::Reconciler::Report applied;
  if (auto r = reconciler_.reconcile(*table_.snapshot(), applied, name); !r) {
    return {ErrorCode::kafka_storage_error, r.error().message};
  }
  if (!applied.config_errors.empty()) {
    return {ErrorCode::kafka_storage_error, applied.config_errors.front().second.message};
  }
  return {ErrorCode::none, {}};
}

}  // namespace ordo::broker
