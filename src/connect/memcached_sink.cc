#include "connect/memcached_sink.h"

#include <libmemcached/memcached.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "base/assert.h"
#include "base/coding.h"

namespace ordo::connect {

namespace {

constexpr size_t kHeader = 9;  // version + kind
constexpr int kCasAttempts = 16;
// The key registry of a partition (truncates): pages of at most this many bytes of appends
// by one sink instance (memcached's items are at most 1 MiB by default), each append at most
// kRegistryChunk, pages read kRegistryProbe past the counter's value (a page whose counter
// was evicted), keys tombstoned kTruncateChunk per multi-get.
constexpr size_t kRegistryPageBytes = 256 * 1024;
constexpr size_t kRegistryChunk = 64 * 1024;
constexpr int64_t kRegistryProbe = 8;
constexpr size_t kTruncateChunk = 1000;

struct ResultDeleter {
  void operator()(memcached_result_st* r) const { memcached_result_free(r); }
};

}  // namespace

std::string encode_memcached_entry(int64_t version, const std::optional<std::string>& value) {
  std::string out(kHeader, '\0');
  store_be64(reinterpret_cast<uint8_t*>(out.data()), uint64_t(version));
  out[8] = value ? 0 : 1;
  if (value) out += *value;
  return out;
}

Result<MemcachedEntry> decode_memcached_entry(std::string_view bytes) {
  if (bytes.size() < kHeader) {
    return make_error(Errc::corrupt, "memcached entry of {} bytes (at least 9)", bytes.size());
  }
  int64_t version = int64_t(load_be64(reinterpret_cast<const uint8_t*>(bytes.data())));
  uint8_t kind = uint8_t(bytes[8]);
  if (version < 0 || kind > 1 || (kind == 1 && bytes.size() != kHeader)) {
    return make_error(Errc::corrupt, "memcached entry: version {}, kind {}, {} bytes", version,
                      kind, bytes.size());
  }
  MemcachedEntry e{version, std::nullopt};
  if (kind == 0) e.value = std::string(bytes.substr(kHeader));
  return e;
}

std::string encode_memcached_registry(const std::vector<std::string>& keys) {
  std::string out;
  for (const auto& k : keys) {
    ORDO_ASSERT(k.size() <= MemcachedSink::kMaxKeyBytes);
    out += char(k.size() >> 8);
    out += char(k.size() & 0xff);
    out += k;
  }
  return out;
}

Result<std::vector<std::string>> decode_memcached_registry(std::string_view bytes) {
  std::vector<std::string> keys;
  while (!bytes.empty()) {
    if (bytes.size() < 2) return make_error(Errc::corrupt, "memcached key registry: a cut length");
    size_t n = size_t(uint8_t(bytes[0])) << 8 | uint8_t(bytes[1]);
    if (n == 0 || n > MemcachedSink::kMaxKeyBytes || bytes.size() - 2 < n) {
      return make_error(Errc::corrupt, "memcached key registry: a key of {} bytes in {}", n,
                        bytes.size() - 2);
    }
    keys.emplace_back(bytes.substr(2, n));
    bytes.remove_prefix(2 + n);
  }
  return keys;
}

std::string encode_memcached_position(int64_t next, std::string_view epoch) {
  return std::to_string(next) + " " + std::string(epoch);
}

Result<MemcachedPosition> decode_memcached_position(std::string_view text) {
  const size_t space = text.find(' ');
  MemcachedPosition out;
  if (space != std::string_view::npos) out.epoch = std::string(text.substr(space + 1));
  auto digits = text.substr(0, space);
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out.next);
  const bool epoch_ok = !out.epoch.empty() && out.epoch.size() <= 20 &&
                        out.epoch.find_first_not_of("0123456789") == std::string::npos;
  if (ec != std::errc() || p != digits.data() + digits.size() || out.next < 0 || !epoch_ok) {
    return make_error(Errc::corrupt, "memcached position '{}' is not '<offset> <epoch>'", text);
  }
  return out;
}

MemcachedSink::MemcachedSink(MemcachedSinkOptions options)
    : options_(std::move(options)), epoch_key_(options_.key_prefix + "__ordo_epoch") {}

MemcachedSink::~MemcachedSink() {
  if (mc_) memcached_free(mc_);
}

