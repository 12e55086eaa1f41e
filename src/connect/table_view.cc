#include "connect/table_view.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "base/assert.h"
#include "base/coding.h"
#include "connect/rocks.h"

namespace ordo::connect {

namespace tf = table_format;

// ---- encodings ----

std::string tf::data_key(std::string_view key) {
  std::string k(1, kDataPrefix);
  k.append(key);
  return k;
}

// 'p', topic bytes, a zero byte (topic names never hold one), the partition big-endian.
std::string tf::position_key(const model::TopicPartition& tp) {
  std::string k(1, kPositionPrefix);
  k.append(tp.topic);
  k.push_back('\0');
  uint8_t be[4];
  store_be32(be, uint32_t(tp.partition));
  k.append(reinterpret_cast<const char*>(be), 4);
  return k;
}

Result<model::TopicPartition> tf::decode_position_key(std::string_view key) {
  if (key.size() < 1 + 1 + 1 + 4 || key[0] != kPositionPrefix) {
    return make_error(Errc::corrupt, "position key of {} bytes", key.size());
  }
  std::string_view rest = key.substr(1);
  size_t zero = rest.find('\0');
  if (zero == std::string_view::npos || zero == 0 || rest.size() - zero - 1 != 4) {
    return make_error(Errc::corrupt, "malformed position key");
  }
  int32_t partition = int32_t(load_be32(reinterpret_cast<const uint8_t*>(rest.data() + zero + 1)));
  if (partition < 0) return make_error(Errc::corrupt, "negative partition in position key");
  return model::TopicPartition{std::string(rest.substr(0, zero)), partition};
}

// offset BE64 | partition BE32 | topic length BE16 | topic | value.
std::string tf::encode_entry(const model::TopicPartition& tp, int64_t offset,
                             std::string_view value) {
  ORDO_ASSERT(tp.topic.size() <= 0xffff);
  std::string v(kEntryHeaderBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(v.data());
  store_be64(p, uint64_t(offset));
  store_be32(p + 8, uint32_t(tp.partition));
  store_be16(p + 12, uint16_t(tp.topic.size()));
  v.append(tp.topic);
  v.append(value);
  return v;
}

Result<TableView::Entry> tf::decode_entry(std::string_view bytes) {
  if (bytes.size() < kEntryHeaderBytes) {
    return make_error(Errc::corrupt, "view entry of {} bytes (at least {})", bytes.size(),
                      kEntryHeaderBytes);
  }
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  int64_t offset = int64_t(load_be64(p));
  int32_t partition = int32_t(load_be32(p + 8));
  size_t topic_len = load_be16(p + 12);
  if (offset < 0) return make_error(Errc::corrupt, "view entry with offset {}", offset);
  if (partition < 0) return make_error(Errc::corrupt, "view entry with partition {}", partition);
  if (topic_len == 0 || bytes.size() - kEntryHeaderBytes < topic_len) {
    return make_error(Errc::corrupt, "view entry with a topic of {} bytes in {}", topic_len,
                      bytes.size());
  }
  return TableView::Entry{
      std::string(bytes.substr(kEntryHeaderBytes + topic_len)), offset,
      model::TopicPartition{std::string(bytes.substr(kEntryHeaderBytes, topic_len)), partition}};
}

std::string tf::encode_position(int64_t next_offset) {
  std::string v(kOffsetBytes, '\0');
  store_be64(reinterpret_cast<uint8_t*>(v.data()), uint64_t(next_offset));
  return v;
}

Result<int64_t> tf::decode_position(std::string_view bytes) {
  if (bytes.size() != kOffsetBytes) {
    return make_error(Errc::corrupt, "position of {} bytes (8 expected)", bytes.size());
  }
  int64_t next = int64_t(load_be64(reinterpret_cast<const uint8_t*>(bytes.data())));
  if (next < 0) return make_error(Errc::corrupt, "negative position {}", next);
  return next;
}

// ---- the store ----

TableView::TableView(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}
TableView::~TableView() = default;

Result<std::unique_ptr<TableView>> TableView::open(const std::string& path) {
  // Opened before `new`: an early return from inside a new-expression would leak its memory.
  auto db = ORDO_TRY(open_rocks(path, "view store"));
  return std::unique_ptr<TableView>(new TableView(std::move(db)));
}

Result<std::optional<int64_t>> TableView::position(const model::TopicPartition& tp) const {
  return read_position(*db_, tp);
}

Result<std::vector<std::pair<model::TopicPartition, int64_t>>> TableView::positions() const {
  std::vector<std::pair<model::TopicPartition, int64_t>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const std::string start(1, tf::kPositionPrefix);
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    auto tp = ORDO_TRY(tf::decode_position_key(it->key().ToStringView()));
    out.emplace_back(std::move(tp), ORDO_TRY(tf::decode_position(it->value().ToStringView())));
  }
  if (!it->status().ok()) return rocks_error(it->status(), "list positions");
  return out;
}

Result<void> TableView::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                              int64_t next_offset) {
  auto current = ORDO_TRY(position(tp));
  int64_t expect = current.value_or(0);
  for (const auto& c : changes) {
    if (c.offset < expect) {
      return make_error(Errc::invalid_argument, "{}: change at offset {} is below {}",
                        tp.to_string(), c.offset, expect);
    }
    expect = c.offset + 1;
  }
  if (next_offset < expect || (current && next_offset < *current)) {
    return make_error(Errc::invalid_argument, "{}: position {} is below {}", tp.to_string(),
                      next_offset, expect);
  }
  rocksdb::WriteBatch batch;
  // Keys this batch has put so far: a truncate marker deletes them too.
  std::vector<std::string_view> put;
  for (const auto& c : changes) {
    if (c.truncate) {
      for (auto k : put) {
        if (auto s = batch.Delete(tf::data_key(k)); !s.ok())
          return rocks_error(s, "build write batch");
      }
      put.clear();
      ORDO_TRY(delete_from(tp, batch));
      continue;
    }
    rocksdb::Status s =
        c.value ? batch.Put(tf::data_key(c.key), tf::encode_entry(tp, c.offset, *c.value))
                : batch.Delete(tf::data_key(c.key));
    if (!s.ok()) return rocks_error(s, "build write batch");
    if (c.value) put.push_back(c.key);
  }
  auto s = batch.Put(tf::position_key(tp), tf::encode_position(next_offset));
  if (!s.ok()) return rocks_error(s, "build write batch");
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = db_->Write(wo, &batch);
  if (!s.ok()) return rocks_error(s, "write to view store");
  return ok();
}

