#pragma once
// Time sources. Storage code takes a Clock so tests can move time by hand (segment.ms,
// retention.ms) instead of sleeping.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace ordo {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (record timestamps, retention).
  virtual int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static SystemClock& instance() {
    static SystemClock c;
    return c;
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms) : ms_(start_ms) {}
  int64_t now_ms() const override { return ms_.load(); }
  void advance(int64_t ms) { ms_ += ms; }
  void set(int64_t ms) { ms_ = ms; }

 private:
  std::atomic<int64_t> ms_;
};

inline int64_t monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace ordo
