// Replication benchmarks (issue 18), Google Benchmark. Run through bench/run-raft-bench, which
// runs every benchmark 3 times interleaved and reports medians and spreads.
//
//  core/replicate        the Raft core's own cost per replicated batch: three raft::Cores in one
//                        process, no I/O (logs in memory), one ~16 KiB batch per iteration from
//                        the leader's append to its commit (followers append and acknowledge).
//                        Wall time per batch, everything on this thread.
//  core/idle_groups      messages the cores emit while idle: three nodes sharing 1,000 groups
//                        (leaders spread evenly), ticked for 100 ticks after every group has
//                        a leader and its followers' logs are caught up. Counters: messages
//                        per tick, and per simulated second at the tick period given by
//                        --tick-ms (default 100 ms, an assumption: the cluster module's
//                        timer is not written yet), and the frames per node pair per second
//                        if each node sent everything for one peer in one frame per tick.
//  core/idle_groups_batched
//                        the same through the wire: one raft::Batcher per node, frames
//                        encoded, delivered and decoded once per round (a tick, then flushes
//                        until quiet): frames, messages and bytes per node pair per second.
//  disk/replicated       one partition replicated to three on-disk logs in this process
//                        (RaftLogStorage over PartitionLog, fdatasync on every Ready: the
//                        leader's append and each follower's append each sync their log), one
//                        ~16 KiB batch per iteration, until the leader has committed it.
//  disk/single_log       the same batches appended to one PartitionLog with a flush after each:
//                        what one unreplicated durable append costs on this disk.
//
// disk/replicated / disk/single_log is the price of replication on this box (three syncs on
// one disk, serialised on one thread, against one).
//
// Environment: ORDO_BENCH_DIR, the data directory (default: bench-data in the build tree; must
// not be tmpfs).

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "base/log.h"
#include "cluster/tests/raft_local_cluster.h"
#include "model/record_batch.h"
#include "raft/batcher.h"
#include "raft/core.h"

#ifndef ORDO_BENCH_DEFAULT_DIR
#define ORDO_BENCH_DEFAULT_DIR "bench-data"
#endif

namespace {

namespace fs = std::filesystem;
using namespace ordo;

int g_tick_ms = 100;

std::string bench_dir() {
  const char* d = std::getenv("ORDO_BENCH_DIR");
  return d != nullptr ? d : ORDO_BENCH_DEFAULT_DIR;
}

// A ~16 KiB batch: 16 records of 1,000-byte values.
std::vector<uint8_t> batch_16k() {
  model::RecordBatchBuilder b;
  std::string value(1000, 'v');
  for (int i = 0; i < 16; ++i) b.add("key-" + std::to_string(i), value, 1'700'000'000'000 + i);
  return b.build();
}
constexpr int32_t kRecordsPerBatch = 16;

// ---- in-memory logs and a driver for bare cores ----------------------------------------------

class MemLog final : public raft::LogReader {
 public:
  Result<std::vector<raft::Entry>> read(raft::Offset from, size_t max_bytes) override {
    std::vector<raft::Entry> out;
    auto it = std::lower_bound(entries_.begin(), entries_.end(), from,
                               [](const raft::Entry& e, raft::Offset o) { return e.last < o; });
    size_t bytes = 0;
    for (; it != entries_.end(); ++it) {
      if (!out.empty() && bytes + it->size_bytes() > max_bytes) break;
      bytes += it->size_bytes();
      out.push_back(*it);
    }
    return out;
  }
  void reset() { entries_.clear(); }
  void truncate(raft::Offset end) {
    while (!entries_.empty() && entries_.back().base >= end) entries_.pop_back();
  }
  void append(const raft::Entry& e) { entries_.push_back(e); }
  // Keeps the newest entries only (a benchmark appends many): the core reads the tail.
  void trim(size_t keep) {
    if (entries_.size() > 2 * keep) entries_.erase(entries_.begin(), entries_.end() - long(keep));
  }

