#include "storage/producer_state.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/file.h"
#include "base/random.h"
#include "storage/tests/test_util.h"

namespace ordo::storage {

// Verdicts by name in failure messages.
void PrintTo(SequenceVerdict v, std::ostream* os) {
  *os << sequence_verdict_name(v);
}

namespace {

using V = SequenceVerdict;

// A partition log reduced to its next offset: appends through the table's check and update.
struct Harness {
  ProducerStateTable table;
  Offset next{0};

  explicit Harness(ProducerStateOptions options = {}) : table(options) {}

  SequenceCheck check(int64_t pid, int16_t epoch, int32_t seq, int32_t count) const {
    return table.check(pid, epoch, seq, count - 1);
  }
  // Checks (expecting `append`) and records a batch of `count` records.
  ProducerAppend append(int64_t pid, int16_t epoch, int32_t seq, int32_t count, int64_t ts) {
    EXPECT_EQ(check(pid, epoch, seq, count).verdict, V::append)
        << "pid " << pid << " epoch " << epoch << " seq " << seq;
    ProducerAppend a{.producer_id = pid,
                     .epoch = epoch,
                     .first_seq = seq,
                     .last_seq = increment_sequence(seq, count - 1),
                     .first_offset = next,
                     .last_offset = next + (count - 1),
                     .max_timestamp = ts};
    table.update(a);
    next = next + count;
    return a;
  }
  // A batch not from an idempotent producer: takes offsets, changes nothing in the table.
  void append_plain(int32_t count) { next = next + count; }
};

std::vector<uint8_t> reseal(std::vector<uint8_t> bytes) {
  size_t n = bytes.size() - 4;
  store_be32(bytes.data() + n, crc32c(0, bytes.data(), n));
  return bytes;
}

Errc decode_error(std::span<const uint8_t> bytes) {
  auto r = ProducerStateTable::decode_snapshot(bytes);
  return r ? Errc::ok : r.error().code;
}

TEST(Sequence, IncrementWraps) {
  EXPECT_EQ(increment_sequence(0, 0), 0);
  EXPECT_EQ(increment_sequence(5, 3), 8);
  EXPECT_EQ(increment_sequence(INT32_MAX - 2, 2), INT32_MAX);
  EXPECT_EQ(increment_sequence(INT32_MAX - 2, 3), 0);
  EXPECT_EQ(increment_sequence(INT32_MAX, 1), 0);
  EXPECT_EQ(increment_sequence(INT32_MAX, 5), 4);
  EXPECT_EQ(increment_sequence(1, INT32_MAX), 0);
  EXPECT_EQ(increment_sequence(INT32_MAX, INT32_MAX), INT32_MAX - 1);
  EXPECT_TRUE(in_sequence(4, 5));
  EXPECT_TRUE(in_sequence(INT32_MAX, 0));
  EXPECT_FALSE(in_sequence(INT32_MAX, INT32_MIN));
  EXPECT_FALSE(in_sequence(4, 4));
  EXPECT_FALSE(in_sequence(4, 6));
  EXPECT_FALSE(in_sequence(4, 0));
}

TEST(ProducerState, InOrderAppends) {
  Harness h;
  h.append(7, 0, 0, 3, 100);
  h.append_plain(2);
  h.append(7, 0, 3, 1, 101);
  h.append(7, 0, 4, 5, 102);
  const ProducerEntry* e = h.table.find(7);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->epoch, 0);
  EXPECT_EQ(e->last_timestamp, 102);
  ASSERT_EQ(e->retained().size(), 3u);
  EXPECT_EQ(e->retained()[1], (ProducerBatchMetadata{3, 3, Offset(5), Offset(5), 101}));
  EXPECT_EQ(e->newest(), (ProducerBatchMetadata{4, 8, Offset(6), Offset(10), 102}));
  EXPECT_EQ(h.check(7, 0, 9, 1).verdict, V::append);
  EXPECT_EQ(h.table.size(), 1u);
}

TEST(ProducerState, DuplicateOfEachOfTheLastFiveReturnsItsOffsets) {
  Harness h;
  std::vector<ProducerAppend> sent;
  int32_t seq = 0;
  for (int i = 0; i < 8; ++i) {
    int32_t count = 1 + i % 3;
    sent.push_back(h.append(1, 2, seq, count, 1000 + i));
    seq += count;
    h.append_plain(1);  // offsets of other producers in between
  }
  ASSERT_EQ(h.table.find(1)->retained().size(), 5u);
  for (size_t i = 0; i < sent.size(); ++i) {
    const ProducerAppend& a = sent[i];
    SequenceCheck c = h.check(1, 2, a.first_seq, int32_t(a.last_offset - a.first_offset) + 1);
    if (i >= sent.size() - 5) {
      EXPECT_EQ(c.verdict, V::duplicate) << "batch " << i;
      EXPECT_EQ(c.first_offset, a.first_offset) << "batch " << i;
      EXPECT_EQ(c.last_offset, a.last_offset) << "batch " << i;
    } else {
      // Older than the window: Kafka cannot tell it from a gap either.
      EXPECT_EQ(c.verdict, V::out_of_order_sequence) << "batch " << i;
    }
  }
  // The same first sequence with another last sequence is not the same batch.
  const ProducerAppend& last = sent.back();
  EXPECT_EQ(h.check(1, 2, last.first_seq, 7).verdict, V::out_of_order_sequence);
  // A retry with another epoch is not a duplicate either.
  EXPECT_EQ(h.check(1, 1, last.first_seq, 1).verdict, V::invalid_producer_epoch);
}

TEST(ProducerState, GapIsOutOfOrder) {
  Harness h;
  h.append(3, 0, 0, 2, 10);
  SequenceCheck c = h.check(3, 0, 3, 1);
  EXPECT_EQ(c.verdict, V::out_of_order_sequence);
  EXPECT_EQ(c.current_epoch, 0);
  EXPECT_EQ(c.current_last_seq, 1);
  EXPECT_EQ(h.check(3, 0, 1, 1).verdict, V::out_of_order_sequence);  // overlaps the last batch
  EXPECT_EQ(h.check(3, 0, 2, 1).verdict, V::append);
}

TEST(ProducerState, StaleEpochIsInvalid) {
  Harness h;
  h.append(5, 3, 0, 1, 10);
  for (int16_t epoch : {0, 1, 2}) {
    SequenceCheck c = h.check(5, epoch, 1, 1);
    EXPECT_EQ(c.verdict, V::invalid_producer_epoch);
    EXPECT_EQ(c.current_epoch, 3);
  }
  EXPECT_EQ(h.check(5, 2, 0, 1).verdict, V::invalid_producer_epoch);
}

TEST(ProducerState, NewEpochStartsAtZeroAndRestartsTheWindow) {
  Harness h;
  for (int i = 0; i < 3; ++i) h.append(9, 0, i, 1, 10 + i);
  EXPECT_EQ(h.check(9, 1, 3, 1).verdict, V::out_of_order_sequence);
  EXPECT_EQ(h.check(9, 1, 5, 1).verdict, V::out_of_order_sequence);
  ProducerAppend a = h.append(9, 1, 0, 2, 20);
  const ProducerEntry* e = h.table.find(9);
  ASSERT_EQ(e->retained().size(), 1u);
  EXPECT_EQ(e->epoch, 1);
  EXPECT_EQ(h.check(9, 0, 2, 1).verdict, V::invalid_producer_epoch);
  SequenceCheck dup = h.check(9, 1, 0, 2);
  EXPECT_EQ(dup.verdict, V::duplicate);
  EXPECT_EQ(dup.first_offset, a.first_offset);
  EXPECT_EQ(h.check(9, 1, 2, 1).verdict, V::append);
  EXPECT_EQ(h.check(9, 7, 0, 1).verdict, V::append);  // epochs may skip
}

TEST(ProducerState, UnknownProducerMustStartAtZero) {
  Harness h;
  EXPECT_EQ(h.check(11, 0, 1, 1).verdict, V::out_of_order_sequence);
  EXPECT_EQ(h.check(11, 4, 100, 1).verdict, V::out_of_order_sequence);
  SequenceCheck c = h.check(11, 4, 0, 3);
  EXPECT_EQ(c.verdict, V::append);
  EXPECT_EQ(c.current_epoch, -1);
  EXPECT_EQ(c.current_last_seq, -1);

  Harness kafka25({.require_seq_zero_for_unknown_producer = false});
  EXPECT_EQ(kafka25.check(11, 0, 100, 1).verdict, V::append);
  kafka25.append(11, 0, 100, 1, 5);
  EXPECT_EQ(kafka25.check(11, 0, 102, 1).verdict, V::out_of_order_sequence);  // known now
}

TEST(ProducerState, NegativeSequenceOrEpochIsAnInvalidRecord) {
  Harness h;
  EXPECT_EQ(h.check(1, 0, -1, 1).verdict, V::invalid_record);
  EXPECT_EQ(h.check(1, -1, 0, 1).verdict, V::invalid_record);
  h.append(1, 0, 0, 1, 0);
  EXPECT_EQ(h.check(1, 0, -5, 1).verdict, V::invalid_record);
}

TEST(ProducerState, SequencesWrapAroundAtInt32Max) {
  Harness h;
  // As restored from a snapshot of a long-lived producer: its last sequence is INT32_MAX - 1.
  h.table.update({.producer_id = 4,
                  .epoch = 0,
                  .first_seq = INT32_MAX - 3,
                  .last_seq = INT32_MAX - 1,
                  .first_offset = Offset(0),
                  .last_offset = Offset(2),
                  .max_timestamp = 1});
  h.next = Offset(3);
  EXPECT_EQ(h.check(4, 0, 0, 1).verdict, V::out_of_order_sequence);
  ProducerAppend crossing = h.append(4, 0, INT32_MAX, 3, 2);  // INT32_MAX, 0, 1
  EXPECT_EQ(crossing.last_seq, 1);
  EXPECT_EQ(h.check(4, 0, INT32_MAX, 3).verdict, V::duplicate);
  EXPECT_EQ(h.check(4, 0, INT32_MAX, 3).first_offset, crossing.first_offset);
  EXPECT_EQ(h.check(4, 0, 3, 1).verdict, V::out_of_order_sequence);
  h.append(4, 0, 2, 1, 3);

  // A batch that ends exactly on INT32_MAX is followed by 0.
  Harness g;
  g.table.update({.producer_id = 4,
                  .epoch = 0,
                  .first_seq = INT32_MAX - 1,
                  .last_seq = INT32_MAX,
                  .first_offset = Offset(0),
                  .last_offset = Offset(1),
                  .max_timestamp = 1});
  g.next = Offset(2);
  EXPECT_EQ(g.check(4, 0, INT32_MIN, 1).verdict, V::invalid_record);
  g.append(4, 0, 0, 1, 2);
}

TEST(ProducerState, NonIdempotentBatchesAreNotTracked) {
  Harness h;
  EXPECT_EQ(h.check(-1, -1, -1, 10).verdict, V::append);
  EXPECT_EQ(h.check(-1, 0, 5, 1).verdict, V::append);
  EXPECT_EQ(h.check(-7, 0, 5, 1).verdict, V::append);
  std::vector<uint8_t> plain = testing::make_batch(3, "x");
  auto view = model::RecordBatchView::parse(plain);
  ASSERT_TRUE(view);
  EXPECT_EQ(h.table.check(*view).verdict, V::append);
  EXPECT_FALSE(h.table.apply_batch(*view));
  // Control batches (transaction markers) are neither checked nor tracked.
  model::RecordBatchBuilder b(
      {.producer_id = 3, .producer_epoch = 0, .base_sequence = -1, .control = true});
  b.add(std::string_view("k"), std::string_view("v"), 0);
  std::vector<uint8_t> control = b.build();
  auto cview = model::RecordBatchView::parse(control);
  ASSERT_TRUE(cview);
  EXPECT_EQ(h.table.check(*cview).verdict, V::append);
  EXPECT_FALSE(h.table.apply_batch(*cview));
  EXPECT_TRUE(h.table.empty());
}

TEST(ProducerState, FullTableEvictsTheOldestTimestamp) {
  Harness h({.max_producers = 3});
  h.append(1, 0, 0, 1, 100);
  h.append(2, 0, 0, 1, 50);
  h.append(3, 0, 0, 1, 200);
  h.append(2, 0, 1, 1, 300);  // an update of a known producer evicts nobody
  EXPECT_EQ(h.table.size(), 3u);
  h.append(4, 0, 0, 1, 10);  // even with an older timestamp, the newcomer stays
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{2, 3, 4}));
  // The evicted producer's next batch is refused rather than accepted without its state.
  EXPECT_EQ(h.check(1, 0, 1, 1).verdict, V::out_of_order_sequence);
  h.append(5, 0, 0, 1, 400);
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{2, 3, 5}));
  // Equal timestamps: the smallest id goes first.
  Harness t({.max_producers = 2});
  t.append(9, 0, 0, 1, 7);
  t.append(8, 0, 0, 1, 7);
  t.append(10, 0, 0, 1, 7);
  EXPECT_EQ(t.table.producer_ids(), (std::vector<int64_t>{9, 10}));
}

