// Fuzz target for the RecordBatch v2 parser (src/model/record_batch.h).
//
// The input is raw bytes as they would sit in a segment file or a Produce request. The target
//  - parses the first batch under several max_batch_bytes bounds and checks that the answers
//    agree with each other and with truncated copies of the input;
//  - reads every header accessor, checks the CRC and decodes the records of a parsed batch;
//  - rebuilds the decoded records with RecordBatchBuilder and checks that nothing was lost;
//  - walks the input as a log scanner does (parse, advance by size_bytes(), stop at the first
//    batch that does not parse).
// Every invariant is an ORDO_ASSERT, so a violation aborts and libFuzzer keeps the input.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/assert.h"
#include "base/result.h"
#include "model/record_batch.h"

// UBSan reports are recoverable by default, and the libraries are compiled without
// -fno-sanitize-recover; a fuzzer must stop at the first report so the input is saved.
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}

namespace ordo::model {
namespace {

using Bytes = std::span<const uint8_t>;

// Bounds passed to parse() besides the default; covers "smaller than any batch", "exactly the
// minimum" and values around the real size.
constexpr size_t kFixedBounds[] = {0, kMinBatchBytes - 1, kMinBatchBytes, kMinBatchBytes + 1, 4096};
// A log scanner gives up after this many batches; the fuzzer's inputs never hold this many.
constexpr size_t kMaxScanBatches = 4096;

bool is_parse_error(Errc code) {
  return code == Errc::out_of_range || code == Errc::corrupt;
}

// True when s lies entirely inside outer (compared as addresses, which is well defined).
bool inside(Bytes outer, std::string_view s) {
  auto lo = reinterpret_cast<uintptr_t>(outer.data());
  auto hi = lo + outer.size();
  auto p = reinterpret_cast<uintptr_t>(s.data());
  return p >= lo && p <= hi && s.size() <= hi - p;
}

// Every header accessor, and the relations parse() promises between them.
void check_header(const RecordBatchView& v, Bytes data) {
  ORDO_ASSERT(v.bytes().data() == data.data());
  ORDO_ASSERT(v.size_bytes() >= kMinBatchBytes);
  ORDO_ASSERT(v.size_bytes() <= data.size());
  ORDO_ASSERT(v.size_bytes() <= kDefaultMaxBatchBytes);
  ORDO_ASSERT(int64_t(v.batch_length()) + int64_t(batch_layout::kLogOverhead) ==
              int64_t(v.size_bytes()));
  ORDO_ASSERT(v.magic() == batch_layout::kMagicV2);
  ORDO_ASSERT(v.base_offset() >= 0);
  ORDO_ASSERT(v.last_offset_delta() >= 0);
  ORDO_ASSERT(v.record_count() >= 0);
  ORDO_ASSERT(int64_t(v.record_count()) <= int64_t(v.last_offset_delta()) + 1);
  ORDO_ASSERT(v.base().value() == v.base_offset());
  ORDO_ASSERT(v.last() >= v.base());
  ORDO_ASSERT(v.last() - v.base() == int64_t(v.last_offset_delta()));
  ORDO_ASSERT(v.records_section().size() == v.size_bytes() - batch_layout::kHeaderSize);
  ORDO_ASSERT(v.records_section().data() == data.data() + batch_layout::kHeaderSize);

  uint16_t attrs = v.attributes();
  ORDO_ASSERT(uint16_t(v.compression()) == (attrs & batch_attr::kCompressionMask));
  ORDO_ASSERT((v.timestamp_type() == TimestampType::log_append_time) ==
              bool(attrs & batch_attr::kTimestampType));
  ORDO_ASSERT(v.is_transactional() == bool(attrs & batch_attr::kTransactional));
  ORDO_ASSERT(v.is_control() == bool(attrs & batch_attr::kControl));

  // The remaining accessors have no relation to check; they must still be readable.
  volatile uint64_t sink = uint64_t(v.leader_epoch()) ^ uint64_t(v.base_timestamp()) ^
                           uint64_t(v.max_timestamp()) ^ uint64_t(v.producer_id()) ^
                           uint64_t(v.producer_epoch()) ^ uint64_t(v.base_sequence());
  (void)sink;

  auto crc = v.verify_crc();
  ORDO_ASSERT(bool(crc) == (v.compute_crc() == v.crc()));
  if (!crc) {
    ORDO_ASSERT(crc.error().code == Errc::corrupt);
    ORDO_ASSERT(!crc.error().to_string().empty());
  }
}

// parse() under other bounds and on truncated copies must agree with the default parse.
void check_parse_consistency(Bytes data, const Result<RecordBatchView>& def) {
  std::vector<size_t> bounds(std::begin(kFixedBounds), std::end(kFixedBounds));
  bounds.push_back(std::min(data.size(), kDefaultMaxBatchBytes));
  if (def) {
    bounds.push_back(def->size_bytes());
    bounds.push_back(def->size_bytes() - 1);
  }
  for (size_t bound : bounds) {
    auto r = RecordBatchView::parse(data, bound);
    if (!r) {
      ORDO_ASSERT(is_parse_error(r.error().code));
      // Only the length check depends on the bound.
      if (def) {
        ORDO_ASSERT(def->size_bytes() > bound);
        ORDO_ASSERT(r.error().code == Errc::corrupt);
      }
      continue;
    }
    // A tighter bound never accepts what the default bound rejects.
    ORDO_ASSERT(def.has_value());
    ORDO_ASSERT(def->size_bytes() <= bound);
    ORDO_ASSERT(r->bytes().data() == def->bytes().data());
    ORDO_ASSERT(r->size_bytes() == def->size_bytes());
  }
  if (!def) return;

  // The batch alone parses the same; any shorter prefix is a torn batch (every cut below is
  // shorter, since n >= kMinBatchBytes).
  size_t n = def->size_bytes();
  auto exact = RecordBatchView::parse(data.first(n));
  ORDO_ASSERT(exact && exact->size_bytes() == n);
  for (size_t cut : {size_t(0), batch_layout::kLogOverhead - 1, batch_layout::kLogOverhead,
                     batch_layout::kMagic, batch_layout::kMagic + 1, n / 2, n - 1}) {
    auto torn = RecordBatchView::parse(data.first(cut));
    ORDO_ASSERT(!torn);
    ORDO_ASSERT(torn.error().code == Errc::out_of_range);
  }
}

// Absolute timestamps of the decoded records, or nullopt when one does not fit in int64.
std::optional<std::vector<int64_t>> absolute_timestamps(const RecordBatchView& v,
                                                        const std::vector<RecordView>& recs) {
  std::vector<int64_t> ts;
  ts.reserve(recs.size());
  for (const RecordView& r : recs) {
    int64_t t;
    if (__builtin_add_overflow(v.base_timestamp(), r.timestamp_delta, &t)) return std::nullopt;
    ts.push_back(t);
  }
  return ts;
}

// Rebuilds the decoded records with RecordBatchBuilder and checks that the new batch holds the
// same records. When the original is exactly what the builder would have written (no fields the
// builder cannot express, minimal varints), the bytes must match too.
void check_rebuild(const RecordBatchView& v, const std::vector<RecordView>& recs) {
  if (recs.empty()) return;  // the builder needs at least one record
  auto ts_or = absolute_timestamps(v, recs);
  if (!ts_or) return;
  // Timestamps further apart than int64 can hold are kept: the builder stores each relative to
  // the first record's, wrapping as Kafka's Java code does, and reading them back undoes that.
  const std::vector<int64_t>& ts = *ts_or;

  RecordBatchOptions o;
  o.base_offset = v.base();
  o.leader_epoch = v.leader_epoch();
  o.producer_id = v.producer_id();
  o.producer_epoch = v.producer_epoch();
  o.base_sequence = v.base_sequence();
  o.timestamp_type = v.timestamp_type();
  o.transactional = v.is_transactional();
  o.control = v.is_control();
  RecordBatchBuilder builder(o);
  for (size_t i = 0; i < recs.size(); ++i) {
    const RecordView& r = recs[i];
    RecordInput in;
    if (r.key) in.key = std::string(*r.key);
    if (r.value) in.value = std::string(*r.value);
    in.timestamp_ms = ts[i];
    for (const RecordHeaderView& h : r.headers) {
      std::optional<std::string> hv;
      if (h.value) hv = std::string(*h.value);
      in.headers.emplace_back(std::string(h.key), std::move(hv));
    }
    builder.add(std::move(in));
  }
  ORDO_ASSERT(builder.record_count() == recs.size());
  std::vector<uint8_t> built = builder.build();

  auto bv = RecordBatchView::parse(built);
  ORDO_ASSERT(bv);
  ORDO_ASSERT(bv->size_bytes() == built.size());
  ORDO_ASSERT(bv->verify_crc());
  ORDO_ASSERT(bv->base_offset() == v.base_offset());
  ORDO_ASSERT(bv->leader_epoch() == v.leader_epoch());
  ORDO_ASSERT(bv->producer_id() == v.producer_id());
  ORDO_ASSERT(bv->producer_epoch() == v.producer_epoch());
  ORDO_ASSERT(bv->base_sequence() == v.base_sequence());
  ORDO_ASSERT(bv->timestamp_type() == v.timestamp_type());
  ORDO_ASSERT(bv->is_transactional() == v.is_transactional());
  ORDO_ASSERT(bv->is_control() == v.is_control());
  ORDO_ASSERT(bv->compression() == Compression::none);
  ORDO_ASSERT(size_t(bv->record_count()) == recs.size());
  ORDO_ASSERT(size_t(bv->last_offset_delta()) == recs.size() - 1);
  ORDO_ASSERT(bv->base_timestamp() == ts.front());
  ORDO_ASSERT(bv->max_timestamp() == *std::max_element(ts.begin(), ts.end()));

  auto back = decode_records(*bv);
  ORDO_ASSERT(back);
  ORDO_ASSERT(back->size() == recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    const RecordView& a = recs[i];
    const RecordView& b = (*back)[i];
    ORDO_ASSERT(b.attributes == 0);
    ORDO_ASSERT(size_t(b.offset_delta) == i);
    ORDO_ASSERT(int64_t(uint64_t(bv->base_timestamp()) + uint64_t(b.timestamp_delta)) == ts[i]);
    ORDO_ASSERT(a.key == b.key);
    ORDO_ASSERT(a.value == b.value);
    ORDO_ASSERT(a.headers.size() == b.headers.size());
    for (size_t h = 0; h < a.headers.size(); ++h) {
      ORDO_ASSERT(a.headers[h].key == b.headers[h].key);
      ORDO_ASSERT(a.headers[h].value == b.headers[h].value);
    }
  }

  // Is the original exactly what the builder writes, up to varint lengths?
  constexpr uint16_t kBuilderAttrs =
      batch_attr::kTimestampType | batch_attr::kTransactional | batch_attr::kControl;
  bool canonical = (v.attributes() & ~kBuilderAttrs) == 0 &&
                   size_t(v.last_offset_delta()) == recs.size() - 1 &&
                   recs.front().timestamp_delta == 0 && v.max_timestamp() == bv->max_timestamp() &&
                   v.verify_crc().has_value();
  for (size_t i = 0; i < recs.size() && canonical; ++i) {
    canonical = recs[i].attributes == 0 && size_t(recs[i].offset_delta) == i;
  }
  if (canonical) {
    // The builder writes minimal varints, so it can only be shorter; with the same length every
    // varint was minimal and the bytes are identical.
    ORDO_ASSERT(built.size() <= v.size_bytes());
    if (built.size() == v.size_bytes()) {
      ORDO_ASSERT(std::memcmp(built.data(), v.bytes().data(), built.size()) == 0);
    }
  }
}

// Decodes the records of a parsed batch and checks what decode_records() promises.
void check_records(const RecordBatchView& v) {
  auto recs = decode_records(v);
  // scan_records() walks the same bytes without keeping them: same verdict, same count and
  // the largest timestamp delta.
  auto summary = scan_records(v.records_section(), v.record_count(), v.last_offset_delta());
  if (v.compression() == Compression::none) {
    ORDO_ASSERT(summary.has_value() == recs.has_value());
    if (summary) {
      ORDO_ASSERT(size_t(summary->count) == recs->size());
      int64_t max_delta = std::numeric_limits<int64_t>::min();
      for (const auto& r : *recs) max_delta = std::max(max_delta, r.timestamp_delta);
      ORDO_ASSERT(summary->max_timestamp_delta == max_delta);
    }
  }
  if (!recs) {
    Errc code = recs.error().code;
    if (v.compression() != Compression::none) {
      ORDO_ASSERT(code == Errc::invalid_argument);
    } else {
      ORDO_ASSERT(code == Errc::corrupt);
    }
    ORDO_ASSERT(!recs.error().to_string().empty());
    // A tighter header bound cannot make a rejected batch acceptable.
    ORDO_ASSERT(!decode_records(v, 0));
    return;
  }
  ORDO_ASSERT(v.compression() == Compression::none);
  ORDO_ASSERT(recs->size() == size_t(v.record_count()));
  // What a producer may send: its records carry exactly the offsets its header claims,
  // deltas 0..count-1 in order.
  if (auto produced = check_produced_batch(v); produced) {
    ORDO_ASSERT(v.last_offset_delta() == v.record_count() - 1);
    for (size_t i = 0; i < recs->size(); ++i) ORDO_ASSERT((*recs)[i].offset_delta == int32_t(i));
  } else {
    ORDO_ASSERT(produced.error().code == Errc::invalid_argument);
  }

  Bytes section = v.records_section();
  int64_t prev_delta = -1;
  size_t max_headers = 0;
  // Each record takes at least 7 bytes of the section.
  ORDO_ASSERT(recs->size() * 7 <= section.size());
  for (const RecordView& r : *recs) {
    ORDO_ASSERT(r.offset_delta > prev_delta);
    ORDO_ASSERT(r.offset_delta <= v.last_offset_delta());
    prev_delta = r.offset_delta;
    if (r.key) ORDO_ASSERT(inside(section, *r.key));
    if (r.value) ORDO_ASSERT(inside(section, *r.value));
    for (const RecordHeaderView& h : r.headers) {
      ORDO_ASSERT(inside(section, h.key));
      if (h.value) ORDO_ASSERT(inside(section, *h.value));
    }
    max_headers = std::max(max_headers, r.headers.size());
  }

  // decode_records(v, k) succeeds exactly when no record has more than k headers.
  ORDO_ASSERT(bool(decode_records(v, max_headers)));
  if (max_headers > 0) {
    auto tight = decode_records(v, max_headers - 1);
    ORDO_ASSERT(!tight && tight.error().code == Errc::corrupt);
  }

  check_rebuild(v, *recs);
}

// The setters the log applies on append, on a private copy of the batch.
void check_setters(const RecordBatchView& v) {
  std::vector<uint8_t> copy(v.bytes().begin(), v.bytes().end());
  bool crc_ok = v.verify_crc().has_value();
  bool decodes = decode_records(v).has_value();

  // Neither assigned field is covered by the CRC.
  Offset new_base(INT64_MAX - v.last_offset_delta());
  set_base_offset(copy, new_base);
  set_leader_epoch(copy, 7);
  auto a = RecordBatchView::parse(copy);
  ORDO_ASSERT(a);
  ORDO_ASSERT(a->base() == new_base && a->leader_epoch() == 7);
  ORDO_ASSERT(a->verify_crc().has_value() == crc_ok);

  // LogAppendTime rewrites the CRC, so the result is always valid.
  set_log_append_time(copy, 1234567);
  auto b = RecordBatchView::parse(copy);
  ORDO_ASSERT(b);
  ORDO_ASSERT(b->timestamp_type() == TimestampType::log_append_time);
  ORDO_ASSERT(b->max_timestamp() == 1234567);
  ORDO_ASSERT(b->compression() == v.compression());
  ORDO_ASSERT(b->verify_crc());
  ORDO_ASSERT(decode_records(*b).has_value() == decodes);
}

void check_batch(const RecordBatchView& v, Bytes data) {
  check_header(v, data);
  check_records(v);
  check_setters(v);
}

// The loop a segment scan runs: parse, check, advance by the batch's size, stop at the first
// batch that does not parse.
void scan(Bytes data) {
  size_t pos = 0;
  size_t batches = 0;
  while (pos < data.size() && batches < kMaxScanBatches) {
    Bytes rest = data.subspan(pos);
    auto v = RecordBatchView::parse(rest);
    if (!v) {
      ORDO_ASSERT(is_parse_error(v.error().code));
      break;
    }
    check_header(*v, rest);
    // check_records() already ran on the first batch; repeating it is what a real scan costs.
    if (batches > 0) check_records(*v);
    ORDO_ASSERT(v->size_bytes() >= kMinBatchBytes);  // the loop always advances
    pos += v->size_bytes();
    ++batches;
  }
  ORDO_ASSERT(pos <= data.size());
  ORDO_ASSERT(batches <= data.size() / kMinBatchBytes);
}

void fuzz_one(Bytes data) {
  auto def = RecordBatchView::parse(data);
  if (!def) {
    ORDO_ASSERT(is_parse_error(def.error().code));
    ORDO_ASSERT(!def.error().to_string().empty());
  }
  check_parse_consistency(data, def);
  if (def) check_batch(*def, data);
  scan(data);
}

}  // namespace
}  // namespace ordo::model

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ordo::model::fuzz_one(std::span<const uint8_t>(data, size));
  return 0;
}
