#include "raft/core.h"

#include <algorithm>

#include "base/assert.h"
#include "raft/broken.h"

namespace ordo::raft {

// ---- construction ------------------------------------------------------------------------------

Core::Core(Options options, Restored restored, LogReader* reader)
    : options_(std::move(options)),
      reader_(reader),
      random_(options_.seed),
      state_(std::move(restored.state)),
      log_start_(restored.log_start),
      log_end_(restored.log_end),
      durable_end_(restored.log_end),
      storage_end_(restored.log_end),
      commit_(restored.log_start),
      epochs_(std::move(restored.epochs)) {
  ORDO_ASSERT(reader_ != nullptr);
  ORDO_ASSERT(options_.election_ticks >= 2 && options_.heartbeat_ticks >= 1);
  ORDO_ASSERT(options_.heartbeat_ticks < options_.election_ticks);
  ORDO_ASSERT(options_.max_inflight >= 1);
  ORDO_ASSERT(options_.self.id >= 0);
  ORDO_ASSERT(0 <= log_start_ && log_start_ <= log_end_);
  ORDO_ASSERT_MSG(!state_.configs.empty(), "a replica starts with its group's configuration");
  ORDO_ASSERT(state_.voted_for.id == kNoNode || state_.term > 0);
  if (state_.reset_start > log_start_) {
    // The state of a reset was saved but the reset itself did not reach the disk before the
    // crash: the recovered log is the old one, which the saved configuration does not describe.
    // Redo the reset (the first Ready carries it out again).
    const Offset start = state_.reset_start;
    log_start_ = log_end_ = durable_end_ = storage_end_ = commit_ = start;
    epochs_.clear();
    if (state_.reset_term != kNoTerm && start > 0) {
      epochs_.push_back(EpochStart{state_.reset_term, start - 1});
    }
    ready_.reset_to = start;
    ready_.reset_term = state_.reset_term;
    note_write();
  }
  // A configuration whose entry did not survive the crash is not in force. The first one is
  // committed and durable (trim_configs keeps it so), but keep at least one in any case.
  while (state_.configs.size() > 1 && state_.configs.back().offset >= log_end_) {
    state_.configs.pop_back();
  }
  for (const auto& c : state_.configs) ORDO_ASSERT(c.config.valid());
  // Epochs above the log end are gone with their records.
  while (!epochs_.empty() && epochs_.back().start >= log_end_ &&
         epochs_.back().start >= log_start_) {
    epochs_.pop_back();
  }
  reset_election_timer();
  check_invariants();
}

// ---- queries -----------------------------------------------------------------------------------

Term Core::term_at(Offset offset) const {
  if (offset < 0 || offset >= log_end_ || offset < log_start_ - 1) return kNoTerm;
  // The last epoch that starts at or before offset.
  auto it = std::upper_bound(epochs_.begin(), epochs_.end(), offset,
                             [](Offset o, const EpochStart& e) { return o < e.start; });
  if (it == epochs_.begin()) return kNoTerm;
  return std::prev(it)->term;
}

std::optional<Offset> Core::end_of_term(Term term) const {
  auto it = std::lower_bound(epochs_.begin(), epochs_.end(), term,
                             [](const EpochStart& e, Term t) { return e.term < t; });
  if (it == epochs_.end() || it->term != term) return std::nullopt;
  auto next = std::next(it);
  return next == epochs_.end() ? log_end_ : std::max(next->start, log_start_);
}

std::optional<Offset> Core::start_of_term(Term term) const {
  auto it = std::lower_bound(epochs_.begin(), epochs_.end(), term,
                             [](const EpochStart& e, Term t) { return e.term < t; });
  if (it == epochs_.end() || it->term != term) return std::nullopt;
  return std::max(it->start, log_start_);
}

std::optional<Offset> Core::high_watermark() const {
  if (role_ != Role::leader || commit_ <= term_start_) return std::nullopt;
  return commit_;
}

bool Core::can_append() const {
  return role_ == Role::leader && !transfer_to_.has_value();
}

bool Core::self_is_voter() const {
  return config().is_voter(options_.self);
}

bool Core::pending_config_change() const {
  return state_.configs.back().offset >= commit_;
}

Status Core::status() const {
  Status s;
  s.group = options_.group;
  s.self = options_.self;
  s.role = role_;
  s.term = state_.term;
  s.leader = leader_;
  s.voted_for = state_.voted_for;
  s.log_start = log_start_;
  s.log_end = log_end_;
  s.durable_end = durable_end_;
  s.commit = commit_;
  s.config = config();
  s.transferring_to = transfer_to_;
  for (const auto& p : progress_) {
    s.progress.push_back(FollowerProgress{p.member, config().is_voter_id(p.member.id), p.match_end,
                                          p.next, p.replicating, p.inflight, p.active});
  }
  return s;
}

Ready Core::take_ready() {
  Ready out = std::move(ready_);
  ready_ = Ready{};
  storage_end_ = log_end_;
  return out;
}

// ---- invariants --------------------------------------------------------------------------------

void Core::check_invariants() const {
  ORDO_ASSERT(0 <= log_start_ && log_start_ <= commit_ && commit_ <= log_end_);
  ORDO_ASSERT(durable_end_ <= log_end_ && storage_end_ <= log_end_);
  ORDO_ASSERT(state_.term >= 0);
  ORDO_ASSERT(!state_.configs.empty());
  for (size_t i = 1; i < state_.configs.size(); ++i) {
    ORDO_ASSERT(state_.configs[i - 1].offset < state_.configs[i].offset);
  }
  ORDO_ASSERT(state_.configs.back().offset < log_end_);
  for (size_t i = 1; i < epochs_.size(); ++i) {
    ORDO_ASSERT(epochs_[i - 1].term < epochs_[i].term);
    ORDO_ASSERT(epochs_[i - 1].start < epochs_[i].start);
  }
  if (!epochs_.empty()) {
    ORDO_ASSERT(epochs_.back().term <= state_.term);
    ORDO_ASSERT(epochs_.back().start < std::max(log_end_, log_start_));
  }
  for (size_t i = 1; i < pending_writes_.size(); ++i) {
    ORDO_ASSERT(pending_writes_[i - 1].seq < pending_writes_[i].seq);
  }
  for (const auto& w : pending_writes_) ORDO_ASSERT(w.end <= log_end_);
  switch (role_) {
    case Role::leader:
      ORDO_ASSERT(leader_ == options_.self.id);
      ORDO_ASSERT(state_.voted_for == options_.self);
      ORDO_ASSERT(term_start_ >= 0 && term_start_ < log_end_);
      if (term_start_ >= log_start_) ORDO_ASSERT(term_at(term_start_) == state_.term);
      for (const auto& p : progress_) {
        ORDO_ASSERT(p.member.id != options_.self.id);
        ORDO_ASSERT(p.match_end <= log_end_);
        ORDO_ASSERT(p.inflight >= 0 && p.inflight <= options_.max_inflight);
      }
      break;
    case Role::candidate:
      ORDO_ASSERT(state_.voted_for == options_.self);
      ORDO_ASSERT(leader_ == kNoNode);
      break;
    case Role::pre_candidate:
      ORDO_ASSERT(leader_ == kNoNode);
      break;
    case Role::follower:
      ORDO_ASSERT(leader_ != options_.self.id);
      ORDO_ASSERT(verified_end_ <= log_end_);
      ORDO_ASSERT(progress_.empty());
      break;
  }
}

// ---- inputs ------------------------------------------------------------------------------------

void Core::tick() {
  ++election_elapsed_;
  if (role_ == Role::leader) {
    ticks_since_leader_contact_ = 0;
    if (++heartbeat_elapsed_ >= options_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      broadcast_heartbeat();
    }
    for (auto& p : progress_) {
      if (p.probe_wait > 0) --p.probe_wait;
    }
    if (transfer_to_ && ++transfer_elapsed_ >= options_.election_ticks) {
      transfer_to_.reset();  // the target did not take over in time: lead on
    }
    if (election_elapsed_ >= options_.election_ticks) {
      election_elapsed_ = 0;
      if (options_.check_quorum) {
        // Step down when a majority of voters has not been heard from for a whole election
        // timeout: a new leader may already be serving on the other side of a partition.
        size_t active = self_is_voter() ? 1 : 0;
        for (auto& p : progress_) {
          if (p.active && p.incarnation_ok && config().is_voter(p.member)) ++active;
          p.active = false;
        }
        if (active < config().quorum()) {
          become_follower(state_.term, kNoNode);
          check_invariants();
          return;
        }
      }
    }
    maybe_send_appends();
  } else {
    ++ticks_since_leader_contact_;
    if (election_elapsed_ >= election_timeout_) {
      election_elapsed_ = 0;
      if (self_is_voter()) {
        if (options_.pre_vote) {
          become_pre_candidate();
        } else {
          become_candidate(false);
        }
      } else {
        reset_election_timer();
      }
    }
  }
  check_invariants();
}

void Core::campaign() {
  if (role_ == Role::leader || !self_is_voter()) return;
  if (options_.pre_vote) {
    become_pre_candidate();
  } else {
    become_candidate(false);
  }
  check_invariants();
}

void Core::step(const Message& m) {
  if (m.group != options_.group || m.to != options_.self.id || m.from.id == options_.self.id ||
      m.from.id < 0 || m.term < 0) {
    ++dropped_;
    return;
  }
  const bool is_vote_request = std::holds_alternative<VoteRequest>(m.body);
  const bool is_pre_vote_request = is_vote_request && std::get<VoteRequest>(m.body).pre_vote;
  const bool is_pre_vote_response =
      std::holds_alternative<VoteResponse>(m.body) && std::get<VoteResponse>(m.body).pre_vote;

  if (m.term > state_.term) {
    if (is_vote_request) {
      const auto& r = std::get<VoteRequest>(m.body);
      // Leader stickiness: while this replica hears from a leader, a candidate's (pre-)vote is
      // refused without disturbing the term (unless the leader itself handed over).
      const bool in_lease = options_.check_quorum && leader_ != kNoNode &&
                            ticks_since_leader_contact_ < options_.election_ticks && !r.transfer;
      if (in_lease) {
        send(m.from.id, VoteResponse{.granted = false, .pre_vote = r.pre_vote});
        check_invariants();
        return;
      }
      if (!is_pre_vote_request) become_follower(m.term, kNoNode);
    } else if (is_pre_vote_response) {
      // A pre-vote answer carries the term we would run in; not a reason to change ours.
    } else if (std::holds_alternative<AppendRequest>(m.body) ||
               std::holds_alternative<Heartbeat>(m.body) ||
               std::holds_alternative<TimeoutNow>(m.body)) {
      become_follower(m.term, m.from.id);
    } else {
      become_follower(m.term, kNoNode);
    }
  } else if (m.term < state_.term) {
    // A stale leader or candidate learns the newer term from the answer.
    if (std::holds_alternative<AppendRequest>(m.body)) {
      send(m.from.id,
           AppendResponse{
               .success = false, .log_end = log_end_, .hint_term = kNoTerm, .hint_start = 0});
    } else if (std::holds_alternative<Heartbeat>(m.body)) {
      send(m.from.id, HeartbeatResponse{});
    } else if (is_vote_request) {
      send(m.from.id, VoteResponse{.granted = false, .pre_vote = is_pre_vote_request});
    }
    check_invariants();
    return;
  }

  std::visit(
      [&](const auto& body) {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, VoteRequest>) {
          on_vote_request(m, body);
        } else if constexpr (std::is_same_v<T, VoteResponse>) {
          on_vote_response(m, body);
        } else if constexpr (std::is_same_v<T, AppendRequest>) {
          on_append(m, body);
        } else if constexpr (std::is_same_v<T, AppendResponse>) {
          on_append_response(m, body);
        } else if constexpr (std::is_same_v<T, Heartbeat>) {
          on_heartbeat(m, body);
        } else if constexpr (std::is_same_v<T, HeartbeatResponse>) {
          on_heartbeat_response(m);
        } else if constexpr (std::is_same_v<T, TimeoutNow>) {
          on_timeout_now(m);
        }
      },
      m.body);
  check_invariants();
}