Result<void> MemcachedSink::connect() {
  if (mc_) return ok();
  mc_ = memcached_create(nullptr);
  if (!mc_) return make_error(Errc::io, "memcached: out of memory");
  memcached_behavior_set(mc_, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
  memcached_behavior_set(mc_, MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1);
  memcached_behavior_set(mc_, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);  // no Nagle delays per command
  memcached_behavior_set(mc_, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 5000);
  memcached_behavior_set(mc_, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 5000);
  auto rc = memcached_server_add(mc_, options_.host.c_str(), options_.port);
  if (!memcached_success(rc)) {
    std::string why = memcached_strerror(mc_, rc);
    memcached_free(mc_);
    mc_ = nullptr;
    return make_error(Errc::io, "memcached {}:{}: {}", options_.host, options_.port, why);
  }
  return ok();
}

std::string MemcachedSink::position_key(const model::TopicPartition& tp) const {
  return options_.key_prefix + "__ordo_offsets:" + tp.topic + ":" + std::to_string(tp.partition);
}

Result<std::string> MemcachedSink::epoch(bool create) {
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char* v = memcached_get(mc_, epoch_key_.data(), epoch_key_.size(), &len, &flags, &rc);
    if (memcached_success(rc)) {
      std::string e(v ? v : "", len);
      free(v);
      return e;
    }
    if (rc != MEMCACHED_NOTFOUND) {
      return make_error(Errc::io, "memcached get {}: {}", epoch_key_, memcached_strerror(mc_, rc));
    }
    if (!create) return std::string();
    std::random_device rd;
    std::string fresh = std::to_string((uint64_t(rd()) << 32) | rd());
    rc = memcached_add(mc_, epoch_key_.data(), epoch_key_.size(), fresh.data(), fresh.size(), 0, 0);
    if (memcached_success(rc)) return fresh;
    if (rc != MEMCACHED_NOTSTORED && rc != MEMCACHED_DATA_EXISTS) {
      return make_error(Errc::io, "memcached add {}: {}", epoch_key_, memcached_strerror(mc_, rc));
    }
    // Another writer created it meanwhile: read theirs.
  }
  return make_error(Errc::busy, "memcached {}: created and gone {} times in a row", epoch_key_,
                    kCasAttempts);
}

Result<std::optional<int64_t>> MemcachedSink::position(const model::TopicPartition& tp) {
  ORDO_TRY(connect());
  epochs_.erase(tp);
  const std::string key = position_key(tp);
  auto found = ORDO_TRY(fetch({key, epoch_key_}));
  auto e = found.find(epoch_key_);
  if (e == found.end()) return std::optional<int64_t>();  // nothing to trust: start afresh
  epochs_[tp] = e->second.value;
  auto p = found.find(key);
  if (p == found.end()) return std::optional<int64_t>();
  auto pos = decode_memcached_position(p->second.value);
  // A position of another epoch describes data the store no longer holds; one that does not
  // parse (the older format had no epoch) is replaced the same way: the cache is refilled.
  if (!pos || pos->epoch != e->second.value) return std::optional<int64_t>();
  return std::optional<int64_t>(pos->next);
}

Result<void> MemcachedSink::put(const std::string& key, int64_t version,
                                const std::optional<std::string>& value) {
  const std::string entry = encode_memcached_entry(version, value);
  const time_t expiry = time_t(value ? options_.ttl_s : options_.tombstone_ttl_s);
  for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
    const char* keys[] = {key.data()};
    size_t lens[] = {key.size()};
    auto rc = memcached_mget(mc_, keys, lens, 1);
    if (!memcached_success(rc)) {
      return make_error(Errc::io, "memcached mget: {}", memcached_strerror(mc_, rc));
    }
    std::unique_ptr<memcached_result_st, ResultDeleter> found(
        memcached_fetch_result(mc_, nullptr, &rc));
    if (found) {
      // Drain the end-of-results marker before the next command.
      while (memcached_fetch_result(mc_, nullptr, &rc) != nullptr) {
      }
      uint64_t cas = memcached_result_cas(found.get());
      std::string_view stored(memcached_result_value(found.get()),
                              memcached_result_length(found.get()));
      auto e = decode_memcached_entry(stored);
      // An entry that is not ours is replaced; one as new or newer stays.
      if (e && e->version >= version) return ok();
      rc = memcached_cas(mc_, key.data(), key.size(), entry.data(), entry.size(), expiry, 0, cas);
      if (memcached_success(rc)) return ok();
      if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND) continue;  // raced
      return make_error(Errc::io, "memcached cas {}: {}", key, memcached_strerror(mc_, rc));
    }
    if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && !memcached_success(rc)) {
      return make_error(Errc::io, "memcached fetch {}: {}", key, memcached_strerror(mc_, rc));
    }
    rc = memcached_add(mc_, key.data(), key.size(), entry.data(), entry.size(), expiry, 0);
    if (memcached_success(rc)) return ok();
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) continue;  // raced
    return make_error(Errc::io, "memcached add {}: {}", key, memcached_strerror(mc_, rc));
  }
  return make_error(Errc::busy, "memcached {}: {} compare-and-swap races in a row", key,
                    kCasAttempts);
}

