#include "compression/compression.h"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "base/random.h"
#include "compression/tests/allocation_tracker.h"

namespace ordo::compression {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr Codec kAllCodecs[] = {Codec::none, Codec::gzip, Codec::snappy, Codec::lz4, Codec::zstd};
constexpr Codec kCompressing[] = {Codec::gzip, Codec::snappy, Codec::lz4, Codec::zstd};

Bytes bytes(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

Bytes from_hex(std::string_view hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(uint8_t(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

Bytes concat(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// Record-like text: compressible, but not trivially.
Bytes text(size_t n, uint64_t seed = 1) {
  static const char* kWords[] = {"order",  "created", "customer",  "42",    "amount",
                                 "EUR",    "shipped", "warehouse", "north", "priority",
                                 "normal", "express", "{\"id\":",  "},",    "\n"};
  Random r(seed);
  Bytes out;
  out.reserve(n + 16);
  while (out.size() < n) {
    std::string_view w = kWords[r.below(std::size(kWords))];
    out.insert(out.end(), w.begin(), w.end());
    out.push_back(' ');
  }
  out.resize(n);
  return out;
}

Bytes random_bytes(size_t n, uint64_t seed = 2) {
  Random r(seed);
  Bytes out(n);
  for (auto& b : out) b = uint8_t(r.next());
  return out;
}

Bytes compressed(Codec c, const Bytes& in, int level = kDefaultLevel) {
  auto r = compress(c, in, level);
  EXPECT_TRUE(r) << codec_name(c) << ": " << r.error().to_string();
  return r ? std::move(r).value() : Bytes{};
}

// --- Round trips ----------------------------------------------------------------------------

TEST(Compression, RoundTripsEveryCodecAndKindOfInput) {
  const std::vector<std::pair<std::string, Bytes>> inputs = {
      {"empty", {}},
      {"one byte", bytes("x")},
      {"small", bytes("hello, compressed record batch")},
      {"large text", text(3 << 20)},  // many snappy (32 KiB) and lz4 (64 KiB) blocks
      {"incompressible", random_bytes((1 << 20) + 7)},
  };
  for (Codec c : kAllCodecs) {
    for (const auto& [name, in] : inputs) {
      SCOPED_TRACE(std::string(codec_name(c)) + " / " + name);
      Bytes z = compressed(c, in);
      auto out = decompress(c, z, in.size());  // the bound is exactly the output size
      ASSERT_TRUE(out) << out.error().to_string();
      EXPECT_TRUE(*out == in);
      if (!in.empty()) {
        auto over = decompress(c, z, in.size() - 1);
        ASSERT_FALSE(over);
        EXPECT_EQ(over.error().code, Errc::too_large) << over.error().to_string();
      }
    }
  }
}

TEST(Compression, LevelsRoundTripAndOutOfRangeLevelsAreRefused) {
  Bytes in = text(64 << 10);
  // snappy and none have no levels: theirs are ignored.
  const std::vector<std::pair<Codec, std::vector<int>>> good = {
      {Codec::gzip, {-1, 0, 1, 6, 9}},   {Codec::lz4, {0, 1, 3, 9, 12, 17}},
      {Codec::zstd, {-5, 1, 3, 19, 22}}, {Codec::snappy, {kDefaultLevel, 5}},
      {Codec::none, {kDefaultLevel, 5}},
  };
  for (const auto& [c, levels] : good) {
    for (int level : levels) {
      SCOPED_TRACE(std::string(codec_name(c)) + " level " + std::to_string(level));
      Bytes z = compressed(c, in, level);
      auto out = decompress(c, z, in.size());
      ASSERT_TRUE(out) << out.error().to_string();
      EXPECT_TRUE(*out == in);
    }
  }
  const std::vector<std::pair<Codec, int>> bad = {
      {Codec::gzip, -2}, {Codec::gzip, 10}, {Codec::lz4, -1}, {Codec::lz4, 18}, {Codec::zstd, 23}};
  for (const auto& [c, level] : bad) {
    auto r = compress(c, in, level);
    ASSERT_FALSE(r) << codec_name(c) << " level " << level;
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
}

TEST(Compression, UnknownCodecsAreInvalidArguments) {
  Bytes in = bytes("abc");
  for (int id : {5, 6, 7, 200}) {
    auto c = compress(Codec(id), in);
    ASSERT_FALSE(c);
    EXPECT_EQ(c.error().code, Errc::invalid_argument);
    auto d = decompress(Codec(id), in, 100);
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().code, Errc::invalid_argument);
    EXPECT_EQ(codec_name(Codec(id)), "unknown");
  }
  // Bits 0-2 of the attributes name the codec; the other bits do not matter.
  EXPECT_EQ(*codec_from_attributes(0x0000), Codec::none);
  EXPECT_EQ(*codec_from_attributes(0x0001), Codec::gzip);
  EXPECT_EQ(*codec_from_attributes(0x0002 | 0x0008), Codec::snappy);
  EXPECT_EQ(*codec_from_attributes(0x0003 | 0x0010 | 0x0020), Codec::lz4);
  EXPECT_EQ(*codec_from_attributes(0x0004 | 0x0040), Codec::zstd);
  for (uint16_t attrs : {0x0005, 0x0006, 0x0007, 0x0015}) {
    auto r = codec_from_attributes(attrs);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::invalid_argument);
  }
}

TEST(Compression, EmptyOutputsFitABoundOfZero) {
  for (Codec c : kAllCodecs) {
    auto out = decompress(c, compressed(c, {}), 0);
    ASSERT_TRUE(out) << codec_name(c) << ": " << out.error().to_string();
    EXPECT_TRUE(out->empty());
  }
  // No bytes at all is a valid "none" payload and a corrupt one for every real codec.
  for (Codec c : kCompressing) {
    auto out = decompress(c, {}, 100);
    ASSERT_FALSE(out) << codec_name(c);
    EXPECT_EQ(out.error().code, Errc::corrupt);
  }
}

// --- Decompression bombs --------------------------------------------------------------------

TEST(Compression, BombsAreRefusedWithoutAllocatingTheirOutput) {
  const size_t kBombBytes = 32 << 20;
  const size_t kBound = 1 << 20;
  Bytes zeros(kBombBytes);
  for (Codec c : kCompressing) {
    SCOPED_TRACE(codec_name(c));
    Bytes bomb = compressed(c, zeros, c == Codec::gzip ? 9 : kDefaultLevel);
    ASSERT_LT(bomb.size(), kBombBytes / 16);  // a real bomb: at least 16x

    start_tracking_allocations();
    auto refused = decompress(c, bomb, kBound);
    size_t largest = stop_tracking_allocations();
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::too_large) << refused.error().to_string();
    EXPECT_LE(largest, kBound);

    auto accepted = decompress(c, bomb, kBombBytes);  // and it is real
    ASSERT_TRUE(accepted) << accepted.error().to_string();
    EXPECT_TRUE(*accepted == zeros);
  }
}

TEST(Compression, RawSnappyLengthLiesAreRefusedBeforeAllocating) {
  // A raw block declaring 4 GiB - 1 (varint ff ff ff ff 0f) followed by one literal byte.
  Bytes lie = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 'a'};
  auto r = decompress(Codec::snappy, lie, 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
  // With no bound at all, it is still refused: 7 bytes of snappy cannot produce 4 GiB.
  start_tracking_allocations();
  r = decompress(Codec::snappy, lie, SIZE_MAX);
  size_t largest = stop_tracking_allocations();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::corrupt);
  EXPECT_LE(largest, 4096u);
}

// --- Damaged inputs -------------------------------------------------------------------------

// The positions at which to cut or damage an input: every one for small inputs, else the first
// and last 2 KiB and a sample between.
std::vector<size_t> positions(size_t n) {
  std::vector<size_t> out;
  for (size_t i = 0; i < n; i += (i < 2048 || n - i <= 2048) ? 1 : 97) out.push_back(i);
  return out;
}

// Where each block of a snappy-java stream ends (the header counts as the first).
std::vector<size_t> xerial_block_ends(const Bytes& z) {
  std::vector<size_t> ends = {16};
  size_t pos = 16;
  while (pos + 4 <= z.size()) {
    pos += 4 + (size_t(z[pos]) << 24 | size_t(z[pos + 1]) << 16 | size_t(z[pos + 2]) << 8 |
                size_t(z[pos + 3]));
    ends.push_back(pos);
  }
  return ends;
}

TEST(Compression, TruncatedInputsAreErrors) {
  Bytes in = text(100000);
  for (Codec c : kCompressing) {
    SCOPED_TRACE(codec_name(c));
    Bytes z = compressed(c, in);
    std::vector<size_t> cuts = positions(z.size());
    if (c == Codec::snappy) {
      std::vector<size_t> ends = xerial_block_ends(z);
      ASSERT_EQ(ends.size(), 5u);
      ASSERT_EQ(ends.back(), z.size());
      cuts.insert(cuts.end(), ends.begin(), ends.end() - 1);
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    }
    size_t accepted = 0;
    for (size_t cut : cuts) {
      auto r = decompress(c, std::span(z).first(cut), in.size());
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::corrupt) << cut << ": " << r.error().to_string();
        continue;
      }
      // snappy-java framing has no end marker: a cut exactly between blocks is a valid, shorter
      // stream. It must then hold exactly the blocks before the cut.
      ASSERT_EQ(c, Codec::snappy) << "accepted a cut at " << cut << " of " << z.size();
      ASSERT_EQ(r->size() % (32 * 1024), 0u) << cut;
      EXPECT_TRUE(std::equal(r->begin(), r->end(), in.begin())) << cut;
      ++accepted;
    }
    if (c == Codec::snappy) {
      EXPECT_EQ(accepted, 4u);  // the header alone, then after blocks 1, 2 and 3
    }
  }
}

TEST(Compression, BitFlipsNeverCrashAndNeverExceedTheBound) {
  Bytes in = concat(text(6000, 7), random_bytes(500, 8));
  for (Codec c : kCompressing) {
    SCOPED_TRACE(codec_name(c));
    Bytes z = compressed(c, in);
    size_t detected = 0, accepted = 0;
    for (size_t i : positions(z.size())) {
      for (int bit = 0; bit < 8; ++bit) {
        Bytes damaged = z;
        damaged[i] ^= uint8_t(1 << bit);
        auto r = decompress(c, damaged, in.size());
        if (!r) {
          EXPECT_TRUE(r.error().code == Errc::corrupt || r.error().code == Errc::too_large)
              << r.error().to_string();
          ++detected;
          continue;
        }
        ++accepted;
        ASSERT_LE(r->size(), in.size());
        // gzip's CRC-32 covers the content: what it accepts is the original (flips in the
        // header's mtime, flags and OS bytes, or in unused Huffman codes, change nothing).
        if (c == Codec::gzip) {
          EXPECT_TRUE(*r == in) << "byte " << i << " bit " << bit;
        }
      }
    }
    // Without a content checksum (raw snappy, lz4 and zstd as Kafka clients write them) many
    // flips in literals go unnoticed; the batch's CRC-32C is what catches those.
    std::printf("%-6s %5zu compressed bytes: %6zu flips detected, %6zu accepted\n",
                std::string(codec_name(c)).c_str(), z.size(), detected, accepted);
    EXPECT_GT(detected, 0u);
  }
}

// --- What real clients write ----------------------------------------------------------------

// Records sections of batches that kcat 1.7 (librdkafka 2.0.2) produced with -z gzip, snappy,
// lz4 and zstd, each holding one record whose value is kLibrdkafkaValue, taken from the segment
// files a broker stored them in.
constexpr std::string_view kLibrdkafkaValue =
    "hello ordo compression interop, alpha\nhello ordo compression interop, beta\n"
    "hello ordo compression interop, gamma\nhello ordo compression interop, delta\n"
    "hello ordo compression interop, alpha\nhello ordo compression interop, beta\n"
    "hello ordo compression interop, gamma\nhello ordo compression interop, delta\n";

Bytes librdkafka_records() {
  // length 309 | attributes 0 | timestampDelta 0 | offsetDelta 0 | key null | value length 302 |
  // value | no headers (all varints zig-zag encoded)
  Bytes out = from_hex("ea0400000001dc04");
  out.insert(out.end(), kLibrdkafkaValue.begin(), kLibrdkafkaValue.end());
  out.push_back(0x00);
  return out;
}

TEST(Compression, DecodesWhatLibrdkafkaWrites) {
  const std::vector<std::pair<Codec, std::string_view>> vectors = {
      {Codec::gzip,
       "1f8b08000000000000037bc5c2c0c0c0788725233527275f21bf28255f21393fb7a028b5b838333f4f2133af24"
       "b528bf40472131a72023918b90aaa4d412c28ad213737309ab4a49cd21c2ac0172160300e9120f4637010000"},
      // One raw snappy block, no snappy-java framing: b702 is the varint 311.
      {Codec::snappy,
       "b702b8ea0400000001dc0468656c6c6f206f72646f20636f6d7072657373696f6e20696e7465726f702c2061"
       "6c7068610a687a26000c626574618225000c67616d6d8626000864656c8a4c000061fe9700d697000000"},
      // FLG 0x60 (independent blocks, no checksums, no content size), BD 0x40, HC 0x82.
      {Codec::lz4,
       "04224d1860408253000000ff1fea0400000001dc0468656c6c6f206f72646f20636f6d7072657373696f6e20"
       "696e7465726f702c20616c7068610a26000d3f62657425000f4f67616d6d26000f3f64656c4c00100f970060"
       "506c74610a0000000000"},
      // No content size in the frame header (FHD 0x00).
      {Codec::zstd,
       "28b52ffd0058650200a403ea0400000001dc0468656c6c6f206f72646f20636f6d7072657373696f6e20696e"
       "7465726f702c20616c7068610a62657467616d6d64656c74000500546352001c92944390728613aeca"},
  };
  Bytes expected = librdkafka_records();
  ASSERT_EQ(expected.size(), 311u);
  for (const auto& [c, hex] : vectors) {
    SCOPED_TRACE(codec_name(c));
    Bytes z = from_hex(hex);
    auto out = decompress(c, z, expected.size());
    ASSERT_TRUE(out) << out.error().to_string();
    EXPECT_TRUE(*out == expected);
    auto over = decompress(c, z, expected.size() - 1);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, Errc::too_large);
    for (size_t cut = 0; cut < z.size(); ++cut) {
      EXPECT_FALSE(decompress(c, std::span(z).first(cut), 1 << 20)) << cut;
    }
  }
}

