// Fuzz target for the replication wire format (src/raft/wire.h, docs/replication-wire.md):
// decode_frame() must refuse (Errc::corrupt, or Errc::invalid_argument for a version it does
// not read) or accept without crashing, and whatever it accepts must be a well-formed frame
// that encodes back to exactly the same bytes (the encoding is canonical). An accepted frame
// also goes through the Batcher: received by its destination it gives the same messages, and
// re-batched by its sender it travels again in frames that decode to the same messages. Each
// input is tried as it is and again with its length and CRC fixed, so that the checks behind
// the CRC are reached too.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "raft/batcher.h"
#include "raft/wire.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace {

using namespace ordo;
using namespace ordo::raft;

void check_one(std::span<const uint8_t> in) {
  auto header = wire::read_header(in);
  if (header) ORDO_ASSERT(header->frame_bytes() <= wire::kMaxFrameBytes);
  auto frame = wire::decode_frame(in);
  if (!frame) {
    ORDO_ASSERT(frame.error().code == Errc::corrupt || frame.error().code == Errc::out_of_range ||
                frame.error().code == Errc::invalid_argument);
    if (frame.error().code == Errc::invalid_argument) {
      // An unknown version: the answer is a readable error frame back to the sender.
      ORDO_ASSERT(header.has_value());
      auto answer = wire::decode_frame(wire::version_error_frame(7, *header));
      ORDO_ASSERT(answer.has_value() && answer->kind == wire::FrameKind::error);
      ORDO_ASSERT(answer->to == header->from);
    }
    return;
  }
  auto again = wire::encode_frame(*frame);
  ORDO_ASSERT(again.has_value());
  ORDO_ASSERT(again->size() == in.size() && std::equal(in.begin(), in.end(), again->begin()));
  if (frame->kind == wire::FrameKind::error) return;
  if (frame->kind == wire::FrameKind::control) {
    ORDO_ASSERT(frame->messages.empty());
    ORDO_ASSERT(frame->control.body.size() <= wire::kMaxControlBodyBytes);
    ORDO_ASSERT(!frame->control.error || (frame->control.response && frame->control.body.empty() &&
                                          frame->control.error_code != 0));
    auto control = wire::decode_control(in);
    ORDO_ASSERT(control.has_value() && control->control == frame->control);
    Batcher receiver(frame->to);
    auto refused = receiver.receive(in);
    ORDO_ASSERT(!refused.has_value() && refused.error().code == Errc::invalid_argument);
    return;
  }

  for (const Message& m : frame->messages) {
    ORDO_ASSERT(m.from.id == frame->from && m.to == frame->to);
    ORDO_ASSERT(wire::check_message(m).has_value());
    if (frame->kind == wire::FrameKind::heartbeats) {
      ORDO_ASSERT(std::holds_alternative<Heartbeat>(m.body) ||
                  std::holds_alternative<HeartbeatResponse>(m.body));
    }
  }

  Batcher receiver(frame->to);
  auto received = receiver.receive(in);
  ORDO_ASSERT(received.has_value() && received->messages.size() == frame->messages.size());

  Batcher sender(frame->from, BatcherOptions{.frame_bytes = 512});
  sender.add(frame->messages);
  ORDO_ASSERT(sender.stats().dropped == 0);
  size_t total = 0;
  for (const OutFrame& out : sender.flush()) {
    ORDO_ASSERT(out.to == frame->to);
    auto back = receiver.receive(out.bytes);
    ORDO_ASSERT(back.has_value());
    total += back->messages.size();
  }
  ORDO_ASSERT(total == frame->messages.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  check_one(in);
  if (size >= wire::kHeaderBytes) {
    std::vector<uint8_t> sealed(in.begin(), in.end());
    store_be32(sealed.data() + wire::kLengthAt, uint32_t(size - 4));
    store_be32(sealed.data() + wire::kCrcAt,
               crc32c(0, sealed.data() + wire::kCrcStart, size - wire::kCrcStart));
    check_one(sealed);
  }
  return 0;
}
