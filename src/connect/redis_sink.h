#pragma once
// The Redis sink: each record's key (with a prefix) is SET to its value (or a JSON field of it)
// or DELeted for a tombstone, and the partition's next offset is HSET in a hash, all in one
// MULTI/EXEC, so Redis never holds data without its position or the reverse
// (docs/connect.md, "Redis"). Durable as far as the server's persistence is (appendfsync).
//
// Connects lazily and again after any failure: a Redis that is down makes apply() fail, and
// the task retries with backoff. One thread at a time.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "connect/store.h"

struct redisContext;

namespace ordo::connect {

struct RedisSinkOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  int db = 0;
  std::string key_prefix;   // prepended to every record key
  std::string offsets_key;  // the hash of positions; default key_prefix + "__ordo_offsets"
  int64_t ttl_s = 0;        // 0: keys do not expire
  int64_t timeout_ms = 5000;
};

class RedisSink : public Store {
 public:
  explicit RedisSink(RedisSinkOptions options);
  ~RedisSink() override;
  RedisSink(const RedisSink&) = delete;
  RedisSink& operator=(const RedisSink&) = delete;

  Result<std::optional<int64_t>> position(const model::TopicPartition& tp) override;
  // A truncate marker deletes the keys the partition set before it: each partition keeps the
  // set of keys it holds (redis_keys_set), SADDed and SREMed in the batch's MULTI/EXEC.
  Result<void> apply(const model::TopicPartition& tp, std::span<const Change> changes,
                     int64_t next_offset) override;

  const std::string& offsets_key() const { return options_.offsets_key; }

 private:
  Result<void> connect();
  void disconnect();
  Result<std::vector<std::string>> members(const std::string& set);  // SSCAN

  RedisSinkOptions options_;
  redisContext* ctx_ = nullptr;
};

// The field of the offsets hash for a partition: "<topic>:<partition>".
std::string redis_offsets_field(const model::TopicPartition& tp);
// The set of the keys a partition holds: key_prefix + "__ordo_keys:<topic>:<partition>".
std::string redis_keys_set(std::string_view key_prefix, const model::TopicPartition& tp);

}  // namespace ordo::connect
