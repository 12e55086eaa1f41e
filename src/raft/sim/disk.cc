#include "raft/sim/disk.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace ordo::raft::sim {

namespace {
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;

uint64_t mix(uint64_t h, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * kFnvPrime;
  return h;
}
template <typename T>
uint64_t mix_value(uint64_t h, T v) {
  return mix(h, &v, sizeof v);
}
uint64_t mix_members(uint64_t h, const std::vector<Member>& members) {
  h = mix_value(h, uint64_t(members.size()));
  for (const auto& m : members) {
    h = mix_value(h, m.id);
    h = mix_value(h, m.incarnation);
  }
  return h;
}
}  // namespace

uint64_t entry_checksum(const Entry& e) {
  uint64_t h = kFnvBasis;
  h = mix_value(h, e.term);
  h = mix_value(h, e.base);
  h = mix_value(h, e.last);
  h = mix_value(h, uint8_t(e.kind));
  h = mix_value(h, uint8_t(e.config.has_value()));
  if (e.config) {
    h = mix_members(h, e.config->voters);
    h = mix_members(h, e.config->learners);
  }
  if (e.payload) h = mix(h, e.payload->data(), e.payload->size());
  return h;
}

bool same_entry(const Entry& a, const Entry& b) {
  if (a.term != b.term || a.base != b.base || a.last != b.last || a.kind != b.kind ||
      a.config != b.config) {
    return false;
  }
  size_t na = a.size_bytes(), nb = b.size_bytes();
  if (na != nb) return false;
  return na == 0 || std::memcmp(a.payload->data(), b.payload->data(), na) == 0;
}

std::string describe(const Entry& e) {
  const char* kind = e.kind == EntryKind::data   ? "data"
                     : e.kind == EntryKind::noop ? "noop"
                                                 : "config";
  std::string out = fmt::format("[{}..{}] term {} {}", e.base, e.last, e.term, kind);
  if (e.config) out += " " + e.config->to_string();
  if (e.size_bytes() > 0) {
    // Client payloads start with a printable tag (node, term, counter).
    std::string tag;
    for (uint8_t c : *e.payload) {
      if (c == ' ' || tag.size() >= 32) break;
      tag.push_back(c >= 0x21 && c < 0x7f ? char(c) : '?');
    }
    out += fmt::format(" \"{}\" ({} bytes, sum {:016x})", tag, e.size_bytes(), entry_checksum(e));
  }
  return out;
}

size_t DiskLog::index_of(Offset offset) const {
  auto it = std::upper_bound(entries.begin(), entries.end(), offset,
                             [](Offset o, const StoredEntry& s) { return o < s.entry.base; });
  if (it == entries.begin()) return entries.size();
  --it;
  return offset <= it->entry.last ? size_t(it - entries.begin()) : entries.size();
}

void SimDisk::apply(DiskLog& log, const Op& op) {
  switch (op.kind) {
    case OpKind::reset:
      log.entries.clear();
      log.start = op.offset;
      log.term_before = op.term;
      break;
    case OpKind::truncate: {
      ORDO_ASSERT(op.offset >= log.start);
      while (!log.entries.empty() && log.entries.back().entry.base >= op.offset) {
        log.entries.pop_back();
      }
      // An entry straddling the cut is a batch: a log cuts whole batches only.
      ORDO_ASSERT(log.entries.empty() || log.entries.back().entry.last < op.offset);
      break;
    }
    case OpKind::append:
      ORDO_ASSERT(op.entry.entry.base == log.end());
      log.entries.push_back(op.entry);
      break;
    case OpKind::advance: {
      // A durable view behind the written one may not reach the new start yet: it keeps what
      // it has (a retention that did not reach the disk before a crash deletes nothing).
      size_t keep_from = 0;
      while (keep_from < log.entries.size() && log.entries[keep_from].entry.end() <= op.offset) {
        ++keep_from;
      }
      if (keep_from == 0) break;
      log.term_before = log.entries[keep_from - 1].entry.term;
      log.start = log.entries[keep_from - 1].entry.end();
      log.entries.erase(log.entries.begin(), log.entries.begin() + ptrdiff_t(keep_from));
      break;
    }
  }
}

