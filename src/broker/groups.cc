#include "broker/groups.h"

#include <algorithm>
#include <chrono>
#include <future>

#include <asio/post.hpp>

#include "base/log.h"
#include "compression/records.h"
#include "model/record_batch.h"

namespace ordo::broker {

using coordinator::GroupState;
using protocol::ErrorCode;

int32_t java_string_hash(const std::string& utf8) {
  // Decode UTF-8 to code points, then hash the UTF-16 code units (surrogate pairs above
  // U+FFFF). Invalid bytes count as U+FFFD, as Java's decoder would produce.
  uint32_t h = 0;
  auto unit = [&h](uint32_t u) { h = 31 * h + (u & 0xFFFF); };
  size_t i = 0;
  while (i < utf8.size()) {
    auto c = static_cast<unsigned char>(utf8[i]);
    uint32_t cp = 0xFFFD;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 0x6) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      len = 4;
      cp = c & 0x07;
    } else {
      len = 0;
    }
    bool valid = len > 0 && i + len <= utf8.size();
    for (size_t k = 1; valid && k < len; ++k) {
      auto cc = static_cast<unsigned char>(utf8[i + k]);
      if ((cc >> 6) != 0x2) valid = false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!valid) {
      cp = 0xFFFD;
      len = 1;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      unit(0xD800 + (cp >> 10));
      unit(0xDC00 + (cp & 0x3FF));
    } else {
      unit(cp);
    }
    i += len;
  }
  return int32_t(h);
}

int32_t offsets_partition_for(const std::string& group_id, int32_t partitions) {
  ORDO_ASSERT(partitions > 0);
  // Kafka: Utils.abs(hash) % n, where abs(MIN_VALUE) is 0.
  int32_t h = java_string_hash(group_id);
  int32_t a = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
  return a % partitions;
}

namespace {

// The records of `buf` (whole batches of one partition's log) from offset `next` on, applied to
// the snapshot. Returns the offset after the last batch.
Result<Offset> apply_batches(std::span<const uint8_t> rest, Offset next,
                             coordinator::GroupStateSnapshot& snapshot) {
  while (!rest.empty()) {
    auto batch = ORDO_TRY(model::RecordBatchView::parse(rest));
    rest = rest.subspan(batch.size_bytes());
    if (batch.last() < next) continue;
    next = Offset(batch.last().value() + 1);
    if (batch.is_control()) continue;
    auto decoded = ORDO_TRY(compression::decode_batch(batch));
    for (const auto& rec : decoded.records) {
      if (!rec.key) return make_error(Errc::corrupt, "a record without a key");
      auto as_bytes = [](std::string_view v) {
        return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size());
      };
      std::optional<std::span<const uint8_t>> value;
      if (rec.value) value = as_bytes(*rec.value);
      if (auto a = snapshot.apply(as_bytes(*rec.key), value); !a) {
        return make_error(Errc::corrupt, "record at offset {}: {}",
                          batch.base_offset() + rec.offset_delta, a.error().message);
      }
    }
  }
  return next;
}

// The bytes of a read's slice.
Result<std::vector<uint8_t>> slice_bytes(const storage::ReadResult& r) {
  std::vector<uint8_t> buf(size_t(r.slice.size));
  if (!buf.empty()) ORDO_TRY(r.slice.file->pread_exact(buf, r.slice.position));
  return buf;
}

}  // namespace

// A load in progress (cluster mode): the partition, the slot epoch it belongs to, what it has
// replayed so far.
struct GroupService::Loader {
  int32_t partition = 0;
  uint64_t epoch = 0;
  int64_t barrier = -1;       // the log end seen once leading: the high watermark must reach it
  Offset next;                // the next offset to replay
  Offset end;                 // replay up to here (the high watermark once the barrier is passed)
  int32_t start_lookups = 0;  // times the log start was asked for (a read below it failed)
  coordinator::GroupStateSnapshot snapshot;
};

GroupService::GroupService(GroupServiceOptions options, cluster::PartitionService& partitions)
    : options_(options),
      partitions_(partitions),
      tick_timer_(ctx_),
      partition_count_(options.partitions),
      seed_(uint64_t(std::chrono::steady_clock::now().time_since_epoch().count())) {
  size_t slots = size_t(options.replicated ? kMaxOffsetsPartitions : options.partitions);
  slots_.resize(slots);
  status_ = std::make_unique<std::atomic<uint8_t>[]>(slots);
  for (size_t i = 0; i < slots; ++i) status_[i].store(uint8_t(Load::unloaded));
}

