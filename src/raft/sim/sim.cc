#include "raft/sim/sim.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "base/random.h"
#include "raft/replica.h"
#include "raft/sim/checker.h"
#include "raft/sim/disk.h"
#include "raft/sim/network.h"

namespace ordo::raft::sim {

void SimStats::add(const SimStats& o) {
  sim_time += o.sim_time;
  events += o.events;
  messages += o.messages;
  messages_lost += o.messages_lost;
  messages_duplicated += o.messages_duplicated;
  crashes += o.crashes;
  unsynced_ops_lost += o.unsynced_ops_lost;
  torn_entries += o.torn_entries;
  disk_losses += o.disk_losses;
  partitions += o.partitions;
  clock_faults += o.clock_faults;
  storage_faults += o.storage_faults;
  leaders += o.leaders;
  transfers += o.transfers;
  config_proposals += o.config_proposals;
  appends += o.appends;
  acknowledged += o.acknowledged;
  committed_end += o.committed_end;
}

std::string SimStats::to_string() const {
  return fmt::format(
      "{:.1f} simulated s, {} events, {} messages ({} lost, {} duplicated), {} crashes "
      "({} unsynced writes lost, {} torn entries cut), {} disks lost, {} partitions, {} clock "
      "faults, {} storage faults, {} leaders, {} transfers, {} config changes, {} appends "
      "({} acknowledged), {} offsets committed",
      double(sim_time) / kSecond, events, messages, messages_lost, messages_duplicated, crashes,
      unsynced_ops_lost, torn_entries, disk_losses, partitions, clock_faults, storage_faults,
      leaders, transfers, config_proposals, appends, acknowledged, committed_end);
}

namespace {

constexpr GroupId kGroup = 7;
constexpr Time kTick = 10 * kMillis;  // the nominal tick interval
// Client appends awaiting their acknowledgement, per node: a producer's bounded in-flight
// requests. Unbounded, clients outrun a leader that replicates one entry per round trip.
constexpr size_t kMaxPending = 64;

// What one seed exercises (swarm testing: each seed enables a random subset of the faults,
// which finds more bugs than every fault at a low rate).
struct Params {
  int nodes = 3;
  int voters = 3;
  Time fault_time = 2 * kSecond;  // the faults stop then
  Time fault_gap_min = 5 * kMillis, fault_gap_max = 100 * kMillis;
  Time client_gap_min = 1 * kMillis, client_gap_max = 20 * kMillis;
  Time restart_max = 300 * kMillis;
  Time sync_min = 50, sync_max = 2 * kMillis;
  size_t max_payload = 64;
  double drift = 0.1;  // each node's tick interval is kTick * (1 +- drift)
  // 0: each replica draws its own; 1: one entry per AppendRequest (the windows of Figure 8).
  size_t max_append_bytes = 0;
  int max_inflight = 0;  // 0: each replica draws its own
  bool partitions = true, crashes = true, disk_loss = true, clock_faults = true, slow_disks = true,
       storage_faults = true, membership = true, transfers = true, elections = true;
  bool bootstrap = false;   // node 1 campaigns at once
  double commit_crash = 0;  // probability a leader crashes when its commit moves
  bool figure8 = false;     // the Figure 8 drill (draw_params)
  bool retention = false;   // the log start moves (followers behind it restart from it)
  // The replicas count writes durable before the sync (ReplicaOptions::write_caching): safe
  // only while crashes keep the page cache, so every crash of such a seed is a process crash.
  bool write_caching = false;
  bool pre_vote = true;  // the same on every replica, as a deployment sets it
  bool check_quorum = true;
  NetworkFaults net;
};

Params draw_params(Random& rng) {
  Params p;
  p.nodes = int(rng.between(3, 5));
  p.voters = p.nodes == 5 && rng.chance(0.3) ? 5 : 3;
  p.fault_time = rng.between(500 * kMillis, 3 * kSecond);
  p.fault_gap_min = rng.between(1, 20) * kMillis;
  p.fault_gap_max = p.fault_gap_min + rng.between(10, 200) * kMillis;
  p.client_gap_min = rng.between(1, 5) * kMillis;
  p.client_gap_max = p.client_gap_min + rng.between(1, 30) * kMillis;
  p.restart_max = rng.between(5, 500) * kMillis;
  p.sync_min = rng.between(10, 500);
  p.sync_max = p.sync_min + rng.between(0, 5 * kMillis);
  p.max_payload = size_t(rng.between(0, 200));
  p.drift = double(rng.below(40)) / 100;
  p.max_append_bytes = rng.chance(0.3) ? 1 : 0;
  p.max_inflight = rng.chance(0.3) ? 1 : 0;
  p.partitions = rng.chance(0.6);
  p.crashes = rng.chance(0.6);
  p.disk_loss = rng.chance(0.3);
  p.clock_faults = rng.chance(0.4);
  p.slow_disks = rng.chance(0.5);
  p.storage_faults = rng.chance(0.5);
  p.membership = rng.chance(0.5);
  p.transfers = rng.chance(0.4);
  p.elections = rng.chance(0.4);
  p.retention = rng.chance(0.3);
  p.write_caching = rng.chance(0.1);
  p.bootstrap = rng.chance(0.5);
  p.commit_crash = rng.chance(0.5) ? 0 : double(rng.below(10)) / 100;
  p.pre_vote = rng.chance(0.85);
  p.check_quorum = rng.chance(0.85);
  p.net.loss = rng.chance(0.5) ? 0 : double(rng.below(30)) / 100;
  p.net.duplicate = rng.chance(0.5) ? 0 : double(rng.below(20)) / 100;
  p.net.slow = rng.chance(0.5) ? 0 : double(rng.below(30)) / 100;
  p.net.min_delay = rng.between(10, 500);
  p.net.max_delay = p.net.min_delay + rng.between(0, 10 * kMillis);
  p.net.slow_delay = rng.between(1, 200) * kMillis;
  if (rng.chance(0.25)) {
    // Figure 8 drills: leaders alternate between the two sides of a bridge partition, each
    // leaving an uncommitted tail, while entries travel one per request; leaders crash as
    // their commit moves.
    p.figure8 = true;
    p.partitions = p.elections = p.crashes = true;
    p.check_quorum = false;
    p.max_append_bytes = 1;
    p.commit_crash = double(rng.between(1, 10)) / 100;
    if (rng.chance(0.5)) p.nodes = p.voters = 5;
  }
  return p;
}

std::string fmt_time(Time t) {
  return fmt::format("{}.{:06}", t / kSecond, t % kSecond);
}

std::string describe_message(const Message& m) {
  std::string out = fmt::format("{}->{} t{} {}", m.from.id, m.to, m.term, body_name(m.body));
  std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, VoteRequest>) {
          out += fmt::format(" last_term {} log_end {}{}{}", b.last_term, b.log_end,
                             b.pre_vote ? " pre" : "", b.transfer ? " transfer" : "");
        } else if constexpr (std::is_same_v<T, VoteResponse>) {
          out += fmt::format(" {}{}", b.granted ? "granted" : "refused", b.pre_vote ? " pre" : "");
        } else if constexpr (std::is_same_v<T, AppendRequest>) {
          out += fmt::format(" prev {}@{} commit {} start {}{} entries {}", b.prev_end, b.prev_term,
                             b.commit, b.log_start, b.reset ? " reset" : "", b.entries.size());
          if (!b.entries.empty()) {
            out += fmt::format(" [{}..{}]", b.entries.front().base, b.entries.back().last);
          }
        } else if constexpr (std::is_same_v<T, AppendResponse>) {
          out += fmt::format(" {} match {} log_end {} hint {}@{}", b.success ? "ok" : "refused",
                             b.match_end, b.log_end, b.hint_term, b.hint_start);
        } else if constexpr (std::is_same_v<T, Heartbeat>) {
          out += fmt::format(" commit {}", b.commit);
        }
      },
      m.body);
  return out;
}

