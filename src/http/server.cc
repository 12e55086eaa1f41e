#include "http/server.h"

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "base/log.h"

namespace ordo::http {

using asio::ip::tcp;

struct Server::Impl {
  ServerOptions opts;
  Handler handler;
  asio::io_context ctx;  // may be run by several threads (ServerOptions::threads)
  tcp::acceptor acceptor{ctx};
  std::vector<std::thread> threads;
  std::atomic<int> connections{0};
  bool stopped = false;

  asio::awaitable<void> serve(tcp::socket accepted) {
    // Shared with the deadline's handler, which may run after this frame ends.
    auto owned = std::make_shared<tcp::socket>(std::move(accepted));
    tcp::socket& sock = *owned;
    // A deadline for the whole request: a slow or silent client is closed. On this
    // connection's strand, like the coroutine.
    asio::steady_timer deadline(co_await asio::this_coro::executor);
    deadline.expires_after(std::chrono::milliseconds(opts.read_timeout_ms));
    deadline.async_wait([owned](const asio::error_code& ec) {
      if (!ec) {
        asio::error_code ignored;
        owned->close(ignored);
      }
    });
    std::string data;
    char buf[4096];
    size_t head_end = std::string::npos;
    Response resp;
    bool head_only = false;
    bool respond = true;
    while (true) {
      asio::error_code ec;
      size_t n = co_await sock.async_read_some(asio::buffer(buf),
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        respond = false;
        break;
      }
      data.append(buf, n);
      head_end = find_head_end(data);
      if (head_end != std::string::npos && head_end <= kMaxRequestHead) break;
      if (data.size() > kMaxRequestHead) {
        head_end = std::string::npos;
        resp = {431, "text/plain", "request head too large\n"};
        break;
      }
    }
    if (respond && head_end != std::string::npos) {
      auto req = parse_request_head(std::string_view(data).substr(0, head_end));
      if (!req) {
        resp = {400, "text/plain", req.error().message + "\n"};
      } else if (req->method != "GET" && req->method != "HEAD" &&
                 !(req->method == "POST" && opts.allow_post)) {
        resp = {405, "text/plain", fmt::format("method {} is not allowed\n", req->method)};
      } else {
        head_only = req->method == "HEAD";
        resp = handler(*req);
      }
    }
    if (respond) {
      std::string out = encode_response(resp, head_only);
      asio::error_code ec;
      co_await asio::async_write(sock, asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
    }
    deadline.cancel();
    asio::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
    connections.fetch_sub(1);
  }

  asio::awaitable<void> accept_loop() {
    while (true) {
      asio::error_code ec;
      tcp::socket sock =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        continue;
      }
      if (connections.load() >= opts.max_connections) {
        asio::error_code ignored;
        sock.close(ignored);
        continue;
      }
      connections.fetch_add(1);
      asio::co_spawn(asio::make_strand(ctx), serve(std::move(sock)), asio::detached);
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
}

Result<std::unique_ptr<Server>> Server::start(ServerOptions options, Handler handler) {
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->handler = std::move(handler);
  asio::error_code ec;
  auto addr = asio::ip::make_address(options.host, ec);
  if (ec)
    return make_error(Errc::invalid_argument, "admin address {}: {}", options.host, ec.message());
  tcp::endpoint ep(addr, options.port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(64, ec);
  if (ec) {
    return make_error(Errc::io, "admin API cannot listen on {}:{}: {}", options.host, options.port,
                      ec.message());
  }
  Impl* p = impl.get();
  asio::co_spawn(p->ctx, p->accept_loop(), asio::detached);
  for (int i = 0; i < std::max(1, options.threads); ++i) {
    p->threads.emplace_back([p] { p->ctx.run(); });
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

uint16_t Server::port() const {
  asio::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Server::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  // Requests in progress are abandoned (their sockets close with the context).
  impl_->ctx.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  asio::error_code ignored;
  impl_->acceptor.close(ignored);
}

Result<Response> request(std::string_view method, const std::string& host, uint16_t port,
                         const std::string& target, int64_t timeout_ms) {
  asio::io_context ctx(1);
  tcp::socket sock(ctx);
  tcp::resolver resolver(ctx);
  std::string data;
  asio::error_code result = asio::error::timed_out;
  bool done = false;
  auto run = [&]() -> asio::awaitable<void> {
    asio::error_code rec;
    auto eps = co_await resolver.async_resolve(host, std::to_string(port),
                                               asio::redirect_error(asio::use_awaitable, rec));
    if (rec) {
      result = rec;
      done = true;
      co_return;
    }
    asio::error_code cec;
    co_await asio::async_connect(sock, eps, asio::redirect_error(asio::use_awaitable, cec));
    if (cec) {
      result = cec;
      done = true;
      co_return;
    }
    std::string req = fmt::format(
        "{} {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: ordo\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n",
        method, target, host, port);
    asio::error_code wec;
    co_await asio::async_write(sock, asio::buffer(req),
                               asio::redirect_error(asio::use_awaitable, wec));
    if (wec) {
      result = wec;
      done = true;
      co_return;
    }
    char buf[16384];
    while (data.size() <= kMaxResponseBytes) {
      asio::error_code ec;
      size_t n = co_await sock.async_read_some(asio::buffer(buf),
                                               asio::redirect_error(asio::use_awaitable, ec));
      data.append(buf, n);
      if (ec) {
        result = ec == asio::error::eof ? asio::error_code() : ec;
        break;
      }
    }
    done = true;
  };
  asio::co_spawn(ctx, run(), asio::detached);
  ctx.run_for(std::chrono::milliseconds(timeout_ms));
  if (!done) {
    return make_error(Errc::io, "{} http://{}:{}{}: no answer within {} ms", method, host, port,
                      target, timeout_ms);
  }
  if (result) {
    return make_error(Errc::io, "{} http://{}:{}{}: {}", method, host, port, target,
                      result.message());
  }
  return parse_response(data);
}

}  // namespace ordo::http
