#pragma once
// What the RocksDB-backed stores (table view, aggregates, claims) share: opening a database
// with paranoid checks, turning a RocksDB status into a Result error, and reading a partition's
// position (table_format's key and encoding).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "model/topic_partition.h"

namespace rocksdb {
class DB;
class Status;
}  // namespace rocksdb

namespace ordo::connect {

// Errc::corrupt when RocksDB reports corruption, else Errc::io.
Error rocks_error(const rocksdb::Status& s, std::string_view what);
// Opens (creating when missing) the database at path; `what` names it in errors.
Result<std::unique_ptr<rocksdb::DB>> open_rocks(const std::string& path, std::string_view what);
// The next offset stored for tp, or nullopt.
Result<std::optional<int64_t>> read_position(const rocksdb::DB& db,
                                             const model::TopicPartition& tp);

}  // namespace ordo::connect
