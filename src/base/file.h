#pragma once
// Files with Result-returning operations. Every read and write loops over short transfers and
// EINTR; a read that meets end-of-file before the bytes it needs reports it.

#include <fcntl.h>
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace ordo {

class File {
 public:
  File() = default;
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  File(File&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  File& operator=(File&& o) noexcept;
  ~File();

  // flags as for open(2), O_CLOEXEC is always added.
  static Result<File> open(const std::string& path, int flags, mode_t mode = 0644);

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  Result<void> pwrite_all(std::span<const uint8_t> data, int64_t pos) const;
  // Reads exactly data.size() bytes; Errc::out_of_range if the file ends first.
  Result<void> pread_exact(std::span<uint8_t> data, int64_t pos) const;
  // Reads up to data.size() bytes, fewer only at end of file.
  Result<size_t> pread_some(std::span<uint8_t> data, int64_t pos) const;
  Result<int64_t> size() const;
  Result<void> truncate(int64_t size) const;
  Result<void> datasync() const;
  Result<void> sync() const;
  // Reserves blocks with fallocate(2) without changing the file size (FALLOC_FL_KEEP_SIZE).
  Result<void> reserve(int64_t pos, int64_t len) const;
  void close();

 private:
  int fd_ = -1;
  std::string path_;
};

// fsyncs a directory so that entries created, renamed or removed in it are durable.
Result<void> fsync_dir(const std::string& dir);
// Replaces path with data atomically: writes path.tmp, fsyncs it, renames, fsyncs the dir.
Result<void> write_file_atomic(const std::string& path, std::span<const uint8_t> data);
Result<void> write_file_atomic(const std::string& path, std::string_view data);
// The same without either fsync: a reader sees the old file or the new one, but after a crash
// the file may be either, or empty, until the caller has synced the filesystem (syncfs_of).
Result<void> write_file_atomic_unsynced(const std::string& path, std::span<const uint8_t> data);
// syncfs(2): makes every change to the filesystem holding fd durable (one journal commit
// instead of an fsync per file).
Result<void> syncfs_of(int fd);
// Reads a whole file of at most max_bytes.
Result<std::string> read_file(const std::string& path, size_t max_bytes);
Result<void> remove_file(const std::string& path);
bool file_exists(const std::string& path);

}  // namespace ordo
