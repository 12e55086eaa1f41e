#include "protocol/codec.h"

#include <algorithm>

#include "base/coding.h"

namespace ordo::protocol {

size_t Records::size() const {
  if (const auto* f = std::get_if<FileRange>(&rep_)) return size_t(f->size);
  return bytes().size();
}

std::span<const uint8_t> Records::bytes() const {
  if (const auto* s = std::get_if<std::span<const uint8_t>>(&rep_)) return *s;
  if (const auto* v = std::get_if<std::vector<uint8_t>>(&rep_)) return *v;
  return {};
}

bool Records::operator==(const Records& o) const {
  if (is_file() || o.is_file()) return is_file() && o.is_file() && *file_range() == *o.file_range();
  auto a = bytes();
  auto b = o.bytes();
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

Error field_error(Error e, std::string_view field) {
  const std::string& m = e.message;
  if (m.starts_with(":") || m.starts_with("[")) {
    e.message = fmt::format("{}{}", field, m);
  } else {
    e.message = fmt::format("{}.{}", field, m);
  }
  return e;
}

Error element_error(Error e, size_t index) {
  const std::string& m = e.message;
  e.message =
      fmt::format("[{}]{}{}", index, m.starts_with(":") || m.starts_with("[") ? "" : ".", m);
  return e;
}

Result<std::span<const uint8_t>> Reader::fixed(size_t n) {
  if (remaining() < n) {
    return make_error(Errc::invalid_argument, ": needs {} bytes, {} left", n, remaining());
  }
  auto s = data_.subspan(pos_, n);
  pos_ += n;
  return s;
}

Result<std::span<const uint8_t>> Reader::take(size_t n) {
  if (n > max_length_) {
    return make_error(Errc::invalid_argument, ": length {} exceeds the bound {}", n, max_length_);
  }
  return fixed(n);
}

Result<void> Reader::read(int8_t& v) {
  auto s = ORDO_TRY(fixed(1));
  v = int8_t(s[0]);
  return ok();
}
Result<void> Reader::read(int16_t& v) {
  auto s = ORDO_TRY(fixed(2));
  v = int16_t(load_be16(s.data()));
  return ok();
}
Result<void> Reader::read(uint16_t& v) {
  auto s = ORDO_TRY(fixed(2));
  v = load_be16(s.data());
  return ok();
}
Result<void> Reader::read(int32_t& v) {
  auto s = ORDO_TRY(fixed(4));
  v = int32_t(load_be32(s.data()));
  return ok();
}
Result<void> Reader::read(int64_t& v) {
  auto s = ORDO_TRY(fixed(8));
  v = int64_t(load_be64(s.data()));
  return ok();
}
Result<void> Reader::read(double& v) {
  auto s = ORDO_TRY(fixed(8));
  uint64_t bits = load_be64(s.data());
  std::memcpy(&v, &bits, 8);
  return ok();
}
Result<void> Reader::read(bool& v) {
  auto s = ORDO_TRY(fixed(1));
  v = s[0] != 0;
  return ok();
}
Result<void> Reader::read(Uuid& v) {
  auto s = ORDO_TRY(fixed(16));
  std::copy(s.begin(), s.end(), v.begin());
  return ok();
}
Result<void> Reader::read_uvarint(uint32_t& v) {
  auto d = get_uvarint(data_.subspan(pos_), kMaxVarint32Bytes);
  if (!d || d->value > 0xffffffffu) {
    return make_error(Errc::invalid_argument, ": bad or truncated unsigned varint");
  }
  pos_ += d->size;
  v = uint32_t(d->value);
  return ok();
}
Result<void> Reader::read_varint(int32_t& v) {
  auto d = get_varint32(data_.subspan(pos_));
  if (!d) return make_error(Errc::invalid_argument, ": bad or truncated varint");
  pos_ += d->size;
  v = d->value;
  return ok();
}
Result<void> Reader::read_varlong(int64_t& v) {
  auto d = get_varint64(data_.subspan(pos_));
  if (!d) return make_error(Errc::invalid_argument, ": bad or truncated varlong");
  pos_ += d->size;
  v = d->value;
  return ok();
}

Result<int64_t> Reader::read_length(bool compact, bool wide, size_t min_unit) {
  int64_t n;
  if (compact) {
    uint32_t u = 0;
    ORDO_TRY(read_uvarint(u));
    n = int64_t(u) - 1;
  } else if (wide) {
    int32_t v = 0;
    ORDO_TRY(read(v));
    n = v;
  } else {
    int16_t v = 0;
    ORDO_TRY(read(v));
    n = v;
  }
  if (n < -1) return make_error(Errc::invalid_argument, ": negative length {}", n);
  if (n < 0) return n;
  if (uint64_t(n) > max_length_) {
    return make_error(Errc::invalid_argument, ": length {} exceeds the bound {}", n, max_length_);
  }
  if (uint64_t(n) * std::max<size_t>(min_unit, 1) > remaining()) {
    return make_error(Errc::invalid_argument, ": length {} exceeds the {} bytes left", n,
                      remaining());
  }
  return n;
}

void Writer::write(int16_t v) {
  uint8_t b[2];
  store_be16(b, uint16_t(v));
  raw(b);
}
void Writer::write(uint16_t v) {
  uint8_t b[2];
  store_be16(b, v);
  raw(b);
}
void Writer::write(int32_t v) {
  uint8_t b[4];
  store_be32(b, uint32_t(v));
  raw(b);
}
void Writer::write(int64_t v) {
  uint8_t b[8];
  store_be64(b, uint64_t(v));
  raw(b);
}
void Writer::write(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  write(int64_t(bits));
}
void Writer::write_uvarint(uint64_t v) {
  uint8_t b[kMaxVarint64Bytes];
  raw(std::span<const uint8_t>(b, put_uvarint(b, v)));
}
void Writer::write_varint(int32_t v) {
  uint8_t b[kMaxVarint64Bytes];
  raw(std::span<const uint8_t>(b, put_varint32(b, v)));
}
void Writer::write_length(int64_t len, bool compact, bool wide) {
  if (compact) {
    write_uvarint(uint64_t(len + 1));
  } else if (wide) {
    write(int32_t(len));
  } else {
    write(int16_t(len));
  }
}
void Writer::file(const FileRange& r) {
  if (!buf_.empty()) {
    done_ += buf_.size();
    chunks_.emplace_back(std::move(buf_));
    buf_ = {};
  }
  done_ += size_t(r.size);
  chunks_.emplace_back(r);
}
std::vector<Chunk> Writer::finish() {
  if (!buf_.empty()) chunks_.emplace_back(std::move(buf_));
  buf_ = {};
  done_ = 0;
  return std::exchange(chunks_, {});
}

Result<std::vector<uint8_t>> flatten(const std::vector<Chunk>& chunks) {
  std::vector<uint8_t> out;
  for (const Chunk& c : chunks) {
    if (const auto* m = std::get_if<std::vector<uint8_t>>(&c)) {
      out.insert(out.end(), m->begin(), m->end());
    } else {
      const FileRange& f = std::get<FileRange>(c);
      size_t at = out.size();
      out.resize(at + size_t(f.size));
      ORDO_TRY(
          f.file->pread_exact(std::span<uint8_t>(out.data() + at, size_t(f.size)), f.position));
    }
  }
  return out;
}

size_t uvarint_bytes(uint64_t v) {
  return uvarint_size(v);
}

Result<void> decode_string(Reader& r, std::optional<std::string>& v, FieldCtx c) {
  int64_t n = ORDO_TRY(r.read_length(c.compact, false));
  if (n < 0) {
    if (!c.nullable)
      return make_error(Errc::invalid_argument, ": null string in a non-nullable version");
    v.reset();
    return ok();
  }
  auto s = ORDO_TRY(r.take(size_t(n)));
  v.emplace(reinterpret_cast<const char*>(s.data()), s.size());
  return ok();
}

Result<void> decode_bytes(Reader& r, std::optional<std::vector<uint8_t>>& v, FieldCtx c) {
  int64_t n = ORDO_TRY(r.read_length(c.compact, true));
  if (n < 0) {
    if (!c.nullable)
      return make_error(Errc::invalid_argument, ": null bytes in a non-nullable version");
    v.reset();
    return ok();
  }
  auto s = ORDO_TRY(r.take(size_t(n)));
  v.emplace(s.begin(), s.end());
  return ok();
}

Result<void> decode_records(Reader& r, std::optional<Records>& v, FieldCtx c) {
  int64_t n = ORDO_TRY(r.read_length(c.compact, true));
  if (n < 0) {
    if (!c.nullable)
      return make_error(Errc::invalid_argument, ": null records in a non-nullable version");
    v.reset();
    return ok();
  }
  v = Records::view(ORDO_TRY(r.take(size_t(n))));
  return ok();
}

size_t encode_unknown_tags(Writer& w, const std::vector<RawTaggedField>& u, size_t i,
                           uint64_t limit) {
  for (; i < u.size() && u[i].tag < limit; ++i) {
    w.write_uvarint(u[i].tag);
    w.write_uvarint(u[i].data.size());
    w.raw(u[i].data);
  }
  return i;
}

size_t size_unknown_tags(const std::vector<RawTaggedField>& u) {
  size_t n = 0;
  for (const auto& f : u) n += uvarint_bytes(f.tag) + uvarint_bytes(f.data.size()) + f.data.size();
  return n;
}

Result<void> read_tag(Reader& r, uint32_t& tag, std::span<const uint8_t>& data) {
  ORDO_TRY(r.read_uvarint(tag));
  uint32_t size = 0;
  ORDO_TRY(r.read_uvarint(size));
  data = ORDO_TRY(r.take(size));
  return ok();
}

}  // namespace ordo::protocol
