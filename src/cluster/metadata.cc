#include "cluster/metadata.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "model/topic_partition.h"

namespace ordo::cluster {

using json = nlohmann::json;

namespace {

// ---- reading checked fields (no exceptions: every access is type-checked first) ----

Error bad(std::string_view what) {
  return make_error(Errc::corrupt, "metadata: {}", what);
}

Result<const json*> field(const json& obj, const char* key) {
  if (!obj.is_object()) return bad(fmt::format("'{}': not inside an object", key));
  auto it = obj.find(key);
  if (it == obj.end()) return bad(fmt::format("missing field '{}'", key));
  return &*it;
}

Result<int64_t> int_of(const json& v, const char* key, int64_t min, int64_t max) {
  int64_t n = 0;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(std::numeric_limits<int64_t>::max())) {
      return bad(fmt::format("'{}' out of range", key));
    }
    n = int64_t(u);
  } else if (v.is_number_integer()) {
    n = v.get<int64_t>();
  } else {
    return bad(fmt::format("'{}' is not an integer", key));
  }
  if (n < min || n > max) return bad(fmt::format("'{}' = {} outside [{}, {}]", key, n, min, max));
  return n;
}

Result<int64_t> get_i64(const json& obj, const char* key, int64_t min, int64_t max) {
  const json* v = ORDO_TRY(field(obj, key));
  return int_of(*v, key, min, max);
}

Result<int32_t> get_i32(const json& obj, const char* key, int32_t min, int32_t max) {
  return int32_t(ORDO_TRY(get_i64(obj, key, min, max)));
}

Result<uint64_t> get_u64(const json& obj, const char* key) {
  const json* v = ORDO_TRY(field(obj, key));
  if (!v->is_number_unsigned()) return bad(fmt::format("'{}' is not an unsigned integer", key));
  return v->get<uint64_t>();
}

Result<bool> get_bool(const json& obj, const char* key) {
  const json* v = ORDO_TRY(field(obj, key));
  if (!v->is_boolean()) return bad(fmt::format("'{}' is not a boolean", key));
  return v->get<bool>();
}

Result<double> get_double(const json& obj, const char* key) {
  const json* v = ORDO_TRY(field(obj, key));
  if (!v->is_number()) return bad(fmt::format("'{}' is not a number", key));
  double d = v->get<double>();
  if (!std::isfinite(d)) return bad(fmt::format("'{}' is not finite", key));
  return d;
}

Result<std::string> check_string(const json& v, const char* key, size_t max_bytes,
                                 bool allow_empty) {
  if (!v.is_string()) return bad(fmt::format("'{}' is not a string", key));
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() > max_bytes) return bad(fmt::format("'{}' longer than {} bytes", key, max_bytes));
  if (!allow_empty && s.empty()) return bad(fmt::format("'{}' is empty", key));
  return s;
}

Result<std::string> get_string(const json& obj, const char* key, size_t max_bytes,
                               bool allow_empty = false) {
  const json* v = ORDO_TRY(field(obj, key));
  return check_string(*v, key, max_bytes, allow_empty);
}

Result<std::string> get_topic(const json& obj, const char* key) {
  std::string name = ORDO_TRY(get_string(obj, key, kMaxNameBytes));
  if (!model::is_valid_topic_name(name)) return bad(fmt::format("'{}' is not a topic name", key));
  return name;
}

Result<const json*> get_array(const json& obj, const char* key, size_t max_items) {
  const json* v = ORDO_TRY(field(obj, key));
  if (!v->is_array()) return bad(fmt::format("'{}' is not an array", key));
  if (v->size() > max_items) return bad(fmt::format("'{}' has more than {} items", key, max_items));
  return v;
}

Result<NodeId> node_of(const json& v) {
  return NodeId(ORDO_TRY(int_of(v, "node id", 0, INT32_MAX)));
}

// ---- topic ids ----

std::string hex_of(const TopicId& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : id) {
    s.push_back(kHex[b >> 4]);
    s.push_back(kHex[b & 15]);
  }
  return s;
}

