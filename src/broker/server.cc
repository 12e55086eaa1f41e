#include "broker/server.h"

#include <sys/sendfile.h>

#include <algorithm>
#include <chrono>
#include <deque>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "base/log.h"
#include "protocol/frame.h"

namespace ordo::broker {

using asio::ip::tcp;

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxIovecs = 64;
}  // namespace

struct Server::Connection : std::enable_shared_from_this<Server::Connection> {
  struct Slot {
    std::optional<HandlerOutcome> outcome;
    size_t request_bytes = 0;
  };

  Connection(Server& server, tcp::socket s)
      : server(server),
        socket(std::move(s)),
        decoder(size_t(server.broker_.config().socket_request_max_bytes)),
        reader_wakeup(socket.get_executor()),
        writer_wakeup(socket.get_executor()) {
    asio::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    state.peer = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
    state.produce_wakeup = std::make_unique<Wakeup>(socket.get_executor());
    socket.set_option(tcp::no_delay(true), ec);
  }

  Server& server;
  tcp::socket socket;
  ConnectionState state;
  protocol::FrameDecoder decoder;
  std::deque<std::shared_ptr<Slot>> queue;
  Wakeup reader_wakeup;  // the queue shrank, or the connection closes
  Wakeup writer_wakeup;  // a response is ready, reading ended, or the connection closes
  size_t inflight_bytes = 0;
  bool reading_done = false;
  bool closed = false;
  // Last time a byte was read or a response written (connections.max.idle.ms).
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();

  // Closes the connection when it has been idle for at least idle_ms (the idle sweep).
  void close_if_idle(int64_t idle_ms) {
    if (closed || !queue.empty()) return;
    auto idle = std::chrono::steady_clock::now() - last_activity;
    if (idle >= std::chrono::milliseconds(idle_ms)) {
      ORDO_LOG_INFO("connection {} closed: idle for {} ms", state.peer,
                    std::chrono::duration_cast<std::chrono::milliseconds>(idle).count());
      close("");
    }
  }

  const BrokerConfig& config() const { return server.broker_.config(); }

  bool admit(size_t bytes) const {
    if (queue.empty()) return true;  // one request is always admitted
    return queue.size() < size_t(config().connection_max_inflight_requests) &&
           inflight_bytes + bytes <= size_t(config().connection_max_inflight_bytes);
  }

  void close(std::string_view why) {
    if (closed) return;
    closed = true;
    if (!why.empty()) ORDO_LOG_WARN("connection {} closed: {}", state.peer, why);
    asio::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    reader_wakeup.notify_all();
    writer_wakeup.notify_all();
  }

  // Stops reading (server stop): the reader sees end of stream, the writer drains the queue.
  void stop_reading() {
    asio::error_code ec;
    socket.shutdown(tcp::socket::shutdown_receive, ec);
    reader_wakeup.notify_all();
  }

  void dispatch(std::vector<uint8_t> frame) {
    auto slot = std::make_shared<Slot>();
    slot->request_bytes = frame.size();
    inflight_bytes += frame.size();
    queue.push_back(slot);
    server.inflight_.fetch_add(1);
    asio::co_spawn(
        socket.get_executor(),
        [self = shared_from_this(), slot,
         frame = std::move(frame)]() mutable -> asio::awaitable<void> {
          try {
            slot->outcome = co_await self->server.broker_.handle(std::move(frame), self->state);
          } catch (const std::exception& e) {
            slot->outcome =
                HandlerOutcome{{}, make_error(Errc::io, "handler failed: {}", e.what())};
          }
          self->writer_wakeup.notify_all();
        },
        asio::detached);
  }

  asio::awaitable<void> reader() {
    std::vector<uint8_t> buf(kReadChunk);
    while (!closed) {
      asio::error_code ec;
      size_t n = co_await socket.async_read_some(asio::buffer(buf),
                                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec || n == 0) break;
      last_activity = std::chrono::steady_clock::now();
      std::span<const uint8_t> chunk(buf.data(), n);
      while (!chunk.empty() && !closed) {
        auto used = decoder.feed(chunk);
        if (!used) {
          close(used.error().to_string());
          break;
        }
        chunk = chunk.subspan(*used);
        if (!decoder.has_frame()) continue;
        std::vector<uint8_t> frame = decoder.take_frame();
        while (!closed && !admit(frame.size())) co_await reader_wakeup.wait();
        if (closed) break;
        dispatch(std::move(frame));
      }
    }
    reading_done = true;
    writer_wakeup.notify_all();
  }

