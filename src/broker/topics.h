#pragma once
// Topic metadata: the registry of topics (name, id, partition count, per-topic configs) kept
// in <data_dir>/topics, and the topic configs the broker understands.
//
// The registry is read by every network thread (snapshot(): an immutable map, swapped whole on
// each change) and changed by one thread at a time (the broker's metadata thread). Every
// change is written to disk (write_file_atomic: temp file, fsync, rename, fsync dir) before the
// new snapshot is published. Format: docs/broker-metadata.md.

#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/record_batch.h"
#include "storage/config.h"

namespace ordo::broker {

struct BrokerConfig;

using TopicId = std::array<uint8_t, 16>;
TopicId random_topic_id();
std::string topic_id_hex(const TopicId& id);

struct TopicInfo {
  std::string name;
  TopicId id{};
  int32_t partitions = 0;
  std::map<std::string, std::string> configs;  // only the ones set explicitly
  bool operator==(const TopicInfo&) const = default;
};

// ---- topic configs ----

enum class ConfigType : int8_t {
  boolean = 1,
  string = 2,
  int_ = 3,
  short_ = 4,
  long_ = 5,
  double_ = 6,
  list = 7
};

struct TopicConfigDef {
  std::string_view name;
  ConfigType type;
  std::string_view doc;
  bool effect = true;  // false: accepted and reported, but nothing in Ordo depends on it
  // The default of a config that no broker setting backs (a null view for the others).
  std::string_view fixed_default;
};
// Every topic config of Kafka 3.9 (the broker accepts them all), in name order.
const std::vector<TopicConfigDef>& topic_config_defs();
const TopicConfigDef* find_topic_config(std::string_view name);
// The broker-wide default of a topic config (from the broker's settings).
std::string topic_config_default(const BrokerConfig& broker, std::string_view name);
// Checks one value; the error message says what is accepted.
Result<void> validate_topic_config(std::string_view name, std::string_view value);

// A topic's effective settings: broker defaults overridden by the topic's configs.
struct TopicSettings {
  storage::LogConfig log;
  int64_t max_message_bytes = 0;
  model::TimestampType timestamp_type = model::TimestampType::create_time;
  std::string cleanup_policy = "delete";
  int32_t min_insync_replicas = 1;
  // compression.type: the codec (batch attribute value, 0 = none) every stored batch is
  // recompressed to; nullopt for "producer" (stored as sent).
  std::optional<uint8_t> compression_codec;
  // compression.{gzip,lz4,zstd}.level for that codec; nullopt: the codec's own default.
  std::optional<int> compression_level;
  // CreateTime topics refuse records whose timestamp is further than this from the broker's
  // clock (message.timestamp.before.max.ms / after.max.ms, or difference.max.ms).
  int64_t timestamp_before_max_ms = std::numeric_limits<int64_t>::max();
  int64_t timestamp_after_max_ms = std::numeric_limits<int64_t>::max();
};
Result<TopicSettings> resolve_topic_settings(const BrokerConfig& broker,
                                             const std::map<std::string, std::string>& configs);

// ---- the registry ----

using TopicMap = std::map<std::string, TopicInfo, std::less<>>;

// A creation in progress: partitions [from, to) of `topic` are being made (from = 0 for a new
// topic, the old count when partitions are added). Recorded before the first partition dir is
// made and dropped in the same write that registers the result: a start that finds one undoes
// it (removes those partitions), so a crash leaves the whole topic or none of it.
struct PendingCreate {
  std::string topic;
  int32_t from = 0;
  int32_t to = 0;
  bool operator==(const PendingCreate&) const = default;
};

class TopicRegistry {
 public:
  static constexpr std::string_view kFileName = "topics";

  // Loads <data_dir>/topics (an empty registry when the file does not exist). A file that fails
  // its checksum or does not parse is an error: the broker refuses to start rather than forget
  // topics.
  static Result<std::unique_ptr<TopicRegistry>> open(const std::string& data_dir);
  // A registry kept in memory only (cluster mode: the controller's log is the record, and the
  // registry is rebuilt from it at each start).
  static std::unique_ptr<TopicRegistry> in_memory();

  std::shared_ptr<const TopicMap> snapshot() const;
  const TopicInfo* find(const TopicMap& m, std::string_view name) const;
  // Names of topics whose deletion started but whose partitions may still be on disk.
  std::vector<std::string> pending_deletes() const;

  // Creations that started but were neither registered nor undone (see PendingCreate).
  std::vector<PendingCreate> pending_creates() const;

  // Each change is persisted before it becomes visible.
  // Records a creation in progress (replacing one of the same topic).
  Result<void> begin_create(PendingCreate c);
  // Drops the record of an undone creation.
  Result<void> end_create(std::string_view topic);
  // Adds or replaces a topic; also drops its pending creation, in the same write.
  Result<void> put(TopicInfo t);
  // Removes the topic and records it as a pending delete.
  Result<void> begin_delete(std::string_view name);
  Result<void> end_delete(std::string_view name);

  // The file format, for tests and tools.
  static std::string encode(const TopicMap& topics, const std::vector<std::string>& deleting,
                            const std::vector<PendingCreate>& creating = {});
  static Result<void> decode(std::string_view text, TopicMap& topics,
                             std::vector<std::string>& deleting,
                             std::vector<PendingCreate>& creating);

 private:
  explicit TopicRegistry(std::string path) : path_(std::move(path)) {}
  Result<void> store(std::shared_ptr<const TopicMap> next, std::vector<std::string> deleting,
                     std::vector<PendingCreate> creating);

  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const TopicMap> topics_ = std::make_shared<TopicMap>();
  std::vector<std::string> deleting_;
  std::vector<PendingCreate> creating_;
};

}  // namespace ordo::broker