Result<TopicId> get_topic_id(const json& obj, const char* key) {
  std::string s = ORDO_TRY(get_string(obj, key, 32));
  if (s.size() != 32) return bad("a topic id is not 32 hex digits");
  TopicId id{};
  for (size_t i = 0; i < 32; ++i) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return bad("a topic id is not lower-case hex");
    id[i / 2] = uint8_t(id[i / 2] | (d << (i % 2 == 0 ? 4 : 0)));
  }
  return id;
}

// ---- LogConfig ----

json log_to_json(const storage::LogConfig& c) {
  json j = json::object();
  j["segment_bytes"] = c.segment_bytes;
  j["segment_ms"] = c.segment_ms;
  j["index_interval_bytes"] = c.index_interval_bytes;
  j["retention_bytes"] = c.retention_bytes;
  j["retention_ms"] = c.retention_ms;
  j["flush_mode"] = std::string(storage::flush_mode_name(c.flush_mode));
  j["flush_interval_ms"] = c.flush_interval_ms;
  j["preallocate"] = std::string(storage::preallocate_name(c.preallocate));
  j["preallocate_bytes"] = c.preallocate_bytes;
  j["max_batch_bytes"] = c.max_batch_bytes;
  j["producer_id_expiration_ms"] = c.producer_id_expiration_ms;
  j["cleanup_policy"] = std::string(storage::cleanup_policy_name(c.cleanup_policy));
  j["delete_retention_ms"] = c.delete_retention_ms;
  j["min_cleanable_dirty_ratio"] = c.min_cleanable_dirty_ratio;
  j["min_compaction_lag_ms"] = c.min_compaction_lag_ms;
  j["max_compaction_lag_ms"] = c.max_compaction_lag_ms;
  return j;
}

Result<storage::LogConfig> log_from_json(const json& j) {
  if (!j.is_object()) return bad("'log' is not an object");
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  storage::LogConfig c;
  c.segment_bytes = ORDO_TRY(get_i64(j, "segment_bytes", kMin, kMax));
  c.segment_ms = ORDO_TRY(get_i64(j, "segment_ms", kMin, kMax));
  c.index_interval_bytes = ORDO_TRY(get_i32(j, "index_interval_bytes", INT32_MIN, INT32_MAX));
  c.retention_bytes = ORDO_TRY(get_i64(j, "retention_bytes", kMin, kMax));
  c.retention_ms = ORDO_TRY(get_i64(j, "retention_ms", kMin, kMax));
  auto flush = storage::parse_flush_mode(ORDO_TRY(get_string(j, "flush_mode", 64)));
  if (!flush) return bad("unknown flush_mode");
  c.flush_mode = *flush;
  c.flush_interval_ms = ORDO_TRY(get_i64(j, "flush_interval_ms", kMin, kMax));
  auto pre = storage::parse_preallocate(ORDO_TRY(get_string(j, "preallocate", 64)));
  if (!pre) return bad("unknown preallocate");
  c.preallocate = *pre;
  c.preallocate_bytes = ORDO_TRY(get_i64(j, "preallocate_bytes", kMin, kMax));
  c.max_batch_bytes = ORDO_TRY(get_i64(j, "max_batch_bytes", kMin, kMax));
  c.producer_id_expiration_ms = ORDO_TRY(get_i64(j, "producer_id_expiration_ms", kMin, kMax));
  auto policy = storage::parse_cleanup_policy(ORDO_TRY(get_string(j, "cleanup_policy", 64)));
  if (!policy) return bad("unknown cleanup_policy");
  c.cleanup_policy = *policy;
  c.delete_retention_ms = ORDO_TRY(get_i64(j, "delete_retention_ms", kMin, kMax));
  c.min_cleanable_dirty_ratio = ORDO_TRY(get_double(j, "min_cleanable_dirty_ratio"));
  c.min_compaction_lag_ms = ORDO_TRY(get_i64(j, "min_compaction_lag_ms", kMin, kMax));
  c.max_compaction_lag_ms = ORDO_TRY(get_i64(j, "max_compaction_lag_ms", kMin, kMax));
  if (auto v = c.validate(); !v) return bad(fmt::format("log: {}", v.error().message));
  return c;
}

// ---- replica lists ----

json replicas_to_json(const std::vector<std::vector<NodeId>>& replicas) {
  json a = json::array();
  for (const auto& r : replicas) a.push_back(r);
  return a;
}

