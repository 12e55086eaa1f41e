#include "protocol/frame.h"

#include <algorithm>

#include "base/assert.h"
#include "base/coding.h"

namespace ordo::protocol {

Result<size_t> FrameDecoder::feed(std::span<const uint8_t> in) {
  if (failed_) return error_;
  if (has_frame()) return size_t(0);
  size_t used = 0;
  if (!have_size_) {
    size_t n = std::min(in.size(), 4 - prefix_len_);
    std::copy_n(in.begin(), n, prefix_ + prefix_len_);
    prefix_len_ += n;
    used += n;
    if (prefix_len_ < 4) return used;
    int32_t size = int32_t(load_be32(prefix_));
    if (size < 0 || size_t(size) > max_frame_size_) {
      failed_ = true;
      error_ = make_error(Errc::invalid_argument, "frame size {} outside [0, {}]", size,
                          max_frame_size_);
      return error_;
    }
    have_size_ = true;
    size_ = size_t(size);
    body_.clear();
  }
  size_t n = std::min(in.size() - used, size_ - body_.size());
  // Grows with the bytes that arrive, not with the size the peer claims; doubling, but never
  // past the frame's size (a vector's own growth could hold up to twice the frame).
  if (body_.size() + n > body_.capacity()) {
    body_.reserve(std::min(size_, std::max(body_.size() + n, 2 * body_.capacity())));
  }
  body_.insert(body_.end(), in.begin() + used, in.begin() + used + n);
  return used + n;
}

void FrameDecoder::pop() {
  if (!has_frame()) return;
  have_size_ = false;
  prefix_len_ = 0;
  size_ = 0;
  body_.clear();
  if (body_.capacity() > (size_t(1) << 20)) body_.shrink_to_fit();
}

std::vector<uint8_t> FrameDecoder::take_frame() {
  ORDO_ASSERT(has_frame());
  std::vector<uint8_t> out = std::move(body_);
  body_ = {};
  have_size_ = false;
  prefix_len_ = 0;
  size_ = 0;
  return out;
}

}  // namespace ordo::protocol
