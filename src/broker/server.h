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
//    closed (one server-wide sweep timer checks every connection);
//  - the read buffer is taken only while there are bytes to read: it starts small, doubles
//    while reads fill it (up to 64 KiB), and is freed whenever the socket has nothing more to
//    read; an idle connection waits for readability without one.
// Server-wide:
//  - max.connections and connections.max.per.ip: a connection past either is closed as soon
//    as it is accepted (one warning line per 10 s per cap, with a count);
//  - queued.max.request.bytes: a frame larger than 64 KiB takes its size from a broker-wide
//    budget once its size prefix is read, and gives it back when its response has gone out
//    (or the connection ends). When the budget cannot cover it, the connection is not read
//    until it can (waiters are served in order; a frame alone always fits). Smaller frames
//    are not counted, so small requests never wait behind large ones;
//  - out of descriptors (EMFILE/ENFILE) on accept: the pending connections are accepted and
//    closed at once through a reserved descriptor, accepting pauses for 100 ms, and one
//    warning line per 10 s gives the count.
// stop(): stop accepting, stop reading, let every connection finish the requests it has and
// send their responses, then close. The network threads keep running (Broker::close() stops
// them); when stop() returns, nothing of the server is left on them except requests of
// connections that are already closed, which finish on their own.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "base/log.h"
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
  // Bytes of read buffers the connections hold (0 when every connection is idle).
  size_t read_buffer_bytes() const { return read_buffer_bytes_.load(); }
  // queued.max.request.bytes: bytes taken from the budget, and connections waiting for it.
  int64_t queued_request_bytes() const;
  size_t request_budget_waiters() const;
  // Connections closed at accept: over a cap, or shed while out of descriptors.
  uint64_t refused_connections() const { return refused_.load(); }

  struct Connection;
  class RequestBudget;

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> idle_sweep();
  // Accepts and closes the pending connections through the reserve descriptor (out of
  // descriptors); returns how many.
  size_t shed_pending();
  // Whether a connection from addr is within max.connections and connections.max.per.ip;
  // when it is, it is counted (connection_ended() uncounts it).
  bool admit_connection(const asio::ip::address& addr, const std::string& peer);
  void connection_ended(const asio::ip::address& addr);
  void budget_release(int64_t bytes);

  Broker& broker_;
  std::vector<asio::io_context*> contexts_;  // the broker's network threads
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;
  std::unique_ptr<asio::steady_timer> accept_timer_;  // the pause after an accept error
  std::unique_ptr<RequestBudget> budget_;
  int reserve_fd_ = -1;  // kept open to accept-and-close while out of descriptors
  // Repeated warnings: the first is logged, then at most one per 10 s with a count. The accept
  // limiter is used on the accept thread only, the caps' under mu_.
  LogLimiter accept_error_log_{10'000}, total_cap_log_{10'000}, ip_cap_log_{10'000};
  // The occurrences to report (this one and those held back) if a line is due now; else 0.
  static uint64_t due(LogLimiter& l);
  size_t next_context_ = 0;
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> inflight_{0};
  std::atomic<size_t> read_buffer_bytes_{0};
  std::atomic<uint64_t> refused_{0};
  std::atomic<int> tasks_{0};  // accept_loop and idle_sweep still running
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool stopped_ = false;

  // Every live connection, for stop(), and the connections per client address (caps);
  // guarded by mu_.
  std::mutex mu_;
  std::vector<std::weak_ptr<Connection>> live_;
  std::map<asio::ip::address, size_t> per_ip_;
};

}  // namespace ordo::broker
