#include "broker/groups.h"

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

GroupService::GroupService(GroupServiceOptions options, cluster::PartitionService& partitions)
    : options_(options),
      partitions_(partitions),
      tick_timer_(ctx_),
      coordinator_(options.group, *options.clock,
                   uint64_t(std::chrono::steady_clock::now().time_since_epoch().count())) {}

GroupService::~GroupService() {
  stop();
}

int32_t GroupService::partition_for(const std::string& group_id) const {
  // Kafka: Utils.abs(hash) % n, where abs(MIN_VALUE) is 0.
  int32_t h = java_string_hash(group_id);
  int32_t a = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
  return a % options_.partitions;
}

Result<std::unique_ptr<GroupService>> GroupService::open(GroupServiceOptions options,
                                                         cluster::PartitionService& partitions) {
  ORDO_ASSERT(options.partitions > 0);
  auto s = std::unique_ptr<GroupService>(new GroupService(options, partitions));
  s->failed_partitions_.assign(size_t(options.partitions), false);
  coordinator::GroupStateSnapshot snapshot;
  for (int32_t p = 0; p < options.partitions; ++p) {
    if (auto r = s->load_partition(p, snapshot); !r) {
      ORDO_LOG_ERROR("{}-{}: not loaded, its groups are unavailable: {}", kOffsetsTopic, p,
                     r.error().to_string());
      s->failed_partitions_[size_t(p)] = true;
    }
  }
  for (const auto& [group_id, md] : snapshot.groups()) {
    s->coordinator_.restore(group_id, md);
    if (md.members.empty() && md.state_timestamp_ms >= 0) {
      s->empty_since_ms_[group_id] = md.state_timestamp_ms;
    }
  }
  s->offsets_ = snapshot.offsets();
  size_t offsets = 0;
  for (const auto& [g, o] : s->offsets_) offsets += o.size();
  ORDO_LOG_INFO("{}: loaded {} records: {} groups, {} committed offsets", kOffsetsTopic,
                snapshot.records_applied(), snapshot.groups().size(), offsets);
  GroupService* self = s.get();
  s->coordinator_.set_state_observer(
      [self](const std::string& id, GroupState state, int32_t generation) {
        self->on_state_change(id, state, generation);
      });
  s->last_expiry_ms_ = options.clock->now_ms();
  s->work_.emplace(s->ctx_.get_executor());
  s->schedule_tick();
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
  auto first = ORDO_TRY(read_sync(tp, storage::ReadOptions{.start = Offset(0)}));
  Offset next = first.log_start_offset;
  Offset end = first.high_watermark;
  std::vector<uint8_t> buf;
  while (next < end) {
    auto r = ORDO_TRY(read_sync(tp, storage::ReadOptions{.start = next, .max_bytes = 1 << 20}));
    if (r.slice.size == 0) break;
    buf.resize(size_t(r.slice.size));
    ORDO_TRY(r.slice.file->pread_exact(buf, r.slice.position));
    std::span<const uint8_t> rest(buf);
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
  }
  return ok();
}

void GroupService::schedule_tick() {
  tick_timer_.expires_after(std::chrono::milliseconds(options_.tick_ms));
  tick_timer_.async_wait([this](const std::error_code& ec) {
    if (ec || stopping_) return;
    coordinator_.tick();
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
  if (failed_partitions_[size_t(partition_for(group_id))]) {
    return ErrorCode::coordinator_not_available;
  }
  return ErrorCode::none;
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
  model::TopicPartition tp{kOffsetsTopic, partition_for(group_id)};
  auto ex = executor();
  partitions_.append(tp, builder.build(), cluster::Consistency::quorum, storage::AppendOptions{},
                     [ex, done = std::move(done), tp](Result<storage::AppendResult> r) mutable {
                       ErrorCode e = ErrorCode::none;
                       if (!r) {
                         ORDO_LOG_ERROR("{}: append failed: {}", tp.to_string(),
                                        r.error().to_string());
                         e = ErrorCode::coordinator_not_available;
                       }
                       asio::post(ex, [done = std::move(done), e] { done(e); });
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
  GroupState state = coordinator_.state(group_id);
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
      if (coordinator_.state(group_id) == GroupState::empty) coordinator_.delete_group(group_id);
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
    if (coordinator_.state(id) == GroupState::dead) out.push_back(id);
  }
  return out;
}

void GroupService::on_state_change(const std::string& group_id, GroupState state,
                                   int32_t generation) {
  if (stopping_) return;
  if (state == GroupState::empty) empty_since_ms_[group_id] = options_.clock->now_ms();
  if (state == GroupState::stable) empty_since_ms_.erase(group_id);
  if (state != GroupState::stable && state != GroupState::empty) return;
  auto d = coordinator_.describe(group_id);
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
    GroupState state = coordinator_.state(group_id);
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
      if (e == ErrorCode::none && all && coordinator_.state(id) == GroupState::empty) {
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
    coordinator_.unload();
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
