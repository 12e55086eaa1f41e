#include "storage/segment.h"

#include <sys/stat.h>

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "base/crc32c.h"
#include "base/log.h"
#include "model/record_batch.h"

namespace ordo::storage {

namespace layout = model::batch_layout;

namespace {

constexpr size_t kScanChunkBytes = 16 * 1024;
constexpr size_t kRecoverChunkBytes = 1024 * 1024;
constexpr int64_t kReadAheadBytes = 4 * 1024 * 1024;
constexpr size_t kMaxIndexFileBytes = size_t(1) << 30;

// A read-ahead window over a file: get(pos, len) returns up to len bytes at pos, re-reading
// only when the range leaves the window.
class WindowReader {
 public:
  WindowReader(const File& file, int64_t end, size_t chunk)
      : file_(file), end_(end), chunk_(chunk) {}

  Result<std::span<const uint8_t>> get(int64_t pos, size_t len) {
    if (pos >= end_) return std::span<const uint8_t>();
    len = size_t(std::min<int64_t>(int64_t(len), end_ - pos));
    if (pos < start_ || pos + int64_t(len) > start_ + int64_t(size_)) {
      size_t want = size_t(std::min<int64_t>(int64_t(std::max(len, chunk_)), end_ - pos));
      if (want > capacity_) {
        buf_.reset(new uint8_t[want]);  // uninitialised: pread fills what is used
        capacity_ = want;
      }
      size_ = ORDO_TRY(file_.pread_some(std::span<uint8_t>(buf_.get(), want), pos));
      start_ = pos;
      len = std::min(len, size_);
    }
    return std::span<const uint8_t>(buf_.get() + (pos - start_), len);
  }