Result<void> Core::append(std::span<const Entry> entries) {
  if (role_ != Role::leader) return make_error(Errc::not_found, "not the leader");
  if (transfer_to_) return make_error(Errc::busy, "transferring leadership");
  ORDO_ASSERT_MSG(!ready_.reset_to && !ready_.truncate_to && ready_.entries.empty(),
                  "append() before the last Ready was carried out");
  ORDO_ASSERT(!entries.empty());
  for (const auto& e : entries) {
    ORDO_ASSERT(e.base == log_end_ && e.last >= e.base);
    ORDO_ASSERT(e.term == state_.term);
    ORDO_ASSERT(e.kind == EntryKind::data);
    log_append(e, false);
  }
  storage_end_ = log_end_;
  note_write();
  // Followers that are replicating and up to date get the new entries at once, without a read.
  for (auto& p : progress_) {
    if (!p.replicating || p.inflight >= options_.max_inflight || p.next != entries.front().base) {
      continue;
    }
    AppendRequest r;
    r.prev_end = entries.front().base;
    r.prev_term = term_at(r.prev_end - 1);
    r.commit = commit_;
    r.log_start = log_start_;
    r.entries.assign(entries.begin(), entries.end());
    p.next = r.entries.back().end();
    ++p.inflight;
    send(p.member.id, std::move(r));
  }
  maybe_commit();  // a single voter commits on its own durability
  check_invariants();
  return ok();
}

