#pragma once
// PeerTransport: the node-to-node TCP connections that carry replication frames
// (docs/cluster-transport.md). One connection per node pair, frames both ways on it.
//
// Runs on one thread: the thread running the io_context given to it (all its handlers run
// there; on_frame and on_peer are called there). Every public method may be called from any
// thread (it posts); stats() waits for the transport thread, so it must not be called on it.
//
// Each connection starts with a hello frame from each side (node id, incarnation, cluster id,
// peer address), sent again every keepalive_ms; a connection silent for idle_timeout_ms is
// closed. A hello from another cluster, or claiming our own id, closes the connection. When
// both nodes dial each other at once, both keep the connection dialed by the lower node id.
//
// Frames to a peer wait in a bounded queue (max_queue_bytes); beyond it they are dropped and
// counted: Raft resends. A peer with queued frames and no connection is dialed, with jittered
// exponential backoff between failed attempts. Frames read are checked (header bounds before
// any allocation, magic, CRC, sender and destination): a bad frame closes that connection
// only, and is counted.
//
// Lifetime: stop() closes the sockets and cancels the timers; once the io_context has run the
// resulting handlers (its run() returns when nothing else keeps it busy) the object may be
// destroyed.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "raft/types.h"

namespace asio {
class io_context;
}

namespace ordo::cluster {

using raft::NodeId;

// The hello frame: the raft wire header (kind kHelloKind, from = the sender, to = -1) and a
// small fixed-layout body (docs/cluster-transport.md).
struct Hello {
  NodeId id = raft::kNoNode;
  uint64_t incarnation = 0;
  std::string cluster_id;  // at most kMaxHelloString bytes
  std::string peer_host;   // at most kMaxHelloString bytes
  uint16_t peer_port = 0;
  bool operator==(const Hello&) const = default;
};

constexpr uint8_t kHelloKind = 0x80;  // transport-level kind; raft wire kinds are below 0x80
constexpr size_t kMaxHelloString = 255;
constexpr size_t kMaxHelloBytes = 20 + 8 + 2 + 1 + kMaxHelloString + 1 + kMaxHelloString;

Result<std::vector<uint8_t>> encode_hello(const Hello& hello);
// Decodes a whole hello frame (header included; the CRC is checked).
Result<Hello> decode_hello(std::span<const uint8_t> frame);

struct PeerAddress {
  NodeId id = raft::kNoNode;
  std::string host;
  uint16_t port = 0;
};

struct PeerTransportOptions {
  Hello self;  // id, incarnation, cluster id, and the address peers dial
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 0;            // 0: an ephemeral port (start() answers it)
  size_t max_queue_bytes = 64u << 20;  // per peer; beyond: frames dropped and counted
  int64_t reconnect_min_ms = 50;       // backoff between failed dials, jittered, doubling
  int64_t reconnect_max_ms = 1000;
  int64_t keepalive_ms = 1000;     // a hello on every connection this often
  int64_t idle_timeout_ms = 3000;  // no bytes for this long: close (and redial)
  size_t max_unidentified = 64;    // accepted connections not yet past their hello
};

struct PeerStats {
  NodeId id = raft::kNoNode;
  bool connected = false;              // a connection past both hellos is kept
  NodeId kept_dialer = raft::kNoNode;  // who dialed the kept connection
  uint64_t open_connections = 0;       // sockets open to or from this peer (kept or not)
  uint64_t frames_sent = 0, bytes_sent = 0;
  uint64_t frames_received = 0, bytes_received = 0;
  uint64_t dropped = 0;     // frames dropped: queue full, blocked, or lost with a connection
  uint64_t bad_frames = 0;  // connections closed for a bad frame (CRC, magic, bounds, address)
  uint64_t reconnects = 0;  // times the peer came up again after having been up
};

struct TransportStats {
  std::vector<PeerStats> peers;  // by id
  uint64_t rejected = 0;         // connections closed for their hello (cluster id, own id)
  uint64_t open_sockets = 0;     // every open connection, identified or not
};

class PeerTransport {
 public:
  PeerTransport(asio::io_context& ctx, PeerTransportOptions options);
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // Binds and listens (on the calling thread), then starts accepting on the transport thread.
  // Answers the port bound. Set on_frame and on_peer before.
  Result<uint16_t> start();
  void stop();

  // The peers this node may dial. A peer left out keeps its queue but is no longer dialed
  // (it may still dial us).
  void set_peers(std::vector<PeerAddress> peers);
  void send(NodeId to, std::vector<uint8_t> frame);
  void send(std::vector<std::pair<NodeId, std::vector<uint8_t>>> frames);
  // Drops every frame to and from `peer` while blocked (tests: a partition in one process).
  void set_blocked(NodeId peer, bool blocked);
  TransportStats stats() const;

  // Called on the transport thread. on_frame: a whole frame (header, CRC and addresses
  // checked; the version and body are the receiver's to check). on_peer: a peer's kept
  // connection came up (its hello) or went down.
  std::function<void(NodeId from, std::span<const uint8_t> frame)> on_frame;
  std::function<void(const Hello& peer, bool up)> on_peer;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace ordo::cluster
