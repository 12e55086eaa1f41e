#include "http/message.h"

#include <charconv>

#include <fmt/format.h>

namespace ordo::http {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Splits data at "\r\n"; the last piece has no terminator.
std::string_view next_line(std::string_view& data) {
  size_t at = data.find("\r\n");
  std::string_view line = data.substr(0, at);
  data = at == std::string_view::npos ? std::string_view() : data.substr(at + 2);
  return line;
}

Result<std::map<std::string, std::string>> parse_headers(std::string_view& rest) {
  std::map<std::string, std::string> headers;
  for (int n = 0;; ++n) {
    if (rest.empty()) return make_error(Errc::invalid_argument, "headers do not end");
    std::string_view line = next_line(rest);
    if (line.empty()) break;
    if (n >= 100) return make_error(Errc::invalid_argument, "more than 100 headers");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return make_error(Errc::invalid_argument, "header line without a name and colon");
    }
    std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (!is_token_char(c)) return make_error(Errc::invalid_argument, "bad header name");
    }
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value) {
      // Control bytes other than tab (a lone CR or LF included) are not allowed in a value.
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return make_error(Errc::invalid_argument, "control byte in a header value");
      }
    }
    headers[lower(name)] = std::string(value);
  }
  return headers;
}

}  // namespace

Result<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) {
      return make_error(Errc::invalid_argument, "truncated percent escape");
    }
    int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return make_error(Errc::invalid_argument, "bad percent escape");
    out += char(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  for (char c : s) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~';
    if (plain) {
      out += c;
    } else {
      out += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
  }
  return out;
}

size_t find_head_end(std::string_view data) {
  size_t at = data.find("\r\n\r\n");
  return at == std::string_view::npos ? at : at + 4;
}

Result<Request> parse_request_head(std::string_view head) {
  if (head.size() > kMaxRequestHead) {
    return make_error(Errc::invalid_argument, "request head larger than {} bytes", kMaxRequestHead);
  }
  std::string_view rest = head;
  std::string_view line = next_line(rest);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return make_error(Errc::invalid_argument, "bad request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return make_error(Errc::invalid_argument, "unsupported version");
  }
  if (method.empty()) return make_error(Errc::invalid_argument, "empty method");
  for (char c : method) {
    if (!is_token_char(c)) return make_error(Errc::invalid_argument, "bad method");
  }
  if (target.empty() || target.front() != '/') {
    return make_error(Errc::invalid_argument, "the target must start with '/'");
  }
  Request r;
  r.method = std::string(method);
  r.headers = ORDO_TRY(parse_headers(rest));
  if (!rest.empty()) return make_error(Errc::invalid_argument, "bytes after the head");
  if (auto it = r.headers.find("content-length"); it != r.headers.end() && it->second != "0") {
    return make_error(Errc::invalid_argument, "requests with a body are not accepted");
  }
  if (r.headers.contains("transfer-encoding")) {
    return make_error(Errc::invalid_argument, "requests with a body are not accepted");
  }
  size_t q = target.find('?');
  r.path = ORDO_TRY(percent_decode(target.substr(0, q)));
  if (q != std::string_view::npos) {
    std::string_view qs = target.substr(q + 1);
    while (!qs.empty()) {
      size_t amp = qs.find('&');
      std::string_view part = qs.substr(0, amp);
      qs = amp == std::string_view::npos ? std::string_view() : qs.substr(amp + 1);
      if (part.empty()) continue;
      size_t eq = part.find('=');
      std::string name = ORDO_TRY(percent_decode(part.substr(0, eq)));
      std::string value = eq == std::string_view::npos
                              ? std::string()
                              : ORDO_TRY(percent_decode(part.substr(eq + 1)));
      r.query[std::move(name)] = std::move(value);
    }
  }
  return r;
}

std::string_view status_text(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string encode_response(const Response& r, bool head_only) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      r.status, status_text(r.status), r.content_type, r.body.size());
  if (!head_only) out += r.body;
  return out;
}

Result<Response> parse_response(std::string_view data) {
  if (data.size() > kMaxResponseBytes) return make_error(Errc::corrupt, "response too large");
  size_t end = find_head_end(data);
  if (end == std::string_view::npos) return make_error(Errc::corrupt, "response head does not end");
  std::string_view rest = data.substr(0, end);
  std::string_view line = next_line(rest);
  // HTTP/1.1 200 OK
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || (line[7] != '0' && line[7] != '1') ||
      line[8] != ' ' || (line.size() > 12 && line[12] != ' ')) {
    return make_error(Errc::corrupt, "bad status line");
  }
  Response r;
  auto [p, ec] = std::from_chars(line.data() + 9, line.data() + 12, r.status);
  if (ec != std::errc() || p != line.data() + 12 || r.status < 100 || r.status > 599) {
    return make_error(Errc::corrupt, "bad status code");
  }
  auto headers = parse_headers(rest);
  if (!headers) return make_error(Errc::corrupt, "bad response headers");
  std::string_view body = data.substr(end);
  if (auto it = headers->find("content-length"); it != headers->end()) {
    size_t n = 0;
    auto [q, e2] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
    if (e2 != std::errc() || q != it->second.data() + it->second.size()) {
      return make_error(Errc::corrupt, "bad Content-Length");
    }
    if (n > body.size()) return make_error(Errc::corrupt, "response body cut short");
    body = body.substr(0, n);
  }
  if (auto it = headers->find("content-type"); it != headers->end()) r.content_type = it->second;
  r.body = std::string(body);
  return r;
}

}  // namespace ordo::http
