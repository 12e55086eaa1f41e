#pragma once
// The memcached sink (libmemcached): keeps a cache of a keyed topic. memcached has no
// transactions, so each key carries its version, the offset of the record that wrote it, and a
// write goes through compare-and-swap: it replaces the stored entry only if that entry's version
// is older. A batch reads the entries of all its keys in one multi-get, then writes each key
// once (its last change) with cas, or add when absent; a lost race reads that key again. Replaying
// records (after a crash, before the position was stored) therefore never moves a key backwards,
// and a worker that lost its partitions cannot overwrite a newer value (docs/connect.md, "The
// memcached sink").
//
//   entry:   version: int64 big-endian (8) | kind: 0 value, 1 deleted (1) | record value
//
// A deleted key stays as a kind-1 entry for tombstone_ttl_s (so an older write cannot bring it
// back meanwhile). The position (next offset per partition) is kept in memcached itself, under
// "<key_prefix>__ordo_offsets:<topic>:<partition>", after the batch's writes, as "<next>
// <epoch>". The epoch is a random token under "<key_prefix>__ordo_epoch", created when absent:
// a memcached that restarted (or evicted it) has none or another one. Every batch reads it in
// its multi-get and writes nothing when it is not the one the partition's position was read
// or written with: the store lost its position (Errc::out_of_range), the task reads it again
// (a position whose epoch is not the current one counts as none) and replays from the
// earliest offset. A position written into a server that restarted after the check carries
// the old epoch, so the next batch or read finds it stale the same way. A TRUNCATE marker
// deletes the keys its partition wrote before it: memcached cannot list keys, so each
// partition keeps a registry of the keys it made live, appended to before they are written
// (pages "<key_prefix>__ordo_keys:<topic>:<partition>:<n>" of encode_memcached_registry, the
// last page number in "...:pages", the first in "...:first"); the marker writes a deleted
// entry of its own version over every registered key older than it, registers the live newer
// ones (a replay's) on a new page and deletes the old pages. One thread at a time.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "connect/store.h"

struct memcached_st;

namespace ordo::connect {

struct MemcachedSinkOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 11211;
  std::string key_prefix;
  int64_t ttl_s = 0;                 // of values; 0: no expiry
  int64_t tombstone_ttl_s = 86'400;  // of deleted entries
};

class MemcachedSink : public Store {
 public:
  explicit MemcachedSink(MemcachedSinkOptions options);
  ~MemcachedSink() override;
  MemcachedSink(const MemcachedSink&) = delete;
  MemcachedSink& operator=(const MemcachedSink&) = delete;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  static constexpr size_t kMaxKeyBytes = 250;  // memcached's limit, prefix included

 private:
  Result<void> connect();
  std::string position_key(const model::TopicPartition& tp) const;
  // The epoch in the store (empty: none), a fresh one created when absent and `create`.
  Result<std::string> epoch(bool create);
  struct Stored {
    uint64_t cas = 0;
    int64_t version = -1;  // -1: not an entry of this format (it is replaced)
    bool deleted = false;  // a deleted entry (kind 1)
    std::string value;     // as stored
  };
  // The stored values of keys (absent keys are not in the map), in one multi-get.
  Result<std::map<std::string, Stored>> fetch(const std::vector<std::string>& keys);
  // Writes one versioned entry unless the stored one is as new or newer.
  Result<void> put(const std::string& key, int64_t version,
                   const std::optional<std::string>& value);

  // The truncate path: each partition's registry of the keys it made live.
  std::string registry_key(const model::TopicPartition& tp) const;
  Result<void> register_keys(const model::TopicPartition& tp, const std::vector<std::string>& keys);
  Result<void> truncate_partition(const model::TopicPartition& tp, int64_t marker);
  Result<std::optional<int64_t>> get_number(const std::string& key);  // a decimal item
  struct Registry {
    int64_t page = -1;  // the page this instance appends to (-1: take a new one)
    size_t bytes = 0;   // appended to it by this instance
  };

  MemcachedSinkOptions options_;
  memcached_st* mc_ = nullptr;
  std::map<std::string, Registry> registries_;  // by registry_key
  std::string epoch_key_;
  // Per partition, the epoch its position was last read or written with (empty: none, the
  // partition starts from the earliest offset and takes whichever epoch it finds).
  std::map<model::TopicPartition, std::string> epochs_;
};

// Entry encoding, exposed for tests.
std::string encode_memcached_entry(int64_t version, const std::optional<std::string>& value);
struct MemcachedEntry {
  int64_t version = 0;
  std::optional<std::string> value;  // nullopt: deleted
  bool operator==(const MemcachedEntry&) const = default;
};
Result<MemcachedEntry> decode_memcached_entry(std::string_view bytes);
// A registry page: each key as its length (big-endian 16 bits) and its bytes.
std::string encode_memcached_registry(const std::vector<std::string>& keys);
Result<std::vector<std::string>> decode_memcached_registry(std::string_view bytes);
// A position's value: "<next offset> <epoch>", both decimal.
std::string encode_memcached_position(int64_t next, std::string_view epoch);
struct MemcachedPosition {
  int64_t next = 0;
  std::string epoch;
  bool operator==(const MemcachedPosition&) const = default;
};
Result<MemcachedPosition> decode_memcached_position(std::string_view text);

}  // namespace ordo::connect