GroupService::~GroupService() {
  {
    std::lock_guard lock(live_->mu);
    live_->self = nullptr;
  }
  stop();
}

int32_t GroupService::partition_for(const std::string& group_id) const {
  return offsets_partition_for(group_id, partition_count_.load());
}

GroupService::Load GroupService::status(int32_t partition) const {
  if (partition < 0 || size_t(partition) >= slots_.size()) return Load::failed;
  return Load(status_[size_t(partition)].load());
}

void GroupService::set_status(int32_t partition, Load s) {
  status_[size_t(partition)].store(uint8_t(s));
}

Result<std::unique_ptr<GroupService>> GroupService::open(GroupServiceOptions options,
                                                         cluster::PartitionService& partitions) {
  ORDO_ASSERT(options.partitions > 0);
  auto s = std::unique_ptr<GroupService>(new GroupService(options, partitions));
  s->live_->self = s.get();
  if (!options.replicated) {
    size_t groups = 0;
    size_t offsets = 0;
    int64_t records = 0;
    for (int32_t p = 0; p < options.partitions; ++p) {
      coordinator::GroupStateSnapshot snapshot;
      if (auto r = s->load_partition(p, snapshot); !r) {
        ORDO_LOG_ERROR("{}-{}: not loaded, its groups are unavailable: {}", kOffsetsTopic, p,
                       r.error().to_string());
        s->set_status(p, Load::failed);
        continue;
      }
      s->install(p, snapshot);
      records += int64_t(snapshot.records_applied());
      groups += snapshot.groups().size();
      for (const auto& [g, o] : snapshot.offsets()) offsets += o.size();
    }
    ORDO_LOG_INFO("{}: loaded {} records: {} groups, {} committed offsets", kOffsetsTopic, records,
                  groups, offsets);
  }
  s->last_expiry_ms_ = options.clock->now_ms();
  s->work_.emplace(s->ctx_.get_executor());
  s->schedule_tick();
  GroupService* self = s.get();
  s->thread_ = std::thread([self] { self->ctx_.run(); });
  return s;
}

Result<void> GroupService::load_partition(int32_t partition,
                                          coordinator::GroupStateSnapshot& snapshot) {
  model::TopicPartition tp{kOffsetsTopic, partition};
  // Blocking reads: open() runs before the broker serves, on a thread that is no shard.
  auto read_sync = [this](const model::TopicPartition& tp, storage::ReadOptions o) {
    std::promise<Result<storage::ReadResult>> p;
    auto f = p.get_future();
    partitions_.read(tp, o, [&p](Result<storage::ReadResult> r) { p.set_value(std::move(r)); });
    return f.get();
  };
  auto first = read_sync(tp, storage::ReadOptions{.start = Offset(0)});
  if (!first && first.error().code == Errc::out_of_range) {
    // The log starts later than offset 0 (DeleteRecords): read from where it starts.
    std::promise<Result<cluster::OffsetAnswer>> p;
    auto f = p.get_future();
    partitions_.list_offset(tp, cluster::kEarliestOffset,
                            [&p](Result<cluster::OffsetAnswer> r) { p.set_value(std::move(r)); });
    auto start = ORDO_TRY(f.get());
    first =
        read_sync(tp, storage::ReadOptions{.start = Offset(std::max<int64_t>(start.offset, 0))});
  }
  if (!first) return first.error();
  Offset next = first->log_start_offset;
  Offset end = first->high_watermark;
  while (next < end) {
    auto r = ORDO_TRY(read_sync(tp, storage::ReadOptions{.start = next, .max_bytes = 1 << 20}));
    if (r.slice.size == 0) break;
    auto buf = ORDO_TRY(slice_bytes(r));
    next = ORDO_TRY(apply_batches(buf, next, snapshot));
  }
  return ok();
}

