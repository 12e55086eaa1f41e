#include "cluster/raft_storage.h"

#include <algorithm>
#include <random>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "base/log.h"
#include "model/record_batch.h"

namespace ordo::cluster {

namespace {

// ---- the hard-state file (docs/replication-storage.md) ---------------------------------------
constexpr uint32_t kStateMagic = 0x4F524653;  // "ORFS": Ordo Raft state
constexpr uint16_t kStateVersion = 1;
constexpr size_t kStateHeader = 16;
constexpr size_t kMaxStateBody = size_t(1) << 20;
constexpr uint32_t kMaxConfigs = 64;
constexpr uint32_t kMaxMembers = 1024;
constexpr size_t kMemberBytes = 12;  // id int32, incarnation uint64

// A bounds-checked big-endian reader over one buffer.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  size_t left() const { return ok_ ? in_.size() - pos_ : 0; }
  uint16_t u16() { return take(2) ? load_be16(in_.data() + pos_ - 2) : 0; }
  uint32_t u32() { return take(4) ? load_be32(in_.data() + pos_ - 4) : 0; }
  uint64_t u64() { return take(8) ? load_be64(in_.data() + pos_ - 8) : 0; }

 private:
  bool take(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.resize(out.size() + 2);
  store_be16(out.data() + out.size() - 2, v);
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  out.resize(out.size() + 4);
  store_be32(out.data() + out.size() - 4, v);
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  out.resize(out.size() + 8);
  store_be64(out.data() + out.size() - 8, v);
}

void put_members(std::vector<uint8_t>& out, const std::vector<raft::Member>& members) {
  put32(out, uint32_t(members.size()));
  for (const auto& m : members) {
    put32(out, uint32_t(m.id));
    put64(out, m.incarnation);
  }
}

std::optional<std::vector<raft::Member>> get_members(Reader& in) {
  uint32_t n = in.u32();
  if (!in.ok() || n > kMaxMembers || size_t(n) * kMemberBytes > in.left()) return std::nullopt;
  std::vector<raft::Member> members(n);
  for (auto& m : members) {
    m.id = int32_t(in.u32());
    m.incarnation = in.u64();
  }
  if (!in.ok()) return std::nullopt;
  return members;
}

void put_config(std::vector<uint8_t>& out, const raft::Config& config) {
  put_members(out, config.voters);
  put_members(out, config.learners);
}

std::optional<raft::Config> get_config(Reader& in) {
  raft::Config c;
  auto voters = get_members(in);
  if (!voters) return std::nullopt;
  auto learners = get_members(in);
  if (!learners) return std::nullopt;
  c.voters = std::move(*voters);
  c.learners = std::move(*learners);
  if (!c.valid()) return std::nullopt;
  return c;
}

uint64_t random_incarnation() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t(rd()) << 32) ^ uint64_t(rd());
  return v;
}

}  // namespace