TEST(ProducerState, ExpireRemovesIdleProducers) {
  Harness h;
  h.append(1, 0, 0, 1, 0);
  h.append(2, 0, 0, 1, 1000);
  h.append(3, 0, 0, 1, 2000);
  EXPECT_EQ(h.table.expire(kDefaultProducerIdExpirationMs - 1), 0u);
  EXPECT_EQ(h.table.expire(kDefaultProducerIdExpirationMs), 1u);  // 1 idle exactly one day
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.table.expire(kDefaultProducerIdExpirationMs + 999), 0u);
  EXPECT_EQ(h.table.expire(2500, 1000), 1u);  // 2 idle 1500 ms, 3 only 500
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{3}));
  EXPECT_EQ(h.table.expire(INT64_MIN, 1), 0u);  // no overflow
  EXPECT_EQ(h.table.expire(INT64_MAX, 0), 1u);
  EXPECT_TRUE(h.table.empty());
}

TEST(ProducerState, TruncateAfterDropsCutBatches) {
  Harness h;
  h.append(1, 0, 0, 3, 10);  // offsets 0..2
  h.append(2, 0, 0, 1, 11);  // 3
  h.append(1, 0, 3, 3, 12);  // 4..6
  h.append(1, 0, 6, 1, 13);  // 7
  h.append(3, 0, 0, 2, 14);  // 8..9
  h.table.truncate_after(Offset(4));
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{1, 2}));
  const ProducerEntry* e = h.table.find(1);
  ASSERT_EQ(e->retained().size(), 1u);
  EXPECT_EQ(e->last_timestamp, 10);
  h.next = Offset(4);
  EXPECT_EQ(h.check(1, 0, 6, 1).verdict, V::out_of_order_sequence);
  EXPECT_EQ(h.check(3, 0, 2, 1).verdict, V::out_of_order_sequence);  // forgotten
  h.append(1, 0, 3, 3, 20);
  // Truncating at or past the end changes nothing.
  ProducerStateTable before = h.table;
  h.table.truncate_after(h.next);
  EXPECT_EQ(h.table, before);
}

