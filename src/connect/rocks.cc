#include "connect/rocks.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include "connect/table_view.h"

namespace ordo::connect {

Error rocks_error(const rocksdb::Status& s, std::string_view what) {
  return make_error(s.IsCorruption() ? Errc::corrupt : Errc::io, "{}: {}", what, s.ToString());
}

Result<std::unique_ptr<rocksdb::DB>> open_rocks(const std::string& path, std::string_view what) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, path, &raw);
  if (!s.ok()) return rocks_error(s, fmt::format("open {} {}", what, path));
  return std::unique_ptr<rocksdb::DB>(raw);
}

Result<std::optional<int64_t>> read_position(const rocksdb::DB& db,
                                             const model::TopicPartition& tp) {
  std::string v;
  auto s =
      const_cast<rocksdb::DB&>(db).Get(rocksdb::ReadOptions(), table_format::position_key(tp), &v);
  if (s.IsNotFound()) return std::optional<int64_t>();
  if (!s.ok()) return rocks_error(s, "read position");
  return std::optional<int64_t>(ORDO_TRY(table_format::decode_position(v)));
}

}  // namespace ordo::connect
