// Fuzz target for the broker's topic registry file (src/broker/topics.h, format in
// docs/broker-metadata.md): decode() must refuse or accept without crashing, and whatever it
// accepts must encode back to a file that decodes to the same topics, pending deletes and
// pending creations.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/assert.h"
#include "broker/topics.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ordo::broker;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  TopicMap topics;
  std::vector<std::string> deleting;
  std::vector<PendingCreate> creating;
  if (!TopicRegistry::decode(text, topics, deleting, creating)) return 0;
  std::string again = TopicRegistry::encode(topics, deleting, creating);
  TopicMap topics2;
  std::vector<std::string> deleting2;
  std::vector<PendingCreate> creating2;
  ORDO_ASSERT(TopicRegistry::decode(again, topics2, deleting2, creating2).has_value());
  ORDO_ASSERT(topics2 == topics && deleting2 == deleting && creating2 == creating);
  return 0;
}
