#pragma once
// Kafka wire primitives: Reader (decode) and Writer (encode), the Records payload type and the
// per-type codec templates the generated message code (tools/gen_protocol.py) calls.
//
// Bounds: every length read from the wire (string, bytes, array count, tagged-field size) is
// checked against the bytes remaining in the Reader and against its max_length BEFORE anything
// is allocated; array counts must not exceed the bytes remaining (every element takes at least
// one byte on the wire), so a 4-byte "array of 2^31 elements" fails without allocating.
//
// Errors: Errc::invalid_argument. The message starts with the field path, built while the
// error propagates out of the generated decoders, e.g.
//   "ProduceRequest v9: topic_data[0].partition_data[2].records: length 900 exceeds the 12 bytes
//   left"
//
// Decode lifetime rule: a decoded Records is a view into the Reader's buffer (zero copy). It
// stays valid only while that buffer (the request frame) is alive and unchanged. Every other
// decoded field owns its bytes.

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "base/file.h"
#include "base/result.h"

namespace ordo::protocol {

using Uuid = std::array<uint8_t, 16>;

// A range of a file, sent with sendfile(2) by the network layer (storage's FileSlice maps onto
// it one to one; the protocol module does not depend on storage).
struct FileRange {
  std::shared_ptr<const File> file;
  int64_t position = 0;
  int64_t size = 0;
  bool operator==(const FileRange&) const = default;
};

// The value of a "records" field: a RecordBatch sequence the codec does not interpret.
//  - after decode: a view (std::span) into the request buffer (see the lifetime rule above);
//  - to encode: owned bytes, a view, or a FileRange (written as an external chunk).
class Records {
 public:
  Records() = default;
  static Records view(std::span<const uint8_t> b) { return Records(Rep(b)); }
  static Records owned(std::vector<uint8_t> b) { return Records(Rep(std::move(b))); }
  static Records file(FileRange r) { return Records(Rep(std::move(r))); }

  size_t size() const;
  bool is_file() const { return std::holds_alternative<FileRange>(rep_); }
  // The bytes, when in memory (view or owned); empty for a FileRange.
  std::span<const uint8_t> bytes() const;
  const FileRange* file_range() const { return std::get_if<FileRange>(&rep_); }

  // Memory records compare by content (a view equals owned bytes with the same content); file
  // ranges compare by file, position and size.
  bool operator==(const Records& o) const;

 private:
  using Rep = std::variant<std::span<const uint8_t>, std::vector<uint8_t>, FileRange>;
  explicit Records(Rep r) : rep_(std::move(r)) {}
  Rep rep_;
};

// A tagged field the decoder did not know; kept so that it is written back unchanged.
struct RawTaggedField {
  uint32_t tag = 0;
  std::vector<uint8_t> data;
  bool operator==(const RawTaggedField&) const = default;
};

// Error helpers. A Reader error message starts with ": " (no path yet); field_error() puts the
// field name in front.
Error field_error(Error e, std::string_view field);
Error element_error(Error e, size_t index);

class Reader {
 public:
  // max_length bounds every single length on the wire (use the max request size).
  explicit Reader(std::span<const uint8_t> data,
                  size_t max_length = std::numeric_limits<size_t>::max())
      : data_(data), max_length_(max_length) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t position() const { return pos_; }
  size_t max_length() const { return max_length_; }

  Result<void> read(int8_t& v);
  Result<void> read(int16_t& v);
  Result<void> read(int32_t& v);
  Result<void> read(int64_t& v);
  Result<void> read(uint16_t& v);
  Result<void> read(double& v);
  Result<void> read(bool& v);
  Result<void> read(Uuid& v);
  Result<void> read_uvarint(uint32_t& v);
  Result<void> read_varint(int32_t& v);
  Result<void> read_varlong(int64_t& v);

