#include "cluster/peer_rpc.h"

#include <asio/dispatch.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <unordered_map>

#include "base/assert.h"
#include "base/log.h"
#include "raft/wire.h"

namespace ordo::cluster {

namespace wire = raft::wire;

namespace {

// The Errc of an error response's code; a code this build does not know is an I/O error.
Errc errc_of(uint16_t code) {
  if (code == 0 || code > uint16_t(Errc::invalid_producer_epoch)) return Errc::io;
  return Errc(code);
}

struct Counters {
  std::atomic<uint64_t> calls{0}, responses{0}, timeouts{0}, refused_calls{0}, requests{0},
      unknown_types{0}, refused_requests{0}, late_responses{0}, bad_frames{0};
};

}  // namespace

bool is_control_frame(std::span<const uint8_t> frame) {
  return frame.size() >= wire::kHeaderBytes &&
         frame[wire::kKindAt] == uint8_t(wire::FrameKind::control);
}

struct PeerRpc::Impl : std::enable_shared_from_this<PeerRpc::Impl> {
  struct Pending {
    NodeId to = raft::kNoNode;
    uint16_t type = 0;
    Done done;
    std::unique_ptr<asio::steady_timer> timer;
  };

  Impl(asio::io_context& c, NodeId s, std::function<void(NodeId, std::vector<uint8_t>)> sn,
       PeerRpcOptions o)
      : ctx(c), self(s), send(std::move(sn)), options(o) {
    std::random_device rd;
    next_correlation = (uint64_t(rd()) << 32) ^ uint64_t(rd());
  }

  // ---- transport thread ----

  void start_call(NodeId to, uint16_t type, Body body, int64_t timeout_ms, Done done) {
    if (stopped) {
      ++counters.refused_calls;
      return done(make_error(Errc::closed, "peer rpc stopped"));
    }
    if (pending.size() >= options.max_pending) {
      ++counters.refused_calls;
      return done(
          make_error(Errc::too_large, "{} calls already wait for a response", pending.size()));
    }
    uint64_t correlation = next_correlation++;
    while (pending.count(correlation) != 0) correlation = next_correlation++;
    auto frame = wire::encode_control(
        self, to, wire::Control{.correlation = correlation, .type = type, .body = std::move(body)});
    if (!frame) {
      ++counters.refused_calls;
      return done(std::move(frame).error());
    }
    Pending p{.to = to, .type = type, .done = std::move(done)};
    p.timer = std::make_unique<asio::steady_timer>(ctx);
    p.timer->expires_after(std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0)));
    p.timer->async_wait(
        [w = weak_from_this(), correlation, to, type, timeout_ms](std::error_code ec) {
          auto im = w.lock();
          if (ec || !im) return;
          auto it = im->pending.find(correlation);
          if (it == im->pending.end()) return;
          Done d = std::move(it->second.done);
          im->pending.erase(it);
          ++im->counters.timeouts;
          d(make_error(kCallTimedOut, "call of type {} to node {}: no response within {} ms", type,
                       to, timeout_ms));
        });
    pending.emplace(correlation, std::move(p));
    ++counters.calls;
    send(to, std::move(frame).value());
  }

  void on_response(NodeId from, wire::Control& c) {
    auto it = pending.find(c.correlation);
    if (it == pending.end() || it->second.to != from || it->second.type != c.type) {
      ++counters.late_responses;
      return;
    }
    Done d = std::move(it->second.done);
    it->second.timer->cancel();
    pending.erase(it);
    ++counters.responses;
    if (c.error) {
      return d(Error{errc_of(c.error_code), std::move(c.error_message)});
    }
    d(std::move(c.body));
  }

  void on_request(NodeId from, wire::Control& c);

  void fail_all() {
    auto waiting = std::move(pending);
    pending.clear();
    for (auto& [correlation, p] : waiting) {
      p.timer->cancel();
      p.done(make_error(Errc::closed, "peer rpc stopped; call of type {} to node {} abandoned",
                        p.type, p.to));
    }
  }

  // ---- any thread ----

  // An answer to a request (a response frame), sent from whichever thread replies.
  void respond(NodeId to, uint64_t correlation, uint16_t type, Result<Body> r) {
    if (stopped) return;
    wire::Control c{.correlation = correlation, .response = true, .type = type};
    if (r.has_value()) {
      c.body = std::move(r).value();
      if (c.body.size() > wire::kMaxControlBodyBytes) {
        r = make_error(Errc::too_large, "response of {} bytes, at most {}", c.body.size(),
                       wire::kMaxControlBodyBytes);
        c.body.clear();
      }
    }
    if (!r.has_value()) {
      c.error = true;
      c.error_code = r.error().code == Errc::ok ? uint16_t(Errc::io) : uint16_t(r.error().code);
      c.error_message = r.error().message.substr(0, wire::kMaxErrorMessageBytes);
    }
    auto frame = wire::encode_control(self, to, c);
    ORDO_ASSERT_MSG(frame.has_value(), "a response within the bounds encodes");
    send(to, std::move(frame).value());
  }

  asio::io_context& ctx;
  const NodeId self;
  const std::function<void(NodeId, std::vector<uint8_t>)> send;
  const PeerRpcOptions options;
  std::atomic<bool> stopped{false};
  std::atomic<size_t> inflight_requests{0};
  Counters counters;

  mutable std::mutex handlers_mu;
  std::unordered_map<uint16_t, std::shared_ptr<const Handler>> handlers;

  // transport thread
  std::unordered_map<uint64_t, Pending> pending;
  uint64_t next_correlation = 1;
};

