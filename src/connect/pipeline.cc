#include "connect/pipeline.h"

#include <charconv>
#include <optional>
#include <set>
#include <tuple>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "base/file.h"

namespace ordo::connect {

namespace {

Error bad(std::string_view source, std::string_view what) {
  return make_error(Errc::invalid_argument, "{}: {}", source, what);
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 249) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return s != "." && s != "..";
}

Result<std::string> string_at(const toml::table& t, std::string_view key, std::string_view where,
                              std::string_view source) {
  const toml::node* n = t.get(key);
  if (!n || !n->is_string()) return bad(source, fmt::format("{}.{} must be a string", where, key));
  return n->as_string()->get();
}

// An unknown key is named with its line and the section it is in ("sink 'users'", "worker").
Result<void> only_keys(const toml::table& t, std::initializer_list<std::string_view> keys,
                       std::string_view where, std::string_view source) {
  for (const auto& [k, v] : t) {
    bool known = false;
    for (auto key : keys) known = known || k.str() == key;
    if (known) continue;
    const auto line = k.source().begin.line ? k.source().begin.line : v.source().begin.line;
    return bad(source, fmt::format("line {}: unknown key '{}' in {}", line, k.str(),
                                   where.empty() ? "the file (worker, sink, source)" : where));
  }
  return ok();
}

// How an error names the i-th (from 0) [[sink]] or [[source]]: by its name when it has one.
std::string section_name(const toml::table& t, std::string_view kind, size_t i) {
  if (const toml::node* n = t.get("name"); n && n->is_string()) {
    return fmt::format("{} '{}'", kind, n->as_string()->get());
  }
  return fmt::format("[[{}]] number {} (line {})", kind, i + 1, t.source().begin.line);
}

Result<int64_t> int_at(const toml::table& t, std::string_view key, std::string_view where,
                       std::string_view source, int64_t lo, int64_t hi) {
  const toml::node* n = t.get(key);
  if (!n || !n->is_integer() || n->as_integer()->get() < lo || n->as_integer()->get() > hi) {
    return bad(source, fmt::format("{}.{} must be an integer {}-{}", where, key, lo, hi));
  }
  return n->as_integer()->get();
}

Result<bool> bool_at(const toml::table& t, std::string_view key, std::string_view where,
                     std::string_view source) {
  const toml::node* n = t.get(key);
  if (!n || !n->is_boolean())
    return bad(source, fmt::format("{}.{} must be true or false", where, key));
  return n->as_boolean()->get();
}

Result<std::vector<std::string>> strings_at(const toml::node& n, std::string_view what,
                                            std::string_view source) {
  std::vector<std::string> out;
  if (!n.is_array()) return bad(source, fmt::format("{} must be an array of strings", what));
  for (const auto& e : *n.as_array()) {
    if (!e.is_string() || e.as_string()->get().empty()) {
      return bad(source, fmt::format("{} must be an array of strings", what));
    }
    out.push_back(e.as_string()->get());
  }
  return out;
}

// "HOST:PORT" with a port from min_port to 65535 and nothing after it.
std::optional<std::pair<std::string, uint16_t>> host_port(std::string_view text, int min_port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  int port = -1;
  auto [p, ec] = std::from_chars(text.data() + colon + 1, text.data() + text.size(), port);
  if (ec != std::errc() || p != text.data() + text.size() || port < min_port || port > 65535) {
    return std::nullopt;
  }
  return std::pair{std::string(text.substr(0, colon)), uint16_t(port)};
}

// A "schema.table" name: both parts present.
bool qualified_table(std::string_view s) {
  size_t dot = s.find('.');
  return dot != std::string_view::npos && dot > 0 && dot + 1 < s.size();
}

// PostgreSQL slot names: lower-case letters, digits and underscores, at most 63.
std::string default_slot(std::string_view name) {
  std::string out = "ordo_";
  for (char c : name) {
    c = char(std::tolower(static_cast<unsigned char>(c)));
    out += (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
  }
  return out.substr(0, 63);
}

Result<PgSourceConfig> parse_source(const toml::table& t, size_t index, std::string_view source) {
  ORDO_TRY(only_keys(t,
                     {"name", "type", "conninfo", "topic_prefix", "slot", "publication", "tables",
                      "create_publication", "snapshot", "partitions", "heartbeat_ms", "keys"},
                     section_name(t, "source", index), source));
  PgSourceConfig sc;
  sc.name = ORDO_TRY(string_at(t, "name", "source", source));
  if (!valid_name(sc.name)) {
    return bad(source, fmt::format("source name '{}' must be 1-249 of [a-zA-Z0-9._-]", sc.name));
  }
  std::string where = "source '" + sc.name + "'";
  std::string type = ORDO_TRY(string_at(t, "type", where, source));
  if (type != "postgres") {
    return bad(source, fmt::format("{}: unknown type '{}' (postgres)", where, type));
  }
  sc.conninfo = ORDO_TRY(string_at(t, "conninfo", where, source));
  sc.topic_prefix = sc.name;
  if (t.contains("topic_prefix")) {
    sc.topic_prefix = ORDO_TRY(string_at(t, "topic_prefix", where, source));
    if (!valid_name(sc.topic_prefix)) {
      return bad(source, fmt::format("{}: topic_prefix must be 1-249 of [a-zA-Z0-9._-]", where));
    }
  }
  sc.slot = default_slot(sc.name);
  if (t.contains("slot")) {
    sc.slot = ORDO_TRY(string_at(t, "slot", where, source));
    bool valid = !sc.slot.empty() && sc.slot.size() <= 63;
    for (char ch : sc.slot) {
      valid = valid && ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_');
    }
    if (!valid) {
      return bad(source, fmt::format("{}: slot must be 1-63 of [a-z0-9_]", where));
    }
  }
  sc.publication = sc.slot;
  if (t.contains("publication")) {
    sc.publication = ORDO_TRY(string_at(t, "publication", where, source));
    if (sc.publication.empty() || sc.publication.size() > 63) {
      return bad(source, fmt::format("{}: publication must be 1-63 characters", where));
    }
  }
  if (const toml::node* n = t.get("tables")) {
    sc.tables = ORDO_TRY(strings_at(*n, where + ": tables", source));
    for (const auto& tab : sc.tables) {
      if (!qualified_table(tab)) {
        return bad(source, fmt::format("{}: table '{}' is not schema.table", where, tab));
      }
    }
  }
  if (t.contains("create_publication")) {
    sc.create_publication = ORDO_TRY(bool_at(t, "create_publication", where, source));
  }
  if (t.contains("snapshot")) sc.snapshot = ORDO_TRY(bool_at(t, "snapshot", where, source));
  if (t.contains("partitions")) {
    sc.partitions = int32_t(ORDO_TRY(int_at(t, "partitions", where, source, 1, 10000)));
  }
  if (t.contains("heartbeat_ms")) {
    sc.heartbeat_ms = ORDO_TRY(int_at(t, "heartbeat_ms", where, source, 10, 3'600'000));
  }
  if (const toml::node* n = t.get("keys")) {
    if (!n->is_table()) return bad(source, fmt::format("{}: keys must be a table", where));
    for (const auto& [k, v] : *n->as_table()) {
      std::string table(k.str());
      if (!qualified_table(table)) {
        return bad(source, fmt::format("{}: keys: '{}' is not schema.table", where, table));
      }
      auto cols = ORDO_TRY(strings_at(v, where + ": keys." + table, source));
      if (cols.empty()) return bad(source, fmt::format("{}: keys.{} is empty", where, table));
      sc.keys[table] = std::move(cols);
    }
  }
  return sc;
}

}  // namespace

Result<PipelineConfig> parse_pipeline(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return bad(source, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  ORDO_TRY(only_keys(root, {"worker", "sink", "source"}, "", source));
  PipelineConfig c;
  if (const toml::node* w = root.get("worker")) {
    if (!w->is_table()) return bad(source, "[worker] must be a table");
    const toml::table& t = *w->as_table();
    ORDO_TRY(only_keys(t, {"bootstrap", "group", "data_dir", "http", "id"}, "worker", source));
    if (t.contains("id")) {
      c.id = ORDO_TRY(string_at(t, "id", "worker", source));
      if (!valid_name(c.id)) {
        return bad(source, fmt::format("worker.id '{}' must be 1-249 of [a-zA-Z0-9._-]", c.id));
      }
    }
    if (t.contains("bootstrap"))
      c.bootstrap = ORDO_TRY(string_at(t, "bootstrap", "worker", source));
    if (t.contains("group")) c.group = ORDO_TRY(string_at(t, "group", "worker", source));
    if (t.contains("data_dir")) c.data_dir = ORDO_TRY(string_at(t, "data_dir", "worker", source));
    if (t.contains("http")) {
      std::string http = ORDO_TRY(string_at(t, "http", "worker", source));
      if (http.empty()) {
        c.http_host.clear();
        c.http_port = 0;
      } else {
        auto hp = host_port(http, 0);  // port 0: one is picked
        if (!hp) return bad(source, fmt::format("worker.http '{}' is not HOST:PORT", http));
        std::tie(c.http_host, c.http_port) = *hp;
      }
    }
    if (c.bootstrap.empty() || c.group.empty() || c.data_dir.empty()) {
      return bad(source, "worker.bootstrap, worker.group and worker.data_dir must not be empty");
    }
  }
  std::set<std::string> names;
  if (const toml::node* s = root.get("sink")) {
    if (!s->is_array_of_tables()) return bad(source, "sink must be an array of tables: [[sink]]");
    for (size_t i = 0; i < s->as_array()->size(); ++i) {
      const toml::table& t = *(*s->as_array())[i].as_table();
      ORDO_TRY(only_keys(t,
                         {"name",
                          "type",
                          "topics",
                          "dead_letter_topic",
                          "key_format",
                          "value_format",
                          "field",
                          "address",
                          "db",
                          "key_prefix",
                          "offsets_key",
                          "ttl_s",
                          "tombstone_ttl_s",
                          "conninfo",
                          "table",
                          "group_by",
                          "sum",
                          "fields",
                          "where",
                          "output_topic"},
                         section_name(t, "sink", i), source));
      SinkConfig sc;
      sc.name = ORDO_TRY(string_at(t, "name", "sink", source));
      sc.type = ORDO_TRY(string_at(t, "type", "sink", source));
      if (!valid_name(sc.name)) {
        return bad(source, fmt::format("sink name '{}' must be 1-249 of [a-zA-Z0-9._-]", sc.name));
      }
      if (!names.insert(sc.name).second) {
        return bad(source, fmt::format("two sinks are named '{}'", sc.name));
      }
      if (sc.type != "table" && sc.type != "redis" && sc.type != "memcached" &&
          sc.type != "postgres" && sc.type != "aggregate" && sc.type != "claims" &&
          sc.type != "search") {
        return bad(source, fmt::format("sink '{}': unknown type '{}' (table, redis, memcached, "
                                       "postgres, aggregate, claims, search)",
                                       sc.name, sc.type));
      }
      if (const toml::node* f = t.get("fields")) {
        if (sc.type != "search") {
          return bad(source, fmt::format("sink '{}': fields is for search sinks", sc.name));
        }
        sc.fields = ORDO_TRY(strings_at(*f, "sink '" + sc.name + "': fields", source));
      }
      const std::string where = "sink '" + sc.name + "'";
      const bool cache = sc.type == "redis" || sc.type == "memcached";
      for (const char* k : {"address", "key_prefix", "ttl_s"}) {
        if (!cache && t.contains(k)) {
          return bad(source, fmt::format("{}: {} is for redis and memcached sinks", where, k));
        }
      }
      for (const char* k : {"db", "offsets_key"}) {
        if (sc.type != "redis" && t.contains(k)) {
          return bad(source, fmt::format("{}: {} is for redis sinks", where, k));
        }
      }
      if (sc.type != "memcached" && t.contains("tombstone_ttl_s")) {
        return bad(source, fmt::format("{}: tombstone_ttl_s is for memcached sinks", where));
      }
      if (sc.type == "redis") sc.port = 6379;
      if (sc.type == "memcached") sc.port = 11211;
      if (t.contains("tombstone_ttl_s")) {
        sc.tombstone_ttl_s = ORDO_TRY(int_at(t, "tombstone_ttl_s", where, source, 1, 1LL << 30));
      }
      if (sc.type != "postgres") {
        for (const char* k : {"conninfo", "table"}) {
          if (t.contains(k)) {
            return bad(source, fmt::format("{}: {} is for postgres sinks", where, k));
          }
        }
      } else {
        sc.conninfo = ORDO_TRY(string_at(t, "conninfo", where, source));
        sc.table = ORDO_TRY(string_at(t, "table", where, source));
        if (!qualified_table(sc.table)) {
          return bad(source, fmt::format("{}: table '{}' is not schema.table", where, sc.table));
        }
      }
      if (sc.type == "claims") {
        if (t.contains("output_topic")) {
          sc.output_topic = ORDO_TRY(string_at(t, "output_topic", where, source));
          if (!valid_name(sc.output_topic)) {
            return bad(source, fmt::format("{}: output_topic must be a topic name", where));
          }
        }
        for (const char* k : {"group_by", "sum", "where", "field"}) {
          if (t.contains(k)) {
            return bad(source, fmt::format("{}: {} is for aggregate sinks", where, k));
          }
        }
      } else if (sc.type != "aggregate") {
        for (const char* k : {"group_by", "sum", "where", "output_topic"}) {
          if (t.contains(k)) {
            return bad(source, fmt::format("{}: {} is for aggregate sinks", where, k));
          }
        }
      } else {
        sc.group_by = ORDO_TRY(string_at(t, "group_by", where, source));
        if (t.contains("sum")) sc.sum = ORDO_TRY(string_at(t, "sum", where, source));
        sc.output_topic = sc.name;
        if (t.contains("output_topic")) {
          sc.output_topic = ORDO_TRY(string_at(t, "output_topic", where, source));
          if (!valid_name(sc.output_topic)) {
            return bad(source, fmt::format("{}: output_topic must be a topic name", where));
          }
        }
        if (const toml::node* w = t.get("where")) {
          if (!w->is_table()) return bad(source, fmt::format("{}: where must be a table", where));
          for (const auto& [k, v] : *w->as_table()) {
            std::string text;
            if (v.is_string()) {
              text = nlohmann::json(v.as_string()->get()).dump();
            } else if (v.is_integer()) {
              text = std::to_string(v.as_integer()->get());
            } else if (v.is_boolean()) {
              text = v.as_boolean()->get() ? "true" : "false";
            } else {
              return bad(source, fmt::format("{}: where.{} must be a string, integer or boolean",
                                             where, k.str()));
            }
            sc.where[std::string(k.str())] = text;
          }
        }
      }
      if (t.contains("field")) {
        sc.field = ORDO_TRY(string_at(t, "field", where, source));
        if (sc.field.empty()) return bad(source, fmt::format("{}: field is empty", where));
      }
      if (t.contains("address")) {
        std::string a = ORDO_TRY(string_at(t, "address", where, source));
        auto hp = host_port(a, 1);
        if (!hp) return bad(source, fmt::format("{}: address '{}' is not HOST:PORT", where, a));
        std::tie(sc.host, sc.port) = *hp;
      }
      if (t.contains("db")) sc.db = int(ORDO_TRY(int_at(t, "db", where, source, 0, 65535)));
      if (t.contains("key_prefix"))
        sc.key_prefix = ORDO_TRY(string_at(t, "key_prefix", where, source));
      if (t.contains("offsets_key")) {
        sc.offsets_key = ORDO_TRY(string_at(t, "offsets_key", where, source));
      }
      if (t.contains("ttl_s")) sc.ttl_s = ORDO_TRY(int_at(t, "ttl_s", where, source, 0, 1LL << 40));
      const toml::node* topics = t.get("topics");
      if (!topics || !topics->is_array() || topics->as_array()->empty()) {
        return bad(source, fmt::format("sink '{}': topics must be a non-empty array", sc.name));
      }
      for (const auto& tn : *topics->as_array()) {
        if (!tn.is_string() || !valid_name(tn.as_string()->get())) {
          return bad(source, fmt::format("sink '{}': topics must be valid topic names", sc.name));
        }
        sc.topics.push_back(tn.as_string()->get());
      }
      sc.dead_letter_topic = sc.name + ".dlq";
      if (t.contains("dead_letter_topic")) {
        sc.dead_letter_topic = ORDO_TRY(string_at(t, "dead_letter_topic", "sink", source));
        if (!valid_name(sc.dead_letter_topic)) {
          return bad(source,
                     fmt::format("sink '{}': dead_letter_topic must be a topic name", sc.name));
        }
      }
      for (auto [key, field] :
           {std::pair{"key_format", &sc.key_format}, std::pair{"value_format", &sc.value_format}}) {
        if (!t.contains(key)) continue;
        *field = ORDO_TRY(string_at(t, key, "sink", source));
        if (*field != "bytes" && *field != "json") {
          return bad(source,
                     fmt::format("sink '{}': {} '{}' is not bytes or json", sc.name, key, *field));
        }
      }
      if (sc.type == "claims") {
        if (sc.topics.size() != 1) {
          return bad(source, fmt::format("sink '{}': a claims sink reads one topic", sc.name));
        }
        if (sc.output_topic.empty()) sc.output_topic = sc.topics[0] + ".results";
      }
      for (const auto& topic : sc.topics) {
        if (topic == sc.dead_letter_topic) {
          return bad(source, fmt::format("sink '{}': reads its own dead_letter_topic", sc.name));
        }
        if (topic == sc.output_topic) {
          return bad(source, fmt::format("sink '{}': reads its own output_topic", sc.name));
        }
      }
      c.sinks.push_back(std::move(sc));
    }
  }
  names.clear();
  if (const toml::node* s = root.get("source")) {
    if (!s->is_array_of_tables())
      return bad(source, "source must be an array of tables: [[source]]");
    for (size_t i = 0; i < s->as_array()->size(); ++i) {
      c.sources.push_back(ORDO_TRY(parse_source(*(*s->as_array())[i].as_table(), i, source)));
      if (!names.insert(c.sources.back().name).second) {
        return bad(source, fmt::format("two sources are named '{}'", c.sources.back().name));
      }
    }
  }
  if (c.sinks.empty() && c.sources.empty()) {
    return bad(source, "no [[sink]] and no [[source]]: nothing to run");
  }
  return c;
}

Result<PipelineConfig> load_pipeline(const std::string& path) {
  auto text = ORDO_TRY(read_file(path, size_t(1) << 20));
  return parse_pipeline(text, path);
}

}  // namespace ordo::connect