void GroupService::install(int32_t partition, const coordinator::GroupStateSnapshot& snapshot) {
  Slot& slot = slots_[size_t(partition)];
  slot.coordinator = std::make_unique<coordinator::GroupCoordinator>(
      options_.group, *options_.clock, seed_ + uint64_t(partition) * 0x9E3779B97F4A7C15ULL);
  size_t elsewhere = 0;
  for (const auto& [group_id, md] : snapshot.groups()) {
    if (partition_for(group_id) != partition) {
      ++elsewhere;
      continue;
    }
    slot.coordinator->restore(group_id, md);
    if (md.members.empty() && md.state_timestamp_ms >= 0) {
      empty_since_ms_[group_id] = md.state_timestamp_ms;
    }
  }
  for (const auto& [group_id, o] : snapshot.offsets()) {
    if (partition_for(group_id) != partition) {
      ++elsewhere;
      continue;
    }
    offsets_[group_id] = o;
  }
  if (elsewhere > 0) {
    ORDO_LOG_WARN("{}-{}: {} groups' records belong to other partitions; ignored", kOffsetsTopic,
                  partition, elsewhere);
  }
  slot.coordinator->set_state_observer(
      [this](const std::string& id, GroupState state, int32_t generation) {
        on_state_change(id, state, generation);
      });
  set_status(partition, Load::loaded);
}

// ---- cluster mode: loading and unloading with the partitions' leadership ----

void GroupService::on_partition_leader(int32_t partition, cluster::NodeId leader, int32_t term) {
  if (stopped_ || !options_.replicated) return;
  asio::post(ctx_, [this, partition, leader, term] { handle_leader(partition, leader, term); });
}

void GroupService::refresh_partition_count() {
  if (options_.table == nullptr) return;
  auto table = options_.table->snapshot();
  const cluster::TopicEntry* t = table->find(kOffsetsTopic);
  if (t == nullptr || t->partitions.empty()) return;
  int32_t n = int32_t(t->partitions.size());
  if (n == partition_count_.load()) return;
  // Another count moves groups between partitions: what is loaded is no longer right.
  for (int32_t p = 0; p < int32_t(slots_.size()); ++p) {
    if (status(p) != Load::unloaded) unload(p, "the topic's partition count changed");
  }
  if (n > kMaxOffsetsPartitions) {
    ORDO_LOG_ERROR("{} has {} partitions: groups of partitions from {} on are not served",
                   kOffsetsTopic, n, kMaxOffsetsPartitions);
  }
  partition_count_.store(n);
}

void GroupService::handle_leader(int32_t partition, cluster::NodeId leader, int32_t term) {
  if (stopping_) return;
  refresh_partition_count();
  if (partition < 0 || size_t(partition) >= slots_.size()) return;
  Slot& slot = slots_[size_t(partition)];
  Load now = status(partition);
  if (leader == options_.self) {
    if (now != Load::unloaded && slot.term == term) return;
    if (now != Load::unloaded) unload(partition, "a new leader term");
    start_load(partition, term);
  } else if (now != Load::unloaded) {
    unload(partition, "this node stopped leading it");
  }
}

void GroupService::start_load(int32_t partition, int32_t term) {
  Slot& slot = slots_[size_t(partition)];
  slot.term = term;
  ++slot.epoch;
  set_status(partition, Load::loading);
  ORDO_LOG_INFO("{}-{}: leader in term {}: loading its groups", kOffsetsTopic, partition, term);
  auto load = std::make_shared<Loader>();
  load->partition = partition;
  load->epoch = slot.epoch;
  load_step(std::move(load));
}

// One step of a load, on executor(): read the log's ends until the high watermark has reached
// the barrier, then its batches up to the high watermark, then install.
void GroupService::load_step(std::shared_ptr<Loader> load) {
  if (load->barrier < 0 || load->end < Offset(load->barrier)) {
    Offset start = load->next;  // 0, or the log start once known
    return load_read(std::move(load), storage::ReadOptions{.start = start, .max_bytes = 1});
  }
  if (load->next < load->end) {
    Offset start = load->next;
    return load_read(
        std::move(load),
        storage::ReadOptions{.start = start, .max_bytes = 1 << 20, .upper_bound = load->end});
  }
  int32_t p = load->partition;
  install(p, load->snapshot);
  size_t offsets = 0;
  for (const auto& [g, o] : load->snapshot.offsets()) offsets += o.size();
  ORDO_LOG_INFO("{}-{}: loaded {} records up to offset {}: {} groups, {} committed offsets",
                kOffsetsTopic, p, load->snapshot.records_applied(), load->end.value(),
                load->snapshot.groups().size(), offsets);
}