Result<std::map<std::string, MemcachedSink::Stored>> MemcachedSink::fetch(
    const std::vector<std::string>& keys) {
  std::map<std::string, Stored> out;
  std::vector<const char*> ptrs;
  std::vector<size_t> lens;
  for (const auto& k : keys) {
    ptrs.push_back(k.data());
    lens.push_back(k.size());
  }
  auto rc = memcached_mget(mc_, ptrs.data(), lens.data(), ptrs.size());
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached mget: {}", memcached_strerror(mc_, rc));
  }
  while (true) {
    std::unique_ptr<memcached_result_st, ResultDeleter> r(
        memcached_fetch_result(mc_, nullptr, &rc));
    if (!r) break;
    std::string key(memcached_result_key_value(r.get()), memcached_result_key_length(r.get()));
    std::string value(memcached_result_value(r.get()), memcached_result_length(r.get()));
    auto e = decode_memcached_entry(value);
    out[std::move(key)] = Stored{memcached_result_cas(r.get()), e ? e->version : -1, e && !e->value,
                                 std::move(value)};
  }
  if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && !memcached_success(rc)) {
    return make_error(Errc::io, "memcached fetch: {}", memcached_strerror(mc_, rc));
  }
  return out;
}

std::string MemcachedSink::registry_key(const model::TopicPartition& tp) const {
  return options_.key_prefix + "__ordo_keys:" + tp.topic + ":" + std::to_string(tp.partition);
}

Result<void> MemcachedSink::register_keys(const model::TopicPartition& tp,
                                          const std::vector<std::string>& keys) {
  const std::string base = registry_key(tp);
  const std::string counter = base + ":pages";
  Registry& reg = registries_[base];
  size_t from = 0;
  while (from < keys.size()) {
    size_t to = from, bytes = 0;
    while (to < keys.size() && (to == from || bytes + keys[to].size() + 2 <= kRegistryChunk)) {
      bytes += keys[to++].size() + 2;
    }
    const std::string data = encode_memcached_registry({keys.begin() + from, keys.begin() + to});
    bool stored = false;
    for (int attempt = 0; attempt < kCasAttempts && !stored; ++attempt) {
      if (reg.page < 0 || reg.bytes + data.size() > kRegistryPageBytes) {
        uint64_t page = 0;  // a page of its own: the counter's next value (0 when absent)
        auto rc =
            memcached_increment_with_initial(mc_, counter.data(), counter.size(), 1, 0, 0, &page);
        if (!memcached_success(rc)) {
          return make_error(Errc::io, "memcached incr {}: {}", counter,
                            memcached_strerror(mc_, rc));
        }
        reg = Registry{int64_t(page), 0};
      }
      const std::string page = base + ":" + std::to_string(reg.page);
      auto rc = memcached_append(mc_, page.data(), page.size(), data.data(), data.size(), 0, 0);
      if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_NOTFOUND) {
        rc = memcached_add(mc_, page.data(), page.size(), data.data(), data.size(), 0, 0);
        if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) continue;  // raced
      }
      if (rc == MEMCACHED_E2BIG) {
        reg.page = -1;  // full (another writer appended too): the next page
        continue;
      }
      if (!memcached_success(rc)) {
        return make_error(Errc::io, "memcached append {}: {}", page, memcached_strerror(mc_, rc));
      }
      reg.bytes += data.size();
      stored = true;
    }
    if (!stored) {
      return make_error(Errc::busy, "memcached {}: {} races in a row", base, kCasAttempts);
    }
    from = to;
  }
  return ok();
}

