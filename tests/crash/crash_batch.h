#pragma once
// The batches the crash test writes: each one derives every byte from (round, index), so the
// parent can rebuild the exact batch it expects from the keys it finds in the log.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "model/record_batch.h"

namespace ordo::crashtest {

// What the child reports through the pipe for each acknowledged append.
struct Ack {
  int64_t round;
  int64_t index;
  int64_t first_offset;
  int64_t last_offset;
};
static_assert(sizeof(Ack) == 32);

inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline std::vector<uint8_t> make_batch(int64_t round, int64_t index) {
  uint64_t h = mix(uint64_t(round) * 1'000'003 + uint64_t(index));
  // Mostly small batches, sometimes large ones (hundreds of KiB) so that a kill can land in
  // the middle of a write.
  int records = 1 + int(h % 40);
  size_t value_bytes = (h >> 8) % 16 == 0 ? 2000 + (h >> 16) % 6000 : 50 + (h >> 16) % 400;
  model::RecordBatchBuilder b;
  for (int j = 0; j < records; ++j) {
    std::string value(value_bytes, 'a');
    uint64_t v = mix(h + uint64_t(j));
    for (size_t k = 0; k < value.size(); ++k) {
      value[k] = char('a' + (v >> (k % 59)) % 26);
    }
    b.add(fmt::format("r{}-i{}-k{}", round, index, j), value, round * 1'000'000 + index);
  }
  return b.build();
}

// Parses "r<round>-i<index>-k<j>".
inline std::optional<std::pair<int64_t, int64_t>> parse_key(std::string_view key) {
  long long r = -1, i = -1, k = -1;
  std::string s(key);
  if (std::sscanf(s.c_str(), "r%lld-i%lld-k%lld", &r, &i, &k) != 3) return std::nullopt;
  return std::make_pair(int64_t(r), int64_t(i));
}

}  // namespace ordo::crashtest
