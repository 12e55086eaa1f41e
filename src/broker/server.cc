#include "broker/server.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "base/clock.h"
#include "base/log.h"
#include "protocol/frame.h"

namespace ordo::broker {

using asio::ip::tcp;

namespace {
// A connection's read buffer: taken when there are bytes to read, kMinRead at first, doubled
// while reads fill it, halved when a read uses under a quarter of it.
constexpr size_t kMinRead = 4 * 1024;
constexpr size_t kMaxRead = 64 * 1024;
constexpr size_t kMaxIovecs = 64;
// Frames up to this size are not counted in queued.max.request.bytes.
constexpr size_t kBudgetedFrame = 64 * 1024;
// The pause after an accept error (out of descriptors, or anything else): never a busy loop.
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
// Connections shed through the reserve descriptor in one round (the listen backlog is smaller).
constexpr size_t kMaxShed = 65536;

// A non-blocking read found no bytes. Compared by category address and value, not with
// error_code's ==: that calls into the category object, and under the sanitizers the first
// such call for a category (asio's misc category, for a client's end of stream) has UBSan
// probe the object's vtable through a pipe, which fails while descriptors are exhausted and
// is then reported as an invalid object.
bool nothing_to_read(const asio::error_code& ec) {
  return &ec.category() == &asio::error::get_system_category() &&
         (ec.value() == EAGAIN || ec.value() == EWOULDBLOCK);
}

bool out_of_descriptors(const asio::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}
}  // namespace

// queued.max.request.bytes, shared by every network thread. A reservation is granted when
// nobody waits before it and it fits (or nothing is reserved: one frame alone always
// proceeds); else it waits in arrival order and its wake callback runs (under the lock, so it
// must only post) once granted.
class Server::RequestBudget {
 public:
  struct Waiter {
    int64_t bytes = 0;
    std::function<void()> wake;
    std::atomic<bool> granted{false};
  };

  explicit RequestBudget(int64_t limit) : limit_(limit) {}

  // True: granted at once. False: queued; w->wake() runs once it is granted.
  bool acquire(const std::shared_ptr<Waiter>& w) {
    std::lock_guard lock(mu_);
    if (waiters_.empty() && fits(w->bytes)) {
      used_ += w->bytes;
      w->granted = true;
      return true;
    }
    waiters_.push_back(w);
    return false;
  }

  // A waiter that no longer wants its bytes (its connection closed): dequeued, or released
  // when it was granted meanwhile.
  void cancel(const std::shared_ptr<Waiter>& w) {
    std::lock_guard lock(mu_);
    if (w->granted) {
      release_locked(w->bytes);
    } else {
      std::erase(waiters_, w);
      grant_locked();  // the next one may fit now that this one is gone
    }
  }

  void release(int64_t bytes) {
    if (bytes == 0) return;
    std::lock_guard lock(mu_);
    release_locked(bytes);
  }

  int64_t used() const {
    std::lock_guard lock(mu_);
    return used_;
  }
  size_t waiting() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }

 private:
  bool fits(int64_t bytes) const { return limit_ < 0 || used_ == 0 || used_ + bytes <= limit_; }

  void release_locked(int64_t bytes) {
    ORDO_ASSERT(bytes <= used_);
    used_ -= bytes;
    grant_locked();
  }

  void grant_locked() {
    while (!waiters_.empty() && fits(waiters_.front()->bytes)) {
      auto w = std::move(waiters_.front());
      waiters_.pop_front();
      used_ += w->bytes;
      w->granted = true;
      w->wake();
    }
  }

  const int64_t limit_;
  mutable std::mutex mu_;
  int64_t used_ = 0;
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

struct Server::Connection : std::enable_shared_from_this<Server::Connection> {
  struct Slot {
    std::optional<HandlerOutcome> outcome;
    size_t request_bytes = 0;
    int64_t budget_bytes = 0;  // taken from queued.max.request.bytes; returned when popped
  };

  Connection(Server& server, tcp::socket s, asio::ip::address address)
      : server(server),
        address(std::move(address)),
        socket(std::move(s)),
        decoder(size_t(server.broker_.config().socket_request_max_bytes)),
        reader_wakeup(socket.get_executor()),
        writer_wakeup(socket.get_executor()) {
    asio::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    state.peer = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
    state.produce_wakeup = std::make_unique<Wakeup>(socket.get_executor());
    socket.set_option(tcp::no_delay(true), ec);
    socket.non_blocking(true, ec);  // reader(): reads that return at once
  }

