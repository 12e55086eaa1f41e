#include "storage/partition_log.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <sstream>

#include "base/log.h"
#include "compression/records.h"
#include "model/record_batch.h"

namespace ordo::storage {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kStateFile = "partition.state";
constexpr std::string_view kEpochFile = "leader-epoch-checkpoint";
constexpr std::string_view kCleanShutdownFile = "clean-shutdown";
// A replicated partition's Raft hard state, written by the cluster module (raft_storage.h).
constexpr std::string_view kRaftStateFile = "raft.state";
// The controller group's applied offset (cluster/controller_group.h), beside its raft.state.
constexpr std::string_view kControllerCommitFile = "controller.commit";

struct PartitionState {
  Offset recovery_point{0};
  Offset log_start{0};
};

Result<std::optional<PartitionState>> read_state(const std::string& path) {
  auto text = read_file(path, 4096);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::optional<PartitionState>();
    return std::move(text).error();
  }
  std::istringstream in(*text);
  std::string magic, k1, k2;
  int version = 0;
  int64_t rp = -1, ls = -1;
  if (!(in >> magic >> version >> k1 >> rp >> k2 >> ls) || magic != "ordo-partition-state" ||
      version != 1 || k1 != "recovery_point" || k2 != "log_start_offset" || rp < 0 || ls < 0) {
    return make_error(Errc::corrupt, "{}: malformed", path);
  }
  return std::optional<PartitionState>(PartitionState{Offset(rp), Offset(ls)});
}

// A segment file name: 20 digits then the suffix.
std::optional<Offset> parse_segment_name(std::string_view name, std::string_view suffix) {
  if (name.size() != 20 + suffix.size() || !name.ends_with(suffix)) return std::nullopt;
  int64_t v = -1;
  auto [p, ec] = std::from_chars(name.data(), name.data() + 20, v);
  if (ec != std::errc() || p != name.data() + 20 || v < 0) return std::nullopt;
  return Offset(v);
}

}  // namespace

Result<void> execute_flush(const FlushTicket& ticket) {
  for (const auto& f : ticket.data_files) ORDO_TRY(f->datasync());
  for (const auto& p : ticket.metadata_paths) {
    auto f = File::open(p, O_RDONLY);
    if (!f) {
      if (f.error().code == Errc::not_found) continue;  // deleted meanwhile
      return std::move(f).error();
    }
    ORDO_TRY(f->sync());
  }
  return ok();
}

namespace {
// A producer the log has no state for (new, or expired) may start at any sequence, as in Kafka
// 2.5+ (KIP-360): a stricter rule turns an expired producer's next batch into a fatal error
// for clients such as librdkafka.
constexpr ProducerStateOptions kProducerStateOptions{
    .max_producers = kDefaultMaxProducersPerPartition,
    .require_seq_zero_for_unknown_producer = false};
constexpr size_t kProducerSnapshotsKept = 2;
}  // namespace

PartitionLog::PartitionLog(std::string dir, const LogConfig& config, const Clock& clock,
                           LeaderEpochCache epochs)
    : dir_(std::move(dir)),
      config_(config),
      clock_(clock),
      epochs_(std::move(epochs)),
      producers_(kProducerStateOptions) {}

PartitionLog::~PartitionLog() = default;

Result<std::unique_ptr<PartitionLog>> PartitionLog::open(std::string dir, const LogConfig& config,
                                                         const Clock& clock, OpenOptions options) {
  ORDO_TRY(config.validate());
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (!options.create_if_missing) {
      return make_error(Errc::not_found, "partition dir {} does not exist", dir);
    }
    fs::create_directories(dir, ec);
    if (ec) return make_error(Errc::io, "create {}: {}", dir, ec.message());
    auto parent = fs::path(dir).parent_path().string();
    if (!options.defer_sync) ORDO_TRY(fsync_dir(parent.empty() ? "." : parent));
  }
  auto epochs = ORDO_TRY(LeaderEpochCache::load(dir + "/" + std::string(kEpochFile)));
  auto log = std::unique_ptr<PartitionLog>(new PartitionLog(dir, config, clock, std::move(epochs)));
  ORDO_TRY(log->load(options));
  return log;
}

