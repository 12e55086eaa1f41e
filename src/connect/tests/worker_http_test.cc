// The worker's HTTP routes over a table view, called without a server or a broker (the
// consumers point at a closed port and never get a partition): scan pages and their cursor,
// and the shape of every 404.

#include "connect/worker.h"

#include <gtest/gtest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "connect/table_view.h"
#include "storage/tests/test_util.h"

namespace ordo::connect {
namespace {

using nlohmann::json;

class WorkerHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    // The view's store, filled before the worker opens it: keys k00..k24, one not UTF-8.
    {
      std::filesystem::create_directories(dir_.path() + "/views/users");
      auto v = TableView::open(dir_.path() + "/views/users/gen-1");
      ASSERT_TRUE(v) << v.error().to_string();
      std::vector<TableView::Change> changes;
      for (int i = 0; i < 25; ++i) {
        changes.push_back({fmt::format("k{:02}", i), "v" + std::to_string(i), i});
      }
      changes.push_back({"k\xff", "bin", 25});
      changes.push_back({"other", "o", 26});
      ASSERT_TRUE((*v)->apply({"users", 0}, changes, 27));
    }
    PipelineConfig c;
    c.bootstrap = "127.0.0.1:1";  // nothing listens: the tasks stay unassigned
    c.data_dir = dir_.path();
    c.http_host.clear();
    SinkConfig s;
    s.name = "users";
    s.type = "table";
    s.topics = {"users"};
    s.dead_letter_topic = "users.dlq";
    c.sinks.push_back(s);
    auto w = Worker::start(c);
    ASSERT_TRUE(w) << w.error().to_string();
    worker_ = std::move(*w);
  }

  std::pair<int, json> get(const std::string& path, std::map<std::string, std::string> query = {}) {
    http::Request r;
    r.method = "GET";
    r.path = path;
    r.query = std::move(query);
    auto resp = worker_->route(r);
    EXPECT_EQ(resp.content_type, "application/json");
    return {resp.status, json::parse(resp.body)};
  }

  storage::testing::TempDir dir_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(WorkerHttp, ScanPagesFollowTheCursorToTheEnd) {
  std::vector<std::string> keys;
  std::map<std::string, std::string> q = {{"prefix", "k"}, {"limit", "10"}};
  int pages = 0;
  while (true) {
    auto [status, body] = get("/views/users/scan", q);
    ASSERT_EQ(status, 200) << body;
    ++pages;
    ASSERT_LE(body["rows"].size(), 10u);
    for (const auto& r : body["rows"]) keys.push_back(r["key"]);
    if (body["next"].is_null()) break;
    ASSERT_LT(pages, 10);
    // The cursor is percent-encoded; the request parser decodes query values.
    auto decoded = http::percent_decode(body["next"].get<std::string>());
    ASSERT_TRUE(decoded);
    q["after"] = *decoded;
  }
  EXPECT_EQ(pages, 3);  // 10, 10, 6
  ASSERT_EQ(keys.size(), 26u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(keys[size_t(i)], fmt::format("k{:02}", i));
  EXPECT_EQ(keys[25], "k\xef\xbf\xbd");  // sent as U+FFFD; the cursor kept the byte

  // A last page that is exactly full has no next; `after` past the prefix finds nothing.
  auto [s1, exact] = get("/views/users/scan", {{"prefix", "k"}, {"limit", "26"}});
  EXPECT_EQ(exact["rows"].size(), 26u);
  EXPECT_TRUE(exact["next"].is_null());
  auto [s2, none] = get("/views/users/scan", {{"prefix", "k"}, {"after", "z"}});
  EXPECT_EQ(none["rows"].size(), 0u);
  EXPECT_TRUE(none["next"].is_null());
  // `after` before the prefix starts at the prefix.
  auto [s3, first] = get("/views/users/scan", {{"prefix", "k"}, {"after", "a"}, {"limit", "1"}});
  EXPECT_EQ(first["rows"][0]["key"], "k00");
  EXPECT_EQ(first["next"], "k00");

  for (const char* bad : {"0", "10001", "x"}) {
    auto [status, body] = get("/views/users/scan", {{"limit", bad}});
    EXPECT_EQ(status, 400) << bad;
    EXPECT_EQ(body, (json{{"error", "limit is 1-10000"}}));
  }
  EXPECT_EQ(get("/views/users/scan", {{"limit", "10000"}}).first, 200);
}

TEST_F(WorkerHttp, EveryNotFoundIsAnErrorObject) {
  for (const char* path : {"/nope", "/views/", "/views/users", "/views/nope/scan",
                           "/views/users/nope", "/views/users/keys/missing",
                           "/aggregates/nope/groups", "/claims/nope/holders/x", "/search/nope"}) {
    auto [status, body] = get(path, path == std::string("/search/nope")
                                        ? std::map<std::string, std::string>{{"q", "x"}}
                                        : std::map<std::string, std::string>{});
    EXPECT_EQ(status, 404) << path;
    ASSERT_TRUE(body.is_object()) << path;
    EXPECT_EQ(body.size(), 1u) << path << ": " << body;
    EXPECT_TRUE(body["error"].is_string()) << path;
  }
  auto [status, body] = get("/views/users/keys/k03");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(body, (json{{"key", "k03"}, {"value", "v3"}, {"offset", 3}}));
}

}  // namespace
}  // namespace ordo::connect
