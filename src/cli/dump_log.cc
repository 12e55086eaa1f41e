#include <cstdio>
#include <filesystem>

#include "base/file.h"
#include "cli/commands.h"
#include "model/record_batch.h"

namespace ordo::cli {

namespace {

// Prints the batches of one segment file and checks each (structure, CRC, increasing
// offsets). Reads the file in one pass with a bounded buffer.
int dump(const std::string& path, bool records) {
  auto f = File::open(path, O_RDONLY);
  if (!f) {
    std::fprintf(stderr, "ordo: %s\n", f.error().to_string().c_str());
    return 1;
  }
  int64_t size = f->size().value_or(0);
  int64_t pos = 0;
  int64_t expected = -1;
  int64_t batches = 0;
  std::vector<uint8_t> buf;
  while (pos < size) {
    uint8_t prefix[model::batch_layout::kLogOverhead];
    if (size - pos < int64_t(sizeof prefix) || !f->pread_exact(prefix, pos)) {
      std::printf("position %lld: %lld trailing bytes (torn tail)\n", (long long)pos,
                  (long long)(size - pos));
      return 1;
    }
    int64_t total = int64_t(int32_t(load_be32(prefix + 8))) + 12;
    if (total == 12 && load_be64(prefix) == 0) {
      std::printf("position %lld: zeros to the end (preallocated space)\n", (long long)pos);
      break;
    }
    if (total < int64_t(model::kMinBatchBytes) || total > int64_t(model::kDefaultMaxBatchBytes) ||
        pos + total > size) {
      std::printf("position %lld: bad batch length %lld\n", (long long)pos, (long long)total);
      return 1;
    }
    buf.resize(size_t(total));
    if (!f->pread_exact(buf, pos)) return 1;
    auto v = model::RecordBatchView::parse(buf);
    if (!v) {
      std::printf("position %lld: %s\n", (long long)pos, v.error().to_string().c_str());
      return 1;
    }
    bool crc_ok = v->verify_crc().has_value();
    std::printf(
        "baseOffset: %lld lastOffset: %lld count: %d position: %lld size: %lld epoch: %d "
        "codec: %d maxTimestamp: %lld producerId: %lld sequence: %d transactional: %d "
        "control: %d crc: %s\n",
        (long long)v->base_offset(), (long long)v->last().value(), v->record_count(),
        (long long)pos, (long long)total, v->leader_epoch(), int(v->compression()),
        (long long)v->max_timestamp(), (long long)v->producer_id(), v->base_sequence(),
        int(v->is_transactional()), int(v->is_control()), crc_ok ? "valid" : "INVALID");
    if (!crc_ok) return 1;
    if (v->base_offset() < expected) {
      std::printf("position %lld: offset %lld goes backwards (expected >= %lld)\n", (long long)pos,
                  (long long)v->base_offset(), (long long)expected);
      return 1;
    }
    if (records && v->compression() == model::Compression::none) {
      auto recs = model::decode_records(*v);
      if (!recs) {
        std::printf("  records: %s\n", recs.error().to_string().c_str());
        return 1;
      }
      for (const auto& r : *recs) {
        std::string key = r.key ? std::string(*r.key) : "<null>";
        std::string value = r.value ? std::string(*r.value) : "<null>";
        if (value.size() > 80) value = value.substr(0, 80) + "...";
        std::printf("  | offset: %lld timestamp: %lld key: %s value: %s headers: %zu\n",
                    (long long)(v->base_offset() + r.offset_delta),
                    (long long)model::record_timestamp(v->base_timestamp(), r.timestamp_delta),
                    key.c_str(), value.c_str(), r.headers.size());
      }
    }
    expected = v->last().value() + 1;
    pos += total;
    ++batches;
  }
  std::printf("%lld batches, %lld bytes, all valid\n", (long long)batches, (long long)pos);
  return 0;
}

}  // namespace

int dump_log(const std::string& path, bool records) {
  return dump(path, records);
}

}  // namespace ordo::cli
