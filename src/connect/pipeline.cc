#include "connect/pipeline.h"

#include <charconv>
#include <set>

#include <toml++/toml.h>

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

Result<void> only_keys(const toml::table& t, std::initializer_list<std::string_view> keys,
                       std::string_view where, std::string_view source) {
  for (const auto& [k, v] : t) {
    bool known = false;
    for (auto key : keys) known = known || k.str() == key;
    if (!known) return bad(source, fmt::format("unknown key {}.{}", where, k.str()));
  }
  return ok();
}

}  // namespace

Result<PipelineConfig> parse_pipeline(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return bad(source, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  ORDO_TRY(only_keys(root, {"worker", "sink"}, "", source));
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
    if (t.contains("bootstrap")) c.bootstrap = ORDO_TRY(string_at(t, "bootstrap", "worker", source));
    if (t.contains("group")) c.group = ORDO_TRY(string_at(t, "group", "worker", source));
    if (t.contains("data_dir")) c.data_dir = ORDO_TRY(string_at(t, "data_dir", "worker", source));
    if (t.contains("http")) {
      std::string http = ORDO_TRY(string_at(t, "http", "worker", source));
      if (http.empty()) {
        c.http_host.clear();
        c.http_port = 0;
      } else {
        size_t colon = http.rfind(':');
        int port = -1;
        if (colon == std::string::npos || colon == 0 ||
            std::from_chars(http.data() + colon + 1, http.data() + http.size(), port).ec !=
                std::errc() ||
            port < 0 || port > 65535) {
          return bad(source, fmt::format("worker.http '{}' is not HOST:PORT", http));
        }
        c.http_host = http.substr(0, colon);
        c.http_port = uint16_t(port);
      }
    }
    if (c.bootstrap.empty() || c.group.empty() || c.data_dir.empty()) {
      return bad(source, "worker.bootstrap, worker.group and worker.data_dir must not be empty");
    }
  }
  std::set<std::string> names;
  if (const toml::node* s = root.get("sink")) {
    if (!s->is_array_of_tables()) return bad(source, "sink must be an array of tables: [[sink]]");
    for (const auto& n : *s->as_array()) {
      const toml::table& t = *n.as_table();
      ORDO_TRY(only_keys(t, {"name", "type", "topics", "dead_letter_topic"}, "sink", source));
      SinkConfig sc;
      sc.name = ORDO_TRY(string_at(t, "name", "sink", source));
      sc.type = ORDO_TRY(string_at(t, "type", "sink", source));
      if (!valid_name(sc.name)) {
        return bad(source, fmt::format("sink name '{}' must be 1-249 of [a-zA-Z0-9._-]", sc.name));
      }
      if (!names.insert(sc.name).second) {
        return bad(source, fmt::format("two sinks are named '{}'", sc.name));
      }
      if (sc.type != "table") {
        return bad(source, fmt::format("sink '{}': unknown type '{}' (table)", sc.name, sc.type));
      }
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
          return bad(source, fmt::format("sink '{}': dead_letter_topic must be a topic name",
                                         sc.name));
        }
      }
      for (const auto& topic : sc.topics) {
        if (topic == sc.dead_letter_topic) {
          return bad(source, fmt::format("sink '{}': reads its own dead_letter_topic", sc.name));
        }
      }
      c.sinks.push_back(std::move(sc));
    }
  }
  if (c.sinks.empty()) return bad(source, "no [[sink]]: nothing to run");
  return c;
}

Result<PipelineConfig> load_pipeline(const std::string& path) {
  auto text = ORDO_TRY(read_file(path, size_t(1) << 20));
  return parse_pipeline(text, path);
}

}  // namespace ordo::connect
