#include "base/file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace ordo {

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

File::~File() {
  close();
}

void File::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

Result<File> File::open(const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(errno, "open " + path);
  return File(fd, path);
}

Result<void> File::pwrite_all(std::span<const uint8_t> data, int64_t pos) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, pos + int64_t(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "pwrite " + path_);
    }
    done += size_t(n);
  }
  return ok();
}

Result<size_t> File::pread_some(std::span<uint8_t> data, int64_t pos) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd_, data.data() + done, data.size() - done, pos + int64_t(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "pread " + path_);
    }
    if (n == 0) break;
    done += size_t(n);
  }
  return done;
}

Result<void> File::pread_exact(std::span<uint8_t> data, int64_t pos) const {
  size_t n = ORDO_TRY(pread_some(data, pos));
  if (n != data.size()) {
    return make_error(Errc::out_of_range, "{}: wanted {} bytes at {}, file ends after {}", path_,
                      data.size(), pos, n);
  }
  return ok();
}

Result<int64_t> File::size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return errno_error(errno, "fstat " + path_);
  return int64_t(st.st_size);
}

Result<void> File::truncate(int64_t size) const {
  if (::ftruncate(fd_, size) != 0) return errno_error(errno, "ftruncate " + path_);
  return ok();
}

Result<void> File::datasync() const {
  if (::fdatasync(fd_) != 0) return errno_error(errno, "fdatasync " + path_);
  return ok();
}

Result<void> File::sync() const {
  if (::fsync(fd_) != 0) return errno_error(errno, "fsync " + path_);
  return ok();
}

Result<void> File::reserve(int64_t pos, int64_t len) const {
  if (::fallocate(fd_, FALLOC_FL_KEEP_SIZE, pos, len) != 0) {
    return errno_error(errno, "fallocate " + path_);
  }
  return ok();
}

Result<void> fsync_dir(const std::string& dir) {
  File d = ORDO_TRY(File::open(dir, O_RDONLY | O_DIRECTORY));
  return d.sync();
}

Result<void> write_file_atomic(const std::string& path, std::span<const uint8_t> data) {
  std::string tmp = path + ".tmp";
  {
    File f = ORDO_TRY(File::open(tmp, O_WRONLY | O_CREAT | O_TRUNC));
    ORDO_TRY(f.pwrite_all(data, 0));
    ORDO_TRY(f.sync());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error(errno, "rename " + tmp);
  auto slash = path.find_last_of('/');
  return fsync_dir(slash == std::string::npos ? "." : path.substr(0, slash));
}

Result<void> write_file_atomic_unsynced(const std::string& path, std::span<const uint8_t> data) {
  std::string tmp = path + ".tmp";
  {
    File f = ORDO_TRY(File::open(tmp, O_WRONLY | O_CREAT | O_TRUNC));
    ORDO_TRY(f.pwrite_all(data, 0));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error(errno, "rename " + tmp);
  return ok();
}

Result<void> syncfs_of(int fd) {
  if (::syncfs(fd) != 0) return errno_error(errno, "syncfs");
  return ok();
}

Result<void> write_file_atomic(const std::string& path, std::string_view data) {
  return write_file_atomic(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  File f = ORDO_TRY(File::open(path, O_RDONLY));
  int64_t size = ORDO_TRY(f.size());
  if (size_t(size) > max_bytes) {
    return make_error(Errc::too_large, "{}: {} bytes, at most {} expected", path, size, max_bytes);
  }
  std::string s(size_t(size), '\0');
  size_t n =
      ORDO_TRY(f.pread_some(std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), s.size()), 0));
  s.resize(n);
  return s;
}

Result<void> remove_file(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_error(errno, "unlink " + path);
  return ok();
}

bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace ordo