Result<std::optional<int64_t>> MemcachedSink::get_number(const std::string& key) {
  size_t len = 0;
  uint32_t flags = 0;
  memcached_return_t rc;
  char* v = memcached_get(mc_, key.data(), key.size(), &len, &flags, &rc);
  if (rc == MEMCACHED_NOTFOUND) return std::optional<int64_t>();
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached get {}: {}", key, memcached_strerror(mc_, rc));
  }
  std::string text(v ? v : "", len);
  free(v);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r' || text.back() == '\n')) {
    text.pop_back();  // incr may leave padding
  }
  int64_t n = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || p != text.data() + text.size() || n < 0) {
    return make_error(Errc::corrupt, "memcached {}: '{}' is not a number", key, text);
  }
  return std::optional<int64_t>(n);
}

Result<void> MemcachedSink::truncate_partition(const model::TopicPartition& tp, int64_t marker) {
  const std::string base = registry_key(tp);
  const std::string counter = base + ":pages";
  const std::string first = base + ":first";
  registries_.erase(base);
  // The pages in use: from the first one (0 when unknown) to the counter's value, and a few
  // past it (a counter that was evicted).
  const int64_t first_page = ORDO_TRY(get_number(first)).value_or(0);
  const int64_t last_page = ORDO_TRY(get_number(counter)).value_or(-1);
  const int64_t top = std::max(first_page, last_page);
  std::vector<std::string> pages;
  for (int64_t n = first_page; n <= top + kRegistryProbe; ++n) {
    pages.push_back(base + ":" + std::to_string(n));
  }
  std::set<std::string> keys;
  for (const auto& [page, stored] : ORDO_TRY(fetch(pages))) {
    auto found = ORDO_TRY(decode_memcached_registry(stored.value));
    keys.insert(found.begin(), found.end());
  }
  // Every registered key older than the marker becomes a deleted entry of the marker's
  // version, so a replay of what came before cannot bring it back. Live keys newer than the
  // marker (written after it by an attempt that crashed before storing the position: this
  // is its replay) stay registered.
  std::vector<std::string> chunk, survivors;
  auto tombstone = [&]() -> Result<void> {
    auto stored = ORDO_TRY(fetch(chunk));
    const std::string entry = encode_memcached_entry(marker, std::nullopt);
    const time_t expiry = time_t(options_.tombstone_ttl_s);
    for (const auto& [key, st] : stored) {
      if (st.version >= marker) {
        if (!st.deleted) survivors.push_back(key);
        continue;
      }
      auto rc =
          memcached_cas(mc_, key.data(), key.size(), entry.data(), entry.size(), expiry, 0, st.cas);
      if (memcached_success(rc)) continue;
      if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND) {
        ORDO_TRY(put(key, marker, std::nullopt));  // raced: read again and retry
        continue;
      }
      return make_error(Errc::io, "memcached cas {}: {}", key, memcached_strerror(mc_, rc));
    }
    chunk.clear();
    return ok();
  };
  for (const auto& k : keys) {
    chunk.push_back(k);
    if (chunk.size() == kTruncateChunk) ORDO_TRY(tombstone());
  }
  if (!chunk.empty()) ORDO_TRY(tombstone());
  // A new page past every page read takes the survivors (and what comes next); then the old
  // pages go, then the first page moves. A crash in between leaves pages that are read again
  // (their keys are deleted entries by now, or survivors registered twice).
  const int64_t next_page = top + kRegistryProbe + 1;
  uint64_t page = 0;
  auto rc = memcached_increment_with_initial(mc_, counter.data(), counter.size(),
                                             uint64_t(next_page - std::max<int64_t>(last_page, 0)),
                                             uint64_t(next_page), 0, &page);
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached incr {}: {}", counter, memcached_strerror(mc_, rc));
  }
  registries_[base] = Registry{int64_t(page), 0};
  ORDO_TRY(register_keys(tp, survivors));
  for (const auto& k : pages) {
    rc = memcached_delete(mc_, k.data(), k.size(), 0);
    if (!memcached_success(rc) && rc != MEMCACHED_NOTFOUND) {
      return make_error(Errc::io, "memcached delete {}: {}", k, memcached_strerror(mc_, rc));
    }
  }
  const std::string first_text = std::to_string(page);
  rc = memcached_set(mc_, first.data(), first.size(), first_text.data(), first_text.size(), 0, 0);
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached set {}: {}", first, memcached_strerror(mc_, rc));
  }
  return ok();
}

