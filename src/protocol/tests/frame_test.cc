#include "protocol/frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include "base/coding.h"

#include <string>
#include <vector>

namespace ordo::protocol {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes framed(const std::string& body) {
  uint32_t n = uint32_t(body.size());
  Bytes b(4 + body.size());
  store_be32(b.data(), n);
  std::copy(body.begin(), body.end(), b.begin() + 4);
  return b;
}

// Feeds in chunks of chunk bytes; returns the frames or the first error.
Result<std::vector<std::string>> run(FrameDecoder& d, const Bytes& in, size_t chunk) {
  std::vector<std::string> out;
  for (size_t at = 0; at < in.size(); at += chunk) {
    std::span<const uint8_t> c(in.data() + at, std::min(chunk, in.size() - at));
    while (!c.empty()) {
      size_t n = ORDO_TRY(d.feed(c));
      c = c.subspan(n);
      if (d.has_frame()) {
        out.emplace_back(d.frame().begin(), d.frame().end());
        d.pop();
      }
    }
  }
  return out;
}

TEST(FrameDecoder, ChunkedInput) {
  Bytes in = framed("hello");
  Bytes more = framed("");
  Bytes third = framed(std::string(300, 'x'));
  in.insert(in.end(), more.begin(), more.end());
  in.insert(in.end(), third.begin(), third.end());
  for (size_t chunk : {1, 2, 3, 5, 7, 64, 1000}) {
    FrameDecoder d(1000);
    auto frames = run(d, in, chunk);
    ASSERT_TRUE(frames.has_value());
    EXPECT_EQ(*frames, (std::vector<std::string>{"hello", "", std::string(300, 'x')}));
    EXPECT_EQ(d.buffered(), 0u);
  }
}

TEST(FrameDecoder, ManyFramesInOneChunk) {
  Bytes in;
  for (int i = 0; i < 100; ++i) {
    Bytes f = framed(std::to_string(i));
    in.insert(in.end(), f.begin(), f.end());
  }
  FrameDecoder d;
  auto frames = run(d, in, in.size());
  ASSERT_TRUE(frames.has_value());
  ASSERT_EQ(frames->size(), 100u);
  EXPECT_EQ((*frames)[42], "42");
}

TEST(FrameDecoder, WaitsForPop) {
  Bytes in = framed("ab");
  Bytes two = framed("cd");
  in.insert(in.end(), two.begin(), two.end());
  FrameDecoder d;
  EXPECT_EQ(d.feed(in).value(), 6u);  // stops at the end of the first frame
  EXPECT_TRUE(d.has_frame());
  EXPECT_EQ(d.feed(std::span<const uint8_t>(in).subspan(6)).value(), 0u);
  d.pop();
  EXPECT_EQ(d.feed(std::span<const uint8_t>(in).subspan(6)).value(), 6u);
  EXPECT_EQ(std::string(d.frame().begin(), d.frame().end()), "cd");
}

TEST(FrameDecoder, RejectsOversizedAndNegative) {
  {
    FrameDecoder d(10);
    auto r = run(d, framed(std::string(11, 'x')), 3);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_FALSE(d.feed(Bytes{0}).has_value());  // sticky
  }
  {
    FrameDecoder d(10);
    EXPECT_TRUE(run(d, framed(std::string(10, 'x')), 3).has_value());
  }
  {
    FrameDecoder d;
    EXPECT_FALSE(d.feed(Bytes{0xff, 0xff, 0xff, 0xfe}).has_value());
  }
  {
    // A claimed 100 MiB frame buffers only what has arrived.
    FrameDecoder d;
    Bytes in = {0x06, 0x40, 0x00, 0x00, 1, 2, 3};
    EXPECT_EQ(d.feed(in).value(), 7u);
    EXPECT_FALSE(d.has_frame());
    EXPECT_EQ(d.buffered(), 7u);
  }
}

TEST(FrameDecoder, HoldsNoMoreThanTheFrameAndReportsItsSize) {
  // A 1000-byte body arriving 300 bytes at a time: the buffer grows, but never past the
  // frame (plain vector growth would reach 1200).
  Bytes in = framed(std::string(1000, 'y'));
  FrameDecoder d;
  EXPECT_EQ(d.prefix_missing(), 4u);
  EXPECT_EQ(d.feed(std::span(in).first(3)).value(), 3u);
  EXPECT_EQ(d.prefix_missing(), 1u);
  EXPECT_EQ(d.frame_size(), 0u);
  EXPECT_EQ(d.feed(std::span(in).subspan(3, 1)).value(), 1u);
  EXPECT_EQ(d.prefix_missing(), 0u);
  EXPECT_EQ(d.frame_size(), 1000u);
  for (size_t at = 4; at < in.size(); at += 300) {
    EXPECT_GT(d.feed(std::span(in).subspan(at, std::min<size_t>(300, in.size() - at))).value(), 0u);
  }
  ASSERT_TRUE(d.has_frame());
  Bytes frame = d.take_frame();
  EXPECT_EQ(frame.size(), 1000u);
  EXPECT_EQ(frame.capacity(), 1000u);
  EXPECT_EQ(d.prefix_missing(), 4u);
}

}  // namespace
}  // namespace ordo::protocol