void GroupService::load_read(std::shared_ptr<Loader> load, storage::ReadOptions options) {
  model::TopicPartition tp{kOffsetsTopic, load->partition};
  bool ends_only = load->barrier < 0 || load->end < Offset(load->barrier);
  auto ex = executor();
  partitions_.read(tp, options, [this, ex, load, ends_only](Result<storage::ReadResult> r) mutable {
    asio::post(ex, [this, load = std::move(load), ends_only, r = std::move(r)]() mutable {
      int32_t p = load->partition;
      if (stopping_ || slots_[size_t(p)].epoch != load->epoch || status(p) != Load::loading) {
        return;  // unloaded meanwhile
      }
      auto fail = [&](const Error& e) {
        ORDO_LOG_ERROR("{}-{}: not loaded, its groups are unavailable until its leader changes: {}",
                       kOffsetsTopic, p, e.to_string());
        set_status(p, Load::failed);
      };
      if (!r && ends_only && r.error().code == Errc::out_of_range && load->start_lookups < 3) {
        // The log starts later than offset 0 (DeleteRecords): ask where, then read there.
        ++load->start_lookups;
        return find_log_start(std::move(load));
      }
      if (!r) return fail(r.error());
      if (ends_only) {
        // Leading already (the hook came after the election): every committed record is below
        // this log end, and once the high watermark passes it they are all known committed.
        if (load->barrier < 0) {
          load->barrier = r->log_end_offset.value();
          load->next = r->log_start_offset;
        }
        load->end = r->high_watermark;
        if (load->end < Offset(load->barrier)) {
          // The slot owns the timer (not the load, which its handler holds): it goes before
          // the io_context, whatever is pending at shutdown.
          auto& timer = slots_[size_t(p)].retry;
          if (!timer) timer = std::make_unique<asio::steady_timer>(ctx_);
          timer->expires_after(std::chrono::milliseconds(options_.load_retry_ms));
          timer->async_wait([this, load](const std::error_code& ec) mutable {
            if (!ec) load_step(std::move(load));
          });
          return;
        }
        return load_step(std::move(load));
      }
      if (r->slice.size == 0) {
        load->end = load->next;  // nothing more below the high watermark
        return load_step(std::move(load));
      }
      auto buf = slice_bytes(*r);
      if (!buf) return fail(buf.error());
      auto next = apply_batches(*buf, load->next, load->snapshot);
      if (!next) return fail(next.error());
      load->next = *next;
      load_step(std::move(load));
    });
  });
}

void GroupService::find_log_start(std::shared_ptr<Loader> load) {
  model::TopicPartition tp{kOffsetsTopic, load->partition};
  auto ex = executor();
  partitions_.list_offset(
      tp, cluster::kEarliestOffset, [this, ex, load](Result<cluster::OffsetAnswer> r) mutable {
        asio::post(ex, [this, load = std::move(load), r = std::move(r)]() mutable {
          int32_t p = load->partition;
          if (stopping_ || slots_[size_t(p)].epoch != load->epoch || status(p) != Load::loading) {
            return;
          }
          if (!r) {
            ORDO_LOG_ERROR(
                "{}-{}: not loaded, its groups are unavailable until its leader "
                "changes: {}",
                kOffsetsTopic, p, r.error().to_string());
            return set_status(p, Load::failed);
          }
          load->next = Offset(std::max<int64_t>(r->offset, 0));
          load_step(std::move(load));
        });
      });
}

void GroupService::unload(int32_t partition, const char* why) {
  Slot& slot = slots_[size_t(partition)];
  ++slot.epoch;
  slot.term = -1;
  set_status(partition, Load::unloaded);
  size_t groups = 0;
  if (slot.coordinator) {
    groups = slot.coordinator->group_count();
    slot.coordinator->unload();  // waiting JoinGroup/SyncGroup: NOT_COORDINATOR
    slot.coordinator.reset();
  }
  std::erase_if(offsets_,
                [&](const auto& entry) { return partition_for(entry.first) == partition; });
  std::erase_if(empty_since_ms_,
                [&](const auto& entry) { return partition_for(entry.first) == partition; });
  ORDO_LOG_INFO("{}-{}: unloaded ({} groups): {}", kOffsetsTopic, partition, groups, why);
}

