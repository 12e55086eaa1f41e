#include "broker/topics.h"

#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "base/crc32c.h"
#include "base/file.h"
#include "broker/config.h"
#include "model/topic_partition.h"

namespace ordo::broker {

namespace {

constexpr std::string_view kMagicLine = "ordo-topics 1";
constexpr size_t kMaxFileBytes = size_t(64) << 20;

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    size_t i = s.find(sep);
    out.push_back(s.substr(0, i));
    if (i == std::string_view::npos) return out;
    s.remove_prefix(i + 1);
  }
}

template <typename T>
std::optional<T> parse_int(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The value of one lower-case hex digit (exactly as the encoder writes it), or -1.
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::optional<TopicId> parse_id(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  TopicId id{};
  for (size_t i = 0; i < 32; ++i) {
    int d = hex_digit(hex[i]);
    if (d < 0) return std::nullopt;
    id[i / 2] = uint8_t(id[i / 2] << 4 | d);
  }
  return id;
}

bool is_config_token(std::string_view s) {
  if (s.empty() || s.size() > 1024) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

// Every Kafka 3.9 topic config, in name order. `effect` says whether Ordo acts on it; the
// ones without effect are accepted (with their type's validation) and reported by
// DescribeConfigs so that tools written for Kafka work; docs/configuration.md says why each
// has none. `fixed_default` is the Kafka default of a config that no broker setting backs.
constexpr int64_t kI32 = std::numeric_limits<int32_t>::max();
constexpr int64_t kI64 = std::numeric_limits<int64_t>::max();
constexpr std::string_view kLongMax = "9223372036854775807";

const std::vector<TopicConfigDef> kDefs = {
    {"cleanup.policy", ConfigType::list, "delete, compact or compact,delete", true, {}},
    {"compression.gzip.level", ConfigType::int_,
     "gzip level of batches the broker recompresses: -1 (zlib's default) or 1-9", true, "-1"},
    {"compression.lz4.level", ConfigType::int_,
     "lz4 level of batches the broker recompresses: 1-17", true, "9"},
    {"compression.type", ConfigType::string,
     "codec of stored batches: producer (as sent), uncompressed, gzip, snappy, lz4 or zstd; "
     "other codecs are recompressed on produce",
     true, "producer"},
    {"compression.zstd.level", ConfigType::int_,
     "zstd level of batches the broker recompresses: -131072 to 22", true, "3"},
    {"delete.retention.ms",
     ConfigType::long_,
     "how long a tombstone stays in a compacted topic after its record's time",
     true,
     {}},
    {"file.delete.delay.ms", ConfigType::long_,
     "no effect: a segment's files are removed as soon as the segment leaves the log", false,
     "60000"},
    {"flush.messages", ConfigType::long_,
     "no effect: the broker's log.flush.mode decides when appends reach the disk", false, kLongMax},
    {"flush.ms", ConfigType::long_,
     "no effect: the broker's log.flush.mode decides when appends reach the disk", false, kLongMax},
    {"follower.replication.throttled.replicas", ConfigType::list,
     "no effect: a single broker has no replication to throttle", false, ""},
    {"index.interval.bytes", ConfigType::int_, "bytes between two offset index entries", true, {}},
    {"leader.replication.throttled.replicas", ConfigType::list,
     "no effect: a single broker has no replication to throttle", false, ""},
    {"local.retention.bytes", ConfigType::long_, "no effect: no tiered storage", false, "-2"},
    {"local.retention.ms", ConfigType::long_, "no effect: no tiered storage", false, "-2"},
    {"max.compaction.lag.ms",
     ConfigType::long_,
     "a dirty segment older than this is compacted whatever the dirty ratio",
     true,
     {}},
    {"max.message.bytes", ConfigType::int_, "largest record batch the topic accepts", true, {}},
    {"message.downconversion.enable", ConfigType::boolean,
     "no effect: Ordo serves Fetch v4 and later only, which never down-converts", false, "true"},
    {"message.format.version", ConfigType::string,
     "no effect: batches are always stored in format v2 (as Kafka 3.0 and later)", false,
     "3.0-IV1"},
    {"message.timestamp.after.max.ms", ConfigType::long_,
     "CreateTime topics refuse a record whose timestamp is this far ahead of the broker's clock",
     true, kLongMax},
    {"message.timestamp.before.max.ms", ConfigType::long_,
     "CreateTime topics refuse a record whose timestamp is this far behind the broker's clock",
     true, kLongMax},
    {"message.timestamp.difference.max.ms", ConfigType::long_,
     "deprecated: the before/after limit where message.timestamp.before.max.ms or "
     "message.timestamp.after.max.ms is not set",
     true, kLongMax},
    {"message.timestamp.type", ConfigType::string, "CreateTime or LogAppendTime", true, {}},
    {"min.cleanable.dirty.ratio",
     ConfigType::double_,
     "dirty share of the cleanable bytes that makes a compaction due",
     true,
     {}},
    {"min.compaction.lag.ms",
     ConfigType::long_,
     "records younger than this are not compacted",
     true,
     {}},
    {"min.insync.replicas",
     ConfigType::int_,
     "replicas that must have an acks=all write",
     true,
     {}},
    {"preallocate", ConfigType::boolean,
     "no effect: preallocation is the broker's log.preallocate.mode", false, "false"},
    {"remote.log.copy.disable", ConfigType::boolean, "no effect: no tiered storage", false,
     "false"},
    {"remote.log.delete.on.disable", ConfigType::boolean, "no effect: no tiered storage", false,
     "false"},
    {"remote.storage.enable", ConfigType::boolean, "false only: tiered storage is not supported",
     false, "false"},
    {"retention.bytes",
     ConfigType::long_,
     "size per partition above which old segments go; -1: none",
     true,
     {}},
    {"retention.ms", ConfigType::long_, "age after which old segments go; -1: forever", true, {}},
    {"segment.bytes", ConfigType::int_, "size at which a segment is rolled", true, {}},
    {"segment.index.bytes", ConfigType::int_,
     "no effect: a segment's indexes have no preallocated size (kept in memory, written on seal)",
     false, "10485760"},
    {"segment.jitter.ms", ConfigType::long_, "no effect: segments roll at segment.ms exactly",
     false, "0"},
    {"segment.ms", ConfigType::long_, "age at which a segment is rolled", true, {}},
    {"unclean.leader.election.enable", ConfigType::boolean,
     "no effect: a single broker is every partition's only replica", false, "false"},
};

Result<int64_t> int_value(std::string_view name, std::string_view value, int64_t min, int64_t max) {
  auto v = parse_int<int64_t>(value);
  if (!v || *v < min || *v > max) {
    return make_error(Errc::invalid_argument, "{}: '{}' is not an integer in [{}, {}]", name, value,
                      min, max);
  }
  return *v;
}

// compression.type's codec names (Kafka's BrokerCompressionType) -> batch attribute codec.
std::optional<uint8_t> codec_by_name(std::string_view v) {
  if (v == "uncompressed") return 0;
  if (v == "gzip") return 1;
  if (v == "snappy") return 2;
  if (v == "lz4") return 3;
  if (v == "zstd") return 4;
  return std::nullopt;
}

// "*", or partition:broker pairs separated by commas (Kafka's ThrottledReplicaListValidator).
bool valid_throttled_replicas(std::string_view v) {
  if (v.empty() || v == "*") return true;
  for (auto pair : split(v, ',')) {
    auto f = split(pair, ':');
    if (f.size() != 2 || !parse_int<int32_t>(f[0]) || !parse_int<int32_t>(f[1]) ||
        *parse_int<int32_t>(f[0]) < 0 || *parse_int<int32_t>(f[1]) < 0) {
      return false;
    }
  }
  return true;
}

// A Kafka release or inter-broker protocol version: 0.8.0, 0.10.2-IV0, 2.8, 3.0-IV1, ...
bool valid_kafka_version(std::string_view v) {
  auto dash = v.find('-');
  std::string_view numbers = v.substr(0, dash);
  auto parts = split(numbers, '.');
  if (parts.size() < 2 || parts.size() > 4) return false;
  for (auto p : parts) {
    if (!parse_int<int32_t>(p) || *parse_int<int32_t>(p) < 0) return false;
  }
  if (dash == std::string_view::npos) return true;
  std::string_view iv = v.substr(dash + 1);
  return iv.size() > 2 && iv.substr(0, 2) == "IV" && parse_int<int32_t>(iv.substr(2)) &&
         *parse_int<int32_t>(iv.substr(2)) >= 0;
}

// The value check of a config Ordo accepts without acting on it: its Kafka type and range.
Result<void> validate_inert(const TopicConfigDef& d, std::string_view value) {
  std::string_view name = d.name;
  if (name == "remote.storage.enable") {
    if (value == "false") return ok();
    return make_error(Errc::invalid_argument,
                      "remote.storage.enable: '{}' is not false (tiered storage is not supported)",
                      value);
  }
  switch (d.type) {
    case ConfigType::boolean:
      if (value == "true" || value == "false") return ok();
      return make_error(Errc::invalid_argument, "{}: '{}' is not true or false", name, value);
    case ConfigType::list:
      if (valid_throttled_replicas(value)) return ok();
      return make_error(Errc::invalid_argument,
                        "{}: '{}' is not * or a list of partition:broker pairs", name, value);
    case ConfigType::string:
      if (valid_kafka_version(value)) return ok();
      return make_error(Errc::invalid_argument, "{}: '{}' is not a Kafka version", name, value);
    case ConfigType::int_:
      ORDO_TRY(int_value(name, value, 4, kI32));  // segment.index.bytes: at least 4
      return ok();
    case ConfigType::long_: {
      int64_t min = 0;
      if (name == "local.retention.bytes" || name == "local.retention.ms") min = -2;
      if (name == "flush.messages") min = 1;
      ORDO_TRY(int_value(name, value, min, kI64));
      return ok();
    }
    case ConfigType::short_:
    case ConfigType::double_:
      break;
  }
  ORDO_ASSERT(false);
  return ok();
}

}  // namespace

TopicId random_topic_id() {
  std::random_device rd;
  TopicId id{};
  do {
    for (size_t i = 0; i < id.size(); i += 4) {
      uint32_t r = rd();
      std::memcpy(&id[i], &r, 4);
    }
  } while (id == TopicId{});
  return id;
}

std::string topic_id_hex(const TopicId& id) {
  std::string s;
  for (uint8_t b : id) s += fmt::format("{:02x}", b);
  return s;
}

const std::vector<TopicConfigDef>& topic_config_defs() {
  return kDefs;
}

const TopicConfigDef* find_topic_config(std::string_view name) {
  for (const auto& d : kDefs) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

std::string topic_config_default(const BrokerConfig& b, std::string_view name) {
  if (name == "cleanup.policy")
    return std::string(storage::cleanup_policy_name(b.log.cleanup_policy));
  if (name == "delete.retention.ms") return std::to_string(b.log.delete_retention_ms);
  if (name == "max.compaction.lag.ms") return std::to_string(b.log.max_compaction_lag_ms);
  if (name == "min.cleanable.dirty.ratio")
    return fmt::format("{}", b.log.min_cleanable_dirty_ratio);
  if (name == "min.compaction.lag.ms") return std::to_string(b.log.min_compaction_lag_ms);
  if (name == "index.interval.bytes") return std::to_string(b.log.index_interval_bytes);
  if (name == "max.message.bytes") return std::to_string(b.message_max_bytes);
  if (name == "message.timestamp.type") return "CreateTime";
  if (name == "min.insync.replicas") return "1";
  if (name == "retention.bytes") return std::to_string(b.log.retention_bytes);
  if (name == "retention.ms") return std::to_string(b.log.retention_ms);
  if (name == "segment.bytes") return std::to_string(b.log.segment_bytes);
  if (name == "segment.ms") return std::to_string(b.log.segment_ms);
  const TopicConfigDef* d = find_topic_config(name);
  ORDO_ASSERT(d != nullptr && d->fixed_default.data() != nullptr);
  return std::string(d->fixed_default);
}

Result<void> validate_topic_config(std::string_view name, std::string_view value) {
  if (!find_topic_config(name)) {
    return make_error(Errc::invalid_argument, "unknown topic config '{}'", name);
  }
  if (!value.empty() && !is_config_token(value)) {
    return make_error(Errc::invalid_argument, "{}: value must be printable without spaces", name);
  }
  BrokerConfig defaults;
  ORDO_TRY(resolve_topic_settings(defaults, {{std::string(name), std::string(value)}}));
  return ok();
}

Result<TopicSettings> resolve_topic_settings(const BrokerConfig& b,
                                             const std::map<std::string, std::string>& configs) {
  TopicSettings s;
  s.log = b.log;
  s.cleanup_policy = std::string(storage::cleanup_policy_name(b.log.cleanup_policy));
  s.max_message_bytes = b.message_max_bytes;
  std::optional<int64_t> before;
  std::optional<int64_t> after;
  int64_t difference = kI64;
  std::optional<int> gzip_level;
  std::optional<int> lz4_level;
  std::optional<int> zstd_level;
  for (const auto& [name, value] : configs) {
    if (name == "cleanup.policy") {
      auto policy = storage::parse_cleanup_policy(value);
      if (!policy) {
        return make_error(Errc::invalid_argument,
                          "cleanup.policy: '{}' is not delete, compact or compact,delete", value);
      }
      // Time and size retention apply only when the policy includes delete (a compacted topic
      // such as __consumer_offsets keeps its latest values however old).
      s.log.cleanup_policy = *policy;
      s.cleanup_policy = value;
    } else if (name == "delete.retention.ms") {
      s.log.delete_retention_ms = ORDO_TRY(int_value(name, value, 0, kI64));
    } else if (name == "max.compaction.lag.ms") {
      s.log.max_compaction_lag_ms = ORDO_TRY(int_value(name, value, 1, kI64));
    } else if (name == "min.cleanable.dirty.ratio") {
      double d = -1;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), d);
      if (ec != std::errc() || end != value.data() + value.size() || !(d >= 0 && d <= 1)) {
        return make_error(Errc::invalid_argument,
                          "min.cleanable.dirty.ratio: '{}' is not a number in [0, 1]", value);
      }
      s.log.min_cleanable_dirty_ratio = d;
    } else if (name == "min.compaction.lag.ms") {
      s.log.min_compaction_lag_ms = ORDO_TRY(int_value(name, value, 0, kI64));
    } else if (name == "index.interval.bytes") {
      s.log.index_interval_bytes = int32_t(ORDO_TRY(int_value(name, value, 0, kI32)));
    } else if (name == "max.message.bytes") {
      s.max_message_bytes = ORDO_TRY(int_value(name, value, 0, kI32));
    } else if (name == "message.timestamp.type") {
      if (value == "CreateTime") {
        s.timestamp_type = model::TimestampType::create_time;
      } else if (value == "LogAppendTime") {
        s.timestamp_type = model::TimestampType::log_append_time;
      } else {
        return make_error(Errc::invalid_argument,
                          "message.timestamp.type: '{}' is not CreateTime or LogAppendTime", value);
      }
    } else if (name == "min.insync.replicas") {
      s.min_insync_replicas = int32_t(ORDO_TRY(int_value(name, value, 1, kI32)));
    } else if (name == "retention.bytes") {
      s.log.retention_bytes = ORDO_TRY(int_value(name, value, -1, kI64));
    } else if (name == "retention.ms") {
      s.log.retention_ms = ORDO_TRY(int_value(name, value, -1, kI64));
    } else if (name == "segment.bytes") {
      s.log.segment_bytes = ORDO_TRY(int_value(name, value, 14, kI32));
    } else if (name == "segment.ms") {
      s.log.segment_ms = ORDO_TRY(int_value(name, value, 1, kI64));
    } else if (name == "compression.type") {
      if (value == "producer") {
        s.compression_codec.reset();
      } else if (auto c = codec_by_name(value)) {
        s.compression_codec = *c;
      } else {
        return make_error(Errc::invalid_argument,
                          "compression.type: '{}' is not producer, uncompressed, gzip, snappy, lz4 "
                          "or zstd",
                          value);
      }
    } else if (name == "compression.gzip.level") {
      gzip_level = int(ORDO_TRY(int_value(name, value, -1, 9)));
      if (*gzip_level == 0) {
        return make_error(Errc::invalid_argument, "compression.gzip.level: 0 is not -1 or 1-9");
      }
    } else if (name == "compression.lz4.level") {
      lz4_level = int(ORDO_TRY(int_value(name, value, 1, 17)));
    } else if (name == "compression.zstd.level") {
      zstd_level = int(ORDO_TRY(int_value(name, value, -131072, 22)));
    } else if (name == "message.timestamp.after.max.ms") {
      after = ORDO_TRY(int_value(name, value, 0, kI64));
    } else if (name == "message.timestamp.before.max.ms") {
      before = ORDO_TRY(int_value(name, value, 0, kI64));
    } else if (name == "message.timestamp.difference.max.ms") {
      difference = ORDO_TRY(int_value(name, value, 0, kI64));
    } else if (const TopicConfigDef* d = find_topic_config(name); d != nullptr && !d->effect) {
      ORDO_TRY(validate_inert(*d, value));
    } else {
      return make_error(Errc::invalid_argument, "unknown topic config '{}'", name);
    }
  }
  // Kafka 3.6+: the deprecated difference limit stands in for a side left at its default.
  s.timestamp_before_max_ms = before.value_or(difference);
  s.timestamp_after_max_ms = after.value_or(difference);
  if (s.compression_codec == 1 && gzip_level) s.compression_level = *gzip_level;
  // lz4's default level 9 is the fast compressor (as Kafka's); other levels the high one.
  if (s.compression_codec == 3 && lz4_level && *lz4_level != 9) s.compression_level = *lz4_level;
  if (s.compression_codec == 4 && zstd_level) s.compression_level = *zstd_level;
  ORDO_TRY(s.log.validate());
  return s;
}