void Core::on_persisted(uint64_t write_seq) {
  Offset end = -1;
  while (!pending_writes_.empty() && pending_writes_.front().seq <= write_seq) {
    end = pending_writes_.front().end;
    pending_writes_.erase(pending_writes_.begin());
  }
  if (end > durable_end_) durable_end_ = end;
  ORDO_ASSERT(durable_end_ <= log_end_);
  if (role_ == Role::leader) {
    maybe_commit();
  } else if (role_ == Role::follower) {
    send_ack(false);
  }
  check_invariants();
}

void Core::on_log_start(Offset log_start) {
  ORDO_ASSERT_MSG(log_start <= commit_, "nothing above the commit point is ever removed");
  ORDO_ASSERT(log_start <= log_end_);
  if (log_start <= log_start_) return;
  log_start_ = log_start;
  // Keep the epoch that covers log_start - 1 (it gives the term of the record before the start)
  // and every later one.
  auto it = std::upper_bound(epochs_.begin(), epochs_.end(), log_start_ - 1,
                             [](Offset o, const EpochStart& e) { return o < e.start; });
  if (it != epochs_.begin()) epochs_.erase(epochs_.begin(), std::prev(it));
  trim_configs();
  check_invariants();
}

Result<void> Core::propose_config(const Config& next) {
  if (role_ != Role::leader) return make_error(Errc::not_found, "not the leader");
  if (transfer_to_) return make_error(Errc::busy, "transferring leadership");
  if (!next.valid()) return make_error(Errc::invalid_argument, "invalid configuration");
  if (pending_config_change()) return make_error(Errc::busy, "a configuration change is pending");
  if (!high_watermark()) return make_error(Errc::busy, "the leader has not committed in its term");
  const Config& cur = config();
  if (next == cur) return make_error(Errc::invalid_argument, "the configuration is unchanged");
  // One voter at a time: the old and the new majorities then always overlap.
  size_t changed = 0;
  for (const auto& v : cur.voters) {
    if (!next.is_voter(v)) ++changed;
  }
  for (const auto& v : next.voters) {
    if (!cur.is_voter(v)) {
      ++changed;
      // A new voter must have caught up as a learner first (and be that incarnation).
      const Progress* p = nullptr;
      for (const auto& q : progress_) {
        if (q.member.id == v.id) p = &q;
      }
      if (v.id == options_.self.id) {
        if (!(v == options_.self)) return make_error(Errc::invalid_argument, "unknown incarnation");
      } else if (p == nullptr || !(p->member == v) || !p->incarnation_ok ||
                 p->match_end < commit_) {
        return make_error(Errc::busy, "node {} has not caught up as a learner", v.id);
      }
    }
  }
  if (changed > 1) return make_error(Errc::invalid_argument, "more than one voter changes");
  Entry e;
  e.term = state_.term;
  e.base = log_end_;
  e.last = log_end_;
  e.kind = EntryKind::config;
  e.config = next;
  append_local(std::move(e));
  check_invariants();
  return ok();
}

