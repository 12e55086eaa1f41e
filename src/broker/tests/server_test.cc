// The network server with real sockets: pipelining and response order, back-pressure,
// malformed frames, sendfile, graceful stop.

#include "broker/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/coding.h"
#include "base/log.h"
#include "protocol/header.h"
#include "protocol/messages/api_versions_request.h"
#include "protocol/messages/api_versions_response.h"
#include "protocol/messages/fetch_request.h"
#include "protocol/messages/fetch_response.h"
#include "protocol/messages/metadata_request.h"
#include "protocol/messages/metadata_response.h"
#include "protocol/messages/produce_request.h"
#include "protocol/messages/produce_response.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using storage::testing::TempDir;

class Client {
 public:
  // from: the local loopback address to connect from (127.0.0.1 by default; any 127.x.y.z
  // works on Linux without configuration).
  explicit Client(uint16_t port, const char* from = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, from, &local.sin_addr);
      EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local), 0);
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Client() { ::close(fd_); }

  template <typename Req>
  std::vector<uint8_t> frame(const Req& req, int16_t version, int32_t correlation) {
    protocol::RequestHeader h;
    h.request_api_key = Req::kApiKey;
    h.request_api_version = version;
    h.correlation_id = correlation;
    h.client_id = "server-test";
    protocol::Writer w;
    w.write(int32_t(0));
    protocol::encode_request(w, h, req);
    auto bytes = protocol::flatten(w.finish()).value();
    store_be32(bytes.data(), uint32_t(bytes.size() - 4));
    return bytes;
  }

  void send(std::span<const uint8_t> b) {
    size_t done = 0;
    while (done < b.size()) {
      ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0);
      done += size_t(n);
    }
  }

  // Reads one response frame (without its size); empty when the connection closed first.
  // Bounded: gives up after timeout_ms (the test then fails on the missing response).
  std::vector<uint8_t> read_frame(int timeout_ms = 20000) {
    uint8_t size[4];
    if (!read_exact(size, 4, timeout_ms)) return {};
    std::vector<uint8_t> body(load_be32(size));
    if (!read_exact(body.data(), body.size(), timeout_ms)) return {};
    return body;
  }

  // True when the server closed the connection (read returns 0 or an error).
  bool closed_by_server(int timeout_ms = 20000) {
    uint8_t b;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    return ::recv(fd_, &b, 1, 0) <= 0;
  }

  int fd() const { return fd_; }

 private:
  bool read_exact(uint8_t* out, size_t n, int timeout_ms) {
    size_t done = 0;
    while (done < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return false;
      ssize_t r = ::recv(fd_, out + done, n - done, 0);
      if (r <= 0) return false;
      done += size_t(r);
    }
    return true;
  }
  int fd_ = -1;
};

int32_t correlation_of(const std::vector<uint8_t>& frame) {
  return frame.size() >= 4 ? int32_t(load_be32(frame.data())) : -1;
}

// Waits (bounded: 20 s) until done() holds; returns done().
template <typename F>
bool eventually(F done) {
  for (int i = 0; i < 20000 && !done(); ++i) ::usleep(1000);
  return done();
}

