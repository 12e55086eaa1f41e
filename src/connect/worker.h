#pragma once
// The connect worker: runs a pipeline's sources (pg_source.h, a thread each) and sinks, each as a
// task with a thread and a librdkafka consumer of its own (group "<group>.<sink>", so workers scale
// out as a consumer group), and serves their status and the table views over HTTP. docs/connect.md.
//
// A task applies each partition's records strictly in offset order. Its position rule: the
// sink stores (topic, partition) -> next offset in the same atomic write as the data, and
// when the group assigns it a partition it starts there (the group's committed offsets only
// show lag to `ordo group describe`). When a write fails the task retries it with backoff
// (100 ms doubling to 5 s) and never skips: it does not poll again meanwhile. A record the
// sink cannot apply (a table view's record without a key) goes to the sink's dead-letter
// topic with headers saying why and where it came from, acknowledged (acks=all) before the
// position moves past it.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "connect/pg_source.h"
#include "connect/pipeline.h"
#include "connect/rebuild.h"
#include "connect/table_view.h"
#include "http/server.h"
#include "model/topic_partition.h"

namespace ordo::connect {

struct PartitionStatus {
  model::TopicPartition tp;
  int64_t position = -1;        // next offset the sink will apply; -1: nothing applied
  int64_t high_watermark = -1;  // as last seen by the consumer; -1: not known yet
};

struct TaskStatus {
  std::string name;
  std::string type;
  std::string state;  // starting, running, retrying, stopped
  std::string error;  // the last failure while retrying
  int64_t records_applied = 0;
  int64_t records_dead_lettered = 0;        // sent to the dead-letter topic (e.g. no key)
  std::vector<PartitionStatus> partitions;  // assigned to this worker
  RebuildProgress rebuild;                  // the last rebuild of the view
};

class Worker {
 public:
  // Opens every sink's store, starts the tasks and the HTTP server.
  static Result<std::unique_ptr<Worker>> start(PipelineConfig config);
  ~Worker();  // stop()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Stops the HTTP server and the tasks (each closes its consumer, leaving the group).
  void stop();
  std::vector<TaskStatus> status() const;
  std::vector<PgSourceStatus> source_status() const;
  uint16_t http_port() const { return http_ ? http_->port() : 0; }

  // The HTTP routes (docs/connect.md), also callable without a server.
  http::Response route(const http::Request& req);

 private:
  struct Task;
  Worker() = default;
  // Blocks until sink `name` has applied tp up to and including offset (its position passed
  // it) or timeout_ms went by; returns the position then.
  std::optional<int64_t> wait_applied(Task& t, const model::TopicPartition& tp, int64_t offset,
                                      int64_t timeout_ms);
  Task* find(std::string_view name);  // a table view's task
  Task* find_task(std::string_view name, std::string_view type);
  // POST /views/<name>/rebuild: starts a rebuild thread unless one runs.
  http::Response start_rebuild(Task& t);
  http::Response route_aggregate(const http::Request& req);
  http::Response route_claims(const http::Request& req);
  http::Response route_search(const http::Request& req);

  PipelineConfig config_;
  std::vector<std::unique_ptr<Task>> tasks_;
  std::vector<std::unique_ptr<PgSource>> sources_;
  std::unique_ptr<http::Server> http_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;            // every task's status and the waiters
  std::condition_variable applied_;  // notified after every apply
};

}  // namespace ordo::connect