  Server& server;
  const asio::ip::address address;  // the client's, for connections.max.per.ip
  tcp::socket socket;
  ConnectionState state;
  protocol::FrameDecoder decoder;
  std::deque<std::shared_ptr<Slot>> queue;
  Wakeup reader_wakeup;  // the queue shrank, or the connection closes
  Wakeup writer_wakeup;  // a response is ready, reading ended, or the connection closes
  size_t inflight_bytes = 0;
  // The read buffer: held only while there are bytes to read (read_buffer_bytes()).
  std::unique_ptr<uint8_t[]> buf;
  size_t buf_size = 0;
  size_t read_size = kMinRead;  // the size of the next buffer
  // Budget taken for the frame being read (queued.max.request.bytes).
  int64_t frame_budget = 0;
  bool reading_done = false;
  int tasks_left = 2;  // the reader and the writer; the last to end uncounts the connection
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

  // Whether a read would not block now: bytes, an end of stream or an error are waiting.
  bool readable_now() {
    uint8_t b;
    while (true) {
      ssize_t r = ::recv(socket.native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
      if (r < 0 && errno == EINTR) continue;
      return !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
  }

  void take_buffer() {
    ORDO_ASSERT(buf == nullptr);
    buf.reset(new uint8_t[read_size]);  // not zeroed: only what a read writes is used
    buf_size = read_size;
    server.read_buffer_bytes_.fetch_add(buf_size);
  }

  void drop_buffer() {
    if (buf == nullptr) return;
    buf.reset();
    server.read_buffer_bytes_.fetch_sub(buf_size);
    buf_size = 0;
  }

  // Takes the budget for the frame whose size has just been read, waiting (not reading) until
  // it is granted. False when the connection closed meanwhile.
  asio::awaitable<bool> take_frame_budget(size_t bytes) {
    RequestBudget* budget = server.budget_.get();
    if (budget == nullptr || bytes <= kBudgetedFrame) co_return true;
    auto w = std::make_shared<RequestBudget::Waiter>();
    w->bytes = int64_t(bytes);
    std::weak_ptr<Connection> weak = weak_from_this();
    w->wake = [weak, ex = socket.get_executor()] {
      asio::post(ex, [weak] {
        if (auto c = weak.lock()) c->reader_wakeup.notify_all();
      });
    };
    if (!budget->acquire(w)) {
      while (!closed && !w->granted) co_await reader_wakeup.wait();
      if (!w->granted) {
        budget->cancel(w);
        co_return false;
      }
    }
    frame_budget = w->bytes;
    co_return true;
  }

  void dispatch(std::vector<uint8_t> frame) {
    auto slot = std::make_shared<Slot>();
    slot->request_bytes = frame.size();
    slot->budget_bytes = frame_budget;
    frame_budget = 0;
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
    bool drained = false;  // the last look found nothing to read
    while (!closed) {
      asio::error_code ec;
      bool waited = false;
      if (buf == nullptr) {
        // Wait for readability without a buffer (an idle connection holds none). Asio waits
        // for a new readiness event, and the one for bytes (or an end of stream) that came
        // while the last read ran is spent: look first.
        if (drained || !readable_now()) {
          co_await socket.async_wait(tcp::socket::wait_read,
                                     asio::redirect_error(asio::use_awaitable, ec));
          waited = true;
        }
        drained = false;
        if (ec || closed) break;
        take_buffer();
      }
      // Right after the wait, read at once (the socket is non-blocking: what is there, or
      // would_block); else through Asio, which lets the thread's other connections run
      // between two reads of a connection that keeps sending.
      size_t n = 0;
      if (waited) {
        n = socket.read_some(asio::buffer(buf.get(), buf_size), ec);
      } else {
        n = co_await socket.async_read_some(asio::buffer(buf.get(), buf_size),
                                            asio::redirect_error(asio::use_awaitable, ec));
      }
      if (nothing_to_read(ec)) {
        drop_buffer();
        drained = true;
        continue;
      }
      if (ec || n == 0) break;
      last_activity = std::chrono::steady_clock::now();
      std::span<const uint8_t> chunk(buf.get(), n);
      while (!chunk.empty() && !closed) {
        // The size prefix alone first: a large frame's budget is taken before its body is read.
        size_t missing = decoder.prefix_missing();
        auto used =
            decoder.feed(missing > 0 ? chunk.first(std::min(missing, chunk.size())) : chunk);
        if (!used) {
          close(used.error().to_string());
          break;
        }
        chunk = chunk.subspan(*used);
        if (missing > 0 && decoder.prefix_missing() == 0 && !decoder.has_frame()) {
          if (!co_await take_frame_budget(decoder.frame_size())) break;
        }
        if (!decoder.has_frame()) continue;
        std::vector<uint8_t> frame = decoder.take_frame();
        while (!closed && !admit(frame.size())) co_await reader_wakeup.wait();
        if (closed) break;
        dispatch(std::move(frame));
      }
      if (closed) break;
      // The next buffer's size follows how much the reads find.
      if (n == buf_size) {
        read_size = std::min(read_size * 2, kMaxRead);
      } else if (n < buf_size / 4) {
        read_size = std::max(read_size / 2, kMinRead);
      }
      // Drained: give the buffer back until there is more to read.
      if (read_size != buf_size) {
        drop_buffer();
      } else if (!readable_now()) {
        drop_buffer();
        drained = true;
      }
    }
    drop_buffer();
    // A frame cut short by the end of the connection gives its budget back.
    server.budget_release(frame_budget);
    frame_budget = 0;
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
        server.budget_release(queue.front()->budget_bytes);
        queue.pop_front();
      }
      server.inflight_.fetch_sub(ready);
      reader_wakeup.notify_all();
    }
    // Requests still being handled finish on their own; their responses are dropped.
    server.inflight_.fetch_sub(queue.size());
    for (const auto& slot : queue) server.budget_release(slot->budget_bytes);
    queue.clear();
    close("");
  }
};

Server::Server(Broker& broker) : broker_(broker) {}

Server::~Server() {
  stop(0);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

int64_t Server::queued_request_bytes() const {
  return budget_ ? budget_->used() : 0;
}

size_t Server::request_budget_waiters() const {
  return budget_ ? budget_->waiting() : 0;
}

void Server::budget_release(int64_t bytes) {
  if (budget_ && bytes > 0) budget_->release(bytes);
}

uint64_t Server::due(LogLimiter& l) {
  return l.allow(monotonic_ns() / 1'000'000) ? l.take_suppressed() + 1 : 0;
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
  // Non-blocking: shed_pending() accepts on it directly.
  if (!ec) acceptor->native_non_blocking(true, ec);
  if (ec) {
    return make_error(Errc::io, "listen on {}:{}: {}", c.listen_host, c.listen_port, ec.message());
  }
  uint16_t port = acceptor->local_endpoint().port();
  // The descriptor that lets the server accept (and close) connections when it has no other.
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) {
    return make_error(Errc::io, "open /dev/null (reserve descriptor): {}", std::strerror(errno));
  }
  if (c.queued_max_request_bytes >= 0) {
    budget_ = std::make_unique<RequestBudget>(c.queued_max_request_bytes);
  }
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
      rlim_t(c.max_connections) >= nofile.rlim_cur) {
    ORDO_LOG_INFO(
        "open-file limit {} is below max.connections {}: descriptors, not max.connections, "
        "bound the connections (docs/broker.md, descriptor limits)",
        nofile.rlim_cur, c.max_connections);
  }
  // The network threads already run: the acceptor and the timers are handed to the coroutines
  // that use them before they start, and touched only on contexts_[0] from then on (and by
  // stop(), once both coroutines have ended).
  acceptor_ = std::move(acceptor);
  sweep_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  accept_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  tasks_.store(2);
  asio::co_spawn(*contexts_[0], accept_loop(), [this](std::exception_ptr) { tasks_.fetch_sub(1); });
  asio::co_spawn(*contexts_[0], idle_sweep(), [this](std::exception_ptr) { tasks_.fetch_sub(1); });
  started_ = true;
  return port;
}

