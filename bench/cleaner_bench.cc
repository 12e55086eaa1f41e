// Cleaner throughput: how fast the compaction cleaner turns a dirty log into a clean one, next to
// what the disk and page cache allow for the same bytes, measured in the same run.
//
//   cleaner_bench --dir DIR [--mib N] [--keys K] [--value-size B] [--segment-mib S]
//                 [--batch-records R] [--cold] [--io-rate BYTES_PER_S]
//
// Writes N MiB of keyed records (keys 0..K-1 round-robin, so every key is overwritten N/(K*B)
// times; R records per uncompressed batch) into a compacted PartitionLog with S MiB segments,
// seals everything and syncs it. Then, per pass:
//   limit    the same work with nothing but the disk: read every sealed segment sequentially
//            (1 MiB preads), write as many bytes as the cleaner will write to a new file and
//            fdatasync it;
//   cleaner  plan_clean + build_clean (the part the background thread runs: both passes over
//            the segments, the rewrite, the fsyncs of the new files) and commit_clean (the
//            swap the partition's own thread runs) timed apart;
//   limit    again (the disk drifts in a VM; the summary takes the better of the two).
// --cold drops the segments from the page cache (posix_fadvise DONTNEED after an fsync) before
// each read pass, so that reads come from the disk; otherwise they come from the page cache,
// as right after the segments were written. Prints one JSON object.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/file.h"
#include "model/record_batch.h"
#include "storage/cleaner.h"
#include "storage/partition_log.h"

namespace {

using namespace ordo;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "cleaner_bench: %s\n", msg.c_str());
  std::exit(1);
}

template <typename T>
T check(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}
void check(Result<void> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Options {
  std::string dir;
  int64_t mib = 512;
  int64_t keys = 100'000;
  int value_size = 100;
  int64_t segment_mib = 64;
  int batch_records = 100;
  bool cold = false;
  int64_t io_rate = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--dir") {
      o.dir = value();
    } else if (a == "--mib") {
      o.mib = std::stoll(value());
    } else if (a == "--keys") {
      o.keys = std::stoll(value());
    } else if (a == "--value-size") {
      o.value_size = std::stoi(value());
    } else if (a == "--segment-mib") {
      o.segment_mib = std::stoll(value());
    } else if (a == "--batch-records") {
      o.batch_records = std::stoi(value());
    } else if (a == "--cold") {
      o.cold = true;
    } else if (a == "--io-rate") {
      o.io_rate = std::stoll(value());
    } else {
      die("unknown argument " + a + " (see the comment at the top of bench/cleaner_bench.cc)");
    }
  }
  if (o.dir.empty()) die("--dir is required");
  if (o.mib < 1 || o.keys < 1 || o.value_size < 0 || o.segment_mib < 1 || o.batch_records < 1) {
    die("sizes must be positive");
  }
  return o;
}

