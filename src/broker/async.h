#pragma once
// Bridges from callback APIs and other threads into C++20 coroutines on an Asio executor.
// The coroutine always resumes on its own executor (the connection's network thread), whatever
// thread the callback ran on.

#include <functional>
#include <memory>
#include <utility>
#include <vector>

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

// Runs fn() on another executor (e.g. the metadata thread) and resumes with its result.
template <typename R, typename Executor, typename Fn>
asio::awaitable<R> run_on(Executor target, Fn fn) {
  return on_callback<R>([target, fn = std::move(fn)](auto done) mutable {
    asio::post(target, [fn = std::move(fn), done = std::move(done)]() mutable { done(fn()); });
  });
}

// Coroutines of one single-threaded executor waiting for a condition that another coroutine
// of the same executor changes. wait() suspends until the next notify_all(); callers re-check
// their condition in a loop. Nothing is lost between the check and the wait because both
// sides run on one thread. (A timer set to "never" and cancelled does the same but costs a
// timerfd update per wake-up.)
class Wakeup {
 public:
  explicit Wakeup(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  asio::awaitable<void> wait() {
    return asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [this](auto handler) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          waiters_.push_back([shared] { (*shared)(); });
        },
        asio::use_awaitable);
  }

  // Resumes every current waiter (each through a post, never inline).
  void notify_all() {
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (auto& w : waiters) asio::post(ex_, std::move(w));
  }

  size_t waiting() const { return waiters_.size(); }

 private:
  asio::any_io_executor ex_;
  std::vector<std::function<void()>> waiters_;
};

}  // namespace ordo::broker
