#include "cluster/raft_partitions.h"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <limits>
#include <random>
#include <set>

#include "base/assert.h"
#include "base/log.h"
#include "cluster/raft_storage.h"
#include "model/record_batch.h"
#include "raft/replica.h"

namespace ordo::cluster {

using model::TopicPartition;

namespace {

Error lost_leadership(const TopicPartition& tp) {
  return make_error(Errc::closed, "this node does not lead {}", tp.to_string());
}

Error stopped_error() {
  return make_error(Errc::closed, "the partitions are stopped");
}

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

// A quorum append waiting for its commit.
struct PendingAck {
  storage::AppendResult result;
  PartitionService::Callback<storage::AppendResult> done;
};

struct RaftPartitions::Shard {
  size_t index = 0;
  asio::io_context* ctx = nullptr;
  // Everything below on the shard's thread only.
  std::unique_ptr<asio::steady_timer> timer;
  raft::Batcher batcher;
  bool flush_posted = false;
  bool stopped = false;
  uint64_t ticks = 0;
  int64_t last_tick_ms = 0;
  // The last time the shard found it had not run for longer than a lease (SIGSTOP, a stall):
  // answers heard before resumed_ms + lease may have waited in socket buffers meanwhile and
  // do not count as contact.
  int64_t resumed_ms = std::numeric_limits<int64_t>::min() / 2;
  std::map<TopicPartition, std::unique_ptr<Group>> groups;
  std::unordered_map<raft::GroupId, Group*> by_id;

  Shard(size_t i, asio::io_context* c, NodeId self) : index(i), ctx(c), batcher(self) {}
  bool here() const { return ctx->get_executor().running_in_this_thread(); }
};

struct RaftPartitions::Group final : raft::Transport {
  RaftPartitions* owner = nullptr;
  Shard* shard = nullptr;
  TopicPartition tp;
  raft::GroupId id = 0;
  storage::PartitionLog* log = nullptr;
  std::unique_ptr<RaftLogStorage> storage;
  std::unique_ptr<raft::Replica> replica;
  std::multimap<raft::Offset, PendingAck> pending;  // by the batch's last offset
  raft::Term pending_term = raft::kNoTerm;          // the term they were appended in
  NodeId seen_leader = kNoLeader;
  raft::Term seen_term = raft::kNoTerm;
  struct Heard {
    int64_t at_ms = 0;
    raft::Term term = raft::kNoTerm;
  };
  // voter -> when it last answered this replica as leader (append, heartbeat, granted vote)
  std::map<NodeId, Heard> heard;
  raft::Term stalled_term = raft::kNoTerm;  // the term when the shard last found it had stalled
  std::shared_ptr<std::atomic<int64_t>> contact =
      std::make_shared<std::atomic<int64_t>>(std::numeric_limits<int64_t>::min());
  std::optional<PartitionView> view;
  bool in_after = false;
  bool after_again = false;

