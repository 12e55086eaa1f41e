#include "connect/aggregate.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "connect/rocks.h"
#include "connect/table_view.h"

namespace ordo::connect {

using nlohmann::json;
namespace tf = table_format;

namespace {

constexpr char kKeyPrefix = 'k';    // 'k' + record key -> {"g", "s", "p"}: its contribution
constexpr char kGroupPrefix = 'g';  // 'g' + group JSON -> {"count", "sum"}

// Integers stay exact; a float anywhere makes the sum a float.
json add(const json& a, const json& b, int sign) {
  if (a.is_number_integer() && b.is_number_integer()) {
    return a.get<int64_t>() + sign * b.get<int64_t>();
  }
  return a.get<double>() + sign * b.get<double>();
}

struct Contribution {
  std::string group;  // the group's JSON text
  json sum = 0;
  int32_t partition = 0;
};

}  // namespace

AggregateStore::AggregateStore(std::unique_ptr<rocksdb::DB> db, AggregateOptions options)
    : options_(std::move(options)), db_(std::move(db)) {}
AggregateStore::~AggregateStore() = default;

Result<std::unique_ptr<AggregateStore>> AggregateStore::open(const std::string& path,
                                                             AggregateOptions options) {
  auto db = ORDO_TRY(open_rocks(path, "aggregate store"));  // not inside `new`: it would leak
  return std::unique_ptr<AggregateStore>(new AggregateStore(std::move(db), std::move(options)));
}

Result<std::optional<int64_t>> AggregateStore::position(const model::TopicPartition& tp) {
  return read_position(*db_, tp);
}

Result<std::optional<AggregateStore::Group>> AggregateStore::group(
    const std::string& group_json) const {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), std::string(1, kGroupPrefix) + group_json, &v);
  if (s.IsNotFound()) return std::optional<Group>();
  if (!s.ok()) return rocks_error(s, "read group");
  json j = json::parse(v, nullptr, false);
  if (!j.is_object() || !j.contains("count") || !j["count"].is_number_integer() ||
      !j.contains("sum") || !j["sum"].is_number()) {
    return make_error(Errc::corrupt, "aggregate group {}: not a group value", group_json);
  }
  return std::optional<Group>(Group{j["count"].get<int64_t>(), j["sum"]});
}

Result<std::vector<std::pair<std::string, AggregateStore::Group>>> AggregateStore::groups(
    size_t limit) const {
  std::vector<std::pair<std::string, Group>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  const std::string start(1, kGroupPrefix);
  for (it->Seek(start); it->Valid() && out.size() < limit && it->key().starts_with(start);
       it->Next()) {
    std::string g(it->key().ToStringView().substr(1));
    auto v = ORDO_TRY(group(g));
    if (v) out.emplace_back(std::move(g), *v);
  }
  if (!it->status().ok()) return rocks_error(it->status(), "list groups");
  return out;
}

