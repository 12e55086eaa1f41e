#include "raft/sim/checker.h"

#include <algorithm>

#include <fmt/format.h>

#include "raft/sim/disk.h"

namespace ordo::raft::sim {

void Checker::fail(std::string what) {
  if (failure_.empty()) failure_ = std::move(what);
}

void Checker::leader_seen(Term term, const Member& leader) {
  auto [it, inserted] = leaders_.emplace(term, leader);
  if (!inserted && it->second != leader) {
    fail(
        fmt::format("two leaders in term {}: node {} (incarnation {:x}) and node {} "
                    "(incarnation {:x})",
                    term, it->second.id, it->second.incarnation & 0xffff, leader.id,
                    leader.incarnation & 0xffff));
  }
}

const Entry* Checker::reference_at(Offset base) const {
  auto it = std::lower_bound(reference_.begin(), reference_.end(), base,
                             [](const Entry& e, Offset o) { return e.base < o; });
  return it != reference_.end() && it->base == base ? &*it : nullptr;
}

void Checker::committed(NodeId node, const Entry& entry) {
  Offset end = reference_end();
  if (entry.base == end) {
    reference_.push_back(entry);
    reference_from_.push_back(node);
    return;
  }
  if (entry.base > end) {
    // A replica that restarted from a leader's log start past the reference's end (only
    // after retention): nothing to compare with yet.
    ++unverifiable_;
    return;
  }
  const Entry* ref = reference_at(entry.base);
  if (ref == nullptr) {
    fail(
        fmt::format("committed logs disagree at offset {}: node {} committed {} which does "
                    "not line up with the reference's batches",
                    entry.base, node, describe(entry)));
    return;
  }
  if (!same_entry(*ref, entry)) {
    size_t i = size_t(ref - reference_.data());
    fail(
        fmt::format("committed logs disagree at offset {}: node {} committed {}, node {} "
                    "committed {}",
                    entry.base, node, describe(entry), reference_from_[i], describe(*ref)));
  }
}

void Checker::acknowledged(NodeId node, const Entry& entry) {
  const Entry* ref = reference_at(entry.base);
  if (ref == nullptr || !same_entry(*ref, entry)) {
    fail(fmt::format("node {} acknowledged {} but the committed log holds {} there", node,
                     describe(entry), ref ? describe(*ref) : std::string("nothing")));
    return;
  }
  acked_.push_back(entry);
}

void Checker::high_watermark(NodeId node, uint64_t life, Term term, Offset hwm) {
  auto& w = hwm_[node];
  if (w.life == life && w.term == term && hwm == w.value) return;  // nothing new
  if (w.life == life && w.term == term && hwm < w.value) {
    fail(fmt::format("node {}'s high watermark moved back in term {}: {} -> {}", node, term,
                     w.value, hwm));
    return;
  }
  w = Watermark{life, term, hwm};
  // Across leaders: a leader shows a high watermark only once an entry of its own term is
  // committed, which lies past everything committed before, so it is never below what a
  // leader of an earlier term showed (a reader that follows the leader never sees it go back).
  for (auto it = term_hwm_.begin(); it != term_hwm_.end() && it->first < term; ++it) {
    if (hwm < it->second) {
      fail(
          fmt::format("node {}, leader of term {}, shows high watermark {} below the {} the "
                      "leader of term {} showed",
                      node, term, hwm, it->second, it->first));
      return;
    }
  }
  Offset& best = term_hwm_[term];
  best = std::max(best, hwm);
}

void Checker::commit_reported(NodeId node, uint64_t life, Offset commit) {
  auto& [l, c] = commit_[node];
  if (l == life && commit < c) {
    fail(fmt::format("node {}'s commit moved back: {} -> {}", node, c, commit));
    return;
  }
  l = life;
  c = commit;
}

void Checker::final_check() {
  for (const auto& e : acked_) {
    const Entry* ref = reference_at(e.base);
    if (ref == nullptr || !same_entry(*ref, e)) {
      fail(fmt::format("acknowledged {} is gone from the committed log", describe(e)));
      return;
    }
  }
}

}  // namespace ordo::raft::sim