TEST(ProducerState, TruncateBeforeRemovesProducersEndingBeforeTheStart) {
  Harness h;
  h.append(1, 0, 0, 2, 10);  // 0..1
  h.append(2, 0, 0, 1, 11);  // 2
  h.append(1, 0, 2, 2, 12);  // 3..4
  h.append(3, 0, 0, 1, 13);  // 5
  h.table.truncate_before(Offset(4));
  EXPECT_EQ(h.table.producer_ids(), (std::vector<int64_t>{1, 3}));
  // Producer 1 keeps the batch retention already deleted: its retry is still a duplicate.
  SequenceCheck c = h.check(1, 0, 0, 2);
  EXPECT_EQ(c.verdict, V::duplicate);
  EXPECT_EQ(c.first_offset, Offset(0));
  h.table.truncate_before(Offset(6));
  EXPECT_TRUE(h.table.empty());
}

std::vector<uint8_t> idempotent_batch(int64_t pid, int16_t epoch, int32_t seq, int n, Offset base,
                                      int64_t ts) {
  model::RecordBatchBuilder b(
      {.base_offset = base, .producer_id = pid, .producer_epoch = epoch, .base_sequence = seq});
  for (int i = 0; i < n; ++i) b.add(std::string_view("k"), std::string_view("v"), ts);
  return b.build();
}

