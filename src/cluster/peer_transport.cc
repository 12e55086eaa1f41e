#include "cluster/peer_transport.h"

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <random>
#include <unordered_map>

#include "base/assert.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "raft/wire.h"

namespace ordo::cluster {

namespace wire = raft::wire;
using asio::awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// ---- hello ----------------------------------------------------------------------------------

Result<std::vector<uint8_t>> encode_hello(const Hello& h) {
  if (h.id < 0) return make_error(Errc::invalid_argument, "hello: node id {} < 0", h.id);
  if (h.cluster_id.size() > kMaxHelloString || h.peer_host.size() > kMaxHelloString) {
    return make_error(Errc::too_large, "hello: cluster id or host longer than {} bytes",
                      kMaxHelloString);
  }
  size_t size = wire::kHeaderBytes + 8 + 2 + 1 + h.cluster_id.size() + 1 + h.peer_host.size();
  std::vector<uint8_t> out(size);
  uint8_t* p = out.data();
  store_be32(p + wire::kLengthAt, uint32_t(size - 4));
  store_be16(p + wire::kMagicAt, wire::kMagic);
  p[wire::kVersionAt] = wire::kVersion;
  p[wire::kKindAt] = kHelloKind;
  store_be32(p + wire::kFromAt, uint32_t(h.id));
  store_be32(p + wire::kToAt, uint32_t(raft::kNoNode));
  size_t at = wire::kHeaderBytes;
  store_be64(p + at, h.incarnation);
  at += 8;
  store_be16(p + at, h.peer_port);
  at += 2;
  p[at++] = uint8_t(h.cluster_id.size());
  std::copy(h.cluster_id.begin(), h.cluster_id.end(), p + at);
  at += h.cluster_id.size();
  p[at++] = uint8_t(h.peer_host.size());
  std::copy(h.peer_host.begin(), h.peer_host.end(), p + at);
  store_be32(p + wire::kCrcAt, crc32c(0, p + wire::kCrcStart, size - wire::kCrcStart));
  return out;
}

Result<Hello> decode_hello(std::span<const uint8_t> in) {
  auto header = wire::read_header(in);
  if (!header) return std::move(header).error();
  if (header->frame_bytes() != in.size() || header->kind != kHelloKind ||
      in.size() > kMaxHelloBytes) {
    return make_error(Errc::corrupt, "hello: bad kind or size");
  }
  if (crc32c(0, in.data() + wire::kCrcStart, in.size() - wire::kCrcStart) != header->crc) {
    return make_error(Errc::corrupt, "hello: bad crc");
  }
  Hello h;
  h.id = header->from;
  if (h.id < 0 || header->to != raft::kNoNode) {
    return make_error(Errc::corrupt, "hello: bad node ids");
  }
  size_t at = wire::kHeaderBytes;
  auto need = [&](size_t n) { return in.size() - at >= n; };
  if (!need(11)) return make_error(Errc::corrupt, "hello: truncated");
  h.incarnation = load_be64(in.data() + at);
  at += 8;
  h.peer_port = load_be16(in.data() + at);
  at += 2;
  size_t n = in[at++];
  if (!need(n + 1)) return make_error(Errc::corrupt, "hello: truncated cluster id");
  h.cluster_id.assign(reinterpret_cast<const char*>(in.data() + at), n);
  at += n;
  n = in[at++];
  if (in.size() - at != n) return make_error(Errc::corrupt, "hello: bad host length");
  h.peer_host.assign(reinterpret_cast<const char*>(in.data() + at), n);
  return h;
}

// ---- state ----------------------------------------------------------------------------------

namespace {

// Wakes one coroutine waiting on it. Single thread: a notify before the wait is seen by the
// waiter's own condition check, so nothing is lost.
struct Wakeup {
  explicit Wakeup(asio::io_context& ctx) : timer(ctx) {}
  awaitable<void> wait() {
    timer.expires_at(asio::steady_timer::time_point::max());
    std::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  void notify() { timer.cancel(); }
  asio::steady_timer timer;
};

constexpr size_t kMaxBatchFrames = 256;
constexpr size_t kMaxBatchBytes = 4u << 20;

}  // namespace

struct Conn {
  Conn(asio::io_context& ctx, uint64_t id, bool dialed)
      : socket(ctx), wake(ctx), id(id), dialed(dialed) {}
  tcp::socket socket;
  Wakeup wake;
  uint64_t id;                  // set by open()
  bool dialed;                  // dialed by this node
  bool pending = false;         // dialed by this node and not yet past the hello
  NodeId peer = raft::kNoNode;  // known from the hello (accepted) or the dial (dialed)
  bool identified = false;      // the peer's hello arrived
  bool hello_due = true;
  bool closed = false;
  Clock::time_point last_rx = Clock::now();
};

struct Peer {
  explicit Peer(asio::io_context& ctx, NodeId id) : retry(ctx) { stats.id = id; }
  PeerAddress addr;
  Hello hello;  // the last one received
  std::deque<std::vector<uint8_t>> queue;
  size_t queued_bytes = 0;
  std::shared_ptr<Conn> conn;  // the kept connection
  bool dialing = false;
  int pending = 0;  // dialed connections waiting for their hello
  int64_t backoff_ms = 0;
  int64_t next_delay_ms = 0;
  bool blocked = false;
  bool was_up = false;
  asio::steady_timer retry;
  std::shared_ptr<Conn> connecting;  // the socket of a dial in progress (stop() closes it)
  PeerStats stats;
};

struct PeerTransport::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& c, PeerTransportOptions o)
      : ctx(c), opts(std::move(o)), acceptor(c), ticker(c), rng(std::random_device{}()) {}

