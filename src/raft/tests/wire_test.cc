// The replication wire format (src/raft/wire.h, docs/replication-wire.md): round trips of
// every body kind with random fill, every truncation and byte flip of encoded frames, the
// bounds, the version rule, and the golden frames printed in the docs.

#include "raft/wire.h"

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/random.h"
#include "raft/tests/wire_test_util.h"

namespace ordo::raft::wire {
namespace {

using Bytes = std::vector<uint8_t>;
using testing::code_of;
using testing::random_body;
using testing::random_message;
using testing::show;
using testing::show_all;

Bytes encode_ok(Result<Bytes> r) {
  EXPECT_TRUE(r.has_value()) << r.error().to_string();
  return r.has_value() ? std::move(r).value() : Bytes{};
}

void reseal(Bytes& b) {
  store_be32(b.data() + kLengthAt, uint32_t(b.size() - 4));
  store_be32(b.data() + kCrcAt, crc32c(0, b.data() + kCrcStart, b.size() - kCrcStart));
}

// Decodes, and if it decodes, checks it is canonical: it re-encodes to the same bytes.
// Returns whether it decoded.
bool decodes_canonically(const Bytes& b) {
  auto f = decode_frame(b);
  if (!f) {
    EXPECT_TRUE(f.error().code == Errc::corrupt || f.error().code == Errc::invalid_argument)
        << f.error().to_string();
    return false;
  }
  auto again = encode_frame(*f);
  EXPECT_TRUE(again.has_value()) << again.error().to_string();
  if (again) {
    EXPECT_EQ(*again, b);
  }
  return true;
}

TEST(WireTest, RoundTripOfEveryBodyKind) {
  Random rnd(42);
  for (int round = 0; round < 200; ++round) {
    for (size_t kind = 0; kind < std::variant_size_v<Body>; ++kind) {
      std::vector<Message> ms;
      size_t n = 1 + rnd.below(6);
      for (size_t i = 0; i < n; ++i) ms.push_back(random_message(rnd, 3, 5, kind));
      Bytes b = encode_ok(encode_messages(3, 5, ms));
      size_t expect = kHeaderBytes + 4;
      for (const Message& m : ms) expect += encoded_size(m);
      ASSERT_EQ(b.size(), expect);
      auto f = decode_frame(b);
      ASSERT_TRUE(f.has_value()) << f.error().to_string();
      EXPECT_EQ(f->kind, FrameKind::messages);
      EXPECT_EQ(f->from, 3);
      EXPECT_EQ(f->to, 5);
      ASSERT_EQ(show_all(f->messages), show_all(ms));
      EXPECT_EQ(encode_ok(encode_frame(*f)), b);
    }
    // All kinds mixed in one frame, in the order given.
    std::vector<Message> mixed;
    for (int i = 0; i < 20; ++i) {
      mixed.push_back(random_message(rnd, 0, 1, rnd.below(std::variant_size_v<Body>)));
    }
    auto f = decode_frame(encode_ok(encode_messages(0, 1, mixed)));
    ASSERT_TRUE(f.has_value()) << f.error().to_string();
    ASSERT_EQ(show_all(f->messages), show_all(mixed));
  }
}

TEST(WireTest, HeartbeatsRoundTripResponsesAfterHeartbeats) {
  Random rnd(7);
  for (int round = 0; round < 100; ++round) {
    std::vector<Message> ms, beats, acks;
    size_t n = rnd.below(50);
    for (size_t i = 0; i < n; ++i) {
      Message m = random_message(rnd, 2, 1, 4 + rnd.below(2));
      (std::holds_alternative<Heartbeat>(m.body) ? beats : acks).push_back(m);
      ms.push_back(std::move(m));
    }
    Bytes b = encode_ok(encode_heartbeats(2, 1, ms));
    ASSERT_EQ(b.size(), kHeaderBytes + 8 + kHeartbeatItemBytes * n);  // fixed width
    auto f = decode_frame(b);
    ASSERT_TRUE(f.has_value()) << f.error().to_string();
    EXPECT_EQ(f->kind, FrameKind::heartbeats);
    beats.insert(beats.end(), acks.begin(), acks.end());
    ASSERT_EQ(show_all(f->messages), show_all(beats));
    EXPECT_EQ(encode_ok(encode_frame(*f)), b);
  }
}

TEST(WireTest, ErrorFrameRoundTrip) {
  ErrorInfo e{.code = ErrorCode::wrong_destination, .max_version = 9, .message = "elsewhere"};
  Bytes b = encode_ok(encode_error(4, -1, e));  // an error may answer a garbled sender id
  auto f = decode_frame(b);
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  EXPECT_EQ(f->kind, FrameKind::error);
  EXPECT_EQ(f->from, 4);
  EXPECT_EQ(f->to, -1);
  EXPECT_EQ(f->error, e);
  EXPECT_EQ(encode_ok(encode_frame(*f)), b);
  e.message.assign(kMaxErrorMessageBytes + 1, 'x');
  EXPECT_EQ(code_of(encode_error(4, 1, e)), Errc::too_large);
}

// Frames that cover every field: random messages of every kind, entries, configs, payloads.
std::vector<Bytes> sample_frames() {
  Random rnd(99);
  std::vector<Bytes> out;
  std::vector<Message> ms;
  for (size_t kind = 0; kind < std::variant_size_v<Body>; ++kind) {
    ms.push_back(random_message(rnd, 1, 2, kind));
  }
  AppendRequest a = testing::random_append(rnd, 4, 40);
  a.entries.resize(std::min<size_t>(a.entries.size(), 2));
  a.entries.push_back(Entry{.term = 1,
                            .base = a.entries.empty() ? a.prev_end : a.entries.back().end(),
                            .kind = EntryKind::config,
                            .config = Config{.voters = {{1, 5}, {4, 6}}, .learners = {{2, 7}}}});
  a.entries.back().last = a.entries.back().base;
  ms.push_back(Message{.group = 1, .term = 2, .from = {1, 3}, .to = 2, .body = a});
  out.push_back(encode_ok(encode_messages(1, 2, ms)));
  std::vector<Message> hs;
  for (int i = 0; i < 6; ++i) hs.push_back(random_message(rnd, 1, 2, 4 + i % 2));
  out.push_back(encode_ok(encode_heartbeats(1, 2, hs)));
  out.push_back(encode_ok(encode_error(1, 2, ErrorInfo{.message = "bad"})));
  out.push_back(
      encode_ok(encode_control(1, 2, Control{.correlation = 77, .type = 3, .body = {1, 2, 3, 4}})));
  out.push_back(encode_ok(encode_control(2, 1,
                                         Control{.correlation = 77,
                                                 .response = true,
                                                 .error = true,
                                                 .type = 3,
                                                 .error_code = 4,
                                                 .error_message = "nope"})));
  return out;
}

TEST(WireTest, EveryTruncationIsAnErrorOrAFrame) {
  for (const Bytes& full : sample_frames()) {
    for (size_t len = 0; len < full.size(); ++len) {
      Bytes cut(full.begin(), full.begin() + ptrdiff_t(len));
      // As received: the length field no longer matches.
      EXPECT_FALSE(decode_frame(cut).has_value()) << "prefix " << len;
      // Resealed (length and CRC made right for the cut bytes): the body parser must refuse
      // or accept a canonical frame, and never read past the end (ASan checks that).
      if (len >= kHeaderBytes) {
        reseal(cut);
        decodes_canonically(cut);
      }
    }
    ASSERT_TRUE(decodes_canonically(full));
  }
}

TEST(WireTest, EveryByteFlipIsDetectedOrDecodesCanonically) {
  for (const Bytes& full : sample_frames()) {
    for (size_t at = 0; at < full.size(); ++at) {
      for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
        Bytes b = full;
        b[at] ^= mask;
        // The CRC covers everything after itself; the length must match the bytes present.
        EXPECT_FALSE(decode_frame(b).has_value()) << "byte " << at << " ^ " << int(mask);
        if (at >= kCrcStart) {
          reseal(b);
          decodes_canonically(b);
        }
      }
    }
  }
}

TEST(WireTest, RandomGarbageNeverCrashes) {
  Random rnd(5);
  for (int i = 0; i < 2000; ++i) {
    Bytes b(kHeaderBytes + rnd.below(200));
    for (uint8_t& x : b) x = uint8_t(rnd.next());
    store_be16(b.data() + kMagicAt, kMagic);
    b[kVersionAt] = kVersion;
    b[kKindAt] = uint8_t(1 + rnd.below(4));
    reseal(b);
    decodes_canonically(b);
  }
}

// A messages frame with one message whose body the test then edits byte by byte.
struct Crafted {
  Bytes bytes;
  size_t body_at = 0;  // first byte of the message's body
};
Crafted craft(const Body& body) {
  Message m{.group = 1, .term = 1, .from = {1, 1}, .to = 2, .body = body};
  Crafted c{encode_ok(encode_messages(1, 2, std::vector<Message>{m})),
            kHeaderBytes + 4 + kMessageHeaderBytes};
  return c;
}

Errc decode_error(Bytes b) {
  reseal(b);
  auto f = decode_frame(b);
  return f.has_value() ? Errc::ok : f.error().code;
}

TEST(WireTest, ControlFramesRoundTrip) {
  Random rnd(11);
  std::vector<Control> cs;
  cs.push_back(Control{.correlation = 1, .type = 7});  // a request with an empty body
  Control req{.correlation = 0xfedcba9876543210, .type = 0xffff};
  req.body.resize(1000);
  for (uint8_t& x : req.body) x = uint8_t(rnd.next());
  cs.push_back(req);
  cs.push_back(Control{.correlation = 3, .response = true, .type = 2, .body = {9, 8}});
  cs.push_back(Control{.correlation = 4,
                       .response = true,
                       .error = true,
                       .type = 2,
                       .error_code = uint16_t(Errc::not_found),
                       .error_message = "no handler"});
  cs.push_back(Control{.correlation = 5, .response = true, .error = true, .error_code = 1});
  Control biggest{.correlation = 6};
  biggest.body.assign(kMaxControlBodyBytes, 0x5a);
  cs.push_back(biggest);
  for (const Control& c : cs) {
    Bytes b = encode_ok(encode_control(3, 4, c));
    size_t body = c.error ? 2 + c.error_message.size() : c.body.size();
    EXPECT_EQ(b.size(), kHeaderBytes + kControlHeaderBytes + body);
    auto f = decode_control(b);
    ASSERT_TRUE(f.has_value()) << f.error().to_string();
    EXPECT_EQ(f->kind, FrameKind::control);
    EXPECT_EQ(f->from, 3);
    EXPECT_EQ(f->to, 4);
    EXPECT_TRUE(f->messages.empty());
    EXPECT_EQ(f->control, c);
    EXPECT_EQ(encode_ok(encode_frame(*f)), b);
    EXPECT_TRUE(decodes_canonically(b));
  }
  // Another kind is not a control frame.
  EXPECT_EQ(code_of(decode_control(encode_ok(encode_heartbeats(1, 2, {})))), Errc::corrupt);
}

TEST(WireTest, ControlFramesAreBoundedAndValidated) {
  Control big{.correlation = 1};
  big.body.assign(kMaxControlBodyBytes + 1, 0);
  EXPECT_EQ(code_of(encode_control(1, 2, big)), Errc::too_large);
  Control msg{.correlation = 1, .response = true, .error = true, .error_code = 2};
  msg.error_message.assign(kMaxErrorMessageBytes + 1, 'x');
  EXPECT_EQ(code_of(encode_control(1, 2, msg)), Errc::too_large);
  EXPECT_EQ(code_of(encode_control(1, 2, Control{.error = true, .error_code = 2})),
            Errc::invalid_argument);  // an error that is not a response
  EXPECT_EQ(code_of(encode_control(1, 2, Control{.response = true, .error = true})),
            Errc::invalid_argument);  // error code 0
  EXPECT_EQ(code_of(encode_control(
                1, 2, Control{.response = true, .error = true, .body = {1}, .error_code = 1})),
            Errc::invalid_argument);  // an error with a body
  EXPECT_EQ(code_of(encode_control(1, 2, Control{.error_code = 1})), Errc::invalid_argument);
  EXPECT_EQ(code_of(encode_control(-1, 2, Control{})), Errc::invalid_argument);

  // The decoder refuses the same on edited bytes. Body layout after the header: correlation
  // 0..7, flags 8, type 9..10, length 11..14, body 15...
  const size_t at = kHeaderBytes;
  Bytes req =
      encode_ok(encode_control(1, 2, Control{.correlation = 1, .type = 1, .body = {1, 2, 3}}));
  Bytes b = req;
  b[at + 8] = 4;  // unknown flag
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = req;
  b[at + 8] = 2;  // error without response
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = req;
  store_be32(b.data() + at + 11, 4);  // claims more than is left
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = req;
  store_be32(b.data() + at + 11, 2);  // claims less: a byte after the body
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = req;
  store_be32(b.data() + at + 11, 0xffffffffu);  // beyond the bound, checked before anything
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  Bytes err = encode_ok(encode_control(
      1, 2, Control{.response = true, .error = true, .error_code = 5, .error_message = "m"}));
  b = err;
  store_be16(b.data() + at + 15, 0);  // error code 0
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = err;
  store_be32(b.data() + at + 11, 1);  // too short for the code
  b.pop_back();
  b.pop_back();
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = err;  // a message over its bound
  b.insert(b.end(), kMaxErrorMessageBytes, 'x');
  store_be32(b.data() + at + 11, uint32_t(2 + 1 + kMaxErrorMessageBytes));
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = req;
  store_be32(b.data() + kFromAt, uint32_t(-1));  // control frames need real node ids
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  EXPECT_EQ(decode_error(req), Errc::ok);
  EXPECT_EQ(decode_error(err), Errc::ok);
}

TEST(WireTest, CountsAreBoundedBeforeAnythingIsAllocated) {
  Bytes hb = encode_ok(encode_heartbeats(1, 2, {}));
  store_be32(hb.data() + kHeaderBytes, 0xffffffffu);
  EXPECT_EQ(decode_error(hb), Errc::corrupt);
  store_be32(hb.data() + kHeaderBytes, 1);  // one heartbeat promised, none present
  EXPECT_EQ(decode_error(hb), Errc::corrupt);

  Bytes ms = encode_ok(encode_messages(1, 2, {}));
  store_be32(ms.data() + kHeaderBytes, uint32_t(kMaxMessagesPerFrame + 1));
  EXPECT_EQ(decode_error(ms), Errc::corrupt);
  store_be32(ms.data() + kHeaderBytes, 1000);  // fits the bound, not the bytes
  EXPECT_EQ(decode_error(ms), Errc::corrupt);

  Crafted c = craft(AppendRequest{.prev_end = 5});
  size_t count_at = c.body_at + 29;
  store_be32(c.bytes.data() + count_at, uint32_t(kMaxEntriesPerFrame + 1));
  EXPECT_EQ(decode_error(c.bytes), Errc::corrupt);
  store_be32(c.bytes.data() + count_at, 3);
  EXPECT_EQ(decode_error(c.bytes), Errc::corrupt);
}

TEST(WireTest, EntriesAreValidated) {
  AppendRequest a{.prev_end = 10};
  a.entries.push_back(Entry{.term = 1, .base = 10, .last = 11, .payload = {}});
  a.entries.push_back(Entry{.term = 1, .base = 12, .last = 12});
  Message m{.group = 1, .term = 1, .from = {1, 1}, .to = 2, .body = a};
  ASSERT_TRUE(check_message(m).has_value());

  auto refused = [&](auto edit) {
    Message bad = m;
    edit(std::get<AppendRequest>(bad.body));
    EXPECT_EQ(code_of(check_message(bad)), Errc::invalid_argument);
    EXPECT_EQ(code_of(encode_messages(1, 2, std::vector<Message>{bad})), Errc::invalid_argument);
  };
  refused([](AppendRequest& r) { r.entries[0].base = 9; });                  // not at prev_end
  refused([](AppendRequest& r) { r.entries[1].base = 13; });                 // a gap
  refused([](AppendRequest& r) { r.entries[1].last = 11; });                 // last < base
  refused([](AppendRequest& r) { r.entries[0].kind = EntryKind::config; });  // no Config
  refused([](AppendRequest& r) { r.entries[0].config = Config{.voters = {{1, 1}}}; });
  refused([](AppendRequest& r) {  // not sorted
    r.entries[0].kind = EntryKind::config;
    r.entries[0].config = Config{.voters = {{2, 1}, {1, 1}}};
  });
  refused([](AppendRequest& r) {  // a voter's id among the learners
    r.entries[0].kind = EntryKind::config;
    r.entries[0].config = Config{.voters = {{1, 1}}, .learners = {{1, 2}}};
  });
  refused([](AppendRequest& r) { r.prev_end = -1; });
  refused([](AppendRequest& r) { r.start_config = Config{.voters = {{1, 1}}}; });  // no reset
  refused([](AppendRequest& r) {
    r.reset = true;
    r.start_config = Config{};  // no voter
  });

  // The same checks on the decoding side, on bytes edited after encoding.
  Crafted c = craft(a);
  size_t e0 = c.body_at + 33;  // entry 0: term, base, last, kind, payload length
  Bytes b = c.bytes;
  store_be64(b.data() + e0 + 4, 9);  // base 9 != prev_end 10
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = c.bytes;
  store_be64(b.data() + e0 + 12, 5);  // last < base
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = c.bytes;
  b[e0 + 20] = 3;  // unknown entry kind
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = c.bytes;
  store_be32(b.data() + e0 + 21, uint32_t(-2));  // payload length -2
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = c.bytes;
  store_be32(b.data() + e0 + 21, 1000);  // more than is left
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = c.bytes;
  b[e0 + 20] = uint8_t(EntryKind::config);  // a config entry whose Config is garbage
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  EXPECT_EQ(decode_error(c.bytes), Errc::ok);
}

TEST(WireTest, ConfigMembersAreBounded) {
  Config big;
  for (int i = 0; i <= int(kMaxConfigMembers); ++i) big.voters.push_back({i, 1});
  EXPECT_FALSE(config_well_formed(big));
  big.voters.pop_back();
  EXPECT_TRUE(config_well_formed(big));
  EXPECT_FALSE(config_well_formed(Config{}));                            // no voter
  EXPECT_FALSE(config_well_formed(Config{.voters = {{-1, 1}}}));         // negative id
  EXPECT_FALSE(config_well_formed(Config{.voters = {{1, 1}, {1, 2}}}));  // duplicate

  AppendRequest a{.prev_end = 0};
  a.entries.push_back(Entry{.term = 1,
                            .base = 0,
                            .last = 0,
                            .kind = EntryKind::config,
                            .config = Config{.voters = {{1, 1}}}});
  Crafted c = craft(a);
  size_t voters_at = c.body_at + 33 + 21;
  store_be16(c.bytes.data() + voters_at, uint16_t(kMaxConfigMembers + 1));
  EXPECT_EQ(decode_error(c.bytes), Errc::corrupt);
}

TEST(WireTest, UnknownFlagsAndKindsAreRefused) {
  Crafted vote = craft(VoteRequest{});
  Bytes b = vote.bytes;
  b[vote.body_at + 12] = 4;
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = vote.bytes;
  b[vote.body_at - 1] = 7;  // body kind
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  Crafted resp = craft(VoteResponse{});
  resp.bytes[resp.body_at] = 0x80;
  EXPECT_EQ(decode_error(resp.bytes), Errc::corrupt);
  Crafted ar = craft(AppendResponse{});
  ar.bytes[ar.body_at] = 2;
  EXPECT_EQ(decode_error(ar.bytes), Errc::corrupt);
  Crafted app = craft(AppendRequest{});
  app.bytes[app.body_at + 28] = 4;
  EXPECT_EQ(decode_error(app.bytes), Errc::corrupt);

  b = vote.bytes;
  b[kKindAt] = 5;
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = vote.bytes;
  b.push_back(0);  // a byte after the body
  EXPECT_EQ(decode_error(b), Errc::corrupt);
  b = vote.bytes;
  store_be32(b.data() + kFromAt, uint32_t(-1));  // messages need real node ids
  EXPECT_EQ(decode_error(b), Errc::corrupt);
}

TEST(WireTest, EncoderRefusesWhatTheDecoderWould) {
  Message hb{.group = 1, .term = 1, .from = {1, 1}, .to = 2, .body = Heartbeat{}};
  EXPECT_EQ(code_of(encode_messages(1, 3, std::vector<Message>{hb})),
            Errc::invalid_argument);  // addressed elsewhere
  EXPECT_EQ(code_of(encode_messages(-1, 2, {})), Errc::invalid_argument);
  Message vote = hb;
  vote.body = VoteResponse{};
  EXPECT_EQ(code_of(encode_heartbeats(1, 2, std::vector<Message>{vote})), Errc::invalid_argument);
  std::vector<Message> many(kMaxMessagesPerFrame + 1, hb);
  EXPECT_EQ(code_of(encode_messages(1, 2, many)), Errc::too_large);

  // A payload over the frame's bound.
  AppendRequest a{.prev_end = 0};
  a.entries.push_back(
      Entry{.term = 1,
            .base = 0,
            .last = 0,
            .payload = std::make_shared<std::vector<uint8_t>>(kMaxPayloadBytes + 1)});
  Message big{.group = 1, .term = 1, .from = {1, 1}, .to = 2, .body = a};
  EXPECT_EQ(code_of(check_message(big)), Errc::too_large);
  EXPECT_EQ(code_of(encode_messages(1, 2, std::vector<Message>{big})), Errc::too_large);
}

TEST(WireTest, HeaderChecksLengthAndMagic) {
  Bytes b = encode_ok(encode_heartbeats(1, 2, {}));
  EXPECT_EQ(code_of(read_header(std::span(b).first(kHeaderBytes - 1))), Errc::out_of_range);
  auto h = read_header(b);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->frame_bytes(), b.size());
  EXPECT_EQ(h->from, 1);
  EXPECT_EQ(h->to, 2);
  Bytes c = b;
  store_be32(c.data(), uint32_t(kMaxFrameBytes));  // frame_bytes just over the bound
  EXPECT_EQ(code_of(read_header(c)), Errc::corrupt);
  store_be32(c.data(), uint32_t(kHeaderBytes - 5));
  EXPECT_EQ(code_of(read_header(c)), Errc::corrupt);
  c = b;
  c[kMagicAt] ^= 1;
  EXPECT_EQ(code_of(read_header(c)), Errc::corrupt);
}

