#pragma once
// A small HTTP/1.1 server for the admin API: `threads` threads (one by default), one request
// per connection (Connection: close), GET and HEAD (and POST without a body, when allowed). Each
// connection runs on a strand, so its handler runs on one of the threads; with one thread the
// handlers run one at a time, with more they may run at once (and must then be thread-safe, as a
// handler that waits for something, e.g. a view reaching an offset, needs). Handlers may block
// their thread briefly (the broker's call the storage shards). Bounds: request head kMaxRequestHead
// bytes (431 above), read deadline per connection, at most max_connections open (more are closed at
// once).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "http/message.h"

namespace ordo::http {

using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: a free port
  int max_connections = 64;
  int threads = 1;
  int64_t read_timeout_ms = 10'000;
  // POST reaches the handler (which answers 405 where it means nothing); a request body is
  // refused (400, as for every method): every parameter goes in the query.
  bool allow_post = false;
};

class Server {
 public:
  // Binds and starts the thread. Errc::io when the address cannot be bound.
  static Result<std::unique_ptr<Server>> start(ServerOptions options, Handler handler);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t port() const;
  // Closes the listener and every connection and joins the thread. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Blocking request without a body for tools and tests: connects to host:port, sends it, reads
// until the server closes (at most kMaxResponseBytes) within timeout_ms overall.
Result<Response> request(std::string_view method, const std::string& host, uint16_t port,
                         const std::string& target, int64_t timeout_ms = 10'000);
inline Result<Response> get(const std::string& host, uint16_t port, const std::string& target,
                            int64_t timeout_ms = 10'000) {
  return request("GET", host, port, target, timeout_ms);
}

}  // namespace ordo::http
