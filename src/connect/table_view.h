#pragma once
// TableView: a keyed topic materialised in RocksDB — the latest value of each key, tombstones
// deleting — together with the position of every partition it has applied, written in the
// same atomic WriteBatch as the data (the connect runtime's position rule: a crash can never
// leave data applied without its position, or the reverse). Byte layout: docs/connect.md.
//
// Thread safety: apply() from one thread at a time (the partition's task); get(), scan() and
// position() from any thread (RocksDB reads are thread-safe and see whole batches).

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "connect/store.h"
#include "model/topic_partition.h"

namespace rocksdb {
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace ordo::connect {

class TableView : public Store {
 public:
  using Change = connect::Change;
  // A key's current value, the offset of the record that set it, and that record's partition.
  struct Entry {
    std::string value;
    int64_t offset = 0;
    model::TopicPartition tp;
    bool operator==(const Entry&) const = default;
  };

  // Opens (creating when missing) the store at path. Errc::io when RocksDB cannot open it
  // (another process holds it, a bad directory), Errc::corrupt when RocksDB reports corruption.
  static Result<std::unique_ptr<TableView>> open(const std::string& path);
  ~TableView() override;
  TableView(const TableView&) = delete;
  TableView& operator=(const TableView&) = delete;

  // The next offset to apply from tp (nullopt: nothing applied yet: start at the earliest).
  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) const;
  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override {
    return std::as_const(*this).position(tp);
  }
  // Every partition with a position, for status and tests.
  Result<std::vector<std::pair<model::TopicPartition, int64_t>>> positions() const;

  // Applies changes of tp (offsets increasing, each at least tp's position) and moves tp's
  // position to next_offset (> the last change's offset), atomically and durably (the write
  // is synced: after a crash either all of it is there or none). A truncate marker reads every
  // entry of the view (truncates are rare). Errc::invalid_argument if the
  // offsets do not follow the position (a bug in the caller: the data is not touched).
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  Result<std::optional<Entry>> get(std::string_view key) const;
  // Keys starting with prefix, in key order, at most limit of them; with `after`, only keys
  // greater than it (the last key of the previous page).
  Result<std::vector<std::pair<std::string, Entry>>> scan(
      std::string_view prefix, size_t limit, std::optional<std::string_view> after = {}) const;

 private:
  explicit TableView(std::unique_ptr<rocksdb::DB> db);
  // Adds a delete of every key whose value came from tp.
  Result<void> delete_from(const model::TopicPartition& tp, rocksdb::WriteBatch& batch) const;
  std::unique_ptr<rocksdb::DB> db_;
};

// The store's key and value encodings (docs/connect.md), exposed for the format tests.
namespace table_format {
inline constexpr char kDataPrefix = 'd';
inline constexpr char kPositionPrefix = 'p';
inline constexpr size_t kOffsetBytes = 8;
inline constexpr size_t kEntryHeaderBytes = 8 + 4 + 2;  // offset, partition, topic length
std::string data_key(std::string_view key);
std::string position_key(const model::TopicPartition& tp);
std::string encode_entry(const model::TopicPartition& tp, int64_t offset, std::string_view value);
Result<TableView::Entry> decode_entry(std::string_view bytes);
std::string encode_position(int64_t next_offset);
Result<int64_t> decode_position(std::string_view bytes);
Result<model::TopicPartition> decode_position_key(std::string_view key);
}  // namespace table_format

}  // namespace ordo::connect