TEST(ProducerState, ApplyBatchRebuildsWhatUpdateRecorded) {
  Harness h;
  std::vector<std::vector<uint8_t>> log;
  auto add = [&](int64_t pid, int16_t epoch, int32_t seq, int n, int64_t ts) {
    log.push_back(idempotent_batch(pid, epoch, seq, n, h.next, ts));
    auto v = model::RecordBatchView::parse(log.back());
    ORDO_ASSERT(v.has_value());
    EXPECT_EQ(h.table.check(*v).verdict, V::append);
    h.table.update(ProducerAppend::of(*v));
    h.next = h.next + n;
  };
  for (int i = 0; i < 7; ++i) add(1, 0, i * 2, 2, 100 + i);
  add(2, 5, 0, 3, 200);
  add(1, 1, 0, 1, 300);
  add(2, 5, 3, 1, 400);

  ProducerStateTable replayed;
  for (const auto& bytes : log) {
    EXPECT_TRUE(replayed.apply_batch(*model::RecordBatchView::parse(bytes)));
  }
  EXPECT_EQ(replayed, h.table);
  // Replaying again from an earlier offset (below a snapshot's) changes nothing.
  for (const auto& bytes : log) {
    EXPECT_FALSE(replayed.apply_batch(*model::RecordBatchView::parse(bytes)));
  }
  EXPECT_EQ(replayed, h.table);
  // Out-of-order history in the log (e.g. written before the checks) is recorded as it is.
  auto gap = idempotent_batch(2, 5, 50, 1, h.next, 500);
  EXPECT_TRUE(replayed.apply_batch(*model::RecordBatchView::parse(gap)));
  EXPECT_EQ(replayed.find(2)->newest().first_seq, 50);
}

// Four producers, one of them with a full window that wraps around INT32_MAX.
ProducerStateTable sample_table() {
  Harness h;
  h.append(1, 0, 0, 3, 1000);
  h.append(42, 7, 0, 1, -1);
  h.append(1, 0, 3, 1, 1001);
  h.table.update({.producer_id = 1000,
                  .epoch = 32767,
                  .first_seq = INT32_MAX - 5,
                  .last_seq = INT32_MAX - 5,
                  .first_offset = h.next,
                  .last_offset = h.next,
                  .max_timestamp = INT64_MIN});
  h.next = h.next + 1;
  for (int i = 0; i < 5; ++i) {
    h.append(1000, 32767, increment_sequence(INT32_MAX - 4, 2 * i), 2, INT64_MAX - i);
  }
  h.append(INT64_MAX, 0, 0, 1, 5);
  return h.table;
}

TEST(ProducerSnapshot, RoundTrip) {
  ProducerStateTable t = sample_table();
  auto bytes = t.encode_snapshot(Offset(100));
  ASSERT_TRUE(bytes) << bytes.error().to_string();
  EXPECT_EQ(bytes->size(), 18u + 4 * 19 + (2 + 1 + 5 + 1) * 32 + 4);
  auto snap = ProducerStateTable::decode_snapshot(*bytes);
  ASSERT_TRUE(snap) << snap.error().to_string();
  EXPECT_EQ(snap->offset, Offset(100));
  EXPECT_EQ(snap->table, t);
  EXPECT_EQ(*snap->table.encode_snapshot(Offset(100)), *bytes);
  // The decoded table answers as the original.
  // (check() takes the last offset delta: 1 for a batch of two records.)
  EXPECT_EQ(snap->table.check(1000, 32767, 3, 1).verdict, V::duplicate);          // 3..4
  EXPECT_EQ(snap->table.check(1000, 32767, INT32_MAX, 1).verdict, V::duplicate);  // wrapped
  EXPECT_EQ(snap->table.check(1000, 32767, 5, 0).verdict, V::append);

  ProducerStateTable empty;
  auto e = empty.encode_snapshot(Offset(0));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->size(), 22u);
  auto es = ProducerStateTable::decode_snapshot(*e);
  ASSERT_TRUE(es);
  EXPECT_TRUE(es->table.empty());
  EXPECT_EQ(es->offset, Offset(0));
}

