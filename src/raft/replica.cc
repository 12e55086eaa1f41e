#include "raft/replica.h"

#include "base/assert.h"

namespace ordo::raft {

Replica::Replica(Options options, Restored restored, Storage* storage, Transport* transport,
                 ReplicaOptions replica_options)
    : core_(std::move(options), std::move(restored), storage),
      storage_(storage),
      transport_(transport),
      replica_options_(replica_options) {
  ORDO_ASSERT(storage_ != nullptr && transport_ != nullptr);
  reported_commit_ = core_.commit();
  drain();  // recovery may have work for the storage (a reset to redo)
}

void Replica::tick() {
  if (failed_) return;
  core_.tick();
  drain();
}

void Replica::receive(const Message& message) {
  if (failed_) return;
  core_.step(message);
  drain();
}

void Replica::campaign() {
  if (failed_) return;
  core_.campaign();
  drain();
}

void Replica::on_log_start(Offset start) {
  if (failed_) return;
  auto moved = storage_->advance_log_start(start);
  if (!moved) return fail(moved.error());
  core_.on_log_start(start);
  drain();
}

Result<Entry> Replica::append(Payload payload, int32_t records) {
  if (failed_) return make_error(Errc::closed, "the replica stopped: {}", failed_->message);
  if (!core_.is_leader()) return make_error(Errc::not_found, "not the leader");
  if (!core_.can_append()) return make_error(Errc::busy, "transferring leadership");
  ORDO_ASSERT(!core_.has_ready());
  auto entry = storage_->append_leader(core_.term(), std::move(payload), records);
  if (!entry) {
    // The batch itself can be refused (idempotence, a malformed batch): that is the caller's
    // answer. Anything else means the log can no longer be trusted.
    const Errc code = entry.error().code;
    if (code == Errc::io || code == Errc::corrupt || code == Errc::closed) fail(entry.error());
    return std::move(entry).error();
  }
  ORDO_ASSERT(entry->base == core_.log_end() && entry->term == core_.term());
  auto appended = core_.append(std::span<const Entry>(&*entry, 1));
  ORDO_ASSERT(appended.has_value());
  drain();
  return entry;
}

void Replica::fail(Error error) {
  if (!failed_) failed_ = std::move(error);
}

void Replica::drain() {
  if (draining_) return;  // a sync completed inside carry_out: the loop below picks it up
  draining_ = true;
  while (!failed_) {
    if (persisted_seq_ > given_seq_) {
      given_seq_ = persisted_seq_;
      if (deferred_state_) {
        // Broken variant: the state is saved only now, after messages that needed it left.
        auto saved = storage_->save_state(*deferred_state_);
        deferred_state_.reset();
        if (!saved) fail(saved.error());
      }
      core_.on_persisted(given_seq_);
      continue;
    }
    if (!core_.has_ready()) break;
    Ready ready = core_.take_ready();
    carry_out(ready);
  }
  draining_ = false;
  if (!failed_ && core_.commit() != reported_commit_) {
    reported_commit_ = core_.commit();
    if (on_commit) on_commit(reported_commit_);
  }
}

void Replica::carry_out(Ready& ready) {
  // 1. The state, durable before anything that depends on it.
  if (ready.state) {
    if (ORDO_RAFT_BUG(vote_before_durable)) {
      deferred_state_ = *ready.state;
    } else {
      auto saved = storage_->save_state(*ready.state);
      if (!saved) return fail(saved.error());
    }
  }
  // 2. The log: reset or truncate, then append; the sync that makes it durable follows.
  if (ready.reset_to) {
    auto r = storage_->reset(*ready.reset_to, ready.reset_term);
    if (!r) return fail(r.error());
  }
  if (ready.truncate_to) {
    auto r = storage_->truncate(*ready.truncate_to);
    if (!r) return fail(r.error());
  }
  if (!ready.entries.empty()) {
    auto r = storage_->append(ready.entries);
    if (!r) return fail(r.error());
  }
  if (ready.write_seq != 0) {
    const uint64_t seq = ready.write_seq;
    if (replica_options_.write_caching || ORDO_RAFT_BUG(ack_before_fsync)) {
      persisted_seq_ = std::max(persisted_seq_, seq);
    }
    storage_->sync([self = self_, seq](Result<void> synced) {
      Replica* r = *self;
      if (r == nullptr || r->failed_) return;
      if (!synced) return r->fail(synced.error());
      r->persisted_seq_ = std::max(r->persisted_seq_, seq);
      r->drain();
    });
  }
  // 3. The messages.
  for (auto& m : ready.messages) transport_->send(std::move(m));
}

}  // namespace ordo::raft
