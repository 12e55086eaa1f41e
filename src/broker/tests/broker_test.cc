// The broker's request handling, in process: requests are encoded with the generated codec,
// handled by Broker::handle on a local io_context, and the responses decoded again.

#include "broker/broker.h"

#include <sys/resource.h>

#include <filesystem>
#include <future>
#include <set>

#include <gtest/gtest.h>

#include <asio/co_spawn.hpp>
#include <asio/steady_timer.hpp>

#include "base/clock.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "broker/legacy.h"
#include "compression/compression.h"
#include "compression/records.h"
#include "model/record_batch.h"
#include "protocol/errors.h"
#include "protocol/header.h"
#include "protocol/messages/api_versions_request.h"
#include "protocol/messages/api_versions_response.h"
#include "protocol/messages/create_partitions_request.h"
#include "protocol/messages/create_partitions_response.h"
#include "protocol/messages/create_topics_request.h"
#include "protocol/messages/create_topics_response.h"
#include "protocol/messages/delete_groups_request.h"
#include "protocol/messages/delete_groups_response.h"
#include "protocol/messages/delete_records_request.h"
#include "protocol/messages/delete_records_response.h"
#include "protocol/messages/delete_topics_request.h"
#include "protocol/messages/delete_topics_response.h"
#include "protocol/messages/describe_acls_request.h"
#include "protocol/messages/describe_acls_response.h"
#include "protocol/messages/describe_configs_request.h"
#include "protocol/messages/describe_configs_response.h"
#include "protocol/messages/describe_groups_request.h"
#include "protocol/messages/describe_groups_response.h"
#include "protocol/messages/elect_leaders_request.h"
#include "protocol/messages/elect_leaders_response.h"
#include "protocol/messages/fetch_request.h"
#include "protocol/messages/fetch_response.h"
#include "protocol/messages/find_coordinator_request.h"
#include "protocol/messages/find_coordinator_response.h"
#include "protocol/messages/heartbeat_request.h"
#include "protocol/messages/heartbeat_response.h"
#include "protocol/messages/incremental_alter_configs_request.h"
#include "protocol/messages/incremental_alter_configs_response.h"
#include "protocol/messages/init_producer_id_request.h"
#include "protocol/messages/init_producer_id_response.h"
#include "protocol/messages/join_group_request.h"
#include "protocol/messages/join_group_response.h"
#include "protocol/messages/leave_group_request.h"
#include "protocol/messages/leave_group_response.h"
#include "protocol/messages/list_groups_request.h"
#include "protocol/messages/list_groups_response.h"
#include "protocol/messages/list_offsets_request.h"
#include "protocol/messages/list_offsets_response.h"
#include "protocol/messages/metadata_request.h"
#include "protocol/messages/metadata_response.h"
#include "protocol/messages/offset_commit_request.h"
#include "protocol/messages/offset_commit_response.h"
#include "protocol/messages/offset_delete_request.h"
#include "protocol/messages/offset_delete_response.h"
#include "protocol/messages/offset_fetch_request.h"
#include "protocol/messages/offset_fetch_response.h"
#include "protocol/messages/offset_for_leader_epoch_request.h"
#include "protocol/messages/offset_for_leader_epoch_response.h"
#include "protocol/messages/produce_request.h"
#include "protocol/messages/produce_response.h"
#include "protocol/messages/sync_group_request.h"
#include "protocol/messages/sync_group_response.h"
#include "protocol/messages/txn_offset_commit_request.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using protocol::ErrorCode;
using storage::testing::TempDir;

int16_t ec(ErrorCode e) {
  return protocol::code(e);
}

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open(bool auto_create = true, int32_t fetch_max_wait_ms = 30000) {
    BrokerConfig c;
    c.fetch_max_wait_ms = fetch_max_wait_ms;
    c.data_dir = tmp.path() + "/data";
    c.listen_port = 9092;
    c.auto_create_topics = auto_create;
    c.log.flush_mode = storage::FlushMode::none;
    c.offsets_topic_num_partitions = 3;
    c.max_partitions = max_partitions;
    c.group_initial_rebalance_delay_ms = 0;
    c.group_min_session_timeout_ms = 100;
    auto b = Broker::open(c);
    ASSERT_TRUE(b) << b.error().to_string();
    broker = std::move(*b);
    conn.produce_wakeup = std::make_unique<Wakeup>(io.get_executor());
  }

  void reopen(bool auto_create = true, int32_t fetch_max_wait_ms = 30000) {
    ASSERT_TRUE(broker->close());
    broker.reset();
    open(auto_create, fetch_max_wait_ms);
  }

  // Sends raw request bytes (header + body, no size prefix).
  HandlerOutcome raw(std::vector<uint8_t> frame) {
    std::optional<HandlerOutcome> out;
    asio::co_spawn(io, broker->handle(std::move(frame), conn),
                   [&](std::exception_ptr e, HandlerOutcome o) {
                     if (e) std::rethrow_exception(e);
                     out = std::move(o);
                   });
    io.run();
    io.restart();
    EXPECT_TRUE(out.has_value());
    return out ? std::move(*out) : HandlerOutcome{};
  }

  template <typename Req>
  std::vector<uint8_t> encode(const Req& req, int16_t version) {
    protocol::RequestHeader h;
    h.request_api_key = Req::kApiKey;
    h.request_api_version = version;
    h.correlation_id = ++correlation;
    h.client_id = "test";
    protocol::Writer w;
    protocol::encode_request(w, h, req);
    return protocol::flatten(w.finish()).value();
  }

  template <typename Resp>
  Resp decode(const HandlerOutcome& o, int16_t version) {
    EXPECT_FALSE(o.close) << (o.close ? o.close->to_string() : "");
    EXPECT_TRUE(o.response);
    if (!o.response) return Resp{};
    auto bytes = protocol::flatten(o.response->chunks).value();
    EXPECT_EQ(bytes.size(), o.response->size);
    EXPECT_EQ(load_be32(bytes.data()), bytes.size() - 4);
    protocol::Reader r(std::span<const uint8_t>(bytes).subspan(4));
    protocol::ResponseHeader h;
    const auto* api = protocol::find_api(Resp::kApiKey);
    EXPECT_TRUE(h.decode(r, protocol::response_header_version(*api, version)));
    EXPECT_EQ(h.correlation_id, correlation);
    Resp resp;
    auto d = resp.decode(r, version);
    EXPECT_TRUE(d) << d.error().to_string();
    EXPECT_EQ(r.remaining(), 0u);
    // A decoded Records is a view into `bytes`: keep them alive with the test.
    kept.push_back(std::move(bytes));
    return resp;
  }

  template <typename Resp, typename Req>
  Resp call(const Req& req, int16_t version) {
    return decode<Resp>(raw(encode(req, version)), version);
  }

  protocol::CreateTopicsResponse create(const std::string& name, int32_t partitions,
                                        std::map<std::string, std::string> configs = {},
                                        bool validate_only = false) {
    protocol::CreateTopicsRequest req;
    protocol::CreateTopicsRequest::CreatableTopic t;
    t.name = name;
    t.num_partitions = partitions;
    t.replication_factor = 1;
    for (auto& [k, v] : configs) t.configs.push_back({k, v, {}});
    req.topics.push_back(t);
    req.validate_only = validate_only;
    return call<protocol::CreateTopicsResponse>(req, 7);
  }

  protocol::ProduceRequest produce_req(const std::string& topic, int32_t partition,
                                       std::vector<uint8_t> batch, int16_t acks = -1) {
    protocol::ProduceRequest req;
    req.acks = acks;
    req.timeout_ms = 1000;
    protocol::ProduceRequest::TopicProduceData t;
    t.name = topic;
    t.partition_data.push_back({partition, protocol::Records::owned(std::move(batch)), {}});
    req.topic_data.push_back(t);
    return req;
  }

  protocol::ProduceResponse::PartitionProduceResponse produce(const std::string& topic,
                                                              int32_t partition,
                                                              std::vector<uint8_t> batch,
                                                              int16_t version = 9) {
    auto resp =
        call<protocol::ProduceResponse>(produce_req(topic, partition, std::move(batch)), version);
    EXPECT_EQ(resp.responses.size(), 1u);
    EXPECT_EQ(resp.responses[0].partition_responses.size(), 1u);
    return resp.responses[0].partition_responses.at(0);
  }

  protocol::FetchRequest fetch_req(const std::string& topic, int32_t partition, int64_t offset,
                                   int32_t max_wait_ms = 0, int32_t min_bytes = 0) {
    protocol::FetchRequest req;
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = min_bytes;
    req.max_bytes = 1 << 20;
    req.session_epoch = -1;
    protocol::FetchRequest::FetchTopic t;
    t.topic = topic;
    protocol::FetchRequest::FetchPartition p;
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    t.partitions.push_back(p);
    req.topics.push_back(t);
    return req;
  }

  protocol::FetchResponse::PartitionData fetch(const std::string& topic, int32_t partition,
                                               int64_t offset) {
    auto resp = call<protocol::FetchResponse>(fetch_req(topic, partition, offset), 12);
    EXPECT_EQ(resp.error_code, 0);
    return resp.responses.at(0).partitions.at(0);
  }

  int64_t list_offset(const std::string& topic, int32_t partition, int64_t ts,
                      int64_t* timestamp = nullptr) {
    protocol::ListOffsetsRequest req;
    req.replica_id = -1;
    protocol::ListOffsetsRequest::ListOffsetsTopic t;
    t.name = topic;
    protocol::ListOffsetsRequest::ListOffsetsPartition p;
    p.partition_index = partition;
    p.timestamp = ts;
    t.partitions.push_back(p);
    req.topics.push_back(t);
    auto resp = call<protocol::ListOffsetsResponse>(req, 7);
    const auto& out = resp.topics.at(0).partitions.at(0);
    EXPECT_EQ(out.error_code, 0);
    if (timestamp) *timestamp = out.timestamp;
    return out.offset;
  }

  std::vector<std::string> values(const protocol::FetchResponse::PartitionData& p) {
    if (!p.records) return {};
    auto b = p.records->bytes();
    return storage::testing::values_of(std::vector<uint8_t>(b.begin(), b.end()));
  }

  // Partition numbers of `topic` with a directory on disk, and among the open logs.
  std::set<int32_t> dirs_of(const std::string& topic) {
    std::set<int32_t> out;
    for (const auto& e : std::filesystem::directory_iterator(tmp.path() + "/data")) {
      auto tp = model::parse_partition_dir(e.path().filename().string());
      if (tp && tp->topic == topic) out.insert(tp->partition);
    }
    return out;
  }
  std::set<int32_t> open_logs_of(const std::string& topic) {
    std::set<int32_t> out;
    for (const auto& p : broker->logs().status()) {
      if (p.tp.topic == topic) out.insert(p.tp.partition);
    }
    return out;
  }

  protocol::CreatePartitionsResponse::CreatePartitionsTopicResult add_partitions(
      const std::string& topic, int32_t count) {
    protocol::CreatePartitionsRequest cp;
    cp.topics.push_back({topic, count, std::nullopt, {}});
    return call<protocol::CreatePartitionsResponse>(cp, 3).results.at(0);
  }

  int32_t max_partitions = 0;
  TempDir tmp;
  asio::io_context io;
  ConnectionState conn;
  std::unique_ptr<Broker> broker;
  int32_t correlation = 0;
  std::vector<std::vector<uint8_t>> kept;
};

