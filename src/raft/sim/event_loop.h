#pragma once
// The simulator's clock and event queue: one thread, events ordered by (time, sequence), so a
// run is a pure function of its seed. Time is simulated microseconds; nothing here reads a
// real clock.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "base/assert.h"

namespace ordo::raft::sim {

using Time = int64_t;  // simulated microseconds
constexpr Time kMillis = 1000;
constexpr Time kSecond = 1000 * kMillis;

class EventLoop {
 public:
  // A bound on events in flight: a run that schedules more is a simulator bug.
  static constexpr size_t kMaxPending = 1 << 20;

  Time now() const { return now_; }
  void at(Time time, std::function<void()> fn) {
    ORDO_ASSERT(time >= now_);
    ORDO_ASSERT(heap_.size() < kMaxPending);
    heap_.push_back(Event{time, next_seq_++, std::move(fn)});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  void after(Time delay, std::function<void()> fn) {
    at(now_ + std::max<Time>(delay, 0), std::move(fn));
  }

  bool empty() const { return heap_.empty(); }
  size_t pending() const { return heap_.size(); }
  uint64_t executed() const { return executed_; }
  Time next_time() const { return heap_.empty() ? now_ : heap_.front().time; }

  // Runs the earliest event (the first scheduled among equal times); false when none is left.
  bool run_one() {
    if (heap_.empty()) return false;
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Event event = std::move(heap_.back());
    heap_.pop_back();
    now_ = event.time;
    ++executed_;
    event.fn();
    return true;
  }

 private:
  struct Event {
    Time time;
    uint64_t seq;
    std::function<void()> fn;
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time != b.time ? a.time > b.time : a.seq > b.seq;
    }
  };
  Time now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t executed_ = 0;
  std::vector<Event> heap_;
};

}  // namespace ordo::raft::sim
