// Answers a request for an API or version this broker does not offer with UNSUPPORTED_VERSION
// in that API's own response, where the response has a top-level error code at that version.
// Kept in its own file: it instantiates every generated response type.

#include "broker/handlers.h"
#include "protocol/messages.h"

namespace ordo::broker {

namespace {

template <typename Resp>
std::optional<ResponseFrame> error_frame(int32_t correlation_id, int16_t version) {
  if constexpr (requires(Resp r) { r.error_code = int16_t{}; }) {
    if (version < Resp::kMinVersion || version > Resp::kMaxVersion) return std::nullopt;
    Resp with_error;
    with_error.error_code = code(ErrorCode::unsupported_version);
    ResponseFrame f = frame_response(correlation_id, version, with_error);
    // The field exists in the struct but may not be on the wire at this version: then the
    // client could not see the error, and the caller closes the connection instead.
    ResponseFrame without = frame_response(correlation_id, version, Resp{});
    if (protocol::flatten(f.chunks).value() == protocol::flatten(without.chunks).value()) {
      return std::nullopt;
    }
    return f;
  } else {
    (void)correlation_id;
    (void)version;
    return std::nullopt;
  }
}

}  // namespace

std::optional<ResponseFrame> unsupported_version_response(int16_t api_key, int16_t version,
                                                          int32_t correlation_id) {
  switch (api_key) {
#define ORDO_UNSUPPORTED_CASE(key, Req, Resp) \
  case key:                                   \
    return error_frame<protocol::Resp>(correlation_id, version);
    ORDO_PROTOCOL_APIS(ORDO_UNSUPPORTED_CASE)
#undef ORDO_UNSUPPORTED_CASE
    default:
      return std::nullopt;
  }
}

}  // namespace ordo::broker
