#include "connect/pg_json.h"

#include <charconv>
#include <cmath>

namespace ordo::connect::pg {

using nlohmann::json;

namespace {

Error invalid(std::string_view what, std::string_view text) {
  return make_error(Errc::invalid_argument, "{}: '{}'", what,
                    text.size() > 64 ? std::string(text.substr(0, 64)) + "..." : std::string(text));
}

bool digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr int kMaxArrayDims = 6;  // PostgreSQL's MAXDIM

// Recursive descent over PostgreSQL's array text: '{' items '}', items quoted ("...", with
// backslash escapes) or bare (NULL is null).
class ArrayParser {
 public:
  ArrayParser(std::string_view s, uint32_t element) : s_(s), element_(element) {}

  Result<json> parse() {
    // An explicit-bounds decoration "[1:3]={...}" is dropped (JSON arrays start at 0).
    if (!s_.empty() && s_[0] == '[') {
      size_t eq = s_.find('=');
      if (eq == std::string_view::npos) return invalid("array bounds without '='", s_);
      pos_ = eq + 1;
    }
    json out = ORDO_TRY(level(1));
    if (pos_ != s_.size()) return invalid("bytes after an array", s_);
    return out;
  }

 private:
  Result<json> level(int depth) {
    if (depth > kMaxArrayDims) return invalid("array deeper than 6 dimensions", s_);
    if (pos_ >= s_.size() || s_[pos_] != '{') return invalid("array without '{'", s_);
    ++pos_;
    json out = json::array();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return out;
    }
    while (true) {
      if (pos_ >= s_.size()) return invalid("array without '}'", s_);
      if (s_[pos_] == '{') {
        out.push_back(ORDO_TRY(level(depth + 1)));
      } else {
        out.push_back(ORDO_TRY(item()));
      }
      if (pos_ >= s_.size()) return invalid("array without '}'", s_);
      char c = s_[pos_++];
      if (c == '}') return out;
      if (c != ',') return invalid("array items not separated by ','", s_);
    }
  }

  Result<json> item() {
    if (s_[pos_] == '"') {
      ++pos_;
      std::string text;
      while (true) {
        if (pos_ >= s_.size()) return invalid("array item without its closing quote", s_);
        char c = s_[pos_++];
        if (c == '"') break;
        if (c == '\\') {
          if (pos_ >= s_.size()) return invalid("array item ends in a backslash", s_);
          c = s_[pos_++];
        }
        text += c;
      }
      return render_value(element_, Value{Value::Kind::text, std::move(text)});
    }
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '}') {
      if (s_[pos_] == '"' || s_[pos_] == '{' || s_[pos_] == '\\') {
        return invalid("a bare array item holds a quote, brace or backslash", s_);
      }
      ++pos_;
    }
    std::string_view bare = s_.substr(start, pos_ - start);
    if (bare.empty()) return invalid("an empty bare array item", s_);
    if (bare.size() == 4 && (bare[0] | 0x20) == 'n' && (bare[1] | 0x20) == 'u' &&
        (bare[2] | 0x20) == 'l' && (bare[3] | 0x20) == 'l') {
      return json(nullptr);
    }
    return render_value(element_, Value{Value::Kind::text, std::string(bare)});
  }

  std::string_view s_;
  uint32_t element_;
  size_t pos_ = 0;
};

}  // namespace