class Sim;

// A storage fault armed on a node: its next operation of that kind crashes the process.
enum class Arm : uint8_t { none, save_state, write, sync, after_vote, io_error, read_corrupt };

struct Pending {
  Entry entry;
  Time issued = 0;
};

struct Node {
  NodeId id = kNoNode;
  std::unique_ptr<SimDisk> disk;
  std::unique_ptr<Storage> storage;
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Replica> replica;
  bool up = false;
  uint64_t life = 0;        // increments at each start: stale callbacks check it
  uint64_t down_token = 0;  // increments at each crash: a stale restart event checks it
  Time tick_interval = kTick;
  Time stall_until = 0;
  Time slow_disk_until = 0;
  Time last_sync_done = 0;
  bool crash_now = false;  // set inside a replica call; the crash happens after the event
  bool power_loss = true;  // the crash loses unsynced writes (false: only the process died)
  bool quick_restart = false;
  std::string crash_reason;
  Arm arm = Arm::none;
  Offset verified = 0;  // the committed prefix up to here was compared with the reference
  std::vector<Pending> pending;
  Role last_role = Role::follower;
  Term last_term = 0;
  Offset last_commit = 0;
  Offset sent_commit = 0;  // the highest commit this process life has sent

  Member member() const { return Member{id, disk->incarnation()}; }
  // Takes input: running, not crashing, not failed.
  bool usable() const { return up && !crash_now && replica && !replica->failed(); }
};

class SimStorage final : public Storage {
 public:
  SimStorage(Sim* sim, Node* node) : sim_(sim), node_(node) {}
  Result<std::vector<Entry>> read(Offset from, size_t max_bytes) override;
  Result<void> save_state(const HardState& state) override;
  Result<void> reset(Offset start, Term term_before) override;
  Result<void> truncate(Offset end) override;
  Result<void> advance_log_start(Offset start) override;
  Result<void> append(std::span<const Entry> entries) override;
  Result<Entry> append_leader(Term term, Payload payload, int32_t records) override;
  void sync(std::function<void(Result<void>)> done) override;

 private:
  // Fails the operation when the process is dead or an armed fault fires on it.
  std::optional<Error> fault(Arm kind);
  Sim* sim_;
  Node* node_;
};

class SimTransport final : public Transport {
 public:
  SimTransport(Sim* sim, Node* node) : sim_(sim), node_(node) {}
  void send(Message message) override;

 private:
  Sim* sim_;
  Node* node_;
};

class Sim {
 public:
  explicit Sim(const SimOptions& options)
      : options_(options), rng_(options.seed), params_(draw_params(rng_)), net_(params_.nodes) {
    net_.faults() = params_.net;
  }

  SimResult run();

  // ---- used by SimStorage / SimTransport ----
  EventLoop& loop() { return loop_; }
  Random& rng() { return rng_; }
  Checker& checker() { return checker_; }
  SimStats& stats() { return stats_; }
  Time sync_latency(const Node& node) {
    if (node.slow_disk_until > loop_.now()) return rng_.between(20 * kMillis, 200 * kMillis);
    return rng_.between(params_.sync_min, params_.sync_max);
  }
  void send(Node& from, Message message);
  void request_crash(Node& node, std::string reason, bool power_loss) {
    if (node.crash_now) return;
    node.crash_now = true;
    node.power_loss = power_loss;
    node.crash_reason = std::move(reason);
  }
  template <typename... Args>
  void trace(int level, fmt::format_string<Args...> f, Args&&... args) {
    if (options_.verbose < level) return;
    fmt::print(options_.out, "{} {}\n", fmt_time(loop_.now()),
               fmt::format(f, std::forward<Args>(args)...));
  }