Result<void> Core::transfer_leadership(NodeId target) {
  if (role_ != Role::leader) return make_error(Errc::not_found, "not the leader");
  if (target == options_.self.id) return make_error(Errc::invalid_argument, "already the leader");
  if (!config().is_voter_id(target)) return make_error(Errc::invalid_argument, "not a voter");
  if (transfer_to_) return make_error(Errc::busy, "already transferring");
  transfer_to_ = target;
  transfer_elapsed_ = 0;
  check_transfer();
  check_invariants();
  return ok();
}

// ---- transitions -------------------------------------------------------------------------------

void Core::reset_election_timer() {
  election_elapsed_ = 0;
  election_timeout_ =
      options_.election_ticks + int(random_.below(uint64_t(options_.election_ticks)));
}

void Core::set_term(Term term) {
  ORDO_ASSERT(term > state_.term);
  state_.term = term;
  state_.voted_for = Member{};
  persist_state();
}

void Core::become_follower(Term term, NodeId leader) {
  const bool changed = term != state_.term || leader != leader_;
  const bool was_leader = role_ == Role::leader;
  if (term > state_.term) set_term(term);
  ORDO_ASSERT(term == state_.term);
  role_ = Role::follower;
  leader_ = leader;
  progress_.clear();
  votes_.clear();
  transfer_to_.reset();
  term_start_ = -1;
  if (changed) {
    // What matched an earlier leader need not match this one; the committed prefix does.
    verified_end_ = commit_;
    acked_end_ = -1;
  }
  if (leader != kNoNode) ticks_since_leader_contact_ = 0;
  // The election timer restarts on hearing from a leader (and on granting a vote), not on
  // merely seeing a higher term: otherwise a candidate whose log is behind, timing out first
  // again and again, keeps every replica that could win from ever campaigning.
  if (leader != kNoNode || was_leader) reset_election_timer();
}

void Core::become_pre_candidate() {
  ORDO_ASSERT(role_ != Role::leader);
  role_ = Role::pre_candidate;
  leader_ = kNoNode;
  votes_.assign(1, options_.self);
  reset_election_timer();
  if (votes_.size() >= config().quorum()) {
    become_candidate(false);
    return;
  }
  for (const auto& v : config().voters) {
    if (v.id == options_.self.id) continue;
    Message m;
    m.group = options_.group;
    m.term = state_.term + 1;  // the term it would run in
    m.from = options_.self;
    m.to = v.id;
    m.body = VoteRequest{.last_term = last_term(), .log_end = log_end_, .pre_vote = true};
    ready_.messages.push_back(std::move(m));
  }
}

void Core::become_candidate(bool transfer) {
  ORDO_ASSERT(role_ != Role::leader);
  set_term(state_.term + 1);
  state_.voted_for = options_.self;
  persist_state();
  role_ = Role::candidate;
  leader_ = kNoNode;
  votes_.assign(1, options_.self);
  reset_election_timer();
  if (votes_.size() >= config().quorum()) {
    become_leader();
    return;
  }
  for (const auto& v : config().voters) {
    if (v.id == options_.self.id) continue;
    send(v.id, VoteRequest{.last_term = last_term(),
                           .log_end = log_end_,
                           .pre_vote = false,
                           .transfer = transfer});
  }
}

void Core::become_leader() {
  ORDO_ASSERT(role_ == Role::candidate);
  ORDO_ASSERT(state_.voted_for == options_.self);
  role_ = Role::leader;
  leader_ = options_.self.id;
  votes_.clear();
  transfer_to_.reset();
  heartbeat_elapsed_ = 0;
  election_elapsed_ = 0;
  ticks_since_leader_contact_ = 0;
  rebuild_progress();
  // The no-op of the new term: committing it commits every earlier entry (Raft §5.4.2), and
  // the leader shows a high watermark only from then on.
  Entry noop;
  noop.term = state_.term;
  noop.base = log_end_;
  noop.last = log_end_;
  noop.kind = EntryKind::noop;
  term_start_ = noop.base;
  append_local(std::move(noop));
}

