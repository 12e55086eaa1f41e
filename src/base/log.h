#pragma once
// Minimal leveled logging to stderr: one line per event, with a UTC timestamp and the level.
// ORDO_LOG_LEVEL (debug, info, warn, error) in the environment sets the threshold.

#include <fmt/core.h>

namespace ordo {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

LogLevel log_threshold();
void set_log_threshold(LogLevel level);
void log_line(LogLevel level, std::string_view message);

// For tests: when set, every emitted line is also passed to the sink.
using LogSink = void (*)(LogLevel, std::string_view);
void set_log_sink(LogSink sink);

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