Result<void> PartitionLog::load(const OpenOptions& options) {
  // An interrupted clean's swap is completed (or its output removed) before the segments are
  // listed (cleaner.h, docs/storage-format.md).
  ORDO_TRY(recover_cleaner_swap(dir_));
  first_dirty_ = ORDO_TRY(read_cleaner_checkpoint(dir_));
  std::vector<Offset> bases;
  std::vector<std::string> index_files;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir_, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (auto b = parse_segment_name(name, ".log")) {
      bases.push_back(*b);
    } else if (parse_segment_name(name, ".index") || parse_segment_name(name, ".timeindex")) {
      index_files.push_back(name);
    } else if (parse_snapshot_file_name(name)) {
      // producer-state snapshots: read by load_producers()
    } else if (name.ends_with(".tmp")) {
      ORDO_LOG_INFO("{}: removing unfinished temporary file {}", dir_, name);
      ORDO_TRY(remove_file(dir_ + "/" + name));
    } else if (name != kStateFile && name != kEpochFile && name != kCleanShutdownFile &&
               name != kCleanerCheckpointFile && name != kRaftStateFile &&
               name != kControllerCommitFile) {
      ORDO_LOG_WARN("{}: ignoring unknown file {}", dir_, name);
    }
  }
  if (ec) return make_error(Errc::io, "list {}: {}", dir_, ec.message());
  std::sort(bases.begin(), bases.end());
  for (const auto& name : index_files) {
    Offset b = parse_segment_name(name, ".index")
                   .value_or(parse_segment_name(name, ".timeindex").value_or(Offset(-1)));
    if (!std::binary_search(bases.begin(), bases.end(), b)) {
      ORDO_LOG_WARN("{}: removing index file {} without a segment", dir_, name);
      ORDO_TRY(remove_file(dir_ + "/" + name));
    }
  }

  const std::string marker = dir_ + "/" + std::string(kCleanShutdownFile);
  const bool clean = file_exists(marker);
  auto state_or = read_state(dir_ + "/" + std::string(kStateFile));
  PartitionState state;
  if (state_or && *state_or) {
    state = **state_or;
    persisted_state_ = std::pair(state.recovery_point, state.log_start);
  } else if (!state_or) {
    ORDO_LOG_WARN("{}: {}; recovering every segment", dir_, state_or.error().to_string());
  }
  const int64_t now = clock_.now_ms();

  bool recovered_any = false;
  for (size_t i = 0; i < bases.size(); ++i) {
    Offset base = bases[i];
    bool last = i + 1 == bases.size();
    std::unique_ptr<Segment> seg;
    if (clean || (base < state.recovery_point && !last)) {
      seg = ORDO_TRY(Segment::open(dir_, base, config_, now));
    } else {
      RecoveryReport report;
      seg = ORDO_TRY(Segment::recover(dir_, base, config_, now, options.truncate_corrupt, &report));
      recovered_any = true;
      if (report.dropped_bytes > 0 && !last) {
        // Everything after a torn write is newer than it and was never durable.
        for (size_t j = i + 1; j < bases.size(); ++j) {
          ORDO_LOG_WARN("{}: removing segment {} after the torn tail", dir_,
                        segment_file_name(bases[j], ".log"));
          ORDO_TRY(remove_file(dir_ + "/" + segment_file_name(bases[j], ".log")));
          ORDO_TRY(remove_file(dir_ + "/" + segment_file_name(bases[j], ".index")));
          ORDO_TRY(remove_file(dir_ + "/" + segment_file_name(bases[j], ".timeindex")));
        }
        bases.resize(i + 1);
        last = true;
      }
    }
    if (!segments_.empty() && segments_.rbegin()->second->next_offset() > base) {
      return make_error(Errc::corrupt, "{}: segment {} overlaps the previous one (ends at {})",
                        dir_, segment_file_name(base, ".log"),
                        segments_.rbegin()->second->next_offset());
    }
    segments_.emplace(base, std::move(seg));
  }

  if (segments_.empty()) {
    Offset base = std::max(state.log_start, Offset(0));
    segments_.emplace(base,
                      ORDO_TRY(Segment::create(dir_, base, config_, now, "", !options.defer_sync)));
  }
  log_start_ = std::max(state.log_start, segments_.begin()->first);
  if (log_start_ > log_end_offset()) log_start_ = log_end_offset();

  if (recovered_any) {
    // What survived a crash may still be only in the page cache: make it durable before the
    // recovery point moves past it.
    for (auto it = segments_.begin(); it != segments_.end(); ++it) {
      bool last = std::next(it) == segments_.end();
      if (it->first < state.recovery_point && !last) continue;
      if (!last) ORDO_TRY(it->second->seal());
      ORDO_TRY(it->second->sync_all());
    }
  }
  ORDO_TRY(epochs_.truncate_from_end(log_end_offset()));
  ORDO_TRY(epochs_.truncate_from_start(log_start_));
  flushed_ = log_end_offset();
  high_watermark_ = log_end_offset();
  recovery_point_ = segments_.rbegin()->first;
  // After a clean stop the state on disk is usually what it would be written as (then this
  // writes nothing).
  ORDO_TRY(persist_state(!options.defer_sync));
  if (first_dirty_ > log_end_offset()) {
    first_dirty_ = log_end_offset();
    ORDO_TRY(write_cleaner_checkpoint(dir_, first_dirty_));
  }
  ORDO_TRY(load_producers());
  if (clean) {
    // Durable before the first append (here, or by the caller's sync with defer_sync): a
    // marker that came back after a crash would have the torn tail trusted.
    ORDO_TRY(remove_file(marker));
    if (!options.defer_sync) ORDO_TRY(fsync_dir(dir_));
  }
  check_invariants();
  return ok();
}

