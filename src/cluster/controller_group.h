#pragma once
// ControllerGroup: the controller's Raft group (group 0), a replicated log of opaque commands
// on one executor (the broker's metadata thread). docs/cluster-controller.md.
//
// It owns a raft::Replica over a RaftLogStorage over a storage::PartitionLog opened directly in
// options.dir (not through the LogManager; created if absent), a tick timer, and a raft::Batcher
// of its own whose frames it hands to options.send once per round (each tick, each batch of
// delivered messages, each proposal). One command is one record (its value) in one record
// batch: one Raft entry. apply() sees every committed data entry once, in log order, with its
// offset; Raft's own no-op and configuration entries (control batches) are skipped.
//
// The commit point survives restarts: after each round that applied entries, the end of what
// was applied is written to `controller.commit` in the directory (atomically by rename, not
// fsynced: a stale or missing value only means less is replayed at start). start() replays
// the local log up to min(that, the recovered log end) through apply() before anything else;
// the rest is applied as the leader commits it. So apply() rebuilds the state machine from
// offset 0 on every start (no snapshots yet: the log is never truncated below its start).
//
// Threads: everything runs on the executor. deliver() and propose() may be called from any
// thread (they post); apply, on_leader and propose's done run on the executor. leader(),
// term(), is_leader() and applied_end() read atomics, from any thread. start() runs on the
// executor's thread or before the executor runs; stop() on the executor's thread or after it
// stopped (inside a callback too: the log is then closed once the callback returns).
//
// Proposals (leader only, else Errc::not_found: ask leader()) are answered with the command's
// offset once it is committed AND applied here. A proposal whose leader loses leadership (or
// its term) before the entry is applied is answered Errc::not_found too: the entry may still
// commit under the next leader, so commands must be idempotent (the state machine ignores a
// command already applied) or checked after the retry. stop() answers the waiting ones
// Errc::closed.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <asio/any_io_executor.hpp>

#include "base/result.h"
#include "cluster/partition_table.h"
#include "raft/batcher.h"
#include "raft/core.h"

namespace ordo::cluster {

using raft::NodeId;

constexpr std::string_view kControllerCommitFileName = "controller.commit";
// The largest command; a bigger one is refused (Errc::too_large).
constexpr size_t kMaxControllerCommandBytes = 1u << 20;
// Proposals waiting for their commit; beyond, propose() answers Errc::busy.
constexpr size_t kMaxPendingProposals = 10'000;

struct ControllerGroupOptions {
  NodeId self = raft::kNoNode;
  uint64_t incarnation = 0;  // a fresh directory's incarnation: 1 under --bootstrap
  std::string dir;           // <data>/__cluster_metadata-0 (created if absent)
  raft::Config initial;      // the voters (incarnation 1 each under --bootstrap)
  // Election and heartbeat ticks, pre_vote, check_quorum. group and self are set here (group
  // 0, this node with its incarnation); the seed is mixed with the node id and a random value.
  raft::Options core;
  int64_t tick_ms = 50;
  std::function<void(std::vector<raft::OutFrame>)> send;  // thread-safe
};

struct ControllerGroupStats {
  uint64_t applied_entries = 0;   // data entries given to apply (replay included)
  uint64_t replayed_entries = 0;  // of those, replayed by start()
  uint64_t dropped_messages = 0;  // delivered messages not for this group or node
  uint64_t failed_proposals = 0;  // answered with an error after being appended
};

class ControllerGroup {
 public:
  using Apply = std::function<void(std::span<const uint8_t> command, int64_t offset)>;
  using OnLeader = std::function<void(NodeId leader, int32_t term)>;

  ControllerGroup(asio::any_io_executor ex, ControllerGroupOptions o, Apply apply,
                  OnLeader on_leader);
  ~ControllerGroup();  // stops if not stopped (same thread rule as stop())
  ControllerGroup(const ControllerGroup&) = delete;
  ControllerGroup& operator=(const ControllerGroup&) = delete;

  // Opens or recovers the log, replays the committed prefix through apply, starts ticking.
  Result<void> start();
  void deliver(std::vector<raft::Message> messages);
  void propose(std::vector<uint8_t> command, std::function<void(Result<int64_t>)> done);
  NodeId leader() const;
  int32_t term() const;
  bool is_leader() const;
  // The offset after the last entry applied (0 before any).
  int64_t applied_end() const;
  // On the executor (or after it stopped).
  ControllerGroupStats stats() const;
  void stop();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ordo::cluster