// ---- registry ----

Result<std::unique_ptr<TopicRegistry>> TopicRegistry::open(const std::string& data_dir) {
  std::string path = data_dir + "/" + std::string(kFileName);
  auto reg = std::unique_ptr<TopicRegistry>(new TopicRegistry(path));
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return reg;
  std::string text = ORDO_TRY(read_file(path, kMaxFileBytes));
  TopicMap topics;
  std::vector<std::string> deleting;
  std::vector<PendingCreate> creating;
  if (auto r = decode(text, topics, deleting, creating); !r) {
    return make_error(Errc::corrupt, "{}: {}", path, r.error().message);
  }
  reg->topics_ = std::make_shared<TopicMap>(std::move(topics));
  reg->deleting_ = std::move(deleting);
  reg->creating_ = std::move(creating);
  return reg;
}

std::string TopicRegistry::encode(const TopicMap& topics, const std::vector<std::string>& deleting,
                                  const std::vector<PendingCreate>& creating) {
  std::string out(kMagicLine);
  out += '\n';
  for (const auto& [name, t] : topics) {
    out += fmt::format("topic {} {} {}\n", name, topic_id_hex(t.id), t.partitions);
    for (const auto& [k, v] : t.configs) out += fmt::format("config {} {} {}\n", name, k, v);
  }
  for (const auto& name : deleting) out += fmt::format("deleting {}\n", name);
  for (const auto& c : creating) out += fmt::format("creating {} {} {}\n", c.topic, c.from, c.to);
  out += fmt::format("crc32c {:08x}\n", crc32c(0, out.data(), out.size()));
  return out;
}