TEST(WireTest, UnknownVersionIsRefusedWithItsOwnCode) {
  Bytes b = encode_ok(encode_heartbeats(1, 2, {}));
  b[kVersionAt] = kVersion + 1;
  EXPECT_EQ(decode_error(b), Errc::invalid_argument);
  b[kVersionAt] = 0;
  EXPECT_EQ(decode_error(b), Errc::invalid_argument);
  b[kVersionAt] = kVersion + 1;
  reseal(b);
  Bytes answer = version_error_frame(2, *read_header(b));
  auto f = decode_frame(answer);
  ASSERT_TRUE(f.has_value()) << f.error().to_string();
  EXPECT_EQ(f->kind, FrameKind::error);
  EXPECT_EQ(f->from, 2);
  EXPECT_EQ(f->to, 1);
  EXPECT_EQ(f->error.code, ErrorCode::unsupported_version);
  EXPECT_EQ(f->error.max_version, kVersion);
  EXPECT_EQ(answer[kVersionAt], 1);  // error frames are version 1, which every version reads
}

TEST(WireTest, DecodedPayloadsAreTheirOwnCopies) {
  AppendRequest a{.prev_end = 0};
  auto payload = std::make_shared<std::vector<uint8_t>>(16 << 10, uint8_t(0x5a));
  a.entries.push_back(Entry{.term = 1, .base = 0, .last = 9, .payload = payload});
  Message m{.group = 1, .term = 1, .from = {1, 1}, .to = 2, .body = a};
  Bytes b = encode_ok(encode_messages(1, 2, std::vector<Message>{m}));
  EXPECT_EQ(b.capacity(), b.size());  // allocated once, at its exact size
  auto f = decode_frame(b);
  ASSERT_TRUE(f.has_value());
  b.assign(b.size(), 0);  // the frame buffer is reused: the decoded payload must not change
  const Entry& e = std::get<AppendRequest>(f->messages[0].body).entries[0];
  EXPECT_EQ(*e.payload, *payload);
}