size_t Server::shed_pending() {
  size_t shed = 0;
  while (shed < kMaxShed) {
    if (reserve_fd_ >= 0) {
      ::close(reserve_fd_);
      reserve_fd_ = -1;
    }
    int fd = ::accept4(acceptor_->native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR) continue;
    if (fd < 0) break;  // EAGAIN: none left; else the freed slot was taken meanwhile
    ::close(fd);
    ++shed;
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (reserve_fd_ < 0) break;
  }
  // Taken again now if a descriptor is free, else at the next round.
  if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return shed;
}

bool Server::admit_connection(const asio::ip::address& addr, const std::string& peer) {
  const BrokerConfig& c = broker_.config();
  std::lock_guard lock(mu_);
  if (connections_.load() >= size_t(c.max_connections)) {
    if (uint64_t n = due(total_cap_log_)) {
      ORDO_LOG_WARN(
          "connection {} refused: max.connections ({}) reached; {} refused since the "
          "last such line",
          peer, c.max_connections, n);
    }
    return false;
  }
  size_t& from_ip = per_ip_[addr];
  if (from_ip >= size_t(c.connections_max_per_ip)) {
    if (uint64_t n = due(ip_cap_log_)) {
      ORDO_LOG_WARN(
          "connection {} refused: connections.max.per.ip ({}) reached for {}; {} "
          "refused since the last such line",
          peer, c.connections_max_per_ip, addr.to_string(), n);
    }
    return false;
  }
  ++from_ip;
  connections_.fetch_add(1);
  return true;
}

