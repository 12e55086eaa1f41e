// PeerTransport over loopback: three nodes, each with its own io_context thread, exchanging
// raft wire frames (error frames, whose message text numbers them). No timing in assertions:
// conditions are awaited with a generous upper bound.

#include "cluster/peer_transport.h"

#include <gtest/gtest.h>

#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "base/coding.h"
#include "raft/batcher.h"
#include "raft/replica.h"
#include "raft/wire.h"

namespace ordo::cluster {
namespace {

namespace wire = raft::wire;
using asio::ip::tcp;

std::vector<uint8_t> frame(NodeId from, NodeId to, const std::string& text) {
  wire::ErrorInfo e;
  e.message = text;
  return wire::encode_error(from, to, e).value();
}

bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 1000; i++) {  // 10 s upper bound; normally a few ms
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

struct Node {
  Node(NodeId id, std::string cluster = "c1", uint16_t port = 0, size_t max_queue = 64u << 20,
       int64_t idle_ms = 3000) {
    PeerTransportOptions o;
    o.self.id = id;
    o.self.incarnation = 100 + uint64_t(id);
    o.self.cluster_id = std::move(cluster);
    o.self.peer_host = "127.0.0.1";
    o.listen_port = port;
    o.max_queue_bytes = max_queue;
    o.idle_timeout_ms = idle_ms;
    o.keepalive_ms = std::min<int64_t>(1000, idle_ms / 3);
    t = std::make_unique<PeerTransport>(ctx, o);
    t->on_frame = [this](NodeId from, std::span<const uint8_t> bytes) {
      auto f = wire::decode_frame(bytes);
      std::lock_guard lock(mu);
      got.emplace_back(from, f ? f->error.message : std::string("?"));
    };
    t->on_peer = [this](const Hello& h, bool up) {
      std::lock_guard lock(mu);
      events.emplace_back(h.id, up);
    };
    this->port = t->start().value();
    thread = std::thread([this] { ctx.run(); });
  }
  ~Node() { shutdown(); }
  void shutdown() {
    if (!thread.joinable()) return;
    t->stop();
    guard.reset();
    thread.join();  // returns only when no handler is left on the context
  }
  std::vector<std::string> from(NodeId id) {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (auto& [f, text] : got) {
      if (f == id) out.push_back(text);
    }
    return out;
  }
  PeerStats peer(NodeId id) {
    for (auto& p : t->stats().peers) {
      if (p.id == id) return p;
    }
    return PeerStats{};
  }

  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::unique_ptr<PeerTransport> t;
  uint16_t port = 0;
  std::thread thread;
  std::mutex mu;
  std::vector<std::pair<NodeId, std::string>> got;
  std::vector<std::pair<NodeId, bool>> events;
};

void connect_all(std::vector<Node*> nodes, std::vector<NodeId> ids) {
  std::vector<PeerAddress> peers;
  for (size_t i = 0; i < nodes.size(); i++) peers.push_back({ids[i], "127.0.0.1", nodes[i]->port});
  for (Node* n : nodes) n->t->set_peers(peers);
}

std::vector<std::string> numbered(int from, int n) {
  std::vector<std::string> out;
  for (int i = from; i < from + n; i++) out.push_back(std::to_string(i));
  return out;
}

TEST(HelloTest, RoundTripAndRejectsDamage) {
  Hello h{7, 42, "cluster-a", "10.0.0.7", 9093};
  auto bytes = encode_hello(h).value();
  EXPECT_EQ(decode_hello(bytes).value(), h);
  for (size_t cut = 0; cut < bytes.size(); cut++) {
    EXPECT_FALSE(decode_hello(std::span(bytes).first(cut)).has_value()) << cut;
  }
  for (size_t i = 0; i < bytes.size(); i++) {
    auto flipped = bytes;
    flipped[i] ^= 0x01;
    EXPECT_FALSE(decode_hello(flipped).has_value()) << i;
  }
  Hello long_host = h;
  long_host.peer_host.assign(kMaxHelloString + 1, 'x');
  EXPECT_FALSE(encode_hello(long_host).has_value());
}

TEST(PeerTransportTest, ThreeNodesExchangeBothWaysOneConnectionPerPairInOrder) {
  Node a(1), b(2), c(3);
  std::vector<Node*> nodes{&a, &b, &c};
  connect_all(nodes, {1, 2, 3});
  // Warm-up: every node has frames for every other at once, so pairs may dial each other
  // simultaneously; frames written on a connection that loses are lost (Raft resends). Wait
  // until each pair is down to its one kept connection.
  for (NodeId from = 1; from <= 3; from++) {
    for (NodeId to = 1; to <= 3; to++) {
      if (from != to) nodes[from - 1]->t->send(to, frame(from, to, "warm-up"));
    }
  }
  for (Node* n : nodes) {
    ASSERT_TRUE(eventually([&] {
      auto s = n->t->stats();
      if (s.open_sockets != 2 || s.peers.size() != 2) return false;
      for (auto& p : s.peers) {
        if (!p.connected || p.open_connections != 1) return false;
      }
      return true;
    }));
  }
  for (Node* n : nodes) {
    std::lock_guard lock(n->mu);
    n->got.clear();
  }
  for (int i = 0; i < 200; i++) {
    for (NodeId from = 1; from <= 3; from++) {
      for (NodeId to = 1; to <= 3; to++) {
        if (from != to) nodes[from - 1]->t->send(to, frame(from, to, std::to_string(i)));
      }
    }
  }
  for (NodeId at = 1; at <= 3; at++) {
    for (NodeId from = 1; from <= 3; from++) {
      if (from == at) continue;
      Node* n = nodes[at - 1];
      ASSERT_TRUE(eventually([&] { return n->from(from).size() >= 200; })) << at << "<-" << from;
      EXPECT_EQ(n->from(from), numbered(0, 200)) << at << "<-" << from;  // in order, no loss
    }
  }
  // Exactly one connection per pair, on both ends.
  for (Node* n : nodes) {
    ASSERT_TRUE(eventually([&] { return n->t->stats().open_sockets == 2; }));
    for (auto& p : n->t->stats().peers) {
      EXPECT_TRUE(p.connected);
      EXPECT_EQ(p.open_connections, 1u);
      EXPECT_GE(p.frames_sent, 200u);
      EXPECT_GE(p.frames_received, 200u);
    }
  }
}

TEST(PeerTransportTest, SimultaneousDialKeepsTheLowerIdsConnection) {
  for (int round = 0; round < 5; round++) {
    Node a(1), b(2);
    connect_all({&a, &b}, {1, 2});
    // Both have frames at once: both dial.
    a.t->send(2, frame(1, 2, "x"));
    b.t->send(1, frame(2, 1, "y"));
    bool ok = eventually([&] {
      auto sa = a.t->stats(), sb = b.t->stats();
      return sa.open_sockets == 1 && sb.open_sockets == 1 && a.peer(2).connected &&
             b.peer(1).connected;
    });
    ASSERT_TRUE(ok);
    // Both ends kept the connection node 1 dialed.
    EXPECT_EQ(a.peer(2).kept_dialer, 1);
    EXPECT_EQ(b.peer(1).kept_dialer, 1);
    // Frames flow both ways on the one kept connection.
    for (int i = 0; i < 50; i++) {
      a.t->send(2, frame(1, 2, "a" + std::to_string(i)));
      b.t->send(1, frame(2, 1, "b" + std::to_string(i)));
    }
    ASSERT_TRUE(eventually([&] { return !b.from(1).empty() && b.from(1).back() == "a49"; }));
    ASSERT_TRUE(eventually([&] { return !a.from(2).empty() && a.from(2).back() == "b49"; }));
    EXPECT_EQ(a.t->stats().open_sockets, 1u);
    EXPECT_EQ(b.t->stats().open_sockets, 1u);
  }
}

TEST(PeerTransportTest, RestartedPeerReconnectsAndDeliveryResumes) {
  Node a(1);
  auto b = std::make_unique<Node>(2);
  connect_all({&a, b.get()}, {1, 2});
  a.t->send(2, frame(1, 2, "before"));
  ASSERT_TRUE(eventually([&] { return b->from(1).size() == 1; }));
  b.reset();  // stopped: its sockets close
  ASSERT_TRUE(eventually([&] { return !a.peer(2).connected; }));

  // A new transport for node 2 on a new port, announced by set_peers.
  b = std::make_unique<Node>(2);
  a.t->set_peers({{2, "127.0.0.1", b->port}});
  b->t->set_peers({{1, "127.0.0.1", a.port}});
  for (int i = 0; i < 10; i++) a.t->send(2, frame(1, 2, std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return b->from(1).size() == 10; }));
  EXPECT_EQ(b->from(1), numbered(0, 10));
  EXPECT_TRUE(a.peer(2).connected);
  EXPECT_EQ(a.peer(2).reconnects, 1u);
  b->t->send(1, frame(2, 1, "back"));
  ASSERT_TRUE(eventually([&] { return a.from(2).size() == 1; }));
}

TEST(PeerTransportTest, QueueOverflowDropsAndCountsWithoutBlocking) {
  // Node 2 exists in the peer list but nothing listens there: frames queue up to the bound.
  Node a(1, "c1", 0, /*max_queue=*/4096);
  uint16_t dead_port;
  {
    asio::io_context tmp;
    tcp::acceptor probe(tmp, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    dead_port = probe.local_endpoint().port();
  }
  a.t->set_peers({{2, "127.0.0.1", dead_port}});
  auto f = frame(1, 2, std::string(100, 'z'));
  for (int i = 0; i < 1000; i++) a.t->send(2, f);
  size_t fit = 4096 / f.size();
  ASSERT_TRUE(eventually([&] { return a.peer(2).dropped == 1000 - fit; }));
  EXPECT_FALSE(a.peer(2).connected);
}

// A raw client: connects to `port`, writes `bytes`, and answers whether the transport closed
// the connection (a read sees EOF or a reset).
bool closed_after(uint16_t port, const std::vector<uint8_t>& bytes) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::write(s, asio::buffer(bytes));
  std::error_code ec;
  uint8_t buf[4096];
  for (int i = 0; i < 100; i++) {  // the transport's hellos arrive first; EOF after them
    s.read_some(asio::buffer(buf), ec);
    if (ec) return true;
  }
  return false;
}

TEST(PeerTransportTest, BadCrcOrForeignClusterClosesOnlyThatConnection) {
  Node a(1), b(2);
  connect_all({&a, &b}, {1, 2});
  a.t->send(2, frame(1, 2, "0"));
  ASSERT_TRUE(eventually([&] { return b.from(1).size() == 1; }));

  // A hello from another cluster.
  Hello foreign{9, 1, "other", "127.0.0.1", 1};
  EXPECT_TRUE(closed_after(a.port, encode_hello(foreign).value()));
  // A hello claiming a's own id.
  Hello impostor{1, 1, "c1", "127.0.0.1", 1};
  EXPECT_TRUE(closed_after(a.port, encode_hello(impostor).value()));
  ASSERT_TRUE(eventually([&] { return a.t->stats().rejected == 2; }));

  // A good hello as node 9, then a frame with a bad CRC.
  Hello nine{9, 1, "c1", "127.0.0.1", 1};
  auto bytes = encode_hello(nine).value();
  auto bad = frame(9, 1, "bad");
  bad.back() ^= 0xff;
  bytes.insert(bytes.end(), bad.begin(), bad.end());
  EXPECT_TRUE(closed_after(a.port, bytes));
  ASSERT_TRUE(eventually([&] { return a.peer(9).bad_frames == 1; }));

  // A frame addressed to another node.
  bytes = encode_hello(nine).value();
  auto misaddressed = frame(9, 5, "wrong");
  bytes.insert(bytes.end(), misaddressed.begin(), misaddressed.end());
  EXPECT_TRUE(closed_after(a.port, bytes));
  ASSERT_TRUE(eventually([&] { return a.peer(9).bad_frames == 2; }));

  // A header whose length is beyond the bound: closed before any allocation.
  std::vector<uint8_t> huge = encode_hello(nine).value();
  auto big = frame(9, 1, "x");
  store_be32(big.data(), uint32_t(wire::kMaxFrameBytes));
  huge.insert(huge.end(), big.begin(), big.end());
  EXPECT_TRUE(closed_after(a.port, huge));
  ASSERT_TRUE(eventually([&] { return a.peer(9).bad_frames == 3; }));

  // The 1-2 connection was untouched.
  EXPECT_TRUE(a.peer(2).connected);
  EXPECT_EQ(a.peer(2).reconnects, 0u);
  for (int i = 1; i < 5; i++) a.t->send(2, frame(1, 2, std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return b.from(1).size() == 5; }));
  EXPECT_EQ(b.from(1), numbered(0, 5));
}

