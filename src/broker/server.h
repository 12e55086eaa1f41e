#pragma once
// The network side of the broker: a TCP listener and its connections, on the broker's
// network threads (Broker::network_contexts(); each connection lives on one of them, so its
// state needs no locks). The threads belong to the Broker, which stops them in close(), after
// the logs (with storage.shard.mode = network they are also the logs' shards).
//
// Per connection:
//  - requests are read and decoded as they arrive and handled concurrently (pipelining); the
//    responses go out in request order;
//  - in flight at once: at most connection.max.inflight.requests requests and
//    connection.max.inflight.bytes bytes of request frames (one request is always admitted,
//    whatever its size up to socket.request.max.bytes); past that the connection is not read
//    until responses have gone out (back-pressure: TCP then pushes back on the client);
//  - fetched log bytes go from the file to the socket with sendfile(2);
//  - a malformed frame or request closes the connection with one log line; nothing else is
//    affected;
//  - a connection with nothing in flight that has read nothing for connections.max.idle.ms is
//    closed (one server-wide sweep timer checks every connection).
// stop(): stop accepting, stop reading, let every connection finish the requests it has and
// send their responses, then close. The network threads keep running (Broker::close() stops
// them); when stop() returns, nothing of the server is left on them except requests of
// connections that are already closed, which finish on their own.

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "base/result.h"
#include "broker/broker.h"

namespace ordo::broker {

class Server {
 public:
  explicit Server(Broker& broker);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listener (config listen host:port; port 0 picks a free one) and starts
  // accepting on the broker's network threads. Returns the bound port.
  Result<uint16_t> start();
  // Graceful stop (see above); waits at most drain_timeout_ms for connections to finish.
  void stop(int64_t drain_timeout_ms = 30000);

  size_t connection_count() const { return connections_.load(); }
  // Requests read and not yet answered, over all connections.
  size_t inflight_requests() const { return inflight_.load(); }

  struct Connection;

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> idle_sweep();

  Broker& broker_;
  std::vector<asio::io_context*> contexts_;  // the broker's network threads
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  size_t next_context_ = 0;
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> inflight_{0};
  std::atomic<int> tasks_{0};  // accept_loop and idle_sweep still running
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool stopped_ = false;

  // Every live connection, for stop(); guarded by mu_.
  std::mutex mu_;
  std::vector<std::weak_ptr<Connection>> live_;
};

}  // namespace ordo::broker