Result<std::vector<NodeId>> replica_list(const json& v) {
  if (!v.is_array() || v.empty() || v.size() > kMaxReplicas) {
    return bad(fmt::format("a replica list is not an array of 1-{} node ids", kMaxReplicas));
  }
  std::vector<NodeId> out;
  for (const json& n : v) {
    NodeId id = ORDO_TRY(node_of(n));
    for (NodeId seen : out) {
      if (seen == id) return bad("a replica list names a node twice");
    }
    out.push_back(id);
  }
  return out;
}

Result<std::vector<std::vector<NodeId>>> get_replicas(const json& obj, const char* key) {
  const json* a = ORDO_TRY(get_array(obj, key, kMaxPartitionsPerCommand));
  if (a->empty()) return bad(fmt::format("'{}' is empty", key));
  std::vector<std::vector<NodeId>> out;
  out.reserve(a->size());
  for (const json& r : *a) out.push_back(ORDO_TRY(replica_list(r)));
  return out;
}

// ---- brokers ----

json broker_to_json(const BrokerRecord& b) {
  json j = json::object();
  j["id"] = b.id;
  j["incarnation"] = b.incarnation;
  j["host"] = b.host;
  j["port"] = b.port;
  j["peer_host"] = b.peer_host;
  j["peer_port"] = b.peer_port;
  j["rack"] = b.rack ? json(*b.rack) : json(nullptr);
  j["fenced"] = b.fenced;
  j["epoch"] = b.epoch;
  return j;
}

Result<BrokerRecord> broker_from_json(const json& j) {
  if (!j.is_object()) return bad("a broker is not an object");
  BrokerRecord b;
  b.id = ORDO_TRY(get_i32(j, "id", 0, INT32_MAX));
  b.incarnation = ORDO_TRY(get_u64(j, "incarnation"));
  if (b.incarnation == 0) return bad("a broker's incarnation is 0");
  b.host = ORDO_TRY(get_string(j, "host", kMaxNameBytes));
  b.port = ORDO_TRY(get_i32(j, "port", 1, 65535));
  b.peer_host = ORDO_TRY(get_string(j, "peer_host", kMaxNameBytes));
  b.peer_port = ORDO_TRY(get_i32(j, "peer_port", 1, 65535));
  const json* rack = ORDO_TRY(field(j, "rack"));
  if (!rack->is_null()) b.rack = ORDO_TRY(check_string(*rack, "rack", kMaxNameBytes, false));
  b.fenced = ORDO_TRY(get_bool(j, "fenced"));
  b.epoch = ORDO_TRY(get_i64(j, "epoch", 1, std::numeric_limits<int64_t>::max()));
  return b;
}

// ---- topic configs ----

json configs_to_json(const std::map<std::string, std::string>& configs) {
  json j = json::object();
  for (const auto& [k, v] : configs) j[k] = v;
  return j;
}

Result<std::map<std::string, std::string>> configs_from_json(const json& j) {
  if (!j.is_object()) return bad("'configs' is not an object");
  if (j.size() > kMaxConfigs) return bad("more configs than a topic may have");
  std::map<std::string, std::string> out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key().empty() || it.key().size() > kMaxNameBytes) return bad("a config name's length");
    out[it.key()] = ORDO_TRY(check_string(it.value(), "config value", kMaxConfigValueBytes, true));
  }
  return out;
}

