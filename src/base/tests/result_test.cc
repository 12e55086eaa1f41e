#include "base/result.h"

#include <gtest/gtest.h>

#include <cerrno>

#include "base/log.h"

namespace ordo {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return make_error(Errc::invalid_argument, "{} is not positive", v);
  return v;
}

Result<int> doubled(int v) {
  int x = ORDO_TRY(parse_positive(v));
  return 2 * x;
}

Result<void> check(int v) {
  ORDO_TRY(parse_positive(v));
  return ok();
}

TEST(Result, ValueAndErrorPropagate) {
  auto a = doubled(21);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(*a, 42);
  auto b = doubled(-1);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().code, Errc::invalid_argument);
  EXPECT_EQ(b.error().message, "-1 is not positive");
  EXPECT_TRUE(check(1));
  EXPECT_FALSE(check(0));
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  auto r = parse_positive(0);
  EXPECT_DEATH((void)r.value(), "Result::value");
}

TEST(Result, ErrnoErrorKeepsTheErrno) {
  Error e = errno_error(ENOSPC, "pwrite f");
  EXPECT_EQ(e.code, Errc::io);
  EXPECT_EQ(e.sys_errno, ENOSPC);
  EXPECT_EQ(e.message, "pwrite f: No space left on device");
  EXPECT_EQ(make_error(Errc::io, "x").sys_errno, 0);
}

TEST(LogLimiter, OneLinePerIntervalCountingTheOthers) {
  LogLimiter l(10'000);
  EXPECT_TRUE(l.allow(5));  // the first line always
  EXPECT_EQ(l.take_suppressed(), 0u);
  EXPECT_FALSE(l.allow(6));
  EXPECT_FALSE(l.allow(10'004));
  EXPECT_TRUE(l.allow(10'005));
  EXPECT_EQ(l.take_suppressed(), 2u);
  EXPECT_EQ(l.take_suppressed(), 0u);
  EXPECT_FALSE(l.allow(20'000));
  EXPECT_TRUE(l.allow(30'000));
  EXPECT_EQ(l.take_suppressed(), 1u);
}

}  // namespace
}  // namespace ordo