TEST_F(BrokerTest, ApiVersionsAdvertisesTheSupportedRanges) {
  auto resp = call<protocol::ApiVersionsResponse>(protocol::ApiVersionsRequest{}, 3);
  EXPECT_EQ(resp.error_code, 0);
  std::map<int16_t, std::pair<int16_t, int16_t>> got;
  for (const auto& a : resp.api_keys) got[a.api_key] = {a.min_version, a.max_version};
  std::map<int16_t, std::pair<int16_t, int16_t>> want = {
      {0, {0, 9}},  {1, {4, 12}}, {2, {0, 7}},  {3, {0, 12}}, {8, {0, 8}},  {9, {0, 8}},
      {10, {0, 4}}, {11, {0, 9}}, {12, {0, 4}}, {13, {0, 5}}, {14, {0, 5}}, {15, {0, 5}},
      {16, {0, 4}}, {18, {0, 3}}, {19, {0, 7}}, {20, {0, 6}}, {21, {0, 2}}, {22, {0, 4}},
      {23, {0, 4}}, {32, {0, 4}}, {33, {0, 2}}, {35, {0, 4}}, {37, {0, 3}}, {42, {0, 2}},
      {43, {0, 2}}, {44, {0, 1}}, {47, {0, 0}}, {60, {0, 0}}};
  EXPECT_EQ(got, want);
}

TEST_F(BrokerTest, ApiVersionsAboveTheRangeGetsAVersionZeroErrorWithTheRanges) {
  // v4 exists in the schema (flexible header) but is not advertised.
  auto out = raw(encode(protocol::ApiVersionsRequest{}, 4));
  auto resp = decode<protocol::ApiVersionsResponse>(out, 0);
  EXPECT_EQ(resp.error_code, ec(ErrorCode::unsupported_version));
  EXPECT_EQ(resp.api_keys.size(), 28u);
}

TEST_F(BrokerTest, UnsupportedVersionOrUnknownKeyClosesTheConnection) {
  auto fetch_v3 = raw(encode(fetch_req("t", 0, 0), 3));
  ASSERT_TRUE(fetch_v3.close);
  EXPECT_NE(fetch_v3.close->message.find("Fetch"), std::string::npos);
  std::vector<uint8_t> unknown = {0x7f, 0x00, 0x00, 0x00, 0, 0, 0, 1, 0xff, 0xff};
  EXPECT_TRUE(raw(unknown).close);
  std::vector<uint8_t> truncated = {0x00, 0x03};
  EXPECT_TRUE(raw(truncated).close);
}

TEST_F(BrokerTest, AnApiNotOfferedIsAnsweredWithUnsupportedVersionWhereItsResponseCanSayIt) {
  // DescribeAcls has a top-level error code: answered, the connection stays.
  protocol::DescribeAclsRequest acls;
  auto resp = call<protocol::DescribeAclsResponse>(acls, 1);
  EXPECT_EQ(resp.error_code, ec(ErrorCode::unsupported_version));
  // TxnOffsetCommit has its error codes only per partition: closed instead.
  protocol::TxnOffsetCommitRequest txn;
  txn.transactional_id = "t";
  txn.group_id = "g";
  EXPECT_TRUE(raw(encode(txn, 0)).close);
}

TEST_F(BrokerTest, MetadataAutoCreatesValidNamesOnly) {
  protocol::MetadataRequest req;
  req.topics.emplace();
  req.topics->push_back({{}, "orders", {}});
  req.topics->push_back({{}, "bad/name", {}});
  auto resp = call<protocol::MetadataResponse>(req, 12);
  ASSERT_EQ(resp.topics.size(), 2u);
  EXPECT_EQ(resp.topics[0].error_code, 0);
  EXPECT_EQ(resp.topics[0].partitions.size(), 1u);
  EXPECT_NE(resp.topics[0].topic_id, protocol::Uuid{});
  EXPECT_EQ(resp.topics[1].error_code, ec(ErrorCode::invalid_topic_exception));
  ASSERT_EQ(resp.brokers.size(), 1u);
  EXPECT_EQ(resp.brokers[0].port, 9092);
  EXPECT_EQ(resp.cluster_id, "ordo-cluster");

  // null = every topic, the internal __consumer_offsets included (marked internal)
  protocol::MetadataRequest all;
  auto every = call<protocol::MetadataResponse>(all, 12);
  ASSERT_EQ(every.topics.size(), 2u);
  EXPECT_EQ(every.topics[0].name, "__consumer_offsets");
  EXPECT_TRUE(every.topics[0].is_internal);
  EXPECT_EQ(every.topics[0].partitions.size(), 3u);
  EXPECT_EQ(every.topics[1].name, "orders");
  EXPECT_FALSE(every.topics[1].is_internal);
  // v0: an empty list is every topic too
  protocol::MetadataRequest v0;
  v0.topics.emplace();
  EXPECT_EQ(call<protocol::MetadataResponse>(v0, 0).topics.size(), 2u);
}

TEST_F(BrokerTest, MetadataWithoutAutoCreateReportsUnknownTopics) {
  reopen(/*auto_create=*/false);
  protocol::MetadataRequest req;
  req.topics.emplace();
  req.topics->push_back({{}, "nope", {}});
  auto resp = call<protocol::MetadataResponse>(req, 12);
  EXPECT_EQ(resp.topics.at(0).error_code, ec(ErrorCode::unknown_topic_or_partition));
}

