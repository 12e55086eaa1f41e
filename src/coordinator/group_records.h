#pragma once
// The records of the internal compacted topic `__consumer_offsets`: committed offsets and group
// metadata. The log is the source of truth; a coordinator rebuilds its state by replaying the
// topic from the start (GroupStateSnapshot below), and compaction keeps the latest value per key.
// The byte layouts are drawn in docs/consumer-offsets-format.md.
//
// Keys (no version: a new key layout gets a new type byte):
//
//   offset commit key    u8 type=1 | string group_id | string topic | i32 partition
//   group metadata key   u8 type=2 | string group_id
//
// Values (an int16 version first; a decoder reads every version up to its own and rejects the
// rest). A null value is a tombstone: the offset, or the group's metadata, was deleted.
//
//   offset commit value  i16 version=0 | i64 offset | i32 leader_epoch | nstring metadata |
//                        i64 commit_timestamp_ms | i64 expire_timestamp_ms
//   group metadata value i16 version=0 | string protocol_type | i32 generation |
//                        nstring protocol_name | nstring leader_id | i64 state_timestamp_ms |
//                        i32 member_count | member...
//   member               string member_id | nstring group_instance_id | string client_id |
//                        string client_host | i32 rebalance_timeout_ms | i32 session_timeout_ms |
//                        bytes subscription | bytes assignment
//
// All integers are big-endian. string: i16 length (0..32767) + bytes; nstring: the same, with
// length -1 for null; bytes: i32 length (0..2^31-1) + bytes.
//
// Decoding checks every length against the bytes present, rejects trailing bytes, unknown key
// types, unknown versions and out-of-range sentinels with Errc::corrupt, and allocates no more
// than the input's size implies. Every encoding is canonical: a decoded value re-encodes to the
// same bytes. Encoders reject values the format cannot hold with Errc::invalid_argument.

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"

namespace ordo::coordinator {

using RecordBytes = std::vector<uint8_t>;

inline constexpr uint8_t kOffsetCommitKeyType = 1;
inline constexpr uint8_t kGroupMetadataKeyType = 2;
inline constexpr int16_t kOffsetCommitValueVersion = 0;   // the newest this build writes/reads
inline constexpr int16_t kGroupMetadataValueVersion = 0;  // the newest this build writes/reads
inline constexpr size_t kRecordStringMaxBytes = 32767;    // int16 length

struct OffsetCommitKey {
  std::string group_id;
  std::string topic;
  int32_t partition = 0;  // >= 0
  bool operator==(const OffsetCommitKey&) const = default;
};

struct GroupMetadataKey {
  std::string group_id;
  bool operator==(const GroupMetadataKey&) const = default;
};

using RecordKey = std::variant<OffsetCommitKey, GroupMetadataKey>;

struct OffsetCommitValue {
  int64_t offset = 0;
  int32_t leader_epoch = -1;            // -1: none
  std::optional<std::string> metadata;  // null or up to 32767 bytes
  int64_t commit_timestamp_ms = 0;
  int64_t expire_timestamp_ms = -1;  // -1: none (the group's retention rule applies)
  bool operator==(const OffsetCommitValue&) const = default;
};

struct GroupMemberRecord {
  std::string member_id;
  std::optional<std::string> group_instance_id;
  std::string client_id;
  std::string client_host;
  int32_t rebalance_timeout_ms = 0;
  int32_t session_timeout_ms = 0;
  std::vector<uint8_t> subscription;  // the member's metadata for the chosen protocol
  std::vector<uint8_t> assignment;
  bool operator==(const GroupMemberRecord&) const = default;
};

struct GroupMetadataValue {
  std::string protocol_type;  // empty for a group that only commits offsets
  int32_t generation = 0;
  std::optional<std::string> protocol_name;
  std::optional<std::string> leader_id;
  int64_t state_timestamp_ms = -1;  // when the group last changed state; -1: none
  std::vector<GroupMemberRecord> members;
  bool operator==(const GroupMetadataValue&) const = default;
};

Result<RecordBytes> encode_offset_commit_key(const OffsetCommitKey& key);
Result<RecordBytes> encode_group_metadata_key(const GroupMetadataKey& key);
Result<OffsetCommitKey> decode_offset_commit_key(std::span<const uint8_t> in);
Result<GroupMetadataKey> decode_group_metadata_key(std::span<const uint8_t> in);
// Either kind of key, chosen by its type byte.
Result<RecordKey> decode_key(std::span<const uint8_t> in);

Result<RecordBytes> encode_offset_commit_value(const OffsetCommitValue& value);
Result<OffsetCommitValue> decode_offset_commit_value(std::span<const uint8_t> in);
Result<RecordBytes> encode_group_metadata_value(const GroupMetadataValue& value);
Result<GroupMetadataValue> decode_group_metadata_value(std::span<const uint8_t> in);

// The state a coordinator rebuilds from `__consumer_offsets`: records are applied in log order,
// a later value for a key replaces the earlier one, a tombstone (no value) removes it. A record
// that does not decode is refused with its error and changes nothing; what to do then (stop
// loading the partition) is the caller's decision.
//
// Deleting a group's metadata does not delete its offsets: they have keys of their own and get
// tombstones of their own (as DeleteGroups and offset expiry write them).
//
// Not thread-safe; the loader owns it until it hands the maps to the coordinator.
class GroupStateSnapshot {
 public:
  using TopicPartition = std::pair<std::string, int32_t>;
  using GroupOffsets = std::map<TopicPartition, OffsetCommitValue>;

  Result<void> apply(std::span<const uint8_t> key, std::optional<std::span<const uint8_t>> value);

  // Groups with at least one committed offset; an entry never holds an empty map.
  const std::map<std::string, GroupOffsets>& offsets() const { return offsets_; }
  const std::map<std::string, GroupMetadataValue>& groups() const { return groups_; }

  const OffsetCommitValue* offset(const std::string& group_id, const std::string& topic,
                                  int32_t partition) const;
  const GroupMetadataValue* group(const std::string& group_id) const;

  int64_t records_applied() const { return records_applied_; }

 private:
  std::map<std::string, GroupOffsets> offsets_;
  std::map<std::string, GroupMetadataValue> groups_;
  int64_t records_applied_ = 0;
};

}  // namespace ordo::coordinator