// ---- golden frames: the byte dumps in docs/replication-wire.md ------------------------------

std::map<std::string, Frame> golden_frames() {
  std::map<std::string, Frame> out;
  AppendRequest a{.prev_end = 10, .prev_term = 2, .commit = 9, .log_start = 0};
  a.entries.push_back(
      Entry{.term = 3,
            .base = 10,
            .last = 10,
            .kind = EntryKind::config,
            .config = Config{.voters = {{1, 0xa1}, {2, 0xb2}}, .learners = {{3, 0xc3}}}});
  auto abc = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{'a', 'b', 'c'});
  a.entries.push_back(Entry{.term = 3, .base = 11, .last = 12, .payload = abc});
  Frame m{.kind = FrameKind::messages, .from = 1, .to = 2};
  m.messages.push_back(
      Message{.group = 7, .term = 3, .from = {1, 0x0102030405060708}, .to = 2, .body = a});
  m.messages.push_back(Message{
      .group = 8, .term = 4, .from = {1, 0x11}, .to = 2, .body = VoteResponse{.granted = true}});
  out["messages"] = m;

  Frame h{.kind = FrameKind::heartbeats, .from = 1, .to = 2};
  h.messages.push_back(Message{.group = 7,
                               .term = 3,
                               .from = {1, 0x0102030405060708},
                               .to = 2,
                               .body = Heartbeat{.commit = 12}});
  h.messages.push_back(Message{.group = 9,
                               .term = 5,
                               .from = {1, 0x11},
                               .to = 2,
                               .body = HeartbeatResponse{.match_end = 40}});
  out["heartbeats"] = h;

  Frame e{.kind = FrameKind::error, .from = 2, .to = 1};
  e.error = ErrorInfo{.code = ErrorCode::unsupported_version, .max_version = 1, .message = "v2?"};
  out["error"] = e;

  Frame c{.kind = FrameKind::control, .from = 1, .to = 2};
  c.control = Control{.correlation = 0x2a, .type = 5, .body = {'p', 'i', 'n', 'g'}};
  out["control"] = c;
  Frame ce{.kind = FrameKind::control, .from = 2, .to = 1};
  ce.control = Control{.correlation = 0x2a,
                       .response = true,
                       .error = true,
                       .type = 5,
                       .error_code = uint16_t(Errc::not_found),
                       .error_message = "no handler"};
  out["control-error"] = ce;
  return out;
}

