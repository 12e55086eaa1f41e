#include "storage/leader_epoch_cache.h"

#include <sstream>

#include "base/file.h"

namespace ordo::storage {

Result<LeaderEpochCache> LeaderEpochCache::load(std::string path) {
  LeaderEpochCache cache(path);
  auto text = read_file(path, 16 << 20);
  if (!text) {
    if (text.error().code == Errc::not_found) return cache;
    return std::move(text).error();
  }
  std::istringstream in(*text);
  int version = -1;
  int64_t count = -1;
  if (!(in >> version >> count) || version != 0 || count < 0 || count > (1 << 20)) {
    return make_error(Errc::corrupt, "{}: bad header", path);
  }
  for (int64_t i = 0; i < count; ++i) {
    int64_t epoch, start;
    if (!(in >> epoch >> start) || epoch < 0 || epoch > INT32_MAX || start < 0) {
      return make_error(Errc::corrupt, "{}: bad entry {}", path, i);
    }
    if (!cache.entries_.empty() && (epoch <= cache.entries_.back().epoch ||
                                    Offset(start) < cache.entries_.back().start_offset)) {
      return make_error(Errc::corrupt, "{}: entry {} is not increasing", path, i);
    }
    cache.entries_.push_back({int32_t(epoch), Offset(start)});
  }
  std::string rest;
  if (in >> rest) return make_error(Errc::corrupt, "{}: trailing data", path);
  return cache;
}

Result<void> LeaderEpochCache::persist() const {
  std::string s = fmt::format("0\n{}\n", entries_.size());
  for (const auto& e : entries_) s += fmt::format("{} {}\n", e.epoch, e.start_offset);
  return write_file_atomic(path_, std::string_view(s));
}

Result<void> LeaderEpochCache::assign(int32_t epoch, Offset start_offset) {
  ORDO_ASSERT(epoch >= 0 && start_offset >= Offset(0));
  if (!entries_.empty() && epoch <= entries_.back().epoch) return ok();
  while (!entries_.empty() && entries_.back().start_offset >= start_offset) entries_.pop_back();
  entries_.push_back({epoch, start_offset});
  return persist();
}

Result<void> LeaderEpochCache::truncate_from_end(Offset end) {
  size_t before = entries_.size();
  while (!entries_.empty() && entries_.back().start_offset >= end) entries_.pop_back();
  return entries_.size() == before ? ok() : persist();
}

Result<void> LeaderEpochCache::truncate_from_start(Offset start) {
  size_t first_kept = 0;
  while (first_kept + 1 < entries_.size() && entries_[first_kept + 1].start_offset <= start) {
    ++first_kept;
  }
  if (entries_.empty() || (first_kept == 0 && entries_[0].start_offset >= start)) return ok();
  entries_.erase(entries_.begin(), entries_.begin() + long(first_kept));
  if (entries_[0].start_offset < start) entries_[0].start_offset = start;
  return persist();
}

std::optional<EpochEntry> LeaderEpochCache::latest() const {
  if (entries_.empty()) return std::nullopt;
  return entries_.back();
}

std::optional<int32_t> LeaderEpochCache::epoch_for(Offset offset) const {
  std::optional<int32_t> e;
  for (const auto& entry : entries_) {
    if (entry.start_offset > offset) break;
    e = entry.epoch;
  }
  return e;
}

std::optional<std::pair<int32_t, Offset>> LeaderEpochCache::end_offset_for(int32_t epoch,
                                                                           Offset log_end) const {
  for (size_t i = entries_.size(); i-- > 0;) {
    if (entries_[i].epoch <= epoch) {
      Offset end = i + 1 < entries_.size() ? entries_[i + 1].start_offset : log_end;
      return std::make_pair(entries_[i].epoch, end);
    }
  }
  return std::nullopt;
}

}  // namespace ordo::storage
