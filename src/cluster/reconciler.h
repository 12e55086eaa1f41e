#pragma once
// Reconciler: makes this node's partition logs match the partition table. Every partition of
// the table that lists this node among its replicas has a log with its topic's settings;
// every log the reconciler knows of that the table no longer assigns here is removed.
//
// It knows the logs it was given at construction (those found on disk that belong to the
// table's namespace; the caller leaves out what it wants untouched) and the ones it made.
//
// Threads: one thread at a time (the broker's metadata thread). It uses the LogManager's
// blocking forms, so never a shard thread.

#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "cluster/partition_table.h"
#include "storage/log_manager.h"

namespace ordo::cluster {

// What makes `local` (logs and their settings, nullopt when unknown) match `want` for node
// `self`, limited to one topic when `topic` is set. Pure: for tests and for the reconciler.
struct ReconcilePlan {
  std::vector<std::pair<model::TopicPartition, storage::LogConfig>> create;
  std::vector<std::pair<model::TopicPartition, storage::LogConfig>> configure;
  std::vector<model::TopicPartition> remove;
  bool empty() const { return create.empty() && configure.empty() && remove.empty(); }
};
using LocalLogs = std::map<model::TopicPartition, std::optional<storage::LogConfig>>;
ReconcilePlan plan_reconcile(const TableSnapshot& want, NodeId self, const LocalLogs& local,
                             std::optional<std::string_view> topic = std::nullopt);

class Reconciler {
 public:
  Reconciler(NodeId self, storage::LogManager& logs,
             const std::vector<model::TopicPartition>& local);

  struct Options {
    // New logs are not fsynced one by one: the caller syncs the data dir once afterwards.
    bool defer_sync = false;
    // Runs before each log is created; an error stops the reconcile there (fault injection).
    std::function<Result<void>(const model::TopicPartition&)> before_create;
  };
  struct Report {
    std::vector<model::TopicPartition> created;
    std::vector<model::TopicPartition> removed;
    // Settings that could not be applied (the log keeps running with its old ones).
    std::vector<std::pair<model::TopicPartition, Error>> config_errors;
    // Set when the reconcile stopped: the partition whose creation or removal failed.
    std::optional<model::TopicPartition> failed_at;
  };

  // Creates, removes and reconfigures local logs (of one topic, or all) to match `want`.
  // Creations and removals stop at the first failure (error returned, report.failed_at set,
  // what was done so far stays done and known); a partition removed meanwhile by someone else
  // counts as removed.
  Result<void> reconcile(const TableSnapshot& want, Report& report,
                         std::optional<std::string_view> topic, const Options& options);
  Result<void> reconcile(const TableSnapshot& want, Report& report,
                         std::optional<std::string_view> topic = std::nullopt) {
    return reconcile(want, report, topic, Options());
  }

  // Makes the logs created with defer_sync durable (one sync of the data dir's filesystem).
  Result<void> sync_created() { return logs_.sync_data_dir(); }

  const LocalLogs& local() const { return local_; }

 private:
  NodeId self_;
  storage::LogManager& logs_;
  LocalLogs local_;
};

}  // namespace ordo::cluster