// Log lines captured while a LogCapture lives.
class LogCapture {
 public:
  LogCapture() { set_log_sink(&LogCapture::sink); }
  ~LogCapture() {
    set_log_sink(nullptr);
    std::lock_guard lock(mu());
    lines().clear();
  }
  // The captured lines that contain every one of words.
  static std::vector<std::string> matching(std::initializer_list<std::string_view> words) {
    std::lock_guard lock(mu());
    std::vector<std::string> out;
    for (const auto& l : lines()) {
      bool all = true;
      for (auto w : words) all = all && l.find(w) != std::string::npos;
      if (all) out.push_back(l);
    }
    return out;
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::string>& lines() {
    static std::vector<std::string> l;
    return l;
  }
  static void sink(LogLevel, std::string_view line) {
    std::lock_guard lock(mu());
    lines().emplace_back(line);
  }
};

protocol::ProduceRequest produce_of(std::vector<uint8_t> batch) {
  protocol::ProduceRequest p;
  p.acks = 1;
  p.timeout_ms = 10000;
  protocol::ProduceRequest::TopicProduceData t;
  t.name = "t";
  protocol::ProduceRequest::PartitionProduceData pd;
  pd.index = 0;
  pd.records = protocol::Records::owned(std::move(batch));
  t.partition_data.push_back(std::move(pd));
  p.topic_data.push_back(std::move(t));
  return p;
}

// Every test runs with the partition writers on the network threads (one and two of them: a
// partition's work then runs inline or is posted to the other network thread) and on
// dedicated shard threads.
struct Threading {
  ShardMode mode;
  int network_threads;
  int shards;
};

std::string threading_name(const ::testing::TestParamInfo<Threading>& p) {
  return fmt::format("{}_{}net_{}shards", shard_mode_name(p.param.mode), p.param.network_threads,
                     p.param.mode == ShardMode::network ? p.param.network_threads : p.param.shards);
}

class ServerTest : public ::testing::TestWithParam<Threading> {
 protected:
  void start(BrokerConfig c = {}) {
    c.shard_mode = GetParam().mode;
    c.network_threads = GetParam().network_threads;
    c.shards = GetParam().shards;
    c.data_dir = tmp.path() + "/data";
    c.listen_host = "127.0.0.1";
    c.listen_port = 0;
    c.log.flush_mode = storage::FlushMode::none;
    auto b = Broker::open(c);
    ASSERT_TRUE(b) << b.error().to_string();
    broker = std::move(*b);
    server = std::make_unique<Server>(*broker);
    auto p = server->start();
    ASSERT_TRUE(p) << p.error().to_string();
    port = *p;
  }
  void TearDown() override {
    if (server) server->stop();
    if (broker) {
      EXPECT_TRUE(broker->close());
    }
  }

  protocol::FetchRequest long_poll(const std::string& topic, int32_t wait_ms) {
    protocol::FetchRequest req;
    req.max_wait_ms = wait_ms;
    req.min_bytes = 1;
    req.max_bytes = 1 << 20;
    req.session_epoch = -1;
    protocol::FetchRequest::FetchTopic t;
    t.topic = topic;
    t.partitions.push_back({0, -1, 0, -1, -1, 1 << 20, {}, {}});
    req.topics.push_back(t);
    return req;
  }

  protocol::MetadataRequest metadata(const std::string& topic) {
    protocol::MetadataRequest m;
    m.topics.emplace();
    m.topics->push_back({{}, topic, {}});
    return m;
  }

