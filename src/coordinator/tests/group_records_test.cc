#include "coordinator/group_records.h"

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/coding.h"

namespace ordo::coordinator {
namespace {

using Span = std::span<const uint8_t>;

std::vector<uint8_t> bytes(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

template <typename T>
RecordBytes must(Result<T> r) {
  EXPECT_TRUE(r.has_value()) << r.error().to_string();
  return std::move(r).value();
}

// Damage checks, for an encoding `good` of `original`:
// - every strict prefix (and the encoding plus one byte) fails to decode with Errc::corrupt;
// - every single-byte flip (each bit, and all eight bits) either fails with Errc::corrupt or
//   decodes to a different value whose encoding is exactly the damaged bytes (canonical form).
template <typename T, typename Decode, typename Encode>
void check_damage(const RecordBytes& good, const T& original, Decode decode, Encode encode,
                  bool flips = true) {
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = decode(Span(good.data(), n));
    ASSERT_FALSE(r.has_value()) << "prefix of " << n << " bytes decoded";
    EXPECT_EQ(r.error().code, Errc::corrupt);
  }
  RecordBytes longer = good;
  longer.push_back(0);
  auto r = decode(Span(longer));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("trailing"), std::string::npos) << r.error().message;
  if (!flips) return;
  static const uint8_t kMasks[] = {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff};
  RecordBytes damaged = good;
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : kMasks) {
      damaged[i] = uint8_t(good[i] ^ mask);
      auto d = decode(Span(damaged));
      if (d.has_value()) {
        EXPECT_FALSE(*d == original) << "byte " << i << " mask " << int(mask);
        auto again = encode(*d);
        ASSERT_TRUE(again.has_value()) << again.error().to_string();
        EXPECT_EQ(*again, damaged) << "byte " << i << " mask " << int(mask);
      } else {
        EXPECT_EQ(d.error().code, Errc::corrupt);
      }
    }
    damaged[i] = good[i];
  }
}

std::vector<OffsetCommitKey> offset_keys() {
  return {
      {"", "", 0},
      {"g", "orders", 3},
      {"group-1", "a.b_c-d", std::numeric_limits<int32_t>::max()},
      {std::string(300, 'x'), std::string(200, '\xff'), 7},
  };
}

std::vector<GroupMetadataKey> group_keys() {
  return {{""}, {"g"}, {std::string(500, 'q')}, {std::string("\0\x01\x02", 3)}};
}

std::vector<OffsetCommitValue> offset_values() {
  return {
      {},
      {.offset = 42,
       .leader_epoch = 5,
       .metadata = "",
       .commit_timestamp_ms = 1'700'000'000'000,
       .expire_timestamp_ms = 1'700'000'600'000},
      {.offset = -1, .leader_epoch = -1, .metadata = std::nullopt, .commit_timestamp_ms = -7},
      {.offset = std::numeric_limits<int64_t>::max(),
       .leader_epoch = std::numeric_limits<int32_t>::max(),
       .metadata = std::string(100, 'm'),
       .commit_timestamp_ms = std::numeric_limits<int64_t>::min(),
       .expire_timestamp_ms = std::numeric_limits<int64_t>::max()},
  };
}

GroupMemberRecord member(int i) {
  GroupMemberRecord m;
  m.member_id = "consumer-" + std::to_string(i) + "-0f3a";
  if (i % 2 == 0) m.group_instance_id = "instance-" + std::to_string(i);
  m.client_id = i % 3 == 0 ? "" : "client";
  m.client_host = "/127.0.0." + std::to_string(i % 256);
  m.rebalance_timeout_ms = 300'000 + i;
  m.session_timeout_ms = i % 5 == 0 ? -1 : 10'000;
  m.subscription = bytes(std::string(size_t(i % 7), char('a' + i % 26)));
  m.assignment = bytes(i % 4 == 0 ? std::string() : std::string("\0\x01", 2) + std::to_string(i));
  return m;
}