 private:
  Node& node(NodeId id) { return *nodes_[size_t(id - 1)]; }
  HardState fresh_state() const {
    HardState s;
    s.configs.push_back(ConfigAt{-1, initial_});
    return s;
  }
  void start_node(Node& n);
  void crash_node(Node& n, const std::string& reason, bool power_loss);
  void schedule_restart(Node& n, Time delay);
  void lose_disk(Node& n);
  void deliver(const Message& m);
  void tick(NodeId id);
  void client();
  void fault();
  void partition();
  void membership();
  void heal();
  void after_event();
  void observe(Node& n);
  void verify(Node& n);
  Node* leader();
  bool stale_anywhere(size_t* min_voters);
  std::string describe_nodes();

  SimOptions options_;
  Random rng_;
  Params params_;
  EventLoop loop_;
  SimNetwork net_;
  Checker checker_;
  SimStats stats_;
  Config initial_;
  std::vector<ConfigAt> initial_configs_;
  std::vector<std::unique_ptr<Node>> nodes_;
  uint64_t client_counter_ = 0;
  uint64_t partition_gen_ = 0;
  bool healed_ = false;
  Time heal_time_ = 0;
  std::optional<Time> live_at_;  // when an append issued after the heal was acknowledged
};

// ---- storage ----------------------------------------------------------------------------

std::optional<Error> SimStorage::fault(Arm kind) {
  if (node_->crash_now) return make_error(Errc::io, "simulated crash: the process is dead");
  if (node_->arm != kind) return std::nullopt;
  node_->arm = Arm::none;
  sim_->stats().storage_faults++;
  if (kind == Arm::io_error) {
    // The device reports an error: the replica stops and restarts (the page cache may or may
    // not have kept what was written: a power-loss restart).
    sim_->trace(1, "node {}: storage reports an I/O error", node_->id);
    return make_error(Errc::io, "simulated I/O error");
  }
  const char* what = kind == Arm::save_state ? "saving its state"
                     : kind == Arm::write    ? "writing its log"
                                             : "syncing";
  sim_->request_crash(*node_, fmt::format("crashed while {}", what), true);
  return make_error(Errc::io, "simulated crash while {}", what);
}

Result<std::vector<Entry>> SimStorage::read(Offset from, size_t max_bytes) {
  if (node_->crash_now) return make_error(Errc::io, "simulated crash: the process is dead");
  if (node_->arm == Arm::read_corrupt) {
    node_->arm = Arm::none;
    sim_->stats().storage_faults++;
    // A read whose checksum fails: the replica restarts as after a crash (its durable log is
    // intact: the corruption was in the read path).
    sim_->trace(1, "node {}: read at {} fails its checksum", node_->id, from);
    sim_->request_crash(*node_, "a read failed its checksum", false);
    return make_error(Errc::corrupt, "simulated checksum failure reading offset {}", from);
  }
  return node_->disk->read(from, max_bytes);
}

Result<void> SimStorage::save_state(const HardState& state) {
  if (auto e = fault(Arm::save_state)) return *e;
  if (auto e = fault(Arm::io_error)) return *e;
  node_->disk->save_state(state);
  return {};
}

Result<void> SimStorage::reset(Offset start, Term term_before) {
  if (auto e = fault(Arm::write)) return *e;
  node_->disk->reset(start, term_before);
  node_->verified = std::min(node_->verified, start);
  sim_->trace(1, "node {}: log reset to start {} (term before {})", node_->id, start, term_before);
  return {};
}

Result<void> SimStorage::truncate(Offset end) {
  if (auto e = fault(Arm::write)) return *e;
  const DiskLog& w = node_->disk->written();
  if (end < w.start || end > w.end()) {
    sim_->checker().fail(fmt::format("node {} truncates its log to {} outside [{}, {}]", node_->id,
                                     end, w.start, w.end()));
    return make_error(Errc::out_of_range, "truncate outside the log");
  }
  size_t i = w.index_of(end);
  if (i < w.entries.size() && w.entries[i].entry.base != end) {
    sim_->checker().fail(fmt::format("node {} truncates its log to {}, inside batch {}", node_->id,
                                     end, describe(w.entries[i].entry)));
    return make_error(Errc::invalid_argument, "truncate inside a batch");
  }
  if (end < node_->last_commit) {
    sim_->checker().fail(fmt::format(
        "node {} truncates its log to {} below its commit {}: a reader saw records disappear",
        node_->id, end, node_->last_commit));
  }
  if (end < w.end()) sim_->trace(1, "node {}: log truncated to {}", node_->id, end);
  node_->disk->truncate(end);
  node_->verified = std::min(node_->verified, end);
  return {};
}

Result<void> SimStorage::advance_log_start(Offset start) {
  if (auto e = fault(Arm::write)) return *e;
  const DiskLog& w = node_->disk->written();
  size_t i = w.index_of(start);
  if (start < w.start || start > w.end() ||
      (i < w.entries.size() && w.entries[i].entry.base != start)) {
    sim_->checker().fail(
        fmt::format("node {} moves its log start to {}: not a batch boundary "
                    "of [{}, {})",
                    node_->id, start, w.start, w.end()));
    return make_error(Errc::invalid_argument, "bad log start");
  }
  node_->disk->advance_start(start);
  return {};
}

Result<void> SimStorage::append(std::span<const Entry> entries) {
  if (auto e = fault(Arm::io_error)) return *e;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    Offset end = node_->disk->written().end();
    if (e.base != end || e.last < e.base || e.term == kNoTerm ||
        (e.kind == EntryKind::config) != e.config.has_value()) {
      sim_->checker().fail(
          fmt::format("node {} appends {} at log end {}: malformed or not "
                      "contiguous",
                      node_->id, describe(e), end));
      return make_error(Errc::invalid_argument, "bad append");
    }
    if (node_->arm == Arm::write && i > 0 && sim_->rng().chance(0.5)) {
      // The crash hits in the middle of the batch: the first entries are written.
      return *fault(Arm::write);
    }
    if (auto err = fault(Arm::write)) return *err;
    node_->disk->append(e);
  }
  return {};
}