TEST(PeerTransportTest, SilentConnectionIsClosedByTheIdleTimeout) {
  Node a(1, "c1", 0, 64u << 20, /*idle_ms=*/300);
  Hello nine{9, 1, "c1", "127.0.0.1", 1};
  // Says hello, then nothing: a's keep-alives arrive, then a closes it.
  EXPECT_TRUE(closed_after(a.port, encode_hello(nine).value()));
  ASSERT_TRUE(eventually([&] { return !a.peer(9).connected && a.t->stats().open_sockets == 0; }));
  EXPECT_EQ(a.peer(9).bad_frames, 0u);
}

TEST(PeerTransportTest, BlockedPeerDropsTrafficBothWays) {
  Node a(1), b(2);
  connect_all({&a, &b}, {1, 2});
  a.t->send(2, frame(1, 2, "0"));
  ASSERT_TRUE(eventually([&] { return b.from(1).size() == 1; }));
  a.t->set_blocked(2, true);
  a.t->send(2, frame(1, 2, "lost"));
  b.t->send(1, frame(2, 1, "lost"));
  ASSERT_TRUE(eventually([&] { return a.peer(2).dropped == 2; }));
  a.t->set_blocked(2, false);
  a.t->send(2, frame(1, 2, "1"));
  b.t->send(1, frame(2, 1, "1"));
  ASSERT_TRUE(eventually([&] { return b.from(1).size() == 2 && a.from(2).size() == 1; }));
  EXPECT_EQ(b.from(1), numbered(0, 2));
  EXPECT_EQ(a.from(2), std::vector<std::string>{"1"});
}

