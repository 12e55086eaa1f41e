#pragma once
// Minimal leveled logging to stderr: one line per event, with a UTC timestamp and the level.
// ORDO_LOG_LEVEL (debug, info, warn, error) in the environment sets the threshold.

#include <cstdint>
#include <utility>

#include <fmt/core.h>

namespace ordo {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

LogLevel log_threshold();
void set_log_threshold(LogLevel level);
void log_line(LogLevel level, std::string_view message);

// For tests: when set, every emitted line is also passed to the sink.
using LogSink = void (*)(LogLevel, std::string_view);
void set_log_sink(LogSink sink);

// Rate limiting for a line that may repeat at the rate of requests (a failing write): at most
// one line per interval; the lines held back are counted and reported with the next one.
// Not thread-safe (one per partition, used on its thread).
class LogLimiter {
 public:
  explicit LogLimiter(int64_t interval_ms) : interval_ms_(interval_ms) {}
  // True when a line may be written now; otherwise counts one more line held back.
  bool allow(int64_t now_ms) {
    if (logged_ && now_ms - last_ms_ < interval_ms_) {
      ++suppressed_;
      return false;
    }
    logged_ = true;
    last_ms_ = now_ms;
    return true;
  }
  // The lines held back since the last allowed one; resets the count (call after allow()).
  uint64_t take_suppressed() { return std::exchange(suppressed_, 0); }

 private:
  int64_t interval_ms_;
  int64_t last_ms_ = 0;
  bool logged_ = false;
  uint64_t suppressed_ = 0;
};

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < log_threshold()) return;
  log_line(level, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ordo

#define ORDO_LOG_DEBUG(...) ::ordo::log(::ordo::LogLevel::debug, __VA_ARGS__)
#define ORDO_LOG_INFO(...) ::ordo::log(::ordo::LogLevel::info, __VA_ARGS__)
#define ORDO_LOG_WARN(...) ::ordo::log(::ordo::LogLevel::warn, __VA_ARGS__)
#define ORDO_LOG_ERROR(...) ::ordo::log(::ordo::LogLevel::error, __VA_ARGS__)
