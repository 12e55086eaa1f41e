#include "raft/wire.h"

#include <limits>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "base/assert.h"
#include "base/coding.h"
#include "base/crc32c.h"

namespace ordo::raft::wire {

namespace {

constexpr size_t kMemberBytes = 12;  // id i32, incarnation u64

// Flag bits; any other bit set is refused, so each message has one encoding.
constexpr uint8_t kVotePreVote = 1;
constexpr uint8_t kVoteTransfer = 2;
constexpr uint8_t kGranted = 1;
constexpr uint8_t kGrantedPreVote = 2;
constexpr uint8_t kAppendReset = 1;
constexpr uint8_t kAppendStartConfig = 2;  // a start_config follows the flags
constexpr uint8_t kAppendSuccess = 1;
constexpr uint8_t kControlResponse = 1;
constexpr uint8_t kControlError = 2;  // responses only: the body is an error code and message

// Error frames are written in version 1 whatever the sender's newest version: every version
// reads them.
constexpr uint8_t kErrorFrameVersion = 1;

template <typename... Args>
Error corrupt(fmt::format_string<Args...> f, Args&&... args) {
  return make_error(Errc::corrupt, f, std::forward<Args>(args)...);
}
template <typename... Args>
Error invalid(fmt::format_string<Args...> f, Args&&... args) {
  return make_error(Errc::invalid_argument, f, std::forward<Args>(args)...);
}

size_t config_bytes(const Config& c) {
  return 4 + kMemberBytes * (c.voters.size() + c.learners.size());
}

size_t entry_bytes(const Entry& e) {
  size_t n = kEntryHeaderBytes + e.size_bytes();
  if (e.config) n += config_bytes(*e.config);
  return n;
}

size_t body_bytes(const Body& body) {
  struct Size {
    size_t operator()(const VoteRequest&) const { return 13; }
    size_t operator()(const VoteResponse&) const { return 1; }
    size_t operator()(const AppendRequest& r) const {
      size_t n = 33;
      if (r.start_config) n += config_bytes(*r.start_config);
      for (const Entry& e : r.entries) n += entry_bytes(e);
      return n;
    }
    size_t operator()(const AppendResponse&) const { return 29; }
    size_t operator()(const Heartbeat&) const { return 8; }
    size_t operator()(const HeartbeatResponse&) const { return 8; }
    size_t operator()(const TimeoutNow&) const { return 0; }
  };
  return std::visit(Size{}, body);
}

bool members_well_formed(const std::vector<Member>& members) {
  if (members.size() > kMaxConfigMembers) return false;
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].id < 0) return false;
    if (i > 0 && members[i - 1].id >= members[i].id) return false;
  }
  return true;
}

// The checks of one AppendRequest shared by the encoder and the decoder (the decoder runs them
// on what it decoded, so both accept exactly the same messages).
Result<void> check_entries(const AppendRequest& r) {
  if (r.prev_end < 0) return invalid("prev_end {} is negative", r.prev_end);
  if (r.start_config && (!r.reset || !config_well_formed(*r.start_config))) {
    return invalid("a start_config without reset, or malformed");
  }
  Offset next = r.prev_end;
  for (size_t i = 0; i < r.entries.size(); ++i) {
    const Entry& e = r.entries[i];
    if (e.base != next) {
      return invalid("entry {} starts at {}, expected {} (entries are contiguous from prev_end)", i,
                     e.base, next);
    }
    if (e.last < e.base || e.last == std::numeric_limits<Offset>::max()) {
      return invalid("entry {} has last {} before base {} (or at the largest offset)", i, e.last,
                     e.base);
    }
    if (uint8_t(e.kind) > uint8_t(EntryKind::config)) {
      return invalid("entry {} has unknown kind {}", i, int(e.kind));
    }
    if ((e.kind == EntryKind::config) != e.config.has_value()) {
      return invalid("entry {}: a config entry, and only one, carries a Config", i);
    }
    if (e.config && !config_well_formed(*e.config)) {
      return invalid("entry {} carries a malformed Config", i);
    }
    next = e.last + 1;
  }
  return ok();
}

