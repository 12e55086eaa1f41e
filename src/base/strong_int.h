#pragma once
// StrongInt<Tag, T>: an integer that does not mix with other integers by accident. A log offset
// and a byte position are both int64_t; as Offset and as a plain int64_t they cannot be swapped.

#include <compare>
#include <cstdint>
#include <functional>
#include <limits>

#include <fmt/format.h>

namespace ordo {

template <typename Tag, typename T>
class StrongInt {
 public:
  using value_type = T;
  constexpr StrongInt() = default;
  constexpr explicit StrongInt(T v) : v_(v) {}
  constexpr T value() const { return v_; }

  static constexpr StrongInt min() { return StrongInt(std::numeric_limits<T>::min()); }
  static constexpr StrongInt max() { return StrongInt(std::numeric_limits<T>::max()); }

  constexpr auto operator<=>(const StrongInt&) const = default;
  constexpr StrongInt operator+(T d) const { return StrongInt(v_ + d); }
  constexpr StrongInt operator-(T d) const { return StrongInt(v_ - d); }
  constexpr T operator-(StrongInt o) const { return v_ - o.v_; }
  constexpr StrongInt& operator+=(T d) {
    v_ += d;
    return *this;
  }
  constexpr StrongInt& operator++() {
    ++v_;
    return *this;
  }

 private:
  T v_{};
};

struct OffsetTag {};
struct EpochTag {};
// A position in a partition's log: the index of a record.
using Offset = StrongInt<OffsetTag, int64_t>;
// A leader epoch (Raft term) as stored in a RecordBatch header.
using Epoch = StrongInt<EpochTag, int32_t>;

}  // namespace ordo

template <typename Tag, typename T>
struct std::hash<ordo::StrongInt<Tag, T>> {
  size_t operator()(const ordo::StrongInt<Tag, T>& v) const noexcept {
    return std::hash<T>()(v.value());
  }
};

template <typename Tag, typename T>
struct fmt::formatter<ordo::StrongInt<Tag, T>> : fmt::formatter<T> {
  auto format(const ordo::StrongInt<Tag, T>& v, fmt::format_context& ctx) const {
    return fmt::formatter<T>::format(v.value(), ctx);
  }
};