  // A length prefix: int16 (strings) / int32 (bytes, arrays) or, when compact, an unsigned
  // varint holding length + 1. -1 means null. The length is checked against remaining() (times
  // min_unit bytes per unit) and max_length.
  Result<int64_t> read_length(bool compact, bool wide, size_t min_unit = 1);

  // The next n bytes (n already checked by the caller, or checked here).
  Result<std::span<const uint8_t>> take(size_t n);

 private:
  Result<std::span<const uint8_t>> fixed(size_t n);
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  size_t max_length_;
};

// One piece of an encoded message: bytes in memory or a file range.
using Chunk = std::variant<std::vector<uint8_t>, FileRange>;

class Writer {
 public:
  Writer() = default;

  void write(int8_t v) { buf_.push_back(uint8_t(v)); }
  void write(int16_t v);
  void write(int32_t v);
  void write(int64_t v);
  void write(uint16_t v);
  void write(double v);
  void write(bool v) { buf_.push_back(v ? 1 : 0); }
  void write(const Uuid& v) { raw(v); }
  void write_uvarint(uint64_t v);
  void write_varint(int32_t v);
  // Length prefix: -1 is null. compact: uvarint(len + 1); else int16 (wide = false) or int32.
  void write_length(int64_t len, bool compact, bool wide);
  void raw(std::span<const uint8_t> b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  void raw(std::string_view s) { buf_.insert(buf_.end(), s.begin(), s.end()); }
  // Appends a file range as its own chunk (no bytes are read).
  void file(const FileRange& r);

  // Total bytes written so far (memory and file chunks).
  size_t size() const { return done_ + buf_.size(); }
  // The chunks in order; the writer is empty afterwards.
  std::vector<Chunk> finish();

 private:
  std::vector<uint8_t> buf_;
  std::vector<Chunk> chunks_;
  size_t done_ = 0;
};

// All chunks as one byte vector; file ranges are read with pread (for tests and tools).
Result<std::vector<uint8_t>> flatten(const std::vector<Chunk>& chunks);

size_t uvarint_bytes(uint64_t v);
inline size_t length_bytes(int64_t len, bool compact, bool wide) {
  return compact ? uvarint_bytes(uint64_t(len + 1)) : (wide ? 4 : 2);
}

// ---- codec templates used by the generated code ----

// How one field is coded at one version.
struct FieldCtx {
  int16_t version = 0;
  bool compact = false;   // flexible version (and the field does not opt out)
  bool nullable = false;  // null allowed in this version
};

template <typename T>
concept Message = requires(T t, const T ct, Reader& r, Writer& w, int16_t v) {
  { t.decode(r, v) } -> std::same_as<Result<void>>;
  ct.encode(w, v);
  { ct.encoded_size(v) } -> std::same_as<size_t>;
};

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};
template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};

template <typename T>
struct IsOptionalVector : std::false_type {};
template <typename T>
struct IsOptionalVector<std::optional<std::vector<T>>> : std::true_type {};

template <typename T>
constexpr bool kIsScalar = std::is_arithmetic_v<T> || std::is_same_v<T, Uuid>;

template <typename T>
Result<void> decode_value(Reader& r, T& v, FieldCtx c);
template <typename T>
void encode_value(Writer& w, const T& v, FieldCtx c);
template <typename T>
size_t size_value(const T& v, FieldCtx c);

Result<void> decode_string(Reader& r, std::optional<std::string>& v, FieldCtx c);
Result<void> decode_bytes(Reader& r, std::optional<std::vector<uint8_t>>& v, FieldCtx c);
Result<void> decode_records(Reader& r, std::optional<Records>& v, FieldCtx c);

