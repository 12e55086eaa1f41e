#include "broker/producer_ids.h"

#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"

namespace ordo::broker {

namespace {
constexpr uint8_t kMagic[4] = {'O', 'P', 'I', 'D'};
constexpr uint16_t kVersion = 1;
constexpr size_t kCrcOffset = 16;
static_assert(kCrcOffset + 4 == kProducerIdFileBytes);
}  // namespace

std::vector<uint8_t> encode_producer_id_file(int64_t next_block) {
  ORDO_ASSERT(next_block >= 0);
  std::vector<uint8_t> out(kProducerIdFileBytes, 0);
  std::memcpy(out.data(), kMagic, 4);
  store_be16(out.data() + 4, kVersion);
  store_be16(out.data() + 6, 0);
  store_be64(out.data() + 8, uint64_t(next_block));
  store_be32(out.data() + kCrcOffset, crc32c(0, out.data(), kCrcOffset));
  return out;
}

Result<int64_t> decode_producer_id_file(std::span<const uint8_t> in) {
  if (in.size() != kProducerIdFileBytes) {
    return make_error(Errc::corrupt, "producer-ids: {} bytes, expected {}", in.size(),
                      kProducerIdFileBytes);
  }
  if (std::memcmp(in.data(), kMagic, 4) != 0) {
    return make_error(Errc::corrupt, "producer-ids: bad magic");
  }
  uint32_t crc = load_be32(in.data() + kCrcOffset);
  if (crc != crc32c(0, in.data(), kCrcOffset)) {
    return make_error(Errc::corrupt, "producer-ids: checksum mismatch");
  }
  if (load_be16(in.data() + 4) != kVersion) {
    return make_error(Errc::corrupt, "producer-ids: unknown version {}", load_be16(in.data() + 4));
  }
  if (load_be16(in.data() + 6) != 0) {
    return make_error(Errc::corrupt, "producer-ids: reserved field is not 0");
  }
  auto next = int64_t(load_be64(in.data() + 8));
  if (next < 0) return make_error(Errc::corrupt, "producer-ids: negative next block {}", next);
  return next;
}

Result<ProducerIdAllocator> ProducerIdAllocator::open(const std::string& data_dir) {
  std::string path = data_dir + "/" + std::string(kFileName);
  int64_t next_block = 0;
  if (file_exists(path)) {
    auto bytes = ORDO_TRY(read_file(path, kProducerIdFileBytes + 1));
    next_block = ORDO_TRY(decode_producer_id_file(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
  }
  return ProducerIdAllocator(std::move(path), next_block);
}

Result<int64_t> ProducerIdAllocator::next() {
  std::lock_guard lock(*mu_);
  if (next_id_ == block_end_) {
    if (next_block_ > INT64_MAX - kProducerIdBlockSize) {
      return make_error(Errc::too_large, "producer ids are exhausted");
    }
    int64_t start = next_block_;
    ORDO_TRY(write_file_atomic(
        path_, std::span<const uint8_t>(encode_producer_id_file(start + kProducerIdBlockSize))));
    next_block_ = start + kProducerIdBlockSize;
    next_id_ = start;
    block_end_ = next_block_;
  }
  return next_id_++;
}

}  // namespace ordo::broker
