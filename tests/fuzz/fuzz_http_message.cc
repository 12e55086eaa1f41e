// Fuzz target for the HTTP messages of the admin API (src/http/message.h). The parsers take
// bytes from the network: each input is handed to parse_request_head (the head find_head_end
// finds, and the whole input), to parse_response and to percent_decode. They must refuse or
// accept without crashing, and what they accept must hold up:
//  - a request: a method of token characters, a path starting with '/', lower-case token header
//    names, trimmed values, no body headers; encoded again (path and query percent-encoded) it
//    parses to the same request;
//  - a response: a status in 100..599, a body no longer than what follows the head; encoded
//    again it parses to the same status, content type and body;
//  - percent_decode(percent_encode(x)) == x for any x.
// A Response built from the input bytes (status, content type, body) must also survive
// encode_response and parse_response.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "http/message.h"

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace {

using namespace ordo;
using namespace ordo::http;

constexpr std::string_view kCrlf = "\r\n";

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Whether s is what percent_decode accepts: every '%' followed by two hex digits.
bool escapes_are_valid(std::string_view s) {
  auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') continue;
    if (s.size() - i < 3 || !hex(s[i + 1]) || !hex(s[i + 2])) return false;
    i += 2;
  }
  return true;
}

void check_percent(std::string_view in) {
  auto decoded = percent_decode(in);
  ORDO_ASSERT(decoded.has_value() == escapes_are_valid(in));
  if (decoded) {
    ORDO_ASSERT(decoded->size() <= in.size());
    if (in.find('%') == std::string_view::npos) ORDO_ASSERT(*decoded == in);
    auto again = percent_decode(percent_encode(*decoded));
    ORDO_ASSERT(again.has_value() && *again == *decoded);
  } else {
    ORDO_ASSERT(decoded.error().code == Errc::invalid_argument);
  }
  std::string encoded = percent_encode(in);
  for (char c : encoded) {
    bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || c == '%';
    ORDO_ASSERT(plain);
  }
  auto back = percent_decode(encoded);
  ORDO_ASSERT(back.has_value() && *back == in);
}

void check_find_head_end(std::string_view in) {
  size_t end = find_head_end(in);
  if (end == std::string_view::npos) {
    ORDO_ASSERT(in.find("\r\n\r\n") == std::string_view::npos);
    return;
  }
  ORDO_ASSERT(end >= 4 && end <= in.size());
  ORDO_ASSERT(in.substr(end - 4, 4) == "\r\n\r\n");
  ORDO_ASSERT(in.substr(0, end - 1).find("\r\n\r\n") == std::string_view::npos);
}

// The request head that carries req: the path and query percent-encoded again.
std::string encode_request_head(const Request& req) {
  std::string out = req.method + " /" + percent_encode(std::string_view(req.path).substr(1));
  char sep = '?';
  for (const auto& [name, value] : req.query) {
    out += sep;
    out += percent_encode(name);
    out += '=';
    out += percent_encode(value);
    sep = '&';
  }
  out += " HTTP/1.1\r\n";
  for (const auto& [name, value] : req.headers) {
    out += name;
    out += ": ";
    out += value;
    out += kCrlf;
  }
  out += kCrlf;
  return out;
}

// What any accepted request head must look like.
void check_request(std::string_view head, const Result<Request>& r) {
  if (!r) {
    ORDO_ASSERT(r.error().code == Errc::invalid_argument);
    return;
  }
  ORDO_ASSERT(head.size() <= kMaxRequestHead);
  // The head is exactly one request line, its headers and the blank line.
  ORDO_ASSERT(find_head_end(head) == head.size());
  ORDO_ASSERT(is_token(r->method));
  // The target started with '/', which percent_decode keeps as it is.
  ORDO_ASSERT(!r->path.empty() && r->path.front() == '/');
  size_t first_space = head.find(' ');
  ORDO_ASSERT(first_space != std::string_view::npos && head.substr(0, first_space) == r->method);
  ORDO_ASSERT(head.size() > first_space + 1 && head[first_space + 1] == '/');
  ORDO_ASSERT(r->headers.size() <= 100);
  for (const auto& [name, value] : r->headers) {
    ORDO_ASSERT(is_token(name));
    for (char c : name) ORDO_ASSERT(!(c >= 'A' && c <= 'Z'));
    for (char c : value) ORDO_ASSERT(!((uint8_t(c) < 0x20 && c != '\t') || c == 0x7f));
    ORDO_ASSERT(trim(value) == value);
  }
  if (auto it = r->headers.find("content-length"); it != r->headers.end()) {
    ORDO_ASSERT(it->second == "0");
  }
  ORDO_ASSERT(!r->headers.contains("transfer-encoding"));

  // Encoded again, it parses to the same request.
  std::string again = encode_request_head(*r);
  if (again.size() <= kMaxRequestHead) {
    auto back = parse_request_head(again);
    ORDO_ASSERT(back.has_value());
    ORDO_ASSERT(back->method == r->method);
    ORDO_ASSERT(back->path == r->path);
    ORDO_ASSERT(back->query == r->query);
    ORDO_ASSERT(back->headers == r->headers);
  }
}

