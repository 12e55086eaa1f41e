#include "raft/batcher.h"

#include <algorithm>
#include <map>
#include <utility>

namespace ordo::raft {

namespace {

bool is_heartbeat(const Message& m) {
  return std::holds_alternative<Heartbeat>(m.body) ||
         std::holds_alternative<HeartbeatResponse>(m.body);
}

struct Weight {
  size_t entries = 0;
  size_t payload = 0;
};

Weight weight_of(const Message& m) {
  Weight w;
  if (const auto* a = std::get_if<AppendRequest>(&m.body)) {
    w.entries = a->entries.size();
    for (const Entry& e : a->entries) w.payload += e.size_bytes();
  }
  return w;
}

}  // namespace

Batcher::Batcher(NodeId self, BatcherOptions options) : self_(self), options_(options) {}

void Batcher::add(Message message) {
  if (message.from.id != self_) {
    ++stats_.dropped;
    last_error_ = make_error(Errc::invalid_argument, "message from node {} added to node {}",
                             message.from.id, self_);
    return;
  }
  if (pending_.size() >= options_.max_pending) {
    ++stats_.dropped;
    last_error_ = make_error(Errc::too_large, "more than {} messages pending", pending_.size());
    return;
  }
  if (auto c = wire::check_message(message); !c) {
    ++stats_.dropped;
    last_error_ = std::move(c).error();
    return;
  }
  pending_.push_back(std::move(message));
}

void Batcher::add(std::vector<Message> messages) {
  for (Message& m : messages) add(std::move(m));
}

void Batcher::emit(std::vector<OutFrame>& out, NodeId to, Result<std::vector<uint8_t>> bytes,
                   size_t messages, bool heartbeats) {
  if (!bytes) {
    // add() checked each message and the frames are planned within the bounds: not expected.
    stats_.dropped += messages;
    last_error_ = std::move(bytes).error();
    return;
  }
  ++stats_.frames_out;
  if (heartbeats) ++stats_.heartbeat_frames_out;
  stats_.messages_out += messages;
  stats_.bytes_out += bytes->size();
  out.push_back(OutFrame{.to = to, .bytes = std::move(bytes).value()});
}

std::vector<OutFrame> Batcher::flush() {
  struct Dest {
    std::vector<Message> others;
    std::vector<Message> heartbeats;
  };
  std::map<NodeId, Dest> dests;  // ordered: frames come out in destination order
  for (Message& m : pending_) {
    Dest& d = dests[m.to];
    (is_heartbeat(m) ? d.heartbeats : d.others).push_back(std::move(m));
  }
  pending_.clear();

  std::vector<OutFrame> out;
  for (auto& [to, d] : dests) {
    const std::vector<Message>& ms = d.others;
    size_t i = 0;
    while (i < ms.size()) {
      size_t size = wire::kHeaderBytes + 4;
      Weight total;
      size_t j = i;
      for (; j < ms.size(); ++j) {
        size_t bytes = wire::encoded_size(ms[j]);
        Weight w = weight_of(ms[j]);
        bool full = size + bytes > options_.frame_bytes || size + bytes > wire::kMaxFrameBytes ||
                    j - i == wire::kMaxMessagesPerFrame ||
                    total.entries + w.entries > wire::kMaxEntriesPerFrame ||
                    total.payload + w.payload > wire::kMaxPayloadBytes;
        if (full && j > i) break;  // the first message of a frame always goes in
        size += bytes;
        total.entries += w.entries;
        total.payload += w.payload;
      }
      std::span<const Message> part(ms.data() + i, j - i);
      emit(out, to, wire::encode_messages(self_, to, part), part.size(), false);
      i = j;
    }
    const std::vector<Message>& hs = d.heartbeats;
    for (size_t k = 0; k < hs.size(); k += wire::kMaxHeartbeatGroups) {
      size_t n = std::min(wire::kMaxHeartbeatGroups, hs.size() - k);
      std::span<const Message> part(hs.data() + k, n);
      emit(out, to, wire::encode_heartbeats(self_, to, part), n, true);
    }
  }
  return out;
}

Result<Received> Batcher::receive(std::span<const uint8_t> frame) {
  auto decoded = wire::decode_frame(frame);
  if (!decoded) {
    ++stats_.rejected;
    if (decoded.error().code == Errc::invalid_argument) {
      // An unknown version: the header is the same in every version, so it says whom to tell.
      auto header = wire::read_header(frame);
      ORDO_ASSERT(header.has_value());
      Received r;
      r.reply = wire::version_error_frame(self_, *header);
      return r;
    }
    return std::move(decoded).error();
  }
  wire::Frame& f = *decoded;
  if (f.to != self_) {
    ++stats_.rejected;
    return make_error(Errc::invalid_argument, "a frame for node {} received by node {}", f.to,
                      self_);
  }
  if (f.kind == wire::FrameKind::control) {
    // Control frames belong to the node-to-node RPC (cluster::PeerRpc): the receiver routes
    // kind 4 by the header before the Batcher, so one arriving here is refused, not stepped.
    ++stats_.rejected;
    return make_error(Errc::invalid_argument, "a control frame (kind 4) is not for the Batcher");
  }
  ++stats_.frames_in;
  Received r;
  if (f.kind == wire::FrameKind::error) {
    r.peer_error = std::move(f.error);
    return r;
  }
  stats_.messages_in += f.messages.size();
  r.messages = std::move(f.messages);
  return r;
}

}  // namespace ordo::raft