std::vector<uint8_t> encode_state_file(const RaftStateFile& file) {
  std::vector<uint8_t> body;
  put64(body, file.incarnation);
  put32(body, uint32_t(file.state.term));
  put32(body, uint32_t(file.state.voted_for.id));
  put64(body, file.state.voted_for.incarnation);
  put32(body, uint32_t(file.term_before));
  put64(body, uint64_t(file.base_before));
  put32(body, uint32_t(file.state.configs.size()));
  for (const auto& c : file.state.configs) {
    put64(body, uint64_t(c.offset));
    put_config(body, c.config);
  }
  put64(body, uint64_t(file.state.reset_start));
  put32(body, uint32_t(file.state.reset_term));
  ORDO_ASSERT(body.size() <= kMaxStateBody);
  std::vector<uint8_t> out;
  out.reserve(kStateHeader + body.size());
  put32(out, kStateMagic);
  put16(out, kStateVersion);
  put16(out, 0);
  put32(out, uint32_t(body.size()));
  uint32_t crc = crc32c(0, out.data(), out.size());
  crc = crc32c(crc, body.data(), body.size());
  put32(out, crc);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<RaftStateFile> decode_state_file(std::span<const uint8_t> bytes) {
  if (bytes.size() < kStateHeader) {
    return make_error(Errc::corrupt, "raft state file of {} bytes (header is {})", bytes.size(),
                      kStateHeader);
  }
  const uint32_t magic = load_be32(bytes.data());
  const uint16_t version = load_be16(bytes.data() + 4);
  const uint16_t flags = load_be16(bytes.data() + 6);
  const uint32_t length = load_be32(bytes.data() + 8);
  const uint32_t stored_crc = load_be32(bytes.data() + 12);
  if (magic != kStateMagic) return make_error(Errc::corrupt, "raft state file: bad magic");
  if (length > kMaxStateBody || bytes.size() != kStateHeader + length) {
    return make_error(Errc::corrupt, "raft state file: {} bytes, its header says {}", bytes.size(),
                      kStateHeader + size_t(length));
  }
  uint32_t crc = crc32c(0, bytes.data(), 12);
  crc = crc32c(crc, bytes.data() + kStateHeader, length);
  if (crc != stored_crc) {
    return make_error(Errc::corrupt, "raft state file: CRC {:08x}, computed {:08x}", stored_crc,
                      crc);
  }
  // Checked after the CRC: a flipped version byte is corruption, a real newer version is not.
  if (version != kStateVersion || flags != 0) {
    return make_error(Errc::corrupt, "raft state file: version {} flags {} (expected {} 0)",
                      version, flags, kStateVersion);
  }
  Reader in(bytes.subspan(kStateHeader));
  RaftStateFile f;
  f.incarnation = in.u64();
  f.state.term = int32_t(in.u32());
  f.state.voted_for.id = int32_t(in.u32());
  f.state.voted_for.incarnation = in.u64();
  f.term_before = int32_t(in.u32());
  f.base_before = int64_t(in.u64());
  uint32_t configs = in.u32();
  if (!in.ok() || configs == 0 || configs > kMaxConfigs) {
    return make_error(Errc::corrupt, "raft state file: {} configurations", configs);
  }
  for (uint32_t i = 0; i < configs; ++i) {
    raft::ConfigAt at;
    at.offset = int64_t(in.u64());
    auto config = get_config(in);
    if (!config) return make_error(Errc::corrupt, "raft state file: configuration {} malformed", i);
    if (at.offset < -1 ||
        (!f.state.configs.empty() && at.offset <= f.state.configs.back().offset)) {
      return make_error(Errc::corrupt, "raft state file: configuration {} at offset {}", i,
                        at.offset);
    }
    at.config = std::move(*config);
    f.state.configs.push_back(std::move(at));
  }
  f.state.reset_start = int64_t(in.u64());
  f.state.reset_term = int32_t(in.u32());
  if (!in.ok()) return make_error(Errc::corrupt, "raft state file: truncated");
  if (!in.done()) return make_error(Errc::corrupt, "raft state file: trailing bytes");
  if (f.incarnation == 0 || f.state.term < 0 || f.base_before < -1 || f.state.reset_start < -1) {
    return make_error(Errc::corrupt, "raft state file: incarnation {} term {} base_before {}",
                      f.incarnation, f.state.term, f.base_before);
  }
  return f;
}

// ---- control entries --------------------------------------------------------------------------

std::vector<uint8_t> encode_control_entry(const raft::Entry& entry, int64_t timestamp_ms) {
  ORDO_ASSERT(entry.kind != raft::EntryKind::data);
  ORDO_ASSERT(entry.base == entry.last);
  std::vector<uint8_t> key;
  put16(key, 0);  // version
  put16(key, uint16_t(entry.kind == raft::EntryKind::noop ? kControlNoop : kControlConfig));
  std::vector<uint8_t> value;
  put16(value, 0);  // version
  if (entry.kind == raft::EntryKind::config) {
    ORDO_ASSERT(entry.config.has_value());
    put_config(value, *entry.config);
  }
  model::RecordBatchOptions options;
  options.base_offset = Offset(entry.base);
  options.leader_epoch = entry.term;
  options.control = true;
  model::RecordBatchBuilder builder(options);
  builder.add(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()),
              std::string_view(reinterpret_cast<const char*>(value.data()), value.size()),
              timestamp_ms);
  return builder.build();
}