  asio::io_context& ctx;
  PeerTransportOptions opts;
  tcp::acceptor acceptor;
  asio::steady_timer ticker;
  std::minstd_rand rng;
  std::vector<uint8_t> hello_bytes;
  std::map<NodeId, std::unique_ptr<Peer>> peers;
  std::unordered_map<uint64_t, std::shared_ptr<Conn>> conns;
  uint64_t next_conn = 1;
  uint64_t rejected = 0;
  bool stopped = false;
  std::function<void(NodeId, std::span<const uint8_t>)> on_frame;
  std::function<void(const Hello&, bool)> on_peer;

  Peer& peer(NodeId id) {
    auto& p = peers[id];
    if (!p) p = std::make_unique<Peer>(ctx, id);
    return *p;
  }

  void spawn(awaitable<void> a) { asio::co_spawn(ctx, std::move(a), asio::detached); }

  // ---- outgoing ----

  void enqueue(NodeId to, std::vector<uint8_t> frame) {
    if (stopped || to == opts.self.id || to < 0) return;
    Peer& p = peer(to);
    if (p.blocked || p.queued_bytes + frame.size() > opts.max_queue_bytes) {
      p.stats.dropped++;
      return;
    }
    p.queued_bytes += frame.size();
    p.queue.push_back(std::move(frame));
    if (p.conn) {
      p.conn->wake.notify();
    } else {
      maybe_dial(p);
    }
  }

  void maybe_dial(Peer& p) {
    if (stopped || p.conn || p.dialing || p.pending > 0 || p.queue.empty() || p.blocked ||
        p.addr.port == 0) {
      return;
    }
    p.dialing = true;
    spawn(dial(shared_from_this(), &p));
  }

  void dial_failed(Peer& p) {
    if (p.backoff_ms == 0) p.backoff_ms = opts.reconnect_min_ms;
    std::uniform_int_distribution<int64_t> jitter(p.backoff_ms / 2, p.backoff_ms);
    p.next_delay_ms = jitter(rng);
    p.backoff_ms = std::min(p.backoff_ms * 2, opts.reconnect_max_ms);
  }

