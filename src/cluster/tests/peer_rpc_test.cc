// PeerRpc over real PeerTransports on loopback: each node has its own io_context thread running
// the transport and the RPC; control frames (kind 4) are routed to the RPC by their header, as
// the broker does. No timing in assertions: outcomes are awaited (futures, conditions with a
// generous upper bound). The timeouts under test are short, and only their outcome is checked.

#include "cluster/peer_rpc.h"

#include <gtest/gtest.h>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "base/coding.h"
#include "base/crc32c.h"
#include "cluster/peer_transport.h"
#include "raft/wire.h"

namespace ordo::cluster {
namespace {

namespace wire = raft::wire;
using Body = std::vector<uint8_t>;

Body bytes(const std::string& s) {
  return Body(s.begin(), s.end());
}
std::string text(const Body& b) {
  return std::string(b.begin(), b.end());
}

bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 1000; i++) {  // 10 s upper bound; normally a few ms
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

constexpr uint16_t kEcho = 1;      // answers "<node>:<body>"
constexpr uint16_t kFail = 2;      // answers an error already_exists
constexpr uint16_t kDrop = 3;      // drops its Reply without calling it
constexpr uint16_t kHold = 4;      // keeps its Reply in Node::held
constexpr uint16_t kWorker = 5;    // replies from another thread
constexpr int64_t kLong = 10'000;  // a timeout no test waits for

struct Node {
  explicit Node(NodeId id, uint16_t port = 0) : id(id) {
    PeerTransportOptions o;
    o.self = Hello{id, 100 + uint64_t(id), "rpc", "127.0.0.1", 0};
    o.listen_port = port;
    o.reconnect_max_ms = 100;
    net = std::make_unique<PeerTransport>(ctx, o);
    rpc = std::make_unique<PeerRpc>(
        ctx, id, [this](NodeId to, std::vector<uint8_t> f) { net->send(to, std::move(f)); });
    net->on_frame = [this](NodeId from, std::span<const uint8_t> frame) {
      if (is_control_frame(frame)) rpc->on_frame(from, frame);
    };
    rpc->handle(kEcho, [id](NodeId, Body body, PeerRpc::Reply reply) {
      reply(bytes(std::to_string(id) + ":" + text(body)));
    });
    rpc->handle(kFail, [](NodeId from, Body, PeerRpc::Reply reply) {
      reply(make_error(Errc::already_exists, "refused for node {}", from));
    });
    rpc->handle(kDrop, [](NodeId, Body, PeerRpc::Reply) {});
    rpc->handle(kHold, [this](NodeId, Body, PeerRpc::Reply reply) {
      std::lock_guard lock(mu);
      held.push_back(std::move(reply));
    });
    rpc->handle(kWorker, [this](NodeId, Body body, PeerRpc::Reply reply) {
      std::lock_guard lock(mu);
      work.emplace_back(std::move(body), std::move(reply));
      cv.notify_one();
    });
    this->port = net->start().value();
    thread = std::thread([this] { ctx.run(); });
    worker = std::thread([this] {
      for (;;) {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return quit || !work.empty(); });
        if (work.empty()) return;
        auto [body, reply] = std::move(work.front());
        work.pop_front();
        lock.unlock();
        reply(bytes("w" + text(body)));
      }
    });
  }
  ~Node() {
    {
      std::lock_guard lock(mu);
      quit = true;
      cv.notify_one();
    }
    worker.join();
    rpc->stop();
    net->stop();
    guard.reset();
    thread.join();
  }
  // Calls and waits for the outcome (done runs on the transport thread).
  Result<Body> call(NodeId to, uint16_t type, const std::string& body, int64_t timeout_ms = kLong) {
    std::promise<Result<Body>> p;
    auto f = p.get_future();
    rpc->call(to, type, bytes(body), timeout_ms,
              [&p](Result<Body> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  NodeId id;
  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::unique_ptr<PeerTransport> net;
  std::unique_ptr<PeerRpc> rpc;
  uint16_t port = 0;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<PeerRpc::Reply> held;
  std::deque<std::pair<Body, PeerRpc::Reply>> work;
  bool quit = false;
  std::thread worker;
};

void connect_all(const std::vector<Node*>& nodes) {
  std::vector<PeerAddress> peers;
  for (Node* n : nodes) peers.push_back({n->id, "127.0.0.1", n->port});
  for (Node* n : nodes) n->net->set_peers(peers);
}

template <typename T>
Errc code_of(const Result<T>& r) {
  return r.has_value() ? Errc::ok : r.error().code;
}

TEST(PeerRpcTest, CallsAndRepliesBetweenThreeNodesEveryWay) {
  Node a(1), b(2), c(3);
  std::vector<Node*> nodes{&a, &b, &c};
  connect_all(nodes);
  for (Node* from : nodes) {
    for (Node* to : nodes) {
      if (from == to) continue;
      std::string body = "from " + std::to_string(from->id);
      auto r = from->call(to->id, kEcho, body);
      ASSERT_TRUE(r.has_value()) << r.error().to_string();
      EXPECT_EQ(text(*r), std::to_string(to->id) + ":" + body);
    }
  }
  // An empty body, and one at the bound, travel as they are.
  auto empty = a.call(2, kEcho, "");
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(text(*empty), "2:");
  std::string big(wire::kMaxControlBodyBytes - 2, 'x');  // the echo adds "2:"
  auto large = a.call(2, kEcho, big);
  ASSERT_TRUE(large.has_value()) << large.error().to_string();
  EXPECT_EQ(large->size(), wire::kMaxControlBodyBytes);
  EXPECT_EQ(a.rpc->stats().responses, 4u);
  EXPECT_EQ(b.rpc->stats().requests, 4u);
}

TEST(PeerRpcTest, ErrorsAreResultErrorsWithTheirCodeAndMessage) {
  Node a(1), b(2);
  connect_all({&a, &b});
  auto failed = a.call(2, kFail, "");
  EXPECT_EQ(code_of(failed), Errc::already_exists);
  if (!failed) {
    EXPECT_EQ(failed.error().message, "refused for node 1");
  }

  auto unknown = a.call(2, 99, "?");
  EXPECT_EQ(code_of(unknown), Errc::not_found);
  if (!unknown) {
    EXPECT_NE(unknown.error().message.find("no handler for type 99"), std::string::npos);
  }
  EXPECT_EQ(b.rpc->stats().unknown_types, 1u);

  // A body over the bound is refused before anything is sent, and so is an answer over it.
  std::string over(wire::kMaxControlBodyBytes + 1, 'x');
  EXPECT_EQ(code_of(a.call(2, kEcho, over)), Errc::too_large);
  std::string edge(wire::kMaxControlBodyBytes, 'x');  // fits; the echo's answer does not
  EXPECT_EQ(code_of(a.call(2, kEcho, edge)), Errc::too_large);
}

TEST(PeerRpcTest, ADroppedReplyOrAnUnreachablePeerTimesOut) {
  Node a(1), b(2);
  connect_all({&a, &b});
  ASSERT_TRUE(a.call(2, kEcho, "up").has_value());
  EXPECT_EQ(code_of(a.call(2, kDrop, "", 50)), kCallTimedOut);
  // The dropped Reply gave its slot back.
  ASSERT_TRUE(eventually([&] { return b.rpc->stats().requests == 2; }));

  // A handler that answers after the caller gave up: the late response is dropped.
  EXPECT_EQ(code_of(a.call(2, kHold, "", 50)), kCallTimedOut);
  {
    std::lock_guard lock(b.mu);
    ASSERT_EQ(b.held.size(), 1u);
    b.held[0](bytes("late"));
    b.held[0](bytes("twice"));  // a second answer is ignored
  }
  ASSERT_TRUE(eventually([&] { return a.rpc->stats().late_responses == 1; }));
  EXPECT_TRUE(a.call(2, kEcho, "still").has_value());

  // No node 7: nothing answers.
  EXPECT_EQ(code_of(a.call(7, kEcho, "", 50)), kCallTimedOut);
  EXPECT_EQ(a.rpc->stats().timeouts, 3u);
  EXPECT_EQ(a.rpc->stats().late_responses, 1u);
}

TEST(PeerRpcTest, CallsResumeAfterThePeerRestarts) {
  auto a = std::make_unique<Node>(1);
  auto b = std::make_unique<Node>(2);
  connect_all({a.get(), b.get()});
  ASSERT_TRUE(a->call(2, kEcho, "before").has_value());
  uint16_t port = b->port;
  b.reset();  // the process of node 2 goes away
  EXPECT_EQ(code_of(a->call(2, kEcho, "", 100)), kCallTimedOut);
  b = std::make_unique<Node>(2, port);
  connect_all({a.get(), b.get()});
  // Calls may time out while node 1 redials; one gets through once it has.
  Result<Body> r = make_error(Errc::io, "not yet");
  ASSERT_TRUE(eventually([&] {
    r = a->call(2, kEcho, "after", 200);
    return r.has_value();
  }));
  EXPECT_EQ(text(*r), "2:after");
  // And the restarted node calls back.
  auto back = b->call(1, kEcho, "hello again");
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ(text(*back), "1:hello again");
}

TEST(PeerRpcTest, ManyConcurrentCallsAnsweredFromAnotherThread) {
  Node a(1), b(2), c(3);
  connect_all({&a, &b, &c});
  ASSERT_TRUE(a.call(2, kEcho, "").has_value());
  ASSERT_TRUE(a.call(3, kEcho, "").has_value());
  constexpr int kCalls = 2000;
  std::mutex mu;
  std::vector<std::string> answers(kCalls);
  std::atomic<int> done{0}, failed{0};
  // From two threads at once, to two peers, all in flight together.
  auto fire = [&](int from, int to) {
    for (int i = from; i < to; i++) {
      NodeId peer = i % 2 == 0 ? 2 : 3;
      uint16_t type = i % 3 == 0 ? kWorker : kEcho;
      a.rpc->call(peer, type, bytes(std::to_string(i)), kLong, [&, i](Result<Body> r) {
        if (r) {
          std::lock_guard lock(mu);
          answers[size_t(i)] = text(*r);
        } else {
          failed++;
        }
        done++;
      });
    }
  };
  std::thread t1(fire, 0, kCalls / 2), t2(fire, kCalls / 2, kCalls);
  t1.join();
  t2.join();
  ASSERT_TRUE(eventually([&] { return done == kCalls; }));
  EXPECT_EQ(failed, 0);
  for (int i = 0; i < kCalls; i++) {
    std::string peer = i % 2 == 0 ? "2" : "3";
    std::string want = i % 3 == 0 ? "w" + std::to_string(i) : peer + ":" + std::to_string(i);
    EXPECT_EQ(answers[size_t(i)], want) << i;
  }
}

TEST(PeerRpcTest, PendingCallsAreBoundedAndStopFailsThemClosed) {
  Node b(2);
  asio::io_context ctx;
  auto guard = asio::make_work_guard(ctx);
  PeerTransportOptions o;
  o.self = Hello{1, 101, "rpc", "127.0.0.1", 0};
  PeerTransport net(ctx, o);
  PeerRpc rpc(
      ctx, 1, [&](NodeId to, std::vector<uint8_t> f) { net.send(to, std::move(f)); },
      PeerRpcOptions{.max_pending = 10});
  net.on_frame = [&](NodeId from, std::span<const uint8_t> f) { rpc.on_frame(from, f); };
  uint16_t port = net.start().value();
  std::vector<PeerAddress> peers{{1, "127.0.0.1", port}, {2, "127.0.0.1", b.port}};
  net.set_peers(peers);
  b.net->set_peers(peers);
  std::thread thread([&] { ctx.run(); });

  std::mutex mu;
  std::vector<Errc> outcomes;
  for (int i = 0; i < 11; i++) {
    rpc.call(2, kHold, {}, kLong, [&](Result<Body> r) {
      std::lock_guard lock(mu);
      outcomes.push_back(code_of(r));
    });
  }
  // The eleventh is refused at once; the ten wait (node 2 holds their replies).
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return outcomes.size() == 1;
  }));
  EXPECT_EQ(outcomes[0], Errc::too_large);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(b.mu);
    return b.held.size() == 10;
  }));
  rpc.stop();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return outcomes.size() == 11;
  }));
  for (size_t i = 1; i < outcomes.size(); i++) EXPECT_EQ(outcomes[i], Errc::closed) << i;
  // After stop, calls fail at once.
  std::promise<Errc> after;
  rpc.call(2, kEcho, {}, kLong, [&](Result<Body> r) { after.set_value(code_of(r)); });
  EXPECT_EQ(after.get_future().get(), Errc::closed);
  // Node 2's late answers find no call.
  {
    std::lock_guard lock(b.mu);
    for (auto& reply : b.held) reply(bytes("late"));
  }
  net.stop();
  guard.reset();
  thread.join();
}