Bytes xerial_header(uint32_t version = 1, uint32_t compatible = 1) {
  Bytes h = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0x00};
  for (uint32_t v : {version, compatible}) {
    for (int shift = 24; shift >= 0; shift -= 8) h.push_back(uint8_t(v >> shift));
  }
  return h;
}

// A snappy-java block: int32 length, then a raw block holding one literal (n < 60 bytes).
Bytes xerial_literal_block(std::string_view s) {
  Bytes raw = {uint8_t(s.size()), uint8_t((s.size() - 1) << 2)};
  raw.insert(raw.end(), s.begin(), s.end());
  Bytes out = {0, 0, 0, uint8_t(raw.size())};
  return concat(out, raw);
}

TEST(Compression, DecodesSnappyJavaFraming) {
  // "foobar\n" as snappy-java's SnappyOutputStream writes it (the example in the docs of
  // Haskell's snappy-framing package).
  Bytes foobar = from_hex("82534e41505059000000000100000001000000090718666f6f6261720a");
  auto out = decompress(Codec::snappy, foobar, 100);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(std::string(out->begin(), out->end()), "foobar\n");

  Bytes two = concat(concat(xerial_header(), xerial_literal_block("hello")),
                     xerial_literal_block(" world"));
  out = decompress(Codec::snappy, two, 100);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(std::string(out->begin(), out->end()), "hello world");
  auto over = decompress(Codec::snappy, two, 10);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, Errc::too_large);

  // The version fields are not checked (librdkafka does not either).
  out = decompress(Codec::snappy, concat(xerial_header(2, 7), xerial_literal_block("v")), 10);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(std::string(out->begin(), out->end()), "v");

  // The header alone is an empty stream.
  out = decompress(Codec::snappy, xerial_header(), 0);
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_TRUE(out->empty());

  const Bytes header = xerial_header();
  const std::vector<std::pair<std::string, Bytes>> corrupt = {
      {"magic, header cut", Bytes(header.begin(), header.begin() + 12)},
      {"block longer than the input", concat(xerial_header(), {0, 0, 1, 0, 5, 0x10, 'a'})},
      {"trailing bytes", concat(concat(xerial_header(), xerial_literal_block("ab")), {0, 0})},
      {"empty block", concat(xerial_header(), {0, 0, 0, 0})},
      {"block yields less than it declares",
       concat(xerial_header(), {0, 0, 0, 4, 9, 0x04, 'a', 'b'})},
  };
  for (const auto& [name, z] : corrupt) {
    auto r = decompress(Codec::snappy, z, 1 << 20);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().code, Errc::corrupt) << name << ": " << r.error().to_string();
  }
}

