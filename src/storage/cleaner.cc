// Log compaction: the key map, the batch filter, the swap protocol and PartitionLog::clean.
// The rules are in cleaner.h; the files and crash cases in docs/storage-format.md.

#include "storage/cleaner.h"

#include <fcntl.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <thread>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "base/log.h"
#include "compression/records.h"
#include "storage/partition_log.h"

namespace ordo::storage {

namespace fs = std::filesystem;
namespace layout = model::batch_layout;

// ---- KeyMap ------------------------------------------------------------------------------------

uint64_t KeyMap::hash_of(std::string_view key) {
  uint64_t h = std::hash<std::string_view>()(key);
  // Spread the bits (the table uses the low ones): the finaliser of MurmurHash3.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

size_t KeyMap::find(uint64_t h, std::string_view key) const {
  const size_t mask = slots_.size() - 1;
  for (size_t i = size_t(h) & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.offset < 0) return i;
    if (s.hash == h && key_of(s) == key) return i;
  }
}

int64_t KeyMap::cost_of_new(std::string_view key) const {
  if (!slots_.empty() && slots_[find(hash_of(key), key)].offset >= 0) return 0;
  return int64_t(key.size()) + kEntryOverheadBytes;
}

void KeyMap::grow() {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.offset < 0) continue;
    size_t i = size_t(s.hash) & mask;
    while (slots_[i].offset >= 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void KeyMap::put(uint64_t h, std::string_view key, Offset offset) {
  ORDO_ASSERT(offset.value() >= 0);
  if ((size_ + 1) * 2 > slots_.size()) grow();
  Slot& s = slots_[find(h, key)];
  if (s.offset >= 0) {
    ORDO_ASSERT(offset.value() > s.offset);
    s.offset = offset.value();
    return;
  }
  ORDO_ASSERT(key.size() <= UINT32_MAX);
  constexpr size_t kChunk = size_t(1) << 20;
  if (arena_.empty() || arena_.back().size() + key.size() > arena_.back().capacity()) {
    arena_.emplace_back();
    arena_.back().reserve(std::max(kChunk, key.size()));
  }
  std::vector<char>& chunk = arena_.back();
  s.hash = h;
  s.offset = offset.value();
  s.chunk = uint32_t(arena_.size() - 1);
  s.pos = uint32_t(chunk.size());
  s.len = uint32_t(key.size());
  chunk.insert(chunk.end(), key.begin(), key.end());
  used_ += int64_t(key.size()) + kEntryOverheadBytes;
  ++size_;
}

std::optional<Offset> KeyMap::get(uint64_t h, std::string_view key) const {
  if (slots_.empty()) return std::nullopt;
  const Slot& s = slots_[find(h, key)];
  if (s.offset < 0) return std::nullopt;
  return Offset(s.offset);
}

// ---- filter_batch ------------------------------------------------------------------------------

Result<FilteredBatch> filter_batch(
    const model::RecordBatchView& batch,
    const std::function<RecordDecision(const model::RecordView&, Offset)>& keep,
    bool retain_empty) {
  if (batch.is_control() || batch.is_transactional()) {
    FilteredBatch out;
    out.kept = batch.record_count();
    return out;
  }
  auto decoded = ORDO_TRY(compression::decode_batch(batch));
  return filter_batch(batch, decoded, keep, retain_empty);
}

Result<FilteredBatch> filter_batch(
    const model::RecordBatchView& batch, const compression::DecodedBatch& decoded,
    const std::function<RecordDecision(const model::RecordView&, Offset)>& keep,
    bool retain_empty) {
  FilteredBatch out;
  if (batch.is_control() || batch.is_transactional()) {
    out.kept = batch.record_count();
    return out;
  }
  // The encoded bytes of each record (decode_batch checked every length).
  std::vector<uint8_t> section;
  section.reserve(decoded.section.size());
  int64_t max_ts = INT64_MIN;
  size_t pos = 0;
  for (const auto& rec : decoded.records) {
    auto len = get_varint32(std::span<const uint8_t>(decoded.section).subspan(pos));
    ORDO_ASSERT(len && len->value >= 0);
    size_t rec_bytes = len->size + size_t(len->value);
    ORDO_ASSERT(pos + rec_bytes <= decoded.section.size());
    RecordDecision d = keep(rec, batch.base() + rec.offset_delta);
    if (d.keep) {
      section.insert(section.end(), decoded.section.begin() + ptrdiff_t(pos),
                     decoded.section.begin() + ptrdiff_t(pos + rec_bytes));
      ++out.kept;
      max_ts =
          std::max(max_ts, model::record_timestamp(batch.base_timestamp(), rec.timestamp_delta));
    } else {
      ++out.dropped;
      if (d.tombstone_dropped) ++out.tombstones_dropped;
    }
    pos += rec_bytes;
  }
  ORDO_ASSERT(pos == decoded.section.size());
  if (out.dropped == 0) return out;  // unchanged: the caller copies the original bytes

  const uint16_t codec = batch.attributes() & model::batch_attr::kCompressionMask;
  if (out.kept == 0) {
    if (!retain_empty) {
      out.kind = FilteredBatch::Kind::dropped;
      return out;
    }
    section.clear();
  }
  // The header as it was, then the surviving records uncompressed; recode_batch compresses
  // them with the original codec and writes attributes, batchLength and CRC.
  std::vector<uint8_t> plain(layout::kHeaderSize + section.size());
  std::copy_n(batch.bytes().begin(), layout::kHeaderSize, plain.begin());
  std::copy(section.begin(), section.end(), plain.begin() + layout::kHeaderSize);
  store_be16(plain.data() + layout::kAttributes,
             uint16_t(batch.attributes() & ~model::batch_attr::kCompressionMask));
  store_be32(plain.data() + layout::kRecordCount, uint32_t(out.kept));
  if (out.kept > 0 && batch.timestamp_type() == model::TimestampType::create_time) {
    store_be64(plain.data() + layout::kMaxTimestamp, uint64_t(max_ts));
  }
  store_be32(plain.data() + layout::kBatchLength, uint32_t(plain.size() - layout::kLogOverhead));
  store_be32(plain.data() + layout::kCrc,
             crc32c(0, plain.data() + layout::kCrcStart, plain.size() - layout::kCrcStart));
  if (out.kept == 0) {
    // Kafka writes an emptied batch's header without a codec.
    out.kind = FilteredBatch::Kind::emptied;
    out.bytes = std::move(plain);
    return out;
  }
  out.kind = FilteredBatch::Kind::rewritten;
  if (codec == 0) {
    out.bytes = std::move(plain);
  } else {
    auto view = ORDO_TRY(model::RecordBatchView::parse(plain, plain.size()));
    out.bytes = ORDO_TRY(compression::recode_batch(view, uint8_t(codec)));
  }
  return out;
}

// ---- The swap protocol -------------------------------------------------------------------------

namespace {

std::string seg_path(const std::string& dir, Offset base, std::string_view suffix) {
  return dir + "/" + segment_file_name(base, suffix);
}

Result<void> rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return make_error(Errc::io, "rename {} to {}: {}", from, to, std::strerror(errno));
  }
  return ok();
}

std::string encode_marker(Offset first_dirty, const std::vector<SwapGroup>& groups) {
  std::string s =
      fmt::format("ordo-cleaner-swap 1\nfirst_dirty {}\ngroups {}\n", first_dirty, groups.size());
  for (const auto& g : groups) {
    s += fmt::format("{} {}", g.base, g.replaced.size());
    for (Offset o : g.replaced) s += fmt::format(" {}", o);
    s += "\n";
  }
  return s;
}

Result<std::pair<Offset, std::vector<SwapGroup>>> parse_marker(const std::string& path,
                                                               const std::string& text) {
  std::istringstream in(text);
  std::string magic, k1, k2;
  int version = 0;
  int64_t first_dirty = -1, n = -1;
  auto bad = [&] { return make_error(Errc::corrupt, "{}: malformed", path); };
  if (!(in >> magic >> version >> k1 >> first_dirty >> k2 >> n) || magic != "ordo-cleaner-swap" ||
      version != 1 || k1 != "first_dirty" || k2 != "groups" || first_dirty < 0 || n < 0 ||
      n > 1'000'000) {
    return bad();
  }
  std::vector<SwapGroup> groups;
  for (int64_t i = 0; i < n; ++i) {
    int64_t base = -1, m = -1;
    if (!(in >> base >> m) || base < 0 || m < 1 || m > 1'000'000) return bad();
    SwapGroup g{Offset(base), {}};
    for (int64_t j = 0; j < m; ++j) {
      int64_t o = -1;
      if (!(in >> o) || o < 0) return bad();
      g.replaced.push_back(Offset(o));
    }
    if (g.replaced.front() != g.base) return bad();
    groups.push_back(std::move(g));
  }
  return std::make_pair(Offset(first_dirty), std::move(groups));
}

// Idempotent: moves the replaced segments other than the one at the group's base aside
// (<file>.deleted), then puts whichever .cleaned files are still there in place, each after
// moving the old file of that name aside (the .log last). Nothing is unlinked here: freeing a
// large file's blocks takes milliseconds, so the caller unlinks the .deleted files later, off
// the partition's thread (and recovery removes any that are left). Appends the paths of the
// .deleted files it made to garbage.
Result<void> apply_group(const std::string& dir, const SwapGroup& g,
                         std::vector<std::string>* garbage) {
  auto set_aside = [&](const std::string& path) -> Result<void> {
    if (!file_exists(path)) return ok();
    std::string to = path + std::string(kDeletedSuffix);
    ORDO_TRY(rename_file(path, to));
    if (garbage) garbage->push_back(std::move(to));
    return ok();
  };
  for (Offset old : g.replaced) {
    if (old == g.base) continue;
    for (const char* suffix : {".log", ".index", ".timeindex"}) {
      ORDO_TRY(set_aside(seg_path(dir, old, suffix)));
    }
  }
  for (const char* suffix : {".index", ".timeindex", ".log"}) {
    std::string dst = seg_path(dir, g.base, suffix);
    std::string src = dst + std::string(kCleanedSuffix);
    if (!file_exists(src)) continue;  // this one is in place already
    ORDO_TRY(set_aside(dst));
    ORDO_TRY(rename_file(src, dst));
  }
  return ok();
}

// Removes every file of dir whose name ends with suffix; returns how many.
Result<int> remove_files_ending(const std::string& dir, std::string_view suffix) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.ends_with(suffix)) names.push_back(name);
  }
  if (ec) return make_error(Errc::io, "list {}: {}", dir, ec.message());
  for (const auto& name : names) ORDO_TRY(remove_file(dir + "/" + name));
  if (!names.empty()) ORDO_TRY(fsync_dir(dir));
  return int(names.size());
}

