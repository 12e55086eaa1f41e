#pragma once
// Test helpers for the generated codec: random values for every field type (only what the
// version allows) and the round-trip check run for every message at every version.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/random.h"
#include "protocol/codec.h"

namespace ordo::protocol {

template <typename T>
void random_value(T& v, Random& rnd, FieldCtx c);

inline void random_unknown_tags(std::vector<RawTaggedField>& u, Random& rnd, uint32_t first) {
  if (!rnd.chance(0.2)) return;
  uint32_t tag = first + uint32_t(rnd.below(3));
  for (int i = 0, n = int(rnd.between(1, 2)); i < n; ++i, tag += 1 + uint32_t(rnd.below(200))) {
    RawTaggedField f{tag, {}};
    for (int j = 0, m = int(rnd.below(4)); j < m; ++j) f.data.push_back(uint8_t(rnd.next()));
    u.push_back(std::move(f));
  }
}

template <typename T>
void random_value(T& v, Random& rnd, FieldCtx c) {
  if constexpr (std::is_same_v<T, bool>) {
    v = rnd.chance(0.5);
  } else if constexpr (std::is_same_v<T, double>) {
    v = double(int64_t(rnd.next() >> 12)) / 7.0 - 1e5;
  } else if constexpr (std::is_integral_v<T>) {
    v = rnd.chance(0.3) ? T(-1) : T(rnd.next());
  } else if constexpr (std::is_same_v<T, Uuid>) {
    for (auto& b : v) b = uint8_t(rnd.next());
  } else if constexpr (std::is_same_v<T, std::string>) {
    v.clear();
    for (int i = 0, n = int(rnd.below(6)); i < n; ++i) v.push_back(char('a' + rnd.below(26)));
  } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
    v.clear();
    for (int i = 0, n = int(rnd.below(6)); i < n; ++i) v.push_back(uint8_t(rnd.next()));
  } else if constexpr (std::is_same_v<T, Records>) {
    std::vector<uint8_t> b;
    for (int i = 0, n = int(rnd.below(20)); i < n; ++i) b.push_back(uint8_t(rnd.next()));
    v = Records::owned(std::move(b));
  } else if constexpr (IsVector<T>::value) {
    v.clear();
    FieldCtx ec{c.version, c.compact, false};
    for (int i = 0, n = int(rnd.below(3)); i < n; ++i) random_value(v.emplace_back(), rnd, ec);
  } else if constexpr (IsOptional<T>::value) {
    if (c.nullable && rnd.chance(0.25)) {
      v.reset();
    } else {
      random_value(v.emplace(typename T::value_type{}), rnd, c);
    }
  } else {
    fill_random(v, rnd, c.version);  // generated, found by argument-dependent lookup
  }
}

// Encode -> size check -> decode -> compare; every strict prefix fails to decode; random byte
// flips never crash.
template <typename M>
void round_trip(int16_t version, uint64_t seed) {
  Random rnd(seed);
  M m;
  fill_random(m, rnd, version);
  Writer w;
  m.encode(w, version);
  ASSERT_EQ(w.size(), m.encoded_size(version)) << M::kName << " v" << version;
  auto bytes = flatten(w.finish());
  ASSERT_TRUE(bytes.has_value());
  ASSERT_EQ(bytes->size(), m.encoded_size(version));
  M back;
  auto res = decode_message(*bytes, version, back);
  ASSERT_TRUE(res.has_value()) << res.error().to_string();
  ASSERT_TRUE(back == m) << M::kName << " v" << version << " seed " << seed;
  for (size_t n = 0; n < bytes->size(); ++n) {
    M part;
    ASSERT_FALSE(decode_message(std::span<const uint8_t>(bytes->data(), n), version, part))
        << M::kName << " v" << version << " prefix " << n;
  }
  std::vector<uint8_t> mutated = *bytes;
  for (int i = 0; i < 16 && !mutated.empty(); ++i) {
    mutated[rnd.below(mutated.size())] ^= uint8_t(1 + rnd.below(255));
    M junk;
    (void)decode_message(mutated, version, junk);
  }
}

struct RoundTripCase {
  const char* name;
  int16_t min_version;
  int16_t max_version;
  void (*run)(int16_t version, uint64_t seed);
};

template <typename M>
RoundTripCase round_trip_case() {
  return {M::kName, M::kMinVersion, M::kMaxVersion, &round_trip<M>};
}

}  // namespace ordo::protocol
