#include "coordinator/group_records.h"

#include <limits>

#include "base/assert.h"
#include "base/coding.h"

namespace ordo::coordinator {
namespace {

constexpr size_t kBytesMax = size_t(std::numeric_limits<int32_t>::max());
// The smallest member: four empty strings (2 bytes each), two timeouts, two empty byte arrays.
constexpr size_t kMemberMinBytes = 4 * 2 + 2 * 4 + 2 * 4;

// Appends fields; the first field that the format cannot hold is remembered and reported by
// finish(), so encoders read as a plain list of fields.
class Writer {
 public:
  explicit Writer(const char* record) : record_(record) {}

  void u8(uint8_t v) { out_.push_back(v); }
  void i16(int16_t v) { put(uint16_t(v), 2); }
  void i32(int32_t v) { put(uint32_t(v), 4); }
  void i64(int64_t v) { put(uint64_t(v), 8); }

  void string(const char* field, const std::string& s) {
    if (s.size() > kRecordStringMaxBytes) {
      fail(field,
           fmt::format("a string of {} bytes (at most {})", s.size(), kRecordStringMaxBytes));
      return;
    }
    i16(int16_t(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void nullable_string(const char* field, const std::optional<std::string>& s) {
    if (!s) {
      i16(-1);
      return;
    }
    string(field, *s);
  }
  void bytes(const char* field, const std::vector<uint8_t>& b) {
    if (b.size() > kBytesMax) {
      fail(field, fmt::format("{} bytes (at most {})", b.size(), kBytesMax));
      return;
    }
    i32(int32_t(b.size()));
    out_.insert(out_.end(), b.begin(), b.end());
  }
  // A field whose only negative value is the sentinel -1 ("none").
  void check_at_least_minus_one(const char* field, int64_t v) {
    if (v < -1) fail(field, fmt::format("{} (must be -1 or more)", v));
  }
  void fail(const char* field, std::string what) {
    if (!error_) error_ = make_error(Errc::invalid_argument, "{}: {}: {}", record_, field, what);
  }

  Result<RecordBytes> finish() && {
    if (error_) return std::move(*error_);
    return std::move(out_);
  }

 private:
  void put(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(uint8_t(v >> (8 * i)));
  }

  const char* record_;
  RecordBytes out_;
  std::optional<Error> error_;
};

// Reads fields from bytes that may be anything: every read is checked against what is left,
// and every failure is Errc::corrupt naming the record, the field and the byte position.
class Reader {
 public:
  Reader(const char* record, std::span<const uint8_t> in) : record_(record), in_(in) {}

  Result<uint8_t> u8(const char* field) {
    ORDO_TRY(need(field, 1));
    return in_[pos_++];
  }
  Result<int16_t> i16(const char* field) {
    ORDO_TRY(need(field, 2));
    auto v = int16_t(load_be16(&in_[pos_]));
    pos_ += 2;
    return v;
  }
  Result<int32_t> i32(const char* field) {
    ORDO_TRY(need(field, 4));
    auto v = int32_t(load_be32(&in_[pos_]));
    pos_ += 4;
    return v;
  }
  Result<int64_t> i64(const char* field) {
    ORDO_TRY(need(field, 8));
    auto v = int64_t(load_be64(&in_[pos_]));
    pos_ += 8;
    return v;
  }
  // A field whose only negative value is the sentinel -1 ("none"); `at` is where it began.
  Result<void> at_least_minus_one(size_t at, const char* field, int64_t v) const {
    if (v < -1) return corrupt_at(at, field, fmt::format("value {} (must be -1 or more)", v));
    return ok();
  }
  Result<std::optional<std::string>> nullable_string(const char* field) {
    size_t at = pos_;
    int16_t len = ORDO_TRY(i16(field));
    if (len == -1) return std::optional<std::string>();
    if (len < 0) return corrupt_at(at, field, fmt::format("string length {}", len));
    ORDO_TRY(need(field, size_t(len)));
    std::string s(reinterpret_cast<const char*>(&in_[pos_]), size_t(len));
    pos_ += size_t(len);
    return std::optional<std::string>(std::move(s));
  }
  Result<std::string> string(const char* field) {
    size_t at = pos_;
    auto s = ORDO_TRY(nullable_string(field));
    if (!s) return corrupt_at(at, field, "null where a string is required");
    return std::move(*s);
  }
  Result<std::vector<uint8_t>> bytes(const char* field) {
    size_t at = pos_;
    int32_t len = ORDO_TRY(i32(field));
    if (len < 0) return corrupt_at(at, field, fmt::format("byte array length {}", len));
    ORDO_TRY(need(field, size_t(len)));
    std::vector<uint8_t> b(in_.begin() + pos_, in_.begin() + pos_ + size_t(len));
    pos_ += size_t(len);
    return b;
  }

  size_t left() const { return in_.size() - pos_; }
  size_t pos() const { return pos_; }

  Result<void> finish() const {
    if (left() != 0) {
      return make_error(Errc::corrupt, "{}: {} trailing bytes after the last field (at byte {})",
                        record_, left(), pos_);
    }
    return ok();
  }

  Error corrupt(const char* field, std::string what) const { return corrupt_at(pos_, field, what); }
  Error corrupt_at(size_t at, const char* field, std::string_view what) const {
    return make_error(Errc::corrupt, "{}: field '{}' at byte {}: {}", record_, field, at, what);
  }

 private:
  Result<void> need(const char* field, size_t n) const {
    if (left() < n) {
      return corrupt(field, fmt::format("needs {} bytes, {} left of {}", n, left(), in_.size()));
    }
    return ok();
  }

  const char* record_;
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Reads the leading version of a value; only versions 0..newest are known. (Each version has one
// exact layout; when a version 1 exists, the decoder branches on the value returned here.)
Result<int16_t> read_version(Reader& r, int16_t newest) {
  int16_t version = ORDO_TRY(r.i16("version"));
  if (version < 0 || version > newest) {
    return r.corrupt_at(
        0, "version", fmt::format("unknown version {} (this build reads 0..{})", version, newest));
  }
  return version;
}

}  // namespace

Result<RecordBytes> encode_offset_commit_key(const OffsetCommitKey& key) {
  Writer w("offset commit key");
  w.u8(kOffsetCommitKeyType);
  w.string("group_id", key.group_id);
  w.string("topic", key.topic);
  if (key.partition < 0) w.fail("partition", fmt::format("{} is negative", key.partition));
  w.i32(key.partition);
  return std::move(w).finish();
}

Result<RecordBytes> encode_group_metadata_key(const GroupMetadataKey& key) {
  Writer w("group metadata key");
  w.u8(kGroupMetadataKeyType);
  w.string("group_id", key.group_id);
  return std::move(w).finish();
}

namespace {
// The key's first byte must be the expected type.
Result<void> expect_key_type(Reader& r, uint8_t want) {
  uint8_t type = ORDO_TRY(r.u8("type"));
  if (type != want) {
    return r.corrupt_at(0, "type", fmt::format("type {} where {} was expected", type, want));
  }
  return ok();
}
}  // namespace

Result<OffsetCommitKey> decode_offset_commit_key(std::span<const uint8_t> in) {
  Reader r("offset commit key", in);
  ORDO_TRY(expect_key_type(r, kOffsetCommitKeyType));
  OffsetCommitKey key;
  key.group_id = ORDO_TRY(r.string("group_id"));
  key.topic = ORDO_TRY(r.string("topic"));
  size_t at = r.pos();
  key.partition = ORDO_TRY(r.i32("partition"));
  if (key.partition < 0) {
    return r.corrupt_at(at, "partition", fmt::format("{} is negative", key.partition));
  }
  ORDO_TRY(r.finish());
  return key;
}

Result<GroupMetadataKey> decode_group_metadata_key(std::span<const uint8_t> in) {
  Reader r("group metadata key", in);
  ORDO_TRY(expect_key_type(r, kGroupMetadataKeyType));
  GroupMetadataKey key;
  key.group_id = ORDO_TRY(r.string("group_id"));
  ORDO_TRY(r.finish());
  return key;
}

Result<RecordKey> decode_key(std::span<const uint8_t> in) {
  if (in.empty()) return make_error(Errc::corrupt, "__consumer_offsets key: empty");
  switch (in[0]) {
    case kOffsetCommitKeyType:
      return RecordKey(ORDO_TRY(decode_offset_commit_key(in)));
    case kGroupMetadataKeyType:
      return RecordKey(ORDO_TRY(decode_group_metadata_key(in)));
    default:
      return make_error(Errc::corrupt,
                        "__consumer_offsets key: unknown type {} (this build reads {} and {})",
                        in[0], kOffsetCommitKeyType, kGroupMetadataKeyType);
  }
}

Result<RecordBytes> encode_offset_commit_value(const OffsetCommitValue& value) {
  Writer w("offset commit value");
  w.i16(kOffsetCommitValueVersion);
  w.i64(value.offset);
  w.check_at_least_minus_one("leader_epoch", value.leader_epoch);
  w.i32(value.leader_epoch);
  w.nullable_string("metadata", value.metadata);
  w.i64(value.commit_timestamp_ms);
  w.check_at_least_minus_one("expire_timestamp_ms", value.expire_timestamp_ms);
  w.i64(value.expire_timestamp_ms);
  return std::move(w).finish();
}

Result<OffsetCommitValue> decode_offset_commit_value(std::span<const uint8_t> in) {
  Reader r("offset commit value", in);
  [[maybe_unused]] int16_t version = ORDO_TRY(read_version(r, kOffsetCommitValueVersion));
  OffsetCommitValue v;
  v.offset = ORDO_TRY(r.i64("offset"));
  size_t at = r.pos();
  v.leader_epoch = ORDO_TRY(r.i32("leader_epoch"));
  ORDO_TRY(r.at_least_minus_one(at, "leader_epoch", v.leader_epoch));
  v.metadata = ORDO_TRY(r.nullable_string("metadata"));
  v.commit_timestamp_ms = ORDO_TRY(r.i64("commit_timestamp_ms"));
  at = r.pos();
  v.expire_timestamp_ms = ORDO_TRY(r.i64("expire_timestamp_ms"));
  ORDO_TRY(r.at_least_minus_one(at, "expire_timestamp_ms", v.expire_timestamp_ms));
  ORDO_TRY(r.finish());
  return v;
}

Result<RecordBytes> encode_group_metadata_value(const GroupMetadataValue& value) {
  Writer w("group metadata value");
  w.i16(kGroupMetadataValueVersion);
  w.string("protocol_type", value.protocol_type);
  w.i32(value.generation);
  w.nullable_string("protocol_name", value.protocol_name);
  w.nullable_string("leader_id", value.leader_id);
  w.check_at_least_minus_one("state_timestamp_ms", value.state_timestamp_ms);
  w.i64(value.state_timestamp_ms);
  if (value.members.size() > kBytesMax) w.fail("members", "more than 2^31-1 members");
  w.i32(int32_t(value.members.size()));
  for (const GroupMemberRecord& m : value.members) {
    w.string("member_id", m.member_id);
    w.nullable_string("group_instance_id", m.group_instance_id);
    w.string("client_id", m.client_id);
    w.string("client_host", m.client_host);
    w.i32(m.rebalance_timeout_ms);
    w.i32(m.session_timeout_ms);
    w.bytes("subscription", m.subscription);
    w.bytes("assignment", m.assignment);
  }
  return std::move(w).finish();
}

Result<GroupMetadataValue> decode_group_metadata_value(std::span<const uint8_t> in) {
  Reader r("group metadata value", in);
  [[maybe_unused]] int16_t version = ORDO_TRY(read_version(r, kGroupMetadataValueVersion));
  GroupMetadataValue v;
  v.protocol_type = ORDO_TRY(r.string("protocol_type"));
  v.generation = ORDO_TRY(r.i32("generation"));
  v.protocol_name = ORDO_TRY(r.nullable_string("protocol_name"));
  v.leader_id = ORDO_TRY(r.nullable_string("leader_id"));
  size_t at = r.pos();
  v.state_timestamp_ms = ORDO_TRY(r.i64("state_timestamp_ms"));
  ORDO_TRY(r.at_least_minus_one(at, "state_timestamp_ms", v.state_timestamp_ms));
  at = r.pos();
  int32_t count = ORDO_TRY(r.i32("member_count"));
  // Bound the count by the bytes present before reserving anything.
  if (count < 0 || size_t(count) > r.left() / kMemberMinBytes) {
    return r.corrupt_at(at, "member_count",
                        fmt::format("{} members cannot fit in the {} bytes left", count, r.left()));
  }
  v.members.reserve(size_t(count));
  for (int32_t i = 0; i < count; ++i) {
    GroupMemberRecord m;
    m.member_id = ORDO_TRY(r.string("member_id"));
    m.group_instance_id = ORDO_TRY(r.nullable_string("group_instance_id"));
    m.client_id = ORDO_TRY(r.string("client_id"));
    m.client_host = ORDO_TRY(r.string("client_host"));
    m.rebalance_timeout_ms = ORDO_TRY(r.i32("rebalance_timeout_ms"));
    m.session_timeout_ms = ORDO_TRY(r.i32("session_timeout_ms"));
    m.subscription = ORDO_TRY(r.bytes("subscription"));
    m.assignment = ORDO_TRY(r.bytes("assignment"));
    v.members.push_back(std::move(m));
  }
  ORDO_TRY(r.finish());
  return v;
}

Result<void> GroupStateSnapshot::apply(std::span<const uint8_t> key,
                                       std::optional<std::span<const uint8_t>> value) {
  RecordKey decoded = ORDO_TRY(decode_key(key));
  if (auto* k = std::get_if<OffsetCommitKey>(&decoded)) {
    if (!value) {
      auto group = offsets_.find(k->group_id);
      if (group != offsets_.end()) {
        group->second.erase(TopicPartition(k->topic, k->partition));
        if (group->second.empty()) offsets_.erase(group);
      }
    } else {
      OffsetCommitValue v = ORDO_TRY(decode_offset_commit_value(*value));
      offsets_[k->group_id].insert_or_assign(TopicPartition(std::move(k->topic), k->partition),
                                             std::move(v));
    }
  } else {
    auto& g = std::get<GroupMetadataKey>(decoded);
    if (!value) {
      groups_.erase(g.group_id);
    } else {
      GroupMetadataValue v = ORDO_TRY(decode_group_metadata_value(*value));
      groups_.insert_or_assign(std::move(g.group_id), std::move(v));
    }
  }
  ++records_applied_;
  return ok();
}

const OffsetCommitValue* GroupStateSnapshot::offset(const std::string& group_id,
                                                    const std::string& topic,
                                                    int32_t partition) const {
  auto group = offsets_.find(group_id);
  if (group == offsets_.end()) return nullptr;
  auto it = group->second.find(TopicPartition(topic, partition));
  return it == group->second.end() ? nullptr : &it->second;
}

const GroupMetadataValue* GroupStateSnapshot::group(const std::string& group_id) const {
  auto it = groups_.find(group_id);
  return it == groups_.end() ? nullptr : &it->second;
}

}  // namespace ordo::coordinator