std::vector<GroupMetadataValue> group_values() {
  GroupMetadataValue empty;
  GroupMetadataValue one{.protocol_type = "consumer",
                         .generation = 1,
                         .protocol_name = "range",
                         .leader_id = "consumer-0-0f3a",
                         .state_timestamp_ms = 1'700'000'000'000,
                         .members = {member(0)}};
  GroupMetadataValue nulls{.protocol_type = "connect",
                           .generation = -1,
                           .protocol_name = std::nullopt,
                           .leader_id = std::nullopt,
                           .state_timestamp_ms = -1,
                           .members = {GroupMemberRecord{}, member(1)}};
  GroupMetadataValue three = one;
  three.members = {member(1), member(2), member(3)};
  return {empty, one, nulls, three};
}

GroupMetadataValue many_members(int n) {
  GroupMetadataValue v{.protocol_type = "consumer",
                       .generation = 99,
                       .protocol_name = "cooperative-sticky",
                       .leader_id = "consumer-0-0f3a",
                       .state_timestamp_ms = 5};
  for (int i = 0; i < n; ++i) v.members.push_back(member(i));
  return v;
}

TEST(GroupRecords, OffsetCommitKeyRoundTripAndDamage) {
  for (const auto& key : offset_keys()) {
    RecordBytes b = must(encode_offset_commit_key(key));
    ASSERT_EQ(b[0], kOffsetCommitKeyType);
    EXPECT_EQ(b.size(), 1 + 2 + key.group_id.size() + 2 + key.topic.size() + 4);
    auto d = decode_offset_commit_key(Span(b));
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    EXPECT_EQ(*d, key);
    auto any = decode_key(Span(b));
    ASSERT_TRUE(any.has_value());
    EXPECT_EQ(std::get<OffsetCommitKey>(*any), key);
    check_damage(b, key, decode_offset_commit_key, encode_offset_commit_key);
  }
}

TEST(GroupRecords, GroupMetadataKeyRoundTripAndDamage) {
  for (const auto& key : group_keys()) {
    RecordBytes b = must(encode_group_metadata_key(key));
    ASSERT_EQ(b[0], kGroupMetadataKeyType);
    EXPECT_EQ(b.size(), 1 + 2 + key.group_id.size());
    auto d = decode_group_metadata_key(Span(b));
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    EXPECT_EQ(*d, key);
    auto any = decode_key(Span(b));
    ASSERT_TRUE(any.has_value());
    EXPECT_EQ(std::get<GroupMetadataKey>(*any), key);
    check_damage(b, key, decode_group_metadata_key, encode_group_metadata_key);
  }
}

// decode_key over damaged keys of either kind: a flip of the type byte may turn one kind into
// the other, which must still be rejected or decode canonically.
TEST(GroupRecords, DecodeKeyDamage) {
  auto encode = [](const RecordKey& k) -> Result<RecordBytes> {
    if (auto* o = std::get_if<OffsetCommitKey>(&k)) return encode_offset_commit_key(*o);
    return encode_group_metadata_key(std::get<GroupMetadataKey>(k));
  };
  std::vector<RecordKey> keys;
  for (const auto& k : offset_keys()) keys.push_back(k);
  for (const auto& k : group_keys()) keys.push_back(k);
  for (const auto& key : keys) {
    RecordBytes b = must(encode(key));
    check_damage(b, key, decode_key, encode);
  }
}

TEST(GroupRecords, OffsetCommitValueRoundTripAndDamage) {
  for (const auto& value : offset_values()) {
    RecordBytes b = must(encode_offset_commit_value(value));
    EXPECT_EQ(load_be16(b.data()), uint16_t(kOffsetCommitValueVersion));
    EXPECT_EQ(b.size(), 32 + value.metadata.value_or("").size());
    auto d = decode_offset_commit_value(Span(b));
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    EXPECT_EQ(*d, value);
    check_damage(b, value, decode_offset_commit_value, encode_offset_commit_value);
  }
}

TEST(GroupRecords, GroupMetadataValueRoundTripAndDamage) {
  for (const auto& value : group_values()) {
    RecordBytes b = must(encode_group_metadata_value(value));
    EXPECT_EQ(load_be16(b.data()), uint16_t(kGroupMetadataValueVersion));
    size_t size = 24 + value.protocol_type.size() + value.protocol_name.value_or("").size() +
                  value.leader_id.value_or("").size();
    for (const auto& m : value.members) {
      size += 24 + m.member_id.size() + m.group_instance_id.value_or("").size() +
              m.client_id.size() + m.client_host.size() + m.subscription.size() +
              m.assignment.size();
    }
    EXPECT_EQ(b.size(), size);
    auto d = decode_group_metadata_value(Span(b));
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    EXPECT_EQ(*d, value);
    check_damage(b, value, decode_group_metadata_value, encode_group_metadata_value);
  }
}

