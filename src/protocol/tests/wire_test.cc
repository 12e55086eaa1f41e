// Messages pinned to wire bytes worked out by hand from the Kafka protocol spec (not produced
// by the encoder), decoded and encoded both ways.

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "base/file.h"
#include "model/record_batch.h"
#include "protocol/header.h"
#include "protocol/messages.h"

namespace ordo::protocol {
namespace {

using Bytes = std::vector<uint8_t>;

template <typename M>
Bytes encode(const M& m, int16_t version) {
  Writer w;
  m.encode(w, version);
  EXPECT_EQ(w.size(), m.encoded_size(version));
  return flatten(w.finish()).value();
}

template <typename M>
M decode(const Bytes& b, int16_t version) {
  M m;
  auto r = decode_message(b, version, m);
  EXPECT_TRUE(r.has_value()) << r.error().to_string();
  return m;
}

TEST(Wire, RequestHeaderV2WithClientId) {
  const Bytes expected = {0x00, 0x12,                   // api key 18 (ApiVersions)
                          0x00, 0x03,                   // api version 3
                          0x00, 0x00, 0x00, 0x07,       // correlation id
                          0x00, 0x03, 'a',  'b',  'c',  // client id: int16 length, not compact
                          0x00};                        // no tagged fields
  RequestHeader h;
  h.request_api_key = 18;
  h.request_api_version = 3;
  h.correlation_id = 7;
  h.client_id = "abc";
  EXPECT_EQ(encode(h, 2), expected);
  EXPECT_EQ(decode<RequestHeader>(expected, 2), h);

  Bytes frame = expected;
  frame.push_back(0x42);
  auto p = parse_request_header(frame, 1 << 20);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->header_version, 2);
  EXPECT_EQ(p->header, h);
  EXPECT_EQ(p->body.size(), 1u);
  EXPECT_STREQ(p->api->name, "ApiVersions");
}

TEST(Wire, RequestHeaderV0HasNoClientId) {
  // ControlledShutdown v0 uses request header v0.
  const Bytes frame = {0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01};
  auto p = parse_request_header(frame, 1 << 20);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->header_version, 0);
  EXPECT_EQ(p->header.correlation_id, 9);
  EXPECT_EQ(p->header.client_id, std::nullopt);
  EXPECT_EQ(p->body.size(), 4u);
}

TEST(Wire, HeaderVersions) {
  const ApiInfo* av = find_api(kApiKeyApiVersions);
  ASSERT_NE(av, nullptr);
  EXPECT_EQ(response_header_version(*av, 3), 0);
  EXPECT_EQ(request_header_version(*av, 3), 2);
  EXPECT_EQ(request_header_version(*av, 2), 1);
  const ApiInfo* produce = find_api(kApiKeyProduce);
  EXPECT_EQ(response_header_version(*produce, 9), 1);
  EXPECT_EQ(response_header_version(*produce, 8), 0);
  EXPECT_EQ(find_api(-5), nullptr);
  EXPECT_FALSE(parse_request_header(Bytes{0x7f, 0x00, 0, 0, 0, 0, 0, 0}, 100).has_value());
}

TEST(Wire, ApiVersionsRequestV3) {
  const Bytes expected = {0x05, 'o', 'r', 'd', 'o',  // compact string: length + 1
                          0x04, '1', '.', '0',       //
                          0x00};                     // no tagged fields
  ApiVersionsRequest m;
  m.client_software_name = "ordo";
  m.client_software_version = "1.0";
  EXPECT_EQ(encode(m, 3), expected);
  EXPECT_EQ(decode<ApiVersionsRequest>(expected, 3), m);
  EXPECT_TRUE(encode(m, 2).empty());  // v0-2 have no fields: ignorable fields are dropped
}

TEST(Wire, MetadataRequestV0) {
  const Bytes expected = {0x00, 0x00, 0x00, 0x02,  // 2 topics
                          0x00, 0x01, 'a',         //
                          0x00, 0x02, 'b',  'c'};
  MetadataRequest m;
  m.topics.emplace();
  m.topics->push_back({.name = "a"});
  m.topics->push_back({.name = "bc"});
  EXPECT_EQ(encode(m, 0), expected);
  EXPECT_EQ(decode<MetadataRequest>(expected, 0), m);
}

TEST(Wire, MetadataRequestV12) {
  Bytes expected = {0x02};                    // compact array, 1 topic
  expected.insert(expected.end(), 16, 0x00);  // topic id (zero uuid)
  Bytes rest = {0x02, 't',                    // name
                0x00,                         // topic: no tagged fields
                0x01,                         // allow_auto_topic_creation
                0x00,                         // include_topic_authorized_operations
                0x00};                        // no tagged fields
  expected.insert(expected.end(), rest.begin(), rest.end());
  MetadataRequest m;
  m.topics.emplace();
  m.topics->push_back({.name = "t"});
  EXPECT_TRUE(m.allow_auto_topic_creation);  // schema default
  EXPECT_EQ(encode(m, 12), expected);
  EXPECT_EQ(decode<MetadataRequest>(expected, 12), m);

  // Null topics (all topics) is a compact length of 0.
  MetadataRequest all;
  all.topics.reset();
  EXPECT_EQ(encode(all, 12), (Bytes{0x00, 0x01, 0x00, 0x00}));
}

