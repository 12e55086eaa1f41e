#pragma once
// The full-text search sink (Xapian): one document per record key, its configured fields
// indexed as text (English stemming), the record's value stored for display; each partition's
// next offset is Xapian metadata written in the same commit as the documents, so the index
// never holds documents without its position or the reverse (docs/connect.md, "Search").
//
//   document:  unique term "Q" + key; boolean term "P" + topic + ":" + partition (its source,
//              which a truncate marker deletes by); data = the value (JSON)
//   metadata:  "ordo.offset." + topic + ":" + partition -> decimal next offset
//
// Thread safety: apply() and position() from the task's thread (the one writer); search() from
// any thread (each call opens a read-only view of the last commit).

#include <memory>
#include <string>
#include <vector>

#include "connect/store.h"

namespace Xapian {
class WritableDatabase;
}

namespace ordo::connect {

struct SearchHit {
  std::string key;
  std::string value;    // the stored value
  std::string snippet;  // of the indexed text, matches in <b></b>
  double percent = 0;
  int rank = 0;
};

class SearchIndex : public Store {
 public:
  // fields: the JSON fields of each value to index (all string fields when empty).
  static Result<std::unique_ptr<SearchIndex>> open(const std::string& path,
                                                   std::vector<std::string> fields);
  ~SearchIndex() override;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  // Ranked hits of a query in Xapian's query syntax (words, "phrases", AND/OR/NOT, prefixes).
  // Errc::invalid_argument for a query that does not parse.
  Result<std::vector<SearchHit>> search(const std::string& query, size_t limit) const;
  Result<int64_t> documents() const;

  // Xapian terms are at most 245 bytes and the key is one ("Q" + key): longer keys are refused
  // (the sink's formats send them to the dead letters first).
  static constexpr size_t kMaxKeyBytes = 240;

 private:
  SearchIndex(std::string path, std::vector<std::string> fields,
              std::unique_ptr<Xapian::WritableDatabase> db);
  std::string path_;
  std::vector<std::string> fields_;
  std::unique_ptr<Xapian::WritableDatabase> db_;
};

}  // namespace ordo::connect