  static awaitable<void> dial(std::shared_ptr<Impl> self, Peer* p) {
    std::error_code ec;
    if (p->next_delay_ms > 0) {
      p->retry.expires_after(std::chrono::milliseconds(p->next_delay_ms));
      co_await p->retry.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (self->stopped) co_return;
    if (p->conn || p->blocked || p->addr.port == 0) {
      p->dialing = false;
      co_return;
    }
    auto c = std::make_shared<Conn>(self->ctx, 0, true);
    c->peer = p->stats.id;
    p->connecting = c;
    tcp::resolver resolver(self->ctx);
    auto endpoints = co_await resolver.async_resolve(p->addr.host, std::to_string(p->addr.port),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    if (!ec)
      co_await asio::async_connect(c->socket, endpoints,
                                   asio::redirect_error(asio::use_awaitable, ec));
    p->connecting.reset();
    if (self->stopped) {
      c->socket.close(ec);
      co_return;
    }
    p->dialing = false;
    if (ec) {
      self->dial_failed(*p);
      self->maybe_dial(*p);
      co_return;
    }
    c->pending = true;
    p->pending++;
    self->open(c);
  }

  void open(const std::shared_ptr<Conn>& c) {
    std::error_code ec;
    c->socket.set_option(tcp::no_delay(true), ec);
    c->id = next_conn++;
    conns[c->id] = c;
    spawn(reader(shared_from_this(), c));
    spawn(writer(shared_from_this(), c));
  }

  static awaitable<void> writer(std::shared_ptr<Impl> self, std::shared_ptr<Conn> c) {
    std::vector<std::vector<uint8_t>> batch;
    std::vector<asio::const_buffer> bufs;
    while (!c->closed) {
      batch.clear();
      bool hello = c->hello_due;
      c->hello_due = false;
      Peer* p = nullptr;
      if (c->identified) {
        auto it = self->peers.find(c->peer);
        if (it != self->peers.end() && it->second->conn == c) p = it->second.get();
      }
      size_t bytes = 0;
      while (p && !p->queue.empty() && batch.size() < kMaxBatchFrames && bytes < kMaxBatchBytes) {
        bytes += p->queue.front().size();
        p->queued_bytes -= p->queue.front().size();
        batch.push_back(std::move(p->queue.front()));
        p->queue.pop_front();
      }
      if (!hello && batch.empty()) {
        co_await c->wake.wait();
        continue;
      }
      bufs.clear();
      if (hello) bufs.push_back(asio::buffer(self->hello_bytes));
      for (auto& f : batch) bufs.push_back(asio::buffer(f));
      std::error_code ec;
      co_await asio::async_write(c->socket, bufs, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || c->closed) {
        if (p) p->stats.dropped += batch.size();
        self->close(c);
        co_return;
      }
      if (p) {
        p->stats.frames_sent += batch.size();
        p->stats.bytes_sent += bytes;
      }
    }
  }

  // ---- incoming ----

  static awaitable<void> accept_loop(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      auto c = std::make_shared<Conn>(self->ctx, 0, false);
      std::error_code ec;
      co_await self->acceptor.async_accept(c->socket,
                                           asio::redirect_error(asio::use_awaitable, ec));
      if (self->stopped) co_return;
      if (ec) continue;
      size_t unidentified = 0;
      for (auto& [id, other] : self->conns) unidentified += other->identified ? 0 : 1;
      if (unidentified >= self->opts.max_unidentified) {
        c->socket.close(ec);
        continue;
      }
      self->open(c);
    }
  }

  static awaitable<void> reader(std::shared_ptr<Impl> self, std::shared_ptr<Conn> c) {
    uint8_t head[wire::kHeaderBytes];
    while (!c->closed) {
      std::error_code ec;
      co_await asio::async_read(c->socket, asio::buffer(head),
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec || c->closed) break;
      c->last_rx = Clock::now();
      auto header = wire::read_header(std::span<const uint8_t>(head, sizeof head));
      if (!header || (header->kind == kHelloKind && header->frame_bytes() > kMaxHelloBytes)) {
        self->bad_frame(c);
        break;
      }
      // read_header bounded the length (kMaxFrameBytes) before this allocation.
      std::vector<uint8_t> frame(header->frame_bytes());
      std::copy(head, head + sizeof head, frame.begin());
      co_await asio::async_read(
          c->socket, asio::buffer(frame.data() + sizeof head, frame.size() - sizeof head),
          asio::redirect_error(asio::use_awaitable, ec));
      if (ec || c->closed) break;
      c->last_rx = Clock::now();
      if (crc32c(0, frame.data() + wire::kCrcStart, frame.size() - wire::kCrcStart) !=
          header->crc) {
        self->bad_frame(c);
        break;
      }
      if (header->kind == kHelloKind) {
        if (!self->on_hello(c, frame)) break;
        continue;
      }
      if (!c->identified || header->from != c->peer || header->to != self->opts.self.id) {
        self->bad_frame(c);
        break;
      }
      Peer& p = self->peer(c->peer);
      if (p.blocked || p.conn != c) {
        p.stats.dropped++;
        continue;
      }
      p.stats.frames_received++;
      p.stats.bytes_received += frame.size();
      if (self->on_frame) self->on_frame(c->peer, frame);
    }
    self->close(c);
  }

  void bad_frame(const std::shared_ptr<Conn>& c) {
    if (c->identified) peer(c->peer).stats.bad_frames++;
    close(c);
  }

  // Answers false when the connection was closed.
  bool on_hello(const std::shared_ptr<Conn>& c, std::span<const uint8_t> frame) {
    auto h = decode_hello(frame);
    if (!h || h->cluster_id != opts.self.cluster_id || h->id == opts.self.id ||
        (c->dialed && h->id != c->peer) || (c->identified && h->id != c->peer)) {
      rejected++;
      close(c);
      return false;
    }
    if (c->identified) return true;  // a keep-alive
    c->identified = true;
    c->peer = h->id;
    Peer& p = peer(h->id);
    p.hello = *h;
    if (c->pending) {
      c->pending = false;
      p.pending--;
    }
    if (p.conn) {
      // Two connections: keep the one dialed by the lower node id; between two dialed by the
      // same node, the newer (the older one is likely dead: the peer restarted).
      NodeId kept_dialer = p.conn->dialed ? opts.self.id : h->id;
      NodeId new_dialer = c->dialed ? opts.self.id : h->id;
      if (kept_dialer < new_dialer) {
        close(c);
        return false;
      }
      auto old = p.conn;
      p.conn = c;
      close(old);
      c->wake.notify();
      return true;
    }
    p.conn = c;
    p.backoff_ms = 0;
    p.next_delay_ms = 0;
    if (p.was_up) p.stats.reconnects++;
    p.was_up = true;
    p.stats.connected = true;
    c->wake.notify();
    if (on_peer) on_peer(p.hello, true);
    return true;
  }

  void close(const std::shared_ptr<Conn>& c) {
    if (c->closed) return;
    c->closed = true;
    std::error_code ec;
    c->socket.shutdown(tcp::socket::shutdown_both, ec);
    c->socket.close(ec);
    c->wake.notify();
    conns.erase(c->id);
    if (c->peer < 0 || stopped) return;
    Peer& p = peer(c->peer);
    if (c->pending) {
      c->pending = false;
      p.pending--;
      if (!p.conn) dial_failed(p);
    }
    if (p.conn == c) {
      p.conn.reset();
      p.stats.connected = false;
      dial_failed(p);
      if (on_peer) on_peer(p.hello, false);
    }
    maybe_dial(p);
  }

  // ---- keep-alive ----

  static awaitable<void> tick_loop(std::shared_ptr<Impl> self) {
    while (!self->stopped) {
      std::error_code ec;
      self->ticker.expires_after(std::chrono::milliseconds(self->opts.keepalive_ms));
      co_await self->ticker.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (self->stopped) co_return;
      auto now = Clock::now();
      std::vector<std::shared_ptr<Conn>> all;
      for (auto& [id, c] : self->conns) all.push_back(c);
      for (auto& c : all) {
        if (now - c->last_rx > std::chrono::milliseconds(self->opts.idle_timeout_ms)) {
          self->close(c);
        } else {
          c->hello_due = true;
          c->wake.notify();
        }
      }
    }
  }

  void do_stop() {
    if (stopped) return;
    stopped = true;
    std::error_code ec;
    acceptor.close(ec);
    ticker.cancel();
    std::vector<std::shared_ptr<Conn>> all;
    for (auto& [id, c] : conns) all.push_back(c);
    for (auto& c : all) close(c);
    for (auto& [id, p] : peers) {
      p->retry.cancel();
      if (p->connecting) p->connecting->socket.close(ec);
      p->conn.reset();
      p->stats.connected = false;
    }
  }

  TransportStats snapshot() const {
    TransportStats s;
    s.rejected = rejected;
    s.open_sockets = conns.size();
    for (auto& [id, p] : peers) {
      PeerStats ps = p->stats;
      ps.open_connections = 0;
      if (p->conn) ps.kept_dialer = p->conn->dialed ? opts.self.id : id;
      for (auto& [cid, c] : conns) ps.open_connections += c->peer == id ? 1 : 0;
      s.peers.push_back(ps);
    }
    return s;
  }
};

// ---- PeerTransport --------------------------------------------------------------------------

PeerTransport::PeerTransport(asio::io_context& ctx, PeerTransportOptions options)
    : impl_(std::make_shared<Impl>(ctx, std::move(options))) {}

PeerTransport::~PeerTransport() = default;

Result<uint16_t> PeerTransport::start() {
  Impl& im = *impl_;
  auto hello = encode_hello(im.opts.self);
  if (!hello) return std::move(hello).error();
  im.hello_bytes = std::move(*hello);
  im.on_frame = on_frame;
  im.on_peer = on_peer;
  std::error_code ec;
  auto address = asio::ip::make_address(im.opts.listen_host, ec);
  if (ec)
    return make_error(Errc::invalid_argument, "peer listen host {}: {}", im.opts.listen_host,
                      ec.message());
  tcp::endpoint ep(address, im.opts.listen_port);
  im.acceptor.open(ep.protocol(), ec);
  if (!ec) im.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) im.acceptor.bind(ep, ec);
  if (!ec) im.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(Errc::io, "peer listen {}:{}: {}", im.opts.listen_host, im.opts.listen_port,
                      ec.message());
  }
  uint16_t port = im.acceptor.local_endpoint(ec).port();
  im.spawn(Impl::accept_loop(impl_));
  im.spawn(Impl::tick_loop(impl_));
  return port;
}