Result<raft::Entry> decode_entry(std::vector<uint8_t> batch) {
  auto view = model::RecordBatchView::parse(batch);
  if (!view) return make_error(Errc::corrupt, "raft entry: {}", view.error().message);
  if (view->size_bytes() != batch.size()) {
    return make_error(Errc::corrupt, "raft entry: {} bytes hold a batch of {}", batch.size(),
                      view->size_bytes());
  }
  raft::Entry e;
  e.term = view->leader_epoch();
  e.base = view->base_offset();
  e.last = view->base_offset() + view->last_offset_delta();
  if (view->is_control() && view->compression() == model::Compression::none &&
      view->record_count() == 1) {
    auto records = model::decode_records(*view);
    if (!records) return make_error(Errc::corrupt, "raft entry: {}", records.error().message);
    const auto& r = records->front();
    if (r.key && r.key->size() == 4 && r.value) {
      const auto* k = reinterpret_cast<const uint8_t*>(r.key->data());
      const int16_t version = int16_t(load_be16(k));
      const int16_t type = int16_t(load_be16(k + 2));
      if (version == 0 && (type == kControlNoop || type == kControlConfig)) {
        Reader in(std::span(reinterpret_cast<const uint8_t*>(r.value->data()), r.value->size()));
        if (in.u16() != 0 || !in.ok()) {
          return make_error(Errc::corrupt, "raft entry at {}: control value version", e.base);
        }
        if (type == kControlNoop) {
          e.kind = raft::EntryKind::noop;
        } else {
          auto config = get_config(in);
          if (!config) return make_error(Errc::corrupt, "raft entry at {}: bad config", e.base);
          e.kind = raft::EntryKind::config;
          e.config = std::move(*config);
        }
        if (!in.done())
          return make_error(Errc::corrupt, "raft entry at {}: trailing bytes", e.base);
      }
    }
  }
  e.payload = std::make_shared<const std::vector<uint8_t>>(std::move(batch));
  return e;
}

// ---- RaftLogStorage ---------------------------------------------------------------------------

Result<std::unique_ptr<RaftLogStorage>> RaftLogStorage::open(storage::PartitionLog* log,
                                                             raft::Config initial,
                                                             const Clock& clock,
                                                             uint64_t incarnation) {
  ORDO_ASSERT(log != nullptr);
  auto s = std::unique_ptr<RaftLogStorage>(new RaftLogStorage(log, clock));
  ORDO_TRY(s->recover(std::move(initial), incarnation));
  return s;
}

std::string RaftLogStorage::state_path() const {
  return log_->dir() + "/" + std::string(kRaftStateFileName);
}

Result<void> RaftLogStorage::recover(raft::Config initial, uint64_t incarnation) {
  auto bytes = read_file(state_path(), kStateHeader + kMaxStateBody);
  const raft::Offset log_start = log_->log_start_offset().value();
  const raft::Offset log_end = log_->log_end_offset().value();
  std::vector<raft::EpochStart> epochs;
  for (const auto& e : log_->epochs().entries()) {
    if (e.start_offset.value() < log_end) epochs.push_back({e.epoch, e.start_offset.value()});
  }
  if (!bytes) {
    if (bytes.error().code != Errc::not_found) return std::move(bytes).error();
    // A fresh replica: its identity is durable before it can say anything.
    if (!initial.valid()) {
      return make_error(Errc::invalid_argument, "{}: invalid initial configuration {}", log_->dir(),
                        initial.to_string());
    }
    file_ = RaftStateFile{};
    file_.incarnation = incarnation != 0 ? incarnation : random_incarnation();
    file_.state.configs.push_back({-1, std::move(initial)});
    // A log that predates replication keeps its records; the term starts past their epochs.
    if (!epochs.empty()) file_.state.term = epochs.back().term;
    ORDO_TRY(write_state_file());
    ORDO_LOG_INFO("{}: new raft replica, incarnation {:016x}", log_->dir(), file_.incarnation);
  } else {
    auto span = std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size());
    auto decoded = decode_state_file(span);
    if (!decoded) {
      return make_error(Errc::corrupt, "{}: {}", state_path(), decoded.error().message);
    }
    file_ = std::move(*decoded);
  }
  // The term of the record before the log start, known when the last reset put it there.
  if (file_.term_before != raft::kNoTerm && file_.base_before == log_start - 1 &&
      (epochs.empty() || epochs.front().start > file_.base_before)) {
    if (!epochs.empty() && epochs.front().term == file_.term_before) {
      epochs.front().start = file_.base_before;
    } else if (epochs.empty() || epochs.front().term > file_.term_before) {
      epochs.insert(epochs.begin(), {file_.term_before, file_.base_before});
    }
  }
  restored_.state = file_.state;
  restored_.log_start = log_start;
  restored_.log_end = log_end;
  restored_.epochs = std::move(epochs);
  return ok();
}

