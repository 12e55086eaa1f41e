// Replication wire format (src/raft/wire.h): encode + decode of the two frames that carry most
// replication traffic. One iteration is one encode and one decode of the frame.
//
//   append_16k       a messages frame with one AppendRequest of one 16 KiB entry (a busy
//                    partition's steady state); bytes/s counts the payload
//   heartbeats/1000  a heartbeats frame of 1,000 groups (an idle node pair's round: 28 bytes
//                    per group); items/s counts groups
//   batcher/1000     the Batcher's side of the same round: add 1,000 heartbeats, flush, receive
//
// Run: build/bench/raft_wire_bench [Google Benchmark flags]

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "base/assert.h"
#include "raft/batcher.h"
#include "raft/wire.h"

namespace ordo::raft {
namespace {

Message append_16k() {
  AppendRequest a{.prev_end = 1000, .prev_term = 4, .commit = 990, .log_start = 0};
  a.entries.push_back(Entry{.term = 5,
                            .base = 1000,
                            .last = 1099,
                            .payload = std::make_shared<std::vector<uint8_t>>(16 << 10, 7)});
  return Message{.group = 42, .term = 5, .from = {1, 99}, .to = 2, .body = std::move(a)};
}

std::vector<Message> heartbeats(int groups) {
  std::vector<Message> out;
  for (int g = 0; g < groups; ++g) {
    out.push_back(Message{.group = g,
                          .term = 5,
                          .from = {1, uint64_t(g) * 7919},
                          .to = 2,
                          .body = Heartbeat{.commit = 100000 + g}});
  }
  return out;
}

void BM_Append16k(benchmark::State& state) {
  std::vector<Message> ms{append_16k()};
  for (auto _ : state) {
    auto bytes = wire::encode_messages(1, 2, ms);
    auto frame = wire::decode_frame(*bytes);
    ORDO_ASSERT(frame.has_value() && frame->messages.size() == 1);
    benchmark::DoNotOptimize(frame->messages.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * (16 << 10));
}
BENCHMARK(BM_Append16k)->Name("append_16k");

void BM_Heartbeats(benchmark::State& state) {
  std::vector<Message> ms = heartbeats(int(state.range(0)));
  for (auto _ : state) {
    auto bytes = wire::encode_heartbeats(1, 2, ms);
    auto frame = wire::decode_frame(*bytes);
    ORDO_ASSERT(frame.has_value() && frame->messages.size() == ms.size());
    benchmark::DoNotOptimize(frame->messages.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Heartbeats)->Name("heartbeats")->Arg(1000);

void BM_Batcher(benchmark::State& state) {
  std::vector<Message> ms = heartbeats(int(state.range(0)));
  Batcher sender(1), receiver(2);
  for (auto _ : state) {
    sender.add(ms);
    auto frames = sender.flush();
    ORDO_ASSERT(frames.size() == 1);
    auto got = receiver.receive(frames[0].bytes);
    ORDO_ASSERT(got.has_value() && got->messages.size() == ms.size());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Batcher)->Name("batcher")->Arg(1000);

}  // namespace
}  // namespace ordo::raft

BENCHMARK_MAIN();