// ---- writer: appends to a buffer reserved at the frame's exact size --------------------------

class Writer {
 public:
  explicit Writer(size_t size) { out_.reserve(size); }
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) {
    uint8_t b[2];
    store_be16(b, v);
    out_.insert(out_.end(), b, b + 2);
  }
  void u32(uint32_t v) {
    uint8_t b[4];
    store_be32(b, v);
    out_.insert(out_.end(), b, b + 4);
  }
  void u64(uint64_t v) {
    uint8_t b[8];
    store_be64(b, v);
    out_.insert(out_.end(), b, b + 8);
  }
  void i32(int32_t v) { u32(uint32_t(v)); }
  void i64(int64_t v) { u64(uint64_t(v)); }
  void bytes(const uint8_t* p, size_t n) { out_.insert(out_.end(), p, p + n); }

  void header(uint8_t version, FrameKind kind, NodeId from, NodeId to) {
    u32(0);  // length, set by finish()
    u32(0);  // crc, set by finish()
    u16(kMagic);
    u8(version);
    u8(uint8_t(kind));
    i32(from);
    i32(to);
  }
  std::vector<uint8_t> finish(size_t planned) {
    ORDO_ASSERT_MSG(out_.size() == planned, "frame size planned wrong");
    store_be32(out_.data() + kLengthAt, uint32_t(out_.size() - 4));
    store_be32(out_.data() + kCrcAt, crc32c(0, out_.data() + kCrcStart, out_.size() - kCrcStart));
    return std::move(out_);
  }

 private:
  std::vector<uint8_t> out_;
};

void put_members(Writer& w, const std::vector<Member>& members) {
  w.u16(uint16_t(members.size()));
  for (const Member& m : members) {
    w.i32(m.id);
    w.u64(m.incarnation);
  }
}

void put_config(Writer& w, const Config& c) {
  put_members(w, c.voters);
  put_members(w, c.learners);
}

void put_entry(Writer& w, const Entry& e) {
  w.i32(e.term);
  w.i64(e.base);
  w.i64(e.last);
  w.u8(uint8_t(e.kind));
  if (e.config) {
    put_config(w, *e.config);
  }
  if (!e.payload) {
    w.i32(-1);
  } else {
    w.i32(int32_t(e.payload->size()));
    w.bytes(e.payload->data(), e.payload->size());
  }
}

void put_body(Writer& w, const Body& body) {
  struct Put {
    Writer& w;
    void operator()(const VoteRequest& r) {
      w.i32(r.last_term);
      w.i64(r.log_end);
      w.u8(uint8_t((r.pre_vote ? kVotePreVote : 0) | (r.transfer ? kVoteTransfer : 0)));
    }
    void operator()(const VoteResponse& r) {
      w.u8(uint8_t((r.granted ? kGranted : 0) | (r.pre_vote ? kGrantedPreVote : 0)));
    }
    void operator()(const AppendRequest& r) {
      w.i64(r.prev_end);
      w.i32(r.prev_term);
      w.i64(r.commit);
      w.i64(r.log_start);
      w.u8(uint8_t((r.reset ? kAppendReset : 0) | (r.start_config ? kAppendStartConfig : 0)));
      if (r.start_config) put_config(w, *r.start_config);
      w.u32(uint32_t(r.entries.size()));
      for (const Entry& e : r.entries) put_entry(w, e);
    }
    void operator()(const AppendResponse& r) {
      w.u8(r.success ? kAppendSuccess : 0);
      w.i64(r.match_end);
      w.i64(r.log_end);
      w.i32(r.hint_term);
      w.i64(r.hint_start);
    }
    void operator()(const Heartbeat& r) { w.i64(r.commit); }
    void operator()(const HeartbeatResponse& r) { w.i64(r.match_end); }
    void operator()(const TimeoutNow&) {}
  };
  std::visit(Put{w}, body);
}