void Core::rebuild_progress() {
  std::vector<Progress> next;
  auto add = [&](const Member& m) {
    if (m.id == options_.self.id) return;
    for (auto& p : progress_) {
      if (p.member.id == m.id) {
        Progress q = p;
        if (!(q.member == m)) {
          q.member = m;
          q.incarnation_ok = false;
        }
        next.push_back(q);
        return;
      }
    }
    Progress p;
    p.member = m;
    p.seen_incarnation = m.incarnation;
    p.next = log_end_;
    p.match_end = 0;
    next.push_back(p);
  };
  for (const auto& v : config().voters) add(v);
  for (const auto& l : config().learners) add(l);
  progress_ = std::move(next);
}

// ---- elections ---------------------------------------------------------------------------------

bool Core::log_up_to_date(Term last_term_of_candidate, Offset candidate_end) const {
  const Term mine = last_term();
  if (last_term_of_candidate != mine) return last_term_of_candidate > mine;
  return candidate_end >= log_end_;
}

void Core::on_vote_request(const Message& m, const VoteRequest& r) {
  if (r.pre_vote) {
    // Granted when the candidate's term is ahead and its log is at least as up to date (a
    // request of a higher term that arrives while a leader is heard from was refused in
    // step()); nothing here changes.
    const bool grant = m.term > state_.term && log_up_to_date(r.last_term, r.log_end);
    Message out;
    out.group = options_.group;
    out.term = grant ? m.term : state_.term;
    out.from = options_.self;
    out.to = m.from.id;
    out.body = VoteResponse{.granted = grant, .pre_vote = true};
    ready_.messages.push_back(std::move(out));
    return;
  }
  ORDO_ASSERT(m.term == state_.term);
  const bool free = state_.voted_for.id == kNoNode || state_.voted_for == m.from ||
                    (ORDO_RAFT_BUG(vote_twice) && role_ == Role::follower);
  const bool grant = free && role_ != Role::leader && log_up_to_date(r.last_term, r.log_end);
  if (grant) {
    state_.voted_for = m.from;
    persist_state();
    reset_election_timer();
  }
  send(m.from.id, VoteResponse{.granted = grant, .pre_vote = false});
}

void Core::on_vote_response(const Message& m, const VoteResponse& r) {
  const bool counts = config().is_voter(m.from);
  if (r.pre_vote) {
    if (role_ != Role::pre_candidate) return;
    if (!r.granted) {
      if (m.term > state_.term) become_follower(m.term, kNoNode);
      return;
    }
    if (m.term != state_.term + 1 || !counts) return;
  } else {
    if (role_ != Role::candidate || m.term != state_.term || !r.granted || !counts) return;
  }
  for (const auto& v : votes_) {
    if (v.id == m.from.id) return;
  }
  votes_.push_back(m.from);
  if (votes_.size() < config().quorum()) return;
  if (r.pre_vote) {
    become_candidate(false);
  } else {
    become_leader();
  }
}

void Core::on_timeout_now(const Message& m) {
  if (role_ == Role::leader || !self_is_voter() || m.from.id != leader_) return;
  become_candidate(true);
}

// ---- the follower side of replication ----------------------------------------------------------

void Core::on_heartbeat(const Message& m, const Heartbeat& h) {
  if (role_ != Role::follower || leader_ != m.from.id) {
    if (role_ == Role::leader) {
      ++dropped_;  // two leaders in one term: impossible unless a vote was broken
      return;
    }
    become_follower(state_.term, m.from.id);
  }
  ticks_since_leader_contact_ = 0;
  election_elapsed_ = 0;
  const Offset c = std::min(h.commit, verified_end_);
  if (c > commit_) set_commit(c);
  send(m.from.id, HeartbeatResponse{.match_end = std::min(durable_end_, verified_end_)});
}