TEST_F(BrokerTest, ProduceThenFetchReturnsTheBatchesWithAssignedOffsets) {
  ASSERT_EQ(create("t", 2).topics.at(0).error_code, 0);
  auto first = produce("t", 1, storage::testing::make_batch(3, "a"));
  EXPECT_EQ(first.error_code, 0);
  EXPECT_EQ(first.base_offset, 0);
  auto second = produce("t", 1, storage::testing::make_batch(2, "b"));
  EXPECT_EQ(second.base_offset, 3);
  EXPECT_EQ(second.log_append_time_ms, -1);

  // The record bytes leave as a file range (sendfile), not through memory.
  auto raw_fetch = raw(encode(fetch_req("t", 1, 0), 12));
  ASSERT_TRUE(raw_fetch.response);
  size_t file_chunks = 0;
  for (const auto& c : raw_fetch.response->chunks) {
    file_chunks += std::holds_alternative<protocol::FileRange>(c);
  }
  EXPECT_EQ(file_chunks, 1u);

  auto p = fetch("t", 1, 0);
  EXPECT_EQ(p.error_code, 0);
  EXPECT_EQ(p.high_watermark, 5);
  EXPECT_EQ(p.log_start_offset, 0);
  ASSERT_TRUE(p.records);
  EXPECT_EQ(values(p), (std::vector<std::string>{"a-0", "a-1", "a-2", "b-0", "b-1"}));
  // From the middle of the second batch: the whole batch comes back.
  EXPECT_EQ(values(fetch("t", 1, 4)), (std::vector<std::string>{"b-0", "b-1"}));
  // At the end: empty, no error.
  auto end = fetch("t", 1, 5);
  EXPECT_EQ(end.error_code, 0);
  EXPECT_TRUE(values(end).empty());
  auto out_of_range = fetch("t", 1, 6);
  EXPECT_EQ(out_of_range.error_code, ec(ErrorCode::offset_out_of_range));
  // An empty record set, not a null one (librdkafka cannot parse size -1).
  ASSERT_TRUE(out_of_range.records);
  EXPECT_EQ(out_of_range.records->size(), 0u);
  EXPECT_EQ(fetch("t", 7, 0).error_code, ec(ErrorCode::unknown_topic_or_partition));
  EXPECT_EQ(fetch("t", 0, 0).high_watermark, 0);
}

TEST_F(BrokerTest, ProduceRejectsBadInputWithoutStoringIt) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  auto batch = storage::testing::make_batch(3, "x");
  auto bad_crc = batch;
  bad_crc.back() ^= 0x01;
  EXPECT_EQ(produce("t", 0, bad_crc).error_code, ec(ErrorCode::corrupt_message));
  auto short_batch = std::vector<uint8_t>(batch.begin(), batch.begin() + 30);
  EXPECT_EQ(produce("t", 0, short_batch).error_code, ec(ErrorCode::corrupt_message));
  EXPECT_EQ(produce("nope", 0, batch).error_code, ec(ErrorCode::unknown_topic_or_partition));
  EXPECT_EQ(produce("t", 1, batch).error_code, ec(ErrorCode::unknown_topic_or_partition));
  auto acks2 = call<protocol::ProduceResponse>(produce_req("t", 0, batch, 2), 9);
  EXPECT_EQ(acks2.responses.at(0).partition_responses.at(0).error_code,
            ec(ErrorCode::invalid_required_acks));
  EXPECT_EQ(fetch("t", 0, 0).high_watermark, 0);  // nothing stored
  // v3+ needs magic 2.
  auto legacy = batch;
  legacy[16] = 1;
  EXPECT_EQ(produce("t", 0, legacy, 3).error_code, ec(ErrorCode::unsupported_for_message_format));
}

TEST_F(BrokerTest, ProduceRefusesBatchesWhoseHeaderDisagreesWithTheirRecords) {
  using namespace model::batch_layout;
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  // Overwrites a big-endian header field and recomputes the CRC (the CRC is valid throughout).
  auto with_field = [](std::vector<uint8_t> b, size_t pos, uint64_t v, size_t width) {
    for (size_t i = 0; i < width; ++i) b[pos + i] = uint8_t(v >> (8 * (width - 1 - i)));
    store_be32(b.data() + kCrc, crc32c(0, b.data() + kCrcStart, b.size() - kCrcStart));
    return b;
  };
  auto refused = [&](const std::vector<uint8_t>& b, ErrorCode want) {
    auto r = produce("t", 0, b);
    EXPECT_EQ(r.error_code, ec(want)) << r.error_message.value_or("");
    EXPECT_EQ(r.base_offset, -1);
    EXPECT_EQ(fetch("t", 0, 0).high_watermark, 0);  // nothing stored, the end did not move
  };
  const auto two = storage::testing::make_batch(2, "x");
  // Two records claiming 1,001 offsets: the log end offset would jump by 1,001.
  refused(with_field(two, kLastOffsetDelta, 1000, 4), ErrorCode::invalid_record);
  refused(with_field(two, kLastOffsetDelta, 0x7fffffff, 4), ErrorCode::invalid_record);
  // Producer fields: an id with epoch -1; an id below -1. (No id with a sequence is taken,
  // as Kafka takes it: Sarama sends base sequence 0 without a producer id.)
  refused(with_field(with_field(two, kProducerId, 3, 8), kBaseSequence, 0, 4),
          ErrorCode::invalid_record);
  refused(with_field(two, kProducerId, uint64_t(-2), 8), ErrorCode::invalid_record);
  // Attribute bits a client may not set.
  refused(with_field(two, kAttributes, model::batch_attr::kDeleteHorizon, 2),
          ErrorCode::invalid_record);
  refused(with_field(two, kAttributes, model::batch_attr::kControl, 2), ErrorCode::invalid_record);

  // Offset deltas 0 and 2 under a consistent header (count 2, lastOffsetDelta 1), plain and
  // gzip-compressed (checked after decompression).
  auto gap = two;
  const size_t first_len = gap[kHeaderSize] / 2;  // zigzag varint, one byte
  const size_t delta_pos = kHeaderSize + 1 + first_len + 3;
  ASSERT_EQ(gap[delta_pos], 2);  // offset delta 1
  gap[delta_pos] = 4;            // offset delta 2
  gap = with_field(gap, kRecordCount, 2, 4);
  refused(gap, ErrorCode::corrupt_message);
  auto gzipped =
      compression::recode_batch(model::RecordBatchView::parse(gap).value(), 1 /* gzip */).value();
  refused(gzipped, ErrorCode::corrupt_message);

  // The honest batch goes in at offset 0 and moves the end by 2.
  auto ok = produce("t", 0, two);
  EXPECT_EQ(ok.error_code, 0);
  EXPECT_EQ(ok.base_offset, 0);
  EXPECT_EQ(fetch("t", 0, 0).high_watermark, 2);
}

TEST_F(BrokerTest, ProduceEnforcesMaxMessageBytes) {
  ASSERT_EQ(create("small", 1, {{"max.message.bytes", "200"}}).topics.at(0).error_code, 0);
  EXPECT_EQ(produce("small", 0, storage::testing::make_batch(1, "ok")).error_code, 0);
  auto big = storage::testing::make_batch(3, "big", 1000, 100);
  EXPECT_EQ(produce("small", 0, big).error_code, ec(ErrorCode::message_too_large));
}

TEST_F(BrokerTest, AcksZeroGetsNoResponseButIsStored) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  auto out = raw(encode(produce_req("t", 0, storage::testing::make_batch(2, "z"), 0), 9));
  EXPECT_FALSE(out.close);
  EXPECT_FALSE(out.response);
  EXPECT_EQ(values(fetch("t", 0, 0)), (std::vector<std::string>{"z-0", "z-1"}));
}

TEST_F(BrokerTest, LogAppendTimeTopicsStampTheBrokerTime) {
  ASSERT_EQ(create("lat", 1, {{"message.timestamp.type", "LogAppendTime"}}).topics.at(0).error_code,
            0);
  auto r = produce("lat", 0, storage::testing::make_batch(2, "v", 5));
  EXPECT_EQ(r.error_code, 0);
  EXPECT_GT(r.log_append_time_ms, 1'600'000'000'000);
  auto p = fetch("lat", 0, 0);
  ASSERT_TRUE(p.records);
  auto view = model::RecordBatchView::parse(p.records->bytes()).value();
  EXPECT_EQ(view.timestamp_type(), model::TimestampType::log_append_time);
  EXPECT_EQ(view.max_timestamp(), r.log_append_time_ms);
  EXPECT_TRUE(view.verify_crc());
}

TEST_F(BrokerTest, LegacyMessageSetsAreUpConverted) {
  ASSERT_EQ(create("old", 1).topics.at(0).error_code, 0);
  // Two magic-1 messages: offset, size, crc, magic, attributes, timestamp, key, value.
  auto message = [](int64_t ts, std::string key, std::string value) {
    std::vector<uint8_t> m(4 + 1 + 1 + 8);
    m[4] = 1;
    store_be64(&m[6], uint64_t(ts));
    auto put = [&](const std::string& s) {
      uint8_t len[4];
      store_be32(len, uint32_t(s.size()));
      m.insert(m.end(), len, len + 4);
      m.insert(m.end(), s.begin(), s.end());
    };
    put(key);
    put(value);
    return m;
  };
  std::vector<uint8_t> set;
  for (int i = 0; i < 2; ++i) {
    auto m = message(1000 + i, "k", "old-" + std::to_string(i));
    store_be32(m.data(), compression::crc32_ieee(std::span<const uint8_t>(m).subspan(4)));
    std::vector<uint8_t> head(12);
    store_be32(&head[8], uint32_t(m.size()));
    set.insert(set.end(), head.begin(), head.end());
    set.insert(set.end(), m.begin(), m.end());
  }
  auto r = produce("old", 0, set, 2);
  EXPECT_EQ(r.error_code, 0);
  EXPECT_EQ(values(fetch("old", 0, 0)), (std::vector<std::string>{"old-0", "old-1"}));
  // The same two messages inside a gzip wrapper message (attributes 1, value = the set).
  auto packed = compression::compress(compression::Codec::gzip, set).value();
  auto wrapper = message(1001, "", std::string(packed.begin(), packed.end()));
  wrapper[5] = 1;  // gzip
  store_be32(wrapper.data(), compression::crc32_ieee(std::span<const uint8_t>(wrapper).subspan(4)));
  std::vector<uint8_t> wrapped(12);
  store_be32(&wrapped[8], uint32_t(wrapper.size()));
  wrapped.insert(wrapped.end(), wrapper.begin(), wrapper.end());
  auto z = produce("old", 0, wrapped, 2);
  EXPECT_EQ(z.error_code, 0);
  EXPECT_EQ(z.base_offset, 2);
  EXPECT_EQ(values(fetch("old", 0, 2)), (std::vector<std::string>{"old-0", "old-1"}));
  set[20] ^= 0xff;  // breaks the first message's CRC
  EXPECT_EQ(produce("old", 0, set, 2).error_code, ec(ErrorCode::corrupt_message));
}

