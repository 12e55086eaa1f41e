#include "storage/tests/test_util.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "base/assert.h"

namespace ordo::storage::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/ordo-test-XXXXXX";
  ORDO_ASSERT(mkdtemp(tmpl) != nullptr);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> make_batch(int n, const std::string& tag, int64_t ts, size_t value_bytes) {
  model::RecordBatchBuilder b;
  for (int i = 0; i < n; ++i) {
    std::string value = tag + "-" + std::to_string(i);
    if (value.size() < value_bytes) value.resize(value_bytes, 'x');
    b.add("key-" + std::to_string(i), value, ts + i);
  }
  return b.build();
}

std::vector<std::string> values_of(const std::vector<uint8_t>& batches) {
  std::vector<std::string> out;
  std::span<const uint8_t> rest(batches);
  while (!rest.empty()) {
    auto v = model::RecordBatchView::parse(rest);
    ORDO_ASSERT(v.has_value());
    ORDO_ASSERT(v->verify_crc().has_value());
    auto recs = model::decode_records(*v);
    ORDO_ASSERT(recs.has_value());
    for (const auto& r : *recs) out.emplace_back(r.value.value_or("<null>"));
    rest = rest.subspan(v->size_bytes());
  }
  return out;
}

std::vector<uint8_t> read_slice_bytes(int fd, int64_t position, int64_t size) {
  std::vector<uint8_t> out(static_cast<size_t>(size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(fd, out.data() + done, out.size() - done, position + int64_t(done));
    ORDO_ASSERT(n > 0);
    done += size_t(n);
  }
  return out;
}

void for_each_batch(const SliceReader& read, Offset from,
                    const std::function<void(const model::RecordBatchView&)>& visit) {
  Offset next = from;
  for (int guard = 0; guard < 100000; ++guard) {
    auto slice = read(next);
    EXPECT_TRUE(slice) << slice.error().to_string();
    if (!slice || slice->size == 0) return;
    auto bytes = read_slice_bytes(slice->file->fd(), slice->position, slice->size);
    std::span<const uint8_t> rest(bytes);
    while (!rest.empty()) {
      auto v = model::RecordBatchView::parse(rest);
      EXPECT_TRUE(v) << v.error().to_string();
      if (!v) return;
      visit(*v);
      next = v->last() + 1;
      rest = rest.subspan(v->size_bytes());
    }
  }
}

}  // namespace ordo::storage::testing