TEST(GroupRecords, ManyMembersAndLongStrings) {
  // Many members: round trip, every truncation fails (flips are covered on smaller values).
  GroupMetadataValue many = many_members(500);
  RecordBytes b = must(encode_group_metadata_value(many));
  auto d = decode_group_metadata_value(Span(b));
  ASSERT_TRUE(d.has_value()) << d.error().to_string();
  EXPECT_EQ(*d, many);
  check_damage(b, many, decode_group_metadata_value, encode_group_metadata_value,
               /*flips=*/false);

  // Strings at the largest length the format holds.
  const std::string longest(kRecordStringMaxBytes, 'z');
  OffsetCommitKey key{longest, longest, 1};
  auto kd = decode_offset_commit_key(Span(must(encode_offset_commit_key(key))));
  ASSERT_TRUE(kd.has_value());
  EXPECT_EQ(*kd, key);
  GroupMetadataKey gkey{longest};
  auto gkd = decode_group_metadata_key(Span(must(encode_group_metadata_key(gkey))));
  ASSERT_TRUE(gkd.has_value());
  EXPECT_EQ(*gkd, gkey);
  OffsetCommitValue ov{.offset = 1, .metadata = longest};
  auto ovd = decode_offset_commit_value(Span(must(encode_offset_commit_value(ov))));
  ASSERT_TRUE(ovd.has_value());
  EXPECT_EQ(*ovd, ov);
  GroupMetadataValue gv{.protocol_type = longest, .protocol_name = longest, .leader_id = longest};
  GroupMemberRecord m{.member_id = longest,
                      .group_instance_id = longest,
                      .client_id = longest,
                      .client_host = longest,
                      .subscription = std::vector<uint8_t>(100'000, 0xab),
                      .assignment = std::vector<uint8_t>(70'000, 0xcd)};
  gv.members = {m, m};
  auto gvd = decode_group_metadata_value(Span(must(encode_group_metadata_value(gv))));
  ASSERT_TRUE(gvd.has_value());
  EXPECT_EQ(*gvd, gv);
}

TEST(GroupRecords, EncodersRejectWhatTheFormatCannotHold) {
  const std::string too_long(kRecordStringMaxBytes + 1, 'x');
  auto expect_invalid = [](auto r, const char* field) {
    ASSERT_FALSE(r.has_value()) << field;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
    EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
  };
  expect_invalid(encode_offset_commit_key({too_long, "t", 0}), "group_id");
  expect_invalid(encode_offset_commit_key({"g", too_long, 0}), "topic");
  expect_invalid(encode_offset_commit_key({"g", "t", -1}), "partition");
  expect_invalid(encode_group_metadata_key({too_long}), "group_id");
  expect_invalid(encode_offset_commit_value({.leader_epoch = -2}), "leader_epoch");
  expect_invalid(encode_offset_commit_value({.metadata = too_long}), "metadata");
  expect_invalid(encode_offset_commit_value({.expire_timestamp_ms = -2}), "expire_timestamp_ms");
  expect_invalid(encode_group_metadata_value({.protocol_type = too_long}), "protocol_type");
  expect_invalid(encode_group_metadata_value({.state_timestamp_ms = -5}), "state_timestamp_ms");
  GroupMetadataValue v = many_members(3);
  v.members[2].client_host = too_long;
  expect_invalid(encode_group_metadata_value(v), "client_host");
}

TEST(GroupRecords, UnknownTypesAndVersionsAreCorrupt) {
  for (uint8_t type : {0, 3, 255}) {
    RecordBytes b = {type, 0, 1, 'g'};
    auto r = decode_key(Span(b));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::corrupt);
    EXPECT_NE(r.error().message.find("unknown type " + std::to_string(type)), std::string::npos)
        << r.error().message;
  }
  auto empty = decode_key(Span());
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, Errc::corrupt);

  // A key of the other kind is refused by the kind-specific decoder.
  RecordBytes gk = must(encode_group_metadata_key({"g"}));
  EXPECT_FALSE(decode_offset_commit_key(Span(gk)).has_value());
  RecordBytes ok = must(encode_offset_commit_key({"g", "t", 0}));
  EXPECT_FALSE(decode_group_metadata_key(Span(ok)).has_value());

  for (int16_t version : {int16_t(1), int16_t(7), int16_t(-1), int16_t(0x7fff)}) {
    RecordBytes ov = must(encode_offset_commit_value({}));
    store_be16(ov.data(), uint16_t(version));
    auto r = decode_offset_commit_value(Span(ov));
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, Errc::corrupt);
    EXPECT_NE(r.error().message.find("unknown version " + std::to_string(version)),
              std::string::npos)
        << r.error().message;
    RecordBytes gv = must(encode_group_metadata_value(many_members(2)));
    store_be16(gv.data(), uint16_t(version));
    auto g = decode_group_metadata_value(Span(gv));
    ASSERT_FALSE(g.has_value());
    EXPECT_NE(g.error().message.find("unknown version"), std::string::npos) << g.error().message;
  }
}