uint32_t oid::element_of(uint32_t array_oid) {
  switch (array_oid) {
    case 1000:
      return kBool;
    case 1001:
      return kBytea;
    case 1005:
      return kInt2;
    case 1007:
      return kInt4;
    case 1009:
      return kText;
    case 1015:
      return kVarchar;
    case 1016:
      return kInt8;
    case 1021:
      return kFloat4;
    case 1022:
      return kFloat8;
    case 1028:
      return kOid;
    case 1115:
      return kTimestamp;
    case 1182:
      return kDate;
    case 1183:
      return kTime;
    case 1185:
      return kTimestamptz;
    case 1231:
      return kNumeric;
    case 199:
      return kJson;
    case 2951:
      return kUuid;
    case 3807:
      return kJsonb;
    default:
      return 0;
  }
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> bytea_from_hex(std::string_view text) {
  if (!text.starts_with("\\x") || text.size() % 2 != 0) {
    return invalid("bytea not in hex format", text);
  }
  std::string out;
  out.reserve((text.size() - 2) / 2);
  for (size_t i = 2; i < text.size(); i += 2) {
    int hi = hex_digit(text[i]), lo = hex_digit(text[i + 1]);
    if (hi < 0 || lo < 0) return invalid("bytea with a bad hex digit", text);
    out += char(hi * 16 + lo);
  }
  return out;
}

// "YYYY-MM-DD HH:MM:SS[.f{1,6}]" then, with a zone, "+HH[:MM[:SS]]" or "-..."; infinity and
// BC values pass through as they are.
Result<std::string> iso_timestamp(std::string_view t, bool with_zone) {
  if (t == "infinity" || t == "-infinity" || t.ends_with(" BC")) return std::string(t);
  if (t.size() < 19 || !digits(t.substr(0, 4)) || t[4] != '-' || !digits(t.substr(5, 2)) ||
      t[7] != '-' || !digits(t.substr(8, 2)) || t[10] != ' ' || !digits(t.substr(11, 2)) ||
      t[13] != ':' || !digits(t.substr(14, 2)) || t[16] != ':' || !digits(t.substr(17, 2))) {
    return invalid("not a timestamp", t);
  }
  std::string out(t.substr(0, 19));
  out[10] = 'T';
  size_t i = 19;
  if (i < t.size() && t[i] == '.') {
    size_t j = i + 1;
    while (j < t.size() && t[j] >= '0' && t[j] <= '9') ++j;
    if (j == i + 1 || j - i - 1 > 6) return invalid("bad fraction of a second", t);
    out.append(t.substr(i, j - i));
    i = j;
  }
  std::string_view zone = t.substr(i);
  if (!with_zone) {
    if (!zone.empty()) return invalid("timestamp with trailing text", t);
    return out;
  }
  // +HH, +HH:MM or +HH:MM:SS.
  if (zone.size() < 3 || (zone[0] != '+' && zone[0] != '-') || !digits(zone.substr(1, 2)) ||
      !(zone.size() == 3 || (zone.size() >= 6 && zone[3] == ':' && digits(zone.substr(4, 2)) &&
                             (zone.size() == 6 || (zone.size() == 9 && zone[6] == ':' &&
                                                   digits(zone.substr(7, 2))))))) {
    return invalid("bad time zone of a timestamptz", t);
  }
  if (zone == "+00" || zone == "+00:00" || zone == "-00") {
    out += 'Z';
  } else {
    out.append(zone.substr(0, 3));
    out += ':';
    out.append(zone.size() >= 6 ? zone.substr(4, 2) : std::string_view("00"));
  }
  return out;
}

Result<json> parse_array(std::string_view text, uint32_t element_oid) {
  return ArrayParser(text, element_oid).parse();
}

Result<json> render_value(uint32_t type_oid, const Value& v) {
  if (v.kind == Value::Kind::null) return json(nullptr);
  if (v.kind == Value::Kind::unchanged_toast) return json(std::string(kUnavailable));
  const std::string& t = v.text;
  switch (type_oid) {
    case oid::kBool:
      if (t == "t") return json(true);
      if (t == "f") return json(false);
      return invalid("not a bool", t);
    case oid::kInt2:
    case oid::kInt4:
    case oid::kInt8:
    case oid::kOid: {
      int64_t n = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      if (ec != std::errc() || p != t.data() + t.size()) return invalid("not an integer", t);
      return json(n);
    }
    case oid::kFloat4:
    case oid::kFloat8: {
      if (t == "NaN" || t == "Infinity" || t == "-Infinity") return json(t);
      double d = 0;
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
      if (ec != std::errc() || p != t.data() + t.size() || !std::isfinite(d)) {
        return invalid("not a float", t);
      }
      return json(d);
    }
    case oid::kNumeric: {
      // Exact: kept as text, checked to be a number (or NaN / +-Infinity).
      if (t != "NaN" && t != "Infinity" && t != "-Infinity") {
        std::string_view s = t;
        if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
        size_t dot = s.find('.');
        std::string_view ip = s.substr(0, dot);
        std::string_view fp = dot == std::string_view::npos ? "" : s.substr(dot + 1);
        bool number = (!ip.empty() || !fp.empty()) && (ip.empty() || digits(ip)) &&
                      (fp.empty() || digits(fp));
        if (!number) return invalid("not a numeric", t);
      }
      return json(t);
    }
    case oid::kBytea:
      return json(base64(ORDO_TRY(bytea_from_hex(t))));
    case oid::kTimestamp:
      return json(ORDO_TRY(iso_timestamp(t, false)));
    case oid::kTimestamptz:
      return json(ORDO_TRY(iso_timestamp(t, true)));
    default:
      if (uint32_t e = oid::element_of(type_oid)) return parse_array(t, e);
      return json(t);
  }
}

Result<json> render_row(const Relation& rel, const Tuple& row) {
  if (row.size() != rel.columns.size()) {
    return make_error(Errc::invalid_argument, "{}.{}: a row of {} columns, the relation has {}",
                      rel.schema, rel.name, row.size(), rel.columns.size());
  }
  json out = json::object();
  for (size_t i = 0; i < row.size(); ++i) {
    auto v = render_value(rel.columns[i].type_oid, row[i]);
    if (!v) {
      return make_error(Errc::invalid_argument, "{}.{}.{}: {}", rel.schema, rel.name,
                        rel.columns[i].name, v.error().message);
    }
    out[rel.columns[i].name] = std::move(*v);
  }
  return out;
}

json envelope(const Relation& rel, json before, json after, char op, const SourceInfo& source,
              int64_t now_ms) {
  return json{{"before", std::move(before)},
              {"after", std::move(after)},
              {"source",
               {{"connector", "postgresql"},
                {"name", source.name},
                {"db", source.db},
                {"schema", rel.schema},
                {"table", rel.name},
                {"lsn", source.lsn},
                {"txId", source.xid},
                {"ts_ms", source.commit_time_us / 1000 + kPostgresEpochUnixMs},
                {"snapshot", source.snapshot}}},
              {"op", std::string(1, op)},
              {"ts_ms", now_ms}};
}

Result<json> render_key(const Relation& rel, const Tuple& row) {
  if (row.size() != rel.columns.size()) {
    return make_error(Errc::invalid_argument, "{}.{}: a row of {} columns, the relation has {}",
                      rel.schema, rel.name, row.size(), rel.columns.size());
  }
  json out = json::object();
  for (size_t i = 0; i < row.size(); ++i) {
    if (!rel.columns[i].key) continue;
    out[rel.columns[i].name] = ORDO_TRY(render_value(rel.columns[i].type_oid, row[i]));
  }
  if (out.empty()) {
    return make_error(Errc::invalid_argument,
                      "{}.{} has no key columns: give it a primary key, REPLICA IDENTITY FULL "
                      "or a configured key",
                      rel.schema, rel.name);
  }
  return out;
}

}  // namespace ordo::connect::pg
