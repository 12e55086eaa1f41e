#pragma once
// HTTP/1.1 messages of the admin API: the request head a server accepts and the response a
// client reads back. Only what the admin API needs: GET and HEAD requests without a body,
// responses with a Content-Length body. The parsers take bytes from the network and never
// trust them: every size is bounded and checked against what is there (fuzzed:
// tests/fuzz/fuzz_http_message.cc).

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "base/result.h"

namespace ordo::http {

// Largest request head (request line and headers) a server reads.
inline constexpr size_t kMaxRequestHead = 16 * 1024;
// Largest response a client reads (head and body).
inline constexpr size_t kMaxResponseBytes = size_t(64) << 20;

struct Request {
  std::string method;
  std::string path;                            // percent-decoded, without the query
  std::map<std::string, std::string> query;    // decoded; a repeated name keeps its last value
  std::map<std::string, std::string> headers;  // names lower-cased
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// A request head up to and including the blank line. Errc::invalid_argument (answer 400) for
// anything malformed: bad request line, a version other than HTTP/1.0 or 1.1, a header line
// without a colon, a body (Content-Length other than 0, Transfer-Encoding), a bad
// percent-escape, a target that does not start with '/'. Any method token parses (the server
// answers 405 to methods other than GET and HEAD).
Result<Request> parse_request_head(std::string_view head);

// Position just past the "\r\n\r\n" ending a head in data, or npos.
size_t find_head_end(std::string_view data);

// The bytes of a response (HTTP/1.1, Content-Length, Connection: close). HEAD gets no body.
std::string encode_response(const Response& r, bool head_only = false);

// A whole response as read until the server closed the connection. Errc::corrupt when it
// does not parse or its body is shorter than its Content-Length.
Result<Response> parse_response(std::string_view data);

std::string_view status_text(int status);

// "%2F" -> "/", "+" stays "+". nullopt-like error on a bad escape.
Result<std::string> percent_decode(std::string_view s);
std::string percent_encode(std::string_view s);

}  // namespace ordo::http