bool GroupService::begin_topic_creation() {
  return !creating_topic_.exchange(true);
}

void GroupService::end_topic_creation(ErrorCode error, const std::string& message) {
  creating_topic_.store(false);
  if (error == ErrorCode::none) {
    ORDO_LOG_INFO("{}: created (first FindCoordinator)", kOffsetsTopic);
    return;
  }
  if (error == ErrorCode::topic_already_exists) return;
  // Clients retry FindCoordinator often: one line every 10 s at most.
  int64_t now = options_.clock->now_ms();
  int64_t last = creation_logged_ms_.load();
  if (now - last >= 10'000 && creation_logged_ms_.compare_exchange_strong(last, now)) {
    ORDO_LOG_WARN("{}: not created yet, groups wait: {}", kOffsetsTopic, message);
  }
}

// ---- serving ----

void GroupService::schedule_tick() {
  tick_timer_.expires_after(std::chrono::milliseconds(options_.tick_ms));
  tick_timer_.async_wait([this](const std::error_code& ec) {
    if (ec || stopping_) return;
    for (auto& slot : slots_) {
      if (slot.coordinator) slot.coordinator->tick();
    }
    int64_t now = options_.clock->now_ms();
    if (now - last_expiry_ms_ >= options_.retention_check_interval_ms) {
      last_expiry_ms_ = now;
      expire_offsets();
    }
    schedule_tick();
  });
}

ErrorCode GroupService::availability(const std::string& group_id) const {
  if (stopping_) return ErrorCode::coordinator_not_available;
  switch (status(partition_for(group_id))) {
    case Load::loaded:
      return ErrorCode::none;
    case Load::loading:
      return ErrorCode::coordinator_load_in_progress;
    case Load::failed:
      return ErrorCode::coordinator_not_available;
    case Load::unloaded:
      break;
  }
  return options_.replicated ? ErrorCode::not_coordinator : ErrorCode::coordinator_not_available;
}

coordinator::GroupCoordinator& GroupService::coordinator(const std::string& group_id) {
  Slot& slot = slots_[size_t(partition_for(group_id))];
  ORDO_ASSERT_MSG(slot.coordinator != nullptr, "the group's partition is not loaded");
  return *slot.coordinator;
}

std::vector<coordinator::GroupListing> GroupService::list_groups() const {
  std::vector<coordinator::GroupListing> out;
  for (const auto& slot : slots_) {
    if (!slot.coordinator) continue;
    auto some = slot.coordinator->list();
    out.insert(out.end(), std::make_move_iterator(some.begin()),
               std::make_move_iterator(some.end()));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.group_id < b.group_id; });
  return out;
}

GroupState GroupService::state(const std::string& group_id) const {
  int32_t p = partition_for(group_id);
  if (size_t(p) >= slots_.size() || !slots_[size_t(p)].coordinator) return GroupState::dead;
  return slots_[size_t(p)].coordinator->state(group_id);
}

void GroupService::append(const std::string& group_id, RecordList records,
                          std::function<void(ErrorCode)> done) {
  if (records.empty()) return done(ErrorCode::none);
  int64_t now = options_.clock->now_ms();
  model::RecordBatchBuilder builder;
  auto text = [](const coordinator::RecordBytes& b) { return std::string(b.begin(), b.end()); };
  for (const auto& [key, value] : records) {
    model::RecordInput in;
    in.key = text(key);
    if (value) in.value = text(*value);
    in.timestamp_ms = now;
    builder.add(std::move(in));
  }
  int32_t p = partition_for(group_id);
  uint64_t epoch = slots_[size_t(p)].epoch;
  model::TopicPartition tp{kOffsetsTopic, p};
  partitions_.append(
      tp, builder.build(), cluster::Consistency::quorum, storage::AppendOptions{},
      [this, live = live_, done = std::move(done), tp,
       epoch](Result<storage::AppendResult> r) mutable {
        ErrorCode e = ErrorCode::none;
        if (!r) {
          // Errc::closed: this node lost the partition's leadership (or stops); the client
          // finds the new coordinator. Anything else: the coordinator cannot write now.
          bool moved = r.error().code == Errc::closed || r.error().code == Errc::not_found;
          e = moved ? ErrorCode::not_coordinator : ErrorCode::coordinator_not_available;
          if (moved) {
            ORDO_LOG_DEBUG("{}: append failed: {}", tp.to_string(), r.error().to_string());
          } else {
            ORDO_LOG_ERROR("{}: append failed: {}", tp.to_string(), r.error().to_string());
          }
        }
        std::lock_guard lock(live->mu);
        if (live->self == nullptr) return;  // the service is gone: nobody waits for this
        asio::post(executor(), [this, done = std::move(done), e, tp, epoch]() mutable {
          // Unloaded (or loaded again) meanwhile: the state this write was for is gone.
          if (slots_[size_t(tp.partition)].epoch != epoch) e = ErrorCode::not_coordinator;
          done(e);
        });
      });
}