// ---- end to end: three raft::Replicas over three PeerTransports and raft::Batchers --------

// In-memory storage; syncs complete on the next turn of the node's thread.
class MemStorage : public raft::Storage {
 public:
  explicit MemStorage(asio::io_context& ctx) : ctx_(ctx) {}
  Result<std::vector<raft::Entry>> read(raft::Offset from, size_t) override {
    std::vector<raft::Entry> out;
    for (const auto& e : log_) {
      if (e.end() > from) out.push_back(e);
    }
    return out;
  }
  Result<void> save_state(const raft::HardState&) override { return ok(); }
  Result<void> reset(raft::Offset, raft::Term) override {
    log_.clear();
    return ok();
  }
  Result<void> truncate(raft::Offset end) override {
    while (!log_.empty() && log_.back().base >= end) log_.pop_back();
    return ok();
  }
  Result<void> append(std::span<const raft::Entry> entries) override {
    log_.insert(log_.end(), entries.begin(), entries.end());
    return ok();
  }
  Result<raft::Entry> append_leader(raft::Term term, raft::Payload payload,
                                    int32_t records) override {
    raft::Entry e;
    e.term = term;
    e.base = log_.empty() ? 0 : log_.back().end();
    e.last = e.base + records - 1;
    e.payload = std::move(payload);
    log_.push_back(e);
    return e;
  }
  void sync(std::function<void(Result<void>)> done) override {
    asio::post(ctx_, [done = std::move(done)] { done(ok()); });
  }

