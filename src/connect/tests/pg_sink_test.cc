// The PostgreSQL sink's rendering of JSON values as COPY text fields (the part that runs
// without a server; tests/integration/test_pg_sink.py drives the sink against PostgreSQL).

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/random.h"
#include "connect/pg_json.h"
#include "connect/pg_sink.h"

namespace ordo::connect {
namespace {

using nlohmann::json;

std::string field(const char* value_json, PgColumnKind kind = PgColumnKind::plain) {
  std::string out;
  append_copy_field(out, json::parse(value_json), kind);
  return out;
}

TEST(PgCopyField, NullIsBackslashN) {
  for (auto kind : {PgColumnKind::plain, PgColumnKind::array, PgColumnKind::bytea}) {
    EXPECT_EQ(field("null", kind), "\\N");
  }
}

TEST(PgCopyField, StringsAreTheirContentsWithCopyEscapes) {
  EXPECT_EQ(field(R"("plain")"), "plain");
  EXPECT_EQ(field(R"("")"), "");
  EXPECT_EQ(field(R"("a\tb\nc\rd\\e")"), "a\\tb\\nc\\rd\\\\e");
  EXPECT_EQ(field(R"("\\N")"), "\\\\N");  // the text \N, not NULL
  EXPECT_EQ(field(R"("zürich")"), "zürich");
}

TEST(PgCopyField, NumbersAndBooleansAreTheirJsonText) {
  EXPECT_EQ(field("42"), "42");
  EXPECT_EQ(field("-7"), "-7");
  EXPECT_EQ(field("1.5"), "1.5");
  EXPECT_EQ(field("true"), "true");
  EXPECT_EQ(field("false"), "false");
}

TEST(PgCopyField, ObjectsAndArraysAreTheirJsonText) {
  EXPECT_EQ(field(R"({"a":[1,"x\ty"]})"), "{\"a\":[1,\"x\\\\ty\"]}");
  EXPECT_EQ(field(R"([1,"b"])"), "[1,\"b\"]");
  // A string holding JSON text (change capture's json/jsonb) is that text.
  EXPECT_EQ(field(R"("{\"a\": 1}")"), "{\"a\": 1}");
}

TEST(PgCopyField, ArraysBecomeArrayLiterals) {
  EXPECT_EQ(field(R"(["a","b c"])", PgColumnKind::array), R"({"a","b c"})");
  EXPECT_EQ(field("[]", PgColumnKind::array), "{}");
  EXPECT_EQ(field(R"([1,null,2.5,true])", PgColumnKind::array), R"({"1",NULL,"2.5","true"})");
  EXPECT_EQ(field(R"([[1,2],[3,4]])", PgColumnKind::array), R"({{"1","2"},{"3","4"}})");
  // Quotes and backslashes are escaped in the literal, then the backslashes again for COPY.
  EXPECT_EQ(field(R"(["say \"hi\"","a\\b","NULL"])", PgColumnKind::array),
            R"({"say \\"hi\\"","a\\\\b","NULL"})");
  // Deeper than PostgreSQL allows: the JSON text (PostgreSQL refuses it with its message).
  EXPECT_EQ(field("[[[[[[[1]]]]]]]", PgColumnKind::array), "[[[[[[[1]]]]]]]");
  // Not an array: as any other value.
  EXPECT_EQ(field(R"("{1,2}")", PgColumnKind::array), "{1,2}");
}

TEST(PgCopyField, ByteaFromBase64) {
  EXPECT_EQ(field(R"("")", PgColumnKind::bytea), "\\\\x");
  EXPECT_EQ(field(R"("AA==")", PgColumnKind::bytea), "\\\\x00");
  EXPECT_EQ(field(R"("AP8=")", PgColumnKind::bytea), "\\\\x00ff");
  EXPECT_EQ(field(R"("3q2+7w==")", PgColumnKind::bytea), "\\\\xdeadbeef");
  EXPECT_EQ(field(R"("aGVsbG8h")", PgColumnKind::bytea), "\\\\x68656c6c6f21");
  // Not base64 (hex input, bad length, stray padding): the text as it is.
  EXPECT_EQ(field(R"("\\xdead")", PgColumnKind::bytea), "\\\\xdead");
  EXPECT_EQ(field(R"("abc")", PgColumnKind::bytea), "abc");
  EXPECT_EQ(field(R"("a=bc")", PgColumnKind::bytea), "a=bc");
  EXPECT_EQ(field(R"("ab=c")", PgColumnKind::bytea), "ab=c");
}

// Whatever bytes change capture encodes (pg_json's base64), the sink writes back as the same
// bytes in bytea's hex input.
TEST(PgCopyField, ByteaRoundTripsChangeCapturesBase64) {
  Random rng{20261206};
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(size_t(rng.between(0, 70)), '\0');
    for (auto& b : bytes) b = char(rng.between(0, 255));
    std::string want = "\\\\x";
    for (unsigned char b : bytes) {
      want += kHex[b >> 4];
      want += kHex[b & 15];
    }
    std::string out;
    append_copy_field(out, json(pg::base64(bytes)), PgColumnKind::bytea);
    ASSERT_EQ(out, want) << "bytes of length " << bytes.size();
  }
}

TEST(PgSinkKeysTable, NamesFitPostgresIdentifiers) {
  EXPECT_EQ(pg_sink_keys_table("users_copy"), "ordo_sink_keys_users_copy");
  const std::string fits(44, 's');  // 15 + 44 = 59 bytes: kept whole
  EXPECT_EQ(pg_sink_keys_table(fits), "ordo_sink_keys_" + fits);
  // Longer: 26 bytes of it and a hash of all of it, so names that start alike differ.
  const std::string a = std::string(60, 'x') + "a", b = std::string(60, 'x') + "b";
  EXPECT_EQ(pg_sink_keys_table(a).size(), 15u + 26 + 1 + 16);
  EXPECT_LE(pg_sink_keys_table(a).size() + 4, 63u);  // and the index's "_key"
  EXPECT_TRUE(pg_sink_keys_table(a).starts_with("ordo_sink_keys_" + std::string(26, 'x') + "_"));
  EXPECT_NE(pg_sink_keys_table(a), pg_sink_keys_table(b));
  EXPECT_EQ(pg_sink_keys_table(a), pg_sink_keys_table(a));
}

}  // namespace
}  // namespace ordo::connect
