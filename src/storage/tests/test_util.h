#pragma once
// Helpers shared by the storage tests.

#include <functional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/strong_int.h"
#include "model/record_batch.h"
#include "storage/segment.h"

namespace ordo::storage::testing {

// A temporary directory removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A batch of n records whose values are "<tag>-<i>" and timestamps ts, ts+1, ...
std::vector<uint8_t> make_batch(int n, const std::string& tag, int64_t ts = 1000,
                                size_t value_bytes = 0);

// Decodes every record value in concatenated batches (test-side reader).
std::vector<std::string> values_of(const std::vector<uint8_t>& batches);

std::vector<uint8_t> read_slice_bytes(int fd, int64_t position, int64_t size);

// Reads a partition slice by slice from `from` to the end (read(next) returns the slice that
// starts at next; an empty slice ends) and calls visit for every batch in order. A batch that
// does not parse fails the test and ends the walk. Bounded to 100,000 slices.
using SliceReader = std::function<Result<FileSlice>(Offset next)>;
void for_each_batch(const SliceReader& read, Offset from,
                    const std::function<void(const model::RecordBatchView&)>& visit);

}  // namespace ordo::storage::testing