Result<void> PartitionLog::persist_state(bool sync) {
  if (persisted_state_ == std::pair(recovery_point_, log_start_)) return ok();
  persisted_state_.reset();  // unknown if the write fails
  std::string s = fmt::format("ordo-partition-state 1\nrecovery_point {}\nlog_start_offset {}\n",
                              recovery_point_, log_start_);
  const std::string path = dir_ + "/" + std::string(kStateFile);
  if (!sync) {
    ORDO_TRY(write_file_atomic_unsynced(
        path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size())));
  } else {
    ORDO_TRY(write_file_atomic(path, std::string_view(s)));
  }
  persisted_state_ = std::pair(recovery_point_, log_start_);
  return ok();
}

void PartitionLog::check_invariants() const {
  ORDO_ASSERT(!segments_.empty());
  ORDO_ASSERT(log_start_ <= high_watermark_);
  ORDO_ASSERT(high_watermark_ <= log_end_offset());
  ORDO_ASSERT(flushed_ <= log_end_offset());
  ORDO_ASSERT(log_start_ >= segments_.begin()->first);
}

void PartitionLog::set_config(const LogConfig& config) {
  ORDO_ASSERT(config.validate().has_value());
  config_ = config;
  for (auto& [base, seg] : segments_) seg->set_config(config);
}

void PartitionLog::set_high_watermark(Offset hw) {
  high_watermark_ = std::clamp(hw, log_start_, log_end_offset());
  check_invariants();
}

int64_t PartitionLog::size_bytes() const {
  int64_t total = 0;
  for (const auto& [base, seg] : segments_) total += seg->size_bytes();
  return total;
}

std::vector<Offset> PartitionLog::segment_bases() const {
  std::vector<Offset> out;
  for (const auto& [base, seg] : segments_) out.push_back(base);
  return out;
}