void Core::on_append(const Message& m, const AppendRequest& r) {
  if (role_ != Role::follower || leader_ != m.from.id) {
    if (role_ == Role::leader) {
      ++dropped_;
      return;
    }
    become_follower(state_.term, m.from.id);
  }
  ticks_since_leader_contact_ = 0;
  election_elapsed_ = 0;

  // Validate the request as a whole before changing anything.
  Offset expect = r.prev_end;
  Term prev = r.prev_term;
  for (const auto& e : r.entries) {
    if (e.base != expect || e.last < e.base || e.term > m.term || e.term < prev ||
        (e.kind == EntryKind::config) != e.config.has_value() || (e.config && !e.config->valid())) {
      ++dropped_;
      return;
    }
    expect = e.end();
    prev = e.term;
  }
  if (r.prev_end < 0 || r.commit < 0) {
    ++dropped_;
    return;
  }

  auto reject = [&] {
    const Offset at = std::min(r.prev_end, log_end_);
    const Term t = term_at(at - 1);
    const Offset start = t == kNoTerm ? log_start_ : start_of_term(t).value_or(log_start_);
    send(m.from.id, AppendResponse{.success = false,
                                   .match_end = 0,
                                   .log_end = log_end_,
                                   .hint_term = t,
                                   .hint_start = start});
  };

  size_t first = 0;  // the first entry still to look at
  if (r.prev_end <= log_start_) {
    // At or below our log start everything is committed, hence in the leader's log too: it
    // matches. Skip what we no longer hold.
    while (first < r.entries.size() && r.entries[first].end() <= log_start_) ++first;
    if (first < r.entries.size() && r.entries[first].base < log_start_) {
      ++dropped_;  // a batch across our log start: cannot be matched by offsets; wait
      return;
    }
  } else if (r.prev_end > log_end_ && !r.reset) {
    reject();
    return;
  } else if (r.prev_end > log_end_ ||
             (term_at(r.prev_end - 1) != r.prev_term && !ORDO_RAFT_BUG(skip_log_matching))) {
    if (!r.reset) {
      reject();
      return;
    }
    // Behind the leader's log start: restart the log there.
    if (commit_ > r.prev_end || !r.start_config || !r.start_config->valid()) {
      ++dropped_;
      return;
    }
    reset_log(r.prev_end, r.prev_term);
    state_.configs.assign(1, ConfigAt{r.prev_end - 1, *r.start_config});
    state_.reset_start = r.prev_end;
    state_.reset_term = r.prev_term;
    persist_state();
  }

  // Matched at prev_end: append what is new, truncating at the first conflict.
  for (size_t i = first; i < r.entries.size(); ++i) {
    const Entry& e = r.entries[i];
    if (e.base < log_end_) {
      if (e.last < log_end_ && term_at(e.base) == e.term && term_at(e.last) == e.term) {
        continue;  // already held (same term at the same offsets: the same batch)
      }
      if (e.base < commit_) {
        ++dropped_;  // would remove a committed entry: refuse (a broken leader)
        return;
      }
      truncate_log(e.base);
    }
    log_append(e, true);
  }
  const Offset req_end =
      r.entries.empty() ? std::max(r.prev_end, log_start_) : r.entries.back().end();
  if (req_end > verified_end_) verified_end_ = std::min(req_end, log_end_);
  if (!ready_.entries.empty() || ready_.truncate_to || ready_.reset_to) note_write();
  const Offset c = std::min(r.commit, verified_end_);
  if (c > commit_) set_commit(c);
  send_ack(r.entries.empty());
}

void Core::send_ack(bool force) {
  if (role_ != Role::follower || leader_ == kNoNode) return;
  const Offset match = std::min(durable_end_, verified_end_);
  if (!force && match <= acked_end_) return;
  acked_end_ = std::max(acked_end_, match);
  send(leader_, AppendResponse{.success = true, .match_end = match, .log_end = log_end_});
}

// ---- the leader side of replication ------------------------------------------------------------

Core::Progress* Core::progress_of(NodeId id) {
  for (auto& p : progress_) {
    if (p.member.id == id) return &p;
  }
  return nullptr;
}

void Core::note_incarnation(Progress& p, const Member& from) {
  p.incarnation_ok = from == p.member;
  p.active = true;
  if (from.incarnation != p.seen_incarnation) {
    // Another incarnation answers (the node lost its disk): nothing it acknowledged before
    // is there any more.
    p.seen_incarnation = from.incarnation;
    p.match_end = 0;
    p.last_round_match = -1;
  }
}

void Core::on_append_response(const Message& m, const AppendResponse& r) {
  if (role_ != Role::leader) return;
  Progress* p = progress_of(m.from.id);
  if (p == nullptr) return;
  note_incarnation(*p, m.from);
  if (p->inflight > 0) --p->inflight;
  if (r.success) {
    if (r.match_end > log_end_ || r.match_end < 0) {
      ++dropped_;
      return;
    }
    if (r.match_end > p->match_end) p->match_end = r.match_end;
    if (p->next < p->match_end) p->next = p->match_end;
    p->replicating = true;
    maybe_commit();
    if (role_ != Role::leader) return;
    check_transfer();
    maybe_send_appends();
    return;
  }
  // Rejected: resume at the end of the follower's conflicting term in our log if we have that
  // term, else where the term starts in the follower's log (each answer moves strictly back).
  Offset next;
  if (r.hint_term == kNoTerm) {
    next = r.log_end;
  } else {
    next = end_of_term(r.hint_term).value_or(r.hint_start);
  }
  if (r.log_end < p->match_end) {
    // It acknowledged more than it holds now (its disk lost durable data): start over.
    ++lost_acks_;
    p->match_end = 0;
  }
  next = std::min({next, r.log_end, log_end_});
  next = std::max<Offset>({next, p->match_end, 0});
  p->next = next;
  p->replicating = false;
  p->inflight = 0;
  p->probe_wait = 0;
  send_append(*p);
}