  void send(raft::Message m) override {
    shard->batcher.add(std::move(m));
    owner->schedule_flush(*shard);
  }
};

RaftPartitions::RaftPartitions(RaftPartitionsOptions o, const PartitionTable& table)
    : o_(std::move(o)), table_(table) {
  ORDO_ASSERT(o_.tick_ms >= 1);
  std::random_device rd;
  seed_base_ = mix((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(o_.self));
}

RaftPartitions::~RaftPartitions() {
  stop();
}

storage::HighWatermarkPolicy RaftPartitions::high_watermark_policy() {
  return [](const TopicPartition&, const storage::LogProgress&) -> std::optional<Offset> {
    return std::nullopt;  // the commit point moves it (after())
  };
}

void RaftPartitions::attach(storage::LogManager& logs) {
  ORDO_ASSERT_MSG(logs_ == nullptr, "RaftPartitions::attach twice");
  logs_ = &logs;
  for (size_t i = 0; i < logs.shard_count(); ++i) {
    shards_.push_back(std::make_shared<Shard>(i, &logs.shard_context(i), o_.self));
  }
  for (auto& s : shards_) {
    asio::post(*s->ctx, [this, s] {
      if (s->stopped) return;
      s->timer = std::make_unique<asio::steady_timer>(*s->ctx);
      s->last_tick_ms = now_ms();
      arm_tick(s);
    });
  }
}

RaftPartitions::ShardPtr RaftPartitions::shard_for(const TopicPartition& tp) const {
  return shards_[logs_->shard_of(tp)];
}

void RaftPartitions::on_shard(const ShardPtr& shard, std::function<void(bool)> fn) {
  if (shard->here()) return fn(!shard->stopped);
  asio::post(*shard->ctx, [shard, fn = std::move(fn)] { fn(!shard->stopped); });
}

void RaftPartitions::arm_tick(const ShardPtr& s) {
  s->timer->expires_after(std::chrono::milliseconds(o_.tick_ms));
  s->timer->async_wait([this, s](const asio::error_code& ec) {
    if (ec || s->stopped || !s->timer) return;
    on_tick(*s);
    arm_tick(s);
  });
}

int64_t RaftPartitions::now_ms() const {
  if (o_.now_ms) return o_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t RaftPartitions::note_stall(Shard& s) {
  // The tick runs every tick_ms: a gap longer than a lease means the shard (or the process:
  // SIGSTOP) did not run. Checked before each input, so that answers that waited in buffers
  // meanwhile are not taken for fresh contact.
  const int64_t now = now_ms();
  if (now - s.last_tick_ms > lease_ms()) {
    ORDO_LOG_WARN("raft partitions: shard {} did not run for {} ms: its leaders wait a lease",
                  s.index, now - s.last_tick_ms);
    s.resumed_ms = now;
    // Answers in a term that starts later cannot have waited: they answer what it sent since.
    for (auto& [tp, g] : s.groups) g->stalled_term = g->replica->core().term();
    s.last_tick_ms = now;
  }
  return now;
}

void RaftPartitions::on_tick(Shard& s) {
  ++s.ticks;
  s.last_tick_ms = note_stall(s);  // one reading: a stop after it shows as a gap next time
  std::vector<Group*> groups;
  groups.reserve(s.groups.size());
  for (auto& [tp, g] : s.groups) groups.push_back(g.get());
  for (Group* g : groups) {
    if (g->replica->failed()) continue;
    // Retention moved the log start on its own (the LogManager's tick, below the high
    // watermark): the core follows.
    const raft::Offset start = g->log->log_start_offset().value();
    if (start > g->replica->core().log_start() && start <= g->replica->core().commit()) {
      g->replica->on_log_start(start);
    }
    g->replica->tick();
    after(*g);
  }
}

void RaftPartitions::schedule_flush(Shard& s) {
  if (s.flush_posted) return;
  s.flush_posted = true;
  ShardPtr sp = shards_[s.index];
  asio::post(*s.ctx, [this, sp] {
    if (sp->stopped) return;
    sp->flush_posted = false;
    auto frames = sp->batcher.flush();
    if (!frames.empty() && o_.send) o_.send(std::move(frames));
  });
}

RaftPartitions::Group* RaftPartitions::find(Shard& s, const TopicPartition& tp) {
  auto it = s.groups.find(tp);
  return it == s.groups.end() ? nullptr : it->second.get();
}

// ---- groups -----------------------------------------------------------------------------------

void RaftPartitions::open_group(const TopicPartition& tp, raft::GroupId group, raft::Config initial,
                                Callback<void> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, group, initial = std::move(initial),
               done = std::move(done)](bool running) mutable {
    if (!running) return done(stopped_error());
    do_open(*s, tp, group, std::move(initial), std::move(done));
  });
}

void RaftPartitions::do_open(Shard& s, const TopicPartition& tp, raft::GroupId id,
                             raft::Config initial, Callback<void> done) {
  if (Group* g = find(s, tp)) {
    if (g->id == id) return done(ok());
    return done(make_error(Errc::already_exists, "{} is open as group {}", tp.to_string(), g->id));
  }
  if (s.by_id.count(id)) {
    return done(make_error(Errc::already_exists, "group {} is open for another partition", id));
  }
  // On the shard already: with_log runs inline.
  Result<storage::PartitionLog*> found = make_error(Errc::closed, "with_log did not answer");
  logs_->with_log(tp, [&found](Result<storage::PartitionLog*> l) { found = std::move(l); });
  if (!found) return done(found.error());
  storage::PartitionLog* log = *found;
  auto storage =
      RaftLogStorage::open(log, std::move(initial), *logs_->options().clock, o_.incarnation);
  if (!storage) return done(storage.error());
  auto g = std::make_unique<Group>();
  g->owner = this;
  g->shard = &s;
  g->tp = tp;
  g->id = id;
  g->log = log;
  g->storage = std::move(*storage);
  g->storage->set_sync_runner([logs = logs_, tp](std::function<void(Result<void>)> synced) {
    logs->flush(tp, std::move(synced));
  });
  raft::Options core = o_.core;
  if (o_.preferred_leaders) {
    auto snap = table_.snapshot();
    const PartitionAssignment* a = snap->find(tp);
    if (a != nullptr && !a->replicas.empty()) core.preferred_leader = a->replicas.front();
  }
  core.group = id;
  core.self = {o_.self, g->storage->incarnation()};
  core.seed = mix(seed_base_ ^ uint64_t(id));
  raft::ReplicaOptions ro;
  ro.write_caching = o_.write_caching;
  Group* gp = g.get();
  g->replica =
      std::make_unique<raft::Replica>(core, g->storage->restored(), g->storage.get(), gp, ro);
  g->replica->on_commit = [this, gp](raft::Offset) { after(*gp); };
  s.by_id[id] = gp;
  s.groups.emplace(tp, std::move(g));
  {
    std::lock_guard lk(mu_);
    group_shard_[id] = s.index;
  }
  after(*gp);
  done(ok());
}

void RaftPartitions::close_group(const TopicPartition& tp, Callback<void> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  // Always posted: never destroys a group under a caller on its own thread.
  asio::post(*s->ctx, [this, s, tp, done = std::move(done)] {
    if (s->stopped) return done(stopped_error());
    do_close(*s, tp);
    done(ok());
  });
}

void RaftPartitions::do_close(Shard& s, const TopicPartition& tp) {
  auto it = s.groups.find(tp);
  if (it == s.groups.end()) return;
  std::unique_ptr<Group> g = std::move(it->second);
  s.groups.erase(it);
  s.by_id.erase(g->id);
  {
    std::lock_guard lk(mu_);
    group_shard_.erase(g->id);
    views_.erase(tp);
  }
  g->replica.reset();
  auto pending = std::move(g->pending);
  for (auto& [offset, p] : pending) {
    p.done(make_error(Errc::closed, "{}: its replica closed", tp.to_string()));
  }
}

void RaftPartitions::stop() {
  if (stopped_.exchange(true)) return;
  if (logs_ == nullptr) return;
  ORDO_ASSERT_MSG(!logs_->on_shard_thread(), "RaftPartitions::stop() on a shard thread");
  for (auto& s : shards_) {
    std::promise<void> stopped;
    asio::post(*s->ctx, [this, s, &stopped] {
      s->stopped = true;
      s->timer.reset();
      std::vector<TopicPartition> tps;
      for (auto& [tp, g] : s->groups) tps.push_back(tp);
      for (auto& tp : tps) do_close(*s, tp);
      // The handlers queued before this one (a cancelled tick) have run when the second
      // post runs.
      asio::post(*s->ctx, [&stopped] { stopped.set_value(); });
    });
    stopped.get_future().wait();
  }
}

// ---- inputs -----------------------------------------------------------------------------------

void RaftPartitions::deliver(std::vector<raft::Message> messages) {
  if (stopped_ || logs_ == nullptr || messages.empty()) return;
  std::vector<std::vector<raft::Message>> by_shard(shards_.size());
  {
    std::lock_guard lk(mu_);
    for (auto& m : messages) {
      auto it = group_shard_.find(m.group);
      if (it == group_shard_.end()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      by_shard[it->second].push_back(std::move(m));
    }
  }
  for (size_t i = 0; i < by_shard.size(); ++i) {
    if (by_shard[i].empty()) continue;
    ShardPtr s = shards_[i];
    asio::post(*s->ctx, [this, s, msgs = std::move(by_shard[i])]() mutable {
      if (s->stopped) return;
      receive(*s, std::move(msgs));
    });
  }
}

void RaftPartitions::receive(Shard& s, std::vector<raft::Message> messages) {
  const int64_t now = note_stall(s);
  std::vector<Group*> touched;
  for (auto& m : messages) {
    auto it = s.by_id.find(m.group);
    if (it == s.by_id.end()) {  // closed meanwhile
      dropped_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    Group* g = it->second;
    g->replica->receive(m);
    // Contact for the leader lease and the ISR: an answer in this replica's current term from
    // the member the configuration names.
    const raft::Core& c = g->replica->core();
    const bool answer = std::holds_alternative<raft::AppendResponse>(m.body) ||
                        std::holds_alternative<raft::HeartbeatResponse>(m.body) ||
                        (std::holds_alternative<raft::VoteResponse>(m.body) &&
                         std::get<raft::VoteResponse>(m.body).granted &&
                         !std::get<raft::VoteResponse>(m.body).pre_vote);
    if (answer && m.term == c.term()) {
      const raft::Member* member = c.config().find(m.from.id);
      if (member != nullptr && *member == m.from) g->heard[m.from.id] = {now, m.term};
    }
    if (std::find(touched.begin(), touched.end(), g) == touched.end()) touched.push_back(g);
  }
  for (Group* g : touched) {
    // A callback of an earlier group may have closed this one (close_group posts, so not
    // within this handler: the pointers stay valid here).
    after(*g);
  }
}

void RaftPartitions::after(Group& g) {
  if (g.in_after) {
    g.after_again = true;
    return;
  }
  g.in_after = true;
  do {
    g.after_again = false;
    after_once(g);
  } while (g.after_again);
  g.in_after = false;
}

void RaftPartitions::after_once(Group& g) {
  const raft::Core& c = g.replica->core();
  const bool failed = g.replica->failed();
  const NodeId leader = failed ? kNoLeader : c.leader();
  const raft::Term term = c.term();
  const bool leading = !failed && c.is_leader();

  // 1. Leadership.
  if (leader != g.seen_leader || term != g.seen_term) {
    g.seen_leader = leader;
    g.seen_term = term;
    if (o_.on_leader) o_.on_leader(g.tp, leader, term);
  }
  if (!g.pending.empty() && (!leading || term != g.pending_term)) {
    auto pending = std::move(g.pending);
    g.pending.clear();
    Error e = failed ? make_error(Errc::closed, "{}: the replica stopped: {}", g.tp.to_string(),
                                  g.replica->failure()->message)
                     : lost_leadership(g.tp);
    for (auto& [offset, p] : pending) p.done(e);
  }

  // 2. The high watermark: the commit point (a leader's only once its term's no-op committed).
  if (!failed) {
    std::optional<raft::Offset> hw = leading ? c.high_watermark() : std::optional(c.commit());
    if (hw && *hw > g.log->high_watermark().value()) {
      g.log->set_high_watermark(Offset(*hw));
      if (o_.on_high_watermark) o_.on_high_watermark(g.tp);
    }
  }

  // 3. Quorum appends now committed.
  if (leading && !g.pending.empty()) {
    const raft::Offset commit = c.commit();
    std::vector<PendingAck> ready;
    while (!g.pending.empty() && g.pending.begin()->first < commit) {
      ready.push_back(std::move(g.pending.begin()->second));
      g.pending.erase(g.pending.begin());
    }
    for (auto& p : ready) {
      p.result.log_start_offset = g.log->log_start_offset();
      p.done(std::move(p.result));
    }
  }

  // 4. The leader lease, and the view others read.
  const int64_t now = now_ms();
  const int64_t contact = leading ? quorum_contact(g, now) : std::numeric_limits<int64_t>::min();
  g.contact->store(contact, std::memory_order_relaxed);
  PartitionView v;
  v.leader = leader;
  v.epoch = term;
  const raft::Config& config = c.config();
  for (const auto& m : config.voters) v.replicas.push_back(m.id);
  for (const auto& m : config.learners) v.replicas.push_back(m.id);
  std::sort(v.replicas.begin(), v.replicas.end());
  for (const auto& m : config.voters) {
    if (!leading || m.id == o_.self) {
      v.isr.push_back(m.id);
      continue;
    }
    auto it = g.heard.find(m.id);
    if (it != g.heard.end() && it->second.term == term &&
        fresh(g, it->second.term, it->second.at_ms) && now - it->second.at_ms <= lease_ms()) {
      v.isr.push_back(m.id);
    }
  }
  if (!g.view || *g.view != v) publish(g, v);
}

void RaftPartitions::publish(Group& g, const PartitionView& view) {
  g.view = view;
  std::lock_guard lk(mu_);
  views_[g.tp] = Published{view, g.contact};
}

bool RaftPartitions::fresh(const Group& g, raft::Term term, int64_t at_ms) const {
  return term > g.stalled_term || at_ms >= g.shard->resumed_ms + lease_ms();
}

int64_t RaftPartitions::quorum_contact(const Group& g, int64_t now) const {
  (void)now;
  const raft::Core& c = g.replica->core();
  if (g.replica->failed() || !c.is_leader()) return std::numeric_limits<int64_t>::min();
  const raft::Config& config = c.config();
  std::vector<int64_t> times;
  for (const auto& m : config.voters) {
    if (m.id == o_.self) {
      times.push_back(std::numeric_limits<int64_t>::max());
      continue;
    }
    auto it = g.heard.find(m.id);
    if (it == g.heard.end() || it->second.term != c.term()) continue;
    if (!fresh(g, it->second.term, it->second.at_ms)) continue;  // maybe it waited in a buffer
    times.push_back(it->second.at_ms);
  }
  const size_t quorum = config.quorum();
  if (times.size() < quorum) return std::numeric_limits<int64_t>::min();
  std::sort(times.begin(), times.end(), std::greater<>());
  return times[quorum - 1];
}

bool RaftPartitions::serves(const Group& g) const {
  const int64_t now = now_ms();
  return quorum_contact(g, now) >= now - lease_ms();
}

// ---- the seam ---------------------------------------------------------------------------------

std::optional<PartitionView> RaftPartitions::local_view(const TopicPartition& tp) const {
  std::lock_guard lk(mu_);
  auto it = views_.find(tp);
  if (it == views_.end()) return std::nullopt;
  return it->second.view;
}

std::optional<LeaderError> RaftPartitions::check_leader(const TopicPartition& tp,
                                                        int32_t current_leader_epoch) const {
  std::optional<PartitionView> view;
  int64_t contact = std::numeric_limits<int64_t>::min();
  {
    std::lock_guard lk(mu_);
    auto it = views_.find(tp);
    if (it != views_.end()) {
      view = it->second.view;
      contact = it->second.contact->load(std::memory_order_relaxed);
    }
  }
  if (!view) {
    auto snap = table_.snapshot();
    const PartitionAssignment* a = snap->find(tp);
    if (!a) return LeaderError{LeaderError::Code::unknown_topic_or_partition, kNoLeader, -1};
    return LeaderError{LeaderError::Code::not_leader_or_follower, a->leader, a->leader_epoch};
  }
  const int32_t epoch = view->leader == kNoLeader ? -1 : view->epoch;
  if (view->leader != o_.self) {
    return LeaderError{LeaderError::Code::not_leader_or_follower, view->leader, epoch};
  }
  if (contact < now_ms() - lease_ms()) {
    // A leader without a majority's answer for a lease (cut off, or it was stopped): another
    // may lead meanwhile. It does not know which.
    return LeaderError{LeaderError::Code::not_leader_or_follower, kNoLeader, -1};
  }
  if (current_leader_epoch >= 0 && current_leader_epoch != view->epoch) {
    return LeaderError{current_leader_epoch < view->epoch ? LeaderError::Code::fenced_leader_epoch
                                                          : LeaderError::Code::unknown_leader_epoch,
                       view->leader, view->epoch};
  }
  return std::nullopt;
}

void RaftPartitions::append(const TopicPartition& tp, std::span<uint8_t> batches,
                            Consistency consistency, storage::AppendOptions options,
                            Callback<storage::AppendResult> done) {
  // Replica::append takes shared bytes: one copy whichever thread this is.
  append(tp, std::vector<uint8_t>(batches.begin(), batches.end()), consistency, options,
         std::move(done));
}

void RaftPartitions::append(const TopicPartition& tp, std::vector<uint8_t> batches,
                            Consistency consistency, storage::AppendOptions options,
                            Callback<storage::AppendResult> done) {
  (void)options;  // the log checks CRCs again; offsets and the epoch are Raft's
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  if (s->here()) {
    if (s->stopped) return done(stopped_error());
    return do_append(*s, tp, std::move(batches), consistency, std::move(done));
  }
  asio::post(*s->ctx, [this, s, tp, batches = std::move(batches), consistency,
                       done = std::move(done)]() mutable {
    if (s->stopped) return done(stopped_error());
    do_append(*s, tp, std::move(batches), consistency, std::move(done));
  });
}

void RaftPartitions::do_append(Shard& s, const TopicPartition& tp, std::vector<uint8_t> bytes,
                               Consistency consistency, Callback<storage::AppendResult> done) {
  Group* g = find(s, tp);
  if (g == nullptr) {
    auto snap = table_.snapshot();
    if (snap->find(tp) == nullptr) {
      return done(make_error(Errc::not_found, "no partition {}", tp.to_string()));
    }
    return done(lost_leadership(tp));
  }
  if (g->replica->failed()) {
    return done(make_error(Errc::closed, "{}: the replica stopped: {}", tp.to_string(),
                           g->replica->failure()->message));
  }
  if (!serves(*g)) return done(lost_leadership(tp));

  // Split into batches, all checked before any is written.
  struct Piece {
    size_t pos, size;
    int32_t records;
    int64_t max_timestamp;
  };
  std::vector<Piece> pieces;
  size_t pos = 0;
  while (pos < bytes.size()) {
    auto view = model::RecordBatchView::parse(std::span<const uint8_t>(bytes).subspan(pos),
                                              size_t(g->log->config().max_batch_bytes));
    if (!view) {
      return done(make_error(Errc::corrupt, "{}: batch {}: {}", tp.to_string(), pieces.size(),
                             view.error().message));
    }
    pieces.push_back({pos, view->size_bytes(), view->record_count(), view->max_timestamp()});
    pos += view->size_bytes();
  }
  if (pieces.empty()) {
    return done(make_error(Errc::invalid_argument, "{}: an empty append", tp.to_string()));
  }

  storage::AppendResult result;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    raft::Payload payload =
        pieces.size() == 1 ? std::make_shared<const std::vector<uint8_t>>(std::move(bytes))
                           : std::make_shared<const std::vector<uint8_t>>(
                                 bytes.begin() + long(p.pos), bytes.begin() + long(p.pos + p.size));
    auto e = g->replica->append(std::move(payload), p.records);
    if (!e) {
      const Errc code = e.error().code;
      if (code == Errc::already_exists && pieces.size() == 1 && g->storage->last_duplicate()) {
        result = *g->storage->last_duplicate();  // an idempotent retry: the original's offsets
        break;
      }
      Error err = code == Errc::not_found || code == Errc::busy ? lost_leadership(tp)
                                                                : std::move(e).error();
      after(*g);
      return done(std::move(err));
    }
    if (i == 0) result.first_offset = Offset(e->base);
    result.last_offset = Offset(e->last);
    result.max_timestamp = std::max(result.max_timestamp, p.max_timestamp);
    ++result.batches;
  }
  result.log_start_offset = g->log->log_start_offset();
  const raft::Core& c = g->replica->core();
  if (consistency == Consistency::leader || c.commit() > result.last_offset.value()) {
    after(*g);
    return done(std::move(result));
  }
  g->pending.emplace(result.last_offset.value(), PendingAck{std::move(result), std::move(done)});
  g->pending_term = c.term();
  after(*g);
}

void RaftPartitions::read(const TopicPartition& tp, storage::ReadOptions options,
                          Callback<storage::ReadResult> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, options, done = std::move(done)](bool running) mutable {
    if (!running) return done(stopped_error());
    Group* g = find(*s, tp);
    if (g == nullptr) return done(make_error(Errc::not_found, "no replica of {}", tp.to_string()));
    // A leader that may have been replaced would show a high watermark behind the new one's.
    if (!serves(*g)) return done(lost_leadership(tp));
    logs_->read(tp, options, std::move(done));  // on the shard: inline
  });
}

void RaftPartitions::list_offset(const TopicPartition& tp, int64_t which,
                                 Callback<OffsetAnswer> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, which, done = std::move(done)](bool running) {
    if (!running) return done(stopped_error());
    Group* g = find(*s, tp);
    if (g == nullptr) return done(make_error(Errc::not_found, "no replica of {}", tp.to_string()));
    if (!serves(*g)) return done(lost_leadership(tp));
    done(answer_list_offset(*g->log, which, g->replica->core().term()));
  });
}

