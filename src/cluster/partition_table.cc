#include "cluster/partition_table.h"

namespace ordo::cluster {

namespace {

// A new partition of `topic` (its index is the current count) with the next group id.
PartitionAssignment assignment_of(TableSnapshot& t, const std::string& topic, int32_t partition,
                                  const std::vector<NodeId>& replicas) {
  PartitionAssignment a;
  a.replicas = replicas;
  a.leader = replicas.empty() ? kNoLeader : replicas.front();
  a.leader_epoch = 0;
  a.group = t.next_group++;
  t.groups[a.group] = model::TopicPartition{topic, partition};
  return a;
}

void forget_groups(TableSnapshot& t, const std::vector<PartitionAssignment>& dropped) {
  for (const auto& a : dropped) t.groups.erase(a.group);
}

Result<void> check_replicas(const std::string& topic,
                            const std::vector<std::vector<NodeId>>& replicas) {
  for (const auto& r : replicas) {
    if (r.empty())
      return make_error(Errc::invalid_argument, "topic {}: a partition without replicas", topic);
  }
  return ok();
}

// Each apply_* edits `t` (a copy of the current table) and says whether anything changed.
Result<bool> apply_to(TableSnapshot& s, const CreateTopic& c) {
  TopicTable& t = s.topics;
  if (auto it = t.find(c.name); it != t.end()) {
    const TopicEntry& e = it->second;
    bool same = e.id == c.id && e.log == c.log && e.partitions.size() == c.replicas.size();
    for (size_t i = 0; same && i < c.replicas.size(); ++i) {
      same = e.partitions[i].replicas == c.replicas[i];
    }
    if (same) return false;
    return make_error(Errc::already_exists, "topic {} exists", c.name);
  }
  ORDO_TRY(check_replicas(c.name, c.replicas));
  TopicEntry e;
  e.name = c.name;
  e.id = c.id;
  e.log = c.log;
  for (const auto& r : c.replicas) {
    e.partitions.push_back(assignment_of(s, c.name, int32_t(e.partitions.size()), r));
  }
  t.emplace(c.name, std::move(e));
  return true;
}

Result<bool> apply_to(TableSnapshot& s, const AddPartitions& c) {
  TopicTable& t = s.topics;
  auto it = t.find(c.name);
  if (it == t.end()) return make_error(Errc::not_found, "no topic {}", c.name);
  auto& parts = it->second.partitions;
  const size_t to = size_t(c.from) + c.replicas.size();
  if (c.from < 0) return make_error(Errc::invalid_argument, "topic {}: from {}", c.name, c.from);
  if (parts.size() == to) {
    for (size_t i = 0; i < c.replicas.size(); ++i) {
      if (parts[size_t(c.from) + i].replicas != c.replicas[i]) {
        return make_error(Errc::invalid_argument, "topic {}: partition {} has other replicas",
                          c.name, size_t(c.from) + i);
      }
    }
    return false;
  }
  if (parts.size() != size_t(c.from)) {
    return make_error(Errc::invalid_argument, "topic {} has {} partitions, not {}", c.name,
                      parts.size(), c.from);
  }
  ORDO_TRY(check_replicas(c.name, c.replicas));
  for (const auto& r : c.replicas) {
    parts.push_back(assignment_of(s, c.name, int32_t(parts.size()), r));
  }
  return true;
}

Result<bool> apply_to(TableSnapshot& s, const DeletePartitions& c) {
  TopicTable& t = s.topics;
  auto it = t.find(c.name);
  if (it == t.end()) return false;
  auto& parts = it->second.partitions;
  if (c.from < 1) {
    return make_error(Errc::invalid_argument, "topic {}: a topic keeps at least one partition",
                      c.name);
  }
  if (parts.size() <= size_t(c.from)) return false;
  forget_groups(s, std::vector<PartitionAssignment>(parts.begin() + c.from, parts.end()));
  parts.resize(size_t(c.from));
  return true;
}

Result<bool> apply_to(TableSnapshot& s, const DeleteTopic& c) {
  TopicTable& t = s.topics;
  auto it = t.find(c.name);
  if (it == t.end()) return false;
  forget_groups(s, it->second.partitions);
  t.erase(it);
  return true;
}

Result<bool> apply_to(TableSnapshot& s, const SetConfig& c) {
  TopicTable& t = s.topics;
  auto it = t.find(c.name);
  if (it == t.end()) return make_error(Errc::not_found, "no topic {}", c.name);
  if (it->second.log == c.log) return false;
  it->second.log = c.log;
  return true;
}

Result<bool> apply_to(TableSnapshot& s, const SetLeader& c) {
  TopicTable& t = s.topics;
  auto it = t.find(c.tp.topic);
  if (it == t.end() || c.tp.partition < 0 ||
      size_t(c.tp.partition) >= it->second.partitions.size()) {
    return make_error(Errc::not_found, "no partition {}", c.tp.to_string());
  }
  PartitionAssignment& a = it->second.partitions[size_t(c.tp.partition)];
  if (a.leader == c.leader && a.leader_epoch == c.leader_epoch) return false;
  if (c.leader_epoch <= a.leader_epoch) {
    return make_error(Errc::invalid_argument, "{}: leader epoch {} is not after {}",
                      c.tp.to_string(), c.leader_epoch, a.leader_epoch);
  }
  a.leader = c.leader;
  a.leader_epoch = c.leader_epoch;
  return true;
}

}  // namespace

const TopicEntry* TableSnapshot::find(std::string_view topic) const {
  auto it = topics.find(topic);
  return it == topics.end() ? nullptr : &it->second;
}

const PartitionAssignment* TableSnapshot::find(const model::TopicPartition& tp) const {
  const TopicEntry* t = find(tp.topic);
  if (!t || tp.partition < 0 || size_t(tp.partition) >= t->partitions.size()) return nullptr;
  return &t->partitions[size_t(tp.partition)];
}

std::optional<model::TopicPartition> TableSnapshot::find_group(GroupId group) const {
  auto it = groups.find(group);
  if (it == groups.end()) return std::nullopt;
  return it->second;
}

PartitionTable::PartitionTable() : current_(std::make_shared<const TableSnapshot>()) {}

PartitionTable::PartitionTable(TableSnapshot start) {
  start.groups.clear();
  for (const auto& [name, topic] : start.topics) {
    for (size_t i = 0; i < topic.partitions.size(); ++i) {
      start.groups[topic.partitions[i].group] = model::TopicPartition{name, int32_t(i)};
    }
  }
  current_.store(std::make_shared<const TableSnapshot>(std::move(start)));
}

Result<bool> PartitionTable::apply(const Command& command) {
  return apply_all({command});
}

Result<bool> PartitionTable::apply_all(const std::vector<Command>& commands) {
  auto current = current_.load();
  // Copy on write: snapshots already handed out never change. Topic changes are rare; the
  // copy is the price of lock-free reads on every request.
  auto next = std::make_shared<TableSnapshot>(*current);
  bool changed = false;
  for (const auto& command : commands) {
    bool c = ORDO_TRY(std::visit([&](const auto& cmd) { return apply_to(*next, cmd); }, command));
    changed = changed || c;
  }
  if (!changed) return false;
  next->version = current->version + 1;
  current_.store(std::move(next));
  return true;
}

}  // namespace ordo::cluster