TEST(ProducerSnapshot, EncodeRefusesBatchesPastTheOffset) {
  ProducerStateTable t = sample_table();  // last offset 16
  auto r = t.encode_snapshot(Offset(16));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_TRUE(t.encode_snapshot(Offset(17)));
  EXPECT_EQ(ProducerStateTable().encode_snapshot(Offset(-1)).error().code, Errc::invalid_argument);
}

TEST(ProducerSnapshot, DecodeKeepsTheNewestWhenOverTheLimit) {
  Harness h;
  h.append(1, 0, 0, 1, 30);
  h.append(2, 0, 0, 1, 10);
  h.append(3, 0, 0, 1, 20);
  auto bytes = h.table.encode_snapshot(h.next);
  ASSERT_TRUE(bytes);
  auto snap = ProducerStateTable::decode_snapshot(*bytes, {.max_producers = 2});
  ASSERT_TRUE(snap);
  EXPECT_EQ(snap->table.producer_ids(), (std::vector<int64_t>{1, 3}));
}

TEST(ProducerSnapshot, EveryByteFlipIsCorrupt) {
  Harness h;
  h.append(1, 0, 0, 2, 10);
  h.append(2, 3, 0, 1, 11);
  h.append(1, 0, 2, 1, 12);
  std::vector<uint8_t> good = *h.table.encode_snapshot(h.next);
  ASSERT_TRUE(ProducerStateTable::decode_snapshot(good));
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t mask : {0x01, 0x10, 0x80, 0xff}) {
      std::vector<uint8_t> bad = good;
      bad[i] ^= mask;
      EXPECT_EQ(decode_error(bad), Errc::corrupt) << "byte " << i << " mask " << int(mask);
    }
  }
}

TEST(ProducerSnapshot, EveryTruncationIsCorrupt) {
  std::vector<uint8_t> good = *sample_table().encode_snapshot(Offset(50));
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_EQ(decode_error(std::span<const uint8_t>(good).first(n)), Errc::corrupt) << n;
  }
}

TEST(ProducerSnapshot, TrailingBytesAreCorrupt) {
  std::vector<uint8_t> good = *sample_table().encode_snapshot(Offset(50));
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_EQ(decode_error(longer), Errc::corrupt);
  // Even with a CRC that covers them.
  std::vector<uint8_t> sealed(good.begin(), good.end() - 4);
  sealed.push_back(0);
  sealed.resize(sealed.size() + 4);
  auto r = ProducerStateTable::decode_snapshot(reseal(sealed));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
  EXPECT_NE(r.error().message.find("after its last producer"), std::string::npos)
      << r.error().message;
}

// Field positions, from docs/producer-state-format.md.
constexpr size_t kHeader = 18;
constexpr size_t kProducer = 19;
constexpr size_t kBatch = 32;