 private:
  asio::io_context& ctx_;
  std::vector<raft::Entry> log_;
};

// One node: its thread runs the transport, the Batcher, the Replica and its tick timer.
struct RaftNode : raft::Transport {
  explicit RaftNode(NodeId id) : batcher(id), storage(ctx), tick_timer(ctx) {
    PeerTransportOptions o;
    o.self = Hello{id, 1, "raft", "127.0.0.1", 0};
    net = std::make_unique<PeerTransport>(ctx, o);
    net->on_frame = [this](NodeId, std::span<const uint8_t> bytes) {
      auto received = batcher.receive(bytes);
      if (!received) return;
      for (const auto& m : received->messages) replica->receive(m);
    };
    port = net->start().value();
    raft::Options ro;
    ro.self = raft::Member{id, 1};
    ro.seed = uint64_t(id) * 7919;
    raft::Restored r;
    raft::Config c;
    for (NodeId v : {1, 2, 3}) c.voters.push_back(raft::Member{v, 1});
    r.state.configs = {raft::ConfigAt{-1, c}};
    replica = std::make_unique<raft::Replica>(ro, r, &storage, this);
    tick();
    thread = std::thread([this] { ctx.run(); });
  }
  ~RaftNode() override {
    net->stop();
    asio::post(ctx, [this] {
      stopped = true;
      tick_timer.cancel();
    });
    guard.reset();
    thread.join();
  }
  void send(raft::Message message) override {  // raft::Transport, on this node's thread
    batcher.add(std::move(message));
    if (flush_posted) return;
    flush_posted = true;
    asio::post(ctx, [this] {
      flush_posted = false;
      for (auto& f : batcher.flush()) net->send(f.to, std::move(f.bytes));
    });
  }
  void tick() {
    tick_timer.expires_after(std::chrono::milliseconds(10));
    tick_timer.async_wait([this](std::error_code ec) {
      if (ec || stopped) return;
      replica->tick();
      tick();
    });
  }
  template <typename F>
  auto on_thread(F f) {  // runs f on the node's thread, waits for its answer
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto answer = task.get_future();
    asio::post(ctx, [&task] { task(); });
    return answer.get();
  }

