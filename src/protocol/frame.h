#pragma once
// Splits a byte stream into Kafka frames: int32 size (big-endian) + that many bytes.
//
// Bounded: the decoder buffers at most one frame (4 + max_frame_size bytes), and holds memory
// for the bytes that have arrived only (never more than the frame's size); the caller keeps
// its own read chunk. A frame size below 0 or above max_frame_size is an error (and the
// connection should be closed); the error is sticky.
//
//   while (!chunk.empty()) {
//     size_t n = ORDO_TRY(dec.feed(chunk));
//     chunk = chunk.subspan(n);
//     if (dec.has_frame()) { handle(dec.frame()); dec.pop(); }
//   }

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace ordo::protocol {

// socket.request.max.bytes default.
constexpr size_t kDefaultMaxFrameSize = size_t(100) << 20;

class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_frame_size = kDefaultMaxFrameSize)
      : max_frame_size_(max_frame_size) {}

  // Consumes bytes of in up to the end of the current frame and returns how many; consumes
  // nothing while a complete frame is waiting to be popped.
  Result<size_t> feed(std::span<const uint8_t> in);
  bool has_frame() const { return have_size_ && body_.size() == size_; }
  // The complete frame's bytes, without the size prefix. Valid until pop() or feed().
  std::span<const uint8_t> frame() const { return body_; }
  void pop();
  // Moves the complete frame out (for handling after more bytes are fed) and pops it.
  std::vector<uint8_t> take_frame();
  // Bytes held for the frame in progress (size prefix included).
  size_t buffered() const { return prefix_len_ + body_.size(); }
  // Bytes of the size prefix still to come (0 once the frame's size is known).
  size_t prefix_missing() const { return have_size_ ? 0 : 4 - prefix_len_; }
  // The size of the frame in progress, once its prefix is complete (0 before).
  size_t frame_size() const { return have_size_ ? size_ : 0; }

 private:
  size_t max_frame_size_;
  uint8_t prefix_[4] = {};
  size_t prefix_len_ = 0;
  bool have_size_ = false;
  size_t size_ = 0;
  std::vector<uint8_t> body_;
  Error error_;
  bool failed_ = false;
};

}  // namespace ordo::protocol