 private:
  const File& file_;
  int64_t end_;
  size_t chunk_;
  int64_t start_ = 0;
  size_t size_ = 0;
  size_t capacity_ = 0;
  std::unique_ptr<uint8_t[]> buf_;
};

// Parses the fixed header of the batch at position pos without its records.
Result<BatchInfo> parse_header(std::span<const uint8_t> h, int64_t pos, int64_t max_batch_bytes) {
  if (h.size() < layout::kHeaderSize) {
    return make_error(Errc::corrupt, "batch header at position {} is cut short ({} bytes)", pos,
                      h.size());
  }
  int64_t length = int32_t(load_be32(h.data() + layout::kBatchLength));
  int64_t total = length + int64_t(layout::kLogOverhead);
  if (total < int64_t(model::kMinBatchBytes) || total > max_batch_bytes) {
    return make_error(Errc::corrupt, "batch at position {} has length {}", pos, length);
  }
  if (int8_t(h[layout::kMagic]) != layout::kMagicV2) {
    return make_error(Errc::corrupt, "batch at position {} has magic {}", pos,
                      int(int8_t(h[layout::kMagic])));
  }
  int32_t last_delta = int32_t(load_be32(h.data() + layout::kLastOffsetDelta));
  int64_t base = int64_t(load_be64(h.data() + layout::kBaseOffset));
  if (last_delta < 0 || base < 0) {
    return make_error(Errc::corrupt, "batch at position {} has bad offsets", pos);
  }
  BatchInfo b;
  b.position = pos;
  b.size = total;
  b.base = Offset(base);
  b.last = Offset(base + last_delta);
  b.max_timestamp = int64_t(load_be64(h.data() + layout::kMaxTimestamp));
  return b;
}

const std::vector<uint8_t>& zeros() {
  static const std::vector<uint8_t> z(1 << 20, 0);
  return z;
}

Result<void> write_whole_file(const std::string& path, std::span<const uint8_t> data) {
  File f = ORDO_TRY(File::open(path, O_WRONLY | O_CREAT | O_TRUNC));
  return f.pwrite_all(data, 0);
}

}  // namespace

// Size and CRC-32C of the two serialized indexes, to tell whether the files need rewriting.
uint64_t index_digest(std::span<const uint8_t> index, std::span<const uint8_t> time_index) {
  uint32_t crc = crc32c(0, index.data(), index.size());
  crc = crc32c(crc, time_index.data(), time_index.size());
  return uint64_t(index.size() + time_index.size()) << 32 | crc;
}

std::string segment_file_name(Offset base, std::string_view suffix) {
  return fmt::format("{:020d}{}", base.value(), suffix);
}

Segment::Segment(std::string dir, Offset base, const LogConfig& config, std::shared_ptr<File> log)
    : dir_(std::move(dir)),
      base_(base),
      config_(config),
      log_(std::move(log)),
      next_(base),
      offset_index_(base),
      time_index_(base) {
  // Logs are read front to back: ask for the larger read-ahead (advice only; errors ignored).
  (void)::posix_fadvise(log_->fd(), 0, 0, POSIX_FADV_SEQUENTIAL);
}

std::string Segment::path(std::string_view suffix) const {
  return dir_ + "/" + segment_file_name(base_, suffix) + staged_suffix_;
}

std::string Segment::log_path() const {
  return path(".log");
}

Result<std::unique_ptr<Segment>> Segment::create(const std::string& dir, Offset base,
                                                 const LogConfig& config, int64_t now_ms,
                                                 std::string_view staged_suffix, bool sync_dir) {
  std::string suffix(staged_suffix);
  std::string p = dir + "/" + segment_file_name(base, ".log") + suffix;
  auto file = File::open(p, O_RDWR | O_CREAT | O_EXCL);
  if (!file) {
    if (file_exists(p)) return make_error(Errc::already_exists, "segment {} exists", p);
    return std::move(file).error();
  }
  // Stale index files of an earlier segment at this base would be trusted on the next open.
  ORDO_TRY(remove_file(dir + "/" + segment_file_name(base, ".index") + suffix));
  ORDO_TRY(remove_file(dir + "/" + segment_file_name(base, ".timeindex") + suffix));
  // The new directory entry must be durable before anything acknowledged lives in the file.
  if (sync_dir) ORDO_TRY(fsync_dir(dir));
  auto seg = std::unique_ptr<Segment>(
      new Segment(dir, base, config, std::make_shared<File>(std::move(*file))));
  seg->staged_suffix_ = std::move(suffix);
  seg->first_append_ms_ = now_ms;
  return seg;
}

Result<std::unique_ptr<Segment>> Segment::open(const std::string& dir, Offset base,
                                               const LogConfig& config, int64_t now_ms) {
  File file = ORDO_TRY(File::open(dir + "/" + segment_file_name(base, ".log"), O_RDWR));
  int64_t size = ORDO_TRY(file.size());
  if (size > int64_t(INT32_MAX)) {
    return make_error(Errc::corrupt, "segment {} is {} bytes", file.path(), size);
  }
  auto seg = std::unique_ptr<Segment>(
      new Segment(dir, base, config, std::make_shared<File>(std::move(file))));
  seg->size_ = size;
  seg->preallocated_end_ = size;
  seg->first_append_ms_ = now_ms;
  ORDO_TRY(seg->load_or_rebuild_indexes());
  return seg;
}

Result<void> Segment::load_or_rebuild_indexes() {
  auto attempt = [&]() -> Result<void> {
    std::string raw_index = ORDO_TRY(read_file(path(".index"), kMaxIndexFileBytes));
    std::string raw_time = ORDO_TRY(read_file(path(".timeindex"), kMaxIndexFileBytes));
    auto as_bytes = [](const std::string& s) {
      return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    offset_index_ = ORDO_TRY(OffsetIndex::parse(base_, as_bytes(raw_index), size_));
    time_index_ = ORDO_TRY(TimeIndex::parse(base_, as_bytes(raw_time), Offset::max()));
    index_files_digest_ = index_digest(as_bytes(raw_index), as_bytes(raw_time));
    // The last offset-index entry must point at the batch it names.
    if (auto e = offset_index_.last()) {
      uint8_t h[layout::kHeaderSize];
      ORDO_TRY(log_->pread_exact(h, e->position));
      BatchInfo b = ORDO_TRY(parse_header(h, e->position, config_.max_batch_bytes));
      if (b.base != e->offset) {
        return make_error(Errc::corrupt, "last index entry names offset {}, batch has {}",
                          e->offset, b.base);
      }
    }
    ORDO_TRY(scan_tail());
    // The last time-index entry must name a batch whose max timestamp it records.
    if (auto t = time_index_.last()) {
      auto b = ORDO_TRY(find_batch(t->offset, size_));
      if (!b || b->base > t->offset || b->max_timestamp != t->timestamp) {
        return make_error(Errc::corrupt, "last time index entry ({}, {}) matches no batch",
                          t->timestamp, t->offset);
      }
    }
    return ok();
  };
  auto r = attempt();
  if (r) return ok();
  if (r.error().code != Errc::not_found || size_ > 0) {
    ORDO_LOG_WARN("segment {}: rebuilding indexes ({})", log_path(), r.error().to_string());
  }
  ORDO_TRY(rebuild_indexes());
  // Write the rebuilt files so the next open does not rebuild again.
  return write_index_files();
}

Result<void> Segment::rebuild_indexes() {
  offset_index_ = OffsetIndex(base_);
  time_index_ = TimeIndex(base_);
  next_ = base_;
  max_timestamp_ = -1;
  offset_of_max_timestamp_ = Offset(-1);
  bytes_since_index_ = 0;
  Offset expected = base_;
  Result<void> bad = ok();
  ORDO_TRY(scan(0, size_, [&](const BatchInfo& b) {
    if (b.base < expected) {
      bad = make_error(Errc::corrupt, "{}: offset {} at position {} goes backwards", log_path(),
                       b.base, b.position);
      return false;
    }
    index_batch(b);
    next_ = b.last + 1;
    expected = next_;
    return true;
  }));
  return bad;
}

Result<void> Segment::scan_tail() {
  auto e = offset_index_.last();
  int64_t from = e ? e->position : 0;
  next_ = e ? e->offset : base_;
  if (auto t = time_index_.last()) {
    max_timestamp_ = t->timestamp;
    offset_of_max_timestamp_ = t->offset;
  } else {
    max_timestamp_ = -1;
    offset_of_max_timestamp_ = Offset(-1);
  }
  bytes_since_index_ = 0;
  return scan(from, size_, [&](const BatchInfo& b) {
    next_ = b.last + 1;
    if (b.max_timestamp > max_timestamp_) {
      max_timestamp_ = b.max_timestamp;
      offset_of_max_timestamp_ = b.last;
    }
    bytes_since_index_ += b.size;
    return true;
  });
}

void Segment::index_batch(const BatchInfo& b) {
  if (b.max_timestamp > max_timestamp_) {
    max_timestamp_ = b.max_timestamp;
    offset_of_max_timestamp_ = b.last;
  }
  if (bytes_since_index_ > config_.index_interval_bytes) {
    offset_index_.append(b.base, b.position);
    if (max_timestamp_ >= 0) time_index_.maybe_append(max_timestamp_, offset_of_max_timestamp_);
    bytes_since_index_ = 0;
  }
  bytes_since_index_ += b.size;
}

Result<std::unique_ptr<Segment>> Segment::recover(const std::string& dir, Offset base,
                                                  const LogConfig& config, int64_t now_ms,
                                                  bool truncate_corrupt, RecoveryReport* report) {
  File file = ORDO_TRY(File::open(dir + "/" + segment_file_name(base, ".log"), O_RDWR));
  int64_t file_size = ORDO_TRY(file.size());
  auto seg = std::unique_ptr<Segment>(
      new Segment(dir, base, config, std::make_shared<File>(std::move(file))));
  seg->first_append_ms_ = now_ms;
  const File& f = *seg->log_;
  WindowReader w(f, file_size, kRecoverChunkBytes);
  RecoveryReport rep;
  int64_t pos = 0;
  Offset expected = base;
  std::string problem;

  // Checks the batch at pos completely; on success fills info.
  auto check_batch = [&](int64_t at, Offset min_base, BatchInfo& info) -> Result<void> {
    auto prefix = ORDO_TRY(w.get(at, layout::kLogOverhead));
    if (prefix.size() < layout::kLogOverhead) {
      return make_error(Errc::out_of_range, "{} bytes where a batch starts", prefix.size());
    }
    int64_t length = int32_t(load_be32(prefix.data() + layout::kBatchLength));
    int64_t total = length + int64_t(layout::kLogOverhead);
    if (total < int64_t(model::kMinBatchBytes) || total > config.max_batch_bytes) {
      return make_error(Errc::corrupt, "batch length {}", length);
    }
    auto whole = ORDO_TRY(w.get(at, size_t(total)));
    auto v = ORDO_TRY(model::RecordBatchView::parse(whole, size_t(config.max_batch_bytes)));
    ORDO_TRY(v.verify_crc());
    if (v.base() < min_base) {
      return make_error(Errc::corrupt, "base offset {} below the expected {}", v.base(), min_base);
    }
    info = BatchInfo{at, total, v.base(), v.last(), v.max_timestamp()};
    return ok();
  };

  while (pos < file_size) {
    BatchInfo info;
    auto r = check_batch(pos, expected, info);
    if (!r) {
      problem = r.error().to_string();
      break;
    }
    seg->index_batch(info);
    expected = info.last + 1;
    seg->next_ = expected;
    pos += info.size;
    ++rep.batches;
  }

  if (pos < file_size) {
    // Zeros to the end of the file are preallocated space, not data.
    bool all_zero = true;
    for (int64_t z = pos; z < file_size && all_zero;) {
      auto chunk = ORDO_TRY(w.get(z, kRecoverChunkBytes));
      if (chunk.empty()) break;
      all_zero = std::all_of(chunk.begin(), chunk.end(), [](uint8_t c) { return c == 0; });
      z += int64_t(chunk.size());
    }
    if (!all_zero) {
      // A valid batch after the bad one means the bad one is not a torn tail.
      std::optional<BatchInfo> later;
      for (int64_t q = pos + 1; q + int64_t(model::kMinBatchBytes) <= file_size && !later; ++q) {
        auto h = ORDO_TRY(w.get(q, layout::kHeaderSize));
        if (h.size() < layout::kHeaderSize || int8_t(h[layout::kMagic]) != layout::kMagicV2) {
          continue;
        }
        BatchInfo info;
        if (check_batch(q, expected, info)) later = info;
      }
      if (later && !truncate_corrupt) {
        return make_error(Errc::corrupt,
                          "{}: corrupt batch at position {} (expected offset {}): {}; a valid "
                          "batch follows at position {} (offsets {}-{}), so this is not a torn "
                          "write. The segment is not served. Restore it from a replica or a "
                          "backup, or restart with truncation of corrupt data to drop {} bytes",
                          seg->log_path(), pos, expected, problem, later->position, later->base,
                          later->last, file_size - pos);
      }
      rep.dropped_bytes = file_size - pos;
      ORDO_LOG_WARN("{}: truncating {} bytes at position {} (after offset {}): {}{}",
                    seg->log_path(), rep.dropped_bytes, pos, expected.value() - 1, problem,
                    later ? " (corrupt data before valid batches; truncation was requested)" : "");
      ORDO_TRY(f.truncate(pos));
      file_size = pos;
    }
  }
  seg->size_ = pos;
  seg->preallocated_end_ = file_size;
  rep.valid_bytes = pos;
  if (report) *report = rep;
  return seg;
}

Result<void> Segment::scan(int64_t from, int64_t to,
                           const std::function<bool(const BatchInfo&)>& fn) const {
  ORDO_ASSERT(from >= 0 && to <= size_);
  WindowReader w(*log_, to, kScanChunkBytes);
  int64_t pos = from;
  while (pos < to) {
    auto h = ORDO_TRY(w.get(pos, layout::kHeaderSize));
    BatchInfo b = ORDO_TRY(parse_header(h, pos, config_.max_batch_bytes));
    if (pos + b.size > to) {
      return make_error(Errc::corrupt, "{}: batch at position {} runs past {}", log_path(), pos,
                        to);
    }
    if (!fn(b)) break;
    pos += b.size;
  }
  return ok();
}

Result<void> read_batches(
    const File& log, int64_t size, int64_t max_batch_bytes, size_t chunk_bytes,
    const std::function<Result<bool>(const BatchInfo&, std::span<const uint8_t>)>& fn) {
  WindowReader w(log, size, chunk_bytes);
  int64_t pos = 0;
  while (pos < size) {
    auto h = ORDO_TRY(w.get(pos, layout::kHeaderSize));
    BatchInfo b = ORDO_TRY(parse_header(h, pos, max_batch_bytes));
    auto bytes = ORDO_TRY(w.get(pos, size_t(b.size)));
    if (int64_t(bytes.size()) != b.size) {
      return make_error(Errc::corrupt, "batch at position {} runs past {} (the file has {})", pos,
                        size, pos + int64_t(bytes.size()));
    }
    if (!ORDO_TRY(fn(b, bytes))) break;
    pos += b.size;
  }
  return ok();
}

Result<std::optional<BatchInfo>> Segment::find_batch(Offset target, int64_t end_position) const {
  if (target >= next_) return std::optional<BatchInfo>();
  end_position = std::min(end_position, size_);
  OffsetIndexEntry hint = offset_index_.lookup(target);
  std::optional<BatchInfo> found;
  if (hint.position >= end_position) return found;
  ORDO_TRY(scan(hint.position, end_position, [&](const BatchInfo& b) {
    if (b.last >= target) {
      found = b;
      return false;
    }
    return true;
  }));
  return found;
}

Result<std::optional<BatchInfo>> Segment::find_timestamp(int64_t ts, int64_t min_position) const {
  std::optional<BatchInfo> found;
  if (max_timestamp_ < ts || min_position >= size_) return found;
  int64_t from = 0;
  if (auto e = time_index_.lookup_before(ts)) from = offset_index_.lookup(e->offset).position;
  if (from < min_position) from = offset_index_.lookup_position(min_position).position;
  if (from < min_position) {
    // Walk from the index entry to the batch boundary at min_position.
    int64_t boundary = from;
    ORDO_TRY(scan(from, size_, [&](const BatchInfo& b) {
      boundary = b.position;
      return b.position < min_position;
    }));
    from = boundary;
  }
  ORDO_TRY(scan(from, size_, [&](const BatchInfo& b) {
    if (b.max_timestamp >= ts) {
      found = b;
      return false;
    }
    return true;
  }));
  return found;
}

Result<FileSlice> Segment::read(Offset start, int64_t max_bytes, int64_t max_position,
                                bool min_one) const {
  FileSlice slice{log_, 0, 0};
  max_position = std::min(max_position, size_);
  auto first = ORDO_TRY(find_batch(start, max_position));
  if (!first) return slice;
  slice.position = first->position;
  if (first->size > max_bytes) {
    if (min_one) slice.size = first->size;
    return slice;
  }
  int64_t limit = first->position + max_bytes;
  if (limit < first->position) limit = INT64_MAX;  // overflow
  int64_t end = first->position + first->size;
  if (limit >= max_position) {
    end = max_position;  // everything up to the bound fits: no scan
  } else {
    // Whole batches, as many as fit: jump to the last indexed batch boundary that fits, then
    // scan the few headers after it.
    int64_t from = std::max(end, offset_index_.lookup_position(limit).position);
    end = from;
    ORDO_TRY(scan(from, max_position, [&](const BatchInfo& b) {
      if (b.position + b.size > limit) return false;
      end = b.position + b.size;
      return true;
    }));
  }
  slice.size = end - first->position;
  // Readers go front to back: ask the kernel to start reading the next stretch now, so that
  // the header reads of the next fetch do not defeat its own read-ahead. Each byte is advised
  // once (checking pages costs even when they are cached).
  if (end < size_ && end + kReadAheadBytes / 2 > advised_until_) {
    int64_t from = std::max(end, advised_until_);
    int64_t to = std::min(size_, end + kReadAheadBytes);
    if (to > from) (void)::posix_fadvise(log_->fd(), from, to - from, POSIX_FADV_WILLNEED);
    advised_until_ = to;
  }
  return slice;
}

Result<std::vector<uint8_t>> Segment::read_batch(const BatchInfo& batch) const {
  std::vector<uint8_t> out(size_t(batch.size));
  ORDO_TRY(log_->pread_exact(out, batch.position));
  return out;
}

Result<void> Segment::preallocate_for(int64_t end) {
  if (end <= preallocated_end_) return ok();
  int64_t start = std::max(preallocated_end_, size_);
  int64_t new_end = std::max(end, start + config_.preallocate_bytes);
  const auto& z = zeros();
  for (int64_t p = start; p < new_end;) {
    size_t n = size_t(std::min<int64_t>(int64_t(z.size()), new_end - p));
    ORDO_TRY(log_->pwrite_all(std::span<const uint8_t>(z.data(), n), p));
    p += int64_t(n);
  }
  preallocated_end_ = new_end;
  return ok();
}

Result<void> Segment::append(std::span<const uint8_t> bytes, std::span<const BatchInfo> infos,
                             int64_t now_ms) {
  ORDO_ASSERT(!infos.empty());
  ORDO_ASSERT(infos.front().base >= next_);
  ORDO_ASSERT(size_ + int64_t(bytes.size()) <= int64_t(INT32_MAX));
  if (config_.preallocate == Preallocate::zero_fill) {
    ORDO_TRY(preallocate_for(size_ + int64_t(bytes.size())));
  }
  ORDO_TRY(log_->pwrite_all(bytes, size_));
  if (size_ == 0) first_append_ms_ = now_ms;
  for (const BatchInfo& rel : infos) {
    BatchInfo b = rel;
    b.position += size_;
    index_batch(b);
    next_ = b.last + 1;
  }
  size_ += int64_t(bytes.size());
  preallocated_end_ = std::max(preallocated_end_, size_);
  return ok();
}

Result<Offset> Segment::truncate_to(Offset target) {
  if (target >= next_) return next_;
  auto b = ORDO_TRY(find_batch(target, size_));
  ORDO_ASSERT(b.has_value());
  ORDO_TRY(log_->truncate(b->position));
  size_ = b->position;
  preallocated_end_ = size_;
  offset_index_.truncate_to_position(size_);
  time_index_.truncate_to_offset(b->base);
  ORDO_TRY(scan_tail());
  if (size_ == 0) next_ = base_;
  // Index files on disk may name removed batches; rewrite them now.
  ORDO_TRY(write_index_files());
  return next_;
}

Result<void> Segment::seal() {
  if (max_timestamp_ >= 0) time_index_.maybe_append(max_timestamp_, offset_of_max_timestamp_);
  int64_t file_size = ORDO_TRY(log_->size());
  if (file_size != size_) ORDO_TRY(log_->truncate(size_));
  preallocated_end_ = size_;
  return write_index_files(true);
}

Result<void> Segment::write_index_files(bool unless_unchanged) {
  auto index = offset_index_.serialize();
  auto time_index = time_index_.serialize();
  const uint64_t digest = index_digest(index, time_index);
  // The files already hold these bytes.
  if (unless_unchanged && digest == index_files_digest_) return ok();
  index_files_digest_ = UINT64_MAX;  // unknown if a write fails half-way
  ORDO_TRY(write_whole_file(path(".index"), index));
  ORDO_TRY(write_whole_file(path(".timeindex"), time_index));
  index_files_digest_ = digest;
  return ok();
}

Result<void> Segment::sync_all() const {
  ORDO_TRY(log_->datasync());
  for (const char* suffix : {".index", ".timeindex"}) {
    auto f = File::open(path(suffix), O_RDONLY);
    if (!f) {
      if (f.error().code == Errc::not_found) continue;
      return std::move(f).error();
    }
    ORDO_TRY(f->sync());
  }
  return ok();
}

Result<void> Segment::remove() {
  ORDO_TRY(remove_file(path(".log")));
  ORDO_TRY(remove_file(path(".index")));
  ORDO_TRY(remove_file(path(".timeindex")));
  return ok();
}

int64_t Segment::retention_timestamp() const {
  if (max_timestamp_ >= 0) return max_timestamp_;
  struct stat st;
  if (::fstat(log_file()->fd(), &st) != 0) return max_timestamp_;
  return int64_t(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

}  // namespace ordo::storage