TEST(Compression, SnappyCompressWritesSnappyJavaFramingIn32KiBBlocks) {
  Bytes in = text(100000);
  Bytes z = compressed(Codec::snappy, in);
  ASSERT_GE(z.size(), 16u);
  EXPECT_TRUE(Bytes(z.begin(), z.begin() + 16) == xerial_header());
  std::vector<size_t> block_inputs;
  size_t pos = 16;
  while (pos < z.size()) {
    ASSERT_LE(pos + 4, z.size());
    size_t len = size_t(z[pos]) << 24 | size_t(z[pos + 1]) << 16 | size_t(z[pos + 2]) << 8 |
                 size_t(z[pos + 3]);
    pos += 4;
    ASSERT_LE(pos + len, z.size());
    // Each block is a raw snappy block: decodable on its own, through the unframed path.
    auto block = decompress(Codec::snappy, std::span(z).subspan(pos, len), 1 << 20);
    ASSERT_TRUE(block) << block.error().to_string();
    block_inputs.push_back(block->size());
    pos += len;
  }
  EXPECT_EQ(block_inputs, (std::vector<size_t>{32768, 32768, 32768, 100000 - 3 * 32768}));
  // An empty input is the header alone.
  EXPECT_TRUE(compressed(Codec::snappy, {}) == xerial_header());
}