TEST(ProducerSnapshot, StructuralNonsenseIsCorruptEvenWithAGoodCrc) {
  // Two producers (ids 1 and 2), two batches then one.
  Harness h;
  h.append(1, 0, 0, 2, 10);  // offsets 0..1
  h.append(2, 3, 0, 1, 11);  // 2
  h.append(1, 0, 2, 1, 12);  // 3
  const std::vector<uint8_t> good = *h.table.encode_snapshot(Offset(4));
  const size_t p1 = kHeader;                      // producer 1
  const size_t b1 = p1 + kProducer;               // its first batch
  const size_t p2 = p1 + kProducer + 2 * kBatch;  // producer 2
  ASSERT_EQ(load_be64(&good[p2]), 2u);

  struct Case {
    const char* name;
    std::function<void(std::vector<uint8_t>&)> edit;
    const char* message;  // a part of the error message
  };
  const std::vector<Case> cases = {
      {"magic", [](auto& b) { b[0] = 'X'; }, "magic"},
      {"version", [](auto& b) { store_be16(&b[4], 2); }, "version 2"},
      {"negative offset", [](auto& b) { store_be64(&b[6], uint64_t(-1)); }, "offset -1"},
      {"count too large", [](auto& b) { store_be32(&b[14], 3); }, "claims 3 producers"},
      {"count too small", [](auto& b) { store_be32(&b[14], 1); }, "after its last producer"},
      {"duplicate id", [&](auto& b) { store_be64(&b[p2], 1); }, "producer id 1 after 1"},
      {"descending ids", [&](auto& b) { store_be64(&b[p1], 5); }, "producer id 2 after 5"},
      {"negative id", [&](auto& b) { store_be64(&b[p1], uint64_t(-3)); }, "producer id -3"},
      {"negative epoch", [&](auto& b) { store_be16(&b[p2 + 8], 0x8000); }, "epoch -32768"},
      {"no batches", [&](auto& b) { b[p2 + 18] = 0; }, "has 0 batches"},
      {"six batches", [&](auto& b) { b[p2 + 18] = 6; }, "has 6 batches"},
      {"batches past the end", [&](auto& b) { b[p2 + 18] = 2; }, "ends inside"},
      {"first after last offset", [&](auto& b) { store_be64(&b[b1 + 8], 2); }, "offsets [2, 1]"},
      {"offset at snapshot offset", [&](auto& b) { store_be64(&b[p2 + kProducer + 16], 4); },
       "offsets [2, 4]"},
      {"overlapping batches", [&](auto& b) { store_be64(&b[b1 + kBatch + 8], 1); },
       "offsets [1, 3]"},
      {"last seq disagrees", [&](auto& b) { store_be32(&b[b1 + 4], 5); }, "sequences [0, 5]"},
      {"negative seq", [&](auto& b) { store_be32(&b[b1], uint32_t(-1)); }, "sequences [-1, 1]"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> bad = good;
    c.edit(bad);
    auto r = ProducerStateTable::decode_snapshot(reseal(bad));
    ASSERT_FALSE(r) << c.name;
    EXPECT_EQ(r.error().code, Errc::corrupt) << c.name;
    EXPECT_NE(r.error().message.find(c.message), std::string::npos)
        << c.name << ": " << r.error().message;
  }
  // A count that would need far more bytes than present is refused before any allocation.
  std::vector<uint8_t> huge = good;
  store_be32(&huge[14], 0xffffffff);
  EXPECT_EQ(decode_error(reseal(huge)), Errc::corrupt);
}

TEST(SnapshotFiles, Names) {
  EXPECT_EQ(snapshot_file_name(Offset(42)), "00000000000000000042.snapshot");
  EXPECT_EQ(parse_snapshot_file_name("00000000000000000042.snapshot"), Offset(42));
  EXPECT_EQ(parse_snapshot_file_name("09223372036854775807.snapshot"), Offset(INT64_MAX));
  for (std::string_view bad : {"00000000000000000042.snapshot.tmp", "0000000000000000042.snapshot",
                               "+0000000000000000042.snapshot", "-0000000000000000042.snapshot",
                               "0000000000000000004x.snapshot", "99999999999999999999.snapshot",
                               "00000000000000000042.log", "snapshot"}) {
    EXPECT_FALSE(parse_snapshot_file_name(bad)) << bad;
  }
}

TEST(SnapshotFiles, ReadLatestSkipsCorruptAndNewerFiles) {
  testing::TempDir dir;
  auto none = read_latest_snapshot(dir.path());
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->snapshot);

  Harness h;
  std::map<int64_t, ProducerStateTable> written;
  for (int i = 0; i < 3; ++i) {
    h.append(i + 1, 0, 0, 10, 100 + i);
    ASSERT_TRUE(write_snapshot_file(dir.path(), h.table, h.next));
    written.emplace(h.next.value(), h.table);
  }
  ASSERT_EQ(*list_snapshot_files(dir.path()),
            (std::vector<Offset>{Offset(10), Offset(20), Offset(30)}));
  // Files that are not snapshots are ignored.
  ASSERT_TRUE(write_file_atomic(dir.path() + "/00000000000000000099.snapshot.tmp",
                                std::string_view("junk")));

  auto latest = read_latest_snapshot(dir.path());
  ASSERT_TRUE(latest);
  ASSERT_TRUE(latest->snapshot);
  EXPECT_EQ(latest->snapshot->offset, Offset(30));
  EXPECT_EQ(latest->snapshot->table, written.at(30));
  EXPECT_TRUE(latest->skipped.empty());

  // Corrupt the newest: one byte in the middle.
  const std::string newest = dir.path() + "/" + snapshot_file_name(Offset(30));
  std::string bytes = *read_file(newest, 1 << 20);
  bytes[bytes.size() / 2] ^= 0x20;
  ASSERT_TRUE(write_file_atomic(newest, std::string_view(bytes)));
  latest = read_latest_snapshot(dir.path());
  ASSERT_TRUE(latest);
  ASSERT_TRUE(latest->snapshot);
  EXPECT_EQ(latest->snapshot->offset, Offset(20));
  EXPECT_EQ(latest->snapshot->table, written.at(20));
  ASSERT_EQ(latest->skipped.size(), 1u);
  EXPECT_NE(latest->skipped[0].find("00000000000000000030.snapshot: corrupt"), std::string::npos)
      << latest->skipped[0];

  // A log that ends at 15 cannot use the snapshots of 20 and 30.
  latest = read_latest_snapshot(dir.path(), Offset(15));
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->snapshot->offset, Offset(10));
  EXPECT_EQ(latest->skipped.size(), 2u);

  // A valid snapshot under another offset's name is not trusted.
  std::vector<uint8_t> other = *written.at(10).encode_snapshot(Offset(10));
  ASSERT_TRUE(write_file_atomic(dir.path() + "/" + snapshot_file_name(Offset(25)),
                                std::span<const uint8_t>(other)));
  latest = read_latest_snapshot(dir.path(), Offset(29));
  EXPECT_EQ(latest->snapshot->offset, Offset(20));
  ASSERT_EQ(latest->skipped.size(), 2u);  // 30: past the end; 25: another offset's snapshot
  EXPECT_NE(latest->skipped[1].find("holds the snapshot of offset 10"), std::string::npos)
      << latest->skipped[1];
}

