// The admin API's HTTP layer: parsers on good and bad input, and a real server and client.

#include <gtest/gtest.h>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "http/message.h"
#include "http/server.h"

namespace ordo::http {
namespace {

TEST(HttpMessage, ParsesARequestHead) {
  auto r = parse_request_head(
      "GET /v1/partitions/my%20topic?limit=5&flag&x=a%2Fb HTTP/1.1\r\nHost: h\r\n"
      "X-Thing:  spaced value \r\n\r\n");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->path, "/v1/partitions/my topic");
  EXPECT_EQ(r->query.at("limit"), "5");
  EXPECT_EQ(r->query.at("flag"), "");
  EXPECT_EQ(r->query.at("x"), "a/b");
  EXPECT_EQ(r->headers.at("host"), "h");
  EXPECT_EQ(r->headers.at("x-thing"), "spaced value");
}

TEST(HttpMessage, RefusesMalformedRequests) {
  for (std::string_view bad : {
           "GET /\r\n\r\n",                                         // no version
           "GET / HTTP/2.0\r\n\r\n",                                // other version
           "GET  / HTTP/1.1\r\n\r\n",                               // double space
           "GET x HTTP/1.1\r\n\r\n",                                // target without '/'
           "GET /%zz HTTP/1.1\r\n\r\n",                             // bad escape
           "GET /% HTTP/1.1\r\n\r\n",                               // cut escape
           "GET /a%2 HTTP/1.1\r\n\r\n",                             // cut escape
           "GET / HTTP/1.1\r\nno colon\r\n\r\n",                    // header without a colon
           "GET / HTTP/1.1\r\n: empty name\r\n\r\n",                // empty header name
           "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",           // a body
           "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",  // a body
           "GET / HTTP/1.1\r\nHost: h\r\n",                         // head does not end
           "G\x01T / HTTP/1.1\r\n\r\n",                             // bad method
           "GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",                     // lone LF in a value
           "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",                    // control byte
       }) {
    auto r = parse_request_head(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << bad;
  }
  auto post = parse_request_head("POST / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(post);  // the server answers 405
  EXPECT_EQ(post->method, "POST");
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(kMaxRequestHead, 'a') + "\r\n\r\n";
  EXPECT_FALSE(parse_request_head(big));
}

TEST(HttpMessage, ResponsesRoundTrip) {
  Response r{404, "text/plain", "no such thing\n"};
  auto back = parse_response(encode_response(r));
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(back->status, 404);
  EXPECT_EQ(back->content_type, "text/plain");
  EXPECT_EQ(back->body, "no such thing\n");
  std::string cut = encode_response(r);
  cut.pop_back();
  EXPECT_FALSE(parse_response(cut));
  EXPECT_FALSE(parse_response("HTTP/1.1 2x0 OK\r\n\r\n"));
  EXPECT_FALSE(parse_response("HTTP/1.1 2000 OK\r\n\r\n"));
  EXPECT_FALSE(parse_response("HTTP/1.x 404\r\n\r\n"));
  EXPECT_TRUE(parse_response("HTTP/1.0 404\r\n\r\n"));
  EXPECT_FALSE(parse_response("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"));
  // A HEAD answer keeps the GET's Content-Length and has no body.
  EXPECT_TRUE(
      encode_response(r, true).ends_with("Content-Length: 14\r\nConnection: close\r\n\r\n"));
}

TEST(HttpMessage, PercentEncodingRoundTrips) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += char(c);
  auto back = percent_decode(percent_encode(all));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, all);
}

// Sends raw bytes and returns everything the server answers before it closes.
std::string raw_exchange(uint16_t port, const std::string& bytes) {
  asio::io_context ctx;
  asio::ip::tcp::socket s(ctx);
  asio::error_code ec;
  s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  EXPECT_FALSE(ec) << ec.message();
  asio::write(s, asio::buffer(bytes), ec);
  std::string out;
  char buf[4096];
  while (true) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

TEST(HttpServer, AnswersGetsAndRefusesTheRest) {
  int calls = 0;
  auto server = Server::start({}, [&](const Request& req) {
    ++calls;
    if (req.path == "/hello") return Response{200, "text/plain", "hi " + req.query.at("name")};
    return Response{404, "text/plain", "not found"};
  });
  ASSERT_TRUE(server) << server.error().to_string();
  uint16_t port = (*server)->port();
  ASSERT_NE(port, 0);

  auto ok = get("127.0.0.1", port, "/hello?name=ordo");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "hi ordo");
  auto missing = get("127.0.0.1", port, "/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(calls, 2);

  // Refused before any handler runs.
  EXPECT_TRUE(raw_exchange(port, "POST /hello HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
  EXPECT_TRUE(raw_exchange(port, "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
  std::string huge = "GET /hello HTTP/1.1\r\nX: " + std::string(2 * kMaxRequestHead, 'a');
  EXPECT_TRUE(raw_exchange(port, huge).starts_with("HTTP/1.1 431"));
  // Complete, but larger than the bound: also 431, not a parse error.
  EXPECT_TRUE(raw_exchange(port, huge + "\r\n\r\n").starts_with("HTTP/1.1 431"));
  // HEAD: the head of the GET, no body.
  auto head = raw_exchange(port, "HEAD /hello?name=x HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200")) << head;
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
  EXPECT_EQ(calls, 3);

  (*server)->stop();
  EXPECT_FALSE(get("127.0.0.1", port, "/hello", 2000));
}

TEST(HttpServer, PostsWithoutABodyWhenAllowed) {
  ServerOptions o;
  o.allow_post = true;
  auto server = Server::start(o, [&](const Request& req) {
    return Response{200, "text/plain", req.method + " " + req.path};
  });
  ASSERT_TRUE(server) << server.error().to_string();
  uint16_t port = (*server)->port();
  auto r = request("POST", "127.0.0.1", port, "/run");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->body, "POST /run");
  // Bodies are refused by the head parser, POST or not.
  EXPECT_TRUE(raw_exchange(port, "POST /run HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
                  .starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(raw_exchange(port, "POST /run HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                  .starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(raw_exchange(port, "PUT /run HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
}

TEST(HttpServer, WithSeveralThreadsAHandlerMayWaitWhileOthersAreServed) {
  // The first request's handler blocks until a later request has been answered: with one
  // thread that could never happen; with two it must.
  std::mutex mu;
  std::condition_variable cv;
  bool later_served = false, waiting = false;
  auto server = Server::start({.threads = 2}, [&](const Request& req) {
    std::unique_lock lk(mu);
    if (req.path == "/wait") {
      waiting = true;
      cv.notify_all();
      bool ok = cv.wait_for(lk, std::chrono::seconds(60), [&] { return later_served; });
      return Response{ok ? 200 : 504, "text/plain", "waited"};
    }
    later_served = true;
    cv.notify_all();
    return Response{200, "text/plain", "later"};
  });
  ASSERT_TRUE(server);
  uint16_t port = (*server)->port();
  std::thread waiter([&] {
    auto r = get("127.0.0.1", port, "/wait", 120'000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  });
  {
    std::unique_lock lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(60), [&] { return waiting; }));
  }
  auto later = get("127.0.0.1", port, "/later", 120'000);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->body, "later");
  waiter.join();
}

}  // namespace
}  // namespace ordo::http
