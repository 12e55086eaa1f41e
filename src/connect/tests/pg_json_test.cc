// pgoutput text values rendered as Debezium-style JSON, and keys and rows of a relation.

#include "connect/pg_json.h"

#include <gtest/gtest.h>

namespace ordo::connect::pg {
namespace {

using nlohmann::json;

json render(uint32_t oid, std::string text) {
  auto r = render_value(oid, Value{Value::Kind::text, std::move(text)});
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? *r : json("<error>");
}
bool refused(uint32_t oid, std::string text) {
  return !render_value(oid, Value{Value::Kind::text, std::move(text)});
}

TEST(PgJson, ScalarsByType) {
  EXPECT_EQ(render(oid::kBool, "t"), json(true));
  EXPECT_EQ(render(oid::kBool, "f"), json(false));
  EXPECT_EQ(render(oid::kInt2, "-32768"), json(-32768));
  EXPECT_EQ(render(oid::kInt8, "9223372036854775807"), json(INT64_MAX));
  EXPECT_EQ(render(oid::kFloat8, "1.5e-10"), json(1.5e-10));
  EXPECT_EQ(render(oid::kFloat4, "NaN"), json("NaN"));
  EXPECT_EQ(render(oid::kFloat8, "-Infinity"), json("-Infinity"));
  EXPECT_EQ(render(oid::kNumeric, "12345678901234567890.000000000001"),
            json("12345678901234567890.000000000001"));
  EXPECT_EQ(render(oid::kNumeric, "-0.5"), json("-0.5"));
  EXPECT_EQ(render(oid::kNumeric, "NaN"), json("NaN"));
  EXPECT_EQ(render(oid::kBytea, "\\x00ff10"), json("AP8Q"));
  EXPECT_EQ(render(oid::kBytea, "\\x"), json(""));
  EXPECT_EQ(render(oid::kTimestamp, "2024-02-29 23:59:59.123456"),
            json("2024-02-29T23:59:59.123456"));
  EXPECT_EQ(render(oid::kTimestamptz, "2024-02-29 23:59:59+00"), json("2024-02-29T23:59:59Z"));
  EXPECT_EQ(render(oid::kTimestamptz, "2024-02-29 23:59:59.5-05:30"),
            json("2024-02-29T23:59:59.5-05:30"));
  EXPECT_EQ(render(oid::kTimestamptz, "2024-02-29 23:59:59+02"), json("2024-02-29T23:59:59+02:00"));
  EXPECT_EQ(render(oid::kTimestamp, "infinity"), json("infinity"));
  EXPECT_EQ(render(oid::kDate, "2024-02-29"), json("2024-02-29"));
  EXPECT_EQ(render(oid::kJsonb, "{\"a\": 1}"), json("{\"a\": 1}"));
  EXPECT_EQ(render(oid::kUuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            json("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
  EXPECT_EQ(render(99999, "whatever type"), json("whatever type"));
  EXPECT_EQ(*render_value(oid::kInt4, Value{}), json(nullptr));
  EXPECT_EQ(*render_value(oid::kText, Value{Value::Kind::unchanged_toast, ""}),
            json("__debezium_unavailable_value"));
}

TEST(PgJson, BadTextIsRefused) {
  EXPECT_TRUE(refused(oid::kBool, "true"));
  EXPECT_TRUE(refused(oid::kInt4, "12a"));
  EXPECT_TRUE(refused(oid::kInt8, "99999999999999999999"));
  EXPECT_TRUE(refused(oid::kFloat8, "1.0x"));
  EXPECT_TRUE(refused(oid::kNumeric, "1.2.3"));
  EXPECT_TRUE(refused(oid::kNumeric, "."));
  EXPECT_TRUE(refused(oid::kBytea, "\\x0"));
  EXPECT_TRUE(refused(oid::kBytea, "\\xzz"));
  EXPECT_TRUE(refused(oid::kBytea, "abc"));
  EXPECT_TRUE(refused(oid::kTimestamp, "2024-02-29T23:59:59"));
  EXPECT_TRUE(refused(oid::kTimestamp, "2024-02-29 23:59:59+00"));
  EXPECT_TRUE(refused(oid::kTimestamp, "2024-02-29 23:59:59.1234567"));
  EXPECT_TRUE(refused(oid::kTimestamptz, "2024-02-29 23:59:59"));
  EXPECT_TRUE(refused(oid::kTimestamptz, "2024-02-29 23:59:59+0"));
}

TEST(PgJson, Arrays) {
  EXPECT_EQ(render(1007, "{1,2,NULL,-4}"), json::parse("[1,2,null,-4]"));
  EXPECT_EQ(render(1007, "{}"), json::array());
  EXPECT_EQ(render(1007, "{{1,2},{3,4}}"), json::parse("[[1,2],[3,4]]"));
  EXPECT_EQ(render(1009, R"({plain,"with space","quote\"d","back\\slash","NULL",null})"),
            json::parse(R"(["plain","with space","quote\"d","back\\slash","NULL",null])"));
  EXPECT_EQ(render(1000, "{t,f}"), json::parse("[true,false]"));
  EXPECT_EQ(render(1231, "{1.50,NaN}"), json::parse(R"(["1.50","NaN"])"));
  EXPECT_EQ(render(1007, "[0:1]={7,8}"), json::parse("[7,8]"));
  for (const char* bad : {"{1,2", "1,2}", "{1,,2}", "{\"open}", "{1}x", "{{{{{{{1}}}}}}}", "{a\"b}",
                          "{1,x}", "[0:1]{1}"}) {
    EXPECT_TRUE(refused(1007, bad)) << bad;
  }
}

TEST(PgJson, RowsAndKeys) {
  Relation rel{
      1,
      "public",
      "users",
      'd',
      {{true, "id", oid::kInt4, -1}, {false, "name", oid::kText, -1}, {false, "tags", 1009, -1}}};
  Tuple row{{Value::Kind::text, "7"}, {Value::Kind::text, "jane"}, {Value::Kind::text, "{a,b}"}};
  EXPECT_EQ(*render_row(rel, row), json::parse(R"({"id":7,"name":"jane","tags":["a","b"]})"));
  EXPECT_EQ(*render_key(rel, row), json::parse(R"({"id":7})"));
  EXPECT_FALSE(render_row(rel, Tuple{{Value::Kind::text, "7"}}));
  Tuple bad{{Value::Kind::text, "x"}, {}, {}};
  auto r = render_row(rel, bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("public.users.id"), std::string::npos) << r.error().message;
  Relation keyless{2, "public", "log", 'n', {{false, "line", oid::kText, -1}}};
  auto k = render_key(keyless, Tuple{{Value::Kind::text, "x"}});
  ASSERT_FALSE(k);
  EXPECT_NE(k.error().message.find("REPLICA IDENTITY FULL"), std::string::npos);
}

TEST(PgJson, Envelope) {
  Relation rel{1, "public", "users", 'd', {{true, "id", oid::kInt4, -1}}};
  SourceInfo src{"shop", "app", 0x16B3748, 742, 755'000'000'123'456, "false"};
  auto e = envelope(rel, nullptr, json::parse(R"({"id":7})"), 'c', src, 1'700'000'000'000);
  EXPECT_EQ(e, json::parse(R"({"before":null,"after":{"id":7},
      "source":{"connector":"postgresql","name":"shop","db":"app","schema":"public",
                "table":"users","lsn":23803720,"txId":742,"ts_ms":1701684800123,
                "snapshot":"false"},
      "op":"c","ts_ms":1700000000000})"));
}

TEST(PgJson, Base64) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace ordo::connect::pg