Result<AppendResult> PartitionLog::append(std::span<uint8_t> batches,
                                          const AppendOptions& options) {
  ORDO_ASSERT(!closed_);
  if (batches.empty()) return make_error(Errc::invalid_argument, "append of no batches");
  std::vector<BatchInfo> infos;
  std::vector<model::RecordBatchView> views;  // the same batches (header fields read later)
  Offset next = log_end_offset();
  AppendResult result;
  size_t pos = 0;
  while (pos < batches.size()) {
    auto bytes = batches.subspan(pos);
    auto view = model::RecordBatchView::parse(bytes, size_t(config_.max_batch_bytes));
    if (!view) {
      return make_error(
          view.error().code == Errc::out_of_range ? Errc::invalid_argument : Errc::corrupt,
          "batch {} at byte {}: {}", infos.size(), pos, view.error().message);
    }
    if (view->record_count() == 0 && options.assign_offsets) {
      return make_error(Errc::invalid_argument, "batch {} has no records", infos.size());
    }
    if (options.verify_crc) {
      auto crc = view->verify_crc();
      if (!crc) return make_error(Errc::corrupt, "batch {}: {}", infos.size(), crc.error().message);
    }
    BatchInfo info;
    info.position = int64_t(pos);
    info.size = int64_t(view->size_bytes());
    info.max_timestamp = view->max_timestamp();
    int32_t delta = view->last_offset_delta();
    if (options.assign_offsets) {
      info.base = next;
    } else {
      info.base = view->base();
      if (info.base < next) {
        return make_error(Errc::invalid_argument, "batch {} base offset {} is below {}",
                          infos.size(), info.base, next);
      }
    }
    info.last = info.base + delta;
    next = info.last + 1;
    result.max_timestamp = std::max(result.max_timestamp, info.max_timestamp);
    infos.push_back(info);
    views.push_back(*view);
    pos += size_t(info.size);
  }
  // Idempotent producers (leader appends): the batch must be alone, and its sequence must follow.
  if (options.assign_offsets) {
    for (const auto& view : views) {
      if (view.producer_id() < 0 || view.is_control()) continue;
      if (infos.size() > 1) {
        return make_error(Errc::invalid_argument,
                          "an idempotent batch must be the only batch of its append");
      }
      SequenceCheck c = producers_.check(view);
      switch (c.verdict) {
        case SequenceVerdict::append:
          break;
        case SequenceVerdict::duplicate:
          result.first_offset = c.first_offset;
          result.last_offset = c.last_offset;
          result.duplicate = true;
          result.batches = 1;
          result.log_start_offset = log_start_;
          return result;
        case SequenceVerdict::out_of_order_sequence:
          return make_error(
              Errc::out_of_order_sequence, "producer {} epoch {}: sequence {} does not follow {}",
              view.producer_id(), view.producer_epoch(), view.base_sequence(), c.current_last_seq);
        case SequenceVerdict::invalid_producer_epoch:
          return make_error(Errc::invalid_producer_epoch, "producer {}: epoch {} is older than {}",
                            view.producer_id(), view.producer_epoch(), c.current_epoch);
        case SequenceVerdict::invalid_record:
          return make_error(Errc::invalid_argument, "producer {}: negative sequence or epoch",
                            view.producer_id());
      }
    }
  }
  int64_t total = int64_t(batches.size());
  if (total > config_.segment_bytes && total > int64_t(INT32_MAX) / 2) {
    return make_error(Errc::too_large, "append of {} bytes", total);
  }
  // Every check passed: now write the assigned fields.
  if (options.assign_offsets) {
    for (const auto& info : infos) {
      auto bytes = batches.subspan(size_t(info.position), size_t(info.size));
      model::set_base_offset(bytes, info.base);
      model::set_leader_epoch(bytes, options.leader_epoch);
    }
  }

  const int64_t now = clock_.now_ms();
  Segment* seg = &active();
  Offset first = infos.front().base;
  Offset last = infos.back().last;
  bool roll_needed = !seg->empty() && (seg->size_bytes() + total > config_.segment_bytes ||
                                       now - seg->first_append_ms() >= config_.segment_ms ||
                                       last - seg->base_offset() > int64_t(INT32_MAX) ||
                                       seg->size_bytes() + total > int64_t(INT32_MAX));
  if (seg->empty() && last - seg->base_offset() > int64_t(INT32_MAX)) {
    // A follower's batch far past an empty segment: start the segment at the batch.
    ORDO_TRY(seg->remove());
    segments_.erase(seg->base_offset());
    segments_.emplace(first, ORDO_TRY(Segment::create(dir_, first, config_, now)));
    seg = &active();
  } else if (roll_needed) {
    ORDO_TRY(roll(first));
    seg = &active();
  }
  ORDO_TRY(seg->append(batches, infos, now));
  // The views see the offsets written above (they are spans of the same bytes).
  for (const auto& view : views) producers_.apply_batch(view);

  for (const auto& info : infos) {
    int32_t epoch = options.assign_offsets ? options.leader_epoch
                                           : int32_t(load_be32(batches.data() + info.position +
                                                               model::batch_layout::kLeaderEpoch));
    if (epoch >= 0) {
      auto latest = epochs_.latest();
      if (!latest || epoch > latest->epoch) ORDO_TRY(epochs_.assign(epoch, info.base));
    }
  }
  result.first_offset = first;
  result.last_offset = last;
  result.batches = int32_t(infos.size());
  result.log_start_offset = log_start_;
  return result;
}

Result<void> PartitionLog::roll(Offset new_base) {
  Segment& old = active();
  if (old.empty()) return ok();
  ORDO_ASSERT(new_base >= old.next_offset());
  ORDO_TRY(old.seal());
  auto seg = ORDO_TRY(Segment::create(dir_, new_base, config_, clock_.now_ms()));
  segments_.emplace(new_base, std::move(seg));
  // After a crash, recovery replays producer state from here instead of from the log start.
  ORDO_TRY(snapshot_producers());
  ORDO_LOG_DEBUG("{}: rolled to segment {}", dir_, new_base);
  return ok();
}

Result<bool> PartitionLog::maybe_roll_by_time() {
  Segment& seg = active();
  if (seg.empty() || clock_.now_ms() - seg.first_append_ms() < config_.segment_ms) return false;
  ORDO_TRY(roll(seg.next_offset()));
  return true;
}