Result<void> TableView::delete_from(const model::TopicPartition& tp,
                                    rocksdb::WriteBatch& batch) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const std::string start(1, tf::kDataPrefix);
  for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
    auto e = ORDO_TRY(tf::decode_entry(it->value().ToStringView()));
    if (e.tp == tp) {
      if (auto s = batch.Delete(it->key()); !s.ok()) return rocks_error(s, "build write batch");
    }
  }
  if (!it->status().ok()) return rocks_error(it->status(), "read view for a truncate");
  return ok();
}

Result<std::optional<TableView::Entry>> TableView::get(std::string_view key) const {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), tf::data_key(key), &v);
  if (s.IsNotFound()) return std::optional<Entry>();
  if (!s.ok()) return rocks_error(s, "read view");
  return std::optional<Entry>(ORDO_TRY(tf::decode_entry(v)));
}

Result<std::vector<std::pair<std::string, TableView::Entry>>> TableView::scan(
    std::string_view prefix, size_t limit, std::optional<std::string_view> after) const {
  std::vector<std::pair<std::string, Entry>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const std::string start = tf::data_key(prefix);
  if (after && tf::data_key(*after) >= start) {
    const std::string from = tf::data_key(*after);
    it->Seek(from);
    if (it->Valid() && it->key() == rocksdb::Slice(from)) it->Next();
  } else {
    it->Seek(start);
  }
  for (; it->Valid() && out.size() < limit && it->key().starts_with(start); it->Next()) {
    std::string key(it->key().ToStringView().substr(1));
    out.emplace_back(std::move(key), ORDO_TRY(tf::decode_entry(it->value().ToStringView())));
  }
  if (!it->status().ok()) return rocks_error(it->status(), "scan view");
  return out;
}

}  // namespace ordo::connect
