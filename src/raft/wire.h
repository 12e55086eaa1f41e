#pragma once
// The wire format of replication traffic between two nodes (docs/replication-wire.md): frames
// that carry raft::Message values of many groups at once. Three kinds of frame:
//
//   messages    any messages, each with its group, term and sender incarnation; entries with
//               their payloads length-prefixed (an AppendRequest of several partitions' groups
//               travels in one frame)
//   heartbeats  the Heartbeat and HeartbeatResponse messages of one round between one pair of
//               nodes, 28 bytes per group, fixed width
//   error       a refusal: the receiver does not speak the frame's version
//   control     one request or response of cluster::PeerRpc (correlation id, type, opaque body
//               of at most 1 MiB); never given to the Batcher: the receiver routes kind 4
//               frames to its PeerRpc by the header's kind
//
// Every frame starts with the same 20-byte header in every version (length, CRC-32C of what
// follows it, magic, version, kind, sender node, destination node), so a node can check any
// frame and answer a version it does not know with an error frame.
//
// Decoding validates every length and count against the bytes present and the bounds below
// and answers a Result: bad input is never a crash. What decodes re-encodes to the same bytes
// (one encoding per frame). Pure functions: no state, any thread.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "raft/types.h"

namespace ordo::raft::wire {

// ---- layout ---------------------------------------------------------------------------------

constexpr uint16_t kMagic = 0x5246;  // "RF"
constexpr uint8_t kVersion = 1;      // the newest version this code writes and reads
constexpr uint8_t kMinVersion = 1;   // the oldest it reads

constexpr size_t kHeaderBytes = 20;
// Offsets in the header. `length` counts the bytes after itself; the CRC covers every byte
// from kCrcStart (the magic) to the end of the frame.
constexpr size_t kLengthAt = 0;
constexpr size_t kCrcAt = 4;
constexpr size_t kCrcStart = 8;
constexpr size_t kMagicAt = 8;
constexpr size_t kVersionAt = 10;
constexpr size_t kKindAt = 11;
constexpr size_t kFromAt = 12;
constexpr size_t kToAt = 16;

enum class FrameKind : uint8_t { messages = 1, heartbeats = 2, error = 3, control = 4 };

// ---- bounds (checked by both the encoder and the decoder) -----------------------------------

constexpr size_t kMaxFrameBytes = 64u << 20;       // a whole frame, header included
constexpr size_t kMaxPayloadBytes = 64u << 20;     // entry payload bytes in one frame
constexpr size_t kMaxMessagesPerFrame = 1u << 16;  // messages in a messages frame
constexpr size_t kMaxEntriesPerFrame = 1u << 18;   // entries of all messages of a frame
constexpr size_t kMaxHeartbeatGroups = 1u << 18;   // heartbeats + responses in one frame
constexpr size_t kMaxConfigMembers = 256;          // voters, and learners, of one Config
constexpr size_t kMaxErrorMessageBytes = 1024;     // an error frame's, and a control error's
constexpr size_t kMaxControlBodyBytes = 1u << 20;  // a control frame's body

// Fixed sizes, for callers that plan frames.
constexpr size_t kMessageHeaderBytes = 21;  // group, term, incarnation, body kind
constexpr size_t kEntryHeaderBytes = 25;    // term, base, last, kind, payload length
constexpr size_t kHeartbeatItemBytes = 28;  // group, term, incarnation, commit / match
constexpr size_t kControlHeaderBytes = 15;  // correlation, flags, type, body length

// ---- frames ---------------------------------------------------------------------------------

enum class ErrorCode : uint16_t {
  unsupported_version = 1,  // the frame's version is not one the receiver reads
  malformed = 2,            // the frame failed validation
  wrong_destination = 3,    // the frame was addressed to another node
};

struct ErrorInfo {
  ErrorCode code = ErrorCode::malformed;
  uint8_t max_version = kVersion;  // the newest version the sender of the error reads
  std::string message;             // at most kMaxErrorMessageBytes
  bool operator==(const ErrorInfo&) const = default;
};

// The content of a control frame (kind 4): one request or response of the node-to-node RPC.
// A request (response false) carries `type` and `body`; a response echoes the request's
// correlation and type and carries either a body or (error) an error code and message. The
// code is the responder's Errc value (PeerRpc maps it back), never 0.
struct Control {
  uint64_t correlation = 0;
  bool response = false;
  bool error = false;  // responses only
  uint16_t type = 0;
  std::vector<uint8_t> body;  // at most kMaxControlBodyBytes; empty when error
  uint16_t error_code = 0;    // error only, != 0
  std::string error_message;  // error only, at most kMaxErrorMessageBytes
  bool operator==(const Control&) const = default;
};

struct Frame {
  uint8_t version = kVersion;
  FrameKind kind = FrameKind::messages;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  // messages and heartbeats frames: from.id == from, to == to in every message. A heartbeats
  // frame decodes to its Heartbeat messages first, then its HeartbeatResponse messages, each
  // in the order they were encoded.
  std::vector<Message> messages;
  ErrorInfo error;  // error frames
  Control control;  // control frames
};

// The fixed header, readable in every version.
struct Header {
  uint32_t length = 0;  // bytes after the length field
  uint8_t version = 0;
  uint8_t kind = 0;
  uint32_t crc = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  size_t frame_bytes() const { return size_t(length) + 4; }
};

// Reads the header of a frame that starts at in[0] (in may be shorter than the frame: a stream
// reader calls it once 20 bytes have arrived to learn how many more to wait for). Checks the
// length against the bounds and the magic; not the CRC, the version or the kind.
// Errc::corrupt when those are wrong, Errc::out_of_range when fewer than 20 bytes are present.
Result<Header> read_header(std::span<const uint8_t> in);

// Decodes exactly one frame: `in` holds the frame and nothing else. Errc::invalid_argument
// when the version is not one this code reads (answer with version_error_frame), Errc::corrupt
// for anything else wrong.
Result<Frame> decode_frame(std::span<const uint8_t> in);

// Encoders. They check what the decoder checks (so whatever they write decodes) and refuse
// with Errc::invalid_argument (a message not from `from` to `to`, entries not contiguous, a
// config entry without a well-formed Config, a body of the wrong kind for the frame) or
// Errc::too_large (a bound). The frame buffer is allocated once at its exact size; each
// payload is copied into it once.
Result<std::vector<uint8_t>> encode_messages(NodeId from, NodeId to,
                                             std::span<const Message> messages);
// Only Heartbeat and HeartbeatResponse bodies.
Result<std::vector<uint8_t>> encode_heartbeats(NodeId from, NodeId to,
                                               std::span<const Message> messages);
Result<std::vector<uint8_t>> encode_error(NodeId from, NodeId to, const ErrorInfo& error);
// A control frame (node ids >= 0). Errc::invalid_argument for an error flag on a request, an
// error with a body or with code 0; Errc::too_large for a body over kMaxControlBodyBytes or a
// message over kMaxErrorMessageBytes.
Result<std::vector<uint8_t>> encode_control(NodeId from, NodeId to, const Control& control);
// Decodes exactly one frame that must be a control frame: decode_frame's checks and answers,
// and Errc::corrupt for a frame of another kind.
Result<Frame> decode_control(std::span<const uint8_t> in);
// Encodes a decoded frame again (the fuzz target's round trip).
Result<std::vector<uint8_t>> encode_frame(const Frame& frame);

// The answer to a frame whose header `refused` has a version this code does not read.
std::vector<uint8_t> version_error_frame(NodeId self, const Header& refused);

// Whether `message` can travel in a messages frame on its own: node ids >= 0, entries
// contiguous with well-formed configs, within the per-frame bounds. encode_messages() refuses
// a frame holding any message that fails this.
Result<void> check_message(const Message& message);

// Bytes `message` takes in a messages frame (without the frame header and count); the
// Batcher plans frames with it.
size_t encoded_size(const Message& message);

// A Config as the wire accepts it: voters and learners sorted by id, distinct, ids >= 0, at
// least one voter, no id in both, at most kMaxConfigMembers each.
bool config_well_formed(const Config& config);

}  // namespace ordo::raft::wire
