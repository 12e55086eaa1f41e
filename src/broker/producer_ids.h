#pragma once
// Producer ids for InitProducerId: unique for the life of the data dir, never reused after a
// crash. Ids are handed out from blocks; a block is reserved durably (the file below is
// rewritten atomically, then fsynced) before its first id is given, so a restart continues after
// the reserved block, at worst skipping the rest of it.
//
// File `<data>/producer-ids` (docs/broker-metadata.md), 20 bytes, big-endian:
//
//   0   4  magic        "OPID"
//   4   2  version      1
//   6   2  reserved     0
//   8   8  next_block   first id of the next block to reserve (>= 0)
//   16  4  crc32c       CRC-32C of bytes 0-15

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace ordo::broker {

inline constexpr size_t kProducerIdFileBytes = 20;
inline constexpr int64_t kProducerIdBlockSize = 1000;

std::vector<uint8_t> encode_producer_id_file(int64_t next_block);
// Errc::corrupt for a wrong size, magic, version, reserved field, CRC or a negative value.
Result<int64_t> decode_producer_id_file(std::span<const uint8_t> bytes);

class ProducerIdAllocator {
 public:
  static constexpr std::string_view kFileName = "producer-ids";

  // Reads the file (absent: ids start at 0). A damaged file is an error: guessing could hand
  // out an id twice.
  static Result<ProducerIdAllocator> open(const std::string& data_dir);

  // The next id; reserves (durably) a new block when the current one is used up. Thread-safe;
  // may block on an fsync.
  Result<int64_t> next();

 private:
  explicit ProducerIdAllocator(std::string path, int64_t next_block)
      : path_(std::move(path)), next_block_(next_block) {}

  std::string path_;
  int64_t next_block_ = 0;  // persisted: ids below it may have been handed out
  int64_t next_id_ = 0;
  int64_t block_end_ = 0;  // next_id_ == block_end_: reserve a block first
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();
};

}  // namespace ordo::broker
