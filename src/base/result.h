#pragma once
// Result<T>: the value of an operation that can fail in an expected way (I/O, bad input).
// Member names follow std::expected (has_value, value, error, operator*) so the type can become
// an alias once every supported compiler has it (clang 14 does not).

#include <string>
#include <utility>
#include <variant>

#include <fmt/core.h>

#include "base/assert.h"

namespace ordo {

enum class Errc {
  ok = 0,
  io,                // an operating-system call failed
  corrupt,           // stored bytes fail validation
  invalid_argument,  // the caller's input is malformed
  out_of_range,      // an offset or position outside what exists
  not_found,
  already_exists,
  busy,       // e.g. the data dir is locked by another process
  too_large,  // a bound was exceeded
  closed,     // the object was shut down
  // Idempotent producers: a batch whose sequence does not follow its producer's last one, or
  // whose producer epoch is older than the producer's current one.
  out_of_order_sequence,
  invalid_producer_epoch,
};

const char* errc_name(Errc code);

struct Error {
  Errc code = Errc::ok;
  std::string message;
  int sys_errno = 0;  // the errno of the failed system call (errno_error), 0 otherwise

  std::string to_string() const { return fmt::format("{}: {}", errc_name(code), message); }
};

template <typename... Args>
Error make_error(Errc code, fmt::format_string<Args...> f, Args&&... args) {
  return Error{code, fmt::format(f, std::forward<Args>(args)...)};
}

// An Error built from errno after a failed system call.
Error errno_error(int err, std::string_view what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    ORDO_ASSERT_MSG(has_value(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  const T& value() const& {
    ORDO_ASSERT_MSG(has_value(), "Result::value() on an error");
    return std::get<0>(v_);
  }
  T&& value() && {
    ORDO_ASSERT_MSG(has_value(), "Result::value() on an error");
    return std::get<0>(std::move(v_));
  }
  const Error& error() const& {
    ORDO_ASSERT(!has_value());
    return std::get<1>(v_);
  }
  Error&& error() && {
    ORDO_ASSERT(!has_value());
    return std::get<1>(std::move(v_));
  }
  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback));
  }
  template <typename U>
  T value_or(U&& fallback) && {
    return has_value() ? std::get<0>(std::move(v_)) : static_cast<T>(std::forward<U>(fallback));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { ORDO_ASSERT_MSG(ok_, "Result<void>::value() on an error"); }
  const Error& error() const& {
    ORDO_ASSERT(!ok_);
    return error_;
  }
  Error&& error() && {
    ORDO_ASSERT(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> ok() {
  return {};
}

}  // namespace ordo

// ORDO_TRY(expr): evaluates a Result; on error returns the error from the enclosing function,
// otherwise yields the value. Uses a statement expression (GNU C++, g++ and clang).
#define ORDO_TRY(expr)                       \
  ({                                         \
    auto&& ordo_try_r_ = (expr);             \
    if (!ordo_try_r_.has_value()) {          \
      return std::move(ordo_try_r_).error(); \
    }                                        \
    std::move(ordo_try_r_).value();          \
  })