TEST_F(BrokerTest, ListOffsetsEarliestLatestTimestampAndMaxTimestamp) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  produce("t", 0, storage::testing::make_batch(3, "a", 1000));  // ts 1000..1002
  produce("t", 0, storage::testing::make_batch(3, "b", 5000));  // ts 5000..5002
  EXPECT_EQ(list_offset("t", 0, -2), 0);
  EXPECT_EQ(list_offset("t", 0, -1), 6);
  int64_t ts = 0;
  EXPECT_EQ(list_offset("t", 0, 1001, &ts), 1);
  EXPECT_EQ(ts, 1001);
  EXPECT_EQ(list_offset("t", 0, 2000, &ts), 3);
  EXPECT_EQ(ts, 5000);
  EXPECT_EQ(list_offset("t", 0, 9000, &ts), -1);
  EXPECT_EQ(list_offset("t", 0, -3, &ts), 5);
  EXPECT_EQ(ts, 5002);
}

TEST_F(BrokerTest, TheHeaderMaxTimestampIsRecomputedFromTheRecords) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  // Some clients (Sarama) send maxTimestamp -1: the broker takes it from the records.
  auto batch = storage::testing::make_batch(3, "m", 7000);  // 7000..7002
  model::set_max_timestamp(batch, -1);
  EXPECT_EQ(produce("t", 0, batch).error_code, 0);
  auto p = fetch("t", 0, 0);
  ASSERT_TRUE(p.records);
  auto view = model::RecordBatchView::parse(p.records->bytes()).value();
  EXPECT_EQ(view.max_timestamp(), 7002);
  EXPECT_TRUE(view.verify_crc());
  int64_t ts = 0;
  EXPECT_EQ(list_offset("t", 0, 7001, &ts), 1);
  EXPECT_EQ(ts, 7001);
  // A record section that does not parse is refused even with a correct CRC.
  auto bad = storage::testing::make_batch(2, "bad");
  bad[model::batch_layout::kHeaderSize] = 0x7f;  // first record's length varint
  model::set_max_timestamp(bad, 0);              // recomputes the CRC over the damage
  EXPECT_EQ(produce("t", 0, bad).error_code, ec(ErrorCode::corrupt_message));
}

TEST_F(BrokerTest, CompressedBatchesAreCheckedAndStoredAsSent) {
  ASSERT_EQ(create("z", 1).topics.at(0).error_code, 0);
  for (uint8_t codec = 1; codec <= 4; ++codec) {
    auto plain = storage::testing::make_batch(4, "c" + std::to_string(codec), 9000 + codec * 10);
    auto packed =
        compression::recode_batch(model::RecordBatchView::parse(plain).value(), codec).value();
    model::set_max_timestamp(packed, -1);  // as Sarama sends it
    auto r = produce("z", 0, packed);
    ASSERT_EQ(r.error_code, 0) << int(codec);
    auto p = fetch("z", 0, r.base_offset);
    auto view = model::RecordBatchView::parse(p.records->bytes()).value();
    EXPECT_EQ(int(view.compression()), codec);
    EXPECT_EQ(view.max_timestamp(), 9000 + codec * 10 + 3);  // from the decompressed records
    EXPECT_TRUE(view.verify_crc());
    // The exact record inside the compressed batch answers a time lookup.
    int64_t ts = 0;
    EXPECT_EQ(list_offset("z", 0, 9000 + codec * 10 + 2, &ts), r.base_offset + 2);
    EXPECT_EQ(ts, 9000 + codec * 10 + 2);
  }
  // A compressed batch whose payload does not decompress is refused.
  auto plain = storage::testing::make_batch(2, "bad");
  auto packed = compression::recode_batch(model::RecordBatchView::parse(plain).value(), 1).value();
  packed[model::batch_layout::kHeaderSize + 12] ^= 0xff;
  model::set_max_timestamp(packed, 0);  // valid CRC over the damaged payload
  EXPECT_EQ(produce("z", 0, packed).error_code, ec(ErrorCode::corrupt_message));
  packed[model::batch_layout::kAttributes + 1] |= 0x07;  // codec 7 does not exist
  model::set_max_timestamp(packed, 0);
  EXPECT_EQ(produce("z", 0, packed).error_code, ec(ErrorCode::unsupported_compression_type));
}