TEST(Compression, CompressedFramesStartAsKafkaClientsWriteThem) {
  Bytes in = text(200000);
  Bytes gz = compressed(Codec::gzip, in);
  EXPECT_TRUE(Bytes(gz.begin(), gz.begin() + 3) == from_hex("1f8b08"));  // gzip, deflate
  Bytes lz = compressed(Codec::lz4, in);
  // Magic, FLG 0x60 (version 1, independent blocks, no checksums, no content size), BD 0x40
  // (64 KiB blocks): what Kafka's Java client and librdkafka write, and all Java reads.
  EXPECT_TRUE(Bytes(lz.begin(), lz.begin() + 6) == from_hex("04224d186040"));
  Bytes zs = compressed(Codec::zstd, in);
  EXPECT_TRUE(Bytes(zs.begin(), zs.begin() + 4) == from_hex("28b52ffd"));
}

// --- The reference command-line tools -------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/ordo-compression-XXXXXX";
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    if (path_.empty()) return;
    int rc = std::system(("rm -rf '" + path_ + "'").c_str());
    EXPECT_EQ(rc, 0);
  }
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

void write_file(const std::string& path, const Bytes& data) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool have_tool(const char* name) {
  return std::system(("command -v " + std::string(name) + " >/dev/null 2>&1").c_str()) == 0;
}

