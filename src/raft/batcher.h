#pragma once
// raft::Batcher: one node's replication traffic, batched per pair of nodes. The cores of all
// the node's groups output their messages for one round (a tick and the inputs handled with
// it); the Batcher takes them all and turns them into frames (wire.h), per destination node:
//
//   - every Heartbeat and HeartbeatResponse into ONE heartbeats frame (28 bytes per group), so
//     an idle cluster sends one frame per ordered node pair per round however many groups the
//     two nodes share;
//   - everything else into messages frames, in the order added, a new frame started when the
//     next message would take the frame past `frame_bytes` (a message larger than that travels
//     alone, up to wire::kMaxFrameBytes).
//
// Per destination, the messages frames come first, then the heartbeats frame. On receipt,
// receive() turns a frame back into the raft::Message values it carries, for the caller to
// step into each group's replica.
//
// Not thread-safe: one per node, driven by the thread that runs the round.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "raft/types.h"
#include "raft/wire.h"

namespace ordo::raft {

struct BatcherOptions {
  size_t frame_bytes = 1 << 20;  // messages frames are split at this size
  // Messages held between flushes; more are dropped (and counted), as a lossy network would:
  // Raft resends what matters.
  size_t max_pending = 1 << 20;
};

struct OutFrame {
  NodeId to = kNoNode;
  std::vector<uint8_t> bytes;
};

struct Received {
  std::vector<Message> messages;  // to step, in order
  // The frame's version is one this node does not read: send these bytes (an error frame)
  // back to its sender.
  std::optional<std::vector<uint8_t>> reply;
  // The frame was an error frame: the peer refused one of ours.
  std::optional<wire::ErrorInfo> peer_error;
};

struct BatcherStats {
  uint64_t frames_out = 0;
  uint64_t heartbeat_frames_out = 0;
  uint64_t messages_out = 0;
  uint64_t bytes_out = 0;
  uint64_t frames_in = 0;
  uint64_t messages_in = 0;
  uint64_t dropped = 0;   // refused by add() (malformed, not from this node, over max_pending)
  uint64_t rejected = 0;  // frames receive() refused
};

class Batcher {
 public:
  explicit Batcher(NodeId self, BatcherOptions options = {});

  // Queues a message a core output (from.id must be this node). Malformed messages (what the
  // wire cannot encode) are dropped and counted, with the reason in last_error().
  void add(Message message);
  void add(std::vector<Message> messages);
  // The frames for everything added since the last flush; empties the queue.
  std::vector<OutFrame> flush();
  size_t pending() const { return pending_.size(); }

  // Decodes a frame received from a peer. Errors (Errc::corrupt, or invalid_argument for a
  // frame addressed to another node or a control frame, which is PeerRpc's) mean the frame was
  // dropped; a frame of a version this node does not read is not an error: its answer is in
  // Received::reply.
  Result<Received> receive(std::span<const uint8_t> frame);

  const BatcherStats& stats() const { return stats_; }
  const std::optional<Error>& last_error() const { return last_error_; }

 private:
  void emit(std::vector<OutFrame>& out, NodeId to, Result<std::vector<uint8_t>> bytes,
            size_t messages, bool heartbeats);

  NodeId self_;
  BatcherOptions options_;
  std::vector<Message> pending_;
  BatcherStats stats_;
  std::optional<Error> last_error_;
};

}  // namespace ordo::raft