void PeerTransport::stop() {
  asio::post(impl_->ctx, [im = impl_] { im->do_stop(); });
}

void PeerTransport::set_peers(std::vector<PeerAddress> peers) {
  asio::post(impl_->ctx, [im = impl_, peers = std::move(peers)] {
    if (im->stopped) return;
    for (auto& [id, p] : im->peers) p->addr.port = 0;
    for (auto& a : peers) {
      if (a.id == im->opts.self.id || a.id < 0) continue;
      Peer& p = im->peer(a.id);
      p.addr = a;
      im->maybe_dial(p);
    }
  });
}

void PeerTransport::send(NodeId to, std::vector<uint8_t> frame) {
  asio::post(impl_->ctx,
             [im = impl_, to, f = std::move(frame)]() mutable { im->enqueue(to, std::move(f)); });
}

void PeerTransport::send(std::vector<std::pair<NodeId, std::vector<uint8_t>>> frames) {
  asio::post(impl_->ctx, [im = impl_, fs = std::move(frames)]() mutable {
    for (auto& [to, f] : fs) im->enqueue(to, std::move(f));
  });
}

void PeerTransport::set_blocked(NodeId peer, bool blocked) {
  asio::post(impl_->ctx, [im = impl_, peer, blocked] {
    Peer& p = im->peer(peer);
    p.blocked = blocked;
    if (!blocked) return;
    p.stats.dropped += p.queue.size();
    p.queue.clear();
    p.queued_bytes = 0;
  });
}

TransportStats PeerTransport::stats() const {
  ORDO_ASSERT(!impl_->ctx.get_executor().running_in_this_thread());
  std::promise<TransportStats> done;
  auto f = done.get_future();
  asio::post(impl_->ctx, [im = impl_, &done] { done.set_value(im->snapshot()); });
  return f.get();
}

}  // namespace ordo::cluster
