#include "cluster/controller_group.h"

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>

#include "base/assert.h"
#include "base/clock.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "base/log.h"
#include "cluster/raft_storage.h"
#include "model/record_batch.h"
#include "raft/replica.h"
#include "storage/partition_log.h"

namespace ordo::cluster {

namespace {

// controller.commit: magic u32, CRC-32C u32 of the offset's 8 bytes, offset i64. Big-endian.
constexpr uint32_t kCommitMagic = 0x4f434d54;  // "OCMT"
constexpr size_t kCommitFileBytes = 16;
constexpr size_t kReadBytes = 1 << 20;  // per read of the log while applying

std::vector<uint8_t> encode_commit_file(int64_t offset) {
  std::vector<uint8_t> b(kCommitFileBytes);
  store_be32(b.data(), kCommitMagic);
  store_be64(b.data() + 8, uint64_t(offset));
  store_be32(b.data() + 4, crc32c(0, b.data() + 8, 8));
  return b;
}

// The persisted applied end; 0 when the file is absent or damaged (then less is replayed).
int64_t read_commit_file(const std::string& path) {
  auto bytes = read_file(path, kCommitFileBytes + 1);
  if (!bytes) return 0;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes->data());
  if (bytes->size() != kCommitFileBytes || load_be32(p) != kCommitMagic ||
      load_be32(p + 4) != crc32c(0, p + 8, 8)) {
    ORDO_LOG_WARN("{}: damaged, ignored (the committed prefix is learnt from the leader)", path);
    return 0;
  }
  return std::max<int64_t>(0, int64_t(load_be64(p + 8)));
}

}  // namespace

