// Writes the seed corpus of fuzz_raft_frame into a directory:
//
//   make_raft_frame_corpus tests/fuzz/corpus/raft_frame
//
// Valid frames of every kind (a messages frame per body kind, mixed ones, heartbeats, an error
// frame, control frames: a request, a response, an error response), then valid frames with one
// thing broken (CRC, length, magic, version, kind, a gap between entries, a count past the bytes).
// Random fill from a fixed seed: the output is deterministic, so rerunning the program over
// the committed corpus changes nothing. Seeds the fuzzer found are stored next to these under
// their SHA-1 names and are not touched.

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/random.h"
#include "raft/tests/wire_test_util.h"
#include "raft/wire.h"

namespace ordo::raft {
namespace {

using Bytes = std::vector<uint8_t>;

bool write_seed(const std::string& dir, const std::string& name, const Bytes& b) {
  std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    std::fprintf(stderr, "make_raft_frame_corpus: cannot create %s\n", path.c_str());
    return false;
  }
  bool ok = b.empty() || std::fwrite(b.data(), 1, b.size(), f) == b.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) std::fprintf(stderr, "make_raft_frame_corpus: cannot write %s\n", path.c_str());
  return ok;
}

void reseal(Bytes& b) {
  store_be32(b.data() + wire::kLengthAt, uint32_t(b.size() - 4));
  store_be32(b.data() + wire::kCrcAt,
             crc32c(0, b.data() + wire::kCrcStart, b.size() - wire::kCrcStart));
}

Bytes must(Result<Bytes> r) {
  ORDO_ASSERT_MSG(r.has_value(), "a seed failed to encode");
  return std::move(r).value();
}

int run(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 1;
  }
  std::string dir = argv[1];
  std::vector<std::pair<std::string, Bytes>> seeds;
  Random rnd(2026);

  const char* kinds[] = {"vote_request", "vote_response",      "append_request", "append_response",
                         "heartbeat",    "heartbeat_response", "timeout_now"};
  for (size_t kind = 0; kind < std::size(kinds); ++kind) {
    std::vector<Message> ms;
    for (int i = 0; i < 2; ++i) ms.push_back(testing::random_message(rnd, 1, 2, kind));
    seeds.emplace_back(std::string("valid_messages_") + kinds[kind],
                       must(wire::encode_messages(1, 2, ms)));
  }
  std::vector<Message> mixed;
  for (int i = 0; i < 12; ++i) mixed.push_back(testing::random_message(rnd, 3, 0, i % 7));
  seeds.emplace_back("valid_messages_mixed", must(wire::encode_messages(3, 0, mixed)));
  seeds.emplace_back("valid_messages_none", must(wire::encode_messages(1, 2, {})));

  std::vector<Message> beats;
  for (int i = 0; i < 10; ++i) beats.push_back(testing::random_message(rnd, 2, 1, 4 + i % 2));
  seeds.emplace_back("valid_heartbeats", must(wire::encode_heartbeats(2, 1, beats)));
  seeds.emplace_back("valid_heartbeats_none", must(wire::encode_heartbeats(2, 1, {})));
  seeds.emplace_back("valid_error",
                     must(wire::encode_error(2, 1, wire::ErrorInfo{.message = "malformed"})));

  // An AppendRequest with a config entry, a noop, and data entries.
  AppendRequest a{.prev_end = 100, .prev_term = 2, .commit = 90, .log_start = 10};
  a.entries.push_back(
      Entry{.term = 3,
            .base = 100,
            .last = 100,
            .kind = EntryKind::config,
            .config = Config{.voters = {{1, 11}, {2, 22}, {3, 33}}, .learners = {{4, 44}}}});
  a.entries.push_back(Entry{.term = 3, .base = 101, .last = 101, .kind = EntryKind::noop});
  a.entries.push_back(
      Entry{.term = 3,
            .base = 102,
            .last = 105,
            .payload = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{1, 2, 3})});
  Message append{.group = 5, .term = 3, .from = {1, 9}, .to = 2, .body = a};
  Bytes with_entries = must(wire::encode_messages(1, 2, std::vector<Message>{append}));
  seeds.emplace_back("valid_append_entries", with_entries);

  // A follower behind the leader's log start restarts there, with the configuration in force.
  AppendRequest reset{.prev_end = 500,
                      .prev_term = 2,
                      .commit = 510,
                      .log_start = 500,
                      .reset = true,
                      .start_config = Config{.voters = {{1, 11}, {2, 22}}, .learners = {{5, 55}}}};
  reset.entries.push_back(Entry{.term = 3, .base = 500, .last = 500, .kind = EntryKind::noop});
  Message restart{.group = 6, .term = 3, .from = {1, 9}, .to = 2, .body = reset};
  seeds.emplace_back("valid_append_reset",
                     must(wire::encode_messages(1, 2, std::vector<Message>{restart})));

  // Control frames (kind 4): a request, a response, an error response.
  Bytes control_request = must(wire::encode_control(
      1, 2, wire::Control{.correlation = 42, .type = 5, .body = {'p', 'i', 'n', 'g'}}));
  seeds.emplace_back("valid_control_request", control_request);
  seeds.emplace_back(
      "valid_control_response",
      must(wire::encode_control(
          2, 1,
          wire::Control{
              .correlation = 42, .response = true, .type = 5, .body = {'p', 'o', 'n', 'g'}})));
  seeds.emplace_back("valid_control_error",
                     must(wire::encode_control(2, 1,
                                               wire::Control{.correlation = 42,
                                                             .response = true,
                                                             .error = true,
                                                             .type = 5,
                                                             .error_code = 5,
                                                             .error_message = "no handler"})));

  // Broken ones.
  Bytes b = with_entries;
  b.back() ^= 1;
  seeds.emplace_back("bad_crc", b);
  seeds.emplace_back("bad_truncated", Bytes(with_entries.begin(), with_entries.end() - 3));
  b = with_entries;
  b[wire::kVersionAt] = 2;
  reseal(b);
  seeds.emplace_back("bad_version", b);
  b = with_entries;
  b[wire::kMagicAt] = 0;
  reseal(b);
  seeds.emplace_back("bad_magic", b);
  b = with_entries;
  b[wire::kKindAt] = 9;
  reseal(b);
  seeds.emplace_back("bad_kind", b);
  b = with_entries;
  store_be32(b.data() + wire::kLengthAt, 0xffffffffu);
  seeds.emplace_back("bad_length", b);
  b = with_entries;
  // The second entry's base (message header 21, append fields 33, first entry 25 + config 52).
  size_t second = wire::kHeaderBytes + 4 + 21 + 33 + 25 + 52;
  store_be64(b.data() + second + 4, 200);
  reseal(b);
  seeds.emplace_back("bad_entries_gap", b);
  b = must(wire::encode_heartbeats(2, 1, beats));
  store_be32(b.data() + wire::kHeaderBytes, 11);
  reseal(b);
  seeds.emplace_back("bad_heartbeat_count", b);
  b = control_request;
  store_be32(b.data() + wire::kHeaderBytes + 11, 0x00200000);  // a body length past the bound
  reseal(b);
  seeds.emplace_back("bad_control_length", b);
  seeds.emplace_back("empty", Bytes{});

  for (const auto& [name, bytes] : seeds) {
    if (!write_seed(dir, name, bytes)) return 1;
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir.c_str());
  return 0;
}

}  // namespace
}  // namespace ordo::raft

int main(int argc, char** argv) {
  return ordo::raft::run(argc, argv);
}