Result<ReadResult> PartitionLog::read(const ReadOptions& options) const {
  ORDO_ASSERT(!closed_);
  ReadResult r;
  r.log_start_offset = log_start_;
  r.high_watermark = high_watermark_;
  r.log_end_offset = log_end_offset();
  r.slice.file = active().log_file();
  if (options.start < log_start_ || options.start > r.log_end_offset) {
    return make_error(Errc::out_of_range, "offset {} outside the log [{}, {}]", options.start,
                      log_start_, r.log_end_offset);
  }
  Offset upper = std::min(options.upper_bound.value_or(high_watermark_), r.log_end_offset);
  if (options.start >= upper || options.max_bytes <= 0) return r;
  auto it = segments_.upper_bound(options.start);
  if (it != segments_.begin()) --it;
  for (; it != segments_.end(); ++it) {
    const Segment& seg = *it->second;
    if (seg.base_offset() >= upper) break;
    int64_t max_position = seg.size_bytes();
    if (upper < seg.next_offset()) {
      auto b = ORDO_TRY(seg.find_batch(upper, seg.size_bytes()));
      if (b) max_position = b->position;
    }
    r.slice =
        ORDO_TRY(seg.read(options.start, options.max_bytes, max_position, options.min_one_batch));
    // Nothing from this segment: either it has no batch at or after start (a gap: go on; a
    // segment the cleaner emptied is all gap), or the one it has is larger than max_bytes
    // without min_one_batch (stop there).
    if (r.slice.size > 0 || upper <= seg.next_offset() ||
        (options.start < seg.next_offset() && !seg.empty())) {
      return r;
    }
  }
  return r;
}

Result<std::optional<TimestampOffset>> PartitionLog::refine(const Segment& seg, const BatchInfo& b,
                                                            int64_t ts, bool exact) const {
  // The batch is found by its max timestamp; the record inside by decoding it (decompressing
  // it first when needed). Records below the log start do not count. A batch stamped with
  // LogAppendTime, where every record has the batch's timestamp, answers with its first
  // visible offset.
  auto bytes = ORDO_TRY(seg.read_batch(b));
  auto view = ORDO_TRY(model::RecordBatchView::parse(bytes, bytes.size()));
  if (view.timestamp_type() == model::TimestampType::log_append_time) {
    if (b.last < log_start_ || (exact ? b.max_timestamp != ts : b.max_timestamp < ts)) {
      return std::optional<TimestampOffset>();
    }
    return std::optional<TimestampOffset>(
        TimestampOffset{b.max_timestamp, std::max(b.base, log_start_)});
  }
  auto decoded = ORDO_TRY(compression::decode_batch(view));
  for (const auto& rec : decoded.records) {
    Offset o = b.base + rec.offset_delta;
    // Wrapping addition, as the producer's subtraction wrapped (see RecordBatchBuilder).
    int64_t rts = model::record_timestamp(view.base_timestamp(), rec.timestamp_delta);
    if (o < log_start_) continue;
    if (exact ? rts == ts : rts >= ts) {
      return std::optional<TimestampOffset>(TimestampOffset{rts, o});
    }
  }
  return std::optional<TimestampOffset>();
}

Result<std::optional<TimestampOffset>> PartitionLog::offset_for_timestamp(int64_t ts) const {
  auto it = segments_.upper_bound(log_start_);
  if (it != segments_.begin()) --it;
  for (; it != segments_.end(); ++it) {
    const Segment& seg = *it->second;
    if (seg.max_timestamp() < ts) continue;
    // The first batch whose max timestamp qualifies may hold only records below the log start,
    // or qualify only through them: then the answer is in a later batch.
    int64_t from = 0;
    for (int64_t guard = 0; guard <= seg.size_bytes(); ++guard) {
      auto b = ORDO_TRY(seg.find_timestamp(ts, from));
      if (!b) break;
      if (b->last >= log_start_) {
        auto found = ORDO_TRY(refine(seg, *b, ts, false));
        if (found) return found;
      }
      from = b->position + b->size;
    }
  }
  return std::optional<TimestampOffset>();
}

Result<std::optional<TimestampOffset>> PartitionLog::max_timestamp_offset() const {
  // The largest timestamp of a record at or after the log start, and the first such record.
  const Segment* best_seg = nullptr;
  std::optional<BatchInfo> best_batch;  // set when the best is a batch of the first segment
  int64_t best_ts = -1;
  auto it = segments_.upper_bound(log_start_);
  if (it != segments_.begin()) --it;
  if (it != segments_.end() && it->first < log_start_) {
    // The segment holding the log start: only its batches (and records) from there on count.
    const Segment& seg = *it->second;
    auto first = ORDO_TRY(seg.find_batch(log_start_, seg.size_bytes()));
    if (first) {
      Result<void> failed = ok();
      ORDO_TRY(seg.scan(first->position, seg.size_bytes(), [&](const BatchInfo& b) {
        int64_t visible_max = b.max_timestamp;
        if (b.base < log_start_) {
          // Partly below the log start: the best visible record decides.
          auto bytes = seg.read_batch(b);
          if (!bytes) {
            failed = bytes.error();
            return false;
          }
          auto view = model::RecordBatchView::parse(*bytes, bytes->size());
          auto records = view ? model::decode_records(*view)
                              : Result<std::vector<model::RecordView>>(view.error());
          if (records) {
            visible_max = -1;
            for (const auto& rec : *records) {
              if (b.base + rec.offset_delta < log_start_) continue;
              visible_max = std::max(visible_max, model::record_timestamp(view->base_timestamp(),
                                                                          rec.timestamp_delta));
            }
          }
        }
        if (visible_max > best_ts) {
          best_ts = visible_max;
          best_seg = &seg;
          best_batch = b;
        }
        return true;
      }));
      ORDO_TRY(failed);
    }
    ++it;
  }
  for (; it != segments_.end(); ++it) {
    const Segment& seg = *it->second;
    if (seg.max_timestamp() > best_ts) {
      best_ts = seg.max_timestamp();
      best_seg = &seg;
      best_batch.reset();
    }
  }
  if (!best_seg || best_ts < 0) return std::optional<TimestampOffset>();
  if (!best_batch) {
    best_batch =
        ORDO_TRY(best_seg->find_batch(best_seg->offset_of_max_timestamp(), best_seg->size_bytes()));
    ORDO_ASSERT(best_batch.has_value());
  }
  return refine(*best_seg, *best_batch, best_ts, true);
}