std::string dump(const json& j) {
  // Strings the broker puts in commands are UTF-8; a byte that is not is replaced, never
  // thrown about.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- commands ----

struct ToJson {
  json& j;
  void operator()(const Command& c) { std::visit(*this, c); }
  void operator()(const CreateTopic& c) {
    j["name"] = c.name;
    j["id"] = hex_of(c.id);
    j["log"] = log_to_json(c.log);
    j["replicas"] = replicas_to_json(c.replicas);
  }
  void operator()(const AddPartitions& c) {
    j["name"] = c.name;
    j["from"] = c.from;
    j["replicas"] = replicas_to_json(c.replicas);
  }
  void operator()(const DeletePartitions& c) {
    j["name"] = c.name;
    j["from"] = c.from;
  }
  void operator()(const DeleteTopic& c) { j["name"] = c.name; }
  void operator()(const SetConfig& c) {
    j["name"] = c.name;
    j["log"] = log_to_json(c.log);
  }
  void operator()(const SetLeader& c) {
    j["topic"] = c.tp.topic;
    j["partition"] = c.tp.partition;
    j["leader"] = c.leader;
    j["leader_epoch"] = c.leader_epoch;
  }
  void operator()(const RegisterBroker& c) { j["broker"] = broker_to_json(c.broker); }
  void operator()(const FenceBroker& c) {
    j["id"] = c.id;
    j["epoch"] = c.epoch;
  }
  void operator()(const UnfenceBroker& c) {
    j["id"] = c.id;
    j["epoch"] = c.epoch;
  }
  void operator()(const AllocateProducerIds& c) {
    j["node"] = c.node;
    j["first"] = c.first;
    j["count"] = c.count;
  }
  void operator()(const TopicConfigs& c) {
    j["name"] = c.name;
    j["configs"] = configs_to_json(c.configs);
  }
};

struct NameOf {
  std::string_view operator()(const Command& c) const { return std::visit(*this, c); }
  std::string_view operator()(const CreateTopic&) const { return "create_topic"; }
  std::string_view operator()(const AddPartitions&) const { return "add_partitions"; }
  std::string_view operator()(const DeletePartitions&) const { return "delete_partitions"; }
  std::string_view operator()(const DeleteTopic&) const { return "delete_topic"; }
  std::string_view operator()(const SetConfig&) const { return "set_config"; }
  std::string_view operator()(const SetLeader&) const { return "set_leader"; }
  std::string_view operator()(const RegisterBroker&) const { return "register_broker"; }
  std::string_view operator()(const FenceBroker&) const { return "fence_broker"; }
  std::string_view operator()(const UnfenceBroker&) const { return "unfence_broker"; }
  std::string_view operator()(const AllocateProducerIds&) const { return "allocate_producer_ids"; }
  std::string_view operator()(const TopicConfigs&) const { return "topic_configs"; }
};

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

Result<MetadataCommand> command_from_json(const json& j) {
  if (!j.is_object()) return bad("a command is not a JSON object");
  const int64_t v = ORDO_TRY(get_i64(j, "v", 1, kI64Max));
  if (v != kCommandVersion) {
    return make_error(Errc::invalid_argument, "metadata: command version {} (this build reads {})",
                      v, kCommandVersion);
  }
  const std::string type = ORDO_TRY(get_string(j, "type", 64));
  if (type == "create_topic") {
    CreateTopic c;
    c.name = ORDO_TRY(get_topic(j, "name"));
    c.id = ORDO_TRY(get_topic_id(j, "id"));
    c.log = ORDO_TRY(log_from_json(*ORDO_TRY(field(j, "log"))));
    c.replicas = ORDO_TRY(get_replicas(j, "replicas"));
    return MetadataCommand(Command(std::move(c)));
  }
  if (type == "add_partitions") {
    AddPartitions c;
    c.name = ORDO_TRY(get_topic(j, "name"));
    c.from = ORDO_TRY(get_i32(j, "from", 0, int32_t(kMaxPartitionsPerCommand)));
    c.replicas = ORDO_TRY(get_replicas(j, "replicas"));
    return MetadataCommand(Command(std::move(c)));
  }
  if (type == "delete_partitions") {
    DeletePartitions c;
    c.name = ORDO_TRY(get_topic(j, "name"));
    c.from = ORDO_TRY(get_i32(j, "from", 1, INT32_MAX));
    return MetadataCommand(Command(std::move(c)));
  }
  if (type == "delete_topic") {
    return MetadataCommand(Command(DeleteTopic{ORDO_TRY(get_topic(j, "name"))}));
  }
  if (type == "set_config") {
    SetConfig c;
    c.name = ORDO_TRY(get_topic(j, "name"));
    c.log = ORDO_TRY(log_from_json(*ORDO_TRY(field(j, "log"))));
    return MetadataCommand(Command(std::move(c)));
  }
  if (type == "set_leader") {
    SetLeader c;
    c.tp.topic = ORDO_TRY(get_topic(j, "topic"));
    c.tp.partition = ORDO_TRY(get_i32(j, "partition", 0, INT32_MAX));
    c.leader = ORDO_TRY(get_i32(j, "leader", kNoLeader, INT32_MAX));
    c.leader_epoch = ORDO_TRY(get_i32(j, "leader_epoch", 0, INT32_MAX));
    return MetadataCommand(Command(std::move(c)));
  }
  if (type == "register_broker") {
    return MetadataCommand(
        RegisterBroker{ORDO_TRY(broker_from_json(*ORDO_TRY(field(j, "broker"))))});
  }
  if (type == "fence_broker" || type == "unfence_broker") {
    NodeId id = ORDO_TRY(get_i32(j, "id", 0, INT32_MAX));
    int64_t epoch = ORDO_TRY(get_i64(j, "epoch", 1, kI64Max));
    if (type == "fence_broker") return MetadataCommand(FenceBroker{id, epoch});
    return MetadataCommand(UnfenceBroker{id, epoch});
  }
  if (type == "allocate_producer_ids") {
    AllocateProducerIds c;
    c.node = ORDO_TRY(get_i32(j, "node", 0, INT32_MAX));
    c.count = ORDO_TRY(get_i64(j, "count", 1, kMaxProducerIdBlock));
    c.first = ORDO_TRY(get_i64(j, "first", 0, kI64Max - c.count));
    return MetadataCommand(c);
  }
  if (type == "topic_configs") {
    TopicConfigs c;
    c.name = ORDO_TRY(get_topic(j, "name"));
    c.configs = ORDO_TRY(configs_from_json(*ORDO_TRY(field(j, "configs"))));
    return MetadataCommand(std::move(c));
  }
  return bad(fmt::format("unknown command type '{}'", type.substr(0, 64)));
}

Result<json> parse(std::span<const uint8_t> bytes, size_t max_bytes) {
  if (bytes.size() > max_bytes) return make_error(Errc::corrupt, "metadata: too large");
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("not JSON");
  return j;
}

}  // namespace

