// The admin API's routes over a status snapshot, and the server end to end over real logs.

#include "broker/admin_api.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cluster/partitions.h"
#include "storage/tests/test_util.h"

namespace ordo::broker {
namespace {

using nlohmann::json;

std::vector<storage::PartitionStatus> sample_status() {
  storage::PartitionStatus table;
  table.tp = {"table", 0};
  table.log_start_offset = Offset(0);
  table.log_end_offset = Offset(120);
  table.high_watermark = Offset(120);
  table.size_bytes = 4096;
  table.segments = 3;
  table.compacted = true;
  table.cleaner.dirty_ratio = 0.25;
  table.cleaner.dirty_bytes = 1024;
  table.cleaner.cleanable_bytes = 4096;
  table.cleaner.first_dirty = Offset(90);
  table.cleaner.cleans = 2;
  table.cleaner.bytes_read = 10000;
  table.cleaner.records_dropped = 70;
  storage::PartitionStatus broken;
  broken.tp = {"events", 1};
  broken.online = false;
  broken.error = "corrupt: bad batch";
  storage::PartitionStatus plain;
  plain.tp = {"events", 0};
  plain.log_end_offset = Offset(7);
  plain.write_errors = 3;
  return {plain, broken, table};
}

http::Request get(std::string path) {
  http::Request r;
  r.method = "GET";
  r.path = std::move(path);
  return r;
}

TEST(AdminApi, PartitionsAsJson) {
  auto resp = admin_route(get("/v1/partitions"), sample_status());
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.content_type, "application/json");
  auto j = json::parse(resp.body);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[0]["topic"], "events");
  EXPECT_EQ(j[0]["log_end_offset"], 7);
  EXPECT_EQ(j[0]["compacted"], false);
  EXPECT_EQ(j[0]["write_errors"], 3);
  EXPECT_EQ(j[1]["write_errors"], 0);
  EXPECT_FALSE(j[0].contains("cleaner"));
  EXPECT_EQ(j[1]["online"], false);
  EXPECT_EQ(j[1]["error"], "corrupt: bad batch");
  EXPECT_FALSE(j[1].contains("log_end_offset"));
  const auto& c = j[2]["cleaner"];
  EXPECT_EQ(c["dirty_ratio"], 0.25);
  EXPECT_EQ(c["dirty_bytes"], 1024);
  EXPECT_EQ(c["first_dirty_offset"], 90);
  EXPECT_EQ(c["cleans"], 2);
  EXPECT_EQ(c["records_dropped"], 70);
}

TEST(AdminApi, OneTopicOrNotFound) {
  auto one = admin_route(get("/v1/topics/events/partitions"), sample_status());
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(json::parse(one.body).size(), 2u);
  for (const char* path : {"/v1/topics/none/partitions", "/v1/topics//partitions",
                           "/v1/topics/events", "/", "/v2/partitions"}) {
    auto r = admin_route(get(path), sample_status());
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_TRUE(json::parse(r.body).contains("error")) << path;
  }
}

TEST(AdminApi, PrometheusMetrics) {
  auto r = admin_route(get("/metrics"), sample_status());
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.content_type.starts_with("text/plain"));
  for (const char* line : {
           "# TYPE ordo_partition_online gauge\n",
           "ordo_partition_online{topic=\"events\",partition=\"1\"} 0\n",
           "ordo_partition_log_end_offset{topic=\"events\",partition=\"0\"} 7\n",
           "ordo_cleaner_dirty_ratio{topic=\"table\",partition=\"0\"} 0.25\n",
           "# TYPE ordo_partition_write_errors_total counter\n",
           "ordo_partition_write_errors_total{topic=\"events\",partition=\"0\"} 3\n",
           "ordo_partition_write_errors_total{topic=\"events\",partition=\"1\"} 0\n",
           "# TYPE ordo_cleaner_cleans_total counter\n",
           "ordo_cleaner_cleans_total{topic=\"table\",partition=\"0\"} 2\n",
           "ordo_cleaner_bytes_read_total{topic=\"table\",partition=\"0\"} 10000\n",
       }) {
    EXPECT_NE(r.body.find(line), std::string::npos) << line << "\nin\n" << r.body;
  }
  // Offline and uncompacted partitions have no cleaner samples.
  EXPECT_EQ(r.body.find("ordo_cleaner_dirty_ratio{topic=\"events\""), std::string::npos);
}

TEST(AdminApi, ServesTheLogsStatusOverHttp) {
  storage::testing::TempDir dir;
  storage::LogManagerOptions o;
  o.data_dir = dir.path();
  o.high_watermark = [](const ordo::model::TopicPartition&, const ordo::storage::LogProgress& p) {
    return ordo::cluster::LocalPartitions::decide_high_watermark(p);
  };
  auto logs = storage::LogManager::open(o);
  ASSERT_TRUE(logs);
  storage::LogConfig compact;
  compact.cleanup_policy = storage::CleanupPolicy::compact;
  ASSERT_TRUE((*logs)->create_sync({"t", 0}, compact));
  auto api = AdminApi::start(**logs, "127.0.0.1", 0);
  ASSERT_TRUE(api) << api.error().to_string();
  auto r = http::get("127.0.0.1", (*api)->port(), "/v1/topics/t/partitions");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->status, 200);
  auto j = json::parse(r->body);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["compacted"], true);
  EXPECT_EQ(j[0]["cleaner"]["cleans"], 0);
  (*api)->stop();
  ASSERT_TRUE((*logs)->close());
}

}  // namespace
}  // namespace ordo::broker
