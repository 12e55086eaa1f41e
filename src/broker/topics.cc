#include "broker/topics.h"

#include <charconv>
#include <cstring>
#include <filesystem>
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

const std::vector<TopicConfigDef> kDefs = {
    {"cleanup.policy", ConfigType::list, "delete, compact or compact,delete"},
    {"delete.retention.ms", ConfigType::long_,
     "how long a tombstone stays in a compacted topic after its record's time"},
    {"index.interval.bytes", ConfigType::int_, "bytes between two offset index entries"},
    {"max.compaction.lag.ms", ConfigType::long_,
     "a dirty segment older than this is compacted whatever the dirty ratio"},
    {"max.message.bytes", ConfigType::int_, "largest record batch the topic accepts"},
    {"message.timestamp.type", ConfigType::string, "CreateTime or LogAppendTime"},
    {"min.cleanable.dirty.ratio", ConfigType::double_,
     "dirty share of the cleanable bytes that makes a compaction due"},
    {"min.compaction.lag.ms", ConfigType::long_, "records younger than this are not compacted"},
    {"min.insync.replicas", ConfigType::int_, "replicas that must have an acks=all write"},
    {"retention.bytes", ConfigType::long_,
     "size per partition above which old segments go; -1: none"},
    {"retention.ms", ConfigType::long_, "age after which old segments go; -1: forever"},
    {"segment.bytes", ConfigType::int_, "size at which a segment is rolled"},
    {"segment.ms", ConfigType::long_, "age at which a segment is rolled"},
};

Result<int64_t> int_value(std::string_view name, std::string_view value, int64_t min, int64_t max) {
  auto v = parse_int<int64_t>(value);
  if (!v || *v < min || *v > max) {
    return make_error(Errc::invalid_argument, "{}: '{}' is not an integer in [{}, {}]", name, value,
                      min, max);
  }
  return *v;
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
  ORDO_ASSERT(false);
  return {};
}

Result<void> validate_topic_config(std::string_view name, std::string_view value) {
  if (!find_topic_config(name)) {
    return make_error(Errc::invalid_argument, "unknown topic config '{}'", name);
  }
  if (!is_config_token(value)) {
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
  constexpr int64_t kI32 = std::numeric_limits<int32_t>::max();
  constexpr int64_t kI64 = std::numeric_limits<int64_t>::max();
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
    } else {
      return make_error(Errc::invalid_argument, "unknown topic config '{}'", name);
    }
  }
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

Result<void> TopicRegistry::store(std::shared_ptr<const TopicMap> next,
                                  std::vector<std::string> deleting,
                                  std::vector<PendingCreate> creating) {
  std::string text = encode(*next, deleting, creating);
  ORDO_TRY(write_file_atomic(path_, text));
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
