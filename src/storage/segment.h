#pragma once
// A segment: one .log file of whole RecordBatches with consecutive, increasing offsets, named by
// the base offset (20 digits), plus its .index and .timeindex (see index.h). A segment has no
// thread of its own: its PartitionLog's writer thread calls every mutating method.
//
// "Appended" means written to the file (page cache); "durable" means a later sync_data() of the
// file has returned. Which of the two an append's caller waits for is the log's flush policy.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/file.h"
#include "base/result.h"
#include "base/strong_int.h"
#include "storage/config.h"
#include "storage/index.h"

namespace ordo::storage {

// What the log knows of one stored batch without reading its records.
struct BatchInfo {
  int64_t position = 0;  // of the batch's first byte in the segment file
  int64_t size = 0;      // bytes including the 12-byte log overhead
  Offset base;
  Offset last;
  int64_t max_timestamp = -1;
};

// A byte range of a segment file: whole batches, ready for sendfile(2). The shared File keeps
// the bytes readable even if the segment is deleted (retention) while the range is in flight.
struct FileSlice {
  std::shared_ptr<const File> file;
  int64_t position = 0;
  int64_t size = 0;
};

struct RecoveryReport {
  int64_t valid_bytes = 0;
  int64_t dropped_bytes = 0;  // bytes of a torn tail removed
  int64_t batches = 0;
};

std::string segment_file_name(Offset base, std::string_view suffix);

class Segment {
 public:
  // Creates empty files. Fails with Errc::already_exists if the .log exists. A non-empty
  // staged_suffix names the three files <base>.log<staged_suffix> and so on: the compaction
  // cleaner writes its output under ".cleaned" names and renames them into place later.
  // sync_dir = false leaves the directory fsync to the caller (who syncs the filesystem before
  // anything is appended).
  static Result<std::unique_ptr<Segment>> create(const std::string& dir, Offset base,
                                                 const LogConfig& config, int64_t now_ms,
                                                 std::string_view staged_suffix = "",
                                                 bool sync_dir = true);
  // Opens a segment trusted to be intact (written before a clean shutdown, or below the
  // recovery point): the file size is the log size. Index files are loaded, or rebuilt from
  // the log when they are missing or fail a check.
  static Result<std::unique_ptr<Segment>> open(const std::string& dir, Offset base,
                                               const LogConfig& config, int64_t now_ms);
  // Opens a segment after a crash: validates every batch (structure, CRC, offsets), rebuilds
  // both indexes, and removes a torn tail. A bad batch followed by a valid one is corruption:
  // Errc::corrupt naming the file, position and offsets, unless truncate_corrupt, which cuts
  // the segment at the bad batch instead. Trailing zeros (preallocation) end the log cleanly.
  static Result<std::unique_ptr<Segment>> recover(const std::string& dir, Offset base,
                                                  const LogConfig& config, int64_t now_ms,
                                                  bool truncate_corrupt, RecoveryReport* report);

  Offset base_offset() const { return base_; }
  // One past the last offset stored; the base offset when empty.
  Offset next_offset() const { return next_; }
  int64_t size_bytes() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Largest batch max-timestamp in the segment and the last offset of that batch; -1 if empty.
  int64_t max_timestamp() const { return max_timestamp_; }
  // The time retention.ms compares: the largest record timestamp, or the .log file's
  // modification time when no record has one (-1 timestamps), as Kafka does.
  int64_t retention_timestamp() const;
  Offset offset_of_max_timestamp() const { return offset_of_max_timestamp_; }
  // When the segment received its first batch in this process (segment.ms rolls from here).
  int64_t first_append_ms() const { return first_append_ms_; }
  const std::shared_ptr<File>& log_file() const { return log_; }
  std::string log_path() const;
  void set_config(const LogConfig& config) { config_ = config; }

  // Appends batches whose offsets are assigned and validated; infos[i].position is relative to
  // the start of bytes. next_offset becomes infos.back().last + 1.
  Result<void> append(std::span<const uint8_t> bytes, std::span<const BatchInfo> infos,
                      int64_t now_ms);

  // Visits the headers of batches in [from, to) in order; fn returns false to stop. from must
  // be a batch boundary. Errc::corrupt if a header does not parse.
  Result<void> scan(int64_t from, int64_t to,
                    const std::function<bool(const BatchInfo&)>& fn) const;
  // The first batch with last offset >= target starting before end_position.
  Result<std::optional<BatchInfo>> find_batch(Offset target, int64_t end_position) const;
  // The first batch starting at or after min_position with max timestamp >= ts.
  Result<std::optional<BatchInfo>> find_timestamp(int64_t ts, int64_t min_position = 0) const;
  // Whole batches from the one holding start, at most max_bytes (but at least one batch when
  // min_one), none starting at or after max_position. Size 0 when nothing qualifies.
  Result<FileSlice> read(Offset start, int64_t max_bytes, int64_t max_position, bool min_one) const;
  // Reads the bytes of one batch into memory.
  Result<std::vector<uint8_t>> read_batch(const BatchInfo& batch) const;

  // Removes every batch whose last offset is >= target. Returns the new next offset.
  Result<Offset> truncate_to(Offset target);
  // The segment will take no more appends: records the final time-index entry, trims
  // preallocated space, writes both index files. sync_all() then makes it durable.
  Result<void> seal();
  Result<void> sync_data() const { return log_->datasync(); }
  // fdatasync of the log and fsync of the index files (after seal).
  Result<void> sync_all() const;
  // Deletes the three files. Open FileSlices stay readable.
  Result<void> remove();

 private:
  Segment(std::string dir, Offset base, const LogConfig& config, std::shared_ptr<File> log);
  Result<void> load_or_rebuild_indexes();
  Result<void> rebuild_indexes();
  // Recomputes next offset, max timestamp and index spacing by scanning from the last index
  // entry to the end.
  Result<void> scan_tail();
  void index_batch(const BatchInfo& b);
  Result<void> preallocate_for(int64_t end);
  std::string path(std::string_view suffix) const;

  std::string dir_;
  Offset base_;
  std::string staged_suffix_;  // appended to every file name (empty for a live segment)
  LogConfig config_;
  std::shared_ptr<File> log_;
  int64_t size_ = 0;
  int64_t preallocated_end_ = 0;  // zero-filled up to here (>= size_) when preallocating
  Offset next_;
  int64_t max_timestamp_ = -1;
  Offset offset_of_max_timestamp_{-1};
  int64_t bytes_since_index_ = 0;
  int64_t first_append_ms_ = 0;
  mutable int64_t advised_until_ = 0;  // read-ahead requested up to here (see read())
  OffsetIndex offset_index_;
  TimeIndex time_index_;
  // Size and CRC-32C of what the index files hold (as loaded or last written): seal() skips
  // rewriting identical files (a rewrite in place is a flush on ext4, and a stop seals every
  // partition).
  uint64_t index_files_digest_ = UINT64_MAX;  // none known
  // Writes both index files (unless_unchanged: not when they already hold these bytes).
  Result<void> write_index_files(bool unless_unchanged = false);
};

// Visits every batch of bytes [0, size) of a segment's .log (a sealed one: nothing appends to
// it), reading ahead chunk_bytes at a time; fn gets the header and the batch's bytes (valid
// during the call only) and returns false to stop. Errc::corrupt if a header does not parse
// or a batch runs past size. Any thread: only the File is touched.
Result<void> read_batches(
    const File& log, int64_t size, int64_t max_batch_bytes, size_t chunk_bytes,
    const std::function<Result<bool>(const BatchInfo&, std::span<const uint8_t>)>& fn);

}  // namespace ordo::storage
