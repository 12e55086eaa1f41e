// Writes the seeds of fuzz_broker_request: one valid request frame (header + body) for every
// API and version the broker advertises, with bodies that reach the interesting paths (a
// produce carrying a record batch, a legacy message set, a fetch, topic creation...).
//
//   make_broker_request_corpus tests/fuzz/corpus/broker_request

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "base/coding.h"
#include "model/record_batch.h"
#include "protocol/header.h"
#include "protocol/messages/api_versions_request.h"
#include "protocol/messages/create_topics_request.h"
#include "protocol/messages/delete_groups_request.h"
#include "protocol/messages/delete_records_request.h"
#include "protocol/messages/describe_configs_request.h"
#include "protocol/messages/describe_groups_request.h"
#include "protocol/messages/fetch_request.h"
#include "protocol/messages/find_coordinator_request.h"
#include "protocol/messages/heartbeat_request.h"
#include "protocol/messages/incremental_alter_configs_request.h"
#include "protocol/messages/init_producer_id_request.h"
#include "protocol/messages/join_group_request.h"
#include "protocol/messages/leave_group_request.h"
#include "protocol/messages/list_groups_request.h"
#include "protocol/messages/list_offsets_request.h"
#include "protocol/messages/metadata_request.h"
#include "protocol/messages/offset_commit_request.h"
#include "protocol/messages/offset_delete_request.h"
#include "protocol/messages/offset_fetch_request.h"
#include "protocol/messages/produce_request.h"
#include "protocol/messages/sync_group_request.h"

