#include "base/result.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace ordo