Result<void> AggregateStore::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                                   int64_t next_offset) {
  auto current = ORDO_TRY(position(tp));
  if (current && next_offset < *current) {
    return make_error(Errc::invalid_argument, "{}: position {} is below {}", tp.to_string(),
                      next_offset, *current);
  }
  // The batch works on overlays of the stored key states and groups.
  std::map<std::string, std::optional<Contribution>> keys;  // record key -> contribution
  std::map<std::string, Group> groups;                      // group JSON -> values
  auto load_key = [&](const std::string& k) -> Result<std::optional<Contribution>> {
    if (auto it = keys.find(k); it != keys.end()) return it->second;
    std::string v;
    auto s = db_->Get(rocksdb::ReadOptions(), std::string(1, kKeyPrefix) + k, &v);
    if (s.IsNotFound()) return std::optional<Contribution>();
    if (!s.ok()) return rocks_error(s, "read key state");
    json j = json::parse(v, nullptr, false);
    if (!j.is_object() || !j.contains("g") || !j["g"].is_string() || !j.contains("s") ||
        !j["s"].is_number() || !j.contains("p") || !j["p"].is_number_integer()) {
      return make_error(Errc::corrupt, "aggregate key state of {}: not a state", k);
    }
    return std::optional<Contribution>(
        Contribution{j["g"].get<std::string>(), j["s"], j["p"].get<int32_t>()});
  };
  auto group_of = [&](const std::string& g) -> Result<Group*> {
    auto it = groups.find(g);
    if (it == groups.end()) {
      auto stored = ORDO_TRY(group(g));
      it = groups.emplace(g, stored.value_or(Group{})).first;
    }
    return &it->second;
  };
  auto move = [&](const std::string& k, std::optional<Contribution> next) -> Result<void> {
    auto old = ORDO_TRY(load_key(k));
    if (old) {
      Group* g = ORDO_TRY(group_of(old->group));
      g->count -= 1;
      g->sum = add(g->sum, old->sum, -1);
    }
    if (next) {
      Group* g = ORDO_TRY(group_of(next->group));
      g->count += 1;
      g->sum = add(g->sum, next->sum, +1);
    }
    keys[k] = std::move(next);
    return ok();
  };
  for (const auto& c : changes) {
    if (c.truncate) {
      // Every key this partition contributed: the stored ones and the batch's.
      std::vector<std::string> gone;
      std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
      const std::string start(1, kKeyPrefix);
      for (it->Seek(start); it->Valid() && it->key().starts_with(start); it->Next()) {
        std::string k(it->key().ToStringView().substr(1));
        if (!keys.contains(k)) {
          auto st = ORDO_TRY(load_key(k));
          if (st && st->partition == tp.partition) gone.push_back(k);
        }
      }
      if (!it->status().ok()) return rocks_error(it->status(), "read keys for a truncate");
      for (const auto& [k, st] : keys) {
        if (st && st->partition == tp.partition) gone.push_back(k);
      }
      for (const auto& k : gone) ORDO_TRY(move(k, std::nullopt));
      continue;
    }
    std::optional<Contribution> next;
    if (c.value) {
      // The worker's to_changes parsed it already (RecordFormats::keep_json).
      const json parsed = c.value_json ? json() : json::parse(*c.value, nullptr, false);
      const json& row = c.value_json ? *c.value_json : parsed;
      if (!row.is_object()) {
        return make_error(Errc::invalid_argument, "{} offset {}: the row is not a JSON object",
                          tp.to_string(), c.offset);
      }
      bool matches = true;
      for (const auto& [field, want] : options_.where) {
        auto f = row.find(field);
        matches = matches && f != row.end() && *f == want;
      }
      if (matches) {
        auto g = row.find(options_.group_by);
        Contribution ct{g == row.end() ? "null" : g->dump(), 0, tp.partition};
        if (!options_.sum.empty()) {
          auto s = row.find(options_.sum);
          if (s != row.end() && s->is_number()) ct.sum = *s;
        }
        next = std::move(ct);
      }
    }
    ORDO_TRY(move(c.key, std::move(next)));
  }
  // Publish every group the batch touched, then store.
  std::vector<std::pair<std::string, std::string>> out;
  rocksdb::WriteBatch batch;
  for (const auto& [g, v] : groups) {
    json value = {{"group", json::parse(g, nullptr, false)}, {"count", v.count}, {"sum", v.sum}};
    out.emplace_back(g, value.dump());
    const std::string key = std::string(1, kGroupPrefix) + g;
    auto s = v.count == 0 ? batch.Delete(key)
                          : batch.Put(key, json{{"count", v.count}, {"sum", v.sum}}.dump());
    if (!s.ok()) return rocks_error(s, "build write batch");
  }
  for (const auto& [k, st] : keys) {
    const std::string key = std::string(1, kKeyPrefix) + k;
    auto s =
        st ? batch.Put(key, json{{"g", st->group}, {"s", st->sum}, {"p", st->partition}}.dump())
           : batch.Delete(key);
    if (!s.ok()) return rocks_error(s, "build write batch");
  }
  if (auto s = batch.Put(tf::position_key(tp), tf::encode_position(next_offset)); !s.ok()) {
    return rocks_error(s, "build write batch");
  }
  if (!out.empty() && options_.publish) ORDO_TRY(options_.publish(out));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (auto s = db_->Write(wo, &batch); !s.ok()) return rocks_error(s, "write aggregate store");
  return ok();
}

}  // namespace ordo::connect
