#include "protocol/api.h"

#include <algorithm>

#include "protocol/header.h"

namespace ordo::protocol {

const ApiInfo* find_api(int16_t key) {
  auto apis = all_apis();
  auto it = std::lower_bound(apis.begin(), apis.end(), key,
                             [](const ApiInfo& a, int16_t k) { return a.key < k; });
  return it != apis.end() && it->key == key ? &*it : nullptr;
}

int16_t request_header_version(const ApiInfo& api, int16_t version) {
  if (api.key == kApiKeyControlledShutdown && version == 0) return 0;
  return api.is_flexible(version) ? 2 : 1;
}

int16_t response_header_version(const ApiInfo& api, int16_t version) {
  if (api.key == kApiKeyApiVersions) return 0;
  return api.is_flexible(version) ? 1 : 0;
}

Result<ParsedRequestHeader> parse_request_header(std::span<const uint8_t> frame,
                                                 size_t max_length) {
  Reader peek(frame, max_length);
  int16_t key = 0;
  int16_t version = 0;
  if (!peek.read(key) || !peek.read(version)) {
    return make_error(Errc::invalid_argument, "request header: {} bytes, too short", frame.size());
  }
  ParsedRequestHeader out;
  out.api = find_api(key);
  if (out.api == nullptr) {
    return make_error(Errc::invalid_argument, "request header: unknown api key {}", key);
  }
  if (version < 0) {
    return make_error(Errc::invalid_argument, "request header: negative api version {}", version);
  }
  out.header_version = request_header_version(*out.api, version);
  Reader r(frame, max_length);
  if (auto res = out.header.decode(r, out.header_version); !res) {
    return make_error(Errc::invalid_argument, "RequestHeader v{}: {}", out.header_version,
                      res.error().message);
  }
  out.body = frame.subspan(r.position());
  return out;
}

}  // namespace ordo::protocol