  asio::io_context ctx;
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  raft::Batcher batcher;
  MemStorage storage;
  asio::steady_timer tick_timer;
  std::unique_ptr<PeerTransport> net;
  std::unique_ptr<raft::Replica> replica;
  uint16_t port = 0;
  bool flush_posted = false;
  bool stopped = false;
  std::thread thread;
};

TEST(PeerTransportRaftTest, ThreeReplicasElectALeaderAndCommitAppends) {
  std::vector<std::unique_ptr<RaftNode>> nodes;
  for (NodeId id : {1, 2, 3}) nodes.push_back(std::make_unique<RaftNode>(id));
  std::vector<PeerAddress> peers;
  for (NodeId id : {1, 2, 3}) peers.push_back({id, "127.0.0.1", nodes[size_t(id - 1)]->port});
  for (auto& n : nodes) n->net->set_peers(peers);

  int appended = 0;
  ASSERT_TRUE(eventually([&] {
    for (auto& n : nodes) {
      appended += n->on_thread([&] {
        int done = 0;
        while (appended + done < 100 && n->replica->core().is_leader()) {
          auto payload = std::make_shared<const std::vector<uint8_t>>(8, uint8_t(appended + done));
          if (!n->replica->append(payload, 1)) break;
          done++;
        }
        return done;
      });
    }
    return appended == 100;
  }));
  // Every replica commits everything the leader wrote (the 100 records and its term's entry).
  ASSERT_TRUE(eventually([&] {
    raft::Offset leader_end = -1;
    std::vector<raft::Offset> commits;
    for (auto& n : nodes) {
      commits.push_back(n->on_thread([&] { return n->replica->core().commit(); }));
      leader_end = std::max(leader_end, commits.back());
    }
    return leader_end >= 100 && std::count(commits.begin(), commits.end(), leader_end) == 3;
  }));
}

}  // namespace
}  // namespace ordo::cluster