Result<void> PartitionLog::delete_front_segment() {
  ORDO_ASSERT(segments_.size() > 1);
  auto it = segments_.begin();
  ORDO_LOG_INFO("{}: deleting segment {} (offsets {}-{}, {} bytes)", dir_, it->first, it->first,
                it->second->next_offset().value() - 1, it->second->size_bytes());
  ORDO_TRY(it->second->remove());
  segments_.erase(it);
  log_start_ = std::max(log_start_, segments_.begin()->first);
  recovery_point_ = std::max(recovery_point_, segments_.begin()->first);
  high_watermark_ = std::max(high_watermark_, log_start_);
  return ok();
}

Result<int> PartitionLog::enforce_retention() {
  ORDO_ASSERT(!closed_);
  int deleted = 0;
  // Segments wholly below an explicitly advanced log start.
  while (segments_.size() > 1 && std::next(segments_.begin())->first <= log_start_ &&
         segments_.begin()->second->next_offset() <= log_start_) {
    ORDO_TRY(delete_front_segment());
    ++deleted;
  }
  // Retention by size and time belongs to the delete policy (compact alone keeps everything the
  // cleaner keeps).
  const bool deletes = policy_deletes(config_.cleanup_policy);
  if (deletes && config_.retention_bytes >= 0) {
    int64_t total = size_bytes();
    while (segments_.size() > 1 &&
           total - segments_.begin()->second->size_bytes() >= config_.retention_bytes &&
           segments_.begin()->second->next_offset() <= high_watermark_) {
      total -= segments_.begin()->second->size_bytes();
      ORDO_TRY(delete_front_segment());
      ++deleted;
    }
  }
  if (deletes && config_.retention_ms >= 0) {
    int64_t cutoff = clock_.now_ms() - config_.retention_ms;
    auto expired = [&](const Segment& s) {
      return !s.empty() && s.retention_timestamp() < cutoff && s.next_offset() <= high_watermark_;
    };
    // Segments the cleaner emptied (compact,delete) go with the first expired one after them.
    auto front_expired = [&] {
      for (const auto& [base, seg] : segments_) {
        if (!seg->empty()) return expired(*seg);
      }
      return false;
    };
    while (front_expired()) {
      // An expired active segment is rolled so that it can go too.
      if (segments_.size() == 1) ORDO_TRY(roll(active().next_offset()));
      ORDO_TRY(delete_front_segment());
      ++deleted;
    }
  }
  if (deleted > 0) {
    ORDO_TRY(epochs_.truncate_from_start(log_start_));
    ORDO_TRY(persist_state());
  }
  producers_.truncate_before(log_start_);
  producers_.expire(clock_.now_ms(), config_.producer_id_expiration_ms);
  check_invariants();
  return deleted;
}

Result<void> PartitionLog::advance_log_start_offset(Offset offset) {
  ORDO_ASSERT(!closed_);
  if (offset > high_watermark_) {
    return make_error(Errc::out_of_range, "log start {} past the high watermark {}", offset,
                      high_watermark_);
  }
  if (offset <= log_start_) return ok();
  log_start_ = offset;
  ORDO_TRY(epochs_.truncate_from_start(log_start_));
  ORDO_TRY(persist_state());
  ORDO_TRY(enforce_retention());
  check_invariants();
  return ok();
}

