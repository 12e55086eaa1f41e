#pragma once
// An in-memory log for tests of the Raft core: entries in order from `start`; read() answers
// from the entry that contains `from`, at most max_bytes of payload but at least one entry.

#include <vector>

#include "raft/core.h"

namespace ordo::raft::testing {

class MemLog : public LogReader {
 public:
  std::vector<Entry> entries;
  Offset start = 0;

  Offset end() const { return entries.empty() ? start : entries.back().end(); }
  Result<std::vector<Entry>> read(Offset from, size_t max_bytes) override {
    std::vector<Entry> out;
    size_t bytes = 0;
    for (const auto& e : entries) {
      if (e.end() <= from) continue;
      if (!out.empty() && bytes + e.size_bytes() > max_bytes) break;
      bytes += e.size_bytes();
      out.push_back(e);
    }
    return out;
  }
  void truncate(Offset to) {
    while (!entries.empty() && entries.back().base >= to) entries.pop_back();
  }
};

}  // namespace ordo::raft::testing