struct ControllerGroup::Impl : raft::Transport,
                               std::enable_shared_from_this<ControllerGroup::Impl> {
  struct Proposal {
    raft::Term term;
    std::function<void(Result<int64_t>)> done;
  };

  Impl(asio::any_io_executor e, ControllerGroupOptions o, Apply a, OnLeader l)
      : ex(std::move(e)),
        options(std::move(o)),
        apply(std::move(a)),
        on_leader(std::move(l)),
        batcher(options.self),
        timer(ex) {}

  // raft::Transport: the replica's messages wait in the Batcher until the round ends.
  void send(raft::Message m) override { batcher.add(std::move(m)); }

  std::string commit_path() const {
    return options.dir + "/" + std::string(kControllerCommitFileName);
  }

  Result<void> open() {
    std::error_code ec;
    std::filesystem::create_directories(options.dir, ec);
    if (ec) return make_error(Errc::io, "{}: {}", options.dir, ec.message());
    storage::LogConfig config;
    config.segment_bytes = int64_t(64) << 20;
    config.retention_ms = -1;
    config.retention_bytes = -1;
    log = ORDO_TRY(storage::PartitionLog::open(options.dir, config, SystemClock::instance()));
    store = ORDO_TRY(RaftLogStorage::open(log.get(), options.initial, SystemClock::instance(),
                                          options.incarnation));
    const raft::Restored& restored = store->restored();
    if (restored.log_start != 0) {
      return make_error(
          Errc::corrupt,
          "{}: the controller log starts at {}, its prefix is gone (no snapshots yet)", options.dir,
          restored.log_start);
    }
    raft::Options core = options.core;
    core.group = kControllerGroup;
    core.self = raft::Member{options.self, store->incarnation()};
    std::random_device rd;
    core.seed = core.seed * 0x9e3779b97f4a7c15ull + uint64_t(options.self) * 7919 + rd();
    replica = std::make_unique<raft::Replica>(core, restored, store.get(), this);
    replica->on_commit = [this](raft::Offset c) {
      commit = std::max(commit, c);
      log->set_high_watermark(Offset(std::max(commit, int64_t(applied))));
    };
    commit = replica->core().commit();

    // Replay what is known committed: the persisted applied end, within the recovered log.
    const int64_t known = std::min<int64_t>(read_commit_file(commit_path()), restored.log_end);
    const uint64_t before = stats.applied_entries;
    ORDO_TRY(apply_up_to(known));
    stats.replayed_entries = stats.applied_entries - before;
    log->set_high_watermark(Offset(std::max(commit, int64_t(applied))));
    ORDO_LOG_INFO(
        "{}: controller group open, node {} incarnation {:016x}, log end {}, replayed {} "
        "commands up to {}",
        options.dir, options.self, store->incarnation(), restored.log_end, stats.replayed_entries,
        applied.load());
    return ok();
  }

  // Applies the entries in [applied, end): data entries through apply(), answering the
  // proposals at their offsets.
  Result<void> apply_up_to(int64_t end) {
    while (applied < end && !stopped) {
      auto entries = ORDO_TRY(store->read(applied, kReadBytes));
      if (entries.empty() || entries.front().base != applied) {
        return make_error(Errc::corrupt, "{}: no entry starts at {}", options.dir, applied.load());
      }
      const int64_t from = applied;
      for (const raft::Entry& e : entries) {
        if (e.end() > end || stopped) break;
        if (e.kind == raft::EntryKind::data && e.payload) ORDO_TRY(apply_entry(e));
        answer_proposals(e);
        applied = e.end();
      }
      if (applied == from) break;  // `end` inside an entry (not a commit point): wait for more
    }
    return ok();
  }

  Result<void> apply_entry(const raft::Entry& e) {
    auto view = ORDO_TRY(model::RecordBatchView::parse(*e.payload));
    if (view.is_control()) return ok();
    auto records = model::decode_records(view);
    if (!records) {
      return make_error(Errc::corrupt, "{}: entry at {}: {}", options.dir, e.base,
                        records.error().message);
    }
    for (const model::RecordView& r : *records) {
      std::span<const uint8_t> command;
      if (r.value) {
        command = std::span(reinterpret_cast<const uint8_t*>(r.value->data()), r.value->size());
      }
      ++stats.applied_entries;
      if (apply) apply(command, e.base + r.offset_delta);
      if (stopped) break;
    }
    return ok();
  }

  void answer_proposals(const raft::Entry& e) {
    while (!proposals.empty() && proposals.begin()->first < e.end()) {
      auto node = proposals.extract(proposals.begin());
      Proposal& p = node.mapped();
      if (node.key() == e.base && p.term == e.term && e.kind == raft::EntryKind::data) {
        p.done(e.base);
      } else {
        ++stats.failed_proposals;
        p.done(make_error(Errc::not_found, "the entry at {} was replaced by a later leader's",
                          node.key()));
      }
    }
  }

  void fail_proposals(Errc code, const std::string& why) {
    auto waiting = std::move(proposals);
    proposals.clear();
    for (auto& [offset, p] : waiting) {
      ++stats.failed_proposals;
      p.done(make_error(code, "proposal at {}: {}", offset, why));
    }
  }

  // The end of every round: apply what committed, report leadership, send the frames.
  void end_round() {
    if (stopped) return finish_stop();
    if (replica->failed()) {
      fail(*replica->failure());
      return finish_stop();
    }
    if (commit > applied) {
      const int64_t before = applied;
      auto r = apply_up_to(commit);
      if (!r) {
        fail(r.error());
        return finish_stop();
      }
      if (applied > before && !stopped) {
        auto w = write_file_atomic_unsynced(commit_path(), encode_commit_file(applied));
        if (!w) ORDO_LOG_WARN("{}: {}", commit_path(), w.error().to_string());
      }
    }
    if (stopped) return finish_stop();
    const raft::Core& core = replica->core();
    const NodeId new_leader = core.leader();
    const raft::Term new_term = core.term();
    const bool leading = core.is_leader();
    if (new_leader != leader || new_term != term || leading != is_leader) {
      const bool lost = is_leader && (!leading || new_term != term);
      leader = new_leader;
      term = new_term;
      is_leader = leading;
      if (lost) fail_proposals(Errc::not_found, "leadership lost before it committed");
      if (on_leader) on_leader(new_leader, new_term);
      if (stopped) return finish_stop();
    }
    auto frames = batcher.flush();
    if (!frames.empty() && options.send) options.send(std::move(frames));
  }

  void fail(const Error& e) {
    ORDO_LOG_ERROR("{}: controller group stopped: {}", options.dir, e.to_string());
    failure = e;
    stopped = true;
  }

  // Runs one input on the executor: the callbacks it triggers may call stop().
  template <typename F>
  void round(F input) {
    if (stopped || !replica) return;
    in_round = true;
    input();
    end_round();
    in_round = false;
    if (stopped) finish_stop();
  }

  void schedule_tick() {
    timer.expires_after(std::chrono::milliseconds(std::max<int64_t>(options.tick_ms, 1)));
    timer.async_wait([self = shared_from_this()](std::error_code ec) {
      if (ec || self->stopped) return;
      self->round([&] { self->replica->tick(); });
      if (!self->stopped) self->schedule_tick();
    });
  }

  void do_propose(std::vector<uint8_t> command, std::function<void(Result<int64_t>)> done) {
    if (stopped || !replica) {
      return done(make_error(Errc::closed, "the controller group is stopped"));
    }
    if (!replica->core().is_leader()) {
      return done(make_error(Errc::not_found, "node {} is not the controller leader (leader {})",
                             options.self, replica->core().leader()));
    }
    if (command.size() > kMaxControllerCommandBytes) {
      return done(make_error(Errc::too_large, "a command of {} bytes, at most {}", command.size(),
                             kMaxControllerCommandBytes));
    }
    if (proposals.size() >= kMaxPendingProposals) {
      return done(make_error(Errc::busy, "{} proposals wait for their commit", proposals.size()));
    }
    model::RecordBatchBuilder builder;
    builder.add(std::nullopt,
                std::string_view(reinterpret_cast<const char*>(command.data()), command.size()),
                SystemClock::instance().now_ms());
    auto payload = std::make_shared<const std::vector<uint8_t>>(builder.build());
    round([&] {
      auto entry = replica->append(payload, 1);
      if (!entry) {
        done(std::move(entry).error());
        return;
      }
      proposals.emplace(entry->base, Proposal{entry->term, std::move(done)});
    });
  }

  // stop() itself: from outside a round at once, from inside one when the round ends.
  void finish_stop() {
    if (in_round || closed) return;
    closed = true;
    timer.cancel();
    fail_proposals(Errc::closed, failure ? failure->message : "the controller group stopped");
    is_leader = false;
    replica.reset();
    store.reset();
    if (log) {
      auto c = log->close();
      if (!c) ORDO_LOG_WARN("{}: close: {}", options.dir, c.error().to_string());
      log.reset();
    }
  }

  asio::any_io_executor ex;
  ControllerGroupOptions options;
  Apply apply;
  OnLeader on_leader;
  raft::Batcher batcher;
  asio::steady_timer timer;
  std::unique_ptr<storage::PartitionLog> log;
  std::unique_ptr<RaftLogStorage> store;
  std::unique_ptr<raft::Replica> replica;
  std::map<int64_t, Proposal> proposals;  // by offset
  int64_t commit = 0;
  bool in_round = false;
  bool closed = false;
  std::optional<Error> failure;
  ControllerGroupStats stats;

  std::atomic<bool> stopped{false};
  std::atomic<int64_t> applied{0};
  std::atomic<NodeId> leader{raft::kNoNode};
  std::atomic<int32_t> term{0};
  std::atomic<bool> is_leader{false};
};