void Server::connection_ended(const asio::ip::address& addr) {
  {
    std::lock_guard lock(mu_);
    auto it = per_ip_.find(addr);
    ORDO_ASSERT(it != per_ip_.end() && it->second > 0);
    if (--it->second == 0) per_ip_.erase(it);
  }
  // Last: once the count is 0, stop() may return and the server go.
  connections_.fetch_sub(1);
}

asio::awaitable<void> Server::accept_loop() {
  while (!stopping_.load()) {
    auto& ctx = *contexts_[next_context_ % contexts_.size()];
    asio::error_code ec;
    tcp::socket socket =
        co_await acceptor_->async_accept(ctx, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopping_.load() || ec == asio::error::operation_aborted) break;
      // Out of descriptors, the pending connections stay queued and accept fails again at
      // once: they are accepted and closed (clients see a closed connection, not a hang), and
      // accepting pauses. Any other error pauses too. Never a busy loop, never a log flood.
      size_t shed = out_of_descriptors(ec) ? shed_pending() : 0;
      refused_.fetch_add(shed);
      if (uint64_t n = due(accept_error_log_)) {
        ORDO_LOG_WARN(
            "accept: {} ({} times since the last such line; pending connections "
            "closed: {}); accepting again in {} ms",
            ec.message(), n, shed, kAcceptBackoff.count());
      }
      accept_timer_->expires_after(kAcceptBackoff);
      co_await accept_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::error_code peer_ec;
    auto remote = socket.remote_endpoint(peer_ec);
    if (peer_ec) continue;  // gone already (the socket closes here)
    std::string peer = fmt::format("{}:{}", remote.address().to_string(), remote.port());
    if (!admit_connection(remote.address(), peer)) {
      refused_.fetch_add(1);
      socket.close(peer_ec);
      continue;
    }
    ++next_context_;
    auto conn = std::make_shared<Connection>(*this, std::move(socket), remote.address());
    {
      std::lock_guard lock(mu_);
      std::erase_if(live_, [](const auto& w) { return w.expired(); });
      live_.push_back(conn);
    }
    // Accepted while stop() ran: stop() may have gone over live_ before this one was in it.
    if (stopping_.load()) asio::post(ctx, [conn] { conn->stop_reading(); });
    // Each coroutine holds the connection: the reader may still be finishing a read when the
    // writer is done. The last of the two to end uncounts it (stop() waits for that).
    auto ended = [this, conn] {
      if (--conn->tasks_left == 0) connection_ended(conn->address);
    };
    asio::co_spawn(
        ctx,
        [conn, ended]() -> asio::awaitable<void> {
          asio::co_spawn(
              conn->socket.get_executor(),
              [conn, ended]() -> asio::awaitable<void> {
                co_await conn->reader();
                ended();
              },
              asio::detached);
          co_await conn->writer();
          ended();
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
    accept_timer_->cancel();
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
    accept_timer_.reset();
  } else {
    ORDO_LOG_WARN("stop: the listener did not stop; left to the network threads' end");
  }
}

}  // namespace ordo::broker