TEST(SnapshotFiles, PruneAndRemoveAfter) {
  testing::TempDir dir;
  ProducerStateTable empty;
  for (int64_t o : {5, 10, 15, 20, 25})
    ASSERT_TRUE(write_snapshot_file(dir.path(), empty, Offset(o)));
  EXPECT_EQ(*prune_snapshots(dir.path(), 3), 2u);
  EXPECT_EQ(*list_snapshot_files(dir.path()),
            (std::vector<Offset>{Offset(15), Offset(20), Offset(25)}));
  EXPECT_EQ(*prune_snapshots(dir.path(), 3), 0u);
  EXPECT_EQ(*remove_snapshots_after(dir.path(), Offset(20)), 1u);
  EXPECT_EQ(*list_snapshot_files(dir.path()), (std::vector<Offset>{Offset(15), Offset(20)}));
  EXPECT_EQ(*prune_snapshots(dir.path(), 0), 2u);
  EXPECT_TRUE(list_snapshot_files(dir.path())->empty());
  EXPECT_FALSE(list_snapshot_files(dir.path() + "/missing"));
  EXPECT_FALSE(read_latest_snapshot(dir.path() + "/missing"));
}

// ---- randomised: the table against a model that remembers every batch ----

struct ModelBatch {
  int32_t first_seq, last_seq;
  Offset first_offset, last_offset;
};
struct ModelProducer {
  int16_t epoch = 0;
  std::vector<ModelBatch> batches;  // every batch of the current epoch still in the log
  size_t window_start = 0;          // batches[window_start..] are the ones the table keeps
};

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : fallback;
}

// ORDO_PRODUCER_STATE_SEED=<n> runs one seed; ORDO_PRODUCER_STATE_SEEDS=<n> seeds 1..n.
TEST(ProducerStateModel, RandomAppendsRetriesAndGaps) {
  std::vector<uint64_t> seeds;
  if (std::getenv("ORDO_PRODUCER_STATE_SEED")) {
    seeds.push_back(env_u64("ORDO_PRODUCER_STATE_SEED", 1));
  } else {
    for (uint64_t s = 1; s <= env_u64("ORDO_PRODUCER_STATE_SEEDS", 20); ++s) seeds.push_back(s);
  }
  for (uint64_t seed : seeds) {
    Random rng(seed);
    Harness h;
    std::map<int64_t, ModelProducer> model;
    int counts[6] = {};  // verdicts seen, to check the test reached every kind
    for (int step = 0; step < 3000 && !::testing::Test::HasFailure(); ++step) {
      SCOPED_TRACE(
          fmt::format("seed {} step {}; rerun with ORDO_PRODUCER_STATE_SEED={}", seed, step, seed));
      const int64_t pid = int64_t(rng.between(1, 6));
      auto mit = model.find(pid);
      ModelProducer* m = mit == model.end() ? nullptr : &mit->second;
      const int32_t count = int32_t(rng.between(1, 4));
      const uint64_t op = rng.below(100);

      int16_t epoch = 0;
      int32_t seq = 0;
      V expected = V::append;
      const ModelBatch* dup = nullptr;
      if (op < 3 && m == nullptr) {
        // A producer as a snapshot of a long-lived one would restore it: near INT32_MAX.
        ProducerAppend a{.producer_id = pid,
                         .epoch = int16_t(rng.between(0, 3)),
                         .first_seq = INT32_MAX - int32_t(rng.between(0, 6)),
                         .first_offset = h.next,
                         .last_offset = h.next + (count - 1),
                         .max_timestamp = step};
        a.last_seq = increment_sequence(a.first_seq, count - 1);
        h.table.update(a);
        h.next = h.next + count;
        model[pid] =
            ModelProducer{a.epoch, {{a.first_seq, a.last_seq, a.first_offset, a.last_offset}}};
        continue;
      } else if (op < 6) {
        // The log is cut (e.g. a torn tail), in the table and the model alike.
        Offset cut(int64_t(rng.between(std::max<int64_t>(0, h.next.value() - 20), h.next.value())));
        h.table.truncate_after(cut);
        h.next = cut;
        for (auto it = model.begin(); it != model.end();) {
          auto& b = it->second.batches;
          while (!b.empty() && b.back().last_offset >= cut) b.pop_back();
          if (it->second.window_start >= b.size()) {
            it = model.erase(it);  // nothing of its window left: forgotten
          } else {
            ++it;
          }
        }
        continue;
      } else if (op < 9) {
        // Snapshot and restore.
        auto bytes = h.table.encode_snapshot(h.next);
        ASSERT_TRUE(bytes) << bytes.error().to_string();
        auto snap = ProducerStateTable::decode_snapshot(*bytes);
        ASSERT_TRUE(snap) << snap.error().to_string();
        ASSERT_EQ(snap->table, h.table);
        h.table = std::move(snap->table);
        continue;
      } else if (m == nullptr) {
        epoch = int16_t(rng.between(0, 3));
        seq = rng.chance(0.8) ? 0 : int32_t(rng.between(1, 1000));
        expected = seq == 0 ? V::append : V::out_of_order_sequence;
      } else {
        const int32_t next_seq = increment_sequence(m->batches.back().last_seq, 1);
        epoch = m->epoch;
        if (op < 50) {
          seq = next_seq;  // in order
        } else if (op < 75) {
          // A retry of one of the producer's batches, recent ones more often.
          size_t n = m->batches.size();
          size_t back =
              rng.chance(0.7) ? size_t(rng.below(std::min<size_t>(n, 6))) : size_t(rng.below(n));
          size_t i = n - 1 - back;
          const ModelBatch& b = m->batches[i];
          seq = b.first_seq;
          int32_t len = int32_t(b.last_offset - b.first_offset) + 1;
          if (i >= m->window_start) {
            expected = V::duplicate;
            dup = &b;
          } else {
            expected = V::out_of_order_sequence;
          }
          const bool same_len = count == len;
          if (!same_len && expected == V::duplicate) expected = V::out_of_order_sequence;
          if (!same_len) dup = nullptr;
        } else if (op < 85) {
          seq = increment_sequence(next_seq, int32_t(rng.between(1, 50)));  // a gap
          expected = V::out_of_order_sequence;
        } else if (op < 93) {
          epoch = int16_t(m->epoch + rng.between(1, 2));  // a new epoch
          seq = rng.chance(0.7) ? 0 : int32_t(rng.between(1, 100));
          expected = seq == 0 ? V::append : V::out_of_order_sequence;
        } else if (m->epoch > 0) {
          epoch = int16_t(rng.between(0, m->epoch - 1));  // a zombie
          seq = next_seq;
          expected = V::invalid_producer_epoch;
        } else {
          seq = next_seq;
        }
      }
      // A duplicate must repeat the original batch exactly; other verdicts take any length.
      int32_t len = count;
      if (dup != nullptr) len = int32_t(dup->last_offset - dup->first_offset) + 1;

      SequenceCheck c = h.check(pid, epoch, seq, len);
      ASSERT_EQ(c.verdict, expected)
          << "pid " << pid << " epoch " << epoch << " seq " << seq << " len " << len << ": got "
          << sequence_verdict_name(c.verdict);
      counts[int(c.verdict)] += 1;
      if (c.verdict == V::duplicate) {
        EXPECT_EQ(c.first_offset, dup->first_offset);
        EXPECT_EQ(c.last_offset, dup->last_offset);
      }
      if (c.verdict != V::append) continue;
      ProducerAppend a = h.append(pid, epoch, seq, len, step);
      ModelProducer& mp = model[pid];
      if (m == nullptr || mp.epoch != epoch) mp = ModelProducer{epoch, {}};
      mp.batches.push_back({a.first_seq, a.last_seq, a.first_offset, a.last_offset});
      if (mp.batches.size() > size_t(kRetainedBatchesPerProducer)) {
        mp.window_start =
            std::max(mp.window_start, mp.batches.size() - kRetainedBatchesPerProducer);
      }
      const ProducerEntry* e = h.table.find(pid);
      ASSERT_NE(e, nullptr);
      ASSERT_EQ(e->epoch, mp.epoch);
      ASSERT_EQ(e->retained().size(), mp.batches.size() - mp.window_start);
    }
    EXPECT_EQ(h.table.size(), model.size()) << "seed " << seed;
    for (V v : {V::append, V::duplicate, V::out_of_order_sequence, V::invalid_producer_epoch}) {
      EXPECT_GT(counts[int(v)], 0) << "seed " << seed << " never saw " << sequence_verdict_name(v);
    }
    if (::testing::Test::HasFailure()) return;
  }
}