std::string_view command_name(const MetadataCommand& command) {
  return std::visit(NameOf{}, command);
}

std::vector<uint8_t> encode_command(const MetadataCommand& command) {
  json j = json::object();
  j["v"] = kCommandVersion;
  j["type"] = std::string(command_name(command));
  std::visit(ToJson{j}, command);
  std::string s = dump(j);
  return {s.begin(), s.end()};
}

Result<MetadataCommand> decode_command(std::span<const uint8_t> bytes) {
  json j = ORDO_TRY(parse(bytes, kMaxCommandBytes));
  return command_from_json(j);
}

std::string encode_log_config(const storage::LogConfig& log) {
  return dump(log_to_json(log));
}

Result<storage::LogConfig> decode_log_config(std::string_view text) {
  json j = ORDO_TRY(parse({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, 1 << 20));
  return log_from_json(j);
}

// ---- ClusterState ----

namespace {

Error contradiction(Errc code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace

Result<bool> ClusterState::apply(const MetadataCommand& command, int64_t offset) {
  if (offset < 0) return make_error(Errc::invalid_argument, "metadata: offset {}", offset);
  if (offset <= applied_offset_) return false;  // seen already
  bool changed = ORDO_TRY(apply_one(command));
  applied_offset_ = offset;
  return changed;
}

Result<bool> ClusterState::apply_one(const MetadataCommand& command) {
  if (const Command* c = std::get_if<Command>(&command)) {
    bool changed = ORDO_TRY(table_.apply(*c));
    // The topic's configs go with it (nothing can fail past the table's change).
    if (const DeleteTopic* d = std::get_if<DeleteTopic>(c)) {
      changed = topic_configs_.erase(d->name) > 0 || changed;
    }
    return changed;
  }
  if (const RegisterBroker* r = std::get_if<RegisterBroker>(&command)) {
    const BrokerRecord& b = r->broker;
    if (b.id < 0 || b.incarnation == 0) {
      return make_error(Errc::invalid_argument, "broker {}: bad id or incarnation 0", b.id);
    }
    auto it = brokers_.find(b.id);
    const int64_t current = it == brokers_.end() ? 0 : it->second.epoch;
    if (it != brokers_.end() && it->second == b) return false;
    if (b.epoch != current + 1) {
      return contradiction(Errc::invalid_argument,
                           fmt::format("broker {}: registration epoch {} does not follow {}", b.id,
                                       b.epoch, current));
    }
    brokers_[b.id] = b;
    return true;
  }
  auto fence = [&](NodeId id, int64_t epoch, bool fenced) -> Result<bool> {
    auto it = brokers_.find(id);
    if (it == brokers_.end()) return make_error(Errc::not_found, "no broker {}", id);
    if (it->second.epoch != epoch) {
      return contradiction(
          Errc::invalid_argument,
          fmt::format("broker {}: epoch {} is not its current {}", id, epoch, it->second.epoch));
    }
    if (it->second.fenced == fenced) return false;
    it->second.fenced = fenced;
    return true;
  };
  if (const FenceBroker* f = std::get_if<FenceBroker>(&command))
    return fence(f->id, f->epoch, true);
  if (const UnfenceBroker* u = std::get_if<UnfenceBroker>(&command)) {
    return fence(u->id, u->epoch, false);
  }
  if (const AllocateProducerIds* a = std::get_if<AllocateProducerIds>(&command)) {
    if (a->node < 0 || a->count < 1 || a->count > kMaxProducerIdBlock) {
      return make_error(Errc::invalid_argument, "producer ids: node {} count {}", a->node,
                        a->count);
    }
    if (a->first != next_producer_id_) {
      return contradiction(Errc::invalid_argument,
                           fmt::format("producer ids: a block from {} does not follow {}", a->first,
                                       next_producer_id_));
    }
    if (a->first > std::numeric_limits<int64_t>::max() - a->count) {
      return make_error(Errc::invalid_argument, "producer ids: out of ids");
    }
    next_producer_id_ = a->first + a->count;
    return true;
  }
  const TopicConfigs& t = std::get<TopicConfigs>(command);
  if (!table_.snapshot()->find(t.name)) return make_error(Errc::not_found, "no topic {}", t.name);
  auto it = topic_configs_.find(t.name);
  if (t.configs.empty()) {  // an empty map is kept as no entry (one form per state)
    if (it == topic_configs_.end()) return false;
    topic_configs_.erase(it);
    return true;
  }
  if (it != topic_configs_.end() && it->second == t.configs) return false;
  topic_configs_[t.name] = t.configs;
  return true;
}

std::vector<BrokerRecord> ClusterState::brokers() const {
  std::vector<BrokerRecord> out;
  out.reserve(brokers_.size());
  for (const auto& [id, b] : brokers_) out.push_back(b);
  return out;
}

std::optional<BrokerRecord> ClusterState::broker(NodeId id) const {
  auto it = brokers_.find(id);
  if (it == brokers_.end()) return std::nullopt;
  return it->second;
}

bool ClusterState::operator==(const ClusterState& other) const {
  return *table_.snapshot() == *other.table_.snapshot() && brokers_ == other.brokers_ &&
         next_producer_id_ == other.next_producer_id_ && applied_offset_ == other.applied_offset_ &&
         topic_configs_ == other.topic_configs_;
}

std::vector<uint8_t> ClusterState::checkpoint() const {
  auto snap = table_.snapshot();
  json topics = json::array();
  for (const auto& [name, t] : snap->topics) {
    json parts = json::array();
    for (const auto& p : t.partitions) {
      parts.push_back(json{{"replicas", p.replicas},
                           {"leader", p.leader},
                           {"leader_epoch", p.leader_epoch},
                           {"group", p.group}});
    }
    topics.push_back(json{
        {"name", name}, {"id", hex_of(t.id)}, {"log", log_to_json(t.log)}, {"partitions", parts}});
  }
  json brokers = json::array();
  for (const auto& [id, b] : brokers_) brokers.push_back(broker_to_json(b));
  json configs = json::object();
  for (const auto& [name, c] : topic_configs_) configs[name] = configs_to_json(c);
  json j = json::object();
  j["v"] = kCheckpointVersion;
  j["type"] = "checkpoint";
  j["applied_offset"] = applied_offset_;
  j["next_producer_id"] = next_producer_id_;
  j["table"] =
      json{{"version", snap->version}, {"next_group", snap->next_group}, {"topics", topics}};
  j["brokers"] = brokers;
  j["topic_configs"] = configs;
  std::string s = dump(j);
  return {s.begin(), s.end()};
}

Result<ClusterState> ClusterState::restore(std::span<const uint8_t> bytes) {
  json j = ORDO_TRY(parse(bytes, std::numeric_limits<uint32_t>::max()));
  if (!j.is_object()) return bad("a checkpoint is not a JSON object");
  const int64_t v = ORDO_TRY(get_i64(j, "v", 1, kI64Max));
  if (v != kCheckpointVersion) {
    return make_error(Errc::invalid_argument,
                      "metadata: checkpoint version {} (this build reads {})", v,
                      kCheckpointVersion);
  }
  if (ORDO_TRY(get_string(j, "type", 64)) != "checkpoint") return bad("not a checkpoint");
  ClusterState s;
  s.applied_offset_ = ORDO_TRY(get_i64(j, "applied_offset", -1, kI64Max));
  s.next_producer_id_ = ORDO_TRY(get_i64(j, "next_producer_id", 0, kI64Max));

  const json* table = ORDO_TRY(field(j, "table"));
  TableSnapshot snap;
  const int64_t version = ORDO_TRY(get_i64(*table, "version", 0, kI64Max));
  snap.version = uint64_t(version);
  snap.next_group = ORDO_TRY(get_i64(*table, "next_group", 1, kI64Max));
  const json* topics = ORDO_TRY(get_array(*table, "topics", std::numeric_limits<uint32_t>::max()));
  std::set<GroupId> groups;
  for (const json& t : *topics) {
    TopicEntry e;
    e.name = ORDO_TRY(get_topic(t, "name"));
    e.id = ORDO_TRY(get_topic_id(t, "id"));
    e.log = ORDO_TRY(log_from_json(*ORDO_TRY(field(t, "log"))));
    const json* parts = ORDO_TRY(get_array(t, "partitions", kMaxPartitionsPerCommand));
    if (parts->empty()) return bad(fmt::format("topic {} has no partitions", e.name));
    for (const json& p : *parts) {
      PartitionAssignment a;
      a.replicas = ORDO_TRY(replica_list(*ORDO_TRY(field(p, "replicas"))));
      a.leader = ORDO_TRY(get_i32(p, "leader", kNoLeader, INT32_MAX));
      a.leader_epoch = ORDO_TRY(get_i32(p, "leader_epoch", 0, INT32_MAX));
      a.group = ORDO_TRY(get_i64(p, "group", 1, snap.next_group - 1));
      if (!groups.insert(a.group).second) return bad(fmt::format("group {} twice", a.group));
      e.partitions.push_back(std::move(a));
    }
    std::string name = e.name;
    if (!snap.topics.emplace(name, std::move(e)).second) {
      return bad(fmt::format("topic {} twice", name));
    }
  }
  s.table_ = PartitionTable(std::move(snap));

  const json* brokers = ORDO_TRY(get_array(j, "brokers", std::numeric_limits<uint32_t>::max()));
  for (const json& b : *brokers) {
    BrokerRecord r = ORDO_TRY(broker_from_json(b));
    if (!s.brokers_.emplace(r.id, r).second) return bad(fmt::format("broker {} twice", r.id));
  }
  const json* configs = ORDO_TRY(field(j, "topic_configs"));
  if (!configs->is_object()) return bad("'topic_configs' is not an object");
  auto table_now = s.table_.snapshot();
  for (auto it = configs->begin(); it != configs->end(); ++it) {
    if (!table_now->find(it.key())) return bad(fmt::format("configs of a missing topic"));
    auto c = ORDO_TRY(configs_from_json(it.value()));
    if (c.empty()) return bad("an empty config map");
    s.topic_configs_[it.key()] = std::move(c);
  }
  return s;
}

Result<raft::Config> initial_config(const ClusterState& state, const PartitionAssignment& a) {
  raft::Config c;
  for (NodeId id : a.replicas) {
    auto b = state.broker(id);
    if (!b) return make_error(Errc::not_found, "replica {}: no such broker registered", id);
    c.voters.push_back(raft::Member{id, b->incarnation});
  }
  std::sort(c.voters.begin(), c.voters.end());
  if (!c.valid()) return make_error(Errc::invalid_argument, "replicas {}", c.to_string());
  return c;
}

}  // namespace ordo::cluster