Result<Entry> SimStorage::append_leader(Term term, Payload payload, int32_t records) {
  if (auto e = fault(Arm::write)) return *e;
  if (auto e = fault(Arm::io_error)) return *e;
  if (records < 1) return make_error(Errc::invalid_argument, "no records");
  Entry entry;
  entry.term = term;
  entry.base = node_->disk->written().end();
  entry.last = entry.base + records - 1;
  entry.kind = EntryKind::data;
  entry.payload = std::move(payload);
  node_->disk->append(entry);
  return entry;
}

void SimStorage::sync(std::function<void(Result<void>)> done) {
  if (fault(Arm::sync)) return;  // the process died: the sync never completes
  Node* n = node_;
  uint64_t target = n->disk->ops_written();
  Time at = std::max(sim_->loop().now() + sim_->sync_latency(*n), n->last_sync_done);
  n->last_sync_done = at;
  uint64_t life = n->life;
  Sim* sim = sim_;
  sim_->loop().at(at, [sim, n, life, target, done = std::move(done)] {
    if (!n->up || n->life != life || n->crash_now) return;
    n->disk->make_durable(target);
    if (n->arm == Arm::io_error && sim->rng().chance(0.5)) {
      n->arm = Arm::none;
      sim->stats().storage_faults++;
      sim->trace(1, "node {}: sync reports an I/O error", n->id);
      done(make_error(Errc::io, "simulated sync error"));
      return;
    }
    done(Result<void>());
  });
}

// ---- network ----------------------------------------------------------------------------

void SimTransport::send(Message message) {
  sim_->send(*node_, std::move(message));
}

void Sim::send(Node& from, Message m) {
  if (!from.up || from.crash_now) return;  // a dead process sends nothing
  if (m.group != kGroup || m.from != from.member() || m.to < 1 || m.to > params_.nodes ||
      m.to == from.id) {
    checker_.fail(
        fmt::format("node {} sends a malformed message: {}", from.id, describe_message(m)));
    return;
  }
  Offset commit = -1;
  if (auto* r = std::get_if<AppendRequest>(&m.body)) commit = r->commit;
  if (auto* h = std::get_if<Heartbeat>(&m.body)) commit = h->commit;
  if (commit > from.sent_commit) {
    from.sent_commit = commit;
    // A crash point: the leader decided a new commit and dies before telling anyone (what it
    // counted must survive it; the window of Figure 8).
    if (params_.crashes && !healed_ && rng_.chance(params_.commit_crash)) {
      if (rng_.chance(0.5)) {
        request_crash(from, fmt::format("crashed before sending its new commit {}", commit),
                      rng_.chance(0.8));
        return;
      }
      // Or right after this one message leaves: one follower learns the commit, the others
      // may not even have the entries of the leader's term.
      request_crash(from,
                    fmt::format("crashed after sending its new commit {} to {}", commit, m.to),
                    rng_.chance(0.8));
    }
  }
  stats_.messages++;
  if (options_.verbose >= 2) trace(2, "send {}", describe_message(m));
  bool vote = false;
  if (auto* r = std::get_if<VoteResponse>(&m.body)) vote = r->granted && !r->pre_vote;
  std::vector<Time> delays = net_.plan(from.id, m.to, rng_);
  for (size_t i = 0; i < delays.size(); ++i) {
    if (i + 1 == delays.size()) {
      loop_.after(delays[i], [this, m = std::move(m)] { deliver(m); });
    } else {
      loop_.after(delays[i], [this, m] { deliver(m); });
    }
  }
  if (vote && from.arm == Arm::after_vote) {
    from.arm = Arm::none;
    stats_.storage_faults++;
    request_crash(from, "crashed right after granting a vote", true);
    from.quick_restart = true;
  }
}

void Sim::deliver(const Message& m) {
  Node& to = node(m.to);
  if (!to.usable() || net_.is_cut(m.from.id, m.to)) return;
  if (options_.verbose >= 2) trace(2, "recv {}", describe_message(m));
  to.replica->receive(m);
}

// ---- nodes ------------------------------------------------------------------------------

void Sim::start_node(Node& n) {
  ORDO_ASSERT(!n.up);
  SimDisk::Recovery rec = n.disk->recover(fresh_state());
  stats_.torn_entries += uint64_t(rec.torn_entries);
  if (!rec.problem.empty()) {
    checker_.fail(fmt::format("node {}'s recovered log is broken: {}", n.id, rec.problem));
    return;
  }
  n.life++;
  n.up = true;
  n.crash_now = false;
  n.arm = Arm::none;
  n.pending.clear();
  n.verified = rec.restored.log_start;
  n.last_commit = 0;
  n.sent_commit = 0;
  n.last_sync_done = loop_.now();
  Options o;
  o.group = kGroup;
  o.self = n.member();
  o.election_ticks = 10;
  o.heartbeat_ticks = 2;
  o.max_append_bytes = size_t(rng_.between(64, 4096));
  if (params_.max_append_bytes) o.max_append_bytes = params_.max_append_bytes;
  o.max_inflight = params_.max_inflight ? params_.max_inflight : int(rng_.between(1, 8));
  o.pre_vote = params_.pre_vote;
  o.check_quorum = params_.check_quorum;
  if (rng_.chance(0.2)) o.preferred_leader = NodeId(rng_.between(1, params_.nodes));
  o.seed = rng_.next();
  trace(1, "node {}: starts (life {}, incarnation {:x}): term {} vote {} log [{}, {}) {}{}", n.id,
        n.life, n.disk->incarnation() & 0xffff, rec.restored.state.term,
        rec.restored.state.voted_for.id, rec.restored.log_start, rec.restored.log_end,
        rec.restored.state.configs.back().config.to_string(),
        rec.torn_entries ? fmt::format(", {} torn entries cut", rec.torn_entries) : "");
  ReplicaOptions ro;
  ro.write_caching = params_.write_caching;
  n.replica = std::make_unique<Replica>(o, rec.restored, n.storage.get(), n.transport.get(), ro);
  Node* np = &n;
  uint64_t life = n.life;
  n.replica->on_commit = [this, np, life](Offset commit) {
    if (np->life != life) return;
    checker_.commit_reported(np->id, life, commit);
    np->last_commit = std::max(np->last_commit, commit);
  };
  n.last_role = n.replica->core().role();
  n.last_term = n.replica->core().term();
}