// The hand-made seeds of tests/fuzz/corpus/producer_snapshot are also the format's golden
// files: today's encoder must produce exactly the committed bytes, so the on-disk format cannot
// change by accident. After an intended change, regenerate them with
//   ORDO_WRITE_PRODUCER_SNAPSHOT_CORPUS=tests/fuzz/corpus/producer_snapshot
//       build/src/storage/producer_state_test --gtest_filter='*FuzzSeeds*'
// (and bump the format version).
TEST(ProducerSnapshot, FuzzSeedsAreTheCommittedGoldenFiles) {
  const char* out = std::getenv("ORDO_WRITE_PRODUCER_SNAPSHOT_CORPUS");
  auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
    if (out != nullptr) {
      ASSERT_TRUE(
          write_file_atomic(std::string(out) + "/" + name, std::span<const uint8_t>(bytes)));
    }
    auto committed = read_file(std::string(ORDO_PRODUCER_SNAPSHOT_CORPUS) + "/" + name, 1 << 20);
    ASSERT_TRUE(committed) << name << ": " << committed.error().to_string();
    EXPECT_EQ(*committed, std::string(bytes.begin(), bytes.end()))
        << name << " differs from what the encoder writes today";
  };
  write("valid_empty", *ProducerStateTable().encode_snapshot(Offset(0)));
  write("valid_sample", *sample_table().encode_snapshot(Offset(1000)));
  Harness h;
  h.append(1, 0, 0, 2, 10);
  h.append(2, 3, 0, 1, 11);
  h.append(1, 0, 2, 1, 12);
  std::vector<uint8_t> small = *h.table.encode_snapshot(h.next);
  write("valid_two_producers", small);
  std::vector<uint8_t> bad = small;
  bad[30] ^= 1;
  write("bad_crc", bad);
  std::vector<uint8_t> version = small;
  store_be16(&version[4], 2);
  write("bad_version", reseal(version));
  write("bad_truncated", std::vector<uint8_t>(small.begin(), small.end() - 5));
}

}  // namespace
}  // namespace ordo::storage