Result<void> RaftLogStorage::write_state_file() {
  auto bytes = encode_state_file(file_);
  if (fsync_) {
    ORDO_TRY(write_file_atomic(state_path(), std::span<const uint8_t>(bytes)));
  } else {
    ORDO_TRY(write_file_atomic_unsynced(state_path(), std::span<const uint8_t>(bytes)));
  }
  ++state_writes_;
  return ok();
}

Result<void> RaftLogStorage::save_state(const raft::HardState& state) {
  file_.state = state;
  return write_state_file();
}

Result<void> RaftLogStorage::reset(raft::Offset start, raft::Term term_before) {
  ORDO_TRY(log_->truncate_fully_and_start_at(Offset(start)));
  file_.term_before = term_before;
  file_.base_before = start - 1;
  return write_state_file();
}

Result<void> RaftLogStorage::advance_log_start(raft::Offset start) {
  const raft::Offset current = log_->log_start_offset().value();
  if (start <= current) return ok();
  if (start > log_->high_watermark().value()) {
    return make_error(Errc::out_of_range, "{}: log start {} past the high watermark {}",
                      log_->dir(), start, log_->high_watermark());
  }
  // First the term before the new start (ignored at recovery until the start has moved), then
  // the start itself.
  auto epoch = log_->epochs().epoch_for(Offset(start - 1));
  file_.term_before = epoch.value_or(raft::kNoTerm);
  file_.base_before = epoch ? start - 1 : -1;
  ORDO_TRY(write_state_file());
  return log_->advance_log_start_offset(Offset(start));
}

Result<void> RaftLogStorage::truncate(raft::Offset end) {
  return log_->truncate_to(Offset(end));
}

Result<void> RaftLogStorage::append(std::span<const raft::Entry> entries) {
  if (entries.empty()) return ok();
  append_buf_.clear();
  raft::Offset next = log_->log_end_offset().value();
  for (const auto& e : entries) {
    if (e.base != next || e.last < e.base) {
      return make_error(Errc::invalid_argument, "{}: entry [{}, {}] does not start at {}",
                        log_->dir(), e.base, e.last, next);
    }
    if (e.payload) {
      auto view = model::RecordBatchView::parse(*e.payload);
      if (!view || view->size_bytes() != e.payload->size() || view->base_offset() != e.base ||
          view->base_offset() + view->last_offset_delta() != e.last ||
          view->leader_epoch() != e.term) {
        return make_error(Errc::corrupt, "{}: entry [{}, {}] term {}: its payload disagrees",
                          log_->dir(), e.base, e.last, e.term);
      }
      append_buf_.insert(append_buf_.end(), e.payload->begin(), e.payload->end());
    } else if (e.kind != raft::EntryKind::data) {
      // Every replica encodes the core's no-op and configuration entries itself (they travel
      // without bytes): their timestamp must not be a local clock's, or the replicas' bytes
      // would differ. Kafka's "no timestamp".
      auto bytes = encode_control_entry(e, kControlEntryTimestamp);
      append_buf_.insert(append_buf_.end(), bytes.begin(), bytes.end());
    } else {
      return make_error(Errc::invalid_argument, "{}: data entry at {} without payload", log_->dir(),
                        e.base);
    }
    next = e.last + 1;
  }
  storage::AppendOptions options;
  options.assign_offsets = false;
  ORDO_TRY(log_->append(std::span<uint8_t>(append_buf_), options));
  return ok();
}

