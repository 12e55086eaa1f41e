#include "base/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

namespace ordo {
namespace {

LogLevel initial_threshold() {
  const char* env = std::getenv("ORDO_LOG_LEVEL");
  if (env == nullptr) return LogLevel::info;
  if (std::strcmp(env, "debug") == 0) return LogLevel::debug;
  if (std::strcmp(env, "warn") == 0) return LogLevel::warn;
  if (std::strcmp(env, "error") == 0) return LogLevel::error;
  return LogLevel::info;
}

std::atomic<LogLevel> g_threshold{initial_threshold()};
std::atomic<LogSink> g_sink{nullptr};
std::mutex g_mu;

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug:
      return "DEBUG";
    case LogLevel::info:
      return "INFO";
    case LogLevel::warn:
      return "WARN";
    case LogLevel::error:
      return "ERROR";
  }
  return "?";
}

}  // namespace

LogLevel log_threshold() {
  return g_threshold.load(std::memory_order_relaxed);
}
void set_log_threshold(LogLevel level) {
  g_threshold.store(level);
}
void set_log_sink(LogSink sink) {
  g_sink.store(sink);
}

void log_line(LogLevel level, std::string_view message) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = std::time_t(ms / 1000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  {
    std::lock_guard lock(g_mu);
    std::fprintf(stderr, "%s.%03dZ %-5s %.*s\n", ts, int(ms % 1000), level_name(level),
                 int(message.size()), message.data());
  }
  if (LogSink sink = g_sink.load()) sink(level, message);
}

}  // namespace ordo