template <typename T>
Result<void> decode_value(Reader& r, T& v, FieldCtx c) {
  if constexpr (kIsScalar<T>) {
    return r.read(v);
  } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<uint8_t>> ||
                       std::is_same_v<T, Records>) {
    std::optional<T> tmp;
    c.nullable = false;
    ORDO_TRY(decode_value(r, tmp, c));
    v = std::move(*tmp);
    return ok();
  } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
    return decode_string(r, v, c);
  } else if constexpr (std::is_same_v<T, std::optional<std::vector<uint8_t>>>) {
    return decode_bytes(r, v, c);
  } else if constexpr (std::is_same_v<T, std::optional<Records>>) {
    return decode_records(r, v, c);
  } else if constexpr (IsOptionalVector<T>::value) {
    using E = typename T::value_type::value_type;
    int64_t n = ORDO_TRY(r.read_length(c.compact, true, kIsScalar<E> ? sizeof(E) : 1));
    if (n < 0) {
      if (!c.nullable)
        return make_error(Errc::invalid_argument, ": null array in a non-nullable version");
      v.reset();
      return ok();
    }
    auto& out = v.emplace();
    out.reserve(size_t(n));  // n <= remaining bytes, checked by read_length
    FieldCtx ec{c.version, c.compact, false};
    for (int64_t i = 0; i < n; ++i) {
      out.emplace_back();
      if (auto res = decode_value(r, out.back(), ec); !res) {
        return element_error(std::move(res).error(), size_t(i));
      }
    }
    return ok();
  } else if constexpr (IsVector<T>::value) {
    std::optional<T> tmp;
    c.nullable = false;
    ORDO_TRY(decode_value(r, tmp, c));
    v = std::move(*tmp);
    return ok();
  } else if constexpr (IsOptional<T>::value) {  // nullable struct: int8 marker
    if (c.nullable) {
      int8_t marker = 0;
      ORDO_TRY(r.read(marker));
      if (marker < 0) {
        v.reset();
        return ok();
      }
    }
    // emplace(E{}) rather than emplace(): clang 14 caches is_constructible<E> as false for a
    // struct nested in a class that was incomplete when std::optional<E> was instantiated.
    return v.emplace(typename T::value_type{}).decode(r, c.version);
  } else {
    static_assert(Message<T>);
    return v.decode(r, c.version);
  }
}

template <typename T>
void encode_value(Writer& w, const T& v, FieldCtx c) {
  if constexpr (kIsScalar<T>) {
    w.write(v);
  } else if constexpr (std::is_same_v<T, std::string>) {
    w.write_length(int64_t(v.size()), c.compact, false);
    w.raw(v);
  } else if constexpr (std::is_same_v<T, std::vector<uint8_t>>) {
    w.write_length(int64_t(v.size()), c.compact, true);
    w.raw(v);
  } else if constexpr (std::is_same_v<T, Records>) {
    w.write_length(int64_t(v.size()), c.compact, true);
    if (const FileRange* f = v.file_range()) {
      w.file(*f);
    } else {
      w.raw(v.bytes());
    }
  } else if constexpr (IsVector<T>::value) {
    w.write_length(int64_t(v.size()), c.compact, true);
    FieldCtx ec{c.version, c.compact, false};
    for (const auto& e : v) encode_value(w, e, ec);
  } else if constexpr (IsOptional<T>::value) {
    using E = typename T::value_type;
    if constexpr (Message<E>) {  // nullable struct
      if (c.nullable) w.write(int8_t(v ? 1 : -1));
      if (v) {
        v->encode(w, c.version);
      } else if (!c.nullable) {
        E().encode(w, c.version);
      }
    } else if (v) {
      encode_value(w, *v, c);
    } else if (c.nullable) {
      w.write_length(-1, c.compact, !std::is_same_v<E, std::string>);
    } else {
      // Null in a version where the field is not nullable: written as empty.
      encode_value(w, E(), c);
    }
  } else {
    static_assert(Message<T>);
    v.encode(w, c.version);
  }
}