int run(const std::string& cmd) {
  return std::system(("set -e; " + cmd).c_str());
}

TEST(Compression, ReadsAndWritesWhatTheReferenceToolsDo) {
  for (const char* tool : {"gzip", "lz4", "zstd"}) {
    ASSERT_TRUE(have_tool(tool)) << tool << " is missing (scripts/install-deps installs it)";
  }
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Bytes in = concat(text(300000, 3), random_bytes(50000, 4));
  const std::string src = dir.file("in");
  write_file(src, in);
  const Bytes twice = concat(in, in);

  struct Case {
    Codec codec;
    std::string command;  // writes the compressed form of src to stdout
    const Bytes* expected;
  };
  const std::string s = "'" + src + "'";
  const std::vector<Case> cases = {
      {Codec::gzip, "gzip -c " + s, &in},
      {Codec::gzip, "gzip -1 -c " + s, &in},
      {Codec::gzip, "gzip -9 -c < " + s, &in},
      {Codec::gzip, "gzip -c " + s + "; gzip -c " + s, &twice},    // two members
      {Codec::lz4, "lz4 -q -c " + s, &in},                         // content checksum, 4 MiB blocks
      {Codec::lz4, "lz4 -q -BD -B4 --content-size -c " + s, &in},  // linked blocks, content size
      {Codec::lz4, "lz4 -q -B5 -BX --no-frame-crc -c " + s, &in},  // block checksums
      {Codec::lz4, "lz4 -q -9 -c < " + s, &in},                    // high compression
      {Codec::lz4, "lz4 -q -c " + s + "; lz4 -q -c " + s, &twice},  // two frames
      {Codec::zstd, "zstd -q -c " + s, &in},                        // content size and checksum
      {Codec::zstd, "zstd -q --no-check -c < " + s, &in},           // neither
      {Codec::zstd, "zstd -q -19 -c " + s, &in},
      {Codec::zstd, "zstd -q -c " + s + "; zstd -q -c " + s, &twice},  // two frames
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.command);
    const std::string out = dir.file("out");
    ASSERT_EQ(run("(" + k.command + ") > '" + out + "'"), 0);
    Bytes z = read_file(out);
    auto r = decompress(k.codec, z, k.expected->size());
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_TRUE(*r == *k.expected);
    auto over = decompress(k.codec, z, k.expected->size() - 1);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, Errc::too_large);
  }

  // And the tools read what compress() writes (lz4 checks the header checksum).
  for (const auto& [c, tool] : std::vector<std::pair<Codec, std::string>>{
           {Codec::gzip, "gzip"}, {Codec::lz4, "lz4"}, {Codec::zstd, "zstd"}}) {
    SCOPED_TRACE(tool);
    const std::string z = dir.file("z"), back = dir.file("back");
    write_file(z, compressed(c, in));
    ASSERT_EQ(run(tool + " -q -d -c < '" + z + "' > '" + back + "'"), 0);
    EXPECT_TRUE(read_file(back) == in);
  }
}

}  // namespace
}  // namespace ordo::compression

namespace ordo::compression {
namespace {

TEST(Compression, Crc32IeeeKnownAnswer) {
  // The standard check value of CRC-32 (IEEE 802.3) over "123456789".
  const std::string check = "123456789";
  EXPECT_EQ(crc32_ieee({reinterpret_cast<const uint8_t*>(check.data()), check.size()}),
            0xCBF43926u);
  EXPECT_EQ(crc32_ieee({}), 0u);
}

}  // namespace
}  // namespace ordo::compression