Result<void> PartitionLog::truncate_to(Offset offset) {
  ORDO_ASSERT(!closed_);
  if (offset >= log_end_offset()) return ok();
  // Whether a producer loses batches (cheap: one look per producer).
  bool cut_producer_batches = false;
  for (int64_t id : producers_.producer_ids()) {
    if (producers_.find(id)->newest().last_offset >= offset) {
      cut_producer_batches = true;
      break;
    }
  }
  ++truncations_;
  const int64_t now = clock_.now_ms();
  if (offset <= segments_.begin()->first || offset < log_start_) {
    // Nothing survives: start again, empty, at offset.
    for (auto& [base, seg] : segments_) ORDO_TRY(seg->remove());
    segments_.clear();
    segments_.emplace(offset, ORDO_TRY(Segment::create(dir_, offset, config_, now)));
    log_start_ = offset;
  } else {
    while (segments_.rbegin()->first >= offset) {
      ORDO_TRY(segments_.rbegin()->second->remove());
      segments_.erase(std::prev(segments_.end()));
    }
    ORDO_TRY(active().truncate_to(offset));
    // The batch holding offset may have started below the log start (DeleteRecords inside a
    // batch); then the log is empty at its end, as in Kafka (log start = min(start, end)).
    log_start_ = std::min(log_start_, log_end_offset());
  }
  ORDO_TRY(active().sync_data());
  ORDO_TRY(fsync_dir(dir_));
  ORDO_TRY(epochs_.truncate_from_end(log_end_offset()));
  ORDO_TRY(remove_snapshots_after(dir_, log_end_offset()));
  if (cut_producer_batches) {
    // truncate_after forgets a producer whose retained batches were all cut, even when older
    // batches of it remain (a Raft follower cutting a divergent suffix of 5 or more of one
    // producer's batches): its next sequence, or a retry of a batch the log still holds, would
    // be refused once this replica leads. Rebuilt exactly instead, as Kafka does: the newest
    // snapshot at or below the new end, then the batch headers after it.
    producers_ = ProducerStateTable(kProducerStateOptions);
    snapshot_at_.reset();
    ORDO_TRY(load_producers());
  } else {
    producers_.truncate_after(log_end_offset());
  }
  high_watermark_ = std::min(high_watermark_, log_end_offset());
  flushed_ = std::min(flushed_, log_end_offset());
  if (first_dirty_ > log_end_offset()) {
    // Records appended again below the old value were never mapped: they must count as dirty
    // (a tombstone is dropped only once every older record of its key has been cleaned away).
    first_dirty_ = log_end_offset();
    ORDO_TRY(write_cleaner_checkpoint(dir_, first_dirty_));
  }
  recovery_point_ = std::min(recovery_point_, active().base_offset());
  ORDO_TRY(persist_state());
  check_invariants();
  return ok();
}

Result<void> PartitionLog::truncate_fully_and_start_at(Offset start) {
  ORDO_ASSERT(!closed_);
  ORDO_ASSERT(start >= Offset(0));
  ++truncations_;
  // The newest segments go first: a crash part way leaves a prefix of the log, whose epochs
  // and offsets stay consistent, and the next open finds the state it describes.
  while (!segments_.empty()) {
    ORDO_TRY(segments_.rbegin()->second->remove());
    segments_.erase(std::prev(segments_.end()));
  }
  segments_.emplace(start, ORDO_TRY(Segment::create(dir_, start, config_, clock_.now_ms())));
  log_start_ = start;
  ORDO_TRY(epochs_.truncate_from_end(Offset(0)));
  producers_ = ProducerStateTable(kProducerStateOptions);
  ORDO_TRY(remove_snapshots_after(dir_, Offset(-1)));
  snapshot_at_.reset();
  high_watermark_ = start;
  flushed_ = start;
  if (first_dirty_ != start) {
    first_dirty_ = start;
    ORDO_TRY(write_cleaner_checkpoint(dir_, first_dirty_));
  }
  recovery_point_ = start;
  ORDO_TRY(persist_state());
  check_invariants();
  return ok();
}

FlushTicket PartitionLog::prepare_flush() const {
  FlushTicket t;
  t.target = log_end_offset();
  t.active_base = active().base_offset();
  t.truncations = truncations_;
  for (auto it = segments_.lower_bound(recovery_point_); it != segments_.end(); ++it) {
    t.data_files.push_back(it->second->log_file());
    if (it->first != t.active_base) {
      t.metadata_paths.push_back(dir_ + "/" + segment_file_name(it->first, ".index"));
      t.metadata_paths.push_back(dir_ + "/" + segment_file_name(it->first, ".timeindex"));
    }
  }
  return t;
}

