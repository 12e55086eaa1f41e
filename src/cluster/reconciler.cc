#include "cluster/reconciler.h"

#include <algorithm>
#include <future>

namespace ordo::cluster {

ReconcilePlan plan_reconcile(const TableSnapshot& want, NodeId self, const LocalLogs& local,
                             std::optional<std::string_view> topic) {
  ReconcilePlan plan;
  auto assigned_here = [self](const PartitionAssignment& a) {
    return std::find(a.replicas.begin(), a.replicas.end(), self) != a.replicas.end();
  };
  auto add_topic = [&](const TopicEntry& t) {
    for (size_t i = 0; i < t.partitions.size(); ++i) {
      if (!assigned_here(t.partitions[i])) continue;
      model::TopicPartition tp{t.name, int32_t(i)};
      auto it = local.find(tp);
      if (it == local.end()) {
        plan.create.emplace_back(std::move(tp), t.log);
      } else if (!it->second || !(*it->second == t.log)) {
        plan.configure.emplace_back(std::move(tp), t.log);
      }
    }
  };
  if (topic) {
    if (const TopicEntry* t = want.find(*topic)) add_topic(*t);
  } else {
    for (const auto& [name, t] : want.topics) add_topic(t);
  }
  for (const auto& [tp, config] : local) {
    if (topic && tp.topic != *topic) continue;
    const PartitionAssignment* a = want.find(tp);
    if (!a || !assigned_here(*a)) plan.remove.push_back(tp);
  }
  return plan;
}

Reconciler::Reconciler(NodeId self, storage::LogManager& logs,
                       const std::vector<model::TopicPartition>& local)
    : self_(self), logs_(logs) {
  for (const auto& tp : local) local_.emplace(tp, std::nullopt);
}

Result<void> Reconciler::reconcile(const TableSnapshot& want, Report& report,
                                   std::optional<std::string_view> topic, const Options& options) {
  ReconcilePlan plan = plan_reconcile(want, self_, local_, topic);
  // Removals first: a partition count that shrank and grew again gets a fresh log.
  for (const auto& tp : plan.remove) {
    auto r = logs_.remove_sync(tp);
    if (!r && r.error().code != Errc::not_found) {
      report.failed_at = tp;
      return std::move(r).error();
    }
    local_.erase(tp);
    report.removed.push_back(tp);
  }
  for (const auto& [tp, config] : plan.create) {
    if (options.before_create) {
      if (auto r = options.before_create(tp); !r) {
        report.failed_at = tp;
        return std::move(r).error();
      }
    }
    if (auto r = logs_.create_sync(tp, config, options.defer_sync); !r) {
      report.failed_at = tp;
      return std::move(r).error();
    }
    local_[tp] = config;
    report.created.push_back(tp);
  }
  for (const auto& [tp, config] : plan.configure) {
    std::promise<Result<void>> done;
    auto f = done.get_future();
    logs_.set_config(tp, config, [&done](Result<void> r) { done.set_value(std::move(r)); });
    if (auto r = f.get(); !r) {
      report.config_errors.emplace_back(tp, std::move(r).error());
    } else {
      local_[tp] = config;
    }
  }
  return ok();
}

}  // namespace ordo::cluster
