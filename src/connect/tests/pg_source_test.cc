// The change-capture source's state file: its encoding round-trips, and every truncation or
// damage that leaves it unparseable is refused as corruption (the source then stops with the
// error instead of starting afresh and re-reading the tables).

#include "connect/pg_source.h"

#include <gtest/gtest.h>

namespace ordo::connect {
namespace {

TEST(PgSourceState, RoundTripsAndRefusesDamage) {
  PgSourceState s{"ordo_app", true, 0x16'B374D848ull};
  std::string text = encode_source_state(s);
  EXPECT_EQ(text, "{\"lsn\":\"16/B374D848\",\"slot\":\"ordo_app\",\"snapshot_done\":true}\n");
  auto back = decode_source_state(text, "state.json");
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, s);
  // Every cut short of the closing brace.
  for (size_t cut = 0; cut + 2 < text.size(); ++cut) {
    auto r = decode_source_state(text.substr(0, cut), "state.json");
    ASSERT_FALSE(r) << cut;
    EXPECT_EQ(r.error().code, Errc::corrupt);
    EXPECT_NE(r.error().message.find("state.json"), std::string::npos);
  }
  for (const char* bad : {"", "null", "[]", "{\"slot\":\"s\",\"snapshot_done\":true}",
                          "{\"lsn\":\"1/2\",\"slot\":\"\",\"snapshot_done\":true}",
                          "{\"lsn\":\"12\",\"slot\":\"s\",\"snapshot_done\":true}",
                          "{\"lsn\":\"1/2\",\"slot\":\"s\",\"snapshot_done\":1}",
                          "{\"lsn\":\"1/2\",\"slot\":\"s\",\"snapshot_done\":true,\"x\":0}",
                          "{\"lsn\":\"1/G\",\"slot\":\"s\",\"snapshot_done\":true}"}) {
    auto r = decode_source_state(bad, "state.json");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::corrupt) << bad;
  }
}

}  // namespace
}  // namespace ordo::connect