void SimDisk::reset(Offset start, Term term_before) {
  Op op{OpKind::reset, start, term_before, {}};
  apply(written_, op);
  unsynced_.push_back(std::move(op));
  ++ops_written_;
}

void SimDisk::truncate(Offset end) {
  Op op{OpKind::truncate, end, kNoTerm, {}};
  apply(written_, op);
  unsynced_.push_back(std::move(op));
  ++ops_written_;
}

void SimDisk::advance_start(Offset start) {
  Op op{OpKind::advance, start, kNoTerm, {}};
  apply(written_, op);
  unsynced_.push_back(std::move(op));
  ++ops_written_;
}

void SimDisk::append(const Entry& entry) {
  Op op{OpKind::append, 0, kNoTerm, StoredEntry{entry, entry_checksum(entry)}};
  apply(written_, op);
  unsynced_.push_back(std::move(op));
  ++ops_written_;
}

void SimDisk::make_durable(uint64_t upto) {
  ORDO_ASSERT(upto <= ops_written_);
  while (ops_durable_ < upto) {
    apply(durable_, unsynced_.front());
    unsynced_.pop_front();
    ++ops_durable_;
  }
}

size_t SimDisk::crash(Random& rng, bool torn) {
  size_t keep = size_t(rng.below(unsynced_.size() + 1));
  for (size_t i = 0; i < keep; ++i) apply(durable_, unsynced_[i]);
  size_t lost = unsynced_.size() - keep;
  if (torn && keep < unsynced_.size() && unsynced_[keep].kind == OpKind::append &&
      unsynced_[keep].entry.entry.base == durable_.end()) {
    // Part of the next entry reached the platter: its bytes are there, its checksum fails.
    StoredEntry half = unsynced_[keep].entry;
    half.checksum ^= 0x5a5a5a5a5a5a5a5aULL;
    durable_.entries.push_back(std::move(half));
  }
  unsynced_.clear();
  ops_written_ = ops_durable_ = 0;
  written_ = durable_;
  return lost;
}

SimDisk::Recovery SimDisk::recover(const HardState& fresh) {
  Recovery r;
  // Recovery reads the log back and stops at the first entry that fails its checksum; the
  // rest is cut (and the cut is synced before the replica starts).
  size_t good = 0;
  while (good < durable_.entries.size() &&
         durable_.entries[good].checksum == entry_checksum(durable_.entries[good].entry)) {
    ++good;
  }
  r.torn_entries = int(durable_.entries.size() - good);
  durable_.entries.resize(good);
  written_ = durable_;
  unsynced_.clear();
  ops_written_ = ops_durable_ = 0;

  r.restored.state = state_ ? *state_ : fresh;
  r.restored.log_start = durable_.start;
  r.restored.log_end = durable_.end();
  auto& epochs = r.restored.epochs;
  if (durable_.start > 0 && durable_.term_before != kNoTerm) {
    epochs.push_back(EpochStart{durable_.term_before, durable_.start - 1});
  }
  Offset expect = durable_.start;
  for (const auto& s : durable_.entries) {
    const Entry& e = s.entry;
    if (e.base != expect || e.last < e.base) {
      r.problem = fmt::format("log not contiguous at {}: {}", expect, describe(e));
      break;
    }
    expect = e.end();
    if (epochs.empty() || epochs.back().term != e.term) {
      if (!epochs.empty() && epochs.back().term > e.term) {
        r.problem = fmt::format("log terms decrease at {}: term {} after term {}", e.base, e.term,
                                epochs.back().term);
        break;
      }
      epochs.push_back(EpochStart{e.term, e.base});
    }
  }
  return r;
}

Result<std::vector<Entry>> SimDisk::read(Offset from, size_t max_bytes) const {
  if (from < written_.start || from >= written_.end()) {
    return make_error(Errc::out_of_range, "read at {} outside the log [{}, {})", from,
                      written_.start, written_.end());
  }
  size_t i = written_.index_of(from);
  ORDO_ASSERT(i < written_.entries.size());
  std::vector<Entry> out;
  size_t bytes = 0;
  for (; i < written_.entries.size(); ++i) {
    const Entry& e = written_.entries[i].entry;
    if (!out.empty() && bytes + e.size_bytes() > max_bytes) break;
    bytes += e.size_bytes();
    out.push_back(e);
  }
  return out;
}

}  // namespace ordo::raft::sim
