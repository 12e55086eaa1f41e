// Fuzz target for the Kafka codec (src/protocol): the input is a byte stream as a client would
// send it. The target
//  - splits it into frames with FrameDecoder (chunk sizes taken from the first input byte);
//  - parses each frame's request header;
//  - decodes the body as the request type of the header's api key at the header's version;
//  - re-encodes a decoded request and checks encoded_size() against the bytes written and that
//    decoding the new bytes and encoding again gives the same bytes.
// Every invariant is an ORDO_ASSERT, so a violation aborts and libFuzzer keeps the input.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "protocol/frame.h"
#include "protocol/header.h"
#include "protocol/messages.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace ordo::protocol {
namespace {

constexpr size_t kMaxFrame = 1 << 20;

template <typename Req>
void check_request(std::span<const uint8_t> body, int16_t version) {
  Req req;
  if (!decode_message(body, version, req, kMaxFrame)) return;
  Writer w;
  req.encode(w, version);
  ORDO_ASSERT(w.size() == req.encoded_size(version));
  auto bytes = flatten(w.finish());
  ORDO_ASSERT(bytes.has_value());
  Req again;
  auto r = decode_message(*bytes, version, again, kMaxFrame);
  ORDO_ASSERT_MSG(r.has_value(), "re-encoded request does not decode");
  // Compared as bytes (a float64 NaN is not == itself): decode(encode(x)) encodes the same.
  Writer w2;
  again.encode(w2, version);
  auto bytes2 = flatten(w2.finish());
  ORDO_ASSERT(bytes2.has_value() && *bytes2 == *bytes);
}

void handle_frame(std::span<const uint8_t> frame) {
  auto h = parse_request_header(frame, kMaxFrame);
  if (!h) return;
  int16_t version = h->header.request_api_version;
  ORDO_ASSERT(h->api != nullptr && h->api->key == h->header.request_api_key);
  if (!h->api->supports(version)) return;
  switch (h->header.request_api_key) {
#define ORDO_FUZZ_CASE(key, Req, Resp)    \
  case key:                               \
    check_request<Req>(h->body, version); \
    break;
    ORDO_PROTOCOL_APIS(ORDO_FUZZ_CASE)
#undef ORDO_FUZZ_CASE
    default:
      ORDO_ASSERT_MSG(false, "api in the table without a request type");
  }
}

}  // namespace
}  // namespace ordo::protocol

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ordo::protocol;
  if (size == 0) return 0;
  size_t chunk = size_t(data[0]) * 7 + 1;
  std::span<const uint8_t> in(data + 1, size - 1);
  FrameDecoder dec(kMaxFrame);
  while (!in.empty()) {
    std::span<const uint8_t> c = in.first(std::min(chunk, in.size()));
    in = in.subspan(c.size());
    while (!c.empty()) {
      auto n = dec.feed(c);
      if (!n) return 0;
      ORDO_ASSERT(*n <= c.size());
      ORDO_ASSERT(dec.buffered() <= kMaxFrame + 4);
      c = c.subspan(*n);
      if (dec.has_frame()) {
        handle_frame(dec.frame());
        dec.pop();
      }
    }
  }
  return 0;
}
