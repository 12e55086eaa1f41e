#pragma once
// Assertions for bugs. They stay on in every build type: a broken invariant in a storage engine
// must stop the process before it writes anything else, not corrupt data silently.

namespace ordo::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const char* msg);
}

#define ORDO_ASSERT(cond)                                              \
  do {                                                                 \
    if (__builtin_expect(!(cond), 0)) {                                \
      ::ordo::detail::assert_fail(#cond, __FILE__, __LINE__, nullptr); \
    }                                                                  \
  } while (0)

#define ORDO_ASSERT_MSG(cond, msg)                                   \
  do {                                                               \
    if (__builtin_expect(!(cond), 0)) {                              \
      ::ordo::detail::assert_fail(#cond, __FILE__, __LINE__, (msg)); \
    }                                                                \
  } while (0)

#define ORDO_UNREACHABLE() ::ordo::detail::assert_fail("unreachable", __FILE__, __LINE__, nullptr)