void Sim::crash_node(Node& n, const std::string& reason, bool power_loss) {
  if (!n.up) return;
  if (params_.write_caching) power_loss = false;
  n.replica.reset();
  n.up = false;
  n.crash_now = false;
  n.arm = Arm::none;
  n.pending.clear();
  n.down_token++;
  stats_.crashes++;
  size_t lost = 0;
  if (power_loss) {
    lost = n.disk->crash(rng_, rng_.chance(0.5));
  } else {
    // Only the process died: the operating system keeps (and eventually writes) everything.
    n.disk->make_durable(n.disk->ops_written());
  }
  stats_.unsynced_ops_lost += lost;
  trace(1, "node {}: {} ({}{})", n.id, reason, power_loss ? "power loss" : "process only",
        power_loss ? fmt::format(", {} unsynced writes lost", lost) : "");
}

void Sim::schedule_restart(Node& n, Time delay) {
  uint64_t token = n.down_token;
  Node* np = &n;
  loop_.after(delay, [this, np, token] {
    if (np->up || np->down_token != token) return;
    start_node(*np);
  });
}

void Sim::lose_disk(Node& n) {
  crash_node(n, "loses its disk", true);
  uint64_t incarnation = rng_.next() | 1;
  n.disk = std::make_unique<SimDisk>(incarnation);
  n.verified = 0;
  stats_.disk_losses++;
  trace(1, "node {}: new disk, incarnation {:x}", n.id, incarnation & 0xffff);
}

void Sim::tick(NodeId id) {
  Node& n = node(id);
  if (n.usable() && loop_.now() >= n.stall_until) n.replica->tick();
  loop_.after(n.tick_interval, [this, id] { tick(id); });
}

Node* Sim::leader() {
  Node* best = nullptr;
  for (auto& n : nodes_) {
    if (n->usable() && n->replica->core().is_leader() &&
        (best == nullptr || n->replica->core().term() > best->replica->core().term())) {
      best = n.get();
    }
  }
  return best;
}

// ---- clients ----------------------------------------------------------------------------

void Sim::client() {
  loop_.after(rng_.between(params_.client_gap_min, params_.client_gap_max), [this] { client(); });
  Node* target = leader();
  if (target == nullptr || rng_.chance(0.1)) target = &node(NodeId(rng_.between(1, params_.nodes)));
  if (!target->usable() || target->pending.size() >= kMaxPending) return;
  const Core& core = target->replica->core();
  Term term = core.term();
  // Unique bytes: the node, its term and a counter, then filler.
  std::string tag = fmt::format("n{}t{}c{} ", target->id, term, ++client_counter_);
  auto bytes = std::make_shared<std::vector<uint8_t>>(tag.begin(), tag.end());
  size_t filler = size_t(rng_.below(params_.max_payload + 1));
  for (size_t i = 0; i < filler; ++i) bytes->push_back(uint8_t(rng_.next()));
  int32_t records = int32_t(rng_.between(1, 3));
  bool could = core.can_append();
  Result<Entry> r = target->replica->append(std::move(bytes), records);
  if (!r) {
    if (could && r.error().code != Errc::io && r.error().code != Errc::corrupt) {
      checker_.fail(fmt::format("node {} refused an append although can_append(): {}", target->id,
                                r.error().to_string()));
    }
    return;
  }
  if (!could) {
    checker_.fail(fmt::format("node {} accepted an append although !can_append()", target->id));
  }
  if (r->term != term || r->last - r->base + 1 != records) {
    checker_.fail(fmt::format("node {} in term {} appended {}", target->id, term, describe(*r)));
  }
  stats_.appends++;
  trace(1, "node {}: client append {}", target->id, describe(*r));
  if (target->usable()) target->pending.push_back(Pending{*r, loop_.now()});
}

// ---- faults -----------------------------------------------------------------------------

bool Sim::stale_anywhere(size_t* min_voters) {
  *min_voters = SIZE_MAX;
  const Config* latest = nullptr;
  for (auto& n : nodes_) {
    // A node down without a saved state starts with the initial configuration.
    const std::vector<ConfigAt>* configs = &initial_configs_;
    if (n->up && n->replica) {
      configs = &n->replica->core().hard_state().configs;
    } else if (n->disk->state()) {
      configs = &n->disk->state()->configs;
    }
    // A configuration change in flight (not every node has the same latest configuration)
    // counts as stale: see docs/replication-sim.md on lost disks.
    if (latest != nullptr && configs->back().config != *latest) return true;
    latest = &configs->back().config;
    for (const auto& c : *configs) {
      *min_voters = std::min(*min_voters, c.config.voters.size());
      for (const auto* members : {&c.config.voters, &c.config.learners}) {
        for (const auto& m : *members) {
          if (m.id < 1 || m.id > params_.nodes) return true;
          if (node(m.id).disk->incarnation() != m.incarnation) return true;
        }
      }
    }
  }
  return false;
}