 private:
  std::deque<raft::Entry> entries_;
};

struct MemNode {
  MemLog log;
  std::unique_ptr<raft::Core> core;
};

// Groups of bare cores on nodes 1..3; every message is delivered in order, every write is
// durable at once.
class MemNet {
 public:
  MemNet(int groups, raft::Options base) {
    raft::Config config;
    for (int id = 1; id <= 3; ++id) config.voters.push_back({id, uint64_t(id)});
    for (int g = 0; g < groups; ++g) {
      for (int id = 1; id <= 3; ++id) {
        auto n = std::make_unique<MemNode>();
        raft::Options o = base;
        o.group = g;
        o.self = {id, uint64_t(id)};
        o.seed = uint64_t(g) * 3 + uint64_t(id);
        raft::Restored r;
        r.state.configs.push_back({-1, config});
        n->core = std::make_unique<raft::Core>(o, r, &n->log);
        nodes_.push_back(std::move(n));
      }
    }
  }
  MemNode& node(raft::GroupId g, raft::NodeId id) {
    return *nodes_[size_t(g) * 3 + size_t(id - 1)];
  }

  // From now on messages go through one raft::Batcher per node (wire frames) and are delivered
  // by round() instead of deliver().
  void use_batchers() {
    for (int id = 1; id <= 3; ++id) batchers_.push_back(std::make_unique<raft::Batcher>(id));
  }
  // A round: every core ticks; then each node flushes its Batcher and the frames are delivered
  // (their answers go out in the next flush) until nothing is left. Returns the frames sent.
  uint64_t round() {
    for (auto& n : nodes_) {
      n->core->tick();
      drain(*n);
    }
    uint64_t frames = 0;
    for (int pass = 0; pass < 64; ++pass) {
      std::vector<raft::OutFrame> out;
      for (auto& b : batchers_) {
        for (auto& f : b->flush()) out.push_back(std::move(f));
      }
      if (out.empty()) break;
      for (auto& f : out) {
        ++frames;
        frame_bytes_ += f.bytes.size();
        auto r = batchers_[size_t(f.to - 1)]->receive(f.bytes);
        ORDO_ASSERT_MSG(r.has_value(), "a frame did not decode");
        for (const auto& m : r->messages) {
          MemNode& n = node(m.group, m.to);
          n.core->step(m);
          drain(n);
        }
      }
    }
    return frames;
  }
  uint64_t frame_bytes() const { return frame_bytes_; }

  void drain(MemNode& n) {
    while (n.core->has_ready()) {
      raft::Ready r = n.core->take_ready();
      if (r.reset_to) n.log.reset();
      if (r.truncate_to) n.log.truncate(*r.truncate_to);
      for (const auto& e : r.entries) n.log.append(e);
      for (auto& m : r.messages) {
        ++messages_;
        if (m.from.id >= 1 && m.from.id <= 3 && m.to >= 1 && m.to <= 3) {
          flows_[size_t(m.from.id - 1) * 3 + size_t(m.to - 1)] = true;
        }
        if (!batchers_.empty()) {
          batchers_[size_t(m.from.id - 1)]->add(std::move(m));
        } else {
          queue_.push_back(std::move(m));
        }
      }
      if (r.write_seq != 0) n.core->on_persisted(r.write_seq);
    }
  }
  void deliver() {
    while (!queue_.empty()) {
      raft::Message m = std::move(queue_.front());
      queue_.pop_front();
      MemNode& n = node(m.group, m.to);
      n.core->step(m);
      drain(n);
    }
  }
  void tick_all() {
    for (auto& n : nodes_) {
      n->core->tick();
      drain(*n);
    }
    deliver();
  }
  uint64_t messages() const { return messages_; }
  // Directed node pairs that carried at least one message since the last call: the frames a
  // sender that puts everything for one peer in one frame per tick would send.
  int take_flows() {
    int n = 0;
    for (bool& f : flows_) {
      n += f;
      f = false;
    }
    return n;
  }
  size_t size() const { return nodes_.size(); }