Result<void> TopicRegistry::decode(std::string_view text, TopicMap& topics,
                                   std::vector<std::string>& deleting,
                                   std::vector<PendingCreate>& creating) {
  size_t crc_at = text.rfind("crc32c ");
  if (crc_at == std::string_view::npos || (crc_at > 0 && text[crc_at - 1] != '\n')) {
    return make_error(Errc::corrupt, "no checksum line");
  }
  std::string_view crc_line = text.substr(crc_at + 7);
  if (crc_line.size() != 9 || crc_line[8] != '\n') {
    return make_error(Errc::corrupt, "bad checksum line");
  }
  uint32_t want = 0;
  for (char c : crc_line.substr(0, 8)) {
    int d = hex_digit(c);
    if (d < 0) return make_error(Errc::corrupt, "bad checksum line");
    want = want << 4 | uint32_t(d);
  }
  std::string_view body = text.substr(0, crc_at);
  if (crc32c(0, body.data(), body.size()) != want) {
    return make_error(Errc::corrupt, "checksum mismatch");
  }
  auto lines = split(body, '\n');
  if (lines.empty() || lines[0] != kMagicLine) {
    return make_error(Errc::corrupt, "not an ordo topics file (first line)");
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    auto line = lines[i];
    if (line.empty()) continue;
    auto f = split(line, ' ');
    auto bad = [&] { return make_error(Errc::corrupt, "line {}: '{}'", i + 1, line); };
    if (f[0] == "topic" && f.size() == 4) {
      auto id = parse_id(f[2]);
      auto n = parse_int<int32_t>(f[3]);
      if (!model::is_valid_topic_name(f[1]) || !id || !n || *n < 1) return bad();
      topics[std::string(f[1])] = TopicInfo{std::string(f[1]), *id, *n, {}};
    } else if (f[0] == "config" && f.size() == 4) {
      auto it = topics.find(f[1]);
      if (it == topics.end()) return bad();
      it->second.configs[std::string(f[2])] = std::string(f[3]);
    } else if (f[0] == "deleting" && f.size() == 2) {
      deleting.emplace_back(f[1]);
    } else if (f[0] == "creating" && f.size() == 4) {
      auto from = parse_int<int32_t>(f[2]);
      auto to = parse_int<int32_t>(f[3]);
      if (!model::is_valid_topic_name(f[1]) || !from || !to || *from < 0 || *to <= *from) {
        return bad();
      }
      creating.push_back({std::string(f[1]), *from, *to});
    } else {
      return bad();
    }
  }
  return ok();
}

