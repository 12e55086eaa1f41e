// raft::Batcher (src/raft/batcher.h): per node pair batching of many groups' messages.

#include "raft/batcher.h"

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/random.h"
#include "raft/tests/wire_test_util.h"

namespace ordo::raft {
namespace {

using testing::code_of;
using testing::show;
using testing::show_all;

Message heartbeat(GroupId g, NodeId from, NodeId to, Offset commit) {
  return Message{.group = g,
                 .term = 3,
                 .from = {from, uint64_t(from) * 1000 + uint64_t(g)},
                 .to = to,
                 .body = Heartbeat{.commit = commit}};
}
Message heartbeat_response(GroupId g, NodeId from, NodeId to, Offset match) {
  return Message{.group = g,
                 .term = 3,
                 .from = {from, uint64_t(from) * 1000 + uint64_t(g)},
                 .to = to,
                 .body = HeartbeatResponse{.match_end = match}};
}
Message append(GroupId g, NodeId from, NodeId to, Offset at, size_t payload_bytes) {
  AppendRequest a{.prev_end = at, .prev_term = 3, .commit = at};
  a.entries.push_back(
      Entry{.term = 3,
            .base = at,
            .last = at + 9,
            .payload = std::make_shared<std::vector<uint8_t>>(payload_bytes, uint8_t(g))});
  return Message{.group = g, .term = 3, .from = {from, 1}, .to = to, .body = std::move(a)};
}

// 1,000 groups replicated on 3 nodes, idle: every round each leader heartbeats its two
// followers and each follower answers. However many groups, each node sends exactly one frame
// to each other node: 6 frames a round for 3 nodes (one per ordered pair).
TEST(BatcherTest, IdleGroupsMakeOneFramePerNodePairPerRound) {
  constexpr int kNodes = 3;
  constexpr int kGroups = 1000;
  std::vector<Batcher> nodes;
  for (NodeId n = 0; n < kNodes; ++n) nodes.emplace_back(n);

  for (int round = 0; round < 3; ++round) {
    std::map<std::pair<NodeId, NodeId>, std::multiset<std::string>> sent;
    for (GroupId g = 0; g < kGroups; ++g) {
      NodeId leader = NodeId(g % kNodes);
      for (NodeId f = 0; f < kNodes; ++f) {
        if (f == leader) continue;
        Message beat = heartbeat(g, leader, f, 100 + round);
        Message ack = heartbeat_response(g, f, leader, 100 + round);
        sent[{leader, f}].insert(show(beat));
        sent[{f, leader}].insert(show(ack));
        nodes[size_t(leader)].add(std::move(beat));
        nodes[size_t(f)].add(std::move(ack));
      }
    }
    std::map<std::pair<NodeId, NodeId>, int> frames;
    std::map<std::pair<NodeId, NodeId>, std::multiset<std::string>> received;
    for (NodeId n = 0; n < kNodes; ++n) {
      for (OutFrame& f : nodes[size_t(n)].flush()) {
        ++frames[{n, f.to}];
        // Each group this pair shares takes 28 bytes: its heartbeat or its response.
        size_t expect = wire::kHeaderBytes + 8 + wire::kHeartbeatItemBytes * sent[{n, f.to}].size();
        EXPECT_EQ(f.bytes.size(), expect);
        auto r = nodes[size_t(f.to)].receive(f.bytes);
        ASSERT_TRUE(r.has_value()) << r.error().to_string();
        for (const Message& m : r->messages) received[{n, f.to}].insert(show(m));
      }
    }
    ASSERT_EQ(frames.size(), size_t(kNodes * (kNodes - 1)));
    for (const auto& [pair, count] : frames) {
      EXPECT_EQ(count, 1) << pair.first << " -> " << pair.second;
    }
    EXPECT_EQ(received, sent);
  }
  EXPECT_EQ(nodes[0].stats().frames_out, 3u * 2u);
  EXPECT_EQ(nodes[0].stats().heartbeat_frames_out, 3u * 2u);
  EXPECT_EQ(nodes[0].stats().dropped, 0u);
}

TEST(BatcherTest, MessagesAreSplitAtTheByteBoundInOrder) {
  Batcher a(1, BatcherOptions{.frame_bytes = 64 << 10});
  Batcher b(2);
  std::vector<Message> sent;
  for (int i = 0; i < 40; ++i) {
    // Several groups interleaved, 16 KiB each: three fit in a 64 KiB frame, four do not.
    sent.push_back(append(i % 5, 1, 2, i * 10, 16 << 10));
    a.add(sent.back());
  }
  Message beat = heartbeat(9, 1, 2, 5);
  a.add(beat);
  auto frames = a.flush();
  ASSERT_EQ(frames.size(), 14u + 1u);  // ceil(40 / 3) messages frames, then the heartbeats
  std::vector<Message> got;
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].to, 2);
    if (i + 1 < frames.size()) {
      EXPECT_LE(frames[i].bytes.size(), size_t(64 << 10));
    }
    auto r = b.receive(frames[i].bytes);
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    got.insert(got.end(), r->messages.begin(), r->messages.end());
  }
  sent.push_back(beat);
  EXPECT_EQ(show_all(got), show_all(sent));
  EXPECT_EQ(a.pending(), 0u);
  EXPECT_TRUE(a.flush().empty());
}