Result<void> MemcachedSink::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                                  int64_t next_offset) {
  ORDO_TRY(connect());
  // The epoch this partition's position belongs to (empty: it starts from the earliest offset
  // and takes the store's current epoch, or creates one). Each run's multi-get reads the
  // epoch with the keys: when it is not this one, the store lost the position and the data
  // (a restart, an eviction) and nothing is written (the caller reads the position again).
  std::string epoch;
  if (auto it = epochs_.find(tp); it != epochs_.end()) epoch = it->second;
  if (epoch.empty()) epoch = ORDO_TRY(this->epoch(true));
  auto lost = [&](const std::string& now) {
    epochs_.erase(tp);
    return make_error(Errc::out_of_range,
                      "memcached lost the position of {} (epoch {}, now {}): it restarted or "
                      "evicted it; reading the partition again from its earliest offset",
                      tp.to_string(), epoch, now.empty() ? "none" : now);
  };
  // Runs between truncate markers. In each, only the last change of a key matters (its
  // version is the newest); the stored entries of all the run's keys come in one multi-get,
  // then each key is one cas or add (a race falls back to put()'s read-and-retry).
  size_t i = 0;
  bool checked = false;  // the epoch, by a run's multi-get
  while (i < changes.size()) {
    if (changes[i].truncate) {
      if (!checked) {
        if (auto now = ORDO_TRY(this->epoch(false)); now != epoch) return lost(now);
        checked = true;
      }
      ORDO_TRY(truncate_partition(tp, changes[i].offset));
      ++i;
      continue;
    }
    std::map<std::string, const Change*> last;
    for (; i < changes.size() && !changes[i].truncate; ++i) {
      std::string key = options_.key_prefix + changes[i].key;
      if (key.size() > kMaxKeyBytes) {
        return make_error(Errc::invalid_argument, "memcached key of {} bytes (at most {})",
                          key.size(), kMaxKeyBytes);
      }
      last[std::move(key)] = &changes[i];
    }
    std::vector<std::string> keys;
    for (const auto& [k, _] : last) keys.push_back(k);
    keys.push_back(epoch_key_);
    auto stored = ORDO_TRY(fetch(keys));
    auto e = stored.find(epoch_key_);
    std::string now = e == stored.end() ? std::string() : e->second.value;
    if (now != epoch) return lost(now);
    checked = true;
    // Keys that become live are registered with the partition before they are written, so
    // the registry holds at least every live key the partition wrote (a crash in between
    // registers a key twice, which is harmless).
    std::vector<std::string> fresh;
    for (const auto& [key, c] : last) {
      if (key == epoch_key_) continue;
      auto it = stored.find(key);
      if (c->value && (it == stored.end() || it->second.deleted || it->second.version < 0)) {
        fresh.push_back(key);
      }
    }
    ORDO_TRY(register_keys(tp, fresh));
    for (const auto& [key, c] : last) {
      if (key == epoch_key_) continue;  // reserved (docs/connect.md): not cached
      const std::string entry = encode_memcached_entry(c->offset, c->value);
      const time_t expiry = time_t(c->value ? options_.ttl_s : options_.tombstone_ttl_s);
      memcached_return_t rc;
      if (auto it = stored.find(key); it != stored.end()) {
        auto cur = decode_memcached_entry(it->second.value);
        // An entry that is not ours is replaced; one as new or newer stays.
        if (cur && cur->version >= c->offset) continue;
        rc = memcached_cas(mc_, key.data(), key.size(), entry.data(), entry.size(), expiry, 0,
                           it->second.cas);
      } else {
        rc = memcached_add(mc_, key.data(), key.size(), entry.data(), entry.size(), expiry, 0);
      }
      if (memcached_success(rc)) continue;
      if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_NOTFOUND) {
        ORDO_TRY(put(key, c->offset, c->value));  // raced: read again and retry
        continue;
      }
      return make_error(Errc::io, "memcached write {}: {}", key, memcached_strerror(mc_, rc));
    }
  }
  if (!checked) {  // no changes (a position past offsets compaction removed)
    if (auto now = ORDO_TRY(this->epoch(false)); now != epoch) return lost(now);
  }
  // With the epoch it was checked against: if memcached restarted since the check, this
  // position names an epoch the store does not have, and counts as none when read.
  const std::string pos_key = position_key(tp);
  const std::string value = encode_memcached_position(next_offset, epoch);
  auto rc = memcached_set(mc_, pos_key.data(), pos_key.size(), value.data(), value.size(), 0, 0);
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached set {}: {}", pos_key, memcached_strerror(mc_, rc));
  }
  epochs_[tp] = epoch;
  return ok();
}

}  // namespace ordo::connect
