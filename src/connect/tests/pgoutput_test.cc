// The logical replication stream decoder: every pgoutput message and the CopyData wrappers
// round-trip; every cut, bad tag and lying length is refused.

#include "connect/pgoutput.h"

#include <gtest/gtest.h>

namespace ordo::connect::pg {
namespace {

Value text(std::string s) {
  return Value{Value::Kind::text, std::move(s)};
}
const Value kNull{};
const Value kToast{Value::Kind::unchanged_toast, ""};

std::vector<Message> samples() {
  Relation rel{16385,
               "public",
               "users",
               'd',
               {{true, "id", 23, -1}, {false, "name", 25, -1}, {false, "note", 1043, 36}}};
  return {
      Begin{0x16B3748, 755'000'000'000'000, 742},
      Commit{0, 0x16B3748, 0x16B3778, 755'000'000'000'123},
      Origin{0x1234, "upstream"},
      rel,
      Relation{16390, "", "pg_thing", 'n', {}},
      Type{16400, "public", "mood"},
      Insert{16385, {text("1"), text("jane"), kNull}},
      Update{16385, 0, {}, {text("1"), text("Jane"), kToast}},
      Update{16385, 'K', {text("1"), kNull, kNull}, {text("2"), text("jane"), text("")}},
      Update{16385, 'O', {text("1"), text("jane"), kNull}, {text("1"), text("j"), kNull}},
      Delete{16385, 'K', {text("2"), kNull, kNull}},
      Delete{16385, 'O', {text("2"), text("jane"), text("x")}},
      Truncate{true, false, {16385, 16390}},
      Truncate{false, true, {}},
      LogicalMessage{true, 0x99, "app", std::string("bin\0ary", 7)},
  };
}

TEST(PgOutput, EveryMessageRoundTrips) {
  for (const auto& m : samples()) {
    auto bytes = encode_message(m);
    auto back = decode_message(bytes);
    ASSERT_TRUE(back) << back.error().to_string() << " tag " << char(bytes[0]);
    EXPECT_EQ(back->index(), m.index());
    EXPECT_EQ(encode_message(*back), bytes) << char(bytes[0]);
  }
  auto ins = std::get<Insert>(*decode_message(encode_message(samples()[6])));
  EXPECT_EQ(ins.relation_id, 16385u);
  EXPECT_EQ(ins.row, (Tuple{text("1"), text("jane"), kNull}));
  auto rel = std::get<Relation>(*decode_message(encode_message(samples()[3])));
  EXPECT_EQ(rel.schema, "public");
  EXPECT_TRUE(rel.columns[0].key);
  EXPECT_EQ(rel.columns[2].type_modifier, 36);
}

TEST(PgOutput, EveryCutAndEveryExtraByteIsRefused) {
  for (const auto& m : samples()) {
    auto bytes = encode_message(m);
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      auto r = decode_message(std::span<const uint8_t>(bytes).first(cut));
      ASSERT_FALSE(r) << char(bytes[0]) << " cut at " << cut;
      EXPECT_EQ(r.error().code, Errc::corrupt);
    }
    auto longer = bytes;
    longer.push_back(0);
    EXPECT_FALSE(decode_message(longer)) << char(bytes[0]);
  }
}

TEST(PgOutput, BadTagsKindsAndLengthsAreRefused) {
  auto bad = [](std::vector<uint8_t> b) { return !decode_message(b); };
  EXPECT_TRUE(bad({'S', 0, 0, 0, 1}));  // stream start: not asked for
  // Insert whose value claims more bytes than there are.
  Writer w;
  w.u8('I').u32(1).u8('N').u16(1).u8('t').u32(1000).bytes("abc");
  EXPECT_TRUE(bad(w.out));
  // Insert without 'N'; a binary column; too many columns.
  EXPECT_TRUE(bad(Writer().u8('I').u32(1).u8('X').u16(0).out));
  EXPECT_TRUE(bad(Writer().u8('I').u32(1).u8('N').u16(1).u8('b').u32(0).out));
  EXPECT_TRUE(bad(Writer().u8('I').u32(1).u8('N').u16(uint16_t(kMaxColumns + 1)).out));
  // Relation with an unknown replica identity or column flags.
  EXPECT_TRUE(bad(Writer().u8('R').u32(1).str("s").str("t").u8('x').u16(0).out));
  EXPECT_TRUE(bad(
      Writer().u8('R').u32(1).str("s").str("t").u8('d').u16(1).u8(2).str("c").u32(23).u32(0).out));
  // A string without its NUL.
  EXPECT_TRUE(bad(Writer().u8('Y').u32(1).str("s").bytes("no-nul").out));
  // Truncate whose count does not match; logical message whose length does not.
  EXPECT_TRUE(bad(Writer().u8('T').u32(3).u8(0).u32(1).out));
  EXPECT_TRUE(bad(Writer().u8('T').u32(0xFFFFFFFF).u8(0).out));
  EXPECT_TRUE(bad(Writer().u8('M').u8(0).u64(1).str("p").u32(5).bytes("abc").out));
  // Delete without old key or row.
  EXPECT_TRUE(bad(Writer().u8('D').u32(1).u8('N').u16(0).out));
  EXPECT_TRUE(bad({}));
}

TEST(PgOutput, CopyDataWrappers) {
  auto payload = encode_message(samples()[0]);
  Writer w;
  w.u8('w').u64(0x100).u64(0x200).u64(777).bytes(
      std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  auto x = decode_copy_data(w.out);
  ASSERT_TRUE(x) << x.error().to_string();
  const auto& xd = std::get<XLogData>(*x);
  EXPECT_EQ(xd.wal_start, 0x100u);
  EXPECT_EQ(xd.wal_end, 0x200u);
  EXPECT_EQ(xd.send_time_us, 777);
  EXPECT_EQ(xd.payload, payload);
  auto k = decode_copy_data(Writer().u8('k').u64(0x300).u64(5).u8(1).out);
  ASSERT_TRUE(k);
  EXPECT_EQ(std::get<Keepalive>(*k).wal_end, 0x300u);
  EXPECT_TRUE(std::get<Keepalive>(*k).reply_requested);
  EXPECT_FALSE(decode_copy_data(Writer().u8('k').u64(0x300).u64(5).u8(2).out));
  EXPECT_FALSE(decode_copy_data(Writer().u8('k').u64(0x300).u64(5).out));
  EXPECT_FALSE(decode_copy_data(Writer().u8('w').u64(1).u64(2).u64(3).out));  // no message
  EXPECT_FALSE(decode_copy_data(Writer().u8('x').out));
  // The status update: 'r', three LSNs, the clock, the reply flag (34 bytes).
  auto r = encode_status_update(1, 2, 3, 4, false);
  EXPECT_EQ(r, Writer().u8('r').u64(1).u64(2).u64(3).u64(4).u8(0).out);
  EXPECT_EQ(r.size(), 34u);
}

}  // namespace
}  // namespace ordo::connect::pg