  TempDir tmp;
  std::unique_ptr<Broker> broker;
  std::unique_ptr<Server> server;
  uint16_t port = 0;
};

TEST_P(ServerTest, PipelinedResponsesComeBackInRequestOrder) {
  start();
  Client c(port);
  c.send(c.frame(metadata("t"), 12, 1));  // auto-creates t
  ASSERT_EQ(correlation_of(c.read_frame()), 1);
  // A fetch that waits (no data, min 1 byte, 1.5 s) followed by ApiVersions in the same
  // write: ApiVersions is answered at once by its handler but must be sent after the fetch.
  auto a = c.frame(long_poll("t", 1500), 12, 2);
  auto b = c.frame(protocol::ApiVersionsRequest{}, 3, 3);
  a.insert(a.end(), b.begin(), b.end());
  c.send(a);
  EXPECT_EQ(correlation_of(c.read_frame()), 2);
  EXPECT_EQ(correlation_of(c.read_frame()), 3);
}

TEST_P(ServerTest, ProducesOnOneConnectionAreAppendedInOrder) {
  start();
  Client c(port);
  c.send(c.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(c.read_frame()), 1);
  std::vector<uint8_t> all;
  for (int i = 0; i < 50; ++i) {
    protocol::ProduceRequest p;
    p.acks = 1;
    p.timeout_ms = 1000;
    protocol::ProduceRequest::TopicProduceData t;
    t.name = "t";
    protocol::ProduceRequest::PartitionProduceData pd;
    pd.index = 0;
    pd.records = protocol::Records::owned(storage::testing::make_batch(1, std::to_string(i)));
    t.partition_data.push_back(std::move(pd));
    p.topic_data.push_back(t);
    auto f = c.frame(p, 9, 100 + i);
    all.insert(all.end(), f.begin(), f.end());
  }
  c.send(all);
  for (int i = 0; i < 50; ++i) {
    auto f = c.read_frame();
    ASSERT_EQ(correlation_of(f), 100 + i);
    protocol::Reader r(f);
    protocol::ResponseHeader h;
    ASSERT_TRUE(h.decode(r, 1));  // produce v9 is flexible: header v1 (tagged fields)
    protocol::ProduceResponse resp;
    ASSERT_TRUE(resp.decode(r, 9));
    EXPECT_EQ(resp.responses.at(0).partition_responses.at(0).base_offset, i);
  }
}

TEST_P(ServerTest, FetchSendsTheStoredBytes) {
  start();
  Client c(port);
  c.send(c.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(c.read_frame()), 1);
  auto batch = storage::testing::make_batch(5, "sent", 1000, 3000);
  protocol::ProduceRequest p;
  p.acks = -1;
  p.timeout_ms = 1000;
  protocol::ProduceRequest::TopicProduceData td;
  td.name = "t";
  protocol::ProduceRequest::PartitionProduceData pd;
  pd.index = 0;
  pd.records = protocol::Records::owned(batch);
  td.partition_data.push_back(std::move(pd));
  p.topic_data.push_back(std::move(td));
  c.send(c.frame(p, 9, 2));
  ASSERT_EQ(correlation_of(c.read_frame()), 2);
  c.send(c.frame(long_poll("t", 0), 12, 3));
  auto f = c.read_frame();
  ASSERT_EQ(correlation_of(f), 3);
  protocol::Reader r(f);
  protocol::ResponseHeader h;
  ASSERT_TRUE(h.decode(r, 1));
  protocol::FetchResponse resp;
  ASSERT_TRUE(resp.decode(r, 12));
  const auto& part = resp.responses.at(0).partitions.at(0);
  ASSERT_TRUE(part.records);
  auto got = part.records->bytes();
  ASSERT_EQ(got.size(), batch.size());
  // Same bytes except the base offset (0 both) and the leader epoch the log wrote.
  EXPECT_TRUE(
      std::equal(got.begin() + 12, got.begin() + 16, std::vector<uint8_t>{0, 0, 0, 0}.begin()));
  EXPECT_TRUE(std::equal(got.begin() + 16, got.end(), batch.begin() + 16));
}

TEST_P(ServerTest, MalformedFramesCloseOnlyThatConnection) {
  start();
  Client good(port);
  good.send(good.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(good.read_frame()), 1);

  {  // negative size
    Client c(port);
    uint8_t neg[4] = {0xff, 0xff, 0xff, 0xfe};
    c.send(neg);
    EXPECT_TRUE(c.closed_by_server());
  }
  {  // larger than socket.request.max.bytes
    Client c(port);
    uint8_t big[4];
    store_be32(big, uint32_t(broker->config().socket_request_max_bytes + 1));
    c.send(big);
    EXPECT_TRUE(c.closed_by_server());
  }
  {  // garbage that frames correctly but does not decode
    Client c(port);
    std::vector<uint8_t> g = {0, 0, 0, 6, 0, 3, 0, 12, 0xde, 0xad};
    c.send(g);
    EXPECT_TRUE(c.closed_by_server());
  }
  // The first connection still works.
  good.send(good.frame(protocol::ApiVersionsRequest{}, 3, 2));
  EXPECT_EQ(correlation_of(good.read_frame()), 2);
}

TEST_P(ServerTest, BackPressureStopsReadingButEveryRequestIsAnswered) {
  BrokerConfig c;
  c.connection_max_inflight_requests = 2;
  start(c);
  Client cl(port);
  cl.send(cl.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(cl.read_frame()), 1);
  // 20 pipelined long polls (100 ms each) with at most 2 in flight: all answered, in order.
  std::vector<uint8_t> all;
  for (int i = 0; i < 20; ++i) {
    auto f = cl.frame(long_poll("t", 100), 12, 10 + i);
    all.insert(all.end(), f.begin(), f.end());
  }
  cl.send(all);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(correlation_of(cl.read_frame()), 10 + i);
}

TEST_P(ServerTest, IdleConnectionsAreClosedButNotWhileARequestIsInFlight) {
  BrokerConfig c;
  c.connections_max_idle_ms = 1000;
  start(c);
  Client busy(port);
  busy.send(busy.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(busy.read_frame()), 1);
  // A long poll of 2.5 s keeps its connection: the response arrives.
  busy.send(busy.frame(long_poll("t", 2500), 12, 2));
  EXPECT_EQ(correlation_of(busy.read_frame()), 2);
  // Then nothing happens: the broker closes it (bounded wait of 20 s in closed_by_server).
  EXPECT_TRUE(busy.closed_by_server());
}

TEST_P(ServerTest, StopFinishesInFlightRequests) {
  start();
  Client c(port);
  c.send(c.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(c.read_frame()), 1);
  c.send(c.frame(long_poll("t", 30000), 12, 2));  // ends at once when the server stops
  // Once the server has read the request (bounded wait), stop() must still answer it.
  for (int i = 0; i < 20000 && server->inflight_requests() == 0; ++i) ::usleep(1000);
  ASSERT_EQ(server->inflight_requests(), 1u);
  server->stop();
  EXPECT_EQ(correlation_of(c.read_frame()), 2);
  EXPECT_TRUE(c.closed_by_server());
}

TEST_P(ServerTest, ReadBuffersAreTakenOnlyWhileThereIsSomethingToRead) {
  start();
  Client c(port);
  c.send(c.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(c.read_frame()), 1);
  // A 1 MiB produce makes the connection's buffer grow to its largest; once answered, the
  // connection is idle and holds no buffer.
  c.send(c.frame(produce_of(storage::testing::make_batch(1, "big", 1000, 1 << 20)), 9, 2));
  ASSERT_EQ(correlation_of(c.read_frame()), 2);
  EXPECT_TRUE(eventually([&] { return server->read_buffer_bytes() == 0; }))
      << server->read_buffer_bytes() << " bytes of read buffers held by an idle connection";
  // So do 20 more idle connections that each sent a request.
  std::vector<std::unique_ptr<Client>> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(std::make_unique<Client>(port));
    idle.back()->send(idle.back()->frame(protocol::ApiVersionsRequest{}, 3, 10 + i));
    ASSERT_EQ(correlation_of(idle.back()->read_frame()), 10 + i);
  }
  EXPECT_TRUE(eventually([&] { return server->read_buffer_bytes() == 0; }))
      << server->read_buffer_bytes() << " bytes of read buffers held by 21 idle connections";
  // And the first connection still works.
  c.send(c.frame(protocol::ApiVersionsRequest{}, 3, 3));
  EXPECT_EQ(correlation_of(c.read_frame()), 3);
}

