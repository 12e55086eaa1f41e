#pragma once
// The simulated disk of one node for one group: the hard state and the log, with the crash
// model the simulator needs.
//
// The log has a WRITTEN view (what the replica's process sees: every write so far) and a
// DURABLE view (what survives a crash). Writes (reset, truncate, append) change the written
// view at once and queue as unsynced operations; make_durable(n) applies the first n
// operations ever written to the durable view (a completed sync). A crash keeps the durable
// view plus a random prefix of the unsynced operations (whole entries: a prefix of the
// unsynced suffix survives), optionally followed by one torn entry whose checksum fails;
// recover() checks every entry's checksum, cuts the log at the first bad one (as a real log's
// recovery truncates a torn tail) and answers the raft::Restored a new replica starts from.
// The hard state is durable when save_state returns (the Storage contract).

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "base/random.h"
#include "base/result.h"
#include "raft/core.h"
#include "raft/types.h"

namespace ordo::raft::sim {

// A checksum of everything an entry holds (term, offsets, kind, configuration, payload bytes).
uint64_t entry_checksum(const Entry& entry);
// Byte-for-byte equality of two entries (a null payload equals an empty one).
bool same_entry(const Entry& a, const Entry& b);
std::string describe(const Entry& entry);

struct StoredEntry {
  Entry entry;
  uint64_t checksum = 0;
};

struct DiskLog {
  Offset start = 0;
  Term term_before = kNoTerm;  // the term of the record at start - 1 (kNoTerm at start 0)
  std::vector<StoredEntry> entries;

  Offset end() const { return entries.empty() ? start : entries.back().entry.end(); }
  // The index of the entry that holds `offset`, or entries.size() when none does.
  size_t index_of(Offset offset) const;
};

class SimDisk {
 public:
  explicit SimDisk(uint64_t incarnation) : incarnation_(incarnation) {}

  uint64_t incarnation() const { return incarnation_; }

  // ---- writes ----
  void save_state(const HardState& state) { state_ = state; }
  const std::optional<HardState>& state() const { return state_; }
  // The log restarts empty at `start`; the record before it has `term_before`.
  void reset(Offset start, Term term_before);
  // Removes the records at offsets >= end (asserted within the log).
  void truncate(Offset end);
  // Appends one entry at the log end (asserted contiguous: the caller validates first).
  void append(const Entry& entry);
  // Retention: the records below `start` (a batch boundary within the log) are deleted.
  void advance_start(Offset start);

  // ---- syncs ----
  uint64_t ops_written() const { return ops_written_; }
  uint64_t ops_durable() const { return ops_durable_; }
  bool has_unsynced() const { return ops_durable_ < ops_written_; }
  // The first `upto` operations ever written are durable.
  void make_durable(uint64_t upto);

  // ---- crash and recovery ----
  // The process died: the durable view keeps a random whole-entry prefix of the unsynced
  // operations and, when `torn` and the next unsynced operation is an append, a torn copy of
  // that entry (its checksum fails). Answers how many unsynced operations were lost.
  size_t crash(Random& rng, bool torn);
  struct Recovery {
    Restored restored;
    int torn_entries = 0;  // entries cut by recovery because their checksum failed
    std::string problem;   // non-empty: the recovered log breaks a log invariant
  };
  // What a restarted replica finds: the durable view, checked and cut at the first bad
  // entry. `fresh` is the hard state of a replica that never saved one.
  Recovery recover(const HardState& fresh);

  const DiskLog& written() const { return written_; }
  const DiskLog& durable() const { return durable_; }

  // Entries of the written log from the one holding `from` on: at least one when
  // from < end, then as many as fit in max_bytes of payload.
  Result<std::vector<Entry>> read(Offset from, size_t max_bytes) const;

 private:
  enum class OpKind : uint8_t { reset, truncate, append, advance };
  struct Op {
    OpKind kind;
    Offset offset = 0;
    Term term = kNoTerm;
    StoredEntry entry;
  };
  static void apply(DiskLog& log, const Op& op);

  uint64_t incarnation_;
  std::optional<HardState> state_;
  DiskLog written_;
  DiskLog durable_;
  std::deque<Op> unsynced_;  // operations ops_durable_ .. ops_written_ - 1
  uint64_t ops_written_ = 0;
  uint64_t ops_durable_ = 0;
};

}  // namespace ordo::raft::sim
