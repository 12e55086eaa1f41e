#include "connect/memcached_sink.h"

#include <libmemcached/memcached.h>

#include <charconv>
#include <map>
#include <vector>

#include "base/coding.h"

namespace ordo::connect {

namespace {

constexpr size_t kHeader = 9;  // version + kind
constexpr int kCasAttempts = 16;

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

MemcachedSink::MemcachedSink(MemcachedSinkOptions options) : options_(std::move(options)) {}

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

Result<std::optional<int64_t>> MemcachedSink::position(const model::TopicPartition& tp) {
  ORDO_TRY(connect());
  std::string key =
      options_.key_prefix + "__ordo_offsets:" + tp.topic + ":" + std::to_string(tp.partition);
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
  int64_t next = -1;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), next);
  if (ec != std::errc() || p != text.data() + text.size() || next < 0) {
    return make_error(Errc::corrupt, "memcached {}: '{}' is not an offset", key, text);
  }
  return std::optional<int64_t>(next);
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
    auto e = decode_memcached_entry(
        std::string_view(memcached_result_value(r.get()), memcached_result_length(r.get())));
    out[std::move(key)] = Stored{memcached_result_cas(r.get()), e ? e->version : -1};
  }
  if (rc != MEMCACHED_END && rc != MEMCACHED_NOTFOUND && !memcached_success(rc)) {
    return make_error(Errc::io, "memcached fetch: {}", memcached_strerror(mc_, rc));
  }
  return out;
}

Result<void> MemcachedSink::apply(const model::TopicPartition& tp, std::span<const Change> changes,
                                  int64_t next_offset) {
  ORDO_TRY(connect());
  // Runs between truncate markers. In each, only the last change of a key matters (its
  // version is the newest); the stored entries of all the run's keys come in one multi-get,
  // then each key is one cas or add (a race falls back to put()'s read-and-retry).
  size_t i = 0;
  while (i < changes.size()) {
    if (changes[i].truncate) {
      auto rc = memcached_flush(mc_, 0);
      if (!memcached_success(rc)) {
        return make_error(Errc::io, "memcached flush_all: {}", memcached_strerror(mc_, rc));
      }
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
    auto stored = ORDO_TRY(fetch(keys));
    for (const auto& [key, c] : last) {
      const std::string entry = encode_memcached_entry(c->offset, c->value);
      const time_t expiry = time_t(c->value ? options_.ttl_s : options_.tombstone_ttl_s);
      memcached_return_t rc;
      if (auto it = stored.find(key); it != stored.end()) {
        if (it->second.version >= c->offset) continue;  // as new or newer already
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
  std::string pos_key =
      options_.key_prefix + "__ordo_offsets:" + tp.topic + ":" + std::to_string(tp.partition);
  std::string next = std::to_string(next_offset);
  auto rc = memcached_set(mc_, pos_key.data(), pos_key.size(), next.data(), next.size(), 0, 0);
  if (!memcached_success(rc)) {
    return make_error(Errc::io, "memcached set {}: {}", pos_key, memcached_strerror(mc_, rc));
  }
  return ok();
}

}  // namespace ordo::connect