void GroupService::commit(const std::string& group_id, std::vector<Commit> commits,
                          std::function<void(ErrorCode)> done) {
  RecordList records;
  for (const auto& c : commits) {
    auto key = coordinator::encode_offset_commit_key({group_id, c.topic, c.partition});
    auto value = coordinator::encode_offset_commit_value(c.value);
    if (!key || !value) return done(ErrorCode::invalid_request);
    records.emplace_back(std::move(*key), std::move(*value));
  }
  append(group_id, std::move(records),
         [this, group_id, commits = std::move(commits), done = std::move(done)](ErrorCode e) {
           if (e == ErrorCode::none) {
             auto& mine = offsets_[group_id];
             for (const auto& c : commits) mine[{c.topic, c.partition}] = c.value;
           }
           done(e);
         });
}

void GroupService::delete_offsets(const std::string& group_id,
                                  std::vector<TopicPartition> partitions,
                                  std::function<void(ErrorCode)> done) {
  RecordList records;
  for (const auto& [topic, partition] : partitions) {
    auto key = coordinator::encode_offset_commit_key({group_id, topic, partition});
    if (!key) return done(ErrorCode::invalid_request);
    records.emplace_back(std::move(*key), std::nullopt);
  }
  append(group_id, std::move(records),
         [this, group_id, partitions = std::move(partitions), done = std::move(done)](ErrorCode e) {
           if (e == ErrorCode::none) {
             auto it = offsets_.find(group_id);
             if (it != offsets_.end()) {
               for (const auto& tp : partitions) it->second.erase(tp);
               if (it->second.empty()) offsets_.erase(it);
             }
           }
           done(e);
         });
}

void GroupService::delete_group(const std::string& group_id, std::function<void(ErrorCode)> done) {
  GroupState state = this->state(group_id);
  bool has_offsets = offsets_.count(group_id) == 1;
  if (state == GroupState::dead && !has_offsets) return done(ErrorCode::group_id_not_found);
  if (state != GroupState::dead && state != GroupState::empty) {
    return done(ErrorCode::non_empty_group);
  }
  RecordList records;
  if (auto it = offsets_.find(group_id); it != offsets_.end()) {
    for (const auto& [tp, v] : it->second) {
      auto key = coordinator::encode_offset_commit_key({group_id, tp.first, tp.second});
      if (key) records.emplace_back(std::move(*key), std::nullopt);
    }
  }
  if (auto key = coordinator::encode_group_metadata_key({group_id})) {
    records.emplace_back(std::move(*key), std::nullopt);
  }
  append(group_id, std::move(records), [this, group_id, done = std::move(done)](ErrorCode e) {
    if (e == ErrorCode::none) {
      offsets_.erase(group_id);
      empty_since_ms_.erase(group_id);
      // It may have gained members while the tombstones were written: then it stays.
      if (this->state(group_id) == GroupState::empty) {
        coordinator(group_id).delete_group(group_id);
      }
    }
    done(e);
  });
}

const GroupService::GroupOffsets* GroupService::offsets(const std::string& group_id) const {
  auto it = offsets_.find(group_id);
  return it == offsets_.end() ? nullptr : &it->second;
}