// The dump after the line "<!-- golden: NAME -->": the lines of the next ``` block, each
// "offset: hex bytes  # comment" (the offset and the comment are ignored).
Bytes doc_dump(const std::string& doc, const std::string& name) {
  size_t at = doc.find("<!-- golden: " + name + " -->");
  if (at == std::string::npos) return {};
  size_t open = doc.find("```", at);
  open = doc.find('\n', open) + 1;
  size_t close = doc.find("```", open);
  std::istringstream lines(doc.substr(open, close - open));
  Bytes out;
  std::string line;
  while (std::getline(lines, line)) {
    line = line.substr(0, line.find('#'));
    size_t colon = line.find(':');
    if (colon != std::string::npos) line = line.substr(colon + 1);
    std::istringstream words(line);
    std::string hex;
    while (words >> hex) out.push_back(uint8_t(std::stoul(hex, nullptr, 16)));
  }
  return out;
}

std::string hex_dump(const Bytes& b) {
  std::string out;
  for (size_t i = 0; i < b.size(); ++i)
    out += fmt::format("{:02x}{}", b[i], i % 16 == 15 ? "\n" : " ");
  return out;
}

TEST(WireTest, GoldenFramesMatchTheDocs) {
  std::ifstream in(std::string(ORDO_SOURCE_DIR) + "/docs/replication-wire.md");
  ASSERT_TRUE(in.good());
  std::stringstream doc;
  doc << in.rdbuf();
  for (const auto& [name, frame] : golden_frames()) {
    Bytes encoded = encode_ok(encode_frame(frame));
    Bytes documented = doc_dump(doc.str(), name);
    EXPECT_EQ(hex_dump(encoded), hex_dump(documented)) << "golden frame " << name;
    auto decoded = decode_frame(documented);
    ASSERT_TRUE(decoded.has_value()) << name << ": " << decoded.error().to_string();
    EXPECT_EQ(show_all(decoded->messages), show_all(frame.messages)) << name;
    EXPECT_EQ(decoded->error, frame.error) << name;
    EXPECT_EQ(decoded->control, frame.control) << name;
  }
}

}  // namespace
}  // namespace ordo::raft::wire
