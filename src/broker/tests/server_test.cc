// The network server with real sockets: pipelining and response order, back-pressure,
// malformed frames, sendfile, graceful stop.

#include "broker/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/coding.h"
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
  explicit Client(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
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

INSTANTIATE_TEST_SUITE_P(Threading, ServerTest,
                         ::testing::Values(Threading{ShardMode::network, 1, 1},
                                           Threading{ShardMode::network, 2, 1},
                                           Threading{ShardMode::dedicated, 1, 2}),
                         threading_name);

}  // namespace
}  // namespace ordo::broker