template <typename T>
size_t size_value(const T& v, FieldCtx c) {
  if constexpr (kIsScalar<T>) {
    return sizeof(T);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return length_bytes(int64_t(v.size()), c.compact, false) + v.size();
  } else if constexpr (std::is_same_v<T, std::vector<uint8_t>> || std::is_same_v<T, Records>) {
    return length_bytes(int64_t(v.size()), c.compact, true) + v.size();
  } else if constexpr (IsVector<T>::value) {
    size_t n = length_bytes(int64_t(v.size()), c.compact, true);
    FieldCtx ec{c.version, c.compact, false};
    for (const auto& e : v) n += size_value(e, ec);
    return n;
  } else if constexpr (IsOptional<T>::value) {
    using E = typename T::value_type;
    if constexpr (Message<E>) {
      return (c.nullable ? 1 : 0) +
             (v ? v->encoded_size(c.version) : (c.nullable ? 0 : E().encoded_size(c.version)));
    } else if (v) {
      return size_value(*v, c);
    } else if (c.nullable) {
      return length_bytes(-1, c.compact, !std::is_same_v<E, std::string>);
    } else {
      return size_value(E(), c);
    }
  } else {
    static_assert(Message<T>);
    return v.encoded_size(c.version);
  }
}

// Tagged fields: tag, size, value.
template <typename T>
void encode_tagged(Writer& w, uint32_t tag, const T& v, FieldCtx c) {
  w.write_uvarint(tag);
  w.write_uvarint(size_value(v, c));
  encode_value(w, v, c);
}
template <typename T>
size_t size_tagged(uint32_t tag, const T& v, FieldCtx c) {
  size_t n = size_value(v, c);
  return uvarint_bytes(tag) + uvarint_bytes(n) + n;
}
// Decodes a tagged field's value from exactly its bytes.
template <typename T>
Result<void> decode_tagged(std::span<const uint8_t> data, size_t max_length, T& v, FieldCtx c) {
  Reader sub(data, max_length);
  ORDO_TRY(decode_value(sub, v, c));
  if (sub.remaining() != 0) {
    return make_error(Errc::invalid_argument, ": {} bytes left over in a tagged field",
                      sub.remaining());
  }
  return ok();
}

// Unknown tagged fields with tag < limit, starting at index i; returns the next index.
size_t encode_unknown_tags(Writer& w, const std::vector<RawTaggedField>& u, size_t i,
                           uint64_t limit);
size_t size_unknown_tags(const std::vector<RawTaggedField>& u);
// Reads one tagged-field header: tag and the bytes of its value.
Result<void> read_tag(Reader& r, uint32_t& tag, std::span<const uint8_t>& data);

// Decodes a whole message (top level): decode, then require that every byte was used.
// The error message names the message and version.
template <typename T>
Result<void> decode_message(std::span<const uint8_t> data, int16_t version, T& out,
                            size_t max_length = std::numeric_limits<size_t>::max()) {
  if (version < T::kMinVersion || version > T::kMaxVersion) {
    return make_error(Errc::invalid_argument, "{} v{}: unsupported version", T::kName, version);
  }
  Reader r(data, max_length);
  if (auto res = out.decode(r, version); !res) {
    const std::string& m = res.error().message;
    return make_error(Errc::invalid_argument, "{} v{}{}{}", T::kName, version,
                      m.starts_with(":") ? "" : ": ", m);
  }
  if (r.remaining() != 0) {
    return make_error(Errc::invalid_argument, "{} v{}: {} trailing bytes", T::kName, version,
                      r.remaining());
  }
  return ok();
}

}  // namespace ordo::protocol

// ORDO_PROTO_FIELD(expr, "name"): evaluates a Result<void>; on error returns it with the field
// name put in front of its path.
#define ORDO_PROTO_FIELD(expr, name)                                             \
  do {                                                                           \
    if (auto ordo_pf_r_ = (expr); !ordo_pf_r_.has_value()) {                     \
      return ::ordo::protocol::field_error(std::move(ordo_pf_r_).error(), name); \
    }                                                                            \
  } while (0)
