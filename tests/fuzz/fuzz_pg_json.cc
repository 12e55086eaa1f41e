// libFuzzer target: rendering of PostgreSQL text values as JSON (src/connect/pg_json.h). Byte 0
// picks the type, the rest is the value's text. Nothing may crash; an accepted value renders
// as the JSON kind its type promises.

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/assert.h"
#include "connect/pg_json.h"

using namespace ordo::connect::pg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr uint32_t kTypes[] = {oid::kBool,
                                        oid::kBytea,
                                        oid::kInt8,
                                        oid::kInt2,
                                        oid::kInt4,
                                        oid::kFloat8,
                                        oid::kNumeric,
                                        oid::kTimestamp,
                                        oid::kTimestamptz,
                                        oid::kText,
                                        1000,
                                        1007,
                                        1009,
                                        1022,
                                        1231,
                                        1185,
                                        1001};
  if (size == 0) return 0;
  uint32_t type = kTypes[data[0] % (sizeof kTypes / sizeof kTypes[0])];
  Value v{Value::Kind::text, std::string(reinterpret_cast<const char*>(data + 1), size - 1)};
  auto r = render_value(type, v);
  if (!r) return 0;
  if (oid::element_of(type) != 0) {
    ORDO_ASSERT(r->is_array());
  } else if (type == oid::kBool) {
    ORDO_ASSERT(r->is_boolean());
  } else if (type == oid::kInt2 || type == oid::kInt4 || type == oid::kInt8) {
    ORDO_ASSERT(r->is_number_integer());
  } else if (type == oid::kFloat8) {
    ORDO_ASSERT(r->is_number_float() || r->is_string());
  } else {
    ORDO_ASSERT(r->is_string());
  }
  // Whatever renders can be written out (invalid UTF-8 is replaced, never thrown).
  (void)r->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