std::vector<std::string> GroupService::offset_only_groups() const {
  std::vector<std::string> out;
  for (const auto& [id, o] : offsets_) {
    if (state(id) == GroupState::dead) out.push_back(id);
  }
  return out;
}

void GroupService::on_state_change(const std::string& group_id, GroupState state,
                                   int32_t generation) {
  if (stopping_) return;
  if (state == GroupState::empty) empty_since_ms_[group_id] = options_.clock->now_ms();
  if (state == GroupState::stable) empty_since_ms_.erase(group_id);
  if (state != GroupState::stable && state != GroupState::empty) return;
  auto d = coordinator(group_id).describe(group_id);
  coordinator::GroupMetadataValue v;
  v.protocol_type = d.protocol_type;
  v.generation = generation;
  if (!d.protocol_name.empty()) v.protocol_name = d.protocol_name;
  if (!d.leader_id.empty()) v.leader_id = d.leader_id;
  v.state_timestamp_ms = options_.clock->now_ms();
  for (const auto& m : d.members) {
    coordinator::GroupMemberRecord r;
    r.member_id = m.member_id;
    r.group_instance_id = m.group_instance_id;
    r.client_id = m.client_id;
    r.client_host = m.client_host;
    r.session_timeout_ms = m.session_timeout_ms;
    r.rebalance_timeout_ms = m.rebalance_timeout_ms;
    r.subscription = m.metadata;
    r.assignment = m.assignment;
    v.members.push_back(std::move(r));
  }
  auto key = coordinator::encode_group_metadata_key({group_id});
  auto value = coordinator::encode_group_metadata_value(v);
  if (!key || !value) {
    ORDO_LOG_WARN("group {}: metadata not written: {}", group_id,
                  (!key ? key.error() : value.error()).to_string());
    return;
  }
  RecordList records;
  records.emplace_back(std::move(*key), std::move(*value));
  append(group_id, std::move(records), [group_id](ErrorCode e) {
    if (e != ErrorCode::none) ORDO_LOG_WARN("group {}: metadata not written", group_id);
  });
}

void GroupService::expire_offsets(std::function<void()> done) {
  int64_t now = options_.clock->now_ms();
  // done runs when the last deletion finished (the pass itself holds one count).
  auto pending = std::make_shared<int>(1);
  auto finish_one = [pending, done = std::move(done)] {
    if (--*pending == 0) done();
  };
  for (const auto& [group_id, offsets] : offsets_) {
    GroupState state = this->state(group_id);
    if (state != GroupState::empty && state != GroupState::dead) continue;
    auto since = empty_since_ms_.find(group_id);
    std::vector<TopicPartition> expired;
    for (const auto& [tp, v] : offsets) {
      bool due = false;
      if (v.expire_timestamp_ms >= 0) {
        due = v.expire_timestamp_ms <= now;  // a v1-v4 commit's own retention
      } else {
        int64_t base = v.commit_timestamp_ms;
        if (since != empty_since_ms_.end()) base = std::max(base, since->second);
        due = base + options_.retention_ms <= now;
      }
      if (due) expired.push_back(tp);
    }
    if (expired.empty()) continue;
    ORDO_LOG_INFO("group {}: {} committed offsets expired", group_id, expired.size());
    bool all = expired.size() == offsets.size();
    std::string id = group_id;
    ++*pending;
    delete_offsets(id, std::move(expired), [this, id, all, finish_one](ErrorCode e) {
      // An Empty group whose offsets are all gone is removed, as Kafka does.
      if (e == ErrorCode::none && all && this->state(id) == GroupState::empty) {
        delete_group(id, [finish_one](ErrorCode) { finish_one(); });
        return;
      }
      finish_one();
    });
  }
  finish_one();
}

void GroupService::begin_shutdown() {
  asio::post(ctx_, [this] {
    stopping_ = true;
    tick_timer_.cancel();
    // Waiting JoinGroup/SyncGroup get NOT_COORDINATOR; the state stays (and the slots' epochs:
    // appends in flight are answered as they complete).
    for (auto& slot : slots_) {
      if (slot.coordinator) slot.coordinator->unload();
    }
  });
}

void GroupService::stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    begin_shutdown();  // a no-op for the coordinator if it already ran
    work_.reset();
    thread_.join();
  }
}

}  // namespace ordo::broker