void RaftPartitions::delete_records(const TopicPartition& tp, int64_t before,
                                    Callback<Truncation> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, before, done = std::move(done)](bool running) {
    if (!running) return done(stopped_error());
    Group* g = find(*s, tp);
    if (g == nullptr) return done(make_error(Errc::not_found, "no replica of {}", tp.to_string()));
    if (!serves(*g)) return done(lost_leadership(tp));
    storage::PartitionLog& l = *g->log;
    Truncation out;
    const int64_t hw = l.high_watermark().value();
    const int64_t to = before == -1 ? hw : before;
    if (to < 0 || to > hw) {
      out.error = make_error(Errc::out_of_range, "offset {} is outside [0, {}]", to, hw);
    } else if (to > l.log_start_offset().value()) {
      g->replica->on_log_start(to);  // the storage moves the log start, then the core
      if (g->replica->failed()) out.error = *g->replica->failure();
      after(*g);
    }
    out.low_watermark = l.log_start_offset().value();
    done(std::move(out));
  });
}

std::vector<storage::PartitionStatus> RaftPartitions::status() {
  if (logs_ == nullptr) return {};
  return logs_->status();
}

void RaftPartitions::offset_for_leader_epoch(const TopicPartition& tp, int32_t current_epoch,
                                             int32_t epoch, Callback<EpochEnd> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, current_epoch, epoch, done = std::move(done)](bool running) {
    if (!running) return done(stopped_error());
    Group* g = find(*s, tp);
    if (g == nullptr) return done(make_error(Errc::not_found, "no replica of {}", tp.to_string()));
    const raft::Core& c = g->replica->core();
    if (!serves(*g)) return done(lost_leadership(tp));
    if (current_epoch >= 0 && current_epoch != c.term()) {
      return done(make_error(Errc::closed, "{}: leader epoch {}, asked with {}", tp.to_string(),
                             c.term(), current_epoch));
    }
    done(answer_epoch_end(*g->log, epoch));
  });
}