TEST_P(ServerTest, LargeFramesWaitForTheRequestBudgetSmallOnesDoNot) {
  BrokerConfig cfg;
  cfg.queued_max_request_bytes = 1 << 20;
  start(cfg);
  Client setup(port);
  setup.send(setup.frame(metadata("t"), 12, 1));
  ASSERT_EQ(correlation_of(setup.read_frame()), 1);
  // Three produces of ~600 KiB: each alone fits the 1 MiB budget, two do not.
  std::vector<std::unique_ptr<Client>> big;
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 3; ++i) {
    big.push_back(std::make_unique<Client>(port));
    frames.push_back(big.back()->frame(
        produce_of(storage::testing::make_batch(1, "b" + std::to_string(i), 1000, 600 << 10)), 9,
        100 + i));
  }
  const int64_t frame_size = int64_t(frames[0].size()) - 4;
  // The first sends all but its last byte and takes the budget; the others send 10 KiB each
  // and wait for it (their bodies are not read).
  big[0]->send(std::span(frames[0]).first(frames[0].size() - 1));
  ASSERT_TRUE(eventually([&] { return server->queued_request_bytes() == frame_size; }))
      << server->queued_request_bytes();
  for (int i = 1; i < 3; ++i) big[i]->send(std::span(frames[i]).first(10 << 10));
  ASSERT_TRUE(eventually([&] { return server->request_budget_waiters() == 2; }));
  EXPECT_EQ(server->queued_request_bytes(), frame_size);
  // Small requests on other connections are answered meanwhile.
  Client small(port);
  small.send(small.frame(protocol::ApiVersionsRequest{}, 3, 7));
  EXPECT_EQ(correlation_of(small.read_frame()), 7);
  setup.send(setup.frame(metadata("t"), 12, 8));
  EXPECT_EQ(correlation_of(setup.read_frame()), 8);
  // The first frame completes and is answered: its bytes go back and the next waiter, in
  // arrival order, gets them.
  big[0]->send(std::span(frames[0]).last(1));
  EXPECT_EQ(correlation_of(big[0]->read_frame()), 100);
  ASSERT_TRUE(eventually([&] { return server->request_budget_waiters() == 1; }));
  // The other two send the rest (from threads: the one still waiting is not read, so its
  // bytes may fill the socket buffers until its turn) and both are answered.
  std::vector<std::thread> senders;
  for (int i = 1; i < 3; ++i) {
    senders.emplace_back([&, i] { big[i]->send(std::span(frames[i]).subspan(10 << 10)); });
  }
  EXPECT_EQ(correlation_of(big[1]->read_frame()), 101);
  EXPECT_EQ(correlation_of(big[2]->read_frame()), 102);
  for (auto& t : senders) t.join();
  EXPECT_EQ(server->request_budget_waiters(), 0u);
  EXPECT_TRUE(eventually([&] { return server->queued_request_bytes() == 0; }))
      << server->queued_request_bytes();
}