Result<int> remove_cleaned_files(const std::string& dir) {
  return remove_files_ending(dir, kCleanedSuffix);
}

std::string checkpoint_text(Offset first_dirty) {
  return fmt::format("ordo-cleaner-checkpoint 1\nfirst_dirty {}\n", first_dirty);
}

// The commit's small files are prepared by the build, under these names, written and synced:
// the partition's thread then only renames them.
std::string prepared_marker(const std::string& dir) {
  return dir + "/" + std::string(kCleanerSwapFile) + ".tmp";
}
std::string prepared_checkpoint(const std::string& dir) {
  return dir + "/" + std::string(kCleanerCheckpointFile) + ".tmp";
}

Result<void> write_synced(const std::string& path, std::string_view text) {
  File f = ORDO_TRY(File::open(path, O_WRONLY | O_CREAT | O_TRUNC));
  ORDO_TRY(f.pwrite_all(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()), 0));
  return f.sync();
}

Error injected(CleanFailPoint p) {
  return make_error(Errc::io, "injected failure at clean step {}", int(p));
}

}  // namespace

Result<Offset> read_cleaner_checkpoint(const std::string& dir) {
  std::string path = dir + "/" + std::string(kCleanerCheckpointFile);
  auto text = read_file(path, 4096);
  if (!text) {
    if (text.error().code == Errc::not_found) return Offset(0);
    return std::move(text).error();
  }
  std::istringstream in(*text);
  std::string magic, key;
  int version = 0;
  int64_t v = -1;
  if (!(in >> magic >> version >> key >> v) || magic != "ordo-cleaner-checkpoint" || version != 1 ||
      key != "first_dirty" || v < 0) {
    return make_error(Errc::corrupt, "{}: malformed", path);
  }
  return Offset(v);
}