void Sim::partition() {
  net_.heal_all();
  stats_.partitions++;
  int n = params_.nodes;
  std::vector<int> side(size_t(n + 1), 0);
  Node* l = leader();
  const char* kind = "";
  switch (params_.figure8 ? 3 : rng_.below(5)) {
    case 0:  // symmetric: a random split
      kind = "symmetric";
      for (int i = 1; i <= n; ++i) side[i] = int(rng_.below(2));
      net_.split(side);
      break;
    case 1: {  // one-way: some links carry nothing in one direction
      kind = "one-way";
      int links = int(rng_.between(1, n));
      for (int i = 0; i < links; ++i) {
        NodeId a = NodeId(rng_.between(1, n)), b = NodeId(rng_.between(1, n));
        if (a != b) net_.cut(a, b);
      }
      break;
    }
    case 2:  // the leader (or any node) isolated
      kind = "leader isolated";
      net_.isolate(l ? l->id : NodeId(rng_.between(1, n)));
      break;
    case 3: {  // a bridge: two sides that only one node reaches both of
      kind = "bridge";
      NodeId bridge = NodeId(rng_.between(1, n));
      for (int i = 1; i <= n; ++i) side[i] = int(rng_.below(2));
      for (int a = 1; a <= n; ++a) {
        for (int b = 1; b <= n; ++b) {
          if (a != bridge && b != bridge && side[a] != side[b]) net_.cut(a, b);
        }
      }
      break;
    }
    default: {  // majority / minority, the leader on either side
      kind = "majority/minority";
      std::vector<NodeId> ids;
      for (int i = 1; i <= n; ++i) ids.push_back(i);
      for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng_.below(i)]);
      size_t minority = size_t((n - 1) / 2);
      for (size_t i = 0; i < ids.size(); ++i) side[ids[i]] = i < minority ? 1 : 0;
      if (l && rng_.chance(0.5)) std::swap(side[l->id], side[ids.back()]);  // leader on either side
      net_.split(side);
      break;
    }
  }
  uint64_t gen = ++partition_gen_;
  Time lasts = rng_.between(params_.figure8 ? 300 * kMillis : 20 * kMillis, 1 * kSecond);
  trace(1, "partition ({}) for {} ms: cut {}", kind, lasts / kMillis, net_.describe_cuts());
  loop_.after(lasts, [this, gen] {
    if (gen != partition_gen_ || healed_) return;
    net_.heal_all();
    trace(1, "partition healed");
  });
}

void Sim::fault() {
  if (healed_) return;
  loop_.after(rng_.between(params_.fault_gap_min, params_.fault_gap_max), [this] { fault(); });
  Node& n = node(NodeId(rng_.between(1, params_.nodes)));
  Node* l = leader();
  switch (rng_.below(11)) {
    case 0:
      if (params_.partitions) partition();
      break;
    case 1:
    case 2: {
      if (!params_.crashes) break;
      // A crash, preferring the leader or a node with unsynced writes.
      Node* victim = &n;
      if (l && rng_.chance(0.3)) victim = l;
      if (rng_.chance(0.3)) {
        for (auto& m : nodes_) {
          if (m->up && m->disk->has_unsynced()) victim = m.get();
        }
      }
      if (!victim->up) break;
      crash_node(*victim, "crashes", rng_.chance(0.8));
      schedule_restart(*victim, rng_.between(1 * kMillis, params_.restart_max));
      break;
    }
    case 3: {
      if (!params_.disk_loss) break;
      size_t min_voters = 0;
      // One lost disk at a time, and only while every configuration keeps a quorum without
      // it: the new incarnation is not a voter until the membership loop re-adds it.
      if (stale_anywhere(&min_voters) || min_voters < 3) break;
      lose_disk(n);
      schedule_restart(n, rng_.between(1 * kMillis, params_.restart_max));
      break;
    }
    case 4: {
      if (!params_.clock_faults || !n.usable()) break;
      stats_.clock_faults++;
      if (rng_.chance(0.5)) {
        int ticks = int(rng_.between(3, 30));
        trace(1, "node {}: clock jumps {} ticks ahead", n.id, ticks);
        for (int i = 0; i < ticks && n.usable(); ++i) n.replica->tick();
      } else {
        Time pause = rng_.between(20 * kMillis, 500 * kMillis);
        trace(1, "node {}: clock stalls for {} ms", n.id, pause / kMillis);
        n.stall_until = loop_.now() + pause;
      }
      break;
    }
    case 5:
      if (!params_.slow_disks) break;
      n.slow_disk_until = loop_.now() + rng_.between(50 * kMillis, 1 * kSecond);
      trace(1, "node {}: disk slow until {}", n.id, fmt_time(n.slow_disk_until));
      break;
    case 6: {
      if (!params_.storage_faults || !n.up) break;
      static constexpr Arm kArms[] = {Arm::save_state, Arm::write,    Arm::sync,
                                      Arm::after_vote, Arm::io_error, Arm::read_corrupt};
      n.arm = kArms[rng_.below(std::size(kArms))];
      break;
    }
    case 7: {
      if (!params_.transfers || l == nullptr) break;
      const Config& c = l->replica->core().config();
      NodeId to = c.voters[rng_.below(c.voters.size())].id;
      auto r = l->replica->transfer_leadership(to);
      trace(1, "node {}: transfer leadership to {}: {}", l->id, to,
            r ? "started" : r.error().to_string());
      if (r) stats_.transfers++;
      break;
    }
    case 9: {
      if (!params_.retention || !n.usable()) break;
      // Retention: the log start moves up to the commit point.
      const Core& core = n.replica->core();
      if (core.commit() <= core.log_start()) break;
      // On a batch boundary: the base of the batch holding a random committed offset.
      Offset start = rng_.between(core.log_start() + 1, core.commit());
      const DiskLog& w = n.disk->written();
      size_t i = w.index_of(start);
      if (i < w.entries.size()) start = w.entries[i].entry.base;
      if (start <= core.log_start()) break;
      trace(1, "node {}: log start moves to {}", n.id, start);
      n.replica->on_log_start(start);
      break;
    }
    case 8: {
      if (!params_.elections) break;
      // Election timeouts that fire together: one or two nodes campaign now (split votes,
      // two candidates in one term), sometimes right after the leader crashed, and sometimes
      // a third node crashes right after granting its vote (it comes back within 2 ms, and
      // the other candidate may ask it next).
      std::vector<NodeId> ids;
      for (auto& m : nodes_) {
        if (m->usable()) ids.push_back(m->id);
      }
      for (size_t i = ids.size(); i > 1; --i) std::swap(ids[i - 1], ids[rng_.below(i)]);
      if (l && ids.size() >= 4 && params_.crashes && rng_.chance(0.5)) {
        crash_node(*l, "crashes (an election drill)", true);
        schedule_restart(*l, rng_.between(1 * kMillis, params_.restart_max));
        ids.erase(std::find(ids.begin(), ids.end(), l->id));
      }
      size_t count = std::min<size_t>(ids.size(), size_t(rng_.between(1, 2)));
      if (ids.size() > count && params_.storage_faults && rng_.chance(0.5)) {
        node(ids[count]).arm = Arm::after_vote;
      }
      for (size_t i = 0; i < count; ++i) {
        trace(1, "node {}: campaigns now", ids[i]);
        node(ids[i]).replica->campaign();
        if (!node(ids[i]).usable()) break;
      }
      break;
    }
    default:
      break;
  }
}