TEST(GroupRecords, LengthsAreBoundedByTheInput) {
  // A member count far beyond the bytes present is refused before anything is reserved.
  RecordBytes b = must(encode_group_metadata_value({.protocol_type = "consumer"}));
  store_be32(b.data() + b.size() - 4, 0x7fffffff);
  auto r = decode_group_metadata_value(Span(b));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("member_count"), std::string::npos) << r.error().message;

  // A string length beyond the end, a negative non-null length, and null where not allowed.
  RecordBytes k = must(encode_group_metadata_key({"abc"}));
  store_be16(k.data() + 1, 0x7fff);
  auto kr = decode_key(Span(k));
  ASSERT_FALSE(kr.has_value());
  EXPECT_NE(kr.error().message.find("group_id"), std::string::npos) << kr.error().message;
  store_be16(k.data() + 1, uint16_t(-2));
  EXPECT_FALSE(decode_key(Span(k)).has_value());
  store_be16(k.data() + 1, uint16_t(-1));
  EXPECT_FALSE(decode_key(Span(k)).has_value());

  // A byte-array length beyond the end.
  GroupMetadataValue one = many_members(1);
  one.members[0].assignment.clear();
  RecordBytes g = must(encode_group_metadata_value(one));
  store_be32(g.data() + g.size() - 4, 0x7fffffff);
  auto gr = decode_group_metadata_value(Span(g));
  ASSERT_FALSE(gr.has_value());
  EXPECT_NE(gr.error().message.find("assignment"), std::string::npos) << gr.error().message;
}

TEST(GroupRecords, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20'000; ++i) {
    RecordBytes b(rng() % 64);
    for (auto& x : b) x = uint8_t(rng());
    if (!b.empty() && i % 2 == 0) b[0] = uint8_t(1 + i % 4 / 2);  // often a valid key type
    (void)decode_key(Span(b));
    if (b.size() >= 2 && i % 3 == 0) b[0] = b[1] = 0;  // often version 0
    (void)decode_offset_commit_value(Span(b));
    (void)decode_group_metadata_value(Span(b));
  }
}

// ---- Replay ----

struct LogRecord {
  RecordBytes key;
  std::optional<RecordBytes> value;
};

struct Model {
  std::map<std::string, GroupStateSnapshot::GroupOffsets> offsets;
  std::map<std::string, GroupMetadataValue> groups;
};

Result<void> apply(GroupStateSnapshot& s, const LogRecord& r) {
  std::optional<Span> value;
  if (r.value) value = Span(*r.value);
  return s.apply(Span(r.key), value);
}

void expect_same(const GroupStateSnapshot& s, const Model& m) {
  ASSERT_EQ(s.offsets(), m.offsets);
  ASSERT_EQ(s.groups(), m.groups);
}

class Replay : public ::testing::TestWithParam<uint64_t> {};