Result<void> write_cleaner_checkpoint(const std::string& dir, Offset first_dirty) {
  return write_file_atomic(dir + "/" + std::string(kCleanerCheckpointFile),
                           std::string_view(checkpoint_text(first_dirty)));
}

Result<std::optional<Offset>> recover_cleaner_swap(const std::string& dir) {
  std::string marker = dir + "/" + std::string(kCleanerSwapFile);
  auto text = read_file(marker, size_t(64) << 20);
  if (!text) {
    if (text.error().code != Errc::not_found) return std::move(text).error();
    // No commit point reached: the old segments are intact; drop the unfinished output, and
    // the replaced files of a completed swap that were not unlinked yet.
    int removed = ORDO_TRY(remove_cleaned_files(dir));
    if (removed > 0) {
      ORDO_LOG_INFO("{}: removed {} files of an unfinished clean", dir, removed);
    }
    ORDO_TRY(remove_files_ending(dir, kDeletedSuffix));
    return std::optional<Offset>();
  }
  auto [first_dirty, groups] = ORDO_TRY(parse_marker(marker, *text));
  ORDO_LOG_INFO("{}: completing the swap of an interrupted clean ({} new segments)", dir,
                groups.size());
  for (const auto& g : groups) ORDO_TRY(apply_group(dir, g, nullptr));
  ORDO_TRY(fsync_dir(dir));
  ORDO_TRY(write_cleaner_checkpoint(dir, first_dirty));
  ORDO_TRY(remove_file(marker));
  ORDO_TRY(remove_cleaned_files(dir));
  ORDO_TRY(remove_files_ending(dir, kDeletedSuffix));
  ORDO_TRY(fsync_dir(dir));
  return std::optional<Offset>(first_dirty);
}