 private:
  std::vector<std::unique_ptr<MemNode>> nodes_;
  std::deque<raft::Message> queue_;
  uint64_t messages_ = 0;
  bool flows_[9] = {};
  std::vector<std::unique_ptr<raft::Batcher>> batchers_;
  uint64_t frame_bytes_ = 0;
};

void BM_CoreReplicate(benchmark::State& state) {
  MemNet net(1, raft::Options{});
  MemNode& leader = net.node(0, 1);
  leader.core->campaign();
  net.drain(leader);
  net.deliver();
  for (int i = 0; i < 100 && !leader.core->is_leader(); ++i) net.tick_all();
  if (!leader.core->is_leader()) {
    state.SkipWithError("no leader");
    return;
  }
  auto payload = std::make_shared<const std::vector<uint8_t>>(batch_16k());
  const uint64_t before = net.messages();
  int64_t n = 0;
  for (auto _ : state) {
    raft::Entry e;
    e.term = leader.core->term();
    e.base = leader.core->log_end();
    e.last = e.base + kRecordsPerBatch - 1;
    e.kind = raft::EntryKind::data;
    e.payload = payload;
    leader.log.append(e);
    auto r = leader.core->append(std::span(&e, 1));
    if (!r) {
      state.SkipWithError("append refused");
      break;
    }
    net.drain(leader);
    net.deliver();
    if (leader.core->commit() != leader.core->log_end()) {
      state.SkipWithError("not committed after delivery");
      break;
    }
    if (++n % 1024 == 0) {
      for (int id = 1; id <= 3; ++id) net.node(0, id).log.trim(256);
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(payload->size()));
  state.counters["msgs_per_batch"] =
      double(net.messages() - before) / double(std::max<int64_t>(1, state.iterations()));
}
BENCHMARK(BM_CoreReplicate)->Name("core/replicate")->Unit(benchmark::kNanosecond);

// Elects a leader in every group, spread over the three nodes (group g on node g % 3 + 1), and
// ticks until the no-ops are committed everywhere: the idle state the benchmarks measure.
void elect_spread(MemNet& net, int groups) {
  for (int g = 0; g < groups; ++g) {
    MemNode& n = net.node(g, g % 3 + 1);
    n.core->campaign();
    net.drain(n);
  }
  net.deliver();
  for (int i = 0; i < 200; ++i) net.tick_all();
}

void BM_IdleGroups(benchmark::State& state) {
  const int groups = int(state.range(0));
  constexpr int kTicks = 100;
  for (auto _ : state) {
    state.PauseTiming();
    MemNet net(groups, raft::Options{});
    elect_spread(net, groups);
    int leaders[4] = {0, 0, 0, 0};
    for (int g = 0; g < groups; ++g) {
      for (int id = 1; id <= 3; ++id) leaders[id] += net.node(g, id).core->is_leader();
    }
    if (leaders[1] + leaders[2] + leaders[3] != groups) {
      state.SkipWithError("not every group has a leader");
      break;
    }
    const uint64_t before = net.messages();
    net.take_flows();
    int frames = 0;
    state.ResumeTiming();
    for (int i = 0; i < kTicks; ++i) {
      net.tick_all();
      frames += net.take_flows();
    }
    state.PauseTiming();
    // One frame per directed pair per tick at most; 3 unordered pairs.
    state.counters["frames_per_pair_per_s_one_flush_per_tick"] =
        double(frames) / kTicks * 1000.0 / g_tick_ms / 3;
    const double per_tick = double(net.messages() - before) / kTicks;
    const double per_second = per_tick * 1000.0 / g_tick_ms;
    state.counters["msgs_per_tick"] = per_tick;
    state.counters["msgs_per_s"] = per_second;
    // 3 nodes: 3 unordered pairs, each message crosses one of them.
    state.counters["msgs_per_pair_per_s"] = per_second / 3;
    state.counters["leaders_node1"] = leaders[1];
    state.counters["leaders_node2"] = leaders[2];
    state.counters["leaders_node3"] = leaders[3];
    state.counters["tick_ms"] = g_tick_ms;
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdleGroups)
    ->Name("core/idle_groups")
    ->Arg(1000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// The same idle groups with the wire: every node's messages go through its raft::Batcher (one
// heartbeats frame per node pair per flush), frames are encoded, delivered and decoded. Counts
// the frames per node pair per second; the time includes the encoding and decoding.
void BM_IdleGroupsBatched(benchmark::State& state) {
  const int groups = int(state.range(0));
  constexpr int kTicks = 100;
  for (auto _ : state) {
    state.PauseTiming();
    MemNet net(groups, raft::Options{});
    elect_spread(net, groups);
    net.use_batchers();
    for (int i = 0; i < 10; ++i) net.round();
    const uint64_t messages_before = net.messages();
    const uint64_t bytes_before = net.frame_bytes();
    uint64_t frames = 0;
    state.ResumeTiming();
    for (int i = 0; i < kTicks; ++i) frames += net.round();
    state.PauseTiming();
    const double per_s = 1000.0 / g_tick_ms / kTicks;
    state.counters["frames_per_pair_per_s"] = double(frames) * per_s / 3;
    state.counters["msgs_per_pair_per_s"] = double(net.messages() - messages_before) * per_s / 3;
    state.counters["bytes_per_pair_per_s"] = double(net.frame_bytes() - bytes_before) * per_s / 3;
    state.counters["tick_ms"] = g_tick_ms;
    state.ResumeTiming();
  }
}
BENCHMARK(BM_IdleGroupsBatched)
    ->Name("core/idle_groups_batched")
    ->Arg(1000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---- on disk ------------------------------------------------------------------------------------

storage::LogConfig disk_config() {
  storage::LogConfig c;
  c.flush_mode = storage::FlushMode::none;  // the benchmark syncs (RaftLogStorage::sync, flush())
  c.retention_ms = -1;
  return c;
}

void BM_Replicated(benchmark::State& state) {
  const std::string root = bench_dir() + "/raft-replicated";
  fs::remove_all(root);
  fs::create_directories(root);
  {
    cluster::testing::LocalCluster cluster(root, 3, disk_config());
    if (!cluster.start_all()) {
      state.SkipWithError("start failed");
      return;
    }
    auto* leader = cluster.elect();
    if (leader == nullptr) {
      state.SkipWithError("no leader");
      return;
    }
    auto payload = std::make_shared<const std::vector<uint8_t>>(batch_16k());
    uint64_t syncs_before = 0;
    for (auto& n : cluster.nodes()) syncs_before += n->storage->syncs();
    for (auto _ : state) {
      auto e = leader->replica->append(payload, kRecordsPerBatch);
      if (!e) {
        state.SkipWithError("append failed");
        break;
      }
      cluster.pump();
      if (leader->commit != leader->core().log_end()) {
        state.SkipWithError("not committed after delivery");
        break;
      }
    }
    uint64_t syncs = 0;
    for (auto& n : cluster.nodes()) syncs += n->storage->syncs();
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(payload->size()));
    state.counters["syncs_per_batch"] =
        double(syncs - syncs_before) / double(std::max<int64_t>(1, state.iterations()));
  }
  fs::remove_all(root);
}
BENCHMARK(BM_Replicated)
    ->Name("disk/replicated")
    ->Iterations(1000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_SingleLog(benchmark::State& state) {
  const std::string root = bench_dir() + "/raft-single";
  fs::remove_all(root);
  {
    auto log = storage::PartitionLog::open(root + "/p-0", disk_config(), SystemClock::instance());
    if (!log) {
      state.SkipWithError("open failed");
      return;
    }
    const auto batch = batch_16k();
    std::vector<uint8_t> buf;
    for (auto _ : state) {
      buf = batch;  // the log writes offsets into its buffer: a fresh copy, as the replica makes
      auto r = (*log)->append(std::span<uint8_t>(buf), {.leader_epoch = 1});
      if (!r || !(*log)->flush()) {
        state.SkipWithError("append failed");
        break;
      }
    }
    state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(batch.size()));
  }
  fs::remove_all(root);
}
BENCHMARK(BM_SingleLog)
    ->Name("disk/single_log")
    ->Iterations(1000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--tick-ms=", 0) == 0) {
      g_tick_ms = std::max(1, std::atoi(a.c_str() + 10));
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = int(rest.size());
  ordo::set_log_threshold(ordo::LogLevel::warn);
  benchmark::Initialize(&n, rest.data());
  if (benchmark::ReportUnrecognizedArguments(n, rest.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
