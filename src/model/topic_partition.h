#pragma once
// A topic and partition: the name of one partition log.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace ordo::model {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;

  bool operator==(const TopicPartition&) const = default;
  auto operator<=>(const TopicPartition&) const = default;
  // "<topic>-<partition>", also the partition's directory name.
  std::string to_string() const { return fmt::format("{}-{}", topic, partition); }
};

// Kafka's topic name rules: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
bool is_valid_topic_name(std::string_view name);

// Parses a partition directory name "<topic>-<partition>"; nullopt when it is not one.
std::optional<TopicPartition> parse_partition_dir(std::string_view name);

}  // namespace ordo::model

template <>
struct std::hash<ordo::model::TopicPartition> {
  size_t operator()(const ordo::model::TopicPartition& tp) const noexcept {
    return std::hash<std::string>()(tp.topic) * 31 + std::hash<int32_t>()(tp.partition);
  }
};
