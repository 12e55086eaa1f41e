#include "cluster/partitions.h"

namespace ordo::cluster {

namespace {
Error lost_leadership(const model::TopicPartition& tp) {
  return make_error(Errc::closed, "this node does not lead {}", tp.to_string());
}
}  // namespace

Result<OffsetAnswer> answer_list_offset(const storage::PartitionLog& l, int64_t which,
                                        int32_t epoch) {
  const int64_t hw = l.high_watermark().value();
  OffsetAnswer out;
  out.leader_epoch = epoch;
  if (which == kEarliestOffset) {
    out.offset = l.log_start_offset().value();
  } else if (which == kLatestOffset) {  // the last stable offset: no transactions yet
    out.offset = hw;
  } else if (which < 0 && which != kMaxTimestampOffset) {
    return make_error(Errc::invalid_argument, "no offset spec {}", which);
  } else {  // by timestamp, or the record with the largest timestamp
    auto m =
        which == kMaxTimestampOffset ? l.max_timestamp_offset() : l.offset_for_timestamp(which);
    if (!m) return std::move(m).error();
    if (*m && (*m)->offset.value() < hw) {
      out.offset = (*m)->offset.value();
      out.timestamp = (*m)->timestamp;
    }
  }
  return out;
}

EpochEnd answer_epoch_end(const storage::PartitionLog& log, int32_t epoch) {
  if (epoch < 0) return {};
  auto found = log.epochs().end_offset_for(epoch, log.log_end_offset());
  if (!found) return {};
  return {found->first, found->second.value()};
}

LocalPartitions::LocalPartitions(
    NodeId self, const PartitionTable& table,
    std::function<void(const model::TopicPartition&)> on_high_watermark)
    : self_(self), table_(table), on_high_watermark_(std::move(on_high_watermark)) {}

std::optional<Offset> LocalPartitions::decide_high_watermark(const storage::LogProgress& p) {
  // One node is its own quorum: what its flush policy acknowledges is committed. In durable
  // mode that is what is fsynced, in the page-cache modes what is written.
  Offset hw = p.flush_mode == storage::FlushMode::durable ? p.durable : p.appended;
  if (hw == p.high_watermark) return std::nullopt;
  return hw;
}

storage::HighWatermarkPolicy LocalPartitions::high_watermark_policy() {
  return [this](const model::TopicPartition& tp,
                const storage::LogProgress& p) -> std::optional<Offset> {
    auto hw = decide_high_watermark(p);
    // Waiters are woken through their own executors (a post): they read after this returns
    // and storage has set what was decided.
    if (hw && on_high_watermark_) on_high_watermark_(tp);
    return hw;
  };
}

std::optional<LeaderError> LocalPartitions::check_leader(const model::TopicPartition& tp,
                                                         int32_t current_leader_epoch) const {
  auto snap = table_.snapshot();
  const PartitionAssignment* a = snap->find(tp);
  if (!a) return LeaderError{LeaderError::Code::unknown_topic_or_partition, kNoLeader, -1};
  if (a->leader != self_) {
    return LeaderError{LeaderError::Code::not_leader_or_follower, a->leader, a->leader_epoch};
  }
  if (current_leader_epoch >= 0 && current_leader_epoch != a->leader_epoch) {
    return LeaderError{current_leader_epoch < a->leader_epoch
                           ? LeaderError::Code::fenced_leader_epoch
                           : LeaderError::Code::unknown_leader_epoch,
                       a->leader, a->leader_epoch};
  }
  return std::nullopt;
}

Result<storage::AppendOptions> LocalPartitions::leader_options(
    const model::TopicPartition& tp, Consistency consistency,
    storage::AppendOptions options) const {
  auto snap = table_.snapshot();
  const PartitionAssignment* a = snap->find(tp);
  if (!a) return make_error(Errc::not_found, "no partition {}", tp.to_string());
  if (a->leader != self_) return lost_leadership(tp);
  options.assign_offsets = true;
  options.leader_epoch = a->leader_epoch;
  // One node: the quorum is this node, and its acknowledgement is the flush policy's (durable:
  // after the fsync). Leader-only appends complete once written.
  options.wait_for_flush = consistency == Consistency::quorum;
  return options;
}

void LocalPartitions::append(const model::TopicPartition& tp, std::span<uint8_t> batches,
                             Consistency consistency, storage::AppendOptions options,
                             Callback<storage::AppendResult> done) {
  auto leader = leader_options(tp, consistency, options);
  if (!leader) return done(std::move(leader).error());
  logs_->append_borrowed(tp, batches, *leader, std::move(done));
}

void LocalPartitions::append(const model::TopicPartition& tp, std::vector<uint8_t> batches,
                             Consistency consistency, storage::AppendOptions options,
                             Callback<storage::AppendResult> done) {
  auto leader = leader_options(tp, consistency, options);
  if (!leader) return done(std::move(leader).error());
  logs_->append(tp, std::move(batches), *leader, std::move(done));
}

void LocalPartitions::read(const model::TopicPartition& tp, storage::ReadOptions options,
                           Callback<storage::ReadResult> done) {
  logs_->read(tp, options, std::move(done));
}

void LocalPartitions::list_offset(const model::TopicPartition& tp, int64_t which,
                                  Callback<OffsetAnswer> done) {
  auto snap = table_.snapshot();
  const PartitionAssignment* a = snap->find(tp);
  const int32_t epoch = a ? a->leader_epoch : -1;
  logs_->with_log(tp, [which, epoch, done = std::move(done)](Result<storage::PartitionLog*> found) {
    if (!found) return done(found.error());
    done(answer_list_offset(**found, which, epoch));
  });
}

void LocalPartitions::delete_records(const model::TopicPartition& tp, int64_t before,
                                     Callback<Truncation> done) {
  logs_->with_log(tp, [before, done = std::move(done)](Result<storage::PartitionLog*> found) {
    if (!found) return done(found.error());
    storage::PartitionLog& l = **found;
    Truncation out;
    const int64_t hw = l.high_watermark().value();
    const int64_t to = before == -1 ? hw : before;
    if (to < 0 || to > hw) {
      out.error = make_error(Errc::out_of_range, "offset {} is outside [0, {}]", to, hw);
    } else if (to > l.log_start_offset().value()) {
      if (auto r = l.advance_log_start_offset(Offset(to)); !r) out.error = std::move(r).error();
    }
    out.low_watermark = l.log_start_offset().value();
    done(std::move(out));
  });
}

std::vector<storage::PartitionStatus> LocalPartitions::status() {
  return logs_->status();
}

void LocalPartitions::offset_for_leader_epoch(const model::TopicPartition& tp,
                                              int32_t current_epoch, int32_t epoch,
                                              Callback<EpochEnd> done) {
  if (auto e = check_leader(tp, current_epoch)) {
    return done(make_error(Errc::closed, "{}: leader error {}", tp.to_string(), int(e->code)));
  }
  auto snap = table_.snapshot();
  const PartitionAssignment* a = snap->find(tp);
  const int32_t current = a ? a->leader_epoch : 0;
  logs_->with_log(tp, [epoch, current, done = std::move(done)](Result<storage::PartitionLog*> l) {
    if (!l) return done(l.error());
    EpochEnd out = answer_epoch_end(**l, epoch);
    if (out.epoch < 0 && epoch >= current) out = {current, (*l)->log_end_offset().value()};
    done(out);
  });
}

int32_t LocalPartitions::in_sync_replicas(const model::TopicPartition& tp) const {
  return check_leader(tp) ? 0 : 1;
}

void LocalPartitions::elect_preferred(const model::TopicPartition& tp, Callback<Election> done) {
  if (auto e = check_leader(tp)) {
    return done(Election{e->code == LeaderError::Code::unknown_topic_or_partition
                             ? Election::Code::unknown_topic_or_partition
                             : Election::Code::not_leader_or_follower,
                         "this broker does not lead the partition"});
  }
  done(Election{Election::Code::election_not_needed, "the only replica leads it"});
}

}  // namespace ordo::cluster
