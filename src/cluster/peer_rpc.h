#pragma once
// PeerRpc: request/response calls between nodes over the control frames of the replication
// wire (kind 4, docs/replication-wire.md), carried by the PeerTransport. The controller's
// requests (registration, heartbeats, forwarded admin operations) use it; Raft traffic does
// not (it has its own frames and the Batcher).
//
// A call sends a request (a correlation id chosen here, a type, an opaque body of at most
// wire::kMaxControlBodyBytes) to one node and waits for the response with the same
// correlation id from that node, at most timeout_ms. The node that receives a request runs the
// handler registered for its type; the handler answers through its Reply, from any thread,
// once. The answer is a body or an error (an Errc and a message), which the caller gets as the
// Result's error.
//
// Outcomes of a call, on the transport thread, exactly once:
//   the response's body                 the handler replied with a value
//   its error (code and message)        the handler replied with an error
//   Errc::not_found                     the peer has no handler for the type
//   kCallTimedOut (Errc::busy)          no response within timeout_ms: lost, the peer down or
//                                       restarting, the handler slow or never replying
//   Errc::too_large                     the body is over the bound, or max_pending calls are
//                                       already waiting (nothing was sent)
//   Errc::closed                        stop() was called (before or while the call waited)
// A response that arrives after its call timed out is dropped (counted): the handler's effect
// may still have happened, so types whose handlers change state must be idempotent or the
// caller must find out.
//
// Threads: all state lives on the transport thread (the one running the io_context given
// here). handle() may be called from any thread (a mutex guards the handlers); call() and
// stop() from any thread (they post; stop() runs at once when called on the transport
// thread); on_frame() on the transport thread (the lead's routing: PeerTransport::on_frame ->
// a frame whose header kind is 4 -> here). Handlers run on the transport thread and must not
// block: they hand the work to their own thread and reply from there. `send` must be
// thread-safe (PeerTransport::send is): replies call it from the thread that replies.
//
// Bounds: at most max_pending calls waiting for a response (beyond: Errc::too_large, at once);
// at most max_inflight_requests requests received and not yet replied to (beyond: answered at
// once with an Errc::busy error, the handler not run). A Reply dropped without being called
// gives its slot back (the caller's timeout covers the call).
//
// Lifetime: stop() fails the waiting calls with Errc::closed and stops handling requests; the
// object may then be destroyed (handlers posted before hold its state, not the object; the
// destructor stops it too), before the io_context is. A Reply may outlive the PeerRpc (it then
// does nothing) but not the transport that `send` reaches.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "raft/types.h"

namespace asio {
class io_context;
}

namespace ordo::cluster {

using raft::NodeId;

// The error of a call that got no response in time. Errc has no timeout code of its own today
// (base/result.h); busy says "try again later", which is what a caller should do.
constexpr Errc kCallTimedOut = Errc::busy;

// Whether a frame PeerTransport::on_frame delivered is a control frame (kind 4, PeerRpc's) by
// its header (the transport checked the header): route it to PeerRpc::on_frame, not to the
// Batcher.
bool is_control_frame(std::span<const uint8_t> frame);

struct PeerRpcOptions {
  size_t max_pending = 4096;            // calls waiting for a response
  size_t max_inflight_requests = 4096;  // requests received, not yet replied to
};

struct PeerRpcStats {
  uint64_t calls = 0;             // calls sent
  uint64_t responses = 0;         // responses matched to a waiting call (value or error)
  uint64_t timeouts = 0;          // calls that timed out
  uint64_t refused_calls = 0;     // calls refused at once (bounds, stopped)
  uint64_t requests = 0;          // requests received and given to a handler
  uint64_t unknown_types = 0;     // requests without a handler (answered not_found)
  uint64_t refused_requests = 0;  // requests answered busy: max_inflight_requests reached
  uint64_t late_responses = 0;    // responses without a waiting call (timed out, or stray)
  uint64_t bad_frames = 0;        // frames that did not decode, or not addressed to us
};

class PeerRpc {
 public:
  using Body = std::vector<uint8_t>;
  // Callable from any thread, once (later calls do nothing).
  using Reply = std::function<void(Result<Body>)>;
  using Handler = std::function<void(NodeId from, Body body, Reply reply)>;
  using Done = std::function<void(Result<Body>)>;

  // send(to, frame): hands a whole frame to the transport (PeerTransport::send).
  PeerRpc(asio::io_context& transport_ctx, NodeId self,
          std::function<void(NodeId to, std::vector<uint8_t> frame)> send,
          PeerRpcOptions options = {});
  ~PeerRpc();
  PeerRpc(const PeerRpc&) = delete;
  PeerRpc& operator=(const PeerRpc&) = delete;

  // Registers (or replaces; nullptr removes) the handler of requests of `type`.
  void handle(uint16_t type, Handler fn);
  // Sends a request to `to` and calls done with the outcome (above), on the transport thread.
  void call(NodeId to, uint16_t type, Body body, int64_t timeout_ms, Done done);
  // A control frame (kind 4) received from `from`. Requests go to their handler, responses to
  // their call; a frame of a version this node does not read is answered with an error frame
  // (wire::version_error_frame); anything malformed is dropped and counted.
  void on_frame(NodeId from, std::span<const uint8_t> frame);
  // Waiting calls fail with Errc::closed; later calls fail at once; requests are dropped.
  void stop();

  PeerRpcStats stats() const;  // any thread

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ordo::cluster