void Sim::membership() {
  // Membership changes run when the seed enables them, and always to repair a lost disk.
  if (!params_.membership && !params_.disk_loss) return;
  loop_.after(rng_.between(20 * kMillis, 300 * kMillis), [this] { membership(); });
  Node* l = leader();
  if (l == nullptr) return;
  const Core& core = l->replica->core();
  Config c = core.config();
  auto incarnation = [&](NodeId id) { return node(id).disk->incarnation(); };
  auto remove = [](std::vector<Member>& v, NodeId id) {
    v.erase(std::remove_if(v.begin(), v.end(), [&](const Member& m) { return m.id == id; }),
            v.end());
  };
  auto insert = [](std::vector<Member>& v, Member m) {
    v.insert(std::lower_bound(v.begin(), v.end(), m,
                              [](const Member& a, const Member& b) { return a.id < b.id; }),
             m);
  };
  std::string what;
  Config next = c;
  // 1. A voter whose disk was lost: remove the old incarnation.
  for (const auto& v : c.voters) {
    if (v.incarnation != incarnation(v.id) && c.voters.size() > 1) {
      remove(next.voters, v.id);
      what = fmt::format("remove voter {} (its disk was lost)", v.id);
      break;
    }
  }
  // 2. A learner whose disk was lost, or 3. one that caught up: promote it.
  if (what.empty()) {
    Status st = core.status();
    for (const auto& lr : c.learners) {
      if (lr.incarnation != incarnation(lr.id)) {
        remove(next.learners, lr.id);
        what = fmt::format("remove learner {} (its disk was lost)", lr.id);
        break;
      }
      for (const auto& p : st.progress) {
        if (p.member == lr && p.match_end >= core.commit() && rng_.chance(0.7)) {
          remove(next.learners, lr.id);
          insert(next.voters, lr);
          what = fmt::format("promote learner {}", lr.id);
          break;
        }
      }
      if (!what.empty()) break;
    }
  }
  // 4. A node outside the configuration (a spare, a removed voter, a new disk): add it as a
  // learner.
  if (what.empty()) {
    for (auto& n : nodes_) {
      if (c.find(n->id) == nullptr && rng_.chance(0.5)) {
        insert(next.learners, n->member());
        what = fmt::format("add learner {}", n->id);
        break;
      }
    }
  }
  // 5. While the faults run: remove a random voter now and then.
  size_t min_voters = 0;
  // Not when both pre-vote and check-quorum are off: a removed voter that never learns of its
  // removal then campaigns with ever higher terms and deposes every leader (Raft thesis
  // 4.2.3: the disruption those two options exist to prevent).
  if (what.empty() && params_.membership && !healed_ &&
      (params_.pre_vote || params_.check_quorum) && rng_.chance(0.2) && c.voters.size() >= 3 &&
      !stale_anywhere(&min_voters)) {
    NodeId id = c.voters[rng_.below(c.voters.size())].id;
    remove(next.voters, id);
    what = fmt::format("remove voter {}", id);
  }
  if (what.empty()) return;
  auto r = l->replica->propose_config(next);
  trace(1, "node {}: propose {}: {}: {}", l->id, what, next.to_string(),
        r ? "accepted" : r.error().to_string());
  if (r) stats_.config_proposals++;
}

void Sim::heal() {
  healed_ = true;
  heal_time_ = loop_.now();
  net_.heal_all();
  net_.faults().loss = 0;
  net_.faults().duplicate = 0;
  net_.faults().slow = 0;
  trace(1, "faults stop: the network heals, every node restarts, disks and clocks recover");
  for (auto& n : nodes_) {
    n->stall_until = 0;
    n->slow_disk_until = 0;
    n->arm = Arm::none;
    if (!n->up) start_node(*n);
  }
}

// ---- checks -----------------------------------------------------------------------------

void Sim::verify(Node& n) {
  const Core& core = n.replica->core();
  Offset commit = core.commit();
  const DiskLog& w = n.disk->written();
  Offset from = std::max(n.verified, w.start);
  if (commit <= from) return;
  if (commit > w.end()) {
    checker_.fail(
        fmt::format("node {}'s commit {} is beyond its log end {}", n.id, commit, w.end()));
    return;
  }
  size_t i = w.index_of(from);
  Offset done = from;
  for (; i < w.entries.size() && w.entries[i].entry.base < commit; ++i) {
    checker_.committed(n.id, w.entries[i].entry);
    done = w.entries[i].entry.end();
  }
  n.verified = std::max(n.verified, done);
}