TEST(PeerRpcTest, InflightRequestsAreBoundedAndADroppedReplyFreesItsSlot) {
  asio::io_context ctx;  // not run: the test calls on_frame itself, handlers reply inline
  std::vector<std::vector<uint8_t>> sent;
  PeerRpc probe(
      ctx, 2, [&](NodeId, std::vector<uint8_t> f) { sent.push_back(std::move(f)); },
      PeerRpcOptions{.max_inflight_requests = 2});
  std::vector<PeerRpc::Reply> held;
  probe.handle(kHold, [&](NodeId, Body, PeerRpc::Reply r) { held.push_back(std::move(r)); });
  probe.handle(kDrop, [](NodeId, Body, PeerRpc::Reply) {});
  auto request = [&](uint64_t correlation, uint16_t type) {
    auto f = wire::encode_control(1, 2, wire::Control{.correlation = correlation, .type = type});
    probe.on_frame(1, f.value());
  };
  auto last = [&] { return wire::decode_control(sent.back()).value().control; };
  request(1, kHold);
  request(2, kHold);
  EXPECT_TRUE(sent.empty());
  request(3, kHold);  // a third while two are unanswered: refused busy, handler not run
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(last().correlation, 3u);
  EXPECT_TRUE(last().error);
  EXPECT_EQ(last().error_code, uint16_t(Errc::busy));
  EXPECT_EQ(held.size(), 2u);
  held[0](Body{1});  // answered: a slot is free
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(last().correlation, 1u);
  request(4, kDrop);  // takes the slot, and gives it back when its Reply is dropped
  request(5, kHold);  // so this one is taken
  EXPECT_EQ(held.size(), 3u);
  EXPECT_EQ(sent.size(), 2u);
  request(6, kHold);  // and this one is refused again
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(last().correlation, 6u);
  EXPECT_EQ(last().error_code, uint16_t(Errc::busy));
  EXPECT_EQ(probe.stats().refused_requests, 2u);
  // Frames that are not control frames, or not for this node, are dropped and counted.
  auto other = wire::encode_control(1, 3, wire::Control{.correlation = 6, .type = kHold});
  probe.on_frame(1, other.value());
  EXPECT_TRUE(is_control_frame(other.value()));
  EXPECT_FALSE(is_control_frame(wire::encode_heartbeats(1, 2, {}).value()));
  EXPECT_FALSE(is_control_frame(std::vector<uint8_t>(wire::kKindAt + 1, 4)));  // no header
  probe.on_frame(1, wire::encode_heartbeats(1, 2, {}).value());
  EXPECT_EQ(probe.stats().bad_frames, 2u);
  EXPECT_EQ(held.size(), 3u);
  // A version this node does not read is answered with an error frame.
  auto newer = wire::encode_control(1, 2, wire::Control{.correlation = 7, .type = kHold}).value();
  newer[wire::kVersionAt] = wire::kVersion + 1;
  store_be32(newer.data() + wire::kCrcAt,
             crc32c(0, newer.data() + wire::kCrcStart, newer.size() - wire::kCrcStart));
  probe.on_frame(1, newer);
  ASSERT_EQ(sent.size(), 4u);
  auto refusal = wire::decode_frame(sent.back());
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->kind, wire::FrameKind::error);
  EXPECT_EQ(refusal->to, 1);
  EXPECT_EQ(refusal->error.code, wire::ErrorCode::unsupported_version);
}

}  // namespace
}  // namespace ordo::cluster