// ---- reader: every read is checked against the bytes present ---------------------------------

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  size_t left() const { return in_.size() - pos_; }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = in_[pos_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (left() < 2) return false;
    v = load_be16(in_.data() + pos_);
    pos_ += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (left() < 4) return false;
    v = load_be32(in_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool u64(uint64_t& v) {
    if (left() < 8) return false;
    v = load_be64(in_.data() + pos_);
    pos_ += 8;
    return true;
  }
  bool i32(int32_t& v) {
    uint32_t u;
    if (!u32(u)) return false;
    v = int32_t(u);
    return true;
  }
  bool i64(int64_t& v) {
    uint64_t u;
    if (!u64(u)) return false;
    v = int64_t(u);
    return true;
  }
  bool bytes(size_t n, const uint8_t*& p) {
    if (left() < n) return false;
    p = in_.data() + pos_;
    pos_ += n;
    return true;
  }
  size_t pos() const { return pos_; }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Running totals of one frame, against the per-frame bounds.
struct Totals {
  size_t entries = 0;
  size_t payload = 0;
};

#define WIRE_READ(expr, what)                                                    \
  do {                                                                           \
    if (!(expr)) return corrupt("truncated: {} at byte {}", what, r.pos() + 20); \
  } while (0)

Result<std::vector<Member>> get_members(Reader& r, const char* what) {
  uint16_t count;
  WIRE_READ(r.u16(count), what);
  if (count > kMaxConfigMembers) {
    return corrupt("{}: {} members, at most {}", what, count, kMaxConfigMembers);
  }
  if (size_t(count) * kMemberBytes > r.left()) {
    return corrupt("{}: {} members do not fit in the {} bytes left", what, count, r.left());
  }
  std::vector<Member> members(count);
  for (Member& m : members) {
    WIRE_READ(r.i32(m.id), what);
    WIRE_READ(r.u64(m.incarnation), what);
  }
  return members;
}

Result<Config> get_config(Reader& r) {
  Config c;
  c.voters = ORDO_TRY(get_members(r, "voters"));
  c.learners = ORDO_TRY(get_members(r, "learners"));
  if (!config_well_formed(c)) return corrupt("malformed config (not sorted, distinct, disjoint)");
  return c;
}

Result<Entry> get_entry(Reader& r, Totals& totals) {
  Entry e;
  uint8_t kind;
  WIRE_READ(r.i32(e.term), "entry term");
  WIRE_READ(r.i64(e.base), "entry base");
  WIRE_READ(r.i64(e.last), "entry last");
  WIRE_READ(r.u8(kind), "entry kind");
  if (kind > uint8_t(EntryKind::config)) return corrupt("unknown entry kind {}", kind);
  e.kind = EntryKind(kind);
  if (e.kind == EntryKind::config) {
    e.config = ORDO_TRY(get_config(r));
  }
  int32_t len;
  WIRE_READ(r.i32(len), "payload length");
  if (len < -1) return corrupt("payload length {}", len);
  if (len >= 0) {
    if (size_t(len) > r.left()) {
      return corrupt("payload of {} bytes, {} bytes left", len, r.left());
    }
    totals.payload += size_t(len);
    if (totals.payload > kMaxPayloadBytes) {
      return corrupt("more than {} payload bytes in a frame", kMaxPayloadBytes);
    }
    const uint8_t* p;
    WIRE_READ(r.bytes(size_t(len), p), "payload");
    e.payload = std::make_shared<const std::vector<uint8_t>>(p, p + len);
  }
  return e;
}

Result<AppendRequest> get_append(Reader& r, Totals& totals) {
  AppendRequest a;
  uint8_t flags;
  uint32_t count;
  WIRE_READ(r.i64(a.prev_end), "prev_end");
  WIRE_READ(r.i32(a.prev_term), "prev_term");
  WIRE_READ(r.i64(a.commit), "commit");
  WIRE_READ(r.i64(a.log_start), "log_start");
  WIRE_READ(r.u8(flags), "append flags");
  if ((flags & ~(kAppendReset | kAppendStartConfig)) != 0) {
    return corrupt("unknown append flags {:#x}", flags);
  }
  a.reset = (flags & kAppendReset) != 0;
  if ((flags & kAppendStartConfig) != 0) a.start_config = ORDO_TRY(get_config(r));
  WIRE_READ(r.u32(count), "entry count");
  if (count > kMaxEntriesPerFrame - totals.entries) {
    return corrupt("more than {} entries in a frame", kMaxEntriesPerFrame);
  }
  if (size_t(count) * kEntryHeaderBytes > r.left()) {
    return corrupt("{} entries do not fit in the {} bytes left", count, r.left());
  }
  totals.entries += count;
  a.entries.reserve(count);
  for (uint32_t i = 0; i < count; ++i) a.entries.push_back(ORDO_TRY(get_entry(r, totals)));
  if (auto c = check_entries(a); !c) return corrupt("{}", c.error().message);
  return a;
}

Result<Body> get_body(Reader& r, uint8_t kind, Totals& totals) {
  uint8_t flags;
  switch (kind) {
    case 0: {
      VoteRequest v;
      WIRE_READ(r.i32(v.last_term), "last_term");
      WIRE_READ(r.i64(v.log_end), "log_end");
      WIRE_READ(r.u8(flags), "vote flags");
      if ((flags & ~(kVotePreVote | kVoteTransfer)) != 0) {
        return corrupt("unknown vote request flags {:#x}", flags);
      }
      v.pre_vote = (flags & kVotePreVote) != 0;
      v.transfer = (flags & kVoteTransfer) != 0;
      return Body(v);
    }
    case 1: {
      VoteResponse v;
      WIRE_READ(r.u8(flags), "vote response flags");
      if ((flags & ~(kGranted | kGrantedPreVote)) != 0) {
        return corrupt("unknown vote response flags {:#x}", flags);
      }
      v.granted = (flags & kGranted) != 0;
      v.pre_vote = (flags & kGrantedPreVote) != 0;
      return Body(v);
    }
    case 2:
      return Body(ORDO_TRY(get_append(r, totals)));
    case 3: {
      AppendResponse a;
      WIRE_READ(r.u8(flags), "append response flags");
      if ((flags & ~kAppendSuccess) != 0) {
        return corrupt("unknown append response flags {:#x}", flags);
      }
      a.success = (flags & kAppendSuccess) != 0;
      WIRE_READ(r.i64(a.match_end), "match_end");
      WIRE_READ(r.i64(a.log_end), "log_end");
      WIRE_READ(r.i32(a.hint_term), "hint_term");
      WIRE_READ(r.i64(a.hint_start), "hint_start");
      return Body(a);
    }
    case 4: {
      Heartbeat h;
      WIRE_READ(r.i64(h.commit), "commit");
      return Body(h);
    }
    case 5: {
      HeartbeatResponse h;
      WIRE_READ(r.i64(h.match_end), "match_end");
      return Body(h);
    }
    case 6:
      return Body(TimeoutNow{});
  }
  return corrupt("unknown body kind {}", kind);
}

Result<void> get_messages(Reader& r, Frame& f) {
  uint32_t count;
  WIRE_READ(r.u32(count), "message count");
  if (count > kMaxMessagesPerFrame) {
    return corrupt("{} messages, at most {} in a frame", count, kMaxMessagesPerFrame);
  }
  if (size_t(count) * kMessageHeaderBytes > r.left()) {
    return corrupt("{} messages do not fit in the {} bytes left", count, r.left());
  }
  f.messages.reserve(count);
  Totals totals;
  for (uint32_t i = 0; i < count; ++i) {
    Message m;
    uint8_t kind;
    WIRE_READ(r.i64(m.group), "group");
    WIRE_READ(r.i32(m.term), "term");
    WIRE_READ(r.u64(m.from.incarnation), "incarnation");
    WIRE_READ(r.u8(kind), "body kind");
    m.from.id = f.from;
    m.to = f.to;
    m.body = ORDO_TRY(get_body(r, kind, totals));
    f.messages.push_back(std::move(m));
  }
  return ok();
}

Result<void> get_heartbeats(Reader& r, Frame& f) {
  uint32_t beats, acks;
  WIRE_READ(r.u32(beats), "heartbeat count");
  WIRE_READ(r.u32(acks), "response count");
  if (size_t(beats) + acks > kMaxHeartbeatGroups) {
    return corrupt("{} heartbeats and responses, at most {} in a frame", size_t(beats) + acks,
                   kMaxHeartbeatGroups);
  }
  if ((size_t(beats) + acks) * kHeartbeatItemBytes != r.left()) {
    return corrupt("{} heartbeats and {} responses in {} bytes", beats, acks, r.left());
  }
  f.messages.resize(size_t(beats) + acks);
  for (size_t i = 0; i < f.messages.size(); ++i) {
    Message& m = f.messages[i];
    Offset position;
    WIRE_READ(r.i64(m.group), "group");
    WIRE_READ(r.i32(m.term), "term");
    WIRE_READ(r.u64(m.from.incarnation), "incarnation");
    WIRE_READ(r.i64(position), "commit");
    m.from.id = f.from;
    m.to = f.to;
    if (i < beats) {
      m.body = Heartbeat{.commit = position};
    } else {
      m.body = HeartbeatResponse{.match_end = position};
    }
  }
  return ok();
}

Result<void> get_error(Reader& r, Frame& f) {
  uint16_t code, len;
  const uint8_t* p;
  WIRE_READ(r.u16(code), "error code");
  WIRE_READ(r.u8(f.error.max_version), "max version");
  WIRE_READ(r.u16(len), "error message length");
  if (code < 1 || code > 3) return corrupt("unknown error code {}", code);
  if (len > kMaxErrorMessageBytes) return corrupt("error message of {} bytes", len);
  WIRE_READ(r.bytes(len, p), "error message");
  f.error.code = ErrorCode(code);
  f.error.message.assign(reinterpret_cast<const char*>(p), len);
  return ok();
}

Result<void> get_control(Reader& r, Frame& f) {
  Control& c = f.control;
  uint8_t flags;
  uint16_t type;
  uint32_t len;
  const uint8_t* p;
  WIRE_READ(r.u64(c.correlation), "correlation");
  WIRE_READ(r.u8(flags), "control flags");
  WIRE_READ(r.u16(type), "control type");
  WIRE_READ(r.u32(len), "control body length");
  if ((flags & ~(kControlResponse | kControlError)) != 0) {
    return corrupt("unknown control flags {:#04x}", flags);
  }
  c.response = (flags & kControlResponse) != 0;
  c.error = (flags & kControlError) != 0;
  c.type = type;
  if (c.error && !c.response) return corrupt("an error flag on a control request");
  if (len > kMaxControlBodyBytes) {
    return corrupt("control body of {} bytes, at most {}", len, kMaxControlBodyBytes);
  }
  if (len != r.left()) return corrupt("control body of {} bytes, {} bytes left", len, r.left());
  if (!c.error) {
    WIRE_READ(r.bytes(len, p), "control body");
    c.body.assign(p, p + len);
    return ok();
  }
  WIRE_READ(r.u16(c.error_code), "control error code");
  if (c.error_code == 0) return corrupt("control error code 0");
  const size_t msg = len - 2;
  if (msg > kMaxErrorMessageBytes) return corrupt("control error message of {} bytes", msg);
  WIRE_READ(r.bytes(msg, p), "control error message");
  c.error_message.assign(reinterpret_cast<const char*>(p), msg);
  return ok();
}

#undef WIRE_READ

Result<void> check_ends(NodeId from, NodeId to) {
  if (from < 0 || to < 0) return invalid("node ids {} -> {} (must be >= 0)", from, to);
  return ok();
}

Result<void> check_addressed(const Message& m, NodeId from, NodeId to) {
  if (m.from.id != from || m.to != to) {
    return invalid("message of group {} from {} to {} in a frame from {} to {}", m.group, m.from.id,
                   m.to, from, to);
  }
  return ok();
}

}  // namespace

bool config_well_formed(const Config& c) {
  if (c.voters.empty() || !members_well_formed(c.voters) || !members_well_formed(c.learners)) {
    return false;
  }
  // Both sorted: one merge pass finds an id in both.
  size_t i = 0, j = 0;
  while (i < c.voters.size() && j < c.learners.size()) {
    if (c.voters[i].id == c.learners[j].id) return false;
    if (c.voters[i].id < c.learners[j].id) {
      ++i;
    } else {
      ++j;
    }
  }
  return true;
}

Result<void> check_message(const Message& m) {
  ORDO_TRY(check_ends(m.from.id, m.to));
  const auto* a = std::get_if<AppendRequest>(&m.body);
  if (a == nullptr) return ok();
  ORDO_TRY(check_entries(*a));
  size_t payload = 0;
  for (const Entry& e : a->entries) payload += e.size_bytes();
  if (a->entries.size() > kMaxEntriesPerFrame || payload > kMaxPayloadBytes ||
      kHeaderBytes + 4 + encoded_size(m) > kMaxFrameBytes) {
    return make_error(Errc::too_large, "append of group {}: {} entries, {} payload bytes", m.group,
                      a->entries.size(), payload);
  }
  return ok();
}

size_t encoded_size(const Message& message) {
  return kMessageHeaderBytes + body_bytes(message.body);
}

Result<Header> read_header(std::span<const uint8_t> in) {
  if (in.size() < kHeaderBytes) {
    return make_error(Errc::out_of_range, "{} bytes, a frame header takes {}", in.size(),
                      kHeaderBytes);
  }
  Header h;
  h.length = load_be32(in.data() + kLengthAt);
  if (h.frame_bytes() < kHeaderBytes || h.frame_bytes() > kMaxFrameBytes) {
    return corrupt("frame length {} out of bounds [{}, {}]", h.length, kHeaderBytes - 4,
                   kMaxFrameBytes - 4);
  }
  uint16_t magic = load_be16(in.data() + kMagicAt);
  if (magic != kMagic) return corrupt("bad magic {:#06x}", magic);
  h.version = in[kVersionAt];
  h.kind = in[kKindAt];
  h.crc = load_be32(in.data() + kCrcAt);
  h.from = NodeId(load_be32(in.data() + kFromAt));
  h.to = NodeId(load_be32(in.data() + kToAt));
  return h;
}

Result<Frame> decode_frame(std::span<const uint8_t> in) {
  if (in.size() < kHeaderBytes) {
    return corrupt("{} bytes, a frame header takes {}", in.size(), kHeaderBytes);
  }
  Header h = ORDO_TRY(read_header(in));
  if (h.frame_bytes() != in.size()) {
    return corrupt("frame length says {} bytes, {} present", h.frame_bytes(), in.size());
  }
  uint32_t crc = crc32c(0, in.data() + kCrcStart, in.size() - kCrcStart);
  if (crc != h.crc) return corrupt("crc {:#010x}, computed {:#010x}", h.crc, crc);
  bool readable = (h.version >= kMinVersion && h.version <= kVersion) ||
                  (h.kind == uint8_t(FrameKind::error) && h.version == kErrorFrameVersion);
  if (!readable) {
    return invalid("frame version {}, this node reads {} to {}", h.version, kMinVersion, kVersion);
  }
  if (h.kind < uint8_t(FrameKind::messages) || h.kind > uint8_t(FrameKind::control)) {
    return corrupt("unknown frame kind {}", h.kind);
  }

  Frame f;
  f.version = h.version;
  f.kind = FrameKind(h.kind);
  f.from = h.from;
  f.to = h.to;
  if (f.kind != FrameKind::error) {
    if (auto c = check_ends(f.from, f.to); !c) return corrupt("{}", c.error().message);
  }
  Reader r(in.subspan(kHeaderBytes));
  switch (f.kind) {
    case FrameKind::messages:
      ORDO_TRY(get_messages(r, f));
      break;
    case FrameKind::heartbeats:
      ORDO_TRY(get_heartbeats(r, f));
      break;
    case FrameKind::error:
      ORDO_TRY(get_error(r, f));
      break;
    case FrameKind::control:
      ORDO_TRY(get_control(r, f));
      break;
  }
  if (r.left() != 0) return corrupt("{} bytes after the frame's body", r.left());
  return f;
}

Result<std::vector<uint8_t>> encode_messages(NodeId from, NodeId to,
                                             std::span<const Message> messages) {
  ORDO_TRY(check_ends(from, to));
  if (messages.size() > kMaxMessagesPerFrame) {
    return make_error(Errc::too_large, "{} messages, at most {} in a frame", messages.size(),
                      kMaxMessagesPerFrame);
  }
  size_t size = kHeaderBytes + 4;
  Totals totals;
  for (const Message& m : messages) {
    ORDO_TRY(check_addressed(m, from, to));
    if (const auto* a = std::get_if<AppendRequest>(&m.body)) {
      ORDO_TRY(check_entries(*a));
      totals.entries += a->entries.size();
      for (const Entry& e : a->entries) totals.payload += e.size_bytes();
    }
    size += encoded_size(m);
  }
  if (totals.entries > kMaxEntriesPerFrame || totals.payload > kMaxPayloadBytes ||
      size > kMaxFrameBytes) {
    return make_error(Errc::too_large,
                      "frame of {} bytes, {} entries, {} payload bytes exceeds the bounds", size,
                      totals.entries, totals.payload);
  }
  Writer w(size);
  w.header(kVersion, FrameKind::messages, from, to);
  w.u32(uint32_t(messages.size()));
  for (const Message& m : messages) {
    w.i64(m.group);
    w.i32(m.term);
    w.u64(m.from.incarnation);
    w.u8(uint8_t(m.body.index()));
    put_body(w, m.body);
  }
  return w.finish(size);
}

Result<std::vector<uint8_t>> encode_heartbeats(NodeId from, NodeId to,
                                               std::span<const Message> messages) {
  ORDO_TRY(check_ends(from, to));
  if (messages.size() > kMaxHeartbeatGroups) {
    return make_error(Errc::too_large, "{} heartbeats, at most {} in a frame", messages.size(),
                      kMaxHeartbeatGroups);
  }
  uint32_t beats = 0;
  for (const Message& m : messages) {
    ORDO_TRY(check_addressed(m, from, to));
    if (std::holds_alternative<Heartbeat>(m.body)) {
      ++beats;
    } else if (!std::holds_alternative<HeartbeatResponse>(m.body)) {
      return invalid("body kind {} in a heartbeats frame", m.body.index());
    }
  }
  size_t size = kHeaderBytes + 8 + kHeartbeatItemBytes * messages.size();
  Writer w(size);
  w.header(kVersion, FrameKind::heartbeats, from, to);
  w.u32(beats);
  w.u32(uint32_t(messages.size() - beats));
  for (int pass = 0; pass < 2; ++pass) {
    for (const Message& m : messages) {
      const auto* h = std::get_if<Heartbeat>(&m.body);
      if ((h != nullptr) != (pass == 0)) continue;
      w.i64(m.group);
      w.i32(m.term);
      w.u64(m.from.incarnation);
      w.i64(h != nullptr ? h->commit : std::get<HeartbeatResponse>(m.body).match_end);
    }
  }
  return w.finish(size);
}

Result<std::vector<uint8_t>> encode_error(NodeId from, NodeId to, const ErrorInfo& error) {
  uint16_t code = uint16_t(error.code);
  if (code < 1 || code > 3) return invalid("unknown error code {}", code);
  if (error.message.size() > kMaxErrorMessageBytes) {
    return make_error(Errc::too_large, "error message of {} bytes", error.message.size());
  }
  size_t size = kHeaderBytes + 5 + error.message.size();
  Writer w(size);
  w.header(kErrorFrameVersion, FrameKind::error, from, to);
  w.u16(code);
  w.u8(error.max_version);
  w.u16(uint16_t(error.message.size()));
  w.bytes(reinterpret_cast<const uint8_t*>(error.message.data()), error.message.size());
  return w.finish(size);
}

Result<std::vector<uint8_t>> encode_control(NodeId from, NodeId to, const Control& c) {
  ORDO_TRY(check_ends(from, to));
  if (c.error && !c.response) return invalid("an error flag on a control request");
  if (c.error && (!c.body.empty() || c.error_code == 0)) {
    return invalid("a control error carries a non-zero code and no body");
  }
  if (!c.error && (c.error_code != 0 || !c.error_message.empty())) {
    return invalid("an error code or message on a control frame that is not an error");
  }
  if (c.body.size() > kMaxControlBodyBytes || c.error_message.size() > kMaxErrorMessageBytes) {
    return make_error(Errc::too_large, "control body of {} bytes, message of {}", c.body.size(),
                      c.error_message.size());
  }
  const size_t body = c.error ? 2 + c.error_message.size() : c.body.size();
  const size_t size = kHeaderBytes + kControlHeaderBytes + body;
  Writer w(size);
  w.header(kVersion, FrameKind::control, from, to);
  w.u64(c.correlation);
  w.u8(uint8_t((c.response ? kControlResponse : 0) | (c.error ? kControlError : 0)));
  w.u16(c.type);
  w.u32(uint32_t(body));
  if (c.error) {
    w.u16(c.error_code);
    w.bytes(reinterpret_cast<const uint8_t*>(c.error_message.data()), c.error_message.size());
  } else {
    w.bytes(c.body.data(), c.body.size());
  }
  return w.finish(size);
}

Result<Frame> decode_control(std::span<const uint8_t> in) {
  Frame f = ORDO_TRY(decode_frame(in));
  if (f.kind != FrameKind::control)
    return corrupt("frame kind {}, not a control frame", int(f.kind));
  return f;
}

Result<std::vector<uint8_t>> encode_frame(const Frame& frame) {
  uint8_t want = frame.kind == FrameKind::error ? kErrorFrameVersion : kVersion;
  if (frame.version != want) return invalid("cannot write version {}", frame.version);
  switch (frame.kind) {
    case FrameKind::messages:
      return encode_messages(frame.from, frame.to, frame.messages);
    case FrameKind::heartbeats:
      return encode_heartbeats(frame.from, frame.to, frame.messages);
    case FrameKind::error:
      return encode_error(frame.from, frame.to, frame.error);
    case FrameKind::control:
      return encode_control(frame.from, frame.to, frame.control);
  }
  return invalid("unknown frame kind {}", int(frame.kind));
}

std::vector<uint8_t> version_error_frame(NodeId self, const Header& refused) {
  ErrorInfo e{.code = ErrorCode::unsupported_version,
              .max_version = kVersion,
              .message = fmt::format("frame version {} refused: this node reads versions {} to {}",
                                     refused.version, kMinVersion, kVersion)};
  auto bytes = encode_error(self, refused.from, e);
  ORDO_ASSERT(bytes.has_value());
  return std::move(bytes).value();
}

}  // namespace ordo::raft::wire