void Sim::observe(Node& n) {
  const Core& core = n.replica->core();
  Role role = core.role();
  Term term = core.term();
  if (role != n.last_role || term != n.last_term) {
    trace(1, "node {}: {} in term {} (leader {})", n.id, role_name(role), term, core.leader());
    if (role == Role::leader) stats_.leaders++;
    n.last_role = role;
    n.last_term = term;
  }
  std::optional<Offset> hwm;
  if (role == Role::leader) {
    checker_.leader_seen(term, n.member());
    hwm = core.high_watermark();
    if (hwm) {
      checker_.high_watermark(n.id, n.life, term, *hwm);
      if (*hwm > core.commit()) {
        checker_.fail(fmt::format("node {}'s high watermark {} is beyond its commit {}", n.id, *hwm,
                                  core.commit()));
      }
    }
  }
  verify(n);
  if (n.pending.empty()) return;
  if (role != Role::leader) {
    n.pending.clear();  // the outcome of these appends is unknown to their clients
    return;
  }
  size_t kept = 0;
  for (auto& p : n.pending) {
    if (p.entry.term != term) continue;  // deposed meanwhile: unknown outcome
    if (hwm && p.entry.end() <= *hwm) {
      checker_.acknowledged(n.id, p.entry);
      stats_.acknowledged++;
      trace(1, "node {}: acknowledged {} (high watermark {})", n.id, describe(p.entry), *hwm);
      if (healed_ && p.issued >= heal_time_ && !live_at_) live_at_ = loop_.now();
      continue;
    }
    n.pending[kept++] = std::move(p);
  }
  n.pending.resize(kept);
}

void Sim::after_event() {
  for (auto& n : nodes_) {
    if (!n->up) continue;
    if (n->crash_now || n->replica->failed()) {
      std::string reason = n->crash_now
                               ? n->crash_reason
                               : fmt::format("fails: {}", n->replica->failure()->to_string());
      bool power = n->crash_now ? n->power_loss : true;
      // A node that crashed right after a vote comes back at once, while the election that
      // asked for the vote is still running.
      Time delay = healed_ || n->quick_restart ? rng_.between(0, 200)
                                               : rng_.between(1 * kMillis, params_.restart_max);
      n->quick_restart = false;
      crash_node(*n, reason, power);
      schedule_restart(*n, delay);
      continue;
    }
    observe(*n);
  }
  if (healed_ && !live_at_ && loop_.now() > heal_time_ + options_.liveness_bound) {
    checker_.fail(
        fmt::format("liveness: no new entry committed within {} s after the faults "
                    "stopped at {}",
                    options_.liveness_bound / kSecond, fmt_time(heal_time_)));
  }
}

std::string Sim::describe_nodes() {
  std::string out;
  for (auto& n : nodes_) {
    if (!n->up) {
      out += fmt::format("  node {}: down\n", n->id);
      continue;
    }
    const Core& c = n->replica->core();
    out += fmt::format(
        "  node {}: {} term {} leader {} vote {} log [{}, {}) durable {} commit {} {}{}\n", n->id,
        role_name(c.role()), c.term(), c.leader(), c.hard_state().voted_for.id, c.log_start(),
        c.log_end(), c.durable_end(), c.commit(), c.config().to_string(),
        n->replica->failed() ? " FAILED" : "");
  }
  return out;
}

SimResult Sim::run() {
  trace(1,
        "seed {}: {} nodes ({} voters), faults for {} ms{}{}{}: partitions {} crashes {} disk loss "
        "{} "
        "clocks {} slow disks {} storage faults {} membership {} transfers {} elections {}; "
        "pre-vote {} check-quorum {}; max append bytes {} inflight {}; loss {:.2f} dup {:.2f} "
        "slow {:.2f} delay {}-{} us; drift {:.2f}",
        options_.seed, params_.nodes, params_.voters, params_.fault_time / kMillis,
        params_.figure8 ? " (Figure 8 drill)" : "", params_.retention ? " (retention)" : "",
        params_.write_caching ? " (write caching)" : "", params_.partitions, params_.crashes,
        params_.disk_loss, params_.clock_faults, params_.slow_disks, params_.storage_faults,
        params_.membership, params_.transfers, params_.elections, params_.pre_vote,
        params_.check_quorum, params_.max_append_bytes, params_.max_inflight, params_.net.loss,
        params_.net.duplicate, params_.net.slow, params_.net.min_delay, params_.net.max_delay,
        params_.drift);
  for (int i = 1; i <= params_.nodes; ++i) {
    auto n = std::make_unique<Node>();
    n->id = i;
    n->disk = std::make_unique<SimDisk>(rng_.next() | 1);
    n->storage = std::make_unique<SimStorage>(this, n.get());
    n->transport = std::make_unique<SimTransport>(this, n.get());
    double drift = (double(rng_.below(2001)) / 1000 - 1) * params_.drift;
    n->tick_interval = std::max<Time>(1, Time(double(kTick) * (1 + drift)));
    nodes_.push_back(std::move(n));
  }
  for (int i = 1; i <= params_.voters; ++i) initial_.voters.push_back(node(i).member());
  initial_configs_ = fresh_state().configs;
  for (auto& n : nodes_) start_node(*n);
  for (auto& n : nodes_) {
    NodeId id = n->id;
    loop_.after(rng_.between(0, n->tick_interval), [this, id] { tick(id); });
  }
  if (params_.bootstrap) node(1).replica->campaign();
  loop_.after(0, [this] { client(); });
  loop_.after(rng_.between(0, params_.fault_gap_max), [this] { fault(); });
  loop_.after(rng_.between(0, 300 * kMillis), [this] { membership(); });
  loop_.at(params_.fault_time, [this] { heal(); });
  after_event();

  const Time tail = 200 * kMillis;  // after liveness: let the group settle, checking all along
  while (!checker_.failed() && loop_.run_one()) {
    after_event();
    if (live_at_ && loop_.now() > *live_at_ + tail) break;
  }
  if (!checker_.failed()) checker_.final_check();

  stats_.sim_time = loop_.now();
  stats_.events = loop_.executed();
  stats_.messages_lost = net_.lost();
  stats_.messages_duplicated = net_.duplicated();
  stats_.committed_end = checker_.reference_end();
  SimResult result;
  result.stats = stats_;
  if (checker_.failed()) {
    result.ok = false;
    result.failure =
        fmt::format("at {}: {}\n{}", fmt_time(loop_.now()), checker_.failure(), describe_nodes());
  }
  trace(1, "end: {}", stats_.to_string());
  return result;
}

}  // namespace

SimResult run_simulation(const SimOptions& options) {
  Sim sim(options);
  return sim.run();
}

}  // namespace ordo::raft::sim
