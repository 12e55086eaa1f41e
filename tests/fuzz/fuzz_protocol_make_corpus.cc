// Writes the seed corpus of fuzz_protocol_frame into a directory:
//
//   fuzz_protocol_make_corpus tests/fuzz/corpus/protocol_frame
//
// Each seed is one chunk-size byte followed by size-prefixed request frames: valid requests of
// several APIs and versions (classic and flexible), several frames in one stream, and garbage.
// Deterministic; files the fuzzer found (SHA-1 names) are not touched.

#include <cstdio>
#include <string>
#include <vector>

#include "base/coding.h"
#include "protocol/header.h"
#include "protocol/messages.h"

namespace ordo::protocol {
namespace {

using Bytes = std::vector<uint8_t>;

template <typename Req>
Bytes frame(const Req& req, int16_t version, int32_t correlation_id) {
  RequestHeader h;
  h.request_api_key = Req::kApiKey;
  h.request_api_version = version;
  h.correlation_id = correlation_id;
  h.client_id = "seed";
  Writer w;
  encode_request(w, h, req);
  Bytes body = flatten(w.finish()).value();
  Bytes out(4);
  store_be32(out.data(), uint32_t(body.size()));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

bool write_seed(const std::string& dir, const std::string& name, uint8_t chunk,
                const std::vector<Bytes>& frames) {
  Bytes b = {chunk};
  for (const Bytes& f : frames) b.insert(b.end(), f.begin(), f.end());
  std::FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (f == nullptr) return false;
  bool ok = std::fwrite(b.data(), 1, b.size(), f) == b.size();
  return std::fclose(f) == 0 && ok;
}

int run(const std::string& dir) {
  ApiVersionsRequest av;
  av.client_software_name = "ordo";
  av.client_software_version = "0.1";
  MetadataRequest md;
  md.topics.emplace();
  md.topics->push_back({.name = "orders"});
  Bytes batch(61, 0);
  batch[11] = 49;
  batch[16] = 2;
  ProduceRequest pr;
  pr.acks = -1;
  pr.timeout_ms = 1000;
  pr.topic_data.push_back({.name = "orders"});
  pr.topic_data[0].partition_data.push_back({.index = 0, .records = Records::owned(batch)});
  FetchRequest fe;
  fe.max_wait_ms = 500;
  fe.topics.push_back({.topic = "orders"});
  fe.topics[0].partitions.push_back({.partition = 0, .fetch_offset = 10});
  FindCoordinatorRequest fc;
  fc.key = "group";
  fc.coordinator_keys = {"g1", "g2"};
  JoinGroupRequest jg;
  jg.group_id = "g";
  jg.protocol_type = "consumer";
  jg.protocols.push_back({.name = "range", .metadata = {1, 2, 3}});
  ControlledShutdownRequest cs;
  cs.broker_id = 1;

  bool ok = true;
  ok &= write_seed(dir, "api_versions_v0", 255, {frame(av, 0, 1)});
  ok &= write_seed(dir, "api_versions_v3", 255, {frame(av, 3, 2)});
  ok &= write_seed(dir, "metadata_v1", 255, {frame(md, 1, 3)});
  ok &= write_seed(dir, "metadata_v12", 255, {frame(md, 12, 4)});
  ok &= write_seed(dir, "produce_v3", 255, {frame(pr, 3, 5)});
  ok &= write_seed(dir, "produce_v9", 255, {frame(pr, 9, 6)});
  ok &= write_seed(dir, "fetch_v4", 255, {frame(fe, 4, 7)});
  ok &= write_seed(dir, "fetch_v16", 255, {frame(fe, 16, 8)});
  ok &= write_seed(dir, "find_coordinator_v4", 255, {frame(fc, 4, 9)});
  ok &= write_seed(dir, "join_group_v5", 255, {frame(jg, 5, 10)});
  ok &= write_seed(dir, "join_group_v9", 255, {frame(jg, 9, 11)});
  ok &= write_seed(dir, "controlled_shutdown_v0", 255, {frame(cs, 0, 12)});
  ok &= write_seed(dir, "stream_small_chunks", 0,
                   {frame(av, 3, 1), frame(md, 12, 2), frame(pr, 9, 3), frame(fe, 12, 4)});
  ok &= write_seed(dir, "garbage", 3,
                   {Bytes{0x00, 0x00, 0x00, 0x06, 0x7f, 0x00, 0x00, 0x01, 0xff, 0xff}});
  ok &= write_seed(dir, "negative_size", 255, {Bytes{0xff, 0xff, 0xff, 0xf0, 0x00}});
  ok &= write_seed(dir, "huge_array", 255,
                   {Bytes{0x00, 0x00, 0x00, 0x0c, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
                          0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}});
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace ordo::protocol

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_protocol_make_corpus DIR\n");
    return 2;
  }
  return ordo::protocol::run(argv[1]);
}