void PartitionLog::complete_flush(const FlushTicket& ticket) {
  // A truncation since the ticket was prepared may have replaced what it covered.
  if (closed_ || ticket.truncations != truncations_) return;
  flushed_ = std::max(flushed_, std::min(ticket.target, log_end_offset()));
  if (ticket.active_base > recovery_point_ && segments_.count(ticket.active_base)) {
    recovery_point_ = ticket.active_base;
    auto r = persist_state();
    if (!r) ORDO_LOG_WARN("{}: could not record recovery point: {}", dir_, r.error().to_string());
  }
  check_invariants();
}

bool PartitionLog::has_unflushed_sealed_segments() const {
  return recovery_point_ < active().base_offset();
}

Result<void> PartitionLog::flush() {
  FlushTicket t = prepare_flush();
  ORDO_TRY(execute_flush(t));
  complete_flush(t);
  return ok();
}

Result<void> PartitionLog::snapshot_producers(bool sync) {
  // Nothing was appended since the snapshot at the log end was written or loaded.
  if (snapshot_at_ == log_end_offset() &&
      file_exists(dir_ + "/" + snapshot_file_name(log_end_offset()))) {
    return ok();
  }
  snapshot_at_.reset();
  ORDO_TRY(write_snapshot_file(dir_, producers_, log_end_offset(), sync));
  snapshot_at_ = log_end_offset();
  ORDO_TRY(prune_snapshots(dir_, kProducerSnapshotsKept, sync));
  return ok();
}

Result<void> PartitionLog::load_producers() {
  // Snapshots past the log end describe batches a crash took away.
  ORDO_TRY(remove_snapshots_after(dir_, log_end_offset()));
  auto loaded = ORDO_TRY(read_latest_snapshot(dir_, log_end_offset(), kProducerStateOptions));
  for (const auto& why : loaded.skipped)
    ORDO_LOG_WARN("{}: producer snapshot skipped: {}", dir_, why);
  Offset from = log_start_;
  if (loaded.snapshot && loaded.snapshot->offset >= log_start_) {
    producers_ = std::move(loaded.snapshot->table);
    from = loaded.snapshot->offset;
    snapshot_at_ = from;
  }
  // The batch headers after the snapshot (whole batches are read; only headers are used).
  int64_t replayed = 0;
  std::vector<uint8_t> buf;
  while (from < log_end_offset()) {
    auto r = ORDO_TRY(read(ReadOptions{.start = from,
                                       .max_bytes = 1 << 20,
                                       .upper_bound = log_end_offset(),
                                       .min_one_batch = true}));
    if (r.slice.size == 0) break;
    buf.resize(size_t(r.slice.size));
    ORDO_TRY(r.slice.file->pread_exact(buf, r.slice.position));
    std::span<const uint8_t> rest(buf);
    while (!rest.empty()) {
      auto batch = ORDO_TRY(model::RecordBatchView::parse(rest, size_t(config_.max_batch_bytes)));
      rest = rest.subspan(batch.size_bytes());
      if (batch.last() < from) continue;
      producers_.apply_batch(batch);
      from = batch.last() + 1;
      ++replayed;
    }
  }
  producers_.truncate_before(log_start_);
  if (replayed > 0 || !producers_.empty()) {
    ORDO_LOG_DEBUG("{}: producer state of {} producers ({} batches replayed)", dir_,
                   producers_.size(), replayed);
  }
  return ok();
}

Result<void> PartitionLog::close() {
  if (closed_) return ok();
  ORDO_TRY(active().seal());
  ORDO_TRY(execute_flush(prepare_flush()));
  ORDO_TRY(active().sync_all());
  flushed_ = log_end_offset();
  recovery_point_ = active().base_offset();
  ORDO_TRY(persist_state());
  ORDO_TRY(snapshot_producers());
  ORDO_TRY(write_file_atomic(dir_ + "/" + std::string(kCleanShutdownFile), std::string_view("")));
  closed_ = true;
  return ok();
}

Result<void> PartitionLog::close_begin() {
  ORDO_ASSERT(!closed_);
  closed_ = true;
  ORDO_TRY(active().seal());
  ORDO_TRY(snapshot_producers(false));
  return ok();
}

Result<void> PartitionLog::close_end() {
  ORDO_ASSERT(closed_);
  flushed_ = log_end_offset();
  recovery_point_ = active().base_offset();
  ORDO_TRY(persist_state(false));
  const std::string marker = dir_ + "/" + std::string(kCleanShutdownFile);
  File f = ORDO_TRY(File::open(marker, O_WRONLY | O_CREAT | O_TRUNC));
  return ok();
}

Result<void> PartitionLog::close_and_remove() {
  closed_ = true;
  segments_.clear();
  std::error_code ec;
  fs::remove_all(dir_, ec);
  if (ec) return make_error(Errc::io, "remove {}: {}", dir_, ec.message());
  return ok();
}

}  // namespace ordo::storage
