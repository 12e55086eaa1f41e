#include "connect/pgoutput.h"

#include <cstring>

#include "base/coding.h"

namespace ordo::connect::pg {

namespace {

Error corrupt(std::string_view what) {
  return make_error(Errc::corrupt, "replication stream: {}", what);
}

// A cursor over untrusted bytes: every read checks what is left.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  size_t left() const { return b_.size() - pos_; }
  Result<uint8_t> u8() {
    if (left() < 1) return corrupt("cut short");
    return b_[pos_++];
  }
  Result<uint16_t> u16() {
    if (left() < 2) return corrupt("cut short");
    uint16_t v = load_be16(b_.data() + pos_);
    pos_ += 2;
    return v;
  }
  Result<uint32_t> u32() {
    if (left() < 4) return corrupt("cut short");
    uint32_t v = load_be32(b_.data() + pos_);
    pos_ += 4;
    return v;
  }
  Result<uint64_t> u64() {
    if (left() < 8) return corrupt("cut short");
    uint64_t v = load_be64(b_.data() + pos_);
    pos_ += 8;
    return v;
  }
  // A NUL-terminated string.
  Result<std::string> str() {
    const uint8_t* start = b_.data() + pos_;
    const void* nul = std::memchr(start, 0, left());
    if (!nul) return corrupt("string without its terminating NUL");
    size_t n = size_t(static_cast<const uint8_t*>(nul) - start);
    std::string s(reinterpret_cast<const char*>(start), n);
    pos_ += n + 1;
    return s;
  }
  Result<std::string> bytes(size_t n) {
    if (left() < n) return corrupt("a value longer than the message");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  Result<std::vector<uint8_t>> rest() {
    std::vector<uint8_t> v(b_.begin() + ptrdiff_t(pos_), b_.end());
    pos_ = b_.size();
    return v;
  }
  Result<void> done() {
    if (left() != 0) return corrupt("bytes after the end of a message");
    return ok();
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

Result<Tuple> read_tuple(Reader& r) {
  uint16_t n = ORDO_TRY(r.u16());
  if (n > kMaxColumns) return corrupt("a row with more columns than PostgreSQL allows");
  Tuple t;
  t.reserve(n);
  for (uint16_t i = 0; i < n; ++i) {
    uint8_t kind = ORDO_TRY(r.u8());
    Value v;
    switch (kind) {
      case 'n':
        v.kind = Value::Kind::null;
        break;
      case 'u':
        v.kind = Value::Kind::unchanged_toast;
        break;
      case 't': {
        uint32_t len = ORDO_TRY(r.u32());
        if (len > r.left()) return corrupt("a value longer than the message");
        v.kind = Value::Kind::text;
        v.text = ORDO_TRY(r.bytes(len));
        break;
      }
      default:
        // 'b' (binary) is only sent when the binary option is asked for, which Ordo does not.
        return corrupt("unknown column kind");
    }
    t.push_back(std::move(v));
  }
  return t;
}

}  // namespace

Result<CopyMessage> decode_copy_data(std::span<const uint8_t> data) {
  Reader r(data);
  uint8_t tag = ORDO_TRY(r.u8());
  if (tag == 'w') {
    XLogData x;
    x.wal_start = ORDO_TRY(r.u64());
    x.wal_end = ORDO_TRY(r.u64());
    x.send_time_us = int64_t(ORDO_TRY(r.u64()));
    x.payload = ORDO_TRY(r.rest());
    if (x.payload.empty()) return corrupt("XLogData without a message");
    return CopyMessage(std::move(x));
  }
  if (tag == 'k') {
    Keepalive k;
    k.wal_end = ORDO_TRY(r.u64());
    k.send_time_us = int64_t(ORDO_TRY(r.u64()));
    uint8_t reply = ORDO_TRY(r.u8());
    if (reply > 1) return corrupt("keepalive reply flag is not 0 or 1");
    k.reply_requested = reply == 1;
    ORDO_TRY(r.done());
    return CopyMessage(k);
  }
  return corrupt("unknown CopyData message");
}

std::vector<uint8_t> encode_status_update(Lsn written, Lsn flushed, Lsn applied, int64_t now_us,
                                          bool reply_requested) {
  Writer w;
  w.u8('r').u64(written).u64(flushed).u64(applied).u64(uint64_t(now_us)).u8(reply_requested);
  return w.out;
}

Result<Message> decode_message(std::span<const uint8_t> payload) {
  Reader r(payload);
  uint8_t tag = ORDO_TRY(r.u8());
  switch (tag) {
    case 'B': {
      Begin m;
      m.final_lsn = ORDO_TRY(r.u64());
      m.commit_time_us = int64_t(ORDO_TRY(r.u64()));
      m.xid = ORDO_TRY(r.u32());
      ORDO_TRY(r.done());
      return Message(m);
    }
    case 'C': {
      Commit m;
      m.flags = ORDO_TRY(r.u8());
      m.commit_lsn = ORDO_TRY(r.u64());
      m.end_lsn = ORDO_TRY(r.u64());
      m.commit_time_us = int64_t(ORDO_TRY(r.u64()));
      ORDO_TRY(r.done());
      return Message(m);
    }
    case 'O': {
      Origin m;
      m.lsn = ORDO_TRY(r.u64());
      m.name = ORDO_TRY(r.str());
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'R': {
      Relation m;
      m.id = ORDO_TRY(r.u32());
      m.schema = ORDO_TRY(r.str());
      m.name = ORDO_TRY(r.str());
      m.replica_identity = char(ORDO_TRY(r.u8()));
      if (std::strchr("dnfi", m.replica_identity) == nullptr || m.replica_identity == 0) {
        return corrupt("unknown replica identity");
      }
      uint16_t n = ORDO_TRY(r.u16());
      if (n > kMaxColumns) return corrupt("a relation with more columns than PostgreSQL allows");
      for (uint16_t i = 0; i < n; ++i) {
        Column c;
        uint8_t flags = ORDO_TRY(r.u8());
        if (flags > 1) return corrupt("unknown column flags");
        c.key = flags == 1;
        c.name = ORDO_TRY(r.str());
        c.type_oid = ORDO_TRY(r.u32());
        c.type_modifier = int32_t(ORDO_TRY(r.u32()));
        m.columns.push_back(std::move(c));
      }
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'Y': {
      Type m;
      m.oid = ORDO_TRY(r.u32());
      m.schema = ORDO_TRY(r.str());
      m.name = ORDO_TRY(r.str());
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'I': {
      Insert m;
      m.relation_id = ORDO_TRY(r.u32());
      if (ORDO_TRY(r.u8()) != 'N') return corrupt("insert without its new row");
      m.row = ORDO_TRY(read_tuple(r));
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'U': {
      Update m;
      m.relation_id = ORDO_TRY(r.u32());
      uint8_t kind = ORDO_TRY(r.u8());
      if (kind == 'K' || kind == 'O') {
        m.old_kind = char(kind);
        m.old_row = ORDO_TRY(read_tuple(r));
        kind = ORDO_TRY(r.u8());
      }
      if (kind != 'N') return corrupt("update without its new row");
      m.row = ORDO_TRY(read_tuple(r));
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'D': {
      Delete m;
      m.relation_id = ORDO_TRY(r.u32());
      uint8_t kind = ORDO_TRY(r.u8());
      if (kind != 'K' && kind != 'O') return corrupt("delete without its old key or row");
      m.old_kind = char(kind);
      m.old_row = ORDO_TRY(read_tuple(r));
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'T': {
      Truncate m;
      uint32_t n = ORDO_TRY(r.u32());
      if (n > kMaxTruncateRelations || size_t(n) * 4 + 1 != r.left()) {
        return corrupt("truncate relation count does not match the message");
      }
      uint8_t options = ORDO_TRY(r.u8());
      if (options > 3) return corrupt("unknown truncate options");
      m.cascade = options & 1;
      m.restart_identity = options & 2;
      for (uint32_t i = 0; i < n; ++i) m.relation_ids.push_back(ORDO_TRY(r.u32()));
      ORDO_TRY(r.done());
      return Message(std::move(m));
    }
    case 'M': {
      LogicalMessage m;
      uint8_t flags = ORDO_TRY(r.u8());
      if (flags > 1) return corrupt("unknown logical message flags");
      m.transactional = flags == 1;
      m.lsn = ORDO_TRY(r.u64());
      m.prefix = ORDO_TRY(r.str());
      uint32_t len = ORDO_TRY(r.u32());
      if (len != r.left()) return corrupt("logical message length does not match the message");
      m.content = ORDO_TRY(r.bytes(len));
      return Message(std::move(m));
    }
    default:
      // Stream Start/Stop/Commit/Abort and two-phase messages need options Ordo does not ask for.
      return corrupt("unknown pgoutput message");
  }
}

// ---- Writer and encode_message ----

Writer& Writer::u8(uint8_t v) {
  out.push_back(v);
  return *this;
}
Writer& Writer::u16(uint16_t v) {
  out.push_back(uint8_t(v >> 8));
  out.push_back(uint8_t(v));
  return *this;
}
Writer& Writer::u32(uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
  return *this;
}
Writer& Writer::u64(uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
  return *this;
}
Writer& Writer::str(std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
  out.push_back(0);
  return *this;
}
Writer& Writer::bytes(std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
  return *this;
}
Writer& Writer::tuple(const Tuple& t) {
  u16(uint16_t(t.size()));
  for (const auto& v : t) {
    switch (v.kind) {
      case Value::Kind::null:
        u8('n');
        break;
      case Value::Kind::unchanged_toast:
        u8('u');
        break;
      case Value::Kind::text:
        u8('t').u32(uint32_t(v.text.size())).bytes(v.text);
        break;
    }
  }
  return *this;
}

std::vector<uint8_t> encode_message(const Message& msg) {
  Writer w;
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Begin>) {
          w.u8('B').u64(m.final_lsn).u64(uint64_t(m.commit_time_us)).u32(m.xid);
        } else if constexpr (std::is_same_v<T, Commit>) {
          w.u8('C').u8(m.flags).u64(m.commit_lsn).u64(m.end_lsn).u64(uint64_t(m.commit_time_us));
        } else if constexpr (std::is_same_v<T, Origin>) {
          w.u8('O').u64(m.lsn).str(m.name);
        } else if constexpr (std::is_same_v<T, Relation>) {
          w.u8('R').u32(m.id).str(m.schema).str(m.name).u8(uint8_t(m.replica_identity));
          w.u16(uint16_t(m.columns.size()));
          for (const auto& c : m.columns) {
            w.u8(c.key ? 1 : 0).str(c.name).u32(c.type_oid).u32(uint32_t(c.type_modifier));
          }
        } else if constexpr (std::is_same_v<T, Type>) {
          w.u8('Y').u32(m.oid).str(m.schema).str(m.name);
        } else if constexpr (std::is_same_v<T, Insert>) {
          w.u8('I').u32(m.relation_id).u8('N').tuple(m.row);
        } else if constexpr (std::is_same_v<T, Update>) {
          w.u8('U').u32(m.relation_id);
          if (m.old_kind) w.u8(uint8_t(m.old_kind)).tuple(m.old_row);
          w.u8('N').tuple(m.row);
        } else if constexpr (std::is_same_v<T, Delete>) {
          w.u8('D').u32(m.relation_id).u8(uint8_t(m.old_kind)).tuple(m.old_row);
        } else if constexpr (std::is_same_v<T, Truncate>) {
          w.u8('T').u32(uint32_t(m.relation_ids.size()));
          w.u8(uint8_t((m.cascade ? 1 : 0) | (m.restart_identity ? 2 : 0)));
          for (uint32_t id : m.relation_ids) w.u32(id);
        } else if constexpr (std::is_same_v<T, LogicalMessage>) {
          w.u8('M').u8(m.transactional ? 1 : 0).u64(m.lsn).str(m.prefix);
          w.u32(uint32_t(m.content.size())).bytes(m.content);
        }
      },
      msg);
  return w.out;
}

}  // namespace ordo::connect::pg
