#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/assert.h"
#include "base/result.h"

namespace ordo {

namespace detail {
void assert_fail(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "ordo: assertion failed: %s at %s:%d%s%s\n", expr, file, line,
               msg ? ": " : "", msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::ok:
      return "ok";
    case Errc::io:
      return "io";
    case Errc::corrupt:
      return "corrupt";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::out_of_range:
      return "out_of_range";
    case Errc::not_found:
      return "not_found";
    case Errc::already_exists:
      return "already_exists";
    case Errc::busy:
      return "busy";
    case Errc::too_large:
      return "too_large";
    case Errc::closed:
      return "closed";
    case Errc::out_of_order_sequence:
      return "out_of_order_sequence";
    case Errc::invalid_producer_epoch:
      return "invalid_producer_epoch";
  }
  return "unknown";
}

Error errno_error(int err, std::string_view what) {
  return Error{err == ENOENT ? Errc::not_found : Errc::io,
               fmt::format("{}: {}", what, std::strerror(err)), err};
}

}  // namespace ordo