std::shared_ptr<const TopicMap> TopicRegistry::snapshot() const {
  std::lock_guard lock(mu_);
  return topics_;
}

const TopicInfo* TopicRegistry::find(const TopicMap& m, std::string_view name) const {
  auto it = m.find(name);
  return it == m.end() ? nullptr : &it->second;
}

std::vector<std::string> TopicRegistry::pending_deletes() const {
  std::lock_guard lock(mu_);
  return deleting_;
}

std::vector<PendingCreate> TopicRegistry::pending_creates() const {
  std::lock_guard lock(mu_);
  return creating_;
}

std::unique_ptr<TopicRegistry> TopicRegistry::in_memory() {
  return std::unique_ptr<TopicRegistry>(new TopicRegistry(std::string()));
}

Result<void> TopicRegistry::store(std::shared_ptr<const TopicMap> next,
                                  std::vector<std::string> deleting,
                                  std::vector<PendingCreate> creating) {
  if (!path_.empty()) {
    std::string text = encode(*next, deleting, creating);
    ORDO_TRY(write_file_atomic(path_, text));
  }
  std::lock_guard lock(mu_);
  topics_ = std::move(next);
  deleting_ = std::move(deleting);
  creating_ = std::move(creating);
  return ok();
}

Result<void> TopicRegistry::begin_create(PendingCreate c) {
  ORDO_ASSERT(model::is_valid_topic_name(c.topic) && c.from >= 0 && c.to > c.from);
  auto creating = pending_creates();
  std::erase_if(creating, [&](const PendingCreate& p) { return p.topic == c.topic; });
  creating.push_back(std::move(c));
  return store(snapshot(), pending_deletes(), std::move(creating));
}