// ---- IoThrottle --------------------------------------------------------------------------------

namespace {
int64_t mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

void IoThrottle::charge(int64_t bytes, const std::atomic<bool>* cancel) {
  if (rate_ <= 0) return;
  if (start_ns_ < 0) start_ns_ = mono_ns();
  charged_ += bytes;
  // When the bytes charged so far may have been moved at the rate.
  const int64_t due_ns = start_ns_ + int64_t(double(charged_) / double(rate_) * 1e9);
  for (int64_t now = mono_ns(); now < due_ns; now = mono_ns()) {
    if (cancel && cancel->load()) return;
    std::this_thread::sleep_for(
        std::chrono::nanoseconds(std::min<int64_t>(due_ns - now, 100'000'000)));
  }
}

// ---- The three phases --------------------------------------------------------------------------

namespace {

// Sealed segments are read in large sequential chunks.
constexpr size_t kCleanReadChunk = size_t(1) << 20;
constexpr size_t kCleanWriteChunk = size_t(1) << 20;

}  // namespace

PartitionLog::CleanableRange PartitionLog::cleanable_range(const CleanerOptions& o,
                                                           int64_t now) const {
  CleanableRange r;
  // The cleanable segments: sealed, wholly below cleanable_end, older than the min lag.
  for (auto it = segments_.begin(); std::next(it) != segments_.end(); ++it) {
    Segment& s = *it->second;
    if (o.cleanable_end && s.next_offset() > *o.cleanable_end) break;
    if (config_.min_compaction_lag_ms > 0 && !s.empty() &&
        s.retention_timestamp() > now - config_.min_compaction_lag_ms) {
      break;
    }
    r.segments.push_back(&s);
  }
  if (r.segments.empty()) return r;
  r.first_dirty = o.full ? r.segments.front()->base_offset()
                         : std::max(first_dirty_, r.segments.front()->base_offset());
  bool first_dirty_seen = false;
  for (const Segment* s : r.segments) {
    if (s->next_offset() <= r.first_dirty) {
      r.clean_bytes += s->size_bytes();
      continue;
    }
    r.dirty_bytes += s->size_bytes();
    if (!first_dirty_seen && !s->empty()) {
      first_dirty_seen = true;
      // The segment's newest record stands in for its oldest (not tracked): a dirty segment
      // waits at most max.compaction.lag.ms after its last write.
      r.lag_ms = std::max<int64_t>(0, now - s->retention_timestamp());
      r.overdue = s->retention_timestamp() < now - config_.max_compaction_lag_ms;
    }
  }
  const int64_t total = r.clean_bytes + r.dirty_bytes;
  r.dirty_ratio = total > 0 ? double(r.dirty_bytes) / double(total) : 0;
  r.due = r.first_dirty < r.segments.back()->next_offset() &&
          (o.force || r.overdue || r.dirty_ratio >= config_.min_cleanable_dirty_ratio);
  return r;
}

Result<std::optional<CleanPlan>> PartitionLog::plan_clean(const CleanerOptions& o) {
  ORDO_ASSERT(!closed_);
  std::optional<CleanPlan> none;
  if (!policy_compacts(config_.cleanup_policy)) return none;
  const int64_t now = clock_.now_ms();
  const CleanableRange range = cleanable_range(o, now);
  if (range.segments.empty() || range.first_dirty >= range.segments.back()->next_offset()) {
    return none;
  }
  CleanPlan p;
  p.dir = dir_;
  p.config = config_;
  p.options = o;
  p.now_ms = now;
  p.first_dirty = range.first_dirty;
  p.result.first_dirty = p.first_dirty;
  p.result.cleaned_end = p.first_dirty;
  p.result.dirty_ratio = range.dirty_ratio;
  p.due = range.due;
  for (const Segment* s : range.segments) {
    p.segments.push_back(CleanPlan::Input{s->base_offset(), s->next_offset(), s->size_bytes(),
                                          s->retention_timestamp(), s->log_file()});
  }
  for (int64_t pid : producers_.producer_ids()) {
    p.producer_last.emplace(pid, producers_.find(pid)->newest().last_offset.value());
  }
  p.truncations = truncations_;
  return std::optional<CleanPlan>(std::move(p));
}

Result<CleanOutput> build_clean(const CleanPlan& p, const BuildControl& ctl) {
  CleanOutput out;
  CleanResult& res = out.result;
  res = p.result;
  const int64_t now = p.now_ms;
  const Offset first_dirty = p.first_dirty;
  auto cancelled = [&]() -> Result<void> {
    if (ctl.cancel && ctl.cancel->load()) {
      return make_error(Errc::closed, "{}: clean cancelled", p.dir);
    }
    return ok();
  };
  auto charge = [&](int64_t bytes) {
    if (ctl.throttle) ctl.throttle->charge(bytes, ctl.cancel);
  };

  // 2. Pass 1: key -> latest offset over [first_dirty, map_end).
  KeyMap map(p.options.key_map_bytes);
  std::vector<uint64_t> hashes;  // of one batch's keys
  Offset map_end = first_dirty;
  for (const auto& s : p.segments) {
    if (res.map_full) break;
    if (s.next <= first_dirty) continue;
    ORDO_TRY(read_batches(*s.log, s.size, p.config.max_batch_bytes, kCleanReadChunk,
                          [&](const BatchInfo& b, std::span<const uint8_t> bytes) -> Result<bool> {
                            if (b.last < first_dirty) return true;
                            ORDO_TRY(cancelled());
                            charge(b.size);
                            res.bytes_read += b.size;
                            auto view =
                                ORDO_TRY(model::RecordBatchView::parse(bytes, bytes.size()));
                            ORDO_TRY(view.verify_crc());
                            if (!view.is_control() && !view.is_transactional()) {
                              auto decoded = ORDO_TRY(compression::decode_batch(view));
                              // What the batch's keys can cost at most (all new); only when that
                              // does not fit are the keys already in the map looked up to know the
                              // exact cost.
                              int64_t cost = 0;
                              for (const auto& rec : decoded.records) {
                                if (rec.key)
                                  cost += int64_t(rec.key->size()) + KeyMap::kEntryOverheadBytes;
                              }
                              if (!map.fits(cost)) {
                                cost = 0;
                                for (const auto& rec : decoded.records) {
                                  if (rec.key && b.base + rec.offset_delta >= first_dirty) {
                                    cost += map.cost_of_new(*rec.key);
                                  }
                                }
                              }
                              if (!map.fits(cost)) {
                                res.map_full = true;
                                return false;
                              }
                              // Hash every key and prefetch its slot, then update: the lookups'
                              // cache misses overlap instead of following one another.
                              hashes.clear();
                              for (const auto& rec : decoded.records) {
                                hashes.push_back(rec.key ? KeyMap::hash_of(*rec.key) : 0);
                                if (rec.key) map.prefetch(hashes.back());
                              }
                              for (size_t i = 0; i < decoded.records.size(); ++i) {
                                const auto& rec = decoded.records[i];
                                Offset off = b.base + rec.offset_delta;
                                if (rec.key && off >= first_dirty)
                                  map.put(hashes[i], *rec.key, off);
                              }
                            }
                            map_end = b.last + 1;
                            return true;
                          }));
    if (!res.map_full) map_end = std::max(map_end, s.next);
  }
  res.map_keys = int64_t(map.size());
  res.cleaned_end = map_end;
  if (map_end <= first_dirty) {
    ORDO_LOG_WARN("{}: the key map ({} bytes) cannot hold the keys of one batch at {}", p.dir,
                  p.options.key_map_bytes, first_dirty);
    return out;
  }

  // 3. Pass 2: the segments starting below map_end, rewritten in order into new segments.
  // Consecutive inputs share an output (small cleaned segments merge) until its size reaches
  // segment.bytes, or until the next input could take its offsets or positions past what the
  // indexes' 32-bit fields hold.
  const int64_t tombstone_cutoff = now - p.config.delete_retention_ms;
  // A failure leaves the old segments in place; the .cleaned files go.
  auto fail = [&](Error e) -> Error {
    discard_clean(p.dir, out);
    return e;
  };
  // Left by an earlier clean that failed in this process before its marker (a crash's are
  // removed when the log is opened).
  if (auto removed = remove_cleaned_files(p.dir); !removed) return fail(removed.error());
  std::unique_ptr<Segment> staged;
  std::vector<uint8_t> buf;
  std::vector<BatchInfo> out_infos;
  // Written back as it goes: each chunk's writeback starts once it is written, and the one
  // before it is waited for. The final fsync then has little left to flush, so it does not
  // hold the filesystem's journal (and the partition writers' own syncs) for long.
  int64_t flushed_to = 0, started_to = 0;
  auto write_out = [&]() -> Result<void> {
    if (out_infos.empty()) return ok();
    charge(int64_t(buf.size()));
    ORDO_TRY(staged->append(buf, out_infos, now));
    res.bytes_written += int64_t(buf.size());
    buf.clear();
    out_infos.clear();
    const int fd = staged->log_file()->fd();
    if (started_to > flushed_to) {
      ::sync_file_range(
          fd, flushed_to, started_to - flushed_to,
          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      flushed_to = started_to;
    }
    ::sync_file_range(fd, started_to, staged->size_bytes() - started_to, SYNC_FILE_RANGE_WRITE);
    started_to = staged->size_bytes();
    return ok();
  };
  auto finish_output = [&]() -> Result<void> {
    ORDO_TRY(write_out());
    ORDO_TRY(staged->seal());
    ORDO_TRY(staged->sync_all());
    staged.reset();
    return ok();
  };
  for (const auto& s : p.segments) {
    if (s.base >= map_end) break;
    const int64_t pending = staged ? staged->size_bytes() + int64_t(buf.size()) : 0;
    if (!staged || pending >= p.config.segment_bytes ||
        s.next - out.groups.back().base > int64_t(INT32_MAX) ||
        pending + s.size > int64_t(INT32_MAX)) {
      if (staged) {
        if (auto r = finish_output(); !r) return fail(r.error());
      }
      auto created = Segment::create(p.dir, s.base, p.config, now, kCleanedSuffix);
      if (!created) return fail(created.error());
      staged = std::move(*created);
      out.groups.push_back(SwapGroup{s.base, {}});
      flushed_to = started_to = 0;
    }
    out.groups.back().replaced.push_back(s.base);
    ++res.segments_before;
    const int64_t segment_time = s.retention_timestamp;
    auto r = read_batches(
        *s.log, s.size, p.config.max_batch_bytes, kCleanReadChunk,
        [&](const BatchInfo& b, std::span<const uint8_t> bytes) -> Result<bool> {
          ORDO_TRY(cancelled());
          charge(b.size);
          res.bytes_read += b.size;
          auto view = ORDO_TRY(model::RecordBatchView::parse(bytes, bytes.size()));
          // Pass 1 checked the batches of the dirty range; the others are checked here.
          if (b.last < first_dirty || b.base >= map_end) ORDO_TRY(view.verify_crc());
          const int64_t batch_time = b.max_timestamp >= 0 ? b.max_timestamp : segment_time;
          compression::DecodedBatch decoded;
          if (!view.is_control() && !view.is_transactional()) {
            decoded = ORDO_TRY(compression::decode_batch(view));
          }
          hashes.clear();
          for (const auto& rec : decoded.records) {
            hashes.push_back(rec.key ? KeyMap::hash_of(*rec.key) : 0);
            if (rec.key) map.prefetch(hashes.back());
          }
          size_t next_record = 0;
          auto decide = [&](const model::RecordView& rec, Offset off) {
            RecordDecision d;
            const uint64_t h = hashes[next_record++];
            if (!rec.key) return d;
            if (auto latest = map.get(h, *rec.key); latest && *latest > off) {
              d.keep = false;
            } else if (!rec.value && off < map_end && batch_time < tombstone_cutoff) {
              d.keep = false;
              d.tombstone_dropped = true;
            }
            return d;
          };
          bool retain_empty = false;
          if (view.producer_id() >= 0) {
            auto it = p.producer_last.find(view.producer_id());
            retain_empty = it != p.producer_last.end() && it->second == view.last().value();
          }
          auto f = ORDO_TRY(filter_batch(view, decoded, decide, retain_empty));
          res.records_kept += f.kept;
          res.records_dropped += f.dropped;
          res.tombstones_dropped += f.tombstones_dropped;
          std::span<const uint8_t> kept = bytes;
          switch (f.kind) {
            case FilteredBatch::Kind::unchanged:
              break;
            case FilteredBatch::Kind::dropped:
              ++res.batches_dropped;
              return true;
            case FilteredBatch::Kind::emptied:
              ++res.empty_batches_kept;
              kept = f.bytes;
              break;
            case FilteredBatch::Kind::rewritten:
              kept = f.bytes;
              break;
          }
          auto nv = ORDO_TRY(model::RecordBatchView::parse(kept, kept.size()));
          ORDO_ASSERT(nv.base() == b.base && nv.last() == b.last);
          out_infos.push_back(BatchInfo{int64_t(buf.size()), int64_t(kept.size()), b.base, b.last,
                                        nv.max_timestamp()});
          buf.insert(buf.end(), kept.begin(), kept.end());
          if (buf.size() >= kCleanWriteChunk) ORDO_TRY(write_out());
          return true;
        });
    if (!r) return fail(r.error());
  }
  if (staged) {
    if (auto r = finish_output(); !r) return fail(r.error());
  }
  res.segments_after = int64_t(out.groups.size());
  if (!out.groups.empty()) {
    auto r = write_synced(prepared_marker(p.dir), encode_marker(res.cleaned_end, out.groups));
    if (r) r = write_synced(prepared_checkpoint(p.dir), checkpoint_text(res.cleaned_end));
    if (!r) return fail(r.error());
  }
  if (auto r = fsync_dir(p.dir); !r) return fail(r.error());
  return out;
}

void discard_clean(const std::string& dir, const CleanOutput& output) {
  for (const std::string& path : {prepared_marker(dir), prepared_checkpoint(dir)}) {
    if (auto r = remove_file(path); !r) ORDO_LOG_WARN("{}: {}", dir, r.error().to_string());
  }
  for (const auto& g : output.groups) {
    for (const char* suffix : {".log", ".index", ".timeindex"}) {
      std::string path = seg_path(dir, g.base, suffix) + std::string(kCleanedSuffix);
      if (auto r = remove_file(path); !r) {
        ORDO_LOG_WARN("{}: {}", dir, r.error().to_string());
      }
    }
  }
}

Result<CleanResult> PartitionLog::commit_clean(const CleanPlan& p, CleanOutput output) {
  ORDO_ASSERT(!closed_);
  ORDO_ASSERT(p.dir == dir_);
  CleanResult res = output.result;
  if (output.empty()) return res;
  const CleanFailPoint fail_at = p.options.fail_at;
  // The log may have changed while the build ran: then the output describes files that are
  // gone or different, and is dropped.
  std::string stale;
  if (!policy_compacts(config_.cleanup_policy)) {
    stale = "cleanup.policy no longer includes compact";
  } else if (truncations_ != p.truncations) {
    stale = "the log was truncated";
  } else if (!p.options.full && first_dirty_ != p.first_dirty) {
    stale = fmt::format("the first dirty offset moved from {} to {}", p.first_dirty, first_dirty_);
  }
  for (size_t gi = 0; stale.empty() && gi < output.groups.size(); ++gi) {
    for (Offset base : output.groups[gi].replaced) {
      auto it = segments_.find(base);
      auto in = std::find_if(p.segments.begin(), p.segments.end(),
                             [&](const CleanPlan::Input& i) { return i.base == base; });
      ORDO_ASSERT(in != p.segments.end());
      if (it == segments_.end()) {
        stale = fmt::format("segment {} is gone", base);
      } else if (it->second.get() == &active() || it->second->log_file() != in->log ||
                 it->second->size_bytes() != in->size) {
        stale = fmt::format("segment {} changed", base);
      }
      if (!stale.empty()) break;
    }
  }
  if (!stale.empty()) {
    discard_clean(dir_, output);
    ORDO_LOG_INFO("{}: clean up to offset {} dropped: {}", dir_, res.cleaned_end, stale);
    ++cleaner_stats_.aborted;
    res.aborted = true;
    return res;
  }
  if (fail_at == CleanFailPoint::after_cleaned_files) return injected(fail_at);

  // 4. The swap. The marker is the commit point: from here on, recovery rolls forward. The
  // build wrote and synced the marker and the next checkpoint under .tmp names; here they are
  // only renamed, so the partition's thread waits for three directory fsyncs and no more.
  const std::string marker = dir_ + "/" + std::string(kCleanerSwapFile);
  if (auto r = rename_file(prepared_marker(dir_), marker); !r) {
    discard_clean(dir_, output);
    return std::move(r).error();
  }
  ORDO_TRY(fsync_dir(dir_));
  if (fail_at == CleanFailPoint::after_marker) return injected(fail_at);
  for (size_t i = 0; i < output.groups.size(); ++i) {
    ORDO_TRY(apply_group(dir_, output.groups[i], &res.garbage));
    if (i == 0 && fail_at == CleanFailPoint::after_first_group) return injected(fail_at);
  }
  ORDO_TRY(fsync_dir(dir_));
  ORDO_TRY(
      rename_file(prepared_checkpoint(dir_), dir_ + "/" + std::string(kCleanerCheckpointFile)));
  if (fail_at == CleanFailPoint::before_marker_removal) return injected(fail_at);
  // The checkpoint's rename and the marker's removal become durable together; if only the
  // removal did, the checkpoint is the previous one (a hint: the next clean redoes a little).
  ORDO_TRY(remove_file(marker));
  ORDO_TRY(fsync_dir(dir_));

  // The Segment objects: the replaced ones go (reads in flight keep their File handles), the
  // new ones are opened under their final names.
  const int64_t now = clock_.now_ms();
  for (const auto& g : output.groups) {
    for (Offset old : g.replaced) segments_.erase(old);
    segments_.emplace(g.base, ORDO_TRY(Segment::open(dir_, g.base, config_, now)));
  }
  first_dirty_ = res.cleaned_end;
  res.cleaned = true;
  ++cleaner_stats_.cleans;
  cleaner_stats_.bytes_read += res.bytes_read;
  cleaner_stats_.bytes_written += res.bytes_written;
  cleaner_stats_.records_dropped += res.records_dropped;
  cleaner_stats_.last_clean_ms = now;
  ORDO_LOG_INFO(
      "{}: cleaned offsets up to {}: {} segments into {}, {} records kept, {} dropped ({} "
      "tombstones), {} -> {} bytes{}",
      dir_, res.cleaned_end, res.segments_before, res.segments_after, res.records_kept,
      res.records_dropped, res.tombstones_dropped, res.bytes_read, res.bytes_written,
      res.map_full ? " (key map full)" : "");
  check_invariants();
  return res;
}

Result<CleanResult> PartitionLog::clean(const CleanerOptions& o) {
  auto plan = ORDO_TRY(plan_clean(o));
  if (!plan) {
    CleanResult res;
    if (policy_compacts(config_.cleanup_policy)) res.first_dirty = res.cleaned_end = first_dirty_;
    return res;
  }
  if (!plan->due) return plan->result;
  auto output = ORDO_TRY(build_clean(*plan));
  auto res = ORDO_TRY(commit_clean(*plan, std::move(output)));
  remove_garbage(res.garbage);
  return res;
}

void remove_garbage(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    if (auto r = remove_file(path); !r) ORDO_LOG_WARN("{}", r.error().to_string());
  }
}

CleanerStats PartitionLog::cleaner_stats() const {
  CleanerStats st = cleaner_stats_;
  st.first_dirty = first_dirty_;
  if (!policy_compacts(config_.cleanup_policy)) return st;
  const CleanableRange r = cleanable_range({}, clock_.now_ms());
  st.cleanable_bytes = r.clean_bytes + r.dirty_bytes;
  st.dirty_bytes = r.dirty_bytes;
  st.dirty_ratio = r.dirty_ratio;
  st.lag_ms = r.lag_ms;
  st.due = r.due;
  return st;
}

}  // namespace ordo::storage