int32_t RaftPartitions::in_sync_replicas(const TopicPartition& tp) const {
  if (check_leader(tp)) return 0;
  std::lock_guard lk(mu_);
  auto it = views_.find(tp);
  return it == views_.end() ? 0 : int32_t(it->second.view.isr.size());
}

void RaftPartitions::elect_preferred(const TopicPartition& tp, Callback<Election> done) {
  if (stopped_ || logs_ == nullptr) return done(stopped_error());
  auto snap = table_.snapshot();
  const PartitionAssignment* a = snap->find(tp);
  if (a == nullptr || a->replicas.empty()) {
    return done(Election{Election::Code::unknown_topic_or_partition, "no such partition"});
  }
  const NodeId preferred = a->replicas.front();
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, preferred, done = std::move(done)](bool running) {
    if (!running) return done(stopped_error());
    Group* g = find(*s, tp);
    const NodeId leader = g && !g->replica->failed() ? g->replica->core().leader() : kNoLeader;
    if (leader == preferred) {
      return done(Election{Election::Code::election_not_needed,
                           fmt::format("broker {} (the preferred replica) leads it", preferred)});
    }
    if (g == nullptr || !serves(*g)) {
      return done(Election{
          Election::Code::not_leader_or_follower,
          leader == kNoLeader
              ? std::string("no leader known here")
              : fmt::format("broker {} leads it: it moves the leadership (and does so on its "
                            "own once broker {} has caught up)",
                            leader, preferred)});
    }
    const bool in_sync = g->view && std::find(g->view->isr.begin(), g->view->isr.end(),
                                              preferred) != g->view->isr.end();
    if (!in_sync) {
      return done(Election{Election::Code::preferred_leader_not_available,
                           fmt::format("broker {} is not in sync", preferred)});
    }
    auto r = g->replica->transfer_leadership(preferred);
    after(*g);
    if (!r && r.error().code != Errc::busy) {  // busy: a transfer is under way already
      return done(Election{Election::Code::preferred_leader_not_available, r.error().message});
    }
    done(Election{});
  });
}

void RaftPartitions::with_replica(const TopicPartition& tp,
                                  std::function<void(raft::Replica*)> fn) {
  if (stopped_ || logs_ == nullptr) return fn(nullptr);
  ShardPtr s = shard_for(tp);
  on_shard(s, [this, s, tp, fn = std::move(fn)](bool running) {
    Group* g = running ? find(*s, tp) : nullptr;
    fn(g ? g->replica.get() : nullptr);
    if (g) after(*g);
  });
}

}  // namespace ordo::cluster