void Core::on_heartbeat_response(const Message& m) {
  if (role_ != Role::leader) return;
  Progress* p = progress_of(m.from.id);
  if (p == nullptr) return;
  note_incarnation(*p, m.from);
  const auto& r = std::get<HeartbeatResponse>(m.body);
  // The follower's matched and durable prefix in this term: as good as an append's answer.
  if (r.match_end > p->match_end && r.match_end <= log_end_) {
    p->match_end = r.match_end;
    if (p->next < p->match_end) p->next = p->match_end;
    maybe_commit();
    if (role_ != Role::leader) return;
    check_transfer();
  }
}

void Core::broadcast_heartbeat() {
  for (auto& p : progress_) {
    send(p.member.id, Heartbeat{.commit = std::min(commit_, p.match_end)});
    // A follower that is behind and made no progress for two rounds lost a request or an
    // answer: go back to probing from what it has.
    if (p.match_end < log_end_ && p.match_end == p.last_round_match) {
      if (++p.stalled_rounds >= 2) {
        p.stalled_rounds = 0;
        p.replicating = false;
        p.inflight = 0;
        p.probe_wait = 0;
        p.next = p.match_end;
      }
    } else {
      p.stalled_rounds = 0;
    }
    p.last_round_match = p.match_end;
  }
  if (options_.preferred_leader && !transfer_to_ &&
      *options_.preferred_leader != options_.self.id &&
      config().is_voter_id(*options_.preferred_leader)) {
    Progress* p = progress_of(*options_.preferred_leader);
    if (p != nullptr && p->incarnation_ok && p->match_end == log_end_ && high_watermark()) {
      transfer_to_ = *options_.preferred_leader;
      transfer_elapsed_ = 0;
      check_transfer();
    }
  }
}

void Core::maybe_send_appends() {
  for (auto& p : progress_) {
    if (p.replicating) {
      while (p.next < log_end_ && p.inflight < options_.max_inflight) {
        const Offset before = p.next;
        send_append(p);
        if (p.next == before) break;  // nothing could be read now
      }
    } else if (p.probe_wait == 0 && (p.next < log_end_ || p.match_end < log_end_)) {
      send_append(p);
    }
  }
}

Result<std::vector<Entry>> Core::read_entries(Offset from, size_t max_bytes) {
  std::vector<Entry> out;
  if (from < storage_end_) {
    auto got = reader_->read(from, max_bytes);
    if (!got) return std::move(got).error();
    for (auto& e : *got) {
      if (e.base >= storage_end_) break;
      if (!out.empty() && e.base != out.back().end()) break;
      out.push_back(std::move(e));
    }
    if (out.empty() || out.front().base > from || out.back().end() <= from) {
      return make_error(Errc::corrupt, "the log reader answered no entry at {}", from);
    }
    size_t bytes = 0;
    for (const auto& e : out) bytes += e.size_bytes();
    if (out.back().end() != storage_end_ || bytes >= max_bytes) return out;
  }
  // Entries the driver has not written yet: this Ready's (noop, config).
  for (const auto& e : ready_.entries) {
    if (e.end() <= from) continue;
    if (!out.empty() && e.base != out.back().end()) break;
    out.push_back(e);
  }
  return out;
}

void Core::send_append(Progress& p) {
  AppendRequest r;
  r.commit = commit_;
  r.log_start = log_start_;
  if (p.next < log_start_) {
    // Behind our log start: the follower restarts its log from it.
    r.reset = true;
    r.prev_end = log_start_;
    r.prev_term = term_at(log_start_ - 1);
    r.start_config = state_.configs.front().config;
    p.next = log_start_;
  } else if (p.next >= log_end_) {
    r.prev_end = log_end_;
    r.prev_term = term_at(log_end_ - 1);
  } else {
    auto got = read_entries(p.next, options_.max_append_bytes);
    if (!got || got->empty()) return;  // retried on the next tick
    r.entries = std::move(*got);
    r.prev_end = r.entries.front().base;
    ORDO_ASSERT(r.prev_end >= log_start_);
    r.prev_term = term_at(r.prev_end - 1);
    p.next = r.entries.back().end();
  }
  if (p.replicating) {
    ++p.inflight;
  } else {
    // A probe resent after probe_wait replaces one that was lost: one in flight at a time.
    p.inflight = 1;
    p.probe_wait = options_.heartbeat_ticks;
  }
  send(p.member.id, std::move(r));
}

void Core::maybe_commit() {
  if (role_ != Role::leader) return;
  std::vector<Offset> matches;
  const Config& cfg = config();
  for (const auto& v : cfg.voters) {
    if (v == options_.self) {
      matches.push_back(ORDO_RAFT_BUG(commit_without_durable) ? log_end_ : durable_end_);
    } else if (v.id != options_.self.id) {
      const Progress* p = nullptr;
      for (const auto& q : progress_) {
        if (q.member.id == v.id) p = &q;
      }
      matches.push_back(p != nullptr && p->incarnation_ok && p->member == v ? p->match_end : 0);
    }
  }
  if (matches.size() < cfg.quorum()) return;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  Offset c = matches[cfg.quorum() - 1];
  if (c <= commit_) return;
  // Only an entry of the leader's own term commits by counting (Figure 8); earlier ones commit
  // with it.
  if (term_at(c - 1) != state_.term && !ORDO_RAFT_BUG(commit_by_counting)) return;
  set_commit(c);  // (may trim the configurations: `cfg` is not used after this)
  // A leader removed by a configuration that has now committed hands over by stepping down.
  if (!pending_config_change() && !config().is_voter(options_.self)) {
    become_follower(state_.term, kNoNode);
  }
}