TEST_P(ServerTest, ConnectionCapsCloseTheConnectionsPastThem) {
  LogCapture logs;
  BrokerConfig cfg;
  cfg.max_connections = 3;
  cfg.connections_max_per_ip = 2;
  start(cfg);
  auto works = [](Client& c, int32_t correlation) {
    c.send(c.frame(protocol::ApiVersionsRequest{}, 3, correlation));
    return correlation_of(c.read_frame()) == correlation;
  };
  auto a = std::make_unique<Client>(port);
  Client b(port);
  EXPECT_TRUE(works(*a, 1));
  EXPECT_TRUE(works(b, 2));
  {  // a third from 127.0.0.1: over connections.max.per.ip
    Client c(port);
    EXPECT_TRUE(c.closed_by_server());
  }
  EXPECT_EQ(LogCapture::matching({"refused", "connections.max.per.ip (2)", "127.0.0.1"}).size(),
            1u);
  // Another address still gets in, up to max.connections.
  Client other(port, "127.0.0.2");
  EXPECT_TRUE(works(other, 3));
  {
    Client d(port, "127.0.0.3");
    EXPECT_TRUE(d.closed_by_server());
  }
  EXPECT_EQ(LogCapture::matching({"refused", "max.connections (3)"}).size(), 1u);
  EXPECT_EQ(server->refused_connections(), 2u);
  // Once one closes, a new connection from 127.0.0.1 is served.
  a.reset();
  ASSERT_TRUE(eventually([&] { return server->connection_count() == 2; }));
  Client e(port);
  EXPECT_TRUE(works(e, 4));
  EXPECT_TRUE(works(b, 5));
  EXPECT_TRUE(works(other, 6));
}

INSTANTIATE_TEST_SUITE_P(Threading, ServerTest,
                         ::testing::Values(Threading{ShardMode::network, 1, 1},
                                           Threading{ShardMode::network, 2, 1},
                                           Threading{ShardMode::dedicated, 1, 2}),
                         threading_name);

}  // namespace
}  // namespace ordo::broker
