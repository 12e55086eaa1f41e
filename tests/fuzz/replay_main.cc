// A main() for fuzz targets built without libFuzzer (g++, or clang without ORDO_FUZZ): feeds
// every file of the given corpus directories (or single files) to LLVMFuzzerTestOneInput once.
// ctest uses it to replay the committed corpora, so a crash found once stays fixed.
//
//   fuzz_<name>_replay DIR_OR_FILE...
//
// Exits 0 when every input ran, 1 on a usage error, a missing path, an unreadable file or when
// no input was found at all (an empty corpus would make the test pass without testing anything).
// A broken invariant in the target aborts the process, as it does under libFuzzer.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Optional, as with libFuzzer: targets that need set-up define it.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

namespace ordo::fuzz {
namespace {

namespace fs = std::filesystem;

// Appends the regular files under path (sorted, so runs are repeatable), or path itself when it
// is a file. False with a message when path is missing or cannot be listed.
bool collect(const fs::path& path, std::vector<fs::path>& out) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    std::fprintf(stderr, "replay: %s: no such file or directory\n", path.c_str());
    return false;
  }
  if (fs::is_regular_file(st)) {
    out.push_back(path);
    return true;
  }
  std::vector<fs::path> found;
  fs::recursive_directory_iterator it(path, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec) && !ec) found.push_back(it->path());
  }
  if (ec) {
    std::fprintf(stderr, "replay: %s: %s\n", path.c_str(), ec.message().c_str());
    return false;
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
  return true;
}

// Reads the whole file into a buffer of exactly its size, so that a sanitizer catches a read
// one byte past the input as it would under libFuzzer.
bool read_file(const fs::path& path, std::unique_ptr<uint8_t[]>& buf, size_t& size) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof(chunk), f)) > 0) {
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  bool ok = std::ferror(f) == 0;
  std::fclose(f);
  if (!ok) return false;
  size = bytes.size();
  buf.reset(new uint8_t[size]);  // new[0] is a valid pointer with no bytes behind it
  std::copy(bytes.begin(), bytes.end(), buf.get());
  return true;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 1;
  }
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);

  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    if (!collect(argv[i], inputs)) return 1;
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no input files found\n");
    return 1;
  }
  size_t total_bytes = 0;
  for (const fs::path& p : inputs) {
    std::unique_ptr<uint8_t[]> buf;
    size_t size = 0;
    if (!read_file(p, buf, size)) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 1;
    }
    // Named before it runs: if the target aborts, the last line says which input did it.
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), size);
    LLVMFuzzerTestOneInput(buf.get(), size);
    total_bytes += size;
  }
  std::fprintf(stderr, "replay: %zu inputs, %zu bytes, all passed\n", inputs.size(), total_bytes);
  return 0;
}

}  // namespace
}  // namespace ordo::fuzz

int main(int argc, char** argv) {
  return ordo::fuzz::run(argc, argv);
}