Result<raft::Entry> RaftLogStorage::append_leader(raft::Term term, raft::Payload payload,
                                                  int32_t records) {
  if (!payload) return make_error(Errc::invalid_argument, "leader append without payload");
  auto bytes = std::make_shared<std::vector<uint8_t>>(*payload);
  auto view = model::RecordBatchView::parse(*bytes);
  if (!view || view->size_bytes() != bytes->size() || view->record_count() != records) {
    return make_error(Errc::invalid_argument,
                      "{}: a leader append must be exactly one batch of {} records", log_->dir(),
                      records);
  }
  storage::AppendOptions options;
  options.assign_offsets = true;
  options.leader_epoch = term;
  last_duplicate_.reset();
  auto r = ORDO_TRY(log_->append(std::span<uint8_t>(*bytes), options));
  if (r.duplicate) {
    last_duplicate_ = r;
    return make_error(Errc::already_exists, "{}: duplicate of the batch at [{}, {}]", log_->dir(),
                      r.first_offset, r.last_offset);
  }
  raft::Entry e;
  e.term = term;
  e.base = r.first_offset.value();
  e.last = r.last_offset.value();
  e.kind = raft::EntryKind::data;
  e.payload = std::move(bytes);
  return e;
}

Result<std::vector<raft::Entry>> RaftLogStorage::read(raft::Offset from, size_t max_bytes) {
  std::vector<raft::Entry> out;
  const raft::Offset end = log_->log_end_offset().value();
  if (from >= end) return out;
  if (from < log_->log_start_offset().value()) {
    return make_error(Errc::out_of_range, "{}: read at {} below the log start {}", log_->dir(),
                      from, log_->log_start_offset());
  }
  storage::ReadOptions options;
  options.start = Offset(from);
  options.max_bytes = int64_t(std::min<size_t>(std::max<size_t>(max_bytes, 1), INT32_MAX));
  options.upper_bound = Offset(end);
  options.min_one_batch = true;
  auto r = ORDO_TRY(log_->read(options));
  if (r.slice.size == 0) {
    return make_error(Errc::corrupt, "{}: nothing read at {} below the log end {}", log_->dir(),
                      from, end);
  }
  std::vector<uint8_t> buf(size_t(r.slice.size));
  ORDO_TRY(r.slice.file->pread_exact(buf, r.slice.position));
  size_t pos = 0;
  while (pos < buf.size()) {
    auto view = model::RecordBatchView::parse(std::span<const uint8_t>(buf).subspan(pos));
    if (!view) {
      return make_error(Errc::corrupt, "{}: batch at byte {} of a read at {}: {}", log_->dir(), pos,
                        from, view.error().message);
    }
    size_t n = view->size_bytes();
    auto e = ORDO_TRY(
        decode_entry(std::vector<uint8_t>(buf.begin() + long(pos), buf.begin() + long(pos + n))));
    if (!out.empty() && e.base != out.back().last + 1) {
      return make_error(Errc::corrupt, "{}: batch at {} does not follow {}", log_->dir(), e.base,
                        out.back().last);
    }
    out.push_back(std::move(e));
    pos += n;
  }
  if (out.front().base > from || out.front().last < from) {
    return make_error(Errc::corrupt, "{}: a read at {} returned [{}, {}]", log_->dir(), from,
                      out.front().base, out.front().last);
  }
  return out;
}

void RaftLogStorage::sync(std::function<void(Result<void>)> done) {
  ++syncs_;
  if (fsync_ && sync_runner_) return sync_runner_(std::move(done));
  done(fsync_ ? log_->flush() : ok());
}

}  // namespace ordo::cluster
