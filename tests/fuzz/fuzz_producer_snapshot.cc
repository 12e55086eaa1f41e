// Fuzz target for the producer-state snapshot (src/storage/producer_state.h, format in
// docs/producer-state-format.md): decode_snapshot() must refuse (with Errc::corrupt) or accept
// without crashing, and whatever it accepts must encode back to exactly the same bytes (the
// encoding is canonical). Each input is tried as it is and again with its CRC trailer
// recomputed, so that the checks behind the CRC are reached too.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/assert.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "storage/producer_state.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace {

using namespace ordo;
using namespace ordo::storage;

void check_one(std::span<const uint8_t> in) {
  // A limit above any count the input can hold: nothing is evicted, so the round trip is exact.
  ProducerStateOptions options{.max_producers = in.size() + 1};
  auto snap = ProducerStateTable::decode_snapshot(in, options);
  if (!snap) {
    ORDO_ASSERT(snap.error().code == Errc::corrupt);
    return;
  }
  auto again = snap->table.encode_snapshot(snap->offset);
  ORDO_ASSERT(again.has_value());
  ORDO_ASSERT(again->size() == in.size() && std::equal(in.begin(), in.end(), again->begin()));

  // The decoded table answers for what it holds: each producer's newest batch is a duplicate,
  // and the sequence after it may be appended.
  ProducerStateTable& t = snap->table;
  for (int64_t id : t.producer_ids()) {
    const ProducerEntry* e = t.find(id);
    ORDO_ASSERT(e != nullptr && e->batch_count >= 1);
    const ProducerBatchMetadata& b = e->newest();
    int32_t delta = int32_t(b.last_offset - b.first_offset);
    SequenceCheck dup = t.check(id, e->epoch, b.first_seq, delta);
    ORDO_ASSERT(dup.verdict == SequenceVerdict::duplicate);
    ORDO_ASSERT(dup.first_offset == b.first_offset && dup.last_offset == b.last_offset);
    SequenceCheck next = t.check(id, e->epoch, increment_sequence(b.last_seq, 1), 0);
    ORDO_ASSERT(next.verdict == SequenceVerdict::append);
  }
  // Maintenance on arbitrary state keeps it encodable.
  if (snap->offset > Offset(0)) t.truncate_after(Offset(snap->offset.value() / 2));
  t.truncate_before(Offset(snap->offset.value() / 4));
  t.expire(0, 0);
  ORDO_ASSERT(t.encode_snapshot(snap->offset).has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  check_one(in);
  if (size >= 4) {
    std::vector<uint8_t> sealed(in.begin(), in.end());
    store_be32(sealed.data() + size - 4, crc32c(0, sealed.data(), size - 4));
    check_one(sealed);
  }
  return 0;
}
