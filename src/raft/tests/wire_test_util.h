#pragma once
// Helpers of the wire and Batcher tests: random messages and a printable form to compare them.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "base/random.h"
#include "base/result.h"
#include "raft/types.h"

namespace ordo::raft::testing {

// The error code of a result, Errc::ok when it has a value (so a test fails, not aborts).
template <typename T>
Errc code_of(const Result<T>& r) {
  return r.has_value() ? Errc::ok : r.error().code;
}

inline std::string show_members(const std::vector<Member>& ms) {
  std::string out;
  for (const Member& m : ms) out += fmt::format("{}/{:x} ", m.id, m.incarnation);
  return out;
}

// Everything a Message holds, payload bytes included (null and empty payloads differ).
inline std::string show(const Message& m) {
  std::string out = fmt::format("g{} t{} from {}/{:x} to {} kind {}: ", m.group, m.term, m.from.id,
                                m.from.incarnation, m.to, m.body.index());
  struct Show {
    std::string& out;
    void operator()(const VoteRequest& r) {
      out += fmt::format("last_term {} log_end {} pre {} transfer {}", r.last_term, r.log_end,
                         r.pre_vote, r.transfer);
    }
    void operator()(const VoteResponse& r) {
      out += fmt::format("granted {} pre {}", r.granted, r.pre_vote);
    }
    void operator()(const AppendRequest& r) {
      out += fmt::format("prev {}/{} commit {} start {} reset {} ", r.prev_end, r.prev_term,
                         r.commit, r.log_start, r.reset);
      if (r.start_config) {
        out += "start_config v " + show_members(r.start_config->voters) + "l " +
               show_members(r.start_config->learners);
      }
      out += "[";
      for (const Entry& e : r.entries) {
        out += fmt::format("(t{} {}..{} k{}", e.term, e.base, e.last, int(e.kind));
        if (e.config) {
          out += " v " + show_members(e.config->voters) + "l " + show_members(e.config->learners);
        }
        if (e.payload) {
          out += fmt::format(" p{}:", e.payload->size());
          for (uint8_t b : *e.payload) out += fmt::format("{:02x}", b);
        } else {
          out += " null";
        }
        out += ")";
      }
      out += "]";
    }
    void operator()(const AppendResponse& r) {
      out += fmt::format("success {} match {} log_end {} hint {}/{}", r.success, r.match_end,
                         r.log_end, r.hint_term, r.hint_start);
    }
    void operator()(const Heartbeat& r) { out += fmt::format("commit {}", r.commit); }
    void operator()(const HeartbeatResponse& r) { out += fmt::format("match {}", r.match_end); }
    void operator()(const TimeoutNow&) { out += "timeout_now"; }
  };
  std::visit(Show{out}, m.body);
  return out;
}

inline std::vector<std::string> show_all(const std::vector<Message>& ms) {
  std::vector<std::string> out;
  for (const Message& m : ms) out.push_back(show(m));
  return out;
}

// Values that exercise every byte of a field: small, negative, extreme.
inline int64_t random_i64(Random& r) {
  switch (r.below(4)) {
    case 0:
      return r.between(0, 100);
    case 1:
      return int64_t(r.next());
    case 2:
      return r.between(-2, 2);
    default:
      return r.chance(0.5) ? INT64_MAX : INT64_MIN;
  }
}
inline int32_t random_i32(Random& r) {
  return int32_t(random_i64(r));
}

inline Config random_config(Random& r) {
  Config c;
  int next_id = int(r.below(3));
  int voters = 1 + int(r.below(5)), learners = int(r.below(3));
  for (int i = 0; i < voters + learners; ++i) {
    Member m{.id = next_id, .incarnation = r.next()};
    next_id += 1 + int(r.below(1000));
    (i < voters ? c.voters : c.learners).push_back(m);
  }
  // Interleave: learners' ids between voters' ids are just as valid.
  if (r.chance(0.5) && !c.learners.empty()) std::swap(c.voters.back().id, c.learners[0].id);
  std::sort(c.voters.begin(), c.voters.end());
  std::sort(c.learners.begin(), c.learners.end());
  return c;
}

inline Payload random_payload(Random& r, size_t max_bytes) {
  if (r.chance(0.15)) return nullptr;
  auto p = std::make_shared<std::vector<uint8_t>>(r.below(max_bytes + 1));
  for (uint8_t& b : *p) b = uint8_t(r.next());
  return p;
}

inline AppendRequest random_append(Random& r, size_t max_entries, size_t max_payload) {
  AppendRequest a{.prev_end = r.between(0, 1 << 20),
                  .prev_term = random_i32(r),
                  .commit = random_i64(r),
                  .log_start = random_i64(r),
                  .reset = r.chance(0.3)};
  if (a.reset && r.chance(0.5)) a.start_config = random_config(r);
  size_t n = r.below(max_entries + 1);
  Offset next = a.prev_end;
  for (size_t i = 0; i < n; ++i) {
    Entry e{.term = random_i32(r), .base = next, .last = next + r.between(0, 500)};
    e.kind = EntryKind(r.below(3));
    if (e.kind == EntryKind::config) e.config = random_config(r);
    e.payload = random_payload(r, max_payload);
    next = e.last + 1;
    a.entries.push_back(std::move(e));
  }
  return a;
}

// A random body of variant index `kind`.
inline Body random_body(Random& r, size_t kind) {
  switch (kind) {
    case 0:
      return VoteRequest{.last_term = random_i32(r),
                         .log_end = random_i64(r),
                         .pre_vote = r.chance(0.5),
                         .transfer = r.chance(0.5)};
    case 1:
      return VoteResponse{.granted = r.chance(0.5), .pre_vote = r.chance(0.5)};
    case 2:
      return random_append(r, 5, 200);
    case 3:
      return AppendResponse{.success = r.chance(0.5),
                            .match_end = random_i64(r),
                            .log_end = random_i64(r),
                            .hint_term = random_i32(r),
                            .hint_start = random_i64(r)};
    case 4:
      return Heartbeat{.commit = random_i64(r)};
    case 5:
      return HeartbeatResponse{.match_end = random_i64(r)};
    default:
      return TimeoutNow{};
  }
}

inline Message random_message(Random& r, NodeId from, NodeId to, size_t kind) {
  return Message{.group = random_i64(r),
                 .term = random_i32(r),
                 .from = Member{.id = from, .incarnation = r.next()},
                 .to = to,
                 .body = random_body(r, kind)};
}

}  // namespace ordo::raft::testing
