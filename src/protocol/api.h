#pragma once
// The table of Kafka APIs (generated from the schemas) and the header version each API version
// uses.

#include <cstdint>
#include <span>

namespace ordo::protocol {

struct ApiInfo {
  int16_t key = 0;
  const char* name = "";
  int16_t min_version = 0;
  int16_t max_version = 0;
  int16_t first_flexible_version = -1;  // -1: none
  bool latest_version_unstable = false;

  bool supports(int16_t version) const { return version >= min_version && version <= max_version; }
  bool is_flexible(int16_t version) const {
    return first_flexible_version >= 0 && version >= first_flexible_version;
  }
};

// Every API, ordered by key (generated: api_table.cc).
std::span<const ApiInfo> all_apis();
// nullptr for an unknown key.
const ApiInfo* find_api(int16_t key);

// Request header version: 2 in flexible versions, else 1; ControlledShutdown v0 uses 0.
// Defined for any version >= 0 of a known API (also above max_version, so that a request with
// an unsupported version can still be parsed far enough to answer it).
int16_t request_header_version(const ApiInfo& api, int16_t version);
// Response header version: 1 in flexible versions, else 0; ApiVersions always uses 0 (a client
// must be able to read it before it knows which versions the broker speaks).
int16_t response_header_version(const ApiInfo& api, int16_t version);

constexpr int16_t kApiKeyProduce = 0;
constexpr int16_t kApiKeyControlledShutdown = 7;
constexpr int16_t kApiKeyApiVersions = 18;

}  // namespace ordo::protocol
