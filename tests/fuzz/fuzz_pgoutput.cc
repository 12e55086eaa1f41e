// libFuzzer target: the logical replication stream decoder (src/connect/pgoutput.h). Byte 0
// picks the entry point (even: a CopyData payload, odd: a pgoutput message); whatever decodes
// must encode back to exactly the bytes it came from.

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/assert.h"
#include "connect/pgoutput.h"

using namespace ordo::connect::pg;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::span<const uint8_t> in(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto c = decode_copy_data(in);
    if (!c) return 0;
    if (auto* x = std::get_if<XLogData>(&*c)) {
      Writer w;
      w.u8('w').u64(x->wal_start).u64(x->wal_end).u64(uint64_t(x->send_time_us));
      w.out.insert(w.out.end(), x->payload.begin(), x->payload.end());
      ORDO_ASSERT(std::equal(w.out.begin(), w.out.end(), in.begin(), in.end()));
      // The payload is a message too: it must decode or be refused, never crash.
      if (auto m = decode_message(x->payload)) {
        auto again = encode_message(*m);
        ORDO_ASSERT(again == x->payload);
      }
    } else {
      const auto& k = std::get<Keepalive>(*c);
      Writer w;
      w.u8('k').u64(k.wal_end).u64(uint64_t(k.send_time_us)).u8(k.reply_requested ? 1 : 0);
      ORDO_ASSERT(std::equal(w.out.begin(), w.out.end(), in.begin(), in.end()));
    }
    return 0;
  }
  auto m = decode_message(in);
  if (!m) return 0;
  auto again = encode_message(*m);
  ORDO_ASSERT(std::equal(again.begin(), again.end(), in.begin(), in.end()));
  return 0;
}