namespace {

// What a handler's Reply holds: who to answer, and whether it has. Destroyed without having
// answered (a handler that dropped it), it gives back its in-flight slot.
struct ReplyState {
  std::weak_ptr<PeerRpc::Impl> impl;
  NodeId to;
  uint64_t correlation;
  uint16_t type;
  std::atomic<bool> answered{false};
  ~ReplyState() {
    if (answered.load()) return;
    if (auto im = impl.lock()) --im->inflight_requests;
  }
};

}  // namespace

void PeerRpc::Impl::on_request(NodeId from, wire::Control& c) {
  std::shared_ptr<const Handler> handler;
  {
    std::lock_guard lock(handlers_mu);
    auto it = handlers.find(c.type);
    if (it != handlers.end()) handler = it->second;
  }
  if (!handler) {
    ++counters.unknown_types;
    return respond(from, c.correlation, c.type,
                   make_error(Errc::not_found, "node {} has no handler for type {}", self, c.type));
  }
  if (inflight_requests.load() >= options.max_inflight_requests) {
    ++counters.refused_requests;
    return respond(from, c.correlation, c.type,
                   make_error(Errc::busy, "node {}: {} requests in flight", self,
                              options.max_inflight_requests));
  }
  ++inflight_requests;
  ++counters.requests;
  auto state = std::make_shared<ReplyState>();
  state->impl = weak_from_this();
  state->to = from;
  state->correlation = c.correlation;
  state->type = c.type;
  Reply reply = [state](Result<Body> r) {
    if (state->answered.exchange(true)) return;  // a second answer: ignored
    auto im = state->impl.lock();
    if (!im) return;
    --im->inflight_requests;
    im->respond(state->to, state->correlation, state->type, std::move(r));
  };
  (*handler)(from, std::move(c.body), std::move(reply));
}

PeerRpc::PeerRpc(asio::io_context& transport_ctx, NodeId self,
                 std::function<void(NodeId, std::vector<uint8_t>)> send, PeerRpcOptions options)
    : impl_(std::make_shared<Impl>(transport_ctx, self, std::move(send), options)) {
  ORDO_ASSERT(impl_->send != nullptr);
}

PeerRpc::~PeerRpc() {
  // Handlers already posted keep the state alive; they find it stopped.
  stop();
}

void PeerRpc::handle(uint16_t type, Handler fn) {
  std::lock_guard lock(impl_->handlers_mu);
  if (fn) {
    impl_->handlers[type] = std::make_shared<const Handler>(std::move(fn));
  } else {
    impl_->handlers.erase(type);
  }
}

void PeerRpc::call(NodeId to, uint16_t type, Body body, int64_t timeout_ms, Done done) {
  ORDO_ASSERT(done != nullptr);
  asio::post(impl_->ctx, [im = impl_, to, type, body = std::move(body), timeout_ms,
                          done = std::move(done)]() mutable {
    im->start_call(to, type, std::move(body), timeout_ms, std::move(done));
  });
}

void PeerRpc::on_frame(NodeId from, std::span<const uint8_t> frame) {
  Impl& im = *impl_;
  if (im.stopped) return;
  auto f = wire::decode_control(frame);
  if (!f) {
    ++im.counters.bad_frames;
    if (f.error().code == Errc::invalid_argument) {
      // A version this node does not read: tell the sender (the header is readable in every
      // version), as the Batcher does for Raft frames.
      if (auto h = wire::read_header(frame)) im.send(from, wire::version_error_frame(im.self, *h));
    } else {
      ORDO_LOG_DEBUG("peer rpc: dropped a frame from node {}: {}", from, f.error().to_string());
    }
    return;
  }
  if (f->from != from || f->to != im.self) {
    ++im.counters.bad_frames;
    return;
  }
  if (f->control.response) {
    im.on_response(from, f->control);
  } else {
    im.on_request(from, f->control);
  }
}

void PeerRpc::stop() {
  impl_->stopped = true;
  asio::dispatch(impl_->ctx, [im = impl_] { im->fail_all(); });
}

PeerRpcStats PeerRpc::stats() const {
  const Counters& c = impl_->counters;
  return PeerRpcStats{.calls = c.calls,
                      .responses = c.responses,
                      .timeouts = c.timeouts,
                      .refused_calls = c.refused_calls,
                      .requests = c.requests,
                      .unknown_types = c.unknown_types,
                      .refused_requests = c.refused_requests,
                      .late_responses = c.late_responses,
                      .bad_frames = c.bad_frames};
}

}  // namespace ordo::cluster