ControllerGroup::ControllerGroup(asio::any_io_executor ex, ControllerGroupOptions o, Apply apply,
                                 OnLeader on_leader)
    : impl_(std::make_shared<Impl>(std::move(ex), std::move(o), std::move(apply),
                                   std::move(on_leader))) {
  ORDO_ASSERT(impl_->options.self >= 0);
}

ControllerGroup::~ControllerGroup() {
  stop();
}

Result<void> ControllerGroup::start() {
  Impl& im = *impl_;
  ORDO_ASSERT_MSG(!im.replica && !im.closed, "ControllerGroup::start called twice");
  im.in_round = true;  // apply() during the replay may call stop()
  auto opened = im.open();
  im.in_round = false;
  if (!opened || im.stopped) {
    im.stopped = true;
    im.finish_stop();
    if (!opened) return opened;
    return make_error(Errc::closed, "stopped during start");
  }
  im.round([] {});  // report the recovered term, send nothing yet
  im.schedule_tick();
  return ok();
}

void ControllerGroup::deliver(std::vector<raft::Message> messages) {
  asio::post(impl_->ex, [im = impl_, messages = std::move(messages)] {
    im->round([&] {
      for (const raft::Message& m : messages) {
        if (im->stopped) return;
        if (m.group != kControllerGroup || m.to != im->options.self) {
          ++im->stats.dropped_messages;
          continue;
        }
        im->replica->receive(m);
      }
    });
  });
}

void ControllerGroup::propose(std::vector<uint8_t> command,
                              std::function<void(Result<int64_t>)> done) {
  ORDO_ASSERT(done != nullptr);
  asio::post(impl_->ex,
             [im = impl_, command = std::move(command), done = std::move(done)]() mutable {
               im->do_propose(std::move(command), std::move(done));
             });
}

NodeId ControllerGroup::leader() const {
  return impl_->leader;
}
int32_t ControllerGroup::term() const {
  return impl_->term;
}
bool ControllerGroup::is_leader() const {
  return impl_->is_leader;
}
int64_t ControllerGroup::applied_end() const {
  return impl_->applied;
}
ControllerGroupStats ControllerGroup::stats() const {
  return impl_->stats;
}

void ControllerGroup::stop() {
  impl_->stopped = true;
  impl_->finish_stop();
}

}  // namespace ordo::cluster