Bytes empty_batch() {
  Bytes b(61, 0);
  b[11] = 49;  // batchLength: 61 - 12
  b[16] = 2;   // magic
  return b;
}

TEST(Wire, ProduceRequestV3WithRecordBatch) {
  const Bytes batch = empty_batch();
  Bytes expected = {0xff, 0xff,              // transactional id: null
                    0xff, 0xff,              // acks -1
                    0x00, 0x00, 0x03, 0xe8,  // timeout 1000
                    0x00, 0x00, 0x00, 0x01,  // 1 topic
                    0x00, 0x01, 't',         //
                    0x00, 0x00, 0x00, 0x01,  // 1 partition
                    0x00, 0x00, 0x00, 0x05,  // index 5
                    0x00, 0x00, 0x00, 61};   // records: int32 length
  expected.insert(expected.end(), batch.begin(), batch.end());

  ProduceRequest m;
  m.acks = -1;
  m.timeout_ms = 1000;
  m.topic_data.push_back({.name = "t"});
  m.topic_data[0].partition_data.push_back({.index = 5, .records = Records::owned(batch)});
  EXPECT_EQ(encode(m, 3), expected);

  auto back = decode<ProduceRequest>(expected, 3);
  EXPECT_EQ(back, m);
  // Zero copy: the records view points into the request buffer.
  auto view = back.topic_data[0].partition_data[0].records->bytes();
  EXPECT_EQ(view.data(), expected.data() + 27);
  EXPECT_TRUE(model::RecordBatchView::parse(view).has_value());
}

TEST(Wire, ErrorsNameTheFieldPath) {
  Bytes b = {
      0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
      't',  0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x10, 0x00};  // records
                                                                                      // claims 4096
                                                                                      // bytes
  ProduceRequest m;
  auto r = decode_message(b, 3, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  EXPECT_NE(r.error().message.find("topic_data[0].partition_data[0].records"), std::string::npos)
      << r.error().message;
}

TEST(Wire, HugeArrayLengthDoesNotAllocate) {
  // 2^31 - 1 topics in four bytes: rejected before anything is reserved.
  MetadataRequest m;
  auto r = decode_message(Bytes{0x7f, 0xff, 0xff, 0xff}, 1, m);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("topics"), std::string::npos);
  // The caller's bound applies even when the bytes are there.
  Bytes s = {0x00, 0x00, 0x00, 0x01, 0x00, 0x05, 'a', 'b', 'c', 'd', 'e'};
  EXPECT_TRUE(decode_message(s, 0, m, 100).has_value());
  EXPECT_FALSE(decode_message(s, 0, m, 4).has_value());
}

TEST(Wire, UnknownTaggedFieldsRoundTrip) {
  const Bytes b = {0x05, 'o',  'r',  'd', 'o', 0x04, '1', '.', '0',
                   0x02,              // two tagged fields
                   0x03, 0x01, 0xaa,  // tag 3, 1 byte
                   0x09, 0x00};       // tag 9, empty
  auto m = decode<ApiVersionsRequest>(b, 3);
  ASSERT_EQ(m.unknown_tagged_fields.size(), 2u);
  EXPECT_EQ(m.unknown_tagged_fields[0].tag, 3u);
  EXPECT_EQ(encode(m, 3), b);
}

TEST(Wire, WriterKeepsFileRangesAsChunks) {
  char path[] = "/tmp/ordo_proto_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  auto file = std::make_shared<File>(fd, path);
  const Bytes batch = empty_batch();
  Bytes content(10, 0xee);
  content.insert(content.end(), batch.begin(), batch.end());
  ASSERT_TRUE(file->pwrite_all(content, 0).has_value());

  ProduceRequest m;
  m.topic_data.push_back({.name = "t"});
  m.topic_data[0].partition_data.push_back(
      {.records = Records::file({.file = file, .position = 10, .size = 61})});
  Writer w;
  m.encode(w, 3);
  EXPECT_EQ(w.size(), m.encoded_size(3));
  auto chunks = w.finish();
  ASSERT_EQ(chunks.size(), 2u);  // memory, then the file range (nothing after it)
  EXPECT_TRUE(std::holds_alternative<FileRange>(chunks[1]));
  auto flat = flatten(chunks).value();
  auto back = decode<ProduceRequest>(flat, 3);
  EXPECT_EQ(back.topic_data[0].partition_data[0].records->size(), 61u);
  EXPECT_TRUE(std::equal(batch.begin(), batch.end(),
                         back.topic_data[0].partition_data[0].records->bytes().begin()));
  unlink(path);
}

}  // namespace
}  // namespace ordo::protocol