  // Writes one response: memory chunks gathered into writev calls, file ranges by sendfile.
  asio::awaitable<bool> send(const ResponseFrame& r) {
    size_t i = 0;
    while (i < r.chunks.size()) {
      if (const auto* f = std::get_if<protocol::FileRange>(&r.chunks[i])) {
        if (!co_await send_file(*f)) co_return false;
        ++i;
        continue;
      }
      std::vector<asio::const_buffer> bufs;
      while (i < r.chunks.size() && bufs.size() < kMaxIovecs) {
        const auto* m = std::get_if<std::vector<uint8_t>>(&r.chunks[i]);
        if (!m) break;
        bufs.emplace_back(m->data(), m->size());
        ++i;
      }
      asio::error_code ec;
      co_await asio::async_write(socket, bufs, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
    }
    co_return true;
  }

  asio::awaitable<bool> send_file(const protocol::FileRange& f) {
    socket.native_non_blocking(true);
    off_t offset = off_t(f.position);
    size_t left = size_t(f.size);
    while (left > 0) {
      ssize_t n = ::sendfile(socket.native_handle(), f.file->fd(), &offset, left);
      if (n > 0) {
        left -= size_t(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        asio::error_code ec;
        co_await socket.async_wait(tcp::socket::wait_write,
                                   asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return false;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        // n == 0: the file is shorter than the range (truncated since the read); the response
        // cannot be completed, so the connection goes.
        ORDO_LOG_WARN("connection {}: sendfile stopped with {} bytes left: {}", state.peer, left,
                      n < 0 ? std::strerror(errno) : "end of file");
        co_return false;
      }
    }
    co_return true;
  }

  std::vector<asio::const_buffer> gathered;

  // Collects the buffers of the ready responses at the front of the queue that are wholly in
  // memory (stopping at one with file ranges, one not ready, or kMaxIovecs buffers) into
  // `gathered`; returns how many responses they are (responses-less slots included).
  size_t gather_memory_responses() {
    gathered.clear();
    size_t n = 0;
    for (const auto& slot : queue) {
      if (!slot->outcome || slot->outcome->close) break;
      const auto& resp = slot->outcome->response;
      if (resp) {
        bool memory_only = true;
        for (const auto& c : resp->chunks) {
          memory_only = memory_only && std::holds_alternative<std::vector<uint8_t>>(c);
        }
        if (!memory_only || gathered.size() + resp->chunks.size() > kMaxIovecs) break;
        for (const auto& c : resp->chunks) {
          const auto& m = std::get<std::vector<uint8_t>>(c);
          gathered.emplace_back(m.data(), m.size());
        }
      }
      ++n;
    }
    return n;
  }

  asio::awaitable<void> writer() {
    while (true) {
      if (queue.empty()) {
        if (reading_done || closed) break;
        co_await writer_wakeup.wait();
        continue;
      }
      auto slot = queue.front();
      if (!slot->outcome) {
        if (closed) break;
        co_await writer_wakeup.wait();
        continue;
      }
      if (slot->outcome->close) {
        close(slot->outcome->close->to_string());
        break;
      }
      // Every ready in-memory response at the front goes out in one gathered write; a
      // response with file ranges goes alone (sendfile).
      size_t ready = gather_memory_responses();
      if (ready > 0) {
        asio::error_code ec;
        co_await asio::async_write(socket, gathered, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          close("");
          break;
        }
      } else {
        ready = 1;
        if (slot->outcome->response && !closed && !co_await send(*slot->outcome->response)) {
          close("");
          break;
        }
      }
      last_activity = std::chrono::steady_clock::now();
      for (size_t i = 0; i < ready; ++i) {
        inflight_bytes -= queue.front()->request_bytes;
        queue.pop_front();
      }
      server.inflight_.fetch_sub(ready);
      reader_wakeup.notify_all();
    }
    // Requests still being handled finish on their own; their responses are dropped.
    server.inflight_.fetch_sub(queue.size());
    queue.clear();
    close("");
  }
};

Server::Server(Broker& broker) : broker_(broker) {}

Server::~Server() {
  stop(0);
}

Result<uint16_t> Server::start() {
  ORDO_ASSERT(!started_);
  const BrokerConfig& c = broker_.config();
  contexts_ = broker_.network_contexts();
  ORDO_ASSERT(!contexts_.empty());
  asio::error_code ec;
  auto address = asio::ip::make_address(c.listen_host, ec);
  if (ec) {
    // A host name: resolve it.
    tcp::resolver resolver(*contexts_[0]);
    auto results = resolver.resolve(c.listen_host, std::to_string(c.listen_port), ec);
    if (ec || results.empty()) {
      return make_error(Errc::invalid_argument, "cannot resolve listen host {}: {}", c.listen_host,
                        ec.message());
    }
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint ep(address, c.listen_port);
  auto acceptor = std::make_unique<tcp::acceptor>(*contexts_[0]);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(Errc::io, "listen on {}:{}: {}", c.listen_host, c.listen_port, ec.message());
  }
  uint16_t port = acceptor->local_endpoint().port();
  // The network threads already run: the acceptor and the timer are handed to the coroutines
  // that use them before they start, and touched only on contexts_[0] from then on (and by
  // stop(), once both coroutines have ended).
  acceptor_ = std::move(acceptor);
  sweep_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  tasks_.store(2);
  asio::co_spawn(*contexts_[0], accept_loop(), [this](std::exception_ptr) { tasks_.fetch_sub(1); });
  asio::co_spawn(*contexts_[0], idle_sweep(), [this](std::exception_ptr) { tasks_.fetch_sub(1); });
  started_ = true;
  return port;
}

asio::awaitable<void> Server::accept_loop() {
  while (!stopping_.load()) {
    auto& ctx = *contexts_[next_context_++ % contexts_.size()];
    asio::error_code ec;
    tcp::socket socket =
        co_await acceptor_->async_accept(ctx, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopping_.load() || ec == asio::error::operation_aborted) break;
      ORDO_LOG_WARN("accept: {}", ec.message());
      continue;
    }
    auto conn = std::make_shared<Connection>(*this, std::move(socket));
    {
      std::lock_guard lock(mu_);
      std::erase_if(live_, [](const auto& w) { return w.expired(); });
      live_.push_back(conn);
    }
    connections_.fetch_add(1);
    // Accepted while stop() ran: stop() may have gone over live_ before this one was in it.
    if (stopping_.load()) asio::post(ctx, [conn] { conn->stop_reading(); });
    asio::co_spawn(
        ctx,
        [this, conn]() -> asio::awaitable<void> {
          // Each coroutine holds the connection: the reader may still be finishing a read
          // when the writer is done.
          asio::co_spawn(
              conn->socket.get_executor(),
              [conn]() -> asio::awaitable<void> { co_await conn->reader(); }, asio::detached);
          co_await conn->writer();
          connections_.fetch_sub(1);
        },
        asio::detached);
  }
}

// Every idle/4 (between 100 ms and 30 s), each connection checks on its own thread whether it
// has been idle for connections.max.idle.ms. One timer for the whole server, none per
// connection or per read.
asio::awaitable<void> Server::idle_sweep() {
  const int64_t idle_ms = broker_.config().connections_max_idle_ms;
  const auto period = std::chrono::milliseconds(std::clamp<int64_t>(idle_ms / 4, 100, 30000));
  while (!stopping_.load()) {
    sweep_timer_->expires_after(period);
    asio::error_code ec;
    co_await sweep_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || stopping_.load()) break;
    std::lock_guard lock(mu_);
    std::erase_if(live_, [](const auto& w) { return w.expired(); });
    for (auto& w : live_) {
      if (auto c = w.lock()) {
        asio::post(c->socket.get_executor(), [c, idle_ms] { c->close_if_idle(idle_ms); });
      }
    }
  }
}

void Server::stop(int64_t drain_timeout_ms) {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  broker_.begin_shutdown();
  asio::post(*contexts_[0], [this] {
    asio::error_code ec;
    sweep_timer_->cancel();
    acceptor_->close(ec);
  });
  auto each_connection = [this](auto fn) {
    std::lock_guard lock(mu_);
    for (auto& w : live_) {
      if (auto c = w.lock()) asio::post(c->socket.get_executor(), [c, fn] { fn(*c); });
    }
  };
  each_connection([](Connection& c) { c.stop_reading(); });
  auto wait_until = [](auto done, std::chrono::steady_clock::time_point deadline) {
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
  };
  auto drained = [this] { return connections_.load() == 0; };
  auto now = std::chrono::steady_clock::now;
  if (!wait_until(drained, now() + std::chrono::milliseconds(drain_timeout_ms))) {
    ORDO_LOG_WARN("stop: {} connections still busy after {} ms; closing them", connections_.load(),
                  drain_timeout_ms);
    // The network threads keep running, so the connections must end here: closed, their
    // writers finish (requests still being handled finish on their own; their responses are
    // dropped).
    each_connection([](Connection& c) { c.close(""); });
    if (!wait_until(drained, now() + std::chrono::seconds(5))) {
      ORDO_LOG_WARN("stop: {} connections did not close", connections_.load());
    }
  }
  // The listener's coroutines end once the acceptor is closed and the timer cancelled; then
  // nothing uses those two any more.
  if (wait_until([this] { return tasks_.load() == 0; }, now() + std::chrono::seconds(5))) {
    acceptor_.reset();
    sweep_timer_.reset();
  } else {
    ORDO_LOG_WARN("stop: the listener did not stop; left to the network threads' end");
  }
}

}  // namespace ordo::broker