TEST_P(Replay, MatchesAMapModelAndSurvivesCompaction) {
  std::mt19937_64 rng(GetParam());
  auto pick = [&](size_t n) { return size_t(rng() % n); };
  const std::vector<std::string> group_ids = {"a", "b", "c", ""};
  const std::vector<std::string> topics = {"t", "u"};

  GroupStateSnapshot snapshot;
  Model model;
  std::vector<LogRecord> log;
  int64_t applied = 0;
  for (int step = 0; step < 3000; ++step) {
    const std::string& group = group_ids[pick(group_ids.size())];
    LogRecord rec;
    switch (pick(10)) {
      case 0:
      case 1:
      case 2:
      case 3: {  // commit
        OffsetCommitKey key{group, topics[pick(topics.size())], int32_t(pick(3))};
        OffsetCommitValue v{.offset = int64_t(rng() % 1'000'000),
                            .leader_epoch = int32_t(pick(4)) - 1,
                            .commit_timestamp_ms = step,
                            .expire_timestamp_ms = pick(2) ? -1 : step + 1000};
        if (pick(2)) v.metadata = std::string(pick(20), 'm');
        rec = {must(encode_offset_commit_key(key)), must(encode_offset_commit_value(v))};
        model.offsets[group].insert_or_assign({key.topic, key.partition}, v);
        break;
      }
      case 4:
      case 5: {  // offset tombstone (also for offsets that were never committed)
        OffsetCommitKey key{group, topics[pick(topics.size())], int32_t(pick(3))};
        rec = {must(encode_offset_commit_key(key)), std::nullopt};
        auto it = model.offsets.find(group);
        if (it != model.offsets.end()) {
          it->second.erase({key.topic, key.partition});
          if (it->second.empty()) model.offsets.erase(it);
        }
        break;
      }
      case 6:
      case 7: {  // group metadata
        GroupMetadataValue v = many_members(int(pick(4)));
        v.generation = step;
        if (v.members.empty()) v.leader_id.reset();
        rec = {must(encode_group_metadata_key({group})), must(encode_group_metadata_value(v))};
        model.groups.insert_or_assign(group, v);
        break;
      }
      case 8: {  // group tombstone: the group's offsets stay
        rec = {must(encode_group_metadata_key({group})), std::nullopt};
        model.groups.erase(group);
        break;
      }
      case 9: {  // a damaged record: refused, and nothing changes
        LogRecord bad;
        if (pick(2)) {
          bad.key = must(encode_offset_commit_key({group, "t", 0}));
          bad.value = must(encode_offset_commit_value({.offset = 1}));
        } else {
          bad.key = must(encode_group_metadata_key({group}));
          bad.value = must(encode_group_metadata_value(many_members(2)));
        }
        RecordBytes& target = pick(2) ? bad.key : *bad.value;
        target.resize(pick(target.size()));  // a strict prefix never decodes
        auto r = apply(snapshot, bad);
        ASSERT_FALSE(r.has_value());
        EXPECT_EQ(r.error().code, Errc::corrupt);
        expect_same(snapshot, model);
        continue;
      }
    }
    auto r = apply(snapshot, rec);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    ++applied;
    log.push_back(std::move(rec));
    expect_same(snapshot, model);
  }
  EXPECT_EQ(snapshot.records_applied(), applied);
  EXPECT_GT(applied, 2000);
  EXPECT_FALSE(model.offsets.empty());
  EXPECT_FALSE(model.groups.empty());
  for (const auto& [group, offsets] : model.offsets) {
    for (const auto& [tp, v] : offsets) {
      const OffsetCommitValue* got = snapshot.offset(group, tp.first, tp.second);
      ASSERT_NE(got, nullptr);
      EXPECT_EQ(*got, v);
    }
  }
  EXPECT_EQ(snapshot.offset("nope", "t", 0), nullptr);
  EXPECT_EQ(snapshot.group("nope"), nullptr);

  // Compaction keeps the last record per key (in log order); replaying what it keeps rebuilds
  // the same state, with or without the tombstones.
  std::map<RecordBytes, size_t> last;
  for (size_t i = 0; i < log.size(); ++i) last[log[i].key] = i;
  for (bool keep_tombstones : {true, false}) {
    GroupStateSnapshot rebuilt;
    for (size_t i = 0; i < log.size(); ++i) {
      if (last[log[i].key] != i) continue;
      if (!log[i].value && !keep_tombstones) continue;
      ASSERT_TRUE(apply(rebuilt, log[i]).has_value());
    }
    expect_same(rebuilt, model);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, Replay, ::testing::Values(1, 2, 3, 42, 20240601));

}  // namespace
}  // namespace ordo::coordinator