void Core::check_transfer() {
  if (!transfer_to_) return;
  Progress* p = progress_of(*transfer_to_);
  if (p == nullptr) {
    transfer_to_.reset();
    return;
  }
  if (p->match_end == log_end_) {
    send(p->member.id, TimeoutNow{});
  } else if (p->next < log_end_) {
    maybe_send_appends();
  }
}

void Core::append_local(Entry entry) {
  ORDO_ASSERT(role_ == Role::leader);
  ORDO_ASSERT(entry.base == log_end_ && entry.term == state_.term);
  log_append(entry, true);
  note_write();
  maybe_send_appends();
  maybe_commit();
}

// ---- the log's shape ---------------------------------------------------------------------------

void Core::append_epoch(Term term, Offset start) {
  if (!epochs_.empty()) {
    ORDO_ASSERT(epochs_.back().term <= term);
    if (epochs_.back().term == term) return;
    ORDO_ASSERT(epochs_.back().start < start);
  }
  epochs_.push_back(EpochStart{term, start});
}

void Core::log_append(const Entry& e, bool to_ready) {
  ORDO_ASSERT(e.base == log_end_);
  ORDO_ASSERT(e.term <= state_.term);
  append_epoch(e.term, e.base);
  log_end_ = e.end();
  if (e.kind == EntryKind::config) {
    ORDO_ASSERT(e.config.has_value());
    state_.configs.push_back(ConfigAt{e.base, *e.config});
    persist_state();  // durable before the entry itself is written (the Ready's order)
    if (role_ == Role::leader) rebuild_progress();
  }
  if (to_ready) ready_.entries.push_back(e);
}

void Core::note_write() {
  if (ready_.write_seq == 0) {
    ready_.write_seq = next_write_seq_++;
    pending_writes_.push_back(PendingWrite{ready_.write_seq, log_end_});
  } else {
    ORDO_ASSERT(!pending_writes_.empty() && pending_writes_.back().seq == ready_.write_seq);
    pending_writes_.back().end = log_end_;
  }
}

void Core::truncate_log(Offset to) {
  ORDO_ASSERT_MSG(to >= commit_, "a committed entry is never truncated");
  ORDO_ASSERT(to >= log_start_ && to < log_end_);
  while (!epochs_.empty() && epochs_.back().start >= to) epochs_.pop_back();
  log_end_ = to;
  durable_end_ = std::min(durable_end_, to);
  verified_end_ = std::min(verified_end_, to);
  for (auto& w : pending_writes_) w.end = std::min(w.end, to);
  bool configs_changed = false;
  while (state_.configs.size() > 1 && state_.configs.back().offset >= to) {
    state_.configs.pop_back();
    configs_changed = true;
  }
  ORDO_ASSERT(state_.configs.back().offset < to);
  if (configs_changed) persist_state();
  // Entries of this Ready not yet written simply go; the storage truncates what it holds.
  while (!ready_.entries.empty() && ready_.entries.back().base >= to) ready_.entries.pop_back();
  ORDO_ASSERT(ready_.entries.empty() || ready_.entries.back().end() <= to);
  if (to < storage_end_) {
    ready_.truncate_to = ready_.truncate_to ? std::min(*ready_.truncate_to, to) : to;
    storage_end_ = to;
  }
  note_write();
}

void Core::reset_log(Offset start, Term term_before) {
  ORDO_ASSERT(role_ == Role::follower);
  ORDO_ASSERT(start >= commit_);
  log_start_ = start;
  log_end_ = start;
  durable_end_ = start;
  storage_end_ = start;
  commit_ = start;
  verified_end_ = start;
  epochs_.clear();
  if (term_before != kNoTerm && start > 0) epochs_.push_back(EpochStart{term_before, start - 1});
  for (auto& w : pending_writes_) w.end = std::min(w.end, start);
  ready_.entries.clear();
  ready_.truncate_to.reset();
  ready_.reset_to = start;
  ready_.reset_term = term_before;
  note_write();
}

void Core::set_commit(Offset c) {
  ORDO_ASSERT(c > commit_ && c <= log_end_);
  commit_ = c;
  trim_configs();
}

void Core::trim_configs() {
  // Keep the newest configuration whose entry is committed and durable here, and every later
  // one; older ones can never come back into force.
  const Offset safe = std::min(commit_, durable_end_);
  while (state_.configs.size() > 1 && state_.configs[1].offset < safe) {
    state_.configs.erase(state_.configs.begin());
  }
}

void Core::send(NodeId to, Body body) {
  Message m;
  m.group = options_.group;
  m.term = state_.term;
  m.from = options_.self;
  m.to = to;
  m.body = std::move(body);
  ready_.messages.push_back(std::move(m));
}

}  // namespace ordo::raft
