#pragma once
// The simulator's safety checkers, fed observations after every event:
//  - at most one leader per term (a leader is a Member: node id and disk incarnation);
//  - the committed prefix is identical on every replica, byte for byte: every entry below a
//    replica's commit equals the reference committed log's entry at its offset (the first
//    replica to commit an offset defines the reference, which never changes afterwards);
//  - no acknowledged append is lost: when a leader acknowledges an append (its high
//    watermark passed the entry's end), the reference holds exactly that entry at its offset,
//    and since the reference never changes and every replica's committed entries must match
//    it, the entry stays committed forever;
//  - a leader's high watermark never moves back within its term, nor below what a leader of
//    an earlier term showed, and a replica's commit never moves back while its process lives
//    (readers never see a record disappear).
// The first violation is kept; the simulator stops there and prints it with the seed.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "raft/types.h"

namespace ordo::raft::sim {

class Checker {
 public:
  void leader_seen(Term term, const Member& leader);
  // An entry below `node`'s commit.
  void committed(NodeId node, const Entry& entry);
  // An append `node` (the leader) acknowledged. The caller verified the node's committed log
  // first, so the reference already reaches the entry.
  void acknowledged(NodeId node, const Entry& entry);
  // The high watermark a leader shows, for one process life of the node.
  void high_watermark(NodeId node, uint64_t life, Term term, Offset hwm);
  // A replica's commit point (Replica::on_commit), for one process life of the node.
  void commit_reported(NodeId node, uint64_t life, Offset commit);
  // At the end of a run: every acknowledged entry is still in the reference.
  void final_check();

  void fail(std::string what);
  bool failed() const { return !failure_.empty(); }
  const std::string& failure() const { return failure_; }

  const std::vector<Entry>& reference() const { return reference_; }
  Offset reference_end() const { return reference_.empty() ? 0 : reference_.back().end(); }
  uint64_t acknowledged_count() const { return acked_.size(); }
  uint64_t unverifiable() const { return unverifiable_; }
  const std::map<Term, Member>& leaders() const { return leaders_; }

 private:
  // The reference entry that starts at `base`, or nullptr.
  const Entry* reference_at(Offset base) const;

  std::string failure_;
  std::map<Term, Member> leaders_;
  std::vector<Entry> reference_;
  std::vector<NodeId> reference_from_;  // which node committed each reference entry first
  std::vector<Entry> acked_;
  struct Watermark {
    uint64_t life = 0;
    Term term = kNoTerm;
    Offset value = 0;
  };
  std::map<NodeId, Watermark> hwm_;
  std::map<Term, Offset> term_hwm_;  // the highest high watermark a leader of each term showed
  std::map<NodeId, std::pair<uint64_t, Offset>> commit_;  // node -> (life, commit)
  uint64_t unverifiable_ = 0;  // committed entries past a gap in the reference
};

}  // namespace ordo::raft::sim