std::vector<std::string> segment_logs(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".log") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void drop_cache(const std::vector<std::string>& files) {
  for (const auto& f : files) {
    int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Reads every file sequentially and writes out_bytes to a new file, then fdatasync: seconds.
double limit_pass(const Options& o, const std::vector<std::string>& files, int64_t out_bytes) {
  if (o.cold) drop_cache(files);
  std::vector<uint8_t> buf(size_t(1) << 20);
  double start = now_s();
  int64_t sum = 0;
  for (const auto& f : files) {
    File in = check(File::open(f, O_RDONLY), "open segment");
    for (int64_t pos = 0;;) {
      size_t n = check(in.pread_some(buf, pos), "read segment");
      if (n == 0) break;
      sum += buf[0];
      pos += int64_t(n);
    }
  }
  std::string out_path = o.dir + "/limit.out";
  std::remove(out_path.c_str());
  File out = check(File::open(out_path, O_WRONLY | O_CREAT | O_TRUNC), "open limit file");
  for (int64_t pos = 0; pos < out_bytes;) {
    size_t n = size_t(std::min<int64_t>(int64_t(buf.size()), out_bytes - pos));
    check(out.pwrite_all(std::span<const uint8_t>(buf.data(), n), pos), "write limit file");
    pos += int64_t(n);
  }
  check(out.datasync(), "fdatasync limit file");
  double s = now_s() - start;
  std::remove(out_path.c_str());
  if (sum == 42) std::fprintf(stderr, " ");  // keeps the reads from being optimised away
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);
  ManualClock clock(1'700'000'000'000);
  storage::LogConfig cfg;
  cfg.cleanup_policy = storage::CleanupPolicy::compact;
  cfg.segment_bytes = o.segment_mib << 20;
  cfg.segment_ms = 3'600'000;
  cfg.retention_ms = -1;
  cfg.flush_mode = storage::FlushMode::none;
  cfg.delete_retention_ms = int64_t(24) * 3600 * 1000;
  auto log = check(storage::PartitionLog::open(o.dir + "/bench-0", cfg, clock), "open log");

  // The dirty log.
  const std::string value(size_t(o.value_size), 'v');
  int64_t written = 0, records = 0;
  while (written < (o.mib << 20)) {
    model::RecordBatchBuilder b;
    std::vector<std::string> keys;
    keys.reserve(size_t(o.batch_records));
    for (int i = 0; i < o.batch_records; ++i) {
      keys.push_back("key-" + std::to_string((records + i) % o.keys));
    }
    for (int i = 0; i < o.batch_records; ++i) b.add(keys[size_t(i)], value, clock.now_ms());
    auto bytes = b.build();
    written += int64_t(bytes.size());
    records += o.batch_records;
    check(log->append(bytes), "append");
  }
  clock.advance(cfg.segment_ms);
  check(log->maybe_roll_by_time(), "roll");
  check(log->flush(), "flush");
  // Hard links to the dirty segments: the limit passes read these, before and after the clean
  // replaced the originals.
  std::vector<std::string> files;
  std::filesystem::create_directories(o.dir + "/orig");
  for (const auto& f : segment_logs(o.dir + "/bench-0")) {
    std::string link = o.dir + "/orig/" + std::filesystem::path(f).filename().string();
    if (::link(f.c_str(), link.c_str()) != 0) die("link " + f + ": " + std::strerror(errno));
    files.push_back(link);
  }
  const int64_t input_bytes = log->size_bytes();

  // The cleaner, bracketed by two passes of the limit (the output size comes from a dry plan:
  // the first limit pass writes what a previous identical run wrote; here it is estimated as
  // the live keys' share and corrected for the second pass).
  const int64_t estimate = std::min<int64_t>(
      input_bytes,
      int64_t(double(input_bytes) * double(o.keys) / double(std::max<int64_t>(records, 1))));
  double limit1 = limit_pass(o, files, estimate);

  if (o.cold) drop_cache(files);
  storage::CleanerOptions co{.key_map_bytes = int64_t(1) << 30, .force = true};
  double t0 = now_s();
  auto plan = check(log->plan_clean(co), "plan");
  if (!plan) die("nothing to clean");
  storage::IoThrottle throttle(o.io_rate);
  auto output = check(
      storage::build_clean(*plan, {.throttle = o.io_rate > 0 ? &throttle : nullptr}), "build");
  double t1 = now_s();
  auto res = check(log->commit_clean(*plan, std::move(output)), "commit");
  double t2 = now_s();
  if (!res.cleaned) die("the clean did not complete");
  double limit2 = limit_pass(o, files, res.bytes_written);
  check(log->close(), "close");

  const double build_s = t1 - t0;
  const double limit_s = std::min(limit1, limit2);
  const double mb = 1e6;
  std::printf(
      "{\"input_bytes\": %lld, \"records\": %lld, \"keys\": %lld, \"value_size\": %d, "
      "\"batch_records\": %d, \"segments\": %zu, \"cold\": %s, \"io_rate\": %lld, "
      "\"bytes_read\": %lld, \"bytes_written\": %lld, \"records_kept\": %lld, "
      "\"records_dropped\": %lld, \"map_keys\": %lld, \"build_s\": %.4f, \"commit_ms\": %.3f, "
      "\"cleaner_mb_s\": %.1f, \"limit_s\": [%.4f, %.4f], \"limit_mb_s\": %.1f, "
      "\"ratio\": %.3f}\n",
      (long long)input_bytes, (long long)records, (long long)o.keys, o.value_size, o.batch_records,
      files.size(), o.cold ? "true" : "false", (long long)o.io_rate, (long long)res.bytes_read,
      (long long)res.bytes_written, (long long)res.records_kept, (long long)res.records_dropped,
      (long long)res.map_keys, build_s, (t2 - t1) * 1e3, double(input_bytes) / build_s / mb, limit1,
      limit2, double(input_bytes) / limit_s / mb,
      (double(input_bytes) / build_s) / (double(input_bytes) / limit_s));
  std::filesystem::remove_all(o.dir);
  return 0;
}
