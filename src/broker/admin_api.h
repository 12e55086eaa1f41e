#pragma once
// The broker's admin HTTP API (docs/admin-api.md): read-only views of the partitions for
// operators and for `ordo topic describe`, and Prometheus metrics.
//
//   GET /v1/partitions                 every partition (JSON array)
//   GET /v1/topics/<topic>/partitions  one topic's (404 when it has none)
//   GET /metrics                       Prometheus text format
//
// The server runs on its own thread (http::Server); each request asks the storage shards for
// their status (LogManager::status, which waits for them: never on a shard thread).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "http/server.h"
#include "storage/log_manager.h"

namespace ordo::broker {

// The routes over a status snapshot (pure: tested without a server).
http::Response admin_route(const http::Request& req,
                           const std::vector<storage::PartitionStatus>& status);

class AdminApi {
 public:
  // Serves logs' status on host:port (0: a free port). logs must outlive the AdminApi.
  // cluster_status (may be empty): the JSON of GET /v1/cluster (cluster mode); without it
  // that path answers 404.
  static Result<std::unique_ptr<AdminApi>> start(storage::LogManager& logs, const std::string& host,
                                                 uint16_t port,
                                                 std::function<std::string()> cluster_status = {});
  uint16_t port() const { return server_->port(); }
  void stop() { server_->stop(); }

 private:
  explicit AdminApi(std::unique_ptr<http::Server> s) : server_(std::move(s)) {}
  std::unique_ptr<http::Server> server_;
};

}  // namespace ordo::broker
