// Fuzz target for the cluster metadata codec (src/cluster/metadata.h, docs/cluster-metadata.md):
// decode_command() must refuse (Errc::corrupt, or Errc::invalid_argument for a version it does
// not read) or accept without crashing; whatever it accepts encodes to canonical bytes that
// decode to the same command, and applying it to a small cluster state either changes the state
// or fails and changes nothing. The same bytes go to ClusterState::restore(): a restored state
// checkpoints and restores to an equal state.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "cluster/metadata.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace {

using namespace ordo;
using namespace ordo::cluster;

ClusterState sample_state() {
  ClusterState s;
  BrokerRecord b;
  b.id = 1;
  b.incarnation = 7;
  b.host = "127.0.0.1";
  b.port = 9092;
  b.peer_host = "127.0.0.1";
  b.peer_port = 9192;
  b.epoch = 1;
  ORDO_ASSERT(s.apply(RegisterBroker{b}, 0).has_value());
  ORDO_ASSERT(s.apply(Command(CreateTopic{"orders", {}, {}, {{1}, {1}}}), 1).has_value());
  return s;
}

bool ok_error(Errc code) {
  return code == Errc::corrupt || code == Errc::invalid_argument;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  auto command = decode_command(in);
  if (!command) {
    ORDO_ASSERT(ok_error(command.error().code));
  } else {
    auto bytes = encode_command(*command);
    auto again = decode_command(bytes);
    ORDO_ASSERT(again.has_value());
    ORDO_ASSERT(*again == *command);
    ORDO_ASSERT(encode_command(*again) == bytes);
    static const ClusterState sample = sample_state();
    ClusterState s = sample;
    auto applied = s.apply(*command, 2);
    if (!applied) ORDO_ASSERT(s == sample);
    if (applied && !*applied) ORDO_ASSERT(s.applied_offset() == 2);
  }
  auto state = ClusterState::restore(in);
  if (!state) {
    ORDO_ASSERT(ok_error(state.error().code));
  } else {
    auto back = ClusterState::restore(state->checkpoint());
    ORDO_ASSERT(back.has_value());
    ORDO_ASSERT(*back == *state);
  }
  return 0;
}