TEST_F(BrokerTest, FetchKeepsTheResponseWithinMaxBytesButAlwaysReturnsAFirstBatch) {
  ASSERT_EQ(create("big", 3).topics.at(0).error_code, 0);
  // Partitions 0 and 2: three batches of ~10 KB each; partition 1: ten of ~1 KB.
  for (int32_t p : {0, 2}) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_EQ(produce("big", p, storage::testing::make_batch(1, "b", 1000, 10000)).error_code, 0);
    }
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(produce("big", 1, storage::testing::make_batch(1, "s", 1000, 1000)).error_code, 0);
  }
  const int64_t big_batch = int64_t(storage::testing::make_batch(1, "b", 1000, 10000).size());
  const int64_t small_batch = int64_t(storage::testing::make_batch(1, "s", 1000, 1000).size());
  // A fetch of all three partitions from offset 0, each partition allowed far more than the
  // response (as librdkafka's max.partition.fetch.bytes > fetch.max.bytes).
  auto fetch_all = [&](int32_t max_bytes) {
    protocol::FetchRequest req = fetch_req("big", 0, 0);
    req.max_bytes = max_bytes;
    for (int32_t p : {1, 2}) {
      auto part = req.topics[0].partitions[0];
      part.partition = p;
      req.topics[0].partitions.push_back(part);
    }
    for (auto& part : req.topics[0].partitions) part.partition_max_bytes = 20'000'000;
    auto resp = call<protocol::FetchResponse>(req, 12);
    EXPECT_EQ(resp.error_code, 0);
    std::vector<int64_t> sizes;
    for (const auto& part : resp.responses.at(0).partitions) {
      EXPECT_EQ(part.error_code, 0);
      sizes.push_back(part.records ? int64_t(part.records->size()) : 0);
    }
    return sizes;
  };
  // 25,000 bytes: two big batches of partition 0, then as many small ones of partition 1 as
  // fit in the rest (partition 1 alone would have returned all ten), none of partition 2.
  const int64_t rest = 25'000 - 2 * big_batch;
  ASSERT_GT(rest, small_batch);
  EXPECT_EQ(fetch_all(25'000),
            (std::vector<int64_t>{2 * big_batch, rest / small_batch * small_batch, 0}));
  // Smaller than one batch: the first batch of the first partition with data comes whole, so
  // that the consumer progresses; nothing else.
  EXPECT_EQ(fetch_all(5'000), (std::vector<int64_t>{big_batch, 0, 0}));
  // Enough for everything: everything.
  EXPECT_EQ(fetch_all(1 << 20),
            (std::vector<int64_t>{3 * big_batch, 10 * small_batch, 3 * big_batch}));
}

TEST_F(BrokerTest, FetchLongPollReturnsWhenDataArrives) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  std::optional<HandlerOutcome> fetched;
  // A fetch that waits up to 60 s for one byte, then a produce: the fetch must return the
  // produced batch (long before its timeout, or the test times out).
  asio::co_spawn(io, broker->handle(encode(fetch_req("t", 0, 0, 60000, 1), 12), conn),
                 [&](std::exception_ptr, HandlerOutcome o) { fetched = std::move(o); });
  int32_t fetch_correlation = correlation;
  std::optional<HandlerOutcome> produced;
  asio::co_spawn(
      io,
      broker->handle(encode(produce_req("t", 0, storage::testing::make_batch(1, "w")), 9), conn),
      [&](std::exception_ptr, HandlerOutcome o) { produced = std::move(o); });
  io.run();
  io.restart();
  ASSERT_TRUE(produced && fetched);
  correlation = fetch_correlation;
  auto resp = decode<protocol::FetchResponse>(*fetched, 12);
  EXPECT_EQ(values(resp.responses.at(0).partitions.at(0)), (std::vector<std::string>{"w-0"}));
}

TEST_F(BrokerTest, FetchMaxWaitIsCappedByTheBrokerSetting) {
  reopen(true, 20);
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  // Asks to wait ~24 days for one byte that never comes: the 20 ms cap answers it (without
  // the cap the test would hang until ctest's timeout).
  auto resp = call<protocol::FetchResponse>(
      fetch_req("t", 0, 0, std::numeric_limits<int32_t>::max(), 1), 12);
  EXPECT_EQ(resp.error_code, 0);
  EXPECT_TRUE(values(resp.responses.at(0).partitions.at(0)).empty());
}

TEST_F(BrokerTest, AcksZeroErrorsCloseTheConnection) {
  // No response can carry the error: the connection goes, as in Kafka.
  auto out = raw(encode(produce_req("nope", 0, storage::testing::make_batch(1, "x"), 0), 9));
  ASSERT_TRUE(out.close);
  EXPECT_NE(out.close->message.find("acks=0"), std::string::npos);
  EXPECT_FALSE(out.response);
}

TEST_F(BrokerTest, FetchAndListOffsetsCheckTheClientsLeaderEpochAgainstThePartitionTable) {
  // The partition seam answers for the leader at its epoch (0 on one node): a client that
  // names another epoch is told so, with the current leader in Fetch's CurrentLeader.
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  produce("t", 0, storage::testing::make_batch(2, "e"));
  for (int32_t epoch : {-1, 0}) {
    auto req = fetch_req("t", 0, 0);
    req.topics[0].partitions[0].current_leader_epoch = epoch;
    auto resp = call<protocol::FetchResponse>(req, 12);
    const auto& p = resp.responses.at(0).partitions.at(0);
    EXPECT_EQ(p.error_code, 0) << epoch;
    EXPECT_EQ(values(p).size(), 2u) << epoch;
  }
  auto req = fetch_req("t", 0, 0);
  req.topics[0].partitions[0].current_leader_epoch = 3;
  auto resp = call<protocol::FetchResponse>(req, 12);
  const auto& p = resp.responses.at(0).partitions.at(0);
  EXPECT_EQ(p.error_code, ec(ErrorCode::unknown_leader_epoch));
  EXPECT_EQ(p.high_watermark, -1);
  EXPECT_EQ(p.current_leader.leader_id, broker->config().node_id);
  EXPECT_EQ(p.current_leader.leader_epoch, 0);
  EXPECT_TRUE(values(p).empty());

  protocol::ListOffsetsRequest lo;
  lo.replica_id = -1;
  protocol::ListOffsetsRequest::ListOffsetsTopic t;
  t.name = "t";
  protocol::ListOffsetsRequest::ListOffsetsPartition lp;
  lp.partition_index = 0;
  lp.timestamp = -1;
  lp.current_leader_epoch = 3;
  t.partitions.push_back(lp);
  lo.topics.push_back(t);
  auto lresp = call<protocol::ListOffsetsResponse>(lo, 7);
  EXPECT_EQ(lresp.topics.at(0).partitions.at(0).error_code, ec(ErrorCode::unknown_leader_epoch));
  lo.topics[0].partitions[0].current_leader_epoch = 0;
  lresp = call<protocol::ListOffsetsResponse>(lo, 7);
  EXPECT_EQ(lresp.topics.at(0).partitions.at(0).error_code, 0);
  EXPECT_EQ(lresp.topics.at(0).partitions.at(0).offset, 2);
  EXPECT_EQ(lresp.topics.at(0).partitions.at(0).leader_epoch, 0);
}

// One node: OffsetForLeaderEpoch answers from the log (epoch 0 ends at the log end), and the
// only replica is the preferred leader already.
TEST_F(BrokerTest, OffsetForLeaderEpochAndElectLeadersOnOneNode) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  produce("t", 0, storage::testing::make_batch(3, "o"));
  protocol::OffsetForLeaderEpochRequest req;
  protocol::OffsetForLeaderEpochRequest::OffsetForLeaderTopic t;
  t.topic = "t";
  t.partitions.push_back({0, -1, 0, {}});
  t.partitions.push_back({0, 5, 0, {}});  // a current epoch newer than the leader's
  t.partitions.push_back({7, -1, 0, {}});
  req.topics.push_back(t);
  auto resp = call<protocol::OffsetForLeaderEpochResponse>(req, 4);
  const auto& ps = resp.topics.at(0).partitions;
  ASSERT_EQ(ps.size(), 3u);
  EXPECT_EQ(ps[0].error_code, 0);
  EXPECT_EQ(ps[0].leader_epoch, 0);
  EXPECT_EQ(ps[0].end_offset, 3);
  EXPECT_EQ(ps[1].error_code, ec(ErrorCode::unknown_leader_epoch));
  EXPECT_EQ(ps[2].error_code, ec(ErrorCode::unknown_topic_or_partition));

  protocol::ElectLeadersRequest elect;
  elect.election_type = 0;
  elect.topic_partitions.emplace();
  elect.topic_partitions->push_back({"t", {0, 4}, {}});
  auto er = call<protocol::ElectLeadersResponse>(elect, 2);
  ASSERT_EQ(er.replica_election_results.size(), 1u);
  const auto& rs = er.replica_election_results[0].partition_result;
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].error_code, ec(ErrorCode::election_not_needed));
  EXPECT_EQ(rs[1].error_code, ec(ErrorCode::unknown_topic_or_partition));
  elect.election_type = 1;  // unclean
  er = call<protocol::ElectLeadersResponse>(elect, 2);
  EXPECT_EQ(er.replica_election_results.at(0).partition_result.at(0).error_code,
            ec(ErrorCode::invalid_request));
  // Null partitions: every partition; those that need no election are left out.
  elect.election_type = 0;
  elect.topic_partitions.reset();
  er = call<protocol::ElectLeadersResponse>(elect, 2);
  EXPECT_EQ(er.error_code, 0);
  EXPECT_TRUE(er.replica_election_results.empty());
}

TEST_F(BrokerTest, FetchWithASessionIdIsRefused) {
  auto req = fetch_req("t", 0, 0);
  req.session_id = 42;
  auto resp = call<protocol::FetchResponse>(req, 12);
  EXPECT_EQ(resp.error_code, ec(ErrorCode::fetch_session_id_not_found));
}

TEST_F(BrokerTest, CreateTopicsValidates) {
  EXPECT_EQ(create("ok", 3).topics.at(0).num_partitions, 3);
  EXPECT_EQ(create("ok", 3).topics.at(0).error_code, ec(ErrorCode::topic_already_exists));
  EXPECT_EQ(create("..", 1).topics.at(0).error_code, ec(ErrorCode::invalid_topic_exception));
  EXPECT_EQ(create(std::string(250, 'a'), 1).topics.at(0).error_code,
            ec(ErrorCode::invalid_topic_exception));
  EXPECT_EQ(create("zero", 0).topics.at(0).error_code, ec(ErrorCode::invalid_partitions));
  EXPECT_EQ(create("cfg", 1, {{"retention.ms", "soon"}}).topics.at(0).error_code,
            ec(ErrorCode::invalid_config));
  EXPECT_EQ(create("cfg", 1, {{"no.such.config", "1"}}).topics.at(0).error_code,
            ec(ErrorCode::invalid_config));
  EXPECT_EQ(create("dry", 1, {}, true).topics.at(0).error_code, 0);
  EXPECT_FALSE(broker->topics().snapshot()->contains("dry"));

  protocol::CreateTopicsRequest rf;
  rf.topics.push_back({"rf", 1, 3, {}, {}, {}});
  EXPECT_EQ(call<protocol::CreateTopicsResponse>(rf, 7).topics.at(0).error_code,
            ec(ErrorCode::invalid_replication_factor));
}

