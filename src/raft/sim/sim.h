#pragma once
// The deterministic simulator of one Raft group (docs/replication-sim.md): the real
// raft::Replica (and so the real raft::Core) on every node, over a simulated clock, network
// and disk, with faults injected and the checkers (checker.h) run after every event. One
// thread; everything is drawn from one seeded generator, so a seed replays exactly.

#include <cstdint>
#include <cstdio>
#include <string>

#include "raft/broken.h"
#include "raft/sim/event_loop.h"

namespace ordo::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  int verbose = 0;     // 1: faults, roles, commits, client acks; 2: also every message
  FILE* out = stdout;  // where the trace goes
  Time liveness_bound = 10 * kSecond;  // after the faults stop, a new entry commits within it
};

struct SimStats {
  Time sim_time = 0;
  uint64_t events = 0;
  uint64_t messages = 0;
  uint64_t messages_lost = 0;
  uint64_t messages_duplicated = 0;
  uint64_t crashes = 0;
  uint64_t unsynced_ops_lost = 0;
  uint64_t torn_entries = 0;
  uint64_t disk_losses = 0;
  uint64_t partitions = 0;
  uint64_t clock_faults = 0;
  uint64_t storage_faults = 0;
  uint64_t leaders = 0;  // (term, leader) pairs seen
  uint64_t transfers = 0;
  uint64_t config_proposals = 0;  // accepted by a leader
  uint64_t appends = 0;           // accepted by a leader
  uint64_t acknowledged = 0;
  int64_t committed_end = 0;  // the reference committed log's end

  void add(const SimStats& o);
  std::string to_string() const;
};

struct SimResult {
  bool ok = true;
  std::string failure;  // the first violation (checker, or a log recovery problem)
  SimStats stats;
};

// Runs one seed to the end: a fault phase, then the faults stop and the run ends once a new
// entry has committed (liveness) or the bound has passed.
SimResult run_simulation(const SimOptions& options);

}  // namespace ordo::raft::sim