void check_response_round_trip(const Response& r, std::string_view content_type) {
  std::string bytes = encode_response(r);
  ORDO_ASSERT(find_head_end(bytes) == bytes.size() - r.body.size());
  if (bytes.size() > kMaxResponseBytes) return;
  auto back = parse_response(bytes);
  ORDO_ASSERT(back.has_value());
  ORDO_ASSERT(back->status == r.status);
  ORDO_ASSERT(back->content_type == content_type);
  ORDO_ASSERT(back->body == r.body);
  // Extra bytes after the body (the server closed late) are not part of it.
  auto longer = parse_response(bytes + "trailing");
  ORDO_ASSERT(longer.has_value() && longer->body == r.body);
  // A HEAD answer: the head alone, which reads as cut short unless the body is empty.
  std::string head = encode_response(r, true);
  ORDO_ASSERT(head.size() == bytes.size() - r.body.size());
  auto head_back = parse_response(head);
  ORDO_ASSERT(head_back.has_value() == r.body.empty());
  // Short of its last byte, a response with a body does not parse.
  if (!r.body.empty()) {
    auto cut = parse_response(std::string_view(bytes).substr(0, bytes.size() - 1));
    ORDO_ASSERT(!cut.has_value() && cut.error().code == Errc::corrupt);
  }
}

void check_response(std::string_view in) {
  auto r = parse_response(in);
  if (!r) {
    ORDO_ASSERT(r.error().code == Errc::corrupt);
    return;
  }
  ORDO_ASSERT(r->status >= 100 && r->status <= 599);
  size_t end = find_head_end(in);
  ORDO_ASSERT(end != std::string_view::npos);
  ORDO_ASSERT(r->body.size() <= in.size() - end);
  ORDO_ASSERT(in.substr(end, r->body.size()) == r->body);
  ORDO_ASSERT(r->content_type.find(kCrlf) == std::string::npos);
  ORDO_ASSERT(trim(r->content_type) == r->content_type);
  check_response_round_trip(*r, r->content_type);
}

// A Response made of the input: bytes 0-1 the status, byte 2 the content type's length, then
// the content type and the body. The content type keeps every byte but control bytes other
// than tab (a header value may not hold them: the server only sends constant content types);
// parse_response gives it back trimmed.
void check_built_response(std::string_view in) {
  if (in.size() < 3) return;
  Response r;
  r.status = 100 + ((uint8_t(in[0]) << 8) | uint8_t(in[1])) % 500;
  size_t ct_len = std::min<size_t>(uint8_t(in[2]) % 64, in.size() - 3);
  r.content_type.clear();
  for (char c : in.substr(3, ct_len)) {
    if ((uint8_t(c) < 0x20 && c != '\t') || c == 0x7f) continue;
    r.content_type += c;
  }
  r.body = std::string(in.substr(3 + ct_len));
  check_response_round_trip(r, trim(r.content_type));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  check_find_head_end(in);

  // As the server does: the head up to the blank line, if there is one.
  size_t end = find_head_end(in);
  if (end != std::string_view::npos) {
    std::string_view head = in.substr(0, end);
    auto r = parse_request_head(head);
    check_request(head, r);
  }
  // The whole input: only a complete head with nothing after it parses.
  auto whole = parse_request_head(in);
  check_request(in, whole);
  if (whole) ORDO_ASSERT(end == in.size());

  check_response(in);
  check_built_response(in);
  check_percent(in);
  return 0;
}