TEST_F(BrokerTest, ACreationThatFailsHalfWayLeavesNothingAndTheBrokerServesOn) {
  // Partition 2 of 5 fails to open (as when descriptors run out): the two made are closed and
  // removed, the registry holds no trace, and the name can be used again.
  broker->set_create_step_hook([](int step) -> Result<void> {
    if (step == 3) return make_error(Errc::io, "injected: too many open files");
    return ok();
  });
  auto r = create("half", 5).topics.at(0);
  EXPECT_EQ(r.error_code, ec(ErrorCode::kafka_storage_error));
  EXPECT_NE(r.error_message->find("nothing was created"), std::string::npos) << *r.error_message;
  EXPECT_FALSE(broker->topics().snapshot()->contains("half"));
  EXPECT_TRUE(broker->topics().pending_creates().empty());
  EXPECT_TRUE(open_logs_of("half").empty());
  EXPECT_TRUE(dirs_of("half").empty());

  // Adding partitions 2..5 to a topic of 2 fails at partition 3: it keeps its 2.
  broker->set_create_step_hook(nullptr);
  ASSERT_EQ(create("grow", 2).topics.at(0).error_code, 0);
  broker->set_create_step_hook([](int step) -> Result<void> {
    if (step == 2) return make_error(Errc::io, "injected");
    return ok();
  });
  EXPECT_EQ(add_partitions("grow", 6).error_code, ec(ErrorCode::kafka_storage_error));
  EXPECT_EQ(broker->topics().snapshot()->at("grow").partitions, 2);
  EXPECT_EQ(open_logs_of("grow"), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(dirs_of("grow"), (std::set<int32_t>{0, 1}));

  // The broker serves on, and a restart brings back neither.
  broker->set_create_step_hook(nullptr);
  EXPECT_EQ(produce("grow", 1, storage::testing::make_batch(1, "g")).error_code, 0);
  reopen();
  EXPECT_FALSE(broker->topics().snapshot()->contains("half"));
  EXPECT_TRUE(dirs_of("half").empty());
  EXPECT_EQ(broker->topics().snapshot()->at("grow").partitions, 2);
  EXPECT_EQ(dirs_of("grow"), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(create("half", 5).topics.at(0).error_code, 0);
  EXPECT_EQ(add_partitions("grow", 6).error_code, 0);
  EXPECT_EQ(open_logs_of("grow"), (std::set<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST_F(BrokerTest, PartitionsBeyondMaxPartitionsAreRefusedBeforeAnythingIsMade) {
  max_partitions = 10;  // __consumer_offsets holds 3
  reopen();
  auto r = create("big", 8).topics.at(0);
  EXPECT_EQ(r.error_code, ec(ErrorCode::policy_violation));
  EXPECT_NE(r.error_message->find("max.partitions=10"), std::string::npos) << *r.error_message;
  EXPECT_EQ(create("big", 8, {}, true).topics.at(0).error_code, ec(ErrorCode::policy_violation));
  EXPECT_FALSE(broker->topics().snapshot()->contains("big"));
  EXPECT_TRUE(dirs_of("big").empty());
  ASSERT_EQ(create("fits", 7).topics.at(0).error_code, 0);
  EXPECT_EQ(add_partitions("fits", 8).error_code, ec(ErrorCode::policy_violation));
  EXPECT_EQ(broker->topics().snapshot()->at("fits").partitions, 7);
  EXPECT_EQ(dirs_of("fits").size(), 7u);
}

TEST_F(BrokerTest, PartitionsBeyondTheOpenFileLimitAreRefusedBeforeAnythingIsMade) {
  // The limit lowered to about 200 free descriptors: 600 partitions cannot be held, and the
  // creation must be refused up front rather than fail at the partition that finds none left.
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  int64_t open = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd"))
    ++open;
  rlimit low = saved;
  low.rlim_cur = rlim_t(open + 300);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto r = create("wide", 600).topics.at(0);
  auto ok_too = create("narrow", 10).topics.at(0);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(r.error_code, ec(ErrorCode::policy_violation));
  EXPECT_NE(r.error_message->find("ulimit -n"), std::string::npos) << *r.error_message;
  EXPECT_FALSE(broker->topics().snapshot()->contains("wide"));
  EXPECT_TRUE(dirs_of("wide").empty());
  EXPECT_EQ(ok_too.error_code, 0);
}

TEST_F(BrokerTest, CompactedTopicsAreNotSubjectToTimeRetention) {
  // __consumer_offsets and any cleanup.policy=compact topic keep old segments: only the
  // cleaner may drop records there, never retention.ms.
  ASSERT_EQ(create("kept", 1,
                   {{"cleanup.policy", "compact"}, {"retention.ms", "1"}, {"segment.bytes", "100"}})
                .topics.at(0)
                .error_code,
            0);
  ASSERT_EQ(
      create("gone", 1, {{"retention.ms", "1"}, {"segment.bytes", "100"}}).topics.at(0).error_code,
      0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(
        produce("kept", 0, model::RecordBatchBuilder().add("key", "v", 1000).build()).error_code,
        0);
    ASSERT_EQ(produce("gone", 0, storage::testing::make_batch(1, "g", 1000)).error_code, 0);
  }
  auto retention = [&](const std::string& topic) {
    std::promise<int64_t> p;
    broker->logs().with_log({topic, 0}, [&](Result<storage::PartitionLog*> log) {
      EXPECT_TRUE(log);
      EXPECT_TRUE((*log)->enforce_retention());
      p.set_value((*log)->log_start_offset().value());
    });
    return p.get_future().get();
  };
  EXPECT_EQ(retention("kept"), 0);
  EXPECT_GT(retention("gone"), 0);
}

TEST_F(BrokerTest, CompactedTopicsRefuseRecordsWithoutAKey) {
  ASSERT_EQ(create("table", 1, {{"cleanup.policy", "compact,delete"}}).topics.at(0).error_code, 0);
  // One keyless record among keyed ones, also inside a compressed batch: the whole batch goes.
  auto mixed = model::RecordBatchBuilder()
                   .add("a", "1", 1000)
                   .add(std::nullopt, "no key", 1000)
                   .add("b", "2", 1000)
                   .build();
  auto zstd = compression::recode_batch(*model::RecordBatchView::parse(mixed), 4);
  ASSERT_TRUE(zstd);
  for (const auto& batch : {mixed, *zstd}) {
    auto r = produce("table", 0, batch);
    EXPECT_EQ(r.error_code, ec(ErrorCode::invalid_record));
    EXPECT_EQ(r.error_message, "Compacted topic cannot accept message without key");
  }
  EXPECT_EQ(list_offset("table", 0, -1), 0);  // nothing stored
  // Keyed records and tombstones are welcome; a delete-policy topic takes keyless ones.
  auto keyed = model::RecordBatchBuilder().add("a", "1", 1000).add("b", std::nullopt, 1000).build();
  EXPECT_EQ(produce("table", 0, keyed).error_code, 0);
  ASSERT_EQ(create("log", 1).topics.at(0).error_code, 0);
  EXPECT_EQ(produce("log", 0, mixed).error_code, 0);
}

TEST_F(BrokerTest, TopicsAndConfigsSurviveARestart) {
  ASSERT_EQ(create("keep", 2, {{"retention.ms", "123456"}}).topics.at(0).error_code, 0);
  produce("keep", 1, storage::testing::make_batch(2, "k"));
  protocol::CreatePartitionsRequest cp;
  cp.topics.push_back({"keep", 4, std::nullopt, {}});
  EXPECT_EQ(call<protocol::CreatePartitionsResponse>(cp, 3).results.at(0).error_code, 0);
  cp.topics[0].count = 3;
  EXPECT_EQ(call<protocol::CreatePartitionsResponse>(cp, 3).results.at(0).error_code,
            ec(ErrorCode::invalid_partitions));

  protocol::IncrementalAlterConfigsRequest inc;
  inc.resources.push_back({2, "keep", {{"cleanup.policy", 2, "compact", {}}}, {}});
  EXPECT_EQ(call<protocol::IncrementalAlterConfigsResponse>(inc, 1).responses.at(0).error_code, 0);

  reopen();
  auto snap = broker->topics().snapshot();
  ASSERT_TRUE(snap->contains("keep"));
  EXPECT_EQ(snap->at("keep").partitions, 4);
  EXPECT_EQ(values(fetch("keep", 1, 0)), (std::vector<std::string>{"k-0", "k-1"}));

  protocol::DescribeConfigsRequest dc;
  dc.resources.push_back({2, "keep", std::nullopt, {}});
  auto described = call<protocol::DescribeConfigsResponse>(dc, 4);
  // config_source: 1 = set on the topic, 5 = default.
  std::map<std::string, std::pair<std::string, int>> got;
  for (const auto& c : described.results.at(0).configs) got[c.name] = {*c.value, c.config_source};
  EXPECT_EQ(got["retention.ms"], std::make_pair(std::string("123456"), 1));
  EXPECT_EQ(got["cleanup.policy"], std::make_pair(std::string("delete,compact"), 1));
  EXPECT_EQ(got["segment.bytes"], std::make_pair(std::string("1073741824"), 5));
}

TEST_F(BrokerTest, DeleteTopicsRemovesTheDataAndTheName) {
  ASSERT_EQ(create("gone", 2).topics.at(0).error_code, 0);
  produce("gone", 0, storage::testing::make_batch(1, "g"));
  protocol::DeleteTopicsRequest req;
  req.topic_names = {"gone", "never"};
  auto resp = call<protocol::DeleteTopicsResponse>(req, 5);
  EXPECT_EQ(resp.responses.at(0).error_code, 0);
  EXPECT_EQ(resp.responses.at(1).error_code, ec(ErrorCode::unknown_topic_or_partition));
  EXPECT_FALSE(broker->topics().snapshot()->contains("gone"));
  for (const auto& p : broker->logs().status()) EXPECT_NE(p.tp.topic, "gone");
  reopen();
  EXPECT_FALSE(broker->topics().snapshot()->contains("gone"));
  // The name can be used again, empty.
  ASSERT_EQ(create("gone", 1).topics.at(0).error_code, 0);
  EXPECT_EQ(fetch("gone", 0, 0).high_watermark, 0);
}

TEST_F(BrokerTest, DeleteRecordsMovesTheLogStart) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  // Current timestamps: older ones would fall to retention.ms when the log start moves.
  produce("t", 0, storage::testing::make_batch(4, "d", SystemClock::instance().now_ms()));
  protocol::DeleteRecordsRequest req;
  req.topics.push_back({"t", {{0, 2, {}}}, {}});
  auto resp = call<protocol::DeleteRecordsResponse>(req, 2);
  EXPECT_EQ(resp.topics.at(0).partitions.at(0).error_code, 0);
  EXPECT_EQ(resp.topics.at(0).partitions.at(0).low_watermark, 2);
  EXPECT_EQ(list_offset("t", 0, -2), 2);
  req.topics[0].partitions[0].offset = 99;
  resp = call<protocol::DeleteRecordsResponse>(req, 2);
  EXPECT_EQ(resp.topics.at(0).partitions.at(0).error_code, ec(ErrorCode::offset_out_of_range));
}

// ---- consumer groups ----

protocol::OffsetCommitRequest commit_req(const std::string& group, const std::string& topic,
                                         int32_t partition, int64_t offset, int32_t generation = -1,
                                         std::string member = "",
                                         std::optional<std::string> metadata = "md") {
  protocol::OffsetCommitRequest req;
  req.group_id = group;
  req.generation_id_or_member_epoch = generation;
  req.member_id = std::move(member);
  protocol::OffsetCommitRequest::OffsetCommitRequestTopic t;
  t.name = topic;
  protocol::OffsetCommitRequest::OffsetCommitRequestPartition p;
  p.partition_index = partition;
  p.committed_offset = offset;
  p.committed_metadata = std::move(metadata);
  t.partitions.push_back(p);
  req.topics.push_back(t);
  return req;
}

TEST_F(BrokerTest, FindCoordinatorNamesThisBrokerInEveryVersion) {
  for (int16_t v = 0; v <= 3; ++v) {
    protocol::FindCoordinatorRequest req;
    req.key = "g";
    auto resp = call<protocol::FindCoordinatorResponse>(req, v);
    EXPECT_EQ(resp.error_code, 0) << v;
    EXPECT_EQ(resp.node_id, 0);
    EXPECT_EQ(resp.host, "127.0.0.1");
    EXPECT_EQ(resp.port, 9092);
  }
  protocol::FindCoordinatorRequest batched;
  batched.coordinator_keys = {"a", "b"};
  auto resp = call<protocol::FindCoordinatorResponse>(batched, 4);
  ASSERT_EQ(resp.coordinators.size(), 2u);
  EXPECT_EQ(resp.coordinators[1].key, "b");
  EXPECT_EQ(resp.coordinators[1].port, 9092);
  // Transaction coordinators do not exist yet.
  protocol::FindCoordinatorRequest txn;
  txn.key = "tx";
  txn.key_type = 1;
  EXPECT_EQ(call<protocol::FindCoordinatorResponse>(txn, 3).error_code,
            ec(ErrorCode::coordinator_not_available));
}

TEST_F(BrokerTest, CommittedOffsetsAreFetchedAndSurviveARestart) {
  ASSERT_EQ(create("t", 2).topics.at(0).error_code, 0);
  auto c = call<protocol::OffsetCommitResponse>(commit_req("g", "t", 1, 42), 8);
  ASSERT_EQ(c.topics.at(0).partitions.at(0).error_code, 0);
  // An older version and a second partition.
  auto c2 = call<protocol::OffsetCommitResponse>(commit_req("g", "t", 0, 7), 2);
  ASSERT_EQ(c2.topics.at(0).partitions.at(0).error_code, 0);
  // Unknown partitions and oversized metadata are refused per partition.
  EXPECT_EQ(call<protocol::OffsetCommitResponse>(commit_req("g", "t", 5, 1), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            ec(ErrorCode::unknown_topic_or_partition));
  EXPECT_EQ(call<protocol::OffsetCommitResponse>(
                commit_req("g", "t", 0, 1, -1, "", std::string(5000, 'x')), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            ec(ErrorCode::offset_metadata_too_large));
  // A member id and generation for a group that has no members: ILLEGAL_GENERATION.
  EXPECT_EQ(call<protocol::OffsetCommitResponse>(commit_req("g", "t", 0, 1, 3, "m"), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            ec(ErrorCode::illegal_generation));

  auto check = [&](const char* when) {
    protocol::OffsetFetchRequest f;
    f.group_id = "g";
    f.topics.emplace();
    f.topics->push_back({"t", {0, 1}, {}});
    auto resp = call<protocol::OffsetFetchResponse>(f, 7);
    EXPECT_EQ(resp.error_code, 0) << when;
    const auto& parts = resp.topics.at(0).partitions;
    ASSERT_EQ(parts.size(), 2u) << when;
    EXPECT_EQ(parts[0].committed_offset, 7) << when;
    EXPECT_EQ(parts[1].committed_offset, 42) << when;
    EXPECT_EQ(parts[1].metadata, "md") << when;
    // v8: several groups; all partitions with topics = null; a group without commits is empty.
    protocol::OffsetFetchRequest f8;
    f8.groups.push_back({"g", {}, -1, std::nullopt, {}});
    f8.groups.push_back({"other", {}, -1, std::nullopt, {}});
    auto r8 = call<protocol::OffsetFetchResponse>(f8, 8);
    ASSERT_EQ(r8.groups.size(), 2u);
    ASSERT_EQ(r8.groups[0].topics.size(), 1u) << when;
    EXPECT_EQ(r8.groups[0].topics[0].partitions.size(), 2u) << when;
    EXPECT_TRUE(r8.groups[1].topics.empty());
  };
  check("before the restart");
  reopen();
  check("after the restart");

  // A group known only by its offsets is listed and described as Empty, as Kafka shows it.
  auto listed = call<protocol::ListGroupsResponse>(protocol::ListGroupsRequest{}, 4);
  ASSERT_EQ(listed.groups.size(), 1u);
  EXPECT_EQ(listed.groups[0].group_id, "g");
  EXPECT_EQ(listed.groups[0].group_state, "Empty");
  protocol::DescribeGroupsRequest dg;
  dg.groups = {"g"};
  EXPECT_EQ(call<protocol::DescribeGroupsResponse>(dg, 5).groups.at(0).group_state, "Empty");

  // A partition with no commit reads as -1.
  protocol::OffsetFetchRequest none;
  none.group_id = "nobody";
  none.topics.emplace();
  none.topics->push_back({"t", {0}, {}});
  EXPECT_EQ(
      call<protocol::OffsetFetchResponse>(none, 1).topics.at(0).partitions.at(0).committed_offset,
      -1);
}

TEST_F(BrokerTest, AGroupOfOneJoinsSyncsCommitsAndLeaves) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  protocol::JoinGroupRequest join;
  join.group_id = "g";
  join.session_timeout_ms = 10000;
  join.rebalance_timeout_ms = 10000;
  join.protocol_type = "consumer";
  join.protocols.push_back({"range", {0, 1, 2}, {}});
  // v4+: the first join gets an id to come back with.
  auto first = call<protocol::JoinGroupResponse>(join, 9);
  ASSERT_EQ(first.error_code, ec(ErrorCode::member_id_required));
  ASSERT_FALSE(first.member_id.empty());
  join.member_id = first.member_id;
  auto joined = call<protocol::JoinGroupResponse>(join, 9);
  ASSERT_EQ(joined.error_code, 0);
  EXPECT_EQ(joined.leader, joined.member_id);
  EXPECT_EQ(joined.generation_id, 1);
  EXPECT_EQ(joined.protocol_name, "range");
  ASSERT_EQ(joined.members.size(), 1u);

  protocol::SyncGroupRequest sync;
  sync.group_id = "g";
  sync.generation_id = 1;
  sync.member_id = joined.member_id;
  sync.assignments.push_back({joined.member_id, {9, 9}, {}});
  auto synced = call<protocol::SyncGroupResponse>(sync, 5);
  ASSERT_EQ(synced.error_code, 0);
  EXPECT_EQ(synced.assignment, (std::vector<uint8_t>{9, 9}));

  protocol::HeartbeatRequest hb;
  hb.group_id = "g";
  hb.generation_id = 1;
  hb.member_id = joined.member_id;
  EXPECT_EQ(call<protocol::HeartbeatResponse>(hb, 4).error_code, 0);
  hb.generation_id = 0;
  EXPECT_EQ(call<protocol::HeartbeatResponse>(hb, 4).error_code, ec(ErrorCode::illegal_generation));

  // Members commit with their generation; a stranger cannot.
  EXPECT_EQ(call<protocol::OffsetCommitResponse>(commit_req("g", "t", 0, 5, 1, joined.member_id), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            0);
  EXPECT_EQ(call<protocol::OffsetCommitResponse>(commit_req("g", "t", 0, 6), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            ec(ErrorCode::unknown_member_id));

  protocol::DescribeGroupsRequest dg;
  dg.groups = {"g", "unknown"};
  auto described = call<protocol::DescribeGroupsResponse>(dg, 5);
  ASSERT_EQ(described.groups.size(), 2u);
  EXPECT_EQ(described.groups[0].group_state, "Stable");
  EXPECT_EQ(described.groups[0].protocol_data, "range");
  ASSERT_EQ(described.groups[0].members.size(), 1u);
  EXPECT_EQ(described.groups[0].members[0].client_id, "test");
  EXPECT_EQ(described.groups[0].members[0].member_assignment, (std::vector<uint8_t>{9, 9}));
  EXPECT_EQ(described.groups[1].group_state, "Dead");

  auto listed = call<protocol::ListGroupsResponse>(protocol::ListGroupsRequest{}, 4);
  ASSERT_EQ(listed.groups.size(), 1u);
  EXPECT_EQ(listed.groups[0].group_state, "Stable");

  // A group with members cannot be deleted.
  protocol::DeleteGroupsRequest del;
  del.groups_names = {"g"};
  EXPECT_EQ(call<protocol::DeleteGroupsResponse>(del, 2).results.at(0).error_code,
            ec(ErrorCode::non_empty_group));

  protocol::LeaveGroupRequest leave;
  leave.group_id = "g";
  leave.members.push_back({joined.member_id, std::nullopt, std::nullopt, {}});
  auto left = call<protocol::LeaveGroupResponse>(leave, 5);
  EXPECT_EQ(left.error_code, 0);
  ASSERT_EQ(left.members.size(), 1u);
  EXPECT_EQ(left.members[0].error_code, 0);

  // Empty now: deleting removes the group and its offsets, also across a restart.
  EXPECT_EQ(call<protocol::DeleteGroupsResponse>(del, 2).results.at(0).error_code, 0);
  EXPECT_EQ(call<protocol::DeleteGroupsResponse>(del, 2).results.at(0).error_code,
            ec(ErrorCode::group_id_not_found));
  reopen();
  protocol::OffsetFetchRequest f;
  f.group_id = "g";
  auto fetched = call<protocol::OffsetFetchResponse>(f, 7);
  EXPECT_TRUE(fetched.topics.empty());
  EXPECT_TRUE(call<protocol::ListGroupsResponse>(protocol::ListGroupsRequest{}, 4).groups.empty());
}

TEST_F(BrokerTest, AStableGroupSurvivesABrokerRestartWithoutARebalance) {
  protocol::JoinGroupRequest join;
  join.group_id = "g";
  join.session_timeout_ms = 30000;
  join.rebalance_timeout_ms = 30000;
  join.protocol_type = "consumer";
  join.protocols.push_back({"range", {1, 2}, {}});
  auto joined = call<protocol::JoinGroupResponse>(join, 3);  // v3: no MEMBER_ID_REQUIRED
  ASSERT_EQ(joined.error_code, 0);
  protocol::SyncGroupRequest sync;
  sync.group_id = "g";
  sync.generation_id = joined.generation_id;
  sync.member_id = joined.member_id;
  sync.assignments.push_back({joined.member_id, {7}, {}});
  ASSERT_EQ(call<protocol::SyncGroupResponse>(sync, 3).error_code, 0);

  reopen();
  protocol::HeartbeatRequest hb;
  hb.group_id = "g";
  hb.generation_id = joined.generation_id;
  hb.member_id = joined.member_id;
  EXPECT_EQ(call<protocol::HeartbeatResponse>(hb, 3).error_code, 0);
  protocol::DescribeGroupsRequest dg;
  dg.groups = {"g"};
  auto d = call<protocol::DescribeGroupsResponse>(dg, 5);
  EXPECT_EQ(d.groups.at(0).group_state, "Stable");
  ASSERT_EQ(d.groups.at(0).members.size(), 1u);
  EXPECT_EQ(d.groups.at(0).members[0].member_assignment, (std::vector<uint8_t>{7}));
}

TEST_F(BrokerTest, OffsetDeleteRemovesOffsetsOfTopicsNobodyReads) {
  ASSERT_EQ(create("t", 1).topics.at(0).error_code, 0);
  ASSERT_EQ(call<protocol::OffsetCommitResponse>(commit_req("g", "t", 0, 3), 8)
                .topics.at(0)
                .partitions.at(0)
                .error_code,
            0);
  protocol::OffsetDeleteRequest req;
  req.group_id = "g";
  req.topics.push_back({"t", {{0, {}}}, {}});
  req.topics.push_back({"missing", {{0, {}}}, {}});
  auto resp = call<protocol::OffsetDeleteResponse>(req, 0);
  EXPECT_EQ(resp.error_code, 0);
  EXPECT_EQ(resp.topics.at(0).partitions.at(0).error_code, 0);
  EXPECT_EQ(resp.topics.at(1).partitions.at(0).error_code,
            ec(ErrorCode::unknown_topic_or_partition));
  // The group is gone with its last offset.
  EXPECT_EQ(call<protocol::OffsetDeleteResponse>(req, 0).error_code,
            ec(ErrorCode::group_id_not_found));
}

TEST_F(BrokerTest, TransactionalBatchesAreRefusedUntilTransactionsExist) {
  ASSERT_EQ(create("tx", 1).topics.at(0).error_code, 0);
  auto batch =
      model::RecordBatchBuilder(
          {.producer_id = 1, .producer_epoch = 0, .base_sequence = 0, .transactional = true})
          .add("k", "v", 1000)
          .build();
  EXPECT_EQ(produce("tx", 0, batch).error_code, ec(ErrorCode::invalid_record));
  EXPECT_EQ(list_offset("tx", 0, -1), 0);  // nothing stored
}

TEST_F(BrokerTest, ClientsCannotProduceToOrDeleteTheOffsetsTopic) {
  auto p = produce("__consumer_offsets", 0, storage::testing::make_batch(1, "x"));
  EXPECT_EQ(p.error_code, ec(ErrorCode::invalid_topic_exception));
  protocol::DeleteTopicsRequest req;
  req.topic_names = {"__consumer_offsets"};
  EXPECT_EQ(call<protocol::DeleteTopicsResponse>(req, 5).responses.at(0).error_code,
            ec(ErrorCode::invalid_request));
}

// ---- idempotent producers ----

TEST_F(BrokerTest, IdempotentProducerRetriesAreNotStoredTwice) {
  ASSERT_EQ(create("idem", 1).topics.at(0).error_code, 0);
  protocol::InitProducerIdRequest init;
  init.transaction_timeout_ms = 60000;
  auto id = call<protocol::InitProducerIdResponse>(init, 4);
  ASSERT_EQ(id.error_code, 0);
  EXPECT_GE(id.producer_id, 0);
  EXPECT_EQ(id.producer_epoch, 0);
  auto id2 = call<protocol::InitProducerIdResponse>(init, 0);
  EXPECT_NE(id2.producer_id, id.producer_id);

  auto batch = [&](int32_t seq, int n, int16_t epoch = 0) {
    model::RecordBatchBuilder b(
        {.producer_id = id.producer_id, .producer_epoch = epoch, .base_sequence = seq});
    for (int i = 0; i < n; ++i) b.add("k", "v" + std::to_string(seq + i), 1000);
    return b.build();
  };
  auto first = produce("idem", 0, batch(0, 3));
  ASSERT_EQ(first.error_code, 0);
  EXPECT_EQ(first.base_offset, 0);
  auto second = produce("idem", 0, batch(3, 2));
  EXPECT_EQ(second.base_offset, 3);
  // The retry of the first batch: its original offset, and nothing stored again.
  auto retry = produce("idem", 0, batch(0, 3));
  EXPECT_EQ(retry.error_code, 0);
  EXPECT_EQ(retry.base_offset, 0);
  EXPECT_EQ(list_offset("idem", 0, -1), 5);
  // A gap and a stale epoch.
  EXPECT_EQ(produce("idem", 0, batch(9, 1)).error_code,
            ec(ErrorCode::out_of_order_sequence_number));
  ASSERT_EQ(produce("idem", 0, batch(0, 1, 1)).error_code, 0);
  EXPECT_EQ(produce("idem", 0, batch(5, 1, 0)).error_code, ec(ErrorCode::invalid_producer_epoch));
  // After a restart the state is back, and ids are not reused.
  reopen();
  EXPECT_EQ(produce("idem", 0, batch(0, 1, 1)).base_offset, 5);
  EXPECT_EQ(list_offset("idem", 0, -1), 6);
  auto id3 = call<protocol::InitProducerIdResponse>(init, 4);
  EXPECT_GT(id3.producer_id, id2.producer_id);
  // Transactions are not there yet.
  protocol::InitProducerIdRequest txn = init;
  txn.transactional_id = "tx";
  EXPECT_EQ(call<protocol::InitProducerIdResponse>(txn, 4).error_code,
            ec(ErrorCode::invalid_request));
}

}  // namespace
}  // namespace ordo::broker
