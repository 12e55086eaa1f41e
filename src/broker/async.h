#pragma once
// Bridges from callback APIs and other threads into C++20 coroutines on an Asio executor.
// The coroutine always resumes on its own executor (the connection's network thread), whatever
// thread the callback ran on.

#include <memory>
#include <utility>

#include <asio/any_io_executor.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

namespace ordo::broker {

// co_await on_callback<R>([](auto done) { api.call(args, done); }): start receives a copyable
// callable taking R; the coroutine resumes with that R on its own executor.
template <typename R, typename Start>
asio::awaitable<R> on_callback(Start start) {
  return asio::async_initiate<decltype(asio::use_awaitable), void(R)>(
      [start = std::move(start)](auto handler) mutable {
        auto ex = asio::get_associated_executor(handler);
        using H = decltype(handler);
        auto shared = std::make_shared<H>(std::move(handler));
        start([shared, ex](R r) mutable {
          asio::post(ex, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
        });
      },
      asio::use_awaitable);
}

// Runs fn() on another executor (e.g. the controller thread) and resumes with its result.
template <typename R, typename Executor, typename Fn>
asio::awaitable<R> run_on(Executor target, Fn fn) {
  return on_callback<R>([target, fn = std::move(fn)](auto done) mutable {
    asio::post(target, [fn = std::move(fn), done = std::move(done)]() mutable { done(fn()); });
  });
}

}  // namespace ordo::broker