namespace ordo::protocol {
namespace {

std::string dir;
int written = 0;

template <typename Req>
void seed(const Req& req, int16_t version, const std::string& name) {
  RequestHeader h;
  h.request_api_key = Req::kApiKey;
  h.request_api_version = version;
  h.correlation_id = 7;
  h.client_id = "seed";
  Writer w;
  encode_request(w, h, req);
  auto bytes = flatten(w.finish()).value();
  std::ofstream out(dir + "/" + name + "-v" + std::to_string(version), std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  ++written;
}

std::vector<uint8_t> legacy_message_set() {
  // One magic-1 message (offset, size, crc, magic, attributes, timestamp, key, value); the
  // CRC is left wrong on purpose in one seed and right in none: the fuzzer finds both paths.
  std::vector<uint8_t> m = {0, 0,    0, 0, 1, 0, 0,   0, 0, 0, 0, 0,
                            3, 0xe8, 0, 0, 0, 1, 'k', 0, 0, 0, 1, 'v'};
  std::vector<uint8_t> set(12 + m.size());
  store_be32(&set[8], uint32_t(m.size()));
  std::copy(m.begin(), m.end(), set.begin() + 12);
  return set;
}

void run() {
  seed(ApiVersionsRequest{}, 3, "api_versions");
  MetadataRequest md;
  md.topics.emplace();
  md.topics->push_back({{}, "fuzz", {}});
  for (int16_t v : {0, 4, 9, 12}) seed(md, v, "metadata");

  auto batch = model::RecordBatchBuilder().add("k", "value", 1000).add("k2", "v2", 1001).build();
  ProduceRequest p;
  p.acks = -1;
  p.timeout_ms = 1000;
  ProduceRequest::TopicProduceData t;
  t.name = "fuzz";
  ProduceRequest::PartitionProduceData pd;
  pd.index = 0;
  pd.records = Records::owned(batch);
  t.partition_data.push_back(pd);
  p.topic_data.push_back(t);
  for (int16_t v : {3, 7, 9}) seed(p, v, "produce");
  p.topic_data[0].partition_data[0].records = Records::owned(legacy_message_set());
  seed(p, 2, "produce-legacy");

  FetchRequest f;
  f.max_wait_ms = 1;
  f.min_bytes = 1;
  f.max_bytes = 1 << 20;
  f.session_epoch = -1;
  FetchRequest::FetchTopic ft;
  ft.topic = "fuzz";
  FetchRequest::FetchPartition fp;
  fp.partition_max_bytes = 1 << 20;
  ft.partitions.push_back(fp);
  f.topics.push_back(ft);
  for (int16_t v : {4, 11, 12}) seed(f, v, "fetch");

  ListOffsetsRequest lo;
  ListOffsetsRequest::ListOffsetsTopic lt;
  lt.name = "fuzz";
  ListOffsetsRequest::ListOffsetsPartition lp;
  lp.timestamp = -1;
  lt.partitions.push_back(lp);
  lo.topics.push_back(lt);
  for (int16_t v : {0, 7}) seed(lo, v, "list_offsets");

  CreateTopicsRequest ct;
  CreateTopicsRequest::CreatableTopic c;
  c.name = "created";
  c.num_partitions = 2;
  c.replication_factor = 1;
  c.configs.push_back({"retention.ms", "60000", {}});
  ct.topics.push_back(c);
  for (int16_t v : {0, 5, 7}) seed(ct, v, "create_topics");

  DescribeConfigsRequest dc;
  dc.resources.push_back({2, "fuzz", std::nullopt, {}});
  seed(dc, 4, "describe_configs");
  IncrementalAlterConfigsRequest ia;
  ia.resources.push_back({2, "fuzz", {{"cleanup.policy", 2, "compact", {}}}, {}});
  seed(ia, 1, "incremental_alter_configs");
  DeleteRecordsRequest dr;
  dr.topics.push_back({"fuzz", {{0, 1, {}}}, {}});
  seed(dr, 2, "delete_records");

  // Consumer groups and idempotent producers.
  FindCoordinatorRequest fc;
  fc.key = "g";
  for (int16_t v : {0, 3}) seed(fc, v, "find_coordinator");
  fc.coordinator_keys = {"g", "h"};
  seed(fc, 4, "find_coordinator");
  JoinGroupRequest jg;
  jg.group_id = "g";
  jg.session_timeout_ms = 30;
  jg.rebalance_timeout_ms = 30;
  jg.protocol_type = "consumer";
  jg.protocols.push_back({"range", {0, 1, 0, 0, 0, 1, 0, 4, 'f', 'u', 'z', 'z', 0, 0, 0, 0}, {}});
  for (int16_t v : {0, 5, 9}) seed(jg, v, "join_group");
  jg.member_id = "m";
  jg.group_instance_id = "static-1";
  seed(jg, 7, "join_group-static");
  SyncGroupRequest sg;
  sg.group_id = "g";
  sg.generation_id = 1;
  sg.member_id = "m";
  sg.assignments.push_back({"m", {0, 1, 0, 0, 0, 0}, {}});
  for (int16_t v : {0, 5}) seed(sg, v, "sync_group");
  HeartbeatRequest hb;
  hb.group_id = "g";
  hb.generation_id = 1;
  hb.member_id = "m";
  for (int16_t v : {0, 4}) seed(hb, v, "heartbeat");
  LeaveGroupRequest lg;
  lg.group_id = "g";
  lg.member_id = "m";
  seed(lg, 0, "leave_group");
  lg.members.push_back({"m", std::nullopt, std::nullopt, {}});
  seed(lg, 5, "leave_group");
  OffsetCommitRequest oc;
  oc.group_id = "g";
  oc.topics.push_back({"fuzz", {{0, 5, -1, -1, "meta", {}}}, {}});
  for (int16_t v : {0, 2, 8}) seed(oc, v, "offset_commit");
  OffsetFetchRequest of;
  of.group_id = "g";
  of.topics.emplace();
  of.topics->push_back({"fuzz", {0}, {}});
  for (int16_t v : {1, 7}) seed(of, v, "offset_fetch");
  OffsetFetchRequest of8;
  of8.groups.push_back({"g", std::nullopt, -1, std::nullopt, {}});
  seed(of8, 8, "offset_fetch");
  ListGroupsRequest lgs;
  lgs.states_filter = {"Empty"};
  seed(lgs, 4, "list_groups");
  DescribeGroupsRequest dg;
  dg.groups = {"g", "none"};
  seed(dg, 5, "describe_groups");
  OffsetDeleteRequest od;
  od.group_id = "g";
  od.topics.push_back({"fuzz", {{0, {}}}, {}});
  seed(od, 0, "offset_delete");
  DeleteGroupsRequest dgs;
  dgs.groups_names = {"g"};
  seed(dgs, 2, "delete_groups");
  InitProducerIdRequest ip;
  ip.transaction_timeout_ms = 1000;
  for (int16_t v : {0, 4}) seed(ip, v, "init_producer_id");
  auto idem = model::RecordBatchBuilder({.producer_id = 0, .producer_epoch = 0, .base_sequence = 0})
                  .add("k", "v", 1000)
                  .build();
  p.topic_data[0].partition_data[0].records = Records::owned(idem);
  seed(p, 9, "produce-idempotent");
  // Batches whose header disagrees with their records (refused with INVALID_RECORD): two
  // records claiming 1,001 offsets, and an idempotent batch without an epoch.
  auto wide = model::RecordBatchBuilder().add("k", "v", 1000).add("k2", "v2", 1001).build();
  store_be32(wide.data() + model::batch_layout::kLastOffsetDelta, 1000);
  model::set_max_timestamp(wide, 1001);  // recomputes the CRC
  p.topic_data[0].partition_data[0].records = Records::owned(wide);
  seed(p, 9, "produce-offset-range");
  auto no_epoch =
      model::RecordBatchBuilder({.producer_id = 3, .producer_epoch = -1, .base_sequence = 0})
          .add("k", "v", 1000)
          .build();
  p.topic_data[0].partition_data[0].records = Records::owned(no_epoch);
  seed(p, 9, "produce-idempotent-no-epoch");
}

}  // namespace
}  // namespace ordo::protocol

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 1;
  }
  ordo::protocol::dir = argv[1];
  ordo::protocol::run();
  std::printf("%d seeds written\n", ordo::protocol::written);
  return 0;
}
