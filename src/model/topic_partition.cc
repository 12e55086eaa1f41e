#include "model/topic_partition.h"

#include <charconv>

namespace ordo::model {

bool is_valid_topic_name(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<TopicPartition> parse_partition_dir(std::string_view name) {
  auto dash = name.rfind('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 == name.size()) return std::nullopt;
  std::string_view topic = name.substr(0, dash);
  std::string_view num = name.substr(dash + 1);
  int32_t partition = -1;
  auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), partition);
  if (ec != std::errc() || ptr != num.data() + num.size() || partition < 0) return std::nullopt;
  if (num.size() > 1 && num[0] == '0') return std::nullopt;  // one spelling per partition
  if (!is_valid_topic_name(topic)) return std::nullopt;
  return TopicPartition{std::string(topic), partition};
}

}  // namespace ordo::model
