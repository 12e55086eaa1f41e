#pragma once
// raft::Replica: the thin driver around a Core. It carries out each Ready in order (state,
// log writes, sync, messages) against a Storage and a Transport, and turns a leader's appends
// into log writes. Still no threads, sockets, clocks or files of its own: the simulator gives
// it a simulated disk and network and calls tick() on simulated time; the cluster module gives
// it the partition log, a TCP transport and an asio timer. One thread calls everything.

#include <functional>
#include <memory>
#include <span>

#include "base/result.h"
#include "raft/broken.h"
#include "raft/core.h"

namespace ordo::raft {

// One group's durable storage: the hard state and the log.
class Storage : public LogReader {
 public:
  // Durable when it returns.
  virtual Result<void> save_state(const HardState& state) = 0;
  // Log changes are written (not yet durable) when they return.
  virtual Result<void> reset(Offset start, Term term_before) = 0;
  virtual Result<void> truncate(Offset end) = 0;
  // A follower's appends: the leader's entries, byte for byte, offsets as they are.
  virtual Result<void> append(std::span<const Entry> entries) = 0;
  // A leader's append of new records: the storage assigns offsets from the log end and stamps
  // `term` into the batch (the partition leader epoch), and answers the entry it wrote.
  virtual Result<Entry> append_leader(Term term, Payload payload, int32_t records) = 0;
  // Makes every write so far durable; done runs (later, on the replica's thread) when it is.
  virtual void sync(std::function<void(Result<void>)> done) = 0;
  // Moves the log start forward (retention, DeleteRecords), at most to the commit point. A
  // storage that cannot recover the term of the record before the new start from its log
  // keeps it here. The Replica calls it before telling the core.
  virtual Result<void> advance_log_start(Offset start) {
    (void)start;
    return ok();
  }
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void send(Message message) = 0;  // best effort: may be lost
};

struct ReplicaOptions {
  // Relaxed durability (Redpanda's "write caching"), opt-in: a replica counts its writes as
  // durable once they are written to the page cache, before the sync (which still follows at
  // once). An acknowledged append is then lost if a majority of the replicas lose power (not
  // just the process: the page cache survives a process crash) between the acknowledgement and
  // their next completed sync. docs/replication.md, "Durability".
  bool write_caching = false;
};

class Replica {
 public:
  Replica(Options options, Restored restored, Storage* storage, Transport* transport,
          ReplicaOptions replica_options = {});

  void tick();
  void receive(const Message& message);
  // Leader: appends one batch of `records` records; answers its offsets. Errors: not leader
  // (not_found), transferring (busy), what the log refuses of the batch itself (a producer's
  // duplicate, sequence or epoch error, a malformed batch: answered, nothing written), and
  // storage failures (io/corrupt: the replica stops).
  Result<Entry> append(Payload payload, int32_t records);
  Result<void> propose_config(const Config& config) { return run(core_.propose_config(config)); }
  Result<void> transfer_leadership(NodeId to) { return run(core_.transfer_leadership(to)); }
  void campaign();
  // Retention or DeleteRecords moved the log start to `start` (<= commit, asserted): the
  // storage first (Storage::advance_log_start), then the core.
  void on_log_start(Offset start);

  const Core& core() const { return core_; }
  // A storage error stopped the replica: it takes no more input.
  bool failed() const { return failed_.has_value(); }
  const std::optional<Error>& failure() const { return failed_; }
  // Called with the commit point whenever it moves (after the Ready that moved it).
  std::function<void(Offset)> on_commit;

 private:
  template <typename T>
  T run(T result) {
    drain();
    return result;
  }
  void drain();
  void carry_out(Ready& ready);
  void fail(Error error);

  Core core_;
  Storage* storage_;
  Transport* transport_;
  ReplicaOptions replica_options_;
  std::optional<Error> failed_;
  Offset reported_commit_ = -1;
  bool draining_ = false;
  uint64_t persisted_seq_ = 0;  // completed syncs not yet given to the core
  uint64_t given_seq_ = 0;
  // Broken variant vote_before_durable: the state waits for the next sync to be saved.
  std::optional<HardState> deferred_state_;
  // Sync callbacks hold this: after the replica is gone they do nothing.
  std::shared_ptr<Replica*> self_ = std::make_shared<Replica*>(this);

 public:
  ~Replica() { *self_ = nullptr; }
};

}  // namespace ordo::raft
