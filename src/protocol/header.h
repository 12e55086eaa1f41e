#pragma once
// Request and response headers. The header structs are generated (RequestHeader v0-2,
// ResponseHeader v0-1); these helpers pick the header version from the API table.
//   request header v0: api_key, api_version, correlation_id
//   v1: + client_id (nullable string, never compact)     v2: + tagged fields
//   response header v0: correlation_id                   v1: + tagged fields

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "protocol/api.h"
#include "protocol/codec.h"
#include "protocol/messages/request_header.h"
#include "protocol/messages/response_header.h"

namespace ordo::protocol {

struct ParsedRequestHeader {
  RequestHeader header;
  int16_t header_version = 0;
  const ApiInfo* api = nullptr;   // never null on success
  std::span<const uint8_t> body;  // the rest of the frame (a view into it)
};

// Parses the header at the start of a request frame (without its size prefix). Errors:
// Errc::invalid_argument for a truncated header or an unknown api key. A known api key with an
// unsupported version parses fine (check api->supports(version)).
Result<ParsedRequestHeader> parse_request_header(std::span<const uint8_t> frame, size_t max_length);

// Writes a request (header + body) or a response (header + body) without the size prefix.
template <typename Req>
void encode_request(Writer& w, const RequestHeader& h, const Req& body) {
  const ApiInfo* api = find_api(Req::kApiKey);
  int16_t hv = request_header_version(*api, h.request_api_version);
  h.encode(w, hv);
  body.encode(w, h.request_api_version);
}
template <typename Resp>
void encode_response(Writer& w, int32_t correlation_id, int16_t version, const Resp& body) {
  const ApiInfo* api = find_api(Resp::kApiKey);
  ResponseHeader h;
  h.correlation_id = correlation_id;
  h.encode(w, response_header_version(*api, version));
  body.encode(w, version);
}

}  // namespace ordo::protocol