Result<void> TopicRegistry::end_create(std::string_view topic) {
  auto creating = pending_creates();
  std::erase_if(creating, [&](const PendingCreate& p) { return p.topic == topic; });
  return store(snapshot(), pending_deletes(), std::move(creating));
}

Result<void> TopicRegistry::put(TopicInfo t) {
  ORDO_ASSERT(model::is_valid_topic_name(t.name) && t.partitions >= 1);
  auto next = std::make_shared<TopicMap>(*snapshot());
  auto creating = pending_creates();
  std::erase_if(creating, [&](const PendingCreate& p) { return p.topic == t.name; });
  (*next)[t.name] = std::move(t);
  return store(std::move(next), pending_deletes(), std::move(creating));
}

Result<void> TopicRegistry::begin_delete(std::string_view name) {
  auto next = std::make_shared<TopicMap>(*snapshot());
  auto it = next->find(name);
  if (it == next->end()) return make_error(Errc::not_found, "no topic {}", name);
  next->erase(it);
  auto deleting = pending_deletes();
  if (std::find(deleting.begin(), deleting.end(), name) == deleting.end()) {
    deleting.emplace_back(name);
  }
  return store(std::move(next), std::move(deleting), pending_creates());
}

Result<void> TopicRegistry::end_delete(std::string_view name) {
  auto deleting = pending_deletes();
  std::erase(deleting, name);
  return store(snapshot(), std::move(deleting), pending_creates());
}

}  // namespace ordo::broker
