// Every message at every valid version: random fill -> encode -> decode -> compare (see
// random_fill.h). The cases and fill_random() are generated (fill_random_<k>.cc).

#include <gtest/gtest.h>

#include "protocol/tests/random_fill.h"

namespace ordo::protocol {

std::vector<RoundTripCase> round_trip_cases_0();
std::vector<RoundTripCase> round_trip_cases_1();
std::vector<RoundTripCase> round_trip_cases_2();
std::vector<RoundTripCase> round_trip_cases_3();

namespace {

std::vector<RoundTripCase> all_cases() {
  std::vector<RoundTripCase> all;
  for (auto f : {round_trip_cases_0, round_trip_cases_1, round_trip_cases_2, round_trip_cases_3}) {
    auto v = f();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

class RoundTrip : public testing::TestWithParam<RoundTripCase> {};

TEST_P(RoundTrip, EveryVersion) {
  const RoundTripCase& c = GetParam();
  for (int16_t v = c.min_version; v <= c.max_version; ++v) {
    for (uint64_t seed = 1; seed <= 8; ++seed) {
      SCOPED_TRACE(testing::Message() << c.name << " v" << v << " seed " << seed);
      c.run(v, seed * 7919 + uint64_t(v));
      if (testing::Test::HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllMessages, RoundTrip, testing::ValuesIn(all_cases()),
                         [](const testing::TestParamInfo<RoundTripCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(RoundTripCases, CoverEveryMessage) {
  EXPECT_EQ(all_cases().size(), 180u);
}

}  // namespace
}  // namespace ordo::protocol