TEST(BatcherTest, AMessageLargerThanTheBoundTravelsAlone) {
  Batcher a(1, BatcherOptions{.frame_bytes = 4 << 10});
  a.add(append(1, 1, 2, 0, 100));
  a.add(append(2, 1, 2, 0, 10 << 10));
  a.add(append(3, 1, 2, 0, 100));
  auto frames = a.flush();
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_GT(frames[1].bytes.size(), size_t(10 << 10));
  EXPECT_EQ(a.stats().dropped, 0u);
}

TEST(BatcherTest, FramesGoPerDestination) {
  Batcher a(1);
  a.add(append(1, 1, 3, 0, 10));
  a.add(heartbeat(1, 1, 2, 0));
  a.add(append(2, 1, 2, 0, 10));
  a.add(Message{.group = 4, .term = 1, .from = {1, 1}, .to = 3, .body = TimeoutNow{}});
  auto frames = a.flush();
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].to, 2);  // messages first, then the heartbeats frame
  EXPECT_EQ(frames[1].to, 2);
  EXPECT_EQ(frames[1].bytes[wire::kKindAt], uint8_t(wire::FrameKind::heartbeats));
  EXPECT_EQ(frames[2].to, 3);
  Batcher c(3);
  auto r = c.receive(frames[2].bytes);
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_TRUE(std::holds_alternative<TimeoutNow>(r->messages[1].body));
}

TEST(BatcherTest, MalformedAndForeignMessagesAreDroppedAndCounted) {
  Batcher a(1, BatcherOptions{.max_pending = 2});
  a.add(heartbeat(1, 2, 3, 0));  // not from this node
  Message gap = append(1, 1, 2, 0, 10);
  std::get<AppendRequest>(gap.body).entries[0].base = 1;
  a.add(gap);
  a.add(heartbeat(1, 1, kNoNode, 0));  // no destination
  EXPECT_EQ(a.stats().dropped, 3u);
  EXPECT_EQ(a.pending(), 0u);
  a.add(heartbeat(1, 1, 2, 0));
  a.add(heartbeat(2, 1, 2, 0));
  a.add(heartbeat(3, 1, 2, 0));  // over max_pending
  EXPECT_EQ(a.stats().dropped, 4u);
  EXPECT_EQ(a.last_error()->code, Errc::too_large);
  EXPECT_EQ(a.flush().size(), 1u);
}

TEST(BatcherTest, ReceiveRefusesBadFramesAndAnswersUnknownVersions) {
  Batcher a(1);
  Batcher b(2);
  a.add(heartbeat(1, 1, 2, 0));
  auto frames = a.flush();
  ASSERT_EQ(frames.size(), 1u);
  std::vector<uint8_t> bytes = frames[0].bytes;

  Batcher c(3);  // addressed to node 2, not 3
  EXPECT_EQ(code_of(c.receive(bytes)), Errc::invalid_argument);
  std::vector<uint8_t> flipped = bytes;
  flipped.back() ^= 1;
  EXPECT_EQ(code_of(b.receive(flipped)), Errc::corrupt);
  EXPECT_EQ(b.stats().rejected, 1u);

  std::vector<uint8_t> newer = bytes;
  newer[wire::kVersionAt] = wire::kVersion + 1;
  store_be32(newer.data() + wire::kCrcAt,
             crc32c(0, newer.data() + wire::kCrcStart, newer.size() - wire::kCrcStart));
  auto r = b.receive(newer);
  ASSERT_TRUE(r.has_value()) << r.error().to_string();
  EXPECT_TRUE(r->messages.empty());
  ASSERT_TRUE(r->reply.has_value());
  // The sender reads the answer as the peer's refusal.
  auto refusal = a.receive(*r->reply);
  ASSERT_TRUE(refusal.has_value()) << refusal.error().to_string();
  ASSERT_TRUE(refusal->peer_error.has_value());
  EXPECT_EQ(refusal->peer_error->code, wire::ErrorCode::unsupported_version);
  EXPECT_EQ(refusal->peer_error->max_version, wire::kVersion);

  auto ok = b.receive(bytes);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->messages.size(), 1u);
  EXPECT_EQ(b.stats().messages_in, 1u);
}

// A control frame (kind 4) is PeerRpc's: the node routes it before the Batcher, and one that
// reaches the Batcher anyway is refused and counted, not decoded into messages.
TEST(BatcherTest, ReceiveRefusesControlFrames) {
  Batcher b(2);
  wire::Control c{.correlation = 9, .type = 3, .body = {1, 2, 3}};
  auto bytes = wire::encode_control(1, 2, c);
  ASSERT_TRUE(bytes.has_value()) << bytes.error().to_string();
  EXPECT_EQ(code_of(b.receive(*bytes)), Errc::invalid_argument);
  EXPECT_EQ(b.stats().rejected, 1u);
  EXPECT_EQ(b.stats().frames_in, 0u);
}

}  // namespace
}  // namespace ordo::raft
